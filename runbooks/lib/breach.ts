// What the security-breach runbook (second plan, Procedure 4) needs beyond the other
// recoveries: choosing the newest backups taken entirely BEFORE the intruder got in, keeping
// the trading halt in force across a Redis restore (the pre-breach dataset has no halt in it),
// keeping the halt audit log continuous across a PostgreSQL restore (the pre-breach database
// has none of the records written since), setting aside files the intruder added (a restore
// that only puts back what is missing would leave a web shell in place), and the evidence
// file of the assessment.

import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fingerprintOf as filesFingerprintOf, type ListedEntry } from '@drkit/file-archive';
import { POSTGRES_KIND } from '@drkit/postgres-backup';
import { REDIS_LOGICAL_KIND, REDIS_RDB_KIND } from '@drkit/redis-backup';
import type { BaseContext } from '@drkit/runbook';
import type { Catalog, Manifest, Store } from '@drkit/s3-store';
import { AUDIT_TABLE, haltKeys, migrateAudit } from '@drkit/treasury-halt';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { platformOf } from './platform.ts';

/** The breach time of the params as a date (the schema has checked it parses). */
export function breachDate(iso: string): Date {
  return new Date(iso);
}

/** A backup as the steps pass it on. */
export interface ChosenBackup {
  id: string;
  kind: string;
  createdAt: string;
  completedAt: string;
}

/** The kinds a breach recovery restores, from what the environment configures. */
export function restoreKinds(ctx: BaseContext<unknown>): { kind: string; what: string }[] {
  const p = platformOf(ctx);
  const kinds: { kind: string; what: string }[] = [];
  if (p.postgres) kinds.push({ kind: POSTGRES_KIND, what: 'the database' });
  // An RDB restore restarts Redis through its service; without one, the export goes into the running server.
  if (p.redis) kinds.push(p.redis.service ? { kind: REDIS_RDB_KIND, what: 'Redis' } : { kind: REDIS_LOGICAL_KIND, what: 'Redis' });
  if (p.files) kinds.push({ kind: 'files', what: 'the user files' });
  return kinds;
}

/** What {@link newestBefore} found for one kind. */
export interface BeforeResult {
  chosen?: Manifest;
  /** Newer candidates that were passed over, and why. */
  skipped: { id: string; why: string }[];
  /** The oldest backup of the kind, whatever its time (to say how far back the store goes). */
  oldest?: Manifest;
}

/**
 * The newest usable backup of `kind` whose content was captured entirely before `before`:
 * created before it AND completed before it (a dump or an archive still being written when
 * the intruder got in may hold what they did). Snapshots (the damaged states kept by earlier
 * recoveries), backups whose verification failed, backups whose object is gone and, with
 * `accept`, backups of something else are passed over.
 */
export async function newestBefore(
  catalog: Catalog,
  store: Store,
  kind: string,
  before: Date,
  accept?: (manifest: Manifest) => string | undefined,
): Promise<BeforeResult> {
  const all = await catalog.list({ kind });
  const result: BeforeResult = { skipped: [] };
  const mine = accept ? all.filter((m) => accept(m) === undefined) : all;
  if (mine[0] !== undefined) result.oldest = mine[0];
  for (const manifest of [...all].reverse()) {
    if (Date.parse(manifest.createdAt) >= before.getTime()) continue;
    const other = accept?.(manifest);
    let why: string | undefined;
    if (other !== undefined) why = other;
    else if (manifest.labels?.snapshot === 'true') why = 'a snapshot of a damaged state, not a backup';
    else if (manifest.verification?.status === 'failed') why = 'its verification failed';
    else if (Date.parse(manifest.completedAt) > before.getTime())
      why = `it was still being written at the breach time (completed ${manifest.completedAt}): it may hold the intruder's changes`;
    else {
      const info = await store.head(manifest.object.key);
      if (info?.size !== manifest.object.size)
        why = info ? `its object has ${info.size} bytes, not ${manifest.object.size}` : 'its object is gone';
    }
    if (why === undefined) {
      result.chosen = manifest;
      return result;
    }
    result.skipped.push({ id: manifest.id, why });
  }
  return result;
}

/** A files backup of another directory is no backup of this one. */
export function filesOf(root: string): (manifest: Manifest) => string | undefined {
  return (manifest) => {
    try {
      const f = filesFingerprintOf(manifest);
      return f.root === root ? undefined : `a backup of another directory (${f.root})`;
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  };
}

/** A backup for step outputs. */
export function chosenOf(manifest: Manifest): ChosenBackup {
  return { id: manifest.id, kind: manifest.kind, createdAt: manifest.createdAt, completedAt: manifest.completedAt };
}

// ---------------------------------------------------------------------------------------------
// The halt across a Redis restore

/** The halt's keys as they were before a restore. */
export interface SavedHalt {
  state: Record<string, string>;
  epoch: string | null;
  workers: string[];
}

/** Reads the halt's state hash, epoch counter and registered workers. */
export async function saveHalt(redis: Redis, prefix: string): Promise<SavedHalt> {
  const keys = haltKeys(prefix);
  const [state, epoch, workers] = await Promise.all([redis.hgetall(keys.state), redis.get(keys.epoch), redis.smembers(keys.workers)]);
  return { state, epoch, workers };
}

// One script, so that no guard reads a state between the keys: the epoch counter never goes
// back (fencing), the state hash and the worker registry are what they were before the restore.
const PUT_BACK = `
local saved = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if saved > current then redis.call('SET', KEYS[2], ARGV[1]) end
local n = tonumber(ARGV[2])
redis.call('DEL', KEYS[1])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + 2 * n)) end
redis.call('DEL', KEYS[3])
if #ARGV > 2 + 2 * n then redis.call('SADD', KEYS[3], unpack(ARGV, 3 + 2 * n)) end
return 1`;

/**
 * Puts the halt's keys back as {@link saveHalt} read them, after a restore replaced Redis's
 * dataset with one from before the halt. The guards never saw the halt lifted: they ignore
 * a state with a lower epoch, and this one has the epoch they know.
 */
export async function putBackHalt(redis: Redis, prefix: string, saved: SavedHalt): Promise<void> {
  const keys = haltKeys(prefix);
  const fields = Object.entries(saved.state).flat();
  await redis.eval(
    PUT_BACK,
    3,
    keys.state,
    keys.epoch,
    keys.workers,
    saved.epoch ?? '0',
    String(fields.length / 2),
    ...fields,
    ...saved.workers,
  );
}

/**
 * Runs `work` (a restore that restarts Redis on a dataset from before the halt) while a watcher
 * on its own connection puts the halt's keys back the moment Redis answers without them, so
 * that a worker starting meanwhile never finds trading allowed. The guards already running
 * keep refusing anyway: they never go back to a lower epoch. Answers the work's result and
 * how many times the halt had to be put back.
 */
export async function holdHaltWhile<T>(
  url: string,
  prefix: string,
  saved: SavedHalt,
  work: () => Promise<T>,
  onPutBack: (message: string) => void,
): Promise<{ result: T; putBacks: number }> {
  const keys = haltKeys(prefix);
  // Fail fast while Redis is away, reconnect every 100 ms: the watcher polls, it never queues.
  const redis = new Redis(url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 1000, retryStrategy: () => 100 });
  redis.on('error', () => {
    // Expected while the restore has Redis stopped.
  });
  const want = Number(saved.epoch ?? 0);
  let stop = false;
  let putBacks = 0;
  const watch = (async () => {
    while (!stop) {
      try {
        const [halted, epoch] = await Promise.all([redis.hget(keys.state, 'halted'), redis.get(keys.epoch)]);
        if (halted !== '1' || Number(epoch ?? 0) < want) {
          await putBackHalt(redis, prefix, saved);
          putBacks++;
          onPutBack(
            `Redis answered without the halt (halted ${halted ?? 'unset'}, epoch ${epoch ?? 'unset'}): put it back at epoch ${want}`,
          );
        }
      } catch {
        // Stopped, starting or loading: try again.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    return { result: await work(), putBacks };
  } finally {
    stop = true;
    await watch;
    redis.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// The audit log across a PostgreSQL restore

/** One audit record as stored. */
export interface AuditRecord {
  id: string;
  at: string;
  action: string;
  actor: string;
  approver: string | null;
  reason: string | null;
  scope: string | null;
  epoch: string | null;
  detail: Record<string, unknown>;
}

/** Whether the audit table exists. */
async function hasAudit(db: pg.Pool | pg.PoolClient): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(`SELECT to_regclass('${AUDIT_TABLE}') IS NOT NULL AS ok`);
  return rows[0]?.ok === true;
}

/** Audit records at or after `since` (all of them when null), oldest first. */
export async function auditRecordsSince(db: pg.Pool, since: Date | null): Promise<AuditRecord[]> {
  if (!(await hasAudit(db))) return [];
  const { rows } = await db.query<AuditRecord>(
    `SELECT id::text AS id, to_json(at)#>>'{}' AS at, action, actor, approver, reason, scope, epoch::text AS epoch, detail
       FROM ${AUDIT_TABLE} WHERE $1::timestamptz IS NULL OR at >= $1::timestamptz ORDER BY id`,
    [since?.toISOString() ?? null],
  );
  return rows;
}

/**
 * Appends to the restored audit log the records that the restore took away: those with an id
 * above the highest the restored table holds (ids only grow, so they are exactly the records
 * written after the backup's snapshot). They keep their id, time and content, with
 * `detail.carriedOver` naming the backup, and the id sequence is moved past them. The log is
 * append-only: nothing in it is changed.
 */
export async function carryOverAudit(
  db: pg.Pool,
  records: readonly AuditRecord[],
  backupId: string,
): Promise<{ carried: number; from: string | null }> {
  await migrateAudit(db);
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ max: string | null }>(`SELECT max(id)::text AS max FROM ${AUDIT_TABLE}`);
    const max = BigInt(rows[0]?.max ?? '0');
    const missing = records.filter((r) => BigInt(r.id) > max);
    for (const r of missing)
      await client.query(
        `INSERT INTO ${AUDIT_TABLE} (id, at, action, actor, approver, reason, scope, epoch, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [r.id, r.at, r.action, r.actor, r.approver, r.reason, r.scope, r.epoch, JSON.stringify({ ...r.detail, carriedOver: backupId })],
      );
    await client.query(`SELECT setval(pg_get_serial_sequence('${AUDIT_TABLE}', 'id'), greatest((SELECT max(id) FROM ${AUDIT_TABLE}), 1))`);
    await client.query('COMMIT');
    return { carried: missing.length, from: missing[0]?.id ?? null };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** The newest kept damaged copy of `database` (restorePostgres names them `<db>_damaged_<time>`). */
export async function newestDamaged(db: pg.Pool, database: string): Promise<string | null> {
  const { rows } = await db.query<{ datname: string }>(
    'SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname DESC LIMIT 1',
    [`${database}_damaged_`],
  );
  return rows[0]?.datname ?? null;
}

// ---------------------------------------------------------------------------------------------
// Files the intruder added

/** Every file and symlink under `root`, relative to it (directories are walked, not listed). */
export async function walkTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await visit(path);
      else out.push(relative(root, path));
    }
  };
  await visit(root);
  return out.sort();
}

/** Files under `root` that the backup does not have. */
export async function extrasOf(root: string, entries: readonly ListedEntry[]): Promise<string[]> {
  const known = new Set(entries.filter((e) => e.type !== 'directory').map((e) => e.path));
  return (await walkTree(root)).filter((path) => !known.has(path));
}

/**
 * Moves files the backup does not have out of the live tree into `aside`, at their relative
 * paths: evidence, never deleted (a rename, on the same file system as the tree).
 */
export async function setAside(root: string, paths: readonly string[], aside: string): Promise<void> {
  for (const path of paths) {
    const to = join(aside, path);
    await mkdir(dirname(to), { recursive: true, mode: 0o700 });
    await rename(join(root, path), to);
  }
}

// ---------------------------------------------------------------------------------------------
// Evidence

/** What the assessment collected. */
export interface Evidence {
  runId: string;
  environment: string;
  breachTime: string;
  collectedAt: string;
  audit: AuditRecord[];
  hook: { ran: boolean; command: string | null; output: string };
}

const fence = (text: string) => text.replace(/```/g, '`\u200b``');

/** The evidence file: the halt audit records since the breach and the collected audit and access logs. */
export async function writeEvidence(path: string, evidence: Evidence): Promise<void> {
  const lines = [
    '# Security breach: evidence',
    '',
    `Run ${evidence.runId} in ${evidence.environment}. Breach time (intruder in since): ${evidence.breachTime}. Collected at ${evidence.collectedAt}.`,
    '',
    `## Treasury halt audit log since the breach (${evidence.audit.length} records)`,
    '',
  ];
  if (evidence.audit.length === 0) lines.push('None.');
  else {
    lines.push('| Id | At | Action | Actor | Approver | Reason | Epoch |', '| --- | --- | --- | --- | --- | --- | --- |');
    const cell = (v: string | null) => (v ?? '').replace(/\r\n|\r|\n/g, ' ').replace(/[|`]/g, '\\$&');
    for (const r of evidence.audit)
      lines.push(
        `| ${r.id} | ${r.at} | ${cell(r.action)} | ${cell(r.actor)} | ${cell(r.approver)} | ${cell(r.reason)} | ${r.epoch ?? ''} |`,
      );
  }
  lines.push('', '## Audit and access logs (vars.hooks.collectLogs)', '');
  if (!evidence.hook.ran)
    lines.push('No collectLogs hook is configured: collect the audit and access logs by hand and attach them to the incident.');
  else
    lines.push(
      `Command: \`${evidence.hook.command ?? ''}\` with DRKIT_SINCE=${evidence.breachTime}`,
      '',
      '```',
      fence(evidence.hook.output),
      '```',
    );
  lines.push('');
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, lines.join('\n'), { mode: 0o600 });
}
