import type { Severity } from './incident.js';
import { type HttpDeliveryOptions, type Notification, type Notifier, parseTargetUrl, postJson, targetSecrets } from './notifier.js';

/** Options of {@link createSlackNotifier}. */
export interface SlackNotifierOptions extends HttpDeliveryOptions {
  /** @default "slack" */
  name?: string | undefined;
  /** The incoming-webhook URL. It is a credential: it never appears in messages or logs. */
  webhookUrl: string;
  /** Overrides the webhook's channel (only legacy webhooks honour it). */
  channel?: string | undefined;
  username?: string | undefined;
  /**
   * Who is pinged on active incidents: "@here", "@channel", "@everyone", a Slack mention such
   * as "<@U123>" or "<!subteam^S123>", or false for none. @default "@here"
   */
  mention?: string | false | undefined;
  /** Severities that get the mention. @default ["sev1"] */
  mentionOn?: readonly Severity[] | undefined;
  /** Sends Block Kit blocks (header, body) besides the plain text. @default true */
  blocks?: boolean | undefined;
}

/** The JSON body Slack's incoming webhooks take. */
export interface SlackPayload {
  text: string;
  channel?: string;
  username?: string;
  blocks?: unknown[];
}

// Slack's limits: a header block holds 150 characters, a section 3000.
const HEADER_MAX = 150;
const SECTION_MAX = 3000;

/** Slack reads `&`, `<` and `>` as markup (links, mentions), so text from a run is escaped. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Plain "@here" is shown but pings nobody through a webhook; Slack wants its own syntax. */
function mentionSyntax(mention: string): string {
  const special: Record<string, string> = { '@here': '<!here>', '@channel': '<!channel>', '@everyone': '<!everyone>' };
  return special[mention] ?? mention;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The webhook body for `n`: what {@link createSlackNotifier} sends. */
export function slackPayload(n: Notification, options: Omit<SlackNotifierOptions, 'webhookUrl'> = {}): SlackPayload {
  const mentionOn = options.mentionOn ?? ['sev1'];
  const mention = options.mention === undefined ? '@here' : options.mention;
  // A resolution closes the incident: nobody needs waking for it.
  const active = n.kind !== 'resolution';
  const ping = mention !== false && mention !== '' && active && mentionOn.includes(n.severity) ? `${mentionSyntax(mention)} ` : '';
  const payload: SlackPayload = { text: `${ping}${escapeSlack(n.text)}` };
  if (options.channel !== undefined) payload.channel = options.channel;
  if (options.username !== undefined) payload.username = options.username;
  if (options.blocks !== false) {
    const rest = n.text.startsWith(n.title) ? n.text.slice(n.title.length).trim() : n.text;
    const body = `${ping}${escapeSlack(rest)}`;
    payload.blocks = [
      { type: 'header', text: { type: 'plain_text', text: truncate(n.title, HEADER_MAX), emoji: true } },
      ...(body.trim() === '' ? [] : [{ type: 'section', text: { type: 'mrkdwn', text: truncate(body, SECTION_MAX) } }]),
    ];
  }
  return payload;
}

/**
 * A {@link Notifier} posting to a Slack incoming webhook. Sev1 messages of an active incident
 * mention `@here`, as the plans ask. Failures are RUNBOOK_NOTIFY_FAILED naming the notifier,
 * never the webhook URL, which is itself the credential.
 */
export function createSlackNotifier(options: SlackNotifierOptions): Notifier {
  const name = options.name ?? 'slack';
  const label = `Slack notifier "${name}"`;
  const url = parseTargetUrl(options.webhookUrl, label, 'webhookUrl');
  const secrets = targetSecrets(url);
  const { webhookUrl: _secret, ...payloadOptions } = options;
  return {
    name,
    type: 'slack',
    send: (n, sendOptions) =>
      postJson({
        label,
        kind: n.kind,
        url,
        headers: {},
        body: slackPayload(n, payloadOptions),
        delivery: options,
        secrets,
        refusedHint: `Check the webhookUrl of "${name}" in the config: Slack answers 403, 404 or 410 for a revoked webhook or a deleted or archived channel, and 400 for a malformed message.`,
        signal: sendOptions?.signal,
      }),
  };
}
