// The engine's incident messages on the wall clock, delivered over real HTTP to a local server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineRunbook, run } from '../src/index.js';
import { type HttpRecorder, startHttpRecorder } from './support/http-recorder.js';

let slack: HttpRecorder;
const dirs: string[] = [];
beforeAll(async () => {
  slack = await startHttpRecorder();
});
afterAll(async () => {
  await slack?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('notifications of a run on the wall clock', () => {
  it('an overrunning phase is announced within a second, while its step is still running', async () => {
    let overrunSeenDuringStep = false;
    const runbook = defineRunbook({
      id: 'slow-restore',
      title: 'Slow restore',
      severity: 'sev1',
      category: 3,
      impact: 'Checkout is down',
      rto: '1h',
      params: z.object({}),
      phases: { restoration: '300ms', verification: '1m' },
      steps: (s) => [
        s({
          id: 'restore',
          title: 'Restore',
          phase: 'restoration',
          run: async (ctx) => {
            // Poll the real server: the overrun message must arrive before this step ends.
            const deadline = Date.now() + 3000;
            while (Date.now() < deadline) {
              if (slack.requests.some((r) => r.raw.includes('OVER BUDGET'))) {
                overrunSeenDuringStep = true;
                break;
              }
              await ctx.sleep(50);
            }
            return null;
          },
        }),
        s({ id: 'check', title: 'Check', phase: 'verification', readOnly: true, run: () => null }),
      ],
    });
    const dir = mkdtempSync(join(tmpdir(), 'drkit-notify-run-'));
    dirs.push(dir);
    const started = Date.now();
    const result = await run(runbook, {
      runsDir: join(dir, 'runs'),
      environment: 'production',
      config: {
        environments: {
          production: { product: 'Acme', notify: { chat: { type: 'slack', webhookUrl: { env: 'TEST_SLACK_URL' } } } },
        },
      },
      env: { TEST_SLACK_URL: `${slack.url}/hooks/secret-path` },
    });
    expect(result.status).toBe('succeeded');
    expect(overrunSeenDuringStep).toBe(true);
    const overrun = slack.requests.find((r) => r.raw.includes('OVER BUDGET'));
    expect(overrun).toBeDefined();
    const texts = slack.requests.map((r) => (r.body as { text: string }).text);
    expect(texts[0]).toMatch(
      /^(<!here> )?🚨 ACME INCIDENT - Sev1 - Critical\n\nImpact: Checkout is down\nStatus: .*\nETA: Unknown\n\nUpdates will follow every 15 minutes\./,
    );
    expect(texts.at(-1)).toMatch(/✅ ACME INCIDENT RESOLVED\n\nDuration: \d+ seconds?\nImpact: Checkout is down\nRoot Cause: /);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.report?.notifications.filter((n) => n.ok).length).toBe(slack.requests.length);
  });

  it('a routine job (notify: "failures") is silent while it works and sends one failure message when it does not', async () => {
    const routine = (fail: boolean) =>
      defineRunbook({
        id: 'nightly-backup',
        title: 'Scheduled backup',
        severity: 'sev3',
        category: 3,
        rto: '1h',
        notify: 'failures',
        params: z.object({}),
        phases: { backup: '10ms' },
        steps: (s) => [
          s({
            id: 'take',
            title: 'Take the backup',
            phase: 'backup',
            run: async (ctx) => {
              // Past the phase budget: an incident runbook would announce the overrun.
              await ctx.sleep(50);
              if (fail) throw new Error('the store refused the upload');
              return null;
            },
          }),
        ],
      });
    const dir = mkdtempSync(join(tmpdir(), 'drkit-notify-routine-'));
    dirs.push(dir);
    const options = (name: string) => ({
      runsDir: join(dir, name),
      environment: 'production',
      config: {
        environments: {
          production: { product: 'Acme', notify: { chat: { type: 'slack', webhookUrl: { env: 'TEST_SLACK_URL' } } } },
        },
      },
      env: { TEST_SLACK_URL: `${slack.url}/hooks/routine` },
    });
    const before = slack.requests.length;
    const ok = await run(routine(false), options('ok'));
    expect(ok.status).toBe('succeeded');
    expect(slack.requests.length).toBe(before);

    const failed = await run(routine(true), options('failed'));
    expect(failed.status).toBe('failed');
    const sent = slack.requests.slice(before).map((r) => (r.body as { text: string }).text);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatch(/^(<!here> )?❌ ACME SCHEDULED BACKUP FAILED - Sev3/);
    expect(sent[0]).toContain('the store refused the upload');
    expect(sent[0]).toContain('Status: Scheduled backup did not complete.');
    expect(sent[0]).not.toContain('INCIDENT');
  });

  it('--yes approves destructive steps at once and pages nobody for an approval', async () => {
    const runbook = defineRunbook({
      id: 'prune-old',
      title: 'Prune',
      severity: 'sev3',
      category: 3,
      rto: '1h',
      params: z.object({}),
      phases: { only: '1m' },
      steps: (s) => [
        s({ id: 'delete', title: 'Delete old backups', phase: 'only', destructive: true, plan: () => 'delete 3 backups', run: () => null }),
      ],
    });
    const dir = mkdtempSync(join(tmpdir(), 'drkit-notify-yes-'));
    dirs.push(dir);
    const before = slack.requests.length;
    const result = await run(runbook, {
      runsDir: join(dir, 'runs'),
      yes: true,
      environment: 'production',
      config: { environments: { production: { notify: { chat: { type: 'slack', webhookUrl: { env: 'TEST_SLACK_URL' } } } } } },
      env: { TEST_SLACK_URL: `${slack.url}/hooks/yes` },
    });
    expect(result.status).toBe('succeeded');
    const sent = slack.requests.slice(before).map((r) => (r.body as { text: string }).text);
    expect(sent).toHaveLength(2);
    expect(sent.some((t) => t.includes('APPROVAL'))).toBe(false);
  });
});
