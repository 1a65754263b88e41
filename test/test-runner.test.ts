import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { findSandboxProcesses } from '@drkit/sandbox';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const config = fileURLToPath(new URL('./fixtures/runner/vitest.config.ts', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'drkit-runner-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Report {
  numPassedTests: number;
  numFailedTests: number;
  testResults: { assertionResults: { title: string; status: string; failureMessages: string[] }[] }[];
}

/** Runs vitest on one fixture file with the project's setup and returns its JSON report. */
function runFixture(file: string, env: Record<string, string> = {}): Promise<{ code: number; report: Report }> {
  const output = join(work, `${file}.json`);
  return new Promise((resolve) => {
    execFile(
      join(root, 'node_modules/.bin/vitest'),
      ['run', '--config', config, '--reporter=json', `--outputFile=${output}`, file],
      { cwd: root, env: { ...process.env, ...env, CI: 'true' } },
      (error) => {
        const code = error ? Number((error as { code?: number }).code ?? 1) : 0;
        resolve({ code, report: JSON.parse(readFileSync(output, 'utf8')) as Report });
      },
    );
  });
}

function results(report: Report) {
  return report.testResults.flatMap((f) => f.assertionResults);
}

describe('the test setup', () => {
  it('fails a test during which the console is written to, and only that test', async () => {
    const { code, report } = await runFixture('console.fixture.ts');
    expect(code).not.toBe(0);
    const byTitle = Object.fromEntries(results(report).map((r) => [r.title, r]));
    expect(byTitle['writes to the console']?.status).toBe('failed');
    expect(byTitle['writes to the console']?.failureMessages.join('\n')).toMatch(/console\.log\(hello from a library\)/);
    expect(byTitle['stays quiet']?.status).toBe('passed');
  });

  it('leaves no sandbox process or dir after tests that throw, with and without stop()', async () => {
    const dirsFile = join(work, 'dirs.txt');
    const { code, report } = await runFixture('sandbox-throws.fixture.ts', { DRKIT_FIXTURE_DIRS: dirsFile });
    expect(code).not.toBe(0);
    expect(report.numFailedTests).toBe(2);
    const dirs = readFileSync(dirsFile, 'utf8').trim().split('\n');
    expect(dirs).toHaveLength(4);
    for (const dir of dirs) {
      let left = findSandboxProcesses(dir);
      for (let i = 0; i < 50 && left.length > 0; i++) {
        await sleep(100);
        left = findSandboxProcesses(dir);
      }
      expect(left).toEqual([]);
      expect(() => readFileSync(join(dir, 'nothing'))).toThrow(/ENOENT/);
    }
  });
});
