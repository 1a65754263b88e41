import { type Clock, realClock } from '../clock.js';
import { RunbookError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { REDACTED } from '../redact.js';
import { createHttpCheck } from './http.js';
import { createPostgresCheck } from './postgres.js';
import { createRedisCheck } from './redis.js';

/** The outcome of one probe. */
export interface HealthResult {
  ok: boolean;
  /** Why, in one line: "200 OK", "connection refused (ECONNREFUSED)", "expected 1, got 0". Never a password. */
  detail: string;
  /** How long the probe took, wall-clock. */
  latencyMs: number;
}

/** Options of {@link HealthCheck.check}. */
export interface HealthCheckOptions {
  /** Ends the probe with RUNBOOK_ABORTED. */
  signal?: AbortSignal;
}

/**
 * One probe of a dependency. `check()` never throws because the target is unhealthy (down,
 * slow, wrong answer): it returns `ok: false` with the reason, so that a wait can retry and a
 * report can show it. It throws only when the check itself cannot be made (its password is
 * not set: RUNBOOK_SECRET_MISSING) or was aborted (RUNBOOK_ABORTED).
 */
export interface HealthCheck {
  readonly name: string;
  readonly type: 'http' | 'postgres' | 'redis';
  /** What `check()` would probe, for --plan; URL passwords are redacted. */
  describe(): string;
  check(options?: HealthCheckOptions): Promise<HealthResult>;
}

/** What a health check needs from the run. */
export interface HealthCheckDeps {
  /** Where `passwordEnv` is read. @default process.env */
  env?: Record<string, string | undefined>;
  log?: Logger;
  /**
   * Accepted so the engine can hand every helper the same deps; probes time themselves on
   * the wall clock, because a network timeout is real time even when a test's clock is not.
   */
  clock?: Clock;
}

/** A GET of `url`: healthy when the status is `expectStatus` (else any 2xx) and the body contains `contains`. */
export interface HttpHealthConfig {
  type: 'http';
  /** May carry `user:password@`: it is sent as basic auth and redacted everywhere. */
  url: string;
  expectStatus?: number;
  contains?: string;
  /** @default 5000 */
  timeoutMs?: number;
}

/**
 * `query` (default `SELECT 1`) on a PostgreSQL server: healthy when it runs and, with
 * `expect`, when the first column of the first row equals it (compared as text).
 * Either `url`, or the separate fields (unset ones fall back to libpq's PG* variables).
 */
export interface PostgresHealthConfig {
  type: 'postgres';
  url?: string;
  host?: string;
  port?: number;
  user?: string;
  database?: string;
  /** The environment variable holding the password; wins over one in `url`. */
  passwordEnv?: string;
  query?: string;
  expect?: string | number;
  /** Bounds the connection and the query. @default 5000 */
  timeoutMs?: number;
}

/** PING on a Redis server: healthy when it answers PONG. */
export interface RedisHealthConfig {
  type: 'redis';
  url: string;
  /** The environment variable holding the password; wins over one in `url`. */
  passwordEnv?: string;
  /** @default 5000 */
  timeoutMs?: number;
}

/** The config of one health check, by `type`. */
export type HealthCheckConfig = HttpHealthConfig | PostgresHealthConfig | RedisHealthConfig;

/** The health check `name` described by `config`. Connects to nothing until `check()`. */
export function createHealthCheck(name: string, config: HealthCheckConfig, deps: HealthCheckDeps = {}): HealthCheck {
  switch (config.type) {
    case 'http':
      return createHttpCheck(name, config, deps);
    case 'postgres':
      return createPostgresCheck(name, config, deps);
    case 'redis':
      return createRedisCheck(name, config, deps);
    default: {
      const type: string = (config as { type: string }).type;
      throw new RunbookError('RUNBOOK_CONFIG_INVALID', `health check "${name}" has type "${type}"; use one of http, postgres, redis`);
    }
  }
}

/** Options of {@link waitHealthy}. */
export interface WaitHealthyOptions {
  /** How long to keep trying, from the first probe. */
  timeoutMs: number;
  /** Pause between probes. @default 1000 */
  intervalMs?: number;
  /** @default realClock */
  clock?: Clock;
  signal?: AbortSignal;
  log?: Logger;
}

/**
 * Probes `check` until it is healthy and returns that result. Throws RUNBOOK_HEALTH_FAILED
 * with the last reason once `timeoutMs` has passed, RUNBOOK_ABORTED when `signal` aborts.
 */
export async function waitHealthy(check: HealthCheck, options: WaitHealthyOptions): Promise<HealthResult> {
  const clock = options.clock ?? realClock;
  const log = options.log ?? silentLogger;
  const intervalMs = options.intervalMs ?? 1000;
  const deadline = clock.now() + options.timeoutMs;
  const probe = options.signal ? { signal: options.signal } : {};
  for (let attempt = 1; ; attempt++) {
    const result = await check.check(probe);
    if (result.ok) {
      log.info(`${check.name} is healthy (${result.detail})`, { attempt, latencyMs: result.latencyMs });
      return result;
    }
    const left = deadline - clock.now();
    if (left <= 0)
      throw new RunbookError(
        'RUNBOOK_HEALTH_FAILED',
        `${check.name} was not healthy within ${options.timeoutMs} ms (${attempt} attempt${attempt === 1 ? '' : 's'}; last: ${result.detail}). ` +
          `It probes ${check.describe()}: check that target, or give it more time.`,
      );
    log.debug(`${check.name} is not healthy yet: ${result.detail}`, { attempt });
    await clock.sleep(Math.min(intervalMs, left), options.signal);
  }
}

// ---- shared by the checks (not re-exported from the package) ----

/**
 * `url` with its password (and any `password=` query parameter, which libpq reads too)
 * replaced by {@link REDACTED}. Text that is not a URL is returned unchanged.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  if (parsed.password === '' && !parsed.searchParams.has('password')) return url;
  // Built by hand: URL would percent-encode the brackets of the placeholder.
  const auth = parsed.username === '' && parsed.password === '' ? '' : `${parsed.username}${parsed.password ? `:${REDACTED}` : ''}@`;
  const query = parsed.search.replace(/([?&]password=)[^&]*/g, `$1${REDACTED}`);
  return `${parsed.protocol}//${auth}${parsed.host}${parsed.pathname}${query}${parsed.hash}`;
}

/**
 * The password named by `passwordEnv`, or undefined when none is configured.
 * @throws RunbookError RUNBOOK_SECRET_MISSING when the variable is configured but not set
 */
export function readPassword(name: string, passwordEnv: string | undefined, deps: HealthCheckDeps): string | undefined {
  if (passwordEnv === undefined) return undefined;
  const value = (deps.env ?? process.env)[passwordEnv];
  if (value === undefined || value === '')
    throw new RunbookError(
      'RUNBOOK_SECRET_MISSING',
      `health check "${name}" reads its password from $${passwordEnv}, which is not set: export it (or fix passwordEnv) and run again`,
    );
  return value;
}

/** Removes `secrets` (and their URL encodings) from a driver's error text, which may quote a connection string. */
export function scrub(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret) continue;
    for (const form of new Set([secret, encodeURIComponent(secret)])) out = out.split(form).join(REDACTED);
  }
  return out;
}

/** A short reason for a failed connection: Node's error code says more than a driver's wrapping text. */
export function connectionFailure(error: unknown): string {
  const err = error as { code?: unknown; message?: unknown; errors?: unknown } | null;
  const code = typeof err?.code === 'string' ? err.code : undefined;
  // Happy-eyeballs failures come as an AggregateError with the per-address errors inside.
  const inner = Array.isArray(err?.errors) ? (err.errors[0] as { code?: unknown; message?: unknown } | undefined) : undefined;
  const innerCode = typeof inner?.code === 'string' ? inner.code : undefined;
  const known: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host lookup failed',
    ETIMEDOUT: 'connection timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    EPIPE: 'connection closed',
  };
  const best = code ?? innerCode;
  const message = typeof err?.message === 'string' && err.message !== '' ? err.message : String(error);
  if (best !== undefined && known[best] !== undefined) return `${known[best]} (${best})`;
  return best !== undefined && !message.includes(best) ? `${message} (${best})` : message;
}

/** `url` with `password` put in it, for drivers that let a password in the URL win over one given beside it. */
export function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const parsed = new URL(url);
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

/**
 * Runs `fn` with a hook that `signal` fires; the hook must make `fn` settle (close the
 * connection). Turns the outcome into RUNBOOK_ABORTED when the signal was the cause.
 */
export async function abortable<T>(name: string, signal: AbortSignal | undefined, cancel: () => void, fn: () => Promise<T>): Promise<T> {
  const aborted = () => new RunbookError('RUNBOOK_ABORTED', `health check "${name}" was aborted`, { cause: signal?.reason });
  if (signal?.aborted) throw aborted();
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    const result = await fn();
    if (signal?.aborted) throw aborted();
    return result;
  } catch (error) {
    if (signal?.aborted) throw aborted();
    throw error;
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
}
