import { type ChildProcess, spawn } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type PostgresSandbox, type RedisSandbox, startPostgres, startRedis } from '@drkit/sandbox';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createHaltGuard,
  engageHalt,
  type HaltGuard,
  haltKeys,
  haltStatus,
  isHaltError,
  listAudit,
  migrateAudit,
  releaseHalt,
  verifyHalted,
} from '../src/index.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const WORKER = fileURLToPath(new URL('./fixtures/worker.ts', import.meta.url));

let redisServer: RedisSandbox;
let postgres: PostgresSandbox;
let db: pg.Pool;
let redis: Redis;
const children = new Set<ChildProcess>();
const clients: Redis[] = [];
const guards: HaltGuard[] = [];
let prefixCounter = 0;
let prefix = '';

beforeAll(async () => {
  [redisServer, postgres] = await Promise.all([startRedis(), startPostgres()]);
  db = new pg.Pool(postgres.connection());
  // The server going away at teardown reaches idle clients as an error event; it is expected then.
  db.on('error', () => {});
  redis = client();
  await migrateAudit(db);
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(guards.map((g) => g.close()));
  for (const c of clients) c.disconnect();
  await db?.end();
  await Promise.all([redisServer?.stop(), postgres?.stop()]);
});

beforeEach(() => {
  // Each test gets its own keys, so halts of one test never leak into another.
  prefix = `t${++prefixCounter}:`;
});

function client(url = redisServer.url()): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 1000 });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

async function guard(options: { workerId?: string; redis?: Redis } = {}): Promise<HaltGuard> {
  const g = await createHaltGuard({
    redis: options.redis ?? redis,
    prefix,
    heartbeatMs: 100,
    ...(options.workerId ? { workerId: options.workerId } : {}),
  });
  guards.push(g);
  return g;
}

const deps = () => ({ redis, db, prefix });

interface Line {
  id: string;
  at: number;
  event: string;
  code?: string;
  epoch?: number;
}

/** Starts a worker process; its JSON lines collect in `lines`. */
function startWorker(id: string, redisUrl: string): { child: ChildProcess; lines: Line[]; ready: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
    cwd: REPO,
    env: { ...process.env, WORKER_ID: id, REDIS_URL: redisUrl, WORKER_PREFIX: prefix },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const lines: Line[] = [];
  let buffer = '';
  let resolveReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    resolveReady = resolve;
  });
  child.stdout?.on('data', (d: Buffer) => {
    buffer += d;
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      const line = JSON.parse(buffer.slice(0, nl)) as Line;
      lines.push(line);
      if (line.event === 'ready') resolveReady();
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf('\n');
    }
  });
  return { child, lines, ready };
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

/** A TCP proxy to Redis that can be cut, to take one worker's connection away. */
async function proxy(target: number): Promise<{ url: string; cut: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = connect(target, '127.0.0.1');
    sockets.add(inbound).add(outbound);
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    cut: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('engage', () => {
  it('a halt stops 3 trading worker processes within 1 s, each refusing every new order', async () => {
    const workers = ['w1', 'w2', 'w3'].map((id) => startWorker(id, redisServer.url()));
    await Promise.all(workers.map((w) => w.ready));
    // They are trading.
    expect(await until(() => workers.every((w) => w.lines.some((l) => l.event === 'order')), 5000)).toBe(true);

    const engagedAt = Date.now();
    const result = await engageHalt({ ...deps(), reason: 'exchange compromised', actor: 'alice' });
    expect(result.created).toBe(true);

    expect(await until(() => workers.every((w) => w.lines.some((l) => l.event === 'refused' && l.at >= engagedAt)), 3000)).toBe(true);
    for (const w of workers) {
      const firstRefusal = w.lines.find((l) => l.event === 'refused' && l.at >= engagedAt) as Line;
      expect(firstRefusal.code).toBe('HALT_ACTIVE');
      expect(firstRefusal.at - engagedAt).toBeLessThan(1000);
      // Nothing after the first refusal went through.
      expect(w.lines.filter((l) => l.event === 'order' && l.at > firstRefusal.at)).toEqual([]);
    }
    // Every worker has acknowledged the epoch.
    const verified = await verifyHalted({ ...deps(), timeoutMs: 3000 });
    expect(verified.halted).toBe(true);
    expect(verified.workers.map((w) => w.id)).toEqual(['w1', 'w2', 'w3']);
    expect(verified.epoch).toBe(result.epoch);

    for (const w of workers) w.child.kill('SIGTERM');
    expect(await until(() => children.size === 0, 5000)).toBe(true);
    // Stopped workers unregister themselves.
    expect(await redis.smembers(haltKeys(prefix).workers)).toEqual([]);
  });

  it('engaging twice keeps one halt (one epoch) and records both requests', async () => {
    const first = await engageHalt({ ...deps(), reason: 'first', actor: 'alice' });
    const second = await engageHalt({ ...deps(), reason: 'second', actor: 'bob', scope: 'exchange:x' });
    expect(second.epoch).toBe(first.epoch);
    expect(second.created).toBe(false);
    const state = await haltStatus(deps());
    expect(state).toMatchObject({ halted: true, epoch: first.epoch, reason: 'first', actor: 'alice' });
    const audit = (await listAudit(db)).filter((e) => e.id >= first.auditId - 1);
    const requested = audit.filter((e) => e.action === 'engage-requested').map((e) => [e.actor, e.reason]);
    expect(requested).toEqual(
      expect.arrayContaining([
        ['alice', 'first'],
        ['bob', 'second'],
      ]),
    );
  });

  it('with Redis down, the intent is recorded in PostgreSQL and the halt says plainly it is not in force', async () => {
    const dead = client('redis://127.0.0.1:1');
    const error = await engageHalt({ redis: dead, db, prefix, reason: 'redis is down too', actor: 'carol', redisTimeoutMs: 500 }).catch(
      (e: unknown) => e,
    );
    expect(isHaltError(error, 'HALT_NOT_PROPAGATED')).toBe(true);
    expect((error as Error).message).toMatch(/THE HALT IS NOT IN FORCE.*recorded in the audit log.*Stop trading by other means/);
    const audit = await listAudit(db, { limit: 5 });
    expect(audit.slice(0, 2).map((e) => [e.action, e.actor, e.reason])).toEqual([
      ['engage-not-propagated', 'carol', 'redis is down too'],
      ['engage-requested', 'carol', 'redis is down too'],
    ]);
  });

  it('a reason and an actor are required', async () => {
    const error = await engageHalt({ ...deps(), reason: ' ', actor: 'alice' }).catch((e: unknown) => e);
    expect(isHaltError(error, 'HALT_INVALID_INPUT')).toBe(true);
  });
});

describe('guard', () => {
  it('refuses orders when its Redis connection is lost (fail-closed)', async () => {
    const p = await proxy(redisServer.port);
    const own = client(p.url);
    const g = await guard({ redis: own });
    await expect(g.assertTradingAllowed()).resolves.toMatchObject({ halted: false });
    await p.cut();
    const started = Date.now();
    const error = await g.assertTradingAllowed().catch((e: unknown) => e);
    expect(isHaltError(error, 'HALT_STATE_UNKNOWN')).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a worker process that loses its Redis connection refuses every order until it is back', async () => {
    const p = await proxy(redisServer.port);
    const worker = startWorker('cut-off', p.url);
    await worker.ready;
    expect(await until(() => worker.lines.some((l) => l.event === 'order'), 5000)).toBe(true);
    const cutAt = Date.now();
    await p.cut();
    expect(await until(() => worker.lines.some((l) => l.event === 'refused' && l.at >= cutAt), 3000)).toBe(true);
    const firstRefusal = worker.lines.find((l) => l.event === 'refused' && l.at >= cutAt) as Line;
    expect(firstRefusal.code).toBe('HALT_STATE_UNKNOWN');
    expect(firstRefusal.at - cutAt).toBeLessThan(1000);
    // Keep watching for a while: no order goes through without a connection.
    await new Promise((r) => setTimeout(r, 500));
    expect(worker.lines.filter((l) => l.event === 'order' && l.at > firstRefusal.at)).toEqual([]);
    worker.child.kill('SIGKILL');
  });

  it('rejects an order prepared before a halt, even after the halt is released', async () => {
    const g = await guard();
    const ticket = await g.prepare();
    await engageHalt({ ...deps(), reason: 'stale test', actor: 'alice' });
    await expect(g.trackOrder(ticket, async () => 'sent')).rejects.toMatchObject({ code: 'HALT_ACTIVE' });
    await releaseHalt({ ...deps(), actor: 'alice', approver: 'bob', reason: 'resolved' });
    const error = await g.trackOrder(ticket, async () => 'sent').catch((e: unknown) => e);
    expect(isHaltError(error, 'HALT_STALE_EPOCH')).toBe(true);
    // A fresh ticket goes through.
    await expect(g.trackOrder(await g.prepare(), async () => 'sent')).resolves.toBe('sent');
  });

  it('tells its service about a halt within milliseconds of it being engaged', async () => {
    const g = await guard();
    const heard = new Promise<number>((resolve) => g.once('halt', (s) => resolve(s.epoch)));
    const started = Date.now();
    const { epoch } = await engageHalt({ ...deps(), reason: 'event test', actor: 'alice' });
    expect(await heard).toBe(epoch);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a closed guard stays unregistered, even when it closes in the middle of a heartbeat', async () => {
    // A heartbeat tick that was reading the state when close() began must not register the
    // worker again after close() removed it: verification would then wait for a dead worker.
    const own = client();
    const { workers } = haltKeys(prefix);
    for (let i = 0; i < 40; i++) {
      const g = await createHaltGuard({ redis: own, prefix, workerId: `closing-${i}`, heartbeatMs: 1 });
      await new Promise((resolve) => setTimeout(resolve, i % 4));
      await g.close();
    }
    // Anything still in flight from a tick has landed by now.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await redis.smembers(workers)).toEqual([]);
  });
});

describe('verify', () => {
  it('names the workers that have not acknowledged the current epoch', async () => {
    const g = await guard({ workerId: 'live' });
    const keys = haltKeys(prefix);
    // A worker that saw an older epoch and stopped beating long ago, and one that never beat.
    await redis.sadd(keys.workers, 'stale', 'silent');
    await redis.set(keys.worker('stale'), JSON.stringify({ id: 'stale', epoch: 0, halted: false, inFlight: 0, at: Date.now() }));
    const { epoch } = await engageHalt({ ...deps(), reason: 'verify test', actor: 'alice' });
    const result = await verifyHalted({ ...deps(), timeoutMs: 800 });
    expect(result.halted).toBe(false);
    expect(result.epoch).toBe(epoch);
    expect(result.pending.map((p) => [p.id, p.reason])).toEqual([
      ['silent', expect.stringMatching(/no heartbeat/)],
      ['stale', expect.stringMatching(/has seen epoch 0, not the halt's epoch/)],
    ]);
    expect(result.workers.find((w) => w.id === 'live')?.acknowledged).toBe(true);
    await g.close();
  });
});

describe('release', () => {
  it('is refused for the person who asks for it, and audited', async () => {
    await engageHalt({ ...deps(), reason: 'two-person test', actor: 'alice' });
    const error = await releaseHalt({ ...deps(), actor: 'alice', approver: ' Alice ', reason: 'all clear' }).catch((e: unknown) => e);
    expect(isHaltError(error, 'HALT_TWO_PERSON_RULE')).toBe(true);
    expect((await haltStatus(deps())).halted).toBe(true);
    const [last] = await listAudit(db, { limit: 1 });
    expect(last).toMatchObject({ action: 'release-refused', actor: 'alice', approver: 'Alice', reason: 'all clear' });
    expect(last?.detail).toMatchObject({ code: 'HALT_TWO_PERSON_RULE' });
  });

  it('is refused while a worker reports orders in flight, and allowed once they settle', async () => {
    const g = await guard({ workerId: 'busy' });
    let finish!: () => void;
    const order = g.trackOrder(await g.prepare(), () => new Promise<void>((resolve) => (finish = resolve)));
    await g.heartbeat();
    await engageHalt({ ...deps(), reason: 'in-flight test', actor: 'alice' });
    await g.heartbeat();
    const error = await releaseHalt({ ...deps(), actor: 'alice', approver: 'bob', reason: 'go' }).catch((e: unknown) => e);
    expect(isHaltError(error, 'HALT_ORDERS_IN_FLIGHT')).toBe(true);
    expect((error as Error).message).toMatch(/busy \(1\)/);
    finish();
    await order;
    await g.heartbeat();
    const released = await releaseHalt({ ...deps(), actor: 'alice', approver: 'bob', reason: 'go' });
    const state = await haltStatus(deps());
    expect(state.halted).toBe(false);
    expect(state.epoch).toBe(released.epoch);
    await g.close();
  });

  it('the audit log holds every action with actor, reason and time, newest first', async () => {
    const before = new Date(Date.now() - 1000);
    await engageHalt({ ...deps(), reason: 'audit test', actor: 'dave' });
    await releaseHalt({ ...deps(), actor: 'dave', approver: 'erin', reason: 'audit done' });
    const events = (await listAudit(db, { limit: 4 })).map((e) => ({
      action: e.action,
      actor: e.actor,
      approver: e.approver,
      reason: e.reason,
      at: e.at,
    }));
    expect(events.map((e) => [e.action, e.actor, e.approver, e.reason])).toEqual([
      ['released', 'dave', 'erin', 'audit done'],
      ['release-requested', 'dave', 'erin', 'audit done'],
      ['engaged', 'dave', null, 'audit test'],
      ['engage-requested', 'dave', null, 'audit test'],
    ]);
    for (const e of events) expect(e.at.getTime()).toBeGreaterThan(before.getTime());
  });
});

describe('audit schema', () => {
  it('migrates idempotently from several processes at once, and is append-only', async () => {
    const results = await Promise.all([migrateAudit(db), migrateAudit(db), migrateAudit(db)]);
    expect(results.map((r) => r.applied)).toEqual([0, 0, 0]);
    await expect(db.query('UPDATE drkit_treasury.halt_audit SET actor = $1', ['mallory'])).rejects.toThrow(/append-only/);
    await expect(db.query('DELETE FROM drkit_treasury.halt_audit')).rejects.toThrow(/append-only/);
  });
});
