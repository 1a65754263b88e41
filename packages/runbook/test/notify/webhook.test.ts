import { afterEach, describe, expect, it } from 'vitest';
import { isRunbookError } from '../../src/errors.js';
import { renderUpdate } from '../../src/notify/templates.js';
import { createWebhookNotifier } from '../../src/notify/webhook.js';
import { type HttpRecorder, startHttpRecorder } from '../support/http-recorder.js';

const START = Date.UTC(2026, 0, 1, 9);
const TOKEN = 'Bearer sp-token-7f3a9c21e4';

const recorders: HttpRecorder[] = [];
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((r) => r.close()));
});

async function recorder(): Promise<HttpRecorder> {
  const r = await startHttpRecorder();
  recorders.push(r);
  return r;
}

const update = () =>
  renderUpdate({
    product: 'Acme',
    severity: 'sev2',
    category: 2,
    title: 'Failover to the standby region',
    environment: 'production',
    runId: 'run-42',
    impact: 'API unavailable',
    status: 'Failing over',
    phase: 'failover',
    step: 'Promote standby',
    completedSteps: 4,
    totalSteps: 9,
    startedAt: START,
    now: START + 15 * 60_000,
  });

describe('createWebhookNotifier', () => {
  it('posts the notification as JSON with an ISO time and the configured headers', async () => {
    const server = await recorder();
    const hook = createWebhookNotifier({
      name: 'statuspage',
      url: `${server.url}/incidents?source=drkit`,
      headers: { authorization: TOKEN },
    });
    expect(hook).toMatchObject({ name: 'statuspage', type: 'webhook' });
    const n = update();
    await hook.send(n);

    expect(server.requests).toHaveLength(1);
    const [request] = server.requests;
    expect(request?.path).toBe('/incidents?source=drkit');
    expect(request?.headers.authorization).toBe(TOKEN);
    expect(request?.headers['content-type']).toMatch(/^application\/json/);
    expect(request?.body).toEqual({
      kind: 'update',
      title: '🔄 ACME INCIDENT UPDATE - Sev2 - High',
      text: n.text,
      severity: 'sev2',
      runId: 'run-42',
      runbook: 'Failover to the standby region',
      environment: 'production',
      time: '2026-01-01T09:15:00.000Z',
      fields: n.fields,
    });
    expect(n.text).toContain('Elapsed: 15 minutes');
    expect(n.text).toContain('Progress: 4/9 steps');
  });

  it('retries 503s, then delivers', async () => {
    const server = await recorder();
    server.reply(503, 503);
    await createWebhookNotifier({ url: server.url, retryDelayMs: 5 }).send(update());
    expect(server.requests.map((r) => r.status)).toEqual([503, 503, 200]);
  });

  it('fails a 401 at once without quoting the URL or header values, even when echoed', async () => {
    const server = await recorder();
    server.reply({ status: 401, body: (request) => `bad credentials: ${String(request.headers.authorization)} at ${request.path}` });
    const url = `${server.url}/hooks/k3y-in-the-path`;
    const error = await createWebhookNotifier({ name: 'statuspage', url, headers: { authorization: TOKEN } })
      .send(update())
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isRunbookError(error, 'RUNBOOK_NOTIFY_FAILED')).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain(
      'webhook notifier "statuspage" could not deliver the update notification (1 attempt): the endpoint answered 401',
    );
    expect(message).toContain('Check the url and headers (credentials) of "statuspage"');
    expect(message).not.toContain('sp-token-7f3a9c21e4');
    expect(message).not.toContain('k3y-in-the-path');
    expect(server.requests).toHaveLength(1);
  });

  it('times out', async () => {
    const server = await recorder();
    server.fallback = 'hang';
    const error = await createWebhookNotifier({ url: server.url, timeoutMs: 50, attempts: 1 })
      .send(update())
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isRunbookError(error, 'RUNBOOK_NOTIFY_FAILED')).toBe(true);
    expect((error as Error).message).toContain('(1 attempt): no answer within 50 ms');
  });

  it('reports a redirect instead of following it', async () => {
    const server = await recorder();
    server.reply({ status: 302, headers: { location: 'http://127.0.0.1:1/elsewhere' } });
    const error = await createWebhookNotifier({ url: server.url })
      .send(update())
      .catch((e: unknown) => e);
    expect((error as Error).message).toContain('the endpoint answered 302');
    expect(server.requests).toHaveLength(1);
  });
});
