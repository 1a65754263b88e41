import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { RunbookError } from './errors.js';
import type { Redactor } from './redact.js';

/** A step as the journal remembers the definition it ran. */
export interface JournalStep {
  id: string;
  phase: string;
  destructive: boolean;
}

/** The records of a journal, one JSON object per line, in the order they happened. */
export type JournalRecord =
  | {
      t: 'run';
      runId: string;
      runbook: string;
      title: string;
      environment: string;
      mode: 'execute' | 'dry-run';
      params: unknown;
      steps: JournalStep[];
      at: number;
      parent?: { runId: string; step: string };
      by: string;
    }
  | { t: 'resume'; at: number; by: string; from?: string }
  | { t: 'step-start'; step: string; attempt: number; at: number }
  | { t: 'step-finish'; step: string; at: number; durationMs: number; output: unknown }
  | {
      t: 'step-fail';
      step: string;
      at: number;
      durationMs: number;
      attempt: number;
      critical: boolean;
      code: string;
      message: string;
      willRetry: boolean;
    }
  | { t: 'step-skip'; step: string; at: number; reason: string }
  | { t: 'approval'; step: string; at: number; approved: boolean; by: string; how: string }
  | { t: 'overrun'; phase: string; at: number; budgetMs: number; elapsedMs: number }
  | { t: 'child'; step: string; at: number; runId: string }
  | { t: 'undo'; step: string; at: number; ok: boolean; message?: string }
  | { t: 'run-finish'; at: number; status: string; code?: string; message?: string };

/** A new run id: time-sortable, unique, safe as a directory name. */
export function newRunId(runbook: string, now: number): string {
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${runbook}-${stamp}-${randomBytes(3).toString('hex')}`;
}

/**
 * An append-only JSON-lines journal. Each record is written and fsynced before the call
 * returns, so a record the engine has acted on survives a kill -9 and a power loss; a torn
 * last line (the kill came mid-write) is ignored when the journal is read back.
 */
export class Journal {
  readonly path: string;
  readonly #redactor: Redactor;
  #fd: number | undefined;

  constructor(path: string, redactor: Redactor) {
    this.path = path;
    this.#redactor = redactor;
  }

  /** Appends one record, redacted, and waits until it is on disk. */
  append(record: JournalRecord): void {
    const line = `${JSON.stringify(this.#redactor.value(record))}\n`;
    try {
      if (this.#fd === undefined) {
        mkdirSync(join(this.path, '..'), { recursive: true });
        this.#fd = openSync(this.path, 'a', 0o600);
      }
      writeSync(this.#fd, line);
      fsyncSync(this.#fd);
    } catch (error) {
      throw new RunbookError(
        'RUNBOOK_JOURNAL_IO',
        `cannot write the run journal ${this.path}: ${(error as Error).message}. Free space or fix permissions, then resume the run.`,
        { cause: error },
      );
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** Reads a journal back; a torn last line is dropped. */
export function readJournal(path: string): JournalRecord[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new RunbookError('RUNBOOK_RESUME_INVALID', `cannot read the run journal ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const lines = text.split('\n');
  const records: JournalRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      records.push(JSON.parse(line) as JournalRecord);
    } catch (error) {
      // Only the last line can be torn by a crash; anything else is damage worth stopping for.
      if (i < lines.length - 2 || (i === lines.length - 2 && lines[lines.length - 1] !== ''))
        throw new RunbookError('RUNBOOK_RESUME_INVALID', `the run journal ${path} is damaged at line ${i + 1}`, {
          cause: error,
        });
    }
  });
  if (records[0]?.t !== 'run')
    throw new RunbookError('RUNBOOK_RESUME_INVALID', `${path} is not a run journal (it does not start with a run record)`);
  return records;
}

/** Where a run's files live. */
export function runDir(runsDir: string, runId: string): string {
  return join(runsDir, runId);
}

/** The journal file of a run. */
export function journalPath(runsDir: string, runId: string): string {
  return join(runDir(runsDir, runId), 'journal.jsonl');
}

/**
 * The newest run of `runbook` in `environment` (top-level runs only), or undefined. Run ids
 * sort by time, so the newest is the greatest id.
 */
export function latestRun(runsDir: string, runbook: string, environment: string): string | undefined {
  if (!existsSync(runsDir)) return undefined;
  const candidates = readdirSync(runsDir)
    .filter((name) => name.startsWith(`${runbook}-`) && existsSync(journalPath(runsDir, name)))
    .sort()
    .reverse();
  for (const id of candidates) {
    try {
      const first = readJournal(journalPath(runsDir, id))[0];
      if (first?.t === 'run' && first.runbook === runbook && first.environment === environment && !first.parent) return id;
    } catch {
      // A damaged journal of another run is not the one asked for.
    }
  }
  return undefined;
}

/** What a journal says about its run, folded from its records. */
export interface JournalState {
  header: Extract<JournalRecord, { t: 'run' }>;
  /** Outputs of finished steps by id. */
  finished: Map<string, unknown>;
  /** Steps started and neither finished nor failed: interrupted by a crash. */
  interrupted: string[];
  /** Steps whose last attempt failed. */
  failed: Set<string>;
  /** Non-critical steps that failed and were passed over. */
  passed: Set<string>;
  /** Child runs by the step that started them. */
  children: Map<string, string>;
  /** How the run last ended, if it did. */
  status: string | undefined;
  records: JournalRecord[];
}

/** Folds a journal's records into {@link JournalState}. */
export function journalState(records: JournalRecord[]): JournalState {
  const header = records[0] as Extract<JournalRecord, { t: 'run' }>;
  const finished = new Map<string, unknown>();
  const open = new Set<string>();
  const failed = new Set<string>();
  const passed = new Set<string>();
  const children = new Map<string, string>();
  let status: string | undefined;
  for (const r of records) {
    switch (r.t) {
      case 'step-start':
        open.add(r.step);
        failed.delete(r.step);
        break;
      case 'step-finish':
        open.delete(r.step);
        finished.set(r.step, r.output);
        break;
      case 'step-fail':
        open.delete(r.step);
        if (!r.willRetry) {
          if (r.critical) failed.add(r.step);
          else passed.add(r.step);
        }
        break;
      case 'child':
        children.set(r.step, r.runId);
        break;
      case 'resume':
        status = undefined;
        break;
      case 'run-finish':
        status = r.status;
        break;
      default:
        break;
    }
  }
  return { header, finished, interrupted: [...open], failed, passed, children, status, records };
}
