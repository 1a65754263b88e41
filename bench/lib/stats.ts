/**
 * Pure logic of the harness: run order, statistics, result rows and the table. No I/O here,
 * so all of it is tested without timing anything.
 */
import type { Side } from './define.js';
import { MIN_RUNS } from './define.js';

/** What one timed run in a child process reports. */
export interface Sample {
  /** Wall time of the side's function alone, in seconds. */
  seconds: number;
  /** `process.resourceUsage().maxRSS / 1024` of the child after the function returned. */
  peakRssMb: number;
}

/** One row of bench/results/<name>.json. */
export interface ResultRow {
  case: string;
  drkit_median_s: number;
  peer: string;
  peer_median_s: number;
  /** drkit median / peer median: below 1 means drkit is faster. null if the peer took no measurable time. */
  ratio: number | null;
  /** Max over the recorded runs. */
  drkit_peak_rss_mb: number;
  peer_peak_rss_mb: number;
  /** Recorded runs per side. */
  runs: number;
  drkit_min_s: number;
  drkit_max_s: number;
  peer_min_s: number;
  peer_max_s: number;
  /** Every recorded run, in the order they ran. */
  drkit_runs_s: number[];
  peer_runs_s: number[];
}

/** One step of a case's schedule. */
export interface Step {
  /** Warm-up steps are run but not recorded. */
  recorded: boolean;
  /** 0-based round within its phase (warm-up or recorded). */
  round: number;
  side: Side;
}

/** Median of a non-empty list (mean of the middle two for an even length). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const upper = sorted[mid] as number;
  return sorted.length % 2 === 1 ? upper : ((sorted[mid - 1] as number) + upper) / 2;
}

/** drkit / peer, or null when the peer is 0 (no ratio is meaningful then). */
export function ratio(drkit: number, peer: number): number | null {
  return peer > 0 ? drkit / peer : null;
}

/** Rounds to `decimals` decimal places (and turns -0 into 0). */
export function round(value: number, decimals: number): number {
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor + 0;
}

/** Seconds are kept to 0.1 ms, ratios to 3 decimals, memory to 0.1 MB. */
const SECONDS_DECIMALS = 4;
const RATIO_DECIMALS = 3;
const MB_DECIMALS = 1;

/**
 * The order in which one case's sides run: `warmup` rounds then `runs` recorded rounds,
 * each round running both sides once. The side that goes first alternates every round
 * (drkit,peer / peer,drkit / ...), in each phase starting with drkit, so drift of a noisy
 * machine hits both sides alike.
 */
export function runOrder(runs: number, warmup: number): Step[] {
  const steps: Step[] = [];
  const rounds = (count: number, recorded: boolean) => {
    for (let round = 0; round < count; round++) {
      const sides: Side[] = round % 2 === 0 ? ['drkit', 'peer'] : ['peer', 'drkit'];
      for (const side of sides) steps.push({ recorded, round, side });
    }
  };
  rounds(warmup, false);
  rounds(runs, true);
  return steps;
}

/**
 * The number of recorded rounds: an override (from --runs) wins over the bench's own.
 * @throws RangeError when it is not an integer >= 5.
 */
export function resolveRuns(benchRuns: number, override?: number): number {
  const runs = override ?? benchRuns;
  if (!Number.isInteger(runs) || runs < MIN_RUNS) throw new RangeError(`runs must be an integer >= ${MIN_RUNS}, got ${runs}`);
  return runs;
}

/** The JSON row of one case from its recorded samples (at least one per side). */
export function resultRow(caseName: string, peerName: string, drkit: readonly Sample[], peer: readonly Sample[]): ResultRow {
  if (drkit.length === 0 || peer.length === 0) throw new RangeError(`case "${caseName}" has no recorded runs`);
  const drkitSeconds = drkit.map((s) => s.seconds);
  const peerSeconds = peer.map((s) => s.seconds);
  const drkitMedian = median(drkitSeconds);
  const peerMedian = median(peerSeconds);
  const r = ratio(drkitMedian, peerMedian);
  const s = (value: number) => round(value, SECONDS_DECIMALS);
  return {
    case: caseName,
    drkit_median_s: s(drkitMedian),
    peer: peerName,
    peer_median_s: s(peerMedian),
    ratio: r === null ? null : round(r, RATIO_DECIMALS),
    drkit_peak_rss_mb: round(Math.max(...drkit.map((x) => x.peakRssMb)), MB_DECIMALS),
    peer_peak_rss_mb: round(Math.max(...peer.map((x) => x.peakRssMb)), MB_DECIMALS),
    runs: Math.min(drkit.length, peer.length),
    drkit_min_s: s(Math.min(...drkitSeconds)),
    drkit_max_s: s(Math.max(...drkitSeconds)),
    peer_min_s: s(Math.min(...peerSeconds)),
    peer_max_s: s(Math.max(...peerSeconds)),
    drkit_runs_s: drkitSeconds.map(s),
    peer_runs_s: peerSeconds.map(s),
  };
}

const fixed = (value: number, decimals: number) => value.toFixed(decimals);

/**
 * A plain-text table of a bench's rows, one line per case, columns aligned; numbers are
 * right-aligned. Returned without a trailing newline.
 */
export function formatTable(rows: readonly ResultRow[]): string {
  const header = [
    'case',
    'drkit median (s)',
    'drkit min-max (s)',
    'peer',
    'peer median (s)',
    'peer min-max (s)',
    'ratio (drkit/peer)',
    'drkit peak RSS (MB)',
  ];
  const numeric = [false, true, true, false, true, true, true, true];
  const body = rows.map((row) => [
    row.case,
    fixed(row.drkit_median_s, SECONDS_DECIMALS),
    `${fixed(row.drkit_min_s, SECONDS_DECIMALS)}-${fixed(row.drkit_max_s, SECONDS_DECIMALS)}`,
    row.peer,
    fixed(row.peer_median_s, SECONDS_DECIMALS),
    `${fixed(row.peer_min_s, SECONDS_DECIMALS)}-${fixed(row.peer_max_s, SECONDS_DECIMALS)}`,
    row.ratio === null ? 'n/a' : fixed(row.ratio, RATIO_DECIMALS),
    fixed(row.drkit_peak_rss_mb, MB_DECIMALS),
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...body.map((cells) => (cells[i] as string).length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => {
        const width = widths[i] as number;
        return numeric[i] ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...body.map(line)].join('\n');
}
