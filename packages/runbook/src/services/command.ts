import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isRunbookError, messageOf, RunbookError } from '../errors.js';
import type { ExecOptions } from '../shell.js';
import {
  type CommandServiceConfig,
  type ControllerDeps,
  resolveDeps,
  type ServiceAction,
  type ServiceActionOptions,
  type ServiceController,
  type ServiceLogsOptions,
  type ServiceStatus,
  serviceAction,
  waitFor,
  withSignal,
} from './controller.js';

const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_TIMEOUT_MS = 30_000;
// A status command is a quick probe; one that hangs must not hang the runbook.
const STATUS_TIMEOUT_MS = 30_000;

/**
 * True when `pid` runs. A zombie does not: a daemonized service is reparented to init, and
 * an init that does not reap (many containers) leaves it a zombie that signal 0 still reaches.
 */
export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    // no /proc (macOS), or the process ended between the two looks
    return process.platform !== 'linux';
  }
}

function tail(text: string, max = 300): string {
  const trimmed = text.trim();
  return trimmed.length <= max ? trimmed : `…${trimmed.slice(-max)}`;
}

/** A {@link ServiceController} for {@link CommandServiceConfig}; see there for what it expects of the commands. */
export function createCommandController(name: string, config: CommandServiceConfig, deps: ControllerDeps): ServiceController {
  const { shell, log, clock, pollIntervalMs } = resolveDeps(deps, `service:${name}`, 500);
  const startTimeoutMs = config.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const stopTimeoutMs = config.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const pidPath = config.pidFile === undefined ? undefined : resolve(config.cwd ?? process.cwd(), config.pidFile);
  const checkable = config.pidFile !== undefined || config.status !== undefined;
  const base: ExecOptions = {
    ...(config.cwd !== undefined ? { cwd: config.cwd } : {}),
    ...(config.env !== undefined ? { env: config.env } : {}),
  };

  const readPid = (): number | undefined => {
    if (pidPath === undefined) return undefined;
    let text: string;
    try {
      text = readFileSync(pidPath, 'utf8');
    } catch {
      return undefined;
    }
    const pid = Number(text.trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  };

  const status = async (options?: ServiceActionOptions): Promise<ServiceStatus> => {
    if (!checkable) return { state: 'unknown', detail: 'neither a status command nor a pidFile is configured' };
    let pidDetail: string | undefined;
    if (pidPath !== undefined) {
      const pid = readPid();
      if (pid === undefined) return { state: 'stopped', detail: `no pid in ${pidPath}` };
      if (!isPidAlive(pid)) return { state: 'stopped', detail: `pid ${pid} (from ${pidPath}) is not running` };
      pidDetail = `pid ${pid} is alive`;
    }
    if (config.status === undefined) return { state: 'running', detail: pidDetail ?? '' };
    let result: Awaited<ReturnType<typeof shell.sh>>;
    try {
      result = await shell.sh(config.status, { ...base, ...withSignal(options), reject: false, timeoutMs: STATUS_TIMEOUT_MS });
    } catch (error) {
      if (!isRunbookError(error, 'RUNBOOK_COMMAND_FAILED')) throw error;
      return { state: 'unknown', detail: messageOf(error) };
    }
    if (result.exitCode === 0) return { state: 'running', detail: [pidDetail, 'the status command exited 0'].filter(Boolean).join('; ') };
    const output = tail(result.stderr || result.stdout);
    const why = `the status command exited ${result.exitCode}${output ? `: ${output}` : ''}`;
    // A live pid whose own health probe fails is half up, which is worth telling apart from down.
    return pidDetail === undefined ? { state: 'stopped', detail: why } : { state: 'degraded', detail: `${pidDetail} but ${why}` };
  };

  const waitRunning = async (timeoutMs: number, started: string, options?: ServiceActionOptions): Promise<void> => {
    const reason = await waitFor(
      async () => {
        const now = await status(options);
        return now.state === 'running' ? undefined : `${now.state}: ${now.detail}`;
      },
      { clock, timeoutMs: Math.max(0, timeoutMs), intervalMs: pollIntervalMs, signal: options?.signal },
    );
    if (reason !== undefined)
      throw new RunbookError(
        'RUNBOOK_SERVICE_FAILED',
        `service "${name}" was not running ${startTimeoutMs} ms after \`${started}\` (${reason}). ` +
          `Check its logs${config.logs ? ` (\`${config.logs}\`)` : ''}, and that the command leaves the service running in the background ` +
          'with its output redirected; raise startTimeoutMs if it is only slow.',
      );
  };

  const launch = async (script: string, what: string, options?: ServiceActionOptions): Promise<void> => {
    const deadline = clock.now() + startTimeoutMs;
    await serviceAction(name, what, () => shell.sh(script, { ...base, ...withSignal(options), timeoutMs: startTimeoutMs }));
    if (checkable) await waitRunning(deadline - clock.now(), script, options);
  };

  const start = async (options?: ServiceActionOptions): Promise<void> => {
    const before = checkable ? await status(options) : undefined;
    if (before?.state === 'running') {
      log.info(`service "${name}" is already running; not starting it again`);
      return;
    }
    // Degraded means its pid is alive: a second copy would fight it (for the port, the data
    // dir), so the one that runs is given the time to become healthy instead.
    if (before?.state === 'degraded') {
      log.info(`service "${name}" is already started but not healthy yet (${before.detail}); waiting for it`);
      await waitRunning(startTimeoutMs, config.start, options);
      return;
    }
    await launch(config.start, 'start', options);
  };

  const stop = async (options?: ServiceActionOptions): Promise<void> => {
    // Read before the stop command runs: a service usually deletes its pid file on the way out.
    const pid = readPid();
    if (checkable && (await status(options)).state === 'stopped') {
      log.info(`service "${name}" is already stopped`);
      return;
    }
    if (config.stop !== undefined) {
      const script = config.stop;
      await serviceAction(name, 'stop', () => shell.sh(script, { ...base, ...withSignal(options), timeoutMs: stopTimeoutMs }));
    } else if (pid !== undefined) {
      log.info(`$ kill -TERM ${pid}`, { pid });
      try {
        process.kill(pid, 'SIGTERM');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH')
          throw new RunbookError('RUNBOOK_SERVICE_FAILED', `could not stop service "${name}": kill ${pid}: ${messageOf(error)}`, {
            cause: error,
          });
      }
    }
    const wait = { clock, timeoutMs: stopTimeoutMs, intervalMs: pollIntervalMs, signal: options?.signal };
    if (pid !== undefined) {
      const reason = await waitFor(async () => (isPidAlive(pid) ? `pid ${pid} is still running` : undefined), wait);
      if (reason !== undefined)
        throw new RunbookError(
          'RUNBOOK_SERVICE_FAILED',
          `service "${name}" did not stop within ${stopTimeoutMs} ms: ${reason}. See what it is doing (\`ps -o pid,args -p ${pid}\`); ` +
            `if it is safe, end it with \`kill -KILL ${pid}\`, or raise stopTimeoutMs.`,
        );
    } else if (config.status !== undefined) {
      const reason = await waitFor(async () => {
        const now = await status(options);
        return now.state === 'stopped' ? undefined : `${now.state}: ${now.detail}`;
      }, wait);
      if (reason !== undefined)
        throw new RunbookError(
          'RUNBOOK_SERVICE_FAILED',
          `service "${name}" did not stop within ${stopTimeoutMs} ms (${reason}). Find its process and stop it by hand, or raise stopTimeoutMs.`,
        );
    }
  };

  const restart = async (options?: ServiceActionOptions): Promise<void> => {
    if (config.restart === undefined) {
      await stop(options);
      await start(options);
      return;
    }
    await launch(config.restart, 'restart', options);
  };

  const untilRunning = (): string => {
    const what = [
      ...(config.pidFile !== undefined ? [`the pid in ${config.pidFile} is alive`] : []),
      ...(config.status !== undefined ? [`\`${config.status}\` exits 0`] : []),
    ];
    return what.length === 0 ? '' : `\n# then wait until ${what.join(' and ')} (up to ${startTimeoutMs} ms)`;
  };
  const describe = (action: ServiceAction): string => {
    switch (action) {
      case 'start':
        return `${config.start}${untilRunning()}`;
      case 'stop': {
        const command = config.stop ?? `kill -TERM $(cat ${config.pidFile})`;
        const until =
          config.pidFile !== undefined
            ? `\n# then wait until that pid is gone (up to ${stopTimeoutMs} ms)`
            : config.status !== undefined
              ? `\n# then wait until \`${config.status}\` exits non-zero (up to ${stopTimeoutMs} ms)`
              : '';
        return `${command}${until}`;
      }
      case 'restart':
        return config.restart === undefined ? `${describe('stop')}\n${describe('start')}` : `${config.restart}${untilRunning()}`;
    }
  };

  const controller: ServiceController = { name, type: 'command', describe, stop, start, restart, status };
  if (config.logs !== undefined) {
    const script = config.logs;
    controller.logs = async (options?: ServiceLogsOptions) => {
      const env = { ...config.env, DRKIT_LOG_LINES: String(options?.lines ?? 200), DRKIT_LOG_SINCE: options?.since ?? '' };
      const result = await serviceAction(name, 'read the logs of', () =>
        shell.sh(script, { ...base, env, ...withSignal(options), timeoutMs: STATUS_TIMEOUT_MS }),
      );
      return result.stdout;
    };
  }
  return controller;
}
