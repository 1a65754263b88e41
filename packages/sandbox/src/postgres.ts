import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findPostgresBinDir } from './binaries.js';
import { SandboxError } from './errors.js';
import { makeServiceDir, removeServiceDir, startService } from './process.js';
import { withPortRetry } from './retry.js';
import { unprivilegedUser } from './user.js';

const run = promisify(execFile);

/** Options of {@link startPostgres}. */
export interface PostgresSandboxOptions {
  /** Directory of initdb and postgres. @default PG_BIN, pg_config --bindir, PATH, /usr/lib/postgresql/<newest>/bin */
  binDir?: string;
  /** Preferred TCP port; another free one is used if it is taken. @default a free port */
  port?: number;
  /** The database superuser to create. @default "drkit" */
  superuser?: string;
  /** Its password (TCP connections authenticate with SCRAM). @default random */
  password?: string;
  /** When root: the OS account the server runs as. @default DRKIT_SANDBOX_USER, postgres, nobody */
  osUser?: string;
  /**
   * Keep PostgreSQL's durability settings. Off by default: a throwaway server does not need
   * fsync, and without it tests run several times faster.
   * @default false
   */
  durable?: boolean;
  /** Extra server settings, passed as `-c name=value`. */
  settings?: Record<string, string | number | boolean>;
  /** @default 30000 */
  startTimeoutMs?: number;
}

/** A running sandbox PostgreSQL server and how to reach it. */
export interface PostgresSandbox {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** The database initdb creates. */
  readonly database: string;
  /** Directory of the server's unix socket (local connections are trusted). */
  readonly socketDir: string;
  readonly dataDir: string;
  readonly binDir: string;
  /** The instance's temp dir, removed by `stop()`. */
  readonly dir: string;
  /** Major version of the server, e.g. "15". */
  readonly version: string;
  /** `postgres://` URL of `database` (or of another database on this server). */
  url(database?: string): string;
  /** Settings in the shape of pg's ClientConfig. */
  connection(database?: string): { host: string; port: number; user: string; password: string; database: string };
  /** PG* environment variables for psql, pg_dump and friends. */
  env(database?: string): Record<string, string>;
  /** The server's pid. */
  readonly pid: number;
  /** The last bytes of the server log. */
  readLog(bytes?: number): string;
  /** Fast shutdown, then removal of the data dir. Idempotent. */
  stop(): Promise<void>;
}

function setting(value: string | number | boolean): string {
  return typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value);
}

/**
 * Starts a throwaway PostgreSQL server: initdb into a temp dir, a random free port on
 * 127.0.0.1 and a unix socket in the same dir. When this process is root, the server runs
 * as an unprivileged account. Stopped (and its dir removed) by `stop()`, at process exit or
 * on SIGINT/SIGTERM, and by a reaper if this process is killed outright.
 * @throws SandboxError SANDBOX_BINARY_MISSING, SANDBOX_START_FAILED, SANDBOX_START_TIMEOUT, SANDBOX_PORT_UNAVAILABLE
 */
export async function startPostgres(options: PostgresSandboxOptions = {}): Promise<PostgresSandbox> {
  const binDir = findPostgresBinDir(options.binDir);
  const runAs = unprivilegedUser(options.osUser);
  const user = options.superuser ?? 'drkit';
  const password = options.password ?? randomBytes(12).toString('hex');
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const dir = makeServiceDir('postgres');
  const dataDir = join(dir, 'data');
  try {
    const pwfile = join(dir, 'pwfile');
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    if (runAs) {
      chownSync(dir, runAs.uid, runAs.gid);
      chownSync(pwfile, runAs.uid, runAs.gid);
    }
    const ids = runAs ? { uid: runAs.uid, gid: runAs.gid } : {};
    try {
      await run(
        join(binDir, 'initdb'),
        [
          '-D',
          dataDir,
          '-U',
          user,
          `--pwfile=${pwfile}`,
          '--auth-local=trust',
          '--auth-host=scram-sha-256',
          '-E',
          'UTF8',
          '--locale=C',
          '--no-sync',
          '--no-instructions',
        ],
        { cwd: dir, ...ids, timeout: timeoutMs },
      );
    } catch (error) {
      const detail = (error as { stderr?: string }).stderr?.trim() ?? String(error);
      throw new SandboxError('SANDBOX_START_FAILED', `initdb failed in ${dir}: ${detail}`, { cause: error, log: detail });
    }
    const version = readFileSync(join(dataDir, 'PG_VERSION'), 'utf8').trim();
    const settings: Record<string, string | number | boolean> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dir,
      max_connections: 50,
      shared_buffers: '32MB',
      ...(options.durable ? {} : { fsync: false, synchronous_commit: false, full_page_writes: false }),
      ...options.settings,
    };
    const flags = Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${setting(value)}`]);

    const { port, service } = await withPortRetry('PostgreSQL', options.port, async (port, attempt) => {
      const service = await startService({
        kind: 'postgres',
        command: join(binDir, 'postgres'),
        args: ['-D', dataDir, '-p', String(port), ...flags],
        dir,
        logFile: join(dir, `postgres-${attempt}.log`),
        ready: /database system is ready to accept connections/,
        // SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
        stopSignal: 'SIGINT',
        timeoutMs,
        ...ids,
      });
      return { port, service };
    });

    const host = '127.0.0.1';
    const connection = (database = 'postgres') => ({ host, port, user, password, database });
    return {
      host,
      port,
      user,
      password,
      database: 'postgres',
      socketDir: dir,
      dataDir,
      binDir,
      dir,
      version,
      pid: service.pid,
      url: (database = 'postgres') =>
        `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`,
      connection,
      env: (database = 'postgres') => ({
        PGHOST: host,
        PGPORT: String(port),
        PGUSER: user,
        PGPASSWORD: password,
        PGDATABASE: database,
      }),
      readLog: service.readLog,
      stop: service.stop,
    };
  } catch (error) {
    await removeServiceDir(dir);
    throw error;
  }
}
