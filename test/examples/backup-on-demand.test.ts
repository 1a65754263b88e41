// examples/backup-on-demand against real PostgreSQL and S3 (s3rver): the bearer token, a
// backup taken on request that the catalog holds and that decodes in full (L2), one backup at
// a time, the listing, a dependency failure as the package's error code, the process refusing
// to start without a key, and no secret in any answer or log line.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { generateKey, loadKeys } from '@drkit/crypto-stream';
import { POSTGRES_KIND, type SealKeys, verifyPostgresBackup } from '@drkit/postgres-backup';
import { type Catalog, createCatalog, openStore, type Store } from '@drkit/s3-store';
import { type S3Sandbox, startSandbox } from '@drkit/sandbox';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BackupCreated,
  type BackupListed,
  type BackupService,
  type BackupServiceLogEntry,
  createBackupService,
  ServiceConfigError,
  serviceOptionsFromEnv,
} from '../../examples/backup-on-demand/src/app.ts';

const SERVER = fileURLToPath(new URL('../../examples/backup-on-demand/src/server.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TOKEN = randomBytes(24).toString('hex');
const KEY = generateKey().toString('base64');
const ROWS = 250;

let sandbox: Awaited<ReturnType<typeof startSandbox<{ redis: false }>>>;
let s3: S3Sandbox;
let databaseUrl: string;
let dbPassword: string;
let storeUrl: string;
let store: Store;
let catalog: Catalog;
let keys: SealKeys;
let service: BackupService;
const logs: BackupServiceLogEntry[] = [];
/** Every body the services answered, searched for secrets at the end. */
const bodies: string[] = [];
const children = new Set<ChildProcess>();

beforeAll(async () => {
  sandbox = await startSandbox({ redis: false });
  s3 = sandbox.s3;
  const admin = new pg.Client(sandbox.postgres.connection());
  await admin.connect();
  await admin.query('CREATE DATABASE shop');
  await admin.end();
  databaseUrl = sandbox.postgres.url('shop');
  dbPassword = decodeURIComponent(new URL(databaseUrl).password);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  await db.query('CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, total numeric(10,2) NOT NULL)');
  await db.query(`INSERT INTO orders (customer, total) SELECT 'customer-' || g, g * 1.25 FROM generate_series(1, ${ROWS}) g`);
  await db.end();

  storeUrl = `s3://drkit/on-demand?region=${s3.region}&endpoint=${s3.endpoint}`;
  store = openStore(storeUrl, { s3: { credentials: s3.clientConfig().credentials } });
  catalog = createCatalog(store);
  keys = await loadKeys({ env: { DRKIT_KEY: KEY } });
  service = await createBackupService({ databaseUrl, store, keys, adminToken: TOKEN, log: (entry) => logs.push(entry) });
}, 120_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await service?.close();
  await sandbox?.stop();
}, 120_000);

/** Whichever answer a request got: a backup, the list, or an error. */
type Answer = BackupCreated & { backups: BackupListed[]; error: { code: string; message: string } };

/** One request; the body is kept for the secret search. */
async function call(base: string, method: string, token?: string): Promise<{ status: number; body: Answer; headers: Headers }> {
  const response = await fetch(`${base}/admin/backups`, {
    method,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  const text = await response.text();
  bodies.push(text);
  return { status: response.status, body: JSON.parse(text) as Answer, headers: response.headers };
}

/** Starts server.ts as its own process and resolves with its exit and output. */
function runServer(env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [SERVER], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  return { child, exited, output: () => ({ stdout, stderr }) };
}

/** The environment of a server process, without any key variable a developer may have set. */
function serverEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const { DRKIT_KEY: _k, DRKIT_KEY_FILE: _f, DRKIT_PASSPHRASE: _p, DRKIT_OLD_KEYS: _o, PGPASSWORD: _pw, ...rest } = process.env;
  return { ...rest, ...extra };
}

describe('backup-on-demand', () => {
  it('refuses requests without the right bearer token (401) and takes no backup', async () => {
    const missing = await call(service.url, 'POST');
    expect(missing.status).toBe(401);
    expect(missing.body.error.code).toBe('UNAUTHORIZED');
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    // One character off (never the same one: a token ending in "0" once made this the right token).
    const wrong = await call(service.url, 'POST', `${TOKEN.slice(0, -1)}${TOKEN.endsWith('0') ? '1' : '0'}`);
    expect(wrong.status).toBe(401);
    expect((await call(service.url, 'GET', 'nope')).status).toBe(401);
    expect(await catalog.list({ kind: POSTGRES_KIND })).toEqual([]);
    expect(logs.filter((l) => l.event === 'unauthorized')).toHaveLength(3);
  });

  it('POST takes a backup: 201, stored in the catalog, and it decodes in full (L2)', async () => {
    const created = await call(service.url, 'POST', TOKEN);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ kind: 'postgres', tier: 'manual' });
    expect(created.body.tables['public.orders']).toBe(ROWS);

    // Independently of the answer: the catalog has that backup, of the size said.
    const manifest = await catalog.get(created.body.id, POSTGRES_KIND);
    expect(manifest.object.size).toBe(created.body.size);
    expect(manifest.labels?.trigger).toBe('backup-on-demand');
    const verified = await verifyPostgresBackup({ catalog, backup: created.body.id, keys, level: 2 });
    expect(verified.ok, JSON.stringify(verified.checks)).toBe(true);
  });

  it('runs one backup at a time: of two concurrent POSTs one is 409', async () => {
    const answers = await Promise.all([call(service.url, 'POST', TOKEN), call(service.url, 'POST', TOKEN)]);
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409]);
    const refused = answers.find((a) => a.status === 409);
    expect(refused?.body.error.code).toBe('BACKUP_IN_PROGRESS');
    // Free again once the first is done.
    expect((await call(service.url, 'POST', TOKEN)).status).toBe(201);
  });

  it('GET lists the postgres backups, newest first', async () => {
    const stored = (await catalog.list({ kind: POSTGRES_KIND })).map((m) => m.id).reverse();
    expect(stored).toHaveLength(3);
    const listed = await call(service.url, 'GET', TOKEN);
    expect(listed.status).toBe(200);
    expect(listed.body.backups.map((b) => b.id)).toEqual(stored);
    expect(listed.body.backups[0]).toMatchObject({ tier: 'manual', keyId: expect.any(String) });
    // The L2 verification of the first backup was recorded in its manifest.
    expect(listed.body.backups.at(-1)?.verification).toMatchObject({ status: 'passed' });
  });

  it('answers a dependency failure with the package error code, without the password', async () => {
    const broken = await createBackupService({
      databaseUrl: sandbox.postgres.url('no_such_database'),
      store,
      keys,
      adminToken: TOKEN,
    });
    try {
      const failed = await call(broken.url, 'POST', TOKEN);
      expect(failed.status).toBe(502);
      expect(failed.body.error.code).toBe('PG_DATABASE_MISSING');
      expect(failed.body.error.message).toMatch(/no_such_database/);
      expect((await call(broken.url, 'DELETE', TOKEN)).status).toBe(405);
    } finally {
      await broken.close();
    }
  });

  it('will not start without a backup key, or with a short token: it says which variable, exit 1', async () => {
    await expect(serviceOptionsFromEnv({ DATABASE_URL: databaseUrl, DRKIT_STORE: storeUrl, ADMIN_TOKEN: 'short' })).rejects.toThrow(
      ServiceConfigError,
    );
    const server = runServer(serverEnv({ DATABASE_URL: databaseUrl, DRKIT_STORE: storeUrl, ADMIN_TOKEN: TOKEN }));
    expect(await server.exited).toBe(1);
    expect(server.output().stderr).toMatch(/DRKIT_KEY is required/);
    expect(server.output().stdout).toBe('');

    const malformed = runServer(
      serverEnv({ DATABASE_URL: databaseUrl, DRKIT_STORE: storeUrl, ADMIN_TOKEN: TOKEN, DRKIT_KEY: 'not-a-key-at-all' }),
    );
    expect(await malformed.exited).toBe(1);
    expect(malformed.output().stderr).toMatch(/DRKIT_KEY/);
    expect(malformed.output().stderr).not.toContain('not-a-key-at-all');
    expect(malformed.output().stderr).not.toContain(dbPassword);
  });

  it('runs as a process from the environment (password from PGPASSWORD), and stops cleanly on SIGTERM', async () => {
    const withoutPassword = new URL(databaseUrl);
    withoutPassword.password = '';
    const { AWS_ENDPOINT_URL_S3: _endpoint, ...awsEnv } = s3.env();
    const server = runServer(
      serverEnv({
        ...awsEnv,
        DATABASE_URL: withoutPassword.href,
        PGPASSWORD: dbPassword,
        DRKIT_STORE: storeUrl,
        ADMIN_TOKEN: TOKEN,
        DRKIT_KEY: KEY,
      }),
    );
    const deadline = Date.now() + 30_000;
    let port: number | undefined;
    while (port === undefined && Date.now() < deadline) {
      const listening = server
        .output()
        .stdout.split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { event: string; port?: number })
        .find((l) => l.event === 'listening');
      port = listening?.port;
      if (port === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(port, server.output().stderr).toBeDefined();
    const created = await call(`http://127.0.0.1:${port}`, 'POST', TOKEN);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect((await catalog.get(created.body.id, POSTGRES_KIND)).fingerprint).toBeDefined();
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const { stdout, stderr } = server.output();
    expect(stdout).toContain('"event":"backup-finished"');
    for (const secret of [TOKEN, KEY, dbPassword]) expect(stdout + stderr).not.toContain(secret);
  });

  it('never puts a secret in an answer or a log line', () => {
    expect(bodies.length).toBeGreaterThan(8);
    const everything = [...bodies, ...logs.map((l) => JSON.stringify(l))].join('\n');
    for (const secret of [TOKEN, KEY, dbPassword, encodeURIComponent(dbPassword), s3.clientConfig().credentials.secretAccessKey])
      expect(everything).not.toContain(secret);
  });
});
