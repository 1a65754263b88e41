import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findRedisServer } from './binaries.js';
import { makeServiceDir, removeServiceDir, startService } from './process.js';
import { withPortRetry } from './retry.js';

const run = promisify(execFile);

// redis.conf takes double-quoted strings with C-style escapes.
function confValue(value: string | number): string {
  const text = String(value);
  return /^[\w./:-]+$/.test(text) ? text : `"${text.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, '\\n')}"`;
}

/** How the sandbox Redis persists its data. */
export type RedisPersistence = 'none' | 'rdb' | 'aof';

/** Options of {@link startRedis}. */
export interface RedisSandboxOptions {
  /** Path of redis-server. @default REDIS_SERVER, then PATH */
  serverPath?: string;
  /** Preferred TCP port; another free one is used if it is taken. @default a free port */
  port?: number;
  /** @default "none" */
  persistence?: RedisPersistence;
  /** Require this password (`requirepass`). @default none */
  password?: string;
  /** Extra redis.conf directives, e.g. `{ 'repl-diskless-sync-delay': 0 }`. */
  config?: Record<string, string | number>;
  /** @default 15000 */
  startTimeoutMs?: number;
}

/** A running sandbox redis-server and how to reach it. */
export interface RedisSandbox {
  readonly host: string;
  readonly port: number;
  readonly password: string | undefined;
  /** Path of the server's unix socket. */
  readonly socketPath: string;
  /** The server's working dir: dump.rdb and appendonly files live here. */
  readonly dataDir: string;
  /** File name of the RDB inside `dataDir`. */
  readonly dbFilename: string;
  /** Path of the redis-server binary in use. */
  readonly serverPath: string;
  /** The instance's temp dir, removed by `stop()`. */
  readonly dir: string;
  /** Server version, e.g. "7.0.15". */
  readonly version: string;
  /** `redis://` URL of database `db` (0 by default). */
  url(db?: number): string;
  readonly pid: number;
  readLog(bytes?: number): string;
  /** Shuts the server down and removes its dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a throwaway redis-server in a temp dir on a random free port of 127.0.0.1, with a
 * unix socket beside it. Stopped like every sandbox server (see `startPostgres`).
 * @throws SandboxError SANDBOX_BINARY_MISSING, SANDBOX_START_FAILED, SANDBOX_START_TIMEOUT, SANDBOX_PORT_UNAVAILABLE
 */
export async function startRedis(options: RedisSandboxOptions = {}): Promise<RedisSandbox> {
  const serverPath = findRedisServer(options.serverPath);
  const persistence = options.persistence ?? 'none';
  const dir = makeServiceDir('redis');
  try {
    const { stdout } = await run(serverPath, ['--version']);
    const version = /v=(\S+)/.exec(stdout)?.[1] ?? 'unknown';
    const socketPath = join(dir, 'redis.sock');
    const dbFilename = 'dump.rdb';
    const base: Record<string, string | number | string[]> = {
      bind: '127.0.0.1',
      'protected-mode': 'no',
      dir,
      dbfilename: dbFilename,
      unixsocket: socketPath,
      unixsocketperm: 700,
      daemonize: 'no',
      logfile: '',
      // Redis reads "save" as pairs of separate arguments, so it is written as they are.
      save: persistence === 'rdb' ? ['3600 1', '300 100', '60 10000'] : '',
      appendonly: persistence === 'aof' ? 'yes' : 'no',
      'enable-debug-command': 'local',
      ...(options.password === undefined ? {} : { requirepass: options.password }),
      ...options.config,
    };
    const { port, service } = await withPortRetry('redis-server', options.port, async (port, attempt) => {
      const confFile = join(dir, `redis-${attempt}.conf`);
      const conf = Object.entries({ ...base, port }).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(' ') : confValue(v)}`);
      writeFileSync(confFile, `${conf.join('\n')}\n`, { mode: 0o600 });
      const service = await startService({
        kind: 'redis',
        command: serverPath,
        args: [confFile],
        dir,
        logFile: join(dir, `redis-${attempt}.log`),
        ready: /Ready to accept connections/,
        stopSignal: 'SIGTERM',
        timeoutMs: options.startTimeoutMs ?? 15_000,
      });
      return { port, service };
    });
    const host = '127.0.0.1';
    const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
    return {
      host,
      port,
      password: options.password,
      socketPath,
      dataDir: dir,
      dbFilename,
      serverPath,
      dir,
      version,
      url: (db = 0) => `redis://${auth}${host}:${port}/${db}`,
      pid: service.pid,
      readLog: service.readLog,
      stop: service.stop,
    };
  } catch (error) {
    await removeServiceDir(dir);
    throw error;
  }
}
