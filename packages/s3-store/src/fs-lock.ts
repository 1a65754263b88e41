// Lease locks in a directory: `<root>/.drkit-locks/<name>.lock`, one JSON record per lock.
//
// Creating: the record is written and fsynced to a unique temp file, then hard-linked to the
// lock path. link(2) fails with EEXIST if the path exists, so creation is exclusive like
// O_EXCL ('wx'), and the lock file is complete the moment it appears (open(2) recommends
// link over O_EXCL on NFS too). Where hard links are refused, the file is created with 'wx'.
//
// Every other change of the lock file (renewal, release, taking over a stale lock) replaces
// or removes one *version* of it, named by (token, expiresAt): each renewal moves expiresAt
// forward, tokens are random, so a version that has left the path never comes back. Such a
// change is made only inside a takeover guard for that version, the file
// `<name>.lock.<token>.<expiresAtMs>.g<level>` created with 'wx', and only after re-reading the
// path under the guard and finding that same version:
// - two processes cannot both hold the guard of one version (exclusive create), so they
//   cannot both replace or remove it;
// - while the path holds version V nobody can create a lock file (that needs the path
//   free), and only the holder of V's guard can replace or remove V;
// - so what the guard holder re-read is still there when it renames or unlinks: the
//   compare-and-swap is atomic. Two contenders that both saw V stale: one gets the guard and
//   removes V, the other finds the guard taken and retries; both then race on the exclusive
//   create, and exactly one wins.
// A guard left by a process that died inside its (sub-millisecond) section would block V
// forever, so it can be broken: a guard is stale when its process (same machine) is gone,
// or after 10 s (another machine) / 60 s (this machine, live pid). Breaking means creating
// the next level's guard exclusively, so even breakers cannot collide.

import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreError } from './errors.js';
import {
  type AttemptResult,
  acquireLoop,
  checkLockName,
  encodeLockRecord,
  holderOf,
  isoSeconds,
  type LeaseDriver,
  type LockRecord,
  lockInfoOf,
  MAX_LOCK_TTL_MS,
  machineIdentity,
  messageOf,
  newLockRecord,
  parseLockRecord,
  processIsDead,
  resolveLockOptions,
  sameMachine,
  startLease,
} from './lease.js';
import type { Lease, LockInfo, LockOptions } from './store.js';

/** The directory, under a store's root, that holds its locks. */
export const FS_LOCK_DIR = '.drkit-locks';

/** An unparseable lock file (torn by a crash in the 'wx' fall-back) is stale after this long. */
const UNREADABLE_STALE_MS = 2 * MAX_LOCK_TTL_MS;
const GUARD_LEVELS = 8;
const GUARD_STALE_MS = 10_000;
const GUARD_STALE_SAME_MACHINE_MS = 60_000;
/** Leftover guards and temp files (from crashes) older than this are swept on acquire. */
const LEFTOVER_MS = 10 * 60_000;
const LINK_UNSUPPORTED = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);
const BUSY: unique symbol = Symbol('busy');

interface Paths {
  name: string;
  dir: string;
  file: string;
}

function pathsOf(root: string, name: string): Paths {
  const dir = join(resolve(root), FS_LOCK_DIR);
  return { name, dir, file: join(dir, `${name}.lock`) };
}

/** What the lock path held when read, and the local time at which the read began. */
type Observed =
  | { kind: 'missing' }
  | { kind: 'record'; record: LockRecord; version: string; readAt: number }
  | { kind: 'unreadable'; version: string; modifiedAt: number; readAt: number };

const versionOf = (record: LockRecord) => `${record.token}.${Date.parse(record.expiresAt)}`;

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

function ioError(what: string, error: unknown): StoreError {
  if (error instanceof StoreError) return error;
  const code = errnoOf(error);
  const hint = code === 'EACCES' || code === 'EPERM' ? ': permission denied; every run must be able to write the lock directory' : '';
  return new StoreError('STORE_IO', `${what} failed (${code ?? messageOf(error)})${hint}`, { cause: error });
}

async function observe(file: string): Promise<Observed> {
  // Staleness is judged at the moment the read began: a holder's renewal that completed
  // before then is what we read (see docs/LOCKS.md, "Time").
  const readAt = Date.now();
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return { kind: 'missing' };
    throw error;
  }
  try {
    const [text, info] = await Promise.all([handle.readFile('utf8'), handle.stat()]);
    const record = parseLockRecord(text);
    if (record) return { kind: 'record', record, version: versionOf(record), readAt };
    return { kind: 'unreadable', version: `ino${info.ino}.${Math.trunc(info.mtimeMs)}.${info.size}`, modifiedAt: info.mtimeMs, readAt };
  } finally {
    await handle.close();
  }
}

/** Why the observed lock is stale, or undefined while it is live. */
function staleReason(seen: Observed): string | undefined {
  if (seen.kind === 'record') {
    const { record } = seen;
    if (Date.parse(record.expiresAt) < seen.readAt) return `it expired at ${isoSeconds(new Date(record.expiresAt))}`;
    if (record.pid !== process.pid && sameMachine(record) && processIsDead(record.pid)) return `its process ${record.pid} is gone`;
    return undefined;
  }
  if (seen.kind === 'unreadable' && seen.modifiedAt + UNREADABLE_STALE_MS < seen.readAt) return 'its file was unreadable for two minutes';
  return undefined;
}

function unreadableInfo(paths: Paths, seen: Extract<Observed, { kind: 'unreadable' }>): LockInfo {
  return {
    name: paths.name,
    owner: `an unknown process (${paths.file} is not a lock record; delete it if no run is active)`,
    token: '',
    host: '',
    pid: 0,
    acquiredAt: new Date(seen.modifiedAt),
    expiresAt: new Date(seen.modifiedAt + UNREADABLE_STALE_MS),
  };
}

/** Writes `text` to a new file (exclusively) and fsyncs it. */
async function writeNew(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx', 0o644);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the link/rename is still atomic.
  } finally {
    await handle.close();
  }
}

const tempOf = (paths: Paths, record: LockRecord) =>
  join(paths.dir, `${paths.name}.lock.${record.token}.${Math.floor(Math.random() * 0xffffffff).toString(16)}.tmp`);

/** Creates the lock file holding `record` if there is none. True if it did. */
async function createExclusive(paths: Paths, record: LockRecord): Promise<boolean> {
  const text = encodeLockRecord(record);
  const temp = tempOf(paths, record);
  await writeNew(temp, text);
  try {
    try {
      await link(temp, paths.file);
      return true;
    } catch (error) {
      if (errnoOf(error) === 'EEXIST') return false;
      if (!LINK_UNSUPPORTED.has(errnoOf(error) ?? '')) throw error;
    }
    try {
      await writeNew(paths.file, text);
      return true;
    } catch (error) {
      if (errnoOf(error) === 'EEXIST') return false;
      throw error;
    }
  } finally {
    await unlink(temp).catch(() => {});
    await syncDir(paths.dir);
  }
}

/** Replaces the lock file atomically with `record` (call only inside the guard). */
async function replace(paths: Paths, record: LockRecord): Promise<void> {
  const temp = tempOf(paths, record);
  await writeNew(temp, encodeLockRecord(record));
  try {
    await rename(temp, paths.file);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
  await syncDir(paths.dir);
}

async function guardIsStale(path: string): Promise<boolean | undefined> {
  let text: string;
  let modifiedAt: number;
  try {
    [text, modifiedAt] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => s.mtimeMs)]);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw error;
  }
  let guard: { host?: unknown; pidns?: unknown; boot?: unknown; pid?: unknown; createdAt?: unknown } | undefined;
  try {
    guard = JSON.parse(text) as typeof guard;
  } catch {
    guard = undefined;
  }
  const age = Date.now() - (typeof guard?.createdAt === 'number' ? guard.createdAt : modifiedAt);
  if (guard && typeof guard.host === 'string' && typeof guard.pid === 'number') {
    const here = sameMachine({
      host: guard.host,
      ...(typeof guard.pidns === 'string' ? { pidns: guard.pidns } : {}),
      ...(typeof guard.boot === 'string' ? { boot: guard.boot } : {}),
    });
    if (here && guard.pid !== process.pid && processIsDead(guard.pid)) return true;
    return age > (here ? GUARD_STALE_SAME_MACHINE_MS : GUARD_STALE_MS);
  }
  return age > GUARD_STALE_MS;
}

/**
 * Runs `fn` holding the takeover guard of one version of the lock file, or returns BUSY if
 * another live process holds it. See the comment at the top of this file.
 */
async function withGuard<T>(paths: Paths, version: string, fn: () => Promise<T>): Promise<T | typeof BUSY> {
  const base = join(paths.dir, `${paths.name}.lock.${version}.g`);
  const body = JSON.stringify({ ...machineIdentity(), createdAt: Date.now() });
  let level = 0;
  for (; ; level++) {
    if (level === GUARD_LEVELS) return BUSY;
    try {
      await writeNew(`${base}${level}`, body);
      break;
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') throw error;
      // Gone meanwhile (its holder finished) or live: either way, not ours to enter now.
      if ((await guardIsStale(`${base}${level}`)) !== true) return BUSY;
    }
  }
  try {
    return await fn();
  } finally {
    // The version is gone (or was not there): nobody needs its guards any more. Lower levels
    // were stale; a late process that creates one again finds a different version and leaves.
    for (let l = level; l >= 0; l--) await unlink(`${base}${l}`).catch(() => {});
  }
}

/** Why `seen` is not our lock at version `current` any more, or undefined if it is. */
function notOurs(seen: Observed, current: LockRecord): string | undefined {
  if (seen.kind === 'missing') return 'its lock file was removed';
  if (seen.kind === 'unreadable') return 'its lock file was overwritten with something that is not a lock record';
  if (seen.record.token !== current.token) return `it was taken over by ${holderOf(lockInfoOf(seen.record))}`;
  if (seen.version !== versionOf(current)) return 'its lock file was rewritten by another process';
  return undefined;
}

/** Removes guards and temp files of `name` left by crashed processes. Best effort. */
async function sweepLeftovers(paths: Paths): Promise<void> {
  const pattern = new RegExp(`^${paths.name.replaceAll('.', '\\.')}\\.lock\\.[0-9a-f]{32}\\.(?:\\d+\\.g\\d+|[0-9a-f]+\\.tmp)$`);
  const names = await readdir(paths.dir).catch(() => [] as string[]);
  for (const entry of names) {
    if (!pattern.test(entry)) continue;
    const path = join(paths.dir, entry);
    const info = await stat(path).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > LEFTOVER_MS) await unlink(path).catch(() => {});
  }
}

function driverFor(paths: Paths, ttlMs: number, renewEveryMs: number): LeaseDriver {
  return {
    name: paths.name,
    ttlMs,
    renewEveryMs,
    now: () => Date.now(),
    renew: async (current, next) => {
      let result: string | undefined | typeof BUSY;
      try {
        result = await withGuard(paths, versionOf(current), async () => {
          const problem = notOurs(await observe(paths.file), current);
          if (problem === undefined) await replace(paths, next);
          return problem;
        });
      } catch (error) {
        // The guard could not be created: the whole lock directory is gone, and our file with it.
        if (errnoOf(error) === 'ENOENT') return 'its lock directory was removed';
        throw ioError(`renewing lock file ${paths.file}`, error);
      }
      // Someone holds our version's guard: they judged it stale and are taking it over. The
      // deadline decides; a retry will tell.
      if (result === BUSY) throw new StoreError('STORE_IO', `renewing lock file ${paths.file}: another process is taking it over`);
      return result;
    },
    release: async (current) => {
      for (let attempt = 0; attempt < 40; attempt++) {
        let result: true | typeof BUSY;
        try {
          result = await withGuard(paths, versionOf(current), async () => {
            if (notOurs(await observe(paths.file), current) === undefined) {
              await unlink(paths.file);
              await syncDir(paths.dir);
            }
            return true as const;
          });
        } catch (error) {
          if (errnoOf(error) === 'ENOENT') return;
          throw ioError(`removing lock file ${paths.file}`, error);
        }
        if (result !== BUSY) return;
        await sleep(10 + Math.random() * 40);
      }
      // A takeover of our version has been in progress all along: it is not ours to remove.
    },
  };
}

/**
 * Takes the lease lock `name` in the directory `root` (a file store's root): the file
 * `<root>/.drkit-locks/<name>.lock`. A lock whose holder stopped renewing is taken over once
 * its `expiresAt` has passed, and at once if its holder was a process of this machine that
 * no longer exists (a run killed with SIGKILL). Clocks of machines sharing the directory
 * must agree (NTP) to within {@link leaseMarginMs}.
 * @throws StoreError STORE_LOCKED naming the holder; STORE_KEY_INVALID, STORE_OPTIONS_INVALID,
 *   STORE_ABORTED, STORE_IO
 */
export async function acquireFsLock(root: string, name: string, options?: LockOptions): Promise<Lease> {
  checkLockName(name);
  const opts = resolveLockOptions(options);
  const paths = pathsOf(root, name);
  const driver = driverFor(paths, opts.ttlMs, opts.renewEveryMs);
  let swept = false;
  const attempt = async (): Promise<AttemptResult> => {
    await mkdir(paths.dir, { recursive: true });
    const record = newLockRecord(name, opts, Date.now());
    if (await createExclusive(paths, record)) {
      if (!swept) {
        swept = true;
        await sweepLeftovers(paths);
      }
      return { kind: 'acquired', lease: startLease(driver, record) };
    }
    const seen = await observe(paths.file);
    if (seen.kind === 'missing') return { kind: 'again' };
    const info = seen.kind === 'record' ? lockInfoOf(seen.record) : unreadableInfo(paths, seen);
    if (staleReason(seen) === undefined) return { kind: 'held', info };
    const taken = await withGuard(paths, seen.version, async () => {
      const now = await observe(paths.file);
      if (now.kind !== 'missing' && now.version === seen.version) {
        await unlink(paths.file);
        await syncDir(paths.dir);
      }
    });
    // Another process is removing the same stale lock right now: it will try to create its
    // own next, so this is a collision, not a holder.
    if (taken === BUSY) return { kind: 'held', info, acquiring: true };
    return { kind: 'again' };
  };
  return acquireLoop(name, opts, async () => {
    try {
      return await attempt();
    } catch (error) {
      throw ioError(`taking lock file ${paths.file}`, error);
    }
  });
}

/**
 * The holder of lock `name` under `root`, stale or not; undefined when it is free.
 * @throws StoreError STORE_KEY_INVALID, STORE_IO (also for a lock file that is not a record)
 */
export async function readFsLock(root: string, name: string): Promise<LockInfo | undefined> {
  checkLockName(name);
  const paths = pathsOf(root, name);
  let seen: Observed;
  try {
    seen = await observe(paths.file);
  } catch (error) {
    throw ioError(`reading lock file ${paths.file}`, error);
  }
  if (seen.kind === 'missing') return undefined;
  if (seen.kind === 'unreadable') throw new StoreError('STORE_IO', `lock file ${paths.file} is not a lock record (torn or corrupt)`);
  return lockInfoOf(seen.record);
}
