import type { RunEvent } from './events.js';
import { formatElapsed } from './report.js';

const time = (ms: number) => new Date(ms).toISOString().slice(11, 19);

/** The `--plan` output: phases with budgets, every step with its gates and declared effects. */
export function renderPlan(plan: Extract<RunEvent, { kind: 'plan' }>): string {
  const lines = [
    `Plan of runbook "${plan.runbook}" (${plan.title}) against ${plan.environment}`,
    `RTO ${formatElapsed(plan.rtoMs)}. Nothing has been run: this is what a run would do.`,
    '',
  ];
  let n = 0;
  for (const phase of plan.phases) {
    const steps = plan.steps.filter((s) => s.phase === phase.name);
    if (steps.length === 0) continue;
    lines.push(`Phase ${phase.name} (budget ${formatElapsed(phase.budgetMs)})`);
    for (const s of steps) {
      n++;
      const tags = [
        s.destructive ? 'DESTRUCTIVE' : undefined,
        s.readOnly ? 'read-only' : undefined,
        s.idempotent ? 'idempotent' : undefined,
        s.critical ? undefined : 'not critical',
        s.timeoutMs !== undefined ? `timeout ${formatElapsed(s.timeoutMs)}` : undefined,
        s.retry ? `${s.retry.attempts} attempts` : undefined,
      ].filter(Boolean);
      lines.push(`  ${n}. ${s.id}: ${s.title}${tags.length ? `  [${tags.join(', ')}]` : ''}`);
      if (s.gate) lines.push(`     gate: ${s.gate} (needs a confirmation, or --yes)`);
      for (const effect of s.effects) lines.push(`     - ${effect}`);
      lines.push(`     under --dry-run: ${s.dryRun === 'runs' ? 'runs (read-only)' : 'described, not run'}`);
    }
    lines.push('');
  }
  if (plan.secrets.length > 0) {
    lines.push('Secrets');
    for (const s of plan.secrets)
      lines.push(
        `  ${s.name}: from ${s.env} (${s.set ? 'set' : s.optional ? 'not set; optional' : 'NOT SET: the run would refuse to start'})`,
      );
    lines.push('');
  }
  return lines.join('\n');
}

/**
 * Renders run events for a person at a terminal, one line each (progress at most once a
 * second per step). Returns undefined for events not worth a line.
 */
export function createEventRenderer(): (event: RunEvent) => string | undefined {
  const lastProgress = new Map<string, number>();
  return (event) => {
    switch (event.kind) {
      case 'run-start':
        return `${time(event.at)} ${event.resumed ? 'resuming' : event.mode === 'dry-run' ? 'dry run of' : 'running'} ${event.runbook} against ${event.environment} (run ${event.runId})`;
      case 'phase-start':
        return `${time(event.at)} ── phase ${event.phase} (budget ${formatElapsed(event.budgetMs)})`;
      case 'phase-finish':
        return `${time(event.at)} ── phase ${event.phase} done in ${formatElapsed(event.elapsedMs)} of ${formatElapsed(event.budgetMs)}${event.elapsedMs > event.budgetMs && event.budgetMs > 0 ? ' (OVER BUDGET)' : ''}`;
      case 'budget-overrun':
        return `${time(event.at)} !! phase ${event.phase} is over its budget of ${formatElapsed(event.budgetMs)}`;
      case 'rto-overrun':
        return `${time(event.at)} !! the run is past its RTO of ${formatElapsed(event.rtoMs)}`;
      case 'approval-request':
        return undefined;
      case 'approval':
        return `${time(event.at)}    ${event.approved ? 'approved' : 'declined'} by ${event.by} (${event.how})`;
      case 'step-start':
        return `${time(event.at)} ▶ ${event.step}: ${event.title}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}`;
      case 'step-finish':
        return `${time(event.at)} ✔ ${event.step} (${formatElapsed(event.durationMs)})`;
      case 'step-fail':
        return `${time(event.at)} ✘ ${event.step}: ${event.message.startsWith(event.code) ? '' : `${event.code}: `}${event.message}${event.willRetry ? ' (will retry)' : event.critical ? '' : ' (not critical: going on)'}`;
      case 'step-skip':
        return `${time(event.at)} · ${event.step}: skipped (${event.reason})`;
      case 'would-run':
        return [
          `${time(event.at)} ○ ${event.step}: ${event.title}: would run${event.destructive ? ' (DESTRUCTIVE)' : ''}`,
          ...event.effects.map((e) => `             - ${e}`),
        ].join('\n');
      case 'progress': {
        const last = lastProgress.get(event.step) ?? 0;
        if (event.at - last < 1000 && event.progress.done !== event.progress.total) return undefined;
        lastProgress.set(event.step, event.at);
        const p = event.progress;
        const amount = p.total
          ? `${p.done}/${p.total}${p.unit ? ` ${p.unit}` : ''} (${Math.floor((100 * p.done) / p.total)}%)`
          : `${p.done}${p.unit ? ` ${p.unit}` : ''}`;
        return `${time(event.at)}    ${event.step}: ${amount}${p.message ? ` ${p.message}` : ''}`;
      }
      case 'log':
        if (event.entry.level === 'debug') return undefined;
        return `${time(event.entry.time)}    ${event.entry.level === 'info' ? '' : `${event.entry.level}: `}${event.entry.message}`;
      case 'notification':
        return `${time(event.at)}    notified: ${event.notification} (${event.delivered} delivered${event.failed ? `, ${event.failed} FAILED` : ''})`;
      case 'undo':
        return `${time(event.at)} ↶ undo ${event.step}: ${event.ok ? 'done' : `failed: ${event.message}`}`;
      case 'run-finish':
        return [
          `${time(event.at)} ${event.status === 'succeeded' ? 'succeeded' : event.status.toUpperCase()} in ${formatElapsed(event.durationMs)}${event.message ? `: ${event.message}` : ''}`,
          ...(event.report ? [`report: ${event.report.markdown}`] : []),
          ...(event.status === 'failed' || event.status === 'aborted' ? [`resume with: --resume ${event.runId}`] : []),
        ].join('\n');
      default:
        return undefined;
    }
  };
}
