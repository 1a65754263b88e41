/** Messages between the harness (parent) and bench/lib/worker.ts (one child per timed run). */
import type { Side } from './define.js';

/** Parent to child: run this side of this case once. */
export interface RunRequest {
  /** Absolute path of the bench file. */
  file: string;
  caseName: string;
  side: Side;
  /** What setup() returned, round-tripped through JSON. */
  ctx: unknown;
}

/** Child to parent: the result of that run. */
export type RunReply = { ok: true; seconds: number; peakRssMb: number } | { ok: false; error: string };

export function isRunRequest(value: unknown): value is RunRequest {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<RunRequest>;
  return typeof v.file === 'string' && typeof v.caseName === 'string' && (v.side === 'drkit' || v.side === 'peer');
}

export function isRunReply(value: unknown): value is RunReply {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { ok?: unknown; seconds?: unknown; peakRssMb?: unknown; error?: unknown };
  return v.ok === true ? typeof v.seconds === 'number' && typeof v.peakRssMb === 'number' : v.ok === false && typeof v.error === 'string';
}
