/** Messages between the harness (parent) and bench/lib/worker.ts (one child per timed run). */
import type { Side } from './define.ts';

/** Parent to child: run this side of this case once. */
export interface RunRequest {
  /** Absolute path of the bench file. */
  file: string;
  caseName: string;
  side: Side;
  /** What setup() returned, round-tripped through JSON. */
  ctx: unknown;
  /** Only import the bench file (filling the compile cache) and reply, without running the side. */
  prime?: boolean;
}

/** Child to parent: the result of that run. */
export type RunReply =
  | {
      ok: true;
      /** Wall time of the side's function. */
      seconds: number;
      /** Peak RSS of the child, MB, read after the function returned (VmHWM on Linux, else maxRSS). */
      peakRssMb: number;
      /** RSS of the child just before the function started (Node, the bench module and its imports), MB. */
      baseRssMb: number;
      /**
       * CPU time during the function: user + system of the child (all its threads) plus that of
       * the processes it started and waited for (a peer's pipeline), seconds.
       */
      cpuSeconds: number;
      /** What the side measured itself (its SideResult.metrics), when it reported any. */
      metrics?: Record<string, number>;
    }
  | { ok: false; error: string };

export function isRunRequest(value: unknown): value is RunRequest {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<RunRequest>;
  return typeof v.file === 'string' && typeof v.caseName === 'string' && (v.side === 'drkit' || v.side === 'peer');
}

export function isRunReply(value: unknown): value is RunReply {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as {
    ok?: unknown;
    seconds?: unknown;
    peakRssMb?: unknown;
    baseRssMb?: unknown;
    cpuSeconds?: unknown;
    metrics?: unknown;
    error?: unknown;
  };
  if (v.ok === false) return typeof v.error === 'string';
  return (
    v.ok === true &&
    typeof v.seconds === 'number' &&
    typeof v.peakRssMb === 'number' &&
    typeof v.baseRssMb === 'number' &&
    typeof v.cpuSeconds === 'number' &&
    (v.metrics === undefined ||
      (typeof v.metrics === 'object' &&
        v.metrics !== null &&
        Object.values(v.metrics).every((n) => typeof n === 'number' && Number.isFinite(n))))
  );
}
