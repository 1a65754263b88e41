import { createServer } from 'node:net';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pgTarget } from '../src/connection.js';
import { isPgBackupError } from '../src/errors.js';
import { checkPostgresConnections } from '../src/health.js';

let postgres: PostgresSandbox;
let admin: pg.Client;
// Clients a test opens; closed after each test so connection counts do not leak between tests.
let extra: pg.Client[] = [];

beforeAll(async () => {
  postgres = await startPostgres({ settings: { max_connections: 20 } });
  admin = await client();
  extra = [];
  await admin.query('CREATE TABLE t (id int)');
  await admin.query("CREATE ROLE watcher LOGIN PASSWORD 'watcher-pw'");
  await admin.query("CREATE ROLE capped LOGIN PASSWORD 'capped-pw' CONNECTION LIMIT 0");
});

afterEach(async () => {
  const open = extra;
  extra = [];
  await Promise.all(open.map((c) => c.end().catch(() => {})));
});

afterAll(async () => {
  await admin?.end().catch(() => {});
  await postgres?.stop();
});

async function client(url = postgres.url()): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  // The FATAL the server sends when it stops at teardown, or a terminated backend, is expected.
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function extraClient(): Promise<pg.Client> {
  const c = await client();
  extra.push(c);
  return c;
}

async function pidOf(c: pg.Client): Promise<number> {
  const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]?.pid as number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('checkPostgresConnections on a live server', () => {
  it('reports ok on an idle server, with max_connections, the superuser reserve and the usable slots', async () => {
    const report = await checkPostgresConnections(postgres.url());
    expect(report.status).toBe('ok');
    expect(report.ready).toBe(true);
    expect(report.readyInMs).toBeGreaterThanOrEqual(0);
    expect(report.serverVersion).toMatch(/^15\./);
    expect(report.inRecovery).toBe(false);
    expect(report.target).toBe(`postgres://${postgres.user}@127.0.0.1:${postgres.port}/postgres`);
    expect(report.target).not.toContain(postgres.password);
    // The admin client and the check's own connection.
    expect(report.connections).toMatchObject({ used: 2, max: 20, reservedForSuperuser: 3, usable: 17 });
    expect(report.connections?.fraction).toBeCloseTo(2 / 17);
    expect(report.connections?.byState).toEqual({ active: 1, idle: 1 });
    expect(report.connections?.byDatabase).toEqual({ postgres: 2 });
    expect(report.longRunning).toEqual([]);
    expect(report.blocked).toEqual([]);
    expect(report.findings).toEqual([]);
    expect(report.error).toBeUndefined();
  });

  it('accepts a parsed target as well as a URL', async () => {
    const report = await checkPostgresConnections(pgTarget(postgres.url()));
    expect(report.status).toBe('ok');
    expect(report.connections?.used).toBe(2);
  });

  it('turns warning, then critical, as real connections fill the usable slots', async () => {
    // 2 in use + 12 = 14 of 17 (82%): at or above warnAt 0.8, below criticalAt 0.95.
    for (let i = 0; i < 12; i++) await extraClient();
    const warning = await checkPostgresConnections(postgres.url());
    expect(warning.connections?.used).toBe(14);
    expect(warning.connections?.byState).toEqual({ active: 1, idle: 13 });
    expect(warning.status).toBe('warning');
    expect(warning.findings).toHaveLength(1);
    expect(warning.findings[0]).toMatch(
      /^14 of 17 usable connections in use \(82%, warning; 13 idle, 1 active\): most are idle: .*connection leak/,
    );

    // The thresholds are the caller's: the same load is fine under a higher warnAt, critical under a lower criticalAt.
    const relaxed = await checkPostgresConnections(postgres.url(), { warnAt: 0.9 });
    expect(relaxed.status).toBe('ok');
    expect(relaxed.findings).toEqual([]);
    const strict = await checkPostgresConnections(postgres.url(), { warnAt: 0.5, criticalAt: 0.8 });
    expect(strict.status).toBe('critical');
    expect(strict.findings[0]).toMatch(/^14 of 17 usable connections in use \(82%, critical/);

    // 17 of 17 (100%): critical.
    for (let i = 0; i < 3; i++) await extraClient();
    const critical = await checkPostgresConnections(postgres.url());
    expect(critical.connections?.used).toBe(17);
    expect(critical.connections?.fraction).toBe(1);
    expect(critical.status).toBe('critical');
    expect(critical.findings[0]).toMatch(/^17 of 17 usable connections in use \(100%, critical;.*raise max_connections/);
  });

  it('counts the connections of every database, not only the one it connects to', async () => {
    await admin.query('CREATE DATABASE other');
    try {
      const o = await client(postgres.url('other'));
      extra.push(o);
      const report = await checkPostgresConnections(postgres.url());
      expect(report.connections?.used).toBe(3);
      expect(report.connections?.byDatabase).toEqual({ postgres: 2, other: 1 });
    } finally {
      await Promise.all(extra.splice(0).map((c) => c.end().catch(() => {})));
      await admin.query('DROP DATABASE other');
    }
  });

  it('lists a long-running query with its pid, text and duration, and forgets it once cancelled', async () => {
    const sleeper = await extraClient();
    const pid = await pidOf(sleeper);
    const text = `SELECT\n    pg_sleep(5),\n\t'${'x'.repeat(300)}'`;
    const running = sleeper.query(text).then(
      () => 'finished',
      (error: { code?: string }) => error.code,
    );
    await sleep(600);

    const report = await checkPostgresConnections(postgres.url(), { longRunningMs: 300 });
    expect(report.status).toBe('warning');
    expect(report.longRunning).toHaveLength(1);
    const [q] = report.longRunning;
    expect(q).toMatchObject({ pid, database: 'postgres', user: postgres.user, state: 'active', waitEvent: 'Timeout:PgSleep' });
    expect(q?.query.startsWith(`SELECT pg_sleep(5), 'xxx`)).toBe(true);
    expect(q?.query).toHaveLength(200);
    expect(q?.durationMs).toBeGreaterThanOrEqual(500);
    expect(q?.durationMs).toBeLessThan(5000);
    expect(report.blocked).toEqual([]);
    expect(report.findings).toHaveLength(1);
    expect(report.findings[0]).toContain(`pid ${pid} (${postgres.user}@postgres, active) for`);
    expect(report.findings[0]).toContain(`SELECT pg_cancel_backend(${pid})`);

    // With the default threshold of a minute it is not long-running yet.
    const calm = await checkPostgresConnections(postgres.url());
    expect(calm.longRunning).toEqual([]);
    expect(calm.status).toBe('ok');

    await admin.query('SELECT pg_cancel_backend($1)', [pid]);
    expect(await running).toBe('57014');
    const after = await checkPostgresConnections(postgres.url(), { longRunningMs: 300 });
    expect(after.longRunning).toEqual([]);
    expect(after.status).toBe('ok');
  });

  it('masks a password literal in a reported query', async () => {
    const sleeper = await extraClient();
    const pid = await pidOf(sleeper);
    const running = sleeper.query(`SELECT pg_sleep(5) /* ALTER ROLE app PASSWORD 'hunter2' */`).catch(() => {});
    await sleep(400);
    const report = await checkPostgresConnections(postgres.url(), { longRunningMs: 200 });
    expect(report.longRunning[0]?.query).toBe(`SELECT pg_sleep(5) /* ALTER ROLE app PASSWORD '***' */`);
    expect(JSON.stringify(report)).not.toContain('hunter2');
    expect(report.longRunning[0]?.pid).toBe(pid);
    await admin.query('SELECT pg_cancel_backend($1)', [pid]);
    await running;
  });

  it('lists a query blocked by a lock with the pid holding it, and turns critical once it has waited too long', async () => {
    const holder = await extraClient();
    const waiter = await extraClient();
    const holderPid = await pidOf(holder);
    const waiterPid = await pidOf(waiter);
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
    const waiting = waiter.query('SELECT * FROM t');
    await waitFor(async () => {
      const { rows } = await admin.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [waiterPid]);
      return rows.length === 1;
    }, 'the waiter to wait for the lock');

    const fresh = await checkPostgresConnections(postgres.url());
    expect(fresh.blocked).toHaveLength(1);
    expect(fresh.blocked[0]).toMatchObject({
      pid: waiterPid,
      user: postgres.user,
      database: 'postgres',
      query: 'SELECT * FROM t',
      blockedBy: [holderPid],
    });
    expect(fresh.blocked[0]?.durationMs).toBeLessThan(60_000);
    // Blocked, but not for long yet.
    expect(fresh.status).toBe('warning');
    expect(fresh.findings).toHaveLength(1);
    expect(fresh.findings[0]).toMatch(new RegExp(`^1 query waiting for a lock .* behind pid ${holderPid} \\(.*idle in transaction`));
    expect(fresh.findings[0]).toContain(`SELECT pg_terminate_backend(${holderPid})`);

    await sleep(400);
    const stale = await checkPostgresConnections(postgres.url(), { longRunningMs: 300 });
    expect(stale.status).toBe('critical');
    expect(stale.blocked[0]?.pid).toBe(waiterPid);
    expect(stale.blocked[0]?.durationMs).toBeGreaterThan(300);
    // Both sides run longer than 300 ms: the waiter, and the holder idling in its transaction.
    expect(stale.longRunning.map((q) => q.pid).sort()).toEqual([holderPid, waiterPid].sort());
    expect(stale.longRunning.find((q) => q.pid === holderPid)).toMatchObject({
      state: 'idle in transaction',
      query: 'LOCK TABLE t IN ACCESS EXCLUSIVE MODE',
    });
    expect(stale.longRunning.find((q) => q.pid === waiterPid)?.waitEvent).toBe('Lock:relation');
    expect(stale.findings.some((f) => f.includes(`SELECT pg_terminate_backend(${holderPid})`) && f.includes('transaction open'))).toBe(
      true,
    );

    await holder.query('ROLLBACK');
    await waiting;
    const cleared = await checkPostgresConnections(postgres.url(), { longRunningMs: 300 });
    expect(cleared.blocked).toEqual([]);
  });

  it('tells a role without pg_monitor that other sessions are hidden from it', async () => {
    const url = postgres
      .url()
      .replace(`${encodeURIComponent(postgres.user)}:${encodeURIComponent(postgres.password)}@`, 'watcher:watcher-pw@');
    const report = await checkPostgresConnections(url);
    expect(report.status).toBe('ok');
    expect(report.connections?.used).toBe(2);
    // The admin session's type and state are hidden from watcher, yet it is counted.
    expect(report.connections?.byState).toEqual({ active: 1, unknown: 1 });
    expect(report.findings).toEqual([
      expect.stringMatching(/^1 session belongs to other roles, which hides its state and query .*pg_monitor$/),
    ]);
  });
});

describe('checkPostgresConnections when the server cannot be used', () => {
  it('reports a wrong password as down with PG_AUTH_FAILED, and never shows the password', async () => {
    const wrong = 'Wr0ng-s3cret-pw';
    const url = postgres.url().replace(`:${encodeURIComponent(postgres.password)}@`, `:${wrong}@`);
    const report = await checkPostgresConnections(url);
    expect(report.status).toBe('down');
    expect(report.ready).toBe(false);
    expect(report.readyInMs).toBeUndefined();
    expect(report.connections).toBeUndefined();
    expect(report.error?.code).toBe('PG_AUTH_FAILED');
    expect(report.error?.message).toMatch(/authentication failed/);
    expect(report.findings).toHaveLength(1);
    const json = JSON.stringify(report);
    expect(json).not.toContain(wrong);
    expect(json).not.toContain(postgres.password);
  });

  it('reports a closed port as down with PG_UNREACHABLE', async () => {
    const port = await freePort();
    const report = await checkPostgresConnections(`postgres://${postgres.user}:${postgres.password}@127.0.0.1:${port}/postgres`);
    expect(report).toMatchObject({ status: 'down', ready: false, target: `postgres://${postgres.user}@127.0.0.1:${port}/postgres` });
    expect(report.error?.code).toBe('PG_UNREACHABLE');
    expect(report.error?.message).toContain(`127.0.0.1:${port}`);
    expect(JSON.stringify(report)).not.toContain(postgres.password);
  });

  it('reports a missing database as down with PG_DATABASE_MISSING', async () => {
    const report = await checkPostgresConnections(postgres.url('no_such_db'));
    expect(report.status).toBe('down');
    expect(report.error?.code).toBe('PG_DATABASE_MISSING');
    expect(report.error?.message).toContain('"no_such_db"');
    expect(JSON.stringify(report)).not.toContain(postgres.password);
  });

  it('explains a refusal for too many connections instead of asking whether the server runs', async () => {
    const url = postgres
      .url()
      .replace(`${encodeURIComponent(postgres.user)}:${encodeURIComponent(postgres.password)}@`, 'capped:capped-pw@');
    const report = await checkPostgresConnections(url);
    expect(report.status).toBe('down');
    expect(report.error?.code).toBe('PG_UNREACHABLE');
    expect(report.findings).toEqual([
      expect.stringMatching(/^the server refuses new connections \(too many connections for role "capped"\): connect as a superuser/),
    ]);
    expect(JSON.stringify(report)).not.toContain('capped-pw');
  });

  it('reports a server that accepts connections but never answers as down within the timeout', async () => {
    // A TCP listener that never speaks the protocol stands for a hung server.
    const sockets: import('node:net').Socket[] = [];
    const server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    try {
      const started = Date.now();
      const report = await checkPostgresConnections(`postgres://u:secret-pw@127.0.0.1:${address.port}/db`, { connectTimeoutMs: 300 });
      expect(Date.now() - started).toBeLessThan(3000);
      expect(report.status).toBe('down');
      expect(report.error?.code).toBe('PG_UNREACHABLE');
      expect(JSON.stringify(report)).not.toContain('secret-pw');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('checkPostgresConnections options', () => {
  const url = 'postgres://u:p@127.0.0.1:1/db';
  it.each([
    [{ longRunningMs: -1 }, /longRunningMs/],
    [{ longRunningMs: Number.NaN }, /longRunningMs/],
    [{ connectTimeoutMs: -5 }, /connectTimeoutMs/],
    [{ connectTimeoutMs: 0 }, /connectTimeoutMs/],
    [{ warnAt: 1.5 }, /warnAt must be a fraction between 0 and 1/],
    [{ warnAt: -0.1 }, /warnAt/],
    [{ criticalAt: 2 }, /criticalAt must be a fraction/],
    [{ warnAt: 0.9, criticalAt: 0.5 }, /warnAt \(0\.9\) must not be above criticalAt \(0\.5\)/],
    [{ warnAt: 0.97 }, /warnAt \(0\.97\) must not be above criticalAt \(0\.95\)/],
  ])('rejects %o with PG_OPTIONS_INVALID', async (options, message) => {
    const error = await checkPostgresConnections(url, options).catch((e: unknown) => e);
    expect(isPgBackupError(error, 'PG_OPTIONS_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(message);
  });

  it('throws PG_URL_INVALID for something that is not a postgres URL, since that is the caller at fault, not the server', async () => {
    const error = await checkPostgresConnections('mysql://u:p@127.0.0.1/db').catch((e: unknown) => e);
    expect(isPgBackupError(error, 'PG_URL_INVALID')).toBe(true);
  });

  it('accepts the edges of the ranges', async () => {
    const report = await checkPostgresConnections(postgres.url(), { longRunningMs: 0, warnAt: 0, criticalAt: 1 });
    // warnAt 0: any connection at all is a warning.
    expect(report.status).toBe('warning');
    expect(report.findings[0]).toMatch(/^2 of 17 usable connections in use \(12%, warning/);
  });
});
