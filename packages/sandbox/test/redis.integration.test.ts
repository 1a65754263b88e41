import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { SandboxError, startRedis } from '../src/index.js';
import { leftovers } from './helpers.js';

describe('startRedis', () => {
  it('serves a real round trip through ioredis, then stop() leaves nothing', async () => {
    const server = await startRedis();
    const redis = new Redis(server.url());
    try {
      await redis.set('session:1', 'alice', 'PX', 60_000);
      await redis.hset('user:1', { name: 'Alice', plan: 'pro' });
      expect(await redis.get('session:1')).toBe('alice');
      expect(await redis.hgetall('user:1')).toEqual({ name: 'Alice', plan: 'pro' });
      expect(await redis.pttl('session:1')).toBeGreaterThan(0);
      const info = await redis.info('server');
      expect(info).toContain(`redis_version:${server.version}`);
    } finally {
      redis.disconnect();
      await server.stop();
    }
    expect(await leftovers(server.dir)).toEqual({ processes: [], dirExists: false });
  });

  it('writes an RDB file when persistence is rdb, and none by default', async () => {
    const durable = await startRedis({ persistence: 'rdb' });
    const volatile = await startRedis();
    const a = new Redis(durable.url());
    const b = new Redis(volatile.url());
    try {
      await a.set('k', 'v');
      await a.save();
      expect(existsSync(join(durable.dataDir, durable.dbFilename))).toBe(true);
      expect(await b.config('GET', 'save')).toEqual(['save', '']);
    } finally {
      a.disconnect();
      b.disconnect();
      await Promise.all([durable.stop(), volatile.stop()]);
    }
  });

  it('requires the password when one is set, and serves the unix socket', async () => {
    const server = await startRedis({ password: 's3cret pass' });
    const anonymous = new Redis({
      port: server.port,
      host: server.host,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableReadyCheck: false,
    });
    const errors: Error[] = [];
    anonymous.on('error', (error: Error) => errors.push(error));
    const authed = new Redis(server.url());
    const local = new Redis({ path: server.socketPath, password: 's3cret pass' });
    try {
      await anonymous.connect();
      await expect(anonymous.get('x')).rejects.toThrow(/NOAUTH/);
      expect(await authed.ping()).toBe('PONG');
      expect(await local.ping()).toBe('PONG');
    } finally {
      anonymous.disconnect();
      authed.disconnect();
      local.disconnect();
      await server.stop();
    }
  });

  it('moves to another port when the preferred one is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as { port: number }).port;
    const server = await startRedis({ port: taken });
    const redis = new Redis(server.url());
    try {
      expect(server.port).not.toBe(taken);
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
      await server.stop();
      blocker.close();
    }
  });

  it('names the package to install when redis-server is missing', async () => {
    const error = await startRedis({ serverPath: '/nonexistent/redis-server' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SandboxError);
    expect(error).toMatchObject({ code: 'SANDBOX_BINARY_MISSING' });
    expect((error as Error).message).toMatch(/apt-get install redis-server/);

    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const fromPath = await startRedis().catch((e: unknown) => e);
      expect(fromPath).toMatchObject({ code: 'SANDBOX_BINARY_MISSING' });
      expect((fromPath as Error).message).toMatch(/not found on PATH.*apt-get install redis-server/);
    } finally {
      process.env.PATH = path;
    }
  });

  it('reports a server that exits during start-up with its own words', async () => {
    const error = await startRedis({ config: { 'no-such-directive': 'x' } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SANDBOX_START_FAILED' });
    expect((error as Error).message).toMatch(/no-such-directive/);
  });
});
