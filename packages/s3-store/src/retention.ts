import { StoreError } from './errors.js';

// Retention as restic's `forget` defines it (keep-last/hourly/daily/weekly/monthly/yearly/
// within, OR-ed, periods without backups not counted, the oldest kept while a rule is short),
// plus the DR plans' safety rules: never delete the last verified backup, nor anything a kept
// backup needs to be restored. Planning is pure so that a dry run and the real run agree.

/** What retention needs of a backup; a validated manifest fits as it is. */
export interface RetentionItem {
  /** Unique within the input; ties of `createdAt` are broken by it (ids sort by time). */
  id: string;
  /** Items are planned per kind, e.g. 'postgres', 'redis-rdb', 'files'. */
  kind: string;
  /** ISO 8601 with an explicit zone (`Z` or `±hh:mm`), so the plan never depends on the host's zone. */
  createdAt: string;
  /** Default 'full'. */
  type?: 'full' | 'incremental';
  /** The id of the backup this one builds on: it must stay while this one does. */
  parent?: string;
  verification?: { status: 'passed' | 'failed' };
}

/** Which backups to keep; the rules are OR-ed and 0 (or absent) turns a rule off. */
export interface RetentionRules {
  /** The n newest backups. */
  keepLast?: number;
  /** The newest backup of each of the n most recent hours that have backups. */
  keepHourly?: number;
  /** The newest backup of each of the n most recent days that have backups. */
  keepDaily?: number;
  /** The newest backup of each of the n most recent ISO weeks (Monday to Sunday) that have backups. */
  keepWeekly?: number;
  /** The newest backup of each of the n most recent months that have backups. */
  keepMonthly?: number;
  /** The newest backup of each of the n most recent years that have backups. */
  keepYearly?: number;
  /** Every backup newer than `now` minus this duration, e.g. '30d', '12h', '1y2m' (see {@link parseDuration}). */
  keepWithin?: string;
}

/** A retention policy: rules for full backups, optionally other rules for incrementals. */
export interface RetentionPolicy extends RetentionRules {
  /** Rules for items of type 'incremental'; without them incrementals follow the main rules. */
  incremental?: RetentionRules;
  /** IANA time zone of the calendar periods and of `keepWithin` arithmetic; default 'UTC'. */
  timeZone?: string;
}

/** A duration of {@link RetentionRules.keepWithin}, in calendar units. */
export interface RetentionDuration {
  years: number;
  months: number;
  days: number;
  hours: number;
}

/** What the plan does with one backup, and why. */
export interface RetentionDecision {
  id: string;
  kind: string;
  createdAt: string;
  action: 'keep' | 'drop';
  /** Every rule that keeps it (e.g. 'daily 2026-11-21', 'weekly 2026-W47'), or why it goes. */
  reasons: string[];
}

/** The result of {@link planRetention}: every input item is in exactly one list. */
export interface RetentionPlan {
  /** Newest first. */
  keep: RetentionDecision[];
  /** Newest first. */
  drop: RetentionDecision[];
  /** Things an operator should look at (future dates, broken chains); the plan is still valid. */
  warnings: string[];
}

/** Platform plan (000): 7 days of dailies, 4 weeks of weeklies, 12 months of monthlies. */
export const PLATFORM_PLAN_RETENTION: Readonly<RetentionPolicy> = Object.freeze({ keepDaily: 7, keepWeekly: 4, keepMonthly: 12 });

/** Trading plan (001): full backups for 30 days, hourly incrementals for 7 days. */
export const TRADING_PLAN_RETENTION: Readonly<RetentionPolicy> = Object.freeze({
  keepWithin: '30d',
  incremental: Object.freeze({ keepWithin: '7d' }),
});

/** The presets of the two DR plans, by plan. */
export const RETENTION_PLAN_DEFAULTS: Readonly<Record<'platform' | 'trading', Readonly<RetentionPolicy>>> = Object.freeze({
  platform: PLATFORM_PLAN_RETENTION,
  trading: TRADING_PLAN_RETENTION,
});

// ---------------------------------------------------------------------------------------
// Policy validation
// ---------------------------------------------------------------------------------------

type Period = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';
type CountField = 'keepLast' | 'keepHourly' | 'keepDaily' | 'keepWeekly' | 'keepMonthly' | 'keepYearly';

const PERIODS: readonly { field: CountField; period: Period; unit: [string, string] }[] = [
  { field: 'keepHourly', period: 'hourly', unit: ['hour', 'hours'] },
  { field: 'keepDaily', period: 'daily', unit: ['day', 'days'] },
  { field: 'keepWeekly', period: 'weekly', unit: ['week', 'weeks'] },
  { field: 'keepMonthly', period: 'monthly', unit: ['month', 'months'] },
  { field: 'keepYearly', period: 'yearly', unit: ['year', 'years'] },
];
const COUNT_FIELDS: readonly CountField[] = ['keepLast', ...PERIODS.map((p) => p.field)];
const RULE_FIELDS: readonly string[] = [...COUNT_FIELDS, 'keepWithin'];
const POLICY_FIELDS: readonly string[] = [...RULE_FIELDS, 'incremental', 'timeZone'];

interface Rules {
  last: number;
  periods: Record<Period, number>;
  within: RetentionDuration | undefined;
  /** The duration as written back by {@link formatDuration}, for reasons. */
  withinText: string;
}

interface Policy {
  main: Rules;
  incremental: Rules | undefined;
  timeZone: string;
}

function invalid(message: string): StoreError {
  return new StoreError('STORE_RETENTION_INVALID', message);
}

function show(value: unknown): string {
  if (typeof value === 'string') return `'${value.slice(0, 60)}'`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

const DURATION = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)d)?(?:(\d+)h)?$/;

/**
 * Parses a restic-style duration: whole numbers of years, months, days and hours, in that
 * order, each at most once: '30d', '12h', '1y2m', '3d12h'. Weeks, minutes and spaces are
 * refused rather than guessed at. An all-zero duration ('0d') is valid and turns keepWithin off.
 * @param field named in the error, e.g. 'incremental.keepWithin'
 * @throws StoreError STORE_RETENTION_INVALID
 */
export function parseDuration(text: string, field = 'keepWithin'): RetentionDuration {
  const match = typeof text === 'string' && text !== '' ? DURATION.exec(text) : null;
  if (!match)
    throw invalid(
      `retention policy: ${field} must be a duration of whole years, months, days and hours in that order, ` +
        `like '30d', '12h', '1y2m' or '3d12h' (units y, m, d, h), got ${show(text)}`,
    );
  const [years, months, days, hours] = [match[1], match[2], match[3], match[4]].map((part) => Number(part ?? 0)) as [
    number,
    number,
    number,
    number,
  ];
  for (const value of [years, months, days, hours])
    if (!Number.isSafeInteger(value)) throw invalid(`retention policy: ${field} is too large, got ${show(text)}`);
  return { years, months, days, hours };
}

function formatDuration(d: RetentionDuration): string {
  const text = `${d.years ? `${d.years}y` : ''}${d.months ? `${d.months}m` : ''}${d.days ? `${d.days}d` : ''}${d.hours ? `${d.hours}h` : ''}`;
  return text === '' ? '0h' : text;
}

function isZero(d: RetentionDuration): boolean {
  return d.years === 0 && d.months === 0 && d.days === 0 && d.hours === 0;
}

function checkFields(value: object, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value))
    if (!allowed.includes(key))
      // A typo like keepDayly would otherwise silently weaken the policy.
      throw invalid(`retention policy: unknown field '${where}${key}'; allowed: ${allowed.join(', ')}`);
}

function parseRules(value: RetentionRules, where: string): Rules {
  const count = (field: CountField): number => {
    const n: unknown = value[field];
    if (n === undefined) return 0;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
      throw invalid(`retention policy: ${where}${field} must be a whole number ≥ 0 (0 turns the rule off), got ${show(n)}`);
    return n;
  };
  const within = value.keepWithin === undefined ? undefined : parseDuration(value.keepWithin, `${where}keepWithin`);
  return {
    last: count('keepLast'),
    periods: {
      hourly: count('keepHourly'),
      daily: count('keepDaily'),
      weekly: count('keepWeekly'),
      monthly: count('keepMonthly'),
      yearly: count('keepYearly'),
    },
    within: within === undefined || isZero(within) ? undefined : within,
    withinText: within === undefined ? '' : formatDuration(within),
  };
}

function isEmpty(rules: Rules): boolean {
  return rules.last === 0 && Object.values(rules.periods).every((n) => n === 0) && rules.within === undefined;
}

function checkTimeZone(timeZone: unknown): string {
  if (timeZone === undefined) return 'UTC';
  try {
    if (typeof timeZone !== 'string' || timeZone === '') throw new RangeError('not a string');
    // Canonical spelling, so 'utc' and 'UTC' take the same fast path.
    return new Intl.DateTimeFormat('en-US', { timeZone }).resolvedOptions().timeZone;
  } catch {
    throw invalid(`retention policy: timeZone must be an IANA time zone like 'UTC' or 'Europe/Berlin', got ${show(timeZone)}`);
  }
}

function parsePolicy(policy: RetentionPolicy): Policy {
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy))
    throw invalid(`retention policy must be an object of keep rules, got ${show(policy)}`);
  checkFields(policy, POLICY_FIELDS, '');
  const main = parseRules(policy, '');
  let incremental: Rules | undefined;
  if (policy.incremental !== undefined) {
    const raw: unknown = policy.incremental;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw invalid(`retention policy: incremental must be an object of keep rules, got ${show(raw)}`);
    checkFields(raw, RULE_FIELDS, 'incremental.');
    incremental = parseRules(raw as RetentionRules, 'incremental.');
  }
  const rulesList = `set at least one of ${RULE_FIELDS.join(', ')}`;
  // restic refuses to forget with an empty policy: it would delete everything.
  if (isEmpty(main) && (incremental === undefined || isEmpty(incremental)))
    throw invalid(`retention policy has no rules and would delete every backup: ${rulesList}`);
  if (isEmpty(main))
    throw invalid(`retention policy has no rules for full backups (only incremental.*), so it would delete them all: ${rulesList}`);
  if (incremental !== undefined && isEmpty(incremental))
    throw invalid(
      `retention policy: incremental has no rules, so it would delete every incremental backup: ${rulesList} in it, or leave incremental out to apply the main rules`,
    );
  return { main, incremental, timeZone: checkTimeZone(policy.timeZone) };
}

function describeRules(rules: Rules): string {
  const parts: string[] = [];
  if (rules.last > 0) parts.push(`${rules.last} latest`);
  for (const { period } of PERIODS) if (rules.periods[period] > 0) parts.push(`${rules.periods[period]} ${period}`);
  if (rules.within !== undefined) parts.push(`all within ${rules.withinText}`);
  return parts.join(', ');
}

/**
 * A one-line description of a policy for CLI output: "7 daily, 4 weekly, 12 monthly",
 * "all within 30d; incrementals: all within 7d", with " (periods in <zone>)" when not UTC.
 * @throws StoreError STORE_RETENTION_INVALID, as {@link planRetention} would
 */
export function describePolicy(policy: RetentionPolicy): string {
  const parsed = parsePolicy(policy);
  let text = describeRules(parsed.main);
  if (parsed.incremental !== undefined) text += `; incrementals: ${describeRules(parsed.incremental)}`;
  if (parsed.timeZone !== 'UTC') text += ` (periods in ${parsed.timeZone})`;
  return text;
}

// ---------------------------------------------------------------------------------------
// Calendar
// ---------------------------------------------------------------------------------------

interface Wall {
  year: number;
  month: number; // 1-12
  day: number;
  hour: number;
  minute: number;
  second: number;
  ms: number;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

// Date.UTC maps years 0-99 to 1900-1999; setUTCFullYear does not.
function utcMs(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

function daysInMonth(year: number, month: number): number {
  return new Date(utcMs(year, month + 1, 0)).getUTCDate();
}

/** Converts instants to wall-clock time in one zone; UTC skips Intl, which is most of the cost. */
class Calendar {
  readonly timeZone: string;
  readonly #format: Intl.DateTimeFormat | undefined;

  constructor(timeZone: string) {
    this.timeZone = timeZone;
    this.#format =
      timeZone === 'UTC'
        ? undefined
        : new Intl.DateTimeFormat('en-US', {
            timeZone,
            hourCycle: 'h23',
            era: 'short',
            year: 'numeric',
            month: 'numeric',
            day: 'numeric',
            hour: 'numeric',
            minute: 'numeric',
            second: 'numeric',
          });
  }

  wall(ms: number): Wall {
    const date = new Date(ms);
    if (this.#format === undefined)
      return {
        year: date.getUTCFullYear(),
        month: date.getUTCMonth() + 1,
        day: date.getUTCDate(),
        hour: date.getUTCHours(),
        minute: date.getUTCMinutes(),
        second: date.getUTCSeconds(),
        ms: date.getUTCMilliseconds(),
      };
    const fields: Record<string, string> = {};
    for (const part of this.#format.formatToParts(date)) fields[part.type] = part.value;
    const year = Number(fields.year);
    return {
      year: fields.era === 'BC' ? 1 - year : year,
      month: Number(fields.month),
      day: Number(fields.day),
      hour: Number(fields.hour),
      minute: Number(fields.minute),
      second: Number(fields.second),
      ms: date.getUTCMilliseconds(),
    };
  }

  /** The instant of a wall-clock time; in a DST gap or overlap, one of the candidates. */
  instant(wall: Wall): number {
    const asUtc = utcMs(wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second, wall.ms);
    if (this.#format === undefined) return asUtc;
    const offsetAt = (ms: number) => {
      const w = this.wall(ms);
      return utcMs(w.year, w.month, w.day, w.hour, w.minute, w.second, w.ms) - ms;
    };
    const first = asUtc - offsetAt(asUtc);
    const second = asUtc - offsetAt(first);
    return Number.isNaN(second) ? first : second;
  }

  periodKey(period: Period, wall: Wall): string {
    switch (period) {
      case 'hourly':
        return `${pad(wall.year, 4)}-${pad(wall.month)}-${pad(wall.day)}T${pad(wall.hour)}`;
      case 'daily':
        return `${pad(wall.year, 4)}-${pad(wall.month)}-${pad(wall.day)}`;
      case 'weekly': {
        // ISO 8601: weeks start on Monday and belong to the year of their Thursday, so
        // 2027-01-03 (a Sunday) is in 2026-W53 and 2025-12-29 (a Monday) in 2026-W01.
        const day = utcMs(wall.year, wall.month, wall.day);
        const weekday = (new Date(day).getUTCDay() + 6) % 7;
        const thursday = new Date(day + (3 - weekday) * 86_400_000);
        const isoYear = thursday.getUTCFullYear();
        const week = Math.floor((thursday.getTime() - utcMs(isoYear, 1, 1)) / (7 * 86_400_000)) + 1;
        return `${pad(isoYear, 4)}-W${pad(week)}`;
      }
      case 'monthly':
        return `${pad(wall.year, 4)}-${pad(wall.month)}`;
      case 'yearly':
        return pad(wall.year, 4);
    }
  }

  /**
   * `ms` minus a calendar duration, on the wall clock of the zone: years and months first
   * (clamping the day to the target month's length), then days, then hours as elapsed time.
   */
  subtract(ms: number, d: RetentionDuration): number {
    const wall = this.wall(ms);
    const monthIndex = wall.year * 12 + (wall.month - 1) - (d.years * 12 + d.months);
    const year = Math.floor(monthIndex / 12);
    const month = monthIndex - year * 12 + 1;
    // Go's AddDate (and so restic) overflows instead: March 31 minus 1m is "February 31",
    // i.e. March 3, a "month" of 28 days. Clamping to February 28 never keeps less.
    const day = Math.min(wall.day, daysInMonth(year, month));
    const shifted = new Date(utcMs(year, month, day - d.days));
    const target = this.instant({
      ...wall,
      year: shifted.getUTCFullYear(),
      month: shifted.getUTCMonth() + 1,
      day: shifted.getUTCDate(),
    });
    const result = target - d.hours * 3_600_000;
    // Beyond the range of dates: everything is within the window.
    return Number.isNaN(result) ? Number.NEGATIVE_INFINITY : result;
  }
}

// ---------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------

interface Entry {
  item: RetentionItem;
  ms: number;
  wall: Wall;
  incremental: boolean;
  failed: boolean;
  passed: boolean;
}

const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/i;

function parseInstant(value: unknown, what: string): number {
  // Without a zone, Date.parse reads local time: the plan would change with the host.
  const ms = typeof value === 'string' && ISO_WITH_ZONE.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw invalid(`${what} must be an ISO 8601 time with a zone like '2026-11-21T02:00:00Z', got ${show(value)}`);
  return ms;
}

function newestFirst(a: Entry, b: Entry): number {
  if (a.ms !== b.ms) return b.ms - a.ms;
  return a.item.id < b.item.id ? 1 : a.item.id > b.item.id ? -1 : 0;
}

function entriesOf(items: readonly RetentionItem[], calendar: Calendar): Entry[] {
  if (!Array.isArray(items)) throw invalid(`retention: items must be an array of backups, got ${show(items)}`);
  const seen = new Set<string>();
  return items.map((item, index) => {
    const where = `backup #${index}`;
    if (typeof item !== 'object' || item === null) throw invalid(`retention: ${where} must be an object, got ${show(item)}`);
    if (typeof item.id !== 'string' || item.id === '') throw invalid(`retention: ${where} has no id`);
    if (seen.has(item.id)) throw invalid(`retention: duplicate backup id '${item.id}'; ids must be unique`);
    seen.add(item.id);
    if (typeof item.kind !== 'string' || item.kind === '') throw invalid(`retention: backup '${item.id}' has no kind`);
    if (item.type !== undefined && item.type !== 'full' && item.type !== 'incremental')
      throw invalid(`retention: backup '${item.id}' has type ${show(item.type)}; allowed: 'full', 'incremental'`);
    const ms = parseInstant(item.createdAt, `retention: createdAt of backup '${item.id}'`);
    const status = item.verification?.status;
    return {
      item,
      ms,
      wall: calendar.wall(ms),
      incremental: item.type === 'incremental',
      failed: status === 'failed',
      passed: status === 'passed',
    };
  });
}

/** Reasons by item id, in the order rules add them, without repeats. */
class Reasons {
  readonly #byId = new Map<string, string[]>();

  add(id: string, reason: string): void {
    const list = this.#byId.get(id);
    if (list === undefined) this.#byId.set(id, [reason]);
    else if (!list.includes(reason)) list.push(reason);
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  get(id: string): string[] | undefined {
    return this.#byId.get(id);
  }
}

function plural(n: number, [one, many]: [string, string]): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Applies one set of rules to `entries` (newest first, none in the future). */
function applyRules(rules: Rules, entries: readonly Entry[], calendar: Calendar, now: number, reasons: Reasons): void {
  // A backup whose verification failed cannot be restored with confidence: it must not fill a
  // slot or a period, or it would push out the good backup that is still there to restore.
  const counted = entries.filter((entry) => !entry.failed);
  const oldest = counted.at(-1);

  if (rules.last > 0) {
    const kept = counted.slice(0, rules.last);
    kept.forEach((entry, i) => {
      reasons.add(entry.item.id, `last ${i + 1} of ${rules.last}`);
    });
  }

  for (const { period, unit } of PERIODS) {
    const wanted = rules.periods[period];
    if (wanted === 0) continue;
    const seen = new Set<string>();
    let representsOldest = false;
    for (const entry of counted) {
      if (seen.size === wanted) break;
      const key = calendar.periodKey(period, entry.wall);
      if (seen.has(key)) continue;
      seen.add(key);
      reasons.add(entry.item.id, `${period} ${key}`);
      if (entry === oldest) representsOldest = true;
    }
    // As restic >= 0.14: a rule that is short of periods also keeps the oldest backup, so a
    // young repository keeps its whole history rather than only one backup per period.
    if (oldest !== undefined && seen.size < wanted && !representsOldest) {
      const have = `only ${plural(seen.size, unit)} ${seen.size === 1 ? 'has' : 'have'} backups`;
      reasons.add(oldest.item.id, `oldest: ${period} rule wants ${wanted}, ${have}`);
    }
  }

  if (rules.within !== undefined) {
    // Time, not slots: a failed backup inside the window displaces nothing, so it stays
    // (and can still be examined) until the window passes it.
    const cutoff = calendar.subtract(now, rules.within);
    for (const entry of entries) if (entry.ms > cutoff) reasons.add(entry.item.id, `within ${rules.withinText}`);
  }
}

/**
 * Plans which backups to keep and which to delete, per kind, as restic's `forget` does, with
 * the DR safety rules on top. Pure: no I/O, no clock (`now` is passed), input left untouched.
 *
 * - Rules are OR-ed; each kept backup lists every rule that keeps it. Count rules walk newest
 *   to oldest and keep the newest backup of each of the n most recent calendar periods (in
 *   `policy.timeZone`) that have backups. When a count rule finds fewer than n, the group's
 *   oldest backup is kept too (restic >= 0.14), unless that rule already keeps it.
 * - `keepWithin` keeps backups created after `now` minus the duration (calendar arithmetic
 *   in the zone; a month from March 31 reaches back to February 28/29, see {@link parseDuration}).
 * - Full backups follow the main rules and incrementals `policy.incremental` (when given;
 *   otherwise both follow the main rules together). The oldest-kept fallback applies to the
 *   backups each set of rules judges.
 * - Backups whose verification failed never count towards keepLast or a period (the next
 *   older good backup of the period is kept instead) nor as the oldest; only keepWithin and
 *   the safety rules can keep them, and otherwise they go with 'verification failed and no
 *   rule keeps it'.
 * - Safety: the newest backup of each kind that passed verification is always kept (if none
 *   did, the newest not failed; if all failed, the newest), and so is every backup a kept one
 *   builds on, through `parent`, transitively.
 * - Backups dated after `now` are kept, warned about and left out of the rules, so a host
 *   with a wrong clock cannot push real backups out of their periods.
 *
 * @param now the time the plan is for (a Date or an ISO 8601 string with a zone)
 * @throws StoreError STORE_RETENTION_INVALID for a bad policy (naming the field), duplicate
 *   ids, or a missing or zone-less `createdAt`
 */
export function planRetention(items: readonly RetentionItem[], policy: RetentionPolicy, now: Date | string): RetentionPlan {
  const parsed = parsePolicy(policy);
  const nowMs = now instanceof Date ? now.getTime() : parseInstant(now, 'retention: now');
  if (Number.isNaN(nowMs)) throw invalid('retention: now is an invalid Date');
  const nowText = new Date(nowMs).toISOString();
  const calendar = new Calendar(parsed.timeZone);
  const entries = entriesOf(items, calendar);
  const reasons = new Reasons();
  const warnings: string[] = [];

  const groups = new Map<string, Entry[]>();
  for (const entry of entries) {
    const group = groups.get(entry.item.kind);
    if (group === undefined) groups.set(entry.item.kind, [entry]);
    else group.push(entry);
  }
  const kinds = [...groups.keys()].sort();

  for (const kind of kinds) {
    const group = (groups.get(kind) ?? []).sort(newestFirst);
    const present: Entry[] = [];
    for (const entry of group) {
      if (entry.ms > nowMs) {
        reasons.add(entry.item.id, 'in the future');
        warnings.push(
          `${kind} backup ${entry.item.id} is dated ${entry.item.createdAt}, after now (${nowText}); it is kept: check the clock of the host that made it`,
        );
      } else present.push(entry);
    }

    if (parsed.incremental === undefined) applyRules(parsed.main, present, calendar, nowMs, reasons);
    else {
      applyRules(
        parsed.main,
        present.filter((entry) => !entry.incremental),
        calendar,
        nowMs,
        reasons,
      );
      applyRules(
        parsed.incremental,
        present.filter((entry) => entry.incremental),
        calendar,
        nowMs,
        reasons,
      );
    }

    const verified = present.find((entry) => entry.passed);
    const usable = present.find((entry) => !entry.failed);
    if (verified !== undefined) reasons.add(verified.item.id, 'last verified backup');
    else if (usable !== undefined) reasons.add(usable.item.id, 'newest backup (none verified)');
    else if (present[0] !== undefined) {
      reasons.add(present[0].item.id, 'newest backup (all failed verification)');
      warnings.push(
        `every ${kind} backup failed verification; the newest, ${present[0].item.id}, is kept: take a new backup and verify it`,
      );
    }
  }

  // Keeping a backup keeps what it is restored from: follow parents from every kept backup.
  const byId = new Map(entries.map((entry) => [entry.item.id, entry]));
  const pending = entries.filter((entry) => reasons.has(entry.item.id)).sort(newestFirst);
  const followed = new Set<string>();
  for (let next = 0; next < pending.length; next++) {
    const entry = pending[next] as Entry;
    if (followed.has(entry.item.id)) continue;
    followed.add(entry.item.id);
    const parentId = entry.item.parent;
    if (parentId === undefined) continue;
    const parent = byId.get(parentId);
    if (parent === undefined) {
      warnings.push(
        `kept ${entry.item.kind} backup ${entry.item.id} builds on ${parentId}, which is not among the backups planned: it cannot be restored without it`,
      );
      continue;
    }
    if (parent.failed) warnings.push(`kept ${entry.item.kind} backup ${entry.item.id} builds on ${parentId}, whose verification failed`);
    reasons.add(parentId, `parent of ${entry.item.id}`);
    pending.push(parent);
  }

  const keep: RetentionDecision[] = [];
  const drop: RetentionDecision[] = [];
  for (const entry of [...entries].sort(newestFirst)) {
    const { id, kind, createdAt } = entry.item;
    const kept = reasons.get(id);
    if (kept !== undefined) keep.push({ id, kind, createdAt, action: 'keep', reasons: [...kept] });
    else
      drop.push({
        id,
        kind,
        createdAt,
        action: 'drop',
        reasons: [entry.failed ? 'verification failed and no rule keeps it' : 'no rule keeps it'],
      });
  }
  return { keep, drop, warnings };
}
