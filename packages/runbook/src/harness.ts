import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApprovalRequest, Approver } from './approval.js';
import { type VirtualClock, virtualClock } from './clock.js';
import { type Runbook, type StepDefinition, type StepHandle, step } from './definition.js';
import { RunbookError } from './errors.js';
import type { RunEvent } from './events.js';
import { type JournalRecord, journalPath, readJournal } from './journal.js';
import type { Notification, Notifier } from './notify/notifier.js';
import { type RunOptions, type RunResult, run } from './run.js';

/** A notifier that keeps what it is sent, for assertions. */
export interface RecordingNotifier extends Notifier {
  readonly sent: Notification[];
}

/** A {@link RecordingNotifier}. */
export function recordingNotifier(name = 'recorder'): RecordingNotifier {
  const sent: Notification[] = [];
  return {
    name,
    type: 'recorder',
    sent,
    async send(n) {
      sent.push(n);
    },
  };
}

/** Where to crash: right after a step's start record (it is then interrupted) or its finish record. */
export interface CrashPoint {
  step: string;
  when: 'after-start' | 'after-finish';
}

/** Options of {@link testRunbook}. */
export interface TestRunOptions extends Omit<RunOptions, 'clock' | 'approve' | 'afterRecord'> {
  /** @default a virtual clock starting 2026-01-01 */
  clock?: VirtualClock;
  /** "all" approves everything, "none" declines everything, or decide per request. @default "all" */
  approve?: 'all' | 'none' | ((request: ApprovalRequest) => boolean);
  /** Make this step throw (its first `times` attempts, default every attempt). */
  failAt?: string | { step: string; times?: number; error?: Error };
  /** End the run there as a crash would; {@link TestRun.resume} continues it. */
  crashAt?: CrashPoint;
}

/** The outcome of a test run: the result (absent after a crash) and everything it recorded. */
export interface TestRun {
  result: RunResult | undefined;
  crashed: boolean;
  runId: string | undefined;
  runsDir: string;
  clock: VirtualClock;
  events: RunEvent[];
  notifier: RecordingNotifier;
  approvals: ApprovalRequest[];
  /** The journal as it is on disk now. */
  journal(): JournalRecord[];
  /** Resumes this run (after a crash or a failure) with the same clock, dir and notifier. */
  resume(options?: Omit<TestRunOptions, 'runsDir' | 'clock'>): Promise<TestRun>;
}

class SimulatedCrash extends Error {
  override readonly name = 'SimulatedCrash';
}

function withFailure(runbook: Runbook, failAt: NonNullable<TestRunOptions['failAt']>): Runbook {
  const target = typeof failAt === 'string' ? { step: failAt } : failAt;
  if (!runbook.steps.some((s) => s.id === target.step))
    throw new RunbookError('RUNBOOK_PARAMS_INVALID', `failAt: runbook "${runbook.id}" has no step "${target.step}"`);
  let failures = 0;
  const steps = runbook.steps.map((h): StepHandle<unknown> => {
    if (h.id !== target.step) return h;
    const original = h.definition as StepDefinition<unknown, unknown>;
    return step<unknown, unknown>({
      ...original,
      run: (ctx) => {
        if (target.times === undefined || failures < target.times) {
          failures++;
          throw target.error ?? new Error(`failure injected at step "${h.id}"`);
        }
        return original.run(ctx);
      },
    });
  });
  return { ...runbook, steps };
}

/**
 * Runs a runbook the way its author's tests want: on a virtual clock (an hour-long run takes
 * milliseconds), with approvals decided by policy, a failure injected at a step, or a crash
 * at a step boundary followed by {@link TestRun.resume}. Journals go to a temp dir unless
 * `runsDir` is given; notifications are captured by a recording notifier.
 */
export async function testRunbook(runbook: Runbook, options: TestRunOptions = {}): Promise<TestRun> {
  const clock = options.clock ?? virtualClock();
  const runsDir = options.runsDir ?? mkdtempSync(join(tmpdir(), 'drkit-runbook-test-'));
  const notifier = recordingNotifier();
  return attempt(runbook, { ...options, clock, runsDir }, notifier);
}

async function attempt(
  runbook: Runbook,
  options: TestRunOptions & { clock: VirtualClock; runsDir: string },
  notifier: RecordingNotifier,
): Promise<TestRun> {
  const events: RunEvent[] = [];
  const approvals: ApprovalRequest[] = [];
  const policy = options.approve ?? 'all';
  const approve: Approver = async (request) => {
    approvals.push(request);
    const approved = policy === 'all' ? true : policy === 'none' ? false : policy(request);
    return { approved, by: 'test-harness', how: 'auto' };
  };
  let runId = options.resume && options.resume !== 'latest' ? options.resume : undefined;
  const subject = options.failAt ? withFailure(runbook, options.failAt) : runbook;
  const crashAt = options.crashAt;
  const { failAt: _f, crashAt: _c, approve: _a, ...rest } = options;
  let result: RunResult | undefined;
  let crashed = false;
  try {
    result = await run(subject, {
      environment: 'test',
      ...rest,
      approve,
      notifiers: [notifier, ...(options.notifiers ?? [])],
      onEvent: (event) => {
        events.push(event);
        if (event.kind === 'run-start' && !runId) runId = event.runId;
        options.onEvent?.(event);
      },
      ...(crashAt
        ? {
            afterRecord: (r: JournalRecord) => {
              const hit =
                (crashAt.when === 'after-start' && r.t === 'step-start' && r.step === crashAt.step) ||
                (crashAt.when === 'after-finish' && r.t === 'step-finish' && r.step === crashAt.step);
              if (hit) throw new SimulatedCrash(`crash injected ${crashAt.when} of step "${crashAt.step}"`);
            },
          }
        : {}),
    });
    runId = result.runId || runId;
  } catch (error) {
    if (!(error instanceof SimulatedCrash)) throw error;
    crashed = true;
  }
  const finalRunId = runId;
  return {
    result,
    crashed,
    runId: finalRunId,
    runsDir: options.runsDir,
    clock: options.clock,
    events,
    notifier,
    approvals,
    journal: () => (finalRunId ? readJournal(journalPath(options.runsDir, finalRunId)) : []),
    resume: (more = {}) => {
      if (!finalRunId) throw new RunbookError('RUNBOOK_RESUME_INVALID', 'this test run never started, so it cannot be resumed');
      const { params: _p, ...inherited } = options;
      return attempt(
        runbook,
        {
          ...inherited,
          failAt: undefined,
          crashAt: undefined,
          ...more,
          resume: finalRunId,
          clock: options.clock,
          runsDir: options.runsDir,
        } as TestRunOptions & { clock: VirtualClock; runsDir: string },
        notifier,
      );
    },
  };
}
