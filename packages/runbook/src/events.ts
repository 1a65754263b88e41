import type { Progress, RunMode, RunStatus } from './definition.js';
import type { LogEntry } from './log.js';
import type { NotificationKind } from './notify/notifier.js';

/** One step as `--plan` and `--dry-run` describe it. */
export interface PlannedStep {
  id: string;
  title: string;
  phase: string;
  destructive: boolean;
  readOnly: boolean;
  idempotent: boolean;
  critical: boolean;
  /** The approval question, for destructive steps and gates. */
  gate?: string;
  timeoutMs?: number;
  retry?: { attempts: number };
  /** What the step declares it will do. */
  effects: string[];
  /** What --dry-run does with it. */
  dryRun: 'runs' | 'described';
}

/** A phase with its budget. */
export interface PlannedPhase {
  name: string;
  budgetMs: number;
  steps: string[];
}

/**
 * What a run tells its listeners, as it happens: a union keyed by `kind`, rendered for people
 * by the CLI and written as JSON lines to the run's `events.jsonl`. Every text in an event
 * has been through the run's redactor.
 */
export type RunEvent =
  | { kind: 'run-start'; runId: string; runbook: string; title: string; environment: string; mode: RunMode; at: number; resumed: boolean }
  | {
      kind: 'plan';
      runbook: string;
      title: string;
      environment: string;
      rtoMs: number;
      phases: PlannedPhase[];
      steps: PlannedStep[];
      secrets: { name: string; env: string; set: boolean; optional?: boolean }[];
    }
  | { kind: 'phase-start'; phase: string; budgetMs: number; at: number }
  | { kind: 'phase-finish'; phase: string; budgetMs: number; elapsedMs: number; at: number }
  | { kind: 'budget-overrun'; phase: string; budgetMs: number; elapsedMs: number; at: number }
  | { kind: 'rto-overrun'; rtoMs: number; elapsedMs: number; at: number }
  | { kind: 'approval-request'; step: string; question: string; effects: string[]; at: number }
  | { kind: 'approval'; step: string; approved: boolean; by: string; how: string; at: number }
  | { kind: 'step-start'; step: string; title: string; phase: string; attempt: number; at: number }
  | { kind: 'step-finish'; step: string; durationMs: number; at: number }
  | { kind: 'step-fail'; step: string; code: string; message: string; critical: boolean; willRetry: boolean; attempt: number; at: number }
  | { kind: 'step-skip'; step: string; reason: string; at: number }
  | { kind: 'would-run'; step: string; title: string; effects: string[]; destructive: boolean; at: number }
  | { kind: 'progress'; step: string; progress: Progress; at: number }
  | { kind: 'log'; entry: LogEntry }
  | { kind: 'notification'; notification: NotificationKind; delivered: number; failed: number; at: number }
  | { kind: 'undo'; step: string; ok: boolean; message?: string; at: number }
  | {
      kind: 'run-finish';
      runId: string;
      status: RunStatus;
      at: number;
      durationMs: number;
      code?: string;
      message?: string;
      report?: { markdown: string; json: string };
    };

/** Receives run events. A listener that throws is ignored (logged), never fatal. */
export type RunEventListener = (event: RunEvent) => void;
