// redis-data-loss.ts against a real platform: Redis loses its data for real (FLUSHALL), the
// runbook runs as its own process, and the recovery is checked with our own Redis reads
// against DBSIZE and session TTLs captured before the loss.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BackupSet, startPlatform, type TestPlatform } from '../support/platform.ts';

let platform: TestPlatform;
let backups: BackupSet;
let before: { dbsize: number; sessions: Map<string, number> };

/** Runs `fn` with a fresh connection (Redis is restarted by the runbook: no long-lived client). */
async function withRedis<T>(fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(platform.redis.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

async function sessionKeys(client: Redis): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', 'session:*', 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys.sort();
}

function redisPid(): number {
  return Number(readFileSync(join(platform.dir, 'redis', 'redis.pid'), 'utf8').trim());
}

function appPid(): number {
  return Number(readFileSync(join(platform.dir, 'app', 'demo-app.pid'), 'utf8').trim());
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

/** Polls until DBSIZE is `want` (the app's heartbeat keys come back a moment after Redis does). */
async function dbsizeSettles(want: number, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  while (Date.now() < deadline) {
    last = await withRedis((c) => c.dbsize()).catch(() => -1);
    if (last === want) return last;
    await sleep(100);
  }
  return last;
}

/** Every captured session exists again, with a TTL that has not grown and has not been lost. */
async function expectSessionsBack(): Promise<void> {
  await withRedis(async (client) => {
    for (const [key, ttl] of before.sessions) {
      expect(await client.exists(key), key).toBe(1);
      const now = await client.pttl(key);
      expect(now, key).toBeGreaterThan(0);
      expect(now, key).toBeLessThanOrEqual(ttl);
    }
  });
}

async function snapshots(): Promise<string[]> {
  return platform.withCatalog(async (catalog) =>
    (await catalog.list({ kind: 'redis-rdb' })).filter((m) => m.labels?.snapshot === 'true').map((m) => m.id),
  );
}

function expectNotified(): void {
  const texts = platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
  expect(texts[0]).toMatch(/INCIDENT - Sev2/);
  expect(texts.at(-1)).toMatch(/INCIDENT RESOLVED/);
}

function expectReport(runsBefore: string[]): void {
  const run = runDirs().find((d) => !runsBefore.includes(d));
  expect(run).toBeDefined();
  const report = readFileSync(join(platform.runsDir, run as string, 'report.md'), 'utf8');
  expect(report).toMatch(/verify-restore/);
  expect(report).toMatch(/succeeded/i);
}

beforeAll(async () => {
  platform = await startPlatform();
  backups = await platform.backupAll();
  before = await withRedis(async (client) => {
    const keys = (await sessionKeys(client)).slice(0, 8);
    const sessions = new Map<string, number>();
    for (const key of keys) sessions.set(key, await client.pttl(key));
    return { dbsize: await client.dbsize(), sessions };
  });
}, 120_000);

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('redis-data-loss runbook', () => {
  it('captured a dataset with sessions that expire', () => {
    expect(before.sessions.size).toBe(8);
    for (const ttl of before.sessions.values()) expect(ttl).toBeGreaterThan(0);
    expect(backups.redis.rdb?.id).toBeDefined();
  });

  it('--dry-run checks the backup and changes nothing', async () => {
    const pid = redisPid();
    const snapsBefore = await snapshots();
    const outcome = await platform.runbook('redis-data-loss', ['--dry-run']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    expect(outcome.stdout + outcome.stderr).toContain(backups.redis.rdb?.id as string);
    expect(redisPid()).toBe(pid);
    expect(await withRedis((c) => c.dbsize())).toBe(before.dbsize);
    expect(await snapshots()).toEqual(snapsBefore);
    expect(readdirSync(platform.redis.dataDir).filter((f) => f.includes('drkit'))).toEqual([]);
    expect((await fetch(`${platform.app.url}/health`)).status).toBe(200);
    expect(platform.slack.requests).toEqual([]);
  }, 180_000);

  it('refuses a backup that does not exist, leaving Redis untouched (exit 1)', async () => {
    const pid = redisPid();
    const outcome = await platform.runbook('redis-data-loss', ['--backup', '20200101T000000000Z-abcdef', '--yes']);
    expect(outcome.code).toBe(1);
    expect(outcome.stdout + outcome.stderr).toMatch(/20200101T000000000Z-abcdef/);
    expect(redisPid()).toBe(pid);
    expect(await withRedis((c) => c.dbsize())).toBe(before.dbsize);
  }, 180_000);

  it('restores the RDB after FLUSHALL: Redis restarted, DBSIZE and session TTLs back', async () => {
    await withRedis((c) => c.flushall());
    const pid = redisPid();
    platform.slack.requests.length = 0;
    const runsBefore = runDirs();
    const outcome = await platform.runbook('redis-data-loss', ['--yes', '--reason', 'e2e flushall']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    expect(redisPid()).not.toBe(pid);
    expect(await dbsizeSettles(before.dbsize)).toBe(before.dbsize);
    await expectSessionsBack();
    // The backup is the server's dump file now, and no temp file is left beside it.
    expect(readdirSync(platform.redis.dataDir).filter((f) => f.includes('.drkit-restore-'))).toEqual([]);
    expect(existsSync(join(platform.redis.dataDir, 'dump.rdb'))).toBe(true);
    expect((await fetch(`${platform.app.url}/health`)).status).toBe(200);
    expectNotified();
    expectReport(runsBefore);
  }, 180_000);

  it('--mode logical --flush --stop-app empties the server (keeping a snapshot) and restores the export without restarting Redis', async () => {
    await withRedis(async (client) => {
      await client.flushall();
      await client.set('junk:after-the-loss', 'x');
    });
    const pid = redisPid();
    const snapsBefore = await snapshots();
    platform.slack.requests.length = 0;
    const runsBefore = runDirs();
    const app = appPid();
    const outcome = await platform.runbook('redis-data-loss', ['--mode', 'logical', '--flush', '--stop-app', '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    expect(redisPid()).toBe(pid);
    // --stop-app: the application was stopped for the restore and started again.
    expect(appPid()).not.toBe(app);
    expect((await fetch(`${platform.app.url}/health`)).status).toBe(200);
    expect(await withRedis((c) => c.exists('junk:after-the-loss'))).toBe(0);
    expect(await dbsizeSettles(before.dbsize)).toBe(before.dbsize);
    await expectSessionsBack();
    // What the server held before the flush was kept as a snapshot first.
    expect((await snapshots()).length).toBe(snapsBefore.length + 1);
    expectNotified();
    expectReport(runsBefore);
  }, 180_000);

  it('--mode logical without --flush refuses when keys of the backup exist, before changing anything (exit 1)', async () => {
    const size = await dbsizeSettles(before.dbsize);
    const snapsBefore = await snapshots();
    const outcome = await platform.runbook('redis-data-loss', ['--mode', 'logical', '--yes']);
    expect(outcome.code).toBe(1);
    expect(outcome.stdout + outcome.stderr).toMatch(/exist in Redis: choose --flush/);
    expect(await withRedis((c) => c.dbsize())).toBe(size);
    expect(await snapshots()).toEqual(snapsBefore);
  }, 180_000);
});
