/**
 * Runs one side of one case of a bench once, in this fresh process, and reports its wall
 * time and this process's peak RSS to the parent over IPC. Started by runBench() with
 * `fork(worker.ts, { execArgv: ['--import', 'tsx'] })`; not meant to be run by hand.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { isBench } from './define.js';
import { isRunRequest, type RunReply, type RunRequest } from './protocol.js';

if (typeof process.send !== 'function') {
  throw new Error('bench/lib/worker.ts runs as a child of the bench harness (pnpm bench), not on its own');
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
  const fn = request.side === 'drkit' ? found.drkit : found.peer.run;
  const start = performance.now();
  await fn(request.ctx);
  const seconds = (performance.now() - start) / 1000;
  // maxRSS is in kilobytes; read after the function returned, so it covers all of it.
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  return { ok: true, seconds, peakRssMb };
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
