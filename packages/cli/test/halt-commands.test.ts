import { execFile } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { getFreePort, type PostgresSandbox, type RedisSandbox, startPostgres, startRedis } from '@drkit/sandbox';
import { haltKeys, type WorkerHeartbeat } from '@drkit/treasury-halt';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, main } from '../src/index.js';
import { memoryIo } from './io.js';

interface Result {
  code: number;
  out: string;
  err: string;
}

interface AuditRow {
  id: number;
  at: string;
  action: string;
  actor: string;
  approver: string | null;
  reason: string | null;
  epoch: number | null;
  detail: Record<string, unknown>;
}

interface StatusJson {
  halted: boolean;
  epoch: number;
  reason: string | null;
  actor: string | null;
  scope: string | null;
  since: string | null;
  workers: {
    id: string;
    alive: boolean;
    epoch: number | null;
    halted: boolean | null;
    inFlight: number | null;
    heartbeatAgeMs: number | null;
  }[];
}

let redisServer: RedisSandbox;
let postgres: PostgresSandbox;
let redis: Redis;
let env: NodeJS.ProcessEnv;
let prefix = '';
let counter = 0;
/** Unique names per test: the audit log is shared by every test. */
let tag = '';

const REDIS_SECRET = 'redis-pass-Zx81q';

beforeAll(async () => {
  [redisServer, postgres] = await Promise.all([startRedis(), startPostgres()]);
  redis = new Redis(redisServer.url(), { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  env = { REDIS_URL: redisServer.url(), DATABASE_URL: postgres.url() };
});

afterAll(async () => {
  redis?.disconnect();
  await Promise.all([redisServer?.stop(), postgres?.stop()]);
});

beforeEach(() => {
  counter++;
  prefix = `cli-t${counter}:`;
  tag = `t${counter}-${Date.now().toString(36)}`;
});

async function drkit(argv: string[], extraEnv: NodeJS.ProcessEnv = {}, usePrefix = true): Promise<Result> {
  const io = memoryIo({ ...env, ...extraEnv });
  const args = usePrefix && argv[0] === 'halt' && argv[1] !== 'audit' ? [...argv, '--prefix', prefix] : argv;
  const code = await main(args, io);
  const result = { code, out: io.out(), err: io.err() };
  // The PostgreSQL sandbox's password is in DATABASE_URL: it must never be printed.
  for (const secret of [postgres.password, REDIS_SECRET]) expect(`${result.out}${result.err}`).not.toContain(secret);
  return result;
}

async function status(): Promise<StatusJson> {
  const r = await drkit(['halt', 'status', '--json']);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as StatusJson;
}

async function audit(limit = 200): Promise<AuditRow[]> {
  const r = await drkit(['halt', 'audit', '--json', '--limit', String(limit)]);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as AuditRow[];
}

async function writeHeartbeat(id: string, beat: Partial<WorkerHeartbeat>, ttlMs = 60_000): Promise<void> {
  const keys = haltKeys(prefix);
  const heartbeat: WorkerHeartbeat = { id, epoch: 0, halted: false, inFlight: 0, at: Date.now(), ...beat };
  await redis.set(keys.worker(id), JSON.stringify(heartbeat), 'PX', ttlMs);
  await redis.sadd(keys.workers, id);
}

describe('drkit halt', () => {
  it('engage halts trading: status shows halted, the epoch, who, why and the scope', async () => {
    const before = await status();
    expect(before).toMatchObject({ halted: false, epoch: 0, workers: [] });

    const engage = await drkit(['halt', 'engage', '--reason', `breach ${tag}`, '--actor', `alice-${tag}`, '--scope', 'exchange:binance']);
    expect(engage.code, engage.err).toBe(0);
    expect(engage.out).toBe('halt engaged: epoch 1\n');
    expect(engage.err).toMatch(/drkit halt verify/);

    const state = await status();
    expect(state).toMatchObject({ halted: true, epoch: 1, reason: `breach ${tag}`, actor: `alice-${tag}`, scope: 'exchange:binance' });
    expect(Math.abs(Date.parse(state.since as string) - Date.now())).toBeLessThan(60_000);

    const text = await drkit(['halt', 'status']);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^HALTED \(epoch 1\) since \d{4}-\d\d-\d\dT/);
    expect(text.out).toContain(`reason: breach ${tag}`);
    expect(text.out).toMatch(/workers: none registered/);
  });

  it('engaging twice keeps one halt and epoch; the audit log has both requests', async () => {
    const first = await drkit(['halt', 'engage', '--reason', `first ${tag}`, '--actor', `alice-${tag}`, '--json']);
    expect(first.code, first.err).toBe(0);
    const second = await drkit(['halt', 'engage', '--reason', `second ${tag}`, '--actor', `bob-${tag}`, '--json']);
    expect(second.code, second.err).toBe(0);
    const [a, b] = [JSON.parse(first.out), JSON.parse(second.out)] as { epoch: number; joined: boolean }[];
    expect(a).toMatchObject({ joined: false });
    expect(b).toMatchObject({ joined: true, epoch: a?.epoch });
    const text = await drkit(['halt', 'engage', '--reason', `third ${tag}`, '--actor', `carol-${tag}`]);
    expect(text.out).toBe(`halt already in force: joined it, epoch ${a?.epoch} (your request is recorded)\n`);
    expect((await status()).epoch).toBe(a?.epoch);

    const mine = (await audit()).filter((e) => e.reason?.endsWith(tag));
    const requests = mine.filter((e) => e.action === 'engage-requested');
    expect(requests.map((e) => e.actor)).toEqual([`carol-${tag}`, `bob-${tag}`, `alice-${tag}`]);
    expect(mine.filter((e) => e.action === 'engaged').map((e) => e.detail.created)).toEqual([false, false, true]);
  });

  it('release needs a second person (exit 3, audited); released by another, trading resumes under a new epoch', async () => {
    expect((await drkit(['halt', 'engage', '--reason', `incident ${tag}`, '--actor', `alice-${tag}`])).code).toBe(0);
    const epoch = (await status()).epoch;

    const self = await drkit(['halt', 'release', '--actor', `alice-${tag}`, '--approver', ` ALICE-${tag} `, '--reason', `fixed ${tag}`]);
    expect(self.code).toBe(EXIT.REFUSED);
    expect(self.err).toMatch(/^drkit: error HALT_TWO_PERSON_RULE: .*second person/);
    expect((await status()).halted).toBe(true);
    const refused = (await audit()).find((e) => e.action === 'release-refused' && e.reason === `fixed ${tag}`);
    expect(refused).toMatchObject({ actor: `alice-${tag}`, detail: { code: 'HALT_TWO_PERSON_RULE' } });

    const release = await drkit(['halt', 'release', '--actor', `alice-${tag}`, '--approver', `bob-${tag}`, '--reason', `fixed ${tag}`]);
    expect(release.code, release.err).toBe(0);
    expect(release.out).toMatch(/^halt released: epoch \d+/);
    const after = await status();
    expect(after.halted).toBe(false);
    expect(after.epoch).toBeGreaterThan(epoch);
    const text = await drkit(['halt', 'status']);
    expect(text.out).toMatch(new RegExp(`^not halted \\(epoch ${after.epoch}\\): released at \\d{4}-`));
    expect(text.out).toContain(`by:     alice-${tag} (approved by bob-${tag})`);
    const released = (await audit()).find((e) => e.action === 'released' && e.reason === `fixed ${tag}`);
    expect(released).toMatchObject({ actor: `alice-${tag}`, approver: `bob-${tag}`, epoch: after.epoch });

    const again = await drkit(['halt', 'release', '--actor', `alice-${tag}`, '--approver', `bob-${tag}`, '--reason', `twice ${tag}`]);
    expect(again.code).toBe(EXIT.FAILED);
    expect(again.err).toMatch(/error HALT_NOT_ENGAGED: no halt is engaged/);
  });

  it('release is refused (exit 3) while a worker reports orders in flight', async () => {
    expect((await drkit(['halt', 'engage', '--reason', `incident ${tag}`, '--actor', `alice-${tag}`])).code).toBe(0);
    await writeHeartbeat('mm-1', { epoch: 1, halted: true, inFlight: 2 });
    const release = await drkit(['halt', 'release', '--actor', `alice-${tag}`, '--approver', `bob-${tag}`, '--reason', `early ${tag}`]);
    expect(release.code).toBe(EXIT.REFUSED);
    expect(release.err).toMatch(/error HALT_ORDERS_IN_FLIGHT: .*mm-1 \(2\)/);
    expect((await status()).halted).toBe(true);
  });

  it('verify exits 0 when halted and no worker is registered, 1 when no halt is engaged', async () => {
    const none = await drkit(['halt', 'verify', '--timeout', '0.2']);
    expect(none.code).toBe(EXIT.FAILED);
    expect(none.err).toMatch(/error HALT_NOT_ENGAGED: no halt is engaged/);

    expect((await drkit(['halt', 'engage', '--reason', `incident ${tag}`, '--actor', `alice-${tag}`])).code).toBe(0);
    const verify = await drkit(['halt', 'verify', '--actor', `verifier-${tag}`]);
    expect(verify.code, verify.err).toBe(0);
    expect(verify.err).toMatch(/verified: the halt \(epoch 1\) is in force and acknowledged by 0 worker\(s\)/);
    expect(verify.err).toMatch(/warning: no trading worker is registered/);
    const json = await drkit(['halt', 'verify', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toMatchObject({ halted: true, engaged: true, epoch: 1, workers: [], pending: [] });
    expect((await audit()).find((e) => e.actor === `verifier-${tag}`)).toMatchObject({ action: 'verified', epoch: 1 });
  });

  it('verify fails naming a worker with a stale heartbeat and one whose heartbeat expired; status shows them', async () => {
    expect((await drkit(['halt', 'engage', '--reason', `incident ${tag}`, '--actor', `alice-${tag}`])).code).toBe(0);
    await writeHeartbeat('worker-ok', { epoch: 1, halted: true, inFlight: 0 });
    await writeHeartbeat('worker-stale', { epoch: 0, halted: false, inFlight: 0, at: Date.now() - 30_000 });
    await redis.sadd(haltKeys(prefix).workers, 'worker-gone');

    const verify = await drkit(['halt', 'verify', '--timeout', '0.3']);
    expect(verify.code).toBe(EXIT.FAILED);
    expect(verify.out).toMatch(/^ok {7}worker-ok$/m);
    expect(verify.out).toMatch(/^PENDING {2}worker-stale: has seen epoch 0, not the halt's epoch 1$/m);
    expect(verify.out).toMatch(/^PENDING {2}worker-gone: no heartbeat/m);
    expect(verify.err).toMatch(
      /error HALT_NOT_ACKNOWLEDGED: the halt \(epoch 1\) is not acknowledged after [\d.]+ s by 2 worker\(s\): worker-gone .*worker-stale/,
    );

    const json = await drkit(['halt', 'verify', '--timeout', '0', '--json']);
    expect(json.code).toBe(EXIT.FAILED);
    const verdict = JSON.parse(json.out) as { halted: boolean; pending: { id: string; reason: string }[] };
    expect(verdict.halted).toBe(false);
    expect(verdict.pending.map((p) => p.id)).toEqual(['worker-gone', 'worker-stale']);

    const state = await status();
    expect(state.workers.map((w) => [w.id, w.alive, w.epoch, w.halted, w.inFlight])).toEqual([
      ['worker-gone', false, null, null, null],
      ['worker-ok', true, 1, true, 0],
      ['worker-stale', true, 0, false, 0],
    ]);
    expect(state.workers.find((w) => w.id === 'worker-stale')?.heartbeatAgeMs).toBeGreaterThanOrEqual(30_000);
    const text = await drkit(['halt', 'status']);
    expect(text.out).toMatch(/worker-stale +epoch 0 +trading +in flight 0 +heartbeat 3\d\.\d s ago/);
    expect(text.out).toMatch(/worker-gone +no heartbeat/);
  });

  it('audit lists the events newest first with action, actor, approver, reason and epoch', async () => {
    expect((await drkit(['halt', 'engage', '--reason', `r1 ${tag}`, '--actor', `alice-${tag}`])).code).toBe(0);
    expect((await drkit(['halt', 'release', '--actor', `bob-${tag}`, '--approver', `carol-${tag}`, '--reason', `r2 ${tag}`])).code).toBe(0);
    const events = (await audit()).filter((e) => e.reason?.endsWith(tag));
    expect(events.map((e) => e.action)).toEqual(['released', 'release-requested', 'engaged', 'engage-requested']);
    expect(events[0]).toMatchObject({ actor: `bob-${tag}`, approver: `carol-${tag}`, reason: `r2 ${tag}`, epoch: 2 });
    expect(events[3]).toMatchObject({ actor: `alice-${tag}`, reason: `r1 ${tag}`, approver: null });
    const times = events.map((e) => Date.parse(e.at));
    expect(times).toEqual([...times].sort((x, y) => y - x));
    expect(events.every((e) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(e.at))).toBe(true);

    const limited = await drkit(['halt', 'audit', '--json', '--limit', '1']);
    expect(JSON.parse(limited.out)).toHaveLength(1);
    const table = await drkit(['halt', 'audit', '--limit', '4']);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/^AT +ACTION +EPOCH +ACTOR +APPROVER +REASON\n/);
    expect(table.out).toMatch(new RegExp(`released +2 +bob-${tag} +carol-${tag} +r2 ${tag}`));
    expect((await drkit(['halt', 'audit', '--limit', '0'])).code).toBe(EXIT.USAGE);
  });

  it('engage with Redis down: exit 1, THE HALT IS NOT IN FORCE, the intent audited in PostgreSQL, no password printed', async () => {
    const port = await getFreePort();
    const started = Date.now();
    const engage = await drkit(['halt', 'engage', '--reason', `outage ${tag}`, '--actor', `alice-${tag}`], {
      REDIS_URL: `redis://:${REDIS_SECRET}@127.0.0.1:${port}`,
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(engage.code).toBe(EXIT.FAILED);
    expect(engage.out).toBe('');
    expect(engage.err).toMatch(/ECONNREFUSED/);
    expect(engage.err).toContain(`redis://***@127.0.0.1:${port}`);
    expect(engage.err).toMatch(/^drkit: error HALT_NOT_PROPAGATED: THE HALT IS NOT IN FORCE: .*Stop trading by other means now/m);

    const mine = (await audit()).filter((e) => e.reason === `outage ${tag}`);
    expect(mine.map((e) => e.action)).toEqual(['engage-not-propagated', 'engage-requested']);
    expect(mine.every((e) => e.actor === `alice-${tag}`)).toBe(true);

    // The other commands say plainly that Redis is unreachable.
    const state = await drkit(['halt', 'status', '--redis', `redis://:${REDIS_SECRET}@127.0.0.1:${port}`]);
    expect(state.code).toBe(EXIT.FAILED);
    expect(state.err).toMatch(/error HALT_REDIS_IO: cannot reach Redis at redis:\/\/\*\*\*@127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  it('engage against a Redis that accepts connections but never answers gives up within seconds, not in force', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const started = Date.now();
      const engage = await drkit(['halt', 'engage', '--reason', `silent ${tag}`, '--actor', `alice-${tag}`], {
        REDIS_URL: `redis://127.0.0.1:${port}`,
      });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(engage.code).toBe(EXIT.FAILED);
      expect(engage.err).toMatch(/no answer from Redis within/);
      expect(engage.err).toMatch(/error HALT_NOT_PROPAGATED: THE HALT IS NOT IN FORCE/);
      const mine = (await audit()).filter((e) => e.reason === `silent ${tag}`);
      expect(mine.map((e) => e.action)).toEqual(['engage-not-propagated', 'engage-requested']);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('engage with PostgreSQL down still halts, and says the halt is in force but not audited', async () => {
    const port = await getFreePort();
    const engage = await drkit(['halt', 'engage', '--reason', `pg down ${tag}`, '--actor', `alice-${tag}`], {
      DATABASE_URL: `postgres://drkit:${postgres.password}@127.0.0.1:${port}/postgres`,
    });
    expect(engage.code).toBe(EXIT.FAILED);
    expect(engage.err).toMatch(/error HALT_NOT_AUDITED: the halt IS in force \(epoch 1\)/);
    expect((await status()).halted).toBe(true);
  });

  it('bad command lines: missing connections, missing who/why, bad numbers', async () => {
    const noRedis = await drkit(['halt', 'status'], { REDIS_URL: undefined });
    expect(noRedis.code).toBe(EXIT.USAGE);
    expect(noRedis.err).toBe('drkit: no Redis: pass --redis URL or set REDIS_URL\n');
    const noPg = await drkit(['halt', 'engage', '--reason', 'x', '--actor', 'y'], { DATABASE_URL: '' });
    expect(noPg.code).toBe(EXIT.USAGE);
    expect(noPg.err).toMatch(/--pg URL or set DATABASE_URL/);
    // status needs no PostgreSQL.
    expect((await drkit(['halt', 'status'], { DATABASE_URL: undefined })).code).toBe(0);
    expect((await drkit(['halt', 'engage', '--actor', 'alice'])).err).toMatch(/needs --reason/);
    expect((await drkit(['halt', 'release', '--actor', 'a', '--reason', 'r'])).err).toMatch(/needs --approver/);
    expect((await drkit(['halt', 'verify', '--timeout', 'soon'])).code).toBe(EXIT.USAGE);
    expect((await drkit(['halt', 'status', '--redis', 'http://example.com'])).code).toBe(EXIT.USAGE);
    const help = await drkit(['--help']);
    expect(help.out).toMatch(/halt engage +engage the trading halt/);
    // Nothing above may have halted anything.
    expect((await status()).halted).toBe(false);
  });

  it('the real binary exits on its own after each command (connections are closed)', async () => {
    const exec = promisify(execFile);
    const repo = fileURLToPath(new URL('../../..', import.meta.url));
    const bin = fileURLToPath(new URL('../src/bin.ts', import.meta.url));
    const run = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
      exec(process.execPath, ['--conditions=@drkit/source', '--import', 'tsx', bin, ...args, '--prefix', prefix], {
        cwd: repo,
        env: { ...process.env, ...env, ...extra },
        timeout: 30_000,
      }).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr, killed: false }),
        (e: { code: number; stdout: string; stderr: string; killed: boolean }) => e,
      );
    const engage = await run(['halt', 'engage', '--reason', `bin ${tag}`, '--actor', `alice-${tag}`]);
    expect(engage.killed).toBe(false);
    expect(engage.code, engage.stderr).toBe(0);
    const state = await run(['halt', 'status', '--json']);
    expect(state.code).toBe(0);
    expect(JSON.parse(state.stdout)).toMatchObject({ halted: true, epoch: 1 });
    const port = await getFreePort();
    const down = await run(['halt', 'engage', '--reason', `bin ${tag}`, '--actor', `alice-${tag}`], {
      REDIS_URL: `redis://127.0.0.1:${port}`,
    });
    expect(down.killed).toBe(false);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/THE HALT IS NOT IN FORCE/);
  });
});
