// Every runbook in runbooks/ planned against each environment of the example config, under a
// guard that refuses every socket, process and file write: --plan must list every
// step, phase budget and declared effect, and touch nothing.

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Runbook } from '@drkit/runbook';
import { describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const NO_IO = join(REPO, 'test/fixtures/runbook/no-io.mjs');

/** The params each runbook cannot plan without (the rest have defaults). */
const REQUIRED: Record<string, string[]> = {
  'accidental-file-deletion': ['--path', 'uploads/2025/10/'],
  'treasury-emergency': ['--reason', 'DR drill'],
  'security-breach': ['--breach-time', '2026-11-01T00:00:00Z', '--known-good', 'v1.2.3'],
  'point-in-time-recovery': ['--to', '2026-11-22T10:00:00Z'],
};

/** The environments of the example config: Kubernetes, Docker Compose, this machine. */
const ENVIRONMENTS = ['production', 'staging', 'sandbox'];

const runbooks = readdirSync(join(REPO, 'runbooks'))
  .filter((name) => name.endsWith('.ts'))
  .map((name) => name.slice(0, -3));

function plan(name: string, environment: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Node runs the runbook itself (type stripping), so no compiler process is started either.
    const child = spawn(
      process.execPath,
      [
        '--import',
        NO_IO,
        join(REPO, 'runbooks', `${name}.ts`),
        '--plan',
        '--env',
        environment,
        '--config',
        join(REPO, 'examples/drkit.config.ts'),
        ...(REQUIRED[name] ?? []),
      ],
      { cwd: REPO, env: { ...process.env, DRKIT_OPERATOR: 'plan-test' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('--plan of every runbook', () => {
  it('finds the recovery runbooks of both plans', () => {
    expect(runbooks).toEqual(
      expect.arrayContaining([
        'database-corruption',
        'redis-data-loss',
        'accidental-file-deletion',
        'complete-system-failure',
        'service-recovery',
        'database-connection-issues',
        'treasury-emergency',
        'security-breach',
      ]),
    );
  });

  for (const [name, environment] of runbooks.flatMap((n) => ENVIRONMENTS.map((e) => [n, e] as const))) {
    it(`${name} --env ${environment}: lists every step with its phase budget and effects, and does no I/O`, async () => {
      const runbook = (await import(join(REPO, 'runbooks', `${name}.ts`))).default as Runbook;
      const outcome = await plan(name, environment);
      expect(outcome.code, outcome.stderr).toBe(0);
      const violations = JSON.parse(/NO-IO-VIOLATIONS (.*)/.exec(outcome.stderr)?.[1] ?? 'null');
      expect(violations).toEqual([]);
      for (const step of runbook.steps) expect(outcome.stdout).toContain(`${step.id}: `);
      for (const phase of runbook.phases) expect(outcome.stdout).toContain(`Phase ${phase.name} (budget`);
      // Destructive steps are marked, and production asks for its own name.
      const destructive = runbook.steps.filter((s) => s.definition.destructive === true);
      for (const step of destructive) expect(outcome.stdout).toMatch(new RegExp(`${step.id}: .*\\[DESTRUCTIVE`));
      // Plans read the config: nothing is left as an unresolved placeholder.
      expect(outcome.stdout).not.toMatch(/undefined|\[object Object\]/);
    }, 60_000);
  }
});
