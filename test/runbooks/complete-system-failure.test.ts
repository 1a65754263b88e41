// complete-system-failure.ts against a real platform that is lost for real: the app stops,
// Redis stops and loses its data files, the app database is dropped, the uploads and the
// .env are deleted, and the primary S3 region goes down. The rebuild is checked by reading
// every component directly against what was captured before the loss.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_APP_MIGRATE } from '../../examples/demo-app/src/index.ts';
import { startPlatform, type TestPlatform } from '../support/platform.ts';

let platform: TestPlatform;
let config: string;

interface State {
  users: number;
  usersDigest: string;
  trades: number;
  redisKeys: number;
  files: Record<string, string>;
  env: string;
}

function filesUnder(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out[relative(root, path)] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  if (existsSync(root)) walk(root);
  return out;
}

async function redisKeys(): Promise<number> {
  const client = new Redis(platform.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    return await client.dbsize();
  } finally {
    client.disconnect();
  }
}

async function state(): Promise<State> {
  const db = await platform.sql(async (client) => {
    const users = await client.query<{ n: string; digest: string }>(
      "SELECT COUNT(*)::text AS n, md5(COALESCE(string_agg(id || ':' || email || ':' || name, ',' ORDER BY id), '')) AS digest FROM users",
    );
    const trades = await client.query<{ n: string }>('SELECT COUNT(*)::text AS n FROM trades');
    return { users: Number(users.rows[0]?.n), usersDigest: users.rows[0]?.digest ?? '', trades: Number(trades.rows[0]?.n) };
  });
  return { ...db, redisKeys: await redisKeys(), files: filesUnder(platform.uploadsDir), env: readFileSync(platform.envFile, 'utf8') };
}

beforeAll(async () => {
  platform = await startPlatform();
  const publicUrl = `postgres://${platform.pg.user}@${platform.pg.host}:${platform.pg.port}/${platform.database}`;
  config = platform.writeConfig((sandbox) => {
    const vars = sandbox.vars as Record<string, unknown>;
    vars.app = {
      ...(vars.app as Record<string, unknown>),
      migrate: `DATABASE_URL='${publicUrl}' '${process.execPath}' --import tsx '${DEMO_APP_MIGRATE}'`,
    };
  }, 'rebuild.config.json');
}, 180_000);

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('complete-system-failure runbook', () => {
  it('rebuilds PostgreSQL, Redis, the files and the .env from the replica region after a total loss', async () => {
    await platform.backupAll();
    const before = await state();
    expect(before.users).toBeGreaterThan(0);
    expect(before.redisKeys).toBeGreaterThan(0);
    expect(Object.keys(before.files).length).toBeGreaterThan(0);

    // The loss.
    await platform.app.controller.stop();
    await platform.redis.controller.stop();
    // Redis's data is gone; its (re-provisioned) data dir is there, empty.
    for (const name of readdirSync(platform.redis.dataDir)) rmSync(join(platform.redis.dataDir, name), { recursive: true, force: true });
    await platform.sql((client) => client.query(`DROP DATABASE ${platform.database} WITH (FORCE)`), 'postgres');
    rmSync(platform.uploadsDir, { recursive: true, force: true });
    rmSync(platform.envFile, { force: true });
    await platform.east.stop();

    const outcome = await platform.runbook('complete-system-failure', ['--yes'], { config });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    expect(outcome.stdout + outcome.stderr).toMatch(/replica/);

    const after = await state();
    expect(after).toEqual(before);
    expect(statSync(platform.envFile).mode & 0o777).toBe(0o600);
    const health = await fetch(`${platform.app.url}/health`);
    expect(health.status).toBe(200);
    const status = (await (await fetch(`${platform.app.url}/api/status`)).json()) as { users: number; uploads: number };
    expect(status.users).toBe(before.users);
    expect(status.uploads).toBe(Object.keys(before.files).length);
    const texts = platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
    expect(texts[0]).toMatch(/JARVIS INCIDENT - Sev1/);
    expect(texts.at(-1)).toMatch(/JARVIS INCIDENT RESOLVED/);
  }, 300_000);
});
