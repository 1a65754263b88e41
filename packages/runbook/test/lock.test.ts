import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineRunbook, isRunbookError, type RunEvent, run } from '../src/index.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A runbook whose only step waits until `release` is called. */
function held() {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const runbook = defineRunbook({
    id: 'held',
    title: 'Held',
    severity: 'sev3',
    category: 1,
    rto: '1h',
    params: z.object({}),
    phases: { only: '1h' },
    steps: (s) => [s({ id: 'wait', title: 'Wait', phase: 'only', run: () => released })],
  });
  return { runbook, release: () => release() };
}

describe('run lock', () => {
  it('refuses a second run of the same runbook and environment while the first holds the lock', async () => {
    const runsDir = join(mkdtempSync(join(tmpdir(), 'drkit-lock-')), 'runs');
    dirs.push(join(runsDir, '..'));
    const { runbook, release } = held();
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const first = run(runbook, {
      runsDir,
      environment: 'staging',
      onEvent: (e: RunEvent) => e.kind === 'step-start' && started(),
    });
    await running;
    const second = await run(runbook, { runsDir, environment: 'staging' }).catch((e: unknown) => e);
    expect(isRunbookError(second, 'RUNBOOK_LOCKED')).toBe(true);
    expect((second as Error).message).toMatch(/another run of "held" holds the staging lock/);
    expect((second as Error).message).toMatch(/run held-/);
    // Another environment is another lock.
    const other = held();
    other.release();
    const production = await run(other.runbook, { runsDir, environment: 'production' });
    expect(production.status).toBe('succeeded');
    release();
    expect((await first).status).toBe('succeeded');
    // Released at the end: the next run takes it.
    const again = held();
    again.release();
    expect((await run(again.runbook, { runsDir, environment: 'staging' })).status).toBe('succeeded');
  });

  it('a dry run takes no lock and can run beside an executing run', async () => {
    const runsDir = join(mkdtempSync(join(tmpdir(), 'drkit-lock-')), 'runs');
    dirs.push(join(runsDir, '..'));
    const { runbook, release } = held();
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const first = run(runbook, { runsDir, onEvent: (e: RunEvent) => e.kind === 'step-start' && started() });
    await running;
    const dry = await run(runbook, { runsDir, mode: 'dry-run' });
    expect(dry.status).toBe('succeeded');
    release();
    await first;
  });
});
