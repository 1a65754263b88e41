// database-connection-issues.ts against a real platform: a real client holds a row lock in an
// open transaction and a second one waits behind it, or the test holds many connections;
// the runbook runs as its own process, and what it did is checked with our own SQL, our own
// clients' fate and the app's pid file and /health.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPidAlive } from '@drkit/runbook';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type TestPlatform } from '../support/platform.ts';

let platform: TestPlatform;
let userId: number;
const opened: pg.Client[] = [];

/** A connection of our own, named so pg_stat_activity shows whose it is; a terminated backend is recorded, not thrown. */
async function client(application: string): Promise<{ client: pg.Client; pid: number; errors: Error[] }> {
  const c = new pg.Client({ ...platform.pg.connection(platform.database), application_name: application });
  const errors: Error[] = [];
  c.on('error', (error) => errors.push(error));
  await c.connect();
  opened.push(c);
  const pid = Number((await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid);
  return { client: c, pid, errors };
}

function appPid(): number {
  return Number(readFileSync(join(platform.dir, 'app', 'demo-app.pid'), 'utf8').trim());
}

async function healthStatus(): Promise<number | string> {
  try {
    return (await fetch(`${platform.app.url}/health`, { signal: AbortSignal.timeout(5000) })).status;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Backends connected under `application`, read independently of the runbook. */
async function backendsOf(application: string): Promise<number[]> {
  return platform.sql(async (c) =>
    (await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid', [application])).rows.map(
      (r) => r.pid,
    ),
  );
}

/**
 * The disaster: a client updates a user in a transaction and goes idle holding the row
 * lock; a second client's update of the same row waits behind it. Resolves once the second
 * one is seen waiting and the blocker's transaction is older than `minAgeMs`.
 */
async function lockChain(newName: string, minAgeMs = 1500) {
  const blocker = await client('e2e-blocker');
  await blocker.client.query('BEGIN');
  await blocker.client.query("UPDATE users SET name = name || '' WHERE id = $1", [userId]);
  const waiter = await client('e2e-blocked');
  const blockedUpdate = waiter.client
    .query('UPDATE users SET name = $2 WHERE id = $1', [userId, newName])
    .then((r) => ({ rowCount: r.rowCount, error: undefined as Error | undefined }))
    .catch((error: Error) => ({ rowCount: null, error }));
  await until('the second update to wait for the lock', () =>
    platform.sql(async (c) => {
      const r = await c.query<{ blocked_by: number[] }>('SELECT pg_blocking_pids($1) AS blocked_by', [waiter.pid]);
      return r.rows[0]?.blocked_by.includes(blocker.pid) ? true : undefined;
    }),
  );
  const startedAt = Date.now();
  await until('the blocker to age', async () => (Date.now() - startedAt >= minAgeMs ? true : undefined));
  return { blocker, waiter, blockedUpdate };
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

/** What a run printed: the plan on stdout, the run's events and logs on stderr. */
const output = (o: { stdout: string; stderr: string }) => `${o.stdout}\n${o.stderr}`;

beforeAll(async () => {
  platform = await startPlatform();
  userId = await platform.sql(async (c) => Number((await c.query<{ id: string }>('SELECT min(id)::text AS id FROM users')).rows[0]?.id));
}, 120_000);

afterEach(async () => {
  // Whatever a test left open: its locks must not leak into the next test.
  await Promise.allSettled(opened.splice(0).map((c) => c.end()));
});

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('database-connection-issues runbook', () => {
  it('--dry-run names the blocker and the session it would end, and changes nothing', async () => {
    const pid = appPid();
    const { blocker, waiter } = await lockChain('dry-run');
    platform.slack.requests.length = 0;
    const outcome = await platform.runbook('database-connection-issues', ['--terminate-blockers', '--older-than', '1s', '--dry-run']);
    expect(outcome.code, output(outcome)).toBe(0);
    expect(output(outcome)).toMatch(new RegExp(`BLOCKER pid ${blocker.pid} \\(.*application "e2e-blocker"`));
    expect(output(outcome)).toMatch(new RegExp(`pid ${waiter.pid} .*e2e-blocked.* waiting`));
    expect(output(outcome)).toMatch(
      new RegExp(`terminate: .*would run \\(DESTRUCTIVE\\)[\\s\\S]*pg_terminate_backend\\(${blocker.pid}\\)`),
    );
    // Nothing was ended or restarted.
    expect(await backendsOf('e2e-blocker')).toEqual([blocker.pid]);
    expect(await backendsOf('e2e-blocked')).toEqual([waiter.pid]);
    expect(blocker.errors).toEqual([]);
    expect(appPid()).toBe(pid);
    expect(platform.slack.requests).toEqual([]);
  }, 180_000);

  it('without --terminate-blockers reports the blocker, ends nothing and fails verification (exit 1)', async () => {
    const pid = appPid();
    const { blocker, waiter, blockedUpdate } = await lockChain('released-by-owner');
    const outcome = await platform.runbook('database-connection-issues', ['--older-than', '1s', '--yes']);
    expect(outcome.code, output(outcome)).toBe(1);
    expect(output(outcome)).toMatch(new RegExp(`BLOCKER pid ${blocker.pid} `));
    expect(output(outcome)).toMatch(new RegExp(`pid ${blocker.pid} blocks 1 waiting query: not terminated \\(pass --terminate-blockers`));
    expect(output(outcome)).toMatch(/1 query still waits for a lock .*: end it with --terminate-blockers/);
    // Independent: the blocker still runs its transaction, the update still waits, the app was not restarted.
    expect(await backendsOf('e2e-blocker')).toEqual([blocker.pid]);
    expect((await blocker.client.query<{ n: number }>('SELECT 1 AS n')).rows[0]?.n).toBe(1);
    expect(await Promise.race([blockedUpdate.then(() => 'done'), sleep(200, 'waiting')])).toBe('waiting');
    expect(appPid()).toBe(pid);
    // Released by its owner, the waiting update goes through.
    await blocker.client.query('ROLLBACK');
    expect((await blockedUpdate).rowCount).toBe(1);
    expect(await backendsOf('e2e-blocked')).toEqual([waiter.pid]);
  }, 180_000);

  it('--terminate-blockers ends the blocker, the waiting update completes, the app is restarted and healthy', async () => {
    const pid = appPid();
    const { blocker, blockedUpdate } = await lockChain('unblocked-by-runbook');
    platform.slack.requests.length = 0;
    const runsBefore = runDirs();
    const outcome = await platform.runbook('database-connection-issues', ['--terminate-blockers', '--older-than', '1s', '--yes']);
    expect(outcome.code, output(outcome)).toBe(0);

    // The blocker's backend is gone and its client was told so.
    expect(await backendsOf('e2e-blocker')).toEqual([]);
    await until('the blocker to see its connection end', async () => (blocker.errors.length > 0 ? true : undefined));
    expect(blocker.errors[0]?.message).toMatch(/terminating connection due to administrator command/);
    // The update that waited behind it went through: its row now says so.
    const update = await blockedUpdate;
    expect(update.error).toBeUndefined();
    expect(update.rowCount).toBe(1);
    const name = await platform.sql(
      async (c) => (await c.query<{ name: string }>('SELECT name FROM users WHERE id = $1', [userId])).rows[0]?.name,
    );
    expect(name).toBe('unblocked-by-runbook');
    // The app's pool was reset: a new process answers /health.
    expect(appPid()).not.toBe(pid);
    expect(isPidAlive(appPid())).toBe(true);
    expect(await healthStatus()).toBe(200);

    const texts = platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
    expect(texts[0]).toMatch(/JARVIS INCIDENT - Sev2/);
    expect(texts.at(-1)).toMatch(/JARVIS INCIDENT RESOLVED/);
    const run = runDirs().find((d) => !runsBefore.includes(d));
    expect(run).toBeDefined();
    const report = readFileSync(join(platform.runsDir, run as string, 'report.md'), 'utf8');
    expect(report).toMatch(/\| `terminate` \| remediation \| succeeded/);
    expect(report).toMatch(/\| `restart-app` \| remediation \| succeeded/);
  }, 180_000);

  it('stops at readiness (exit 1) when the database does not answer, and restarts nothing', async () => {
    const pid = appPid();
    const config = platform.writeConfig((sandbox) => {
      const vars = sandbox.vars as { postgres: { url: string } };
      // Port 9 (discard) is closed here: the database "does not answer".
      vars.postgres.url = vars.postgres.url.replace(/:\d+\//, ':9/');
    }, 'unreachable.config.json');
    const outcome = await platform.runbook('database-connection-issues', ['--terminate-blockers', '--yes'], { config });
    expect(outcome.code, output(outcome)).toBe(1);
    expect(output(outcome)).toMatch(/pg_isready: exit 2, no response/);
    expect(output(outcome)).toMatch(/readiness: RUNBOOK_HEALTH_FAILED: PostgreSQL at postgres:\/\/.*:9\/app is not ready/);
    expect(output(outcome)).not.toMatch(/▶ terminate/);
    expect(appPid()).toBe(pid);
    expect(await healthStatus()).toBe(200);
  }, 180_000);

  it('shows connection pressure by application with 20 idle connections, and ends only the idle-in-transaction ones', async () => {
    const idle = await Promise.all(Array.from({ length: 20 }, () => client('e2e-idle-pool')));
    const idleTx = await Promise.all(Array.from({ length: 3 }, () => client('e2e-idle-tx')));
    for (const t of idleTx) await t.client.query('BEGIN; SELECT 1');
    const startedAt = Date.now();
    const { max, reserved } = await platform.sql(async (c) => {
      const r = await c.query<{ max: string; reserved: string }>(
        "SELECT current_setting('max_connections') AS max, current_setting('superuser_reserved_connections') AS reserved",
      );
      return { max: Number(r.rows[0]?.max), reserved: Number(r.rows[0]?.reserved) };
    });
    await until('the idle transactions to age', async () => (Date.now() - startedAt >= 1500 ? true : undefined));

    const outcome = await platform.runbook('database-connection-issues', [
      '--terminate-idle-in-transaction',
      '--older-than',
      '1s',
      '--yes',
    ]);
    expect(outcome.code, output(outcome)).toBe(0);
    const text = output(outcome);
    // The pressure numbers: against the server's own settings, read here independently.
    const numbers =
      /connections: (\d+) in use of (\d+) usable \((\d+)%\); max_connections (\d+), superuser_reserved_connections (\d+)/.exec(text);
    expect(numbers, text).not.toBeNull();
    const [, used, usable, percent, shownMax, shownReserved] = (numbers as RegExpExecArray).map(Number);
    expect(shownMax).toBe(max);
    expect(shownReserved).toBe(reserved);
    expect(usable).toBe(max - reserved);
    expect(used).toBeGreaterThanOrEqual(23);
    expect(percent).toBe(Math.round((100 * (used as number)) / (usable as number)));
    expect(text).toMatch(/by application: .*e2e-idle-pool 20/);
    expect(text).toMatch(/by application: .*e2e-idle-tx 3/);
    expect(text).toMatch(/by state: .*idle in transaction 3/);
    expect(text).toMatch(/3 session\(s\) idle in transaction for more than 1s/);

    // Independent: the 20 idle connections are untouched, the 3 idle transactions were ended.
    expect(await backendsOf('e2e-idle-pool')).toEqual(idle.map((i) => i.pid).sort((a, b) => a - b));
    expect(await backendsOf('e2e-idle-tx')).toEqual([]);
    for (const i of idle) expect(i.errors).toEqual([]);
    await until('the idle transactions to see their connections end', async () =>
      idleTx.every((t) => t.errors.length > 0) ? true : undefined,
    );
    expect(await healthStatus()).toBe(200);
  }, 180_000);
});
