// What the Redis recovery runbooks share: reading the server's keyspace (a server that is down
// is a finding, not an error), finding the backup to restore and its companion (backupRedis
// with mode "both" stores an RDB and, a moment later, a logical export that names the RDB in
// its `rdb` label), keeping the current state before it is replaced, and checking a restored
// server against what the backup recorded: DBSIZE per database, and every key's type and
// expiry, so that sessions do not come back as keys that never expire.

import {
  backupRedis,
  type ExistingKeyPolicy,
  fingerprintOf,
  isRedisBackupError,
  type KeyDifference,
  type Keyspace,
  keyspaceOf,
  type RdbServer,
  REDIS_LOGICAL_KIND,
  REDIS_RDB_KIND,
  RedisBackupError,
  type RedisBackupEvent,
  type RedisRestoreCheck,
  type RedisTarget,
  redisTarget,
  resolveRedisBackup,
  verifyRedisRestore,
  withRedis,
} from '@drkit/redis-backup';
import type { StepContext } from '@drkit/runbook';
import { type Catalog, isStoreError, type Manifest } from '@drkit/s3-store';
import { backupKeys, redisUrl, reportEvents, required } from './platform.ts';

/** The two ways the plan's Redis backups can be restored. */
export type RedisRestoreMode = 'rdb' | 'logical';

/**
 * The existing-key policy of a logical restore: the operator's, or by default "fail" (nothing
 * is overwritten behind anyone's back) and, after --flush, "skip": whatever exists once the
 * server was emptied was written by the running application since, and is newer than the backup.
 */
export function policyOf(params: { policy?: ExistingKeyPolicy | undefined; flush: boolean }): ExistingKeyPolicy {
  return params.policy ?? (params.flush ? 'skip' : 'fail');
}

/** The Redis server of `vars.redis`, with the redisPassword secret (its description never shows it). */
export function redisTargetOf(ctx: StepContext<unknown>): RedisTarget {
  return redisTarget(redisUrl(ctx));
}

/** What the server holds now, or why it could not be read. */
export interface CurrentKeyspace {
  up: boolean;
  keyspace: Keyspace;
  total: number;
  error?: string;
}

/** Keys in every database of a keyspace. */
export function totalKeys(keyspace: Keyspace): number {
  return Object.values(keyspace).reduce((n, db) => n + db.keys, 0);
}

/** A keyspace for people: "db0=120 (80 with expiry), db3=4". */
export function describeKeyspace(keyspace: Keyspace): string {
  const dbs = Object.entries(keyspace).sort(([a], [b]) => Number(a) - Number(b));
  if (dbs.length === 0) return 'no keys';
  return dbs.map(([db, { keys, expires }]) => `db${db}=${keys}${expires > 0 ? ` (${expires} with expiry)` : ''}`).join(', ');
}

/**
 * INFO keyspace of the server now. A server that refuses connections or cannot be reached
 * answers `up: false` with the reason: in a Redis incident that is often the very finding.
 */
export async function readKeyspace(ctx: StepContext<unknown>): Promise<CurrentKeyspace> {
  const target = redisTargetOf(ctx);
  try {
    const keyspace = await withRedis(target, (client) => keyspaceOf(client), { connectTimeoutMs: 5000 });
    return { up: true, keyspace, total: totalKeys(keyspace) };
  } catch (error) {
    if (isRedisBackupError(error, 'REDIS_CONNECTION_REFUSED') || isRedisBackupError(error, 'REDIS_UNREACHABLE'))
      return { up: false, keyspace: {}, total: 0, error: error.message };
    throw error;
  }
}

/** What a backup recorded of the server's keyspace (INFO keyspace for an RDB, the export's counts for a logical one). */
export function recordedKeyspace(manifest: Manifest): Keyspace {
  if (manifest.kind === REDIS_RDB_KIND) return fingerprintOf(manifest, REDIS_RDB_KIND).keyspace;
  const f = fingerprintOf(manifest, REDIS_LOGICAL_KIND);
  const out: Keyspace = {};
  for (const [db, keys] of Object.entries(f.databases)) if (keys > 0) out[db] = { keys, expires: f.expires[db] ?? 0 };
  return out;
}

/** The backup a Redis restore uses, and the logical export its keys are checked against. */
export interface RedisRestoreSet {
  /** The backup of the mode's kind that is restored. */
  restore: Manifest;
  /** The logical export of the same backup run (itself, in logical mode); null when there is none. */
  logical: Manifest | null;
}

async function getKind(catalog: Catalog, id: string, kind: string): Promise<Manifest | undefined> {
  try {
    return await catalog.get(id, kind);
  } catch (error) {
    if (isStoreError(error) && error.code === 'STORE_ARTIFACT_NOT_FOUND') return undefined;
    throw error;
  }
}

/** The logical export made in the same backup run as an RDB (labelled with its id), if any. */
async function companionOf(catalog: Catalog, rdb: Manifest): Promise<Manifest | null> {
  const exports = await catalog.list({ kind: REDIS_LOGICAL_KIND });
  return exports.find((m) => m.labels?.rdb === rdb.id && m.verification?.status !== 'failed') ?? null;
}

/**
 * Resolves `ref` ("latest" or an id) to the backup a restore in `mode` needs. An id of the
 * other kind from the same backup run is accepted (an operator copies whichever id the
 * backup list shows first): the RDB's export, or the export's RDB, is used instead.
 * @throws RedisBackupError REDIS_BACKUP_NOT_FOUND naming what was looked for
 */
export async function resolveRestoreSet(catalog: Catalog, ref: string, mode: RedisRestoreMode): Promise<RedisRestoreSet> {
  if (mode === 'logical') {
    if (ref === 'latest') {
      const restore = await resolveRedisBackup(catalog, 'latest', REDIS_LOGICAL_KIND);
      return { restore, logical: restore };
    }
    const direct = await getKind(catalog, ref, REDIS_LOGICAL_KIND);
    if (direct) return { restore: direct, logical: direct };
    const rdb = await getKind(catalog, ref, REDIS_RDB_KIND);
    const companion = rdb ? await companionOf(catalog, rdb) : null;
    if (companion) return { restore: companion, logical: companion };
    // Not found either way: the package's own error says how to list the backups.
    const restore = await resolveRedisBackup(catalog, ref, REDIS_LOGICAL_KIND);
    return { restore, logical: restore };
  }
  let rdb: Manifest | undefined;
  if (ref === 'latest') rdb = await resolveRedisBackup(catalog, 'latest', REDIS_RDB_KIND);
  else {
    rdb = await getKind(catalog, ref, REDIS_RDB_KIND);
    if (!rdb) {
      const exported = await getKind(catalog, ref, REDIS_LOGICAL_KIND);
      const named = exported?.labels?.rdb;
      if (named !== undefined) rdb = await getKind(catalog, named, REDIS_RDB_KIND);
      else if (exported)
        throw new RedisBackupError(
          'REDIS_BACKUP_NOT_FOUND',
          `backup ${ref} is a logical export made without an RDB (a SYNC fallback, or mode logical): restore it with --mode logical`,
        );
    }
    rdb ??= await resolveRedisBackup(catalog, ref, REDIS_RDB_KIND);
  }
  return { restore: rdb, logical: await companionOf(catalog, rdb) };
}

/**
 * Stores an RDB of the server as it is now, labelled as a snapshot (so "latest" never picks
 * it), before a restore replaces it. Returns null when the server is down or empty: there is
 * nothing to keep, and a recovery must not wait for it.
 */
export async function snapshotRedis(
  ctx: StepContext<unknown>,
  catalog: Catalog,
  reason: string,
): Promise<{ id: string; kind: string; keys: number } | null> {
  const now = await readKeyspace(ctx);
  if (!now.up) {
    ctx.log.warn(`no snapshot of the current state: Redis does not answer (${now.error})`);
    return null;
  }
  if (now.total === 0) {
    ctx.log.info('no snapshot of the current state: Redis holds no keys');
    return null;
  }
  const saved = await backupRedis({
    url: redisTargetOf(ctx),
    catalog,
    keys: backupKeys(ctx),
    mode: 'rdb',
    tier: 'manual',
    environment: ctx.environment,
    labels: { snapshot: 'true', reason: reason.slice(0, 900), run: ctx.runId },
    signal: ctx.signal,
    onEvent: redisEvents(ctx),
  });
  for (const warning of saved.warnings) ctx.log.warn(warning);
  const manifest = saved.rdb ?? saved.logical;
  if (!manifest) throw new Error('the snapshot stored nothing');
  ctx.log.info(`kept the current state (${describeKeyspace(now.keyspace)}) as ${manifest.kind} snapshot ${manifest.id}`);
  return { id: manifest.id, kind: manifest.kind, keys: now.total };
}

/**
 * A listener for redis-backup's events: messages and warnings go to the step's log, bytes
 * (RDB) and keys (exports, restores) to its progress.
 */
export function redisEvents(ctx: StepContext<unknown>): (event: RedisBackupEvent) => void {
  const bytes = reportEvents(ctx);
  return (event) => {
    if (event.type === 'progress' && event.keys !== undefined)
      ctx.progress({ done: event.keys, ...(event.total !== undefined ? { total: event.total } : {}), unit: 'keys' });
    else bytes(event);
  };
}

/** One database after a restore: what the backup recorded, what should be there now, what is. */
export interface DatabaseCheck {
  recorded: number;
  /** Recorded keys less those whose expiry has passed since the backup. */
  expected: number;
  dbsize: number;
}

/** The outcome of {@link checkRestoredRedis}. */
export interface RedisCheck {
  ok: boolean;
  /** Why not ok, one line each. */
  failures: string[];
  /** What is worth knowing but does not fail the restore. */
  notes: string[];
  databases: Record<string, DatabaseCheck>;
  /** The export the keys were compared with (null: none, DBSIZE only). */
  comparedWith: string | null;
  /** Keys compared with the right type and exact expiry. */
  matched: number;
  /** Keys of the backup whose expiry passed since (gone by design). */
  expired: number;
  /** Keys the backup does not have. */
  extra: number;
  digest: RedisRestoreCheck['digest'] | 'not-compared';
  /** The first differences found, for the report. */
  differences: KeyDifference[];
}

/** Options of {@link checkRestoredRedis}. */
export interface CheckRestoredOptions {
  mode: RedisRestoreMode;
  /** The restored backup. */
  restored: Manifest;
  /** The logical export to compare keys with (the restored one, or the RDB's companion). */
  logical: Manifest | null;
  /** Logical restores with policy "skip" leave existing keys as they were: their differences are expected. */
  skipped: boolean;
}

/**
 * Compares the running server with the backup it was restored from. Per database, DBSIZE must
 * reach what the backup recorded less the keys whose expiry has passed since; more keys are
 * noted, not failed (the application writes as soon as Redis is back, and a logical restore
 * without --flush keeps the keys it found). Every key of the export must exist with its type
 * and expiry: a session that lost its TTL never expires, one that gained a TTL vanishes. An RDB
 * and its companion export are two instants a moment apart, so in RDB mode a key the export
 * has and the RDB does not, or an expiry moved to another time, is noted; an expiry lost or
 * gained is a failure in both modes.
 */
export async function checkRestoredRedis(ctx: StepContext<unknown>, catalog: Catalog, options: CheckRestoredOptions): Promise<RedisCheck> {
  const target = redisTargetOf(ctx);
  const recorded = recordedKeyspace(options.restored);
  const now = await withRedis(target, (client) => keyspaceOf(client));
  const failures: string[] = [];
  const notes: string[] = [];
  let check: RedisRestoreCheck | undefined;
  if (options.logical)
    check = await verifyRedisRestore({ url: target, catalog, backup: options.logical, keys: backupKeys(ctx), signal: ctx.signal });
  else notes.push('no logical export of this backup run: key types and expiries were not compared, only DBSIZE');

  const exportCounts = options.logical ? fingerprintOf(options.logical, REDIS_LOGICAL_KIND).databases : {};
  const databases: Record<string, DatabaseCheck> = {};
  for (const db of new Set([...Object.keys(recorded), ...Object.keys(now)])) {
    const keys = recorded[db]?.keys ?? 0;
    // Keys of the export that expired since, per database: what the recorded count no longer holds.
    const expiredHere = check ? Math.max(0, (exportCounts[db] ?? 0) - (check.databases[db]?.expected ?? 0)) : 0;
    const expected = Math.max(0, keys - expiredHere);
    const dbsize = now[db]?.keys ?? 0;
    databases[db] = { recorded: keys, expected, dbsize };
    if (dbsize < expected)
      failures.push(
        `db${db}: DBSIZE ${dbsize}, but backup ${options.restored.id} recorded ${keys}${expiredHere > 0 ? ` (${expected} once the ${expiredHere} expired since are left out)` : ''}`,
      );
    else if (dbsize > expected)
      notes.push(
        `db${db}: DBSIZE ${dbsize}, ${dbsize - expected} more than the backup's ${expected}: ${options.mode === 'logical' && !options.skipped ? 'keys the server already had or ' : ''}keys written since the restore`,
      );
  }

  if (check) {
    for (const d of check.differences) {
      const lostOrGained = d.problem === 'expiry' && (d.actual === '-1' || d.expected === '-1');
      // A key whose backed-up expiry has passed but that exists again was written since (a heartbeat, a new session).
      const rewritten = d.problem === 'expiry' && d.expected !== '-1' && Number(d.expected) <= Date.now();
      const tolerated =
        options.skipped || rewritten || (options.mode === 'rdb' && (d.problem === 'missing' || (d.problem === 'expiry' && !lostOrGained)));
      const line = `db${d.db} ${d.key}: ${d.problem === 'expiry' ? (d.actual === '-1' ? 'lost its expiry' : d.expected === '-1' ? 'gained an expiry' : 'another expiry') : d.problem} (expected ${d.expected}, found ${d.actual})`;
      (tolerated ? notes : failures).push(line);
    }
    const unlisted = check.differenceCount - check.differences.length;
    if (unlisted > 0) (options.skipped || options.mode === 'rdb' ? notes : failures).push(`${unlisted} more key difference(s) not listed`);
    if (check.expired > 0) notes.push(`${check.expired} key(s) of the backup expired since it was taken: gone by design`);
    if (check.digest === 'equal') notes.push('DEBUG DIGEST equals the one recorded with the export: the dataset is identical');
    else if (check.digest === 'different' && !options.skipped && options.mode === 'logical')
      failures.push('DEBUG DIGEST differs from the one recorded with the export');
  }
  return {
    ok: failures.length === 0,
    failures,
    notes,
    databases,
    comparedWith: options.logical?.id ?? null,
    matched: check?.matched ?? 0,
    expired: check?.expired ?? 0,
    extra: check?.extra ?? 0,
    digest: check?.digest ?? 'not-compared',
    differences: check?.differences.slice(0, 10) ?? [],
  };
}

/**
 * The redis-server an RDB restore stops and starts: the `vars.redis.service` controller, with
 * the dump file's place from `vars.redis` (else the server's own CONFIG GET).
 */
export function rdbServerOf(ctx: StepContext<unknown>): RdbServer {
  const redis = required(ctx, 'redis');
  if (redis.service === undefined)
    throw new Error('vars.redis.service is not set: an RDB restore stops and starts redis-server through it');
  const service = ctx.service(redis.service);
  return {
    stop: () => service.stop({ signal: ctx.signal }),
    start: () => service.start({ signal: ctx.signal }),
    ...(redis.dataDir !== undefined ? { dataDir: redis.dataDir } : {}),
    dbFilename: redis.dbFilename,
  };
}
