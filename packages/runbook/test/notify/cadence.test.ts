import { describe, expect, it } from 'vitest';
import { virtualClock } from '../../src/clock.js';
import { createLogger, type LogEntry } from '../../src/log.js';
import { startUpdates } from '../../src/notify/cadence.js';
import { UPDATE_EVERY_MS } from '../../src/notify/incident.js';

const START = Date.UTC(2026, 0, 1, 9);
const MIN = 60_000;

describe('startUpdates', () => {
  it('ticks exactly at 15, 30 and 45 minutes in 50 virtual minutes', async () => {
    const clock = virtualClock(START);
    const ticks: Array<[number, number]> = [];
    startUpdates({ clock, onTick: (n) => ticks.push([n, (clock.now() - START) / MIN]) });
    await clock.advance(50 * MIN);
    expect(ticks).toEqual([
      [1, 15],
      [2, 30],
      [3, 45],
    ]);
    expect(clock.pending()).toBe(1);
  });

  it('stops ticking after stop(), including from inside a tick', async () => {
    const clock = virtualClock(START);
    const ticks: number[] = [];
    const cadence = startUpdates({ clock, onTick: (n) => ticks.push(n) });
    await clock.advance(20 * MIN);
    cadence.stop();
    await clock.advance(60 * MIN);
    expect(ticks).toEqual([1]);
    expect(clock.pending()).toBe(0);
    cadence.stop();

    const inner: number[] = [];
    const self = startUpdates({
      clock,
      everyMs: 5 * MIN,
      onTick: (n) => {
        inner.push(n);
        if (n === 2) self.stop();
      },
    });
    await clock.advance(60 * MIN);
    expect(inner).toEqual([1, 2]);
    expect(clock.pending()).toBe(0);
  });

  it('does not drift when advanced in uneven steps', async () => {
    const clock = virtualClock(START);
    const at: number[] = [];
    startUpdates({ clock, onTick: () => at.push((clock.now() - START) / MIN) });
    for (let i = 0; i < 13; i++) await clock.advance(7 * MIN);
    expect(at).toEqual([15, 30, 45, 60, 75, 90]);
    expect(UPDATE_EVERY_MS).toBe(15 * MIN);
  });

  it('keeps going when onTick throws, and reports it', async () => {
    const clock = virtualClock(START);
    const entries: LogEntry[] = [];
    const ticks: number[] = [];
    startUpdates({
      clock,
      everyMs: MIN,
      log: createLogger({ sink: (e) => entries.push(e) }),
      onTick: (n) => {
        ticks.push(n);
        if (n === 1) throw new Error('render failed');
      },
    });
    await clock.advance(3 * MIN);
    expect(ticks).toEqual([1, 2, 3]);
    expect(entries.map((e) => [e.level, e.message])).toEqual([['warn', 'the status update 1 failed: render failed']]);
  });

  it('refuses a cadence that is not positive', () => {
    expect(() => startUpdates({ clock: virtualClock(), everyMs: 0, onTick: () => {} })).toThrow(/positive number of milliseconds/);
  });
});
