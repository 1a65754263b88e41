import type { z } from 'zod';
import type { Clock } from './clock.js';
import { durationProblem, parseDuration } from './config/duration.js';
import type { EnvironmentConfig } from './config/schema.js';
import { RunbookError } from './errors.js';
import type { HealthCheck } from './health/check.js';
import type { Logger } from './log.js';
import type { Category, Severity } from './notify/incident.js';
import type { RunReport } from './report.js';
import type { StepRecord } from './run.js';
import type { ServiceController } from './services/controller.js';
import type { Shell } from './shell.js';

/** A length of time: milliseconds, or text such as "15m", "1h30m", "90s". */
export type Duration = number | string;

/** How a run treats the world: see docs/RUNBOOKS.md. */
export type RunMode = 'execute' | 'dry-run' | 'plan';

/** Progress of a long step, shown by the CLI and recorded as events. */
export interface Progress {
  done: number;
  total?: number;
  /** e.g. "bytes", "rows", "keys". */
  unit?: string;
  message?: string;
}

/** What every step function can read, in every mode. */
export interface BaseContext<P> {
  /** The validated params of the run. */
  readonly params: P;
  readonly runId: string;
  readonly runbook: { readonly id: string; readonly title: string };
  /** The environment's name, e.g. "staging". */
  readonly environment: string;
  /** The environment's validated config. */
  readonly config: EnvironmentConfig;
  readonly mode: RunMode;
  /**
   * The output of an earlier step. Throws when that step has not run in this run (in --plan
   * and for steps --dry-run skips, the value is unknown and the caller is told so).
   */
  output<O>(step: StepHandle<O>): O;
  /** The controller of the named service of the environment's config. */
  service(name: string): ServiceController;
  /** The named health check of the environment's config. */
  health(name: string): HealthCheck;
}

/** What `run`, `verify` and `undo` receive. */
export interface StepContext<P> extends BaseContext<P> {
  readonly log: Logger;
  /** Aborted by the step's timeout, Ctrl-C, or the run being stopped: pass it on. */
  readonly signal: AbortSignal;
  readonly clock: Clock;
  /** Runs commands with their command lines logged (secrets redacted) and killed on abort. */
  readonly shell: Shell;
  /** 1 on the first attempt, then 2, 3… when the step is retried. */
  readonly attempt: number;
  /**
   * The value of a secret the runbook declared (from the environment variable its
   * declaration or the config names). It is redacted from everything the run records.
   */
  secret(name: string): string;
  /**
   * The value of a secret declared `optional: true`, or undefined when it is not set (a
   * database without a password, a Redis without AUTH). Redacted like every secret.
   */
  optionalSecret(name: string): string | undefined;
  /** Reports progress (throttled by renderers, recorded as events). */
  progress(progress: Progress): void;
  /** Waits on the run's clock (virtual in tests) and stops on abort. */
  sleep(ms: number): Promise<void>;
  /**
   * Runs another runbook as part of this step, in the same environment. It has its own
   * journal (linked from this run's) and resumes with this run.
   */
  runRunbook<Q extends z.ZodType>(runbook: Runbook<Q>, params: z.input<Q>, options?: ChildRunOptions): Promise<ChildRun>;
}

/** Options of {@link StepContext.runRunbook}. */
export interface ChildRunOptions {
  /**
   * "throw" (the default): a child run that does not succeed fails this step. "return": the
   * step gets the failed child's steps and error to judge for itself (a drill grading a
   * recovery).
   */
  onFailure?: 'throw' | 'return';
}

/** What {@link StepContext.runRunbook} returns: the child's summary, its steps and its report. */
export interface ChildRun extends RunSummary {
  /** Each step of the child as it went (empty when a resumed run finds the child already done). */
  steps: readonly StepRecord[];
  /** The outputs of its steps that succeeded, by step id. */
  outputs: Readonly<Record<string, unknown>>;
  /** Its report: phases against their budgets, approvals, the timeline. */
  report?: RunReport;
  error?: { code: string; message: string };
}

/** What `plan` receives: it describes effects and must not touch anything. */
export type PlanContext<P> = BaseContext<P>;

/** An effect a step declares: one line, or several. */
export type Effects = string | readonly string[];

/** Retrying a failed attempt; only allowed for steps declared idempotent. */
export interface RetryPolicy {
  /** Attempts in all, including the first (≥ 2). */
  attempts: number;
  /** Wait before the second attempt. @default "1s" */
  backoff?: Duration;
  /** Each wait is the previous one times this. @default 2 */
  factor?: number;
}

/** The definition of one step. `O` is the type of its output, read by later steps. */
export interface StepDefinition<P, O> {
  /** Stable id: the journal and `--from`/`--only` name steps by it. */
  id: string;
  title: string;
  /** One of the runbook's phases. */
  phase: string;
  /** Deletes, overwrites or stops something: shown by --plan, needs a confirmation or --yes. */
  destructive?: boolean;
  /** Only reads: runs for real under --dry-run. */
  readOnly?: boolean;
  /** Running it twice has the same effect as once: it may be retried, and re-run on resume when interrupted. */
  idempotent?: boolean;
  /** A failing non-critical step is recorded and the run goes on. @default true */
  critical?: boolean;
  /** Ask for approval before this step even if it is not destructive (a decision gate). The text is the question. */
  gate?: string;
  /** The step is aborted after this long. */
  timeout?: Duration;
  retry?: RetryPolicy;
  /** The effects the step will have. Required for destructive steps. */
  plan?(ctx: PlanContext<P>): Effects;
  run(ctx: StepContext<P>): Promise<O> | O;
  /**
   * Checks the step's result. Throw, or return false or a string (the reason), to fail
   * the step; the run then treats it like a failed `run`.
   */
  verify?(ctx: StepContext<P>, output: O): Promise<unknown> | unknown;
  /** Reverts the step; run in reverse order when a later step fails and the runbook says `onFailure: "undo"`. */
  undo?(ctx: StepContext<P>, output: O): Promise<void> | void;
}

const HANDLE = Symbol('drkit.step');

/** A defined step; `O` carries its output type to `ctx.output(step)`. */
export interface StepHandle<O = unknown> {
  readonly [HANDLE]: true;
  readonly id: string;
  /** @internal the definition, params erased. */
  readonly definition: StepDefinition<never, O>;
}

/** The step factory `defineRunbook` hands to `steps`, with the runbook's params type bound. */
export type StepFactory<P> = <O>(definition: StepDefinition<P, O>) => StepHandle<O>;

/** Defines a step. Inside `defineRunbook({ steps: (step) => [...] })` the params are typed. */
export function step<P = unknown, O = unknown>(definition: StepDefinition<P, O>): StepHandle<O> {
  return { [HANDLE]: true, id: definition.id, definition: definition as unknown as StepDefinition<never, O> };
}

/** A secret a runbook reads with `ctx.secret(name)`. */
export interface SecretDeclaration {
  /** The environment variable it comes from, unless the environment's config says otherwise. */
  env: string;
  description?: string;
  /** The run goes ahead without it; steps read it with `ctx.optionalSecret(name)`. @default false */
  optional?: boolean;
}

/** The definition of a runbook. */
export interface RunbookDefinition<S extends z.ZodType> {
  /** Stable id, e.g. "database-corruption": names its runs, journal and lock. */
  id: string;
  title: string;
  description?: string;
  severity: Severity;
  category: Category;
  /** What users notice while this runs, for the incident messages. */
  impact?: string;
  /** The recovery time objective of the whole runbook. */
  rto: Duration;
  /** Params, validated before anything runs (and again on resume). */
  params: S;
  /** Phases in order, each with its time budget. */
  phases: Record<string, Duration>;
  secrets?: Record<string, SecretDeclaration>;
  /** The steps in order, or a function of the typed step factory returning them. */
  steps: readonly StepHandle<unknown>[] | ((define: StepFactory<z.output<S>>) => readonly StepHandle<unknown>[]);
  /** What happens when a critical step fails: stop there, or undo completed steps in reverse. @default "stop" */
  onFailure?: 'stop' | 'undo';
  /**
   * Which messages the run sends. "incident" (recoveries): the initial alert, the updates,
   * overruns, approvals and the resolution or failure. "failures" (routine jobs: scheduled
   * backups, backup checks, drills): only a failure, so a job that runs every hour is silent
   * while it works and loud when it does not. @default "incident"
   */
  notify?: 'incident' | 'failures';
  /** Every run of it is a DR drill: its messages and report say so, and so do its children's. @default false */
  drill?: boolean;
}

/** A finished (or refused, or planned) run. */
export interface RunSummary {
  runId: string;
  status: RunStatus;
  /** The process exit code for this status. */
  exitCode: number;
}

/** How a run ended. */
export type RunStatus = 'succeeded' | 'failed' | 'aborted' | 'refused' | 'planned';

/** Exit codes of runbooks run from the command line. */
export const EXIT_CODES = {
  succeeded: 0,
  planned: 0,
  failed: 1,
  usage: 2,
  refused: 3,
  aborted: 130,
} as const;

/** A runbook: a definition with its steps resolved and checked. */
export interface Runbook<S extends z.ZodType = z.ZodType> {
  readonly id: string;
  readonly title: string;
  readonly definition: RunbookDefinition<S>;
  readonly steps: readonly StepHandle<unknown>[];
  /** Phase names in order, with budgets in ms. */
  readonly phases: readonly { name: string; budgetMs: number }[];
  readonly rtoMs: number;
}

const ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** Milliseconds of a {@link Duration}; a bad one is RUNBOOK_DEFINITION_INVALID naming `what`. */
export function durationMs(value: Duration, what: string): number {
  const problem = durationProblem(value);
  if (problem !== undefined) throw invalid(`${what}: ${problem}`);
  return parseDuration(value);
}

function invalid(message: string): RunbookError {
  return new RunbookError('RUNBOOK_DEFINITION_INVALID', message);
}

/**
 * Defines a runbook and checks its definition: ids, phases, step order, that destructive
 * steps declare their effects, that only idempotent steps retry. A mistake throws
 * RUNBOOK_DEFINITION_INVALID when the module loads, not at 3 a.m. halfway through a run.
 */
export function defineRunbook<S extends z.ZodType>(definition: RunbookDefinition<S>): Runbook<S> {
  const where = `runbook "${definition.id}"`;
  if (typeof definition.id !== 'string' || !ID.test(definition.id))
    throw invalid(`${where}: id must be lower-case letters, digits and "-" (e.g. "database-corruption")`);
  const phaseEntries = Object.entries(definition.phases ?? {});
  if (phaseEntries.length === 0) throw invalid(`${where}: declare at least one phase with its budget`);
  const phases = phaseEntries.map(([name, budget]) => ({ name, budgetMs: durationMs(budget, `${where} phase "${name}"`) }));
  const rtoMs = durationMs(definition.rto, `${where} rto`);
  const steps = typeof definition.steps === 'function' ? definition.steps(step as StepFactory<z.output<S>>) : definition.steps;
  if (steps.length === 0) throw invalid(`${where} has no steps`);
  const seen = new Set<string>();
  let phaseIndex = 0;
  const closed = new Set<string>();
  for (const handle of steps) {
    const s = handle.definition;
    const at = `${where} step "${s.id}"`;
    if (typeof s.id !== 'string' || !ID.test(s.id)) throw invalid(`${at}: step ids are lower-case letters, digits and "-"`);
    if (seen.has(s.id)) throw invalid(`${at}: two steps have this id`);
    seen.add(s.id);
    const index = phases.findIndex((p) => p.name === s.phase);
    if (index < 0) throw invalid(`${at}: phase "${s.phase}" is not one of ${phases.map((p) => `"${p.name}"`).join(', ')}`);
    if (index < phaseIndex || closed.has(s.phase))
      throw invalid(
        `${at}: phase "${s.phase}" comes after "${phases[phaseIndex]?.name}"; keep the steps of a phase together and the phases in order`,
      );
    for (let i = phaseIndex; i < index; i++) closed.add(phases[i]?.name ?? '');
    phaseIndex = index;
    if (s.destructive && typeof s.plan !== 'function')
      throw invalid(`${at} is destructive: give it a plan(ctx) that says what it will change`);
    if (s.destructive && s.readOnly) throw invalid(`${at} cannot be both destructive and readOnly`);
    if (s.retry) {
      if (!s.idempotent) throw invalid(`${at} retries but is not declared idempotent; only idempotent steps may run twice`);
      if (!Number.isInteger(s.retry.attempts) || s.retry.attempts < 2)
        throw invalid(`${at}: retry.attempts counts every attempt and must be at least 2`);
    }
    if (s.timeout !== undefined) durationMs(s.timeout, `${at} timeout`);
  }
  for (const [name, secret] of Object.entries(definition.secrets ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(secret.env ?? ''))
      throw invalid(`${where} secret "${name}": env must name an environment variable`);
  }
  return { id: definition.id, title: definition.title, definition, steps, phases, rtoMs };
}
