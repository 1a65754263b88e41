import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
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

/** A server that can be halted and started again in the same dir with the same command line. */
export interface RestartableService {
  readonly kind: ServiceKind;
  readonly dir: string;
  /** The pid of the server process; undefined while it is halted or after it died. */
  readonly pid: number | undefined;
  /** True while the server process runs. */
  readonly running: boolean;
  /** The last `bytes` of the server's log, across every run. */
  readLog(bytes?: number): string;
  /**
   * Stops the server as `stop()` does but keeps the dir, which is still removed at process
   * exit, on a signal, or by a reaper if this process is killed. Idempotent.
   */
  halt(): Promise<void>;
  /**
   * Runs the server again as it was first run and resolves once it is ready. No-op while it
   * runs.
   * @throws ServiceStartFailure when it exits or times out first (it stays halted);
   * SandboxError SANDBOX_START_FAILED when it cannot be run at all or was stopped.
   */
  start(): Promise<void>;
  /** Stops the server if it runs and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<Live>();

interface Live {
  /** The server process; undefined while halted. */
  child: ChildProcess | undefined;
  /** The reaper of the server, or of the halted dir. */
  reaper: ChildProcess | undefined;
  dir: string;
}

// The reaper gives up as soon as the server pid it watches is gone, trusting the owner to
// remove the dir. A halted dir has no server, so its reaper watches init, which never goes:
// it then acts only on the owner's death.
const HALTED_DIR_WATCH_PID = 1;

function tail(file: string, bytes = 4000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? text.slice(-bytes) : text;
  } catch {
    return '';
  }
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

// The log is appended to by every run, so a restart must not take the readiness line of an
// earlier run for its own.
function readFrom(file: string, offset: number): string {
  try {
    return readFileSync(file).subarray(offset).toString('utf8');
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

// Synchronous last resort for a process that is exiting with servers still up (or halted
// dirs still on disk). The reaper covers the cases where no handler runs at all (SIGKILL).
function cleanupSync(): void {
  for (const entry of live) {
    killGroup(entry.child?.pid, 'SIGKILL');
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

function track(entry: Live): void {
  live.add(entry);
  installHandlers();
}

function untrack(entry: Live): void {
  killGroup(entry.reaper?.pid, 'SIGKILL');
  entry.reaper = undefined;
  live.delete(entry);
  if (live.size === 0) uninstallHandlers();
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

/** Keeps a halted dir as protected as a running server's: exit handlers and a reaper. */
function guardHalted(entry: Live): void {
  killGroup(entry.reaper?.pid, 'SIGKILL');
  entry.child = undefined;
  entry.reaper = startReaper(HALTED_DIR_WATCH_PID, entry.dir);
  track(entry);
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

function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
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
 * Runs the server with a reaper beside it and waits for a readiness line written by this
 * run. On failure nothing of the run is left (not even its reaper) and `entry.child` is
 * undefined; the caller decides what protects the dir then.
 */
async function launch(spec: ServiceSpec, entry: Live): Promise<number> {
  const offset = sizeOf(spec.logFile);
  // The halted dir's reaper would otherwise be left over once the server's own one starts.
  killGroup(entry.reaper?.pid, 'SIGKILL');
  entry.reaper = undefined;
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
  const pid = child.pid;
  child.unref();
  entry.child = child;
  entry.reaper = startReaper(pid, spec.dir);
  track(entry);

  const deadline = Date.now() + spec.timeoutMs;
  for (;;) {
    if (spec.ready.test(readFrom(spec.logFile, offset))) return pid;
    const exited = child.exitCode !== null || child.signalCode !== null;
    if (exited || Date.now() > deadline) {
      killGroup(pid, 'SIGKILL');
      killDirProcesses(spec.dir);
      await waitForExit(child, 5000);
      killGroup(entry.reaper?.pid, 'SIGKILL');
      entry.child = undefined;
      entry.reaper = undefined;
      const log = readFrom(spec.logFile, offset);
      throw new ServiceStartFailure(!exited, log.length > 4000 ? log.slice(-4000) : log);
    }
    await sleep(20);
  }
}

/** Ends the server process and whatever it left in its dir; the dir itself stays. */
async function endProcess(spec: ServiceSpec, entry: Live): Promise<void> {
  const child = entry.child;
  // The reaper goes first: it must not take the server's exit for its owner's death.
  killGroup(entry.reaper?.pid, 'SIGKILL');
  entry.reaper = undefined;
  if (child?.pid !== undefined) {
    const pid = child.pid;
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
  }
  killDirProcesses(spec.dir);
  entry.child = undefined;
}

async function openService(spec: ServiceSpec): Promise<{ service: RestartableService; firstPid: number }> {
  const entry: Live = { child: undefined, reaper: undefined, dir: spec.dir };
  let firstPid: number;
  try {
    firstPid = await launch(spec, entry);
  } catch (error) {
    // A first start that fails leaves the dir to the caller, who may retry on another port.
    untrack(entry);
    throw error;
  }

  // halt, start and stop run one at a time, so that e.g. a start never races a halt.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const result = queue.then(task);
    queue = result.catch(() => undefined);
    return result;
  };
  let stopping: Promise<void> | undefined;
  let stopped = false;

  const service: RestartableService = {
    kind: spec.kind,
    dir: spec.dir,
    get pid() {
      return isRunning(entry.child) ? entry.child.pid : undefined;
    },
    get running() {
      return isRunning(entry.child);
    },
    readLog: (bytes) => tail(spec.logFile, bytes),
    halt: () =>
      serial(async () => {
        if (stopped || entry.child === undefined) return;
        await endProcess(spec, entry);
        guardHalted(entry);
      }),
    start: () =>
      serial(async () => {
        if (stopped) {
          throw new SandboxError(
            'SANDBOX_START_FAILED',
            `the ${spec.kind} sandbox in ${spec.dir} was stopped and its dir removed; start a new one`,
          );
        }
        if (isRunning(entry.child)) return;
        // A server that died on its own still has its reaper and maybe leftovers.
        if (entry.child !== undefined) await endProcess(spec, entry);
        try {
          await launch(spec, entry);
        } catch (error) {
          guardHalted(entry);
          throw error;
        }
      }),
    stop() {
      stopping ??= serial(async () => {
        stopped = true;
        await endProcess(spec, entry);
        try {
          await rm(spec.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
        } finally {
          untrack(entry);
        }
      });
      return stopping;
    },
  };
  return { service, firstPid };
}

/**
 * Starts one server in its own process group, with a reaper that kills it if this process
 * dies, and resolves once its log shows `spec.ready`.
 * @throws ServiceStartFailure when the server exits or times out first; the temp dir is
 * kept so that the caller can retry on another port, and removed by the caller.
 */
export async function startService(spec: ServiceSpec): Promise<ServiceProcess> {
  const { service, firstPid } = await openService(spec);
  return { kind: spec.kind, pid: firstPid, dir: spec.dir, readLog: service.readLog, stop: service.stop };
}

/**
 * Starts a server as {@link startService} does, but one that can be halted and started
 * again in the same dir (to swap its data files, say), with the same protection as the
 * first run every time. `spec.logFile` is appended to by every run.
 * @throws ServiceStartFailure as {@link startService}.
 */
export async function startRestartableService(spec: ServiceSpec): Promise<RestartableService> {
  return (await openService(spec)).service;
}

/** Removes a temp dir left by a start that failed before any server ran in it. */
export async function removeServiceDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
}
