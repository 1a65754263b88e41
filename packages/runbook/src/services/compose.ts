import { isRunbookError, messageOf } from '../errors.js';
import { formatCommand } from '../shell.js';
import {
  type ComposeServiceConfig,
  type ControllerDeps,
  resolveDeps,
  type ServiceAction,
  type ServiceActionOptions,
  type ServiceController,
  type ServiceLogsOptions,
  type ServiceStatus,
  serviceAction,
  withSignal,
} from './controller.js';

/** One container as `docker compose ps --format json` prints it (the fields we read). */
interface ComposeContainer {
  Name?: string;
  State?: string;
  Health?: string;
  Status?: string;
}

/**
 * Reads the output of `docker compose ps --format json`: Compose before 2.21 printed one
 * JSON array, later versions print one object per line.
 */
export function parseComposePs(stdout: string): ComposeContainer[] {
  const text = stdout.trim();
  if (text === '') return [];
  if (text.startsWith('[')) return JSON.parse(text) as ComposeContainer[];
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ComposeContainer);
}

/** A {@link ServiceController} for {@link ComposeServiceConfig}. */
export function createComposeController(name: string, config: ComposeServiceConfig, deps: ControllerDeps): ServiceController {
  const { shell } = resolveDeps(deps, `service:${name}`, 1000);
  const prefix = [
    'compose',
    ...(config.file !== undefined ? ['-f', config.file] : []),
    ...(config.project !== undefined ? ['-p', config.project] : []),
  ];
  const args = (...rest: string[]) => [...prefix, ...rest];
  const exec = (argv: string[], options?: ServiceActionOptions, reject = true) =>
    shell.exec('docker', argv, { ...(config.cwd !== undefined ? { cwd: config.cwd } : {}), ...withSignal(options), reject });

  const act = (action: ServiceAction) => async (options?: ServiceActionOptions) => {
    await serviceAction(name, action, () => exec(args(action, config.service), options));
  };

  const status = async (options?: ServiceActionOptions): Promise<ServiceStatus> => {
    let containers: ComposeContainer[];
    try {
      const result = await exec(args('ps', '--format', 'json', config.service), options);
      containers = parseComposePs(result.stdout);
    } catch (error) {
      if (isRunbookError(error) && error.code !== 'RUNBOOK_COMMAND_FAILED') throw error;
      return { state: 'unknown', detail: messageOf(error) };
    }
    if (containers.length === 0) return { state: 'stopped', detail: `no running container of ${config.service}` };
    // A container whose healthcheck has not passed yet is up but not serving.
    const ready = containers.filter((c) => c.State === 'running' && c.Health !== 'unhealthy' && c.Health !== 'starting');
    const detail = containers.map((c) => `${c.Name ?? config.service}: ${c.Status || c.State || 'unknown'}`).join('; ');
    const replicas = { ready: ready.length, desired: containers.length };
    if (ready.length === containers.length) return { state: 'running', detail, replicas };
    if (containers.every((c) => c.State !== 'running' && c.State !== 'restarting')) return { state: 'stopped', detail, replicas };
    return { state: 'degraded', detail, replicas };
  };

  const logs = async (options?: ServiceLogsOptions): Promise<string> => {
    const argv = args(
      'logs',
      '--no-color',
      '--tail',
      String(options?.lines ?? 200),
      ...(options?.since !== undefined ? ['--since', options.since] : []),
      config.service,
    );
    const result = await serviceAction(name, 'read the logs of', () => exec(argv, options));
    return result.stdout;
  };

  return {
    name,
    type: 'compose',
    describe: (action) => formatCommand('docker', args(action, config.service)),
    stop: act('stop'),
    start: act('start'),
    restart: act('restart'),
    status,
    logs,
  };
}
