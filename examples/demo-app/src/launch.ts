import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Absolute path of the server's entry point (`node --import tsx <it>`). */
export const DEMO_APP_SERVER = fileURLToPath(new URL('./server.ts', import.meta.url));
/** Absolute path of the migration command (`node --import tsx <it>`), the runbooks' "run migrations" hook. */
export const DEMO_APP_MIGRATE = fileURLToPath(new URL('./migrate.ts', import.meta.url));

/** The repository root: where `tsx` and the app's dependencies are installed. */
const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
/** tsx's loader by absolute URL, so that the app starts from any working directory. */
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** Where and how to run one demo app. */
export interface DemoAppOptions {
  /** Holds `demo-app.log` and `demo-app.pid`; created when missing. */
  dir: string;
  /** 0 for any free port (only with {@link startDemoApp}, which reads the port back). */
  port: number;
  databaseUrl: string;
  redisUrl: string;
  uploadsDir: string;
  /** More environment for the server (DEMO_VERSION, DEMO_WORKER_ID, DEMO_HALT_PREFIX, PGPASSWORD ...). */
  env?: Record<string, string>;
}

/** A drkit `command` service entry (see `CommandServiceConfig` in @drkit/runbook). */
export interface DemoAppServiceConfig {
  type: 'command';
  start: string;
  pidFile: string;
  env: Record<string, string>;
  cwd: string;
  logs: string;
  startTimeoutMs: number;
  stopTimeoutMs: number;
}

/** A demo app started by {@link startDemoApp}. */
export interface RunningDemoApp {
  /** e.g. `http://127.0.0.1:41234` */
  url: string;
  port: number;
  pid: number;
  /** SIGTERM, then SIGKILL if it is still there after 10 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

function paths(options: DemoAppOptions) {
  const dir = resolve(options.dir);
  return { dir, log: join(dir, 'demo-app.log'), pidFile: join(dir, 'demo-app.pid') };
}

function serverEnv(options: DemoAppOptions): Record<string, string> {
  return {
    DATABASE_URL: options.databaseUrl,
    REDIS_URL: options.redisUrl,
    UPLOADS_DIR: resolve(options.uploadsDir),
    DEMO_PORT: String(options.port),
    DEMO_PID_FILE: paths(options).pidFile,
    ...options.env,
  };
}

function logTail(path: string, lines = 40): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * The demo app as a service of a drkit config, for the `command` controller: `start` puts
 * the server in the background (output appended to `<dir>/demo-app.log`, in a session of its
 * own where `setsid` exists, so that Ctrl-C on a runbook does not stop the app) and returns;
 * the server writes `<dir>/demo-app.pid` once listening; with no stop command the controller
 * sends SIGTERM to that pid and waits for it to be gone. The connection URLs travel in `env`,
 * never on the command line. Runs and creates nothing until the controller runs `start`.
 */
export function demoAppService(options: DemoAppOptions): DemoAppServiceConfig {
  const { dir, log, pidFile } = paths(options);
  const launch = [quote(process.execPath), '--import', quote(TSX_LOADER), quote(DEMO_APP_SERVER)].join(' ');
  return {
    type: 'command',
    start: [
      `mkdir -p ${quote(dir)} || exit 1`,
      'if command -v setsid >/dev/null 2>&1; then set -- setsid; else set --; fi',
      `"$@" ${launch} >> ${quote(log)} 2>&1 < /dev/null &`,
    ].join('\n'),
    pidFile,
    env: serverEnv(options),
    cwd: REPO_ROOT,
    logs: `if [ -f ${quote(log)} ]; then tail -n "\${DRKIT_LOG_LINES:-100}" ${quote(log)}; fi`,
    startTimeoutMs: START_TIMEOUT_MS,
    stopTimeoutMs: STOP_TIMEOUT_MS,
  };
}

/**
 * Starts the demo app as a child of this process and resolves once it listens (20 s at
 * most; the error then carries the end of its log). For tests and drills that do not go
 * through a service controller. Its output goes to `<dir>/demo-app.log` as with
 * {@link demoAppService}.
 */
export async function startDemoApp(options: DemoAppOptions): Promise<RunningDemoApp> {
  const { dir, log } = paths(options);
  mkdirSync(dir, { recursive: true });
  const env = serverEnv(options);
  const logFd = openSync(log, 'a');
  const child = spawn(process.execPath, ['--import', TSX_LOADER, DEMO_APP_SERVER], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', logFd],
  });
  closeSync(logFd);
  const stdout = child.stdout;
  if (stdout === null) throw new Error('the demo app was spawned without a stdout pipe');
  const exited = new Promise<void>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) done();
    else child.once('exit', () => done());
  });

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const gone = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS, false)]);
    if (!gone) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  const port = await new Promise<number>((done, fail) => {
    let buffer = '';
    let settled = false;
    const finish = (error: Error | undefined, port?: number) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) fail(error);
      else done(port ?? 0);
    };
    const timer = setTimeout(() => {
      void stop();
      finish(new Error(`the demo app did not listen within ${START_TIMEOUT_MS} ms; the end of ${log}:\n${logTail(log)}`));
    }, START_TIMEOUT_MS);
    stdout.setEncoding('utf8');
    stdout.on('data', (text: string) => {
      // The listening line goes to the log as well, as it does when the app runs as a service.
      appendFileSync(log, text);
      if (settled) return;
      buffer += text;
      for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        try {
          const parsed = JSON.parse(line) as { listening?: unknown; port?: unknown };
          if (parsed.listening === true && typeof parsed.port === 'number') finish(undefined, parsed.port);
        } catch {
          // not the listening line
        }
      }
    });
    child.once('error', (error) => finish(new Error(`the demo app could not be started: ${error.message}`)));
    child.once('exit', (code, signal) =>
      finish(new Error(`the demo app exited (${signal ?? `code ${code}`}) before listening; the end of ${log}:\n${logTail(log)}`)),
    );
  });

  const host = env.DEMO_HOST && !['0.0.0.0', '::'].includes(env.DEMO_HOST) ? env.DEMO_HOST : '127.0.0.1';
  const pid = child.pid;
  if (pid === undefined) throw new Error('the demo app has no pid');
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, port, pid, stop };
}

/**
 * Polls `<url>/health` until it answers 200, or throws after `timeoutMs` (default 20 s)
 * with the last answer: after a restart or a restore, "up" means every check passes.
 */
export async function waitHealthy(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const health = new URL('/health', url);
  let last = 'no answer yet';
  for (;;) {
    try {
      const response = await fetch(health, { signal: AbortSignal.timeout(Math.max(500, Math.min(5000, deadline - Date.now()))) });
      const body = await response.text();
      if (response.status === 200) return;
      last = `${response.status} ${body.slice(0, 300)}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) throw new Error(`${health.href} was not healthy within ${timeoutMs} ms: ${last}`);
    await sleep(100);
  }
}
