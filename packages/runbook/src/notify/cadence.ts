import type { Clock } from '../clock.js';
import { messageOf, RunbookError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { UPDATE_EVERY_MS } from './incident.js';

/** Options of {@link startUpdates}. */
export interface UpdateCadenceOptions {
  clock: Clock;
  /** @default UPDATE_EVERY_MS (15 minutes) */
  everyMs?: number | undefined;
  /** Called with 1, 2, 3… at `everyMs`, 2·`everyMs`, 3·`everyMs` after the start. */
  onTick: (n: number) => void;
  /** Where a throwing `onTick` is reported; the cadence goes on regardless. */
  log?: Logger | undefined;
}

/** A running cadence. */
export interface UpdateCadence {
  /** No tick fires after this; calling it again does nothing. */
  stop(): void;
}

/**
 * Calls `onTick` every `everyMs` of the clock's time: the plans' "status updates every 15
 * minutes". It only uses `clock.setTimeout`, re-armed after each tick, so a virtual clock
 * advanced by 50 minutes ticks exactly at 15, 30 and 45. Each tick is scheduled from the start
 * time rather than from the last tick, so a slow `onTick` does not make updates drift later.
 */
export function startUpdates(options: UpdateCadenceOptions): UpdateCadence {
  const { clock, onTick } = options;
  const everyMs = options.everyMs ?? UPDATE_EVERY_MS;
  if (!Number.isFinite(everyMs) || everyMs <= 0) {
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `the update cadence must be a positive number of milliseconds, not ${everyMs}`);
  }
  const log = options.log ?? silentLogger;
  const start = clock.now();
  let n = 0;
  let stopped = false;
  let timer: { cancel(): void } | undefined;

  const report = (error: unknown) => log.warn(`the status update ${n} failed: ${messageOf(error)}`, { tick: n });

  const arm = () => {
    const due = start + (n + 1) * everyMs;
    timer = clock.setTimeout(tick, Math.max(0, due - clock.now()));
  };

  function tick() {
    if (stopped) return;
    n += 1;
    try {
      // A timer callback that throws would crash the process under the real clock.
      const result: unknown = onTick(n);
      if (result instanceof Promise) result.catch(report);
    } catch (error) {
      report(error);
    }
    if (!stopped) arm();
  }

  arm();
  return {
    stop() {
      stopped = true;
      timer?.cancel();
      timer = undefined;
    },
  };
}
