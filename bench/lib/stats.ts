/**
 * Pure logic of the harness: run order, statistics, result rows and the table. No I/O here,
 * so all of it is tested without timing anything.
 */
import type { BenchItems, Side } from './define.ts';
import { MIN_RUNS } from './define.ts';

/** What one timed run in a child process reports. */
export interface Sample {
  /** Wall time of the side's function alone, in seconds. */
  seconds: number;
  /** Peak RSS of the child after the function returned, MB (VmHWM on Linux, else maxRSS / 1024). */
  peakRssMb: number;
  /** RSS of the child just before the function started, MB. */
  baseRssMb?: number;
  /** CPU seconds during the function: the child's own (all threads) and its reaped child processes'. */
  cpuSeconds?: number;
  /** Figures the side measured itself (what it resolved to: `{ metrics }`), if any. */
  metrics?: Record<string, number>;
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
  /** Max over the recorded runs of the RSS just before the function started (Node and imports). */
  drkit_base_rss_mb?: number;
  peer_base_rss_mb?: number;
  /** Median CPU seconds (user + system, all threads, plus the processes it started and waited for). */
  drkit_cpu_median_s?: number;
  peer_cpu_median_s?: number;
  /** Bytes of input per run, when the case declares it. */
  bytes?: number;
  /** bytes / median wall time, in MB/s (1 MB = 10^6 bytes). */
  drkit_mb_per_s?: number;
  peer_mb_per_s?: number;
  /** bytes / median CPU time, in MB per CPU-second: throughput per core. */
  drkit_mb_per_cpu_s?: number;
  peer_mb_per_cpu_s?: number;
  /** Items per run (keys, rows, ...), when the case declares them, and what they are. */
  items?: number;
  items_unit?: string;
  /** items / median wall time, per second (whole items). */
  drkit_items_per_s?: number;
  peer_items_per_s?: number;
  /**
   * Median over the recorded runs of each metric the side reported (`{ metrics }`), by name;
   * present when at least one run of either side reported one.
   */
  drkit_metrics?: Record<string, number>;
  peer_metrics?: Record<string, number>;
  /** Every recorded run's value of each metric, in the order they ran (runs that lacked it left out). */
  drkit_metric_runs?: Record<string, number[]>;
  peer_metric_runs?: Record<string, number[]>;
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

/** Values of an optional sample field, or undefined unless every sample has it. */
function every(samples: readonly Sample[], key: 'baseRssMb' | 'cpuSeconds'): number[] | undefined {
  const values = samples.map((s) => s[key]);
  return values.every((v): v is number => typeof v === 'number') ? values : undefined;
}

/** Metrics are kept to 4 decimals (name them with their unit: `_s`, `_ms`). */
const METRIC_DECIMALS = 4;

/** Each metric's values over the samples that reported it, in order, by name (first-seen order). */
function metricRuns(samples: readonly Sample[]): Record<string, number[]> {
  const runs: Record<string, number[]> = {};
  for (const sample of samples)
    for (const [name, value] of Object.entries(sample.metrics ?? {})) {
      const values = runs[name] ?? [];
      values.push(round(value, METRIC_DECIMALS));
      runs[name] = values;
    }
  return runs;
}

function medians(runs: Record<string, number[]>): Record<string, number> {
  return Object.fromEntries(Object.entries(runs).map(([name, values]) => [name, round(median(values), METRIC_DECIMALS)]));
}

/** Items per second, rounded to whole items. */
function itemsPerSecond(count: number, seconds: number): number | undefined {
  return seconds > 0 ? Math.round(count / seconds) : undefined;
}

/** MB (10^6 bytes) per second. */
function mbPerSecond(bytes: number, seconds: number): number | undefined {
  return seconds > 0 ? round(bytes / seconds / 1e6, MB_DECIMALS) : undefined;
}

/**
 * The JSON row of one case from its recorded samples (at least one per side). With `bytes`
 * (the input of one run), the row also has throughput; with samples that carry CPU time and
 * base RSS, it has those too; with `items` (what one run processes, e.g. 1,000,000 keys), items
 * per second of wall time.
 */
export function resultRow(
  caseName: string,
  peerName: string,
  drkit: readonly Sample[],
  peer: readonly Sample[],
  bytes?: number,
  items?: BenchItems,
): ResultRow {
  if (drkit.length === 0 || peer.length === 0) throw new RangeError(`case "${caseName}" has no recorded runs`);
  const drkitSeconds = drkit.map((s) => s.seconds);
  const peerSeconds = peer.map((s) => s.seconds);
  const drkitMedian = median(drkitSeconds);
  const peerMedian = median(peerSeconds);
  const r = ratio(drkitMedian, peerMedian);
  const s = (value: number) => round(value, SECONDS_DECIMALS);
  const row: ResultRow = {
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
  const drkitBase = every(drkit, 'baseRssMb');
  const peerBase = every(peer, 'baseRssMb');
  if (drkitBase && peerBase) {
    row.drkit_base_rss_mb = round(Math.max(...drkitBase), MB_DECIMALS);
    row.peer_base_rss_mb = round(Math.max(...peerBase), MB_DECIMALS);
  }
  const drkitCpu = every(drkit, 'cpuSeconds');
  const peerCpu = every(peer, 'cpuSeconds');
  const cpu = drkitCpu && peerCpu ? { drkit: median(drkitCpu), peer: median(peerCpu) } : undefined;
  if (cpu) {
    row.drkit_cpu_median_s = s(cpu.drkit);
    row.peer_cpu_median_s = s(cpu.peer);
  }
  if (bytes !== undefined) {
    row.bytes = bytes;
    const set = (key: keyof ResultRow & `${string}_per_${string}`, value: number | undefined) => {
      if (value !== undefined) row[key] = value;
    };
    set('drkit_mb_per_s', mbPerSecond(bytes, drkitMedian));
    set('peer_mb_per_s', mbPerSecond(bytes, peerMedian));
    if (cpu) {
      set('drkit_mb_per_cpu_s', mbPerSecond(bytes, cpu.drkit));
      set('peer_mb_per_cpu_s', mbPerSecond(bytes, cpu.peer));
    }
  }
  if (items !== undefined) {
    row.items = items.count;
    row.items_unit = items.unit;
    const drkitRate = itemsPerSecond(items.count, drkitMedian);
    const peerRate = itemsPerSecond(items.count, peerMedian);
    if (drkitRate !== undefined) row.drkit_items_per_s = drkitRate;
    if (peerRate !== undefined) row.peer_items_per_s = peerRate;
  }
  const drkitMetrics = metricRuns(drkit);
  const peerMetrics = metricRuns(peer);
  if (Object.keys(drkitMetrics).length > 0 || Object.keys(peerMetrics).length > 0) {
    row.drkit_metrics = medians(drkitMetrics);
    row.peer_metrics = medians(peerMetrics);
    row.drkit_metric_runs = drkitMetrics;
    row.peer_metric_runs = peerMetrics;
  }
  return row;
}

/** One run's metrics on one line, for progress logs: `rpo_max_s=10.3 segments=3`. */
export function formatMetricValues(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([name, value]) => `${name}=${round(value, METRIC_DECIMALS)}`)
    .join(' ');
}

const fixed = (value: number, decimals: number) => value.toFixed(decimals);

/** Extra columns, shown when at least one row has the field. */
const OPTIONAL_COLUMNS: [string, keyof ResultRow, number][] = [
  ['drkit base RSS (MB)', 'drkit_base_rss_mb', MB_DECIMALS],
  ['drkit CPU (s)', 'drkit_cpu_median_s', 2],
  ['peer CPU (s)', 'peer_cpu_median_s', 2],
  ['drkit MB/s', 'drkit_mb_per_s', MB_DECIMALS],
  ['peer MB/s', 'peer_mb_per_s', MB_DECIMALS],
  ['drkit MB/CPU-s', 'drkit_mb_per_cpu_s', MB_DECIMALS],
  ['peer MB/CPU-s', 'peer_mb_per_cpu_s', MB_DECIMALS],
  ['drkit items/s', 'drkit_items_per_s', 0],
  ['peer items/s', 'peer_items_per_s', 0],
];

/** "items" in a column title becomes the rows' unit ("keys/s") when they all count the same thing. */
function itemsWord(rows: readonly ResultRow[]): string {
  const units = new Set(rows.flatMap((row) => (row.items_unit === undefined ? [] : [row.items_unit])));
  return units.size === 1 ? ([...units][0] as string) : 'items';
}

/**
 * A plain-text table of a bench's rows, one line per case, columns aligned; numbers are
 * right-aligned. Base RSS, CPU time and throughput (MB/s, items/s) columns follow when rows have
 * them (a row without a value shows '-'); the items/s columns are named by the rows' unit
 * ("keys/s") when all of them count the same thing. Returned without a trailing newline.
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
  const extra = OPTIONAL_COLUMNS.filter(([, key]) => rows.some((row) => typeof row[key] === 'number'));
  const word = itemsWord(rows);
  for (const [title] of extra) {
    header.push(title.replace(' items/', ` ${word}/`));
    numeric.push(true);
  }
  const body = rows.map((row) => [
    row.case,
    fixed(row.drkit_median_s, SECONDS_DECIMALS),
    `${fixed(row.drkit_min_s, SECONDS_DECIMALS)}-${fixed(row.drkit_max_s, SECONDS_DECIMALS)}`,
    row.peer,
    fixed(row.peer_median_s, SECONDS_DECIMALS),
    `${fixed(row.peer_min_s, SECONDS_DECIMALS)}-${fixed(row.peer_max_s, SECONDS_DECIMALS)}`,
    row.ratio === null ? 'n/a' : fixed(row.ratio, RATIO_DECIMALS),
    fixed(row.drkit_peak_rss_mb, MB_DECIMALS),
    ...extra.map(([, key, decimals]) => {
      const value = row[key];
      return typeof value === 'number' ? fixed(value, decimals) : '-';
    }),
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

/**
 * The metrics that sides reported (`{ metrics }`), as a plain-text table: one line per case and
 * metric with each side's median and min-max over the recorded runs ('-' where a side did not
 * report it). Empty string when no row has metrics. Returned without a trailing newline.
 */
export function formatMetrics(rows: readonly ResultRow[]): string {
  const header = ['case', 'metric', 'drkit median', 'drkit min-max', 'peer', 'peer median', 'peer min-max'];
  const numeric = [false, false, true, true, false, true, true];
  const cell = (value: number | undefined) => (value === undefined ? '-' : String(value));
  const spread = (values: readonly number[] | undefined) =>
    values === undefined || values.length === 0 ? '-' : `${Math.min(...values)}-${Math.max(...values)}`;
  const body: string[][] = [];
  for (const row of rows) {
    const names = [...new Set([...Object.keys(row.drkit_metrics ?? {}), ...Object.keys(row.peer_metrics ?? {})])];
    for (const name of names)
      body.push([
        row.case,
        name,
        cell(row.drkit_metrics?.[name]),
        spread(row.drkit_metric_runs?.[name]),
        row.peer,
        cell(row.peer_metrics?.[name]),
        spread(row.peer_metric_runs?.[name]),
      ]);
  }
  if (body.length === 0) return '';
  const widths = header.map((title, i) => Math.max(title.length, ...body.map((cells) => (cells[i] as string).length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
