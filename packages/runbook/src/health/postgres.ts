import { performance } from 'node:perf_hooks';
import pg from 'pg';
import {
  abortable,
  connectionFailure,
  type HealthCheck,
  type HealthCheckDeps,
  type PostgresHealthConfig,
  readPassword,
  redactUrl,
  scrub,
  withPassword,
} from './check.js';

const DEFAULT_TIMEOUT_MS = 5000;

function shown(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** A {@link HealthCheck} for {@link PostgresHealthConfig}. */
export function createPostgresCheck(name: string, config: PostgresHealthConfig, deps: HealthCheckDeps = {}): HealthCheck {
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const query = config.query ?? 'SELECT 1';
  const fields = [
    config.host !== undefined ? `host=${config.host}` : '',
    config.port !== undefined ? `port=${config.port}` : '',
    config.user !== undefined ? `user=${config.user}` : '',
    config.database !== undefined ? `dbname=${config.database}` : '',
  ].filter(Boolean);
  const where = config.url !== undefined ? redactUrl(config.url) : fields.length > 0 ? fields.join(' ') : '(the PG* environment)';
  const expectation = config.expect === undefined ? '' : `, expecting ${JSON.stringify(String(config.expect))}`;

  return {
    name,
    type: 'postgres',
    describe: () => `postgres ${where}: ${query}${expectation}`,
    async check(options) {
      const password = readPassword(name, config.passwordEnv, deps);
      const urlPassword = config.url === undefined ? '' : decodeURIComponent(new URL(config.url).password);
      const clean = (text: string) => scrub(text, [password, urlPassword]);
      const client = new pg.Client({
        // pg lets a URL's (even empty) password win over `password`, so the password goes into the URL.
        ...(config.url !== undefined ? { connectionString: withPassword(config.url, password) } : {}),
        ...(config.url === undefined && password !== undefined ? { password } : {}),
        ...(config.host !== undefined ? { host: config.host } : {}),
        ...(config.port !== undefined ? { port: config.port } : {}),
        ...(config.user !== undefined ? { user: config.user } : {}),
        ...(config.database !== undefined ? { database: config.database } : {}),
        connectionTimeoutMillis: timeoutMs,
        query_timeout: timeoutMs,
        application_name: 'drkit-health',
      });
      // A server that goes away after connect would otherwise crash the process with an 'error' event.
      client.on('error', () => {});
      const started = performance.now();
      const result = (ok: boolean, detail: string) => ({ ok, detail: clean(detail), latencyMs: Math.round(performance.now() - started) });
      return abortable(
        name,
        options?.signal,
        () => void client.end().catch(() => {}),
        async () => {
          try {
            await client.connect();
            const res = await client.query({ text: query, rowMode: 'array' });
            const rows = res.rows as unknown[][];
            const first = rows[0]?.[0];
            if (config.expect === undefined) return result(true, `${query} ran (${res.rowCount ?? rows.length} row(s))`);
            if (rows.length === 0) return result(false, `${query} returned no rows, expected ${JSON.stringify(String(config.expect))}`);
            const got = shown(first);
            if (got !== String(config.expect))
              return result(false, `${query} returned ${JSON.stringify(got)}, expected ${JSON.stringify(String(config.expect))}`);
            return result(true, `${query} returned ${JSON.stringify(got)}`);
          } catch (error) {
            return result(false, connectionFailure(error));
          } finally {
            await client.end().catch(() => {});
          }
        },
      );
    },
  };
}
