import type { NotificationKind } from './notifier.js';
import { type HttpDeliveryOptions, type Notification, type Notifier, parseTargetUrl, postJson, targetSecrets } from './notifier.js';

/** Options of {@link createWebhookNotifier}. */
export interface WebhookNotifierOptions extends HttpDeliveryOptions {
  /** @default "webhook" */
  name?: string | undefined;
  /** Where to POST. May carry a token: it never appears in messages or logs. */
  url: string;
  /** Sent with every request, e.g. `authorization`. Values are treated as secrets. */
  headers?: Record<string, string> | undefined;
}

/** The JSON body a webhook receives: the notification, with the time as ISO 8601. */
export interface WebhookPayload {
  kind: NotificationKind;
  title: string;
  text: string;
  severity: Notification['severity'];
  runId: string;
  runbook: string;
  environment: string;
  /** ISO 8601, UTC. */
  time: string;
  fields: Record<string, string>;
}

/** The webhook body for `n` (also the line format of the file notifier). */
export function webhookPayload(n: Notification): WebhookPayload {
  return {
    kind: n.kind,
    title: n.title,
    text: n.text,
    severity: n.severity,
    runId: n.runId,
    runbook: n.runbook,
    environment: n.environment,
    time: new Date(n.time).toISOString(),
    fields: n.fields,
  };
}

/**
 * A {@link Notifier} POSTing each notification as JSON, for a status page or an incident tool.
 * Failures are RUNBOOK_NOTIFY_FAILED naming the notifier; neither the URL nor header values
 * ever appear in a message.
 */
export function createWebhookNotifier(options: WebhookNotifierOptions): Notifier {
  const name = options.name ?? 'webhook';
  const label = `webhook notifier "${name}"`;
  const url = parseTargetUrl(options.url, label, 'url');
  const headers = { ...options.headers };
  const secrets = targetSecrets(url, Object.values(headers));
  return {
    name,
    type: 'webhook',
    send: (n, sendOptions) =>
      postJson({
        label,
        kind: n.kind,
        url,
        headers,
        body: webhookPayload(n),
        delivery: options,
        secrets,
        refusedHint: `Check the url and headers (credentials) of "${name}" in the config.`,
        signal: sendOptions?.signal,
      }),
  };
}
