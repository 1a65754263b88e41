/**
 * The shape of a bench file: `bench/<name>.bench.ts` does `export default defineBench({...})`.
 *
 * setup() and teardown() run once, in the parent process. Every timed run of a case side
 * (drkit or peer) runs in a fresh child process that imports the bench file and receives the
 * ctx returned by setup() over IPC, so the ctx must be JSON-serialisable: no functions, class
 * instances, Buffers, Maps or undefined values (keep handles such as a sandbox in a module
 * variable of the bench file instead, for teardown).
 *
 * The children run under plain `node` (its built-in TypeScript type stripping, no tsx), so a
 * bench file imports harness files with their `.ts` extension (`./lib/define.ts`) and workspace
 * packages by name (they resolve to their built dist/; `pnpm bench` builds first). Only
 * erasable TypeScript is allowed there (no enums, namespaces or parameter properties).
 */

/** The two sides timed against each other in one case. */
export type Side = 'drkit' | 'peer';

/**
 * What a side may resolve to instead of nothing: figures it measured itself, beside the wall
 * time the harness takes (e.g. the recovery point objective observed during a load period).
 * Names are words (`rpo_max_s`: letters, digits, `_`; end them with their unit), values finite
 * numbers. The harness reports each one's median over the recorded runs, per side.
 */
export interface SideResult {
  metrics: Record<string, number>;
}

/** One side of a case: does its whole job, throws on failure, and may report {@link SideResult.metrics}. */
// biome-ignore lint/suspicious/noConfusingVoidType: most sides are `async () => {...}` (Promise<void>); undefined would reject them
export type SideFn<Ctx> = (ctx: Ctx) => Promise<void | SideResult>;

/** A metric name: a word, so it can be a JSON key and a table cell as it is. */
export const METRIC_NAME = /^[a-z][a-z0-9_]*$/i;

export interface BenchCase<Ctx> {
  /** Shown in the table and written as `case` in the JSON. Unique within the bench. */
  name: string;
  /** The drkit side: its wall time is measured in a fresh child process. */
  drkit: SideFn<Ctx>;
  /** The peer tool doing the same work. */
  peer: { name: string; run: SideFn<Ctx> };
  /**
   * Runs in the parent process before every run of either side (warm-up and recorded rounds
   * alike), untimed and outside the measured child: e.g. change a few input files, or empty a
   * restore target. It gets the ctx (as the sides do) and which run comes next; a throw fails
   * the bench like a failed run. State it keeps in module variables lives in the parent.
   */
  prepare?: (ctx: Ctx, next: PrepareInfo) => Promise<void>;
  /**
   * Bytes of input each side processes per run, when that is known up front: the results then
   * show throughput (MB/s of wall time, and MB per CPU-second) for both sides.
   */
  bytes?: number;
  /**
   * Items (keys, rows, ...) each side processes per run, when that is known up front: the
   * results then show items per second of wall time for both sides, e.g.
   * `{ count: 1_000_000, unit: 'keys' }` gives `drkit_items_per_s` and a "drkit keys/s" column.
   */
  items?: BenchItems;
}

/** The run that follows a {@link BenchCase.prepare} call. */
export interface PrepareInfo {
  side: Side;
  /** false for a warm-up round. */
  recorded: boolean;
  /** 0-based round within its phase (warm-up or recorded). */
  round: number;
}

/** What a case counts in {@link BenchCase.items}. */
export interface BenchItems {
  /** Items per run, a positive integer. */
  count: number;
  /** What they are, plural and lower-case: "keys", "rows". Names the table's column. */
  unit: string;
}

export interface BenchSpec<Ctx> {
  /** Must equal the file's name without `.bench.ts`; names bench/results/<name>.json. */
  name: string;
  description: string;
  /** Runs once in the parent before any case; its result must be JSON-serialisable. */
  setup?(): Promise<Ctx>;
  /** Runs once in the parent after all cases, also when a run failed. */
  teardown?(ctx: Ctx): Promise<void>;
  cases: BenchCase<Ctx>[];
  /** Recorded rounds per case (each round runs both sides once). @default 5, minimum 5 */
  runs?: number;
  /** Unrecorded rounds per case before the recorded ones. @default 1 */
  warmup?: number;
}

/** A bench as loaded by the harness: the spec with its defaults applied. */
export interface Bench<Ctx> extends BenchSpec<Ctx> {
  runs: number;
  warmup: number;
}

export const DEFAULT_RUNS = 5;
export const MIN_RUNS = 5;
export const DEFAULT_WARMUP = 1;

/** Declares a benchmark. Throws on an invalid spec, so a broken bench file fails on import. */
export function defineBench<Ctx = undefined>(spec: BenchSpec<Ctx>): Bench<Ctx> {
  const where = `bench "${spec.name}"`;
  if (typeof spec.name !== 'string' || !/^[a-z0-9][a-z0-9._-]*$/i.test(spec.name)) {
    throw new TypeError(`bench name must be a file-name-safe word, got ${JSON.stringify(spec.name)}`);
  }
  if (!Array.isArray(spec.cases) || spec.cases.length === 0) throw new TypeError(`${where} has no cases`);
  const seen = new Set<string>();
  for (const c of spec.cases) {
    if (typeof c.name !== 'string' || c.name === '') throw new TypeError(`${where} has a case without a name`);
    if (seen.has(c.name)) throw new TypeError(`${where} has two cases named "${c.name}"`);
    seen.add(c.name);
    if (typeof c.drkit !== 'function') throw new TypeError(`${where}, case "${c.name}": drkit must be a function`);
    if (typeof c.peer?.name !== 'string' || c.peer.name === '' || typeof c.peer.run !== 'function') {
      throw new TypeError(`${where}, case "${c.name}": peer must be { name, run }`);
    }
    if (c.prepare !== undefined && typeof c.prepare !== 'function') {
      throw new TypeError(`${where}, case "${c.name}": prepare must be a function`);
    }
    if (c.bytes !== undefined && !(Number.isSafeInteger(c.bytes) && c.bytes > 0)) {
      throw new TypeError(`${where}, case "${c.name}": bytes must be a positive integer, got ${c.bytes}`);
    }
    if (c.items !== undefined) {
      if (!(Number.isSafeInteger(c.items.count) && c.items.count > 0))
        throw new TypeError(`${where}, case "${c.name}": items.count must be a positive integer, got ${c.items.count}`);
      if (typeof c.items.unit !== 'string' || !/^[a-z][a-z0-9 _-]*$/i.test(c.items.unit))
        throw new TypeError(`${where}, case "${c.name}": items.unit must be a word such as "keys", got ${JSON.stringify(c.items.unit)}`);
    }
  }
  const runs = spec.runs ?? DEFAULT_RUNS;
  if (!Number.isInteger(runs) || runs < MIN_RUNS) throw new RangeError(`${where}: runs must be an integer >= ${MIN_RUNS}, got ${runs}`);
  const warmup = spec.warmup ?? DEFAULT_WARMUP;
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`${where}: warmup must be an integer >= 0, got ${warmup}`);
  return { ...spec, runs, warmup };
}

/**
 * The metrics in what a side resolved to: undefined when it resolved to nothing (or anything
 * without `metrics`).
 * @throws TypeError when `metrics` is there but not a record of word names to finite numbers
 */
export function sideMetrics(value: unknown): Record<string, number> | undefined {
  if (typeof value !== 'object' || value === null || !('metrics' in value)) return undefined;
  const metrics = (value as { metrics: unknown }).metrics;
  if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics))
    throw new TypeError(`a side's metrics must be an object of numbers, got ${JSON.stringify(metrics)}`);
  const out: Record<string, number> = {};
  for (const [name, n] of Object.entries(metrics)) {
    if (!METRIC_NAME.test(name)) throw new TypeError(`metric name ${JSON.stringify(name)} must be a word (letters, digits, _)`);
    if (typeof n !== 'number' || !Number.isFinite(n)) throw new TypeError(`metric ${name} must be a finite number, got ${String(n)}`);
    out[name] = n;
  }
  return out;
}

/** Whether a module's default export looks like the result of {@link defineBench}. */
export function isBench(value: unknown): value is Bench<unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<Bench<unknown>>;
  return typeof v.name === 'string' && Array.isArray(v.cases) && typeof v.runs === 'number' && typeof v.warmup === 'number';
}
