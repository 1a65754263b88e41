/**
 * `pnpm bench [name] [--runs N] [--warmup N] [--case TEXT ...]`: runs bench/<name>.bench.ts, or every bench
 * when no name is given, printing a table per bench to stdout (progress goes to stderr) and
 * writing bench/results/<name>.json.
 * Exit codes: 0 ok, 1 a run (or setup/teardown) failed, 2 bad usage or unknown bench.
 * The only file of the harness that writes to the console.
 */
import { parseArgs } from 'node:util';
import { MIN_RUNS } from './define.ts';
import { DEFAULT_OUT_DIR, findBenches, loadBench, runBench } from './run.ts';
import { formatMetrics, formatTable } from './stats.ts';

const USAGE = `usage: pnpm bench [name] [--runs N (>= ${MIN_RUNS})] [--warmup N] [--case TEXT (repeatable: only cases whose name contains it)]`;

function usageError(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

function integer(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) usageError(`--${flag} must be an integer >= ${min}, got "${value}"`);
  return n;
}

function describe(error: unknown): string {
  if (error instanceof AggregateError) return [error.message, ...error.errors.map((e) => `  - ${describe(e)}`)].join('\n');
  if (error instanceof Error) return error.message;
  return String(error);
}

function parse() {
  return parseArgs({
    args: process.argv.slice(2),
    options: {
      runs: { type: 'string' },
      warmup: { type: 'string' },
      case: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (error) {
    usageError(`${describe(error)}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1) usageError(`expected at most one bench name, got ${positionals.join(' ')}\n${USAGE}`);
  const runs = integer('runs', values.runs, MIN_RUNS);
  const warmup = integer('warmup', values.warmup, 0);

  const benches = await findBenches();
  const available = [...benches.keys()];
  const wanted = positionals[0];
  let selected: [string, string][];
  if (wanted === undefined) {
    if (available.length === 0) usageError('no benches in bench/ (files named <name>.bench.ts)');
    console.log(`available benches: ${available.join(', ')}`);
    selected = [...benches];
  } else {
    const file = benches.get(wanted);
    if (file === undefined) usageError(`unknown bench "${wanted}"; available: ${available.join(', ') || '(none)'}`);
    selected = [[wanted, file]];
  }

  let failed = 0;
  for (const [name, file] of selected) {
    try {
      const { description } = await loadBench(file);
      const rows = await runBench(file, {
        ...(runs === undefined ? {} : { runs }),
        ...(warmup === undefined ? {} : { warmup }),
        ...(values.case === undefined ? {} : { cases: values.case }),
        outDir: DEFAULT_OUT_DIR,
        log: (line) => console.error(line),
      });
      const metrics = formatMetrics(rows);
      console.log(
        `\n${name}: ${description}\n${formatTable(rows)}\n${metrics === '' ? '' : `\nmeasured by the sides (medians of the recorded runs):\n${metrics}\n`}`,
      );
    } catch (error) {
      failed++;
      console.error(`bench ${name} FAILED: ${describe(error)}`);
    }
  }
  return failed > 0 ? 1 : 0;
}

process.exitCode = await main();
