import { isRunbookError, messageOf, RunbookError } from '../errors.js';
import { formatCommand } from '../shell.js';
import {
  type ControllerDeps,
  type KubernetesServiceConfig,
  REPLICAS_ANNOTATION,
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

const DEFAULT_ROLLOUT_TIMEOUT_MS = 300_000;
// kubectl enforces --timeout itself; this margin only catches a kubectl that hangs past it.
const KUBECTL_GRACE_MS = 30_000;

/** The fields of `kubectl get <kind>/<name> -o json` that a controller reads. */
interface Workload {
  metadata?: { annotations?: Record<string, string> };
  spec?: {
    replicas?: number;
    selector?: {
      matchLabels?: Record<string, string>;
      matchExpressions?: { key: string; operator: string; values?: string[] }[];
    };
  };
  status?: { replicas?: number; readyReplicas?: number };
}

/** The label selector of a workload in kubectl's `--selector` syntax, or undefined when it has none. */
export function selectorOf(workload: Workload): string | undefined {
  const selector = workload.spec?.selector;
  const terms = [
    ...Object.entries(selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(selector?.matchExpressions ?? []).map(({ key, operator, values = [] }) => {
      switch (operator) {
        case 'In':
          return `${key} in (${values.join(',')})`;
        case 'NotIn':
          return `${key} notin (${values.join(',')})`;
        case 'Exists':
          return key;
        default:
          return `!${key}`;
      }
    }),
  ];
  return terms.length === 0 ? undefined : terms.join(',');
}

/** A {@link ServiceController} for {@link KubernetesServiceConfig}; see there for how stop and start pair up. */
export function createKubernetesController(name: string, config: KubernetesServiceConfig, deps: ControllerDeps): ServiceController {
  const { shell, log, clock, pollIntervalMs } = resolveDeps(deps, `service:${name}`, 2000);
  const kind = config.kind ?? 'deployment';
  const target = `${kind}/${config.name}`;
  const rolloutTimeoutMs = config.rolloutTimeoutMs ?? DEFAULT_ROLLOUT_TIMEOUT_MS;
  const scope = [
    ...(config.namespace !== undefined ? [`--namespace=${config.namespace}`] : []),
    ...(config.context !== undefined ? [`--context=${config.context}`] : []),
  ];
  // Remembered for a start in this same process; the annotation covers a start in a later run.
  let previousReplicas: number | undefined;

  const argv = {
    get: () => ['get', target, '-o', 'json', ...scope],
    annotate: (replicas: number | string) => ['annotate', target, `${REPLICAS_ANNOTATION}=${replicas}`, '--overwrite', ...scope],
    scale: (replicas: number | string) => ['scale', target, `--replicas=${replicas}`, ...scope],
    pods: (selector: string) => ['get', 'pods', `--selector=${selector}`, '-o', 'json', ...scope],
    rolloutStatus: () => ['rollout', 'status', target, `--timeout=${Math.ceil(rolloutTimeoutMs / 1000)}s`, ...scope],
    rolloutRestart: () => ['rollout', 'restart', target, ...scope],
    logs: (lines: number, since?: string) => [
      'logs',
      target,
      `--tail=${lines}`,
      ...(since !== undefined ? [`--since=${since}`] : []),
      ...scope,
    ],
  };
  const kubectl = (args: string[], options?: ServiceActionOptions, timeoutMs?: number) =>
    shell.exec('kubectl', args, { ...withSignal(options), ...(timeoutMs !== undefined ? { timeoutMs } : {}) });

  const getJson = async <T>(args: string[], options?: ServiceActionOptions): Promise<T> => {
    const result = await kubectl(args, options);
    try {
      return JSON.parse(result.stdout) as T;
    } catch (error) {
      throw new RunbookError(
        'RUNBOOK_SERVICE_FAILED',
        `\`${formatCommand('kubectl', args)}\` printed something that is not JSON (${messageOf(error)}); check which kubectl is on PATH.`,
      );
    }
  };
  const getWorkload = (options?: ServiceActionOptions) => getJson<Workload>(argv.get(), options);

  const rolloutStatus = (options?: ServiceActionOptions) => kubectl(argv.rolloutStatus(), options, rolloutTimeoutMs + KUBECTL_GRACE_MS);

  const stop = (options?: ServiceActionOptions) =>
    serviceAction(name, 'stop', async () => {
      const workload = await getWorkload(options);
      const current = workload.spec?.replicas ?? 1;
      if (current > 0) {
        previousReplicas = current;
        await kubectl(argv.annotate(current), options);
        await kubectl(argv.scale(0), options);
      } else {
        log.info(`${target} is already scaled to 0`);
      }
      const selector = selectorOf(workload);
      if (selector === undefined) {
        log.warn(`${target} has no label selector: not waiting for its pods to be gone`);
        return;
      }
      // status.replicas stops counting a pod as soon as it is terminating; a DR stop must
      // know the process is really gone (no writer left), so the pods themselves are watched.
      const reason = await waitFor(
        async () => {
          const list = await getJson<{ items?: { metadata?: { name?: string } }[] }>(argv.pods(selector), options);
          const items = list.items ?? [];
          return items.length === 0 ? undefined : `${items.length} pod(s) left: ${items.map((p) => p.metadata?.name ?? '?').join(', ')}`;
        },
        { clock, timeoutMs: rolloutTimeoutMs, intervalMs: pollIntervalMs, signal: options?.signal },
      );
      if (reason !== undefined)
        throw new RunbookError(
          'RUNBOOK_SERVICE_FAILED',
          `the pods of ${target} were not gone ${rolloutTimeoutMs} ms after scaling it to 0 (${reason}). ` +
            `See why with \`${formatCommand('kubectl', ['describe', 'pods', `--selector=${selector}`, ...scope])}\` ` +
            '(a finalizer, a long terminationGracePeriodSeconds), or raise rolloutTimeoutMs.',
        );
    });

  const start = (options?: ServiceActionOptions) =>
    serviceAction(name, 'start', async () => {
      let replicas = config.replicas ?? previousReplicas;
      if (replicas === undefined) {
        const workload = await getWorkload(options);
        const saved = Number(workload.metadata?.annotations?.[REPLICAS_ANNOTATION]);
        const current = workload.spec?.replicas ?? 0;
        replicas = Number.isSafeInteger(saved) && saved > 0 ? saved : current > 0 ? current : 1;
      }
      await kubectl(argv.scale(replicas), options);
      await rolloutStatus(options);
    });

  const restart = (options?: ServiceActionOptions) =>
    serviceAction(name, 'restart', async () => {
      await kubectl(argv.rolloutRestart(), options);
      await rolloutStatus(options);
    });

  const status = async (options?: ServiceActionOptions): Promise<ServiceStatus> => {
    let workload: Workload;
    try {
      workload = await getWorkload(options);
    } catch (error) {
      if (isRunbookError(error, 'RUNBOOK_ABORTED')) throw error;
      return { state: 'unknown', detail: messageOf(error) };
    }
    const desired = workload.spec?.replicas ?? 1;
    const ready = workload.status?.readyReplicas ?? 0;
    const pods = workload.status?.replicas ?? 0;
    const replicas = { ready, desired };
    if (desired === 0)
      return {
        state: pods > 0 ? 'degraded' : 'stopped',
        detail: `scaled to 0${pods > 0 ? `, ${pods} pod(s) still running` : ''}`,
        replicas,
      };
    const detail = `${ready}/${desired} replicas ready`;
    if (ready >= desired) return { state: 'running', detail, replicas };
    return { state: 'degraded', detail, replicas };
  };

  const logs = async (options?: ServiceLogsOptions): Promise<string> => {
    const result = await serviceAction(name, 'read the logs of', () => kubectl(argv.logs(options?.lines ?? 200, options?.since), options));
    return result.stdout;
  };

  const describe = (action: ServiceAction): string => {
    const line = (args: string[]) => formatCommand('kubectl', args);
    switch (action) {
      case 'stop':
        return [
          line(argv.annotate('<current replicas>')),
          line(argv.scale(0)),
          `# then wait until the pods of ${target} are gone (up to ${rolloutTimeoutMs} ms)`,
        ].join('\n');
      case 'start': {
        const replicas = config.replicas ?? previousReplicas ?? `<${REPLICAS_ANNOTATION}, else 1>`;
        return [line(argv.scale(replicas)), line(argv.rolloutStatus())].join('\n');
      }
      case 'restart':
        return [line(argv.rolloutRestart()), line(argv.rolloutStatus())].join('\n');
    }
  };

  return { name, type: 'kubernetes', describe, stop, start, restart, status, logs };
}
