// PostgreSQL backup and restore of pgbench databases on one sandbox server (non-durable: no
// fsync, both sides share it): backupPostgres() (pg_dump --format=custom at drkit's default
// gzip level 1, streamed through AES-256-GCM into a file:// catalog, row counts taken in the
// same snapshot, read back and hashed, manifest last) against plain `pg_dump -Fc -f` and against the shell pipeline
// `pg_dump -Fc | gzip -9 | openssl enc`; restorePostgres() (a shadow database fed through
// pg_restore's stdin, checked against the fingerprint, renamed into place) against
// `CREATE DATABASE` + `pg_restore -d` of the same dump from a local file.
//
// Scales: DRKIT_BENCH_PG_SCALES (comma-separated pgbench scales, default 10,50,100) get a
// "backup vs pg_dump -f" case each (time and peak RSS per scale); the main scale
// (DRKIT_BENCH_PG_MAIN, default 50 if listed, else the largest) also gets the pipeline case
// and the restore case, plus "backup at gzip level 6": drkit with pg_dump's own default level
// against the same plain pg_dump, the like-for-like cost of what drkit adds (encryption,
// row counts, read-back, manifest).
// `DRKIT_BENCH_PG_SCALES=1 pnpm bench postgres --runs 5 --warmup 0` is a quick functional check (about 20 s); `pnpm bench postgres` the real run (about 6 min; up to
// about 20 GB in the temp dir: restored databases are kept until teardown, see makeRoom).
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { masterKey } from '@drkit/crypto-stream';
import { backupPostgres, readBackup, restorePostgres } from '@drkit/postgres-backup';
import { createCatalog, createFsStore } from '@drkit/s3-store';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import pg from 'pg';
import { type BenchCase, defineBench } from './lib/define.ts';
import { run, sh } from './lib/exec.ts';

interface Ctx {
  /** Temp dir for the dumps and stores, made in setup and removed in teardown. */
  dir: string;
  /** The sandbox server: enough to build a URL of any database on it. */
  server: { host: string; port: number; user: string; password: string };
  binDir: string;
  /** The drkit side's key, base64. */
  key: string;
  /** The restore case's inputs, made once in setup from the main scale's database. */
  restore: {
    /** file:// store holding one backup of the main scale. */
    store: string;
    backupId: string;
    /** The same dump, decrypted: what the peer's pg_restore reads. */
    dumpFile: string;
    /** pg_database_size of the source database: about what each restore writes. */
    databaseBytes: number;
  };
}

/** pgbench scales of the "backup vs pg_dump -f" cases. */
function parseScales(text: string | undefined): number[] {
  const scales = (text ?? '10,50,100')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (scales.length === 0 || !scales.every((s) => Number.isSafeInteger(s) && s >= 1))
    throw new RangeError(`DRKIT_BENCH_PG_SCALES must be comma-separated positive integers, got ${JSON.stringify(text)}`);
  return [...new Set(scales)].sort((a, b) => a - b);
}

const SCALES = parseScales(process.env.DRKIT_BENCH_PG_SCALES);
const MAIN = (() => {
  const text = process.env.DRKIT_BENCH_PG_MAIN;
  if (text === undefined || text === '') return SCALES.includes(50) ? 50 : (SCALES.at(-1) as number);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new RangeError(`DRKIT_BENCH_PG_MAIN must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
})();
/** Every database setup makes: one per scale, named s<scale>. */
const ALL_SCALES = [...new Set([...SCALES, MAIN])].sort((a, b) => a - b);

/** The peer pipeline's passphrase (openssl derives its key with PBKDF2, a few ms). */
const PASS = 'drkit-bench-not-a-secret';
/** Names of the databases the restore runs create (all dropped with the server in teardown). */
const DRKIT_RESTORED = 'bench_rd_';
const PEER_RESTORED = 'bench_rp_';

// The server lives in the parent (setup and teardown run there); its stop() cannot travel to
// the children in ctx. It is also stopped if the parent exits without teardown.
let server: PostgresSandbox | undefined;

const dbName = (scale: number) => `s${scale}`;

function dbUrl(ctx: Ctx, database: string): string {
  const { host, port, user, password } = ctx.server;
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`;
}

const keysOf = (ctx: Ctx) => masterKey(Buffer.from(ctx.key, 'base64'));
const tool = (ctx: Ctx, name: string) => join(ctx.binDir, name);
/** A name no other run uses: runs of the same side never share output. */
const unique = (prefix: string) => `${prefix}${process.pid}_${randomBytes(3).toString('hex')}`;

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Restored databases are kept until teardown (stopping the server removes them all at no
 * timed cost). Only if the disk runs short does a run drop the earlier ones first — timed, but
 * rare: each restore writes about `databaseBytes`.
 */
async function makeRoom(ctx: Ctx): Promise<void> {
  const fs = await statfs(ctx.dir);
  if (fs.bavail * fs.bsize > 4 * ctx.restore.databaseBytes + 4e9) return;
  await withClient(dbUrl(ctx, 'postgres'), async (client) => {
    const rows = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 OR left(datname, length($2)) = $2`,
      [DRKIT_RESTORED, PEER_RESTORED],
    );
    for (const { datname } of rows.rows) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  });
}

/** drkit's backup of s<scale> into a fresh file:// catalog, removed afterwards. */
async function drkitBackup(ctx: Ctx, scale: number, compressLevel?: number): Promise<void> {
  const root = await mkdtemp(join(ctx.dir, 'drkit-store-'));
  try {
    const result = await backupPostgres({
      url: dbUrl(ctx, dbName(scale)),
      catalog: createCatalog(createFsStore(root)),
      keys: keysOf(ctx),
      binDir: ctx.binDir,
      ...(compressLevel === undefined ? {} : { compressLevel }),
    });
    if (Object.keys(result.fingerprint.tables).length !== 4)
      throw new Error(`expected pgbench's 4 tables, got ${Object.keys(result.fingerprint.tables)}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * drkit's backup against plain `pg_dump -Fc -f`: at drkit's default gzip level (1), or with
 * `compressLevel` (6 is pg_dump's own default: the like-for-like overhead of drkit's work).
 */
function backupCase(scale: number, compressLevel?: number): BenchCase<Ctx> {
  return {
    name: compressLevel === undefined ? `backup (scale ${scale})` : `backup at gzip level ${compressLevel} (scale ${scale})`,
    drkit: (ctx) => drkitBackup(ctx, scale, compressLevel),
    peer: {
      name: 'pg_dump -Fc -f',
      run: async (ctx) => {
        const file = join(ctx.dir, `${unique('peer-')}.dump`);
        try {
          await run(tool(ctx, 'pg_dump'), ['-Fc', '-f', file, '-d', dbUrl(ctx, dbName(scale))]);
        } finally {
          await rm(file, { force: true });
        }
      },
    },
  };
}

function pipelineCase(scale: number): BenchCase<Ctx> {
  return {
    name: `backup vs shell pipeline (scale ${scale})`,
    drkit: (ctx) => drkitBackup(ctx, scale),
    peer: {
      name: 'pg_dump -Fc | gzip -9 | openssl enc -aes-256-cbc -pbkdf2',
      run: async (ctx) => {
        const file = join(ctx.dir, `${unique('peer-')}.dump.gz.enc`);
        process.env.PASS = PASS;
        try {
          await sh(
            '"$1" -Fc -d "$2" | gzip -9 | openssl enc -aes-256-cbc -pbkdf2 -pass env:PASS > "$3"',
            tool(ctx, 'pg_dump'),
            dbUrl(ctx, dbName(scale)),
            file,
          );
        } finally {
          await rm(file, { force: true });
        }
      },
    },
  };
}

function restoreCase(scale: number): BenchCase<Ctx> {
  return {
    name: `restore (scale ${scale})`,
    drkit: async (ctx) => {
      await makeRoom(ctx);
      // A target that does not exist: the shadow is renamed to it, nothing is dropped.
      const result = await restorePostgres({
        catalog: createCatalog(createFsStore(ctx.restore.store)),
        backup: ctx.restore.backupId,
        target: dbUrl(ctx, unique(DRKIT_RESTORED)),
        keys: keysOf(ctx),
        keepDamaged: false,
        binDir: ctx.binDir,
      });
      if (result.mode !== 'swap' || result.fingerprint === undefined) throw new Error(`unexpected restore result: ${result.mode}`);
    },
    peer: {
      name: 'CREATE DATABASE + pg_restore -d (local file)',
      run: async (ctx) => {
        await makeRoom(ctx);
        const name = unique(PEER_RESTORED);
        await withClient(dbUrl(ctx, 'postgres'), (client) => client.query(`CREATE DATABASE "${name}" TEMPLATE template0`));
        await run(tool(ctx, 'pg_restore'), ['-d', dbUrl(ctx, name), ctx.restore.dumpFile]);
      },
    },
  };
}

async function psql(server: PostgresSandbox, database: string, sql: string): Promise<void> {
  await run(join(server.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', server.url(database), '-c', sql]);
}

export default defineBench<Ctx>({
  name: 'postgres',
  description:
    `pgbench databases (scales ${SCALES.join(', ')}; main ${MAIN}) on one non-durable sandbox PostgreSQL 15, 2 cores shared by server, tools and Node: ` +
    'backupPostgres() (pg_dump -Fc, gzip level 1 unless the case says 6, streamed through AES-256-GCM into a file:// catalog with fsync, same-snapshot row counts, read-back SHA-256, ' +
    'globals artifact, manifest; store removed after each run) vs pg_dump -Fc -f (fsync, file removed) and vs pg_dump -Fc | gzip -9 | openssl enc -aes-256-cbc -pbkdf2 > file; ' +
    'restorePostgres() into a new database name (shadow via pg_restore stdin, fingerprint check, rename) vs CREATE DATABASE + pg_restore -d of the same dump decrypted to a local file; ' +
    'restored databases are dropped in teardown (with the server); peer RSS is the worker only, not pg_dump/pg_restore',
  async setup() {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-bench-postgres-'));
    try {
      const started = await startPostgres();
      server = started;
      for (const scale of ALL_SCALES) {
        await psql(started, 'postgres', `CREATE DATABASE ${dbName(scale)}`);
        // Server-side data generation (G): several times faster than client-side for scale 100.
        await run(join(started.binDir, 'pgbench'), [
          '-i',
          '-q',
          '-s',
          String(scale),
          '--init-steps=dtGvp',
          '-d',
          started.url(dbName(scale)),
        ]);
      }
      const key = randomBytes(32);
      const store = join(dir, 'restore-store');
      const catalog = createCatalog(createFsStore(store));
      const backup = await backupPostgres({ url: started.url(dbName(MAIN)), catalog, keys: masterKey(key), binDir: started.binDir });
      const dumpFile = join(dir, 'restore.dump');
      await pipeline(readBackup(catalog, backup.manifest, masterKey(key)), createWriteStream(dumpFile));
      return {
        dir,
        server: { host: started.host, port: started.port, user: started.user, password: started.password },
        binDir: started.binDir,
        key: key.toString('base64'),
        restore: { store, backupId: backup.manifest.id, dumpFile, databaseBytes: backup.fingerprint.database.sizeBytes },
      };
    } catch (error) {
      const running = server;
      server = undefined;
      await running?.stop();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  },
  async teardown(ctx) {
    const running = server;
    server = undefined;
    try {
      await rm(ctx.dir, { recursive: true, force: true });
    } finally {
      await running?.stop();
    }
  },
  cases: [
    backupCase(MAIN),
    backupCase(MAIN, 6),
    pipelineCase(MAIN),
    restoreCase(MAIN),
    ...SCALES.filter((s) => s !== MAIN).map((s) => backupCase(s)),
  ],
  // This 2-core VM spreads a scale-50 pg_dump over 1.8-3.5 s: 9 recorded rounds keep the
  // median steady enough for the 1.10x / 1.15x targets (about 6 min at the default scales).
  runs: 9,
});
