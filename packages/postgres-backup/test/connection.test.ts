import { describe, expect, it } from 'vitest';
import { libpqEnv, pgTarget, redactUrl, withDatabase } from '../src/connection.js';

describe('pgTarget', () => {
  it('parses a URL and describes it without the password', () => {
    const t = pgTarget('postgres://app:s3cr%40t@db-1.internal:6543/orders?sslmode=require');
    expect(t).toMatchObject({ host: 'db-1.internal', port: 6543, user: 'app', database: 'orders' });
    expect(t.description).toBe('postgres://app@db-1.internal:6543/orders');
    expect(JSON.stringify(t)).not.toContain('s3cr');
    expect(JSON.stringify({ target: t })).toBe('{"target":"postgres://app@db-1.internal:6543/orders"}');
  });

  it('takes a unix socket directory from ?host=', () => {
    const t = pgTarget('postgresql://postgres@/app?host=/var/run/postgresql&port=5433');
    expect(t.host).toBe('/var/run/postgresql');
    expect(t.port).toBe(5433);
    expect(t.description).toBe('postgres://postgres@localhost:5433?host=/var/run/postgresql/app');
  });

  it('refuses what is not a postgres URL, or names no database, without echoing the password', () => {
    expect(() => pgTarget('mysql://root:pw@db/x')).toThrow(expect.objectContaining({ code: 'PG_URL_INVALID' }));
    expect(() => pgTarget('')).toThrow(expect.objectContaining({ code: 'PG_URL_INVALID' }));
    const noDb = (() => {
      try {
        pgTarget('postgres://app:hunter2@db:5432');
      } catch (error) {
        return error as Error & { code: string };
      }
      return undefined;
    })();
    expect(noDb?.code).toBe('PG_URL_INVALID');
    expect(noDb?.message).toMatch(/names no database/);
    expect(noDb?.message).not.toContain('hunter2');
  });

  it('switches database keeping server and credentials', () => {
    const t = withDatabase(pgTarget('postgres://app:pw@db:5432/orders?sslmode=require'), 'postgres');
    expect(t).toMatchObject({ host: 'db', port: 5432, user: 'app', database: 'postgres' });
    expect(libpqEnv(t, {})).toMatchObject({ PGPASSWORD: 'pw', PGSSLMODE: 'require', PGDATABASE: 'postgres' });
  });
});

describe('libpqEnv', () => {
  it('puts the connection in PG* variables and drops inherited ones that would redirect the tool', () => {
    const env = libpqEnv(pgTarget('postgres://app:pw@db:5432/orders'), {
      PATH: '/usr/bin',
      PGHOST: 'elsewhere',
      PGSERVICE: 'prod',
      PGSSLROOTCERT: '/tmp/other.crt',
      PGPASSFILE: '/home/u/.pgpass',
    });
    expect(env).toEqual({
      PATH: '/usr/bin',
      PGPASSFILE: '/home/u/.pgpass',
      PGHOST: 'db',
      PGPORT: '5432',
      PGUSER: 'app',
      PGDATABASE: 'orders',
      PGPASSWORD: 'pw',
      PGCONNECT_TIMEOUT: '10',
      PGAPPNAME: 'drkit',
    });
  });

  it('leaves PGPASSWORD unset when the URL has no password (so .pgpass applies)', () => {
    expect(libpqEnv(pgTarget('postgres://app@db/orders'), {}).PGPASSWORD).toBeUndefined();
  });
});

describe('redactUrl', () => {
  it('hides passwords of postgres URLs inside any text', () => {
    expect(redactUrl('failed: postgres://app:pw@db/x and postgresql://u:p%40ss@h:5/y')).toBe(
      'failed: postgres://app@db/x and postgresql://u@h:5/y',
    );
  });
});
