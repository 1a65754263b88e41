import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { isRunbookError } from '../../src/errors.js';
import { createHealthCheck, type PostgresHealthConfig } from '../../src/health/index.js';

const PASSWORD = 'pg-Secret-42/with:specials';
let pg: PostgresSandbox;

beforeAll(async () => {
  pg = await startPostgres({ password: PASSWORD });
});
afterAll(async () => {
  await pg?.stop();
});

const env = () => ({ DB_PASSWORD: PASSWORD });
const check = (config: Omit<PostgresHealthConfig, 'type'>, vars: Record<string, string> = env()) =>
  createHealthCheck('db', { type: 'postgres', ...config }, { env: vars });

/** The password in any form a message could carry it in. */
const leaks = (text: string) => [PASSWORD, encodeURIComponent(PASSWORD)].some((form) => text.includes(form));

describe('postgres health check', () => {
  it('runs SELECT 1 through a URL that carries the password', async () => {
    const probe = check({ url: pg.url() });
    const result = await probe.check();
    expect(result).toMatchObject({ ok: true, detail: 'SELECT 1 ran (1 row(s))' });
    expect(probe.describe()).toBe(`postgres postgres://drkit:[redacted]@127.0.0.1:${pg.port}/postgres: SELECT 1`);
  });

  it('reads the password from passwordEnv, with separate fields, and shows it nowhere', async () => {
    const probe = check({ host: pg.host, port: pg.port, user: pg.user, database: 'postgres', passwordEnv: 'DB_PASSWORD', expect: 1 });
    const result = await probe.check();
    expect(result).toMatchObject({ ok: true, detail: 'SELECT 1 returned "1"' });
    expect(probe.describe()).toBe(`postgres host=127.0.0.1 port=${pg.port} user=drkit dbname=postgres: SELECT 1, expecting "1"`);
    expect(leaks(probe.describe() + result.detail)).toBe(false);
  });

  it('passwordEnv wins over a password in the URL', async () => {
    const url = `postgres://${pg.user}:not-the-password@${pg.host}:${pg.port}/postgres`;
    expect((await check({ url, passwordEnv: 'DB_PASSWORD' }).check()).ok).toBe(true);
    const bad = await check({ url }).check();
    expect(bad.ok).toBe(false);
    expect(bad.detail).toContain('password authentication failed for user "drkit"');
    expect(bad.detail).not.toContain('not-the-password');
  });

  it('a wrong password from passwordEnv fails without showing it', async () => {
    const result = await check(
      { url: `postgres://${pg.user}@${pg.host}:${pg.port}/postgres`, passwordEnv: 'DB_PASSWORD' },
      {
        DB_PASSWORD: 'wrong-password-123',
      },
    ).check();
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(/password authentication failed.*28P01/);
    expect(result.detail).not.toContain('wrong-password-123');
  });

  it('compares `expect` with the first column of the first row', async () => {
    const query = "SELECT setting FROM pg_settings WHERE name = 'listen_addresses'";
    expect(await check({ url: pg.url(), query, expect: '127.0.0.1' }).check()).toMatchObject({ ok: true });
    expect(await check({ url: pg.url(), query: 'SELECT pg_is_in_recovery()', expect: 'true' }).check()).toMatchObject({
      ok: false,
      detail: 'SELECT pg_is_in_recovery() returned "false", expected "true"',
    });
    expect(await check({ url: pg.url(), query: 'SELECT 1 WHERE false', expect: 1 }).check()).toMatchObject({
      ok: false,
      detail: 'SELECT 1 WHERE false returned no rows, expected "1"',
    });
  });

  it('a failing query is ok:false with the server’s error', async () => {
    const result = await check({ url: pg.url(), query: 'SELECT count(*) FROM orders' }).check();
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(/relation "orders" does not exist/);
  });

  it('an abort ends a slow query with RUNBOOK_ABORTED', async () => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    const started = Date.now();
    const error = await check({ url: pg.url(), query: 'SELECT pg_sleep(20)', timeoutMs: 30_000 })
      .check({ signal: abort.signal })
      .catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_ABORTED')).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('an unset passwordEnv is RUNBOOK_SECRET_MISSING naming the variable', async () => {
    const error = await check({ url: pg.url(), passwordEnv: 'NOT_SET_ANYWHERE' }, {})
      .check()
      .catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_SECRET_MISSING')).toBe(true);
    expect((error as Error).message).toContain('$NOT_SET_ANYWHERE');
  });

  it('the config refuses a URL together with separate fields, and a passwordEnv that is not a variable name', () => {
    const health = (entry: unknown) => {
      const parsed = parseConfig({ environments: { x: { health: { a: entry } } } }).environment('x').health.a;
      if (parsed === undefined) throw new Error('health check "a" is missing from the parsed config');
      return parsed;
    };
    expect(() => health({ type: 'postgres', url: 'postgres://a@b/c', host: 'd' })).toThrow(
      /environments\.x\.health\.a\.url: give either url or host\/port\/user\/database, not both/,
    );
    expect(() => health({ type: 'postgres', host: 'd', passwordEnv: 'hunter2 value' })).toThrow(
      /environments\.x\.health\.a\.passwordEnv: expected the name of an environment variable/,
    );
    const parsed = health({ type: 'postgres', host: 'db', port: 5432, expect: 1 });
    expect(parsed).toEqual({
      type: 'postgres',
      host: 'db',
      port: 5432,
      expect: 1,
    });
    // The parsed value goes straight into createHealthCheck: this line does not compile if the types drift.
    expect(createHealthCheck('a', parsed).type).toBe('postgres');
  });

  // Last: it stops the server the other tests use.
  it('a stopped server is ok:false with connection refused', async () => {
    const probe = check({ url: pg.url() });
    await pg.stop();
    const result = await probe.check();
    expect(result).toMatchObject({ ok: false, detail: 'connection refused (ECONNREFUSED)' });
  });
});
