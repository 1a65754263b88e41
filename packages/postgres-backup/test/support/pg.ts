import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { PostgresSandbox } from '@drkit/sandbox';
import pgModule from 'pg';

const run = promisify(execFile);

/** Quotes an SQL identifier (test-local: the tests must not lean on the code under test). */
function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * The environment of a client tool aimed at `database` of the sandbox: the inherited
 * environment without any PG* variable that could point the tool elsewhere, plus the sandbox's.
 */
function toolEnv(pg: PostgresSandbox, database: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PG')) env[name] = value;
  return { ...env, ...pg.env(database) };
}

/**
 * Runs a client program of the sandbox's bin dir against `database`. Resolves with its stdout;
 * rejects with an Error carrying the program's stderr when it exits non-zero.
 */
async function runTool(pg: PostgresSandbox, database: string, tool: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(join(pg.binDir, tool), args, {
      env: toolEnv(pg, database),
      maxBuffer: 512 * 1024 * 1024,
      timeout: 120_000,
    });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; code?: unknown; message?: string };
    const stderr = e.stderr?.trim();
    throw new Error(`${tool} ${args.join(' ')} failed on database "${database}" (exit ${String(e.code)}): ${stderr || e.message}`, {
      cause: error,
    });
  }
}

/**
 * Runs one statement (with optional parameters) on `database` of the sandbox with a client of
 * its own, and returns the rows. Defaults to the sandbox's maintenance database `postgres`.
 */
export async function query<T extends Record<string, unknown> = Record<string, unknown>>(
  pg: PostgresSandbox,
  database: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = await connectTo(pg, database);
  try {
    // No parameters: the simple protocol, which also runs several statements in one string.
    return (params.length > 0 ? await client.query<T>(sql, params) : await client.query<T>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * A connected client on `database` of the sandbox, with an `error` listener (the server
 * stopping at teardown reaches idle clients as an error event). The caller ends it.
 */
export async function connectTo(pg: PostgresSandbox, database: string): Promise<pgModule.Client> {
  const client = new pgModule.Client(pg.connection(database));
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
  return client;
}

/**
 * Creates database `name`, owned by the sandbox superuser: empty (from template1), or a copy of
 * `options.template` (which nobody may be connected to meanwhile).
 */
export async function createDatabase(pg: PostgresSandbox, name: string, options: { template?: string } = {}): Promise<void> {
  const template = options.template === undefined ? '' : ` TEMPLATE ${quoteIdent(options.template)}`;
  await query(pg, 'postgres', `CREATE DATABASE ${quoteIdent(name)}${template}`);
}

/** Drops database `name` if it exists, disconnecting whoever is still connected to it. */
export async function dropDatabase(pg: PostgresSandbox, name: string): Promise<void> {
  await query(pg, 'postgres', `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
}

/** True when a database called `name` exists on the sandbox. */
export async function databaseExists(pg: PostgresSandbox, name: string): Promise<boolean> {
  return (await query(pg, 'postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [name])).length > 0;
}

/** Names of the sandbox's databases, templates excluded, sorted. */
export async function listDatabases(pg: PostgresSandbox): Promise<string[]> {
  const rows = await query<{ datname: string }>(pg, 'postgres', 'SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname');
  return rows.map((r) => r.datname);
}

/**
 * Runs the SQL script `file` in `database` with psql (`-X`: no psqlrc; `ON_ERROR_STOP=1`: the
 * first error stops it and psql exits non-zero).
 * @throws Error carrying psql's stderr when the script fails
 */
export async function loadSql(pg: PostgresSandbox, database: string, file: string): Promise<void> {
  await runTool(pg, database, 'psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', file]);
}

/**
 * Fills `database` with pgbench's tables at scale `scale` (100,000 pgbench_accounts rows per
 * unit), with foreign keys between them, quietly.
 * @throws Error carrying pgbench's stderr when it fails
 */
export async function pgbenchInit(pg: PostgresSandbox, database: string, scale: number): Promise<void> {
  await runTool(pg, database, 'pgbench', ['-i', '-s', String(scale), '-q', '--foreign-keys']);
}

/**
 * The plain-text pg_dump of `database` (schema, data, comments, privileges), comparable across
 * databases: `dumpPlain(a) === dumpPlain(b)` when b is a faithful copy of a. The only lines
 * removed are the `\restrict KEY` / `\unrestrict KEY` lines newer pg_dump versions print with a
 * random key; nothing in a plain dump without --create names the database itself.
 * @throws Error carrying pg_dump's stderr when it fails
 */
export async function dumpPlain(pg: PostgresSandbox, database: string): Promise<string> {
  const text = await runTool(pg, database, 'pg_dump', ['--format=plain', '--no-password']);
  return text
    .split('\n')
    .filter((line) => !line.startsWith('\\restrict ') && !line.startsWith('\\unrestrict '))
    .join('\n');
}
