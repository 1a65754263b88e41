// Redis backup and restore on sandbox redis-servers (no persistence; 2 cores shared by the
// servers, the tools and Node), datasets of a realistic mix of keys (see fillSource):
//
// - "rdb pull": backupRedis({ mode: 'rdb' }) (REPLCONF rdb-only + SYNC, the RDB streamed through
//   its CRC64 check and AES-256-GCM into a fresh file:// catalog, manifest last; the store is
//   removed after each run) against `redis-cli --rdb <file>` (file removed after each run).
//   The sources run with `repl-diskless-sync-delay 0`, so neither side waits for the server's
//   default 5 s grace for more replicas: both get a diskless (EOF-framed) transfer at once.
// - "exact export": backupRedis({ mode: 'logical', encoding: 'exact', digest: false }) (SCAN on
//   a connection of its own, up to 3 batches ahead; one Lua script per batch of 1000 keys
//   returning PEXPIRETIME and DUMP (MEMORY USAGE decides which keys are read in windows), the
//   type taken from the payload; NDJSON lines, zstd, AES-256-GCM, file:// catalog) against `redis-cli --rdb` again: there is no standard
//   logical-export tool to compare with (a redis-cli --scan + DUMP loop is one round trip per
//   key, far too slow to be a fair peer), and the RDB is the server's own serialisation of the
//   same keys, i.e. the floor of what reading every key out of the server can cost.
// - "exact restore": restoreRedis() of the main size's exact backup (policy replace, no verify)
//   into an empty target, against `redis-cli --pipe` of the same RESTORE key ttl payload ABSTTL
//   REPLACE commands from a local RESP file (the ceiling of a pipelined restore). Each run of
//   either side starts with FLUSHALL SYNC on the target (timed, the same redis-cli call on both).
//
// Sizes: DRKIT_BENCH_REDIS_KEYS (comma-separated key counts, default 100000,1000000) get an rdb
// pull and an exact export case each (time, keys/s and peak RSS per size); the largest is the
// main size and also gets the restore case. `DRKIT_BENCH_REDIS_KEYS=20000 pnpm bench redis
// --runs 5 --warmup 0` is a quick functional check; `pnpm bench redis` the real run.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { masterKey } from '@drkit/crypto-stream';
import { backupRedis, type LogicalFingerprint, REDIS_LOGICAL_KIND, readLines, readRedisBackup, restoreRedis } from '@drkit/redis-backup';
import { createCatalog, createFsStore } from '@drkit/s3-store';
import type { RedisSandbox } from '@drkit/sandbox';
import { type BenchCase, defineBench } from './lib/define.ts';
import { run, sh } from './lib/exec.ts';
import { prng } from './lib/prng.ts';

interface Server {
  host: string;
  port: number;
}

interface Ctx {
  /** Temp dir for the stores, RDB files and the RESP file, made in setup and removed in teardown. */
  dir: string;
  /** The drkit side's key, base64. */
  key: string;
  /** Source server per dataset size (key count, as a string). */
  sources: Record<string, Server>;
  /** The (initially empty) server the restore case writes into. */
  target: Server;
  restore: {
    /** file:// store holding one exact backup of the main size. */
    store: string;
    backupId: string;
    /** The same keys as RESTORE … ABSTTL REPLACE commands in RESP, for `redis-cli --pipe`. */
    respFile: string;
  };
}

/** Dataset sizes (key counts) of the rdb pull and exact export cases. */
function parseSizes(text: string | undefined): number[] {
  const sizes = (text ?? '100000,1000000')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (sizes.length === 0 || !sizes.every((s) => Number.isSafeInteger(s) && s >= 1000))
    throw new RangeError(`DRKIT_BENCH_REDIS_KEYS must be comma-separated integers >= 1000, got ${JSON.stringify(text)}`);
  return [...new Set(sizes)].sort((a, b) => a - b);
}

const SIZES = parseSizes(process.env.DRKIT_BENCH_REDIS_KEYS);
const MAIN = SIZES.at(-1) as number;

// Sandboxes live in the parent (setup and teardown run there): their stop() cannot travel in ctx.
const servers: RedisSandbox[] = [];

// The sandbox and ioredis are loaded by setup only (in the parent): a measured worker that
// loaded them for nothing would report ~40 MB more peak RSS than drkit's backup itself uses.
const sandbox = () => import('@drkit/sandbox');
const ioredis = async () => (await import('ioredis')).Redis;

const keysOf = (ctx: Ctx) => masterKey(Buffer.from(ctx.key, 'base64'));
const urlOf = (server: Server) => `redis://${server.host}:${server.port}/0`;
const sourceOf = (ctx: Ctx, size: number) => ctx.sources[String(size)] as Server;
/** A name no other run uses. */
const unique = (prefix: string) => `${prefix}${process.pid}-${randomBytes(3).toString('hex')}`;
const count = (n: number) => (n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : String(n));

// ---------------------------------------------------------------------------------------------
// RESP files: the dataset (fed to `redis-cli --pipe` in setup) and the restore peer's commands.

interface RespWriter {
  command(args: readonly (string | Buffer)[]): Promise<void>;
  close(): Promise<void>;
}

function respWriter(path: string): RespWriter {
  const out: WriteStream = createWriteStream(path);
  let parts: Buffer[] = [];
  let text = '';
  let size = 0;
  const cut = () => {
    if (text !== '') parts.push(Buffer.from(text, 'utf8'));
    text = '';
  };
  const flush = async () => {
    cut();
    if (parts.length === 0) return;
    const chunk = Buffer.concat(parts);
    parts = [];
    size = 0;
    if (!out.write(chunk)) await once(out, 'drain');
  };
  return {
    async command(args) {
      text += `*${args.length}\r\n`;
      for (const arg of args) {
        if (typeof arg === 'string') {
          text += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
          size += arg.length + 8;
        } else {
          text += `$${arg.length}\r\n`;
          cut();
          parts.push(arg);
          text = '\r\n';
          size += arg.length + 8;
        }
      }
      if (size >= 1 << 20) await flush();
    },
    async close() {
      await flush();
      out.end();
      await finished(out);
    },
  };
}

/** Streams and big leaderboards per dataset: "a few". */
const STREAMS = 8;
const STREAM_ENTRIES = 250;
const BIG_ZSETS = 4;
const BIG_ZSET_MEMBERS = 2000;
/** Share of the keys that live in database 1 (the rest in 0). */
const DB1_SHARE = 0.05;

/**
 * The dataset of `size` keys as RESP commands: about 65% of the keys with an expiry
 * (PEXPIREAT 1-48 h ahead, odd milliseconds), 95% in db 0 and 5% in db 1.
 * - 30% session strings (JSON, ~150-300 B), all expiring
 * - 15% cache strings (JSON, ~100-300 B), all expiring
 * - 5% rate-limit counters (small integers), all expiring
 * - 22% user-profile hashes (10 fields), 30% expiring
 * - 10% activity-feed lists (5-20 JSON items), 40% expiring
 * - 9% sets (tags, or follower ids: intsets), 30% expiring
 * - 9% leaderboard zsets (10-60 members), 20% expiring
 * - plus 8 streams of 250 entries with a consumer group and 4 leaderboards of 2000 members.
 */
async function writeDataset(path: string, size: number, now: number): Promise<void> {
  const rand = prng(size);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const hex = (n: number) => {
    let s = '';
    while (s.length < n)
      s += Math.floor(rand() * 0x100000000)
        .toString(16)
        .padStart(8, '0');
    return s.slice(0, n);
  };
  const pick = <T>(items: readonly T[]) => items[Math.floor(rand() * items.length)] as T;
  const expiry = () => String(now + 3_600_000 + Math.floor(rand() * 47 * 3_600_000));
  const countries = ['DE', 'FR', 'US', 'GB', 'NL', 'ES', 'IT', 'PL', 'SE', 'BR', 'IN', 'JP'];
  const agents = [
    'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)',
  ];
  const w = respWriter(path);
  const regular = size - STREAMS - BIG_ZSETS;
  const db1From = Math.floor(regular * (1 - DB1_SHARE));
  await w.command(['SELECT', '0']);
  for (let i = 0; i < regular; i++) {
    if (i === db1From) await w.command(['SELECT', '1']);
    const r = rand();
    const id = i.toString(36);
    if (r < 0.3) {
      const items = Array.from({ length: int(0, 4) }, () => `{"sku":"${hex(8)}","q":${int(1, 5)}}`).join(',');
      const value = `{"uid":${int(1, 9_999_999)},"csrf":"${hex(32)}","ip":"10.${int(0, 255)}.${int(0, 255)}.${int(1, 254)}","ua":"${pick(agents)}","cart":[${items}]}`;
      await w.command(['SET', `session:${id}:${hex(12)}`, value, 'PXAT', expiry()]);
    } else if (r < 0.45) {
      const value = `{"page":"/products/${int(1, 99999)}","etag":"${hex(16)}","html":"${hex(int(40, 220))}"}`;
      await w.command(['SET', `cache:page:${id}`, value, 'PXAT', expiry()]);
    } else if (r < 0.5) {
      await w.command(['SET', `ratelimit:${id}`, String(int(1, 500)), 'PXAT', expiry()]);
    } else if (r < 0.72) {
      const key = `user:${id}`;
      await w.command([
        'HSET',
        key,
        'name',
        `User ${hex(6)}`,
        'email',
        `u${id}@example.com`,
        'country',
        pick(countries),
        'locale',
        'en-GB',
        'plan',
        pick(['free', 'pro', 'team']),
        'created_at',
        String(now - int(0, 3e10)),
        'last_login',
        String(now - int(0, 1e9)),
        'logins',
        String(int(1, 5000)),
        'theme',
        pick(['dark', 'light']),
        'marketing_opt_in',
        pick(['0', '1']),
      ]);
      if (rand() < 0.3) await w.command(['PEXPIREAT', key, expiry()]);
    } else if (r < 0.82) {
      const key = `feed:${id}`;
      const items = Array.from(
        { length: int(5, 20) },
        () => `{"id":${int(1, 1e9)},"t":"${pick(['like', 'follow', 'comment'])}","by":${int(1, 9e6)}}`,
      );
      await w.command(['RPUSH', key, ...items]);
      if (rand() < 0.4) await w.command(['PEXPIREAT', key, expiry()]);
    } else if (r < 0.91) {
      const key = rand() < 0.5 ? `tags:${id}` : `followers:${id}`;
      const members = key.startsWith('tags')
        ? Array.from({ length: int(3, 20) }, () => `tag-${int(1, 5000)}`)
        : Array.from({ length: int(3, 30) }, () => String(int(1, 9_000_000)));
      await w.command(['SADD', key, ...members]);
      if (rand() < 0.3) await w.command(['PEXPIREAT', key, expiry()]);
    } else {
      const key = `leaderboard:${id}`;
      const args = Array.from({ length: int(10, 60) }, () => [String(int(0, 1e6)), `player:${int(1, 9e6)}`]).flat();
      await w.command(['ZADD', key, ...args]);
      if (rand() < 0.2) await w.command(['PEXPIREAT', key, expiry()]);
    }
  }
  await w.command(['SELECT', '0']);
  for (let j = 0; j < BIG_ZSETS; j++) {
    const args = Array.from({ length: BIG_ZSET_MEMBERS }, (_, m) => [String(int(0, 1e7)), `player:${m}`]).flat();
    await w.command(['ZADD', `leaderboard:global:${j}`, ...args]);
  }
  for (let j = 0; j < STREAMS; j++) {
    const key = `events:${j}`;
    for (let e = 1; e <= STREAM_ENTRIES; e++)
      await w.command([
        'XADD',
        key,
        `${now}-${e}`,
        'type',
        pick(['signup', 'order', 'refund']),
        'user',
        String(int(1, 9e6)),
        'amount',
        String(int(1, 99999)),
      ]);
    await w.command(['XGROUP', 'CREATE', key, 'workers', '0']);
  }
  await w.close();
}

/** Starts a source server and fills it with the dataset of `size` keys. */
async function fillSource(dir: string, size: number, now: number): Promise<RedisSandbox> {
  const server = await (await sandbox()).startRedis({ config: { 'repl-diskless-sync-delay': 0 } });
  const Redis = await ioredis();
  servers.push(server);
  const file = join(dir, `dataset-${size}.resp`);
  await writeDataset(file, size, now);
  await sh('"$1" -h "$2" -p "$3" --pipe < "$4"', 'redis-cli', server.host, String(server.port), file);
  await rm(file, { force: true });
  const redis = new Redis(server.url());
  try {
    let total = 0;
    for (const db of [0, 1]) {
      await redis.select(db);
      total += await redis.dbsize();
    }
    if (total !== size) throw new Error(`the source of ${size} keys holds ${total} keys after filling`);
  } finally {
    redis.disconnect();
  }
  return server;
}

/**
 * The restore peer's input: every key of the exact backup as RESTORE key ttl payload ABSTTL
 * REPLACE, in backup order. Keys the export wrote typed (any over its window size, read in
 * windows) get their DUMP from the source, which has not changed since.
 */
async function writeRestoreCommands(ctx: Omit<Ctx, 'restore'>, store: string, backupId: string, path: string): Promise<number> {
  const catalog = createCatalog(createFsStore(store));
  const manifest = await catalog.get(backupId, REDIS_LOGICAL_KIND);
  const Redis = await ioredis();
  const source = new Redis(urlOf(sourceOf(ctx as Ctx, MAIN)));
  const w = respWriter(path);
  let db = -1;
  let keys = 0;
  try {
    for await (const line of readLines(readRedisBackup(catalog, manifest, keysOf(ctx as Ctx)))) {
      if (line.kind !== 'key' || line.record.cont) continue;
      const record = line.record;
      if (record.db !== db) {
        db = record.db;
        await w.command(['SELECT', String(db)]);
        await source.select(db);
      }
      const key = record.b64 ? Buffer.from(record.key, 'base64') : Buffer.from(record.key, 'utf8');
      let payload: Buffer;
      let expireAt = record.expireAt ?? 0;
      if (record.dump !== undefined) payload = Buffer.from(record.dump, 'base64');
      else {
        const dumped = await source.dumpBuffer(key);
        if (dumped === null) throw new Error(`key ${record.key} of db ${db} is gone from the source`);
        payload = dumped;
        expireAt = Math.max(0, Number(await source.call('PEXPIRETIME', key)));
      }
      await w.command(['RESTORE', key, String(expireAt), payload, 'ABSTTL', 'REPLACE']);
      keys++;
    }
  } finally {
    source.disconnect();
    await w.close();
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------
// The cases

/** `redis-cli --rdb` of a source into a file of the temp dir, removed afterwards. */
async function redisCliRdb(ctx: Ctx, size: number): Promise<void> {
  const file = join(ctx.dir, `${unique('peer-')}.rdb`);
  const { host, port } = sourceOf(ctx, size);
  try {
    await run('redis-cli', ['-h', host, '-p', String(port), '--rdb', file]);
  } finally {
    await rm(file, { force: true });
  }
}

/** backupRedis() of a source into a fresh file:// catalog, removed afterwards. */
async function drkitBackup(ctx: Ctx, size: number, mode: 'rdb' | 'logical'): Promise<void> {
  const root = await mkdtemp(join(ctx.dir, 'drkit-store-'));
  try {
    const result = await backupRedis({
      url: urlOf(sourceOf(ctx, size)),
      catalog: createCatalog(createFsStore(root)),
      keys: keysOf(ctx),
      mode,
      ...(mode === 'logical' ? { encoding: 'exact' as const, digest: false } : {}),
    });
    if (mode === 'rdb' && result.rdb === undefined) throw new Error(`no RDB backup made: ${result.fallback ?? result.warnings.join('; ')}`);
    if (mode === 'logical') {
      const keys = (result.logical?.fingerprint as LogicalFingerprint | undefined)?.keys;
      if (keys !== size) throw new Error(`the exact export holds ${keys} keys, expected ${size}`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function rdbCase(size: number): BenchCase<Ctx> {
  return {
    name: `rdb pull (${count(size)} keys)`,
    drkit: (ctx) => drkitBackup(ctx, size, 'rdb'),
    peer: { name: 'redis-cli --rdb', run: (ctx) => redisCliRdb(ctx, size) },
    items: { count: size, unit: 'keys' },
  };
}

function exportCase(size: number): BenchCase<Ctx> {
  return {
    name: `exact export (${count(size)} keys)`,
    drkit: (ctx) => drkitBackup(ctx, size, 'logical'),
    peer: { name: 'redis-cli --rdb', run: (ctx) => redisCliRdb(ctx, size) },
    items: { count: size, unit: 'keys' },
  };
}

/** Empties the restore target: the first step of each restore run, on both sides alike. */
async function flushTarget(ctx: Ctx): Promise<void> {
  await run('redis-cli', ['-h', ctx.target.host, '-p', String(ctx.target.port), 'FLUSHALL', 'SYNC']);
}

function restoreCase(size: number): BenchCase<Ctx> {
  return {
    name: `exact restore (${count(size)} keys)`,
    drkit: async (ctx) => {
      await flushTarget(ctx);
      const result = await restoreRedis({
        url: urlOf(ctx.target),
        catalog: createCatalog(createFsStore(ctx.restore.store)),
        backup: ctx.restore.backupId,
        keys: keysOf(ctx),
        policy: 'replace',
        verify: false,
      });
      const written = (result.imported?.restored ?? 0) + (result.imported?.expired ?? 0);
      if (written !== size) throw new Error(`restored ${written} keys, expected ${size}`);
    },
    peer: {
      name: 'redis-cli --pipe (RESTORE … ABSTTL REPLACE)',
      run: async (ctx) => {
        await flushTarget(ctx);
        await sh('"$1" -h "$2" -p "$3" --pipe < "$4"', 'redis-cli', ctx.target.host, String(ctx.target.port), ctx.restore.respFile);
      },
    },
    items: { count: size, unit: 'keys' },
  };
}

async function stopAll(): Promise<void> {
  const running = servers.splice(0);
  await Promise.allSettled(running.map((s) => s.stop()));
}

export default defineBench<Ctx>({
  name: 'redis',
  description:
    `sandbox redis-server 7 datasets of ${SIZES.map(count).join(', ')} keys (main ${count(MAIN)}): ~65% with PEXPIREAT 1-48 h ahead, 95% in db 0 and 5% in db 1; ` +
    'session/cache JSON strings (100-300 B), counters, 10-field user hashes, feed lists, tag/follower sets, leaderboard zsets, 4 zsets of 2000 members, 8 streams of 250 entries; ' +
    '2 cores shared by servers, tools and Node. ' +
    'rdb pull: backupRedis mode rdb (REPLCONF rdb-only + SYNC, CRC64 check, AES-256-GCM, no compression, file:// catalog, store removed after) vs redis-cli --rdb <file> (removed after); ' +
    'sources have repl-diskless-sync-delay 0 so both get a diskless transfer without the 5 s wait. ' +
    'exact export: backupRedis mode logical, encoding exact, digest false (SCAN 3 batches ahead on its own connection + Lua PEXPIRETIME/MEMORY USAGE/DUMP per 1000 keys, NDJSON, zstd, AES-256-GCM, file:// catalog) vs redis-cli --rdb ' +
    '(no logical-export peer exists that is not one round trip per key; the RDB is the server serialising the same keys). ' +
    'exact restore: restoreRedis (policy replace, verify false) of a setup-made exact backup into an empty target vs redis-cli --pipe of the same RESTORE key ttl payload ABSTTL REPLACE commands ' +
    'from a local RESP file (the ceiling); both sides start with redis-cli FLUSHALL SYNC of the target (timed). keys/s = keys / median wall time; ' +
    'peer RSS is the worker only, not redis-cli',
  async setup() {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-bench-redis-'));
    try {
      const now = Date.now();
      const sources: Record<string, Server> = {};
      for (const size of SIZES) {
        const server = await fillSource(dir, size, now);
        sources[String(size)] = { host: server.host, port: server.port };
      }
      const target = await (await sandbox()).startRedis();
      servers.push(target);
      const key = randomBytes(32);
      const base = { dir, key: key.toString('base64'), sources, target: { host: target.host, port: target.port } };
      const store = join(dir, 'restore-store');
      const backup = await backupRedis({
        url: urlOf(sourceOf(base as Ctx, MAIN)),
        catalog: createCatalog(createFsStore(store)),
        keys: masterKey(key),
        mode: 'logical',
        encoding: 'exact',
        digest: false,
      });
      if (!backup.logical) throw new Error('setup: the exact backup of the main size made no manifest');
      const respFile = join(dir, 'restore.resp');
      const written = await writeRestoreCommands(base, store, backup.logical.id, respFile);
      if (written !== MAIN) throw new Error(`setup: the exact backup holds ${written} keys, expected ${MAIN}`);
      return { ...base, restore: { store, backupId: backup.logical.id, respFile } };
    } catch (error) {
      await stopAll();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  },
  async teardown(ctx) {
    try {
      await rm(ctx.dir, { recursive: true, force: true });
    } finally {
      await stopAll();
    }
  },
  cases: [...SIZES.map(rdbCase), ...SIZES.map(exportCase), restoreCase(MAIN)],
});
