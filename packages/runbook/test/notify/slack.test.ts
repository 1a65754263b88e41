import { afterEach, describe, expect, it } from 'vitest';
import { isRunbookError, RunbookError } from '../../src/errors.js';
import type { Notification } from '../../src/notify/notifier.js';
import { createSlackNotifier, slackPayload } from '../../src/notify/slack.js';
import { renderInitial, renderResolution } from '../../src/notify/templates.js';
import { type HttpRecorder, startHttpRecorder } from '../support/http-recorder.js';

const HOOK_PATH = '/services/T0123ABCD/B0456EFGH/xoxbSecretWebhookToken42';
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

function initial(severity: Notification['severity'] = 'sev1'): Notification {
  return renderInitial({
    product: 'Acme',
    severity,
    title: 'Redis recovery',
    environment: 'staging',
    runId: 'run-1',
    impact: 'Sessions lost',
    status: 'Investigating',
    startedAt: START,
    now: START,
  });
}

async function failure(promise: Promise<unknown>): Promise<RunbookError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isRunbookError(error)) throw new Error(`expected a RunbookError, got ${String(error)}`);
  return error;
}

describe('createSlackNotifier', () => {
  it('posts the rendered template as text and blocks, mentioning @here on a sev1 incident', async () => {
    const server = await recorder();
    const slack = createSlackNotifier({ name: 'ops', webhookUrl: `${server.url}${HOOK_PATH}`, channel: '#incidents', username: 'drkit' });
    expect(slack).toMatchObject({ name: 'ops', type: 'slack' });
    await slack.send(initial());

    expect(server.requests).toHaveLength(1);
    const [request] = server.requests;
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe(HOOK_PATH);
    expect(request?.headers['content-type']).toMatch(/^application\/json/);
    const body = request?.body as { text: string; channel: string; username: string; blocks: { type: string; text: { text: string } }[] };
    expect(body.channel).toBe('#incidents');
    expect(body.username).toBe('drkit');
    expect(
      body.text.startsWith(
        '<!here> 🚨 ACME INCIDENT - Sev1 - Critical\n\nImpact: Sessions lost\nStatus: Investigating\nETA: Unknown\n\nUpdates will follow every 15 minutes.',
      ),
    ).toBe(true);
    expect(body.blocks.map((b) => b.type)).toEqual(['header', 'section']);
    expect(body.blocks[0]?.text.text).toBe('🚨 ACME INCIDENT - Sev1 - Critical');
    expect(body.blocks[1]?.text.text.startsWith('<!here> Impact: Sessions lost\n')).toBe(true);
  });

  it('mentions nobody for a resolution or a lower severity, and as configured otherwise', () => {
    const resolved = renderResolution({ ...initialInfo(), now: START + 60_000 });
    expect(slackPayload(resolved).text.startsWith('✅')).toBe(true);
    expect(slackPayload(initial('sev2')).text.startsWith('🚨')).toBe(true);
    expect(slackPayload(initial(), { mention: false }).text.startsWith('🚨')).toBe(true);
    expect(slackPayload(initial(), { mention: '@channel' }).text.startsWith('<!channel> 🚨')).toBe(true);
    expect(
      slackPayload(initial('sev2'), { mentionOn: ['sev1', 'sev2'], mention: '<!subteam^S1>' }).text.startsWith('<!subteam^S1> 🚨'),
    ).toBe(true);
    expect(slackPayload(initial(), { blocks: false })).not.toHaveProperty('blocks');
    expect(slackPayload(initial())).not.toHaveProperty('channel');
  });

  it('escapes text that Slack would read as markup', () => {
    const n = { ...initial('sev3'), text: 'a <b> & <!channel>', title: 'x' };
    expect(slackPayload(n).text).toBe('a &lt;b&gt; &amp; &lt;!channel&gt;');
  });

  it('retries a 503 and succeeds on the third attempt', async () => {
    const server = await recorder();
    server.reply(503, 503);
    const slack = createSlackNotifier({ webhookUrl: `${server.url}${HOOK_PATH}`, retryDelayMs: 5 });
    await slack.send(initial());
    expect(server.requests.map((r) => r.status)).toEqual([503, 503, 200]);
    expect(new Set(server.requests.map((r) => r.raw)).size).toBe(1);
  });

  it('gives up after three 5xx answers', async () => {
    const server = await recorder();
    server.fallback = 502;
    const slack = createSlackNotifier({ name: 'ops', webhookUrl: `${server.url}${HOOK_PATH}`, retryDelayMs: 1 });
    const error = await failure(slack.send(initial()));
    expect(error.code).toBe('RUNBOOK_NOTIFY_FAILED');
    expect(error.message).toMatch(
      /Slack notifier "ops" could not deliver the initial notification \(3 attempts\): the endpoint answered 502/,
    );
    expect(error.message).toContain('down or unreachable');
    expect(server.requests).toHaveLength(3);
  });

  it('fails a 400 at once with RUNBOOK_NOTIFY_FAILED naming the notifier, never the webhook URL', async () => {
    const server = await recorder();
    // An endpoint that echoes the request path: the secret must not come back through the message either.
    server.reply({ status: 400, body: (request) => `invalid_payload for ${request.path}` });
    const url = `${server.url}${HOOK_PATH}`;
    const slack = createSlackNotifier({ name: 'ops', webhookUrl: url });
    const error = await failure(slack.send(initial()));
    expect(error.code).toBe('RUNBOOK_NOTIFY_FAILED');
    expect(server.requests).toHaveLength(1);
    expect(error.message).toContain('Slack notifier "ops"');
    expect(error.message).toContain('400');
    expect(error.message).toContain('invalid_payload for [redacted]');
    expect(error.message).toContain('Check the webhookUrl of "ops"');
    expect(error.message).not.toContain(url);
    expect(error.message).not.toContain('xoxbSecretWebhookToken42');
    expect(error.message).not.toContain(HOOK_PATH);
    expect(JSON.stringify(error)).not.toContain('xoxbSecretWebhookToken42');
  });

  it('times out a hanging endpoint, retrying each attempt', async () => {
    const server = await recorder();
    server.fallback = 'hang';
    const slack = createSlackNotifier({
      name: 'ops',
      webhookUrl: `${server.url}${HOOK_PATH}`,
      timeoutMs: 100,
      attempts: 2,
      retryDelayMs: 1,
    });
    const error = await failure(slack.send(initial()));
    expect(error.code).toBe('RUNBOOK_NOTIFY_FAILED');
    expect(error.message).toContain('(2 attempts): no answer within 100 ms');
    expect(server.requests).toHaveLength(2);
  });

  it('reports a refused connection without the URL', async () => {
    const closed = await startHttpRecorder();
    await closed.close();
    const slack = createSlackNotifier({ name: 'ops', webhookUrl: `${closed.url}${HOOK_PATH}`, retryDelayMs: 1 });
    const error = await failure(slack.send(initial()));
    expect(error.message).toContain('(3 attempts): the request failed (ECONNREFUSED)');
    expect(error.message).not.toContain(HOOK_PATH);
  });

  it('stops when the caller aborts', async () => {
    const server = await recorder();
    server.fallback = 'hang';
    const slack = createSlackNotifier({ webhookUrl: `${server.url}${HOOK_PATH}`, timeoutMs: 30_000 });
    const controller = new AbortController();
    const sent = slack.send(initial(), { signal: controller.signal });
    while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    const error = await failure(sent);
    expect(error.message).toContain('the send was cancelled');
    expect(server.requests).toHaveLength(1);
  });

  it('refuses an invalid webhook URL without quoting it', () => {
    const attempt = () => createSlackNotifier({ name: 'ops', webhookUrl: 'hooks.slack.com/services/secretish' });
    expect(attempt).toThrow(RunbookError);
    expect(attempt).toThrow(/Slack notifier "ops": webhookUrl is not a valid URL/);
    try {
      attempt();
    } catch (error) {
      expect((error as RunbookError).code).toBe('RUNBOOK_CONFIG_INVALID');
      expect((error as RunbookError).message).not.toContain('secretish');
    }
  });
});

function initialInfo() {
  return {
    product: 'Acme',
    severity: 'sev1' as const,
    title: 'Redis recovery',
    environment: 'staging',
    runId: 'run-1',
    impact: 'Sessions lost',
    status: 'Investigating',
    startedAt: START,
    now: START,
  };
}
