import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineRunbook, isRunbookError, type RunbookError, run, testRunbook } from '../src/index.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drkit-engine-test-'));
  dirs.push(dir);
  return dir;
}

const MIN = 60_000;

/** The definition fields of the small one-phase runbooks below, which differ only in their steps. */
const ONE_PHASE = {
  title: 'One phase',
  severity: 'sev3' as const,
  category: 1 as const,
  rto: '1h',
  params: z.object({}),
  phases: { only: '10m' },
};

/** A runbook whose steps record their calls in `calls`. */
function counting(calls: string[], options: { destructive?: boolean; slow?: number; critical?: boolean } = {}) {
  return defineRunbook({
    id: 'counting',
    title: 'Counting',
    severity: 'sev2',
    category: 3,
    rto: '1h',
    params: z.object({ target: z.string() }),
    phases: { detection: '15m', restoration: '20m', verification: '5m' },
    steps: (step) => {
      const a = step({
        id: 'a',
        title: 'Look',
        phase: 'detection',
        readOnly: true,
        run: (ctx) => {
          calls.push('a');
          return { seen: `${ctx.params.target}-seen` };
        },
      });
      const b = step({
        id: 'b',
        title: 'Change',
        phase: 'restoration',
        destructive: options.destructive ?? true,
        plan: (ctx) => `change ${ctx.params.target} using ${ctx.output(a).seen}`,
        run: async (ctx) => {
          calls.push('b');
          if (options.slow) await ctx.sleep(options.slow);
          return { changed: ctx.output(a).seen.toUpperCase() };
        },
      });
      const c = step({
        id: 'c',
        title: 'Check',
        phase: 'verification',
        readOnly: true,
        critical: options.critical ?? true,
        run: (ctx) => {
          calls.push('c');
          return { ok: ctx.output(b).changed.length > 0 };
        },
      });
      return [a, b, c];
    },
  });
}

describe('defineRunbook', () => {
  const base = {
    id: 'x',
    title: 'X',
    severity: 'sev3' as const,
    category: 1 as const,
    rto: '1h',
    params: z.object({}),
    phases: { one: '5m', two: '5m' },
  };
  const invalid = (f: () => unknown) => {
    try {
      f();
    } catch (error) {
      expect(isRunbookError(error, 'RUNBOOK_DEFINITION_INVALID')).toBe(true);
      return (error as RunbookError).message;
    }
    throw new Error('expected RUNBOOK_DEFINITION_INVALID');
  };

  it('refuses a destructive step without a plan', () => {
    const message = invalid(() =>
      defineRunbook({ ...base, steps: (s) => [s({ id: 'drop', title: 'Drop', phase: 'one', destructive: true, run: () => 1 })] }),
    );
    expect(message).toMatch(/destructive: give it a plan/);
  });

  it('refuses retries on a step not declared idempotent', () => {
    expect(
      invalid(() =>
        defineRunbook({ ...base, steps: (s) => [s({ id: 'r', title: 'R', phase: 'one', retry: { attempts: 3 }, run: () => 1 })] }),
      ),
    ).toMatch(/not declared idempotent/);
  });

  it('refuses unknown phases, duplicate ids, phases out of order and bad durations', () => {
    expect(invalid(() => defineRunbook({ ...base, steps: (s) => [s({ id: 'a', title: 'A', phase: 'nope', run: () => 1 })] }))).toMatch(
      /phase "nope" is not one of "one", "two"/,
    );
    expect(
      invalid(() =>
        defineRunbook({
          ...base,
          steps: (s) => [s({ id: 'a', title: 'A', phase: 'one', run: () => 1 }), s({ id: 'a', title: 'B', phase: 'one', run: () => 1 })],
        }),
      ),
    ).toMatch(/two steps have this id/);
    expect(
      invalid(() =>
        defineRunbook({
          ...base,
          steps: (s) => [s({ id: 'a', title: 'A', phase: 'two', run: () => 1 }), s({ id: 'b', title: 'B', phase: 'one', run: () => 1 })],
        }),
      ),
    ).toMatch(/phases in order/);
    expect(
      invalid(() => defineRunbook({ ...base, rto: '1 hour', steps: (s) => [s({ id: 'a', title: 'A', phase: 'one', run: () => 1 })] })),
    ).toMatch(/not a duration/);
  });
});

describe('modes', () => {
  it('--plan describes every step with its effects, phase budgets and gates, and runs nothing', async () => {
    const calls: string[] = [];
    const runsDir = join(tempDir(), 'runs');
    const result = await run(counting(calls), { mode: 'plan', params: { target: 'db' }, runsDir });
    expect(result.status).toBe('planned');
    expect(calls).toEqual([]);
    expect(existsSync(runsDir)).toBe(false);
    const plan = result.plan;
    expect(plan?.phases.map((p) => [p.name, p.budgetMs])).toEqual([
      ['detection', 15 * MIN],
      ['restoration', 20 * MIN],
      ['verification', 5 * MIN],
    ]);
    const b = plan?.steps.find((s) => s.id === 'b');
    expect(b?.destructive).toBe(true);
    expect(b?.gate).toMatch(/destructive/);
    // The effect depends on an output that only a run knows: the plan says so instead of inventing it.
    expect(b?.effects[0]).toMatch(/depends on the output of step "a"/);
  });

  it('--dry-run runs read-only steps, describes the others, and changes nothing', async () => {
    const calls: string[] = [];
    const t = await testRunbook(counting(calls), { mode: 'dry-run', params: { target: 'db' } });
    expect(t.result?.status).toBe('succeeded');
    const would = t.events.find((e) => e.kind === 'would-run');
    expect(would).toMatchObject({ step: 'b', destructive: true, effects: ['change db using db-seen'] });
    // Step c reads b's output, which a dry run does not have: it says so instead of faking it.
    expect(t.result?.steps.map((s) => s.status)).toEqual(['succeeded', 'would-run', 'would-run']);
    expect(calls).toEqual(['a', 'c']);
    expect(t.notifier.sent).toEqual([]);
  });

  it('execute runs every step in order and passes typed outputs on', async () => {
    const calls: string[] = [];
    const t = await testRunbook(counting(calls), { params: { target: 'db' } });
    expect(t.result?.status).toBe('succeeded');
    expect(t.result?.exitCode).toBe(0);
    expect(calls).toEqual(['a', 'b', 'c']);
    expect(t.approvals.map((a) => a.step)).toEqual(['b']);
    expect(t.approvals[0]?.effects).toEqual(['change db using db-seen']);
    const finishes = t.journal().filter((r) => r.t === 'step-finish');
    expect(finishes.map((r) => (r as { output: unknown }).output)).toEqual([{ seen: 'db-seen' }, { changed: 'DB-SEEN' }, { ok: true }]);
  });

  it('without a TTY and without --yes a destructive runbook is refused at once, before any step', async () => {
    const calls: string[] = [];
    const error = await run(counting(calls), { params: { target: 'db' }, runsDir: tempDir() }).catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_REFUSED')).toBe(true);
    expect((error as Error).message).toMatch(/b needs a confirmation.*--yes/);
    expect(calls).toEqual([]);
  });

  it('a declined approval stops the run before the step, with status refused', async () => {
    const calls: string[] = [];
    const t = await testRunbook(counting(calls), { params: { target: 'db' }, approve: 'none' });
    expect(t.result?.status).toBe('refused');
    expect(t.result?.exitCode).toBe(3);
    expect(calls).toEqual(['a']);
    expect(t.journal().find((r) => r.t === 'approval')).toMatchObject({ step: 'b', approved: false });
  });

  it('invalid params are one error naming each field and its flag', async () => {
    const error = await run(counting([]), { params: {}, mode: 'plan' }).catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_PARAMS_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/target \(--target\)/);
  });
});

describe('failures', () => {
  it('a failing critical step stops the run; resume runs it again and not the steps before', async () => {
    const calls: string[] = [];
    const first = await testRunbook(counting(calls), { params: { target: 'db' }, failAt: 'b' });
    expect(first.result?.status).toBe('failed');
    expect(first.result?.exitCode).toBe(1);
    expect(first.result?.error?.message).toMatch(/step "b" failed: failure injected/);
    expect(calls).toEqual(['a']);
    const second = await first.resume();
    expect(second.result?.status).toBe('succeeded');
    expect(calls).toEqual(['a', 'b', 'c']);
    expect(second.result?.runId).toBe(first.runId);
  });

  it('a failing non-critical step is recorded and the run goes on', async () => {
    const calls: string[] = [];
    const t = await testRunbook(counting(calls, { critical: false }), { params: { target: 'db' }, failAt: 'c' });
    expect(t.result?.status).toBe('succeeded');
    expect(t.result?.steps.find((s) => s.id === 'c')?.status).toBe('passed-over');
    expect(t.result?.report?.steps.find((s) => s.id === 'c')?.status).toBe('failed (not critical)');
  });

  it('an idempotent step is retried with backoff on the run clock', async () => {
    let attempts = 0;
    const rb = defineRunbook({
      ...ONE_PHASE,
      id: 'retrying',
      steps: (s) => [
        s({
          id: 'flaky',
          title: 'Flaky',
          phase: 'only',
          idempotent: true,
          retry: { attempts: 3, backoff: '10s', factor: 3 },
          run: () => {
            attempts++;
            if (attempts < 3) throw new Error(`attempt ${attempts} failed`);
            return attempts;
          },
        }),
      ],
    });
    const t = await testRunbook(rb);
    expect(t.result?.status).toBe('succeeded');
    expect(attempts).toBe(3);
    const starts = t.journal().filter((r) => r.t === 'step-start');
    // 10 s, then 30 s between attempts.
    expect(starts.map((r) => r.at - (starts[0]?.at ?? 0))).toEqual([0, 10_000, 40_000]);
  });

  it('a step that overruns its timeout is aborted, and its child process killed', async () => {
    const rb = defineRunbook({
      ...ONE_PHASE,
      id: 'hanging',
      steps: (s) => [
        s({
          id: 'hang',
          title: 'Hang',
          phase: 'only',
          timeout: '300ms',
          run: async (ctx) => {
            await ctx.shell.exec('sleep', ['30']);
            return 'never';
          },
        }),
      ],
    });
    const started = Date.now();
    const result = await run(rb, { runsDir: tempDir() });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.status).toBe('failed');
    expect(result.error?.code).toBe('RUNBOOK_STEP_TIMEOUT');
  });

  it('onFailure "undo" reverts the completed steps in reverse order', async () => {
    const undone: string[] = [];
    const rb = defineRunbook({
      ...ONE_PHASE,
      id: 'undoing',
      onFailure: 'undo',
      steps: (s) => [
        s({ id: 'one', title: 'One', phase: 'only', run: () => 1, undo: () => void undone.push('one') }),
        s({ id: 'two', title: 'Two', phase: 'only', run: () => 2, undo: () => void undone.push('two') }),
        s({ id: 'three', title: 'Three', phase: 'only', run: () => 3 }),
      ],
    });
    const t = await testRunbook(rb, { failAt: 'three' });
    expect(t.result?.status).toBe('failed');
    expect(undone).toEqual(['two', 'one']);
    expect(
      t
        .journal()
        .filter((r) => r.t === 'undo')
        .map((r) => (r as { step: string }).step),
    ).toEqual(['two', 'one']);
  });

  it('an abort signal stops the run between steps with status aborted', async () => {
    const controller = new AbortController();
    const rb = defineRunbook({
      ...ONE_PHASE,
      id: 'aborting',
      steps: (s) => [
        s({ id: 'one', title: 'One', phase: 'only', run: () => void controller.abort() }),
        s({ id: 'two', title: 'Two', phase: 'only', run: () => 2 }),
      ],
    });
    const t = await testRunbook(rb, { signal: controller.signal });
    expect(t.result?.status).toBe('aborted');
    expect(t.result?.exitCode).toBe(130);
    expect(t.result?.steps.map((s) => s.status)).toEqual(['succeeded', 'not-run']);
  });
});

describe('child runs', () => {
  const child = (fail: boolean) =>
    defineRunbook({
      ...ONE_PHASE,
      id: 'child',
      steps: (step) => [
        step({ id: 'first', title: 'First', phase: 'only', run: () => 1 }),
        step({
          id: 'second',
          title: 'Second',
          phase: 'only',
          run: () => {
            if (fail) throw new Error('the child broke');
            return 2;
          },
        }),
      ],
    });
  const outputs: unknown[] = [];
  const parent = (fail: boolean, onFailure: 'throw' | 'return', drill = false) =>
    defineRunbook({
      ...ONE_PHASE,
      id: 'parent',
      drill,
      steps: (step) => [
        step({
          id: 'call',
          title: 'Call the child',
          phase: 'only',
          run: async (ctx) => {
            const result = await ctx.runRunbook(child(fail), {}, { onFailure });
            const seen = {
              status: result.status,
              steps: result.steps.map((s) => `${s.id}:${s.status}`),
              error: result.error?.message ?? null,
            };
            outputs.push(seen);
            return seen;
          },
        }),
      ],
    });

  it('a failed child fails the step by default; with onFailure "return" the step gets its steps, report and error', async () => {
    const thrown = await run(parent(true, 'throw'), { runsDir: join(tempDir(), 'runs') });
    expect(thrown.status).toBe('failed');
    expect(thrown.error?.message).toContain('the child broke');

    outputs.length = 0;
    const returned = await run(parent(true, 'return'), { runsDir: join(tempDir(), 'runs') });
    expect(returned.status).toBe('succeeded');
    expect(outputs).toEqual([
      { status: 'failed', steps: ['first:succeeded', 'second:failed'], error: expect.stringContaining('the child broke') },
    ]);
  });

  it('a runbook defined as a drill marks its report and its children as drills', async () => {
    const dir = tempDir();
    const result = await run(parent(false, 'throw', true), { runsDir: join(dir, 'runs') });
    expect(result.status).toBe('succeeded');
    expect(result.report?.drill).toBe(true);
    expect(readFileSync(result.files?.markdown ?? '', 'utf8')).toContain('DR drill report');
    const plain = await run(parent(false, 'throw'), { runsDir: join(dir, 'plain') });
    expect(plain.report?.drill).toBe(false);
  });
});

describe('resume', () => {
  it('after a crash at every step boundary, resume reaches the same end with no step run twice', async () => {
    for (const step of ['a', 'b', 'c']) {
      const calls: string[] = [];
      const first = await testRunbook(counting(calls), { params: { target: 'db' }, crashAt: { step, when: 'after-finish' } });
      expect(first.crashed).toBe(true);
      const second = await first.resume();
      expect(second.result?.status).toBe('succeeded');
      expect(calls).toEqual(['a', 'b', 'c']);
      const finishes = second
        .journal()
        .filter((r) => r.t === 'step-finish')
        .map((r) => (r as { step: string }).step);
      expect(finishes).toEqual(['a', 'b', 'c']);
    }
  });

  it('a step interrupted part-way is re-run only when idempotent; otherwise resume says what to do', async () => {
    const calls: string[] = [];
    const first = await testRunbook(counting(calls), { params: { target: 'db' }, crashAt: { step: 'b', when: 'after-start' } });
    expect(first.crashed).toBe(true);
    const refused = await first.resume().catch((e: unknown) => e);
    expect(isRunbookError(refused, 'RUNBOOK_RESUME_INVALID')).toBe(true);
    expect((refused as Error).message).toMatch(/"b".*interrupted.*--from b/);
    const second = await first.resume({ from: 'b' });
    expect(second.result?.status).toBe('succeeded');
    expect(calls).toEqual(['a', 'b', 'c']);
  });

  it('refuses a runbook whose steps were removed or reordered since the journal', async () => {
    const calls: string[] = [];
    const first = await testRunbook(counting(calls), { params: { target: 'db' }, failAt: 'c' });
    expect(first.result?.status).toBe('failed');
    const changed = defineRunbook({
      ...counting(calls).definition,
      steps: (s) => [
        s({ id: 'a', title: 'A', phase: 'detection', run: () => 1 }),
        s({ id: 'c', title: 'C', phase: 'verification', run: () => 1 }),
      ],
    });
    const error = await run(changed, { resume: first.runId as string, runsDir: first.runsDir, environment: 'test' }).catch(
      (e: unknown) => e,
    );
    expect(isRunbookError(error, 'RUNBOOK_RESUME_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/step b no longer exists/);
    const reordered = defineRunbook({
      ...counting(calls).definition,
      phases: { all: '1h' },
      steps: (s) => [
        s({ id: 'b', title: 'B', phase: 'all', destructive: true, plan: () => 'x', run: () => 1 }),
        s({ id: 'a', title: 'A', phase: 'all', run: () => 1 }),
        s({ id: 'c', title: 'C', phase: 'all', run: () => 1 }),
      ],
    });
    const error2 = await run(reordered, { resume: first.runId as string, runsDir: first.runsDir, environment: 'test' }).catch(
      (e: unknown) => e,
    );
    expect((error2 as Error).message).toMatch(/reordered/);
  });

  it('re-validates the journalled params and refuses different ones', async () => {
    const calls: string[] = [];
    const first = await testRunbook(counting(calls), { params: { target: 'db' }, failAt: 'c' });
    const error = await first.resume({ params: { target: 'other' } }).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/--target differs from the run being resumed/);
    const stricter = defineRunbook({ ...counting(calls).definition, params: z.object({ target: z.string().min(5) }) });
    const error2 = await run(stricter, { resume: 'latest', runsDir: first.runsDir, environment: 'test', yes: true }).catch(
      (e: unknown) => e,
    );
    expect(isRunbookError(error2, 'RUNBOOK_PARAMS_INVALID')).toBe(true);
  });

  it('--only runs one step and --from starts later; a step reading a skipped output says why it fails', async () => {
    const calls: string[] = [];
    const t = await testRunbook(counting(calls), { params: { target: 'db' }, only: 'a' });
    expect(calls).toEqual(['a']);
    expect(t.result?.steps.map((s) => s.status)).toEqual(['succeeded', 'skipped', 'skipped']);
    const t2 = await testRunbook(counting(calls), { params: { target: 'db' }, from: 'b' });
    expect(t2.result?.status).toBe('failed');
    expect(t2.result?.error?.message).toMatch(/output of step "a".*--from/);
  });
});

describe('time budgets', () => {
  it('an overrun emits an event and a notification while the step is still running', async () => {
    const calls: string[] = [];
    const t = await testRunbook(counting(calls, { slow: 25 * MIN }), { params: { target: 'db' } });
    expect(t.result?.status).toBe('succeeded');
    const overrun = t.events.find((e) => e.kind === 'budget-overrun');
    expect(overrun).toMatchObject({ phase: 'restoration', budgetMs: 20 * MIN });
    const stepFinish = t.events.find((e) => e.kind === 'step-finish' && e.step === 'b');
    expect(overrun?.kind === 'budget-overrun' && stepFinish?.kind === 'step-finish' && overrun.at < stepFinish.at).toBe(true);
    const sent = t.notifier.sent.find((n) => n.kind === 'overrun');
    expect(sent?.text).toMatch(/restoration/);
    expect(t.result?.report?.phases.find((p) => p.name === 'restoration')).toMatchObject({ over: true, actualMs: 25 * MIN });
    const md = readFileSync(t.result?.files?.markdown as string, 'utf8');
    expect(md).toMatch(/\| restoration \| 20m 00s \| 25m 00s \| \*\*over\*\* \|/);
  });

  it('sends the initial alert, an update every 15 minutes while the run lasts, then the resolution', async () => {
    const calls: string[] = [];
    const t = await testRunbook(counting(calls, { slow: 50 * MIN }), { params: { target: 'db' } });
    const kinds = t.notifier.sent.map((n) => n.kind);
    expect(kinds.filter((k) => k === 'update')).toHaveLength(3);
    expect(kinds[0]).toBe('initial');
    expect(kinds.at(-1)).toBe('resolution');
    const start = t.notifier.sent[0]?.time ?? 0;
    expect(t.notifier.sent.filter((n) => n.kind === 'update').map((n) => (n.time - start) / MIN)).toEqual([15, 30, 45]);
    expect(t.notifier.sent.at(-1)?.text).toMatch(/Duration: 50 minutes/);
  });
});

describe('optional secrets', () => {
  const seen: unknown[] = [];
  const runbook = defineRunbook({
    ...ONE_PHASE,
    id: 'optional-secret',
    secrets: { password: { env: 'TEST_DB_PASSWORD', optional: true }, token: { env: 'TEST_TOKEN' } },
    steps: (s) => [
      s({
        id: 'read',
        title: 'Read the secrets',
        phase: 'only',
        run: (ctx) => {
          seen.push({ password: ctx.optionalSecret('password') ?? null, length: ctx.secret('token').length });
          return null;
        },
      }),
      s({ id: 'require', title: 'Require the optional one', phase: 'only', run: (ctx) => ctx.secret('password').length }),
    ],
  });

  it('runs without an optional secret, reads it as undefined, and names it when a step requires it', async () => {
    seen.length = 0;
    const result = await run(runbook, { runsDir: join(tempDir(), 'runs'), env: { TEST_TOKEN: 'token-1234' } });
    expect(result.status).toBe('failed');
    expect(seen).toEqual([{ password: null, length: 10 }]);
    const failure = result.steps.find((s) => s.id === 'require');
    expect(failure?.code).toBe('RUNBOOK_SECRET_MISSING');
    expect(failure?.message).toMatch(/needs secret "password", which is optional and not set: export TEST_DB_PASSWORD/);
  });

  it('reads an optional secret that is set, and still refuses a missing required one before any step', async () => {
    seen.length = 0;
    const env = { TEST_TOKEN: 'token-1234', TEST_DB_PASSWORD: 'password-5678' };
    const ok = await run(runbook, { runsDir: join(tempDir(), 'runs'), env });
    expect(ok.status).toBe('succeeded');
    expect(seen).toEqual([{ password: 'password-5678', length: 10 }]);
    await expect(run(runbook, { runsDir: join(tempDir(), 'runs'), env: { TEST_DB_PASSWORD: 'password-5678' } })).rejects.toMatchObject({
      code: 'RUNBOOK_SECRET_MISSING',
    });
  });

  it('--plan says an unset optional secret is optional, not that the run would refuse', async () => {
    const result = await run(runbook, { mode: 'plan', runsDir: join(tempDir(), 'runs'), env: {} });
    expect(result.plan?.secrets).toEqual([
      { name: 'password', env: 'TEST_DB_PASSWORD', set: false, optional: true },
      { name: 'token', env: 'TEST_TOKEN', set: false },
    ]);
  });
});
