import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const MiB = 1024 * 1024;
export const RECLAIM_EVERY_BYTES = 4 * MiB;

type Collector = (options: { type: 'minor'; execution: 'sync' }) => void;
let collector: Collector | null | undefined;

/**
 * A function to call with the size of each body chunk read: it runs a young-generation
 * collection every {@link RECLAIM_EVERY_BYTES}, or does nothing when `enabled` is false or
 * V8's collector cannot be had.
 *
 * Why: every chunk of the body is a fresh buffer outside the JS heap (fs streams allocate one
 * per read), dead as soon as it is copied into its part, and held by a tiny JS object. Those
 * objects never fill V8's young generation, so V8 collects them only once ~64 MiB of dead
 * buffers have built up. Measured on a 1 GiB put (8 MiB parts, 4 in flight): peak RSS
 * 195 MB without, 163 MB collecting every 16 MiB, 143 MB every 4 MiB, and no slower (the
 * allocator reuses warm pages). The same approach as @drkit/crypto-stream's seal. `--expose-gc`
 * set after start-up only installs `gc` in contexts created afterwards, hence the fresh one.
 */
export function reclaimer(enabled: boolean): (bytes: number) => void {
  if (enabled && collector === undefined) {
    try {
      const existing = (globalThis as { gc?: unknown }).gc;
      if (typeof existing === 'function') collector = existing as Collector;
      else {
        setFlagsFromString('--expose-gc');
        const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
        collector = typeof gc === 'function' ? (gc as Collector) : null;
      }
    } catch {
      collector = null;
    }
  }
  const gc = enabled ? collector : null;
  if (!gc) return () => {};
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < RECLAIM_EVERY_BYTES) return;
    since = 0;
    gc({ type: 'minor', execution: 'sync' });
  };
}
