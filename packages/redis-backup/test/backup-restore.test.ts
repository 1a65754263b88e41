import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { masterKey } from '@drkit/crypto-stream';
import { type Catalog, createCatalog, createFsStore } from '@drkit/s3-store';
import { type RedisSandbox, startRedis } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisTarget } from '../src/connection.js';
import { exportRedis } from '../src/export.js';
import {
  backupRedis,
  isRedisBackupError,
  RedisBackupError,
  type RedisBackupEvent,
  restoreRedis,
  restoreRedisRdb,
  verifyRedisBackup,
  verifyRedisRestore,
} from '../src/index.js';
import { type KeyRecord, readLines } from '../src/records.js';
import { client, digest, fillDataset, keyStates } from './support/dataset.js';

const KEY = masterKey(randomBytes(32), 'redis-test');
const DBS = [0, 3, 15];
let source: RedisSandbox;
let dir: string;
let sourceDigest: string;
let sourceStates: Map<string, string>;
let counts: Record<string, number>;
const started: RedisSandbox[] = [];

async function server(options: Parameters<typeof startRedis>[0] = {}): Promise<RedisSandbox> {
  const s = await startRedis(options);
  started.push(s);
  return s;
}

/** The sandbox as the service an RDB restore stops and starts (halt keeps its data dir). */
const controllerOf = (s: RedisSandbox) => ({ stop: () => s.halt(), start: () => s.start() });

async function catalogAt(name: string): Promise<Catalog> {
  return createCatalog(createFsStore(join(dir, name)));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-redis-test-'));
  source = await server({ config: { 'repl-diskless-sync-delay': 0 } });
  counts = await fillDataset(source.url());
  sourceDigest = await digest(source.url());
  sourceStates = await keyStates(source.url(), DBS);
});
afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
  await rm(dir, { recursive: true, force: true });
});

describe('backupRedis + restoreRedis (logical)', () => {
  for (const encoding of ['exact', 'ndjson'] as const) {
    it(`${encoding}: stores an RDB and an export; the export restores into an empty server key for key, digest equal`, async () => {
      const catalog = await catalogAt(`both-${encoding}`);
      const events: RedisBackupEvent[] = [];
      const backup = await backupRedis({ url: source.url(), catalog, keys: KEY, mode: 'both', encoding, onEvent: (e) => events.push(e) });
      expect(backup.rdb?.kind).toBe('redis-rdb');
      expect(backup.logical?.kind).toBe('redis-logical');
      expect(backup.logical?.labels?.rdb).toBe(backup.rdb?.id);
      expect(backup.logical?.fingerprint).toMatchObject({ encoding, keys: 27, databases: counts, digest: sourceDigest });
      expect(backup.rdb?.fingerprint).toMatchObject({ rdbVersion: 10, checksum: 'ok', framing: 'eof' });
      expect(events.filter((e) => e.type === 'step').map((e) => (e as { step: string }).step)).toEqual(
        expect.arrayContaining(['connect', 'sync', 'rdb', 'export', 'stored']),
      );
      for (const manifest of [backup.rdb, backup.logical]) {
        const check = await verifyRedisBackup({ catalog, backup: manifest as NonNullable<typeof manifest>, keys: KEY });
        expect(check.ok, check.detail).toBe(true);
        expect(check.level).toBe(2);
        expect((await catalog.get(check.backup.id)).verification).toMatchObject({ status: 'passed', level: 'L2' });
      }
      const target = await server();
      const result = await restoreRedis({ url: target.url(), catalog, backup: 'latest', keys: KEY });
      expect(result.mode).toBe('restored');
      expect(result.imported?.restored).toBe(27);
      expect(result.check).toMatchObject({ ok: true, differenceCount: 0, extra: 0, digest: 'equal', expected: 27, matched: 27 });
      expect(await digest(target.url())).toBe(sourceDigest);
      expect(await keyStates(target.url(), DBS)).toEqual(sourceStates);
      // A restore of a logical backup needs no restart.
      expect(target.running).toBe(true);
    });
  }

  it('keeps stream state through NDJSON: last id, entries added, max deleted id, groups, consumers, pending entries', async () => {
    const catalog = await catalogAt('streams');
    const backup = await backupRedis({ url: source.url(), catalog, keys: KEY, mode: 'logical', encoding: 'ndjson' });
    const target = await server();
    await restoreRedis({ url: target.url(), catalog, backup: backup.logical?.id as string, keys: KEY });
    for (const key of ['stream:events', 'stream:empty', 'stream:grouped'])
      expect(await streamFull(target.url(), key), key).toEqual(await streamFull(source.url(), key));
  });
});

/** XINFO STREAM FULL without the times a restore cannot keep (delivery and seen times). */
async function streamFull(url: string, key: string): Promise<unknown> {
  const r = client(url);
  try {
    const full = (await r.call('XINFO', 'STREAM', key, 'FULL')) as unknown[];
    const strip = (value: unknown): unknown => {
      if (!Array.isArray(value)) return value;
      const out: unknown[] = [];
      for (let i = 0; i < value.length; i++) {
        if (value[i] === 'seen-time' || value[i] === 'active-time') {
          i++;
          continue;
        }
        out.push(strip(value[i]));
      }
      // Pending entries: [id, consumer, delivery-time, count] or [id, delivery-time, count].
      if (
        out.length >= 3 &&
        out.length <= 4 &&
        typeof out[0] === 'string' &&
        /^\d+-\d+$/.test(out[0]) &&
        typeof out.at(-1) === 'number' &&
        typeof out.at(-2) === 'number'
      )
        out.splice(out.length - 2, 1);
      return out;
    };
    return strip(full);
  } finally {
    r.disconnect();
  }
}

describe('restoreRedis: existing keys, flush, snapshots', () => {
  let catalog: Catalog;
  let id: string;
  beforeAll(async () => {
    catalog = await catalogAt('policies');
    id = (await backupRedis({ url: source.url(), catalog, keys: KEY, mode: 'logical' })).logical?.id as string;
  });

  async function targetWith(): Promise<RedisSandbox> {
    const target = await server();
    const r = client(target.url());
    await r.set('str:text', 'local value');
    await r.set('local:only', 'keep me?');
    r.disconnect();
    return target;
  }

  it('policy fail: keys that exist refuse the restore before anything is written', async () => {
    const target = await targetWith();
    const error = await restoreRedis({ url: target.url(), catalog, backup: id, keys: KEY }).catch((e) => e);
    expect(isRedisBackupError(error, 'REDIS_KEYS_EXIST')).toBe(true);
    expect(error.message).toMatch(/1 key\(s\).*str:text.*--policy replace or skip, or --flush/);
    expect(error.details.total).toBe(1);
    const r = client(target.url());
    expect(await r.dbsize()).toBe(2);
    expect(await r.get('str:text')).toBe('local value');
    r.disconnect();
  });

  it('dry run: reports the plan and what exists, changes nothing', async () => {
    const target = await targetWith();
    const before = await digest(target.url());
    const result = await restoreRedis({ url: target.url(), catalog, backup: id, keys: KEY, dryRun: true, flush: true });
    expect(result.mode).toBe('dry-run');
    expect(result.plan.join('\n')).toMatch(/FLUSHALL/);
    expect(result.plan.join('\n')).toMatch(/snapshot/);
    expect(await digest(target.url())).toBe(before);
    expect((await catalog.list({ kind: 'redis-logical' })).length).toBe(1);
  });

  it('policy skip: existing keys are left alone and counted', async () => {
    const target = await targetWith();
    const result = await restoreRedis({ url: target.url(), catalog, backup: id, keys: KEY, policy: 'skip' });
    expect(result.imported).toMatchObject({ restored: 26, skipped: 1 });
    const r = client(target.url());
    expect(await r.get('str:text')).toBe('local value');
    expect(await r.get('local:only')).toBe('keep me?');
    r.disconnect();
    expect(result.snapshot).toBeUndefined();
  });

  it('policy replace: overwrites, after saving the current state as a snapshot that "latest" skips', async () => {
    const target = await targetWith();
    const result = await restoreRedis({ url: target.url(), catalog, backup: id, keys: KEY, policy: 'replace' });
    expect(result.imported).toMatchObject({ restored: 27, skipped: 0 });
    expect(result.check?.ok).toBe(false); // local:only is an extra key: reported, not a failure without flush
    expect(result.check?.extra).toBe(1);
    const r = client(target.url());
    expect(await r.get('str:text')).toBe('hello wörld ✓');
    r.disconnect();
    expect(result.snapshot?.labels?.snapshot).toBe('true');
    expect((await catalog.latest('redis-logical'))?.id).toBe(id);
    // The snapshot holds what was there, and restores it.
    const back = await server();
    await restoreRedis({ url: back.url(), catalog, backup: result.snapshot?.id as string, keys: KEY });
    const b = client(back.url());
    expect(await b.mget('str:text', 'local:only')).toEqual(['local value', 'keep me?']);
    b.disconnect();
  });

  it('flush: the server ends equal to the backup (extra keys gone, digest equal), the old state is in a snapshot', async () => {
    const target = await targetWith();
    const events: RedisBackupEvent[] = [];
    const result = await restoreRedis({ url: target.url(), catalog, backup: id, keys: KEY, flush: true, onEvent: (e) => events.push(e) });
    expect(result.flushed).toBe(true);
    expect(result.check).toMatchObject({ ok: true, extra: 0, digest: 'equal' });
    const steps = events.filter((e) => e.type === 'step').map((e) => (e as { step: string }).step);
    expect(steps.indexOf('authenticate')).toBeLessThan(steps.indexOf('snapshot'));
    expect(steps.indexOf('snapshot')).toBeLessThan(steps.indexOf('flush'));
    expect(await digest(target.url())).toBe(sourceDigest);
  });

  it('a tampered backup is refused before the server is flushed', async () => {
    const tampered = await catalogAt('tampered');
    const manifest = (await backupRedis({ url: source.url(), catalog: tampered, keys: KEY, mode: 'logical' })).logical;
    if (!manifest) throw new Error('no backup');
    const file = join(dir, 'tampered', manifest.object.key);
    const handle = await open(file, 'r+');
    const size = (await stat(file)).size;
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, size - 100);
    byte[0] = (byte[0] as number) ^ 0x01;
    await handle.write(byte, 0, 1, size - 100);
    await handle.close();
    const target = await targetWith();
    const before = await digest(target.url());
    const error = await restoreRedis({ url: target.url(), catalog: tampered, backup: manifest.id, keys: KEY, flush: true }).catch((e) => e);
    expect(isRedisBackupError(error, 'REDIS_BACKUP_TAMPERED')).toBe(true);
    expect(await digest(target.url())).toBe(before);
    const check = await verifyRedisBackup({ catalog: tampered, backup: manifest, level: 1 });
    expect(check).toMatchObject({ ok: false, level: 1 });
    expect(check.error?.code).toBe('REDIS_BACKUP_TAMPERED');
    // The outcome is recorded: "latest" no longer offers this backup.
    expect((await tampered.get(manifest.id)).verification).toMatchObject({ status: 'failed', level: 'L1' });
    expect(await tampered.latest('redis-logical')).toBeUndefined();
  });

  it('a wrong key is REDIS_WRONG_KEY and names the key id the backup was sealed with', async () => {
    const target = await server();
    const error = await restoreRedis({ url: target.url(), catalog, backup: id, keys: masterKey(randomBytes(32), 'other') }).catch((e) => e);
    expect(isRedisBackupError(error, 'REDIS_WRONG_KEY')).toBe(true);
    expect(error.message).toMatch(/redis-test/);
  });

  it('an exact export from a newer Redis is refused by an older server before anything is written', async () => {
    const manifest = await catalog.get(id, 'redis-logical');
    const newer = { ...manifest, fingerprint: { ...manifest.fingerprint, rdbVersion: 12, redisVersion: '7.4.0' } };
    const target = await server();
    const error = await restoreRedis({ url: target.url(), catalog, backup: newer, keys: KEY }).catch((e) => e);
    expect(isRedisBackupError(error, 'REDIS_RDB_VERSION_TOO_NEW')).toBe(true);
    expect(error.message).toMatch(/reads up to version 10/);
  });
});

describe('expiries', () => {
  it('keys whose expiry passed during the restore are counted and named, not silently missing', async () => {
    const src = await server();
    const r = client(src.url());
    await r.set('stays', '1');
    await r.set('short-lived', '1', 'PX', 700);
    r.disconnect();
    const catalog = await catalogAt('expiry');
    const backup = await backupRedis({ url: src.url(), catalog, keys: KEY, mode: 'logical' });
    await new Promise((resolve) => setTimeout(resolve, 900));
    const target = await server();
    const result = await restoreRedis({ url: target.url(), catalog, backup: backup.logical?.id as string, keys: KEY });
    expect(result.imported).toMatchObject({ restored: 1, expired: 1, expiredSample: ['short-lived'] });
    expect(result.check).toMatchObject({ ok: true, expired: 1, expected: 1, digest: 'not-comparable' });
  });
});

describe('restoreRedisRdb', () => {
  let catalog: Catalog;
  let rdbId: string;
  beforeAll(async () => {
    catalog = await catalogAt('rdb');
    rdbId = (await backupRedis({ url: source.url(), catalog, keys: KEY, mode: 'rdb' })).rdb?.id as string;
  });

  it('places the RDB while the server is stopped, starts it, and the data equals the source; the old dump file is kept', async () => {
    const target = await server({ persistence: 'rdb' });
    const r = client(target.url());
    await r.set('old', 'data');
    await r.save();
    r.disconnect();
    const result = await restoreRedisRdb({ url: target.url(), catalog, backup: rdbId, keys: KEY, server: controllerOf(target) });
    expect(result.mode).toBe('restored');
    expect(await digest(target.url())).toBe(sourceDigest);
    expect(await keyStates(target.url(), DBS)).toEqual(sourceStates);
    expect(result.previous && existsSync(result.previous)).toBe(true);
    expect((await readFile(result.previous as string)).includes(Buffer.from('old'))).toBe(true);
    expect(readdirSync(target.dataDir).filter((f) => f.startsWith('.drkit-restore'))).toEqual([]);
  });

  it('refuses an RDB newer than the server reads, and an AOF server, before stopping anything', async () => {
    const manifest = await catalog.get(rdbId, 'redis-rdb');
    const target = await server();
    const pid = target.pid;
    const newer = { ...manifest, fingerprint: { ...manifest.fingerprint, rdbVersion: 12 } };
    const tooNew = await restoreRedisRdb({ url: target.url(), catalog, backup: newer, keys: KEY, server: controllerOf(target) }).catch(
      (e) => e,
    );
    expect(isRedisBackupError(tooNew, 'REDIS_RDB_VERSION_TOO_NEW')).toBe(true);
    const aof = await server({ persistence: 'aof' });
    const aofError = await restoreRedisRdb({ url: aof.url(), catalog, backup: manifest, keys: KEY, server: controllerOf(aof) }).catch(
      (e) => e,
    );
    expect(isRedisBackupError(aofError, 'REDIS_AOF_ENABLED')).toBe(true);
    expect(target.pid).toBe(pid);
    expect(aof.running).toBe(true);
  });

  it('a stop that does not stop the server changes nothing', async () => {
    const target = await server({ persistence: 'rdb' });
    const before = readdirSync(target.dataDir).sort();
    const error = await restoreRedisRdb({
      url: target.url(),
      catalog,
      backup: rdbId,
      keys: KEY,
      server: { stop: async () => {}, start: async () => {} },
      stopTimeoutMs: 500,
    }).catch((e) => e);
    expect(isRedisBackupError(error, 'REDIS_SERVICE_FAILED')).toBe(true);
    expect(error.message).toMatch(/still answers/);
    expect(readdirSync(target.dataDir).sort()).toEqual(before);
  });

  it('a tampered RDB is refused before the server is stopped, and leaves no temp file', async () => {
    const tampered = await catalogAt('rdb-tampered');
    const manifest = (await backupRedis({ url: source.url(), catalog: tampered, keys: KEY, mode: 'rdb' })).rdb;
    if (!manifest) throw new Error('no backup');
    const file = join(dir, 'rdb-tampered', manifest.object.key);
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([0x42]), 0, 1, 200);
    await handle.close();
    const target = await server();
    const pid = target.pid;
    const error = await restoreRedisRdb({
      url: target.url(),
      catalog: tampered,
      backup: manifest,
      keys: KEY,
      server: controllerOf(target),
    }).catch((e) => e);
    expect(isRedisBackupError(error, 'REDIS_BACKUP_TAMPERED')).toBe(true);
    expect(target.pid).toBe(pid);
    expect(readdirSync(target.dataDir).filter((f) => f.startsWith('.drkit-restore'))).toEqual([]);
  });
});

describe('backupRedis: errors and fallback', () => {
  it('falls back to the logical export when SYNC is refused, and says so', async () => {
    const src = await server();
    const admin = client(src.url());
    await admin.call('ACL', 'SETUSER', 'app', 'on', '>app-secret-pw', '~*', '+@all', '-sync', '-psync');
    await admin.set('k', 'v');
    admin.disconnect();
    const catalog = await catalogAt('fallback');
    const result = await backupRedis({ url: `redis://app:app-secret-pw@${src.host}:${src.port}/0`, catalog, keys: KEY, mode: 'rdb' });
    expect(result.rdb).toBeUndefined();
    expect(result.logical?.kind).toBe('redis-logical');
    expect(result.fallback).toMatch(/logical export/);
    expect(result.warnings.join('\n')).toMatch(/^no RDB backup: .* refused SYNC \(-NOPERM .*\); a logical export is made instead$/m);
    expect(JSON.stringify(result)).not.toContain('app-secret-pw');
  });

  it('compression levels: checked before connecting; the logical default is zstd 1, and a higher level still restores', async () => {
    const catalog = await catalogAt('levels');
    const unreachable = 'redis://127.0.0.1:1/0';
    const bad = [
      { compressLevel: { logical: 0 } },
      { compressLevel: { logical: 20 } },
      { compression: { logical: 'gzip' as const }, compressLevel: { logical: 10 } },
      { compressLevel: { rdb: 3 } },
      { compression: { logical: 'lz4' as never } },
    ];
    for (const options of bad) {
      const error = await backupRedis({ url: unreachable, catalog, keys: KEY, ...options }).catch((e) => e);
      expect(isRedisBackupError(error, 'REDIS_OPTIONS_INVALID'), JSON.stringify(options)).toBe(true);
    }
    const sizeAt = async (compressLevel?: { logical: number }) => {
      const made = await backupRedis({
        url: source.url(),
        catalog,
        keys: KEY,
        mode: 'logical',
        ...(compressLevel ? { compressLevel } : {}),
      });
      return made.logical as NonNullable<typeof made.logical>;
    };
    const byDefault = await sizeAt();
    const one = await sizeAt({ logical: 1 });
    const strong = await sizeAt({ logical: 19 });
    // The plain lines differ only in their timestamps; the stored sizes show the level used.
    expect(Math.abs(byDefault.object.size - one.object.size)).toBeLessThan(64);
    expect(strong.object.size).toBeLessThan(one.object.size - 64);
    const target = await server();
    await restoreRedis({ url: target.url(), catalog, backup: strong.id, keys: KEY });
    expect(await digest(target.url())).toBe(sourceDigest);
  });

  it('connection refused and wrong passwords are clear errors that never show the password', async () => {
    const catalog = await catalogAt('errors');
    const refused = await backupRedis({ url: 'redis://127.0.0.1:1/0', catalog, keys: KEY }).catch((e) => e);
    expect(isRedisBackupError(refused, 'REDIS_CONNECTION_REFUSED')).toBe(true);
    const locked = await server({ password: 'right-password' });
    const wrong = await backupRedis({ url: `redis://:wrong-password-123@${locked.host}:${locked.port}`, catalog, keys: KEY }).catch(
      (e) => e,
    );
    expect(wrong).toBeInstanceOf(RedisBackupError);
    expect(wrong.code).toBe('REDIS_AUTH_FAILED');
    expect(`${wrong.message} ${JSON.stringify(wrong.details)}`).not.toContain('wrong-password-123');
    const none = await backupRedis({ url: `redis://${locked.host}:${locked.port}`, catalog, keys: KEY }).catch((e) => e);
    expect(none.code).toBe('REDIS_AUTH_FAILED');
    expect(none.message).toMatch(/password is required/);
  });

  it('verifyRedisRestore names missing keys and wrong expiries', async () => {
    const catalog = await catalogAt('verify');
    const id = (await backupRedis({ url: source.url(), catalog, keys: KEY, mode: 'logical' })).logical?.id as string;
    const target = await server();
    await restoreRedis({ url: target.url(), catalog, backup: id, keys: KEY });
    const r = client(target.url());
    await r.del('str:int');
    await r.pexpireat('str:ttl', Date.now() + 10_000_000);
    const check = await verifyRedisRestore({ url: target.url(), catalog, backup: id, keys: KEY });
    expect(check.ok).toBe(false);
    expect(check.differences.map((d) => `${d.key} ${d.problem}`).sort()).toEqual(['str:int missing', 'str:ttl expiry']);
    expect(check.digest).toBe('different');
    expect(check.extra).toBe(0);
    // A missing key does not hide an extra one in the same database; extra keys make the digest incomparable.
    await r.set('not:in:backup', 'x');
    r.disconnect();
    const again = await verifyRedisRestore({ url: target.url(), catalog, backup: id, keys: KEY });
    expect(again.extra).toBe(1);
    expect(again.digest).toBe('not-comparable');
  });
});

describe('large keys and aborts', () => {
  it('a key over the window size is exported in windows and restored whole', async () => {
    const src = await server();
    const r = client(src.url());
    const p = r.pipeline();
    for (let i = 0; i < 25_000; i++) p.hset('big:hash', `f${i}`, `v${i}`);
    for (let i = 0; i < 25_000; i += 500) p.rpush('big:list', ...Array.from({ length: 500 }, (_, j) => `i${i + j}`));
    await p.exec();
    await r.pexpireat('big:hash', Date.now() + 3_600_000);
    r.disconnect();
    // An exact export goes by size: both keys are well over 64 KiB, and read 10 000 elements at a time.
    const exported = exportRedis(redisTarget(src.url()), { encoding: 'exact', windowBytes: 64 * 1024 });
    const records: KeyRecord[] = [];
    for await (const line of readLines(exported.chunks)) if (line.kind === 'key') records.push(line.record);
    const hash = records.filter((rec) => rec.key === 'big:hash');
    expect(hash.length).toBeGreaterThanOrEqual(3);
    expect(hash.every((rec) => rec.dump === undefined)).toBe(true);
    expect(hash[0]?.expireAt).toBeGreaterThan(Date.now());
    expect(hash.slice(1).every((rec) => rec.cont && rec.expireAt === undefined)).toBe(true);
    expect(hash.slice(0, -1).every((rec) => rec.more)).toBe(true);
    expect(Math.max(...hash.map((rec) => rec.fields?.length ?? 0))).toBeLessThanOrEqual(10_000 * 1.5);
    expect(records.filter((rec) => rec.key === 'big:list').map((rec) => rec.items?.length)).toEqual([10_000, 10_000, 5_000]);
    const catalog = await catalogAt('big');
    const backup = await backupRedis({ url: src.url(), catalog, keys: KEY, mode: 'logical' });
    const target = await server();
    const result = await restoreRedis({ url: target.url(), catalog, backup: backup.logical?.id as string, keys: KEY });
    expect(result.check).toMatchObject({ ok: true, digest: 'equal' });
  });

  it('an aborted backup records nothing', async () => {
    const catalog = await catalogAt('aborted');
    const controller = new AbortController();
    const pending = backupRedis({
      url: source.url(),
      catalog,
      keys: KEY,
      mode: 'logical',
      export: { batch: 2 },
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'step' && e.step === 'export') controller.abort(new Error('operator cancelled'));
      },
    });
    const error = await pending.catch((e) => e);
    expect(isRedisBackupError(error, 'REDIS_ABORTED')).toBe(true);
    expect(await catalog.list()).toEqual([]);
  });
});
