import pg from 'pg';
import { parse } from 'pg-connection-string';
import { messageOf, PgBackupError } from './errors.js';

/**
 * Where a database is: a `postgres://user:password@host:port/db?sslmode=require` URL (a unix
 * socket directory goes in `?host=/var/run/postgresql`). The password stays inside this
 * module: client tools get it through their environment, never on their command line, and
 * every description of a target is the URL without it.
 */
export interface PgTarget {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  /** `postgres://user@host:port/db`: safe to log and to record in a manifest. */
  readonly description: string;
}

interface Parsed extends PgTarget {
  readonly password: string | undefined;
  readonly ssl: Record<string, string>;
}

const parsedTargets = new WeakMap<PgTarget, Parsed>();

/**
 * Parses a connection URL.
 * @throws PgBackupError PG_URL_INVALID (the message never repeats the password)
 */
export function pgTarget(url: string): PgTarget {
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\//i.test(url.trim()))
    throw new PgBackupError(
      'PG_URL_INVALID',
      'the database URL must look like postgres://user:password@host:5432/database (pass it with --url or DATABASE_URL)',
    );
  let options: ReturnType<typeof parse>;
  try {
    options = parse(url.trim());
  } catch (error) {
    throw new PgBackupError('PG_URL_INVALID', `the database URL does not parse (${redactUrl(messageOf(error))})`);
  }
  const database = options.database ?? '';
  if (database === '')
    throw new PgBackupError('PG_URL_INVALID', 'the database URL names no database: add it as the path, e.g. postgres://app@db:5432/app');
  const host = options.host ?? 'localhost';
  const port = Number(options.port ?? 5432);
  const user = options.user ?? process.env.PGUSER ?? 'postgres';
  const ssl: Record<string, string> = {};
  const at = url.indexOf('?');
  const query = new URLSearchParams(at === -1 ? '' : url.trim().slice(at + 1));
  for (const name of ['sslmode', 'sslrootcert', 'sslcert', 'sslkey']) {
    const value = query.get(name);
    if (value) ssl[name] = value;
  }
  const where = host.startsWith('/') ? `localhost:${port}?host=${host}` : `${host}:${port}`;
  const target: Parsed = {
    url: url.trim(),
    host,
    port,
    user,
    database,
    description: `postgres://${encodeURIComponent(user)}@${where}/${encodeURIComponent(database)}`,
    password: options.password ? options.password : undefined,
    ssl,
  };
  const view: PgTarget = Object.freeze({
    url: target.url,
    host,
    port,
    user,
    database,
    description: target.description,
    toJSON: () => target.description,
  });
  parsedTargets.set(view, target);
  return view;
}

function parsed(target: PgTarget): Parsed {
  const found = parsedTargets.get(target);
  if (!found) return parsedTargets.get(pgTarget(target.url)) as Parsed;
  return found;
}

/** The same server and credentials, another database (e.g. `postgres` for maintenance). */
export function withDatabase(target: PgTarget, database: string): PgTarget {
  const m = /^(postgres(?:ql)?:\/\/[^/?]*)(?:\/[^?]*)?(\?.*)?$/i.exec(target.url);
  if (!m) throw new PgBackupError('PG_URL_INVALID', `cannot change the database of ${target.description}`);
  return pgTarget(`${m[1]}/${encodeURIComponent(database)}${m[2] ?? ''}`);
}

/** Hides the password of any postgres URL inside `text`. */
export function redactUrl(text: string): string {
  return text.replace(/(postgres(?:ql)?:\/\/[^/\s:@]*):[^/\s@]+@/gi, '$1@');
}

/**
 * The environment of a libpq client tool (pg_dump, pg_restore, psql) for `target`: PGHOST,
 * PGPORT, PGUSER, PGPASSWORD, PGDATABASE and the TLS settings. Inherited PG* variables that
 * would redirect the tool elsewhere are removed.
 */
export function libpqEnv(target: PgTarget, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const p = parsed(target);
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) {
    if (/^PG(HOST|HOSTADDR|PORT|USER|PASSWORD|DATABASE|SERVICE|SSL\w*|OPTIONS|TARGETSESSIONATTRS)$/.test(name)) continue;
    env[name] = value;
  }
  env.PGHOST = p.host;
  env.PGPORT = String(p.port);
  env.PGUSER = p.user;
  env.PGDATABASE = p.database;
  if (p.password !== undefined) env.PGPASSWORD = p.password;
  if (p.ssl.sslmode) env.PGSSLMODE = p.ssl.sslmode;
  if (p.ssl.sslrootcert) env.PGSSLROOTCERT = p.ssl.sslrootcert;
  if (p.ssl.sslcert) env.PGSSLCERT = p.ssl.sslcert;
  if (p.ssl.sslkey) env.PGSSLKEY = p.ssl.sslkey;
  env.PGCONNECT_TIMEOUT ??= '10';
  env.PGAPPNAME = 'drkit';
  return env;
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** @default 10000 */
  connectTimeoutMs?: number;
  /** Shown in pg_stat_activity. @default "drkit" */
  applicationName?: string;
}

/**
 * A connected `pg.Client` for `target`. Connection failures become one PgBackupError whose
 * message names the user, host and database — never the password.
 * @throws PgBackupError PG_UNREACHABLE, PG_AUTH_FAILED, PG_DATABASE_MISSING, PG_PERMISSION_DENIED
 */
export async function connect(target: PgTarget, options: ConnectOptions = {}): Promise<pg.Client> {
  const p = parsed(target);
  const client = new pg.Client({
    host: p.host,
    port: p.port,
    user: p.user,
    database: p.database,
    ...(p.password !== undefined ? { password: p.password } : {}),
    ...(p.ssl.sslmode && p.ssl.sslmode !== 'disable' ? { ssl: p.ssl.sslmode === 'require' ? { rejectUnauthorized: false } : true } : {}),
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: options.applicationName ?? 'drkit',
  });
  // A server that goes away later (a restart, a terminated backend) must not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw connectionError(target, error);
  }
  return client;
}

/** Runs `body` with a connected client and closes it whatever happens. */
export async function withClient<T>(target: PgTarget, body: (client: pg.Client) => Promise<T>, options?: ConnectOptions): Promise<T> {
  const client = await connect(target, options);
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** The SQLSTATE of a server error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Turns a failure to connect (from pg or from a client tool's stderr) into a PgBackupError. */
export function connectionError(target: PgTarget, error: unknown, stderr = ''): PgBackupError {
  const state = sqlState(error);
  const text = redactUrl(`${messageOf(error)}\n${stderr}`);
  const who = `user "${target.user}" at ${target.host}:${target.port}`;
  if (state === '28P01' || state === '28000' || /password authentication failed|authentication failed|no password supplied/i.test(text))
    return new PgBackupError(
      'PG_AUTH_FAILED',
      `PostgreSQL refused ${who}: authentication failed. Check the password in the URL (it is not shown here) and the server's pg_hba.conf`,
      { cause: error },
    );
  if (state === '3D000' || /database ".*" does not exist/i.test(text))
    return new PgBackupError(
      'PG_DATABASE_MISSING',
      `database "${target.database}" does not exist on ${target.host}:${target.port}: check the database name in the URL`,
      { cause: error },
    );
  if (state === '42501' || /permission denied/i.test(text))
    return new PgBackupError('PG_PERMISSION_DENIED', `${who} lacks a privilege: ${firstLine(text)}`, { cause: error });
  return new PgBackupError(
    'PG_UNREACHABLE',
    `cannot reach PostgreSQL at ${target.host}:${target.port} (database "${target.database}"): ${firstLine(text)}. Is the server running and the address right?`,
    { cause: error },
  );
}

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? 'unknown error'
  );
}

/** Quotes an SQL identifier. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes an SQL string literal. */
export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
