import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { getFreePort, type RedisSandbox, startRedis } from '@drkit/sandbox';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisTarget, redisTarget } from '../src/connection.js';
import { isRedisBackupError, type RedisBackupError } from '../src/errors.js';
import { createRdbChecker, maxRdbVersionFor } from '../src/rdb.js';
import { type OpenRdbStreamOptions, openRdbStream, replicationSettings } from '../src/replication.js';

const PASSWORD = 'correct-horse-battery';
const servers: RedisSandbox[] = [];
const clients: Redis[] = [];
const dirs: string[] = [];

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(servers.map((s) => s.stop()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function start(options: Parameters<typeof startRedis>[0]): Promise<RedisSandbox> {
  const server = await startRedis(options);
  servers.push(server);
  return server;
}

/** A plain ioredis client of the sandbox (test-local, independent of the code under test). */
async function clientOf(server: RedisSandbox, db = 0): Promise<Redis> {
  const client = new Redis({
    host: server.host,
    port: server.port,
    db,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    ...(server.password ? { password: server.password } : {}),
  });
  client.on('error', () => {});
  clients.push(client);
  await client.connect();
  return client;
}

async function errorOf(promise: Promise<unknown>): Promise<RedisBackupError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isRedisBackupError(error)) throw new Error(`expected a RedisBackupError, got ${String(error)}`, { cause: error });
  return error;
}

/** Pulls a whole RDB, checking it on the way, and returns it with what the stream said. */
async function pull(target: RedisTarget, options: OpenRdbStreamOptions = {}) {
  const stream = await openRdbStream(target, options);
  const checker = createRdbChecker();
  const parts: Buffer[] = [];
  for await (const chunk of stream.chunks) {
    checker.update(chunk);
    parts.push(chunk);
  }
  return { stream, data: Buffer.concat(parts), result: stream.result(), check: checker.finish() };
}

async function connectedReplicas(client: Redis): Promise<number> {
  const info = await client.info('replication');
  return Number(/connected_slaves:(\d+)/.exec(info)?.[1]);
}

async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A fingerprint of a whole server: DEBUG DIGEST covers every database, values and expiries. */
async function fingerprint(server: RedisSandbox) {
  const client = await clientOf(server);
  const digest = await client.call('DEBUG', 'DIGEST');
  const sizes: number[] = [];
  for (const db of [0, 3]) {
    await client.select(db);
    sizes.push(await client.dbsize());
  }
  return { digest, sizes };
}

/** Starts a server that loads `rdb` at start-up: the proof that a pulled RDB is a usable backup. */
async function serverLoading(rdb: Buffer): Promise<RedisSandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'drkit-rdb-load-'));
  dirs.push(dir);
  await writeFile(join(dir, 'x.rdb'), rdb);
  return start({ config: { dir, dbfilename: 'x.rdb' } });
}

/** A few thousand keys of every common type, binary values and key names, expiries, two databases. */
async function fill(server: RedisSandbox): Promise<void> {
  const client = await clientOf(server);
  const expireAt = Date.now() + 86_400_000;
  for (const db of [0, 3]) {
    const p = client.pipeline();
    p.select(db);
    for (let i = 0; i < 600; i++) {
      p.set(`str:${i}`, `value ${i} ${'x'.repeat(i % 50)}`);
      p.set(Buffer.concat([Buffer.from(`bin:${i}:`), randomBytes(4), Buffer.from('\r\n\0')]), randomBytes(i % 300));
      p.hset(`hash:${i}`, {
        field: String(i),
        blob: randomBytes(20),
        ...(i % 100 === 0 ? Object.fromEntries(Array.from({ length: 200 }, (_, f) => [`f${f}`, f])) : {}),
      });
      p.rpush(`list:${i}`, ...Array.from({ length: 1 + (i % 40) }, (_, n) => randomBytes(n)));
      p.sadd(`set:${i}`, ...Array.from({ length: 1 + (i % 30) }, (_, n) => (i % 2 ? n : `m${n}`)));
      p.zadd(`zset:${i}`, ...Array.from({ length: 1 + (i % 20) }, (_, n) => [n * 1.5, `z${n}`]).flat());
      if (i % 10 === 0) p.xadd(`stream:${i}`, '*', 'a', String(i), 'b', randomBytes(10));
      if (i % 7 === 0) p.pexpireat(`str:${i}`, expireAt + i);
    }
    const results = await p.exec();
    const failed = results?.find(([error]) => error);
    if (failed) throw failed[0];
  }
}

describe('openRdbStream against redis-server', () => {
  let source: RedisSandbox;
  let admin: Redis;

  beforeAll(async () => {
    source = await start({ config: { 'repl-diskless-sync': 'yes', 'repl-diskless-sync-delay': 0 } });
    await fill(source);
    admin = await clientOf(source);
  });

  it('pulls a diskless RDB framed with an EOF mark, which a second server loads identically', async () => {
    const { stream, data, result, check } = await pull(redisTarget(source.url()));
    expect(stream.framing).toBe('eof');
    expect(stream.size).toBeUndefined();
    expect(stream.rdbOnly).toBe(true);
    expect(check).toEqual({ bytes: data.length, rdbVersion: 10, checksum: 'ok' });
    expect(result).toEqual({ bytes: data.length, rdbVersion: 10 });
    expect(maxRdbVersionFor(source.version)).toBe(10);

    const copy = await serverLoading(data);
    const [original, loaded] = await Promise.all([fingerprint(source), fingerprint(copy)]);
    expect(original.sizes).toEqual([3660, 3660]);
    expect(loaded).toEqual(original);
    // The pull leaves nothing behind on the server.
    await waitFor('the replica to go away', async () => (await connectedReplicas(admin)) === 0);
  });

  it('pulls a disk-based RDB framed with its length, over the unix socket, which a second server loads identically', async () => {
    await admin.config('SET', 'repl-diskless-sync', 'no');
    try {
      const { stream, data, result, check } = await pull(redisTarget(`unix://${source.socketPath}`));
      expect(stream.framing).toBe('length');
      expect(stream.size).toBe(data.length);
      expect(stream.rdbOnly).toBe(true);
      expect(check).toEqual({ bytes: data.length, rdbVersion: 10, checksum: 'ok' });
      expect(result).toEqual({ bytes: data.length, rdbVersion: 10 });

      const copy = await serverLoading(data);
      expect(await fingerprint(copy)).toEqual(await fingerprint(source));
    } finally {
      await admin.config('SET', 'repl-diskless-sync', 'yes');
    }
  });

  it('waits through the newline keep-alives of repl-diskless-sync-delay, reporting them to onWaiting', async () => {
    // The server forks once a replica has waited the delay in whole seconds of its clock, and
    // sends keep-alives once a second: 3 s guarantees at least one (1 s may send none).
    await admin.config('SET', 'repl-diskless-sync-delay', '3');
    try {
      let waits = 0;
      const started = performance.now();
      const { stream, check } = await pull(redisTarget(source.url()), { onWaiting: () => waits++, timeoutMs: 1500 });
      expect(performance.now() - started).toBeGreaterThan(1900);
      expect(stream.framing).toBe('eof');
      expect(waits).toBeGreaterThanOrEqual(1);
      expect(check.checksum).toBe('ok');
    } finally {
      await admin.config('SET', 'repl-diskless-sync-delay', '0');
    }
  });

  it('warns about a diskless sync delay from replicationSettings, and only then', async () => {
    await admin.config('SET', 'repl-diskless-sync-delay', '5');
    try {
      const slow = await replicationSettings(admin);
      expect(slow).toMatchObject({ disklessSync: true, disklessSyncDelaySeconds: 5 });
      expect(slow.warning).toMatch(/wait about 5 s/);
      expect(slow.warning).toContain('CONFIG SET repl-diskless-sync-delay 0');

      await admin.config('SET', 'repl-diskless-sync', 'no');
      expect(await replicationSettings(admin)).toEqual({ disklessSync: false, disklessSyncDelaySeconds: 5 });
    } finally {
      await admin.config('SET', 'repl-diskless-sync', 'yes');
      await admin.config('SET', 'repl-diskless-sync-delay', '0');
    }
    expect(await replicationSettings(admin)).toEqual({ disklessSync: true, disklessSyncDelaySeconds: 0 });
  });
});

describe('openRdbStream refusals', () => {
  let secured: RedisSandbox;

  beforeAll(async () => {
    secured = await start({ password: PASSWORD, config: { 'repl-diskless-sync-delay': 0 } });
    const admin = await clientOf(secured);
    await admin.set('k', 'v');
    await admin.call('ACL', 'SETUSER', 'limited', 'on', '>pw', '~*', '+@all', '-sync', '-psync');
    await admin.call('ACL', 'SETUSER', 'noconfig', 'on', '>pw', '~*', '+@all', '-config');
  });

  it('logs in with the right password', async () => {
    const { check } = await pull(redisTarget(secured.url()));
    expect(check.checksum).toBe('ok');
  });

  it('refuses a wrong or missing password with REDIS_AUTH_FAILED, never repeating the password', async () => {
    const wrongUrl = secured.url().replace(encodeURIComponent(PASSWORD), 'not-the-password');
    expect(wrongUrl).not.toBe(secured.url());
    const wrong = await errorOf(openRdbStream(redisTarget(wrongUrl)));
    expect(wrong.code).toBe('REDIS_AUTH_FAILED');
    expect(wrong.message).toMatch(/rejected the credentials/);
    for (const text of [wrong.message, String(wrong.cause), JSON.stringify(wrong.details)]) {
      expect(text).not.toContain('not-the-password');
      expect(text).not.toContain(PASSWORD);
    }
    const wrongUser = await errorOf(openRdbStream(redisTarget(`redis://limited:nope@${secured.host}:${secured.port}`)));
    expect(wrongUser.code).toBe('REDIS_AUTH_FAILED');
    expect(wrongUser.message).not.toContain('nope');

    const missing = await errorOf(openRdbStream(redisTarget(`redis://${secured.host}:${secured.port}`)));
    expect(missing.code).toBe('REDIS_AUTH_FAILED');
    expect(missing.message).toContain('a password is required');
  });

  it('reports an ACL user without +sync/+psync as REDIS_SYNC_REFUSED, pointing at the logical export', async () => {
    const error = await errorOf(openRdbStream(redisTarget(`redis://limited:pw@${secured.host}:${secured.port}`)));
    expect(error.code).toBe('REDIS_SYNC_REFUSED');
    expect(error.message).toMatch(/"-NOPERM [^"]*sync/);
    expect(error.message).toContain('use the logical export instead');
  });

  it('reports SYNC renamed away (rename-command in redis.conf) as REDIS_SYNC_REFUSED', async () => {
    // The sandbox writes each config entry as "<key> <value>", so the key carries the command.
    const renamed = await start({ config: { 'rename-command SYNC': '' } });
    const error = await errorOf(openRdbStream(redisTarget(renamed.url())));
    expect(error.code).toBe('REDIS_SYNC_REFUSED');
    expect(error.message).toMatch(/"-ERR unknown command 'SYNC'/);
    expect(error.message).toContain('use the logical export instead');
  });

  it('reports a closed port as REDIS_CONNECTION_REFUSED', async () => {
    const port = await getFreePort();
    const error = await errorOf(openRdbStream(redisTarget(`redis://127.0.0.1:${port}`)));
    expect(error.code).toBe('REDIS_CONNECTION_REFUSED');
  });

  it('returns {} from replicationSettings when CONFIG is not allowed', async () => {
    const client = new Redis({
      host: secured.host,
      port: secured.port,
      username: 'noconfig',
      password: 'pw',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
    });
    client.on('error', () => {});
    clients.push(client);
    await client.connect();
    expect(await replicationSettings(client)).toEqual({});
  });
});

describe('openRdbStream with a 50 MB RDB', () => {
  let big: RedisSandbox;
  let admin: Redis;

  beforeAll(async () => {
    // Uncompressed, so the RDB is as large as the data (50 values of 1 MiB).
    big = await start({ config: { 'repl-diskless-sync': 'yes', 'repl-diskless-sync-delay': 0, rdbcompression: 'no' } });
    admin = await clientOf(big);
    await admin.call('DEBUG', 'POPULATE', '50', 'big', String(1024 * 1024));
  });

  it('aborts mid-stream with REDIS_ABORTED, and the server sees the replica go', async () => {
    const controller = new AbortController();
    const stream = await openRdbStream(redisTarget(big.url()), { signal: controller.signal });
    const first = await stream.chunks.next();
    expect(first.done).toBe(false);
    expect(await connectedReplicas(admin)).toBe(1);
    controller.abort(new Error('operator pressed ^C'));
    const error = await errorOf(stream.chunks.next());
    expect(error.code).toBe('REDIS_ABORTED');
    expect(error.cause).toEqual(new Error('operator pressed ^C'));
    await waitFor('the replica to go away', async () => (await connectedReplicas(admin)) === 0);
    stream.close();
  });

  it('closes the connection when the consumer stops early', async () => {
    const stream = await openRdbStream(redisTarget(big.url()));
    for await (const _chunk of stream.chunks) break;
    await waitFor('the replica to go away', async () => (await connectedReplicas(admin)) === 0);
  });

  it('keeps memory flat while the consumer is slower than the server (backpressure)', async () => {
    // Frequent explicit collections make this a measure of live memory: consumed chunks only
    // leave the arrayBuffers count once collected and swept.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage();
    let maxRss = before.rss;
    let maxBuffers = before.arrayBuffers;
    const stream = await openRdbStream(redisTarget(big.url()));
    const checker = createRdbChecker();
    let chunks = 0;
    const started = performance.now();
    for await (const chunk of stream.chunks) {
      checker.update(chunk);
      if (++chunks % 10 === 0) {
        gc();
        const now = process.memoryUsage();
        maxRss = Math.max(maxRss, now.rss);
        maxBuffers = Math.max(maxBuffers, now.arrayBuffers);
      }
      await sleep(2);
    }
    const check = checker.finish();
    expect(check.checksum).toBe('ok');
    expect(check.bytes).toBeGreaterThan(50 * 1024 * 1024);
    expect(stream.result().bytes).toBe(check.bytes);
    // The consumer was the bottleneck (a fast one takes about half a second here): without
    // backpressure the whole 50 MB would have piled up in memory (measured: arrayBuffers +51 MB).
    expect(performance.now() - started).toBeGreaterThan(1000);
    expect(maxBuffers - before.arrayBuffers).toBeLessThan(8 * 1024 * 1024);
    expect(maxRss - before.rss).toBeLessThan(25 * 1024 * 1024);
  });
});

/**
 * A scripted stand-in for a master, for what a real server will not do on demand: split the
 * framing anywhere, stop half-way, go silent, reject rdb-only.
 */
async function fakeMaster(
  onSync: (socket: Socket) => void,
  options: { rejectRdbOnly?: boolean } = {},
): Promise<{ target: RedisTarget; commands: string[][]; server: Server }> {
  const commands: string[][] = [];
  const server = createServer((socket) => {
    fakeSockets.push(socket);
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    socket.on('data', (data) => {
      buffered = Buffer.concat([buffered, data]);
      // Only whole RESP arrays of bulk strings: what openRdbStream sends.
      for (;;) {
        const text = buffered.toString('latin1');
        const header = /^\*(\d+)\r\n/.exec(text);
        if (!header) return;
        let at = header[0].length;
        const args: string[] = [];
        for (let i = 0; i < Number(header[1]); i++) {
          const bulk = /^\$(\d+)\r\n/.exec(text.slice(at));
          if (!bulk) return;
          const start = at + bulk[0].length;
          if (text.length < start + Number(bulk[1]) + 2) return;
          args.push(text.slice(start, start + Number(bulk[1])));
          at = start + Number(bulk[1]) + 2;
        }
        buffered = buffered.subarray(at);
        commands.push(args);
        const name = args[0]?.toUpperCase();
        if (name === 'SYNC') onSync(socket);
        else if (name === 'REPLCONF' && args[1] === 'rdb-only' && options.rejectRdbOnly)
          socket.write('-ERR Unrecognized REPLCONF option: rdb-only\r\n');
        else socket.write('+OK\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fakes.push(server);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { target: redisTarget(`redis://127.0.0.1:${port}`), commands, server };
}

const fakes: Server[] = [];
const fakeSockets: Socket[] = [];
afterAll(async () => {
  for (const socket of fakeSockets) socket.destroy();
  await Promise.all(fakes.map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A minimal valid RDB (version 10, checksum disabled) with `filler` bytes in the middle. */
function tinyRdb(filler: number): Buffer {
  const head = Buffer.concat([
    Buffer.from('REDIS0010\xfe\x00\xfb\x01\x00\x00\x01k', 'latin1'),
    Buffer.from([0x40 | (filler >> 8), filler & 0xff]),
    randomBytes(filler),
    Buffer.from([0xff]),
  ]);
  return Buffer.concat([head, Buffer.alloc(8)]);
}

/** Writes `parts` one by one with a pause between, so each arrives as its own chunk. */
async function trickle(socket: Socket, parts: (string | Buffer)[], end = false): Promise<void> {
  for (const part of parts) {
    socket.write(part);
    await sleep(15);
  }
  if (end) socket.end();
}

describe('openRdbStream framing (scripted master)', () => {
  it('sends the handshake one command at a time, then splits keep-alives, header and EOF mark wherever they fall', async () => {
    const rdb = tinyRdb(3000);
    const mark = Buffer.from('0123456789abcdef0123456789abcdef01234567');
    const { target, commands } = await fakeMaster((socket) => {
      void trickle(socket, [
        '\n',
        '\n\n$E',
        'OF:0123456789',
        `${mark.toString().slice(10)}\r`,
        '\n',
        rdb.subarray(0, 5),
        rdb.subarray(5, 3000),
        Buffer.concat([rdb.subarray(3000), mark.subarray(0, 17)]),
        mark.subarray(17),
      ]);
    });
    let waits = 0;
    const { stream, data, check } = await pull(target, { onWaiting: () => waits++ });
    expect(commands).toEqual([['REPLCONF', 'capa', 'eof', 'capa', 'psync2'], ['REPLCONF', 'rdb-only', '1'], ['SYNC']]);
    expect(waits).toBe(3);
    expect(stream.framing).toBe('eof');
    expect(data.equals(rdb)).toBe(true);
    expect(check).toEqual({ bytes: rdb.length, rdbVersion: 10, checksum: 'disabled' });
  });

  it('stops at the declared length and ignores the replication stream after it; an older server without rdb-only is fine', async () => {
    const rdb = tinyRdb(500);
    const { target } = await fakeMaster(
      (socket) =>
        void trickle(socket, [
          Buffer.concat([Buffer.from(`$${rdb.length}\r\n`), rdb.subarray(0, 100)]),
          Buffer.concat([rdb.subarray(100), Buffer.from('*1\r\n$4\r\nPING\r\n')]),
        ]),
      { rejectRdbOnly: true },
    );
    const { stream, data } = await pull(target);
    expect(stream).toMatchObject({ framing: 'length', size: rdb.length, rdbOnly: false });
    expect(data.equals(rdb)).toBe(true);
  });

  it('sends AUTH with user name and password first when the URL has them', async () => {
    const rdb = tinyRdb(10);
    const { target, commands } = await fakeMaster((socket) => socket.write(Buffer.concat([Buffer.from(`$${rdb.length}\r\n`), rdb])));
    await pull(redisTarget(`redis://backup:s%3Acret@127.0.0.1:${target.port}`));
    expect(commands[0]).toEqual(['AUTH', 'backup', 's:cret']);
  });

  it('fails with REDIS_PROTOCOL_ERROR when the connection ends before the declared size or the EOF mark', async () => {
    const rdb = tinyRdb(2000);
    const short = await fakeMaster((socket) => void trickle(socket, [`$${rdb.length}\r\n`, rdb.subarray(0, 1000)], true));
    const shortError = await errorOf(pull(short.target));
    expect(shortError.code).toBe('REDIS_PROTOCOL_ERROR');
    expect(shortError.message).toContain(`after 1000 of ${rdb.length} bytes`);

    const unmarked = await fakeMaster((socket) => void trickle(socket, [`$EOF:${'m'.repeat(40)}\r\n`, rdb], true));
    const unmarkedError = await errorOf(pull(unmarked.target));
    expect(unmarkedError.code).toBe('REDIS_PROTOCOL_ERROR');
    expect(unmarkedError.message).toContain('without its end mark');
  });

  it('fails with REDIS_RDB_INVALID when the payload is not an RDB, before handing any of it out', async () => {
    const { target } = await fakeMaster((socket) => void trickle(socket, ['$20\r\n', 'HTTP/1.1 200', ' OK\r\n\r\nabc']));
    const stream = await openRdbStream(target);
    const error = await errorOf(stream.chunks.next());
    expect(error.code).toBe('REDIS_RDB_INVALID');
    expect(error.message).toContain('"HTTP/1.1 "');
  });

  it('fails with REDIS_PROTOCOL_ERROR on a reply that is not Redis, and REDIS_TIMEOUT on silence', async () => {
    const odd = await fakeMaster((socket) => socket.write('HELLO\r\n'));
    const oddError = await errorOf(openRdbStream(odd.target));
    expect(oddError.code).toBe('REDIS_PROTOCOL_ERROR');
    expect(oddError.message).toContain('"HELLO"');

    const silent = await fakeMaster(() => {});
    const started = performance.now();
    const timeout = await errorOf(openRdbStream(silent.target, { timeoutMs: 300 }));
    expect(timeout.code).toBe('REDIS_TIMEOUT');
    expect(performance.now() - started).toBeLessThan(3000);

    const stalled = await fakeMaster((socket) => void trickle(socket, ['$5000\r\n', tinyRdb(100)]));
    const stalledError = await errorOf(pull(stalled.target, { timeoutMs: 300 }));
    expect(stalledError.code).toBe('REDIS_TIMEOUT');
    expect(stalledError.message).toContain('while streaming the RDB');
  });

  it('honours an abort during the handshake and a signal that already fired', async () => {
    const silent = await fakeMaster(() => {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    expect((await errorOf(openRdbStream(silent.target, { signal: controller.signal }))).code).toBe('REDIS_ABORTED');
    expect((await errorOf(openRdbStream(silent.target, { signal: AbortSignal.abort() }))).code).toBe('REDIS_ABORTED');
  });
});
