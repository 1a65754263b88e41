import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isStoreError, type StoreError } from '../src/errors.js';
import { acquireFsLock, readFsLock } from '../src/fs-lock.js';
import { encodeLockRecord, machineIdentity, newLockRecord, resolveLockOptions } from '../src/lease.js';
import {
  acquireS3Lock,
  probeS3ConditionalWrites,
  readS3Lock,
  type S3Lease,
  type S3LockTarget,
  s3LockClockOffsetMs,
} from '../src/s3-lock.js';
import type { Lease, LockInfo, LockOptions } from '../src/store.js';

const holderScript = fileURLToPath(new URL('./fixtures/lock-holder.ts', import.meta.url));

let s3: S3Sandbox;
const clients: S3Client[] = [];
const children = new Set<ChildProcess>();
const dirs: string[] = [];
/** Leases a test took; released after all tests (no timer outlives the file). */
const leases: Lease[] = [];

beforeAll(async () => {
  s3 = await startS3();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(leases.map((lease) => lease.release().catch(() => {})));
  for (const client of clients) client.destroy();
  await s3?.stop();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

function track<T extends Lease>(lease: T): T {
  leases.push(lease);
  return lease;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drkit-lock-test-'));
  dirs.push(dir);
  return dir;
}

function newClient(): S3Client {
  const client = new S3Client(s3.clientConfig());
  clients.push(client);
  return client;
}

function newTarget(client = newClient()): S3LockTarget {
  return { client, bucket: s3.buckets[0] as string, prefix: `locks-${randomBytes(4).toString('hex')}/` };
}

async function errorOf(promise: Promise<unknown>): Promise<StoreError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isStoreError(error)) throw new Error(`expected a StoreError, got ${String(error)}`);
  return error;
}

/** Resolves with the signal's reason when it aborts, or rejects after `ms`. */
function abortedWithin(signal: AbortSignal, ms: number): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`signal not aborted within ${ms} ms`)), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    });
  });
}

/** Starts the holder fixture and resolves once it holds the lock. */
async function startHolder(args: string[]): Promise<{ child: ChildProcess; pid: number; token: string; exited: Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', holderScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let out = '';
  let err = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const held = await new Promise<{ pid: number; token: string }>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line) as { pid: number; token: string });
    });
    child.once('exit', () => reject(new Error(`the lock holder exited before holding the lock:\n${err}`)));
  });
  return { child, ...held, exited };
}

async function kill9(holder: { child: ChildProcess; exited: Promise<void> }): Promise<void> {
  holder.child.kill('SIGKILL');
  await holder.exited;
  children.delete(holder.child);
}

/** One lock backend as the shared tests see it. */
interface Backend {
  acquire(name: string, options?: LockOptions): Promise<Lease>;
  read(name: string): Promise<LockInfo | undefined>;
  /** Deletes the lock's file / entry / object behind its holder's back. */
  removeUnderneath(name: string, lease: Lease): Promise<void>;
}

function fsBackend(root: string): Backend {
  return {
    acquire: async (name, options) => track(await acquireFsLock(root, name, options)),
    read: (name) => readFsLock(root, name),
    removeUnderneath: (name) => rm(join(root, '.drkit-locks', `${name}.lock`)),
  };
}

function s3Backend(target: S3LockTarget, mode: 'list' | 'auto'): Backend {
  return {
    acquire: async (name, options) => track(await acquireS3Lock(target, name, { ...options, mode })),
    read: (name) => readS3Lock(target, name),
    removeUnderneath: async (name, lease) => {
      const Key = `${target.prefix}.drkit-locks/${name}/${lease.info.token}/entry.json`;
      // Without conditional writes, a deletion that falls between a renewal's read and its
      // rewrite is undone by that rewrite (docs/LOCKS.md says so). An operator deletes again;
      // so does this helper, until the entry stays gone or the holder has noticed.
      const exists = () =>
        target.client.send(new HeadObjectCommand({ Bucket: target.bucket, Key })).then(
          () => true,
          () => false,
        );
      for (let attempt = 0; attempt < 5 && !lease.signal.aborted; attempt++) {
        await target.client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key }));
        let back = false;
        for (const until = performance.now() + 1_000; !back && !lease.signal.aborted && performance.now() < until; ) {
          await sleep(50);
          back = await exists();
        }
        if (!back) return;
      }
    },
  };
}

// Every behaviour runs on fs and on S3 'list'; 'auto' (which resolves to 'list' on s3rver, as
// the probe test below asserts) runs the basics and the race.
const backends: [string, () => Promise<Backend>, 'all' | 'basics'][] = [
  ['fs', async () => fsBackend(await tempDir()), 'all'],
  ['s3 list', async () => s3Backend(newTarget(), 'list'), 'all'],
  ['s3 auto (list on s3rver)', async () => s3Backend(newTarget(), 'auto'), 'basics'],
];

describe.each(backends)('%s lock', (_label, make, scope) => {
  it('refuses a second acquire naming the holder, and can be taken again once released', async () => {
    const backend = await make();
    expect(await backend.read('database-corruption')).toBeUndefined();
    const alice = await backend.acquire('database-corruption', { owner: 'alice@host-1 pid 4242' });
    expect(alice.info).toMatchObject({ name: 'database-corruption', owner: 'alice@host-1 pid 4242', pid: process.pid, host: hostname() });
    expect(alice.info.token).toMatch(/^[0-9a-f]{32}$/);
    expect(alice.info.expiresAt.getTime() - alice.info.acquiredAt.getTime()).toBe(30_000);
    expect((await backend.read('database-corruption'))?.token).toBe(alice.info.token);

    const refused = await errorOf(backend.acquire('database-corruption', { owner: 'bob' }));
    expect(refused.code).toBe('STORE_LOCKED');
    const since = alice.info.acquiredAt.toISOString().replace(/\.\d{3}Z$/, 'Z');
    expect(refused.message).toContain(`lock "database-corruption" is held by alice@host-1 pid 4242 since ${since} (renewed until `);
    expect(refused.message).toContain('wait for that run to finish — if it died, the lock goes stale at ');
    // Another lock name is independent.
    const other = await backend.acquire('cron-drill');
    await other.release();

    await alice.release();
    await alice.release();
    expect(alice.signal.aborted).toBe(false);
    expect(await backend.read('database-corruption')).toBeUndefined();
    const bob = await backend.acquire('database-corruption', { owner: 'bob' });
    expect((await backend.read('database-corruption'))?.owner).toBe('bob');
    // Releasing alice's lease again must not touch bob's lock.
    await alice.release();
    expect((await backend.read('database-corruption'))?.token).toBe(bob.info.token);
    await bob.release();
  });

  it("release() never removes a lock that is no longer the lease's", async () => {
    const backend = await make();
    const first = await backend.acquire('restore', { owner: 'first' });
    await backend.removeUnderneath('restore', first);
    const second = await backend.acquire('restore', { owner: 'second' });
    await first.release();
    expect((await backend.read('restore'))?.token).toBe(second.info.token);
    await expect(first.renew()).rejects.toMatchObject({ code: 'STORE_LOCK_LOST' });
    await second.release();
  });

  it('lets exactly one of ten concurrent contenders win, round after round', async () => {
    const backend = await make();
    for (let round = 0; round < 4; round++) {
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => backend.acquire('race', { owner: `c${i}` })));
      const winners = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const codes = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as StoreError).code] : []));
      expect(winners).toHaveLength(1);
      expect(codes).toEqual(Array(9).fill('STORE_LOCKED'));
      const winner = winners[0] as Lease;
      expect((await backend.read('race'))?.token).toBe(winner.info.token);
      await winner.release();
    }
  });

  if (scope === 'basics') return;

  it('renews itself past several TTLs, and aborts its signal when its lock is removed underneath', async () => {
    const backend = await make();
    const lease = await backend.acquire('long-run', { ttlMs: 1_000, renewEveryMs: 200 });
    const acquiredAt = lease.info.acquiredAt.getTime();
    await sleep(3_200);
    expect(lease.signal.aborted).toBe(false);
    const stored = await backend.read('long-run');
    expect(stored?.token).toBe(lease.info.token);
    expect((stored?.expiresAt.getTime() ?? 0) - acquiredAt).toBeGreaterThan(3_000);
    expect((await errorOf(backend.acquire('long-run'))).code).toBe('STORE_LOCKED');

    await backend.removeUnderneath('long-run', lease);
    const reason = (await abortedWithin(lease.signal, 2_000)) as StoreError;
    expect(reason.code).toBe('STORE_LOCK_LOST');
    expect(reason.message).toMatch(
      /^lock "long-run" was lost: its lock (file|entry) was (removed|deleted); stop what you are doing: another run may hold the lock now$/,
    );
    await expect(lease.renew()).rejects.toBe(reason);
    await lease.release();
  });

  it('waitMs: a waiter takes the lock as soon as the holder releases it; an aborted wait fails with STORE_ABORTED', async () => {
    const backend = await make();
    const holder = await backend.acquire('wait', { owner: 'holder' });
    const started = performance.now();
    const waiter = backend.acquire('wait', { owner: 'waiter', waitMs: 20_000 });
    await sleep(500);
    const releasedAt = performance.now();
    await holder.release();
    const lease = await waiter;
    expect(lease.info.owner).toBe('waiter');
    expect(performance.now() - releasedAt).toBeLessThan(1_500);
    expect(releasedAt - started).toBeGreaterThanOrEqual(450);

    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const aborted = await errorOf(backend.acquire('wait', { waitMs: 20_000, signal: controller.signal }));
    expect(aborted.code).toBe('STORE_ABORTED');

    const timedOut = await errorOf(backend.acquire('wait', { waitMs: 400 }));
    expect(timedOut.code).toBe('STORE_LOCKED');
    expect(timedOut.message).toMatch(/held by waiter .*\(waited 0\.\d+s\)/);
    await lease.release();
  });

  it('a lease is async-disposable: disposing releases it', async () => {
    const backend = await make();
    const lease = await backend.acquire('dispose');
    const asyncDispose = (Symbol as unknown as { asyncDispose: symbol }).asyncDispose;
    const dispose = (lease as unknown as Record<symbol, (() => Promise<void>) | undefined>)[asyncDispose];
    expect(typeof dispose).toBe('function');
    await dispose?.call(lease);
    expect(await backend.read('dispose')).toBeUndefined();
  });
});

describe('lock names and options', () => {
  const badNames = ['', '.hidden', '-x', 'a/b', '../up', 'sp ace', 'x'.repeat(129), 'naïve'];
  const badOptions: LockOptions[] = [
    { ttlMs: 60_001 },
    { ttlMs: 999 },
    { ttlMs: 1500.5 },
    { ttlMs: 10_000, renewEveryMs: 10_000 },
    { ttlMs: 10_000, renewEveryMs: 20_000 },
    { renewEveryMs: 0 },
    { waitMs: -1 },
    { owner: '' },
    { owner: 'two\nlines' },
  ];

  it('refuses bad lock names with STORE_KEY_INVALID and bad options with STORE_OPTIONS_INVALID, touching nothing', async () => {
    const root = await tempDir();
    const target = newTarget();
    for (const name of badNames) {
      expect((await errorOf(acquireFsLock(root, name))).code).toBe('STORE_KEY_INVALID');
      expect((await errorOf(readFsLock(root, name))).code).toBe('STORE_KEY_INVALID');
      expect((await errorOf(acquireS3Lock(target, name))).code).toBe('STORE_KEY_INVALID');
    }
    for (const options of badOptions) {
      expect((await errorOf(acquireFsLock(root, 'ok', options))).code, JSON.stringify(options)).toBe('STORE_OPTIONS_INVALID');
      expect((await errorOf(acquireS3Lock(target, 'ok', options))).code).toBe('STORE_OPTIONS_INVALID');
    }
    expect((await errorOf(acquireS3Lock(target, 'ok', { mode: 'optimistic' as 'list' }))).code).toBe('STORE_OPTIONS_INVALID');
    expect((await errorOf(acquireS3Lock({ ...target, prefix: 'no-slash' }, 'ok'))).code).toBe('STORE_OPTIONS_INVALID');
    expect(existsSync(join(root, '.drkit-locks'))).toBe(false);
    const listed = await target.client.send(new ListObjectsV2Command({ Bucket: target.bucket, Prefix: target.prefix }));
    expect(listed.Contents ?? []).toEqual([]);
  });

  it('applies the documented defaults', () => {
    const resolved = resolveLockOptions({});
    expect(resolved).toMatchObject({ ttlMs: 30_000, renewEveryMs: 10_000, waitMs: 0 });
    expect(resolved.owner).toMatch(new RegExp(`^.+@${hostname().replaceAll('.', '\\.')} pid ${process.pid}$`));
    expect(resolveLockOptions({ ttlMs: 60_000 }).renewEveryMs).toBe(20_000);
  });
});

describe('fs lock: stale locks', () => {
  const lockFile = (root: string, name: string) => join(root, '.drkit-locks', `${name}.lock`);

  async function writeRecord(root: string, name: string, fields: { host?: string; pid?: number; expiresInMs: number; owner?: string }) {
    const now = Date.now();
    const record = {
      ...newLockRecord(name, resolveLockOptions({ owner: fields.owner ?? 'someone' }), now - 60_000),
      host: fields.host ?? hostname(),
      pid: fields.pid ?? process.pid,
      expiresAt: new Date(now + fields.expiresInMs).toISOString(),
    };
    await mkdir(join(root, '.drkit-locks'), { recursive: true });
    // Atomically, as a real holder would: a reader must never see half a record.
    const temp = join(root, `${name}.${randomBytes(4).toString('hex')}.tmp`);
    await writeFile(temp, encodeLockRecord(record));
    await rename(temp, lockFile(root, name));
    return record;
  }

  it('takes over at once the lock of a holder on this machine that was killed with SIGKILL', async () => {
    const root = await tempDir();
    const holder = await startHolder(['fs', root, 'db', '30000']);
    const info = await readFsLock(root, 'db');
    expect(info).toMatchObject({ pid: holder.pid, token: holder.token, host: hostname() });
    const refused = await errorOf(acquireFsLock(root, 'db'));
    expect(refused.code).toBe('STORE_LOCKED');
    expect(refused.message).toContain(`holder pid ${holder.pid}`);

    await kill9(holder);
    // Its lease has 30 s to run: only the dead-pid rule can explain an immediate takeover.
    expect((info?.expiresAt.getTime() ?? 0) - Date.now()).toBeGreaterThan(20_000);
    const lease = track(await acquireFsLock(root, 'db', { owner: 'next run' }));
    expect((await readFsLock(root, 'db'))?.token).toBe(lease.info.token);
    await lease.release();
  });

  it('takes over an expired lock of another host, and refuses a live one naming that host', async () => {
    const root = await tempDir();
    await writeRecord(root, 'live', { host: 'far-away-host', pid: 1, expiresInMs: 20_000, owner: 'carol' });
    const refused = await errorOf(acquireFsLock(root, 'live'));
    expect(refused.message).toContain('held by carol (far-away-host pid 1)');

    await writeRecord(root, 'expired', { host: 'far-away-host', pid: 1, expiresInMs: -1, owner: 'carol' });
    const lease = track(await acquireFsLock(root, 'expired'));
    expect((await readFsLock(root, 'expired'))?.token).toBe(lease.info.token);
    await lease.release();
  });

  it('lets exactly one of ten contenders take over the same stale lock', async () => {
    const root = await tempDir();
    for (let round = 0; round < 5; round++) {
      const stale = await writeRecord(root, 'stale', { host: 'far-away-host', expiresInMs: -5 });
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => acquireFsLock(root, 'stale', { owner: `c${i}` })));
      const winners = results.flatMap((r) => (r.status === 'fulfilled' ? [track(r.value)] : []));
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r.reason as StoreError).code)).toEqual(
        Array(9).fill('STORE_LOCKED'),
      );
      const now = await readFsLock(root, 'stale');
      expect(now?.token).not.toBe(stale.token);
      expect(now?.token).toBe(winners[0]?.info.token);
      await winners[0]?.release();
      // No guard or temp file is left behind.
      expect(await readdir(join(root, '.drkit-locks'))).toEqual([]);
    }
  });

  it('is not blocked by a takeover guard left by a process that died', async () => {
    const root = await tempDir();
    const stale = await writeRecord(root, 'guarded', { host: 'far-away-host', expiresInMs: -5 });
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.once('exit', resolve));
    const guard = join(root, '.drkit-locks', `guarded.lock.${stale.token}.${Date.parse(stale.expiresAt)}.g0`);
    await writeFile(guard, JSON.stringify({ ...machineIdentity(), pid: dead.pid, createdAt: Date.now() }));
    const lease = track(await acquireFsLock(root, 'guarded'));
    expect((await readFsLock(root, 'guarded'))?.token).toBe(lease.info.token);
    expect(existsSync(guard)).toBe(false);
    await lease.release();
  });

  it('a lease whose lock file is overwritten by another holder aborts with STORE_LOCK_LOST naming it', async () => {
    const root = await tempDir();
    const lease = track(await acquireFsLock(root, 'db', { ttlMs: 1_000, renewEveryMs: 200 }));
    await writeRecord(root, 'db', { owner: 'mallory', expiresInMs: 20_000 });
    const reason = (await abortedWithin(lease.signal, 2_000)) as StoreError;
    expect(reason.code).toBe('STORE_LOCK_LOST');
    expect(reason.message).toContain('it was taken over by mallory');
    await lease.release();
    expect((await readFsLock(root, 'db'))?.owner).toBe('mallory');
  });

  it('writes a complete JSON record', async () => {
    const root = await tempDir();
    const lease = track(await acquireFsLock(root, 'record', { owner: 'dave' }));
    const stored = JSON.parse(await readFile(lockFile(root, 'record'), 'utf8')) as Record<string, unknown>;
    expect(stored).toMatchObject({
      owner: 'dave',
      token: lease.info.token,
      host: hostname(),
      pid: process.pid,
      acquiredAt: lease.info.acquiredAt.toISOString(),
      expiresAt: lease.info.expiresAt.toISOString(),
    });
    await lease.release();
    expect(existsSync(lockFile(root, 'record'))).toBe(false);
  });
});

describe('S3 lock', () => {
  it("'auto' probes once per client and bucket: s3rver ignores conditional writes, so 'list' is used and the probe is cleaned up", async () => {
    const target = newTarget();
    expect(await probeS3ConditionalWrites(target)).toEqual({ conditionalWrites: false, conditionalDeletes: false });
    expect(probeS3ConditionalWrites({ ...target, prefix: 'elsewhere/' })).toBe(probeS3ConditionalWrites(target));
    const lease = track(await acquireS3Lock(target, 'auto'));
    expect((lease as S3Lease).mode).toBe('list');
    await lease.release();
    const left = await target.client.send(new ListObjectsV2Command({ Bucket: target.bucket, Prefix: target.prefix }));
    expect(left.Contents ?? []).toEqual([]);
  });

  it("forcing 'conditional' on a server that ignores If-None-Match is refused with STORE_UNSUPPORTED", async () => {
    const target = newTarget();
    // What the probe guards against: s3rver lets a second If-None-Match: * PUT through.
    const key = `${target.prefix}raw-check`;
    await target.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: key, Body: 'a', IfNoneMatch: '*' }));
    await target.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: key, Body: 'b', IfNoneMatch: '*' }));
    await target.client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key: key }));

    const error = await errorOf(acquireS3Lock(target, 'db', { mode: 'conditional' }));
    expect(error.code).toBe('STORE_UNSUPPORTED');
    expect(error.message).toContain(
      "ignores conditional writes (If-None-Match / If-Match on PutObject), so mode 'conditional' would let two runs hold the lock",
    );
    const left = await target.client.send(new ListObjectsV2Command({ Bucket: target.bucket, Prefix: target.prefix }));
    expect(left.Contents ?? []).toEqual([]);
  });

  it('a live lock object of the conditional protocol blocks a list-mode acquirer, and readS3Lock reports it', async () => {
    const target = newTarget();
    const record = newLockRecord('shared', resolveLockOptions({ owner: 'erin' }), Date.now(), 'held');
    const key = `${target.prefix}.drkit-locks/shared.lock`;
    await target.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: key, Body: encodeLockRecord(record) }));
    const refused = await errorOf(acquireS3Lock(target, 'shared', { mode: 'list' }));
    expect(refused.code).toBe('STORE_LOCKED');
    expect(refused.message).toContain('held by erin');
    expect((await readS3Lock(target, 'shared'))?.token).toBe(record.token);
    await target.client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key: key }));
    const lease = track(await acquireS3Lock(target, 'shared', { mode: 'list' }));
    await lease.release();
  });

  it('takes over the lock of a holder killed with SIGKILL once its TTL has passed', async () => {
    const target = newTarget();
    const holder = await startHolder(['s3', s3.endpoint, target.bucket, target.prefix, 'db', '1500']);
    expect((await readS3Lock(target, 'db'))?.token).toBe(holder.token);
    await kill9(holder);
    const killedAt = performance.now();
    const refused = await errorOf(acquireS3Lock(target, 'db'));
    expect(refused.code).toBe('STORE_LOCKED');
    expect(refused.message).toContain(`holder pid ${holder.pid}`);

    const lease = track(await acquireS3Lock(target, 'db', { waitMs: 10_000, owner: 'next run' }));
    const waited = performance.now() - killedAt;
    expect(waited).toBeLessThan(1_500 + 2_000);
    expect((await readS3Lock(target, 'db'))?.token).toBe(lease.info.token);
    // The dead holder's entry is gone: it was deleted as stale.
    const left = await target.client.send(new ListObjectsV2Command({ Bucket: target.bucket, Prefix: `${target.prefix}.drkit-locks/db/` }));
    expect((left.Contents ?? []).map((o) => o.Key)).toEqual([`${target.prefix}.drkit-locks/db/${lease.info.token}/entry.json`]);
    await lease.release();
  });

  it('a lease whose entry is overwritten underneath fails renew() with STORE_LOCK_LOST and aborts its signal', async () => {
    const target = newTarget();
    const lease = track(await acquireS3Lock(target, 'db', { mode: 'list' }));
    const key = `${target.prefix}.drkit-locks/db/${lease.info.token}/entry.json`;
    const stored = await (await target.client.send(new GetObjectCommand({ Bucket: target.bucket, Key: key }))).Body?.transformToString();
    const tampered = { ...JSON.parse(stored ?? '{}'), expiresAt: new Date(Date.now() + 50_000).toISOString() };
    await target.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: key, Body: JSON.stringify(tampered) }));
    const error = await errorOf(lease.renew());
    expect(error.code).toBe('STORE_LOCK_LOST');
    expect(error.message).toContain('its lock entry was overwritten');
    expect(lease.signal.aborted).toBe(true);
    expect(lease.signal.reason).toBe(error);
    await lease.release();
  });

  it("a renewal that finds another holder's live entry loses the lease (both must stop)", async () => {
    const target = newTarget();
    const lease = track(await acquireS3Lock(target, 'db', { mode: 'list' }));
    const intruder = newLockRecord('db', resolveLockOptions({ owner: 'intruder' }), Date.now(), 'held');
    await target.client.send(
      new PutObjectCommand({
        Bucket: target.bucket,
        Key: `${target.prefix}.drkit-locks/db/${intruder.token}/entry.json`,
        Body: encodeLockRecord(intruder),
      }),
    );
    const error = await errorOf(lease.renew());
    expect(error.code).toBe('STORE_LOCK_LOST');
    expect(error.message).toContain('intruder holds it too');
    await lease.release();
    // Only the lease's own entry went; the intruder's is not ours to remove.
    expect((await readS3Lock(target, 'db'))?.token).toBe(intruder.token);
  });

  it('judges time by the server when this host is grossly off its clock (Date headers)', async () => {
    const client = newClient();
    // Every response claims the server is 5 minutes behind this host.
    const handler = client.config.requestHandler as unknown as {
      handle(request: unknown, options?: unknown): Promise<{ response: { headers: Record<string, string> } }>;
    };
    const handle = handler.handle.bind(handler);
    handler.handle = async (request, options) => {
      const out = await handle(request, options);
      const date = out.response.headers.date;
      if (date) out.response.headers.date = new Date(Date.parse(date) - 300_000).toUTCString();
      return out;
    };
    const target = newTarget(client);
    const lease = track(await acquireS3Lock(target, 'skewed', { ttlMs: 1_500 }));
    expect(Math.abs(s3LockClockOffsetMs(client) + 300_000)).toBeLessThan(2_500);
    expect(Math.abs(lease.info.expiresAt.getTime() - (Date.now() - 300_000 + 1_500))).toBeLessThan(2_500);
    // Renewals judge and write by the same corrected clock: the lease lives on.
    await sleep(2_000);
    expect(lease.signal.aborted).toBe(false);
    expect((await readS3Lock(target, 'skewed'))?.token).toBe(lease.info.token);
    await lease.release();
    expect(s3LockClockOffsetMs(newClient())).toBe(0);
  });
});

/**
 * An in-memory S3 that evaluates If-None-Match / If-Match atomically, as AWS does and s3rver
 * does not: the only way to run the 'conditional' protocol here. Each request yields to the
 * event loop first, so concurrent contenders interleave as they would over a network.
 */
function conditionalS3(options: { conditionalDeletes: boolean }): {
  client: S3Client;
  objects: Map<string, { body: string; etag: string }>;
} {
  const objects = new Map<string, { body: string; etag: string }>();
  let version = 0;
  const fail = (name: string, status: number) => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
  const check = (key: string, input: { IfNoneMatch?: string; IfMatch?: string }) => {
    const current = objects.get(key);
    if (input.IfNoneMatch === '*' && current) throw fail('PreconditionFailed', 412);
    if (input.IfMatch !== undefined && !current) throw fail('NoSuchKey', 404);
    if (input.IfMatch !== undefined && current?.etag !== input.IfMatch) throw fail('PreconditionFailed', 412);
  };
  const send = async (command: unknown): Promise<unknown> => {
    await new Promise((resolve) => setImmediate(resolve));
    if (command instanceof PutObjectCommand) {
      const { Key, Body, IfNoneMatch, IfMatch } = command.input;
      check(Key as string, { ...(IfNoneMatch ? { IfNoneMatch } : {}), ...(IfMatch ? { IfMatch } : {}) });
      const etag = `"${++version}"`;
      objects.set(Key as string, { body: String(Body), etag });
      return { ETag: etag };
    }
    if (command instanceof GetObjectCommand || command instanceof HeadObjectCommand) {
      const object = objects.get(command.input.Key as string);
      if (!object) throw fail(command instanceof GetObjectCommand ? 'NoSuchKey' : 'NotFound', 404);
      return { Body: { transformToString: async () => object.body }, ETag: object.etag, LastModified: new Date() };
    }
    if (command instanceof DeleteObjectCommand) {
      const { Key, IfMatch } = command.input;
      if (options.conditionalDeletes && IfMatch) check(Key as string, { IfMatch });
      objects.delete(Key as string);
      return {};
    }
    if (command instanceof ListObjectsV2Command) {
      const prefix = command.input.Prefix ?? '';
      return { Contents: [...objects.keys()].filter((k) => k.startsWith(prefix)).map((Key) => ({ Key })), IsTruncated: false };
    }
    throw new Error('not implemented in the fake');
  };
  return { client: { send, config: {} } as unknown as S3Client, objects };
}

describe("S3 lock, 'conditional' protocol (in-memory S3 that enforces conditional requests)", () => {
  const target = (client: S3Client): S3LockTarget => ({ client, bucket: 'b', prefix: 'p/' });

  it("'auto' detects conditional writes and uses one lock object; refusal, release and re-acquire work", async () => {
    const { client, objects } = conditionalS3({ conditionalDeletes: true });
    expect(await probeS3ConditionalWrites(target(client))).toEqual({ conditionalWrites: true, conditionalDeletes: true });
    expect(objects.size).toBe(0);
    const lease = track(await acquireS3Lock(target(client), 'db', { owner: 'alice' }));
    expect(lease.mode).toBe('conditional');
    expect([...objects.keys()]).toEqual(['p/.drkit-locks/db.lock']);
    const refused = await errorOf(acquireS3Lock(target(client), 'db'));
    expect(refused.code).toBe('STORE_LOCKED');
    expect(refused.message).toContain('held by alice');
    await lease.renew();
    expect((await readS3Lock(target(client), 'db'))?.expiresAt).toEqual(lease.info.expiresAt);
    await lease.release();
    await lease.release();
    expect(objects.size).toBe(0);
    const again = track(await acquireS3Lock(target(client), 'db', { mode: 'conditional' }));
    await again.release();
  });

  it('lets exactly one of ten contenders win, both for a free lock and for a stale one', async () => {
    const { client, objects } = conditionalS3({ conditionalDeletes: true });
    for (const stale of [false, true, false, true]) {
      if (stale) {
        const dead = newLockRecord('race', resolveLockOptions({ owner: 'dead' }), Date.now() - 40_000, 'held');
        objects.set('p/.drkit-locks/race.lock', { body: encodeLockRecord(dead), etag: '"dead"' });
      }
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => acquireS3Lock(target(client), 'race', { owner: `c${i}` })),
      );
      const winners = results.flatMap((r) => (r.status === 'fulfilled' ? [track(r.value)] : []));
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r.reason as StoreError).code)).toEqual(
        Array(9).fill('STORE_LOCKED'),
      );
      expect((await readS3Lock(target(client), 'race'))?.token).toBe(winners[0]?.info.token);
      await winners[0]?.release();
    }
  });

  it('a lease whose object was taken over loses on renewal, and its release leaves the new holder alone', async () => {
    for (const conditionalDeletes of [true, false]) {
      const { client, objects } = conditionalS3({ conditionalDeletes });
      expect((await probeS3ConditionalWrites(target(client))).conditionalDeletes).toBe(conditionalDeletes);
      const lease = track(await acquireS3Lock(target(client), 'db', { mode: 'conditional' }));
      const other = newLockRecord('db', resolveLockOptions({ owner: 'mallory' }), Date.now(), 'held');
      objects.set('p/.drkit-locks/db.lock', { body: encodeLockRecord(other), etag: '"other"' });
      const error = await errorOf(lease.renew());
      expect(error.code).toBe('STORE_LOCK_LOST');
      expect(error.message).toContain('it was taken over by mallory');
      expect(lease.signal.reason).toBe(error);
      await lease.release();
      expect((await readS3Lock(target(client), 'db'))?.token).toBe(other.token);
    }
  });

  it("a holder of the 'list' protocol (a host forced to it) blocks a conditional acquirer", async () => {
    const { client, objects } = conditionalS3({ conditionalDeletes: true });
    const listLease = track(await acquireS3Lock(target(client), 'db', { mode: 'list', owner: 'lister' }));
    const refused = await errorOf(acquireS3Lock(target(client), 'db', { mode: 'conditional' }));
    expect(refused.code).toBe('STORE_LOCKED');
    expect(refused.message).toContain('held by lister');
    // The conditional attempt took its object back out.
    expect([...objects.keys()]).toEqual([`p/.drkit-locks/db/${listLease.info.token}/entry.json`]);
    await listLease.release();
    const lease = track(await acquireS3Lock(target(client), 'db', { mode: 'conditional' }));
    expect((await errorOf(acquireS3Lock(target(client), 'db', { mode: 'list' }))).code).toBe('STORE_LOCKED');
    await lease.release();
    expect(objects.size).toBe(0);
  });
});
