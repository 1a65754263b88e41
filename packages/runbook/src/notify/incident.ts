// The incident classification of the DR plans, as data: templates, notifiers and the engine
// read these tables instead of repeating the plans' wording, so a change of policy is one edit.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** How bad an incident is: `sev1` (Critical) is the worst. */
export type Severity = 'sev1' | 'sev2' | 'sev3';

/** Every {@link Severity}, most severe first (for config schemas and comparisons). */
export const SEVERITY_ORDER = ['sev1', 'sev2', 'sev3'] as const satisfies readonly Severity[];

/** One row of the severity table of the DR plans. */
export interface SeverityInfo {
  /** Display label used in messages, e.g. "Sev1 - Critical". */
  readonly label: string;
  /** The plans' name of the level, e.g. "Critical". */
  readonly title: string;
  /** Typical incidents of this severity. */
  readonly examples: readonly string[];
  /** How soon someone must respond; 0 means immediately, 24/7. */
  readonly responseTimeMs: number;
  /** Who is escalated to at this severity. */
  readonly escalation: readonly string[];
}

/** The severity table of the DR plans. */
export const SEVERITIES: Readonly<Record<Severity, SeverityInfo>> = {
  sev1: {
    label: 'Sev1 - Critical',
    title: 'Critical',
    examples: ['Complete system failure', 'Data breach', 'Major data loss'],
    responseTimeMs: 0,
    escalation: ['CTO', 'CEO'],
  },
  sev2: {
    label: 'Sev2 - High',
    title: 'High',
    examples: ['Partial system failure', 'Database corruption', 'Service degradation affecting >50% users'],
    responseTimeMs: 1 * HOUR,
    escalation: ['Engineering Lead'],
  },
  sev3: {
    label: 'Sev3 - Medium',
    title: 'Medium',
    examples: ['Minor service disruption', 'Individual file loss', 'Performance degradation'],
    responseTimeMs: 4 * HOUR,
    escalation: ['On-call engineer'],
  },
};

/** The disaster category of the DR plans: 1 (degradation) to 4 (security breach). */
export type Category = 1 | 2 | 3 | 4;

/** Every {@link Category}, in order. */
export const CATEGORY_ORDER = [1, 2, 3, 4] as const satisfies readonly Category[];

/** One row of the disaster-category table of the DR plans. */
export interface CategoryInfo {
  /** The plans' name of the category, e.g. "Service Outage" (named like {@link SeverityInfo.title}). */
  readonly title: string;
  /** Typical incidents of this category. */
  readonly examples: readonly string[];
  /** How soon someone must respond; 0 means immediately. */
  readonly responseTimeMs: number;
  /** The plans' severity wording for the category, e.g. "Low to Medium". */
  readonly severityRange: string;
  /** The least severity an incident of this category is handled at. */
  readonly severity: Severity;
}

/** The disaster-category table of the DR plans. */
export const CATEGORIES: Readonly<Record<Category, CategoryInfo>> = {
  1: {
    title: 'Service Degradation',
    examples: ['Single service failure', 'Increased latency', 'Partial functionality loss'],
    responseTimeMs: 15 * MINUTE,
    severityRange: 'Low to Medium',
    severity: 'sev3',
  },
  2: {
    title: 'Service Outage',
    examples: ['Complete service unavailable', 'Database connection issues', 'Infrastructure problems'],
    responseTimeMs: 0,
    severityRange: 'High',
    severity: 'sev2',
  },
  3: {
    title: 'Data Loss/Corruption',
    examples: ['Database corruption', 'Backup failure', 'Accidental deletion'],
    responseTimeMs: 0,
    severityRange: 'Critical',
    severity: 'sev1',
  },
  4: {
    title: 'Security Breach',
    examples: ['Unauthorized access', 'Data exfiltration', 'Compromised credentials'],
    responseTimeMs: 0,
    severityRange: 'Critical',
    severity: 'sev1',
  },
};

/** The escalation path of the DR plans, first responder first. */
export const ESCALATION_PATH = ['On-call engineer', 'Tech lead', 'Management'] as const;

/** One level of {@link ESCALATION_PATH}. */
export type EscalationLevel = (typeof ESCALATION_PATH)[number];

/** How many levels of the path each severity reaches: the worse the incident, the higher it goes. */
const PATH_DEPTH: Record<Severity, number> = { sev1: 3, sev2: 2, sev3: 1 };

/** Status updates go out this often during an incident (the plans' communication cadence). */
export const UPDATE_EVERY_MS = 15 * MINUTE;

/** Who handles an incident and how fast, from {@link escalationFor}. */
export interface Escalation {
  /** The severity it is handled at: the one given, raised to the category's when that is worse. */
  readonly severity: Severity;
  /** How soon someone must respond: the stricter of the severity's and the category's times. */
  readonly respondWithinMs: number;
  /** The levels of {@link ESCALATION_PATH} to involve, in order. */
  readonly path: readonly EscalationLevel[];
  /** The people the severity table names for escalation. */
  readonly involve: readonly string[];
}

/** The worse of two severities. */
export function worseSeverity(a: Severity, b: Severity): Severity {
  return SEVERITY_ORDER.indexOf(a) <= SEVERITY_ORDER.indexOf(b) ? a : b;
}

/**
 * Who to involve in an incident of `severity` (and `category`, when known). A category can only
 * raise the severity: a security breach filed as sev3 is still handled as Critical, because
 * the plans classify the category as Critical whatever the first responder chose.
 */
export function escalationFor(severity: Severity, category?: Category): Escalation {
  const categoryInfo = category === undefined ? undefined : CATEGORIES[category];
  const effective = categoryInfo ? worseSeverity(severity, categoryInfo.severity) : severity;
  const info = SEVERITIES[effective];
  const respondWithinMs = Math.min(SEVERITIES[severity].responseTimeMs, info.responseTimeMs, categoryInfo?.responseTimeMs ?? Infinity);
  return {
    severity: effective,
    respondWithinMs,
    path: ESCALATION_PATH.slice(0, PATH_DEPTH[effective]),
    involve: info.escalation,
  };
}
