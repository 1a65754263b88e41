import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defineBench, sideMetrics } from './define.ts';
import { teardowns } from './fixtures/teardowns.ts';
import { BenchRunError, runBench } from './run.ts';
import {
  formatMetrics,
  formatMetricValues,
  formatTable,
  median,
  type ResultRow,
  ratio,
  resolveRuns,
  resultRow,
  round,
  runOrder,
  type Sample,
} from './stats.ts';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}.bench.ts`, import.meta.url));
const samples = (...seconds: number[]): Sample[] => seconds.map((s, i) => ({ seconds: s, peakRssMb: 100 + i }));

describe('median', () => {
  it('takes the middle of an odd list, whatever its order', () => {
    expect(median([5])).toBe(5);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([9, 1, 7, 3, 5])).toBe(5);
  });

  it('takes the mean of the middle two of an even list', () => {
    expect(median([1, 2])).toBe(1.5);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([10, 0, 0, 10, 2, 4])).toBe(3);
  });

  it('does not reorder its input and rejects an empty list', () => {
    const values = [3, 1, 2];
    median(values);
    expect(values).toEqual([3, 1, 2]);
    expect(() => median([])).toThrow(RangeError);
  });
});

describe('ratio', () => {
  it('is drkit over peer', () => {
    expect(ratio(1, 2)).toBe(0.5);
    expect(ratio(3, 1.5)).toBe(2);
  });

  it('is null when the peer took no time', () => {
    expect(ratio(1, 0)).toBeNull();
  });
});

describe('round', () => {
  it('rounds to the given decimals without negative zero', () => {
    expect(round(0.123456, 4)).toBe(0.1235);
    expect(round(12.34, 1)).toBe(12.3);
    expect(Object.is(round(-0.00001, 3), 0)).toBe(true);
  });
});

describe('runOrder', () => {
  it('runs warm-up rounds first, then recorded ones, alternating which side goes first', () => {
    const steps = runOrder(5, 1);
    expect(steps.map((s) => `${s.recorded ? 'r' : 'w'}${s.round}:${s.side}`)).toEqual([
      'w0:drkit',
      'w0:peer',
      'r0:drkit',
      'r0:peer',
      'r1:peer',
      'r1:drkit',
      'r2:drkit',
      'r2:peer',
      'r3:peer',
      'r3:drkit',
      'r4:drkit',
      'r4:peer',
    ]);
  });

  it('records each side once per round, and each side goes first about half the time', () => {
    const recorded = runOrder(6, 2).filter((s) => s.recorded);
    expect(recorded.filter((s) => s.side === 'drkit')).toHaveLength(6);
    expect(recorded.filter((s) => s.side === 'peer')).toHaveLength(6);
    const firsts = recorded.filter((_, i) => i % 2 === 0).map((s) => s.side);
    expect(firsts.filter((s) => s === 'drkit')).toHaveLength(3);
    expect(firsts.filter((s) => s === 'peer')).toHaveLength(3);
  });

  it('has no warm-up steps when warmup is 0', () => {
    expect(runOrder(5, 0).every((s) => s.recorded)).toBe(true);
  });
});

describe('resolveRuns', () => {
  it('takes the override over the bench, and enforces at least 5', () => {
    expect(resolveRuns(5)).toBe(5);
    expect(resolveRuns(5, 9)).toBe(9);
    expect(() => resolveRuns(5, 4)).toThrow(/>= 5/);
    expect(() => resolveRuns(5, 5.5)).toThrow(RangeError);
  });
});

describe('defineBench', () => {
  const cases = [{ name: 'c', drkit: async () => {}, peer: { name: 'p', run: async () => {} } }];

  it('applies the defaults', () => {
    const bench = defineBench({ name: 'x', description: 'd', cases });
    expect(bench.runs).toBe(5);
    expect(bench.warmup).toBe(1);
  });

  it('rejects fewer than 5 runs, no cases and duplicate case names', () => {
    expect(() => defineBench({ name: 'x', description: 'd', cases, runs: 3 })).toThrow(/runs must be an integer >= 5/);
    expect(() => defineBench({ name: 'x', description: 'd', cases: [] })).toThrow(/no cases/);
    expect(() => defineBench({ name: 'x', description: 'd', cases: [...cases, ...cases] })).toThrow(/two cases named "c"/);
  });

  it('rejects items without a positive integer count or a unit', () => {
    const withItems = (items: { count: number; unit: string }) => [{ ...cases[0], items } as (typeof cases)[number]];
    expect(() => defineBench({ name: 'x', description: 'd', cases: withItems({ count: 0, unit: 'keys' }) })).toThrow(/items.count/);
    expect(() => defineBench({ name: 'x', description: 'd', cases: withItems({ count: 1.5, unit: 'keys' }) })).toThrow(/items.count/);
    expect(() => defineBench({ name: 'x', description: 'd', cases: withItems({ count: 10, unit: '' }) })).toThrow(/items.unit/);
    expect(defineBench({ name: 'x', description: 'd', cases: withItems({ count: 10, unit: 'keys' }) }).cases[0]?.items).toEqual({
      count: 10,
      unit: 'keys',
    });
  });
});

describe('resultRow', () => {
  it('has the documented shape, with rounded medians, ratio and the max RSS of drkit', () => {
    const row = resultRow('dump', 'pg_dump', samples(0.3, 0.1, 0.2, 0.5, 0.4), samples(0.2, 0.2, 0.4, 0.1, 0.3));
    expect(row).toEqual({
      case: 'dump',
      drkit_median_s: 0.3,
      peer: 'pg_dump',
      peer_median_s: 0.2,
      ratio: 1.5,
      drkit_peak_rss_mb: 104,
      peer_peak_rss_mb: 104,
      runs: 5,
      drkit_min_s: 0.1,
      drkit_max_s: 0.5,
      peer_min_s: 0.1,
      peer_max_s: 0.4,
      drkit_runs_s: [0.3, 0.1, 0.2, 0.5, 0.4],
      peer_runs_s: [0.2, 0.2, 0.4, 0.1, 0.3],
    } satisfies ResultRow);
  });

  it('rounds seconds to 0.1 ms, the ratio to 3 decimals and memory to 0.1 MB', () => {
    const row = resultRow('c', 'p', [{ seconds: 0.123456, peakRssMb: 51.27 }], [{ seconds: 0.1, peakRssMb: 1 }]);
    expect(row.drkit_median_s).toBe(0.1235);
    expect(row.ratio).toBe(1.235);
    expect(row.drkit_peak_rss_mb).toBe(51.3);
  });

  it('adds items per second of wall time when the case counts items, and leaves them out otherwise', () => {
    const row = resultRow('export', 'redis-cli', samples(2, 4, 3), samples(1, 1, 1), undefined, { count: 1_000_000, unit: 'keys' });
    expect(row).toMatchObject({ items: 1_000_000, items_unit: 'keys', drkit_items_per_s: 333_333, peer_items_per_s: 1_000_000 });
    expect(resultRow('c', 'p', samples(1), samples(1))).not.toHaveProperty('drkit_items_per_s');
    // A peer that took no measurable time has no rate; drkit keeps its own.
    const instant = resultRow('c', 'p', samples(0.5), samples(0), 1000, { count: 10, unit: 'rows' });
    expect(instant.drkit_items_per_s).toBe(20);
    expect(instant).not.toHaveProperty('peer_items_per_s');
    expect(instant.drkit_mb_per_s).toBe(0);
  });

  it('rejects a case without recorded runs', () => {
    expect(() => resultRow('c', 'p', [], samples(1))).toThrow(/no recorded runs/);
  });
});

describe('formatTable', () => {
  it('prints a header, a rule and one aligned line per case', () => {
    const rows = [
      resultRow('short', 'peer-a', samples(1, 2, 3), samples(2, 2, 2)),
      resultRow('a much longer case', 'b', samples(0.5), samples(0)),
    ];
    const lines = formatTable(rows).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(
      /^case\s+drkit median \(s\)\s+drkit min-max \(s\)\s+peer\s+peer median \(s\)\s+peer min-max \(s\)\s+ratio \(drkit\/peer\)\s+drkit peak RSS \(MB\)$/,
    );
    expect(lines[1]).toMatch(/^[- ]+$/);
    expect(lines[2]).toMatch(/^short\s+2\.0000\s+1\.0000-3\.0000\s+peer-a\s+2\.0000\s+2\.0000-2\.0000\s+1\.000\s+102\.0$/);
    expect(lines[3]).toMatch(/\bn\/a\b/);
    // Columns line up: every line is as long as the header or shorter only by trailing blanks.
    const width = (lines[0] as string).length;
    for (const line of lines.slice(2)) expect(line.length).toBe(width);
  });
});

describe('formatTable with items', () => {
  it('names the items/s columns after the unit when every row counts the same thing', () => {
    const keys = { count: 100_000, unit: 'keys' };
    const rows = [resultRow('a', 'p', samples(0.5), samples(0.25), undefined, keys), resultRow('b', 'p', samples(1), samples(1))];
    const lines = formatTable(rows).split('\n');
    expect(lines[0]).toMatch(/drkit keys\/s\s+peer keys\/s$/);
    expect(lines[2]).toMatch(/\s200000\s+400000$/);
    expect(lines[3]).toMatch(/\s-\s+-$/);
  });

  it('says items/s when rows count different things', () => {
    const rows = [
      resultRow('a', 'p', samples(1), samples(1), undefined, { count: 5, unit: 'keys' }),
      resultRow('b', 'p', samples(1), samples(1), undefined, { count: 5, unit: 'rows' }),
    ];
    expect(formatTable(rows).split('\n')[0]).toMatch(/drkit items\/s\s+peer items\/s$/);
  });
});

describe('metrics reported by the sides', () => {
  const withMetrics = (metrics: Record<string, number>[], seconds = 1): Sample[] =>
    metrics.map((m) => ({ seconds, peakRssMb: 50, metrics: m }));

  it('sideMetrics takes { metrics } and ignores anything else, rejecting bad names and values', () => {
    expect(sideMetrics(undefined)).toBeUndefined();
    expect(sideMetrics(42)).toBeUndefined();
    expect(sideMetrics({ other: 1 })).toBeUndefined();
    expect(sideMetrics({ metrics: { rpo_max_s: 10.5, n: 0 } })).toEqual({ rpo_max_s: 10.5, n: 0 });
    expect(() => sideMetrics({ metrics: { 'a b': 1 } })).toThrow(/must be a word/);
    expect(() => sideMetrics({ metrics: { x: Number.POSITIVE_INFINITY } })).toThrow(/finite number/);
    expect(() => sideMetrics({ metrics: { x: '1' } })).toThrow(/finite number/);
    expect(() => sideMetrics({ metrics: [1] })).toThrow(/object of numbers/);
  });

  it("puts each side's median per metric and every run's value in the row", () => {
    const row = resultRow(
      'rpo',
      'cp',
      withMetrics([
        { rpo_max_s: 10.2, segments: 3 },
        { rpo_max_s: 11.6, segments: 3 },
        { rpo_max_s: 10.4, segments: 4 },
      ]),
      withMetrics([{ rpo_max_s: 10.1 }, { rpo_max_s: 10.3 }, { rpo_max_s: 10.123456 }]),
    );
    expect(row.drkit_metrics).toEqual({ rpo_max_s: 10.4, segments: 3 });
    expect(row.peer_metrics).toEqual({ rpo_max_s: 10.1235 });
    expect(row.drkit_metric_runs).toEqual({ rpo_max_s: [10.2, 11.6, 10.4], segments: [3, 3, 4] });
    expect(row.peer_metric_runs).toEqual({ rpo_max_s: [10.1, 10.3, 10.1235] });
  });

  it('leaves the metric fields out when no side reported any', () => {
    const row = resultRow('c', 'p', samples(1, 2), samples(1, 2));
    expect(row).not.toHaveProperty('drkit_metrics');
    expect(row).not.toHaveProperty('peer_metric_runs');
  });

  it('formats a metrics table per case and metric, with - for a side that lacks one', () => {
    const rows = [
      resultRow('rpo', 'cp', withMetrics([{ rpo_max_s: 10.5, push_ms: 180 }]), withMetrics([{ rpo_max_s: 10.25 }])),
      resultRow('plain', 'p', samples(1), samples(1)),
    ];
    const lines = formatMetrics(rows).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^case\s+metric\s+drkit median\s+drkit min-max\s+peer\s+peer median\s+peer min-max$/);
    expect(lines[2]).toMatch(/^rpo\s+rpo_max_s\s+10\.5\s+10\.5-10\.5\s+cp\s+10\.25\s+10\.25-10\.25$/);
    expect(lines[3]).toMatch(/^rpo\s+push_ms\s+180\s+180-180\s+cp\s+-\s+-$/);
    expect(formatMetrics([resultRow('plain', 'p', samples(1), samples(1))])).toBe('');
    expect(formatMetricValues({ a_s: 1.234567, n: 3 })).toBe('a_s=1.2346 n=3');
  });
});

describe('runBench (end to end, in child processes)', () => {
  let outDir: string;
  beforeEach(async () => {
    outDir = await mkdtemp(join(tmpdir(), 'drkit-bench-test-'));
  });
  afterEach(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  it('runs the tiny fixture and writes <outDir>/tiny.json with >= 5 runs per side', async () => {
    const lines: string[] = [];
    const rows = await runBench(fixture('tiny'), { outDir, log: (line) => lines.push(line) });

    const written = JSON.parse(readFileSync(join(outDir, 'tiny.json'), 'utf8')) as ResultRow[];
    expect(written).toEqual(rows);
    expect(written).toHaveLength(1);
    const row = written[0] as ResultRow;
    expect(Object.keys(row)).toEqual(
      expect.arrayContaining(['case', 'drkit_median_s', 'peer', 'peer_median_s', 'ratio', 'drkit_peak_rss_mb']),
    );
    expect(row.case).toBe('allocate and sleep 1 ms');
    expect(row.peer).toBe('plain-node');
    expect(row.runs).toBeGreaterThanOrEqual(5);
    expect(row.drkit_runs_s.length).toBeGreaterThanOrEqual(5);
    expect(row.peer_runs_s.length).toBeGreaterThanOrEqual(5);
    for (const key of ['drkit_median_s', 'peer_median_s', 'ratio'] as const) expect(typeof row[key]).toBe('number');
    expect(row.drkit_peak_rss_mb).toBeGreaterThan(0);
    // The drkit side holds 48 MB of touched memory in its own process, so its peak includes it.
    expect(row.drkit_peak_rss_mb).toBeGreaterThan(48);
    // Progress went to the callback (the console is off limits), one line per recorded run at least.
    expect(lines.filter((l) => /round \d+\/5/.test(l))).toHaveLength(10);
  });

  it('names the case and side of a side that throws, runs teardown, and writes no results', async () => {
    const before = teardowns('throws');
    const error = await runBench(fixture('throws'), { outDir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BenchRunError);
    expect((error as BenchRunError).message).toMatch(/bench "throws", case "breaks", side peer: threw: Error: the peer broke on purpose/);
    expect(teardowns('throws')).toBe(before + 1);
    expect(existsSync(join(outDir, 'throws.json'))).toBe(false);
  });

  it('keeps the result of a child that reports and then hangs at exit, killing it', async () => {
    const lines: string[] = [];
    const rows = await runBench(fixture('hangs'), { outDir, exitGraceMs: 300, log: (line) => lines.push(line) });
    expect(rows[0]?.runs).toBe(5);
    expect(lines.filter((l) => /did not exit 300 ms after reporting; killed it and kept its result/.test(l))).toHaveLength(5);
  });

  it('carries the metrics a side returns from the child into the row and the progress log', async () => {
    process.env.DRKIT_BENCH_FIXTURE_DIR = outDir;
    const lines: string[] = [];
    try {
      const rows = await runBench(fixture('metrics'), { outDir, cases: ['reports'], log: (line) => lines.push(line) });
      const row = rows[0] as ResultRow;
      // The drkit side ran 5 times (warm-up 0), each in its own child: 1..5, median 3.
      expect(row.drkit_metric_runs).toEqual({ runs_so_far: [1, 2, 3, 4, 5], constant_ms: [2.5, 2.5, 2.5, 2.5, 2.5] });
      expect(row.drkit_metrics).toEqual({ runs_so_far: 3, constant_ms: 2.5 });
      expect(row.peer_metrics).toEqual({ constant_ms: 7 });
      expect(lines.filter((l) => /drkit .* runs_so_far=\d constant_ms=2\.5$/.test(l))).toHaveLength(5);
    } finally {
      delete process.env.DRKIT_BENCH_FIXTURE_DIR;
    }
  });

  it('fails the run of a side that reports a metric that is not a finite number', async () => {
    const error = await runBench(fixture('metrics'), { outDir, cases: ['bad'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BenchRunError);
    expect((error as BenchRunError).message).toMatch(/case "bad", side drkit: threw: TypeError: metric broken must be a finite number/);
  });

  it('names the case and side of a child that dies, and runs teardown', async () => {
    const before = teardowns('dies');
    const error = await runBench(fixture('dies'), { outDir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BenchRunError);
    expect((error as BenchRunError).message).toMatch(/case "exits", side drkit: the child process exited with code 3 before reporting/);
    expect(teardowns('dies')).toBe(before + 1);
  });
});
