// treasury-emergency.ts against a real platform: the demo app heartbeats as a trading worker
// and refuses trades with 423 while halted. The runbook runs as its own process; the halt is
// checked through the app's API, through treasury-halt's own reads of Redis and through the
// audit table, never through the runbook's output.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { haltKeys, haltStatus, listWorkers, releaseHalt } from '@drkit/treasury-halt';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type TestPlatform } from '../support/platform.ts';

let platform: TestPlatform;

/** Places one trade through the app's API and answers the HTTP status. */
async function trade(): Promise<number> {
  const response = await fetch(`${platform.app.url}/api/trades`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId: 1, symbol: 'BTC-USD', side: 'buy', qty: '0.01', price: '67000' }),
  });
  await response.arrayBuffer();
  return response.status;
}

/** Polls `probe` until it answers `want` or the deadline passes; answers the last value. */
async function until<T>(probe: () => Promise<T>, want: T, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last = await probe();
  while (last !== want && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    last = await probe();
  }
  return last;
}

async function withRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(platform.redis.url, { maxRetriesPerRequest: 1 });
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

interface AuditRow {
  id: string;
  action: string;
  actor: string;
  reason: string | null;
  epoch: string | null;
  detail: Record<string, unknown>;
}

async function auditRows(): Promise<AuditRow[]> {
  return platform.sql(async (client) => {
    const exists = await client.query<{ ok: boolean }>("SELECT to_regclass('drkit_treasury.halt_audit') IS NOT NULL AS ok");
    if (!exists.rows[0]?.ok) return [];
    return (
      await client.query<AuditRow>('SELECT id::text, action, actor, reason, epoch::text, detail FROM drkit_treasury.halt_audit ORDER BY id')
    ).rows;
  });
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

function slackTexts(): string[] {
  return platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
}

beforeAll(async () => {
  platform = await startPlatform();
  // The latest backup is the floor of the trades count the wallet check compares with.
  await platform.backupAll();
  // The app registers its trading worker once its guard is up.
  expect(await until(async () => (await withRedis((redis) => listWorkers({ redis }))).length > 0, true)).toBe(true);
}, 180_000);

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('treasury-emergency runbook', () => {
  it('--dry-run checks the wallets and changes nothing: trading stays allowed, nothing is written', async () => {
    expect(await trade()).toBe(201);
    const auditBefore = await auditRows();
    const report = join(platform.dir, 'dry-run-report.md');
    const outcome = await platform.runbook('treasury-emergency', ['--reason', 'DR drill', '--dry-run', '--report', report]);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    // The wallet checks ran for real (they are read-only) ...
    expect(outcome.stdout + outcome.stderr).toMatch(/trades accounts: ok/);
    // ... and nothing changed.
    expect(await trade()).toBe(201);
    expect((await withRedis((redis) => haltStatus({ redis }))).halted).toBe(false);
    expect(await auditRows()).toEqual(auditBefore);
    expect(existsSync(report)).toBe(false);
    expect(platform.slack.requests).toEqual([]);
  }, 180_000);

  it('halts trading, verifies every worker acknowledged, audits the last 100 trades and writes the report; the halt stays engaged', async () => {
    expect(await trade()).toBe(201);
    const workers = (await withRedis((redis) => listWorkers({ redis }))).map((w) => w.id);
    const newest = await platform.sql(
      async (client) => (await client.query<{ id: string }>('SELECT id::text AS id FROM trades ORDER BY trades.id DESC LIMIT 101')).rows,
    );
    const report = join(platform.dir, 'reports', 'treasury.md');
    const runsBefore = runDirs();
    const outcome = await platform.runbook('treasury-emergency', ['--reason', 'DR drill', '--yes', '--report', report]);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    // The app refuses orders: the guard in the trading worker obeys the halt.
    expect(await until(trade, 423)).toBe(423);
    // The halt state, as treasury-halt reads it from Redis.
    const state = await withRedis((redis) => haltStatus({ redis }));
    expect(state).toMatchObject({ halted: true, reason: 'DR drill', actor: 'e2e-test', scope: 'all' });
    // The audit log has the engage (with its epoch) and the verification.
    const audit = await auditRows();
    expect(audit.find((r) => r.action === 'engaged')).toMatchObject({ actor: 'e2e-test', reason: 'DR drill', epoch: String(state.epoch) });
    expect(audit.find((r) => r.action === 'verified' && r.epoch === String(state.epoch))).toBeDefined();
    expect(audit.some((r) => r.action === 'wallet-report')).toBe(true);

    // The recovery report: the halt epoch, the workers, and exactly the 100 newest trades.
    const text = readFileSync(report, 'utf8');
    expect(text).toContain(`epoch ${state.epoch}`);
    for (const id of workers) expect(text).toContain(id);
    for (const { id } of newest.slice(0, 100)) expect(text).toContain(`trade #${id} |`);
    expect(text).not.toContain(`trade #${newest[100]?.id} |`);
    expect(text).toMatch(/The last 100 requested, 100 examined/);
    expect(text).toMatch(/two-person/);
    const json = JSON.parse(readFileSync(join(platform.dir, 'reports', 'treasury.json'), 'utf8')) as {
      audit: { examined: number };
      halt: { epoch: number };
    };
    expect(json.audit.examined).toBe(100);
    expect(json.halt.epoch).toBe(state.epoch);
    // The run says the halt stays and who may lift it.
    expect(outcome.stdout + outcome.stderr).toMatch(/halt stays engaged .*two-person/);

    // The incident messages: Sev1 initial alert, then the resolution; and the run's report.
    const texts = slackTexts();
    expect(texts[0]).toMatch(/JARVIS INCIDENT - Sev1/);
    expect(texts.at(-1)).toMatch(/JARVIS INCIDENT RESOLVED/);
    const run = runDirs().find((d) => !runsBefore.includes(d));
    expect(run).toBeDefined();
    expect(readFileSync(join(platform.runsDir, run as string, 'report.md'), 'utf8')).toMatch(/succeeded/);
  }, 180_000);

  it('fails when a registered worker does not acknowledge, names it, and leaves the halt engaged', async () => {
    // A clean start: two people release the halt of the previous test, trading resumes.
    await withRedis(async (redis) => {
      const db = new pg.Pool({ connectionString: platform.databaseUrl, max: 1 });
      try {
        await releaseHalt({ redis, db, actor: 'alice', approver: 'bob', reason: 'drill over' });
      } finally {
        await db.end();
      }
    });
    expect(await until(trade, 201)).toBe(201);
    // A worker that registered but never heartbeats (as treasury-halt's own tests make one).
    await withRedis((redis) => redis.sadd(haltKeys().workers, 'rogue-bot'));
    const runsBefore = runDirs();
    try {
      const outcome = await platform.runbook('treasury-emergency', ['--reason', 'rogue worker drill', '--yes', '--verify-timeout', '2s']);
      expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(1);
      expect(outcome.stdout + outcome.stderr).toMatch(/rogue-bot \(no heartbeat/);

      // Fail safe: the halt is in force and the app refuses orders.
      const state = await withRedis((redis) => haltStatus({ redis }));
      expect(state).toMatchObject({ halted: true, reason: 'rogue worker drill' });
      expect(await until(trade, 423)).toBe(423);
      const audit = await auditRows();
      expect(audit.find((r) => r.action === 'verify-failed' && r.epoch === String(state.epoch))).toBeDefined();

      const run = runDirs().find((d) => !runsBefore.includes(d));
      const report = readFileSync(join(platform.runsDir, run as string, 'report.md'), 'utf8');
      expect(report).toMatch(/failed/);
      expect(report).toContain('rogue-bot');
      expect(report).toMatch(/STAYS ENGAGED/);
    } finally {
      await withRedis((redis) => redis.srem(haltKeys().workers, 'rogue-bot'));
    }
  }, 180_000);
});
