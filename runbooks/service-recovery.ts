// Service Recovery (second plan, Procedure 1: 1.1 API service failure, 1.2 Bot service
// failure): check the service's status and recent events, check its logs, restart it if
// needed, verify its health and, for the bot, that its external webhook is still set. Works
// with every kind of service the config can describe (command, compose, kubernetes,
// systemd): the plan's `kubectl get pods` / `describe` / `logs --tail=100` / `rollout
// restart` / `curl /health` are the controller's status, events, logs and restart.
//
//   tsx runbooks/service-recovery.ts --env production --plan
//   tsx runbooks/service-recovery.ts --env production --service api
//   tsx runbooks/service-recovery.ts --env production --service bot --webhook-check 'https://api.telegram.org/bot{token}/getWebhookInfo'
//
// Unlike the plan's `kubectl delete pod` for the bot, a restart goes through the
// controller, which waits until the service runs again; and nothing is restarted when the
// service is healthy (--restart auto), so running this runbook on a hunch costs nothing.

import { defineRunbook, isMain, parseDuration, RunbookError, runbookCli, waitHealthy } from '@drkit/runbook';
import { z } from 'zod';
import { PLATFORM_SECRETS } from './lib/platform.ts';
import {
  decideRestart,
  describeEvents,
  describeRecover,
  inspectService,
  probeHealth,
  type RestartOutcome,
  recoverService,
  type ServiceSnapshot,
  selectedHealth,
  selectedServices,
  serviceLogs,
  tailOf,
} from './lib/service.ts';

const duration = (what: string) =>
  z.string().refine((value) => {
    try {
      return parseDuration(value) > 0;
    } catch {
      return false;
    }
  }, `${what}: expected a duration such as 90s, 2m or 1h`);

const params = z.object({
  service: z
    .string()
    .min(1)
    .optional()
    .describe('the service(s) to recover, comma-separated (default: every service of vars.app.services)'),
  health: z.string().min(1).optional().describe('the health check that says the service works (default: vars.app.health)'),
  restart: z
    .enum(['auto', 'always', 'never'])
    .default('auto')
    .describe('auto: restart only when a service is not running or the health check fails; always; never (diagnose only)'),
  lines: z.number().int().min(1).max(10_000).default(100).describe('how many log lines to collect per service'),
  healthTimeout: duration('--health-timeout').default('2m').describe('how long the restarted service has to pass its health check'),
  webhookCheck: z
    .url()
    .optional()
    .describe(
      'an extra HTTP check after recovery that must answer 200, e.g. the bot\'s getWebhookInfo; "{token}" is replaced by $TELEGRAM_BOT_TOKEN',
    ),
  reason: z.string().default('service failure').describe('why, for the incident channel'),
});

/** The webhook URL as it may be shown: the token stays a placeholder. */
const shownWebhook = (url: string) => url.replaceAll('%7Btoken%7D', '{token}');

const serviceRecovery = defineRunbook({
  id: 'service-recovery',
  title: 'Recover a failed service: status, events, logs, restart, health',
  description:
    'Checks the status, recent events, logs and health of the application services, restarts the ones that need it, then verifies the health check (and an external webhook for the bot).',
  // The plans class a single failed service as category 1 (degradation) and a service
  // failure affecting most users as sev2. The declared severity and category are static (the
  // initial alert goes out before anything is known), so they are the plan's default for an
  // API failure; the decide step records the category the findings point at (2, outage,
  // when the health check fails or nothing runs) for the incident channel to reclassify.
  severity: 'sev2',
  category: 1,
  impact: 'An application service is down or failing its health check; it may be restarted',
  // The second plan's RTO for the API (read-only) is 15 minutes, the bot's 30 minutes, the
  // full API 1 hour. A restart is the fast path (appendix C: 5 minutes cold start), so this
  // runbook is held to the tightest objective it serves; when a restart cannot bring the
  // service back within it, the cause is elsewhere (database, infrastructure) and the
  // incident moves to those runbooks within the 1-hour objective.
  rto: '15m',
  params,
  phases: { detection: '5m', decision: '2m', recovery: '5m', verification: '3m' },
  secrets: {
    ...PLATFORM_SECRETS,
    // Nothing here opens a backup: a restart must not wait for whoever holds the backup key.
    backupKey: { ...PLATFORM_SECRETS.backupKey, optional: true },
    webhookToken: {
      env: 'TELEGRAM_BOT_TOKEN',
      optional: true,
      description: 'put in place of "{token}" in --webhook-check (the bot token never appears in a log, journal or message)',
    },
  },
  steps: (step) => {
    const status = step({
      id: 'status',
      title: 'Check the status and recent events of each service',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '2m',
      plan: (ctx) =>
        selectedServices(ctx, ctx.params.service).map(
          (name) => `${name} (${ctx.config.services[name]?.type}): status, and recent events: ${describeEvents(ctx, name)}`,
        ),
      run: async (ctx) => {
        const names = selectedServices(ctx, ctx.params.service);
        const services: ServiceSnapshot[] = [];
        for (const name of names) {
          const snapshot = await inspectService(ctx, name);
          const line = `${name} (${snapshot.type}) is ${snapshot.state}${snapshot.detail ? `: ${snapshot.detail}` : ''}`;
          if (snapshot.state === 'running') ctx.log.info(line);
          else ctx.log.warn(line);
          if (snapshot.events.length > 0) ctx.log.info(`recent events of ${name}:\n${snapshot.events.join('\n')}`);
          if (snapshot.eventsError !== undefined) ctx.log.warn(`could not read the events of ${name}: ${snapshot.eventsError}`);
          services.push(snapshot);
        }
        return { services };
      },
    });

    const health = step({
      id: 'check-health',
      title: 'Probe the health check (a failure is a finding, not an error)',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      plan: (ctx) => {
        const name = selectedHealth(ctx, ctx.params.health);
        return name === undefined
          ? "no health check configured (--health or vars.app.health): the decision rests on the services' status alone"
          : `probe health check ${name} up to 3 times, 1 s apart: ${ctx.health(name).describe()}`;
      },
      run: async (ctx) => {
        const name = selectedHealth(ctx, ctx.params.health);
        if (name === undefined) {
          ctx.log.warn("no health check configured (--health or vars.app.health): deciding on the services' status alone");
          return { health: null };
        }
        const result = await probeHealth(ctx, ctx.health(name));
        if (result.ok) ctx.log.info(`health check ${name} passes: ${result.detail}`);
        else ctx.log.warn(`health check ${name} FAILS: ${result.detail}`);
        return { health: { name, ok: result.ok, detail: result.detail, latencyMs: result.latencyMs } };
      },
    });

    const logs = step({
      id: 'collect-logs',
      title: 'Collect the recent logs of each service',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '2m',
      plan: (ctx) =>
        selectedServices(ctx, ctx.params.service).map(
          (name) => `read the last ${ctx.params.lines} log lines of ${name} into the run's log and journal (secrets redacted)`,
        ),
      run: async (ctx) => {
        const collected: { name: string; lines: number; tail: string; error?: string }[] = [];
        for (const name of selectedServices(ctx, ctx.params.service)) {
          const { text, error } = await serviceLogs(ctx, name, ctx.params.lines);
          if (error !== undefined) ctx.log.warn(`no logs of ${name}: ${error}`);
          else ctx.log.info(`last ${ctx.params.lines} log lines of ${name}:\n${text || '(empty)'}`);
          collected.push({
            name,
            lines: text === '' ? 0 : text.split('\n').length,
            tail: tailOf(text),
            ...(error !== undefined ? { error } : {}),
          });
        }
        return { logs: collected };
      },
    });

    // The engine asks a gate's question whenever its step is reached; it cannot skip the
    // question when the checks already say there is nothing to do. So the question says what
    // happens then, the approval shows the decision itself (the plan below, from the checks),
    // and the restart step does nothing when nothing needs it ("healthy, nothing to do").
    const decide = step({
      id: 'decide',
      title: 'Decide what to restart',
      phase: 'decision',
      gate: 'Restart the services listed (nothing is restarted when they are healthy)?',
      plan: (ctx) => {
        const decision = decideRestart(ctx.output(status).services, ctx.output(health).health, ctx.params.restart);
        return decision.restart.length === 0
          ? `restart nothing: ${decision.summary}`
          : decision.restart.map((r) => `restart ${r.name}: ${r.why}`);
      },
      run: (ctx) => {
        const decision = decideRestart(ctx.output(status).services, ctx.output(health).health, ctx.params.restart);
        const classification =
          decision.category === 2
            ? 'category 2 (service outage): the health check fails or no selected service runs'
            : decision.category === 1
              ? 'category 1 (service degradation): a service is down but the health check passes'
              : 'no incident found';
        if (decision.restart.length === 0) ctx.log.info(decision.summary);
        else ctx.log.warn(`${decision.summary} [${classification}]`);
        return { ...decision, classification, reason: ctx.params.reason };
      },
    });

    const restart = step({
      id: 'restart',
      title: 'Restart the failed services and wait until they run',
      phase: 'recovery',
      destructive: true,
      idempotent: true,
      timeout: '10m',
      plan: (ctx) => {
        let picked: { name: string; state?: string }[];
        try {
          // Known at the approval, and in a dry run from the checks that did run.
          const states = new Map(ctx.output(status).services.map((s) => [s.name, s.state]));
          picked = decideRestart(ctx.output(status).services, ctx.output(health).health, ctx.params.restart).restart.map((r) => ({
            name: r.name,
            ...(states.has(r.name) ? { state: states.get(r.name) as string } : {}),
          }));
        } catch {
          // --plan: nothing is known yet, so every service the decision may pick is shown.
          if (ctx.params.restart === 'never') return '--restart never: nothing is restarted';
          return [
            `--restart ${ctx.params.restart}: for each service the decision picks, in order:`,
            ...selectedServices(ctx, ctx.params.service).flatMap((name) => describeRecover(ctx, name)),
          ];
        }
        return picked.length === 0 ? 'nothing: no service needs a restart' : picked.flatMap((p) => describeRecover(ctx, p.name, p.state));
      },
      run: async (ctx) => {
        const decision = ctx.output(decide);
        if (decision.restart.length === 0) {
          ctx.log.info(`nothing restarted: ${decision.summary}`);
          return { restarted: [] as RestartOutcome[] };
        }
        const restarted: RestartOutcome[] = [];
        for (const { name } of decision.restart) restarted.push(await recoverService(ctx, name));
        return { restarted };
      },
    });

    const verify = step({
      id: 'verify-health',
      title: 'Verify every service runs and the health check passes',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => {
        const name = selectedHealth(ctx, ctx.params.health);
        return [
          `status of ${selectedServices(ctx, ctx.params.service).join(', ')} must be running`,
          name === undefined
            ? 'no health check configured'
            : `wait up to ${ctx.params.healthTimeout} for health check ${name}: ${ctx.health(name).describe()}`,
        ];
      },
      run: async (ctx) => {
        const { restarted } = ctx.output(restart);
        const name = selectedHealth(ctx, ctx.params.health);
        let detail = 'no health check configured';
        if (name !== undefined) {
          // Nothing restarted: the service has had its chance, one short wait says how it is now.
          const timeoutMs = restarted.length > 0 ? parseDuration(ctx.params.healthTimeout) : 10_000;
          const result = await waitHealthy(ctx.health(name), { timeoutMs, clock: ctx.clock, signal: ctx.signal, log: ctx.log });
          detail = result.detail;
        }
        const down: string[] = [];
        for (const service of selectedServices(ctx, ctx.params.service)) {
          const now = await ctx.service(service).status({ signal: ctx.signal });
          if (now.state !== 'running' && now.state !== 'unknown') down.push(`${service} is ${now.state} (${now.detail})`);
        }
        if (down.length > 0)
          throw new RunbookError(
            'RUNBOOK_SERVICE_FAILED',
            `${down.join('; ')}${ctx.params.restart === 'never' ? ' and --restart never was given' : ''}: restart it, or escalate`,
          );
        ctx.log.info(`recovered: ${name ?? 'the services'} ${name === undefined ? 'run' : `is healthy (${detail})`}`);
        return { health: name ?? null, detail, restarted: restarted.map((r) => r.name) };
      },
    });

    const webhook = step({
      id: 'check-webhook',
      title: 'Verify the external webhook (the bot: getWebhookInfo answers 200 with a webhook set)',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      retry: { attempts: 3, backoff: '5s' },
      plan: (ctx) =>
        ctx.params.webhookCheck === undefined
          ? 'nothing: no --webhook-check given'
          : `GET ${shownWebhook(ctx.params.webhookCheck)}: expect 200 and, from a Telegram getWebhookInfo answer, a webhook URL that is set`,
      run: async (ctx) => {
        ctx.output(verify);
        if (ctx.params.webhookCheck === undefined) return { checked: false };
        return { checked: true, ...(await checkWebhook(ctx.params.webhookCheck, ctx.optionalSecret('webhookToken'), ctx.signal, ctx.log)) };
      },
    });

    return [status, health, logs, decide, restart, verify, webhook];
  },
});

/**
 * GETs the webhook check URL (with `{token}` replaced by the bot token) and expects 200.
 * A Telegram `getWebhookInfo` answer must also say `ok` and name a webhook URL: an empty
 * one means the bot receives nothing even though the API answers. Its last delivery error
 * is logged, because that is usually why users say the bot is silent.
 */
async function checkWebhook(
  template: string,
  token: string | undefined,
  signal: AbortSignal,
  log: { info(m: string): void; warn(m: string): void },
): Promise<{ status: number; webhook?: string; pending?: number }> {
  const needsToken = template.includes('{token}') || template.includes('%7Btoken%7D');
  if (needsToken && token === undefined)
    throw new RunbookError('RUNBOOK_SECRET_MISSING', '--webhook-check contains {token} but $TELEGRAM_BOT_TOKEN is not set');
  const url = needsToken ? template.replaceAll('{token}', token ?? '').replaceAll('%7Btoken%7D', token ?? '') : template;
  const response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) });
  const text = await response.text();
  const shown = shownWebhook(template);
  if (response.status !== 200) throw new Error(`GET ${shown} answered ${response.status}: ${text.slice(0, 200)}`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    log.info(`GET ${shown} answered 200`);
    return { status: 200 };
  }
  const info = body as { ok?: unknown; result?: { url?: unknown; pending_update_count?: unknown; last_error_message?: unknown } };
  if (info.ok === false) throw new Error(`GET ${shown} answered 200 but ok: false: ${text.slice(0, 200)}`);
  if (info.result === undefined || typeof info.result !== 'object') {
    log.info(`GET ${shown} answered 200`);
    return { status: 200 };
  }
  const webhook = typeof info.result.url === 'string' ? info.result.url : '';
  if (webhook === '') throw new Error(`GET ${shown}: no webhook is set, so the bot receives no updates: set it again (setWebhook)`);
  const pending = typeof info.result.pending_update_count === 'number' ? info.result.pending_update_count : 0;
  if (typeof info.result.last_error_message === 'string' && info.result.last_error_message !== '')
    log.warn(`the webhook's last delivery error: ${info.result.last_error_message}`);
  log.info(`webhook set to ${webhook}; ${pending} update(s) pending`);
  return { status: 200, webhook, pending };
}

export default serviceRecovery;

if (isMain(import.meta.url)) await runbookCli(serviceRecovery);
