// Inspecting and restarting the services of an environment the same way whatever runs them
// (`command`, `compose`, `kubernetes`, `systemd`): their status, their recent events (what
// the platform itself recorded: Kubernetes events, systemd's last result, Compose's exit
// codes), their logs, the decision to restart, and a restart that brings a stopped service
// back with a start (a Deployment scaled to 0 is not brought back by `rollout restart`).

import type { BaseContext, HealthCheck, HealthResult, ServiceEntry, ServiceStatus, StepContext } from '@drkit/runbook';
import { formatCommand, messageOf, RunbookError } from '@drkit/runbook';
import { platformOf } from './platform.ts';

/** How many recent events a snapshot keeps: enough to see a crash loop, short enough to read. */
const MAX_EVENTS = 10;
/** Event and status commands are quick probes; one that hangs must not hold the runbook. */
const PROBE_TIMEOUT_MS = 30_000;

/** What was found about one service before anything was done to it. */
export interface ServiceSnapshot {
  name: string;
  type: ServiceEntry['type'];
  state: ServiceStatus['state'];
  detail: string;
  replicas?: { ready: number; desired: number };
  /** What the platform recorded lately (newest last), one line each. */
  events: string[];
  /** Why the events could not be read, when they could not. */
  eventsError?: string;
}

/** The restart policy of a recovery: see {@link decideRestart}. */
export type RestartPolicy = 'auto' | 'always' | 'never';

/** What {@link decideRestart} decided. */
export interface RestartDecision {
  /** The services to restart, in start order, each with the reason. */
  restart: { name: string; why: string }[];
  /** One line for the incident channel and the journal. */
  summary: string;
  /**
   * The disaster category the findings point at: 2 (outage) when the health check fails or
   * nothing runs, 1 (degradation) when a service is down but the health check passes, null
   * when everything is healthy.
   */
  category: 1 | 2 | null;
}

/**
 * The services a runbook works on: `--service a,b` when given, else `vars.app.services`.
 * Each must be a service of the environment's config; the error lists the ones there are.
 */
export function selectedServices(ctx: BaseContext<unknown>, param: string | undefined): string[] {
  const names =
    param !== undefined
      ? param
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : (platformOf(ctx).app?.services ?? []);
  if (names.length === 0)
    throw new RunbookError(
      'RUNBOOK_PARAMS_INVALID',
      `no service to work on: pass --service <name> or set vars.app.services in environment "${ctx.environment}"`,
    );
  const known = Object.keys(ctx.config.services);
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length > 0)
    throw new RunbookError(
      'RUNBOOK_PARAMS_INVALID',
      `environment "${ctx.environment}" has no service ${unknown.map((n) => `"${n}"`).join(', ')} (--service); its services are ${known.join(', ') || '(none)'}`,
    );
  return [...new Set(names)];
}

/** The health check a runbook verifies with: `--health` when given, else `vars.app.health`, else none. */
export function selectedHealth(ctx: BaseContext<unknown>, param: string | undefined): string | undefined {
  const name = param ?? platformOf(ctx).app?.health;
  if (name !== undefined && ctx.config.health[name] === undefined)
    throw new RunbookError(
      'RUNBOOK_PARAMS_INVALID',
      `environment "${ctx.environment}" has no health check "${name}" (--health or vars.app.health); its checks are ${Object.keys(ctx.config.health).join(', ') || '(none)'}`,
    );
  return name;
}

function entryOf(ctx: BaseContext<unknown>, name: string): ServiceEntry {
  const entry = ctx.config.services[name];
  if (entry === undefined) throw new RunbookError('RUNBOOK_CONFIG_INVALID', `environment "${ctx.environment}" has no service "${name}"`);
  return entry;
}

/** The command that reads a service's recent events, as argv; undefined for a `command` service, which has no event source. */
function eventsCommand(entry: ServiceEntry): [string, string[]] | undefined {
  switch (entry.type) {
    case 'kubernetes':
      // Pods and ReplicaSets are named after their Deployment: their events (OOMKilled,
      // BackOff, FailedScheduling) are the ones `kubectl describe pod` shows.
      return [
        'kubectl',
        [
          'get',
          'events',
          '-o',
          'json',
          ...(entry.namespace !== undefined ? [`--namespace=${entry.namespace}`] : []),
          ...(entry.context !== undefined ? [`--context=${entry.context}`] : []),
        ],
      ];
    case 'systemd':
      return [
        'systemctl',
        [
          ...(entry.user ? ['--user'] : []),
          'show',
          entry.unit,
          '--no-pager',
          '--property=ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,NRestarts,StateChangeTimestamp,InactiveEnterTimestamp',
        ],
      ];
    case 'compose':
      return [
        'docker',
        [
          'compose',
          ...(entry.file !== undefined ? ['-f', entry.file] : []),
          ...(entry.project !== undefined ? ['-p', entry.project] : []),
          'ps',
          '--all',
          '--format',
          'json',
          entry.service,
        ],
      ];
    case 'command':
      return undefined;
  }
}

/** What reading a service's recent events runs, for --plan. */
export function describeEvents(ctx: BaseContext<unknown>, name: string): string {
  const command = eventsCommand(entryOf(ctx, name));
  return command === undefined ? 'no event source for a command service: its status and logs say what happened' : formatCommand(...command);
}

interface KubeEvent {
  type?: string;
  reason?: string;
  message?: string;
  count?: number;
  lastTimestamp?: string | null;
  eventTime?: string | null;
  involvedObject?: { kind?: string; name?: string };
}

/** Turns the events command's output into lines, newest last. */
function parseEvents(entry: ServiceEntry, stdout: string): string[] {
  switch (entry.type) {
    case 'kubernetes': {
      const items = ((JSON.parse(stdout) as { items?: KubeEvent[] }).items ?? []).filter((e) => {
        const object = e.involvedObject?.name ?? '';
        return object === entry.name || object.startsWith(`${entry.name}-`);
      });
      const when = (e: KubeEvent) => e.lastTimestamp ?? e.eventTime ?? '';
      return items
        .sort((a, b) => when(a).localeCompare(when(b)))
        .slice(-MAX_EVENTS)
        .map(
          (e) =>
            `${when(e)} ${e.type ?? '?'} ${e.reason ?? '?'} ${e.involvedObject?.kind ?? '?'}/${e.involvedObject?.name ?? '?'}: ${(e.message ?? '').trim()}${(e.count ?? 1) > 1 ? ` (x${e.count})` : ''}`,
        );
    }
    case 'systemd':
      return [
        stdout
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
          .join(' '),
      ];
    case 'compose': {
      const text = stdout.trim();
      if (text === '') return ['no container of this service exists'];
      const containers = (
        text.startsWith('[')
          ? (JSON.parse(text) as Record<string, unknown>[])
          : text
              .split('\n')
              .filter((l) => l.trim())
              .map((l) => JSON.parse(l) as Record<string, unknown>)
      ) as { Name?: string; State?: string; Status?: string; ExitCode?: number; Health?: string }[];
      return containers.map(
        (c) =>
          `${c.Name ?? '?'}: ${c.State ?? '?'} (${c.Status ?? '?'})${c.ExitCode ? `, exit code ${c.ExitCode}` : ''}${c.Health ? `, health ${c.Health}` : ''}`,
      );
    }
    case 'command':
      return [];
  }
}

/**
 * The status and recent events of a service. Never throws because the service is down, and
 * not because its events cannot be read (that is recorded): this is the detection step.
 */
export async function inspectService(ctx: StepContext<unknown>, name: string): Promise<ServiceSnapshot> {
  const entry = entryOf(ctx, name);
  const status = await ctx.service(name).status({ signal: ctx.signal });
  const snapshot: ServiceSnapshot = {
    name,
    type: entry.type,
    state: status.state,
    detail: status.detail,
    ...(status.replicas !== undefined ? { replicas: status.replicas } : {}),
    events: [],
  };
  const command = eventsCommand(entry);
  if (command !== undefined) {
    try {
      const result = await ctx.shell.exec(command[0], command[1], { signal: ctx.signal, reject: false, timeoutMs: PROBE_TIMEOUT_MS });
      if (result.exitCode !== 0) throw new Error(`exited ${result.exitCode}: ${(result.stderr || result.stdout).trim().slice(-300)}`);
      snapshot.events = parseEvents(entry, result.stdout);
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      snapshot.eventsError = messageOf(error);
    }
  }
  return snapshot;
}

/**
 * The last `lines` lines of a service's logs, or why there are none. Reading logs is
 * evidence for the post-mortem, never a reason to hold a recovery back, so it does not throw.
 */
export async function serviceLogs(ctx: StepContext<unknown>, name: string, lines: number): Promise<{ text: string; error?: string }> {
  const controller = ctx.service(name);
  if (controller.logs === undefined) return { text: '', error: `service "${name}" has no logs command configured` };
  try {
    return { text: (await controller.logs({ lines, signal: ctx.signal })).trimEnd() };
  } catch (error) {
    if (ctx.signal.aborted) throw error;
    return { text: '', error: messageOf(error) };
  }
}

/** Probes a health check up to `attempts` times, `gapMs` apart: one lost packet must not restart a service. */
export async function probeHealth(ctx: StepContext<unknown>, check: HealthCheck, attempts = 3, gapMs = 1000): Promise<HealthResult> {
  let last: HealthResult = { ok: false, detail: 'not probed', latencyMs: 0 };
  for (let i = 1; i <= attempts; i++) {
    last = await check.check({ signal: ctx.signal });
    if (last.ok) return last;
    if (i < attempts) await ctx.sleep(gapMs);
  }
  return last;
}

/**
 * Decides which services to restart. `never` restarts nothing (diagnosis only); `always`
 * restarts every selected service; `auto` restarts every selected service when the health
 * check fails (a hung process passes its status check but answers nothing), else only the
 * services that are not running. A service whose state is unknown is not restarted on a
 * guess when the health check passes.
 */
export function decideRestart(
  services: readonly ServiceSnapshot[],
  health: { name: string; ok: boolean; detail: string } | null,
  policy: RestartPolicy,
): RestartDecision {
  const notRunning = services.filter((s) => s.state === 'stopped' || s.state === 'degraded');
  const unhealthy = health !== null && !health.ok;
  const category: 1 | 2 | null =
    unhealthy || (services.length > 0 && services.every((s) => s.state === 'stopped')) ? 2 : notRunning.length > 0 ? 1 : null;
  const findings = [
    ...(health === null ? [] : [`health check ${health.name} ${health.ok ? 'passes' : `fails (${health.detail})`}`]),
    ...services.map((s) => `${s.name} is ${s.state}${s.detail ? ` (${s.detail})` : ''}`),
  ].join('; ');
  const why = (s: ServiceSnapshot) =>
    unhealthy ? `health check ${health?.name} fails (${health?.detail}); ${s.name} is ${s.state}` : `${s.name} is ${s.state}: ${s.detail}`;
  let restart: { name: string; why: string }[];
  switch (policy) {
    case 'never':
      restart = [];
      break;
    case 'always':
      restart = services.map((s) => ({ name: s.name, why: `--restart always; ${why(s)}` }));
      break;
    case 'auto':
      restart = (unhealthy ? services : notRunning).map((s) => ({ name: s.name, why: why(s) }));
      break;
  }
  const summary =
    restart.length > 0
      ? `restart ${restart.map((r) => r.name).join(', ')}: ${findings}`
      : category === null
        ? `healthy, nothing to do: ${findings}`
        : `not restarting (--restart ${policy}): ${findings}`;
  return { restart, summary, category };
}

/** What one restart did. */
export interface RestartOutcome {
  name: string;
  /** `start` for a service that was stopped, else `restart`. */
  action: 'start' | 'restart';
  durationMs: number;
  /** Its status once the controller said it was done. */
  after: { state: ServiceStatus['state']; detail: string };
}

/**
 * Brings one service back: a stopped service is started (a Deployment scaled to 0 scales
 * back, a dead pid is launched again), anything else is restarted the controller's way
 * (`rollout restart`, `systemctl restart`, stop then start). Every controller waits until
 * the action took effect; the status afterwards must be "running", else it fails naming the
 * service and what it saw.
 */
export async function recoverService(ctx: StepContext<unknown>, name: string): Promise<RestartOutcome> {
  const controller = ctx.service(name);
  const started = Date.now();
  const before = await controller.status({ signal: ctx.signal });
  const action = before.state === 'stopped' ? 'start' : 'restart';
  ctx.log.info(`${action === 'start' ? 'starting' : 'restarting'} ${name} (${before.state}${before.detail ? `: ${before.detail}` : ''})`);
  try {
    await controller[action]({ signal: ctx.signal });
  } catch (error) {
    if (ctx.signal.aborted) throw error;
    throw new RunbookError(
      'RUNBOOK_SERVICE_FAILED',
      `${messageOf(error).replace(/[.\s]+$/, '')}; its recent logs are in this run's journal (step collect-logs). If a restart cannot bring it back, the cause is elsewhere (its database, its host): escalate.`,
      { cause: error },
    );
  }
  const after = await controller.status({ signal: ctx.signal });
  // A controller without a way to check (state unknown) has done all it can; the health check decides.
  if (after.state !== 'running' && after.state !== 'unknown')
    throw new RunbookError('RUNBOOK_SERVICE_FAILED', `service "${name}" is ${after.state} after its ${action}: ${after.detail}`);
  ctx.log.info(`${name} is ${after.state}${after.detail ? ` (${after.detail})` : ''}`);
  return { name, action, durationMs: Date.now() - started, after: { state: after.state, detail: after.detail } };
}

/**
 * What bringing `name` back runs, for --plan and the approval: its start when it is known to
 * be stopped, its restart when it is known to run, both (one line each) when not known yet.
 */
export function describeRecover(ctx: BaseContext<unknown>, name: string, state?: string): string[] {
  const controller = ctx.service(name);
  if (state === 'stopped') return [`start ${name} (it is stopped): ${oneLine(controller.describe('start'))}`];
  if (state !== undefined) return [`restart ${name} (it is ${state}): ${oneLine(controller.describe('restart'))}`];
  return [
    `${name}, if stopped: ${oneLine(controller.describe('start'))}`,
    `${name}, otherwise: ${oneLine(controller.describe('restart'))}`,
  ];
}

const oneLine = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join('; ');

/** The last `max` characters of a log, for a journal record that must stay readable. */
export function tailOf(text: string, max = 8000): string {
  return text.length <= max ? text : `…${text.slice(-max)}`;
}
