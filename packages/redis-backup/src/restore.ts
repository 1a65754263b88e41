import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, open as openFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OpenKeys } from '@drkit/crypto-stream';
import type { Catalog, Manifest } from '@drkit/s3-store';
import type { Redis } from 'ioredis';
import { fingerprintOf, REDIS_LOGICAL_KIND, REDIS_RDB_KIND, readRedisBackup, resolveRedisBackup } from './archive.js';
import { backupRedis } from './backup.js';
import { connectRedis, type RedisTarget, redisTarget, withRedis } from './connection.js';
import { isRedisBackupError, messageOf, RedisBackupError, signalOf, throwIfAborted } from './errors.js';
import { emitter, type RedisBackupEventListener, throttle } from './events.js';
import { type ExistingKeyPolicy, type ImportResult, importRedis, keysExist } from './import.js';
import { createRdbChecker, maxRdbVersionFor } from './rdb.js';
import { bytesOf, type KeyRecord, readLineBatches, readLines } from './records.js';
import { info, keyspaceOf, redisCommandError, serverVersion } from './server.js';
import { type RedisRestoreCheck, verifyRedisRestore } from './verify.js';

/** Options of {@link restoreRedis}. */
export interface RestoreRedisOptions {
  url: string | RedisTarget;
  catalog: Catalog;
  /** A logical backup: id, "latest", or its manifest. */
  backup: string | Manifest;
  /** Keys that open the backup; they also seal the snapshot taken before a flush or a replace. */
  keys: OpenKeys;
  /** Keys of the backup that exist in the server. @default "fail" (checked before anything is written) */
  policy?: ExistingKeyPolicy;
  /** FLUSHALL first (destructive: only after the whole backup authenticated, and after a snapshot). */
  flush?: boolean;
  /** Authenticate and check the backup, report what would be done, change nothing. */
  dryRun?: boolean;
  /**
   * Before a flush or a replace of a server that has keys, store a logical export of its
   * current state (labelled snapshot) so nothing is lost. @default true
   */
  snapshot?: boolean;
  /** Compare every key with the backup afterwards (verifyRedisRestore). @default true */
  verify?: boolean;
  /** Commands per pipeline. @default 1000 */
  batch?: number;
  signal?: AbortSignal;
  onEvent?: RedisBackupEventListener;
}

/** What {@link restoreRedis} did, or would do. */
export interface RedisRestoreResult {
  mode: 'restored' | 'dry-run';
  backup: Manifest;
  /** What was (or would be) done, step by step, for a person. */
  plan: string[];
  /** Keys of the backup that already existed in the server (checked when it had keys). */
  existing: number;
  flushed: boolean;
  /** The snapshot of the server's state before a flush or replace. */
  snapshot?: Manifest;
  /** The import's counts (absent on a dry run). */
  imported?: Omit<ImportResult, 'header' | 'trailer'>;
  /** The key-by-key comparison afterwards (unless verify: false). */
  check?: RedisRestoreCheck;
}

/**
 * Restores a logical backup into a running server — no restart: RESTORE … ABSTTL (exact
 * exports) or typed writes (NDJSON), pipelined. Nothing is destroyed before the replacement is
 * known good: a flush or a replace happens only after the whole backup decrypted and
 * authenticated, and after the current state was saved as a snapshot. With policy "fail", keys
 * that exist stop the restore before anything is written. Keys whose expiry passed meanwhile
 * are counted and reported. Afterwards every key is compared with the backup.
 * @throws RedisBackupError REDIS_KEYS_EXIST, REDIS_RDB_VERSION_TOO_NEW, REDIS_BACKUP_TAMPERED, REDIS_WRONG_KEY, REDIS_VERIFY_FAILED, ...
 */
export async function restoreRedis(options: RestoreRedisOptions): Promise<RedisRestoreResult> {
  const target = typeof options.url === 'string' ? redisTarget(options.url) : options.url;
  const policy = options.policy ?? 'fail';
  if (!['fail', 'replace', 'skip'].includes(policy))
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `policy must be fail, replace or skip, got ${JSON.stringify(policy)}`);
  const emit = emitter(options.onEvent);
  const manifest =
    typeof options.backup === 'string' ? await resolveRedisBackup(options.catalog, options.backup, REDIS_LOGICAL_KIND) : options.backup;
  const fingerprint = fingerprintOf(manifest, REDIS_LOGICAL_KIND);
  const plan: string[] = [];
  const backupBytes = () => readRedisBackup(options.catalog, manifest, options.keys, signalOf(options));
  const read = () => readLines(backupBytes());
  emit({ type: 'step', step: 'connect', message: `connecting to ${target.description}` });
  const client = await connectRedis(target, { name: 'drkit-restore' });
  try {
    const version = await serverVersion(client);
    const readable = maxRdbVersionFor(version);
    if (
      fingerprint.encoding === 'exact' &&
      fingerprint.rdbVersion !== undefined &&
      readable !== undefined &&
      fingerprint.rdbVersion > readable
    )
      throw new RedisBackupError(
        'REDIS_RDB_VERSION_TOO_NEW',
        `backup ${manifest.id} holds DUMP payloads of RDB version ${fingerprint.rdbVersion} (Redis ${fingerprint.redisVersion}); ${target.description} runs Redis ${version}, which reads up to version ${readable}. Restore into Redis ${fingerprint.redisVersion} or newer, or back up with --encoding ndjson`,
      );
    const present = await keyspaceOf(client);
    const hasKeys = Object.keys(present).length > 0;
    const total = fingerprint.keys;
    const destructive = (options.flush === true || policy === 'replace') && hasKeys;

    // The whole backup authenticates before anything destructive (and before a "fail" check
    // could be trusted): one full read, checking which keys exist on the way.
    let existing = 0;
    const sample: string[] = [];
    if (options.dryRun || destructive || (policy !== 'replace' && hasKeys && !options.flush)) {
      emit({
        type: 'step',
        step: 'authenticate',
        message: `reading backup ${manifest.id} to the end (${total} keys) before changing anything`,
      });
      existing = await existingKeys(client, read(), hasKeys && !options.flush, sample, options.signal);
    }
    plan.push(
      `restore ${total} keys of backup ${manifest.id} (${fingerprint.encoding}, Redis ${fingerprint.redisVersion}) into ${target.description} (Redis ${version}), policy ${policy}`,
    );
    if (existing > 0) plan.push(`${existing} of them exist in the server (${sample.join(', ')}${existing > sample.length ? ', ...' : ''})`);
    const wantSnapshot = destructive && options.snapshot !== false;
    if (wantSnapshot)
      plan.push(`save the server's current ${Object.values(present).reduce((n, d) => n + d.keys, 0)} keys as a snapshot backup first`);
    if (options.flush) plan.push('FLUSHALL (every database) before writing');
    if (policy === 'fail' && existing > 0 && !options.flush) {
      if (options.dryRun) {
        plan.push('would refuse: keys exist (choose --policy replace or skip, or --flush)');
        return { mode: 'dry-run', backup: manifest, plan, existing, flushed: false };
      }
      throw keysExist(sample, target, existing);
    }
    if (options.dryRun) return { mode: 'dry-run', backup: manifest, plan, existing, flushed: false };

    let snapshot: Manifest | undefined;
    if (wantSnapshot) {
      emit({ type: 'step', step: 'snapshot', message: `saving the current state of ${target.description} before it is changed` });
      const saved = await backupRedis({
        url: target,
        catalog: options.catalog,
        keys: options.keys,
        mode: 'logical',
        encoding: 'exact',
        digest: false,
        labels: { snapshot: 'true', reason: `before restoring ${manifest.id}` },
        ...signalOf(options),
      });
      snapshot = saved.logical;
      emit({ type: 'step', step: 'snapshot', message: `snapshot ${snapshot?.id} stored` });
    }
    throwIfAborted(options.signal, 'the restore');
    let flushed = false;
    if (options.flush) {
      emit({ type: 'step', step: 'flush', message: `FLUSHALL on ${target.description}${snapshot ? ` (snapshot ${snapshot.id})` : ''}` });
      await client.flushall();
      flushed = true;
    }
    emit({ type: 'step', step: 'restore', message: `writing ${total} keys` });
    const due = throttle();
    let imported: ImportResult;
    try {
      imported = await importRedis(target, readLineBatches(backupBytes()), {
        policy,
        ...(options.batch !== undefined ? { batch: options.batch } : {}),
        ...signalOf(options),
        onProgress: ({ keys, db }) => {
          if (due()) emit({ type: 'progress', operation: 'restore', keys, total, db });
        },
      });
    } catch (error) {
      if (error instanceof RedisBackupError && snapshot)
        error.message += `. The server's state before this restore is backup ${snapshot.id}`;
      throw error;
    }
    const { header: _h, trailer: _t, ...counts } = imported;
    emit({ type: 'progress', operation: 'restore', keys: counts.restored, total });
    if (counts.expired > 0)
      emit({
        type: 'warning',
        message: `${counts.expired} key(s) expired before they could be restored (e.g. ${counts.expiredSample.slice(0, 5).join(', ')})`,
      });
    const result: RedisRestoreResult = {
      mode: 'restored',
      backup: manifest,
      plan,
      existing,
      flushed,
      ...(snapshot ? { snapshot } : {}),
      imported: counts,
    };
    if (options.verify !== false) {
      const saved = snapshot ? `. The server's state before this restore is backup ${snapshot.id}` : '';
      emit({ type: 'step', step: 'verify', message: 'comparing every key with the backup (type, expiry, DBSIZE, DEBUG DIGEST)' });
      result.check = await verifyRedisRestore({
        url: target,
        catalog: options.catalog,
        backup: manifest,
        keys: options.keys,
        ...signalOf(options),
      });
      // Other keys are expected when the server was not flushed: only the backup's keys must match.
      const failed = result.check.differenceCount > 0 || result.check.digest === 'different' || (flushed && result.check.extra > 0);
      if (failed && policy !== 'skip')
        throw new RedisBackupError(
          'REDIS_VERIFY_FAILED',
          `the restored server differs from backup ${manifest.id}: ${result.check.differenceCount} key difference(s)${result.check.differences[0] ? ` (first: db ${result.check.differences[0].db} ${result.check.differences[0].key}: ${result.check.differences[0].problem}, expected ${result.check.differences[0].expected}, found ${result.check.differences[0].actual})` : ''}, ${result.check.extra} extra key(s), digest ${result.check.digest}${saved}`,
          { details: { check: result.check, result } },
        );
    }
    return result;
  } catch (error) {
    throw error instanceof RedisBackupError ? error : redisCommandError(target, 'restoring', error);
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

/** Reads a whole export (authenticating it), counting the keys that exist in the server. */
async function existingKeys(
  client: Redis,
  lines: AsyncIterable<import('./records.js').ExportLine>,
  check: boolean,
  sample: string[],
  signal: AbortSignal | undefined,
): Promise<number> {
  let existing = 0;
  let db = -1;
  let batch: KeyRecord[] = [];
  let sawTrailer = false;
  const flush = async () => {
    if (!check || batch.length === 0) return;
    const pipe = client.pipeline();
    for (const r of batch) pipe.exists(bytesOf(r, r.key));
    const replies = (await pipe.exec()) ?? [];
    batch.forEach((r, i) => {
      if (Number(replies[i]?.[1]) > 0) {
        existing++;
        if (sample.length < 10) sample.push(r.key);
      }
    });
    batch = [];
  };
  for await (const line of lines) {
    if (line.kind === 'trailer') sawTrailer = true;
    if (line.kind !== 'key' || line.record.cont) continue;
    if (line.record.db !== db && check) {
      await flush();
      throwIfAborted(signal, 'the restore');
      await client.select(line.record.db);
    }
    db = line.record.db;
    batch.push(line.record);
    if (batch.length >= 1000) await flush();
  }
  await flush();
  if (!sawTrailer)
    throw new RedisBackupError(
      'REDIS_BACKUP_INVALID',
      'the backup ends without its last line: it is incomplete. Nothing was changed; use another backup',
    );
  return existing;
}

// ---------------------------------------------------------------------------------------------
// RDB restore

/** The server an RDB is restored into, and how to stop and start it (a service controller, the sandbox). */
export interface RdbServer {
  stop(): Promise<void>;
  start(): Promise<void>;
  /** The server's `dir`. @default CONFIG GET dir */
  dataDir?: string;
  /** The server's `dbfilename`. @default CONFIG GET dbfilename */
  dbFilename?: string;
}

/** Options of {@link restoreRedisRdb}. */
export interface RestoreRdbOptions {
  /** The server while it runs: its version, dir, dbfilename and appendonly are read from it. */
  url: string | RedisTarget;
  catalog: Catalog;
  /** An RDB backup: id, "latest", or its manifest. */
  backup: string | Manifest;
  keys: OpenKeys;
  server: RdbServer;
  /** Decrypt and check the RDB beside the server's file, report, change nothing. */
  dryRun?: boolean;
  /** How long the restarted server may take to load. @default 300000 */
  loadTimeoutMs?: number;
  /** How long the server may still answer after `stop()` returned. @default 30000 */
  stopTimeoutMs?: number;
  signal?: AbortSignal;
  onEvent?: RedisBackupEventListener;
}

/** What {@link restoreRedisRdb} did. */
export interface RdbRestoreResult {
  mode: 'restored' | 'dry-run';
  backup: Manifest;
  plan: string[];
  /** Where the server's previous dump file was kept (never deleted), if it had one. */
  previous?: string;
  /** INFO keyspace after the server loaded the RDB, and what the backup recorded. */
  keyspace?: Record<string, { keys: number; expires: number }>;
  recorded: Record<string, { keys: number; expires: number }>;
}

/**
 * Restores an RDB backup by placing it as the server's dump file while the server is stopped,
 * then starting it again. Before the server is touched: the server's version must read the
 * RDB's version, append-only persistence must be off (the server would load the AOF instead),
 * and the RDB is decrypted to a temp file beside the dump file and checked (authenticated
 * chunks, CRC64). The previous dump file is kept beside it. If the server does not come back
 * with the new file, the previous one is put back and the server started again.
 * @throws RedisBackupError REDIS_RDB_VERSION_TOO_NEW, REDIS_AOF_ENABLED, REDIS_SERVICE_FAILED, REDIS_BACKUP_TAMPERED, ...
 */
export async function restoreRedisRdb(options: RestoreRdbOptions): Promise<RdbRestoreResult> {
  const target = typeof options.url === 'string' ? redisTarget(options.url) : options.url;
  const emit = emitter(options.onEvent);
  const manifest =
    typeof options.backup === 'string' ? await resolveRedisBackup(options.catalog, options.backup, REDIS_RDB_KIND) : options.backup;
  const fingerprint = fingerprintOf(manifest, REDIS_RDB_KIND);
  const plan: string[] = [];

  const { version, dir, file, aof } = await withRedis(target, async (client) => {
    const [dirReply, fileReply, aofReply] = await Promise.all(
      ['dir', 'dbfilename', 'appendonly'].map((name) => client.config('GET', name).catch(() => [] as string[])),
    );
    return {
      version: await serverVersion(client),
      dir: options.server.dataDir ?? (dirReply as string[])[1],
      file: options.server.dbFilename ?? (fileReply as string[])[1],
      aof: (aofReply as string[])[1],
    };
  });
  if (!dir || !file)
    throw new RedisBackupError(
      'REDIS_OPTIONS_INVALID',
      `${target.description} does not say where its dump file is (CONFIG GET is refused): pass the server's dataDir and dbFilename`,
    );
  const readable = maxRdbVersionFor(version);
  if (readable !== undefined && fingerprint.rdbVersion > readable)
    throw new RedisBackupError(
      'REDIS_RDB_VERSION_TOO_NEW',
      `backup ${manifest.id} is an RDB of version ${fingerprint.rdbVersion} (Redis ${fingerprint.redisVersion}); ${target.description} runs Redis ${version}, which reads up to version ${readable}. Restore into Redis ${fingerprint.redisVersion} or newer, or restore the logical backup`,
    );
  if (aof === 'yes')
    throw new RedisBackupError(
      'REDIS_AOF_ENABLED',
      `${target.description} has appendonly yes: on start it would load its AOF and ignore the restored RDB. Set appendonly no in its config, restore, then CONFIG SET appendonly yes (which rewrites the AOF from the restored data)`,
    );
  const dumpPath = join(dir, file);
  const temp = join(dir, `.drkit-restore-${manifest.id}-${randomBytes(3).toString('hex')}.rdb`);
  plan.push(`decrypt and check RDB backup ${manifest.id} (version ${fingerprint.rdbVersion}, ${fingerprint.bytes} bytes) into ${temp}`);
  plan.push('stop the server');
  plan.push(`keep ${dumpPath} as ${dumpPath}.drkit-before-<time> and put the backup in its place`);
  plan.push('start the server and wait until it has loaded the data');

  emit({ type: 'step', step: 'decrypt', message: plan[0] as string });
  try {
    await writeChecked(options, manifest, temp, emit);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  if (options.dryRun) {
    await rm(temp, { force: true });
    return { mode: 'dry-run', backup: manifest, plan, recorded: fingerprint.keyspace };
  }
  let previous: string | undefined;
  try {
    emit({ type: 'step', step: 'stop', message: `stopping ${target.description}` });
    await control(() => options.server.stop(), 'stop', target);
    await waitStopped(target, options.signal, options.stopTimeoutMs);
    if (await exists(dumpPath)) {
      previous = `${dumpPath}.drkit-before-${new Date().toISOString().replace(/[-:.]/g, '')}`;
      await rename(dumpPath, previous);
    }
    await rename(temp, dumpPath);
    await syncDir(dir);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  emit({ type: 'step', step: 'start', message: `starting ${target.description} on the restored RDB` });
  try {
    await control(() => options.server.start(), 'start', target);
    await waitLoaded(target, options.loadTimeoutMs ?? 300_000, options.signal);
  } catch (error) {
    // The server did not come back on the backup: put its own file back and start it again.
    emit({
      type: 'warning',
      message: `the server did not start on the restored RDB (${messageOf(error)}); putting the previous dump file back`,
    });
    await options.server.stop().catch(() => {});
    await rm(dumpPath, { force: true });
    if (previous) await rename(previous, dumpPath);
    const restarted = await options.server.start().then(
      () => 'it was started again on its previous data',
      (e) => `starting it again failed too (${messageOf(e)})`,
    );
    throw new RedisBackupError(
      'REDIS_SERVICE_FAILED',
      `${target.description} did not start on RDB backup ${manifest.id} (${messageOf(error)}); ${restarted}`,
      { cause: error },
    );
  }
  const keyspace = await withRedis(target, (client) => keyspaceOf(client));
  const total = (k: Record<string, { keys: number }>) => Object.values(k).reduce((n, d) => n + d.keys, 0);
  if (total(fingerprint.keyspace) > 0 && total(keyspace) === 0)
    throw new RedisBackupError(
      'REDIS_VERIFY_FAILED',
      `${target.description} started on RDB backup ${manifest.id} but holds no keys; the backup recorded ${total(fingerprint.keyspace)}. The previous dump file is ${previous ?? '(none)'}`,
    );
  emit({
    type: 'step',
    step: 'loaded',
    message: `loaded: ${total(keyspace)} keys (the backup recorded about ${total(fingerprint.keyspace)} when it started; keys that expired since are gone)`,
  });
  return { mode: 'restored', backup: manifest, plan, ...(previous ? { previous } : {}), keyspace, recorded: fingerprint.keyspace };
}

async function exists(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

async function syncDir(dir: string): Promise<void> {
  const handle = await openFile(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function control(action: () => Promise<void>, what: string, target: RedisTarget): Promise<void> {
  try {
    await action();
  } catch (error) {
    throw new RedisBackupError('REDIS_SERVICE_FAILED', `could not ${what} ${target.description}: ${messageOf(error)}`, { cause: error });
  }
}

/** Decrypts the RDB into `path` (fsynced), checking its header, end marker and CRC64. */
async function writeChecked(options: RestoreRdbOptions, manifest: Manifest, path: string, emit: ReturnType<typeof emitter>): Promise<void> {
  const checker = createRdbChecker();
  const handle = await openFile(path, 'wx', 0o600);
  const due = throttle();
  let bytes = 0;
  try {
    for await (const chunk of readRedisBackup(options.catalog, manifest, options.keys, signalOf(options))) {
      checker.update(chunk);
      await handle.write(chunk);
      bytes += chunk.length;
      if (due()) emit({ type: 'progress', operation: 'restore', bytes });
    }
    checker.finish();
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Waits until the server no longer answers: a stop command that returns early would let a
 * server that saves on shutdown overwrite the restored file.
 */
async function waitStopped(target: RedisTarget, signal: AbortSignal | undefined, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    throwIfAborted(signal, 'waiting for the server to stop');
    try {
      await withRedis(target, (client) => client.ping());
    } catch (error) {
      if (isRedisBackupError(error, 'REDIS_CONNECTION_REFUSED') || isRedisBackupError(error, 'REDIS_UNREACHABLE')) return;
      throw error;
    }
    await sleep(100);
  }
  throw new RedisBackupError(
    'REDIS_SERVICE_FAILED',
    `${target.description} still answers ${timeoutMs / 1000} s after the stop command returned: nothing was changed. Make the stop command wait until the server has exited`,
  );
}

/** Waits until the server answers and has finished loading its dataset. */
async function waitLoaded(target: RedisTarget, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    throwIfAborted(signal, 'waiting for the server');
    try {
      const loading = await withRedis(target, async (client) => (await info(client, 'persistence')).get('loading'));
      if (loading === '0') return;
    } catch (error) {
      last = error;
      // LOADING replies and refused connections are both "not yet".
      if (isRedisBackupError(error, 'REDIS_AUTH_FAILED')) throw error;
    }
    await sleep(100);
  }
  throw new RedisBackupError(
    'REDIS_TIMEOUT',
    `${target.description} did not finish loading within ${timeoutMs} ms${last ? ` (${messageOf(last)})` : ''}`,
  );
}
