import type { Clock } from './clock.js';
import type { EnvironmentConfig } from './config/schema.js';
import { resolveSecret } from './config/secrets.js';
import type { Runbook, RunStatus } from './definition.js';
import type { Logger } from './log.js';
import { startUpdates } from './notify/cadence.js';
import { createDispatcher, type DeliveryResult, type Dispatcher } from './notify/dispatcher.js';
import { createFileNotifier } from './notify/file.js';
import { CATEGORIES, UPDATE_EVERY_MS } from './notify/incident.js';
import type { Notification, NotificationKind, Notifier } from './notify/notifier.js';
import { createSlackNotifier } from './notify/slack.js';
import {
  DEFAULT_PRODUCT,
  type IncidentInfo,
  renderApproval,
  renderFailure,
  renderInitial,
  renderOverrun,
  renderResolution,
  renderUpdate,
} from './notify/templates.js';
import { createWebhookNotifier } from './notify/webhook.js';
import type { Redactor } from './redact.js';

/** Options of {@link IncidentNotifications}. */
export interface IncidentNotificationsOptions {
  runbook: Runbook;
  runId: string;
  environment: string;
  envConfig: EnvironmentConfig;
  env: NodeJS.ProcessEnv;
  redactor: Redactor;
  clock: Clock;
  log: Logger;
  /** Notifiers given in code, besides the config's. */
  extra: readonly Notifier[];
  drill: boolean;
  /** Told about each notification once every notifier has answered. */
  onSent: (kind: NotificationKind, delivered: number, failed: number) => void;
}

/** The notifiers an environment's config declares, with their secrets resolved (and registered for redaction). */
export function notifiersFromConfig(envConfig: EnvironmentConfig, env: NodeJS.ProcessEnv, redactor: Redactor): Notifier[] {
  return Object.entries(envConfig.notify ?? {}).map(([name, target]) => {
    switch (target.type) {
      case 'slack':
        return createSlackNotifier({
          name,
          webhookUrl: resolveSecret(target.webhookUrl, { env, redactor }),
          ...(target.channel !== undefined ? { channel: target.channel } : {}),
          ...(target.username !== undefined ? { username: target.username } : {}),
          ...(target.mention !== undefined ? { mention: target.mention } : {}),
        });
      case 'webhook':
        return createWebhookNotifier({
          name,
          url: resolveSecret(target.url, { env, redactor }),
          headers: Object.fromEntries(Object.entries(target.headers ?? {}).map(([k, ref]) => [k, resolveSecret(ref, { env, redactor })])),
        });
      case 'file':
        return createFileNotifier({ name, path: target.path });
      default:
        return createFileNotifier({ name, stream: process.stdout });
    }
  });
}

/**
 * The incident messages of one run, in the plans' templates: the initial alert, an update
 * every 15 minutes (or the environment's `updateEvery`) while the run lasts, an alert when a
 * phase overruns its budget or a step waits for approval, and the resolution or failure at
 * the end. Sending never fails the run; every delivery is recorded for the report.
 */
export class IncidentNotifications {
  readonly #o: IncidentNotificationsOptions;
  readonly #dispatcher: Dispatcher;
  readonly #pending = new Set<Promise<unknown>>();
  #updates: { stop(): void } | undefined;
  #status = 'Investigating';
  /** A routine job sends only its failure (see RunbookDefinition.notify). */
  readonly #routine: boolean;

  constructor(options: IncidentNotificationsOptions) {
    this.#o = options;
    this.#routine = options.runbook.definition.notify === 'failures';
    const notifiers = [...notifiersFromConfig(options.envConfig, options.env, options.redactor), ...options.extra];
    this.#dispatcher = createDispatcher({ notifiers, redactor: options.redactor, log: options.log, clock: options.clock });
  }

  #info(startedAt: number, extra: Partial<IncidentInfo> = {}): IncidentInfo {
    const d = this.#o.runbook.definition;
    return {
      product: this.#o.envConfig.product ?? DEFAULT_PRODUCT,
      severity: d.severity,
      category: d.category,
      title: d.title,
      environment: this.#o.environment,
      runId: this.#o.runId,
      impact: d.impact ?? CATEGORIES[d.category].title,
      status: this.#status,
      startedAt,
      now: this.#o.clock.now(),
      updateEveryMs: this.#o.envConfig.updateEvery ?? UPDATE_EVERY_MS,
      ...(this.#routine ? { routine: true } : {}),
      ...extra,
    };
  }

  #send(n: Notification): void {
    const marked = this.#o.drill ? { ...n, title: `[DRILL] ${n.title}`, text: `[DRILL] ${n.text}` } : n;
    if (this.#dispatcher.notifiers.length === 0) return;
    const sending = this.#dispatcher.send(marked).then((results) => {
      this.#o.onSent(n.kind, results.filter((r) => r.ok).length, results.filter((r) => !r.ok).length);
    });
    this.#pending.add(sending);
    void sending.finally(() => this.#pending.delete(sending));
  }

  /** The initial alert. */
  initial(startedAt: number): void {
    if (this.#routine) return;
    this.#status = 'Investigating';
    this.#send(renderInitial(this.#info(startedAt, { status: `Running runbook "${this.#o.runbook.title}"` })));
  }

  /** An update saying the run was resumed. */
  resumed(startedAt: number): void {
    if (this.#routine) return;
    this.#status = 'Recovery resumed';
    this.#send(renderUpdate(this.#info(startedAt, { status: 'Recovery resumed after an interruption' })));
  }

  /** Starts the periodic updates; `progress` says where the run is at each tick. */
  startUpdates(startedAt: number, progress: () => { completed: number; total: number; phase?: string; step?: string }): void {
    if (this.#routine) return;
    this.#updates = startUpdates({
      clock: this.#o.clock,
      everyMs: this.#o.envConfig.updateEvery ?? UPDATE_EVERY_MS,
      onTick: () => {
        const p = progress();
        this.#send(
          renderUpdate(
            this.#info(startedAt, {
              status: 'Recovery in progress',
              completedSteps: p.completed,
              totalSteps: p.total,
              phase: p.phase,
              step: p.step,
            }),
          ),
        );
      },
    });
  }

  /** Stops the periodic updates. */
  stopUpdates(): void {
    this.#updates?.stop();
    this.#updates = undefined;
  }

  /** A phase (or the whole RTO) ran past its budget. */
  overrun(phase: string, budgetMs: number, elapsedMs: number): void {
    if (this.#routine) return;
    this.#send(renderOverrun(this.#info(this.#o.clock.now() - elapsedMs, { phase }), { phase, budgetMs, elapsedMs }));
  }

  /** A step waits for a person's approval. */
  approval(step: string, question: string): void {
    this.#send(renderApproval(this.#info(this.#o.clock.now(), { step }), { prompt: question, step }));
  }

  /** The resolution message. */
  resolved(startedAt: number, finishedAt: number): void {
    if (this.#routine) return;
    this.#send(
      renderResolution(
        this.#info(startedAt, {
          now: finishedAt,
          outcome: 'resolved',
          status: 'Resolved',
          rootCause: undefined,
        }),
      ),
    );
  }

  /** The run failed, was aborted or declined: the incident stays open. */
  failed(
    startedAt: number,
    finishedAt: number,
    status: RunStatus,
    failure: { code: string; message: string } | undefined,
    step: string | undefined,
  ): void {
    this.#send(
      renderFailure(
        this.#info(startedAt, {
          now: finishedAt,
          outcome: status === 'aborted' || status === 'refused' ? 'aborted' : 'failed',
          status: 'Recovery stopped',
          step,
          detail: failure ? `${failure.code}: ${failure.message}` : undefined,
        }),
      ),
    );
  }

  /** Waits for every notification still being delivered. */
  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
    await this.#dispatcher.flush();
  }

  /** Stops updates without sending anything more (a simulated crash). */
  stop(): void {
    this.stopUpdates();
  }

  /** Every delivery so far. */
  deliveries(): DeliveryResult[] {
    return this.#dispatcher.deliveries();
  }
}
