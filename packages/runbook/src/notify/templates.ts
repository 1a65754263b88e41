// The message templates of the DR plans. Pure functions of the incident's state, so the engine
// decides when to send and these only decide what it says; tests pin the exact wording.
import { CATEGORIES, type Category, escalationFor, SEVERITIES, type Severity, UPDATE_EVERY_MS } from './incident.js';
import type { Notification, NotificationKind } from './notifier.js';

/** The product name used when the config names none. */
export const DEFAULT_PRODUCT = 'Service';

/** What the templates need to know about the incident and the run handling it. */
export interface IncidentInfo {
  /** The product as users know it (config `product`); shown upper-case in headlines. */
  product: string;
  severity: Severity;
  category?: Category | undefined;
  /** The runbook's title. */
  title: string;
  environment: string;
  runId: string;
  /** What users notice, e.g. "Checkout unavailable for all users". */
  impact: string;
  /** Where the response stands, e.g. "Investigating", "Restoring the database". */
  status: string;
  /** When service is expected back, as people say it; "Unknown" when absent. */
  eta?: string | undefined;
  /** When the incident (the run) started, ms since the epoch. */
  startedAt: number;
  /** The time of the message, ms since the epoch. */
  now: number;
  phase?: string | undefined;
  step?: string | undefined;
  completedSteps?: number | undefined;
  totalSteps?: number | undefined;
  rootCause?: string | undefined;
  outcome?: 'resolved' | 'failed' | 'aborted' | undefined;
  /** Free text for the failure message: the error of the failed step. */
  detail?: string | undefined;
  /** The update cadence promised in the messages. @default UPDATE_EVERY_MS */
  updateEveryMs?: number | undefined;
  /** A routine job (a scheduled backup, a check), not a recovery: its failure is not an open incident. */
  routine?: boolean | undefined;
}

const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;

/**
 * A length of time as the plans' templates write it ("[X hours Y minutes]"): "1 hour 5 minutes",
 * "2 hours", "12 minutes", "45 seconds". Rounds down, because "15 minutes" elapsed should not be
 * claimed before it has.
 */
export function formatDuration(ms: number): string {
  const seconds = Number.isFinite(ms) && ms > 0 ? Math.floor(ms / 1000) : 0;
  if (seconds < 60) return plural(seconds, 'second');
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return plural(minutes, 'minute');
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? plural(hours, 'hour') : `${plural(hours, 'hour')} ${plural(rest, 'minute')}`;
}

/** "immediately, 24/7" or "within 1 hour", for the escalation line. */
function responseText(ms: number): string {
  return ms <= 0 ? 'immediately, 24/7' : `within ${formatDuration(ms)}`;
}

function headline(info: IncidentInfo): string {
  return (info.product.trim() || DEFAULT_PRODUCT).toUpperCase();
}

function progressOf(info: IncidentInfo): string | undefined {
  if (info.completedSteps === undefined || info.totalSteps === undefined) return undefined;
  return `${info.completedSteps}/${info.totalSteps} steps`;
}

/** The line that ties a message to the run that sent it. */
function contextLine(info: IncidentInfo): string {
  return `Runbook: ${info.title} · Environment: ${info.environment} · Run: ${info.runId}`;
}

/** `label: value` lines, skipping values that are unknown. */
function lines(entries: ReadonlyArray<readonly [string, string | undefined]>): string[] {
  return entries.flatMap(([label, value]) => (value === undefined ? [] : [`${label}: ${value}`]));
}

/** Drops fields whose value is unknown, so targets never show "undefined". */
function defined(fields: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value;
  return out;
}

function build(
  kind: NotificationKind,
  info: IncidentInfo,
  title: string,
  body: string[],
  fields: Record<string, string | undefined>,
): Notification {
  return {
    kind,
    title,
    text: [title, '', ...body].join('\n'),
    severity: info.severity,
    runId: info.runId,
    runbook: info.title,
    environment: info.environment,
    time: info.now,
    fields: defined({
      severity: SEVERITIES[info.severity].label,
      runbook: info.title,
      environment: info.environment,
      runId: info.runId,
      ...fields,
    }),
  };
}

function cadence(info: IncidentInfo): string {
  return formatDuration(info.updateEveryMs ?? UPDATE_EVERY_MS);
}

/** The escalation path as one line, e.g. "On-call engineer → Tech lead → Management". */
function pathText(info: IncidentInfo): string {
  return escalationFor(info.severity, info.category).path.join(' → ');
}

/**
 * The initial alert of the plans:
 *
 * ```
 * 🚨 <PRODUCT> INCIDENT - <SEVERITY LABEL>
 *
 * Impact: …
 * Status: …
 * ETA: …
 *
 * Updates will follow every 15 minutes.
 * ```
 *
 * followed by the run's context, the category and who it escalates to.
 */
export function renderInitial(info: IncidentInfo): Notification {
  const severity = SEVERITIES[info.severity];
  const eta = info.eta ?? 'Unknown';
  const escalation = escalationFor(info.severity, info.category);
  const category = info.category === undefined ? undefined : `${info.category} - ${CATEGORIES[info.category].title}`;
  const body = [
    `Impact: ${info.impact}`,
    `Status: ${info.status}`,
    `ETA: ${eta}`,
    '',
    `Updates will follow every ${cadence(info)}.`,
    '',
    contextLine(info),
    ...lines([
      ['Category', category],
      ['Escalation', `${escalation.involve.join(', ')} (respond ${responseText(escalation.respondWithinMs)})`],
    ]),
  ];
  return build('initial', info, `🚨 ${headline(info)} INCIDENT - ${severity.label}`, body, {
    impact: info.impact,
    status: info.status,
    eta,
    category,
    escalation: escalation.involve.join(', '),
  });
}

/** The periodic status update: time elapsed, where the run is, and when the next update comes. */
export function renderUpdate(info: IncidentInfo): Notification {
  const elapsed = formatDuration(info.now - info.startedAt);
  const progress = progressOf(info);
  const eta = info.eta ?? 'Unknown';
  const body = [
    ...lines([
      ['Elapsed', elapsed],
      ['Impact', info.impact],
      ['Status', info.status],
      ['Phase', info.phase],
      ['Step', info.step],
      ['Progress', progress],
      ['ETA', eta],
    ]),
    '',
    `Next update in ${cadence(info)}.`,
    '',
    contextLine(info),
  ];
  return build('update', info, `🔄 ${headline(info)} INCIDENT UPDATE - ${SEVERITIES[info.severity].label}`, body, {
    elapsed,
    impact: info.impact,
    status: info.status,
    phase: info.phase,
    step: info.step,
    progress,
    eta,
  });
}

/**
 * The resolution message of the plans:
 *
 * ```
 * ✅ <PRODUCT> INCIDENT RESOLVED
 *
 * Duration: <X hours Y minutes>
 * Impact: …
 * Root Cause: <or "Under investigation">
 *
 * Post-mortem to follow within 48 hours.
 * ```
 */
export function renderResolution(info: IncidentInfo): Notification {
  const duration = formatDuration(info.now - info.startedAt);
  const rootCause = info.rootCause ?? 'Under investigation';
  const body = [
    `Duration: ${duration}`,
    `Impact: ${info.impact}`,
    `Root Cause: ${rootCause}`,
    '',
    'Post-mortem to follow within 48 hours.',
    '',
    contextLine(info),
  ];
  return build('resolution', info, `✅ ${headline(info)} INCIDENT RESOLVED`, body, { duration, impact: info.impact, rootCause });
}

/** Extra inputs of {@link renderFailure}. */
export interface FailureDetails {
  /** The error of the failed step. @default info.detail */
  error?: string | undefined;
  /** What people should do now, replacing the default advice. */
  next?: string | undefined;
}

/**
 * The run failed or was aborted: the incident is still open, so the message says so, names the
 * step and the error, and says who takes over.
 */
export function renderFailure(info: IncidentInfo, details: FailureDetails = {}): Notification {
  const aborted = info.outcome === 'aborted';
  const error = details.error ?? info.detail ?? 'no error message was recorded';
  const elapsed = formatDuration(info.now - info.startedAt);
  const progress = progressOf(info);
  const next =
    details.next ??
    (info.routine
      ? `Read the error and the journal of run ${info.runId}, fix the cause and run it again; until it succeeds its guarantee (fresh, verified backups) does not hold. Escalate: ${pathText(info)}.`
      : aborted
        ? `The run stopped before it finished, so the system may be part-way through the recovery. Check its state, then resume run ${info.runId} or continue the procedure by hand. Escalate: ${pathText(info)}.`
        : `Take over manually: read the error and the journal of run ${info.runId}, fix the cause, then resume the run or continue the procedure by hand. Escalate: ${pathText(info)}.`);
  const title = info.routine
    ? `${aborted ? '⛔' : '❌'} ${headline(info)} ${info.title.toUpperCase()} ${aborted ? 'ABORTED' : 'FAILED'} - ${SEVERITIES[info.severity].label}`
    : aborted
      ? `⛔ ${headline(info)} RECOVERY ABORTED - ${SEVERITIES[info.severity].label}`
      : `❌ ${headline(info)} RECOVERY FAILED - ${SEVERITIES[info.severity].label}`;
  const body = [
    ...lines([
      [aborted ? 'Stopped at' : 'Failed step', info.step ?? 'unknown'],
      ['Phase', info.phase],
      ['Error', error],
      ['Elapsed', elapsed],
      ['Progress', progress],
      ['Impact', info.impact],
    ]),
    info.routine ? `Status: ${info.title} did not complete.` : 'Status: The incident is NOT resolved.',
    '',
    `Next: ${next}`,
    '',
    contextLine(info),
  ];
  return build('failure', info, title, body, {
    outcome: aborted ? 'aborted' : 'failed',
    step: info.step ?? 'unknown',
    phase: info.phase,
    error,
    elapsed,
    progress,
    impact: info.impact,
    next,
  });
}

/** Extra inputs of {@link renderOverrun}. */
export interface OverrunDetails {
  /** The phase over its budget. @default info.phase */
  phase?: string | undefined;
  /** The phase's time budget. */
  budgetMs: number;
  /** Time spent in the phase so far. */
  elapsedMs: number;
}

/** A phase ran past its time budget: the recovery time objective is at risk. */
export function renderOverrun(info: IncidentInfo, details: OverrunDetails): Notification {
  const phase = details.phase ?? info.phase ?? 'unknown';
  const budget = formatDuration(details.budgetMs);
  const actual = formatDuration(details.elapsedMs);
  const over = formatDuration(details.elapsedMs - details.budgetMs);
  const progress = progressOf(info);
  const body = [
    `Phase: ${phase}`,
    `Budget: ${budget}`,
    `Actual so far: ${actual} (${over} over)`,
    ...lines([
      ['Step', info.step],
      ['Progress', progress],
      ['Elapsed in total', formatDuration(info.now - info.startedAt)],
    ]),
    '',
    `The recovery time objective is at risk. Decide whether to keep going or escalate: ${pathText(info)}.`,
    '',
    contextLine(info),
  ];
  return build('overrun', info, `⚠️ ${headline(info)} RECOVERY OVER BUDGET - ${SEVERITIES[info.severity].label}`, body, {
    phase,
    budget,
    actual,
    over,
    step: info.step,
    progress,
  });
}

/** Extra inputs of {@link renderApproval}. */
export interface ApprovalDetails {
  /** What is asked, e.g. "Promote the replica to primary?". */
  prompt: string;
  /** The step waiting. @default info.step */
  step?: string | undefined;
  /** How to answer, e.g. the command to run. */
  how?: string | undefined;
}

/** A step waits for a person to approve it: the run is paused until someone answers. */
export function renderApproval(info: IncidentInfo, details: ApprovalDetails): Notification {
  const step = details.step ?? info.step ?? 'unknown';
  const how = details.how ?? `Approve or reject it where run ${info.runId} is waiting.`;
  const body = [
    `Step: ${step}`,
    `Question: ${details.prompt}`,
    ...lines([
      ['Phase', info.phase],
      ['Progress', progressOf(info)],
    ]),
    '',
    `The run is paused until someone answers. ${how}`,
    '',
    contextLine(info),
  ];
  return build('approval', info, `✋ ${headline(info)} RECOVERY NEEDS APPROVAL - ${SEVERITIES[info.severity].label}`, body, {
    step,
    prompt: details.prompt,
    how,
  });
}
