import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createFsStore, isStoreError, type Lease, openStore, type Store } from '@drkit/s3-store';
import type { z } from 'zod';
import { type Approver, approveAll, operatorName } from './approval.js';
import { type Clock, realClock, type TimerHandle } from './clock.js';
import { type LoadedConfig, loadConfig, parseConfig } from './config/load.js';
import type { EnvironmentConfig } from './config/schema.js';
import { resolveSecret } from './config/secrets.js';
import {
  type BaseContext,
  durationMs,
  type Effects,
  EXIT_CODES,
  type Runbook,
  type RunMode,
  type RunStatus,
  type RunSummary,
  type StepContext,
  type StepDefinition,
  type StepHandle,
} from './definition.js';
import { codeOf, isRunbookError, messageOf, RunbookError } from './errors.js';
import type { PlannedPhase, PlannedStep, RunEvent, RunEventListener } from './events.js';
import { createHealthCheck, type HealthCheck } from './health/check.js';
import {
  Journal,
  type JournalRecord,
  type JournalState,
  journalPath,
  journalState,
  latestRun,
  newRunId,
  readJournal,
  runDir,
} from './journal.js';
import { createLogger, type LogEntry } from './log.js';
import { IncidentNotifications } from './notifications.js';
import type { Notifier } from './notify/notifier.js';
import { Redactor } from './redact.js';
import { type RunReport, writeReport } from './report.js';
import { createController, type ServiceController } from './services/controller.js';
import { createShell } from './shell.js';

/** Options of {@link run}. */
export interface RunOptions {
  /** Params before validation (from the command line: strings). On resume, the journal's are used. */
  params?: Record<string, unknown>;
  /** The environment of the config to run against. @default the config's only environment, else "local" */
  environment?: string;
  /** The config: loaded, or a raw object to validate. @default drkit.config.* of `cwd` if there is one */
  config?: LoadedConfig | Record<string, unknown>;
  /** @default "execute" */
  mode?: RunMode;
  /** Approve every destructive step and gate (CI, drills). */
  yes?: boolean;
  /** Decides approvals when --yes is not given (the CLI's terminal prompt, a chat integration). */
  approve?: Approver;
  /** Resume a run: its id, or "latest" for the newest run of this runbook in this environment. */
  resume?: string;
  /** Start at this step (steps before it are skipped; on resume their outputs come from the journal). */
  from?: string;
  /** Run only this step. */
  only?: string;
  /** Where journals and reports go. @default "<cwd>/.drkit/runs" or the config's runsDir */
  runsDir?: string;
  /** @default process.cwd() */
  cwd?: string;
  /** @default the wall clock */
  clock?: Clock;
  /** Where secrets and config references are read. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Notifiers in addition to the config's. */
  notifiers?: Notifier[];
  onEvent?: RunEventListener;
  /** Stops the run (Ctrl-C): the current step is aborted and the run ends "aborted". */
  signal?: AbortSignal;
  /** Marks notifications and the report as a drill. */
  drill?: boolean;
  /**
   * For the test harness: called synchronously after each journal record is on disk. An
   * exception thrown here ends the run at once, as a crash would: no further journal record,
   * no notification, no report.
   */
  afterRecord?: (record: JournalRecord) => void;
  /** @internal a child run started by a step of another run. */
  parent?: { runId: string; step: string };
}

/** A step as it went in this run (or an earlier attempt of it, on resume). */
export interface StepRecord {
  id: string;
  title: string;
  phase: string;
  status: 'succeeded' | 'failed' | 'skipped' | 'not-run' | 'would-run' | 'passed-over';
  attempts: number;
  durationMs?: number;
  code?: string;
  message?: string;
}

/** What {@link run} returns. */
export interface RunResult extends RunSummary {
  runbook: string;
  environment: string;
  mode: RunMode;
  steps: StepRecord[];
  /** The outputs of the steps that succeeded, by step id (as journalled: plain JSON). */
  outputs: Record<string, unknown>;
  /** Set for --plan. */
  plan?: Extract<RunEvent, { kind: 'plan' }>;
  error?: { code: string; message: string };
  /** Journal and reports, for execute and dry-run. */
  files?: { journal: string; events: string; markdown: string; json: string };
  report?: RunReport;
}

/** A thrown signal that the harness's afterRecord hook ended the run like a crash. */
class Crash extends Error {
  readonly original: unknown;
  constructor(original: unknown) {
    super('simulated crash');
    this.original = original;
  }
}

/** Thrown by `ctx.output()` where the value cannot be known: in --plan, and in --dry-run for steps not run. */
class UnknownOutput extends Error {
  readonly step: string;
  constructor(step: string) {
    super(`depends on the output of step "${step}", known only when it runs`);
    this.step = step;
  }
}

function isLoadedConfig(config: unknown): config is LoadedConfig {
  return typeof (config as LoadedConfig | undefined)?.environment === 'function';
}

/** How long a stopped step has to honour its AbortSignal before the run moves on without it. */
const STOP_GRACE_MS = 5000;

function statusCode(status: RunStatus): number {
  return EXIT_CODES[status];
}

async function resolveConfig(options: RunOptions, cwd: string, env: NodeJS.ProcessEnv): Promise<LoadedConfig | undefined> {
  if (options.config !== undefined)
    return isLoadedConfig(options.config) ? options.config : parseConfig(options.config, 'the config passed to run()');
  try {
    return await loadConfig({ cwd, env });
  } catch (error) {
    // No config file is fine for a runbook that needs no services, stores or notifiers.
    if (isRunbookError(error, 'RUNBOOK_CONFIG_NOT_FOUND')) return undefined;
    throw error;
  }
}

function pickEnvironment(config: LoadedConfig | undefined, requested: string | undefined): { name: string; env: EnvironmentConfig } {
  if (!config) return { name: requested ?? 'local', env: parseConfig({ environments: { local: {} } }).environment('local') };
  const name = requested ?? (config.environments.length === 1 ? config.environments[0] : undefined);
  if (name === undefined)
    throw new RunbookError(
      'RUNBOOK_PARAMS_INVALID',
      `say which environment to run against: --env ${config.environments.join(' | --env ')}`,
    );
  return { name, env: config.environment(name) };
}

function validateParams(runbook: Runbook, raw: Record<string, unknown>, where: string): unknown {
  const parsed = runbook.definition.params.safeParse(raw);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(params)';
    const flag = issue.path.length > 0 ? `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : '';
    return `  - ${path}${flag ? ` (${flag})` : ''}: ${issue.message}`;
  });
  throw new RunbookError('RUNBOOK_PARAMS_INVALID', `${where} params of runbook "${runbook.id}" are not valid:\n${lines.join('\n')}`);
}

function effectsOf(definition: StepDefinition<never, unknown>, ctx: BaseContext<unknown>): string[] {
  if (typeof definition.plan !== 'function') return [];
  try {
    const effects: Effects = definition.plan(ctx as never);
    return (typeof effects === 'string' ? [effects] : [...effects]).map(String);
  } catch (error) {
    if (error instanceof UnknownOutput) return [`(${error.message})`];
    return [`(cannot describe: ${messageOf(error)})`];
  }
}

function approvalQuestion(definition: StepDefinition<never, unknown>): string | undefined {
  if (definition.gate) return definition.gate;
  if (definition.destructive) return `Run the destructive step "${definition.title}"?`;
  return undefined;
}

/**
 * Runs a runbook: validates params, config and secrets, then plans (`mode: "plan"`: nothing
 * is run, opened or written), rehearses (`"dry-run"`: read-only steps run, the others say
 * what they would do) or executes it: one step after another, each journalled before and
 * after, under the run lock, with approvals, timeouts, retries, phase budgets, incident
 * notifications and a report at the end.
 *
 * Throws a RunbookError (and runs nothing) when the run cannot start: invalid params or
 * config (RUNBOOK_PARAMS_INVALID, RUNBOOK_CONFIG_INVALID), a missing secret
 * (RUNBOOK_SECRET_MISSING), a destructive step with nobody to approve it (RUNBOOK_REFUSED),
 * another run holding the lock (RUNBOOK_LOCKED), or a resume that does not fit the
 * journal (RUNBOOK_RESUME_INVALID). Once started it resolves with the outcome, failed or not.
 */
export async function run(runbook: Runbook, options: RunOptions = {}): Promise<RunResult> {
  const mode = options.mode ?? 'execute';
  // A drill runbook is always a drill, whoever starts it; anything else only when asked.
  const drill = options.drill === true || runbook.definition.drill === true;
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const clock = options.clock ?? realClock;
  const redactor = new Redactor();
  const listener = options.onEvent;
  const definitionOf = (h: StepHandle<unknown>) => h.definition as StepDefinition<never, unknown>;

  const config = await resolveConfig(options, cwd, env);
  const { name: environment, env: envConfig } = pickEnvironment(config, options.environment);
  const runsDir = resolve(cwd, options.runsDir ?? envConfig.runsDir ?? join('.drkit', 'runs'));

  // Resume: the journal decides the run id and params.
  let resumed: JournalState | undefined;
  if (options.resume !== undefined && mode !== 'plan') {
    const id = options.resume === 'latest' ? latestRun(runsDir, runbook.id, environment) : options.resume;
    if (!id)
      throw new RunbookError(
        'RUNBOOK_RESUME_INVALID',
        `no earlier run of "${runbook.id}" in environment "${environment}" under ${runsDir} to resume`,
      );
    const path = journalPath(runsDir, id);
    if (!existsSync(path))
      throw new RunbookError('RUNBOOK_RESUME_INVALID', `no run "${id}" under ${runsDir} (its journal ${path} does not exist)`);
    resumed = journalState(readJournal(path));
    checkResume(runbook, resumed, environment, options.parent !== undefined, options.from);
  }

  const rawParams = resumed ? mergeResumeParams(resumed.header.params, options.params) : (options.params ?? {});
  const params = validateParams(runbook, rawParams as Record<string, unknown>, resumed ? 'the journalled' : 'the');

  // Secrets: all of them resolved before anything runs, so a missing one fails in a second, not at step 7.
  const secretValues = new Map<string, string>();
  const secretList: { name: string; env: string; set: boolean; optional?: boolean }[] = [];
  for (const [name, declaration] of Object.entries(runbook.definition.secrets ?? {})) {
    const ref = envConfig.secrets?.[name] ?? { env: declaration.env };
    const label = 'env' in ref ? ref.env : ref.file;
    if (mode === 'plan') {
      secretList.push({
        name,
        env: label,
        set: 'env' in ref ? Boolean(env[ref.env]) : existsSync(ref.file),
        ...(declaration.optional === true ? { optional: true } : {}),
      });
      continue;
    }
    // An optional secret may be absent from the environment; a file the config names must exist.
    if (declaration.optional === true && 'env' in ref && env[ref.env] === undefined) {
      secretList.push({ name, env: label, set: false, optional: true });
      continue;
    }
    secretValues.set(name, resolveSecret(ref, { env, redactor }));
    secretList.push({ name, env: label, set: true });
  }

  const production = envConfig.production === true;
  const steps = runbook.steps;
  const ids = steps.map((s) => s.id);
  for (const [flag, id] of [
    ['--from', options.from],
    ['--only', options.only],
  ] as const) {
    if (id !== undefined && !ids.includes(id))
      throw new RunbookError('RUNBOOK_PARAMS_INVALID', `${flag} ${id}: no such step; the steps are ${ids.join(', ')}`);
  }
  const selected = (id: string): boolean => {
    if (options.only !== undefined) return id === options.only;
    if (options.from !== undefined) return ids.indexOf(id) >= ids.indexOf(options.from);
    return true;
  };

  const budgetOf = (phase: string): number => {
    const override = envConfig.rto?.phases?.[phase];
    return override ?? runbook.phases.find((p) => p.name === phase)?.budgetMs ?? 0;
  };
  const rtoMs = envConfig.rto?.total ?? runbook.rtoMs;

  // Outputs: from the journal on resume, then from the steps as they finish.
  const outputs = new Map<string, unknown>(resumed?.finished ?? []);
  // Resuming --from a step runs it and everything after it again, whatever the journal says.
  if (resumed && options.from !== undefined)
    for (const id of ids.slice(ids.indexOf(options.from))) {
      outputs.delete(id);
      resumed.passed.delete(id);
    }
  const runId = resumed?.header.runId ?? newRunId(runbook.id, clock.now());

  let logSink: (entry: LogEntry) => void = () => {};
  const log = createLogger({ sink: (entry) => logSink(entry), redactor, now: () => clock.now() });
  const controllers = new Map<string, ServiceController>();
  const checks = new Map<string, HealthCheck>();
  const baseShell = createShell({ log: log.child('shell'), redactor, env, cwd });

  const baseContext = (outputFor: (h: StepHandle<unknown>) => unknown): BaseContext<unknown> => ({
    params,
    runId,
    runbook: { id: runbook.id, title: runbook.title },
    environment,
    config: envConfig,
    mode,
    output: ((h: StepHandle<unknown>) => outputFor(h)) as BaseContext<unknown>['output'],
    service(name) {
      const existing = controllers.get(name);
      if (existing) return existing;
      const cfg = envConfig.services?.[name];
      if (!cfg)
        throw new RunbookError(
          'RUNBOOK_CONFIG_INVALID',
          `environment "${environment}" has no service "${name}": add it under environments.${environment}.services in the config`,
        );
      const controller = createController(name, cfg, { shell: baseShell, log: log.child(`service:${name}`), clock });
      controllers.set(name, controller);
      return controller;
    },
    health(name) {
      const existing = checks.get(name);
      if (existing) return existing;
      const cfg = envConfig.health?.[name];
      if (!cfg)
        throw new RunbookError(
          'RUNBOOK_CONFIG_INVALID',
          `environment "${environment}" has no health check "${name}": add it under environments.${environment}.health in the config`,
        );
      const check = createHealthCheck(name, cfg, { env, log: log.child(`health:${name}`), clock });
      checks.set(name, check);
      return check;
    },
  });

  const planContext = baseContext((h) => {
    if (outputs.has(h.id)) return outputs.get(h.id);
    throw new UnknownOutput(h.id);
  });

  const plannedSteps = (): PlannedStep[] =>
    steps.map((h) => {
      const d = definitionOf(h);
      const gate = approvalQuestion(d);
      return {
        id: d.id,
        title: d.title,
        phase: d.phase,
        destructive: d.destructive === true,
        readOnly: d.readOnly === true,
        idempotent: d.idempotent === true,
        critical: d.critical !== false,
        ...(gate ? { gate } : {}),
        ...(d.timeout !== undefined ? { timeoutMs: durationMs(d.timeout, d.id) } : {}),
        ...(d.retry ? { retry: { attempts: d.retry.attempts } } : {}),
        effects: effectsOf(d, planContext),
        dryRun: d.readOnly ? 'runs' : 'described',
      };
    });
  const plannedPhases = (): PlannedPhase[] =>
    runbook.phases.map((p) => ({
      name: p.name,
      budgetMs: budgetOf(p.name),
      steps: steps.filter((s) => definitionOf(s).phase === p.name).map((s) => s.id),
    }));

  /** Hands an event that is already redacted to the listener. */
  const emit = (event: RunEvent) => {
    if (!listener) return;
    try {
      listener(event);
    } catch {
      // A listener's bug must not stop a recovery.
    }
  };

  if (mode === 'plan') {
    const plan: Extract<RunEvent, { kind: 'plan' }> = redactor.value({
      kind: 'plan',
      runbook: runbook.id,
      title: runbook.title,
      environment,
      rtoMs,
      phases: plannedPhases(),
      steps: plannedSteps().filter((s) => selected(s.id)),
      secrets: secretList,
    });
    emit(plan);
    return { runId: '', status: 'planned', exitCode: 0, runbook: runbook.id, environment, mode, steps: [], outputs: {}, plan };
  }

  // Execute and dry-run from here on.
  const willRun = steps.filter((h) => selected(h.id) && !outputs.has(h.id) && !resumed?.passed.has(h.id));
  const approver: Approver | undefined = options.yes ? approveAll('--yes', env) : options.approve;
  if (mode === 'execute' && !approver) {
    const gated = willRun.filter((h) => approvalQuestion(definitionOf(h)) !== undefined).map((h) => h.id);
    if (gated.length > 0)
      throw new RunbookError(
        'RUNBOOK_REFUSED',
        `refusing to start: step${gated.length > 1 ? 's' : ''} ${gated.join(', ')} need${gated.length > 1 ? '' : 's'} a confirmation and nobody is at a terminal to give it. Review them with --plan, then run again on a terminal or with --yes.`,
      );
  }

  // The lock: one run of a runbook per environment at a time. Dry runs change nothing and take none.
  let lease: Lease | undefined;
  let lockStore: Store | undefined;
  if (mode === 'execute') {
    lockStore = envConfig.lock?.store ? openStore(envConfig.lock.store) : createFsStore(dirname(runsDir));
    const name = `runbook.${runbook.id}.${environment}`;
    try {
      lease = await lockStore.lock(name, {
        owner: `${operatorName(env)} run ${runId}`,
        ...(envConfig.lock?.ttl !== undefined ? { ttlMs: envConfig.lock.ttl } : {}),
      });
    } catch (error) {
      await lockStore.close?.();
      if (isStoreError(error, 'STORE_LOCKED'))
        throw new RunbookError(
          'RUNBOOK_LOCKED',
          `another run of "${runbook.id}" holds the ${environment} lock: ${error.message}. Wait for it to finish; a run that died leaves a lock that goes stale by itself.`,
          { cause: error },
        );
      throw error;
    }
  }

  const dir = runDir(runsDir, runId);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = {
    journal: journalPath(runsDir, runId),
    events: join(dir, mode === 'dry-run' ? 'dry-run-events.jsonl' : 'events.jsonl'),
    markdown: join(dir, mode === 'dry-run' ? 'dry-run.md' : 'report.md'),
    json: join(dir, mode === 'dry-run' ? 'dry-run.json' : 'report.json'),
  };
  // A dry run gets its own journal so that it can never be resumed as if it had executed.
  if (mode === 'dry-run') files.journal = join(dir, 'dry-run-journal.jsonl');
  const journal = new Journal(files.journal, redactor);
  let crashed: Crash | undefined;
  const record = (r: JournalRecord) => {
    if (crashed) throw crashed;
    journal.append(r);
    if (options.afterRecord) {
      try {
        options.afterRecord(r);
      } catch (error) {
        crashed = new Crash(error);
        throw crashed;
      }
    }
  };
  const allEvents: RunEvent[] = [];
  const emitAndLog = (event: RunEvent) => {
    const clean = redactor.value(event);
    allEvents.push(clean);
    try {
      appendFileSync(files.events, `${JSON.stringify(clean)}\n`, { mode: 0o600 });
    } catch {
      // The event log is for people; the journal is what resume depends on.
    }
    emit(clean);
  };
  logSink = (entry) => emitAndLog({ kind: 'log', entry });

  const notifications =
    mode === 'execute' && !options.parent
      ? new IncidentNotifications({
          runbook,
          runId,
          environment,
          envConfig,
          env,
          redactor,
          clock,
          log: log.child('notify'),
          extra: options.notifiers ?? [],
          drill,
          onSent: (kind, delivered, failed) => emitAndLog({ kind: 'notification', notification: kind, delivered, failed, at: clock.now() }),
        })
      : undefined;

  const timers: TimerHandle[] = [];
  const runController = new AbortController();
  const onAbort = () => runController.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();

  const by = operatorName(env);
  const startedAt = clock.now();
  const runStartedAt = resumed?.header.at ?? startedAt;
  const records: StepRecord[] = steps.map((h) => ({
    id: h.id,
    title: definitionOf(h).title,
    phase: definitionOf(h).phase,
    status: outputs.has(h.id) ? 'succeeded' : resumed?.passed.has(h.id) ? 'passed-over' : 'not-run',
    attempts: 0,
  }));
  const recordOf = (id: string) => records.find((r) => r.id === id) as StepRecord;

  let status: RunStatus = 'succeeded';
  let failure: { code: string; message: string } | undefined;

  try {
    if (resumed) record({ t: 'resume', at: startedAt, by, ...(options.from ? { from: options.from } : {}) });
    else
      record({
        t: 'run',
        runId,
        runbook: runbook.id,
        title: runbook.title,
        environment,
        mode,
        params: rawParams,
        steps: steps.map((h) => ({ id: h.id, phase: definitionOf(h).phase, destructive: definitionOf(h).destructive === true })),
        at: startedAt,
        by,
        ...(options.parent ? { parent: options.parent } : {}),
      });
    emitAndLog({
      kind: 'run-start',
      runId,
      runbook: runbook.id,
      title: runbook.title,
      environment,
      mode,
      at: startedAt,
      resumed: Boolean(resumed),
    });
    if (notifications) {
      if (resumed) notifications.resumed(runStartedAt);
      else notifications.initial(runStartedAt);
      notifications.startUpdates(runStartedAt, () => progressNow());
    }

    // The whole run's RTO: one overrun notification when the clock passes it.
    const rtoLeft = rtoMs - (clock.now() - runStartedAt);
    if (mode === 'execute' && rtoLeft > 0)
      timers.push(
        clock.setTimeout(() => {
          emitAndLog({ kind: 'rto-overrun', rtoMs, elapsedMs: clock.now() - runStartedAt, at: clock.now() });
          notifications?.overrun('the whole runbook (RTO)', rtoMs, clock.now() - runStartedAt);
        }, rtoLeft),
      );

    const progressNow = () => {
      const current = records.find((r) => r.status === 'not-run' && selected(r.id));
      return {
        completed: records.filter((r) => r.status === 'succeeded').length,
        total: records.length,
        ...(current ? { phase: current.phase, step: current.title } : {}),
      };
    };

    // Phase clocks: time already spent in a phase in earlier attempts counts against its budget.
    const spentBefore = new Map<string, number>();
    for (const r of resumed?.records ?? [])
      if (r.t === 'step-finish' || r.t === 'step-fail') {
        const phase = definitionOf(steps.find((s) => s.id === r.step) ?? (steps[0] as StepHandle<unknown>)).phase;
        spentBefore.set(phase, (spentBefore.get(phase) ?? 0) + r.durationMs);
      }
    let phase: { name: string; startedAt: number; timer?: TimerHandle; overran: boolean } | undefined;
    const finishPhase = () => {
      if (!phase) return;
      phase.timer?.cancel();
      const elapsedMs = (spentBefore.get(phase.name) ?? 0) + clock.now() - phase.startedAt;
      emitAndLog({ kind: 'phase-finish', phase: phase.name, budgetMs: budgetOf(phase.name), elapsedMs, at: clock.now() });
      phase = undefined;
    };
    const enterPhase = (name: string) => {
      if (phase?.name === name) return;
      finishPhase();
      const budgetMs = budgetOf(name);
      const current: { name: string; startedAt: number; timer?: TimerHandle; overran: boolean } = {
        name,
        startedAt: clock.now(),
        overran: false,
      };
      phase = current;
      emitAndLog({ kind: 'phase-start', phase: name, budgetMs, at: clock.now() });
      const left = budgetMs - (spentBefore.get(name) ?? 0);
      if (mode === 'execute' && budgetMs > 0)
        current.timer = clock.setTimeout(
          () => {
            current.overran = true;
            const elapsedMs = (spentBefore.get(name) ?? 0) + clock.now() - current.startedAt;
            try {
              record({ t: 'overrun', phase: name, at: clock.now(), budgetMs, elapsedMs });
            } catch {
              // A crash or a full disk: the step's own records will say so.
            }
            emitAndLog({ kind: 'budget-overrun', phase: name, budgetMs, elapsedMs, at: clock.now() });
            notifications?.overrun(name, budgetMs, elapsedMs);
          },
          Math.max(0, left),
        );
    };

    const finishedSteps: StepHandle<unknown>[] = [];
    for (const handle of steps) {
      const d = definitionOf(handle);
      const rec = recordOf(handle.id);
      if (outputs.has(handle.id)) {
        emitAndLog({ kind: 'step-skip', step: handle.id, reason: 'done in an earlier attempt of this run', at: clock.now() });
        continue;
      }
      if (resumed?.passed.has(handle.id)) {
        emitAndLog({ kind: 'step-skip', step: handle.id, reason: 'failed earlier and is not critical', at: clock.now() });
        continue;
      }
      if (!selected(handle.id)) {
        rec.status = 'skipped';
        emitAndLog({
          kind: 'step-skip',
          step: handle.id,
          reason: options.only !== undefined ? `only ${options.only} was asked for` : `the run starts at ${options.from}`,
          at: clock.now(),
        });
        continue;
      }
      if (runController.signal.aborted) {
        status = 'aborted';
        failure = { code: 'RUNBOOK_ABORTED', message: `the run was stopped before step "${handle.id}"` };
        break;
      }
      enterPhase(d.phase);

      if (mode === 'dry-run' && !d.readOnly) {
        const effects = effectsOf(d, planContext);
        rec.status = 'would-run';
        record({ t: 'step-skip', step: handle.id, at: clock.now(), reason: 'dry run: not read-only' });
        emitAndLog({ kind: 'would-run', step: handle.id, title: d.title, effects, destructive: d.destructive === true, at: clock.now() });
        continue;
      }

      // Approval, with the real outputs of earlier steps in the effects.
      const question = approvalQuestion(d);
      if (question && mode === 'execute' && approver) {
        const effects = effectsOf(d, planContext);
        emitAndLog({ kind: 'approval-request', step: handle.id, question, effects, at: clock.now() });
        // --yes approves at once: nobody is asked, so nobody is paged.
        if (!options.yes) notifications?.approval(d.title, question);
        const decision = await approver(
          {
            runId,
            runbook: runbook.id,
            environment,
            production,
            step: handle.id,
            title: d.title,
            question,
            destructive: d.destructive === true,
            effects: redactor.value(effects),
          },
          runController.signal,
        );
        record({ t: 'approval', step: handle.id, at: clock.now(), approved: decision.approved, by: decision.by, how: decision.how });
        emitAndLog({ kind: 'approval', step: handle.id, approved: decision.approved, by: decision.by, how: decision.how, at: clock.now() });
        if (!decision.approved) {
          status = 'refused';
          failure = { code: 'RUNBOOK_REFUSED', message: `${decision.by} declined step "${handle.id}"; nothing of it ran` };
          break;
        }
      }

      const outcome = await runStep(d, rec);
      if (outcome === 'ok') {
        finishedSteps.push(handle);
        continue;
      }
      if (outcome === 'passed-over') continue;
      break;
    }
    finishPhase();

    if (
      ((status as RunStatus) === 'failed' || (status as RunStatus) === 'aborted') &&
      runbook.definition.onFailure === 'undo' &&
      mode === 'execute'
    )
      await undoSteps(finishedSteps);
  } catch (error) {
    if (error instanceof Crash) {
      crashed = error;
    } else {
      status = 'failed';
      failure = { code: codeOf(error) ?? 'RUNBOOK_STEP_FAILED', message: redactor.text(messageOf(error)) };
    }
  } finally {
    for (const t of timers) t.cancel();
    options.signal?.removeEventListener('abort', onAbort);
  }

  if (crashed) {
    // As a crash would: nothing more is written. The lease is released because a live
    // process's lock never goes stale; a real crash leaves it to expire.
    notifications?.stop();
    journal.close();
    await lease?.release().catch(() => {});
    await lockStore?.close?.();
    throw crashed.original;
  }

  const finishedAt = clock.now();
  try {
    record({
      t: 'run-finish',
      at: finishedAt,
      status,
      ...(failure ? { code: failure.code, message: failure.message } : {}),
    });
  } catch {
    // A full disk: the run still reports and notifies; a resume sees it as unfinished.
  }
  if (notifications) {
    notifications.stopUpdates();
    if (status === 'succeeded') notifications.resolved(runStartedAt, finishedAt);
    else notifications.failed(runStartedAt, finishedAt, status, failure, records.find((r) => r.status === 'failed')?.title);
    await notifications.flush();
  }
  journal.close();
  let report: RunReport | undefined;
  try {
    report = writeReport({
      files,
      runbook,
      environment,
      mode,
      runId,
      status,
      phases: runbook.phases.map((p) => ({ name: p.name, budgetMs: budgetOf(p.name) })),
      rtoMs,
      records: readJournal(files.journal),
      events: allEvents,
      deliveries: notifications?.deliveries() ?? [],
      drill,
      redactor,
      ...(failure ? { failure } : {}),
    });
  } catch (error) {
    log.error(`could not write the report: ${messageOf(error)}`);
  }
  emitAndLog({
    kind: 'run-finish',
    runId,
    status,
    at: finishedAt,
    durationMs: finishedAt - runStartedAt,
    ...(failure ? failure : {}),
    ...(report ? { report: { markdown: files.markdown, json: files.json } } : {}),
  });
  await lease?.release().catch(() => {});
  await lockStore?.close?.();

  return {
    runId,
    status,
    exitCode: statusCode(status),
    runbook: runbook.id,
    environment,
    mode,
    steps: records,
    outputs: Object.fromEntries(outputs),
    files,
    ...(report ? { report } : {}),
    ...(failure ? { error: failure } : {}),
  };

  /** Runs one step with its retries; says whether the run goes on. */
  async function runStep(d: StepDefinition<never, unknown>, rec: StepRecord): Promise<'ok' | 'passed-over' | 'stop'> {
    const attempts = d.retry?.attempts ?? 1;
    let wait = d.retry?.backoff !== undefined ? durationMs(d.retry.backoff, `${d.id} retry backoff`) : 1000;
    const timeoutMs = d.timeout !== undefined ? durationMs(d.timeout, `${d.id} timeout`) : undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      rec.attempts = attempt;
      const started = clock.now();
      record({ t: 'step-start', step: d.id, attempt, at: started });
      emitAndLog({ kind: 'step-start', step: d.id, title: d.title, phase: d.phase, attempt, at: started });
      const stepController = new AbortController();
      // Why the step is being stopped; it wins over whatever error the stopped work throws.
      let stopReason: RunbookError | undefined;
      const onRunAbort = () => {
        stopReason ??= new RunbookError('RUNBOOK_ABORTED', `step "${d.id}" was stopped: the run was interrupted`);
        stepController.abort(runController.signal.reason);
      };
      if (runController.signal.aborted) onRunAbort();
      else runController.signal.addEventListener('abort', onRunAbort, { once: true });
      let timer: TimerHandle | undefined;
      if (timeoutMs !== undefined)
        timer = clock.setTimeout(() => {
          stopReason ??= new RunbookError(
            'RUNBOOK_STEP_TIMEOUT',
            `step "${d.id}" did not finish within its timeout of ${timeoutMs} ms and was stopped`,
          );
          stepController.abort(stopReason);
        }, timeoutMs);
      // A stopped step gets a grace period to honour its signal; one that ignores it is left behind.
      let grace: NodeJS.Timeout | undefined;
      const givenUp = new Promise<never>((_, reject) => {
        stepController.signal.addEventListener(
          'abort',
          () => {
            grace = setTimeout(() => reject(stopReason), STOP_GRACE_MS);
            grace.unref();
          },
          { once: true },
        );
      });
      givenUp.catch(() => {});
      const ctx = stepContext(d, stepController.signal, attempt);
      try {
        const work = (async () => {
          const output = await d.run(ctx as never);
          if (d.verify) {
            const verdict = await d.verify(ctx as never, output as never);
            if (verdict === false || typeof verdict === 'string')
              throw new RunbookError(
                'RUNBOOK_VERIFY_FAILED',
                `step "${d.id}" ran but its verification failed${typeof verdict === 'string' ? `: ${verdict}` : ''}`,
              );
          }
          return output;
        })();
        const output = await Promise.race([work, givenUp]);
        const stored = toJson(output, d.id);
        if (JSON.stringify(redactor.value(stored)) !== JSON.stringify(stored))
          log.warn(`the output of step "${d.id}" contains a secret; it is redacted in the journal, so a resumed run sees it redacted`);
        const durationMs = clock.now() - started;
        outputs.set(d.id, stored);
        rec.status = 'succeeded';
        rec.durationMs = (rec.durationMs ?? 0) + durationMs;
        record({ t: 'step-finish', step: d.id, at: clock.now(), durationMs, output: stored });
        emitAndLog({ kind: 'step-finish', step: d.id, durationMs, at: clock.now() });
        return 'ok';
      } catch (error) {
        if (error instanceof Crash) throw error;
        if (error instanceof UnknownOutput && mode === 'dry-run') {
          rec.status = 'would-run';
          record({ t: 'step-skip', step: d.id, at: clock.now(), reason: `dry run: ${error.message}` });
          emitAndLog({
            kind: 'would-run',
            step: d.id,
            title: d.title,
            effects: [`(cannot check in a dry run: it ${error.message})`],
            destructive: false,
            at: clock.now(),
          });
          return 'passed-over';
        }
        const durationMs = clock.now() - started;
        rec.durationMs = (rec.durationMs ?? 0) + durationMs;
        const isAbort = runController.signal.aborted;
        const cause = stopReason ?? error;
        const code = isAbort ? 'RUNBOOK_ABORTED' : (codeOf(cause) ?? 'RUNBOOK_STEP_FAILED');
        const message = redactor.text(messageOf(cause));
        const willRetry = !isAbort && attempt < attempts;
        const critical = d.critical !== false;
        record({ t: 'step-fail', step: d.id, at: clock.now(), durationMs, attempt, critical, code, message, willRetry });
        emitAndLog({ kind: 'step-fail', step: d.id, code, message, critical, willRetry, attempt, at: clock.now() });
        if (willRetry) {
          try {
            await clock.sleep(wait, runController.signal);
          } catch {
            // Stopped while waiting: the next loop turn sees the abort.
          }
          wait = Math.round(wait * (d.retry?.factor ?? 2));
          if (runController.signal.aborted) {
            rec.status = 'failed';
            status = 'aborted';
            failure = { code: 'RUNBOOK_ABORTED', message: `the run was stopped while step "${d.id}" waited to retry` };
            return 'stop';
          }
          continue;
        }
        rec.status = critical ? 'failed' : 'passed-over';
        rec.code = code;
        rec.message = message;
        if (isAbort) {
          status = 'aborted';
          failure = { code, message };
          return 'stop';
        }
        if (!critical) return 'passed-over';
        status = 'failed';
        failure = { code, message: `step "${d.id}" failed: ${message}` };
        return 'stop';
      } finally {
        timer?.cancel();
        clearTimeout(grace);
        runController.signal.removeEventListener('abort', onRunAbort);
      }
    }
    return 'stop';
  }

  function stepContext(d: StepDefinition<never, unknown>, signal: AbortSignal, attempt: number): StepContext<unknown> {
    const stepLog = log.child(d.id);
    const base = baseContext((h) => {
      if (outputs.has(h.id)) return outputs.get(h.id);
      // A dry run did not run the step that makes this value: say so rather than guess it.
      if (mode === 'dry-run') throw new UnknownOutput(h.id);
      throw new RunbookError(
        'RUNBOOK_STEP_FAILED',
        `step "${d.id}" reads the output of step "${h.id}", which has not run in this run${options.from || options.only ? ' (it was skipped by --from/--only; resume the run that ran it instead)' : ''}`,
      );
    });
    return {
      ...base,
      log: stepLog,
      signal,
      clock,
      shell: createShell({ log: stepLog, redactor, env, cwd, signal }),
      attempt,
      secret(name) {
        const value = secretValues.get(name);
        if (value !== undefined) return value;
        const declaration = runbook.definition.secrets?.[name];
        if (declaration === undefined)
          throw new RunbookError(
            'RUNBOOK_DEFINITION_INVALID',
            `step "${d.id}" reads secret "${name}", which runbook "${runbook.id}" does not declare; add it under secrets`,
          );
        throw new RunbookError(
          'RUNBOOK_SECRET_MISSING',
          `step "${d.id}" needs secret "${name}", which is optional and not set: export ${declaration.env} (or point secrets.${name} of the config at it) and resume`,
        );
      },
      optionalSecret(name) {
        if (runbook.definition.secrets?.[name] === undefined)
          throw new RunbookError(
            'RUNBOOK_DEFINITION_INVALID',
            `step "${d.id}" reads secret "${name}", which runbook "${runbook.id}" does not declare; add it under secrets`,
          );
        return secretValues.get(name);
      },
      progress(progress) {
        emitAndLog({ kind: 'progress', step: d.id, progress, at: clock.now() });
      },
      sleep: (ms) => clock.sleep(ms, signal),
      async runRunbook(child, childParams, childRunOptions = {}) {
        const existing = resumed?.children.get(d.id);
        if (existing) {
          const state = journalState(readJournal(journalPath(runsDir, existing)));
          if (state.status === 'succeeded') return { runId: existing, status: 'succeeded', exitCode: 0, steps: [], outputs: {} };
        }
        const childOptions: RunOptions = {
          params: childParams as Record<string, unknown>,
          environment,
          config: config ?? { environments: { [environment]: {} } },
          mode,
          runsDir,
          cwd,
          clock,
          env,
          signal,
          parent: { runId, step: d.id },
          drill,
          onEvent: (event: RunEvent) => {
            if (event.kind === 'run-start' && !existing) record({ t: 'child', step: d.id, at: clock.now(), runId: event.runId });
            if (event.kind === 'log' || event.kind === 'progress') emitAndLog(event);
          },
        };
        if (existing) childOptions.resume = existing;
        if (options.yes) childOptions.yes = true;
        if (approver) childOptions.approve = approver;
        const result = await run(child as Runbook, childOptions);
        if (result.status !== 'succeeded' && childRunOptions.onFailure !== 'return')
          throw new RunbookError(
            'RUNBOOK_STEP_FAILED',
            `runbook "${child.id}" (run ${result.runId}) ended ${result.status}${result.error ? `: ${result.error.message}` : ''}`,
          );
        return {
          runId: result.runId,
          status: result.status,
          exitCode: result.exitCode,
          steps: result.steps,
          outputs: result.outputs,
          ...(result.report ? { report: result.report } : {}),
          ...(result.error ? { error: result.error } : {}),
        };
      },
    };
  }

  async function undoSteps(done: StepHandle<unknown>[]): Promise<void> {
    for (const handle of [...done].reverse()) {
      const d = definitionOf(handle);
      if (!d.undo) continue;
      const ctx = stepContext(d, new AbortController().signal, 1);
      try {
        await d.undo(ctx as never, outputs.get(d.id) as never);
        record({ t: 'undo', step: d.id, at: clock.now(), ok: true });
        emitAndLog({ kind: 'undo', step: d.id, ok: true, at: clock.now() });
      } catch (error) {
        if (error instanceof Crash) throw error;
        const message = redactor.text(messageOf(error));
        record({ t: 'undo', step: d.id, at: clock.now(), ok: false, message });
        emitAndLog({ kind: 'undo', step: d.id, ok: false, message, at: clock.now() });
      }
    }
  }
}

/** The output as it will be journalled and read back: JSON only. */
function toJson(output: unknown, step: string): unknown {
  if (output === undefined) return null;
  try {
    return JSON.parse(JSON.stringify(output)) as unknown;
  } catch (error) {
    throw new RunbookError(
      'RUNBOOK_DEFINITION_INVALID',
      `step "${step}" returned an output that is not JSON (${messageOf(error)}); return plain data so that a resumed run can read it`,
    );
  }
}

function mergeResumeParams(journalled: unknown, given: Record<string, unknown> | undefined): Record<string, unknown> {
  const base = (journalled ?? {}) as Record<string, unknown>;
  for (const [key, value] of Object.entries(given ?? {})) {
    if (value === undefined) continue;
    if (JSON.stringify(base[key]) !== JSON.stringify(value))
      throw new RunbookError(
        'RUNBOOK_RESUME_INVALID',
        `--${key} differs from the run being resumed (${JSON.stringify(base[key])}); a run resumes with its own params: drop the flag, or start a new run`,
      );
  }
  return base;
}

function checkResume(runbook: Runbook, state: JournalState, environment: string, isChild: boolean, from: string | undefined): void {
  const h = state.header;
  const id = h.runId;
  if (h.runbook !== runbook.id)
    throw new RunbookError('RUNBOOK_RESUME_INVALID', `run ${id} is a run of "${h.runbook}", not of "${runbook.id}"`);
  if (h.environment !== environment)
    throw new RunbookError(
      'RUNBOOK_RESUME_INVALID',
      `run ${id} ran against "${h.environment}", not "${environment}": resume it with --env ${h.environment}`,
    );
  if (h.mode !== 'execute') throw new RunbookError('RUNBOOK_RESUME_INVALID', `run ${id} was a dry run; there is nothing to resume`);
  if (h.parent && !isChild) throw new RunbookError('RUNBOOK_RESUME_INVALID', `run ${id} is part of run ${h.parent.runId}: resume that one`);
  if (state.status === 'succeeded')
    throw new RunbookError('RUNBOOK_RESUME_INVALID', `run ${id} already succeeded; there is nothing to resume`);
  // The steps the journal knows must still be there, in the same order, with the same meaning.
  const now = runbook.steps.map((s) => s.id);
  const then = h.steps.map((s) => s.id);
  const removed = then.filter((s) => !now.includes(s));
  if (removed.length > 0)
    throw new RunbookError(
      'RUNBOOK_RESUME_INVALID',
      `the runbook changed since run ${id}: step${removed.length > 1 ? 's' : ''} ${removed.join(', ')} no longer exist${removed.length > 1 ? '' : 's'}. Resuming could skip or repeat work; start a new run instead.`,
    );
  const kept = now.filter((s) => then.includes(s));
  const moved = kept.find((s, i) => then.filter((t) => now.includes(t))[i] !== s);
  if (moved)
    throw new RunbookError(
      'RUNBOOK_RESUME_INVALID',
      `the runbook changed since run ${id}: its steps were reordered (first difference at "${moved}"). Start a new run instead.`,
    );
  for (const step of h.steps) {
    const current = runbook.steps.find((s) => s.id === step.id)?.definition;
    if (current && (current.destructive === true) !== step.destructive)
      throw new RunbookError(
        'RUNBOOK_RESUME_INVALID',
        `the runbook changed since run ${id}: step "${step.id}" is ${step.destructive ? 'no longer' : 'now'} destructive. Start a new run instead.`,
      );
  }
  // With --from the operator has said where to go on, having checked the interrupted step.
  for (const step of from === undefined ? state.interrupted : []) {
    const current = runbook.steps.find((s) => s.id === step)?.definition;
    if (current && !current.idempotent)
      throw new RunbookError(
        'RUNBOOK_RESUME_INVALID',
        `step "${step}" of run ${id} was interrupted part-way and is not declared idempotent, so running it again may repeat its effects. Check what it did, then resume with --from ${step} to run it again, or --from <the next step> to go on without it.`,
      );
  }
}

export type { z };
