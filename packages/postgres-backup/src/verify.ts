import type { Writable } from 'node:stream';
import type { Catalog, Manifest } from '@drkit/s3-store';
import { fingerprintOf, readBackup, resolveBackup, type StoredBytes } from './archive.js';
import { type SealKeys, serverInfo } from './backup.js';
import { type PgTarget, pgTarget, withClient } from './connection.js';
import { isPgBackupError, messageOf, PgBackupError, signalOf, throwIfAborted } from './errors.js';
import { emitter, type PgBackupEventListener, throttledProgress } from './events.js';
import type { FingerprintDifference } from './fingerprint.js';
import { createDatabaseFor, dropDatabaseQuietly, feed, shadowName } from './pg-restore.js';
import type { RestoreErrorClass, RestoreErrorEntry } from './restore-errors.js';
import { restoreArchiveInto } from './restore-into.js';
import { checkClientVersion, errorLines, findTool, startTool } from './tools.js';

/** Verification levels: 1 stored bytes, 2 decrypt and decode, 3 restore and compare. */
export type VerifyLevel = 1 | 2 | 3;

/** Options of {@link verifyPostgresBackup}. */
export interface VerifyPostgresOptions {
  catalog: Catalog;
  /** A backup id or "latest". */
  backup: string;
  /** Keys that open the backup (levels 2 and 3). */
  keys?: SealKeys;
  level: VerifyLevel;
  /**
   * Level 3: a server to restore into, as the URL of a database the user can connect to there
   * (e.g. postgres://verifier:pw@scratch-db:5432/postgres). A scratch database is created
   * beside it and dropped afterwards; nothing else on that server is touched.
   */
  scratch?: string | PgTarget;
  /** Level 3: restore error classes accepted. @default ["missing-role"]: a scratch server need not have the production roles */
  allowErrors?: readonly RestoreErrorClass[];
  /** Level 3: parallel restore jobs (stages the dump). @default 1 */
  jobs?: number;
  stageDir?: string;
  /** Record the outcome in the backup's manifest. @default true */
  record?: boolean;
  binDir?: string;
  signal?: AbortSignal;
  onEvent?: PgBackupEventListener;
}

/** One level's result. */
export interface VerifyCheck {
  level: VerifyLevel;
  ok: boolean;
  detail: string;
}

/** The outcome of {@link verifyPostgresBackup}. */
export interface PostgresVerification {
  /** The manifest, with the verification recorded when `record` was on. */
  backup: Manifest;
  level: VerifyLevel;
  ok: boolean;
  /** One entry per level run, lowest first; a failed level stops the higher ones. */
  checks: VerifyCheck[];
  /** Why it failed (PG_BACKUP_TAMPERED, PG_FINGERPRINT_MISMATCH, PG_RESTORE_ERRORS, ...). */
  error?: PgBackupError;
  stored?: StoredBytes;
  /** Level 2: entries of the archive's table of contents, by type ("TABLE", "TABLE DATA", "INDEX", ...). */
  toc?: { entries: number; byType: Record<string, number> };
  plainBytes?: number;
  /** Level 3. */
  differences?: FingerprintDifference[];
  allowedErrors?: RestoreErrorEntry[];
  durationMs: number;
}

const LEVEL_NAMES: Record<VerifyLevel, string> = {
  1: 'L1 stored bytes',
  2: 'L2 decrypt and decode',
  3: 'L3 restore and fingerprint',
};

/**
 * Verifies a PostgreSQL backup at up to three levels, each including the ones below:
 * - L1: the stored object's size and SHA-256 against its manifest;
 * - L2: decrypt and authenticate every chunk, and decode the whole archive with no database
 *   (`pg_restore --list` and a full `pg_restore -f /dev/null`), checking that every table
 *   with rows has its data in the archive;
 * - L3: restore into a scratch database and compare exact row counts, sequence values and
 *   object counts with the fingerprint taken at backup time.
 *
 * A backup that fails is reported (`ok: false`, `error`), and recorded in its manifest so that
 * "latest" skips it; problems of the verifier itself (a wrong key, an unreachable scratch
 * server, a missing tool) throw instead, and are not recorded against the backup.
 */
export async function verifyPostgresBackup(options: VerifyPostgresOptions): Promise<PostgresVerification> {
  const started = performance.now();
  if (![1, 2, 3].includes(options.level))
    throw new PgBackupError('PG_OPTIONS_INVALID', `level must be 1, 2 or 3, got ${String(options.level)}`);
  if (options.level >= 2 && !options.keys)
    throw new PgBackupError('PG_OPTIONS_INVALID', `level ${options.level} decrypts the backup: pass keys`);
  if (options.level === 3 && !options.scratch)
    throw new PgBackupError(
      'PG_OPTIONS_INVALID',
      'level 3 restores the backup: pass scratch, the URL of a database on a server where a scratch database may be created',
    );
  const emit = emitter(options.onEvent);
  let manifest = await resolveBackup(options.catalog, options.backup);
  const record = fingerprintOf(manifest);
  const result: PostgresVerification = { backup: manifest, level: options.level, ok: false, checks: [], durationMs: 0 };
  const signal = options.signal ? { signal: options.signal } : {};

  const fail = (level: VerifyLevel, error: PgBackupError) => {
    result.checks.push({ level, ok: false, detail: error.message });
    result.error = error;
  };
  try {
    // L1 (on its own, or as part of L2's single read).
    if (options.level === 1) {
      emit({ type: 'step', step: 'verify', message: `L1: hashing the stored object of backup ${manifest.id}` });
      const check = await options.catalog.verify(manifest, signal);
      result.stored = { size: check.size, sha256: check.sha256 };
      if (check.ok)
        result.checks.push({ level: 1, ok: true, detail: `${check.size} bytes, SHA-256 ${check.sha256.slice(0, 16)}... as recorded` });
      else
        fail(
          1,
          new PgBackupError(
            'PG_BACKUP_TAMPERED',
            `backup ${manifest.id}: the stored object is ${check.size} bytes with SHA-256 ${check.sha256.slice(0, 16)}..., the manifest says ${manifest.object.size} bytes with ${manifest.object.sha256.slice(0, 16)}...`,
          ),
        );
    } else {
      await levelTwo(options, manifest, record, result, emit);
      if (!result.error && options.level === 3) await levelThree(options, manifest, record, result, emit);
    }
  } catch (error) {
    // The backup's own faults fail the verification; the verifier's own problems propagate.
    if (
      isPgBackupError(error) &&
      ['PG_BACKUP_TAMPERED', 'PG_RESTORE_ERRORS', 'PG_RESTORE_FAILED', 'PG_FINGERPRINT_MISMATCH', 'PG_BACKUP_INVALID'].includes(error.code)
    )
      // Levels run in order, so the failed one is the first that has not passed.
      fail(Math.min(result.checks.filter((c) => c.ok).length + 1, options.level) as VerifyLevel, error);
    else throw error;
  }
  result.ok = result.error === undefined;
  if (options.record !== false) {
    const top = result.checks.at(-1);
    manifest = await options.catalog.recordVerification(manifest, {
      status: result.ok ? 'passed' : 'failed',
      at: new Date().toISOString().replace(/\.\d{3}Z$/, '.000Z'),
      level: LEVEL_NAMES[(top?.level ?? options.level) as VerifyLevel],
      detail: (top?.detail ?? '').slice(0, 1000),
    });
    result.backup = manifest;
  }
  result.durationMs = Math.round(performance.now() - started);
  return result;
}

async function levelTwo(
  options: VerifyPostgresOptions,
  manifest: Manifest,
  record: ReturnType<typeof fingerprintOf>,
  result: PostgresVerification,
  emit: PgBackupEventListener,
): Promise<void> {
  const tool = await findTool('pg_restore', {
    ...(options.binDir ? { binDir: options.binDir } : {}),
    serverMajor: Number(record.dump.version.split('.')[0]),
  });
  const dumpMajor = Number(record.dump.version.split('.')[0]);
  if (tool.major < dumpMajor) checkClientVersion(tool, 'pg_restore', dumpMajor, record.dump.version);
  emit({ type: 'step', step: 'verify', message: `L2: decrypting and decoding backup ${manifest.id} (no database involved)` });
  const stored: StoredBytes = { size: 0, sha256: '' };
  const progress = throttledProgress(emit, 'verify', manifest.object.size);
  let plainBytes = 0;
  const source = readBackup(options.catalog, manifest, options.keys as SealKeys, {
    ...signalOf(options),
    stored,
    onStoredBytes: (n) => progress.bytes(n),
  });
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      plainBytes += chunk.length;
      yield chunk;
    }
  }
  const env = { ...process.env, PGPASSWORD: '' };
  const list = startTool(tool.path, ['--list'], { env, stdin: 'pipe', ...signalOf(options) });
  const decode = startTool(tool.path, ['--file=/dev/null'], { env, stdin: 'pipe', ...signalOf(options) });
  decode.child.stdout?.resume();
  const listed: Buffer[] = [];
  list.child.stdout?.on('data', (chunk: Buffer) => listed.push(chunk));
  try {
    await feed(counted(), [list.child.stdin as Writable, decode.child.stdin as Writable]);
  } catch (error) {
    list.child.kill('SIGKILL');
    decode.child.kill('SIGKILL');
    await Promise.all([list.exited, decode.exited]);
    throw error;
  }
  const [listExit, decodeExit] = await Promise.all([list.exited, decode.exited]);
  progress.done();
  result.stored = stored;
  result.plainBytes = plainBytes;
  result.checks.push({ level: 1, ok: true, detail: `${stored.size} bytes, SHA-256 ${stored.sha256.slice(0, 16)}... as recorded` });
  if (listExit.code !== 0 || decodeExit.code !== 0) {
    const lines = errorLines([...list.stderrLines, ...decode.stderrLines]);
    throw new PgBackupError(
      'PG_BACKUP_TAMPERED',
      `backup ${manifest.id} decrypts but pg_restore cannot decode it: ${lines.join(' | ') || `exit codes ${listExit.code}, ${decodeExit.code}`}`,
    );
  }
  const byType: Record<string, number> = {};
  let entries = 0;
  for (const line of Buffer.concat(listed).toString('utf8').split('\n')) {
    const m = /^\d+; \d+ \d+ (.+)$/.exec(line);
    if (!m) continue;
    entries++;
    const type = TOC_TYPES.find((t) => (m[1] as string).startsWith(`${t} `)) ?? (m[1] as string).split(' ')[0] ?? '?';
    byType[type] = (byType[type] ?? 0) + 1;
  }
  result.toc = { entries, byType };
  const withRows = Object.entries(record.tables).filter(([, rows]) => rows > 0).length - (record.excludedTableData?.length ?? 0);
  if ((byType['TABLE DATA'] ?? 0) < withRows)
    throw new PgBackupError(
      'PG_BACKUP_TAMPERED',
      `backup ${manifest.id} holds data for ${byType['TABLE DATA'] ?? 0} tables, but ${withRows} tables had rows when it was made`,
    );
  result.checks.push({
    level: 2,
    ok: true,
    detail: `decrypted ${plainBytes} bytes; the archive decodes in full: ${entries} entries, ${byType['TABLE DATA'] ?? 0} with table data`,
  });
}

// Multi-word entry types first, so that "TABLE DATA" is not counted as "TABLE".
const TOC_TYPES = [
  'TABLE DATA',
  'SEQUENCE SET',
  'SEQUENCE OWNED BY',
  'FK CONSTRAINT',
  'MATERIALIZED VIEW DATA',
  'MATERIALIZED VIEW',
  'DEFAULT ACL',
  'INDEX ATTACH',
  'TABLE ATTACH',
  'EVENT TRIGGER',
  'TEXT SEARCH CONFIGURATION',
  'TEXT SEARCH DICTIONARY',
  'FOREIGN TABLE',
  'LARGE OBJECT',
  'BLOBS',
];

async function levelThree(
  options: VerifyPostgresOptions,
  manifest: Manifest,
  record: ReturnType<typeof fingerprintOf>,
  result: PostgresVerification,
  emit: PgBackupEventListener,
): Promise<void> {
  throwIfAborted(options.signal, 'the verification');
  const scratch = typeof options.scratch === 'string' ? pgTarget(options.scratch) : (options.scratch as PgTarget);
  const warn = (message: string) => emit({ type: 'warning', message });
  await withClient(scratch, async (admin) => {
    const server = await serverInfo(admin);
    const tool = await findTool('pg_restore', { ...(options.binDir ? { binDir: options.binDir } : {}), serverMajor: server.major });
    checkClientVersion(tool, 'pg_restore', server.major, server.version);
    const name = shadowName(record.database.name, 'verify');
    emit({
      type: 'step',
      step: 'verify',
      message: `L3: restoring backup ${manifest.id} into the scratch database ${name} on ${scratch.host}:${scratch.port}`,
    });
    await createDatabaseFor(admin, name, record.database.properties, warn);
    try {
      const restored = await restoreArchiveInto(
        {
          options: {
            catalog: options.catalog,
            keys: options.keys as SealKeys,
            allowErrors: options.allowErrors ?? ['missing-role'],
            ...(options.stageDir ? { stageDir: options.stageDir } : {}),
            ...signalOf(options),
          },
          target: scratch,
          manifest,
          record,
          tool,
          emit,
          warn,
        },
        name,
        options.jobs ?? 1,
      );
      result.allowedErrors = restored.allowed;
      result.differences = [];
      const rows = Object.values(restored.fingerprint.tables).reduce((a, b) => a + b, 0);
      result.checks.push({
        level: 3,
        ok: true,
        detail: `restored into a scratch database: ${Object.keys(restored.fingerprint.tables).length} tables (${rows} rows), ${Object.keys(restored.fingerprint.sequences).length} sequences and all object counts match the backup${restored.allowed.length > 0 ? `; ${restored.allowed.length} allowed restore error(s)` : ''}`,
      });
    } catch (error) {
      if (isPgBackupError(error, 'PG_FINGERPRINT_MISMATCH')) result.differences = error.details.differences as FingerprintDifference[];
      throw error;
    } finally {
      await dropDatabaseQuietly(admin, name, warn);
    }
  });
}

/** The message of a verification for people: one line per level. */
export function describeVerification(v: PostgresVerification): string {
  const lines = v.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'} ${LEVEL_NAMES[c.level]}: ${c.detail}`);
  if (v.error && !v.checks.some((c) => !c.ok)) lines.push(`FAIL ${messageOf(v.error)}`);
  return lines.join('\n');
}
