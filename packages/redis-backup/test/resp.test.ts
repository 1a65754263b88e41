import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { getFreePort, type RedisSandbox, startRedis } from '@drkit/sandbox';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisTarget } from '../src/connection.js';
import type { RedisBackupError } from '../src/errors.js';
import { dumpType } from '../src/export.js';
import { Base64Arg, openResp, parseReplies, RespBatch, RespError } from '../src/resp.js';
import { errorOf } from './support/errors.js';

const PASSWORD = 'resp-test-password';
let plain: RedisSandbox;
let secured: RedisSandbox;
let check: Redis;

beforeAll(async () => {
  [plain, secured] = await Promise.all([startRedis(), startRedis({ password: PASSWORD })]);
  check = new Redis({ host: plain.host, port: plain.port, lazyConnect: true, maxRetriesPerRequest: 0 });
  await check.connect();
});

afterAll(async () => {
  check?.disconnect();
  await Promise.all([plain?.stop(), secured?.stop()]);
});

describe('RespBatch and openResp', () => {
  it('writes text, bytes, integers and base64 exactly, and returns every kind of reply in order', async () => {
    const conn = await openResp(redisTarget(plain.url()), { name: 'resp-test' });
    try {
      const binary = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a, 0x80]);
      const batch = new RespBatch();
      batch.command(['SET', 'resp:text', 'grüße ✓']);
      batch.command(['SET', Buffer.from('resp:bin\x00key', 'latin1'), binary]);
      batch.command(['SET', 'resp:b64', new Base64Arg(binary.toString('base64'))]);
      batch.command(['SET', 'resp:int', 12345678901]);
      batch.command(['INCRBY', 'resp:int', 1]);
      batch.command(['GET', 'resp:missing']);
      batch.command(['MGET', 'resp:text', 'resp:missing']);
      batch.command(['HSET', 'resp:text', 'f', 'v']);
      const replies = await conn.exec(batch);
      expect(replies.slice(0, 4)).toEqual(['OK', 'OK', 'OK', 'OK']);
      expect(replies[4]).toBe(12345678902);
      expect(replies[5]).toBeNull();
      expect(replies[6]).toEqual([Buffer.from('grüße ✓'), null]);
      expect(replies[7]).toBeInstanceOf(RespError);
      expect((replies[7] as RespError).message).toMatch(/^WRONGTYPE/);

      expect(await check.get('resp:text')).toBe('grüße ✓');
      expect(await check.getBuffer(Buffer.from('resp:bin\x00key', 'latin1'))).toEqual(binary);
      expect(await check.getBuffer('resp:b64')).toEqual(binary);
      expect(await conn.call('CLIENT', 'GETNAME')).toEqual(Buffer.from('resp-test'));
      await expect(conn.call('NOSUCHCOMMAND')).rejects.toBeInstanceOf(RespError);
    } finally {
      await conn.close();
    }
  });

  it('grows its buffer for large values and keeps several large batches in flight', async () => {
    const conn = await openResp(redisTarget(plain.url()));
    try {
      const values = Array.from({ length: 6 }, () => randomBytes(3 * 1024 * 1024));
      const sent = values.map((value, i) => {
        const batch = new RespBatch();
        batch.command(['SET', `resp:big:${i}`, i % 2 === 0 ? value : new Base64Arg(value.toString('base64'))]);
        batch.command(['STRLEN', `resp:big:${i}`]);
        expect(batch.bytes).toBeGreaterThan(value.length);
        return conn.exec(batch);
      });
      for (const replies of await Promise.all(sent)) expect(replies).toEqual(['OK', 3 * 1024 * 1024]);
      for (const [i, value] of values.entries()) expect((await check.getBuffer(`resp:big:${i}`))?.equals(value)).toBe(true);
    } finally {
      await conn.close();
    }
  });

  it('refuses base64 that does not decode, before anything is sent', () => {
    const batch = new RespBatch();
    const error = (() => {
      try {
        batch.command(['SET', 'k', new Base64Arg('not*base64*at*all')]);
      } catch (e) {
        return e as RedisBackupError;
      }
      throw new Error('expected a throw');
    })();
    expect(error.code).toBe('REDIS_BACKUP_INVALID');
    expect(batch.count).toBe(0);
    expect(batch.bytes).toBe(0);
  });

  it('logs in, and maps a wrong password and a closed port to their codes without printing the password', async () => {
    const conn = await openResp(redisTarget(secured.url()));
    expect(await conn.call('PING')).toBe('PONG');
    await conn.close();

    const wrong = await errorOf(openResp(redisTarget(secured.url().replace(encodeURIComponent(PASSWORD), 'not-it'))));
    expect(wrong.code).toBe('REDIS_AUTH_FAILED');
    expect(`${wrong.message} ${String(wrong.cause)}`).not.toContain('not-it');
    const missing = await errorOf(openResp(redisTarget(`redis://${secured.host}:${secured.port}`)));
    expect(missing.code).toBe('REDIS_AUTH_FAILED');

    const port = await getFreePort();
    expect((await errorOf(openResp(redisTarget(`redis://127.0.0.1:${port}`)))).code).toBe('REDIS_CONNECTION_REFUSED');
  });

  it('fails with REDIS_TIMEOUT when the server goes silent, and with REDIS_UNREACHABLE when it hangs up', async () => {
    // A server that answers the login and then nothing; a second that hangs up on the next command.
    const sockets: Socket[] = [];
    const fake = (mode: 'silent' | 'hang-up'): Promise<Server> =>
      new Promise((resolve) => {
        const server = createServer((socket) => {
          sockets.push(socket);
          let seen = 0;
          socket.on('data', () => {
            seen++;
            if (seen === 1) socket.write('+OK\r\n');
            else if (mode === 'hang-up') socket.destroy();
          });
        });
        server.listen(0, '127.0.0.1', () => resolve(server));
      });
    const silent = await fake('silent');
    const hangUp = await fake('hang-up');
    const url = (s: Server) => `redis://127.0.0.1:${(s.address() as { port: number }).port}`;
    try {
      const quiet = await openResp(redisTarget(url(silent)), { timeoutMs: 300 });
      const batch = new RespBatch();
      batch.command(['SET', 'k', 'v']);
      expect((await errorOf(quiet.exec(batch))).code).toBe('REDIS_TIMEOUT');

      const closing = await openResp(redisTarget(url(hangUp)));
      const next = new RespBatch();
      next.command(['SET', 'k', 'v']);
      expect((await errorOf(closing.exec(next))).code).toBe('REDIS_UNREACHABLE');
      // A failed connection refuses further batches with the same error.
      expect((await errorOf(closing.exec(next))).code).toBe('REDIS_UNREACHABLE');
    } finally {
      for (const s of sockets) s.destroy();
      await Promise.all([silent, hangUp].map((s) => new Promise((r) => s.close(r))));
    }
  });

  it('puts together replies that arrive in pieces: every split of nested arrays, and values larger than many reads', async () => {
    // A fake server that answers its first command (CLIENT SETNAME) and then sends one
    // crafted reply in pieces of 1 to 7 bytes, with pauses, so that every element, header and
    // CRLF is cut somewhere.
    const reply = Buffer.concat([
      Buffer.from('*4\r\n*3\r\n$5\r\nhello\r\n:-42\r\n$-1\r\n+OK\r\n*2\r\n*0\r\n-ERR inner\r\n$12\r\n', 'latin1'),
      Buffer.from([0, 13, 10, 255, 1, 2, 3, 13, 10, 4, 5, 6]),
      Buffer.from('\r\n', 'latin1'),
    ]);
    const server = await new Promise<Server>((resolve) => {
      const s = createServer((socket) => {
        let seen = 0;
        socket.on('data', async () => {
          if (++seen === 1) return void socket.write('+OK\r\n');
          for (let at = 0, n = 1; at < reply.length; at += n, n = (n % 7) + 1) {
            socket.write(reply.subarray(at, at + n));
            await new Promise((r) => setTimeout(r, 2));
          }
        });
      });
      s.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const conn = await openResp(redisTarget(`redis://127.0.0.1:${(server.address() as { port: number }).port}`));
      const expected = [
        [Buffer.from('hello'), -42, null],
        'OK',
        [[], new RespError('ERR inner')],
        Buffer.from([0, 13, 10, 255, 1, 2, 3, 13, 10, 4, 5, 6]),
      ];
      const batch = new RespBatch();
      batch.command(['ANY']);
      expect(await conn.exec(batch)).toEqual([expected]);
      // Kept as bytes instead: the same bytes come back whole, and build the same reply.
      const again = new RespBatch();
      again.command(['ANY']);
      const raw = await conn.execRaw(again);
      expect(raw.equals(reply)).toBe(true);
      expect(parseReplies(raw, 1)).toEqual([expected]);
      await conn.close();
    } finally {
      await new Promise((r) => server.close(r));
    }

    // And from a real server: a 5 MB value and a 60 000-element array, each over many reads.
    const real = await openResp(redisTarget(plain.url()));
    try {
      const big = randomBytes(5 * 1024 * 1024);
      await check.set('resp:read:big', big);
      const items = Array.from({ length: 60_000 }, (_, i) => `item-${i}-${'x'.repeat(i % 50)}`);
      for (let i = 0; i < items.length; i += 5000) await check.rpush('resp:read:list', ...items.slice(i, i + 5000));
      const reads = new RespBatch();
      reads.command(['GET', 'resp:read:big']);
      reads.command(['LRANGE', 'resp:read:list', 0, -1]);
      reads.command(['GET', 'resp:read:big']);
      reads.command(['INCR', 'resp:read:list']);
      const built = real.exec(reads);
      // The same commands again, their replies kept as bytes, between two built batches.
      const kept = new RespBatch();
      for (const args of [['GET', 'resp:read:big'], ['LRANGE', 'resp:read:list', 0, -1], ['INCR', 'resp:read:list'], ['PING']])
        kept.command(args);
      const raw = real.execRaw(kept);
      const after = new RespBatch();
      after.command(['ECHO', 'after']);
      const last = real.exec(after);
      const [first, list, second, wrong] = await built;
      expect((first as Buffer).equals(big)).toBe(true);
      expect((second as Buffer).equals(big)).toBe(true);
      expect((list as Buffer[]).map(String)).toEqual(items);
      expect(wrong).toBeInstanceOf(RespError);
      const bytes = await raw;
      const parsed = parseReplies(bytes, 4);
      expect(parsed.slice(0, 3)).toEqual([first, list, wrong]);
      expect(parsed[3]).toBe('PONG');
      expect(await last).toEqual([Buffer.from('after')]);
      expect(() => parseReplies(bytes.subarray(0, 1000), 4)).toThrow(/not 4 whole replies/);
    } finally {
      await real.close();
    }
  });

  it('gives up on a host that accepts the connection but never answers the login, with REDIS_UNREACHABLE', async () => {
    const sockets: Socket[] = [];
    const mute = await new Promise<Server>((resolve) => {
      const s = createServer((socket) => sockets.push(socket));
      s.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const started = Date.now();
      const error = await errorOf(
        openResp(redisTarget(`redis://127.0.0.1:${(mute.address() as { port: number }).port}`), { connectTimeoutMs: 300 }),
      );
      expect(error.code).toBe('REDIS_UNREACHABLE');
      expect(error.message).toMatch(/within 300 ms/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => mute.close(r));
    }
  });
});

describe('dumpType', () => {
  it('names the type of every encoding a DUMP payload comes in, as TYPE does', async () => {
    const keys: string[] = [];
    const p = check.pipeline();
    const add = (key: string, ...commands: (string | number)[][]) => {
      keys.push(key);
      for (const [name, ...args] of commands) p.call(String(name), key, ...args);
    };
    add('dt:int', ['SET', 12345]);
    add('dt:embstr', ['SET', 'short']);
    add('dt:raw', ['SET', 'r'.repeat(500)]);
    add('dt:list:small', ['RPUSH', 'a', 'b']);
    add('dt:list:big', ['RPUSH', ...Array.from({ length: 3000 }, (_, i) => `item-${i}`)]);
    add('dt:set:int', ['SADD', 1, 2, 3]);
    add('dt:set:small', ['SADD', 'a', 'b']);
    add('dt:set:big', ['SADD', ...Array.from({ length: 1000 }, (_, i) => `m-${i}`)]);
    add('dt:zset:small', ['ZADD', 1, 'a', 2, 'b']);
    add('dt:zset:big', ['ZADD', ...Array.from({ length: 500 }, (_, i) => [i, `m-${i}`]).flat()]);
    add('dt:hash:small', ['HSET', 'f', 'v']);
    add('dt:hash:big', ['HSET', ...Array.from({ length: 1000 }, (_, i) => [`f-${i}`, `v-${i}`]).flat()]);
    add('dt:stream', ['XADD', '*', 'f', 'v'], ['XGROUP', 'CREATE', '$', 'g']);
    await p.exec();
    for (const key of keys) {
      const payload = (await check.dumpBuffer(key)) as Buffer;
      expect([key, dumpType(payload)]).toEqual([key, await check.type(key)]);
    }
    expect(dumpType(Buffer.from([7, 0, 0]))).toBeUndefined();
  });
});
