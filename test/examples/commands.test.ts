// Every runbook command line of the scheduling examples and of the README's code blocks,
// planned against examples/drkit.config.ts under the guard that refuses every socket, process
// and file write (as test/runbooks/plan.test.ts plans each runbook): a flag renamed, a param
// removed or an environment missing fails here, so an example never drifts from its runbook.
// The backup schedules of the cron and Kubernetes examples are also held to the tiers the
// config's environments declare.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@drkit/runbook';
import { describe, expect, it } from 'vitest';
import { platformSchema } from '../../runbooks/lib/platform.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const NO_IO = join(REPO, 'test/fixtures/runbook/no-io.mjs');
const CONFIG = join(REPO, 'examples/drkit.config.ts');
const SOURCES = ['examples/ci/dr-drill.yml', 'examples/kubernetes/backup-cronjobs.yaml', 'examples/cron/drkit.crontab', 'README.md'];

/** One command line found in a source. */
interface Found {
  source: string;
  line: number;
  runbook: string;
  args: string[];
  /** The whole line, for the cron schedule check. */
  text: string;
}

/** Shell words up to the first unquoted operator (`>>`, `2>&1`, `&&`, `|`, `;`): the runbook's own arguments. */
function shellWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end === -1) throw new Error(`unbalanced ${c} in: ${text}`);
      word = (word ?? '') + text.slice(i + 1, end);
      i = end;
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text[++i];
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (/[<>|&;]/.test(c) || (/\d/.test(c) && word === undefined && text[i + 1] === '>')) {
      break;
    } else word = (word ?? '') + c;
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** The lines that can hold commands: a README's fenced code blocks and inline commands; elsewhere every line but comments. */
function commandLines(source: string, text: string): { line: number; text: string }[] {
  const lines = text.split('\n');
  const out: { line: number; text: string }[] = [];
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] as string;
    const number = i + 1;
    if (source.endsWith('.md') && line.trimStart().startsWith('```')) {
      fenced = !fenced;
      continue;
    }
    if (source.endsWith('.md') && !fenced) {
      // Outside code blocks, inline code that is a whole command (`tsx runbooks/x.ts --env ...`, as in tables).
      for (const span of line.matchAll(/`((?:pnpm exec )?tsx runbooks\/[^`]+)`/g))
        out.push({ line: number, text: (span[1] as string).replaceAll('\\|', '|') });
      continue;
    }
    if (line.trimStart().startsWith('#')) continue;
    // Shell continuation lines make one command.
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line.slice(0, -1)} ${lines[++i]}`;
    out.push({ line: number, text: line });
  }
  return out;
}

function extract(source: string): Found[] {
  const text = readFileSync(join(REPO, source), 'utf8');
  const found: Found[] = [];
  for (const { line, text: content } of commandLines(source, text)) {
    const match = /runbooks\/([a-z0-9-]+)\.ts\b/.exec(content);
    if (!match) continue;
    const runbook = match[1] as string;
    // A Kubernetes `command: ["tsx", "runbooks/x.ts", "--env", ...]` is a JSON array.
    const array = /\[\s*"[^\]]*\]/.exec(content);
    let args: string[];
    if (array?.[0].includes(match[0])) {
      const items = JSON.parse(array[0]) as string[];
      args = items.slice(items.findIndex((item) => item.endsWith(`runbooks/${runbook}.ts`)) + 1);
    } else {
      // Comments after a command (`# ...`) are not its arguments.
      args = shellWords(content.slice((match.index as number) + match[0].length).replace(/\s#.*$/, ''));
    }
    found.push({ source, line, runbook, args, text: content });
  }
  return found;
}

/** The mode flags an example may carry; the test plans every command instead. */
function planArgs(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--yes' || arg === '--dry-run' || arg === '--plan') continue;
    if (arg === '--resume') {
      i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
}

function plan(runbook: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Node runs the runbook itself (type stripping), so no compiler process is started either.
    const child = spawn(
      process.execPath,
      ['--import', NO_IO, join(REPO, 'runbooks', `${runbook}.ts`), ...args, '--plan', '--config', CONFIG],
      {
        cwd: REPO,
        env: { ...process.env, DRKIT_OPERATOR: 'examples-test' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const commands = SOURCES.flatMap(extract);
const config = await loadConfig({ file: CONFIG, env: process.env });

describe('the command lines of the examples and the README', () => {
  it('are found where they are expected', () => {
    const count = (source: string, runbook: string) => commands.filter((c) => c.source === source && c.runbook === runbook).length;
    expect(count('examples/ci/dr-drill.yml', 'dr-drill')).toBe(1);
    expect(count('examples/kubernetes/backup-cronjobs.yaml', 'backup')).toBe(3);
    expect(count('examples/kubernetes/backup-cronjobs.yaml', 'verify-backups')).toBe(1);
    expect(count('examples/cron/drkit.crontab', 'backup')).toBe(3);
    expect(count('examples/cron/drkit.crontab', 'verify-backups')).toBe(1);
    expect(count('examples/cron/drkit.crontab', 'dr-drill')).toBe(1);
    for (const runbook of ['backup', 'verify-backups', 'dr-drill', 'database-corruption'])
      expect(count('README.md', runbook)).toBeGreaterThan(0);
  });

  it('name environments of examples/drkit.config.ts', () => {
    for (const command of commands) {
      const environment = flag(command.args, '--env');
      expect(environment, `${command.source}:${command.line}`).toBeDefined();
      expect(config.environments, `${command.source}:${command.line}`).toContain(environment);
    }
  });

  it('schedule each backup tier when the config says it runs', () => {
    const scheduled = [
      ...commands
        .filter((c) => c.source === 'examples/cron/drkit.crontab')
        .map((c) => ({ ...c, schedule: c.text.trim().split(/\s+/).slice(0, 5).join(' ') })),
      ...extractCronJobSchedules(),
    ].filter((c) => c.runbook === 'backup');
    expect(scheduled).toHaveLength(6);
    for (const command of scheduled) {
      const environment = flag(command.args, '--env') as string;
      const tier = flag(command.args, '--tier') as string;
      const tiers = platformSchema.parse(config.environment(environment).vars).backup.tiers as Record<string, { schedule?: string }>;
      expect(command.schedule, `${command.source}:${command.line} --tier ${tier}`).toBe(tiers[tier]?.schedule);
    }
  });

  for (const command of commands) {
    it(`${command.source}:${command.line}: ${command.runbook} ${command.args.join(' ')} plans with exit 0 and no I/O`, async () => {
      const outcome = await plan(command.runbook, planArgs(command.args));
      expect(outcome.code, outcome.stderr).toBe(0);
      const violations = JSON.parse(/NO-IO-VIOLATIONS (.*)/.exec(outcome.stderr)?.[1] ?? 'null');
      expect(violations).toEqual([]);
      if (command.args.includes('--help')) expect(outcome.stdout).toContain('usage:');
      else expect(outcome.stdout).toContain(`Plan of runbook "${command.runbook}"`);
    }, 60_000);
  }
});

/** Each CronJob's schedule beside its command (the schedule comes first in the document). */
function extractCronJobSchedules(): (Found & { schedule: string })[] {
  const source = 'examples/kubernetes/backup-cronjobs.yaml';
  const documents = readFileSync(join(REPO, source), 'utf8').split(/^---$/m);
  const found = extract(source);
  return found.map((command) => {
    const document = documents.find((d) => d.includes(command.text)) ?? '';
    const schedule = /^\s*schedule:\s*['"]([^'"]+)['"]/m.exec(document)?.[1] ?? '';
    return { ...command, schedule };
  });
}
