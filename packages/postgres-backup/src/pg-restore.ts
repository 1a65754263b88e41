import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { periodicFullCollector } from '@drkit/crypto-stream';
import type pg from 'pg';
import { ident, libpqEnv, literal, type PgTarget, withDatabase } from './connection.js';
import { PgBackupError } from './errors.js';
import type { PgBackupEventListener } from './events.js';
import { applyDatabasePropertiesSql, type DatabaseProperties } from './fingerprint.js';
import { parseRestoreErrors, type RestoreErrorClass, type RestoreErrorEntry } from './restore-errors.js';
import { errorLines, startTool, type ToolInfo } from './tools.js';

/** What one pg_restore run reported. */
export interface PgRestoreRun {
  errors: RestoreErrorEntry[];
  exitCode: number;
  /** Stderr lines that explain a failure without a parsed error. */
  stderr: string[];
}

/**
 * Writes `source` into `sinks` at the pace of the slowest. A sink whose process stopped reading
 * (pg_restore --list, done after the table of contents) is dropped, not an error.
 */
export async function feed(source: AsyncIterable<Buffer>, sinks: Writable[]): Promise<void> {
  const live = new Set(sinks);
  for (const sink of sinks) sink.on('error', () => live.delete(sink));
  // Chunks queued in a child's pipe outlive young collections; free them now and then.
  const reclaim = periodicFullCollector();
  for await (const chunk of source) {
    reclaim();
    const waits: Promise<void>[] = [];
    for (const sink of live) {
      if (sink.destroyed) {
        live.delete(sink);
        continue;
      }
      if (!sink.write(chunk))
        waits.push(
          new Promise<void>((resolve) => {
            const done = () => {
              sink.off('drain', done);
              sink.off('close', done);
              sink.off('error', done);
              resolve();
            };
            sink.on('drain', done);
            sink.on('close', done);
            sink.on('error', done);
          }),
        );
    }
    if (waits.length > 0) await Promise.all(waits);
  }
  for (const sink of live) sink.end();
}

/** The conninfo of one database for pg_restore's -d (host, user, password come from the environment). */
function dbConninfo(database: string): string {
  return `dbname='${database.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/**
 * Runs pg_restore into `database` (which exists and is empty), reading the archive from
 * `source` (one job, through stdin) or from a staged file (any number of jobs). Errors are
 * parsed, not fatal here: the caller decides which classes it accepts.
 */
export async function runPgRestore(options: {
  tool: ToolInfo;
  server: PgTarget;
  database: string;
  source: AsyncIterable<Buffer> | { file: string };
  jobs: number;
  signal?: AbortSignal;
  onItem?: (item: string) => void;
}): Promise<PgRestoreRun> {
  const fromFile = 'file' in options.source;
  const args = [
    '--verbose',
    '--no-password',
    `--dbname=${dbConninfo(options.database)}`,
    ...(options.jobs > 1 ? [`--jobs=${options.jobs}`] : []),
    ...(fromFile ? [(options.source as { file: string }).file] : []),
  ];
  const proc = startTool(options.tool.path, args, {
    env: libpqEnv(withDatabase(options.server, options.database)),
    stdin: fromFile ? 'ignore' : 'pipe',
    ...(options.signal ? { signal: options.signal } : {}),
    onLine: (line) => {
      const m = /^pg_restore: (?:processing data for table|creating \w+(?: \w+)?) "([^"]+)"/.exec(line);
      if (m) options.onItem?.(m[1] as string);
    },
  });
  proc.child.stdout?.resume();
  let fed: Promise<void> = Promise.resolve();
  if (!fromFile) {
    const stdin = proc.child.stdin as Writable;
    fed = feed(options.source as AsyncIterable<Buffer>, [stdin]).catch((error: unknown) => {
      // The archive failed (tampered, wrong key, store gone): pg_restore must not finish it.
      proc.child.kill('SIGKILL');
      throw error;
    });
  }
  const [feeding, exit] = await Promise.allSettled([fed, proc.exited]);
  if (feeding.status === 'rejected') throw feeding.reason;
  const { code } = (exit as PromiseFulfilledResult<{ code: number }>).value;
  if (options.signal?.aborted) throw new PgBackupError('PG_ABORTED', 'the restore was aborted', { cause: options.signal.reason });
  const parsed = parseRestoreErrors(proc.stderrLines);
  return { errors: parsed.errors, exitCode: code, stderr: errorLines(proc.stderrLines) };
}

/**
 * Checks a pg_restore run: it failed outright, or reported errors of classes not in `allow`.
 * @throws PgBackupError PG_RESTORE_FAILED, PG_RESTORE_ERRORS (details.errors lists every one)
 */
export function checkRestoreRun(run: PgRestoreRun, allow: readonly RestoreErrorClass[], into: string): RestoreErrorEntry[] {
  const refused = run.errors.filter((e) => !allow.includes(e.class));
  if (refused.length > 0) {
    const classes = [...new Set(refused.map((e) => e.class))];
    throw new PgBackupError(
      'PG_RESTORE_ERRORS',
      `pg_restore into ${into} reported ${run.errors.length} error(s) (${classes.join(', ')}), e.g. ${refused[0]?.message}. ` +
        `Fix the cause (restore the backup's roles first for missing-role), or allow the class explicitly (allowErrors / --allow-errors ${classes.join(',')}) if that loss is acceptable`,
      { details: { errors: run.errors } },
    );
  }
  if (run.exitCode !== 0 && run.errors.length === 0)
    throw new PgBackupError(
      'PG_RESTORE_FAILED',
      `pg_restore into ${into} failed (exit code ${run.exitCode}): ${run.stderr.join(' | ') || 'no error message'}`,
      {
        details: { stderr: run.stderr },
      },
    );
  return run.errors;
}

/** A name of at most 63 bytes (PostgreSQL's limit) made of `base` cut short and `suffix`. */
export function databaseName(base: string, suffix: string): string {
  let cut = base;
  while (Buffer.byteLength(cut + suffix) > 63) cut = cut.slice(0, -1);
  return cut + suffix;
}

/** `20261122t031500` — a UTC time that sorts, for names of kept databases. */
export function stamp(at = new Date()): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, '')
    .toLowerCase();
}

/** A fresh shadow or scratch database name for `base`. */
export function shadowName(base: string, role: 'restore' | 'verify'): string {
  return databaseName(base, `_drkit_${role}_${randomBytes(3).toString('hex')}`);
}

/** True when the database exists. */
export async function databaseExists(client: pg.Client, name: string): Promise<boolean> {
  return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
}

/**
 * Creates an empty database for a restore, with the encoding, locale, owner and settings the
 * backup recorded. A recorded owner that does not exist here falls back to the connecting user
 * (with a warning); a locale this server lacks falls back to template0's.
 */
export async function createDatabaseFor(
  client: pg.Client,
  name: string,
  properties: DatabaseProperties | undefined,
  warn: (message: string) => void,
): Promise<void> {
  let owner = properties?.owner;
  if (owner && (await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [owner])).rowCount === 0) {
    warn(`role "${owner}", the owner of the backed-up database, does not exist here: ${name} is owned by the restoring user instead`);
    owner = undefined;
  }
  const base = `CREATE DATABASE ${ident(name)} TEMPLATE template0${owner ? ` OWNER ${ident(owner)}` : ''}`;
  const withLocale = properties
    ? `${base} ENCODING ${literal(properties.encoding)} LC_COLLATE ${literal(properties.collate)} LC_CTYPE ${literal(properties.ctype)}`
    : base;
  try {
    await client.query(withLocale);
  } catch (error) {
    if (withLocale === base) throw error;
    warn(
      `this server cannot create a database with encoding ${properties?.encoding} and locale ${properties?.collate} (${(error as Error).message}); ${name} uses the server's default locale`,
    );
    await client.query(base);
  }
  if (properties) {
    for (const sql of applyDatabasePropertiesSql(name, properties)) {
      try {
        await client.query(sql);
      } catch (error) {
        warn(`could not apply "${sql}" to ${name}: ${(error as Error).message}`);
      }
    }
  }
}

/** Drops a database, disconnecting its sessions. Never throws: a leftover is reported, not fatal. */
export async function dropDatabaseQuietly(client: pg.Client, name: string, warn: (message: string) => void): Promise<boolean> {
  try {
    await client.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
    return true;
  } catch (error) {
    warn(`could not drop ${name} (${(error as Error).message}): drop it by hand with DROP DATABASE ${ident(name)} WITH (FORCE)`);
    return false;
  }
}

/** Options for staging a decrypted dump to local disk. */
export interface StageOptions {
  dir?: string;
  /** Bytes the staged file will take (the manifest's plainSize). */
  expectedBytes: number;
  signal?: AbortSignal;
  onEvent?: PgBackupEventListener;
}

/**
 * Writes the plaintext archive to a private temp file for a parallel pg_restore (which needs a
 * seekable file), after checking there is room for it. Returns the path and a cleanup that
 * removes it — callers run it in `finally`: plaintext never outlives the restore.
 * @throws PgBackupError PG_NOT_ENOUGH_DISK before writing anything
 */
export async function stageArchive(
  source: AsyncIterable<Buffer>,
  options: StageOptions,
): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const root = options.dir ?? tmpdir();
  const fs = await statfs(root);
  const free = fs.bavail * fs.bsize;
  const needed = Math.ceil(options.expectedBytes * 1.05) + 64 * 1024 * 1024;
  if (free < needed)
    throw new PgBackupError(
      'PG_NOT_ENOUGH_DISK',
      `staging the dump for a parallel restore needs about ${mb(needed)} in ${root}, only ${mb(free)} is free: free some space, pass another stage directory, or restore with one job (streamed, no staging)`,
      { details: { needed, free, dir: root } },
    );
  const dir = await mkdtemp(join(root, 'drkit-pg-stage-'));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  const file = join(dir, 'archive.dump');
  try {
    await pipeline(source, createWriteStream(file, { mode: 0o600 }), ...(options.signal ? [{ signal: options.signal }] : []));
    return { file, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}
