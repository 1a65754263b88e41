import { isRunbookError, messageOf } from '../errors.js';
import { formatCommand } from '../shell.js';
import {
  type ControllerDeps,
  resolveDeps,
  type ServiceAction,
  type ServiceActionOptions,
  type ServiceController,
  type ServiceLogsOptions,
  type ServiceStatus,
  type SystemdServiceConfig,
  serviceAction,
  withSignal,
} from './controller.js';

// `systemctl is-active` prints one of these; the transitional ones are neither up nor down.
const STATES: Record<string, ServiceStatus['state']> = {
  active: 'running',
  reloading: 'running',
  inactive: 'stopped',
  failed: 'stopped',
  activating: 'degraded',
  deactivating: 'degraded',
  refreshing: 'degraded',
};

/** A {@link ServiceController} for {@link SystemdServiceConfig}. */
export function createSystemdController(name: string, config: SystemdServiceConfig, deps: ControllerDeps): ServiceController {
  const { shell } = resolveDeps(deps, `service:${name}`, 1000);
  const user = config.user ? ['--user'] : [];
  // Only what changes state or reads the journal needs privileges; is-active works for anyone.
  const privileged = (file: string, args: string[]): [string, string[]] => (config.sudo ? ['sudo', ['-n', file, ...args]] : [file, args]);
  const systemctl = (action: ServiceAction) => privileged('systemctl', [...user, action, config.unit]);
  const journalctl = (lines: number, since?: string) =>
    privileged('journalctl', [
      ...user,
      '-u',
      config.unit,
      '-n',
      String(lines),
      '--no-pager',
      ...(since !== undefined ? ['--since', since] : []),
    ]);

  const act = (action: ServiceAction) => async (options?: ServiceActionOptions) => {
    const [file, args] = systemctl(action);
    await serviceAction(name, action, () => shell.exec(file, args, withSignal(options)));
  };

  const status = async (options?: ServiceActionOptions): Promise<ServiceStatus> => {
    let stdout: string;
    let exitCode: number;
    try {
      ({ stdout, exitCode } = await shell.exec('systemctl', [...user, 'is-active', config.unit], {
        ...withSignal(options),
        reject: false,
      }));
    } catch (error) {
      if (isRunbookError(error) && error.code !== 'RUNBOOK_COMMAND_FAILED') throw error;
      return { state: 'unknown', detail: messageOf(error) };
    }
    const word = stdout.trim().split('\n')[0]?.trim() ?? '';
    const state = STATES[word];
    if (state !== undefined) return { state, detail: `${config.unit} is ${word}` };
    return { state: 'unknown', detail: `\`systemctl is-active ${config.unit}\` exited ${exitCode} and printed "${word}"` };
  };

  const logs = async (options?: ServiceLogsOptions): Promise<string> => {
    const [file, args] = journalctl(options?.lines ?? 200, options?.since);
    const result = await serviceAction(name, 'read the logs of', () => shell.exec(file, args, withSignal(options)));
    return result.stdout;
  };

  return {
    name,
    type: 'systemd',
    describe: (action) => formatCommand(...systemctl(action)),
    stop: act('stop'),
    start: act('start'),
    restart: act('restart'),
    status,
    logs,
  };
}
