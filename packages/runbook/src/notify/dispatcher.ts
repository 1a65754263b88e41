import { type Clock, realClock } from '../clock.js';
import { codeOf, messageOf, RunbookError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { Redactor } from '../redact.js';
import type { Notification, NotificationKind, Notifier } from './notifier.js';

/** The outcome of one notification at one notifier. Texts in it are redacted. */
export interface DeliveryResult {
  notifier: string;
  type: string;
  kind: NotificationKind;
  runId: string;
  title: string;
  ok: boolean;
  /** When the delivery started, from the dispatcher's clock. */
  startedAt: number;
  durationMs: number;
  /** Why it failed (redacted). */
  error?: string;
  /** The failure's stable code, e.g. RUNBOOK_NOTIFY_FAILED. */
  code?: string;
}

/** Options of {@link createDispatcher}. */
export interface DispatcherOptions {
  notifiers: readonly Notifier[];
  /** Removes the run's secrets from every notification before any notifier sees it. */
  redactor?: Redactor | undefined;
  /** Failures are logged here as warnings. */
  log?: Logger | undefined;
  /** @default realClock */
  clock?: Clock | undefined;
  /**
   * Longest a notifier may take over one notification (real time) before it counts as failed,
   * so a target that hangs cannot hold up the end of a run. @default 60000
   */
  deadlineMs?: number | undefined;
}

/**
 * Sends notifications to every notifier of a run. Nothing it does throws at the caller: a
 * failing target is logged and recorded, because a Slack outage must not abort a database
 * recovery. Each notifier gets notifications in the order they were given.
 */
export interface Dispatcher {
  readonly notifiers: readonly Notifier[];
  /** Starts delivering `n` and returns at once; {@link Dispatcher.flush} awaits it. */
  notify(n: Notification): void;
  /** Delivers `n` to every notifier and resolves with one result each (never rejects). */
  send(n: Notification): Promise<DeliveryResult[]>;
  /** Waits for every delivery still in flight (including ones started meanwhile) and returns their results. */
  flush(): Promise<DeliveryResult[]>;
  /** Every result so far, in the order deliveries finished. */
  deliveries(): DeliveryResult[];
}

/** Resolves or rejects with `work`, or rejects when `signal` aborts first; never leaves a rejection unhandled. */
function raceSignal<T>(work: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  work.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(onAbort());
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

/** A {@link Dispatcher} over `options.notifiers`. */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const notifiers = [...options.notifiers];
  const redactor = options.redactor ?? new Redactor();
  const log = (options.log ?? silentLogger).child('notify');
  const clock = options.clock ?? realClock;
  const deadlineMs = options.deadlineMs ?? 60_000;
  const results: DeliveryResult[] = [];
  const inflight = new Set<Promise<DeliveryResult[]>>();
  const queues = new Map<Notifier, Promise<unknown>>();

  const deliver = async (notifier: Notifier, n: Notification): Promise<DeliveryResult> => {
    const startedAt = clock.now();
    const base = { notifier: notifier.name, type: notifier.type, kind: n.kind, runId: n.runId, title: n.title, startedAt };
    const deadline = AbortSignal.timeout(deadlineMs);
    try {
      // A notifier that throws synchronously is as failed as one that rejects.
      const sent = Promise.resolve().then(() => notifier.send(n, { signal: deadline }));
      await raceSignal(
        sent,
        deadline,
        () =>
          new RunbookError(
            'RUNBOOK_NOTIFY_FAILED',
            `notifier "${notifier.name}" did not finish the ${n.kind} notification within ${deadlineMs} ms; check that its target is reachable`,
          ),
      );
      const result: DeliveryResult = { ...base, ok: true, durationMs: clock.now() - startedAt };
      log.debug(`notifier "${notifier.name}" delivered the ${n.kind} notification`, { notifier: notifier.name, kind: n.kind });
      results.push(result);
      return result;
    } catch (error) {
      const message = redactor.text(messageOf(error));
      const code = codeOf(error);
      const result: DeliveryResult = { ...base, ok: false, durationMs: clock.now() - startedAt, error: message };
      if (code !== undefined) result.code = code;
      log.warn(`notifier "${notifier.name}" failed, the run goes on without it: ${message}`, {
        notifier: notifier.name,
        type: notifier.type,
        kind: n.kind,
        ...(code === undefined ? {} : { code }),
      });
      results.push(result);
      return result;
    }
  };

  const send = (n: Notification): Promise<DeliveryResult[]> => {
    // Redact once, before any notifier (or its error handling) can see the raw text.
    const safe = redactor.value(n);
    const all = Promise.all(
      notifiers.map((notifier) => {
        const previous = queues.get(notifier) ?? Promise.resolve();
        const next = previous.then(() => deliver(notifier, safe));
        queues.set(notifier, next);
        return next;
      }),
    );
    inflight.add(all);
    void all.finally(() => inflight.delete(all));
    return all;
  };

  return {
    notifiers,
    notify(n) {
      void send(n);
    },
    send,
    async flush() {
      const done: DeliveryResult[] = [];
      while (inflight.size > 0) {
        const batch = [...inflight];
        for (const delivered of await Promise.all(batch)) done.push(...delivered);
        for (const p of batch) inflight.delete(p);
      }
      return done;
    },
    deliveries: () => [...results],
  };
}
