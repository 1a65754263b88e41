import { type Clock, realClock } from '../clock.js';
import { isRunbookError, RunbookError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import type { Shell } from '../shell.js';
import { createCommandController } from './command.js';
import { createComposeController } from './compose.js';
import { createKubernetesController } from './kubernetes.js';
import { createSystemdController } from './systemd.js';

/** What a runbook step asks of a service. */
export type ServiceAction = 'stop' | 'start' | 'restart';

/** The kinds of service a {@link ServiceController} drives. */
export type ServiceType = 'command' | 'compose' | 'kubernetes' | 'systemd';

/**
 * What a controller found out about its service. `degraded` is "some of it runs" (2 of 3
 * replicas ready, a pid alive whose status command fails, a unit still activating);
 * `unknown` is "could not tell" (no way to check configured, the tool itself failed).
 */
export interface ServiceStatus {
  state: 'running' | 'stopped' | 'degraded' | 'unknown';
  /** One line a person can act on, e.g. "2/3 replicas ready". */
  detail: string;
  replicas?: { ready: number; desired: number };
}

/** What a controller needs from the run. */
export interface ControllerDeps {
  /** Runs and logs every command (with the run's secrets redacted). */
  shell: Shell;
  log?: Logger;
  /** Paces the polls of start/stop waits; a virtual clock makes them instant in tests. @default realClock */
  clock?: Clock;
  /** How often start/stop waits poll. @default 500 for command, 2000 for kubernetes */
  pollIntervalMs?: number;
}

/** Options of the actions of a {@link ServiceController}. */
export interface ServiceActionOptions {
  /** Kills the running command and ends any wait with RUNBOOK_ABORTED. */
  signal?: AbortSignal;
}

/** Options of {@link ServiceController.logs}. */
export interface ServiceLogsOptions {
  /** How many of the last lines. @default 200 */
  lines?: number;
  /** Only lines newer than this, in the tool's own syntax (e.g. "10m", "2026-01-01T00:00:00Z"). */
  since?: string;
  signal?: AbortSignal;
}

/**
 * Stops, starts and inspects one service. Every action waits until it took effect (the
 * process is gone, the rollout finished) so the next step of a runbook can rely on it, and
 * fails with RUNBOOK_SERVICE_FAILED naming the service when it did not.
 */
export interface ServiceController {
  readonly name: string;
  readonly type: ServiceType;
  /** What `action` would do, as the command line(s) it would run: used by --plan, which must run nothing. */
  describe(action: ServiceAction): string;
  stop(options?: ServiceActionOptions): Promise<void>;
  start(options?: ServiceActionOptions): Promise<void>;
  restart(options?: ServiceActionOptions): Promise<void>;
  status(options?: ServiceActionOptions): Promise<ServiceStatus>;
  /** The service's recent log lines, for a report or an incident channel. */
  logs?(options?: ServiceLogsOptions): Promise<string>;
}

/**
 * A service driven by shell commands (run through `/bin/sh -c`). The start command must
 * return once the service is launched: a long-running program has to be put in the
 * background with its output redirected (`node app.mjs > app.log 2>&1 &`), or the start
 * command never ends. With `pidFile`, status is "that pid is alive", stop waits until it is
 * gone and, without a stop command, sends it SIGTERM.
 */
export interface CommandServiceConfig {
  type: 'command';
  start: string;
  /** Optional only with `pidFile`: the controller then sends SIGTERM to the pid. */
  stop?: string;
  /** Exit 0 means running, any other exit stopped. */
  status?: string;
  /** @default stop, then start */
  restart?: string;
  /** Prints recent logs; `$DRKIT_LOG_LINES` and `$DRKIT_LOG_SINCE` carry the caller's wishes. */
  logs?: string;
  cwd?: string;
  /** Added to the commands' environment (values may be secrets: they are never logged). */
  env?: Record<string, string>;
  /** Where the service writes its pid (relative to `cwd`). */
  pidFile?: string;
  /** How long start may take, command and wait for "running" together. @default 30000 */
  startTimeoutMs?: number;
  /** How long stop waits for the process to be gone. @default 30000 */
  stopTimeoutMs?: number;
}

/**
 * A service of a Docker Compose project: `docker compose [-f file] [-p project] stop|start|restart <service>`.
 * `start` starts the existing containers, as `stop` leaves them.
 */
export interface ComposeServiceConfig {
  type: 'compose';
  service: string;
  file?: string;
  project?: string;
  cwd?: string;
}

/**
 * A Deployment or StatefulSet: stop scales it to 0 and waits until its pods are gone, start
 * scales it back and waits for the rollout. The replica count before the stop is kept in the
 * annotation {@link REPLICAS_ANNOTATION}, so a start in a later (resumed) run restores it.
 */
export interface KubernetesServiceConfig {
  type: 'kubernetes';
  /** @default "deployment" */
  kind?: 'deployment' | 'statefulset';
  name: string;
  namespace?: string;
  context?: string;
  /** What start scales to. @default the count stop saw before scaling to 0, else 1 */
  replicas?: number;
  /** How long a rollout, or the pods' termination, may take. @default 300000 */
  rolloutTimeoutMs?: number;
}

/**
 * A systemd unit: `systemctl [--user] stop|start|restart <unit>`. With `sudo`, the commands
 * that change state and read the journal run through `sudo -n`, which fails instead of
 * prompting for a password.
 */
export interface SystemdServiceConfig {
  type: 'systemd';
  unit: string;
  user?: boolean;
  sudo?: boolean;
}

/** The config of one service, by `type`. */
export type ControllerConfig = CommandServiceConfig | ComposeServiceConfig | KubernetesServiceConfig | SystemdServiceConfig;

/** Where a Kubernetes controller keeps the replica count it scaled down from. */
export const REPLICAS_ANNOTATION = 'drkit.dev/replicas-before-stop';

/** The controller of the service `name` described by `config`. Runs nothing until an action is called. */
export function createController(name: string, config: ControllerConfig, deps: ControllerDeps): ServiceController {
  switch (config.type) {
    case 'command':
      return createCommandController(name, config, deps);
    case 'compose':
      return createComposeController(name, config, deps);
    case 'kubernetes':
      return createKubernetesController(name, config, deps);
    case 'systemd':
      return createSystemdController(name, config, deps);
    default: {
      const type: string = (config as { type: string }).type;
      throw new RunbookError(
        'RUNBOOK_CONFIG_INVALID',
        `service "${name}" has type "${type}"; use one of command, compose, kubernetes, systemd`,
      );
    }
  }
}

// ---- shared by the controllers (not re-exported from the package) ----

/** The deps of a controller with their defaults filled in. */
export interface ResolvedDeps {
  shell: Shell;
  log: Logger;
  clock: Clock;
  pollIntervalMs: number;
}

/** Fills in the defaults of `deps`; `source` names the controller in log entries. */
export function resolveDeps(deps: ControllerDeps, source: string, defaultPollMs: number): ResolvedDeps {
  return {
    shell: deps.shell,
    log: (deps.log ?? silentLogger).child(source),
    clock: deps.clock ?? realClock,
    pollIntervalMs: deps.pollIntervalMs ?? defaultPollMs,
  };
}

/**
 * Runs `fn`; a command that failed becomes RUNBOOK_SERVICE_FAILED naming the service and
 * what was being done, because "`kubectl scale …` exited 1" alone does not say which step
 * of which service the person at the keyboard is looking at.
 */
export async function serviceAction<T>(name: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (isRunbookError(error, 'RUNBOOK_COMMAND_FAILED'))
      throw new RunbookError('RUNBOOK_SERVICE_FAILED', `could not ${what} service "${name}": ${error.message}`, { cause: error });
    throw error;
  }
}

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  clock: Clock;
  timeoutMs: number;
  intervalMs: number;
  signal?: AbortSignal | undefined;
}

/**
 * Calls `probe` until it returns undefined (the condition holds) or `timeoutMs` passed.
 * Returns undefined on success, else the last reason `probe` gave, for the error message.
 */
export async function waitFor(probe: () => Promise<string | undefined>, options: WaitForOptions): Promise<string | undefined> {
  const { clock, signal } = options;
  const deadline = clock.now() + options.timeoutMs;
  for (;;) {
    const reason = await probe();
    if (reason === undefined) return undefined;
    const left = deadline - clock.now();
    if (left <= 0) return reason;
    await clock.sleep(Math.min(options.intervalMs, left), signal);
  }
}

/** `options.signal` as the exec options of a shell call (exactOptionalPropertyTypes will not take `signal: undefined`). */
export function withSignal(options?: { signal?: AbortSignal }): { signal?: AbortSignal } {
  return options?.signal ? { signal: options.signal } : {};
}
