import { setTimeout as sleepReal } from 'node:timers/promises';
import { RunbookError } from './errors.js';

/** A timer handle returned by {@link Clock.setTimeout}. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * Where the engine reads time and sets timers: the RTO budgets, the update cadence of
 * notifications, step timeouts and `ctx.sleep`. The real clock in production; a
 * {@link VirtualClock} in tests, so that an hour-long run takes milliseconds.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Resolves after `ms`; rejects with RUNBOOK_ABORTED when `signal` aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function abortedSleep(signal: AbortSignal): RunbookError {
  return new RunbookError('RUNBOOK_ABORTED', 'the wait was aborted', { cause: signal.reason });
}

/** The wall clock. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    // A pending notification or budget timer must not keep a finished process alive.
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
  async sleep(ms, signal) {
    try {
      await sleepReal(Math.max(0, ms), undefined, signal ? { signal } : undefined);
    } catch (error) {
      if (signal?.aborted) throw abortedSleep(signal);
      throw error;
    }
  },
};

interface VirtualTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to. `sleep(ms)` moves it forward by `ms` at once,
 * firing every timer that falls due on the way in order: a runbook is one sequential flow,
 * so the step that waits is the one that drives time, and a run that "takes" an hour of
 * virtual time is deterministic and instant.
 */
export interface VirtualClock extends Clock {
  /** Moves time forward by `ms`, firing due timers in order (and awaiting their microtasks). */
  advance(ms: number): Promise<void>;
  /** Timers still pending. */
  pending(): number;
}

/** A {@link VirtualClock} starting at `start` (default 2026-01-01T00:00:00Z). */
export function virtualClock(start = Date.UTC(2026, 0, 1)): VirtualClock {
  let now = start;
  let seq = 0;
  const timers: VirtualTimer[] = [];

  const advance = async (ms: number): Promise<void> => {
    const target = now + Math.max(0, ms);
    for (;;) {
      timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = timers[0];
      if (!next || next.at > target) break;
      timers.shift();
      now = Math.max(now, next.at);
      if (!next.cancelled) next.fn();
      // Let whatever the timer started (a notification send) take its first steps at this time.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    now = target;
  };

  return {
    now: () => now,
    setTimeout(fn, ms) {
      const timer: VirtualTimer = { at: now + Math.max(0, ms), seq: seq++, fn, cancelled: false };
      timers.push(timer);
      return {
        cancel() {
          timer.cancelled = true;
          const i = timers.indexOf(timer);
          if (i >= 0) timers.splice(i, 1);
        },
      };
    },
    async sleep(ms, signal) {
      if (signal?.aborted) throw abortedSleep(signal);
      await advance(ms);
      if (signal?.aborted) throw abortedSleep(signal);
    },
    advance,
    pending: () => timers.length,
  };
}
