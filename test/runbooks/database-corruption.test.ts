// database-corruption.ts against a real platform: the app database is corrupted for real,
// the runbook runs as its own process, and the recovery is checked by reading the database
// and the app directly, against what was captured before the damage.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BackupSet, startPlatform, type TestPlatform } from '../support/platform.ts';

let platform: TestPlatform;
let backups: BackupSet;
let before: { users: number; usersDigest: string; trades: number };

/** What the app database holds, read independently of the runbook. */
async function contents(db?: string) {
  return platform.sql(async (client) => {
    const users = await client.query<{ n: string; digest: string }>(
      "SELECT COUNT(*)::text AS n, md5(COALESCE(string_agg(id || ':' || email || ':' || name, ',' ORDER BY id), '')) AS digest FROM users",
    );
    const trades = await client.query<{ n: string }>('SELECT COUNT(*)::text AS n FROM trades');
    return { users: Number(users.rows[0]?.n), usersDigest: users.rows[0]?.digest ?? '', trades: Number(trades.rows[0]?.n) };
  }, db);
}

function appPid(): number {
  return Number(readFileSync(join(platform.dir, 'app', 'demo-app.pid'), 'utf8').trim());
}

async function databases(): Promise<string[]> {
  return platform.sql(
    async (client) => (await client.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1')).rows.map((r) => r.datname),
    'postgres',
  );
}

/** Corrupts the app database the way a bad migration or a disk error would show: rows gone, rows garbled. */
async function corrupt(): Promise<void> {
  await platform.sql(async (client) => {
    await client.query('TRUNCATE trades');
    await client.query("UPDATE users SET name = 'garbage' WHERE id % 2 = 0");
    await client.query('DELETE FROM users WHERE id > 20');
  });
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

beforeAll(async () => {
  platform = await startPlatform();
  backups = await platform.backupAll();
  before = await contents();
}, 180_000);

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('database-corruption runbook', () => {
  it('--dry-run on the corrupted database checks the backup and changes nothing', async () => {
    await corrupt();
    const damaged = await contents();
    expect(damaged.users).toBe(20);
    const pid = appPid();
    const outcome = await platform.runbook('database-corruption', ['--dry-run']);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(outcome.stdout + outcome.stderr).toContain(backups.postgres.manifest.id);
    expect(await contents()).toEqual(damaged);
    expect(appPid()).toBe(pid);
    expect((await fetch(`${platform.app.url}/health`)).status).toBe(200);
    expect((await databases()).filter((d) => d.includes('damaged'))).toEqual([]);
    // A dry run notifies nobody.
    expect(platform.slack.requests).toEqual([]);
  }, 180_000);

  it('refuses a backup id that does not exist before stopping anything (exit 1)', async () => {
    const pid = appPid();
    const outcome = await platform.runbook('database-corruption', ['--backup', '20200101T000000000Z-abcdef', '--yes']);
    expect(outcome.code).toBe(1);
    expect(outcome.stdout + outcome.stderr).toMatch(/20200101T000000000Z-abcdef/);
    expect(appPid()).toBe(pid);
    expect((await contents()).users).toBe(20);
  }, 180_000);

  it('recovers the database from the latest backup, keeps the corrupted one, restarts the app and verifies it', async () => {
    const pid = appPid();
    platform.slack.requests.length = 0;
    const runsBefore = runDirs();
    const outcome = await platform.runbook('database-corruption', ['--yes', '--reason', 'e2e corruption']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    // The data is the backup's, read straight from the database.
    expect(await contents()).toEqual(before);
    // The corrupted database is kept under another name, as it was.
    const kept = (await databases()).filter((d) => d.startsWith(`${platform.database}_damaged_`));
    expect(kept).toHaveLength(1);
    expect((await contents(kept[0])).users).toBe(20);
    // The app was restarted and serves the restored data.
    expect(appPid()).not.toBe(pid);
    const status = (await (await fetch(`${platform.app.url}/api/status`)).json()) as { users: number; trades: number };
    expect(status.users).toBe(before.users);
    expect(status.trades).toBe(before.trades);
    // The corrupted state was dumped into the store before the swap.
    const snapshots = await platform.withCatalog((catalog) => catalog.list({ kind: 'postgres', includeSnapshots: true }));
    expect(snapshots.length).toBeGreaterThan(1);
    // The plans' messages went out: the initial alert and the resolution.
    const texts = platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
    expect(texts[0]).toMatch(/JARVIS INCIDENT - Sev2/);
    expect(texts.at(-1)).toMatch(/JARVIS INCIDENT RESOLVED/);
    const run = runDirs().find((d) => !runsBefore.includes(d));
    expect(run).toBeDefined();
    const report = readFileSync(join(platform.runsDir, run as string, 'report.md'), 'utf8');
    expect(report).toMatch(/restore-and-swap/);
    expect(report).toMatch(/succeeded/i);
  }, 240_000);
});
