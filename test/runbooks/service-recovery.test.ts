// service-recovery.ts against a real platform: the demo app is killed with SIGKILL for real,
// the runbook runs as its own process, and the recovery is checked with our own HTTP request
// and the app's pid file, never with the runbook's word for it.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPidAlive } from '@drkit/runbook';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type TestPlatform } from '../support/platform.ts';

let platform: TestPlatform;
/** A stand-in for the Telegram Bot API: answers getWebhookInfo and records the paths asked for. */
let telegram: { server: Server; url: string; paths: string[] };
const BOT_TOKEN = `123456:${Math.random().toString(36).slice(2)}-e2e-token`;

function appPid(): number {
  return Number(readFileSync(join(platform.dir, 'app', 'demo-app.pid'), 'utf8').trim());
}

async function healthStatus(): Promise<number | string> {
  try {
    return (await fetch(`${platform.app.url}/health`, { signal: AbortSignal.timeout(5000) })).status;
  } catch (error) {
    return error instanceof Error ? (((error.cause as { code?: string } | undefined)?.code ?? error.message) as string) : String(error);
  }
}

/** The app is up (started through its controller if a test left it down) and healthy. */
async function ensureAppUp(): Promise<number> {
  if (!isPidAlive(appPid())) await platform.app.controller.start();
  const deadline = Date.now() + 30_000;
  while ((await healthStatus()) !== 200) {
    if (Date.now() > deadline) throw new Error('the demo app did not become healthy');
    await sleep(100);
  }
  return appPid();
}

/** The disaster: kill -9 the app, as the OOM killer would, and wait until it is gone. */
async function killApp(): Promise<number> {
  const pid = appPid();
  process.kill(pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (isPidAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} survived SIGKILL`);
    await sleep(50);
  }
  return pid;
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

function reportOf(run: string | undefined): string {
  expect(run).toBeDefined();
  return readFileSync(join(platform.runsDir, run as string, 'report.md'), 'utf8');
}

/** What a run printed: the plan on stdout, the run's events and logs on stderr. */
const output = (o: { stdout: string; stderr: string }) => `${o.stdout}\n${o.stderr}`;

/** The outputs of the finished steps of a run, from its journal. */
function journalOutputs(run: string): Record<string, unknown> {
  const records = readFileSync(join(platform.runsDir, run, 'journal.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { t: string; step?: string; output?: unknown });
  return Object.fromEntries(records.filter((r) => r.t === 'step-finish').map((r) => [r.step, r.output]));
}

const slackTexts = () => platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');

beforeAll(async () => {
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, result: { url: 'https://bot.example.test/hook', pending_update_count: 2 } }));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  telegram = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, paths };
  platform = await startPlatform();
}, 120_000);

afterAll(async () => {
  await platform?.stop();
  await new Promise((done) => telegram?.server.close(done));
}, 60_000);

describe('service-recovery runbook', () => {
  it('leaves a healthy app alone with --restart auto (same pid, "nothing to do")', async () => {
    const pid = await ensureAppUp();
    platform.slack.requests.length = 0;
    const outcome = await platform.runbook('service-recovery', ['--restart', 'auto', '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    expect(output(outcome)).toMatch(/healthy, nothing to do/);
    expect(appPid()).toBe(pid);
    expect(isPidAlive(pid)).toBe(true);
    expect(await healthStatus()).toBe(200);
  }, 180_000);

  it('--dry-run on a killed app diagnoses it and starts nothing', async () => {
    await ensureAppUp();
    const dead = await killApp();
    platform.slack.requests.length = 0;
    const outcome = await platform.runbook('service-recovery', ['--dry-run']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    // The checks ran for real and saw the failure; the restart was only described.
    expect(output(outcome)).toMatch(/health check app FAILS/);
    expect(output(outcome)).toMatch(/restart: .*would run \(DESTRUCTIVE\)/);
    // Nothing was started: the pid file still names the dead process and nothing listens.
    expect(appPid()).toBe(dead);
    expect(isPidAlive(dead)).toBe(false);
    expect(await healthStatus()).not.toBe(200);
    expect(platform.slack.requests).toEqual([]);
  }, 180_000);

  it('recovers an app killed with SIGKILL: new pid, /health 200, the bot webhook checked, alert and resolution sent', async () => {
    await ensureAppUp();
    const dead = await killApp();
    expect(await healthStatus()).not.toBe(200);
    platform.slack.requests.length = 0;
    const runsBefore = runDirs();
    const outcome = await platform.runbook('service-recovery', ['--yes', '--webhook-check', `${telegram.url}/bot{token}/getWebhookInfo`], {
      env: { TELEGRAM_BOT_TOKEN: BOT_TOKEN },
    });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    // Independent checks: a new process answers /health.
    const pid = appPid();
    expect(pid).not.toBe(dead);
    expect(isPidAlive(pid)).toBe(true);
    expect(await healthStatus()).toBe(200);

    // What it found and what it did, in its output and its report.
    expect(output(outcome)).toMatch(/health check app FAILS/);
    expect(output(outcome)).toMatch(/app \(command\) is stopped: pid \d+ .* is not running/);
    expect(output(outcome)).toMatch(/starting app/);
    expect(output(outcome)).toMatch(/category 2/);
    const run = runDirs().find((d) => !runsBefore.includes(d));
    const report = reportOf(run);
    expect(report).toMatch(/\| `check-health` \| detection \| succeeded/);
    expect(report).toMatch(/\| `restart` \| recovery \| succeeded/);
    expect(report).toMatch(/\| `check-webhook` \| verification \| succeeded/);
    expect(report).toMatch(/\*\*succeeded\*\*/);
    // The bot's webhook was asked for with the real token, which appears nowhere in what the run wrote.
    expect(telegram.paths).toContain(`/bot${BOT_TOKEN}/getWebhookInfo`);
    expect(output(outcome)).toMatch(/webhook set to https:\/\/bot\.example\.test\/hook; 2 update\(s\) pending/);
    expect(output(outcome)).not.toContain(BOT_TOKEN);
    for (const file of readdirSync(join(platform.runsDir, run as string)))
      expect(readFileSync(join(platform.runsDir, run as string, file), 'utf8')).not.toContain(BOT_TOKEN);
    // The journal keeps the findings: the failed probe, the decision and the start.
    const outputs = journalOutputs(run as string);
    expect(outputs['check-health']).toMatchObject({ health: { name: 'app', ok: false } });
    expect(outputs.decide).toMatchObject({ category: 2, restart: [{ name: 'app' }] });
    expect(outputs.restart).toMatchObject({ restarted: [{ name: 'app', action: 'start', after: { state: 'running' } }] });

    const texts = slackTexts();
    expect(texts[0]).toMatch(/JARVIS INCIDENT - Sev2/);
    expect(texts.at(-1)).toMatch(/JARVIS INCIDENT RESOLVED/);
  }, 180_000);

  it('fails (exit 1) naming the service when a restart does not bring it back', async () => {
    const pid = await ensureAppUp();
    const config = platform.writeConfig((sandbox) => {
      const services = sandbox.services as Record<string, unknown>;
      // A service that cannot start: its start command fails, its status says stopped.
      services.broken = { type: 'command', start: 'echo "cannot bind" >&2; exit 3', stop: 'true', status: 'exit 1' };
    }, 'broken.config.json');
    platform.slack.requests.length = 0;
    const outcome = await platform.runbook('service-recovery', ['--service', 'broken', '--yes'], { config });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(1);
    expect(output(outcome)).toMatch(/service "broken"/);
    expect(output(outcome)).toMatch(/exit(ed)? (code )?3/);
    // The healthy app was not touched.
    expect(appPid()).toBe(pid);
    expect(await healthStatus()).toBe(200);
    // The failure went to the incident channel, not a resolution.
    expect(slackTexts().some((t) => /RESOLVED/.test(t))).toBe(false);
  }, 180_000);
});
