import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Bytes of chunk buffers allocated between two young-generation collections.
 *
 * Why this exists: every chunk allocates a fresh ciphertext (or plaintext) buffer outside
 * the JS heap, held by a tiny JS object. The objects are too small to fill V8's young
 * generation, so V8 only collects them once 64 MiB of outside memory has built up, and a
 * 2 GB seal then peaks at ~130 MB RSS with freshly mapped pages for every chunk. A young
 * collection every 4 MiB costs well under a millisecond (the dead buffers are the only
 * garbage), frees them while their pages are still warm, and measured on the seal path:
 * peak RSS 130 → 80–95 MB at 16 MiB, and throughput up rather than down (the allocator
 * reuses the same pages instead of faulting in new ones). 4 MiB took another 18 MB off an
 * RDB pull of a million keys (122 → 104 MB), whose socket reads, check and seal each hold
 * their own chunks. See `pnpm bench crypto`.
 */
export const RECLAIM_EVERY_BYTES = 4 * 1024 * 1024;

type Collector = (options: { type: 'minor' | 'major'; execution: 'sync'; flavor?: 'regular' | 'last-resort' }) => void;

let collector: Collector | null | undefined;

/**
 * V8's collector, or null where it cannot be had. `--expose-gc` set after start-up only
 * installs `gc` in contexts created afterwards, hence the fresh context.
 */
function youngCollector(): Collector | null {
  if (collector !== undefined) return collector;
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
  return collector;
}

/**
 * Returns a function to call with the size of each chunk buffer a stream lets go of; it runs
 * a young-generation collection every `everyBytes` ({@link RECLAIM_EVERY_BYTES} by default;
 * less where several threads each hold their own garbage). With `enabled` false (or where
 * V8's collector is unavailable) it does nothing.
 */
export function reclaimer(enabled = true, everyBytes = RECLAIM_EVERY_BYTES): (bytes: number) => void {
  const gc = enabled ? youngCollector() : null;
  if (!gc) return () => {};
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < everyBytes) return;
    since = 0;
    gc({ type: 'minor', execution: 'sync' });
  };
}

/**
 * Returns a function to call as chunks go by; it runs a full collection at most every
 * `everyMs`. For buffers that live long enough to be promoted out of the young generation
 * (chunks queued in a slow consumer's pipe), which young collections cannot free: without it
 * a restore's RSS climbs with the size of the backup. It is V8's memory-reducing collection
 * ("last resort"), the only kind that also shrinks the young generation again: under a high
 * allocation rate V8 keeps doubling it, and a logical export of 1M Redis keys ended with
 * 128 MB of young generation and a peak RSS of 240 MB instead of ~145 MB. drkit's heap is
 * small, so even this collection takes a few milliseconds; every 500 ms that is about 1% of
 * the time.
 */
export function periodicFullCollector(everyMs = 500): () => void {
  const gc = youngCollector();
  if (!gc) return () => {};
  let last = performance.now();
  return () => {
    const now = performance.now();
    if (now - last < everyMs) return;
    last = now;
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  };
}

/**
 * Frees a buffer's memory now rather than at whichever collection finds it dead: its
 * ArrayBuffer is detached (`transfer(0)`), which releases the backing store at once. For
 * buffers that are dead the moment their handler returns but outlive young collections
 * across its awaits (a restore thread's segments: ~10 MB per thread waited for the next full
 * collection). Only a buffer that spans its whole ArrayBuffer is released — a slice of Node's
 * pool or of a larger buffer is left alone, since other views share its memory — so the
 * caller's promise is just that nothing reads this buffer again: afterwards it is empty.
 * Returns whether memory was released.
 */
export function releaseBuffer(buffer: ArrayBuffer | Uint8Array): boolean {
  const whole = buffer instanceof ArrayBuffer ? buffer : buffer.byteOffset === 0 ? buffer.buffer : undefined;
  if (!(whole instanceof ArrayBuffer) || whole.detached || whole.byteLength !== buffer.byteLength || whole.byteLength === 0) return false;
  try {
    whole.transfer(0);
    return true;
  } catch {
    // Not detachable (a WebAssembly memory, for one): it stays for the collector.
    return false;
  }
}
