import { writeFileSync } from 'node:fs';
import type { Runbook, RunMode, RunStatus } from './definition.js';
import type { RunEvent } from './events.js';
import type { JournalRecord } from './journal.js';
import type { DeliveryResult } from './notify/dispatcher.js';
import type { Redactor } from './redact.js';

/** Budget against actual for one phase (or the whole run). */
export interface BudgetLine {
  name: string;
  budgetMs: number;
  actualMs: number;
  over: boolean;
}

/** One line of the timeline. */
export interface TimelineEntry {
  at: string;
  what: string;
}

/** The JSON report of a run; the Markdown report says the same for people. */
export interface RunReport {
  schema: 'drkit.run-report/1';
  runId: string;
  runbook: string;
  title: string;
  environment: string;
  mode: RunMode;
  drill: boolean;
  status: RunStatus;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  operators: string[];
  rto: BudgetLine;
  phases: BudgetLine[];
  steps: { id: string; phase: string; status: string; attempts: number; durationMs: number; code?: string; message?: string }[];
  approvals: { step: string; approved: boolean; by: string; how: string; at: string }[];
  notifications: { kind: string; notifier: string; ok: boolean; error?: string }[];
  timeline: TimelineEntry[];
  failure?: { code: string; message: string };
  /** What to do next, e.g. the resume command of a failed run. */
  next: string[];
}

/** What {@link writeReport} needs. */
export interface ReportInput {
  files: { markdown: string; json: string };
  runbook: Runbook;
  environment: string;
  mode: RunMode;
  runId: string;
  status: RunStatus;
  phases: { name: string; budgetMs: number }[];
  rtoMs: number;
  /** The whole journal, earlier attempts included. */
  records: JournalRecord[];
  /** Events of this attempt (for notifications and overruns not journalled). */
  events: RunEvent[];
  deliveries: DeliveryResult[];
  drill: boolean;
  redactor: Redactor;
  failure?: { code: string; message: string };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** "1h 05m 10s" style, for tables. */
export function formatElapsed(ms: number): string {
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m ${String(s).padStart(2, '0')}s`;
  if (m > 0) return `${m}m ${String(s).padStart(2, '0')}s`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${s}s`;
}

/** Builds the report of a run from its journal. Pure: see {@link writeReport} for the files. */
export function buildReport(input: ReportInput): RunReport {
  const { records, runbook } = input;
  const header = records[0] as Extract<JournalRecord, { t: 'run' }>;
  const phaseOf = new Map(runbook.steps.map((s) => [s.id, s.definition.phase]));
  const stepStats = new Map<string, { status: string; attempts: number; durationMs: number; code?: string; message?: string }>();
  for (const s of runbook.steps) stepStats.set(s.id, { status: 'not run', attempts: 0, durationMs: 0 });
  const phaseActual = new Map<string, number>();
  const approvals: RunReport['approvals'] = [];
  const timeline: TimelineEntry[] = [];
  const operators = new Set<string>([header.by]);
  let last = header.at;
  for (const r of records) {
    last = Math.max(last, r.at);
    const stat = 'step' in r ? stepStats.get(r.step) : undefined;
    switch (r.t) {
      case 'run':
        timeline.push({ at: iso(r.at), what: `run ${r.runId} started by ${r.by} against ${r.environment}` });
        break;
      case 'resume':
        operators.add(r.by);
        timeline.push({ at: iso(r.at), what: `resumed by ${r.by}${r.from ? ` from step ${r.from}` : ''}` });
        break;
      case 'step-start':
        timeline.push({ at: iso(r.at), what: `step ${r.step} started${r.attempt > 1 ? ` (attempt ${r.attempt})` : ''}` });
        break;
      case 'step-finish':
        if (stat) {
          stat.status = 'succeeded';
          stat.attempts++;
          stat.durationMs += r.durationMs;
        }
        phaseActual.set(phaseOf.get(r.step) ?? '', (phaseActual.get(phaseOf.get(r.step) ?? '') ?? 0) + r.durationMs);
        timeline.push({ at: iso(r.at), what: `step ${r.step} succeeded in ${formatElapsed(r.durationMs)}` });
        break;
      case 'step-fail':
        if (stat) {
          stat.status = r.willRetry ? stat.status : r.critical ? 'failed' : 'failed (not critical)';
          stat.attempts++;
          stat.durationMs += r.durationMs;
          stat.code = r.code;
          stat.message = r.message;
        }
        phaseActual.set(phaseOf.get(r.step) ?? '', (phaseActual.get(phaseOf.get(r.step) ?? '') ?? 0) + r.durationMs);
        timeline.push({
          at: iso(r.at),
          what: `step ${r.step} failed: ${r.code}: ${r.message}${r.willRetry ? ' (retrying)' : ''}`,
        });
        break;
      case 'step-skip':
        if (stat && stat.status === 'not run') stat.status = r.reason.startsWith('dry run') ? 'would run' : 'skipped';
        break;
      case 'approval':
        operators.add(r.by);
        approvals.push({ step: r.step, approved: r.approved, by: r.by, how: r.how, at: iso(r.at) });
        timeline.push({ at: iso(r.at), what: `${r.approved ? 'approved' : 'declined'}: step ${r.step} by ${r.by} (${r.how})` });
        break;
      case 'overrun':
        timeline.push({
          at: iso(r.at),
          what: `phase ${r.phase} overran its budget of ${formatElapsed(r.budgetMs)}`,
        });
        break;
      case 'child':
        timeline.push({ at: iso(r.at), what: `step ${r.step} started runbook run ${r.runId}` });
        break;
      case 'undo':
        timeline.push({ at: iso(r.at), what: `undo of ${r.step} ${r.ok ? 'succeeded' : `failed: ${r.message}`}` });
        break;
      case 'run-finish':
        timeline.push({ at: iso(r.at), what: `run ended: ${r.status}${r.message ? ` (${r.message})` : ''}` });
        break;
    }
  }
  for (const e of input.events)
    if (e.kind === 'rto-overrun') timeline.push({ at: iso(e.at), what: `the run passed its RTO of ${formatElapsed(e.rtoMs)}` });
  timeline.sort((a, b) => a.at.localeCompare(b.at));

  const phases = input.phases.map((p) => {
    const actualMs = phaseActual.get(p.name) ?? 0;
    return { name: p.name, budgetMs: p.budgetMs, actualMs, over: p.budgetMs > 0 && actualMs > p.budgetMs };
  });
  const durationMs = last - header.at;
  const next: string[] = [];
  if (input.status === 'failed' || input.status === 'aborted')
    next.push(
      `Fix the cause, then resume: tsx <runbook file> --env ${input.environment} --resume ${input.runId}`,
      'Steps already done are not run again.',
    );
  if (input.status === 'succeeded' && input.mode === 'execute') next.push('Write the post-mortem within 48 hours.');
  const report: RunReport = {
    schema: 'drkit.run-report/1',
    runId: input.runId,
    runbook: runbook.id,
    title: runbook.title,
    environment: input.environment,
    mode: input.mode,
    drill: input.drill,
    status: input.status,
    startedAt: iso(header.at),
    finishedAt: iso(last),
    durationMs,
    operators: [...operators],
    rto: { name: 'RTO', budgetMs: input.rtoMs, actualMs: durationMs, over: durationMs > input.rtoMs },
    phases,
    steps: runbook.steps.map((s) => {
      const stat = stepStats.get(s.id) ?? { status: 'not run', attempts: 0, durationMs: 0 };
      return { id: s.id, phase: s.definition.phase, ...stat };
    }),
    approvals,
    notifications: input.deliveries.map((d) => ({
      kind: d.kind,
      notifier: d.notifier,
      ok: d.ok,
      ...(d.error ? { error: d.error } : {}),
    })),
    timeline,
    ...(input.failure ? { failure: input.failure } : {}),
    next,
  };
  return input.redactor.value(report);
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The Markdown post-incident report: summary, budget against actual, steps, approvals, timeline. */
export function renderMarkdown(report: RunReport): string {
  const kind = report.mode === 'dry-run' ? 'Dry-run report' : report.drill ? 'DR drill report' : 'Post-incident report';
  const lines = [
    `# ${kind}: ${report.title}`,
    '',
    `| | |`,
    `|---|---|`,
    `| Runbook | \`${report.runbook}\` |`,
    `| Run | \`${report.runId}\` |`,
    `| Environment | ${report.environment} |`,
    `| Outcome | **${report.status}** |`,
    `| Started | ${report.startedAt} |`,
    `| Finished | ${report.finishedAt} |`,
    `| Duration | ${formatElapsed(report.durationMs)} (RTO ${formatElapsed(report.rto.budgetMs)}${report.rto.over ? ', **exceeded**' : ''}) |`,
    `| Operators | ${report.operators.join(', ')} |`,
    '',
  ];
  if (report.failure) lines.push(`> **${report.failure.code}**: ${cell(report.failure.message)}`, '');
  lines.push('## Time: budget against actual', '', '| Phase | Budget | Actual | |', '|---|---|---|---|');
  for (const p of report.phases)
    lines.push(`| ${p.name} | ${formatElapsed(p.budgetMs)} | ${formatElapsed(p.actualMs)} | ${p.over ? '**over**' : 'ok'} |`);
  lines.push(
    `| **total** | ${formatElapsed(report.rto.budgetMs)} | ${formatElapsed(report.rto.actualMs)} | ${report.rto.over ? '**over**' : 'ok'} |`,
  );
  lines.push('', '## Steps', '', '| Step | Phase | Outcome | Attempts | Time |', '|---|---|---|---|---|');
  for (const s of report.steps)
    lines.push(
      `| \`${s.id}\` | ${s.phase} | ${s.status}${s.code ? ` (${s.code})` : ''} | ${s.attempts} | ${s.attempts > 0 ? formatElapsed(s.durationMs) : ''} |`,
    );
  if (report.approvals.length > 0) {
    lines.push('', '## Approvals', '', '| Step | Decision | By | How | At |', '|---|---|---|---|---|');
    for (const a of report.approvals)
      lines.push(`| \`${a.step}\` | ${a.approved ? 'approved' : 'declined'} | ${cell(a.by)} | ${a.how} | ${a.at} |`);
  }
  if (report.notifications.length > 0) {
    lines.push('', '## Notifications', '', '| Message | Target | Delivered |', '|---|---|---|');
    for (const n of report.notifications)
      lines.push(`| ${n.kind} | ${cell(n.notifier)} | ${n.ok ? 'yes' : `no: ${cell(n.error ?? '')}`} |`);
  }
  lines.push('', '## Timeline', '');
  for (const t of report.timeline) lines.push(`- \`${t.at}\` ${cell(t.what)}`);
  if (report.next.length > 0) {
    lines.push('', '## Next', '');
    for (const n of report.next) lines.push(`- ${n}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Builds the report and writes it as Markdown and JSON. */
export function writeReport(input: ReportInput): RunReport {
  const report = buildReport(input);
  writeFileSync(input.files.json, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
  writeFileSync(input.files.markdown, renderMarkdown(report), { mode: 0o600 });
  return report;
}
