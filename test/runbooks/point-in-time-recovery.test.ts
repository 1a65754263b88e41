// The point-in-time-recovery runbook against a real PostgreSQL archiving its WAL with the real
// `drkit wal-push`: users are added before and after a moment T, a bad mass delete follows,
// and the runbook recovers a new server to T. The check is independent: our own SQL against
// the recovered server, compared with the ids captured before the delete.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateKey, parseKeyFile } from '@drkit/crypto-stream';
import { backupBase } from '@drkit/postgres-backup';
import { createCatalog, createFsStore } from '@drkit/s3-store';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runNode } from '../support/platform.js';

const run = promisify(execFile);
const bin = join(REPO, 'packages/cli/dist/bin.js');

let dir: string;
let storeDir: string;
let source: PostgresSandbox;
let configPath: string;
let timeline: string;
const keyText = generateKey().toString('base64');
let beforeT: number[] = [];
let T: Date;

async function ids(client: pg.Client): Promise<number[]> {
  return (await client.query<{ id: number }>('SELECT id FROM users ORDER BY id')).rows.map((r) => r.id);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-pitr-runbook-'));
  await chmod(dir, 0o755);
  storeDir = join(dir, 'store');
  await run('mkdir', ['-m', '777', storeDir, join(dir, 'recovered')]);
  const keyFile = join(dir, 'wal.key');
  await writeFile(keyFile, `${keyText}\n`, { mode: 0o644 });
  source = await startPostgres({
    settings: {
      archive_mode: 'on',
      archive_command: `'${process.execPath}' '${bin}' wal-push --store 'file://${storeDir}' --key-file '${keyFile}' %p`,
      wal_level: 'replica',
    },
  });
  const client = new pg.Client(source.connection());
  await client.connect();
  try {
    await client.query('CREATE DATABASE app');
  } finally {
    await client.end();
  }
  const app = new pg.Client(source.connection('app'));
  await app.connect();
  try {
    await app.query('CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL)');
    await app.query("INSERT INTO users (email) SELECT 'u' || n || '@example.com' FROM generate_series(1, 200) n");
    const store = createFsStore(storeDir);
    await backupBase({ url: source.url('app'), catalog: createCatalog(store), keys: parseKeyFile(keyText) });
    await store.close();
    for (let i = 0; i < 20; i++) await app.query("INSERT INTO users (email) VALUES ('late-' || $1 || '@example.com')", [i]);
    beforeT = await ids(app);
    await new Promise((r) => setTimeout(r, 50));
    T = new Date();
    await new Promise((r) => setTimeout(r, 50));
    // The incident: a mass delete after T.
    await app.query('DELETE FROM users WHERE id % 2 = 0');
    const [switched] = (await app.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal')).rows;
    for (let i = 0; i < 300; i++) {
      const [status] = (await app.query<{ last: string | null }>('SELECT last_archived_wal AS last FROM pg_stat_archiver')).rows;
      if (status?.last && switched && status.last >= switched.wal) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await app.end();
  }
  timeline = join(dir, 'timeline.jsonl');
  configPath = join(dir, 'drkit.config.json');
  const url = new URL(source.url('app'));
  url.password = '';
  await writeFile(
    configPath,
    JSON.stringify({
      environments: {
        sandbox: {
          description: 'point-in-time recovery test',
          stores: { backups: `file://${storeDir}` },
          notify: { timeline: { type: 'file', path: timeline } },
          vars: { backups: 'backups', postgres: { url: url.toString(), pitr: { dir: join(dir, 'recovered') } } },
          runsDir: join(dir, 'runs'),
        },
      },
    }),
  );
}, 120_000);

afterAll(async () => {
  // Recovered servers run as the account that owns their data directory.
  for (const name of existsSync(join(dir, 'recovered')) ? await readdir(join(dir, 'recovered')) : []) {
    const dataDir = join(dir, 'recovered', name);
    if (!existsSync(join(dataDir, 'postmaster.pid'))) continue;
    const owner = await stat(dataDir);
    await run(join(source.binDir, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate'], { uid: owner.uid, gid: owner.gid }).catch(
      () => {},
    );
  }
  await source?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const runbook = (args: string[]) =>
  runNode(['--import', 'tsx', join(REPO, 'runbooks/point-in-time-recovery.ts'), '--env', 'sandbox', '--config', configPath, ...args], {
    DRKIT_KEY: keyText,
    PGPASSWORD: source.password,
    DRKIT_OPERATOR: 'e2e-test',
  });

describe('point-in-time-recovery runbook', () => {
  it('--dry-run checks the archive and the window, and recovers nothing', async () => {
    const outcome = await runbook(['--to', T.toISOString(), '--dry-run']);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(`${outcome.stdout}${outcome.stderr}`).toMatch(/recovers from \S+ to \S+/);
    expect(await readdir(join(dir, 'recovered'))).toEqual([]);
  }, 120_000);

  it('refuses a time before the base backup, recovering nothing', async () => {
    const outcome = await runbook(['--to', new Date(T.getTime() - 86_400_000).toISOString(), '--yes']);
    expect(outcome.code).toBe(1);
    expect(`${outcome.stdout}${outcome.stderr}`).toContain('no base backup can reach');
    expect(await readdir(join(dir, 'recovered'))).toEqual([]);
  }, 120_000);

  it('recovers a new server to T: exactly the users committed before T, the current database untouched', async () => {
    const outcome = await runbook(['--to', T.toISOString(), '--yes']);
    expect(outcome.code, outcome.stderr).toBe(0);
    const port = Number(/running on 127\.0\.0\.1:(\d+)/.exec(`${outcome.stdout}${outcome.stderr}`)?.[1]);
    expect(port).toBeGreaterThan(0);
    const recovered = new pg.Client({ host: '127.0.0.1', port, user: source.user, password: source.password, database: 'app' });
    await recovered.connect();
    try {
      expect(await ids(recovered)).toEqual(beforeT);
    } finally {
      await recovered.end();
    }
    // The current database still has the delete: nothing was done to it.
    const current = new pg.Client(source.connection('app'));
    await current.connect();
    try {
      expect((await ids(current)).length).toBe(beforeT.filter((id) => id % 2 !== 0).length);
    } finally {
      await current.end();
    }
    // No key file stays beside the recovered data directory.
    expect((await readdir(join(dir, 'recovered'))).filter((n) => n.endsWith('.keys'))).toEqual([]);
    const messages = readFileSync(timeline, 'utf8');
    expect(messages).toContain('point-in-time-recovery');
    const runs = await readdir(join(dir, 'runs'));
    expect(runs.some((r) => existsSync(join(dir, 'runs', r, 'report.md')))).toBe(true);
  }, 180_000);
});
