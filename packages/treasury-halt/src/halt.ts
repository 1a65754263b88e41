import type { Redis } from 'ioredis';
import { type Queryable, recordAudit } from './audit.js';
import { HaltError, messageOf } from './errors.js';
import { DEFAULT_PREFIX, type HaltState, haltKeys, parseState, type WorkerHeartbeat } from './keys.js';

/** How long a Redis command may take before the kill switch treats Redis as unavailable. @default 2000 */
export const DEFAULT_REDIS_TIMEOUT_MS = 2000;

/** The connections the kill switch works with. */
export interface HaltDeps {
  redis: Redis;
  /** PostgreSQL holding the audit log (migrated with `migrateAudit`). */
  db: Queryable;
  /** @default "drkit:halt:" */
  prefix?: string;
  /** @default 2000 */
  redisTimeoutMs?: number;
}

/** Runs a Redis call with a deadline: a kill switch cannot wait on a reconnect loop. */
export async function withDeadline<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  work.catch(() => {});
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer from Redis within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function required(value: string | undefined, what: string): string {
  if (typeof value !== 'string' || value.trim() === '')
    throw new HaltError('HALT_INVALID_INPUT', `${what} is required: say who and why, for the audit log`);
  return value.trim();
}

// Atomic: a second engage keeps the one halt (and its epoch) instead of starting another.
const ENGAGE = `
if redis.call('HGET', KEYS[1], 'halted') == '1' then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'epoch'))}
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'halted', '1', 'epoch', epoch, 'reason', ARGV[1], 'actor', ARGV[2], 'scope', ARGV[3], 'since', ARGV[4])
redis.call('PUBLISH', KEYS[3], cjson.encode({halted = true, epoch = epoch, reason = ARGV[1], actor = ARGV[2], scope = ARGV[3], since = tonumber(ARGV[4])}))
return {1, epoch}`;

const RELEASE = `
if redis.call('HGET', KEYS[1], 'halted') ~= '1' then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'halted', '0', 'epoch', epoch, 'reason', ARGV[1], 'actor', ARGV[2], 'scope', '', 'since', ARGV[3])
redis.call('PUBLISH', KEYS[3], cjson.encode({halted = false, epoch = epoch, reason = ARGV[1], actor = ARGV[2], since = tonumber(ARGV[3])}))
return {1, epoch}`;

/** What {@link engageHalt} did. */
export interface EngageResult {
  /** The epoch of the halt now in force. */
  epoch: number;
  /** False when a halt was already engaged: this request joined it (and was audited). */
  created: boolean;
  /** The audit record of the outcome. */
  auditId: number;
}

/**
 * Engages the halt: records the intent in the audit log, then atomically sets the halt in
 * Redis with a new fencing epoch and publishes it, then records the outcome. Engaging while
 * halted keeps the one halt and records the request.
 *
 * If Redis cannot be reached, the intent stays recorded and HALT_NOT_PROPAGATED is thrown:
 * the halt is NOT in force and trading must be stopped by other means. If PostgreSQL is down
 * the halt is still engaged (a kill switch must not depend on its audit log) and
 * HALT_NOT_AUDITED is thrown after it, with the epoch in `details`.
 */
export async function engageHalt(input: { reason: string; actor: string; scope?: string } & HaltDeps): Promise<EngageResult> {
  const reason = required(input.reason, 'a reason');
  const actor = required(input.actor, 'an actor');
  const scope = input.scope?.trim() || 'all';
  const keys = haltKeys(input.prefix ?? DEFAULT_PREFIX);
  const timeout = input.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;

  let auditFailure: unknown;
  try {
    await recordAudit(input.db, { action: 'engage-requested', actor, reason, scope });
  } catch (error) {
    auditFailure = error;
  }

  let outcome: [number, number];
  try {
    outcome = (await withDeadline(
      'engaging the halt',
      timeout,
      input.redis.eval(ENGAGE, 3, keys.state, keys.epoch, keys.channel, reason, actor, scope, String(Date.now())),
    )) as [number, number];
  } catch (error) {
    const detail = { error: messageOf(error) };
    const auditId = auditFailure
      ? undefined
      : await recordAudit(input.db, { action: 'engage-not-propagated', actor, reason, scope, detail }).catch(() => undefined);
    throw new HaltError(
      'HALT_NOT_PROPAGATED',
      `THE HALT IS NOT IN FORCE: Redis could not be reached (${messageOf(error)}). ${
        auditFailure ? 'The audit log could not be written either.' : 'The request is recorded in the audit log.'
      } Stop trading by other means now (stop the trading workers), then engage again once Redis is back.`,
      { cause: error, details: { ...(auditId !== undefined ? { auditId } : {}), audited: !auditFailure } },
    );
  }
  const [created, epoch] = [outcome[0] === 1, Number(outcome[1])];
  if (auditFailure)
    throw new HaltError(
      'HALT_NOT_AUDITED',
      `the halt IS in force (epoch ${epoch}), but the audit log could not be written: ${messageOf(auditFailure)}. Record who engaged it and why by hand.`,
      { cause: auditFailure, details: { epoch, created } },
    );
  const auditId = await recordAudit(input.db, {
    action: 'engaged',
    actor,
    reason,
    scope,
    epoch,
    detail: { created },
  }).catch((error: unknown) => {
    throw new HaltError(
      'HALT_NOT_AUDITED',
      `the halt IS in force (epoch ${epoch}), but its outcome could not be recorded: ${messageOf(error)}`,
      { cause: error, details: { epoch, created } },
    );
  });
  return { epoch, created, auditId };
}

/** Reads the halt state (with a deadline). */
export async function haltStatus(deps: Omit<HaltDeps, 'db'>): Promise<HaltState> {
  const keys = haltKeys(deps.prefix ?? DEFAULT_PREFIX);
  try {
    const [hash, epoch] = await withDeadline(
      'reading the halt state',
      deps.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS,
      Promise.all([deps.redis.hgetall(keys.state), deps.redis.get(keys.epoch)]),
    );
    return parseState(hash, epoch);
  } catch (error) {
    throw new HaltError('HALT_REDIS_IO', `cannot read the halt state: ${messageOf(error)}`, { cause: error });
  }
}

/** Every registered worker and its last heartbeat (undefined when it has expired). */
export async function listWorkers(deps: Omit<HaltDeps, 'db'>): Promise<{ id: string; heartbeat: WorkerHeartbeat | undefined }[]> {
  const keys = haltKeys(deps.prefix ?? DEFAULT_PREFIX);
  const timeout = deps.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
  try {
    const ids = (await withDeadline('listing workers', timeout, deps.redis.smembers(keys.workers))).sort();
    if (ids.length === 0) return [];
    const beats = await withDeadline('reading heartbeats', timeout, deps.redis.mget(ids.map((id) => keys.worker(id))));
    return ids.map((id, i) => {
      const raw = beats[i];
      let heartbeat: WorkerHeartbeat | undefined;
      if (raw) {
        try {
          heartbeat = JSON.parse(raw) as WorkerHeartbeat;
        } catch {
          heartbeat = undefined;
        }
      }
      return { id, heartbeat };
    });
  } catch (error) {
    throw new HaltError('HALT_REDIS_IO', `cannot read the trading workers' heartbeats: ${messageOf(error)}`, { cause: error });
  }
}

const person = (name: string) => name.trim().toLowerCase();

/** What {@link releaseHalt} did. */
export interface ReleaseResult {
  /** The epoch after the release; orders prepared under the halt's epoch stay refused. */
  epoch: number;
  auditId: number;
}

/**
 * Releases the halt. Two people are needed: `approver` must be someone other than `actor`.
 * Refused (and audited) while any worker reports orders in flight, or when no halt is
 * engaged. The release gets a new epoch, so nothing prepared during the halt can be sent.
 */
export async function releaseHalt(input: { actor: string; approver: string; reason: string } & HaltDeps): Promise<ReleaseResult> {
  const reason = required(input.reason, 'a reason');
  const actor = required(input.actor, 'an actor');
  const approver = required(input.approver, 'an approver');
  const keys = haltKeys(input.prefix ?? DEFAULT_PREFIX);
  const timeout = input.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
  await recordAudit(input.db, { action: 'release-requested', actor, approver, reason });
  const refuse = async (code: 'HALT_TWO_PERSON_RULE' | 'HALT_ORDERS_IN_FLIGHT' | 'HALT_NOT_ENGAGED', message: string, detail = {}) => {
    await recordAudit(input.db, { action: 'release-refused', actor, approver, reason, detail: { code, ...detail } });
    return new HaltError(code, message, { details: detail });
  };
  if (person(actor) === person(approver))
    throw await refuse(
      'HALT_TWO_PERSON_RULE',
      `${actor} cannot approve their own release: a second person must approve it (--approver <someone else>)`,
    );
  const state = await haltStatus(input);
  if (!state.halted) throw await refuse('HALT_NOT_ENGAGED', 'no halt is engaged: there is nothing to release');
  const busy = (await listWorkers(input)).filter((w) => (w.heartbeat?.inFlight ?? 0) > 0);
  if (busy.length > 0)
    throw await refuse(
      'HALT_ORDERS_IN_FLIGHT',
      `workers still report orders in flight: ${busy.map((w) => `${w.id} (${w.heartbeat?.inFlight})`).join(', ')}. Wait until they settle (drkit halt verify), then release.`,
      { workers: busy.map((w) => w.id) },
    );
  let outcome: [number, number];
  try {
    outcome = (await withDeadline(
      'releasing the halt',
      timeout,
      input.redis.eval(RELEASE, 3, keys.state, keys.epoch, keys.channel, reason, `${actor} (approved by ${approver})`, String(Date.now())),
    )) as [number, number];
  } catch (error) {
    throw new HaltError('HALT_REDIS_IO', `the halt could not be released: ${messageOf(error)}. It is still in force.`, { cause: error });
  }
  if (outcome[0] !== 1) throw await refuse('HALT_NOT_ENGAGED', 'the halt was released meanwhile by someone else');
  const epoch = Number(outcome[1]);
  const auditId = await recordAudit(input.db, { action: 'released', actor, approver, reason, epoch });
  return { epoch, auditId };
}
