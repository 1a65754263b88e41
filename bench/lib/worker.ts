/**
 * Runs one side of one case of a bench once, in this fresh process, and reports its wall
 * time, CPU time, this process's peak RSS and the metrics the side resolved to, if any, to
 * the parent over IPC. Started by runBench()
 * with `fork(worker.ts, { execArgv: [] })`: plain `node`, whose built-in type stripping runs
 * the .ts files (no tsx loader in the measured process), with NODE_COMPILE_CACHE set so that
 * after a first (priming) run the stripped code comes from the cache and Node's TypeScript
 * stripper (~17 MB of wasm) is not even loaded. Not meant to be run by hand.
 */
import { readFileSync } from 'node:fs';
import { flushCompileCache } from 'node:module';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { isBench, sideMetrics } from './define.ts';
import { isRunRequest, type RunReply, type RunRequest } from './protocol.ts';

if (typeof process.send !== 'function') {
  throw new Error('bench/lib/worker.ts runs as a child of the bench harness (pnpm bench), not on its own');
}

/** USER_HZ: the unit of the times in /proc/<pid>/stat (100 on every Linux ABI Node supports). */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU seconds of the child processes this process has waited for (cutime + cstime of
 * /proc/self/stat; they include their own waited-for children, e.g. both ends of a shell
 * pipeline). 0 where /proc is not there.
 */
function reapedChildrenCpuSeconds(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after "pid (comm) ": state is field 3, cutime field 16, cstime field 17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/**
 * Peak RSS of this process image, MB. On Linux it is VmHWM of /proc/self/status: getrusage's
 * maxRSS (process.resourceUsage().maxRSS) survives execve, so a child forked by a parent
 * holding 300 MB reports at least 300 MB whatever it does itself. Elsewhere, maxRSS.
 */
function peakRssMb(): number {
  try {
    const kb = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (kb !== undefined) return Number(kb) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

function cpuSeconds(): number {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1e6 + reapedChildrenCpuSeconds();
}

function reply(message: RunReply): void {
  // Exit once the message is out: a side that leaves timers or sockets open must not keep
  // the child (and so the whole bench) waiting.
  process.send?.(message, undefined, {}, () => process.exit(message.ok ? 0 : 1));
}

async function run(request: RunRequest): Promise<RunReply> {
  const mod = (await import(pathToFileURL(request.file).href)) as { default?: unknown };
  const bench = mod.default;
  if (!isBench(bench)) return { ok: false, error: `${request.file} has no default export made by defineBench()` };
  const found = bench.cases.find((c) => c.name === request.caseName);
  if (!found) return { ok: false, error: `${request.file} has no case "${request.caseName}"` };
  if (request.prime) {
    flushCompileCache();
    return { ok: true, seconds: 0, peakRssMb: peakRssMb(), baseRssMb: process.memoryUsage().rss / (1024 * 1024), cpuSeconds: 0 };
  }
  const fn = request.side === 'drkit' ? found.drkit : found.peer.run;
  const baseRssMb = process.memoryUsage().rss / (1024 * 1024);
  const cpuBefore = cpuSeconds();
  const start = performance.now();
  const result = await fn(request.ctx);
  const seconds = (performance.now() - start) / 1000;
  const cpu = cpuSeconds() - cpuBefore;
  const metrics = sideMetrics(result);
  // Read after the function returned, so the peak covers all of it.
  return { ok: true, seconds, peakRssMb: peakRssMb(), baseRssMb, cpuSeconds: cpu, ...(metrics ? { metrics } : {}) };
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return String(error);
}

process.once('message', (message: unknown) => {
  if (!isRunRequest(message)) {
    reply({ ok: false, error: `worker got an unexpected message: ${JSON.stringify(message)}` });
    return;
  }
  run(message).then(reply, (error: unknown) => reply({ ok: false, error: describe(error) }));
});
