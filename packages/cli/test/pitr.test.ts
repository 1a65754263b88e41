// Point-in-time recovery end to end, on a real PostgreSQL with archive_mode on: the real
// `drkit wal-push` binary is its archive_command and `drkit wal-fetch` the recovered server's
// restore_command. Rows are inserted at known times around a base backup and a moment T, the
// cluster is destroyed, and the recovery to T must hold exactly the rows committed before T.
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { generateKey, masterKey } from '@drkit/crypto-stream';
import {
  backupBase,
  isPgBackupError,
  type PgBackupError,
  pruneWal,
  restorePointInTime,
  verifyWalArchive,
  WAL_PREFIX,
} from '@drkit/postgres-backup';
import { type Catalog, createCatalog, createFsStore, type Store } from '@drkit/s3-store';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/index.js';
import { memoryIo } from './io.js';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

let dir: string;
let storeDir: string;
let keyFile: string;
let store: Store;
let catalog: Catalog;
const key = generateKey();
const keys = masterKey(key);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-pitr-'));
  // The server's account (not root) runs wal-push and wal-fetch: it must reach these.
  await chmod(dir, 0o755);
  storeDir = join(dir, 'store');
  await run('mkdir', ['-m', '777', storeDir]);
  keyFile = join(dir, 'wal.key');
  await writeFile(keyFile, `${key.toString('base64')}\n`, { mode: 0o644 });
  store = createFsStore(storeDir);
  catalog = createCatalog(store);
});

afterAll(async () => {
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const walCommand = (verb: 'wal-push' | 'wal-fetch', args: string) =>
  `'${process.execPath}' '${bin}' ${verb} --store 'file://${storeDir}' --key-file '${keyFile}' ${args}`;

/** A sandbox PostgreSQL archiving its WAL with drkit wal-push. */
function archivingPostgres(): Promise<PostgresSandbox> {
  return startPostgres({
    settings: { archive_mode: 'on', archive_command: walCommand('wal-push', '%p'), archive_timeout: 60, wal_level: 'replica' },
  });
}

async function query<T extends pg.QueryResultRow>(client: pg.Client, sql: string, values: unknown[] = []): Promise<T[]> {
  return (await client.query<T>(sql, values)).rows;
}

/** Inserts rows one transaction each, and returns their ids. */
async function insertRows(client: pg.Client, label: string, count: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    const [row] = await query<{ id: number }>(client, 'INSERT INTO events (label) VALUES ($1) RETURNING id', [`${label}-${i}`]);
    ids.push(row?.id as number);
  }
  return ids;
}

/** Switches to a new WAL segment and waits until the archiver has pushed the old one. */
async function archiveCurrentWal(client: pg.Client): Promise<string> {
  const [switched] = await query<{ wal: string }>(client, 'SELECT pg_walfile_name(pg_switch_wal()) AS wal');
  const wal = switched?.wal as string;
  let failed: string | null | undefined;
  for (let i = 0; i < 300; i++) {
    const [status] = await query<{ last: string | null; failed: string | null }>(
      client,
      'SELECT last_archived_wal AS last, last_failed_wal AS failed FROM pg_stat_archiver',
    );
    if (status?.last && status.last >= wal) return wal;
    failed = status?.failed;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`segment ${wal} was not archived within 30 s${failed ? ` (archive_command failed on ${failed})` : ''}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('point-in-time recovery', () => {
  let source: PostgresSandbox;
  let client: pg.Client;
  let beforeT: number[] = [];
  let afterT: number[] = [];
  let T: Date;
  let login: { user: string; password: string };

  beforeAll(async () => {
    source = await archivingPostgres();
    login = { user: source.user, password: source.password };
    client = new pg.Client(source.connection());
    await client.connect();
    await client.query(
      'CREATE TABLE events (id serial PRIMARY KEY, label text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())',
    );
    const first = await insertRows(client, 'before-base', 30);
    await backupBase({ url: source.url(), catalog, keys });
    const second = await insertRows(client, 'after-base', 30);
    await sleep(50);
    T = new Date();
    await sleep(50);
    afterT = await insertRows(client, 'after-T', 30);
    beforeT = [...first, ...second];
    await archiveCurrentWal(client);
    await client.end();
    // The disaster: the cluster and its data directory are gone.
    await source.stop();
  }, 120_000);

  it('recovers to T: exactly the rows committed before T, on a new timeline, from the archive', async () => {
    const into = join(dir, 'recovered-t');
    const recovered = await restorePointInTime({
      catalog,
      keys,
      target: { time: T },
      into,
      restoreCommand: walCommand('wal-fetch', '%f %p'),
      login,
      verify: async (c) => ({ ids: (await query<{ id: number }>(c, 'SELECT id FROM events ORDER BY id')).map((r) => r.id) }),
    });
    try {
      expect(recovered.checks.ids).toEqual(beforeT);
      expect(beforeT).toHaveLength(60);
      expect(recovered.timeline).toBe(2);
      expect(recovered.walRestored).toBeGreaterThan(0);
      expect(recovered.stoppedAt.reason).toMatch(/^before commit of transaction \d+, time /);
      expect(recovered.settings.recovery_target_time).toBe(`${T.toISOString().replace('T', ' ').replace('Z', '')}+00`);
      // It is a working primary: it takes writes.
      const c = new pg.Client({ host: '127.0.0.1', port: recovered.port, ...login, database: 'postgres' });
      await c.connect();
      try {
        await c.query("INSERT INTO events (label) VALUES ('after-recovery')");
        expect((await query<{ n: string }>(c, 'SELECT count(*) AS n FROM events'))[0]?.n).toBe('61');
      } finally {
        await c.end();
      }
    } finally {
      await recovered.stop();
    }
  }, 120_000);

  it("recovers to 'latest': every archived row, the ones after T too", async () => {
    const recovered = await restorePointInTime({
      catalog,
      keys,
      target: 'latest',
      into: join(dir, 'recovered-latest'),
      restoreCommand: walCommand('wal-fetch', '%f %p'),
      login,
      keepRunning: false,
      verify: async (c) => ({ ids: (await query<{ id: number }>(c, 'SELECT id FROM events ORDER BY id')).map((r) => r.id) }),
    });
    expect(recovered.checks.ids).toEqual([...beforeT, ...afterT]);
  }, 120_000);

  it('follows the new timeline: the recovered server archives it, and the archive is continuous across the switch', async () => {
    const recovered = await restorePointInTime({
      catalog,
      keys,
      target: 'latest',
      into: join(dir, 'recovered-archiving'),
      restoreCommand: walCommand('wal-fetch', '%f %p'),
      login,
      archiveOff: false,
      settings: { archive_mode: 'on', archive_command: walCommand('wal-push', '%p') },
    });
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: recovered.port, ...login, database: 'postgres' });
      await c.connect();
      try {
        await c.query("INSERT INTO events (label) VALUES ('on-timeline-2')");
        const wal = await archiveCurrentWal(c);
        expect(wal.slice(0, 8)).toBe('00000002');
      } finally {
        await c.end();
      }
    } finally {
      await recovered.stop();
    }
    const [report] = await verifyWalArchive({ catalog, keys });
    expect(report?.timelines).toContainEqual(expect.objectContaining({ timeline: 2, parent: 1 }));
    expect(report?.bases[0]?.timelines).toEqual([1, 2]);
    expect(report?.bases[0]?.lastWal.slice(0, 8)).toBe('00000002');
    expect(report?.ok, report?.problems.join('; ')).toBe(true);
  }, 120_000);

  it('refuses a directory that is not empty and leaves it as it was', async () => {
    const into = join(dir, 'occupied');
    await run('mkdir', ['-p', into]);
    await writeFile(join(into, 'PG_VERSION'), '15\n');
    const error = await restorePointInTime({
      catalog,
      keys,
      target: { time: T },
      into,
      restoreCommand: 'false',
      login,
    }).catch((e: unknown) => e as PgBackupError);
    expect(isPgBackupError(error, 'PG_TARGET_DIR_NOT_EMPTY')).toBe(true);
    expect(await readdir(into)).toEqual(['PG_VERSION']);
  });

  it('refuses a time before the oldest base backup finished, and one past the archive, naming the window', async () => {
    const early = await restorePointInTime({
      catalog,
      keys,
      target: { time: new Date(T.getTime() - 3_600_000) },
      into: join(dir, 'too-early'),
      restoreCommand: 'false',
      login,
    }).catch((e: unknown) => e as PgBackupError);
    expect(isPgBackupError(early, 'PG_TARGET_OUT_OF_WINDOW')).toBe(true);
    const late = await restorePointInTime({
      catalog,
      keys,
      target: { time: new Date(Date.now() + 3_600_000) },
      into: join(dir, 'too-late'),
      restoreCommand: 'false',
      login,
    }).then(
      () => undefined,
      (e: unknown) => e as PgBackupError,
    );
    expect(isPgBackupError(late, 'PG_TARGET_OUT_OF_WINDOW')).toBe(true);
    expect(late?.message).toMatch(/recovers from .* to .*; choose a time in that window, or 'latest'/);
  });

  it('verifies the archive: continuous from the base backup, with the window it can reach', async () => {
    const [report] = await verifyWalArchive({ catalog, keys });
    expect(report?.ok).toBe(true);
    expect(report?.gaps).toEqual([]);
    expect(report?.bases).toHaveLength(1);
    const window = report?.windows[0];
    expect(window && window.from <= T && window.to >= T).toBe(true);
  });
});

describe('wal-push and wal-fetch', () => {
  let sandbox: PostgresSandbox;
  let segment: string;
  let systemId: string;

  beforeAll(async () => {
    sandbox = await archivingPostgres();
    const client = new pg.Client(sandbox.connection());
    await client.connect();
    await client.query('CREATE TABLE t AS SELECT generate_series(1, 1000) AS n');
    const [row] = await query<{ wal: string }>(client, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS wal');
    segment = row?.wal as string;
    const [sys] = await query<{ id: string }>(client, 'SELECT system_identifier::text AS id FROM pg_control_system()');
    systemId = sys?.id as string;
    await client.end();
  }, 60_000);

  afterAll(async () => {
    await sandbox?.stop();
  });

  const drkit = (args: string[]) =>
    run(process.execPath, [bin, ...args], { env: { ...process.env, DRKIT_KEY_FILE: keyFile } }).then(
      ({ stderr }) => ({ code: 0, stderr }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );

  it('is idempotent for the same content and refuses to overwrite different content', async () => {
    const dirWal = join(dir, 'pushed');
    await run('mkdir', ['-p', join(dirWal, 'global')]);
    // A copy: the server may still be writing into its current segment.
    const original = await readFile(join(sandbox.dataDir, 'pg_wal', segment));
    const copy = join(dirWal, segment);
    await writeFile(copy, original);
    const storeUrl = `file://${join(dir, 'push-store')}`;
    const first = await drkit(['wal-push', '--store', storeUrl, copy]);
    expect(first).toEqual({ code: 0, stderr: '' });
    expect(await drkit(['wal-push', '--store', storeUrl, copy])).toEqual({ code: 0, stderr: '' });
    const stored = join(dir, 'push-store', WAL_PREFIX, systemId, segment);
    const before = await readFile(stored);
    // Same name, other bytes: the one archived stays.
    const changed = await readFile(copy);
    changed.writeUInt8(changed.readUInt8(changed.length - 1) ^ 0xff, changed.length - 1);
    await writeFile(copy, changed);
    const conflict = await drkit(['wal-push', '--store', storeUrl, copy]);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain('PG_WAL_CONFLICT');
    expect((await readFile(stored)).equals(before)).toBe(true);
    // Fetched back, byte for byte.
    const fetched = join(dirWal, 'RECOVERYXLOG');
    expect((await drkit(['wal-fetch', '--store', storeUrl, '--system-id', systemId, segment, fetched])).code).toBe(0);
    expect((await readFile(fetched)).equals(original)).toBe(true);
  });

  it('wal-fetch exits 1 for a file the archive lacks, and 200 (fatal to recovery) for one that does not authenticate, writing nothing', async () => {
    const storeUrl = `file://${join(dir, 'fetch-store')}`;
    const copy = join(dir, segment);
    await writeFile(copy, await readFile(join(sandbox.dataDir, 'pg_wal', segment)));
    expect((await drkit(['wal-push', '--store', storeUrl, copy])).code).toBe(0);
    const missing = await drkit(['wal-fetch', '--store', storeUrl, '--system-id', systemId, '00000009000000000000000A', join(dir, 'x')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('is not in the archive');
    const stored = join(dir, 'fetch-store', WAL_PREFIX, systemId, segment);
    const bytes = await readFile(stored);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 100) ^ 0x01, bytes.length - 100);
    await writeFile(stored, bytes);
    const out = join(dir, 'fetched-tampered');
    const tampered = await drkit(['wal-fetch', '--store', storeUrl, '--system-id', systemId, segment, out]);
    expect(tampered.code).toBe(200);
    expect(tampered.stderr).toContain('SEAL_CHUNK_TAMPERED');
    expect((await readdir(dir)).filter((n) => n.startsWith('fetched-tampered') || n.includes('.drkit-'))).toEqual([]);
  });

  it('refuses a path that is not a WAL file name, and fails (so PostgreSQL retries) when the store is unusable', async () => {
    const wrong = await drkit(['wal-push', '--store', `file://${join(dir, 'x-store')}`, '/etc/passwd']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('PG_WAL_NAME_INVALID');
    const copy = join(dir, segment);
    // A store whose root is under a regular file: every write fails.
    const broken = await drkit(['wal-push', '--store', `file://${keyFile}/store`, copy]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('STORE_IO');
  });

  it("archives the server's own segments as its archive_command", async () => {
    const client = new pg.Client(sandbox.connection());
    await client.connect();
    try {
      const wal = await archiveCurrentWal(client);
      const names = await readdir(join(storeDir, WAL_PREFIX, systemId));
      expect(names).toContain(wal);
    } finally {
      await client.end();
    }
  }, 60_000);
});

describe('WAL retention and gaps', () => {
  it('reports a base backup after which nothing was archived (archive_command missing or failing), once the grace period is over', async () => {
    const local = await mkdtemp(join(dir, 'no-archive-'));
    const localStore = createFsStore(local);
    try {
      const localCatalog = createCatalog(localStore);
      const finished = new Date('2026-11-22T02:00:05Z');
      await localCatalog.put({
        kind: 'postgres-base',
        createdAt: new Date('2026-11-22T02:00:00Z'),
        source: { description: 'a base backup with no WAL after it' },
        tool: { name: 'drkit', version: '0.1.0' },
        compression: 'zstd',
        encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: 'test' },
        body: Buffer.from('not a real tar'),
        fingerprint: {
          systemId: '7000000000000000001',
          timeline: 1,
          startLsn: '0/2000028',
          stopLsn: '0/2000100',
          startWal: '000000010000000000000002',
          stopWal: '000000010000000000000002',
          walSegmentSize: 16 * 1024 * 1024,
          startedAt: '2026-11-22T02:00:00.000Z',
          stoppedAt: finished.toISOString(),
        },
      });
      const soon = await verifyWalArchive({ catalog: localCatalog, keys, now: () => new Date(finished.getTime() + 60_000) });
      expect(soon[0]?.problems).toEqual([]);
      const [late] = await verifyWalArchive({ catalog: localCatalog, keys, now: () => new Date(finished.getTime() + 3_600_000) });
      expect(late?.ok).toBe(false);
      expect(late?.problems[0]).toContain('no WAL has been archived since base backup');
    } finally {
      await localStore.close();
    }
  });

  it('prunes WAL older than the oldest kept base backup, keeps what it needs, and reports a gap', async () => {
    const local = await mkdtemp(join(dir, 'retention-'));
    await chmod(local, 0o777);
    const localStore = createFsStore(local);
    const localCatalog = createCatalog(localStore);
    const command = `'${process.execPath}' '${bin}' wal-push --store 'file://${local}' --key-file '${keyFile}' %p`;
    const server = await startPostgres({ settings: { archive_mode: 'on', archive_command: command, wal_level: 'replica' } });
    const client = new pg.Client(server.connection());
    await client.connect();
    try {
      await client.query('CREATE TABLE r (n int)');
      const first = await backupBase({ url: server.url(), catalog: localCatalog, keys });
      for (let i = 0; i < 3; i++) {
        await client.query('INSERT INTO r VALUES (1)');
        await archiveCurrentWal(client);
      }
      const second = await backupBase({ url: server.url(), catalog: localCatalog, keys });
      await client.query('INSERT INTO r VALUES (2)');
      await archiveCurrentWal(client);
      const systemId = first.base.systemId;
      const all = (await readdir(join(local, WAL_PREFIX, systemId))).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
      expect((all[0] ?? '') <= first.base.startWal).toBe(true);

      // Both base backups kept: nothing the first needs goes.
      const keepBoth = await pruneWal({ catalog: localCatalog });
      expect(keepBoth[0]?.deleted.filter((n) => /^[0-9A-F]{24}$/.test(n) && n >= first.base.startWal)).toEqual([]);

      // The first base backup dropped by retention: its WAL goes, the second's stays.
      await localCatalog.delete(first.manifest);
      const [pruned] = await pruneWal({ catalog: localCatalog });
      const left = (await readdir(join(local, WAL_PREFIX, systemId))).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
      expect(pruned?.keepFrom).toBe(second.base.startWal);
      expect(left.every((n) => n >= second.base.startWal)).toBe(true);
      expect(pruned?.deleted.length).toBeGreaterThan(0);
      expect(pruned?.deleted.every((n) => n.slice(0, 24) < second.base.startWal)).toBe(true);

      // A segment lost after the base backup is a gap, and the window ends before it.
      await client.query('INSERT INTO r VALUES (3)');
      const lastWal = await archiveCurrentWal(client);
      await client.query('INSERT INTO r VALUES (4)');
      await archiveCurrentWal(client);
      await rm(join(local, WAL_PREFIX, systemId, lastWal));
      const [report] = await verifyWalArchive({ catalog: localCatalog, keys });
      expect(report?.ok).toBe(false);
      expect(report?.gaps).toEqual([lastWal]);
      expect(report?.problems[0]).toContain(`WAL segment ${lastWal} is missing`);
    } finally {
      await client.end();
      await server.stop();
      await localStore.close();
    }
  }, 120_000);
});

describe('the drkit commands', () => {
  it('backup postgres-base, restore point-in-time --to, wal verify and wal prune, as an operator runs them', async () => {
    const local = await mkdtemp(join(dir, 'commands-'));
    await chmod(local, 0o777);
    const storeUrl = `file://${local}`;
    const env = { DRKIT_STORE: storeUrl, DRKIT_KEY_FILE: keyFile };
    const drkit = async (argv: string[], extra: NodeJS.ProcessEnv = {}) => {
      const io = memoryIo({ ...env, ...extra });
      const code = await main(argv, io);
      return { code, out: io.out(), err: io.err() };
    };
    const command = `'${process.execPath}' '${bin}' wal-push --store '${storeUrl}' --key-file '${keyFile}' %p`;
    const server = await startPostgres({ settings: { archive_mode: 'on', archive_command: command, wal_level: 'replica' } });
    const client = new pg.Client(server.connection());
    await client.connect();
    let to: Date;
    try {
      await client.query('CREATE TABLE orders (id serial PRIMARY KEY)');
      await client.query('INSERT INTO orders SELECT FROM generate_series(1, 10)');
      const base = await drkit(['backup', 'postgres-base', '--url', server.url()]);
      expect(base.code).toBe(0);
      expect(base.out.trim()).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}$/);
      expect(base.err).not.toContain(server.password);
      await client.query('INSERT INTO orders SELECT FROM generate_series(1, 5)');
      await sleep(50);
      to = new Date();
      await sleep(50);
      await client.query('INSERT INTO orders SELECT FROM generate_series(1, 7)');
      await archiveCurrentWal(client);
    } finally {
      await client.end();
      await server.stop();
    }

    const verified = await drkit(['wal', 'verify']);
    expect(verified.code).toBe(0);
    expect(verified.out).toMatch(/recovery window: \S+ to \S+/);

    const noZone = await drkit(['restore', 'point-in-time', '--to', '2026-11-22 10:00', '--into', join(local, 'x'), '--url', server.url()]);
    expect(noZone.code).toBe(2);
    expect(noZone.err).toContain('needs a time with its zone');

    const into = join(dir, 'commands-recovered');
    const restored = await drkit(['restore', 'point-in-time', '--to', to.toISOString(), '--into', into, '--url', server.url('postgres')]);
    expect(restored.code, restored.err).toBe(0);
    expect(restored.err).not.toContain(server.password);
    const port = Number(restored.out.trim());
    const check = new pg.Client({ host: '127.0.0.1', port, user: server.user, password: server.password, database: 'postgres' });
    await check.connect();
    try {
      expect((await query<{ n: string }>(check, 'SELECT count(*) AS n FROM orders'))[0]?.n).toBe('15');
    } finally {
      await check.end();
      // The recovered server runs as the data directory's owner: stop it as that account.
      const owner = await stat(into);
      await run(join(server.binDir, 'pg_ctl'), ['stop', '-D', into, '-m', 'fast'], { uid: owner.uid, gid: owner.gid });
    }

    const pruned = await drkit(['wal', 'prune', '--dry-run']);
    expect(pruned.code).toBe(0);
    expect(pruned.out).toMatch(/would delete \d+ files before [0-9A-F]{24}; \d+ kept/);
  }, 120_000);
});
