// The sample runbook (examples/runbooks/sample.ts) run the way people and CI run it: as a
// script in its own process. Kill -9 at every step boundary then resume; a canary secret
// searched for in every record the run leaves; --plan under a guard that refuses every
// socket, process and file write; the refusals and exit codes of the command line.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HttpRecorder, startHttpRecorder } from '../packages/runbook/test/support/http-recorder.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SAMPLE = join(REPO, 'examples/runbooks/sample.ts');
const KILL_AT = join(REPO, 'test/fixtures/runbook/kill-at.ts');
const NO_IO = join(REPO, 'test/fixtures/runbook/no-io.mjs');
const STEPS = [
  'inspect',
  'check-directory',
  'decide',
  'stop-app',
  'stage',
  'use-canary',
  'write-marker',
  'start-app',
  'verify-marker',
  'cleanup',
];

const work = mkdtempSync(join(tmpdir(), 'drkit-sample-test-'));
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs node with `args` from the repo root and collects its output. */
function node(args: string[], env: Record<string, string> = {}, input?: string): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: REPO,
      env: { ...process.env, DRKIT_OPERATOR: 'sample-test', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.stdin.end(input ?? '');
    child.on('error', reject);
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function scenario(name: string) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  return { dir, marker: join(dir, 'data', 'marker'), runsDir: join(dir, 'runs') };
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

function journalOf(runsDir: string): { t: string; step?: string; status?: string }[] {
  const runs = readdirSync(runsDir).filter((d) => d.startsWith('sample-2'));
  expect(runs).toHaveLength(1);
  return readFileSync(join(runsDir, runs[0] as string, 'journal.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
}

describe('kill -9 at every step boundary, then --resume latest', () => {
  const boundaries = ['run', ...STEPS.map((s) => `step-finish:${s}`)];
  const secret = { DRKIT_CANARY_SECRET: 'kill-test-canary-value' };

  it.each(boundaries)('killed after %s: same end state, no step run twice', async (boundary) => {
    const s = scenario(`kill-${boundary.replace(':', '-')}`);
    const args = ['--marker', s.marker, '--yes', '--runs-dir', s.runsDir];
    const killed = await node(['--import', 'tsx', KILL_AT, ...args], { ...secret, DRKIT_KILL_AT: boundary });
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    const before = journalOf(s.runsDir);
    expect(before.some((r) => r.t === 'run-finish')).toBe(false);
    // The dead run's lock is still there; the resume must recover it, not wait for it.
    expect(readdirSync(join(s.dir, '.drkit-locks')).filter((f) => f.startsWith('runbook.sample.'))).not.toEqual([]);

    const resumed = await node(['--import', 'tsx', SAMPLE, '--resume', 'latest', '--yes', '--runs-dir', s.runsDir], secret);
    expect(resumed.stderr).not.toMatch(/LOCKED/);
    expect(resumed.code).toBe(0);

    expect(readFileSync(s.marker, 'utf8')).toBe('restored');
    expect(existsSync(`${s.marker}.staging`)).toBe(false);
    const ranSteps = readFileSync(`${s.marker}.steps`, 'utf8').trim().split('\n');
    expect(ranSteps).toEqual(STEPS);
    const journal = journalOf(s.runsDir);
    expect(journal.filter((r) => r.t === 'step-finish').map((r) => r.step)).toEqual(STEPS);
    expect(journal.filter((r) => r.t === 'resume')).toHaveLength(1);
    expect(journal.at(-1)).toMatchObject({ t: 'run-finish', status: 'succeeded' });
  });
});

describe('the canary secret', () => {
  let slack: HttpRecorder;
  let hook: HttpRecorder;
  beforeAll(async () => {
    slack = await startHttpRecorder();
    hook = await startHttpRecorder();
  });
  afterAll(async () => {
    await slack?.close();
    await hook?.close();
  });

  it('is used by the run and reaches no journal, log, report, notification or output', async () => {
    const s = scenario('canary');
    const canary = `canary-${randomBytes(12).toString('hex')}`;
    const notifications = join(s.dir, 'notifications.jsonl');
    const config = join(s.dir, 'drkit.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        environments: {
          staging: {
            product: 'Sample',
            notify: {
              chat: { type: 'slack', webhookUrl: { env: 'SAMPLE_SLACK_URL' } },
              status: { type: 'webhook', url: { env: 'SAMPLE_HOOK_URL' }, headers: { authorization: { env: 'SAMPLE_HOOK_AUTH' } } },
              record: { type: 'file', path: notifications },
            },
          },
        },
      }),
    );
    const outcome = await node(
      ['--import', 'tsx', SAMPLE, '--env', 'staging', '--config', config, '--marker', s.marker, '--yes', '--runs-dir', s.runsDir],
      {
        DRKIT_CANARY_SECRET: canary,
        SAMPLE_SLACK_URL: `${slack.url}/services/T0/B0/x`,
        SAMPLE_HOOK_URL: `${hook.url}/status`,
        SAMPLE_HOOK_AUTH: 'Bearer hook-token-123',
      },
    );
    expect(outcome.code, outcome.stderr).toBe(0);

    // It was used: the command saw its full length, and the log line that printed it is there, redacted.
    const records = filesUnder(s.runsDir);
    const journal = journalOf(s.runsDir);
    expect(journal.find((r) => r.t === 'step-finish' && r.step === 'use-canary')).toMatchObject({
      output: { length: canary.length },
    });
    const events = readFileSync(records.find((f) => f.endsWith('events.jsonl')) as string, 'utf8');
    expect(events).toContain('using the canary [redacted]');

    // Every record: journals (the child's too), event logs, reports, notification bodies, output.
    expect(records.map((f) => f.slice(s.runsDir.length)).sort()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/journal\.jsonl$/),
        expect.stringMatching(/report\.md$/),
        expect.stringMatching(/report\.json$/),
      ]),
    );
    const haystacks: [string, string][] = [
      ...records.map((f): [string, string] => [f, readFileSync(f, 'utf8')]),
      [notifications, readFileSync(notifications, 'utf8')],
      ...slack.requests.map((r, i): [string, string] => [`slack request ${i}`, r.raw]),
      ...hook.requests.map((r, i): [string, string] => [`webhook request ${i}`, r.raw]),
      ['stdout', outcome.stdout],
      ['stderr', outcome.stderr],
    ];
    expect(slack.requests.length).toBeGreaterThanOrEqual(2);
    expect(hook.requests.length).toBeGreaterThanOrEqual(2);
    expect(hook.requests[0]?.headers.authorization).toBe('Bearer hook-token-123');
    const forms = [canary, Buffer.from(canary).toString('base64'), 'hook-token-123', '/services/T0/B0/x'];
    for (const [where, text] of haystacks) for (const form of forms) expect(text.includes(form), `${form} in ${where}`).toBe(false);
  });
});

describe('the command line', () => {
  it('--plan prints every step, phase, budget, gate and effect, with no socket, process or write', async () => {
    const s = scenario('plan');
    const config = join(s.dir, 'drkit.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        environments: {
          staging: {
            services: { api: { type: 'command', start: 'systemctl start api', stop: 'systemctl stop api' } },
            health: { api: { type: 'http', url: 'http://127.0.0.1:9/health' } },
            notify: { chat: { type: 'slack', webhookUrl: { env: 'UNSET_SLACK_URL' } } },
          },
        },
      }),
    );
    // Node runs the sample itself (type stripping), so no compiler process is started either.
    const outcome = await node([
      '--import',
      NO_IO,
      SAMPLE,
      '--plan',
      '--env',
      'staging',
      '--config',
      config,
      '--app',
      'api',
      '--health-check',
      'api',
      '--marker',
      s.marker,
      '--runs-dir',
      s.runsDir,
    ]);
    expect(outcome.code, outcome.stderr).toBe(0);
    const violations = JSON.parse(/NO-IO-VIOLATIONS (.*)/.exec(outcome.stderr)?.[1] ?? 'null');
    expect(violations).toEqual([]);
    for (const step of STEPS) expect(outcome.stdout).toContain(`${step}: `);
    expect(outcome.stdout).toMatch(/Phase detection \(budget 15m 00s\)/);
    expect(outcome.stdout).toMatch(/Phase restoration \(budget 20m 00s\)/);
    expect(outcome.stdout).toMatch(/RTO 1h 00m 00s/);
    expect(outcome.stdout).toMatch(/gate: Restore the marker file now\?/);
    expect(outcome.stdout).toMatch(/write-marker: Replace the marker file {2}\[DESTRUCTIVE/);
    expect(outcome.stdout).toContain(`write 8 bytes to ${s.marker}.staging`);
    expect(outcome.stdout).toMatch(/canary: from DRKIT_CANARY_SECRET \(NOT SET/);
    // The service's commands are described, not run.
    expect(outcome.stdout).toContain('systemctl stop api');
    expect(outcome.stdout).toContain('systemctl start api');
    expect(existsSync(s.runsDir)).toBe(false);
    expect(existsSync(s.marker)).toBe(false);
  });

  it('the guard of the --plan test does catch a socket, a process and a write', async () => {
    const probe = join(work, 'probe.mjs');
    writeFileSync(
      probe,
      [
        "import { spawn } from 'node:child_process'; import net from 'node:net'; import { writeFileSync } from 'node:fs';",
        "for (const f of [() => spawn('true'), () => net.connect(1, '127.0.0.1'), () => writeFileSync('/tmp/x-no-io', 'x')]) { try { f(); } catch {} }",
      ].join('\n'),
    );
    const outcome = await node(['--import', NO_IO, probe]);
    const violations = JSON.parse(/NO-IO-VIOLATIONS (.*)/.exec(outcome.stderr)?.[1] ?? 'null') as string[];
    expect(violations).toHaveLength(3);
  });

  it('without a TTY and without --yes the run refuses at once with exit code 3 and changes nothing', async () => {
    const s = scenario('refuse');
    const outcome = await node(['--import', 'tsx', SAMPLE, '--marker', s.marker, '--runs-dir', s.runsDir], {
      DRKIT_CANARY_SECRET: 'refuse-canary',
    });
    expect(outcome.code).toBe(3);
    expect(outcome.stderr).toMatch(/RUNBOOK_REFUSED: refusing to start: steps decide, write-marker need a confirmation.*--yes/);
    expect(existsSync(s.marker)).toBe(false);
    expect(existsSync(`${s.marker}.steps`)).toBe(false);
  });

  it('--dry-run runs the read-only checks and prints what the rest would do', async () => {
    const s = scenario('dry-run');
    const outcome = await node(['--import', 'tsx', SAMPLE, '--dry-run', '--marker', s.marker, '--runs-dir', s.runsDir], {
      DRKIT_CANARY_SECRET: 'dry-run-canary',
    });
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(outcome.stderr).toMatch(/write-marker: Replace the marker file: would run \(DESTRUCTIVE\)/);
    expect(existsSync(s.marker)).toBe(false);
    expect(outcome.stderr).toMatch(
      /verify-marker: Verify the marker content: would run\n.*cannot check in a dry run: it depends on the output of step "write-marker"/,
    );
    expect(readFileSync(`${s.marker}.steps`, 'utf8').trim().split('\n')).toEqual(['inspect', 'check-directory']);
  });

  it('a missing required param, a missing secret and an unknown flag are usage errors (exit 2)', async () => {
    const s = scenario('usage');
    const missing = await node(['--import', 'tsx', SAMPLE, '--yes', '--runs-dir', s.runsDir], { DRKIT_CANARY_SECRET: 'x-canary' });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/marker \(--marker\)/);
    const noSecret = await node(['--import', 'tsx', SAMPLE, '--yes', '--marker', s.marker, '--runs-dir', s.runsDir], {
      DRKIT_CANARY_SECRET: '',
    });
    expect(noSecret.code).toBe(2);
    expect(noSecret.stderr).toMatch(/DRKIT_CANARY_SECRET/);
    const unknown = await node(['--import', 'tsx', SAMPLE, '--markr', 'x']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown flag --markr/);
  });
});
