import { describe, expect, it } from 'vitest';
import { StoreError } from '../src/errors.js';
import {
  describePolicy,
  PLATFORM_PLAN_RETENTION,
  parseDuration,
  planRetention,
  RETENTION_PLAN_DEFAULTS,
  type RetentionItem,
  type RetentionPlan,
  type RetentionPolicy,
  TRADING_PLAN_RETENTION,
} from '../src/retention.js';
import { GOLDEN, type GoldenCase } from './retention-golden.js';

/** The StoreError thrown by `fn`, checked for STORE_RETENTION_INVALID. */
function retentionError(fn: () => unknown): StoreError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(StoreError);
  expect((caught as StoreError).code).toBe('STORE_RETENTION_INVALID');
  return caught as StoreError;
}

/** Invariants every plan must hold, whatever the policy. */
function expectWellFormed(plan: RetentionPlan, items: readonly RetentionItem[]): void {
  const all = [...plan.keep, ...plan.drop];
  expect(all.map((d) => d.id).sort()).toEqual(items.map((i) => i.id).sort());
  for (const decision of plan.keep) expect(decision.action).toBe('keep');
  for (const decision of plan.drop) expect(decision.action).toBe('drop');
  for (const decision of all) {
    expect(decision.reasons.length).toBeGreaterThan(0);
    const source = items.find((i) => i.id === decision.id);
    expect(decision.kind).toBe(source?.kind);
    expect(decision.createdAt).toBe(source?.createdAt);
  }
  for (const list of [plan.keep, plan.drop])
    for (let i = 1; i < list.length; i++)
      expect(Date.parse(list[i - 1]?.createdAt ?? '')).toBeGreaterThanOrEqual(Date.parse(list[i]?.createdAt ?? ''));
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

const day = (date: string, extra: Partial<RetentionItem> = {}): RetentionItem => ({
  id: date,
  kind: 'postgres',
  createdAt: `${date}T02:00:00Z`,
  ...extra,
});

describe('golden table', () => {
  it('has unique case names', () => {
    expect(new Set(GOLDEN.map((c) => c.name)).size).toBe(GOLDEN.length);
  });

  it.each(GOLDEN.map((c) => [c.name, c] as const))('%s', (_name, golden: GoldenCase) => {
    const plan = planRetention(golden.items, golden.policy, golden.now);
    expect(plan.keep.map((d) => d.id)).toEqual(golden.keep);
    expectWellFormed(plan, golden.items);
    const decisions = new Map([...plan.keep, ...plan.drop].map((d) => [d.id, d]));
    for (const [id, reasons] of Object.entries(golden.reasons ?? {})) expect(decisions.get(id)?.reasons, id).toEqual(reasons);
    if (golden.warnings === undefined) expect(plan.warnings).toEqual([]);
    else {
      expect(plan.warnings).toHaveLength(golden.warnings.length);
      for (const fragment of golden.warnings)
        expect(
          plan.warnings.some((w) => w.includes(fragment)),
          fragment,
        ).toBe(true);
    }
  });
});

describe('planRetention: the two DR plans', () => {
  const golden = (name: string) => GOLDEN.find((c) => c.name.startsWith(name)) as GoldenCase;

  it('platform plan over a year keeps 20 of 366, and says why each of the 346 others goes', () => {
    const { items, policy, now } = golden('platform plan');
    expect(items).toHaveLength(366);
    const plan = planRetention(items, policy, now);
    expect(plan.keep).toHaveLength(20);
    expect(plan.drop).toHaveLength(346);
    for (const decision of plan.drop) expect(decision.reasons).toEqual(['no rule keeps it']);
  });

  it('trading plan over 40 days keeps 30 fulls and 173 incrementals', () => {
    const { items, policy, now } = golden('trading plan');
    expect(items).toHaveLength(40 + 39 * 23 + 12);
    const plan = planRetention(items, policy, now);
    const count = (list: RetentionPlan['keep'], prefix: string) => list.filter((d) => d.id.startsWith(prefix)).length;
    expect([count(plan.keep, 'full-'), count(plan.keep, 'inc-')]).toEqual([30, 173]);
    expect([count(plan.drop, 'full-'), count(plan.drop, 'inc-')]).toEqual([10, 736]);
  });

  it('presets are the plans, frozen, and described for the CLI', () => {
    expect(PLATFORM_PLAN_RETENTION).toEqual({ keepDaily: 7, keepWeekly: 4, keepMonthly: 12 });
    expect(TRADING_PLAN_RETENTION).toEqual({ keepWithin: '30d', incremental: { keepWithin: '7d' } });
    expect(RETENTION_PLAN_DEFAULTS).toEqual({ platform: PLATFORM_PLAN_RETENTION, trading: TRADING_PLAN_RETENTION });
    expect(Object.isFrozen(PLATFORM_PLAN_RETENTION)).toBe(true);
    expect(Object.isFrozen(TRADING_PLAN_RETENTION.incremental)).toBe(true);
    expect(describePolicy(PLATFORM_PLAN_RETENTION)).toBe('7 daily, 4 weekly, 12 monthly');
    expect(describePolicy(TRADING_PLAN_RETENTION)).toBe('all within 30d; incrementals: all within 7d');
  });
});

describe('planRetention: semantics', () => {
  it('without incremental rules, incrementals are judged with the fulls, and pull in their parents', () => {
    const items: RetentionItem[] = [
      { id: 'F1', kind: 'files', createdAt: '2026-06-01T00:00:00Z', type: 'full' },
      { id: 'I1', kind: 'files', createdAt: '2026-06-01T12:00:00Z', type: 'incremental', parent: 'F1' },
      { id: 'F2', kind: 'files', createdAt: '2026-06-02T00:00:00Z', type: 'full' },
      { id: 'I2', kind: 'files', createdAt: '2026-06-02T12:00:00Z', type: 'incremental', parent: 'F2' },
    ];
    const mixed = planRetention(items, { keepDaily: 1 }, '2026-06-02T18:00:00Z');
    expect(mixed.keep.map((d) => [d.id, d.reasons])).toEqual([
      ['I2', ['daily 2026-06-02', 'newest backup (none verified)']],
      ['F2', ['parent of I2']],
    ]);
    // With their own rules, fulls and incrementals are counted separately.
    const split = planRetention(items, { keepDaily: 1, incremental: { keepLast: 2 } }, '2026-06-02T18:00:00Z');
    expect(split.keep.map((d) => [d.id, d.reasons])).toEqual([
      ['I2', ['last 1 of 2', 'newest backup (none verified)']],
      ['F2', ['daily 2026-06-02', 'parent of I2']],
      ['I1', ['last 2 of 2']],
      ['F1', ['parent of I1']],
    ]);
  });

  it('the oldest-kept fallback looks at the backups each set of rules judges', () => {
    const items: RetentionItem[] = [
      { id: 'F1', kind: 'files', createdAt: '2026-06-01T00:00:00Z' },
      { id: 'F2', kind: 'files', createdAt: '2026-06-01T06:00:00Z' },
      { id: 'I1', kind: 'files', createdAt: '2026-06-01T07:00:00Z', type: 'incremental', parent: 'F2' },
    ];
    const plan = planRetention(items, { keepDaily: 2, incremental: { keepLast: 1 } }, '2026-06-02T00:00:00Z');
    expect(plan.keep.map((d) => [d.id, d.reasons])).toEqual([
      ['I1', ['last 1 of 1', 'newest backup (none verified)']],
      ['F2', ['daily 2026-06-01', 'parent of I1']],
      ['F1', ['oldest: daily rule wants 2, only 1 day has backups']],
    ]);
  });

  it('a failed backup is not the oldest the fallback keeps: the oldest good one is', () => {
    const items = [day('2026-06-01', { verification: { status: 'failed' } }), day('2026-06-02'), day('2026-06-03')];
    const plan = planRetention(items, { keepWeekly: 3 }, '2026-06-03T12:00:00Z');
    expect(plan.keep.map((d) => [d.id, d.reasons])).toEqual([
      ['2026-06-03', ['weekly 2026-W23', 'newest backup (none verified)']],
      ['2026-06-02', ['oldest: weekly rule wants 3, only 1 week has backups']],
    ]);
    expect(plan.drop.map((d) => d.reasons)).toEqual([['verification failed and no rule keeps it']]);
  });

  it('keepWithin counts calendar days on the wall clock of the time zone (DST)', () => {
    // Berlin moves to summer time on 2026-03-29: one day before 14:00 CEST is 14:00 CET the
    // day before, 23 hours earlier (13:00Z), so a backup at 12:30Z is out; in UTC it is in.
    const items: RetentionItem[] = [
      { id: 'in-utc-only', kind: 'postgres', createdAt: '2026-03-28T12:30:00Z' },
      { id: 'newest', kind: 'postgres', createdAt: '2026-03-29T11:00:00Z' },
    ];
    const now = '2026-03-29T12:00:00Z';
    expect(planRetention(items, { keepWithin: '1d' }, now).keep.map((d) => d.id)).toEqual(['newest', 'in-utc-only']);
    expect(planRetention(items, { keepWithin: '1d', timeZone: 'Europe/Berlin' }, now).keep.map((d) => d.id)).toEqual(['newest']);
  });

  it('hours in a time zone are local hours', () => {
    // Kolkata is UTC+05:30: 10:20Z and 10:40Z are 15:50 and 16:10 there, different hours.
    const items: RetentionItem[] = [
      { id: 'a', kind: 'postgres', createdAt: '2026-06-01T10:20:00Z' },
      { id: 'b', kind: 'postgres', createdAt: '2026-06-01T10:40:00Z' },
    ];
    const plan = planRetention(items, { keepHourly: 2, timeZone: 'Asia/Kolkata' }, '2026-06-01T12:00:00Z');
    expect(plan.keep.map((d) => [d.id, d.reasons[0]])).toEqual([
      ['b', 'hourly 2026-06-01T16'],
      ['a', 'hourly 2026-06-01T15'],
    ]);
    expect(planRetention(items, { keepHourly: 2 }, '2026-06-01T12:00:00Z').keep.map((d) => d.reasons[0])).toEqual([
      'hourly 2026-06-01T10',
      'oldest: hourly rule wants 2, only 1 hour has backups',
    ]);
  });

  it('accepts a Date for now, offsets in createdAt, and items in any order', () => {
    const items = [day('2026-06-03'), day('2026-06-01'), { ...day('2026-06-02'), createdAt: '2026-06-02T04:00:00+02:00' }];
    const fromString = planRetention(items, { keepLast: 2 }, '2026-06-03T12:00:00Z');
    const fromDate = planRetention([...items].reverse(), { keepLast: 2 }, new Date('2026-06-03T12:00:00Z'));
    expect(fromDate).toEqual(fromString);
    expect(fromString.keep.map((d) => d.id)).toEqual(['2026-06-03', '2026-06-02']);
  });

  it('equal times are ordered by id, newest id first', () => {
    const items: RetentionItem[] = ['b', 'a', 'c'].map((id) => ({ id, kind: 'postgres', createdAt: '2026-06-01T02:00:00Z' }));
    const plan = planRetention(items, { keepLast: 1 }, '2026-06-02T00:00:00Z');
    expect(plan.keep.map((d) => d.id)).toEqual(['c']);
    expect(plan.drop.map((d) => d.id)).toEqual(['b', 'a']);
  });

  it('parents are followed across long chains without repeats, and a parent loop ends', () => {
    const items: RetentionItem[] = [{ id: 'i000', kind: 'files', createdAt: '2026-01-01T00:00:00Z', type: 'full' }];
    for (let n = 1; n <= 500; n++)
      items.push({
        id: `i${String(n).padStart(3, '0')}`,
        kind: 'files',
        createdAt: new Date(Date.parse('2026-01-01T00:00:00Z') + n * 60_000).toISOString(),
        type: 'incremental',
        parent: `i${String(n - 1).padStart(3, '0')}`,
      });
    const plan = planRetention(items, { keepLast: 1 }, '2026-02-01T00:00:00Z');
    expect(plan.keep).toHaveLength(501);
    expect(plan.keep.at(-1)?.reasons).toEqual(['parent of i001']);

    const loop: RetentionItem[] = [
      { id: 'x', kind: 'files', createdAt: '2026-01-01T00:00:00Z', type: 'incremental', parent: 'y' },
      { id: 'y', kind: 'files', createdAt: '2026-01-02T00:00:00Z', type: 'incremental', parent: 'x' },
    ];
    const looped = planRetention(loop, { keepLast: 1 }, '2026-02-01T00:00:00Z');
    expect(looped.keep.map((d) => [d.id, d.reasons])).toEqual([
      ['y', ['last 1 of 1', 'newest backup (none verified)', 'parent of x']],
      ['x', ['parent of y']],
    ]);
  });

  it('plans nothing for no backups', () => {
    expect(planRetention([], PLATFORM_PLAN_RETENTION, '2026-06-01T00:00:00Z')).toEqual({ keep: [], drop: [], warnings: [] });
  });
});

describe('planRetention: purity', () => {
  it('leaves its inputs untouched and gives the same plan for the same input', () => {
    const golden = GOLDEN.find((c) => c.name.startsWith('a kept incremental')) as GoldenCase;
    const items = deepFreeze(structuredClone(golden.items));
    const policy = deepFreeze({ ...TRADING_PLAN_RETENTION, incremental: { keepLast: 1 }, keepDaily: 2 });
    const before = JSON.stringify([items, policy]);
    const first = planRetention(items, policy, golden.now);
    const second = planRetention(items, policy, golden.now);
    expect(second).toEqual(first);
    expect(JSON.stringify([items, policy])).toBe(before);
    // Decisions are fresh objects: editing one plan does not change the next.
    first.keep[0]?.reasons.push('edited');
    expect(planRetention(items, policy, golden.now)).toEqual(second);
  });
});

describe('planRetention: invalid input', () => {
  const items = [day('2026-06-01')];
  const now = '2026-06-02T00:00:00Z';
  const cases: [string, unknown, RegExp][] = [
    ['empty policy', {}, /no rules.*keepLast, keepHourly, keepDaily/],
    ['all counts zero', { keepDaily: 0, keepWeekly: 0, keepWithin: '0d' }, /no rules/],
    ['negative count', { keepDaily: -1 }, /keepDaily must be a whole number ≥ 0.*got -1/],
    ['fractional count', { keepWeekly: 1.5 }, /keepWeekly must be a whole number.*got 1\.5/],
    ['count as a string', { keepLast: '7' }, /keepLast must be a whole number.*got '7'/],
    ['infinite count', { keepMonthly: Number.POSITIVE_INFINITY }, /keepMonthly/],
    ['unknown duration unit', { keepWithin: '2w' }, /keepWithin must be a duration.*got '2w'/],
    ['duration with words', { keepWithin: '30 days' }, /keepWithin must be a duration/],
    ['duration units out of order', { keepWithin: '1d1y' }, /keepWithin/],
    ['duration as a number', { keepWithin: 30 }, /keepWithin must be a duration.*got 30/],
    ['unknown time zone', { keepDaily: 7, timeZone: 'Mars/Olympus' }, /timeZone must be an IANA time zone.*'Mars\/Olympus'/],
    ['empty time zone', { keepDaily: 7, timeZone: '' }, /timeZone/],
    ['misspelt rule', { keepDayly: 7 }, /unknown field 'keepDayly'/],
    ['incremental count', { keepDaily: 7, incremental: { keepHourly: -2 } }, /incremental\.keepHourly must be a whole number/],
    ['incremental duration', { keepDaily: 7, incremental: { keepWithin: '7 days' } }, /incremental\.keepWithin must be a duration/],
    [
      'time zone inside incremental',
      { keepDaily: 7, incremental: { keepLast: 1, timeZone: 'UTC' } },
      /unknown field 'incremental\.timeZone'/,
    ],
    ['empty incremental rules', { keepDaily: 7, incremental: {} }, /incremental has no rules/],
    ['only incremental rules', { incremental: { keepWithin: '7d' } }, /no rules for full backups/],
    ['incremental not an object', { keepDaily: 7, incremental: 'keepLast 1' }, /incremental must be an object/],
    ['policy not an object', null, /policy must be an object/],
  ];

  it.each(cases)('refuses a policy: %s', (_name, policy, message) => {
    const error = retentionError(() => planRetention(items, policy as RetentionPolicy, now));
    expect(error.message).toMatch(message);
    // describePolicy validates the same way, so the CLI can show a policy before using it.
    expect(retentionError(() => describePolicy(policy as RetentionPolicy)).message).toBe(error.message);
  });

  it('refuses duplicate ids', () => {
    const error = retentionError(() => planRetention([day('2026-06-01'), day('2026-06-01')], { keepLast: 1 }, now));
    expect(error.message).toMatch(/duplicate backup id '2026-06-01'/);
  });

  it.each([
    ['no zone', '2026-06-01T02:00:00'],
    ['a date only', '2026-06-01'],
    ['not a date', 'yesterday'],
    ['an impossible date', '2026-13-45T02:00:00Z'],
  ])('refuses a createdAt with %s', (_name, createdAt) => {
    const error = retentionError(() => planRetention([{ ...day('2026-06-01'), createdAt }], { keepLast: 1 }, now));
    expect(error.message).toMatch(/createdAt of backup '2026-06-01' must be an ISO 8601 time with a zone/);
  });

  it('refuses bad items and a bad now', () => {
    expect(retentionError(() => planRetention([{ ...day('a'), type: 'differential' as 'full' }], { keepLast: 1 }, now)).message).toMatch(
      /backup 'a' has type 'differential'/,
    );
    expect(retentionError(() => planRetention([{ ...day('a'), kind: '' }], { keepLast: 1 }, now)).message).toMatch(/has no kind/);
    expect(retentionError(() => planRetention(items, { keepLast: 1 }, new Date(Number.NaN))).message).toMatch(/now/);
    expect(retentionError(() => planRetention(items, { keepLast: 1 }, 'now')).message).toMatch(/now must be an ISO 8601 time/);
  });
});

describe('parseDuration', () => {
  it.each([
    ['30d', { years: 0, months: 0, days: 30, hours: 0 }],
    ['12h', { years: 0, months: 0, days: 0, hours: 12 }],
    ['1y2m', { years: 1, months: 2, days: 0, hours: 0 }],
    ['1y5m7d2h', { years: 1, months: 5, days: 7, hours: 2 }],
    ['0d', { years: 0, months: 0, days: 0, hours: 0 }],
  ])('parses %s', (text, expected) => {
    expect(parseDuration(text)).toEqual(expected);
  });

  it.each(['', '30', 'd', '1w', '1D', '-1d', '1.5d', '1d1d', '1h1d', ' 1d', '1d '])('refuses %j', (text) => {
    expect(retentionError(() => parseDuration(text)).message).toMatch(/keepWithin must be a duration/);
  });

  it('names the field it was given', () => {
    expect(retentionError(() => parseDuration('7 days', 'incremental.keepWithin')).message).toMatch(
      /^retention policy: incremental\.keepWithin/,
    );
  });
});

describe('describePolicy', () => {
  it.each([
    [{ keepLast: 3, keepHourly: 24, keepYearly: 2 }, '3 latest, 24 hourly, 2 yearly'],
    [{ keepDaily: 7, keepWithin: '1y2m' }, '7 daily, all within 1y2m'],
    [{ keepDaily: 7, keepWithin: '0d' }, '7 daily'],
    [{ keepDaily: 7, timeZone: 'Europe/Berlin' }, '7 daily (periods in Europe/Berlin)'],
    [{ keepWithin: '30d', incremental: { keepLast: 48 } }, 'all within 30d; incrementals: 48 latest'],
  ] as [RetentionPolicy, string][])('describes %j', (policy, text) => {
    expect(describePolicy(policy)).toBe(text);
  });
});
