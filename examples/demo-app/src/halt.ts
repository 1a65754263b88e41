import { setTimeout as sleep } from 'node:timers/promises';
import { createHaltGuard, type HaltGuard } from '@drkit/treasury-halt';
import { Redis, type RedisOptions } from 'ioredis';
import { withDeadline } from './deadline.ts';

/** Keeps one treasury-halt guard for the app, (re)trying to create it while Redis is away. */
export interface HaltGuardKeeper {
  /** The guard, once it could be created; until then trading is refused (fail-closed). */
  current(): HaltGuard | undefined;
  /** Unregisters the worker and closes the guard and its connections. */
  close(): Promise<void>;
}

/** Options of {@link keepHaltGuard}. */
export interface HaltGuardKeeperOptions {
  redisUrl: string;
  /** Added to the connection's options (retry strategy, timeouts). */
  redisOptions: RedisOptions;
  workerId: string;
  prefix?: string;
}

/**
 * Creates the app's halt guard on a Redis connection of its own. That connection keeps
 * ioredis's offline queue: the guard's subscription connection is a duplicate of it and
 * subscribes while still connecting, which a connection without the queue refuses at once.
 * The guard refuses orders by itself whenever its connection is not ready, so the queue
 * never delays an order.
 */
export function keepHaltGuard(options: HaltGuardKeeperOptions): HaltGuardKeeper {
  const connection = new Redis(options.redisUrl, { ...options.redisOptions, enableOfflineQueue: true });
  connection.on('error', () => {
    // Reconnects on its own; meanwhile the guard refuses orders (fail-closed).
  });
  // createHaltGuard does not close its subscription connection when subscribing fails, so
  // the connections it makes are tracked here and closed after a failed attempt.
  const spawned: Redis[] = [];
  const duplicate = connection.duplicate.bind(connection);
  connection.duplicate = (override?: Partial<RedisOptions>) => {
    const copy = duplicate(override);
    spawned.push(copy);
    return copy;
  };

  let guard: HaltGuard | undefined;
  let closed = false;
  const stop = new AbortController();

  const untilReady = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        connection.off('ready', done);
        stop.signal.removeEventListener('abort', done);
        resolve();
      };
      connection.once('ready', done);
      stop.signal.addEventListener('abort', done, { once: true });
    });

  const run = async () => {
    while (!closed && guard === undefined) {
      if (connection.status !== 'ready') {
        await untilReady();
        continue;
      }
      const before = spawned.length;
      try {
        const created = await createHaltGuard({
          redis: connection,
          workerId: options.workerId,
          ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
        });
        if (closed) await created.close();
        else guard = created;
      } catch {
        for (const copy of spawned.splice(before)) copy.disconnect();
        await sleep(500, undefined, { signal: stop.signal }).catch(() => {});
      }
    }
  };
  void run();

  return {
    current: () => guard,
    async close() {
      if (closed) return;
      closed = true;
      stop.abort();
      await guard?.close();
      for (const copy of spawned) copy.disconnect();
      // QUIT waits for Redis; when it is down there is nobody to say goodbye to.
      await withDeadline('closing the halt connection', 1000, connection.quit()).catch(() => {});
      connection.disconnect();
    },
  };
}
