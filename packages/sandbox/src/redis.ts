import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findRedisServer } from './binaries.js';
import { SandboxError } from './errors.js';
import { isAddressInUse } from './ports.js';
import { makeServiceDir, removeServiceDir, ServiceStartFailure, startRestartableService } from './process.js';
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

/** A sandbox redis-server (running, or halted by `halt()`) and how to reach it. */
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
  /** Pid of the current redis-server process; undefined while halted (or if it died). */
  readonly pid: number | undefined;
  /** True while redis-server runs: after start-up and `start()`, not after `halt()` or `stop()`. */
  readonly running: boolean;
  /** The last bytes of the server's log; every run since `startRedis` appends to it. */
  readLog(bytes?: number): string;
  /**
   * Shuts the server down (SIGTERM, which saves the RDB first when persistence is `rdb`;
   * SIGKILL after 10 s) and keeps the dir, so that its data files can be replaced before
   * `start()`. The dir is still removed by `stop()`, at process exit, on signals and by the
   * reaper. Idempotent.
   */
  halt(): Promise<void>;
  /**
   * Starts the halted server again with the same config, data dir and port (clients hold
   * its URL, so another port is never chosen), and resolves once it accepts connections,
   * i.e. once it has loaded what is in `dataDir`. No-op while running.
   * @throws SandboxError SANDBOX_PORT_UNAVAILABLE when something else took the port meanwhile;
   * SANDBOX_START_FAILED, SANDBOX_START_TIMEOUT otherwise. The server then stays halted, so
   * `start()` can be tried again.
   */
  start(): Promise<void>;
  /** Shuts the server down if it runs and removes its dir. Idempotent; fine after `halt()`. */
  stop(): Promise<void>;
}

// A restart keeps its port whatever happens, so unlike the first start (withPortRetry) a
// taken port is the caller's problem to solve, and said so.
function restartError(error: unknown, port: number): unknown {
  if (!(error instanceof ServiceStartFailure)) return error;
  const last = error.log.trim().split('\n').slice(-8).join('\n');
  if (!error.timedOut && isAddressInUse(error.log)) {
    return new SandboxError(
      'SANDBOX_PORT_UNAVAILABLE',
      `redis-server cannot start again: port ${port} on 127.0.0.1 was taken by another process while it was halted. ` +
        'The port is kept because clients hold its URL: free it and call start() again, or stop() the sandbox.',
      { log: error.log },
    );
  }
  return error.timedOut
    ? new SandboxError(
        'SANDBOX_START_TIMEOUT',
        'redis-server did not become ready in time after start(); see the log (is the machine overloaded?)',
        {
          log: error.log,
        },
      )
    : new SandboxError('SANDBOX_START_FAILED', `redis-server exited while starting again; its log says why:\n${last}`, { log: error.log });
}

/**
 * Starts a throwaway redis-server in a temp dir on a random free port of 127.0.0.1, with a
 * unix socket beside it. Stopped like every sandbox server (see `startPostgres`); it can
 * also be halted and started again on the same port and data, e.g. to restore an RDB.
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
      const service = await startRestartableService({
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
      get pid() {
        return service.pid;
      },
      get running() {
        return service.running;
      },
      readLog: service.readLog,
      halt: service.halt,
      async start() {
        try {
          await service.start();
        } catch (error) {
          throw restartError(error, port);
        }
      },
      stop: service.stop,
    };
  } catch (error) {
    await removeServiceDir(dir);
    throw error;
  }
}
