/**
 * Runs a bench file: setup() once here, then every timed run in a fresh child process
 * (bench/lib/worker.ts), each preceded here by its case's prepare() if it has one, then
 * teardown(). Writes <outDir>/<name>.json and returns its rows.
 * Prints nothing: progress goes to the `log` callback.
 */
import { fork } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { type Bench, isBench, type Side } from './define.ts';
import { isRunReply, type RunRequest } from './protocol.ts';
import { formatMetricValues, type ResultRow, resolveRuns, resultRow, runOrder, type Sample } from './stats.ts';

/** The repository root: children start here. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where benches live (bench/<name>.bench.ts) and, by default, their results. */
export const BENCH_DIR = join(ROOT, 'bench');
export const DEFAULT_OUT_DIR = join(BENCH_DIR, 'results');
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
/**
 * Node's compile cache for the workers (their NODE_COMPILE_CACHE). It also
 * keeps the output of type stripping, so a worker whose .ts files are cached never loads the
 * stripper: its RSS starts where a plain .js program's does (~41 MB instead of ~58 MB).
 */
export const COMPILE_CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'drkit-bench-compile');
const BENCH_SUFFIX = '.bench.ts';

export interface RunBenchOptions {
  /** Recorded rounds per case, overriding the bench's own. Minimum 5. */
  runs?: number;
  /** Warm-up rounds per case, overriding the bench's own. */
  warmup?: number;
  /** Run only the cases whose name contains one of these. @default every case */
  cases?: string[];
  /** Where <name>.json goes (created if missing). @default bench/results */
  outDir?: string;
  /** Progress lines (setup, each run, teardown). @default none */
  log?: (line: string) => void;
  /**
   * How long a child may take to exit after it has sent its result; then it is killed and
   * the result kept. Node can deadlock in process.exit() (a concurrent Maglev compile waits
   * for a GC while the platform shuts down: nodejs/node#54918). @default 10000
   */
  exitGraceMs?: number;
}

const DEFAULT_EXIT_GRACE_MS = 10_000;

/** A timed run that failed: the side threw, the child died, or it could not start. */
export class BenchRunError extends Error {
  readonly bench: string;
  readonly caseName: string;
  readonly side: Side;
  constructor(bench: string, caseName: string, side: Side, detail: string, options?: ErrorOptions) {
    super(`bench "${bench}", case "${caseName}", side ${side}: ${detail}`, options);
    this.name = 'BenchRunError';
    this.bench = bench;
    this.caseName = caseName;
    this.side = side;
  }
}

/** The bench's name as given by its file: bench/foo.bench.ts -> foo. */
export function benchNameOf(file: string): string {
  const base = basename(file);
  return base.endsWith(BENCH_SUFFIX) ? base.slice(0, -BENCH_SUFFIX.length) : base;
}

/** Imports a bench file and checks that it is one. */
export async function loadBench(file: string): Promise<Bench<unknown>> {
  const mod = (await import(pathToFileURL(resolve(file)).href)) as { default?: unknown };
  if (!isBench(mod.default)) throw new TypeError(`${file}: the default export must be defineBench({...})`);
  const expected = benchNameOf(file);
  if (mod.default.name !== expected) {
    throw new TypeError(`${file}: the bench is named "${mod.default.name}" but its file says "${expected}"; make them equal`);
  }
  return mod.default;
}

const TAIL_BYTES = 4000;

/** Runs one side of one case once in a fresh child process. */
function runInChild(
  bench: string,
  request: RunRequest,
  exitGraceMs = DEFAULT_EXIT_GRACE_MS,
  note: (line: string) => void = () => {},
): Promise<Sample> {
  const fail = (detail: string, cause?: unknown) =>
    new BenchRunError(bench, request.caseName, request.side, detail, cause === undefined ? undefined : { cause });
  return new Promise<Sample>((resolvePromise, reject) => {
    const child = fork(WORKER, [], {
      cwd: ROOT,
      // Plain node: its built-in type stripping runs worker.ts and the bench file, so no tsx
      // loader (tens of MB) sits in the RSS that is measured. Nothing is inherited either: the
      // parent runs under tsx (or vitest).
      execArgv: [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
      env: { ...process.env, NODE_COMPILE_CACHE: COMPILE_CACHE_DIR },
    });
    // Keep the end of what the child printed, for the error message if it dies.
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let reply: unknown;
    let spawnError: Error | undefined;
    let exitTimer: NodeJS.Timeout | undefined;
    let killedAfterReply = false;
    child.on('message', (message) => {
      reply ??= message;
      if (exitTimer === undefined && isRunReply(reply)) {
        // The result is in: a child that then fails to exit (see exitGraceMs) is ended.
        exitTimer = setTimeout(() => {
          killedAfterReply = true;
          note(`  (the child did not exit ${exitGraceMs} ms after reporting; killed it and kept its result)`);
          child.kill('SIGKILL');
        }, exitGraceMs);
      }
    });
    child.on('error', (error) => {
      spawnError ??= error;
    });
    child.on('close', (code, signal) => {
      clearTimeout(exitTimer);
      const tail = output.trim() === '' ? '' : `\n--- child output (end) ---\n${output.trim()}`;
      if (isRunReply(reply)) {
        if (!reply.ok) return reject(fail(`threw: ${reply.error}${tail}`));
        if (code === 0 || killedAfterReply)
          return resolvePromise({
            seconds: reply.seconds,
            peakRssMb: reply.peakRssMb,
            baseRssMb: reply.baseRssMb,
            cpuSeconds: reply.cpuSeconds,
            ...(reply.metrics ? { metrics: reply.metrics } : {}),
          });
      }
      if (spawnError) return reject(fail(`the child process failed: ${spawnError.message}${tail}`, spawnError));
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      if (isRunReply(reply)) return reject(fail(`the child process reported a result but then ${how}${tail}`));
      return reject(fail(`the child process ${how} before reporting a result${tail}`));
    });
    child.send(request, (error) => {
      if (error) spawnError ??= error;
    });
  });
}

function checkJson(bench: string, ctx: unknown): unknown {
  if (ctx === undefined) return undefined;
  let copy: unknown;
  try {
    copy = JSON.parse(JSON.stringify(ctx));
  } catch (error) {
    throw new TypeError(`bench "${bench}": setup() returned a ctx that is not JSON-serialisable: ${String(error)}`, { cause: error });
  }
  if (!isDeepStrictEqual(copy, ctx)) {
    throw new TypeError(
      `bench "${bench}": setup() returned a ctx that does not survive JSON (functions, class instances, undefined or non-finite values?); ` +
        'it is passed to child processes, so keep it to plain data',
    );
  }
  return copy;
}

const format = (seconds: number) => `${seconds.toFixed(4)}s`;

/**
 * Runs the bench in `file`: setup(), then per case the warm-up and recorded rounds (sides
 * alternating which goes first; the case's prepare(), if any, before each run, untimed), then
 * teardown() even when a run failed. Writes
 * `<outDir>/<name>.json` and returns its rows.
 * @throws BenchRunError naming the case and side of a failed run (after teardown).
 */
export async function runBench(file: string, options: RunBenchOptions = {}): Promise<ResultRow[]> {
  const log = options.log ?? (() => {});
  const path = resolve(file);
  const bench = await loadBench(path);
  const runs = resolveRuns(bench.runs, options.runs);
  const warmup = options.warmup ?? bench.warmup;
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`warmup must be an integer >= 0, got ${warmup}`);
  const outDir = options.outDir ?? DEFAULT_OUT_DIR;

  log(`${bench.name}: setup`);
  const ctx = bench.setup ? await bench.setup() : undefined;
  const rows: ResultRow[] = [];
  let failure: { error: unknown } | undefined;
  try {
    const sent = checkJson(bench.name, ctx);
    const steps = runOrder(runs, warmup);
    const cases =
      options.cases === undefined ? bench.cases : bench.cases.filter((c) => options.cases?.some((part) => c.name.includes(part)));
    if (cases.length === 0)
      throw new RangeError(`no case of bench "${bench.name}" matches ${options.cases?.map((c) => `"${c}"`).join(', ')}`);
    const first = cases[0];
    if (first) {
      // One child that only imports the bench file, so that every timed child finds the
      // worker, the bench and their imports in the compile cache (warm-up 0 included).
      log(`${bench.name}: priming the compile cache`);
      await runInChild(bench.name, { file: path, caseName: first.name, side: 'drkit', ctx: sent, prime: true }, options.exitGraceMs, log);
    }
    for (const c of cases) {
      log(`${bench.name}: case "${c.name}" (drkit vs ${c.peer.name}): ${warmup} warm-up + ${runs} recorded rounds`);
      const samples: Record<Side, Sample[]> = { drkit: [], peer: [] };
      for (const step of steps) {
        if (c.prepare) {
          try {
            await c.prepare(sent, { side: step.side, recorded: step.recorded, round: step.round });
          } catch (error) {
            const detail = error instanceof Error ? error.message : String(error);
            throw new BenchRunError(bench.name, c.name, step.side, `prepare() threw: ${detail}`, { cause: error });
          }
        }
        const sample = await runInChild(bench.name, { file: path, caseName: c.name, side: step.side, ctx: sent }, options.exitGraceMs, log);
        const label = step.recorded ? `round ${step.round + 1}/${runs}` : `warm-up ${step.round + 1}/${warmup}`;
        const rate = c.bytes === undefined || sample.seconds <= 0 ? '' : `  ${(c.bytes / sample.seconds / 1e6).toFixed(1)} MB/s`;
        const itemRate =
          c.items === undefined || sample.seconds <= 0 ? '' : `  ${Math.round(c.items.count / sample.seconds)} ${c.items.unit}/s`;
        const cpu = sample.cpuSeconds === undefined ? '' : `  cpu ${sample.cpuSeconds.toFixed(2)}s`;
        const metrics = sample.metrics === undefined ? '' : `  ${formatMetricValues(sample.metrics)}`;
        log(
          `  ${label} ${step.side.padEnd(5)} ${format(sample.seconds)}${rate}${itemRate}${cpu}  ${sample.peakRssMb.toFixed(1)} MB${metrics}`,
        );
        if (step.recorded) samples[step.side].push(sample);
      }
      rows.push(resultRow(c.name, c.peer.name, samples.drkit, samples.peer, c.bytes, c.items));
    }
  } catch (error) {
    failure = { error };
  }
  if (bench.teardown) {
    log(`${bench.name}: teardown`);
    try {
      await bench.teardown(ctx);
    } catch (error) {
      if (!failure) throw error;
      // Both failed: report the run's failure first, and the teardown's too.
      throw new AggregateError([failure.error, error], `bench "${bench.name}": a run failed, and then teardown() failed as well`);
    }
  }
  if (failure) throw failure.error;
  await mkdir(outDir, { recursive: true });
  const outFile = join(outDir, `${bench.name}.json`);
  await writeFile(outFile, `${JSON.stringify(rows, null, 2)}\n`);
  log(`${bench.name}: wrote ${outFile}`);
  return rows;
}

/** The bench files in `dir` (bench/*.bench.ts), by name. */
export async function findBenches(dir = BENCH_DIR): Promise<Map<string, string>> {
  const names = (await readdir(dir)).filter((f) => f.endsWith(BENCH_SUFFIX)).sort();
  return new Map(names.map((f) => [benchNameOf(f), join(dir, f)]));
}
