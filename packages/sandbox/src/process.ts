import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SandboxError } from './errors.js';
import { killDirProcesses } from './leaks.js';
import { SANDBOX_DIR_PREFIX } from './prefix.js';
import { helperScript } from './script.js';

/** The kinds of service the sandbox starts. */
export type ServiceKind = 'postgres' | 'redis' | 's3';

/** Creates the temp dir of one service instance. */
export function makeServiceDir(kind: ServiceKind): string {
  return mkdtempSync(join(tmpdir(), `${SANDBOX_DIR_PREFIX}${kind}-`));
}

/** What `startService` needs to run one server process and decide it is ready. */
export interface ServiceSpec {
  kind: ServiceKind;
  command: string;
  args: readonly string[];
  /** The instance's temp dir; removed by `stop()`. */
  dir: string;
  /** The server's stdout and stderr go here; readiness is read from it. */
  logFile: string;
  /** The log line that says the server accepts connections. */
  ready: RegExp;
  /** The signal that makes this server shut down quickly and cleanly. */
  stopSignal: NodeJS.Signals;
  timeoutMs: number;
  uid?: number;
  gid?: number;
  env?: NodeJS.ProcessEnv;
}

/** A running server process owned by this Node process. */
export interface ServiceProcess {
  readonly kind: ServiceKind;
  readonly pid: number;
  readonly dir: string;
  /** The last `bytes` of the server's log. */
  readLog(bytes?: number): string;
  /** Stops the server (cleanly, then forcibly after 10 s) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<Live>();

interface Live {
  child: ChildProcess;
  reaper: ChildProcess | undefined;
  dir: string;
}

function tail(file: string, bytes = 4000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? text.slice(-bytes) : text;
  } catch {
    return '';
  }
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is already gone
  }
}

// Synchronous last resort for a process that is exiting with servers still up. The reaper
// covers the cases where no handler runs at all (SIGKILL).
function cleanupSync(): void {
  for (const entry of live) {
    killGroup(entry.child.pid, 'SIGKILL');
    killGroup(entry.reaper?.pid, 'SIGKILL');
    killDirProcesses(entry.dir);
    rmSync(entry.dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  cleanupSync();
  uninstallHandlers();
  // Re-raise so the process ends with the status the signal would have given it.
  process.kill(process.pid, signal);
}

let handlersInstalled = false;
function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupSync);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}
function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', cleanupSync);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
}

function startReaper(servicePid: number, dir: string): ChildProcess {
  const script = helperScript('reaper');
  const reaper = spawn(process.execPath, [...script.execArgv, script.path, String(process.pid), String(servicePid), dir], {
    detached: true,
    stdio: 'ignore',
  });
  reaper.unref();
  return reaper;
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** The failure of a server that exited or timed out before it became ready. */
export class ServiceStartFailure extends Error {
  override readonly name = 'ServiceStartFailure';
  readonly timedOut: boolean;
  readonly log: string;
  constructor(timedOut: boolean, log: string) {
    super(timedOut ? 'timed out' : 'exited');
    this.timedOut = timedOut;
    this.log = log;
  }
}

/**
 * Starts one server in its own process group, with a reaper that kills it if this process
 * dies, and resolves once its log shows `spec.ready`.
 * @throws ServiceStartFailure when the server exits or times out first; the temp dir is
 * kept so that the caller can retry on another port, and removed by the caller.
 */
export async function startService(spec: ServiceSpec): Promise<ServiceProcess> {
  const fd = openSync(spec.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(spec.command, spec.args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: spec.dir,
      env: spec.env ?? process.env,
      ...(spec.uid === undefined ? {} : { uid: spec.uid }),
      ...(spec.gid === undefined ? {} : { gid: spec.gid }),
    });
  } finally {
    closeSync(fd);
  }
  const spawnError = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', resolve);
  });
  if (spawnError || child.pid === undefined) {
    throw new SandboxError('SANDBOX_START_FAILED', `could not run ${spec.command}: ${spawnError?.message ?? 'no pid'}`, {
      cause: spawnError,
    });
  }
  child.unref();
  const entry: Live = { child, reaper: startReaper(child.pid, spec.dir), dir: spec.dir };
  live.add(entry);
  installHandlers();

  const forget = () => {
    killGroup(entry.reaper?.pid, 'SIGKILL');
    live.delete(entry);
    if (live.size === 0) uninstallHandlers();
  };

  const deadline = Date.now() + spec.timeoutMs;
  for (;;) {
    if (spec.ready.test(tail(spec.logFile, 64_000))) break;
    const exited = child.exitCode !== null || child.signalCode !== null;
    if (exited || Date.now() > deadline) {
      killGroup(child.pid, 'SIGKILL');
      killDirProcesses(spec.dir);
      await waitForExit(child, 5000);
      forget();
      throw new ServiceStartFailure(!exited, tail(spec.logFile));
    }
    await sleep(20);
  }

  let stopping: Promise<void> | undefined;
  const pid = child.pid;
  return {
    kind: spec.kind,
    pid,
    dir: spec.dir,
    readLog: (bytes) => tail(spec.logFile, bytes),
    stop() {
      stopping ??= (async () => {
        killGroup(entry.reaper?.pid, 'SIGKILL');
        try {
          process.kill(pid, spec.stopSignal);
        } catch {
          // already exited
        }
        if (!(await waitForExit(child, 10_000))) {
          killGroup(pid, 'SIGKILL');
          await waitForExit(child, 5000);
        }
        // Whatever the server left behind (a postgres backend, say) goes too.
        killGroup(pid, 'SIGKILL');
        killDirProcesses(spec.dir);
        forget();
        await rm(spec.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
      })();
      return stopping;
    },
  };
}

/** Removes a temp dir left by a start that failed before any server ran in it. */
export async function removeServiceDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
}
