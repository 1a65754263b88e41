import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import {
  abortable,
  connectionFailure,
  type HealthCheck,
  type HealthCheckDeps,
  type RedisHealthConfig,
  readPassword,
  redactUrl,
  scrub,
  withPassword,
} from './check.js';

const DEFAULT_TIMEOUT_MS = 5000;

/** A {@link HealthCheck} for {@link RedisHealthConfig}. */
export function createRedisCheck(name: string, config: RedisHealthConfig, deps: HealthCheckDeps = {}): HealthCheck {
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const where = redactUrl(config.url);

  return {
    name,
    type: 'redis',
    describe: () => `redis ${where}: PING, expecting PONG`,
    async check(options) {
      const password = readPassword(name, config.passwordEnv, deps);
      const urlPassword = decodeURIComponent(new URL(config.url).password);
      const clean = (text: string) => scrub(text, [password, urlPassword]);
      // ioredis lets a URL's password win over the `password` option, so it goes into the URL.
      const client = new Redis(withPassword(config.url, password), {
        lazyConnect: true,
        connectTimeout: timeoutMs,
        commandTimeout: timeoutMs,
        // One probe is one attempt: the caller (waitHealthy) decides whether to try again.
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        enableOfflineQueue: false,
        enableReadyCheck: false,
      });
      // ioredis rejects with "Connection is closed." and reports the cause (ECONNREFUSED,
      // WRONGPASS) only as an 'error' event; without a listener it would also print it.
      let cause: unknown;
      client.on('error', (error: unknown) => {
        cause ??= error;
      });
      const started = performance.now();
      const result = (ok: boolean, detail: string) => ({ ok, detail: clean(detail), latencyMs: Math.round(performance.now() - started) });
      return abortable(
        name,
        options?.signal,
        () => client.disconnect(),
        async () => {
          try {
            await client.connect();
            const reply = await client.ping();
            return reply === 'PONG' ? result(true, 'PONG') : result(false, `PING answered ${JSON.stringify(reply)}, expected PONG`);
          } catch (error) {
            return result(false, connectionFailure(cause ?? error));
          } finally {
            client.disconnect();
          }
        },
      );
    },
  };
}
