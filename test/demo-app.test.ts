// The demo app (examples/demo-app), "the platform" of the recovery runbooks, against real
// PostgreSQL and Redis: its migrations, its seed and what /api/status counts, sessions with
// TTLs, uploads (atomic, hashed, no escaping the directory), trades behind treasury-halt, a
// Redis outage under the running app, and the app run by the real `command` controller.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createCommandController, createShell, isPidAlive, silentLogger } from '@drkit/runbook';
import { getFreePort, type PostgresSandbox, type RedisSandbox, startPostgres, startRedis } from '@drkit/sandbox';
import { engageHalt, releaseHalt, verifyHalted } from '@drkit/treasury-halt';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEMO_APP_MIGRATE,
  DEMO_APP_SERVER,
  demoAppService,
  migrate,
  type RunningDemoApp,
  seedDemo,
  startDemoApp,
  waitHealthy,
} from '../examples/demo-app/src/index.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const WORKER_ID = 'demo-app-under-test';

const work = mkdtempSync(join(tmpdir(), 'drkit-demo-app-test-'));
const uploadsDir = join(work, 'uploads');
let postgres: PostgresSandbox;
let redisServer: RedisSandbox;
let databaseUrl: string;
let db: pg.Pool;
let redis: Redis;
let app: RunningDemoApp | undefined;

/** The app database's URL without its password, which then comes from PGPASSWORD. */
function urlWithoutPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.href;
}

beforeAll(async () => {
  [postgres, redisServer] = await Promise.all([startPostgres(), startRedis()]);
  const admin = new pg.Client(postgres.connection());
  await admin.connect();
  await admin.query('CREATE DATABASE demo');
  await admin.end();
  databaseUrl = postgres.url('demo');
  db = new pg.Pool({ connectionString: databaseUrl, max: 3 });
  db.on('error', () => {});
  redis = new Redis(redisServer.url(), { maxRetriesPerRequest: 1, connectTimeout: 1000 });
  redis.on('error', () => {});
});

afterAll(async () => {
  await app?.stop();
  redis?.disconnect();
  await db?.end().catch(() => {});
  await Promise.all([postgres?.stop(), redisServer?.stop()]);
  rmSync(work, { recursive: true, force: true });
});

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one of the app's commands the way a runbook hook does. */
function runTs(file: string, env: Record<string, string>): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function api(path: string, init: RequestInit & { json?: unknown } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  if (!app) throw new Error('the app is not running');
  const { json, ...rest } = init;
  const response = await fetch(`${app.url}${path}`, {
    ...rest,
    ...(json !== undefined
      ? { method: rest.method ?? 'POST', body: JSON.stringify(json), headers: { 'content-type': 'application/json' } }
      : {}),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** A request with the path exactly as given: fetch would normalise "..", which is the point of the test. */
function rawRequest(method: string, path: string, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  if (!app) throw new Error('the app is not running');
  const { port } = app;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `probe` until it returns true; fails with `what` after `timeoutMs`. */
async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return filesUnder(path);
    return entry.isFile() ? [path] : [];
  });
}

async function sessionKeys(): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', 'session:*', 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('demo app', () => {
  it('migrates with the command line hook, once, and says so on one line', async () => {
    const env = { DATABASE_URL: urlWithoutPassword(databaseUrl), PGPASSWORD: postgres.password };
    const first = await runTs(DEMO_APP_MIGRATE, env);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toBe('migrated: 001_users, 002_trades, treasury-halt-audit\n');
    const again = await runTs(DEMO_APP_MIGRATE, env);
    expect(again).toEqual({ code: 0, stdout: 'migrated: nothing to do\n', stderr: '' });
    expect(await migrate(db)).toEqual([]);
    const client = await db.connect();
    try {
      expect(await migrate(client)).toEqual([]);
    } finally {
      client.release();
    }
    const { rows } = await db.query<{ name: string }>(
      `SELECT table_schema || '.' || table_name AS name FROM information_schema.tables
       WHERE table_schema IN ('public', 'drkit_treasury') ORDER BY 1`,
    );
    expect(rows.map((r) => r.name)).toEqual(
      expect.arrayContaining(['drkit_treasury.halt_audit', 'public.demo_migrations', 'public.trades', 'public.users']),
    );

    const failed = await runTs(DEMO_APP_MIGRATE, { DATABASE_URL: postgres.url('no_such_database') });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toBe('');
    expect(failed.stderr).toMatch(/^migrate failed: .*no_such_database.*\n$/);
    expect(failed.stderr).not.toContain(postgres.password);
  });

  it('seeds deterministic data, and /api/status counts what SQL, SCAN and the file system count', async () => {
    expect(await seedDemo({ databaseUrl, redisUrl: redisServer.url(), uploadsDir })).toEqual({
      users: 50,
      sessions: 40,
      files: 30,
      trades: 100,
    });
    for (const dir of ['uploads/2025/10', 'audio/generated', 'profiles']) expect(readdirSync(join(uploadsDir, dir)).length).toBe(10);
    for (const file of filesUnder(uploadsDir)) expect(statSync(file).size).toBeGreaterThanOrEqual(1024);
    for (const file of filesUnder(uploadsDir)) expect(statSync(file).size).toBeLessThanOrEqual(64 * 1024);

    app = await startDemoApp({
      dir: join(work, 'app'),
      port: 0,
      databaseUrl,
      redisUrl: redisServer.url(),
      uploadsDir,
      env: { DEMO_WORKER_ID: WORKER_ID, DEMO_VERSION: '1.2.3' },
    });
    await waitHealthy(app.url, 20_000);
    expect(await api('/health')).toEqual({ status: 200, body: { status: 'ok', checks: { postgres: 'ok', redis: 'ok', uploads: 'ok' } } });
    expect(readFileSync(join(work, 'app', 'demo-app.pid'), 'utf8').trim()).toBe(String(app.pid));

    const { rows } = await db.query<{ users: string; trades: string }>(
      'SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM trades) AS trades',
    );
    const status = await api('/api/status');
    expect(status).toEqual({
      status: 200,
      body: {
        status: 'ok',
        version: '1.2.3',
        users: Number(rows[0]?.users),
        trades: Number(rows[0]?.trades),
        sessions: (await sessionKeys()).length,
        uploads: filesUnder(uploadsDir).length,
        trading: 'allowed',
        haltEpoch: 0,
      },
    });
    expect(status.body).toMatchObject({ users: 50, trades: 100, sessions: 40, uploads: 30 });

    // The same seed gives the same bytes: a restored copy can be compared with a fresh seed.
    const again = join(work, 'uploads-again');
    const admin = new pg.Client(postgres.connection());
    await admin.connect();
    await admin.query('CREATE DATABASE demo_again');
    await admin.end();
    await seedDemo({ databaseUrl: postgres.url('demo_again'), redisUrl: redisServer.url(1), uploadsDir: again });
    const hashes = (root: string) =>
      filesUnder(root)
        .map((f) => [f.slice(root.length), sha256(readFileSync(f))])
        .sort();
    expect(hashes(again)).toEqual(hashes(uploadsDir));
    const copy = new pg.Client({ connectionString: postgres.url('demo_again') });
    await copy.connect();
    const dump = (c: pg.ClientBase | pg.Pool) =>
      c.query(
        'SELECT u.email, u.name, u.created_at, t.symbol, t.side, t.qty, t.price FROM trades t JOIN users u ON u.id = t.user_id ORDER BY t.id',
      );
    expect((await dump(copy)).rows).toEqual((await dump(db)).rows);
    await copy.end();
  });

  it('keeps sessions in Redis with their TTLs', async () => {
    const keys = await sessionKeys();
    expect(keys).toHaveLength(40);
    for (const key of keys) {
      const ttl = await redis.pttl(key);
      // At least 1 h when seeded; the slack is for a slow machine between the seed and here.
      expect(ttl).toBeGreaterThan(3_500_000);
      expect(ttl).toBeLessThanOrEqual(24 * 3_600_000);
      expect(Object.keys(await redis.hgetall(key)).sort()).toEqual(['createdAt', 'userId']);
    }

    const created = await api('/api/sessions', { json: { userId: 7, ttlSeconds: 120 } });
    expect(created.status).toBe(201);
    const token = String(created.body.token);
    expect(token).toMatch(/^[0-9a-f]{32}$/);
    expect(await redis.hget(`session:${token}`, 'userId')).toBe('7');
    expect(await redis.ttl(`session:${token}`)).toBeGreaterThan(100);
    const read = await api(`/api/sessions/${token}`);
    expect(read.status).toBe(200);
    expect(read.body.userId).toBe(7);
    expect(read.body.ttlMs).toBeGreaterThan(100_000);
    expect(read.body.ttlMs).toBeLessThanOrEqual(120_000);

    expect((await api(`/api/sessions/${'0'.repeat(32)}`)).status).toBe(404);
    expect((await api('/api/sessions', { json: { userId: 7, ttlSeconds: 0 } })).status).toBe(400);
    expect((await api('/api/sessions', { json: { userId: 'x', ttlSeconds: 60 } })).status).toBe(400);
  });

  it('creates and reads users, refusing duplicates and bad input', async () => {
    const created = await api('/api/users', { json: { email: 'new.user@demo.example', name: 'New User' } });
    expect(created.status).toBe(201);
    const id = Number(created.body.id);
    const read = await api(`/api/users/${id}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id, email: 'new.user@demo.example', name: 'New User' });
    expect(new Date(String(read.body.createdAt)).getTime()).toBeGreaterThan(0);
    expect((await api('/api/users', { json: { email: 'new.user@demo.example', name: 'Again' } })).status).toBe(409);
    expect((await api('/api/users', { json: { email: 'not an email', name: 'X' } })).status).toBe(400);
    expect((await api('/api/users', { method: 'POST', body: '{"email":' })).status).toBe(400);
    expect((await api('/api/users/999999')).status).toBe(404);
    expect(await api('/api/nothing-here')).toEqual({ status: 404, body: { error: 'not found' } });
  });

  it('stores uploads atomically with their sha256 and refuses paths that leave the uploads directory', async () => {
    const content = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 251));
    const put = await rawRequest('PUT', '/api/uploads/tests/nested/blob%20one.bin', content);
    expect(put.status).toBe(201);
    expect(JSON.parse(put.body.toString())).toEqual({ path: 'tests/nested/blob one.bin', bytes: content.length, sha256: sha256(content) });
    expect(sha256(readFileSync(join(uploadsDir, 'tests/nested/blob one.bin')))).toBe(sha256(content));
    const get = await rawRequest('GET', '/api/uploads/tests/nested/blob%20one.bin');
    expect(get.status).toBe(200);
    expect(sha256(get.body)).toBe(sha256(content));
    // No temp file is left beside it.
    expect(readdirSync(join(uploadsDir, 'tests/nested'))).toEqual(['blob one.bin']);

    const before = filesUnder(work).length;
    for (const path of [
      '/api/uploads/../escaped.bin',
      '/api/uploads/tests/../../escaped.bin',
      '/api/uploads/%2e%2e/escaped.bin',
      '/api/uploads/..%2fescaped.bin',
      '/api/uploads/%2Ftmp%2Fescaped.bin',
      '/api/uploads//tmp/escaped.bin',
      '/api/uploads/a/./b.bin',
      '/api/uploads/bad%zz.bin',
    ]) {
      const refused = await rawRequest('PUT', path, Buffer.from('nope'));
      expect({ path, status: refused.status }).toEqual({ path, status: 400 });
      expect((await rawRequest('GET', path)).status).toBe(400);
    }
    expect(filesUnder(work).length).toBe(before);
    expect(existsSync(join(work, 'escaped.bin'))).toBe(false);

    expect((await rawRequest('GET', '/api/uploads/tests/missing.bin')).status).toBe(404);
    expect((await rawRequest('GET', '/api/uploads/tests/nested')).status).toBe(404);
    expect((await api('/api/status')).body.uploads).toBe(31);
  });

  it('refuses trades with 423 once a halt is engaged, and the halt verifies against the running app', async () => {
    const order = { userId: 1, symbol: 'BTC-USD', side: 'buy', qty: '0.5', price: 65000.25 };
    const placed = await api('/api/trades', { json: order });
    expect(placed.status).toBe(201);
    const { rows } = await db.query('SELECT symbol, side, qty::text, price::text FROM trades WHERE id = $1', [placed.body.id]);
    expect(rows).toEqual([{ symbol: 'BTC-USD', side: 'buy', qty: '0.50000000', price: '65000.25000000' }]);
    expect((await api('/api/trades', { json: { ...order, side: 'hold' } })).status).toBe(400);
    expect((await api('/api/trades', { json: { ...order, userId: 999_999 } })).status).toBe(400);

    const { epoch } = await engageHalt({ redis, db, reason: 'demo-app test', actor: 'alice' });
    const refused = await api('/api/trades', { json: order });
    expect(refused).toEqual({ status: 423, body: { error: 'trading halted', epoch } });
    const verdict = await verifyHalted({ redis, db, timeoutMs: 10_000 });
    expect(verdict.halted).toBe(true);
    const worker = verdict.workers.find((w) => w.id === WORKER_ID);
    expect(worker).toMatchObject({ acknowledged: true, heartbeat: { epoch, halted: true, inFlight: 0, pid: app?.pid } });
    expect((await api('/api/status')).body).toMatchObject({ trading: 'halted', haltEpoch: epoch });

    await releaseHalt({ redis, db, actor: 'alice', approver: 'bob', reason: 'drill over' });
    await until('trades are taken again', async () => (await api('/api/trades', { json: order })).status === 201);
    expect((await api('/api/status')).body).toMatchObject({ trading: 'allowed', haltEpoch: epoch + 1 });
  });

  it('answers 503 while Redis is down, without dying, and is healthy again once it is back', async () => {
    const running = app;
    if (!running) throw new Error('the app is not running');
    await redisServer.halt();
    try {
      const started = Date.now();
      const health = await api('/health');
      // Each check has a 2 s deadline; the rest is slack for a busy machine.
      expect(Date.now() - started).toBeLessThan(4000);
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ status: 'unhealthy', checks: { postgres: 'ok', uploads: 'ok' } });
      expect((health.body.checks as Record<string, string>).redis).not.toBe('ok');
      const status = await api('/api/status');
      expect(status.status).toBe(503);
      expect(status.body.status).toBe('unavailable');
      expect((await api('/api/sessions', { json: { userId: 1, ttlSeconds: 60 } })).status).toBe(503);
      // Fail-closed: with the halt state unknown, no trade goes through.
      expect((await api('/api/trades', { json: { userId: 1, symbol: 'ETH-USD', side: 'sell', qty: 1, price: 1 } })).status).toBe(503);
      expect((await api('/api/users/1')).status).toBe(200);
      expect(isPidAlive(running.pid)).toBe(true);
    } finally {
      await redisServer.start();
    }
    await waitHealthy(running.url, 15_000);
    expect(isPidAlive(running.pid)).toBe(true);
    await until(
      'trades are taken again',
      async () => (await api('/api/trades', { json: { userId: 1, symbol: 'ETH-USD', side: 'sell', qty: 1, price: 1 } })).status === 201,
    );
    await running.stop();
    expect(isPidAlive(running.pid)).toBe(false);
    expect(existsSync(join(work, 'app', 'demo-app.pid'))).toBe(false);
    app = undefined;
  });

  it('runs as a command service of a drkit config: start, healthy, logs, stop', async () => {
    const dir = join(work, 'service dir');
    const port = await getFreePort();
    const config = demoAppService({ dir, port, databaseUrl, redisUrl: redisServer.url(), uploadsDir, env: { DEMO_VERSION: '2.0.0' } });
    expect(config).toMatchObject({ type: 'command', pidFile: join(dir, 'demo-app.pid'), cwd: REPO });
    expect(config.start).toContain(DEMO_APP_SERVER);
    expect(config.start).not.toContain(postgres.password);
    const controller = createCommandController('app', config, { shell: createShell(), log: silentLogger, pollIntervalMs: 50 });
    expect(await controller.status()).toMatchObject({ state: 'stopped' });
    await controller.start();
    const pid = Number(readFileSync(config.pidFile, 'utf8'));
    try {
      expect(await controller.status()).toMatchObject({ state: 'running' });
      await waitHealthy(`http://127.0.0.1:${port}`, 15_000);
      const status = await fetch(`http://127.0.0.1:${port}/api/status`);
      expect(await status.json()).toMatchObject({ status: 'ok', version: '2.0.0' });
      expect(await controller.logs?.({ lines: 5 })).toContain(`"listening":true,"port":${port},"pid":${pid}`);

      await controller.stop();
      expect(isPidAlive(pid)).toBe(false);
      expect(existsSync(config.pidFile)).toBe(false);
      expect(await controller.status()).toMatchObject({ state: 'stopped' });
    } finally {
      if (isPidAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
