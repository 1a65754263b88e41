// The DR drill's scratch environment: throwaway PostgreSQL and Redis servers on this machine
// (real ones, from the PostgreSQL and redis-server packages), an empty files dir, and the
// application as `vars.drill.app` says to start it. The drill rebuilds the platform into it
// with the complete-system-failure runbook, exactly as after a total loss, without touching
// the environment whose backups are drilled. Redis runs as a daemon with a pid file, because
// an RDB restore stops and starts the server through its service controller.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCommandController, createShell, type ServiceController, silentLogger } from '@drkit/runbook';
import { findRedisServer, getFreePort, type PostgresSandbox, startPostgres } from '@drkit/sandbox';

/** Options of {@link startScratch}. */
export interface ScratchOptions {
  /** Where the scratch dir is made. @default the system temp dir */
  parent?: string;
  /** The superuser of the scratch PostgreSQL: the source's user, so that ownership in the dump applies as it is. */
  postgresUser?: string;
}

/** A started scratch environment; `stop()` ends its processes and removes its files. */
export interface Scratch {
  dir: string;
  postgres: PostgresSandbox;
  redis: RedisDaemon;
  filesDir: string;
  envFile: string;
  /** The port the application is to listen on, and its pid file. */
  app: { port: number; pidFile: string; log: string };
  stop(): Promise<void>;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Whether a process is alive (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\)\s+Z\s/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** SIGTERMs what a pid file names, then SIGKILLs it after 5 s. */
async function stopPidFile(pidFile: string): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 1 || !alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

/** A redis-server running as a daemon, stopped and started through its `command` service entry. */
export interface RedisDaemon {
  port: number;
  url: string;
  /** Its `dir`, where the dump file lives. */
  dataDir: string;
  pidFile: string;
  /** The `command` service entry that starts and stops it. */
  service: Record<string, unknown>;
  /** A controller of that entry. */
  controller: ServiceController;
  /** Stops it (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/**
 * Starts redis-server as a daemon with its own config, data dir and pid file under `dir`,
 * saving nothing by itself (an RDB restore places the file; the server must not overwrite it).
 */
export async function startRedisDaemon(dir: string): Promise<RedisDaemon> {
  const dataDir = join(dir, 'data');
  const pidFile = join(dir, 'redis.pid');
  mkdirSync(dataDir, { recursive: true });
  const port = await getFreePort();
  const conf = join(dir, 'redis.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dataDir}`,
      'dbfilename dump.rdb',
      'daemonize yes',
      `pidfile ${pidFile}`,
      `logfile ${join(dir, 'redis.log')}`,
      'save ""',
      'appendonly no',
      // Backups pull the RDB over the replication protocol: no reason to wait for more replicas.
      'repl-diskless-sync-delay 0',
    ].join('\n'),
  );
  const service = {
    type: 'command',
    start: `${quote(findRedisServer())} ${quote(conf)}`,
    pidFile,
    logs: `tail -n "\${DRKIT_LOG_LINES:-100}" ${quote(join(dir, 'redis.log'))}`,
    startTimeoutMs: 15_000,
    stopTimeoutMs: 15_000,
  };
  const controller = createCommandController('redis', service as Parameters<typeof createCommandController>[1], {
    shell: createShell(),
    log: silentLogger,
  });
  try {
    await controller.start();
  } catch (error) {
    await stopPidFile(pidFile);
    throw error;
  }
  return { port, url: `redis://127.0.0.1:${port}/0`, dataDir, pidFile, service, controller, stop: () => stopPidFile(pidFile) };
}

/**
 * Starts the scratch servers: PostgreSQL (nothing restored yet) and redis-server as a daemon
 * with its own config, dir and pid file. Everything lives in one temp dir that `stop()`
 * removes; if this process dies first, the processes are killed on exit.
 */
export async function startScratch(options: ScratchOptions = {}): Promise<Scratch> {
  const parent = options.parent ?? tmpdir();
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, 'drkit-drill-'));
  const redisDir = join(dir, 'redis');
  const appPidFile = join(dir, 'app', 'app.pid');
  mkdirSync(join(dir, 'app'), { recursive: true });
  const filesDir = join(dir, 'files');
  const envFile = join(dir, 'app', '.env');

  const stops: (() => Promise<void>)[] = [];
  const onExit = () => {
    for (const file of [appPidFile, join(redisDir, 'redis.pid')]) {
      try {
        const pid = Number(readFileSync(file, 'utf8').trim());
        if (pid > 1) process.kill(pid, 'SIGKILL');
      } catch {}
    }
  };
  process.once('exit', onExit);
  const stop = async () => {
    process.removeListener('exit', onExit);
    for (const s of stops.splice(0).reverse()) await s().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const postgres = await startPostgres({
      password: randomBytes(12).toString('hex'),
      ...(options.postgresUser !== undefined ? { superuser: options.postgresUser } : {}),
    });
    stops.push(() => postgres.stop());

    const redis = await startRedisDaemon(redisDir);
    stops.push(() => redis.stop());
    stops.push(() => stopPidFile(appPidFile));

    return {
      dir,
      postgres,
      redis,
      filesDir,
      envFile,
      app: { port: await getFreePort(), pidFile: appPidFile, log: join(dir, 'app', 'app.log') },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
