import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { HaltError, messageOf } from './errors.js';
import { withDeadline } from './halt.js';
import { DEFAULT_PREFIX, type HaltState, haltKeys, parseState, type WorkerHeartbeat } from './keys.js';

/** Options of {@link createHaltGuard}. */
export interface HaltGuardOptions {
  /** The trading service's Redis connection; the guard duplicates it for its subscription. */
  redis: Redis;
  /** @default "drkit:halt:" */
  prefix?: string;
  /**
   * The worker's id. With it, the guard registers the worker and heartbeats the epoch it has
   * seen and its orders in flight, which is what `verifyHalted` and `releaseHalt` read.
   */
  workerId?: string;
  /** Longest wait for the halt state before trading is refused (fail-closed). @default 500 */
  deadlineMs?: number;
  /** @default 250 */
  heartbeatMs?: number;
  /** A heartbeat older than this has expired: the worker counts as gone. @default 3000 */
  heartbeatTtlMs?: number;
}

/** The epoch an order was prepared under; checked again just before the order is sent. */
export interface OrderTicket {
  epoch: number;
}

/** Events of a {@link HaltGuard}. */
export interface HaltGuardEvents {
  /** A halt arrived (published or seen on a read). */
  halt: [state: HaltState];
  /** The halt was released. */
  release: [state: HaltState];
  /** The halt state could not be read: trading is refused until it can. */
  unavailable: [error: Error];
}

/**
 * What a trading service calls before every order. Fail-closed: when the halt state cannot
 * be read within the deadline (Redis down, connection lost, slow), trading is not allowed.
 */
export interface HaltGuard extends EventEmitter<HaltGuardEvents> {
  /**
   * Resolves with the state when trading is allowed, else throws HALT_ACTIVE (halted),
   * HALT_STATE_UNKNOWN (cannot tell: refused), or HALT_STALE_EPOCH (`ticket` was prepared
   * under an earlier epoch: a halt came and went, or is in force, since).
   */
  assertTradingAllowed(ticket?: OrderTicket): Promise<HaltState>;
  /** Checks that trading is allowed and returns the ticket to check again when sending. */
  prepare(): Promise<OrderTicket>;
  /**
   * Runs `send` as an order in flight: checks the ticket first, counts the order in the
   * heartbeat while it runs (release is refused meanwhile).
   */
  trackOrder<T>(ticket: OrderTicket, send: () => Promise<T>): Promise<T>;
  /** The last state the guard saw (undefined before the first read). */
  lastState(): HaltState | undefined;
  /** Orders in flight now. */
  inFlight(): number;
  /** Writes a heartbeat now. */
  heartbeat(): Promise<void>;
  /** Stops heartbeating, unregisters the worker and closes the subscription. */
  close(): Promise<void>;
}

/**
 * Creates the guard of one trading worker. It subscribes to halt announcements (and acts on
 * one within milliseconds), reads the authoritative state before every order, and, given a
 * `workerId`, heartbeats what it has seen.
 */
export async function createHaltGuard(options: HaltGuardOptions): Promise<HaltGuard> {
  const keys = haltKeys(options.prefix ?? DEFAULT_PREFIX);
  const deadlineMs = options.deadlineMs ?? 500;
  const heartbeatMs = options.heartbeatMs ?? 250;
  const ttlMs = options.heartbeatTtlMs ?? 3000;
  const redis = options.redis;
  const emitter = new EventEmitter<HaltGuardEvents>();
  let state: HaltState | undefined;
  let orders = 0;
  let closed = false;

  const observe = (next: HaltState) => {
    const before = state;
    // Epochs only grow: a late read or a late message never rolls the state back.
    if (before && next.epoch < before.epoch) return;
    state = next;
    if (next.halted && (!before?.halted || before.epoch !== next.epoch)) emitter.emit('halt', next);
    if (!next.halted && before?.halted) emitter.emit('release', next);
    if (before?.epoch !== next.epoch || before?.halted !== next.halted) void beat();
  };

  const read = async (): Promise<HaltState> => {
    // A connection that is not ready answers nothing useful: refuse at once instead of queueing.
    if (redis.status !== 'ready') throw new Error(`the Redis connection is ${redis.status}`);
    const [hash, epoch] = await withDeadline(
      'reading the halt state',
      deadlineMs,
      Promise.all([redis.hgetall(keys.state), redis.get(keys.epoch)]),
    );
    const next = parseState(hash, epoch);
    observe(next);
    return state ?? next;
  };

  const beat = async (): Promise<void> => {
    if (!options.workerId || closed) return;
    const heartbeat: WorkerHeartbeat = {
      id: options.workerId,
      epoch: state?.epoch ?? 0,
      halted: state?.halted ?? false,
      inFlight: orders,
      at: Date.now(),
      pid: process.pid,
      host: hostname(),
    };
    try {
      await withDeadline(
        'heartbeat',
        deadlineMs,
        redis
          .multi()
          .sadd(keys.workers, options.workerId)
          .set(keys.worker(options.workerId), JSON.stringify(heartbeat), 'PX', ttlMs)
          .exec(),
      );
    } catch {
      // A missed heartbeat shows as a stale worker in verification, which is the truth.
    }
  };

  // The subscription: a dedicated connection, as Redis requires.
  const subscriber = redis.duplicate();
  subscriber.on('error', () => {
    // Connection errors surface as refused orders (fail-closed), not as crashes.
  });
  subscriber.on('message', (_channel: string, message: string) => {
    try {
      const parsed = JSON.parse(message) as Partial<HaltState> & { epoch: number };
      observe({
        halted: parsed.halted === true,
        epoch: Number(parsed.epoch),
        ...(parsed.reason ? { reason: parsed.reason } : {}),
        ...(parsed.actor ? { actor: parsed.actor } : {}),
        ...(parsed.scope ? { scope: parsed.scope } : {}),
        ...(parsed.since ? { since: parsed.since } : {}),
      });
    } catch {
      // A malformed announcement is ignored; the read before each order is authoritative.
    }
  });
  await subscriber.subscribe(keys.channel);
  await read().catch(() => {});
  await beat();
  const timer = setInterval(() => {
    // Reading refreshes the state when a message was missed (a reconnect loses pub/sub messages).
    void read()
      .catch(() => {})
      .then(beat);
  }, heartbeatMs);
  timer.unref();

  const refuse = (error: unknown): never => {
    const wrapped = new HaltError(
      'HALT_STATE_UNKNOWN',
      `trading refused: the halt state cannot be read (${messageOf(error)}); a guard fails closed`,
      { cause: error },
    );
    emitter.emit('unavailable', wrapped);
    throw wrapped;
  };

  const assertTradingAllowed = async (ticket?: OrderTicket): Promise<HaltState> => {
    let current: HaltState;
    try {
      current = await read();
    } catch (error) {
      return refuse(error);
    }
    if (current.halted)
      throw new HaltError(
        'HALT_ACTIVE',
        `trading is halted (epoch ${current.epoch}${current.reason ? `: ${current.reason}` : ''}${current.actor ? `, by ${current.actor}` : ''})`,
        { details: { epoch: current.epoch } },
      );
    if (ticket && ticket.epoch !== current.epoch)
      throw new HaltError(
        'HALT_STALE_EPOCH',
        `order refused: it was prepared under epoch ${ticket.epoch}, and the halt state has changed since (epoch ${current.epoch}); prepare it again`,
        { details: { ticket: ticket.epoch, epoch: current.epoch } },
      );
    return current;
  };

  return Object.assign(emitter, {
    assertTradingAllowed,
    async prepare() {
      const current = await assertTradingAllowed();
      return { epoch: current.epoch };
    },
    async trackOrder<T>(ticket: OrderTicket, send: () => Promise<T>): Promise<T> {
      await assertTradingAllowed(ticket);
      orders++;
      try {
        return await send();
      } finally {
        orders--;
        void beat();
      }
    },
    lastState: () => state,
    inFlight: () => orders,
    heartbeat: beat,
    async close() {
      if (closed) return;
      // Closed before unregistering: a heartbeat tick still reading the state would otherwise
      // register the worker again after the SREM, and verification would wait for a dead worker.
      closed = true;
      clearInterval(timer);
      if (options.workerId) {
        await withDeadline(
          'unregistering',
          deadlineMs,
          redis.multi().srem(keys.workers, options.workerId).del(keys.worker(options.workerId)).exec(),
        ).catch(() => {});
      }
      subscriber.disconnect();
    },
  }) as HaltGuard;
}
