import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKey, type MasterKey, masterKey } from '@drkit/crypto-stream';
import { type Catalog, createCatalog, createFsStore, type Manifest } from '@drkit/s3-store';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupPostgres,
  fingerprintOf,
  isPgBackupError,
  type PgBackupError,
  type PgBackupEvent,
  restorePostgres,
  snapshotCurrentState,
  verifyPostgresBackup,
} from '../src/index.js';
import {
  connectTo,
  createDatabase,
  databaseExists,
  dropDatabase,
  dumpPlain,
  listDatabases,
  loadSql,
  pgbenchInit,
  query,
} from './support/pg.js';

const EVERY_TYPE = fileURLToPath(new URL('./fixtures/every-type.sql', import.meta.url));
const RESTORE_CHILD = fileURLToPath(new URL('./fixtures/restore-child.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

let pg: PostgresSandbox;
let root: string;
let storeRoot: string;
let catalog: Catalog;
let key: MasterKey;
const dirs: string[] = [];

beforeAll(async () => {
  pg = await startPostgres();
  root = await mkdtemp(join(tmpdir(), 'drkit-pg-test-'));
  storeRoot = join(root, 'store');
  catalog = createCatalog(createFsStore(storeRoot));
  key = masterKey(generateKey());
  await createDatabase(pg, 'app');
  await loadSql(pg, 'app', EVERY_TYPE);
  await createDatabase(pg, 'bench');
  await pgbenchInit(pg, 'bench', 5);
}, 120_000);

afterAll(async () => {
  await pg?.stop();
  await Promise.all([root, ...dirs].filter(Boolean).map((d) => rm(d, { recursive: true, force: true })));
});

async function errorOf(promise: Promise<unknown>): Promise<PgBackupError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isPgBackupError(error)) throw new Error(`expected a PgBackupError, got ${String(error)}`, { cause: error });
  return error;
}

async function backup(database: string, extra: Partial<Parameters<typeof backupPostgres>[0]> = {}) {
  return backupPostgres({ url: pg.url(database), catalog, keys: key, ...extra });
}

/** A copy of `source` made with CREATE DATABASE ... TEMPLATE, so each test damages its own. */
async function copyOf(source: string, name: string): Promise<string> {
  await dropDatabase(pg, name);
  await createDatabase(pg, name, { template: source });
  return name;
}

const count = async (database: string, table: string) =>
  Number((await query<{ n: string }>(pg, database, `SELECT count(*)::text AS n FROM ${table}`))[0]?.n);

/** Databases whose names say drkit left them (shadows, scratch databases, damaged copies). */
async function drkitDatabases(): Promise<string[]> {
  return (await listDatabases(pg)).filter((d) => /_drkit_|_damaged_/.test(d));
}

describe('backupPostgres', () => {
  it('streams a sealed pg_dump into the store, with a fingerprint and globals; no plaintext is stored', async () => {
    const events: PgBackupEvent[] = [];
    const result = await backup('app', { tier: 'daily', environment: 'staging', onEvent: (e) => events.push(e) });
    const m = result.manifest;
    expect(m).toMatchObject({
      kind: 'postgres',
      tier: 'daily',
      type: 'full',
      compression: 'gzip',
      encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: key.id },
      server: { name: 'PostgreSQL' },
      source: { description: `postgres://${pg.user}@${pg.host}:${pg.port}/app`, environment: 'staging' },
    });
    expect(m.server?.version).toMatch(/^15\.\d+$/);
    expect(m.plainSize).toBeGreaterThan(10_000);
    const f = fingerprintOf(m);
    expect(f.tables['public.users']).toBe(300);
    expect(f.tables['app."Line Items"']).toBe(1200);
    expect(f.tables['app.events_2024_q1']).toBe(182);
    expect(f.objects).toMatchObject({ 'partitioned tables': 1, views: 2, 'materialized views': 1, triggers: 2, enums: 2, domains: 2 });
    expect(Object.keys(f.sequences)).toHaveLength(11);
    expect(f.dump).toMatchObject({ tool: 'pg_dump', format: 'custom' });
    expect(f.database).toMatchObject({ name: 'app', properties: { owner: pg.user, encoding: 'UTF8' } });
    expect(f.database.sizeBytes).toBeGreaterThan(1_000_000);

    // Roles and tablespaces as a companion artifact, linked both ways.
    expect(result.globals?.kind).toBe('postgres-globals');
    expect(f.globals).toBe(result.globals?.id);
    expect(m.labels).toMatchObject({ database: 'app', globals: result.globals?.id });

    // The stored bytes are the sealed stream: nothing of the schema or the data is readable.
    const stored = await readFile(join(storeRoot, m.object.key));
    expect(stored.subarray(0, 4).toString('latin1')).not.toBe('PGDM');
    for (const text of ['PGDMP', 'CREATE TABLE', 'user_status', 'Line Items']) expect(stored.includes(Buffer.from(text))).toBe(false);
    // No plaintext temp file either: the store holds the object and manifests, nothing else.
    const files = await readdir(storeRoot, { recursive: true });
    expect(files.filter((f) => !f.startsWith('artifacts') && !f.startsWith('manifests') && !f.startsWith('.drkit'))).toEqual([]);

    // Progress: the steps, byte counts and the table being dumped.
    expect(events.filter((e) => e.type === 'step').map((e) => (e as { step: string }).step)).toEqual([
      'connect',
      'globals',
      'dump',
      'stored',
    ]);
    const progress = events.filter((e): e is Extract<PgBackupEvent, { type: 'progress' }> => e.type === 'progress');
    expect(progress.some((p) => p.item === 'public.users')).toBe(true);
    expect(progress.at(-1)?.bytes).toBe(m.plainSize);
  });

  it('takes the fingerprint in the snapshot of the dump while writers keep writing', async () => {
    await copyOf('bench', 'busy');
    const writer = await connectTo(pg, 'busy');
    await writer.query('CREATE SEQUENCE ticket');
    let writing = true;
    const writes = (async () => {
      let n = 0;
      while (writing) {
        await writer.query('INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, $1, now())', [n++]);
        await writer.query("SELECT nextval('ticket')");
      }
      return n;
    })();
    try {
      const result = await backup('busy', { globals: false });
      writing = false;
      const written = await writes;
      expect(written).toBeGreaterThan(10);
      const f = fingerprintOf(result.manifest);
      // The rows in the fingerprint are exactly those in the dump: restoring checks that.
      const restored = await restorePostgres({ catalog, backup: result.manifest.id, target: pg.url('busy_restored'), keys: key });
      expect(restored.fingerprint?.tables['public.pgbench_history']).toBe(f.tables['public.pgbench_history']);
      expect(f.tables['public.pgbench_history']).toBeLessThan(await count('busy', 'pgbench_history'));
    } finally {
      writing = false;
      await writes.catch(() => {});
      await writer.end();
      await dropDatabase(pg, 'busy_restored');
    }
  });

  it('refuses with clear codes: wrong password, missing database, client tools too old or missing, bad options', async () => {
    const wrong = pg.url('app').replace(`:${encodeURIComponent(pg.password)}@`, ':not-the-password@');
    expect(wrong).not.toBe(pg.url('app'));
    const auth = await errorOf(backupPostgres({ url: wrong, catalog, keys: key }));
    expect(auth.code).toBe('PG_AUTH_FAILED');
    expect(auth.message).toContain(`user "${pg.user}"`);
    expect(auth.message).not.toContain('not-the-password');
    expect(auth.message).not.toContain(pg.password);

    const missing = await errorOf(backup('no_such_db'));
    expect(missing.code).toBe('PG_DATABASE_MISSING');
    expect(missing.message).toContain('database "no_such_db" does not exist');

    // A pg_dump 12 cannot dump a PostgreSQL 15 server: say which client to install.
    const old = await mkdtemp(join(tmpdir(), 'drkit-old-client-'));
    dirs.push(old);
    for (const tool of ['pg_dump', 'pg_dumpall']) {
      await writeFile(join(old, tool), '#!/bin/sh\necho "pg_dump (PostgreSQL) 12.22"\n');
      await chmod(join(old, tool), 0o755);
    }
    const tooOld = await errorOf(backup('app', { binDir: old }));
    expect(tooOld.code).toBe('PG_CLIENT_TOO_OLD');
    expect(tooOld.message).toMatch(/pg_dump 12\.22 .* older than the server \(PostgreSQL 15\.\d+\).*install postgresql-client-15/);

    const empty = await mkdtemp(join(tmpdir(), 'drkit-no-client-'));
    dirs.push(empty);
    const none = await errorOf(backup('app', { binDir: empty }));
    expect(none.code).toBe('PG_TOOL_MISSING');
    expect(none.message).toContain('install postgresql-client-15');

    expect((await errorOf(backup('app', { compression: 'zstd', compressLevel: 20 }))).code).toBe('PG_OPTIONS_INVALID');
    expect((await errorOf(backup('app', { compressLevel: 10 }))).code).toBe('PG_OPTIONS_INVALID');
    expect((await errorOf(backup('app', { compression: 'lz4' as 'zstd' }))).code).toBe('PG_OPTIONS_INVALID');
    expect((await errorOf(backupPostgres({ url: 'mysql://x@y/z', catalog, keys: key }))).code).toBe('PG_URL_INVALID');
  });

  it('an aborted backup records nothing and stops pg_dump', async () => {
    const before = (await catalog.list({ kind: 'postgres' })).length;
    const controller = new AbortController();
    const error = await errorOf(
      backup('bench', {
        globals: false,
        signal: controller.signal,
        onEvent: (e) => {
          if (e.type === 'progress' && e.bytes > 0) controller.abort();
        },
      }),
    );
    expect(error.code).toBe('PG_ABORTED');
    expect((await catalog.list({ kind: 'postgres' })).length).toBe(before);
    // pg_dump's session ends with it.
    for (let i = 0; i < 40; i++) {
      const left = await query(pg, 'postgres', "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_dump' AND datname = 'bench'");
      if (left.length === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('pg_dump is still connected after the abort');
  });
});

describe('restorePostgres', () => {
  let appBackup: Manifest;
  let benchBackup: Manifest;
  let appDump: string;

  beforeAll(async () => {
    appBackup = (await backup('app')).manifest;
    benchBackup = (await backup('bench', { globals: false })).manifest;
    appDump = await dumpPlain(pg, 'app');
  }, 120_000);

  it('round-trips every common type, sequences, views, functions, triggers, partitions and keys: pg_dump of source and restore are identical', async () => {
    const result = await restorePostgres({ catalog, backup: appBackup.id, target: pg.url('app_copy'), keys: key });
    expect(result.mode).toBe('swap');
    expect(result.damaged).toBeUndefined();
    expect(await dumpPlain(pg, 'app_copy')).toBe(appDump);
    expect(await drkitDatabases()).toEqual([]);
    await dropDatabase(pg, 'app_copy');
  });

  it('round-trips a pgbench database, compressed by pg_dump itself or by zstd in the seal', async () => {
    await restorePostgres({ catalog, backup: benchBackup.id, target: pg.url('bench_copy'), keys: key });
    const source = await dumpPlain(pg, 'bench');
    expect(await dumpPlain(pg, 'bench_copy')).toBe(source);
    await dropDatabase(pg, 'bench_copy');

    // pg_dump's gzip at level 1 by default: the level recorded is the one pg_dump ran with.
    expect(fingerprintOf(benchBackup).dump).toMatchObject({ compression: 'pg_dump', compressLevel: 1 });
    expect(benchBackup.compression).toBe('gzip');

    const zstd = (await backup('bench', { globals: false, compression: 'zstd', compressLevel: 3 })).manifest;
    expect(zstd.compression).toBe('zstd');
    expect(fingerprintOf(zstd).dump).toMatchObject({ compression: 'zstd', compressLevel: 3 });
    // One compression, not two: zstd over pg_dump's uncompressed archive beats its gzip here.
    expect(zstd.object.size).toBeLessThan(benchBackup.object.size);
    await restorePostgres({ catalog, backup: zstd.id, target: pg.url('bench_copy'), keys: key });
    expect(await dumpPlain(pg, 'bench_copy')).toBe(source);
    await dropDatabase(pg, 'bench_copy');
    await catalog.delete(zstd);
  });

  it('restores beside the damaged database, verifies, then swaps it in and keeps the old one', async () => {
    await copyOf('app', 'shop');
    await query(pg, 'shop', 'DELETE FROM public.users WHERE id > 250');
    await query(pg, 'shop', 'DROP VIEW IF EXISTS public.active_users CASCADE');
    const session = await connectTo(pg, 'shop');
    const events: PgBackupEvent[] = [];
    const result = await restorePostgres({
      catalog,
      backup: appBackup.id,
      target: pg.url('shop'),
      keys: key,
      onEvent: (e) => events.push(e),
    });

    expect(await dumpPlain(pg, 'shop')).toBe(appDump);
    expect(result.damaged).toMatch(/^shop_damaged_\d{8}t\d{6}$/);
    expect(await count(result.damaged as string, 'public.users')).toBe(250);
    // The old database's sessions were ended for the rename.
    await expect(session.query('SELECT 1')).rejects.toThrow();
    await session.end().catch(() => {});
    const steps = events.filter((e) => e.type === 'step').map((e) => (e as { step: string }).step);
    expect(steps, JSON.stringify(events.filter((e) => e.type !== 'progress'))).toEqual([
      'shadow',
      'restore',
      'fingerprint',
      'swap',
      'done',
    ]);
    expect(result.fingerprint?.tables['public.users']).toBe(300);
    expect(await drkitDatabases()).toEqual([result.damaged]);
    await dropDatabase(pg, result.damaged as string);
  });

  it('keepDamaged false drops the old database after the swap; restoring postgres itself works', async () => {
    await copyOf('app', 'shop2');
    const result = await restorePostgres({ catalog, backup: appBackup.id, target: pg.url('shop2'), keys: key, keepDamaged: false });
    expect(result.damaged).toBeUndefined();
    expect(await drkitDatabases()).toEqual([]);
    await dropDatabase(pg, 'shop2');

    // `postgres` cannot rename itself from its own session: the swap goes through template1.
    const itself = await restorePostgres({ catalog, backup: appBackup.id, target: pg.url('postgres'), keys: key, keepDamaged: false });
    expect(itself.target).toMatch(/\/postgres$/);
    expect(await count('postgres', 'public.users')).toBe(300);
    expect(await drkitDatabases()).toEqual([]);
  });

  it('refuses a tampered backup before the target is touched', async () => {
    await copyOf('app', 'victim');
    await query(pg, 'victim', 'DELETE FROM public.users WHERE id = 1');
    const victimDump = await dumpPlain(pg, 'victim');
    const tampered = (await backup('app', { globals: false })).manifest;
    const path = join(storeRoot, tampered.object.key);
    const bytes = await readFile(path);
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0x40;
    await writeFile(path, bytes);

    const error = await errorOf(restorePostgres({ catalog, backup: tampered.id, target: pg.url('victim'), keys: key }));
    expect(error.code).toBe('PG_BACKUP_TAMPERED');
    expect(error.message).toContain(tampered.id);
    expect(await dumpPlain(pg, 'victim')).toBe(victimDump);
    expect(await drkitDatabases()).toEqual([]);

    // Cut short: the same.
    await writeFile(path, bytes.subarray(0, bytes.length - 100));
    expect((await errorOf(restorePostgres({ catalog, backup: tampered.id, target: pg.url('victim'), keys: key }))).code).toBe(
      'PG_BACKUP_TAMPERED',
    );
    // drop-existing verifies in full before it drops anything.
    expect(
      (await errorOf(restorePostgres({ catalog, backup: tampered.id, target: pg.url('victim'), keys: key, dropExisting: true }))).code,
    ).toBe('PG_BACKUP_TAMPERED');
    expect(await dumpPlain(pg, 'victim')).toBe(victimDump);
    expect(await drkitDatabases()).toEqual([]);

    // A wrong key is refused before anything is created.
    const wrongKey = await errorOf(
      restorePostgres({ catalog, backup: appBackup.id, target: pg.url('victim'), keys: masterKey(generateKey()) }),
    );
    expect(wrongKey.code).toBe('PG_WRONG_KEY');
    expect(wrongKey.message).toContain(key.id);
    expect(await drkitDatabases()).toEqual([]);
    await catalog.delete(tampered);
    await dropDatabase(pg, 'victim');
  });

  it('a restore killed midway leaves the original intact and usable; the next restore clears its leftover', async () => {
    await copyOf('bench', 'ledger');
    await query(pg, 'ledger', 'DELETE FROM pgbench_branches WHERE bid = 1 AND false');
    const before = await dumpPlain(pg, 'ledger');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions',
        '@drkit/source',
        RESTORE_CHILD,
        JSON.stringify({ storeRoot, keyHex: key.key.toString('hex'), target: pg.url('ledger'), backup: benchBackup.id }),
      ],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const seen: PgBackupEvent[] = [];
    let out = '';
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const line of lines) {
          const event = JSON.parse(line) as PgBackupEvent;
          seen.push(event);
          // pg_restore is writing into the shadow: kill the whole restore now.
          if (event.type === 'progress' && event.item && seen.some((e) => e.type === 'step' && e.step === 'restore')) {
            child.kill('SIGKILL');
            resolve();
          }
        }
      });
      child.once('exit', () => reject(new Error(`the restore ended before it could be killed:\n${err}`)));
    });
    await exited;
    expect(seen.some((e) => e.type === 'step' && e.step === 'swap')).toBe(false);

    // The original is untouched and takes queries and writes.
    expect(await dumpPlain(pg, 'ledger')).toBe(before);
    await query(pg, 'ledger', 'UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1');
    const leftovers = (await drkitDatabases()).filter((d) => d.startsWith('ledger_drkit_restore_'));
    expect(leftovers).toHaveLength(1);

    const events: PgBackupEvent[] = [];
    const result = await restorePostgres({
      catalog,
      backup: benchBackup.id,
      target: pg.url('ledger'),
      keys: key,
      keepDamaged: false,
      onEvent: (e) => events.push(e),
    });
    expect(result.backup.id).toBe(benchBackup.id);
    expect(events.some((e) => e.type === 'step' && e.step === 'cleanup' && e.message.includes(leftovers[0] as string))).toBe(true);
    expect(await drkitDatabases()).toEqual([]);
    await dropDatabase(pg, 'ledger');
  });

  it('drop-existing follows the plan literally, after verifying the backup and snapshotting the current database', async () => {
    await copyOf('app', 'crm');
    await query(pg, 'crm', 'DELETE FROM public.users WHERE id > 200');
    const events: PgBackupEvent[] = [];
    const result = await restorePostgres({
      catalog,
      backup: appBackup.id,
      target: pg.url('crm'),
      keys: key,
      dropExisting: true,
      onEvent: (e) => events.push(e),
    });
    expect(result.mode).toBe('drop-existing');
    expect(await dumpPlain(pg, 'crm')).toBe(appDump);
    const steps = events.filter((e) => e.type === 'step').map((e) => (e as { step: string }).step);
    expect(steps.slice(0, 1)).toEqual(['verify']);
    expect(steps.indexOf('snapshot')).toBeLessThan(steps.indexOf('drop'));
    expect(steps.indexOf('drop')).toBeLessThan(steps.indexOf('restore'));
    // The snapshot holds the state before the drop.
    const snapshot = result.snapshot?.manifest as Manifest;
    expect(snapshot.labels).toMatchObject({ snapshot: 'true', database: 'crm' });
    expect(fingerprintOf(snapshot).tables['public.users']).toBe(200);
    expect(result.snapshot?.complete).toBe(true);
    // The snapshot of the damaged state never becomes "latest".
    expect((await catalog.latest('postgres'))?.id).not.toBe(snapshot.id);
    await dropDatabase(pg, 'crm');
    await catalog.delete(snapshot);
  });

  it('jobs > 1 stages the decrypted dump privately, says so, and removes it; a full disk is refused first', async () => {
    const stageDir = await mkdtemp(join(tmpdir(), 'drkit-stage-'));
    dirs.push(stageDir);
    const events: PgBackupEvent[] = [];
    const result = await restorePostgres({
      catalog,
      backup: benchBackup.id,
      target: pg.url('bench_jobs'),
      keys: key,
      jobs: 2,
      stageDir,
      onEvent: (e) => events.push(e),
    });
    expect(result.staged).toMatch(new RegExp(`^${stageDir}/drkit-pg-stage-[^/]+/archive\\.dump$`));
    expect(events.some((e) => e.type === 'step' && e.step === 'stage' && /cannot run parallel jobs from a pipe/.test(e.message))).toBe(
      true,
    );
    expect(await readdir(stageDir)).toEqual([]);
    expect(await dumpPlain(pg, 'bench_jobs')).toBe(await dumpPlain(pg, 'bench'));
    await dropDatabase(pg, 'bench_jobs');

    // A 1 MB file system cannot hold the dump: refused before anything is written or created.
    const tiny = join(root, 'tiny');
    await mkdir(tiny);
    await new Promise<void>((resolve, reject) =>
      spawn('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tiny]).once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`mount exited ${code}`)),
      ),
    );
    try {
      const full = await errorOf(
        restorePostgres({ catalog, backup: benchBackup.id, target: pg.url('bench_jobs'), keys: key, jobs: 2, stageDir: tiny }),
      );
      expect(full.code).toBe('PG_NOT_ENOUGH_DISK');
      expect(full.message).toMatch(/needs about \d+ MB in .*tiny, only [01] MB is free/);
      expect(await readdir(tiny)).toEqual([]);
      expect(await databaseExists(pg, 'bench_jobs')).toBe(false);
      expect(await drkitDatabases()).toEqual([]);
    } finally {
      await new Promise<void>((resolve) => spawn('umount', [tiny]).once('exit', () => resolve()));
    }
  });

  it('parses pg_restore errors: a missing role fails the restore unless that class is allowed', async () => {
    await query(pg, 'postgres', 'CREATE ROLE report_owner');
    await createDatabase(pg, 'reports');
    await query(pg, 'reports', 'CREATE TABLE monthly (id int PRIMARY KEY, total numeric); INSERT INTO monthly VALUES (1, 10.5), (2, 20)');
    await query(pg, 'reports', 'ALTER TABLE monthly OWNER TO report_owner');
    const made = (await backup('reports', { globals: false })).manifest;
    await query(pg, 'reports', 'REASSIGN OWNED BY report_owner TO CURRENT_USER');
    await query(pg, 'postgres', 'DROP ROLE report_owner');
    await query(pg, 'reports', 'INSERT INTO monthly VALUES (3, 1)');

    const refused = await errorOf(restorePostgres({ catalog, backup: made.id, target: pg.url('reports'), keys: key }));
    expect(refused.code).toBe('PG_RESTORE_ERRORS');
    expect(refused.message).toContain('missing-role');
    expect(refused.details.errors).toEqual([
      expect.objectContaining({
        class: 'missing-role',
        message: 'role "report_owner" does not exist',
        command: 'ALTER TABLE public.monthly OWNER TO report_owner;',
      }),
    ]);
    expect(await count('reports', 'monthly')).toBe(3);
    expect(await drkitDatabases()).toEqual([]);

    const allowed = await restorePostgres({
      catalog,
      backup: made.id,
      target: pg.url('reports'),
      keys: key,
      allowErrors: ['missing-role'],
      keepDamaged: false,
    });
    expect(allowed.allowedErrors.map((e) => e.class)).toEqual(['missing-role']);
    expect(allowed.warnings.some((w) => w.includes('role "report_owner" does not exist'))).toBe(true);
    expect(await count('reports', 'monthly')).toBe(2);
    await expect(
      restorePostgres({ catalog, backup: made.id, target: pg.url('reports'), keys: key, allowErrors: ['nope' as 'other'] }),
    ).rejects.toMatchObject({
      code: 'PG_OPTIONS_INVALID',
    });
    await dropDatabase(pg, 'reports');
  });

  it('a dry run decrypts and decodes in full, returns the plan, and changes nothing', async () => {
    const databases = await listDatabases(pg);
    const result = await restorePostgres({ catalog, backup: 'latest', target: pg.url('app'), keys: key, dryRun: true });
    expect(result.mode).toBe('dry-run');
    expect(result.verification?.ok).toBe(true);
    expect(result.verification?.checks.map((c) => c.level)).toEqual([1, 2]);
    expect(result.plan.join('\n')).toMatch(/shadow database app_drkit_restore_\*/);
    expect(result.plan.join('\n')).toMatch(/rename app to app_damaged_<time>/);
    expect(await listDatabases(pg)).toEqual(databases);
    expect(await dumpPlain(pg, 'app')).toBe(appDump);
  });

  it('says which backup is missing', async () => {
    const error = await errorOf(restorePostgres({ catalog, backup: '20200101T000000000Z-abcdef', target: pg.url('app'), keys: key }));
    expect(error.code).toBe('PG_BACKUP_NOT_FOUND');
    const empty = createCatalog(createFsStore(join(root, 'empty-store')));
    expect((await errorOf(restorePostgres({ catalog: empty, backup: 'latest', target: pg.url('app'), keys: key }))).message).toMatch(
      /no complete PostgreSQL backup in this store/,
    );
  });
});

describe('verifyPostgresBackup', () => {
  it('L1, L2 and L3 pass on a good backup and are recorded in its manifest', async () => {
    const made = (await backup('app', { globals: false })).manifest;
    const l1 = await verifyPostgresBackup({ catalog, backup: made.id, level: 1 });
    expect(l1.ok).toBe(true);
    expect(l1.checks).toEqual([{ level: 1, ok: true, detail: expect.stringContaining(`${made.object.size} bytes`) }]);

    const l2 = await verifyPostgresBackup({ catalog, backup: made.id, keys: key, level: 2 });
    expect(l2.ok).toBe(true);
    expect(l2.plainBytes).toBe(made.plainSize);
    expect(l2.toc?.byType['TABLE DATA']).toBeGreaterThanOrEqual(10);
    expect(l2.toc?.byType.TRIGGER).toBe(2);

    const l3 = await verifyPostgresBackup({ catalog, backup: made.id, keys: key, level: 3, scratch: pg.url('postgres') });
    expect(l3.ok).toBe(true);
    expect(l3.checks.map((c) => c.level)).toEqual([1, 2, 3]);
    expect(l3.differences).toEqual([]);
    expect(l3.backup.verification).toMatchObject({ status: 'passed', level: 'L3 restore and fingerprint' });
    expect((await catalog.get(made.id)).verification?.status).toBe('passed');
    expect(await drkitDatabases()).toEqual([]);
    await catalog.delete(made);
  });

  it('a tampered backup fails at the first level that can see it, is recorded failed, and "latest" skips it', async () => {
    const good = (await backup('app', { globals: false })).manifest;
    const bad = (await backup('app', { globals: false })).manifest;
    const path = join(storeRoot, bad.object.key);
    const bytes = await readFile(path);
    bytes[bytes.length - 50] = (bytes[bytes.length - 50] as number) ^ 1;
    await writeFile(path, bytes);

    const l1 = await verifyPostgresBackup({ catalog, backup: bad.id, level: 1 });
    expect(l1.ok).toBe(false);
    expect(l1.error?.code).toBe('PG_BACKUP_TAMPERED');
    expect(l1.backup.verification).toMatchObject({ status: 'failed', level: 'L1 stored bytes' });
    const l2 = await verifyPostgresBackup({ catalog, backup: bad.id, keys: key, level: 2 });
    expect(l2.ok).toBe(false);
    expect(l2.error?.code).toBe('PG_BACKUP_TAMPERED');
    expect((await catalog.latest('postgres'))?.id).toBe(good.id);
    // A wrong key is the verifier's problem, not the backup's: thrown, not recorded.
    await expect(verifyPostgresBackup({ catalog, backup: good.id, keys: masterKey(generateKey()), level: 2 })).rejects.toMatchObject({
      code: 'PG_WRONG_KEY',
    });
    expect((await catalog.get(good.id)).verification).toBeUndefined();
    await catalog.delete(bad);
    await catalog.delete(good);
  });

  it('needs keys for L2 and a scratch server for L3', async () => {
    await expect(verifyPostgresBackup({ catalog, backup: 'latest', level: 2 })).rejects.toMatchObject({ code: 'PG_OPTIONS_INVALID' });
    await expect(verifyPostgresBackup({ catalog, backup: 'latest', keys: key, level: 3 })).rejects.toMatchObject({
      code: 'PG_OPTIONS_INVALID',
    });
    await expect(verifyPostgresBackup({ catalog, backup: 'latest', keys: key, level: 4 as 3 })).rejects.toMatchObject({
      code: 'PG_OPTIONS_INVALID',
    });
  });
});

describe('snapshotCurrentState', () => {
  it('records what cannot be read instead of aborting, and what it saved restores', async () => {
    await createDatabase(pg, 'broken');
    await query(
      pg,
      'broken',
      `CREATE TYPE mood AS ENUM ('ok', 'bad');
       CREATE TABLE diary (id int PRIMARY KEY, mood mood);
       INSERT INTO diary SELECT g, CASE WHEN g % 2 = 0 THEN 'bad'::mood ELSE 'ok'::mood END FROM generate_series(1, 10) g;
       CREATE TABLE healthy (id int PRIMARY KEY); INSERT INTO healthy SELECT generate_series(1, 7)`,
    );
    // Catalog corruption: a label still used by rows disappears; reading those rows now fails.
    await query(pg, 'broken', "DELETE FROM pg_enum WHERE enumlabel = 'bad' AND enumtypid = 'mood'::regtype");

    const events: PgBackupEvent[] = [];
    const snapshot = await snapshotCurrentState({
      url: pg.url('broken'),
      catalog,
      keys: key,
      reason: 'before recovery',
      onEvent: (e) => events.push(e),
    });
    expect(snapshot.complete).toBe(false);
    expect(snapshot.excludedTableData).toEqual(['public.diary']);
    expect(snapshot.failures).toEqual([{ object: 'public.diary', error: expect.stringMatching(/invalid internal value for enum/) }]);
    expect(snapshot.attempts).toBe(2);
    expect(events.some((e) => e.type === 'warning' && e.message.includes('public.diary'))).toBe(true);
    const manifest = snapshot.manifest as Manifest;
    expect(manifest.labels).toMatchObject({ snapshot: 'true', reason: 'before recovery' });
    expect(fingerprintOf(manifest).excludedTableData).toEqual(['public.diary']);

    // What was saved comes back: the healthy table with its rows, the broken one empty.
    await restorePostgres({ catalog, backup: manifest.id, target: pg.url('broken_saved'), keys: key });
    expect(await count('broken_saved', 'healthy')).toBe(7);
    expect(await count('broken_saved', 'diary')).toBe(0);
    await dropDatabase(pg, 'broken_saved');
    await dropDatabase(pg, 'broken');

    // Nothing reachable: nothing saved, and the reason, without throwing.
    const down = await snapshotCurrentState({ url: 'postgres://nobody:pw@127.0.0.1:1/x', catalog, keys: key });
    expect(down.manifest).toBeUndefined();
    expect(down.failures).toEqual([{ object: 'database', error: expect.stringMatching(/cannot reach PostgreSQL at 127\.0\.0\.1:1/) }]);
  });
});
