// Lease locks in an S3 bucket, in one of two protocols (docs/LOCKS.md has the whole story):
//
// 'conditional' — one object `<prefix>.drkit-locks/<name>.lock`, created with
//   If-None-Match: * and replaced (renewal, takeover of a stale lock) with If-Match: <etag>.
//   S3 evaluates the condition atomically, so of two writers only one succeeds: exactly the
//   compare-and-swap a lock needs. AWS S3 has supported both headers since 2024.
//
// 'list' — for servers that ignore those headers (s3rver, older MinIO): each contender PUTs
//   its own entry `<prefix>.drkit-locks/<name>/<token>/entry.json`, then LISTs the entries; it holds
//   the lock only if no other live entry is there, and otherwise deletes its own and backs off.
//   Safety rests on S3's strong read-after-write and list-after-write consistency: a LIST
//   begun after a PUT completed includes that PUT's key. Suppose A and B both won. Each wrote
//   its entry, then listed, and neither list showed the other's entry as live. Entries only
//   disappear when their owner gave up (it does not hold) or when they expired (their holder
//   stopped believing in them by then, see lease.ts), so A's list began before B's PUT
//   completed, and B's list began before A's PUT completed. But each list began after its
//   own PUT completed: A-list < B-put-done < B-list < A-put-done < A-list. Contradiction.
//   Two simultaneous contenders may both back off; a 'pending'/'held' state in the entry
//   tells a collision (retry) from a holder (refuse), so someone always wins soon.
//
// The two protocols interoperate: a conditional acquirer also lists the entries after its
// write, and a list acquirer also reads the lock object after its write, which is the same
// write-then-read argument, so a host forced to 'list' cannot share a lock with one that
// probed 'conditional'.
//
// Time: a lock is stale when its expiresAt (written by its holder) is before the moment the
// read that returned it began. Times are the local clock, unless the server's Date headers
// show this host more than 2 s off, in which case the server's clock (as estimated from them)
// is used for writing and judging expiry alike.

import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { StoreError } from './errors.js';
import {
  type AttemptResult,
  acquireLoop,
  checkLockName,
  encodeLockRecord,
  type LeaseDriver,
  type LockRecord,
  leaseMarginMs,
  lockInfoOf,
  MAX_LOCK_TTL_MS,
  newLockRecord,
  newLockToken,
  parseLockRecord,
  type ResolvedLockOptions,
  resolveLockOptions,
  startLease,
} from './lease.js';
import { errorCodeOf, httpStatusOf, isTransientError, toStoreError } from './s3-errors.js';
import { s3sdk } from './sdk.js';
import type { Lease, LockInfo, LockOptions } from './store.js';

/** Where S3 locks live: a bucket, and a key prefix that is '' or ends with '/'. */
export interface S3LockTarget {
  client: S3Client;
  bucket: string;
  prefix: string;
}

/** The S3 lock protocol: 'auto' probes the server once and picks 'conditional' when it can. */
export type S3LockMode = 'auto' | 'conditional' | 'list';

/** Options of {@link acquireS3Lock}. */
export interface S3LockOptions extends LockOptions {
  /** @default 'auto' */
  mode?: S3LockMode;
}

/** A lease on an S3 lock, and the protocol that took it. */
export interface S3Lease extends Lease {
  readonly mode: 'conditional' | 'list';
}

/** What a server was found to honour by {@link probeS3ConditionalWrites}. */
export interface S3ConditionalSupport {
  /** If-None-Match: * and If-Match on PutObject. */
  conditionalWrites: boolean;
  /** If-Match on DeleteObject. */
  conditionalDeletes: boolean;
}

/** A lock object or entry that does not parse is stale this long after it was last written. */
const UNREADABLE_STALE_MS = 2 * MAX_LOCK_TTL_MS;
/** A host whose clock is further than this from the server's judges time by the server's. */
const SKEW_TOLERANCE_MS = 2_000;
const NO_SUCH_ETAG = '"00000000000000000000000000000000"';

/**
 * What the Date headers of one client's responses say about the server's clock. Each
 * response bounds the offset (server − local): the header is the server's time truncated to
 * the second, taken between our send and receive. The intersection of recent bounds is kept;
 * an empty one (a clock was stepped) starts afresh.
 */
class ServerClock {
  #lo = Number.NEGATIVE_INFINITY;
  #hi = Number.POSITIVE_INFINITY;
  #offset = 0;

  sample(sentAt: number, receivedAt: number, date: unknown): void {
    const server = typeof date === 'string' ? Date.parse(date) : Number.NaN;
    if (Number.isNaN(server)) return;
    const lo = server - receivedAt;
    const hi = server + 1_000 - sentAt;
    if (Math.max(lo, this.#lo) > Math.min(hi, this.#hi)) {
      this.#lo = lo;
      this.#hi = hi;
    } else {
      this.#lo = Math.max(lo, this.#lo);
      this.#hi = Math.min(hi, this.#hi);
    }
    const estimate = (this.#lo + this.#hi) / 2;
    // Within the tolerance the local (NTP) clock is more precise than one-second headers.
    this.#offset = Math.abs(estimate) > SKEW_TOLERANCE_MS ? Math.round(estimate) : 0;
  }

  get offset(): number {
    return this.#offset;
  }

  now(): number {
    return Date.now() + this.#offset;
  }
}

const clocks = new WeakMap<S3Client, ServerClock>();

function clockOf(client: S3Client): ServerClock {
  let clock = clocks.get(client);
  if (!clock) {
    clock = new ServerClock();
    clocks.set(client, clock);
  }
  return clock;
}

/**
 * How far (ms) the S3 locks of `client` correct this host's clock: 0 while the server's Date
 * headers agree with it to within 2 s, else the estimated server − local offset.
 */
export function s3LockClockOffsetMs(client: S3Client): number {
  return clockOf(client).offset;
}

type Middleware = (next: (args: unknown) => Promise<{ response?: unknown }>) => (args: unknown) => Promise<{ response?: unknown }>;
interface WithMiddleware {
  middlewareStack: { add(middleware: Middleware, options: { step: string; priority: string; name: string }): void };
}

function dateHeaderOf(response: unknown): unknown {
  return (response as { headers?: Record<string, unknown> } | undefined)?.headers?.date;
}

/** Context of one lock on one target, shared by its attempts and its lease. */
interface Ctx {
  target: S3LockTarget;
  name: string;
  clock: ServerClock;
  lockKey: string;
  entriesPrefix: string;
  endpoint: Promise<string>;
}

function contextOf(target: S3LockTarget, name: string): Ctx {
  const base = `${target.prefix}.drkit-locks/`;
  return {
    target,
    name,
    clock: clockOf(target.client),
    lockKey: `${base}${name}.lock`,
    entriesPrefix: `${base}${name}/`,
    endpoint: endpointOf(target.client),
  };
}

async function endpointOf(client: S3Client): Promise<string> {
  try {
    const endpoint = await client.config.endpoint?.();
    if (endpoint) return `${endpoint.protocol}//${endpoint.hostname}${endpoint.port ? `:${endpoint.port}` : ''}${endpoint.path ?? ''}`;
    return `AWS S3 (${await client.config.region()})`;
  } catch {
    return 'the S3 endpoint';
  }
}

function checkTarget(target: S3LockTarget): void {
  if (!target || typeof target.bucket !== 'string' || target.bucket === '' || typeof target.client?.send !== 'function')
    throw new StoreError('STORE_OPTIONS_INVALID', 'an S3 lock needs a client and a bucket');
  if (typeof target.prefix !== 'string' || (target.prefix !== '' && !target.prefix.endsWith('/')) || target.prefix.startsWith('/'))
    throw new StoreError('STORE_OPTIONS_INVALID', `an S3 lock prefix must be '' or end with '/', got ${JSON.stringify(target.prefix)}`);
}

/** Sends `command`, feeding the response's Date header to the clock; errors become StoreErrors. */
async function send<T>(ctx: Ctx, command: object): Promise<T> {
  (command as WithMiddleware).middlewareStack.add(
    (next) => async (args) => {
      const sentAt = Date.now();
      const out = await next(args);
      ctx.clock.sample(sentAt, Date.now(), dateHeaderOf(out.response));
      return out;
    },
    // Low priority in the deserialize step runs next to the HTTP handler: the raw response,
    // error statuses included, once per attempt.
    { step: 'deserialize', priority: 'low', name: 'drkitServerDate' },
  );
  return (await ctx.target.client.send(command as never)) as T;
}

const codeIs = (error: unknown, status: number, ...codes: string[]) =>
  httpStatusOf(error) === status || codes.includes(errorCodeOf(error) ?? '');
const isPreconditionFailed = (error: unknown) => codeIs(error, 412, 'PreconditionFailed');
const isConflict = (error: unknown) => codeIs(error, 409, 'ConditionalRequestConflict', 'OperationAborted');
const isMissing = (error: unknown) => errorCodeOf(error) !== 'NoSuchBucket' && codeIs(error, 404, 'NoSuchKey', 'NotFound');
const isUnsupported = (error: unknown) => codeIs(error, 501, 'NotImplemented');

async function storeError(ctx: Ctx, what: string, error: unknown): Promise<StoreError> {
  return toStoreError(error, { what, bucket: ctx.target.bucket, endpoint: await ctx.endpoint });
}

async function put(ctx: Ctx, key: string, body: string, conditions: { IfNoneMatch?: string; IfMatch?: string } = {}): Promise<string> {
  const out = await send<{ ETag?: string }>(
    ctx,
    new (s3sdk().PutObjectCommand)({ Bucket: ctx.target.bucket, Key: key, Body: body, ContentType: 'application/json', ...conditions }),
  );
  return out.ETag ?? '';
}

async function remove(ctx: Ctx, key: string, ifMatch?: string): Promise<void> {
  await send(ctx, new (s3sdk().DeleteObjectCommand)({ Bucket: ctx.target.bucket, Key: key, ...(ifMatch ? { IfMatch: ifMatch } : {}) }));
}

/** What a key held when read, and the (server-corrected) time at which the read began. */
type Observed =
  | { kind: 'missing' }
  | { kind: 'record'; record: LockRecord; etag: string; readAt: number }
  | { kind: 'unreadable'; etag: string; readAt: number; modifiedAt: number };

async function read(ctx: Ctx, key: string): Promise<Observed> {
  for (let attempt = 1; ; attempt++) {
    const readAt = ctx.clock.now();
    let out: { Body?: { transformToString(): Promise<string> }; ETag?: string; LastModified?: Date };
    let text: string;
    try {
      out = await send(ctx, new (s3sdk().GetObjectCommand)({ Bucket: ctx.target.bucket, Key: key }));
      text = (await out.Body?.transformToString()) ?? '';
    } catch (error) {
      if (isMissing(error)) return { kind: 'missing' };
      // A body cut short is not retried by the SDK; servers whose PUTs are not atomic
      // (s3rver) cut the response when the object is rewritten while it is being read.
      if (attempt < 4 && isTransientError(error)) {
        await sleep(5 * attempt);
        continue;
      }
      throw error;
    }
    const record = parseLockRecord(text);
    const etag = out.ETag ?? '';
    if (record) return { kind: 'record', record, etag, readAt };
    return { kind: 'unreadable', etag, readAt, modifiedAt: out.LastModified?.getTime() ?? readAt };
  }
}

const isStale = (seen: Observed): boolean =>
  seen.kind === 'record'
    ? Date.parse(seen.record.expiresAt) < seen.readAt
    : seen.kind === 'unreadable' && seen.modifiedAt + UNREADABLE_STALE_MS < seen.readAt;

function unreadableInfo(ctx: Ctx, key: string, seen: Extract<Observed, { kind: 'unreadable' }>): LockInfo {
  return {
    name: ctx.name,
    owner: `an unknown process (s3://${ctx.target.bucket}/${key} is not a lock record; delete it if no run is active)`,
    token: '',
    host: '',
    pid: 0,
    acquiredAt: new Date(seen.modifiedAt),
    expiresAt: new Date(seen.modifiedAt + UNREADABLE_STALE_MS),
  };
}

async function listKeys(ctx: Ctx): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await send<{ Contents?: { Key?: string }[]; NextContinuationToken?: string; IsTruncated?: boolean }>(
      ctx,
      new (s3sdk().ListObjectsV2Command)({
        Bucket: ctx.target.bucket,
        Prefix: ctx.entriesPrefix,
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const item of out.Contents ?? []) if (item.Key?.endsWith('/entry.json')) keys.push(item.Key);
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** A live lock other than ours, and whether it is a holder or a contender in mid-acquisition. */
interface Blocker {
  info: LockInfo;
  held: boolean;
}

/**
 * The live 'list' entries other than `ownKey` (deleting stale ones when `clean`), and, when
 * `withObject`, a live conditional lock object. Holders come first.
 */
async function blockers(ctx: Ctx, ownKey: string | undefined, how: { clean: boolean; withObject: boolean }): Promise<Blocker[]> {
  const [keys, object] = await Promise.all([listKeys(ctx), how.withObject ? read(ctx, ctx.lockKey) : undefined]);
  const others = keys.filter((key) => key !== ownKey);
  const seen = await Promise.all(others.map((key) => read(ctx, key)));
  const found: Blocker[] = [];
  for (const [i, entry] of seen.entries()) {
    const key = others[i] as string;
    if (entry.kind === 'missing') continue;
    if (isStale(entry)) {
      // Its holder stopped believing in it at its expiresAt; deleting it is mere tidying.
      if (how.clean) await remove(ctx, key).catch(() => {});
      continue;
    }
    if (entry.kind === 'record') found.push({ info: lockInfoOf(entry.record), held: entry.record.state !== 'pending' });
    // Torn (a server without atomic PUTs, read mid-write) or foreign: count it, but not as a holder.
    else found.push({ info: unreadableInfo(ctx, key, entry), held: false });
  }
  if (object && object.kind !== 'missing' && !isStale(object))
    found.push({ info: object.kind === 'record' ? lockInfoOf(object.record) : unreadableInfo(ctx, ctx.lockKey, object), held: true });
  return found.sort((a, b) => Number(b.held) - Number(a.held));
}

const refusal = (blocker: Blocker): AttemptResult => ({ kind: 'held', info: blocker.info, ...(blocker.held ? {} : { acquiring: true }) });

// ---- probe -----------------------------------------------------------------------------

const probes = new WeakMap<S3Client, Map<string, Promise<S3ConditionalSupport>>>();

/**
 * Finds out (once per client and bucket, then cached) whether the server honours conditional
 * writes: it PUTs a probe object with If-None-Match: * twice (the second must fail with 412),
 * PUTs it with a wrong If-Match (must fail) and deletes it with a wrong If-Match (must fail
 * where conditional deletes exist), then removes it.
 * @throws StoreError when the server cannot be reached or refuses the requests
 */
export function probeS3ConditionalWrites(target: S3LockTarget): Promise<S3ConditionalSupport> {
  checkTarget(target);
  let perBucket = probes.get(target.client);
  if (!perBucket) {
    perBucket = new Map();
    probes.set(target.client, perBucket);
  }
  const cached = perBucket.get(target.bucket);
  if (cached) return cached;
  const ctx = contextOf(target, 'probe');
  const probe = runProbe(ctx, `${target.prefix}.drkit-locks/.probe-${newLockToken()}/probe`).catch(async (error: unknown) => {
    perBucket.delete(target.bucket);
    throw await storeError(ctx, 'probing conditional writes', error);
  });
  perBucket.set(target.bucket, probe);
  return probe;
}

/** Runs `request`; true if the server refused it with 412, false if it accepted it. */
async function refused(request: () => Promise<unknown>): Promise<boolean> {
  try {
    await request();
    return false;
  } catch (error) {
    if (isPreconditionFailed(error)) return true;
    if (isUnsupported(error) || codeIs(error, 400, 'InvalidArgument', 'InvalidRequest')) return false;
    throw error;
  }
}

async function runProbe(ctx: Ctx, key: string): Promise<S3ConditionalSupport> {
  const none = { conditionalWrites: false, conditionalDeletes: false };
  try {
    try {
      await put(ctx, key, 'probe', { IfNoneMatch: '*' });
    } catch (error) {
      if (isUnsupported(error) || codeIs(error, 400, 'InvalidArgument', 'InvalidRequest')) return none;
      throw error;
    }
    if (!(await refused(() => put(ctx, key, 'probe', { IfNoneMatch: '*' })))) return none;
    if (!(await refused(() => put(ctx, key, 'probe', { IfMatch: NO_SUCH_ETAG })))) return none;
    return { conditionalWrites: true, conditionalDeletes: await refused(() => remove(ctx, key, NO_SUCH_ETAG)) };
  } finally {
    await remove(ctx, key).catch(() => {});
  }
}

// ---- 'conditional' -------------------------------------------------------------------------

async function attemptConditional(ctx: Ctx, opts: ResolvedLockOptions, support: S3ConditionalSupport): Promise<AttemptResult> {
  let record = newLockRecord(ctx.name, opts, ctx.clock.now(), 'held');
  let etag: string;
  try {
    etag = await put(ctx, ctx.lockKey, encodeLockRecord(record), { IfNoneMatch: '*' });
  } catch (error) {
    if (!isPreconditionFailed(error) && !isConflict(error)) throw error;
    const seen = await read(ctx, ctx.lockKey);
    if (seen.kind === 'missing') return { kind: 'again' };
    if (!isStale(seen))
      return { kind: 'held', info: seen.kind === 'record' ? lockInfoOf(seen.record) : unreadableInfo(ctx, ctx.lockKey, seen) };
    // Replace exactly the stale version we read: of several contenders, one If-Match wins.
    record = newLockRecord(ctx.name, opts, ctx.clock.now(), 'held');
    try {
      etag = await put(ctx, ctx.lockKey, encodeLockRecord(record), { IfMatch: seen.etag });
    } catch (error2) {
      if (isPreconditionFailed(error2) || isConflict(error2) || isMissing(error2)) return { kind: 'again' };
      throw error2;
    }
  }
  const driver = conditionalDriver(ctx, opts, support, etag);
  // A contender of the 'list' protocol (a host forced to it) must see us or we must see it.
  const [blocker] = await blockers(ctx, undefined, { clean: false, withObject: false });
  if (blocker) {
    await driver.release(record);
    return refusal(blocker);
  }
  return { kind: 'acquired', lease: withMode(startLease(driver, record), 'conditional') };
}

function conditionalDriver(ctx: Ctx, opts: ResolvedLockOptions, support: S3ConditionalSupport, firstEtag: string): LeaseDriver {
  let etag = firstEtag;
  return {
    name: ctx.name,
    ttlMs: opts.ttlMs,
    renewEveryMs: opts.renewEveryMs,
    now: () => ctx.clock.now(),
    renew: async (_current, next) => {
      try {
        etag = await put(ctx, ctx.lockKey, encodeLockRecord(next), { IfMatch: etag });
        return undefined;
      } catch (error) {
        if (isMissing(error)) return 'its lock object was deleted';
        if (!isPreconditionFailed(error)) throw await storeError(ctx, `renewing lock ${ctx.lockKey}`, error);
      }
      const seen = await read(ctx, ctx.lockKey).catch(() => undefined);
      return seen?.kind === 'record' ? `it was taken over by ${seen.record.owner}` : 'its lock object was replaced or deleted';
    },
    release: async (current) => {
      try {
        if (support.conditionalDeletes) {
          await remove(ctx, ctx.lockKey, etag);
          return;
        }
        // No conditional deletes: check, then delete, and only while the lease is surely
        // ours, so that no takeover can fall between the check and the delete.
        const head = await send<{ ETag?: string }>(ctx, new (s3sdk().HeadObjectCommand)({ Bucket: ctx.target.bucket, Key: ctx.lockKey }));
        if (head.ETag === etag && ctx.clock.now() < Date.parse(current.expiresAt) - leaseMarginMs(opts.ttlMs))
          await remove(ctx, ctx.lockKey);
      } catch (error) {
        if (isPreconditionFailed(error) || isMissing(error)) return;
        throw await storeError(ctx, `releasing lock ${ctx.lockKey}`, error);
      }
    },
  };
}

// ---- 'list' --------------------------------------------------------------------------------

// One "directory" per entry: servers that keep objects as files (s3rver) remove a directory
// when its last object is deleted, and crash when that races a PUT into the same directory.
const entryKey = (ctx: Ctx, token: string) => `${ctx.entriesPrefix}${token}/entry.json`;

async function attemptList(ctx: Ctx, opts: ResolvedLockOptions): Promise<AttemptResult> {
  const pending = newLockRecord(ctx.name, opts, ctx.clock.now(), 'pending');
  const key = entryKey(ctx, pending.token);
  await put(ctx, key, encodeLockRecord(pending));
  let won = false;
  try {
    const found = await blockers(ctx, key, { clean: true, withObject: true });
    const [blocker] = found;
    if (blocker) {
      // Only contenders collided: the oldest of them (the same one in every contender's
      // view, bar entries that came and went) retries first.
      const rank = (info: { acquiredAt: Date | string; token: string }) => `${new Date(info.acquiredAt).toISOString()} ${info.token}`;
      const first = !blocker.held && found.every((b) => rank(pending) < rank(b.info));
      return { ...refusal(blocker), ...(first ? { retryFirst: true } : {}) };
    }
    // We hold it. Saying so turns later contenders' retries into refusals.
    const heldAt = ctx.clock.now();
    const held: LockRecord = {
      ...pending,
      state: 'held',
      acquiredAt: new Date(heldAt).toISOString(),
      expiresAt: new Date(heldAt + opts.ttlMs).toISOString(),
    };
    await put(ctx, key, encodeLockRecord(held));
    // Had all this outlasted the pending entry's expiry, others may have deleted it meanwhile.
    if (ctx.clock.now() >= Date.parse(pending.expiresAt) - leaseMarginMs(opts.ttlMs)) return { kind: 'again' };
    won = true;
    return { kind: 'acquired', lease: withMode(startLease(listDriver(ctx, opts, key), held), 'list') };
  } finally {
    if (!won) await remove(ctx, key).catch(() => {});
  }
}

function listDriver(ctx: Ctx, opts: ResolvedLockOptions, key: string): LeaseDriver {
  return {
    name: ctx.name,
    ttlMs: opts.ttlMs,
    renewEveryMs: opts.renewEveryMs,
    now: () => ctx.clock.now(),
    renew: async (current, next) => {
      try {
        const seen = await read(ctx, key);
        if (seen.kind === 'missing') return 'its lock entry was deleted';
        if (seen.kind !== 'record' || seen.record.token !== current.token || seen.record.expiresAt !== current.expiresAt)
          return 'its lock entry was overwritten';
        await put(ctx, key, encodeLockRecord(next));
        // Contenders' entries come and go (they back off on seeing ours); another *holder*
        // means the protocol's assumptions broke (clocks, consistency): both must stop.
        const other = (await blockers(ctx, key, { clean: false, withObject: true })).find((b) => b.held);
        if (other) return `${other.info.owner} holds it too (are the clocks of the hosts synchronised?)`;
        return undefined;
      } catch (error) {
        throw await storeError(ctx, `renewing lock entry ${key}`, error);
      }
    },
    // The entry is ours alone (its key is our token): removing it never removes anyone else's.
    release: async () => {
      try {
        await remove(ctx, key);
      } catch (error) {
        throw await storeError(ctx, `releasing lock entry ${key}`, error);
      }
    },
  };
}

function withMode(lease: Lease, mode: 'conditional' | 'list'): S3Lease {
  return Object.defineProperty(lease, 'mode', { value: mode, enumerable: true }) as S3Lease;
}

// ---- API -----------------------------------------------------------------------------------

/**
 * Takes the lease lock `name` in an S3 bucket. Mode 'auto' (default) probes the server once
 * ({@link probeS3ConditionalWrites}) and uses 'conditional' (one object, If-None-Match /
 * If-Match) where the server honours conditional writes, else 'list' (one entry per
 * contender, decided by LIST). Forcing 'conditional' on a server that ignores the headers is
 * refused rather than silently unsafe. A holder that stops renewing is taken over once its
 * `expiresAt` has passed (at most 60 s after its last renewal). Hosts must agree on the time
 * to within {@link leaseMarginMs}; one more than 2 s off the server is corrected by it.
 * @throws StoreError STORE_LOCKED naming the holder; STORE_UNSUPPORTED (forced 'conditional');
 *   STORE_KEY_INVALID, STORE_OPTIONS_INVALID, STORE_ABORTED, STORE_IO and the S3 errors
 */
export async function acquireS3Lock(target: S3LockTarget, name: string, options: S3LockOptions = {}): Promise<S3Lease> {
  checkTarget(target);
  checkLockName(name);
  const { mode = 'auto', ...lockOptions } = options;
  if (mode !== 'auto' && mode !== 'conditional' && mode !== 'list')
    throw new StoreError(
      'STORE_OPTIONS_INVALID',
      `invalid lock options: mode must be 'auto', 'conditional' or 'list', got ${String(mode)}`,
    );
  const opts = resolveLockOptions(lockOptions);
  const ctx = contextOf(target, name);
  let support: S3ConditionalSupport | undefined;
  if (mode !== 'list') {
    support = await probeS3ConditionalWrites(target);
    if (mode === 'conditional' && !support.conditionalWrites)
      throw new StoreError(
        'STORE_UNSUPPORTED',
        `lock "${name}": the S3 server at ${await ctx.endpoint} (bucket "${target.bucket}") ignores conditional writes (If-None-Match / If-Match on PutObject), so mode 'conditional' would let two runs hold the lock; use mode 'list' or 'auto'`,
      );
  }
  const conditional = support?.conditionalWrites ? support : undefined;
  const lease = await acquireLoop(name, opts, async () => {
    try {
      return conditional ? await attemptConditional(ctx, opts, conditional) : await attemptList(ctx, opts);
    } catch (error) {
      throw await storeError(ctx, `taking lock "${name}"`, error);
    }
  });
  return lease as S3Lease;
}

/**
 * The holder of S3 lock `name`, stale or not; undefined when it is free. Reads both
 * protocols' keys; of 'list' entries, only holders count (not contenders mid-acquisition).
 * @throws StoreError STORE_KEY_INVALID and the S3 errors
 */
export async function readS3Lock(target: S3LockTarget, name: string): Promise<LockInfo | undefined> {
  checkTarget(target);
  checkLockName(name);
  const ctx = contextOf(target, name);
  try {
    const object = await read(ctx, ctx.lockKey);
    if (object.kind === 'record') return lockInfoOf(object.record);
    if (object.kind === 'unreadable') return unreadableInfo(ctx, ctx.lockKey, object);
    const entries = await Promise.all((await listKeys(ctx)).map((key) => read(ctx, key)));
    const held = entries
      .flatMap((entry) => (entry.kind === 'record' && entry.record.state !== 'pending' ? [entry.record] : []))
      .sort((a, b) => Date.parse(b.expiresAt) - Date.parse(a.expiresAt));
    return held[0] ? lockInfoOf(held[0]) : undefined;
  } catch (error) {
    throw await storeError(ctx, `reading lock "${name}"`, error);
  }
}
