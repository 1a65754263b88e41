import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { generateKey } from '@drkit/crypto-stream';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgEventPrinter } from '../src/commands/postgres.js';
import { EXIT } from '../src/index.js';
import { cliRunner, memoryIo } from './io.js';

const KEY = generateKey();
const WRONG_PASSWORD = 'Wr0ngSecret-pw-77';

let postgres: PostgresSandbox;
let dir: string;
let storeDir: string;
let keyFile: string;
/** DATABASE_URL (with the sandbox's password), the store and the key file. */
let env: NodeJS.ProcessEnv;

async function sql<T extends Record<string, unknown> = Record<string, unknown>>(
  database: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client(postgres.connection(database));
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

async function count(table: string, database = 'app'): Promise<number> {
  return Number((await sql<{ n: string }>(database, `SELECT count(*)::text AS n FROM ${table}`))[0]?.n);
}

async function databases(): Promise<string[]> {
  return (await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database ORDER BY datname')).map((r) => r.datname);
}

// Neither the database password nor the key may ever be printed.
const { drkit, drkitAtTerminal } = cliRunner(
  () => env,
  () => [postgres.password, encodeURIComponent(postgres.password), WRONG_PASSWORD, KEY.toString('base64')],
  (printed, secret) => expect(printed).not.toContain(secret),
);

beforeAll(async () => {
  postgres = await startPostgres();
  dir = await mkdtemp(join(tmpdir(), 'drkit-cli-pg-'));
  storeDir = join(dir, 'store');
  keyFile = join(dir, 'drkit.key');
  await writeFile(keyFile, `${KEY.toString('base64')}\n`, { mode: 0o600 });
  await sql('postgres', 'CREATE DATABASE app');
  await sql(
    'app',
    `CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
     CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(12,2), placed_at timestamptz DEFAULT now());
     CREATE INDEX orders_customer ON orders (customer_id);
     CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;
     INSERT INTO customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 500) g;
     INSERT INTO orders (customer_id, total) SELECT 1 + g % 500, (g * 7 % 1000)::numeric FROM generate_series(1, 5000) g;`,
  );
  env = {
    DATABASE_URL: postgres.url('app'),
    DRKIT_STORE: pathToFileURL(storeDir).href,
    DRKIT_KEY_FILE: keyFile,
    ...(process.env.PG_BIN ? { PG_BIN: process.env.PG_BIN } : {}),
  };
});

afterAll(async () => {
  await postgres?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('drkit backup/verify/restore postgres against a real server', () => {
  let id = '';

  it('backup postgres prints the id; backup list shows it; steps and a summary go to stderr', async () => {
    const backup = await drkit(['backup', 'postgres', '--tier', 'daily', '--env', 'test', '--key-file', keyFile]);
    expect(backup.code, backup.err).toBe(EXIT.OK);
    id = backup.out.trim();
    expect(backup.out).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}\n$/);
    expect(backup.err).toContain('drkit: connecting to postgres://drkit@127.0.0.1');
    expect(backup.err).toMatch(/drkit: dumping postgres:\/\/drkit@127\.0\.0\.1:\d+\/app/);
    expect(backup.err).toMatch(
      new RegExp(
        `drkit: stored postgres backup ${id} of postgres://drkit@127\\.0\\.0\\.1:\\d+/app: 2 tables \\(5500 rows\\), \\d+ bytes dumped, \\d+ bytes stored, key k\\w+, [\\d.]+ s; roles and tablespaces in \\S+\\n`,
      ),
    );

    const list = await drkit(['backup', 'list', '--json']);
    const manifests = JSON.parse(list.out) as { id: string; kind: string; tier: string; source: { environment?: string } }[];
    expect(manifests.find((m) => m.id === id)).toMatchObject({ kind: 'postgres', tier: 'daily', source: { environment: 'test' } });
    expect(manifests.filter((m) => m.kind === 'postgres-globals')).toHaveLength(1);
    expect((await drkit(['backup', 'list', '--kind', 'postgres'])).out).toMatch(new RegExp(`^${id} +postgres +daily `, 'm'));

    const noGlobals = await drkit(['backup', 'postgres', '--no-globals', '--compress', 'pg_dump', '--compress-level', '1']);
    expect(noGlobals.code, noGlobals.err).toBe(EXIT.OK);
    expect(noGlobals.err).not.toContain('roles and tablespaces in');
    const after = JSON.parse((await drkit(['backup', 'list', '--json'])).out) as { kind: string }[];
    expect(after.filter((m) => m.kind === 'postgres-globals')).toHaveLength(1);
  });

  it('bad flags, a missing DATABASE_URL and a wrong password fail cleanly, never printing the password', async () => {
    const noUrl = await drkit(['backup', 'postgres'], { DATABASE_URL: undefined });
    expect(noUrl.code).toBe(EXIT.USAGE);
    expect(noUrl.err).toBe('drkit: no database: pass --url URL or set DATABASE_URL (postgres://user:password@host:5432/database)\n');
    const noTarget = await drkit(['restore', 'postgres', 'latest', '--yes'], { DATABASE_URL: '' });
    expect(noTarget.code).toBe(EXIT.USAGE);
    expect(noTarget.err).toMatch(/no database to restore: pass --url URL or set DATABASE_URL/);

    expect((await drkit(['backup', 'postgres', '--compress-level', '12'])).code).toBe(EXIT.USAGE);
    expect((await drkit(['backup', 'postgres', '--compress', 'zstd', '--compress-level', '20'])).code).toBe(EXIT.USAGE);
    expect((await drkit(['backup', 'postgres', '--compress', 'lz4'])).code).toBe(EXIT.USAGE);
    expect((await drkit(['backup', 'postgres', '--tier', 'yearly'])).code).toBe(EXIT.USAGE);
    const badUrl = await drkit(['backup', 'postgres', '--url', `mysql://drkit:${WRONG_PASSWORD}@localhost/app`]);
    expect(badUrl.code).toBe(EXIT.USAGE);
    expect(badUrl.err).toMatch(/^drkit: --url: the database URL must look like postgres:\/\//);

    const wrong = postgres.url('app').replace(`:${postgres.password}@`, `:${WRONG_PASSWORD}@`);
    expect(wrong).toContain(WRONG_PASSWORD);
    const auth = await drkit(['backup', 'postgres', '--url', wrong]);
    expect(auth.code).toBe(EXIT.FAILED);
    expect(auth.err).toMatch(/drkit: error PG_AUTH_FAILED: PostgreSQL refused user "drkit"/);
    const missing = await drkit(['backup', 'postgres', '--url', postgres.url('nope')]);
    expect(missing.code).toBe(EXIT.FAILED);
    expect(missing.err).toMatch(/drkit: error PG_DATABASE_MISSING: database "nope" does not exist/);
  });

  it('verify postgres passes at levels 1, 2 and 3 and records the outcome', async () => {
    const one = await drkit(['verify', 'postgres', id, '--level', '1', '--no-record'], { DRKIT_KEY_FILE: undefined });
    expect(one.code, one.err).toBe(EXIT.OK);
    expect(one.out).toMatch(/^ok {3}L1 stored bytes: \d+ bytes, SHA-256 [0-9a-f]{16}\.\.\. as recorded\n$/);

    const two = await drkit(['verify', 'postgres', id]);
    expect(two.code, two.err).toBe(EXIT.OK);
    expect(two.out).toMatch(/^ok {3}L1 stored bytes/m);
    expect(two.out).toMatch(
      /^ok {3}L2 decrypt and decode: decrypted \d+ bytes; the archive decodes in full: \d+ entries, 2 with table data$/m,
    );
    expect(two.err).toContain(`drkit: verified postgres backup ${id} up to level 2: passed (recorded in the manifest)`);

    const noScratch = await drkit(['verify', 'postgres', id, '--level', '3']);
    expect(noScratch.code).toBe(EXIT.USAGE);
    expect(noScratch.err).toMatch(/--scratch URL or set DRKIT_SCRATCH_DATABASE_URL/);
    expect((await drkit(['verify', 'postgres', id, '--level', '4'])).code).toBe(EXIT.USAGE);

    const before = await databases();
    const three = await drkit(['verify', 'postgres', id, '--level', '3', '--scratch', postgres.url('postgres')]);
    expect(three.code, three.err).toBe(EXIT.OK);
    expect(three.out).toMatch(/^ok {3}L3 restore and fingerprint: restored into a scratch database: 2 tables \(5500 rows\)/m);
    expect(await databases()).toEqual(before);
    const viaEnv = await drkit(['verify', 'postgres', 'latest', '--level', '3', '--no-record'], {
      DRKIT_SCRATCH_DATABASE_URL: postgres.url('postgres'),
    });
    expect(viaEnv.code, viaEnv.err).toBe(EXIT.OK);

    const list = JSON.parse((await drkit(['backup', 'list', '--json'])).out) as {
      id: string;
      verification?: { status: string; level: string };
    }[];
    expect(list.find((m) => m.id === id)?.verification).toMatchObject({ status: 'passed', level: 'L3 restore and fingerprint' });
  });

  it('restore postgres without --yes refuses (exit 3) and changes nothing; at a terminal it asks for the name', async () => {
    const before = await databases();
    await sql('app', 'DELETE FROM orders WHERE id > 4000');
    const refused = await drkit(['restore', 'postgres', id]);
    expect(refused.code).toBe(EXIT.REFUSED);
    expect(refused.out).toBe('');
    expect(refused.err).toMatch(/^drkit: refused: restoring postgres:\/\/drkit@127\.0\.0\.1:\d+\/app would:\n {2}1\. restore backup /);
    expect(refused.err).toContain('kept as app_damaged_<time>');
    expect(refused.err).toContain('Pass --yes to restore, or --dry-run');
    const dropping = await drkit(['restore', 'postgres', id, '--drop-existing', '--jobs', '2']);
    expect(dropping.code).toBe(EXIT.REFUSED);
    expect(dropping.err).toContain('DROP DATABASE app');
    expect(dropping.err).toContain('pg_restore --jobs=2');

    const declined = await drkitAtTerminal(['restore', 'postgres', id], 'postgres\n');
    expect(declined.code).toBe(EXIT.REFUSED);
    expect(declined.err).toContain('Type the name of the database (app) to go ahead');
    expect(declined.err).toContain("refused: the answer was not 'app'");
    const closed = await drkitAtTerminal(['restore', 'postgres', id], '');
    expect(closed.code).toBe(EXIT.REFUSED);

    expect(await count('orders')).toBe(4000);
    expect(await databases()).toEqual(before);

    const dry = await drkit(['restore', 'postgres', id, '--dry-run']);
    expect(dry.code, dry.err).toBe(EXIT.OK);
    expect(dry.out).toMatch(/^dry run: nothing was changed\. Restoring backup \S+ into postgres:\/\/drkit@127\.0\.0\.1:\d+\/app would:\n/);
    expect(dry.out).toMatch(/^ {2}\d\. create an empty shadow database app_drkit_restore_\*/m);
    expect(dry.out).toMatch(/^ok {3}L2 decrypt and decode/m);
    expect(await count('orders')).toBe(4000);
    expect(await databases()).toEqual(before);

    const confirmed = await drkitAtTerminal(['restore', 'postgres', id, '--drop-damaged'], 'app\n');
    expect(confirmed.code, confirmed.err).toBe(EXIT.OK);
    expect(confirmed.out).toContain('the replaced database was dropped');
    expect(await count('orders')).toBe(5000);
    expect(await databases()).toEqual(before);
  });

  it('restore postgres --yes swaps the backup in and keeps the damaged database', async () => {
    await sql('app', 'DELETE FROM orders WHERE id > 100');
    await sql('app', "INSERT INTO customers (name) VALUES ('created after the backup')");
    const restored = await drkit(['restore', 'postgres', id, '--yes']);
    expect(restored.code, restored.err).toBe(EXIT.OK);
    expect(restored.out).toMatch(
      new RegExp(`^restored postgres://drkit@127\\.0\\.0\\.1:\\d+/app from backup ${id} \\(.+\\) in [\\d.]+ s\\n`),
    );
    const damaged = /the replaced database is kept as (app_damaged_\S+)\n/.exec(restored.out)?.[1] as string;
    expect(damaged).toBeDefined();
    expect(restored.out).toContain("checked against the backup's fingerprint: 2 tables (5500 rows) match");
    expect(restored.err).toMatch(/drkit: creating the shadow database app_drkit_restore_/);
    expect(restored.err).toMatch(/drkit: swapping: app becomes app_damaged_/);
    expect(await count('orders')).toBe(5000);
    expect(await count('customers')).toBe(500);
    expect(await count('orders', damaged)).toBe(100);
    expect(await count('customers', damaged)).toBe(501);
    await sql('postgres', `DROP DATABASE "${damaged}"`);
  });

  it('restore postgres --jobs 2 stages the dump; --drop-existing snapshots first; bad --allow-errors is a usage error', async () => {
    const bad = await drkit(['restore', 'postgres', id, '--yes', '--allow-errors', 'missing-role,bogus']);
    expect(bad.code).toBe(EXIT.USAGE);
    expect(bad.err).toMatch(/^drkit: --allow-errors: unknown restore error class 'bogus' \(use missing-role, missing-extension/);
    expect((await drkit(['restore', 'postgres', id, '--yes', '--jobs', '0'])).code).toBe(EXIT.USAGE);
    expect((await drkit(['restore', 'postgres', id, '--yes', '--drop-existing', '--drop-damaged'])).code).toBe(EXIT.USAGE);

    const stageDir = join(dir, 'stage');
    await mkdir(stageDir);
    await sql('app', 'TRUNCATE orders');
    const parallel = await drkit([
      'restore',
      'postgres',
      id,
      '--yes',
      '--jobs',
      '2',
      '--stage-dir',
      stageDir,
      '--drop-damaged',
      '--allow-errors',
      'missing-role',
    ]);
    expect(parallel.code, parallel.err).toBe(EXIT.OK);
    expect(parallel.out).toMatch(new RegExp(`^staged the decrypted dump in ${stageDir}/\\S+ for 2 parallel jobs \\(removed\\)$`, 'm'));
    expect(parallel.err).toContain('staging the decrypted dump');
    expect(await readdir(stageDir)).toEqual([]);
    expect(await count('orders')).toBe(5000);

    await sql('app', 'DELETE FROM orders WHERE id <= 10');
    const dropped = await drkit(['restore', 'postgres', id, '--drop-existing', '--yes']);
    expect(dropped.code, dropped.err).toBe(EXIT.OK);
    const snapshot = /^snapshot of the dropped app: backup (\S+)$/m.exec(dropped.out)?.[1] as string;
    expect(snapshot).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}$/);
    expect(dropped.out).not.toContain('damaged');
    expect(await count('orders')).toBe(5000);
    const list = JSON.parse((await drkit(['backup', 'list', '--json'])).out) as { id: string; labels?: Record<string, string> }[];
    expect(list.find((m) => m.id === snapshot)?.labels?.snapshot).toBe('true');
    expect((await databases()).filter((d) => d.startsWith('app'))).toEqual(['app']);
    // The snapshot is the newest postgres artifact, but 'latest' means the latest backup.
    const latest = await drkit(['restore', 'postgres', 'latest']);
    expect(latest.code).toBe(EXIT.REFUSED);
    expect(latest.err).toMatch(/backup \d{8}T\d{9}Z-[0-9a-f]{6}/);
    expect(latest.err).not.toContain(snapshot);
    // Chosen by id, a snapshot is called out as one.
    const chosen = await drkit(['restore', 'postgres', snapshot]);
    expect(chosen.code).toBe(EXIT.REFUSED);
    expect(chosen.err).toContain(`drkit: warning: backup ${snapshot} is a SNAPSHOT of the database as it was before a restore`);
  });

  it('verify postgres fails with exit 1 and PG_BACKUP_TAMPERED on an altered stored object', async () => {
    const list = JSON.parse((await drkit(['backup', 'list', '--json'])).out) as { id: string; object: { key: string } }[];
    const key = list.find((m) => m.id === id)?.object.key as string;
    expect(key.startsWith('artifacts/')).toBe(true);
    const path = join(storeDir, key);
    const bytes = await readFile(path);
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0x01;
    await writeFile(path, bytes);

    const two = await drkit(['verify', 'postgres', id, '--level', '2', '--no-record']);
    expect(two.code).toBe(EXIT.FAILED);
    expect(two.err).toContain('PG_BACKUP_TAMPERED');

    const one = await drkit(['verify', 'postgres', id, '--level', '1']);
    expect(one.code).toBe(EXIT.FAILED);
    expect(one.out).toMatch(/^FAIL L1 stored bytes: /);
    expect(one.err).toMatch(
      new RegExp(`^drkit: error PG_BACKUP_TAMPERED: .*backup ${id} FAILED verification \\(recorded in the manifest\\)`, 'm'),
    );
    const after = JSON.parse((await drkit(['backup', 'list', '--json'])).out) as { id: string; verification?: { status: string } }[];
    expect(after.find((m) => m.id === id)?.verification?.status).toBe('failed');

    const restore = await drkit(['restore', 'postgres', id, '--yes']);
    expect(restore.code).toBe(EXIT.FAILED);
    expect(restore.err).toMatch(/drkit: error PG_BACKUP_TAMPERED: /);
    expect((await databases()).filter((d) => d.startsWith('app'))).toEqual(['app']);
    expect(await count('orders')).toBe(5000);
  });
});

describe('pgEventPrinter', () => {
  it('prints steps and warnings, throttles progress with MB and the table, and scrubs secrets', () => {
    const io = memoryIo();
    const printer = pgEventPrinter(io, ['s3cret-pw'], { everyMs: 0, skipSteps: ['stored'] });
    printer.onEvent({ type: 'step', step: 'connect', message: 'connecting to postgres://app:s3cret-pw@db:5432/app' });
    printer.onEvent({ type: 'step', step: 'connect', message: 'connecting to postgres://app:s3cret-pw@db:5432/app' });
    printer.onEvent({ type: 'step', step: 'stored', message: 'stored backup x' });
    printer.onEvent({ type: 'progress', operation: 'dump', bytes: 12_345_678, item: 'public.orders' });
    printer.onEvent({ type: 'progress', operation: 'restore', bytes: 2_000_000, total: 4_000_000 });
    printer.onEvent({ type: 'warning', message: 'password s3cret-pw leaked?' });
    expect(io.err()).toBe(
      [
        'drkit: connecting to postgres://app@db:5432/app',
        'drkit: dump: 12.3 MB, table public.orders',
        'drkit: restore: 2.0 MB of 4.0 MB stored',
        'drkit: warning: password *** leaked?',
        '',
      ].join('\n'),
    );
    const slow = memoryIo();
    const throttled = pgEventPrinter(slow, []);
    throttled.onEvent({ type: 'progress', operation: 'dump', bytes: 1, item: 't' });
    expect(slow.err()).toBe('');
  });
});
