import {
  type AuditEvent,
  DEFAULT_PREFIX,
  engageHalt,
  HaltError,
  haltStatus,
  isHaltError,
  listAudit,
  listWorkers,
  migrateAudit,
  releaseHalt,
  verifyHalted,
  type WorkerHeartbeat,
} from '@drkit/treasury-halt';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { CliIo } from '../command.js';
import { defineCommand } from '../command.js';
import { EXIT, UsageError } from '../errors.js';

const REDACTED = '***';

const redisOption = {
  redis: {
    type: 'string',
    value: 'URL',
    description: 'the Redis holding the halt state: redis://[:password@]host:6379[/db] (default $REDIS_URL)',
  },
} as const;
const pgOption = {
  pg: {
    type: 'string',
    value: 'URL',
    description: 'the PostgreSQL holding the audit log: postgres://user:password@host/db (default $DATABASE_URL)',
  },
} as const;
const prefixOption = {
  prefix: { type: 'string', value: 'PREFIX', description: `key prefix of this trading system in Redis (default ${DEFAULT_PREFIX})` },
} as const;

const CONNECTIONS_HELP = `Connections: --redis URL or REDIS_URL (the halt state), --pg URL or DATABASE_URL (the
append-only audit log, schema drkit_treasury). Passwords in the URLs are never printed.`;

// ---------------------------------------------------------------------------------------------
// Secrets and messages

/** A URL for people: credentials and the query (which may carry a password) left out. */
export function displayUrl(url: string): string {
  if (url.startsWith('/')) return url;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '<invalid URL>';
  }
  const auth = parsed.username || parsed.password ? `${REDACTED}@` : '';
  return `${parsed.protocol}//${auth}${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}

/** The secrets a connection URL carries: its password (raw and decoded) and a `password=` query value. */
function secretsOf(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const parsed = new URL(url);
    const found = [parsed.password, safeDecode(parsed.password), parsed.searchParams.get('password') ?? ''];
    return found.filter((s) => s.length >= 3);
  } catch {
    return [];
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** `text` without credentials: `scheme://user:password@` and every known secret are masked. */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, `$1${REDACTED}@`).replace(/([?&]password=)[^&\s]*/gi, `$1${REDACTED}`);
  for (const secret of secrets) {
    for (const form of new Set([secret, encodeURIComponent(secret)])) if (form) out = out.split(form).join(REDACTED);
  }
  return out;
}

/** The message of anything thrown; connection failures often carry their reason only in `code` or inner errors. */
function messageOf(error: unknown): string {
  const err = error as { message?: unknown; code?: unknown; errors?: unknown } | null;
  const message = typeof err?.message === 'string' ? err.message : String(error);
  if (message.trim() !== '') return message;
  const inner = Array.isArray(err?.errors) ? (err.errors as unknown[]).map(messageOf).filter(Boolean) : [];
  if (inner.length > 0) return inner.join('; ');
  return typeof err?.code === 'string' ? err.code : 'unknown error';
}

function line(io: CliIo, text: string): void {
  io.stderr.write(`drkit: ${text}\n`);
}

/** The exit code of a failure of the kill switch. */
function exitCodeOf(error: unknown): number {
  return isHaltError(error, 'HALT_TWO_PERSON_RULE') || isHaltError(error, 'HALT_ORDERS_IN_FLIGHT') ? EXIT.REFUSED : EXIT.FAILED;
}

// ---------------------------------------------------------------------------------------------
// Connections

interface Connections {
  redis: Redis;
  /** Why the Redis connection failed, when it did. */
  redisError: unknown;
  redisWhere: string;
  db: pg.Pool | undefined;
  dbWhere: string | undefined;
  prefix: string;
  secrets: string[];
}

function resolveUrl(value: string | undefined, env: string | undefined, flag: string, envName: string, what: string): string {
  const url = value ?? env;
  if (url === undefined || url.trim() === '') throw new UsageError(`no ${what}: pass ${flag} URL or set ${envName}`);
  return url.trim();
}

function checkScheme(url: string, schemes: readonly string[], flag: string, example: string): void {
  if (url.startsWith('/') && flag === '--redis') return; // a unix socket path
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new UsageError(`${flag} is not a valid URL (expected e.g. ${example})`);
  }
  if (!schemes.includes(protocol))
    throw new UsageError(`${flag} must be a ${schemes.map((s) => `${s}//`).join(' or ')} URL (got ${protocol}//…; e.g. ${example})`);
}

/**
 * A Redis client that fails fast: one connection attempt (2 s), no reconnect loop, no offline
 * queue. A kill switch must say at once that Redis is unreachable instead of waiting on it.
 */
const CONNECT_DEADLINE_MS = 3000;

async function connectRedis(url: string): Promise<{ redis: Redis; error: unknown }> {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 2000,
    retryStrategy: () => null,
  });
  // ioredis reports the cause (ECONNREFUSED, WRONGPASS) as an 'error' event and would print it
  // to the console without a listener; the first one is kept for the message.
  let cause: unknown;
  redis.on('error', (error: unknown) => {
    cause ??= error;
  });
  // connectTimeout only covers the TCP connect: a server that accepts and never answers would
  // hold the ready check forever, so the whole connect gets a deadline too.
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from Redis within ${CONNECT_DEADLINE_MS} ms`)), CONNECT_DEADLINE_MS);
      }),
    ]);
    return { redis, error: undefined };
  } catch (error) {
    return { redis, error: cause ?? error };
  } finally {
    clearTimeout(timer);
  }
}

function createPool(url: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    connectionTimeoutMillis: 3000,
    query_timeout: 15_000,
    application_name: 'drkit halt',
  });
  // An idle client losing its connection must not crash the command.
  pool.on('error', () => {});
  return pool;
}

async function closeAll(connections: Connections): Promise<void> {
  const { redis, db } = connections;
  const quitting =
    redis.status === 'ready'
      ? Promise.race([redis.quit(), new Promise((resolve) => setTimeout(resolve, 1000).unref())])
          .catch(() => {})
          .finally(() => redis.disconnect())
      : Promise.resolve(redis.disconnect());
  await Promise.all([quitting, db?.end().catch(() => {})]);
}

/**
 * Opens the connections a halt command needs, runs `body`, and closes them whatever happens
 * (the process must be able to exit). Failures of the kill switch are printed here, with any
 * password masked, and turned into exit codes.
 */
async function withHalt(
  options: { redis?: string | undefined; pg?: string | undefined; prefix?: string | undefined },
  io: CliIo,
  need: { pg: boolean },
  body: (connections: Connections) => Promise<number>,
): Promise<number> {
  const redisUrl = resolveUrl(options.redis, io.env.REDIS_URL, '--redis', 'REDIS_URL', 'Redis');
  const pgUrl = need.pg ? resolveUrl(options.pg, io.env.DATABASE_URL, '--pg', 'DATABASE_URL', 'PostgreSQL') : undefined;
  checkScheme(redisUrl, ['redis:', 'rediss:'], '--redis', 'redis://127.0.0.1:6379');
  if (pgUrl) checkScheme(pgUrl, ['postgres:', 'postgresql:'], '--pg', 'postgres://user@host/db');
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (prefix === '') throw new UsageError('--prefix cannot be empty');
  const secrets = [...secretsOf(redisUrl), ...secretsOf(pgUrl)];
  let connections: Connections | undefined;
  try {
    const { redis, error } = await connectRedis(redisUrl);
    connections = {
      redis,
      redisError: error,
      redisWhere: displayUrl(redisUrl),
      db: pgUrl ? createPool(pgUrl) : undefined,
      dbWhere: pgUrl ? displayUrl(pgUrl) : undefined,
      prefix,
      secrets,
    };
    return await body(connections);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as { code?: unknown }).code;
    const message = redact(messageOf(error), secrets);
    line(io, typeof code === 'string' ? `error ${code}: ${message}` : `error: ${message}`);
    return exitCodeOf(error);
  } finally {
    if (connections) await closeAll(connections);
  }
}

/** Throws HALT_REDIS_IO when Redis could not be reached (for commands that cannot go on without it). */
function requireRedis(c: Connections): void {
  if (c.redisError !== undefined)
    throw new HaltError('HALT_REDIS_IO', `cannot reach Redis at ${c.redisWhere}: ${messageOf(c.redisError)}`, { cause: c.redisError });
}

function requireDb(c: Connections): pg.Pool {
  if (!c.db) throw new Error('internal: no PostgreSQL pool');
  return c.db;
}

function requiredText(value: string | undefined, flag: string, command: string, what: string): string {
  if (value === undefined || value.trim() === '')
    throw new UsageError(`'drkit halt ${command}' needs ${flag} (${what}, for the audit log)`);
  return value.trim();
}

const iso = (ms: number | undefined): string | null => (ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString());

function age(ms: number): string {
  if (ms < 0) return 'in the future (clock skew)';
  if (ms < 1000) return `${ms} ms ago`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s ago`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min ago`;
  return `${(ms / 3_600_000).toFixed(1)} h ago`;
}

// ---------------------------------------------------------------------------------------------
// engage

/** `drkit halt engage`: stop trading everywhere, audited. */
export const haltEngageCommand = defineCommand({
  path: ['halt', 'engage'],
  summary: 'engage the trading halt (kill switch): every guarded worker refuses new orders',
  options: {
    reason: { type: 'string', value: 'TEXT', description: 'why (recorded in the audit log)' },
    actor: { type: 'string', value: 'NAME', description: 'who engages it (recorded in the audit log)' },
    scope: { type: 'string', value: 'SCOPE', description: 'what is halted, e.g. exchange:binance (default all)' },
    json: { type: 'boolean', description: 'print the outcome as JSON' },
    ...redisOption,
    ...pgOption,
    ...prefixOption,
  },
  details: `
The request is recorded in the audit log first, then the halt is set atomically in Redis with a
new fencing epoch and announced to the workers. Engaging while a halt is in force joins it (same
epoch) and records the request. Then run 'drkit halt verify' to confirm every worker stopped.

Exit 1 with "THE HALT IS NOT IN FORCE" when Redis cannot be reached: the request is audited,
but trading must be stopped by other means. Exit 1 with "the halt IS in force" when only the
audit log (PostgreSQL) failed: record who and why by hand.

${CONNECTIONS_HELP}

Example:
  drkit halt engage --reason "withdrawals to unknown address" --actor alice`,
  async run({ options, io }) {
    const reason = requiredText(options.reason, '--reason TEXT', 'engage', 'why');
    const actor = requiredText(options.actor, '--actor NAME', 'engage', 'who');
    return withHalt(options, io, { pg: true }, async (c) => {
      const db = requireDb(c);
      // The audit log must not stand between the operator and the halt: a failed migration is
      // reported and the halt goes ahead (the library then reports HALT_NOT_AUDITED).
      await migrateAudit(db).catch((error: unknown) => {
        line(io, `warning: the audit log at ${c.dbWhere} is not usable (${redact(messageOf(error), c.secrets)}); engaging anyway`);
      });
      // Even when Redis is unreachable the (unconnected) client goes to engageHalt: the request is
      // then audited and HALT_NOT_PROPAGATED says the halt is not in force.
      if (c.redisError !== undefined) line(io, `Redis at ${c.redisWhere} is unreachable: ${redact(messageOf(c.redisError), c.secrets)}`);
      const result = await engageHalt({
        reason,
        actor,
        ...(options.scope !== undefined ? { scope: options.scope } : {}),
        redis: c.redis,
        db,
        prefix: c.prefix,
      });
      if (options.json)
        io.stdout.write(
          `${JSON.stringify({ halted: true, epoch: result.epoch, joined: !result.created, created: result.created, auditId: result.auditId })}\n`,
        );
      else
        io.stdout.write(
          result.created
            ? `halt engaged: epoch ${result.epoch}\n`
            : `halt already in force: joined it, epoch ${result.epoch} (your request is recorded)\n`,
        );
      line(io, "trading is halted in Redis; run 'drkit halt verify' to confirm every trading worker has stopped");
      return EXIT.OK;
    });
  },
});

// ---------------------------------------------------------------------------------------------
// status

function workerJson(id: string, heartbeat: WorkerHeartbeat | undefined, now: number) {
  return {
    id,
    alive: heartbeat !== undefined,
    epoch: heartbeat?.epoch ?? null,
    halted: heartbeat?.halted ?? null,
    inFlight: heartbeat?.inFlight ?? null,
    lastHeartbeat: heartbeat ? iso(heartbeat.at) : null,
    heartbeatAgeMs: heartbeat ? now - heartbeat.at : null,
    host: heartbeat?.host ?? null,
    pid: heartbeat?.pid ?? null,
  };
}

/** `drkit halt status`: the halt state and the workers' heartbeats. */
export const haltStatusCommand = defineCommand({
  path: ['halt', 'status'],
  summary: 'show whether trading is halted, its epoch, and what each trading worker last reported',
  options: {
    json: { type: 'boolean', description: 'print the state as JSON (halted, epoch, reason, actor, scope, since, workers)' },
    ...redisOption,
    ...prefixOption,
  },
  details: `
Reads Redis only (no PostgreSQL needed). A worker shows the epoch it has seen, whether it
considers trading halted, its orders in flight and the age of its last heartbeat; an expired
heartbeat means the worker stopped or is cut off from Redis.

Connection: --redis URL or REDIS_URL.`,
  async run({ options, io }) {
    return withHalt(options, io, { pg: false }, async (c) => {
      requireRedis(c);
      const deps = { redis: c.redis, prefix: c.prefix };
      const [state, workers] = await Promise.all([haltStatus(deps), listWorkers(deps)]);
      const now = Date.now();
      if (options.json) {
        io.stdout.write(
          `${JSON.stringify(
            {
              halted: state.halted,
              epoch: state.epoch,
              reason: state.reason ?? null,
              actor: state.actor ?? null,
              scope: state.scope ?? null,
              since: iso(state.since),
              prefix: c.prefix,
              workers: workers.map((w) => workerJson(w.id, w.heartbeat, now)),
            },
            null,
            2,
          )}\n`,
        );
        return EXIT.OK;
      }
      const when = state.since !== undefined ? `${iso(state.since)} (${age(now - state.since)})` : undefined;
      const since = when ? ` since ${when}` : '';
      if (state.halted) {
        io.stdout.write(`HALTED (epoch ${state.epoch})${since}\n`);
        io.stdout.write(`  scope:  ${state.scope ?? 'all'}\n  by:     ${state.actor ?? '?'}\n  reason: ${state.reason ?? '?'}\n`);
      } else if (state.epoch === 0) io.stdout.write('not halted: no halt was ever engaged (epoch 0)\n');
      else {
        io.stdout.write(`not halted (epoch ${state.epoch}): released${when ? ` at ${when}` : ''}\n`);
        if (state.actor) io.stdout.write(`  by:     ${state.actor}\n`);
        if (state.reason) io.stdout.write(`  reason: ${state.reason}\n`);
      }
      if (workers.length === 0) io.stdout.write(`workers: none registered under ${c.prefix}\n`);
      else {
        io.stdout.write(`workers (${workers.length}):\n`);
        const width = Math.max(...workers.map((w) => w.id.length));
        for (const { id, heartbeat: hb } of workers)
          io.stdout.write(
            hb
              ? `  ${id.padEnd(width)}  epoch ${hb.epoch}  ${hb.halted ? 'halted ' : 'trading'}  in flight ${hb.inFlight}  heartbeat ${age(now - hb.at)}\n`
              : `  ${id.padEnd(width)}  no heartbeat (expired: stopped or cut off from Redis)\n`,
          );
      }
      return EXIT.OK;
    });
  },
});

// ---------------------------------------------------------------------------------------------
// verify

function parseSeconds(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+(\.\d+)?$/.test(value.trim())) throw new UsageError(`${flag} must be a number of seconds >= 0 (got '${value}')`);
  return Number(value) * 1000;
}

/** `drkit halt verify`: wait until every worker acknowledged the halt. */
export const haltVerifyCommand = defineCommand({
  path: ['halt', 'verify'],
  summary: 'check that the halt is in force and acknowledged by every registered trading worker',
  options: {
    timeout: { type: 'string', value: 'SECONDS', description: 'how long to wait for the workers to acknowledge (default 10)' },
    actor: { type: 'string', value: 'NAME', description: 'who verifies (recorded in the audit log; default verify)' },
    json: { type: 'boolean', description: 'print the verdict as JSON' },
    ...redisOption,
    ...pgOption,
    ...prefixOption,
  },
  details: `
Waits until every registered worker reports the halt's epoch, halted, with no order in flight,
or until --timeout. Exit 0 only then; exit 1 when no halt is engaged or when workers have not
acknowledged, naming each one and why (no heartbeat, an older epoch, orders in flight). The
outcome is recorded in the audit log.

${CONNECTIONS_HELP}`,
  async run({ options, io }) {
    const timeoutMs = parseSeconds(options.timeout, '--timeout', 10_000);
    return withHalt(options, io, { pg: true }, async (c) => {
      requireRedis(c);
      const db = requireDb(c);
      await migrateAudit(db);
      const result = await verifyHalted({
        redis: c.redis,
        prefix: c.prefix,
        db,
        timeoutMs,
        ...(options.actor !== undefined && options.actor.trim() !== '' ? { actor: options.actor.trim() } : {}),
      });
      // verifyHalted answers at once when no halt is engaged; tell that apart from pending workers.
      const engaged = result.halted || (result.epoch > 0 && (await haltStatus({ redis: c.redis, prefix: c.prefix })).halted);
      if (options.json)
        io.stdout.write(
          `${JSON.stringify(
            {
              halted: result.halted,
              engaged,
              epoch: result.epoch,
              elapsedMs: result.elapsedMs,
              workers: result.workers.map((w) => ({ id: w.id, acknowledged: w.acknowledged, reason: w.reason ?? null })),
              pending: result.pending.map((w) => ({ id: w.id, reason: w.reason ?? null })),
            },
            null,
            2,
          )}\n`,
        );
      else if (engaged)
        for (const w of result.workers)
          io.stdout.write(w.acknowledged ? `ok       ${w.id}\n` : `PENDING  ${w.id}: ${w.reason ?? 'not acknowledged'}\n`);
      if (result.halted) {
        if (result.workers.length === 0)
          line(io, `warning: no trading worker is registered under prefix ${c.prefix}; check that the workers use this prefix`);
        line(io, `verified: the halt (epoch ${result.epoch}) is in force and acknowledged by ${result.workers.length} worker(s)`);
        return EXIT.OK;
      }
      if (!engaged) {
        line(io, `error HALT_NOT_ENGAGED: no halt is engaged (epoch ${result.epoch}): trading is allowed`);
        return EXIT.FAILED;
      }
      line(
        io,
        `error HALT_NOT_ACKNOWLEDGED: the halt (epoch ${result.epoch}) is not acknowledged after ${(result.elapsedMs / 1000).toFixed(1)} s by ${
          result.pending.length
        } worker(s): ${result.pending.map((p) => `${p.id} (${p.reason ?? 'not acknowledged'})`).join('; ')}. Stop those workers by other means if they do not catch up.`,
      );
      return EXIT.FAILED;
    });
  },
});

// ---------------------------------------------------------------------------------------------
// release

/** `drkit halt release`: lift the halt, two-person rule. */
export const haltReleaseCommand = defineCommand({
  path: ['halt', 'release'],
  summary: 'release the halt (two people: --actor and a different --approver), audited',
  options: {
    actor: { type: 'string', value: 'NAME', description: 'who releases it' },
    approver: { type: 'string', value: 'NAME', description: 'who approves the release (must be someone else)' },
    reason: { type: 'string', value: 'TEXT', description: 'why trading may resume' },
    json: { type: 'boolean', description: 'print the outcome as JSON' },
    ...redisOption,
    ...pgOption,
    ...prefixOption,
  },
  details: `
Refused with exit 3 when the approver is the actor (two-person rule) or while a worker reports
orders in flight; exit 1 when no halt is engaged. Every request and refusal is audited. The
release gets a new epoch, so orders prepared during the halt are still refused.

${CONNECTIONS_HELP}

Example:
  drkit halt release --actor alice --approver bob --reason "address allow-list fixed"`,
  async run({ options, io }) {
    const actor = requiredText(options.actor, '--actor NAME', 'release', 'who');
    const approver = requiredText(options.approver, '--approver NAME', 'release', 'a second person');
    const reason = requiredText(options.reason, '--reason TEXT', 'release', 'why');
    return withHalt(options, io, { pg: true }, async (c) => {
      const db = requireDb(c);
      await migrateAudit(db);
      // An unreachable Redis still goes through releaseHalt, so the request is audited; the halt stays.
      if (c.redisError !== undefined) line(io, `Redis at ${c.redisWhere} is unreachable: ${redact(messageOf(c.redisError), c.secrets)}`);
      const result = await releaseHalt({ actor, approver, reason, redis: c.redis, db, prefix: c.prefix });
      if (options.json) io.stdout.write(`${JSON.stringify({ halted: false, epoch: result.epoch, auditId: result.auditId })}\n`);
      else io.stdout.write(`halt released: epoch ${result.epoch} (orders prepared before the release stay refused)\n`);
      return EXIT.OK;
    });
  },
});

// ---------------------------------------------------------------------------------------------
// audit

function auditJson(e: AuditEvent) {
  return {
    id: e.id,
    at: e.at.toISOString(),
    action: e.action,
    actor: e.actor,
    approver: e.approver,
    reason: e.reason,
    scope: e.scope,
    epoch: e.epoch,
    detail: e.detail,
  };
}

/** `drkit halt audit`: the audit log, newest first. */
export const haltAuditCommand = defineCommand({
  path: ['halt', 'audit'],
  summary: 'show the halt audit log, newest first (engage, release, refusals, verifications)',
  options: {
    limit: { type: 'string', value: 'N', description: 'at most N events (default 100)' },
    json: { type: 'boolean', description: 'print the events as a JSON array' },
    ...pgOption,
  },
  details: `
Reads PostgreSQL only (--pg URL or DATABASE_URL). The log is append-only: rows cannot be
changed or deleted.`,
  async run({ options, io }) {
    let limit = 100;
    if (options.limit !== undefined) {
      if (!/^\d+$/.test(options.limit) || Number(options.limit) < 1)
        throw new UsageError(`--limit must be a whole number >= 1 (got '${options.limit}')`);
      limit = Number(options.limit);
    }
    const pgUrl = resolveUrl(options.pg, io.env.DATABASE_URL, '--pg', 'DATABASE_URL', 'PostgreSQL');
    checkScheme(pgUrl, ['postgres:', 'postgresql:'], '--pg', 'postgres://user@host/db');
    const secrets = secretsOf(pgUrl);
    const db = createPool(pgUrl);
    try {
      // Read-only: a database that never saw a halt has no audit table yet.
      const { rows } = await db.query<{ table: string | null }>(`SELECT to_regclass('drkit_treasury.halt_audit')::text AS table`);
      const events = rows[0]?.table ? await listAudit(db, { limit }) : [];
      if (options.json) {
        io.stdout.write(`${JSON.stringify(events.map(auditJson), null, 2)}\n`);
        return EXIT.OK;
      }
      if (events.length === 0) {
        line(io, 'the halt audit log is empty');
        return EXIT.OK;
      }
      const table = events.map((e) => [
        e.at.toISOString(),
        e.action,
        e.epoch === null ? '-' : String(e.epoch),
        e.actor,
        e.approver ?? '-',
        e.reason ?? '-',
      ]);
      const header = ['AT', 'ACTION', 'EPOCH', 'ACTOR', 'APPROVER', 'REASON'];
      const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => (r[i] as string).length)));
      for (const row of [header, ...table])
        io.stdout.write(
          `${row
            .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] as number)))
            .join('  ')
            .trimEnd()}\n`,
        );
      return EXIT.OK;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const message = redact(messageOf(error), secrets);
      line(
        io,
        typeof code === 'string' && code.startsWith('HALT_')
          ? `error ${code}: ${message}`
          : `error HALT_AUDIT_IO: reading the audit log at ${displayUrl(pgUrl)} failed: ${message}`,
      );
      return EXIT.FAILED;
    } finally {
      await db.end().catch(() => {});
    }
  },
});
