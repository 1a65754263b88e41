// The golden table of retention: every expected `keep` list below was worked out by hand from
// a calendar (weekdays, ISO weeks, month lengths), never by running planRetention. Items are
// generated from compact specs; the expectations are written out or built from hand-picked
// ranges whose bounds are explained next to them.
import { PLATFORM_PLAN_RETENTION, type RetentionItem, type RetentionPolicy, TRADING_PLAN_RETENTION } from '../src/retention.js';

/** One golden case: a plan for `items` under `policy` at `now`. */
export interface GoldenCase {
  name: string;
  items: RetentionItem[];
  policy: RetentionPolicy;
  now: string;
  /** Ids of the kept items, newest first (the order of the plan). */
  keep: string[];
  /** The exact reasons of some kept or dropped items. */
  reasons?: Record<string, string[]>;
  /** Substrings that must each appear in one warning; without it the plan has no warnings. */
  warnings?: string[];
}

const DAY = 86_400_000;

type Extra = Partial<Omit<RetentionItem, 'id' | 'createdAt'>>;

/** One item; `at` is 'YYYY-MM-DDTHH:MM' in UTC. */
function item(id: string, at: string, extra: Extra = {}): RetentionItem {
  return { id, kind: 'postgres', createdAt: `${at}:00Z`, ...extra };
}

/** Dates 'YYYY-MM-DD' from `from` to `to` inclusive, oldest first. */
function dates(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += DAY)
    out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}

/** One backup a day at `time` UTC, id = the date: how the platform plan's dailies look. */
function daily(from: string, to: string, time = '02:00', extra: Extra = {}): RetentionItem[] {
  return dates(from, to).map((date) => item(date, `${date}T${time}`, extra));
}

const newestFirst = (ids: string[]) => [...ids].reverse();

// Trading plan: a full at 00:00 and incrementals at 01:00..23:00 every day from 2026-03-02 to
// 2026-04-10 (40 days), each incremental building on the previous hour's backup. `now` is
// 2026-04-10T12:30Z, so that day has incrementals 01..12 only.
function tradingItems(): RetentionItem[] {
  const items: RetentionItem[] = [];
  for (const date of dates('2026-03-02', '2026-04-10')) {
    items.push(item(`full-${date}`, `${date}T00:00`, { type: 'full' }));
    const lastHour = date === '2026-04-10' ? 12 : 23;
    for (let hour = 1; hour <= lastHour; hour++) {
      const hh = String(hour).padStart(2, '0');
      const parent = hour === 1 ? `full-${date}` : `inc-${date}T${String(hour - 1).padStart(2, '0')}`;
      items.push(item(`inc-${date}T${hh}`, `${date}T${hh}:00`, { type: 'incremental', parent }));
    }
  }
  return items;
}

// Kept, by hand: fulls within 30d are those after 2026-03-11T12:30Z, i.e. 03-12..04-10 (30).
// Incrementals within 7d are those after 2026-04-03T12:30Z: 04-03 13..23, 04-04..04-09 all,
// 04-10 01..12 (11 + 138 + 12 = 161); 04-03T13's chain adds 04-03 01..12 (12) and full-04-03
// (already kept). Per day, newest first: that day's incrementals 23..01, then its full.
function tradingKeep(): string[] {
  const keep: string[] = [];
  for (const date of newestFirst(dates('2026-03-12', '2026-04-10'))) {
    if (date >= '2026-04-03') {
      const lastHour = date === '2026-04-10' ? 12 : 23;
      for (let hour = lastHour; hour >= 1; hour--) keep.push(`inc-${date}T${String(hour).padStart(2, '0')}`);
    }
    keep.push(`full-${date}`);
  }
  return keep;
}

const hourlyItems = ['10:05', '10:35', '10:55', '11:10', '11:40', '13:20'].map((time) => item(`2026-06-01T${time}`, `2026-06-01T${time}`));

const twicePerDay = (from: string, to: string, extra: (id: string) => Extra = () => ({})) =>
  dates(from, to).flatMap((date) => ['02', '14'].map((hh) => item(`${date}T${hh}`, `${date}T${hh}:00`, extra(`${date}T${hh}`))));

/** Every golden case; see the comment of each for the calendar facts it rests on. */
export const GOLDEN: GoldenCase[] = [
  {
    // 2026-11-21 is a Saturday in 2026-W47 (Mon 11-16..Sun 11-22), so this week's newest is
    // the Saturday itself; earlier weeks end on Sundays 11-15, 11-08, 11-01. Months end on
    // their last day (Feb 2026 has 28). 2025-11-21..2026-11-21 is 366 backups; the 12 months
    // run 2026-11 back to 2025-12, so 2025-11 is not reached. 7 + 2 + 11 = 20 kept.
    name: 'platform plan 7 daily / 4 weekly / 12 monthly over 366 daily backups at 02:00 UTC',
    items: daily('2025-11-21', '2026-11-21'),
    policy: PLATFORM_PLAN_RETENTION,
    now: '2026-11-21T12:00:00Z',
    keep: [
      '2026-11-21',
      '2026-11-20',
      '2026-11-19',
      '2026-11-18',
      '2026-11-17',
      '2026-11-16',
      '2026-11-15',
      '2026-11-08',
      '2026-11-01',
      '2026-10-31',
      '2026-09-30',
      '2026-08-31',
      '2026-07-31',
      '2026-06-30',
      '2026-05-31',
      '2026-04-30',
      '2026-03-31',
      '2026-02-28',
      '2026-01-31',
      '2025-12-31',
    ],
    reasons: {
      '2026-11-21': ['daily 2026-11-21', 'weekly 2026-W47', 'monthly 2026-11', 'newest backup (none verified)'],
      '2026-11-16': ['daily 2026-11-16'],
      '2026-11-15': ['daily 2026-11-15', 'weekly 2026-W46'],
      '2026-11-08': ['weekly 2026-W45'],
      '2026-11-01': ['weekly 2026-W44'],
      '2026-10-31': ['monthly 2026-10'],
      '2026-02-28': ['monthly 2026-02'],
      '2025-12-31': ['monthly 2025-12'],
      '2026-11-14': ['no rule keeps it'],
      '2025-11-21': ['no rule keeps it'],
    },
  },
  {
    // 2026 has 53 ISO weeks (it starts and ends on a Thursday): 2026-W53 is Mon 2026-12-28 to
    // Sun 2027-01-03; 2027-W01 is 01-04..01-10; 2027-01-12 is the Tuesday of 2027-W02.
    name: 'ISO weeks across a year boundary: 2026-W52, 2026-W53, 2027-W01, 2027-W02',
    items: daily('2026-12-20', '2027-01-12'),
    policy: { keepWeekly: 4 },
    now: '2027-01-12T12:00:00Z',
    keep: ['2027-01-12', '2027-01-10', '2027-01-03', '2026-12-27'],
    reasons: {
      '2027-01-12': ['weekly 2027-W02', 'newest backup (none verified)'],
      '2027-01-10': ['weekly 2027-W01'],
      '2027-01-03': ['weekly 2026-W53'],
      '2026-12-27': ['weekly 2026-W52'],
    },
  },
  {
    // Monday 2025-12-29 is already in 2026-W01 (the week of Thursday 2026-01-01), while the
    // calendar year is still 2025: weekly and yearly disagree on it. Sunday 12-28 ends 2025-W52.
    name: 'ISO week-year vs calendar year: 2025-12-29 is 2026-W01 but year 2025',
    items: ['2025-12-27', '2025-12-28', '2025-12-29', '2026-01-01', '2026-01-04'].map((date) => item(date, `${date}T02:00`)),
    policy: { keepWeekly: 2, keepYearly: 2 },
    now: '2026-01-05T12:00:00Z',
    keep: ['2026-01-04', '2025-12-29', '2025-12-28'],
    reasons: {
      '2026-01-04': ['weekly 2026-W01', 'yearly 2026', 'newest backup (none verified)'],
      '2025-12-29': ['yearly 2025'],
      '2025-12-28': ['weekly 2025-W52'],
      '2026-01-01': ['no rule keeps it'],
    },
  },
  {
    // 2028 is a leap year: February ends on the 29th; January and March on the 31st.
    name: 'months of different lengths and a leap day',
    items: daily('2028-01-15', '2028-04-05'),
    policy: { keepMonthly: 4 },
    now: '2028-04-05T12:00:00Z',
    keep: ['2028-04-05', '2028-03-31', '2028-02-29', '2028-01-31'],
    reasons: { '2028-02-29': ['monthly 2028-02'], '2028-01-31': ['monthly 2028-01'] },
  },
  {
    // Only 4 months have backups: the rule is short, so the oldest backup stays too.
    name: 'monthly rule short of months keeps the oldest backup too',
    items: daily('2028-01-15', '2028-04-05'),
    policy: { keepMonthly: 5 },
    now: '2028-04-05T12:00:00Z',
    keep: ['2028-04-05', '2028-03-31', '2028-02-29', '2028-01-31', '2028-01-15'],
    reasons: { '2028-01-15': ['oldest: monthly rule wants 5, only 4 months have backups'] },
  },
  {
    // 1m back from 2026-03-31T12:00Z is 2026-02-28T12:00Z (February has no 31st; the day is
    // clamped, where Go's AddDate would overflow to March 3). Strictly after: 03-01..03-31.
    name: "keepWithin '1m' from March 31 clamps to February 28",
    items: daily('2026-02-20', '2026-03-31'),
    policy: { keepWithin: '1m' },
    now: '2026-03-31T12:00:00Z',
    keep: newestFirst(dates('2026-03-01', '2026-03-31')),
    reasons: {
      '2026-03-31': ['within 1m', 'newest backup (none verified)'],
      '2026-03-01': ['within 1m'],
      '2026-02-28': ['no rule keeps it'],
    },
  },
  {
    // 1m12h: 2026-02-28T12:00Z minus 12 hours is 02-28T00:00Z, so 02-28T02:00 is in.
    name: "keepWithin '1m12h': months, then hours",
    items: daily('2026-02-20', '2026-03-31'),
    policy: { keepWithin: '1m12h' },
    now: '2026-03-31T12:00:00Z',
    keep: newestFirst(dates('2026-02-28', '2026-03-31')),
  },
  {
    // 1y back from 2028-02-29T12:00Z is 2027-02-28T12:00Z (2027 has no Feb 29); a backup
    // exactly at the cutoff is not "newer than" it.
    name: "keepWithin '1y' from a leap day",
    items: [...daily('2027-02-26', '2027-03-02', '12:00'), item('2028-02-29', '2028-02-29T06:00')],
    policy: { keepWithin: '1y' },
    now: '2028-02-29T12:00:00Z',
    keep: ['2028-02-29', '2027-03-02', '2027-03-01'],
  },
  {
    name: 'keepLast keeps the n newest',
    items: daily('2026-06-01', '2026-06-05'),
    policy: { keepLast: 3 },
    now: '2026-06-05T12:00:00Z',
    keep: ['2026-06-05', '2026-06-04', '2026-06-03'],
    reasons: {
      '2026-06-05': ['last 1 of 3', 'newest backup (none verified)'],
      '2026-06-04': ['last 2 of 3'],
      '2026-06-03': ['last 3 of 3'],
    },
  },
  {
    // Three hours have backups (10, 11, 13; 12 has none and does not count); the newest of each.
    name: 'keepHourly with several backups per hour and an hour without any',
    items: hourlyItems,
    policy: { keepHourly: 3 },
    now: '2026-06-01T14:00:00Z',
    keep: ['2026-06-01T13:20', '2026-06-01T11:40', '2026-06-01T10:55'],
    reasons: {
      '2026-06-01T13:20': ['hourly 2026-06-01T13', 'newest backup (none verified)'],
      '2026-06-01T11:40': ['hourly 2026-06-01T11'],
      '2026-06-01T10:55': ['hourly 2026-06-01T10'],
      '2026-06-01T10:05': ['no rule keeps it'],
    },
  },
  {
    // 4 wanted, 3 hours have backups: 10:05 is not the newest of its hour, and is kept only
    // because it is the oldest while the rule is short.
    name: 'keepHourly short of hours keeps the oldest backup by that rule',
    items: hourlyItems,
    policy: { keepHourly: 4 },
    now: '2026-06-01T14:00:00Z',
    keep: ['2026-06-01T13:20', '2026-06-01T11:40', '2026-06-01T10:55', '2026-06-01T10:05'],
    reasons: { '2026-06-01T10:05': ['oldest: hourly rule wants 4, only 3 hours have backups'] },
  },
  {
    // The oldest is the newest of its own day: it is kept as a daily, with no extra reason.
    name: 'keepDaily 7 with only 3 days of backups keeps all 3',
    items: daily('2026-06-01', '2026-06-03'),
    policy: { keepDaily: 7 },
    now: '2026-06-03T12:00:00Z',
    keep: ['2026-06-03', '2026-06-02', '2026-06-01'],
    reasons: { '2026-06-01': ['daily 2026-06-01'] },
  },
  {
    name: 'keepYearly: the newest backup of each year',
    items: dates('2023-01-01', '2026-06-01')
      .filter((date) => date.endsWith('-01'))
      .map((date) => item(date, `${date}T04:00`)),
    policy: { keepYearly: 3 },
    now: '2026-06-15T12:00:00Z',
    keep: ['2026-06-01', '2025-12-01', '2024-12-01'],
    reasons: { '2025-12-01': ['yearly 2025'], '2023-12-01': ['no rule keeps it'] },
  },
  {
    name: 'keepYearly short of years keeps the oldest too',
    items: dates('2023-01-01', '2026-06-01')
      .filter((date) => date.endsWith('-01'))
      .map((date) => item(date, `${date}T04:00`)),
    policy: { keepYearly: 5 },
    now: '2026-06-15T12:00:00Z',
    keep: ['2026-06-01', '2025-12-01', '2024-12-01', '2023-12-01', '2023-01-01'],
    reasons: { '2023-01-01': ['oldest: yearly rule wants 5, only 4 years have backups'] },
  },
  {
    name: 'rules are OR-ed and each keep lists every rule',
    items: twicePerDay('2026-06-01', '2026-06-03'),
    policy: { keepLast: 2, keepDaily: 2 },
    now: '2026-06-03T18:00:00Z',
    keep: ['2026-06-03T14', '2026-06-03T02', '2026-06-02T14'],
    reasons: {
      '2026-06-03T14': ['last 1 of 2', 'daily 2026-06-03', 'newest backup (none verified)'],
      '2026-06-03T02': ['last 2 of 2'],
      '2026-06-02T14': ['daily 2026-06-02'],
    },
  },
  {
    // In UTC the 23:30 backup is the newest of 2026-01-10.
    name: 'days in UTC',
    items: [item('a', '2026-01-10T22:00'), item('b', '2026-01-10T23:30'), item('c', '2026-01-11T10:00')],
    policy: { keepDaily: 2 },
    now: '2026-01-11T12:00:00Z',
    keep: ['c', 'b'],
    reasons: { b: ['daily 2026-01-10'] },
  },
  {
    // Berlin is UTC+1 in January: 23:30Z is 00:30 on 01-11 there, so 22:00Z (23:00 local)
    // is the newest of 2026-01-10.
    name: "days in 'Europe/Berlin': 23:30 UTC is the next day",
    items: [item('a', '2026-01-10T22:00'), item('b', '2026-01-10T23:30'), item('c', '2026-01-11T10:00')],
    policy: { keepDaily: 2, timeZone: 'Europe/Berlin' },
    now: '2026-01-11T12:00:00Z',
    keep: ['c', 'a'],
    reasons: { c: ['daily 2026-01-11', 'newest backup (none verified)'], a: ['daily 2026-01-10'], b: ['no rule keeps it'] },
  },
  {
    // Sunday 2026-11-15T23:30Z is Monday 00:30 in Berlin (UTC+1), i.e. 2026-W47.
    name: "ISO weeks in 'Europe/Berlin': a Sunday-night backup is next week's",
    items: [item('sat', '2026-11-14T20:00'), item('sun-late', '2026-11-15T23:30'), item('tue', '2026-11-17T10:00')],
    policy: { keepWeekly: 2, timeZone: 'Europe/Berlin' },
    now: '2026-11-17T12:00:00Z',
    keep: ['tue', 'sat'],
    reasons: { tue: ['weekly 2026-W47', 'newest backup (none verified)'], sat: ['weekly 2026-W46'] },
  },
  {
    // 06-02T14 failed: it does not fill 2026-06-02, so 06-02T02 stands for that day.
    name: 'a failed verification does not count toward a period',
    items: twicePerDay('2026-06-01', '2026-06-04', (id) => (id === '2026-06-02T14' ? { verification: { status: 'failed' } } : {})),
    policy: { keepDaily: 3 },
    now: '2026-06-04T18:00:00Z',
    keep: ['2026-06-04T14', '2026-06-03T14', '2026-06-02T02'],
    reasons: { '2026-06-02T02': ['daily 2026-06-02'], '2026-06-02T14': ['verification failed and no rule keeps it'] },
  },
  {
    name: 'keepLast 1 where the newest failed verification and the one before passed',
    items: [
      item('older', '2026-06-01T02:00', { verification: { status: 'passed' } }),
      item('newest', '2026-06-02T02:00', { verification: { status: 'failed' } }),
    ],
    policy: { keepLast: 1 },
    now: '2026-06-02T12:00:00Z',
    keep: ['older'],
    reasons: { older: ['last 1 of 1', 'last verified backup'], newest: ['verification failed and no rule keeps it'] },
  },
  {
    // keepLast takes the newest not-failed backup (unverified); the newest verified one stays
    // by the safety rule; the older verified one goes.
    name: 'the last verified backup is never dropped',
    items: [
      item('v-old', '2026-06-01T02:00', { verification: { status: 'passed' } }),
      item('v-new', '2026-06-02T02:00', { verification: { status: 'passed' } }),
      item('unverified', '2026-06-03T02:00'),
      item('failed', '2026-06-04T02:00', { verification: { status: 'failed' } }),
    ],
    policy: { keepLast: 1 },
    now: '2026-06-04T12:00:00Z',
    keep: ['unverified', 'v-new'],
    reasons: {
      unverified: ['last 1 of 1'],
      'v-new': ['last verified backup'],
      'v-old': ['no rule keeps it'],
      failed: ['verification failed and no rule keeps it'],
    },
  },
  {
    // Backups stopped 20 days ago: keepWithin matches nothing, the newest survives.
    name: 'backups stopped: the newest is kept when none was verified',
    items: daily('2026-05-01', '2026-05-10'),
    policy: { keepWithin: '7d' },
    now: '2026-05-30T12:00:00Z',
    keep: ['2026-05-10'],
    reasons: { '2026-05-10': ['newest backup (none verified)'] },
  },
  {
    name: 'keepWithin keeps a failed backup inside the window (it displaces nothing)',
    items: [
      item('2026-06-01', '2026-06-01T02:00'),
      item('2026-06-02', '2026-06-02T02:00', { verification: { status: 'failed' } }),
      item('2026-06-03', '2026-06-03T02:00'),
    ],
    policy: { keepWithin: '7d' },
    now: '2026-06-03T12:00:00Z',
    keep: ['2026-06-03', '2026-06-02', '2026-06-01'],
    reasons: { '2026-06-03': ['within 7d', 'newest backup (none verified)'], '2026-06-02': ['within 7d'] },
  },
  {
    name: 'every backup failed verification: the newest is kept, with a warning',
    items: daily('2026-06-01', '2026-06-03', '02:00', { verification: { status: 'failed' } }),
    policy: { keepDaily: 7 },
    now: '2026-06-03T12:00:00Z',
    keep: ['2026-06-03'],
    reasons: { '2026-06-03': ['newest backup (all failed verification)'], '2026-06-01': ['verification failed and no rule keeps it'] },
    warnings: ['every postgres backup failed verification'],
  },
  {
    name: 'incremental chain F1 <- I1 <- I2: keeping I2 keeps I1 and F1',
    items: [
      item('F0', '2026-05-31T02:00', { type: 'full' }),
      item('F1', '2026-06-01T02:00', { type: 'full' }),
      item('I1', '2026-06-02T02:00', { type: 'incremental', parent: 'F1' }),
      item('I2', '2026-06-03T02:00', { type: 'incremental', parent: 'I1' }),
    ],
    policy: { keepLast: 1 },
    now: '2026-06-03T12:00:00Z',
    keep: ['I2', 'I1', 'F1'],
    reasons: { I2: ['last 1 of 1', 'newest backup (none verified)'], I1: ['parent of I2'], F1: ['parent of I1'], F0: ['no rule keeps it'] },
  },
  {
    name: 'a kept incremental whose parent is missing, and one whose parent failed, are warned about',
    items: [
      item('F1', '2026-06-01T02:00', { type: 'full', verification: { status: 'failed' } }),
      item('I1', '2026-06-02T02:00', { type: 'incremental', parent: 'F1' }),
      item('I2', '2026-06-03T02:00', { type: 'incremental', parent: 'gone' }),
    ],
    policy: { keepLast: 2 },
    now: '2026-06-03T12:00:00Z',
    keep: ['I2', 'I1', 'F1'],
    reasons: { F1: ['parent of I1'] },
    warnings: ['I2 builds on gone, which is not among the backups planned', 'I1 builds on F1, whose verification failed'],
  },
  {
    // The future backup is kept and does not take 2026-06-03 from the real one.
    name: 'a backup dated in the future is kept, warned about and left out of the rules',
    items: [...daily('2026-06-01', '2026-06-03'), item('future', '2026-06-03T20:00')],
    policy: { keepDaily: 1 },
    now: '2026-06-03T12:00:00Z',
    keep: ['future', '2026-06-03'],
    reasons: { future: ['in the future'], '2026-06-03': ['daily 2026-06-03', 'newest backup (none verified)'] },
    warnings: ['postgres backup future is dated 2026-06-03T20:00:00Z'],
  },
  {
    name: 'each kind is planned on its own',
    items: [
      item('pg-1', '2026-06-01T02:00'),
      item('redis-1', '2026-06-01T03:00', { kind: 'redis-rdb' }),
      item('pg-2', '2026-06-02T02:00'),
      item('redis-2', '2026-06-02T03:00', { kind: 'redis-rdb', verification: { status: 'passed' } }),
      item('files-1', '2026-06-01T04:00', { kind: 'files' }),
    ],
    policy: { keepLast: 1 },
    now: '2026-06-03T12:00:00Z',
    keep: ['redis-2', 'pg-2', 'files-1'],
    reasons: { 'redis-2': ['last 1 of 1', 'last verified backup'], 'files-1': ['last 1 of 1', 'newest backup (none verified)'] },
  },
  {
    // See tradingItems/tradingKeep: 30 fulls + 173 incrementals kept = 203 of 949.
    name: 'trading plan: 30 days of fulls, 7 days of hourly incrementals, over 40 days',
    items: tradingItems(),
    policy: TRADING_PLAN_RETENTION,
    now: '2026-04-10T12:30:00Z',
    keep: tradingKeep(),
    reasons: {
      'inc-2026-04-10T12': ['within 7d', 'newest backup (none verified)'],
      'full-2026-04-10': ['within 30d', 'parent of inc-2026-04-10T01'],
      // Every kept incremental is also the parent of the next hour's.
      'inc-2026-04-03T13': ['within 7d', 'parent of inc-2026-04-03T14'],
      'inc-2026-04-03T12': ['parent of inc-2026-04-03T13'],
      'inc-2026-04-03T01': ['parent of inc-2026-04-03T02'],
      'full-2026-04-03': ['within 30d', 'parent of inc-2026-04-03T01'],
      'full-2026-04-02': ['within 30d'],
      'full-2026-03-12': ['within 30d'],
      'full-2026-03-11': ['no rule keeps it'],
      'inc-2026-04-02T23': ['no rule keeps it'],
    },
  },
];
