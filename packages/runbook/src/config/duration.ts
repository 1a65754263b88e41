import { RunbookError } from '../errors.js';

/** What a config author may write for a duration: `"15m"`, `"1h30m"`, `"500ms"`, or a number of milliseconds. */
export type DurationInput = string | number;

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
type Unit = keyof typeof UNIT_MS;
// Largest first: the order parts must come in, and the order they are printed in.
const UNITS = Object.keys(UNIT_MS) as Unit[];

// `ms` must be tried before `m`, or "500ms" would read as 500 minutes followed by garbage.
const PART = /(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)(?![a-z])/y;
const PARTS = new RegExp(PART.source, 'g');

const EXAMPLES = 'use e.g. "15m", "1h30m", "90s" or "500ms"';

/** The message of a bad duration, shared with the config schema so the two never drift apart. */
export function durationProblem(input: unknown): string | undefined {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return `${String(input)} is not a duration (a number is milliseconds, 0 or more)`;
    return undefined;
  }
  if (typeof input !== 'string') return `expected a duration (${EXAMPLES}), got ${typeof input}`;
  const text = input.trim();
  const shown = JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input);
  if (text === '') return `an empty string is not a duration (${EXAMPLES})`;
  // A bare number in a string is ambiguous (seconds? minutes?), so it is refused rather than guessed.
  if (/^\d+(\.\d+)?$/.test(text)) return `${shown} has no unit (${EXAMPLES}; a plain number, not a string, is milliseconds)`;
  let at = 0;
  let last = -1;
  while (at < text.length) {
    PART.lastIndex = at;
    const match = PART.exec(text);
    if (!match) return `${shown} is not a duration (${EXAMPLES})`;
    const index = UNITS.indexOf(match[2] as Unit);
    // "1m30m" or "30s1m" is almost always a typo, so units must each appear once, largest first.
    if (index <= last) return `${shown} is not a duration: units must go from largest to smallest, each once (${EXAMPLES})`;
    last = index;
    at = PART.lastIndex;
    while (text[at] === ' ') at++;
  }
  return undefined;
}

/**
 * Milliseconds of a duration: `"15m"`, `"1h30m"`, `"90s"`, `"500ms"`, `"1.5h"`, `"2d"`, or a
 * number, which is already milliseconds.
 * @throws RunbookError RUNBOOK_CONFIG_INVALID naming the bad input and showing valid forms.
 */
export function parseDuration(input: DurationInput): number {
  const problem = durationProblem(input);
  if (problem !== undefined) throw new RunbookError('RUNBOOK_CONFIG_INVALID', problem);
  if (typeof input === 'number') return Math.round(input);
  let total = 0;
  for (const match of input.trim().matchAll(PARTS)) {
    total += Number(match[1]) * UNIT_MS[match[2] as Unit];
  }
  return Math.round(total);
}

/**
 * A duration as the shortest exact string {@link parseDuration} reads back: `5_400_000` →
 * `"1h30m"`, `1_500` → `"1s500ms"`, `0` → `"0s"`. Negative durations (time over a budget)
 * get a leading `-`.
 */
export function formatDurationShort(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  const rounded = Math.round(ms);
  if (rounded === 0) return '0s';
  let rest = Math.abs(rounded);
  let out = rounded < 0 ? '-' : '';
  for (const unit of UNITS) {
    const count = Math.floor(rest / UNIT_MS[unit]);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * UNIT_MS[unit];
    }
  }
  return out;
}
