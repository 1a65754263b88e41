import { setTimeout as sleep } from 'node:timers/promises';
import { codeOf, messageOf, RunbookError } from '../errors.js';
import { Redactor } from '../redact.js';
import type { Severity } from './incident.js';

/** What a notification is about, so a target can format or route it. */
export type NotificationKind = 'initial' | 'update' | 'resolution' | 'failure' | 'overrun' | 'approval' | 'custom';

/** One message to the people handling an incident, already rendered. */
export interface Notification {
  kind: NotificationKind;
  /** One line, e.g. "🚨 SERVICE INCIDENT - Sev1 - Critical". */
  title: string;
  /** The whole message, title first, as the plans' templates lay it out. */
  text: string;
  severity: Severity;
  runId: string;
  /** The runbook's title. */
  runbook: string;
  environment: string;
  /** Milliseconds since the epoch, from the run's clock. */
  time: number;
  /** The facts of the message, for targets that show them apart (status pages). */
  fields: Record<string, string>;
}

/** Options of one {@link Notifier.send}. */
export interface SendOptions {
  /** Cancels the delivery, retries included. */
  signal?: AbortSignal;
}

/**
 * A place notifications go: a Slack channel, a status page, a file. `send` resolves once the
 * target accepted the message and rejects with RUNBOOK_NOTIFY_FAILED otherwise; its message
 * names the notifier, never its URL or credentials.
 */
export interface Notifier {
  /** The name of this target in the config, used in logs and error messages. */
  readonly name: string;
  /** The driver, e.g. "slack", "webhook", "file". */
  readonly type: string;
  send(n: Notification, options?: SendOptions): Promise<void>;
}

/** Retry and timeout settings shared by the HTTP drivers. */
export interface HttpDeliveryOptions {
  /** Per attempt. @default 10000 */
  timeoutMs?: number;
  /** Attempts in all, for 5xx, 429, timeouts and network errors. @default 3 */
  attempts?: number;
  /** Wait before the second attempt; doubles for each further one. @default 200 */
  retryDelayMs?: number;
}

/** What {@link postJson} needs. Internal to the drivers, not part of the package API. */
export interface PostJsonRequest {
  /** How the notifier is named in messages, e.g. `Slack notifier "ops"`. */
  label: string;
  kind: NotificationKind;
  url: URL;
  headers: Record<string, string>;
  body: unknown;
  delivery: HttpDeliveryOptions;
  /** Removes the URL and header values from anything the endpoint answers. */
  secrets: Redactor;
  /** What to check when the endpoint refuses the message (a 4xx). */
  refusedHint: string;
  signal?: AbortSignal | undefined;
}

/** The longest part of an error response quoted in a message. */
const SNIPPET_MAX = 200;

/**
 * A {@link Redactor} of a target's own secrets: its URL (a Slack webhook URL is a credential)
 * and header values (tokens). An endpoint may echo them back in an error body, and that body
 * ends up in a message that is logged.
 */
export function targetSecrets(url: URL, headerValues: readonly string[] = []): Redactor {
  const secrets = new Redactor();
  const candidates = [url.href, `${url.pathname}${url.search}`, url.pathname, url.search.slice(1), url.password, ...headerValues];
  for (const value of candidates) {
    // The redactor refuses short values; a path of "/" or an empty query is no secret anyway.
    if (value.length >= 4) secrets.add(value);
  }
  return secrets;
}

/**
 * Parses a target URL from the config. The message never quotes the value: a webhook URL is a
 * secret, and a mistyped one is still most of a secret.
 */
export function parseTargetUrl(value: string, label: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `${label}: ${what} is not a valid URL; set it to the full https:// address`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `${label}: ${what} must be an http(s) URL, not ${url.protocol}`);
  }
  return url;
}

type Attempt = { ok: true } | { ok: false; retry: boolean; reason: string };

const retryable = (status: number) => status >= 500 || status === 429 || status === 408;

/**
 * POSTs JSON with a timeout per attempt and retries for failures that may pass (5xx, 429,
 * timeouts, network errors). Backoff uses real timers even when the run has a virtual clock:
 * sleeping on a virtual clock would move the run's time forward from a background delivery.
 */
export async function postJson(request: PostJsonRequest): Promise<void> {
  const timeoutMs = request.delivery.timeoutMs ?? 10_000;
  const attempts = Math.max(1, request.delivery.attempts ?? 3);
  const baseDelay = Math.max(0, request.delivery.retryDelayMs ?? 200);
  const { signal, secrets } = request;
  const payload = JSON.stringify(request.body);
  const cancelled = () =>
    new RunbookError('RUNBOOK_NOTIFY_FAILED', `${request.label} did not deliver the ${request.kind} notification: the send was cancelled`);

  const attempt = async (): Promise<Attempt> => {
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const response = await fetch(request.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8', ...request.headers },
        body: payload,
        signal: combined,
        // A redirected POST turns into a GET or carries the headers elsewhere: report it instead.
        redirect: 'manual',
      });
      // Read the body either way: it frees the connection and a refusal usually says why.
      const body = await response.text();
      if (response.ok) return { ok: true };
      const snippet = secrets.text(body.trim().replace(/\s+/g, ' ')).slice(0, SNIPPET_MAX);
      const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
      return { ok: false, retry: retryable(response.status), reason: `the endpoint answered ${status}${snippet ? `: ${snippet}` : ''}` };
    } catch (error) {
      if (signal?.aborted) throw cancelled();
      if (timeout.aborted) return { ok: false, retry: true, reason: `no answer within ${timeoutMs} ms` };
      // fetch says "fetch failed" and puts the reason (ECONNREFUSED, ENOTFOUND) in its cause.
      const cause = (error as { cause?: unknown }).cause;
      const detail = codeOf(cause) ?? (cause === undefined ? messageOf(error) : messageOf(cause));
      return { ok: false, retry: true, reason: `the request failed (${secrets.text(detail)})` };
    }
  };

  let last: Attempt = { ok: false, retry: false, reason: 'not attempted' };
  let made = 0;
  for (let i = 0; i < attempts; i++) {
    if (i > 0) {
      try {
        await sleep(baseDelay * 2 ** (i - 1), undefined, signal ? { signal } : undefined);
      } catch {
        throw cancelled();
      }
    }
    made += 1;
    last = await attempt();
    if (last.ok || !last.retry) break;
  }
  if (last.ok) return;
  const tries = `${made} attempt${made === 1 ? '' : 's'}`;
  const hint = last.retry
    ? `The endpoint is down or unreachable from this host; the run goes on without it. Check the network path to ${request.label}'s endpoint.`
    : request.refusedHint;
  throw new RunbookError(
    'RUNBOOK_NOTIFY_FAILED',
    `${request.label} could not deliver the ${request.kind} notification (${tries}): ${last.reason}. ${hint}`,
  );
}
