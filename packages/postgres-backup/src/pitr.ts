// Point-in-time recovery: a base backup extracted into a new data directory, rolled forward
// with the archived WAL to a moment, promoted, started and checked. Nothing existing is
// touched: the recovered server is a new one beside the old, as a managed database's
// "restore to point in time" makes a new instance.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, chown, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type OpenKeys, open } from '@drkit/crypto-stream';
import type { Catalog, Manifest } from '@drkit/s3-store';
import type pg from 'pg';
import { connect, pgTarget } from './connection.js';
import { messageOf, PgBackupError, signalOf, throwIfAborted } from './errors.js';
import { emitter, type PgBackupEventListener, throttledProgress } from './events.js';
import { findTool } from './tools.js';
import { type BaseBackupEntry, listBaseBackups, verifyWalArchive, type WalArchiveReport } from './wal-archive.js';
import { formatLsn, parseLsn } from './wal-names.js';

/** Where a recovery stops: a moment, a WAL position, or the end of the archive. */
export type RecoveryTarget = { time: Date } | { lsn: string } | 'latest';

/** Options of {@link restorePointInTime}. */
export interface RestorePointInTimeOptions {
  /** Where the base backups are; the WAL archive is in the same store. */
  catalog: Catalog;
  keys: OpenKeys;
  target: RecoveryTarget;
  /** The new data directory: absent or empty. It is created owned by `osUser`. */
  into: string;
  /**
   * restore_command, with %f and %p: `drkit wal-fetch --store URL %f %p`. It runs as `osUser`
   * inside the new server, with `env`.
   */
  restoreCommand: string;
  /** Extra environment of the new server (the keys and store credentials its restore_command needs). */
  env?: Record<string, string>;
  /** Stop just before a transaction that committed exactly at the target (false), or just after (true). @default false: only what committed before the target */
  inclusive?: boolean;
  /** Which cluster, when the store holds more than one. @default the only one */
  systemId?: string;
  /** A specific base backup id. @default the newest one that finished before the target */
  base?: string;
  /** TCP port of the recovered server (on 127.0.0.1). @default a free one */
  port?: number;
  /** When this process is root: the OS account the server runs as. @default postgres */
  osUser?: string;
  /** How to log in to check the recovered server (its roles are the source's). */
  login: { user: string; password?: string; database?: string };
  /** Your own checks once it is up (a row count, the newest order): what it returns goes into the result. */
  verify?: (client: pg.Client) => Promise<Record<string, unknown> | undefined>;
  /** Leave the recovered server running (it is the new primary-to-be). @default true */
  keepRunning?: boolean;
  /** Keep WAL archiving off on the recovered server, so it cannot write into the archive it came from. @default true */
  archiveOff?: boolean;
  /** More settings for the recovered server (written to postgresql.auto.conf), e.g. its own archive_command. */
  settings?: Record<string, string>;
  /** @default 30 minutes */
  timeoutMs?: number;
  binDir?: string;
  signal?: AbortSignal;
  onEvent?: PgBackupEventListener;
}

/** A recovered, running server. */
export interface PointInTimeRecovery {
  base: Manifest;
  dataDir: string;
  port: number;
  logFile: string;
  /** The timeline the promoted server writes on (a new one). */
  timeline: number;
  /** What PostgreSQL said about where it stopped. */
  stoppedAt: {
    /** "before commit of transaction 812, time 2026-11-22 13:05:00.12+00", when a target stopped it. */
    reason?: string;
    /** The commit time of the last transaction replayed. */
    lastTransactionAt?: Date;
    /** The WAL position redo ended at. */
    redoDoneAt?: string;
  };
  /** What the `verify` callback returned. */
  checks: Record<string, unknown>;
  /** Files of WAL the archive served during recovery, as the server log tells. */
  walRestored: number;
  settings: Record<string, string>;
  window: WalArchiveReport | undefined;
  /** Stops the recovered server (fast shutdown). Its data directory stays. */
  stop(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 30 * 60_000;

/**
 * Recovers a PostgreSQL cluster to a point in time into a new data directory: picks the
 * newest base backup that finished before the target, extracts it (every chunk authenticated
 * on the way), checks it with pg_verifybackup, writes the recovery settings (restore_command,
 * recovery_target_time or _lsn, recovery_target_action = promote), starts the server, waits
 * for it to replay the archived WAL up to the target and promote, and checks it: out of
 * recovery, on a new timeline, stopped where it was asked to. The source, wherever it is, is
 * never touched.
 * @throws PgBackupError PG_TARGET_DIR_NOT_EMPTY, PG_BACKUP_NOT_FOUND, PG_TARGET_OUT_OF_WINDOW,
 *   PG_WAL_GAP, PG_RECOVERY_FAILED, PG_BACKUP_TAMPERED, PG_OPTIONS_INVALID, PG_ABORTED
 */
export async function restorePointInTime(options: RestorePointInTimeOptions): Promise<PointInTimeRecovery> {
  const emit = emitter(options.onEvent);
  const into = resolvePath(options.into);
  const target = normalizeTarget(options.target);
  throwIfAborted(options.signal, 'the point-in-time recovery');
  if (existsSync(into) && (await readdir(into)).length > 0)
    throw new PgBackupError(
      'PG_TARGET_DIR_NOT_EMPTY',
      `${into} is not empty: a recovery goes into a new, empty data directory and never over an existing one; name another directory or move this one aside`,
    );
  const runAs = osAccount(options.osUser);

  // Which base backup, and whether the archive reaches the target from it.
  const all = await listBaseBackups(options.catalog, options.systemId);
  const systems = [...new Set(all.map((b) => b.base.systemId))];
  if (systems.length > 1 && options.systemId === undefined)
    throw new PgBackupError(
      'PG_OPTIONS_INVALID',
      `the store holds base backups of several clusters (${systems.join(', ')}): say which with systemId`,
    );
  const base = chooseBase(all, target, options.base);
  const systemId = base.base.systemId;
  const [report] = await verifyWalArchive({ catalog: options.catalog, keys: options.keys, systemId, ...signalOf(options) });
  const coverage = report?.bases.find((b) => b.id === base.manifest.id);
  if (coverage && typeof target === 'object' && 'time' in target && target.time > coverage.to) {
    const code = coverage.gap ? 'PG_WAL_GAP' : 'PG_TARGET_OUT_OF_WINDOW';
    throw new PgBackupError(
      code,
      `${target.time.toISOString()} is past what the archive holds from base backup ${base.manifest.id}: ${coverage.gap ? `segment ${coverage.gap} is missing, so ` : ''}it recovers from ${coverage.from.toISOString()} to ${coverage.to.toISOString()} (segment ${coverage.lastWal}); choose a time in that window, or 'latest'`,
      { details: { from: coverage.from.toISOString(), to: coverage.to.toISOString(), ...(coverage.gap ? { gap: coverage.gap } : {}) } },
    );
  }
  emit({
    type: 'step',
    step: 'base',
    message: `base backup ${base.manifest.id} (${base.base.startLsn} to ${base.base.stopLsn}, timeline ${base.base.timeline}, finished ${base.base.stoppedAt})`,
  });

  const [postgres, pgCtl] = await Promise.all([
    findTool('postgres', { binDir: options.binDir, serverMajor: base.base.serverMajor }),
    findTool('pg_ctl', { binDir: options.binDir, serverMajor: base.base.serverMajor }),
  ]);
  if (postgres.major !== base.base.serverMajor)
    throw new PgBackupError(
      'PG_OPTIONS_INVALID',
      `the base backup is of PostgreSQL ${base.base.serverMajor} and only the server of that major can recover it; found ${postgres.version} (${postgres.path}): install postgresql-${base.base.serverMajor} or pass binDir`,
    );
  const createdDir = !existsSync(into);
  let started = false;
  const logFile = `${into}/drkit-recovery.log`;
  const ids = runAs ? { uid: runAs.uid, gid: runAs.gid } : {};
  const port = options.port ?? (await freePort());
  const stop = async () => {
    if (!existsSync(`${into}/postmaster.pid`)) return;
    await run(pgCtl.path, ['stop', '-D', into, '-m', 'fast', '-w', '-t', '60'], { ...ids, env: process.env });
  };
  try {
    await mkdir(into, { recursive: true, mode: 0o700 });
    if (runAs) await chown(into, runAs.uid, runAs.gid);

    // Extract: decrypt (each chunk authenticated before a byte reaches tar) into the new dir.
    emit({ type: 'step', step: 'extract', message: `extracting ${(base.manifest.plainSize ?? 0) / 1e6} MB into ${into}` });
    const progress = throttledProgress(emit, 'restore', base.manifest.plainSize);
    const tar = spawn('tar', ['-x', '-f', '-', '-C', into, '--no-same-owner'], { stdio: ['pipe', 'ignore', 'pipe'], ...ids });
    const tarErrors = collect(tar);
    const body = await options.catalog.open(base.manifest, signalOf(options));
    try {
      await pipeline(
        open(body, { keys: options.keys, ...signalOf(options), onProgress: (p) => progress.bytes(p.plainBytes - progress.total) }),
        tar.stdin as NodeJS.WritableStream,
      );
    } catch (error) {
      tar.kill('SIGTERM');
      throw isSealFailure(error)
        ? new PgBackupError(
            'PG_BACKUP_TAMPERED',
            `base backup ${base.manifest.id} does not open: ${messageOf(error)}; nothing was recovered`,
            { cause: error },
          )
        : error;
    }
    const tarExit = await tarErrors;
    if (tarExit.code !== 0)
      throw new PgBackupError(
        'PG_RECOVERY_FAILED',
        `extracting base backup ${base.manifest.id} failed: ${tarExit.stderr.trim() || `tar exit ${tarExit.code}`}`,
      );
    progress.done();

    if (base.base.hasBackupManifest) {
      emit({ type: 'step', step: 'verify-base', message: 'checking every file against the backup manifest (pg_verifybackup)' });
      const verifier = await findTool('pg_verifybackup', { binDir: options.binDir, serverMajor: base.base.serverMajor }).catch(
        () => undefined,
      );
      if (verifier) {
        const checked = await run(verifier.path, ['--quiet', into], { ...ids, env: process.env });
        if (checked.code !== 0)
          throw new PgBackupError(
            'PG_BACKUP_TAMPERED',
            `pg_verifybackup rejects base backup ${base.manifest.id}: ${checked.stderr.trim().split('\n').slice(-5).join(' | ')}`,
          );
      } else
        emit({
          type: 'warning',
          message: 'pg_verifybackup was not found: the extracted files were not checked against the backup manifest',
        });
    }

    // The recovery settings, after whatever the source's postgresql.auto.conf said.
    const settings: Record<string, string> = {
      restore_command: options.restoreCommand,
      recovery_target_action: 'promote',
      recovery_target_timeline: 'latest',
      ...(typeof target === 'object' && 'time' in target
        ? { recovery_target_time: pgTime(target.time), recovery_target_inclusive: options.inclusive ? 'on' : 'off' }
        : typeof target === 'object'
          ? { recovery_target_lsn: target.lsn, recovery_target_inclusive: options.inclusive ? 'on' : 'off' }
          : {}),
      ...(options.archiveOff === false ? {} : { archive_mode: 'off' }),
      ...options.settings,
    };
    await appendFile(
      `${into}/postgresql.auto.conf`,
      `\n# drkit point-in-time recovery to ${describeTarget(target)}, from base backup ${base.manifest.id}\n${Object.entries(settings)
        .map(([name, value]) => `${name} = '${value.replaceAll("'", "''")}'`)
        .join('\n')}\n`,
    );
    await writeFile(`${into}/recovery.signal`, '');
    if (runAs) {
      await chown(`${into}/postgresql.auto.conf`, runAs.uid, runAs.gid);
      await chown(`${into}/recovery.signal`, runAs.uid, runAs.gid);
    }

    emit({
      type: 'step',
      step: 'recover',
      message: `starting PostgreSQL ${postgres.version} on port ${port} to replay WAL up to ${describeTarget(target)}`,
    });
    const serverOptions = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='${into}'`;
    const startedRun = await run(pgCtl.path, ['start', '-D', into, '-l', logFile, '-W', '-o', serverOptions], {
      ...ids,
      env: { ...process.env, ...options.env },
    });
    if (startedRun.code !== 0)
      throw new PgBackupError('PG_RECOVERY_FAILED', `pg_ctl could not start the recovered server: ${startedRun.stderr.trim()}`);
    started = true;
    const outcome = await waitForPromotion(logFile, into, options.timeoutMs ?? DEFAULT_TIMEOUT_MS, options.signal, (line) =>
      emit({ type: 'progress', operation: 'restore', bytes: 0, item: line }),
    );

    // Check it: out of recovery, on a new timeline, and whatever the caller checks.
    const login = pgTarget(
      `postgres://${encodeURIComponent(options.login.user)}${options.login.password !== undefined ? `:${encodeURIComponent(options.login.password)}` : ''}@127.0.0.1:${port}/${encodeURIComponent(options.login.database ?? 'postgres')}`,
    );
    const client = await connect(login);
    let timeline: number;
    let checks: Record<string, unknown> = {};
    try {
      const row = (
        await client.query<{ recovering: boolean; wal: string }>(
          'SELECT pg_is_in_recovery() AS recovering, pg_walfile_name(pg_current_wal_lsn()) AS wal',
        )
      ).rows[0];
      if (!row || row.recovering)
        throw new PgBackupError('PG_RECOVERY_FAILED', 'the recovered server is still in recovery after it said it had promoted');
      timeline = Number.parseInt(row.wal.slice(0, 8), 16);
      if (!(timeline > base.base.timeline))
        throw new PgBackupError(
          'PG_RECOVERY_FAILED',
          `the recovered server writes on timeline ${timeline}, not a new one after ${base.base.timeline}`,
        );
      checks = (await options.verify?.(client)) ?? {};
    } finally {
      await client.end().catch(() => {});
    }
    const stoppedAtTime = outcome.lastTransactionAt;
    if (typeof target === 'object' && 'time' in target && stoppedAtTime && stoppedAtTime > target.time)
      throw new PgBackupError(
        'PG_RECOVERY_FAILED',
        `recovery replayed a transaction of ${stoppedAtTime.toISOString()}, after the target ${target.time.toISOString()}`,
      );
    emit({
      type: 'step',
      step: 'recovered',
      message: `recovered to ${outcome.reason ?? `the end of the archive (${outcome.redoDoneAt ?? '?'})`}; now on timeline ${timeline}, port ${port}`,
    });
    if (options.keepRunning === false) await stop();
    return {
      base: base.manifest,
      dataDir: into,
      port,
      logFile,
      timeline,
      stoppedAt: {
        ...(outcome.reason ? { reason: outcome.reason } : {}),
        ...(outcome.lastTransactionAt ? { lastTransactionAt: outcome.lastTransactionAt } : {}),
        ...(outcome.redoDoneAt ? { redoDoneAt: outcome.redoDoneAt } : {}),
      },
      checks,
      walRestored: outcome.restored,
      settings: { ...settings, restore_command: options.restoreCommand },
      window: report,
      stop,
    };
  } catch (error) {
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n') : '';
    if (started) await stop().catch(() => {});
    // Nothing half-recovered stays behind (it would be plaintext): only what we created goes.
    if (createdDir) await rm(into, { recursive: true, force: true });
    else for (const name of await readdir(into).catch(() => [] as string[])) await rm(`${into}/${name}`, { recursive: true, force: true });
    if (options.signal?.aborted && !(error instanceof PgBackupError && error.code === 'PG_ABORTED'))
      throw new PgBackupError('PG_ABORTED', 'the point-in-time recovery was aborted; the new data directory was removed', { cause: error });
    if (error instanceof PgBackupError && log && !('log' in error.details)) (error.details as Record<string, unknown>).log = log;
    throw error;
  }
}

function normalizeTarget(target: RecoveryTarget): { time: Date } | { lsn: string } | 'latest' {
  if (target === 'latest') return target;
  if (typeof target === 'object' && target !== null && 'time' in target) {
    if (!(target.time instanceof Date) || Number.isNaN(target.time.getTime()))
      throw new PgBackupError(
        'PG_OPTIONS_INVALID',
        'the recovery target time is not a valid date (use ISO 8601 with a zone: 2026-11-22T10:00:00Z)',
      );
    return target;
  }
  if (typeof target === 'object' && target !== null && 'lsn' in target) return { lsn: formatLsn(parseLsn(target.lsn)) };
  throw new PgBackupError('PG_OPTIONS_INVALID', "the recovery target is { time }, { lsn } or 'latest'");
}

function describeTarget(target: { time: Date } | { lsn: string } | 'latest'): string {
  if (target === 'latest') return 'the end of the archive';
  return 'time' in target ? target.time.toISOString() : `WAL position ${target.lsn}`;
}

/** PostgreSQL's timestamptz input, to the microsecond, in UTC. */
function pgTime(time: Date): string {
  return `${time.toISOString().replace('T', ' ').replace('Z', '')}+00`;
}

/** The newest base backup that can reach `target`. */
function chooseBase(all: BaseBackupEntry[], target: { time: Date } | { lsn: string } | 'latest', id: string | undefined): BaseBackupEntry {
  if (id !== undefined) {
    const found = all.find((b) => b.manifest.id === id);
    if (!found)
      throw new PgBackupError('PG_BACKUP_NOT_FOUND', `no base backup ${id}; list them with 'drkit backup list --kind postgres-base'`);
    return found;
  }
  if (all.length === 0)
    throw new PgBackupError(
      'PG_BACKUP_NOT_FOUND',
      "there is no base backup to recover from: take one with 'drkit backup postgres-base' (and archive WAL with 'drkit wal-push')",
    );
  const fits = all.filter((b) =>
    target === 'latest'
      ? true
      : 'time' in target
        ? new Date(b.base.stoppedAt) <= target.time
        : parseLsn(b.base.stopLsn) <= parseLsn(target.lsn),
  );
  const chosen = fits.at(-1);
  if (!chosen) {
    const oldest = all[0] as BaseBackupEntry;
    throw new PgBackupError(
      'PG_TARGET_OUT_OF_WINDOW',
      `${describeTarget(target)} is before the oldest base backup finished (${oldest.manifest.id}, ${oldest.base.stoppedAt}, ${oldest.base.stopLsn}): nothing can recover to it`,
      { details: { from: oldest.base.stoppedAt } },
    );
  }
  return chosen;
}

/** What the server log says about the end of recovery. */
interface RecoveryOutcome {
  reason?: string;
  lastTransactionAt?: Date;
  redoDoneAt?: string;
  restored: number;
}

/**
 * Follows the recovered server's log until it has promoted and accepts connections; a FATAL
 * or PANIC, or the server's exit, fails with the log's own words.
 */
async function waitForPromotion(
  logFile: string,
  dataDir: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  onLine: (line: string) => void,
): Promise<RecoveryOutcome> {
  const deadline = performance.now() + timeoutMs;
  let seen = 0;
  const outcome: RecoveryOutcome = { restored: 0 };
  let promoted = false;
  for (;;) {
    throwIfAborted(signal, 'the point-in-time recovery');
    const text = existsSync(logFile) ? await readFile(logFile, 'utf8') : '';
    const lines = text.split('\n');
    for (; seen < lines.length - 1; seen++) {
      const line = lines[seen] as string;
      if (/restored log file "[0-9A-F]{24}" from archive/.test(line)) {
        outcome.restored++;
        onLine(line.replace(/^.*?LOG:\s*/, ''));
      }
      const stopping = /recovery stopping (.*)$/.exec(line);
      if (stopping?.[1]) outcome.reason = stopping[1];
      const done = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(line);
      if (done?.[1]) outcome.redoDoneAt = done[1];
      const last = /last completed transaction was at log time (.+)$/.exec(line);
      if (last) outcome.lastTransactionAt = new Date((last[1] as string).replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
      if (/recovery ended before configured recovery target was reached/.test(line))
        throw new PgBackupError(
          'PG_TARGET_OUT_OF_WINDOW',
          'the archive ended before the recovery target: no transaction after the target is archived (nothing committed after it, or its WAL was not archived yet); recover to a time inside the window, or to the latest point',
        );
      if (/\b(FATAL|PANIC):/.test(line) && !/the database system is (starting up|not yet accepting connections)/.test(line))
        throw new PgBackupError('PG_RECOVERY_FAILED', `the recovered server failed: ${line.replace(/^.*?(FATAL|PANIC):\s*/, '$1: ')}`);
      if (/archive recovery complete|selected new timeline ID/.test(line)) promoted = true;
      if (promoted && /database system is ready to accept connections/.test(line)) return outcome;
    }
    if (!serverAlive(dataDir) && seen > 0 && !promoted) {
      // Give the log a moment to hold the reason.
      await new Promise((r) => setTimeout(r, 200));
      const tail = (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '').split('\n').slice(-5).join(' | ');
      if (!serverAlive(dataDir)) throw new PgBackupError('PG_RECOVERY_FAILED', `the recovered server stopped during recovery: ${tail}`);
    }
    if (performance.now() > deadline)
      throw new PgBackupError(
        'PG_RECOVERY_FAILED',
        `recovery did not finish within ${Math.round(timeoutMs / 1000)} s; the server log is at ${logFile}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Whether the postmaster of `dataDir` is running (postmaster.pid names a live process). */
function serverAlive(dataDir: string): boolean {
  try {
    const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function isSealFailure(error: unknown): boolean {
  return (error as { name?: string } | null)?.name === 'SealError';
}

/** Runs a program to its end, with its stderr. */
function run(
  command: string,
  args: string[],
  options: { uid?: number; gid?: number; env: NodeJS.ProcessEnv },
): Promise<{ code: number; stderr: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  return collect(child);
}

function collect(child: ChildProcess): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    if (stderr.length < 64 * 1024) stderr += text;
  });
  return new Promise((resolve) => {
    child.once('error', (error) => resolve({ code: -1, stderr: `${stderr}${error.message}` }));
    child.once('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * The account a recovered PostgreSQL runs as when this process is root (it refuses to run as
 * root): `requested`, else `postgres`. Undefined when not root: it runs as this process's user.
 * @throws PgBackupError PG_OPTIONS_INVALID when the account does not exist
 */
export function osAccount(requested: string | undefined): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const name = requested ?? 'postgres';
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined) return { name, uid: Number(uid), gid: Number(gid) };
  }
  throw new PgBackupError(
    'PG_OPTIONS_INVALID',
    `running as root, and the account '${name}' to run the recovered PostgreSQL as does not exist: pass osUser`,
  );
}
