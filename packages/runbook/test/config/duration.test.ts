import { describe, expect, it } from 'vitest';
import { formatDurationShort, parseDuration } from '../../src/config/index.js';
import { isRunbookError } from '../../src/errors.js';

describe('parseDuration', () => {
  it.each([
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['90s', 90_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1m500ms', 60_500],
    ['2d', 172_800_000],
    ['1.5h', 5_400_000],
    ['1h 30m', 5_400_000],
    [' 10s ', 10_000],
    ['0s', 0],
    [1234, 1234],
    [0, 0],
    [1.6, 2],
  ] as const)('%j is %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([
    ['15 minutes', '"15 minutes" is not a duration (use e.g. "15m", "1h30m", "90s" or "500ms")'],
    ['15', '"15" has no unit'],
    ['', 'an empty string is not a duration'],
    ['1m30m', 'units must go from largest to smallest'],
    ['30s1m', 'units must go from largest to smallest'],
    ['15M', 'is not a duration'],
    ['h', 'is not a duration'],
    ['-5m', 'is not a duration'],
    [-1, '-1 is not a duration'],
    [Number.NaN, 'NaN is not a duration'],
    [Number.POSITIVE_INFINITY, 'Infinity is not a duration'],
  ] as const)('refuses %j', (input, message) => {
    let error: unknown;
    try {
      parseDuration(input);
    } catch (e) {
      error = e;
    }
    expect(isRunbookError(error, 'RUNBOOK_CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toContain(message);
  });

  it('refuses what is neither text nor a number', () => {
    expect(() => parseDuration(true as never)).toThrow('expected a duration');
  });
});

describe('formatDurationShort', () => {
  it.each([
    [5_400_000, '1h30m'],
    [900_000, '15m'],
    [90_000, '1m30s'],
    [500, '500ms'],
    [1_500, '1s500ms'],
    [90_061_001, '1d1h1m1s1ms'],
    [0, '0s'],
    [-90_000, '-1m30s'],
    [999.6, '1s'],
  ])('%d ms is %s', (ms, text) => {
    expect(formatDurationShort(ms)).toBe(text);
  });

  it('gives what parseDuration reads back', () => {
    for (const ms of [1, 999, 1_000, 59_999, 3_600_001, 86_400_000 * 3 + 7]) expect(parseDuration(formatDurationShort(ms))).toBe(ms);
  });
});
