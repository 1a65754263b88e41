import { spawn } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { findSandboxProcesses, SandboxError, startRedis } from '../src/index.js';
import { leftovers } from './helpers.js';

/** Connects once, without retries: a server that is not ready yet fails this. */
async function connectOnce(url: string): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  // ioredis reports an error event nobody listens to on the console.
  redis.on('error', () => {});
  await redis.connect();
  return redis;
}

/** 'connected', or the error code of a plain TCP connect to 127.0.0.1:port. */
function tcpProbe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

async function dbsize(url: string): Promise<number> {
  const redis = await connectOnce(url);
  try {
    return await redis.dbsize();
  } finally {
    redis.disconnect();
  }
}

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

describe('RedisSandbox halt() and start()', () => {
  it('keeps an RDB across halt and start on the same port, twice', async () => {
    const server = await startRedis({ persistence: 'rdb' });
    const dump = join(server.dataDir, server.dbFilename);
    const url = server.url();
    try {
      const firstPid = server.pid;
      expect(server.running).toBe(true);
      expect(firstPid).toBeGreaterThan(0);
      const a = await connectOnce(url);
      await a.mset({ 'k:1': 'one', 'k:2': 'two', 'k:3': 'three' });
      await a.save();
      a.disconnect();

      await server.halt();
      expect(server.running).toBe(false);
      expect(server.pid).toBeUndefined();
      expect(await tcpProbe(server.port)).toBe('ECONNREFUSED');
      expect(existsSync(dump)).toBe(true);

      await server.start();
      // The first connection attempt right after start() succeeds: start() waited for this
      // run's readiness, not the previous run's line in the log.
      const b = await connectOnce(url);
      expect(server.url()).toBe(url);
      expect(server.running).toBe(true);
      expect(server.pid).toBeGreaterThan(0);
      expect(server.pid).not.toBe(firstPid);
      expect(await b.dbsize()).toBe(3);
      expect(await b.get('k:2')).toBe('two');
      // No SAVE this time: with persistence rdb, the SIGTERM of halt() saves.
      await b.set('k:4', 'four');
      b.disconnect();

      await server.halt();
      expect(await tcpProbe(server.port)).toBe('ECONNREFUSED');
      await server.start();
      expect(await dbsize(url)).toBe(4);
      expect(server.readLog(64_000).match(/Ready to accept connections/g)).toHaveLength(3);
    } finally {
      await server.stop();
    }
    expect(await leftovers(server.dir)).toEqual({ processes: [], dirExists: false });
  });

  it('without persistence, halt() writes no dump and start() loads one put into dataDir meanwhile', async () => {
    const server = await startRedis();
    const donor = await startRedis();
    const dump = join(server.dataDir, server.dbFilename);
    try {
      const a = await connectOnce(server.url());
      await a.set('lost', 'x');
      a.disconnect();
      await server.halt();
      expect(existsSync(dump)).toBe(false);
      await server.start();
      expect(await dbsize(server.url())).toBe(0);

      const d = await connectOnce(donor.url());
      await d.hset('user:1', { name: 'Alice' });
      await d.set('restored', 'yes');
      await d.save();
      d.disconnect();

      await server.halt();
      copyFileSync(join(donor.dataDir, donor.dbFilename), dump);
      await server.start();
      const b = await connectOnce(server.url());
      try {
        expect(await b.dbsize()).toBe(2);
        expect(await b.get('restored')).toBe('yes');
        expect(await b.hgetall('user:1')).toEqual({ name: 'Alice' });
        expect(await b.config('GET', 'save')).toEqual(['save', '']);
      } finally {
        b.disconnect();
      }
    } finally {
      await Promise.all([server.stop(), donor.stop()]);
    }
  });

  it('stop() after halt() removes the dir; halt() and stop() are idempotent; start() after stop() fails', async () => {
    const server = await startRedis({ persistence: 'rdb' });
    await Promise.all([server.halt(), server.halt()]);
    await server.halt();
    expect(existsSync(server.dataDir)).toBe(true);
    await Promise.all([server.stop(), server.stop()]);
    await server.stop();
    await server.halt();
    expect(server.running).toBe(false);
    expect(await leftovers(server.dir)).toEqual({ processes: [], dirExists: false });
    const error = await server.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SandboxError);
    expect(error).toMatchObject({ code: 'SANDBOX_START_FAILED' });
    expect((error as Error).message).toMatch(/stopped/);
  });

  it('refuses to move when its port was taken while halted, and starts once it is free', async () => {
    const server = await startRedis();
    const blocker = createServer();
    try {
      await server.halt();
      await new Promise<void>((resolve, reject) => {
        blocker.once('error', reject);
        blocker.listen(server.port, '127.0.0.1', resolve);
      });
      const error = await server.start().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SandboxError);
      expect(error).toMatchObject({ code: 'SANDBOX_PORT_UNAVAILABLE' });
      expect((error as Error).message).toContain(`port ${server.port}`);
      expect((error as SandboxError).log).toMatch(/Address already in use/i);
      expect(server.running).toBe(false);
      expect(existsSync(server.dataDir)).toBe(true);

      await new Promise<void>((resolve) => blocker.close(() => resolve()));
      await server.start();
      expect(await dbsize(server.url())).toBe(0);
    } finally {
      blocker.close();
      await server.stop();
    }
    expect(await leftovers(server.dir)).toEqual({ processes: [], dirExists: false });
  });

  it('start() while running is a no-op', async () => {
    const server = await startRedis();
    try {
      const pid = server.pid;
      const a = await connectOnce(server.url());
      await a.set('k', 'v');
      await Promise.all([server.start(), server.start()]);
      expect(server.pid).toBe(pid);
      expect(await a.get('k')).toBe('v');
      a.disconnect();
      expect(server.readLog(64_000).match(/Ready to accept connections/g)).toHaveLength(1);
    } finally {
      await server.stop();
    }
  });

  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    it(`removes a halted dir when its owner gets ${how}`, async () => {
      const index = new URL('../src/index.ts', import.meta.url).href;
      const code = `import { startRedis } from ${JSON.stringify(index)};
const r = await startRedis({ persistence: 'rdb' });
await r.halt();
process.stdout.write(JSON.stringify({ dir: r.dir }) + '\\n');
setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exit = new Promise((resolve) => child.once('exit', resolve));
      let out = '';
      let err = '';
      child.stderr.on('data', (chunk: Buffer) => {
        err += chunk.toString();
      });
      const dir = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const line = out.split('\n').find((l) => l.startsWith('{'));
          if (line) resolve((JSON.parse(line) as { dir: string }).dir);
        });
        child.once('exit', () => reject(new Error(`the owner exited before halting its server:\n${err}`)));
      });
      expect(existsSync(dir)).toBe(true);
      // Only the watchdog of the halted dir is left: no redis-server.
      expect(findSandboxProcesses(dir).filter((p) => !p.command.includes('reaper'))).toEqual([]);
      child.kill(how);
      await exit;
      expect(await leftovers(dir, 10_000)).toEqual({ processes: [], dirExists: false });
    });
  }
});
