// What the fs and S3 lease locks share: option and name validation, the record a lock
// stores, the refusal and loss messages, the acquire loop (waiting, backoff, abort) and the
// Lease object with its renewal timer and expiry deadline. The backends only say how to
// create, read, rewrite and remove one lock record; everything about time lives here.
// See docs/LOCKS.md for the protocols and the arguments for their safety.

import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { abortedError, StoreError, throwIfAborted } from './errors.js';
import type { Lease, LockInfo, LockOptions } from './store.js';

/** Longest lease: a holder that dies is taken over at most this long after its last renewal. */
export const MAX_LOCK_TTL_MS = 60_000;
/** Shortest lease: below it, renewals would have no room for a slow store. */
export const MIN_LOCK_TTL_MS = 1_000;
/** Lease length when {@link LockOptions.ttlMs} is not given. */
export const DEFAULT_LOCK_TTL_MS = 30_000;
/** What a lock name must look like: it becomes a file name and part of an object key. */
export const LOCK_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** {@link LockOptions} with every default applied. */
export interface ResolvedLockOptions {
  owner: string;
  ttlMs: number;
  renewEveryMs: number;
  waitMs: number;
  signal: AbortSignal | undefined;
}

/**
 * Checks a lock name (letters, digits, `.`, `_`, `-`; at most 128; not starting with a
 * punctuation character, so no name is hidden or looks like an option).
 * @throws StoreError STORE_KEY_INVALID
 */
export function checkLockName(name: string): string {
  if (typeof name !== 'string' || !LOCK_NAME_PATTERN.test(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 140)) : String(name);
    throw new StoreError(
      'STORE_KEY_INVALID',
      `invalid lock name ${shown}: use 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit (e.g. "database-corruption")`,
    );
  }
  return name;
}

let cachedOwner: string | undefined;

/** `user@host pid N`: what a refusal names when the holder gave no owner. */
export function defaultOwner(): string {
  if (cachedOwner === undefined) {
    let user: string | undefined;
    try {
      user = userInfo().username;
    } catch {
      // No passwd entry (a container running as an arbitrary uid): fall back to the environment.
      user = process.env.USER ?? process.env.LOGNAME;
    }
    cachedOwner = `${user || 'unknown'}@${hostname()}`;
  }
  return `${cachedOwner} pid ${process.pid}`;
}

function invalidOption(what: string): StoreError {
  return new StoreError('STORE_OPTIONS_INVALID', `invalid lock options: ${what}`);
}

function checkInteger(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value))
    throw invalidOption(`${what} must be a whole number of milliseconds, got ${String(value)}`);
  return value;
}

/**
 * Applies the defaults of {@link LockOptions} and checks them.
 * @throws StoreError STORE_OPTIONS_INVALID
 */
export function resolveLockOptions(options: LockOptions = {}): ResolvedLockOptions {
  const ttlMs = checkInteger(options.ttlMs ?? DEFAULT_LOCK_TTL_MS, 'ttlMs');
  if (ttlMs < MIN_LOCK_TTL_MS || ttlMs > MAX_LOCK_TTL_MS) {
    throw invalidOption(
      `ttlMs must be between ${MIN_LOCK_TTL_MS} and ${MAX_LOCK_TTL_MS}, got ${ttlMs} (a dead holder must be taken over within a minute)`,
    );
  }
  const renewEveryMs = checkInteger(options.renewEveryMs ?? Math.floor(ttlMs / 3), 'renewEveryMs');
  // A renewal needs time to complete before the lease runs out; renewing at the very end
  // would lose the lease on every slow request.
  if (renewEveryMs < 50 || renewEveryMs > ttlMs / 2) {
    throw invalidOption(`renewEveryMs must be between 50 and half of ttlMs (${Math.floor(ttlMs / 2)}), got ${renewEveryMs}`);
  }
  const waitMs = checkInteger(options.waitMs ?? 0, 'waitMs');
  if (waitMs < 0) throw invalidOption(`waitMs must not be negative, got ${waitMs}`);
  const owner = options.owner ?? defaultOwner();
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (typeof owner !== 'string' || owner.trim() === '' || owner.length > 200 || /[\u0000-\u001f\u007f]/.test(owner)) {
    throw invalidOption('owner must be a non-empty single line of at most 200 characters');
  }
  return { owner, ttlMs, renewEveryMs, waitMs, signal: options.signal };
}

/** A random id of one acquisition (32 hex digits). */
export function newLockToken(): string {
  return randomBytes(16).toString('hex');
}

/**
 * How long before its `expiresAt` a holder stops trusting its lease. Contenders take over at
 * `expiresAt` by their own clock, so this is the clock difference the locks tolerate.
 */
export function leaseMarginMs(ttlMs: number): number {
  return Math.min(1_000, Math.floor(ttlMs / 10));
}

/** What every lock stores (as JSON); `state` is used by the S3 'list' protocol only. */
export interface LockRecord {
  version: 1;
  name: string;
  owner: string;
  token: string;
  host: string;
  pid: number;
  /** The holder's pid namespace (Linux), so that a pid is only judged on the machine that owns it. */
  pidns?: string;
  /**
   * The holder's kernel boot id (Linux): machines that share a host name (and the constant
   * inode of the initial pid namespace) still differ in it.
   */
  boot?: string;
  acquiredAt: string;
  expiresAt: string;
  ttlMs: number;
  state?: 'pending' | 'held';
}

/** The record of a new acquisition by this process. */
export function newLockRecord(name: string, options: ResolvedLockOptions, now: number, state?: 'pending' | 'held'): LockRecord {
  return {
    version: 1,
    name,
    owner: options.owner,
    token: newLockToken(),
    ...machineIdentity(),
    acquiredAt: new Date(now).toISOString(),
    expiresAt: new Date(now + options.ttlMs).toISOString(),
    ttlMs: options.ttlMs,
    ...(state === undefined ? {} : { state }),
  };
}

/** Serialises a record. */
export function encodeLockRecord(record: LockRecord): string {
  return `${JSON.stringify(record)}\n`;
}

const isDateString = (value: unknown): value is string => typeof value === 'string' && !Number.isNaN(Date.parse(value));

/** Parses a stored record; undefined when it is not one (torn, foreign or corrupt). */
export function parseLockRecord(text: string): LockRecord | undefined {
  let value: Partial<LockRecord>;
  try {
    value = JSON.parse(text) as Partial<LockRecord>;
  } catch {
    return undefined;
  }
  if (
    typeof value !== 'object' ||
    value === null ||
    value.version !== 1 ||
    typeof value.name !== 'string' ||
    typeof value.owner !== 'string' ||
    typeof value.token !== 'string' ||
    typeof value.host !== 'string' ||
    typeof value.pid !== 'number' ||
    !isDateString(value.acquiredAt) ||
    !isDateString(value.expiresAt) ||
    typeof value.ttlMs !== 'number' ||
    (value.pidns !== undefined && typeof value.pidns !== 'string') ||
    (value.boot !== undefined && typeof value.boot !== 'string') ||
    (value.state !== undefined && value.state !== 'pending' && value.state !== 'held')
  ) {
    return undefined;
  }
  return value as LockRecord;
}

/** The public view of a record. */
export function lockInfoOf(record: LockRecord): LockInfo {
  return {
    name: record.name,
    owner: record.owner,
    token: record.token,
    host: record.host,
    pid: record.pid,
    acquiredAt: new Date(record.acquiredAt),
    expiresAt: new Date(record.expiresAt),
  };
}

/** The record to write when renewing `record` until `expiresAt`. */
export function renewedRecord(record: LockRecord, expiresAt: Date): LockRecord {
  return { ...record, expiresAt: expiresAt.toISOString() };
}

/** Where a process runs: what {@link sameMachine} compares. */
export interface MachineIdentity {
  host: string;
  pid: number;
  pidns?: string;
  boot?: string;
}

let cachedIdentity: Omit<MachineIdentity, 'pid'> | undefined;

/** This process's host name, pid, and (on Linux) pid namespace and kernel boot id. */
export function machineIdentity(): MachineIdentity {
  if (!cachedIdentity) {
    const read = (what: () => string) => {
      try {
        return what().trim() || undefined;
      } catch {
        return undefined;
      }
    };
    const pidns = read(() => readlinkSync('/proc/self/ns/pid'));
    const boot = read(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'));
    cachedIdentity = { host: hostname(), ...(pidns ? { pidns } : {}), ...(boot ? { boot } : {}) };
  }
  return { ...cachedIdentity, pid: process.pid };
}

/**
 * True when `other` was written by a process of this machine, pid namespace and boot, the
 * only case where its pid can be checked here. Anything unknown counts as different.
 */
export function sameMachine(other: { host: string; pidns?: string | undefined; boot?: string | undefined }): boolean {
  const own = machineIdentity();
  return other.host === own.host && other.pidns === own.pidns && other.boot === own.boot;
}

/**
 * True when no process `pid` exists (or it is a zombie, which can do nothing). EPERM means it
 * exists under another user: alive. Only meaningful for a pid of this machine's namespace.
 */
export function processIsDead(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** `2026-11-22T03:00:00Z` */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `03:00:30Z` when on the same UTC day as `reference`, the full time otherwise. */
function timeAfter(date: Date, reference: Date): string {
  const full = isoSeconds(date);
  return full.slice(0, 10) === isoSeconds(reference).slice(0, 10) ? full.slice(11) : full;
}

/**
 * The owner as given when it already reads like the default (`alice@host-1 pid 4242`), else
 * with the host and pid the lock recorded: `deploy-bot (host-1 pid 4242)`.
 */
export function holderOf(info: LockInfo): string {
  return info.pid <= 0 || /@\S+ pid \d+$/.test(info.owner) ? info.owner : `${info.owner} (${info.host} pid ${info.pid})`;
}

/** STORE_LOCKED, naming the holder, since when, and when a dead holder's lock goes stale. */
export function lockedError(name: string, info: LockInfo, how: { waitedMs?: number; acquiring?: boolean } = {}): StoreError {
  const stale = timeAfter(info.expiresAt, info.acquiredAt);
  const waited = how.waitedMs ? ` (waited ${(how.waitedMs / 1000).toFixed(1)}s)` : '';
  const holder = how.acquiring
    ? `is being taken by ${holderOf(info)} at this moment${waited}`
    : `is held by ${holderOf(info)} since ${isoSeconds(info.acquiredAt)} (renewed until ${stale})${waited}`;
  return new StoreError(
    'STORE_LOCKED',
    `lock "${name}" ${holder}; wait for that run to finish — if it died, the lock goes stale at ${stale} and the next run takes it over`,
  );
}

/** STORE_LOCK_LOST: which lock, what happened, and what the holder must do. */
export function lostError(name: string, what: string, cause?: unknown): StoreError {
  return new StoreError(
    'STORE_LOCK_LOST',
    `lock "${name}" was lost: ${what}; stop what you are doing: another run may hold the lock now`,
    cause === undefined ? undefined : { cause },
  );
}

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** One attempt's outcome, as a backend reports it to {@link acquireLoop}. */
export type AttemptResult =
  | { kind: 'acquired'; lease: Lease }
  /**
   * A live holder has it; `acquiring` when it is a contender in mid-acquisition, not a
   * holder, and then `retryFirst` when this attempt should retry before the others do.
   */
  | { kind: 'held'; info: LockInfo; acquiring?: boolean; retryFirst?: boolean }
  /** The lock changed under us (a stale holder was just removed, a file vanished): try again now. */
  | { kind: 'again' };

/**
 * How long contenders that only see each other (and no holder) keep retrying with waitMs 0:
 * in the S3 'list' protocol two simultaneous attempts can both back off, and a refusal must
 * mean that someone holds the lock, not that two runs collided.
 */
const CONTENTION_BUDGET_MS = 5_000;

/**
 * Runs `attempt` until it acquires, a live holder refuses it and `waitMs` has passed, or
 * `signal` aborts. Waits between attempts with jittered exponential backoff (50 ms up to 1 s)
 * so that many waiters do not poll in step.
 * @throws StoreError STORE_LOCKED, STORE_ABORTED, or what `attempt` throws
 */
export async function acquireLoop(name: string, options: ResolvedLockOptions, attempt: () => Promise<AttemptResult>): Promise<Lease> {
  const what = `waiting for lock "${name}"`;
  const started = performance.now();
  let delay = 50;
  let immediate = 0;
  for (;;) {
    throwIfAborted(options.signal, what);
    const result = await attempt();
    if (result.kind === 'acquired') {
      if (options.signal?.aborted) {
        // The caller gave up while the lock was being taken: hand it back rather than leak it.
        await result.lease.release().catch(() => {});
        throw abortedError(options.signal, what);
      }
      return result.lease;
    }
    if (result.kind === 'again' && ++immediate < 20) continue;
    immediate = 0;
    const elapsed = performance.now() - started;
    const collided = result.kind === 'again' || result.acquiring === true;
    const budget = collided ? Math.max(options.waitMs, CONTENTION_BUDGET_MS) : options.waitMs;
    if (elapsed >= budget) {
      if (result.kind === 'again')
        throw new StoreError(
          'STORE_IO',
          `lock "${name}" kept changing while it was being taken (for ${(elapsed / 1000).toFixed(1)}s); try again`,
        );
      throw lockedError(name, result.info, {
        ...(options.waitMs > 0 ? { waitedMs: elapsed } : {}),
        ...(result.acquiring ? { acquiring: true } : {}),
      });
    }
    // Colliding contenders that all back off alike could collide again and again: the one
    // told to go first retries after a few ms, the others wait longer than that.
    const jittered = delay * (0.5 + Math.random() / 2);
    const wanted = result.kind !== 'held' || !result.acquiring ? jittered : result.retryFirst ? 5 + Math.random() * 20 : 100 + jittered;
    const pause = Math.max(1, Math.min(wanted, Math.max(1, budget - elapsed)));
    delay = Math.min(delay * 1.6, 1_000);
    try {
      await sleep(pause, undefined, options.signal ? { signal: options.signal } : {});
    } catch {
      throw abortedError(options.signal, what);
    }
  }
}

/** What a backend does for a {@link Lease}; `current` is always the record last written. */
export interface LeaseDriver {
  readonly name: string;
  readonly ttlMs: number;
  readonly renewEveryMs: number;
  /** The clock locks are judged by: ms since the epoch (S3 corrects it by the server's). */
  now(): number;
  /**
   * Rewrites the lock from `current` to `next` if it is still `current`. Resolves to
   * undefined when done, or to what happened when the lock is no longer ours (the lease is
   * then lost). Throws on a failure that may pass (I/O): the timer tries again while the
   * lease lasts.
   */
  renew(current: LockRecord, next: LockRecord): Promise<string | undefined>;
  /** Removes the lock if it is still `current`; never anyone else's. */
  release(current: LockRecord): Promise<void>;
}

const asyncDispose: symbol | undefined = (Symbol as { asyncDispose?: symbol }).asyncDispose;

/**
 * The Lease of a just-acquired lock. It renews every `renewEveryMs` (timers are unref'd: a
 * lease never keeps the process alive) and aborts `signal` with STORE_LOCK_LOST when the lock
 * turns out not to be ours, or when `expiresAt` (less {@link leaseMarginMs}) comes without a
 * successful renewal — the moment others may take it over. A renewal that fails with an I/O
 * error is retried sooner; only the deadline turns such failures into a loss, since aborting
 * earlier would gain no safety. Supports `await using` where Symbol.asyncDispose exists.
 */
export function startLease(driver: LeaseDriver, first: LockRecord): Lease {
  const controller = new AbortController();
  const margin = leaseMarginMs(driver.ttlMs);
  let record = first;
  let info = lockInfoOf(first);
  let renewTimer: NodeJS.Timeout | undefined;
  let deadlineTimer: NodeJS.Timeout | undefined;
  let inflight: Promise<void> | undefined;
  let released: Promise<void> | undefined;
  let lostWith: StoreError | undefined;

  const stopTimers = () => {
    clearTimeout(renewTimer);
    clearTimeout(deadlineTimer);
    renewTimer = undefined;
    deadlineTimer = undefined;
  };

  const lose = (what: string, cause?: unknown): StoreError => {
    if (lostWith) return lostWith;
    lostWith = lostError(driver.name, what, cause);
    stopTimers();
    controller.abort(lostWith);
    return lostWith;
  };

  const deadlineOf = (r: LockRecord) => Date.parse(r.expiresAt) - margin;

  const armDeadline = () => {
    clearTimeout(deadlineTimer);
    if (released || lostWith) return;
    const armed = record;
    deadlineTimer = setTimeout(
      () => {
        if (record === armed && !released)
          lose(`it was not renewed before it expired at ${isoSeconds(new Date(armed.expiresAt))} (the store was unreachable or too slow)`);
      },
      Math.max(0, deadlineOf(armed) - driver.now()),
    );
    deadlineTimer.unref();
  };

  const schedule = (ms: number) => {
    clearTimeout(renewTimer);
    if (lostWith || released) return;
    renewTimer = setTimeout(() => {
      renewTimer = undefined;
      renew().then(
        () => schedule(driver.renewEveryMs),
        // Lost: the signal is aborted already. Otherwise a passing failure: try again sooner.
        () => schedule(Math.max(50, Math.min(driver.renewEveryMs, 1_000) / 2)),
      );
    }, ms);
    renewTimer.unref();
  };

  const renewOnce = async (): Promise<void> => {
    const current = record;
    const startedAt = driver.now();
    if (startedAt >= deadlineOf(current)) {
      throw lose(`it expired at ${isoSeconds(new Date(current.expiresAt))} before it could be renewed (was the process paused?)`);
    }
    // Each renewal moves expiresAt strictly forward, so (token, expiresAt) names one version.
    const expiresAt = new Date(Math.max(startedAt + driver.ttlMs, Date.parse(current.expiresAt) + 1));
    const next = renewedRecord(current, expiresAt);
    let problem: string | undefined;
    try {
      problem = await driver.renew(current, next);
    } catch (error) {
      if (lostWith) throw lostWith;
      throw error instanceof StoreError
        ? error
        : new StoreError('STORE_IO', `renewing lock "${driver.name}" failed: ${messageOf(error)}`, { cause: error });
    }
    if (problem !== undefined) throw lose(problem);
    // A renewal that lands after the deadline may have raced a takeover: it does not count,
    // and what it wrote must go (only if still ours, which release() checks).
    if (driver.now() >= deadlineOf(current) || lostWith) {
      driver.release(next).catch(() => {});
      throw lose(`renewing it took until after it had expired at ${isoSeconds(new Date(current.expiresAt))}`);
    }
    record = next;
    info = lockInfoOf(next);
    armDeadline();
  };

  const renew = (): Promise<void> => {
    if (lostWith) return Promise.reject(lostWith);
    if (released) return Promise.reject(lostError(driver.name, 'it was released'));
    inflight ??= renewOnce().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };

  const release = (): Promise<void> => {
    released ??= (async () => {
      stopTimers();
      await inflight?.catch(() => {});
      await driver.release(record);
    })().catch((error: unknown) => {
      // Let a later call try again; the lock goes stale by itself if nobody does.
      released = undefined;
      throw error instanceof StoreError
        ? error
        : new StoreError('STORE_IO', `releasing lock "${driver.name}" failed: ${messageOf(error)}`, { cause: error });
    });
    return released;
  };

  const lease: Lease = {
    get info() {
      return info;
    },
    signal: controller.signal,
    renew,
    release,
  };
  if (asyncDispose) Object.defineProperty(lease, asyncDispose, { value: release });
  armDeadline();
  schedule(driver.renewEveryMs);
  return lease;
}
