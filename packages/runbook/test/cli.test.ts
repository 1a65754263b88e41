import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineRunbook, parseRunbookArgs, type RunbookIo, runbookMain } from '../src/index.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function io(input = '', isTTY = false): RunbookIo & { out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d));
  stderr.on('data', (d: Buffer) => (err += d));
  const stdin = new PassThrough();
  stdin.end(input);
  return { stdout, stderr, stdin, env: { DRKIT_OPERATOR: 'alice' }, isTTY, out: () => out, err: () => err };
}

const calls: string[] = [];
const runbook = defineRunbook({
  id: 'cli-sample',
  title: 'CLI sample',
  severity: 'sev2',
  category: 2,
  rto: '30m',
  params: z.object({
    target: z.string().describe('what to restore'),
    rows: z.number().int().default(10),
    force: z.boolean().default(false),
  }),
  phases: { restoration: '20m' },
  steps: (s) => [
    s({
      id: 'restore',
      title: 'Restore',
      phase: 'restoration',
      destructive: true,
      plan: (ctx) => `restore ${ctx.params.rows} rows into ${ctx.params.target}${ctx.params.force ? ' (forced)' : ''}`,
      run: (ctx) => {
        calls.push(`${ctx.params.target}:${ctx.params.rows}:${ctx.params.force}`);
        return null;
      },
    }),
  ],
});

function runsDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drkit-cli-'));
  dirs.push(dir);
  return join(dir, 'runs');
}

describe('runbook command line', () => {
  it('parses params by their schema types, kebab-case flags and --no- booleans', () => {
    expect(parseRunbookArgs(runbook, ['--target', 'db', '--rows=25', '--force', '--env', 'staging'])).toEqual({
      flags: { env: 'staging' },
      params: { target: 'db', rows: 25, force: true },
    });
    expect(parseRunbookArgs(runbook, ['--no-force']).params).toEqual({ force: false });
    expect(() => parseRunbookArgs(runbook, ['--plan', '--dry-run'])).toThrow(/exclude each other/);
    expect(() => parseRunbookArgs(runbook, ['--tagret', 'x'])).toThrow(
      /unknown flag --tagret; the params of cli-sample are --target, --rows, --force/,
    );
    expect(() => parseRunbookArgs(runbook, ['--target'])).toThrow(/--target needs a value/);
  });

  it('--help lists params with their descriptions, the flags and the exit codes', async () => {
    const t = io();
    expect(await runbookMain(runbook, ['--help'], t)).toBe(0);
    expect(t.out()).toMatch(/--target VALUE \(required\) {2}what to restore/);
    expect(t.out()).toMatch(/\n {2}--rows VALUE\n {2}--force\n/);
    expect(t.out()).toMatch(/exit codes: 0 succeeded, 1 failed, 2 .*, 3 refused .*, 130 interrupted/);
  });

  it('asks on a terminal and runs after "yes"; anything else declines with exit code 3', async () => {
    const yes = io('yes\n', true);
    expect(await runbookMain(runbook, ['--target', 'db', '--runs-dir', runsDir()], yes)).toBe(0);
    expect(yes.err()).toMatch(/DESTRUCTIVE STEP: Restore \(restore\)\n {2}- restore 10 rows into db/);
    expect(yes.err()).toMatch(/approved by alice \(tty\)/);
    expect(calls.at(-1)).toBe('db:10:false');
    const before = calls.length;
    const no = io('no\n', true);
    expect(await runbookMain(runbook, ['--target', 'db', '--runs-dir', runsDir()], no)).toBe(3);
    expect(no.err()).toMatch(/declined by alice/);
    expect(calls.length).toBe(before);
  });

  it('in a production environment the operator types its name, not "yes"', async () => {
    const config = { environments: { production: { production: true } } };
    const wrong = io('yes\n', true);
    expect(
      await runbookMain(runbook, ['--target', 'db', '--env', 'production', '--runs-dir', runsDir()], wrong, { extra: { config } }),
    ).toBe(3);
    expect(wrong.err()).toMatch(/Type "production" to go ahead/);
    const right = io('production\n', true);
    expect(
      await runbookMain(runbook, ['--target', 'db', '--env', 'production', '--runs-dir', runsDir()], right, { extra: { config } }),
    ).toBe(0);
  });

  it('--json prints every event as one JSON line', async () => {
    const t = io();
    expect(await runbookMain(runbook, ['--target', 'db', '--yes', '--json', '--runs-dir', runsDir()], t)).toBe(0);
    const events = t
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string });
    expect(events[0]?.kind).toBe('run-start');
    expect(events.at(-1)?.kind).toBe('run-finish');
    expect(events.map((e) => e.kind)).toContain('approval');
  });

  it('a failed run exits 1 and says how to resume', async () => {
    const failing = defineRunbook({
      ...runbook.definition,
      id: 'cli-failing',
      steps: (s) => [
        s({
          id: 'boom',
          title: 'Boom',
          phase: 'restoration',
          run: () => {
            throw new Error('disk full');
          },
        }),
      ],
    });
    const t = io();
    expect(await runbookMain(failing, ['--target', 'db', '--runs-dir', runsDir()], t)).toBe(1);
    expect(t.err()).toMatch(/✘ boom: RUNBOOK_STEP_FAILED: disk full/);
    expect(t.err()).toMatch(/resume with: --resume cli-failing-\d{8}T\d{6}Z-[0-9a-f]{6}/);
  });
});
