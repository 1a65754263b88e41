import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { virtualClock } from '../../src/clock.js';
import { RunbookError } from '../../src/errors.js';
import { createLogger, type LogEntry } from '../../src/log.js';
import { createDispatcher } from '../../src/notify/dispatcher.js';
import { createFileNotifier } from '../../src/notify/file.js';
import type { Notification, Notifier } from '../../src/notify/notifier.js';
import { createSlackNotifier } from '../../src/notify/slack.js';
import { renderFailure, renderInitial } from '../../src/notify/templates.js';
import { createWebhookNotifier } from '../../src/notify/webhook.js';
import { REDACTED, Redactor } from '../../src/redact.js';
import { type HttpRecorder, startHttpRecorder } from '../support/http-recorder.js';

const START = Date.UTC(2026, 0, 1, 9);

const recorders: HttpRecorder[] = [];
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((r) => r.close()));
});

async function recorder(): Promise<HttpRecorder> {
  const r = await startHttpRecorder();
  recorders.push(r);
  return r;
}

const info = {
  product: 'Acme',
  severity: 'sev1' as const,
  title: 'Database corruption recovery',
  environment: 'production',
  runId: 'run-7',
  impact: 'Orders cannot be placed',
  status: 'Restoring',
  startedAt: START,
  now: START,
};

function sample(kind: Notification['kind'], i: number): Notification {
  return { ...renderInitial(info), kind, title: `message ${i}` };
}

function capture() {
  const entries: LogEntry[] = [];
  return { entries, log: createLogger({ sink: (e) => entries.push(e) }) };
}

/** A notifier that records what it got, optionally failing or waiting first. */
function fake(name: string, behaviour: (n: Notification) => Promise<void> | void = () => {}): Notifier & { got: Notification[] } {
  const got: Notification[] = [];
  return {
    name,
    type: 'fake',
    got,
    async send(n) {
      await behaviour(n);
      got.push(n);
    },
  };
}

describe('createDispatcher', () => {
  it('redacts secrets before any notifier sees them: the HTTP bodies never contain the canary', async () => {
    const canary = `canary-${randomBytes(12).toString('hex')}`;
    const redactor = new Redactor();
    redactor.add(canary);
    const slackServer = await recorder();
    const hookServer = await recorder();
    const stream = new PassThrough();
    let printed = '';
    stream.on('data', (chunk: Buffer) => {
      printed += chunk.toString('utf8');
    });
    const seen = fake('seen');
    const dispatcher = createDispatcher({
      redactor,
      notifiers: [
        createSlackNotifier({ webhookUrl: `${slackServer.url}/services/T/B/x` }),
        createWebhookNotifier({ url: `${hookServer.url}/status` }),
        createFileNotifier({ stream }),
        seen,
      ],
    });
    const base64 = Buffer.from(canary).toString('base64');
    const failure = renderFailure(
      { ...info, step: `connect with ${canary}`, detail: `psql: password ${canary} rejected (${base64})` },
      { next: `retry with PGPASSWORD=${encodeURIComponent(canary)}` },
    );
    dispatcher.notify({ ...failure, title: `${failure.title} ${canary}`, fields: { ...failure.fields, [`key-${canary}`]: canary } });
    const results = await dispatcher.flush();

    expect(results.map((r) => r.ok)).toEqual([true, true, true, true]);
    const bodies = [...slackServer.requests, ...hookServer.requests].map((r) => r.raw);
    expect(bodies).toHaveLength(2);
    const everything = [...bodies, printed, JSON.stringify(seen.got)].join('\n');
    for (const form of [canary, base64, Buffer.from(canary).toString('base64url'), encodeURIComponent(canary)]) {
      expect(everything).not.toContain(form);
    }
    expect(bodies[0]).toContain(REDACTED);
    expect(bodies[1]).toContain(REDACTED);
    expect(printed).toContain(`Failed step: connect with ${REDACTED}`);
    expect(seen.got[0]?.fields[`key-${REDACTED}`]).toBe(REDACTED);
  });

  it('records and logs a failing notifier without throwing, and still delivers to the others', async () => {
    const server = await recorder();
    server.fallback = 400;
    const { entries, log } = capture();
    const redactor = new Redactor();
    redactor.add('hunter2-password');
    const ok = fake('ok');
    const clock = virtualClock(START);
    const dispatcher = createDispatcher({
      log,
      redactor,
      clock,
      notifiers: [
        createSlackNotifier({ name: 'ops-slack', webhookUrl: `${server.url}/services/T/B/secret-token` }),
        {
          name: 'broken',
          type: 'custom',
          send() {
            throw new RunbookError('RUNBOOK_NOTIFY_FAILED', 'broken: could not log in with hunter2-password');
          },
        },
        ok,
      ],
    });

    const results = await dispatcher.send(sample('initial', 1));
    expect(results.map((r) => [r.notifier, r.ok, r.code])).toEqual([
      ['ops-slack', false, 'RUNBOOK_NOTIFY_FAILED'],
      ['broken', false, 'RUNBOOK_NOTIFY_FAILED'],
      ['ok', true, undefined],
    ]);
    expect(results[0]?.error).toContain('Slack notifier "ops-slack"');
    expect(results[0]?.error).not.toContain('secret-token');
    expect(results[1]?.error).toBe(`broken: could not log in with ${REDACTED}`);
    expect(results[0]).toMatchObject({ kind: 'initial', runId: 'run-7', startedAt: START, durationMs: 0, title: 'message 1' });
    expect(ok.got).toHaveLength(1);
    expect(dispatcher.deliveries()).toHaveLength(3);

    const warnings = entries.filter((e) => e.level === 'warn');
    expect(warnings).toHaveLength(2);
    expect(warnings.every((w) => w.source === 'notify')).toBe(true);
    expect(warnings.map((w) => w.fields?.notifier).sort()).toEqual(['broken', 'ops-slack']);
    expect(JSON.stringify(entries)).not.toContain('hunter2-password');
  });

  it('delivers in order to each notifier, and flush awaits fire-and-forget notifications', async () => {
    // The first message is the slowest: without a queue per notifier it would arrive last.
    const delays = [30, 0, 10];
    const slow = fake('slow', (n) => new Promise((resolve) => setTimeout(resolve, delays[Number(n.title.split(' ')[1])] ?? 0)));
    const fast = fake('fast');
    const dispatcher = createDispatcher({ notifiers: [slow, fast] });
    dispatcher.notify(sample('initial', 0));
    dispatcher.notify(sample('update', 1));
    dispatcher.notify(sample('resolution', 2));
    expect(slow.got).toHaveLength(0);

    const flushed = await dispatcher.flush();
    expect(flushed).toHaveLength(6);
    expect(slow.got.map((n) => n.title)).toEqual(['message 0', 'message 1', 'message 2']);
    expect(fast.got.map((n) => n.kind)).toEqual(['initial', 'update', 'resolution']);
    expect(await dispatcher.flush()).toEqual([]);
    expect(dispatcher.deliveries()).toHaveLength(6);
  });

  it('gives up on a notifier that never answers, so a hung target cannot hold up the run', async () => {
    const hung: Notifier = { name: 'hung', type: 'custom', send: () => new Promise(() => {}) };
    const after = fake('after');
    const dispatcher = createDispatcher({ notifiers: [hung, after], deadlineMs: 30 });
    const [first, second] = await dispatcher.send(sample('initial', 1));
    expect(first).toMatchObject({ notifier: 'hung', ok: false, code: 'RUNBOOK_NOTIFY_FAILED' });
    expect(first?.error).toContain('did not finish the initial notification within 30 ms');
    expect(second?.ok).toBe(true);
    // The next notification is not stuck behind the hung one.
    const [again] = await dispatcher.send(sample('update', 2));
    expect(again?.notifier).toBe('hung');
  });

  it('does nothing without notifiers', async () => {
    const dispatcher = createDispatcher({ notifiers: [] });
    expect(await dispatcher.send(sample('custom', 1))).toEqual([]);
    expect(await dispatcher.flush()).toEqual([]);
  });
});
