import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresSandbox, SandboxError, startPostgres } from '../src/index.js';
import { leftovers } from './helpers.js';

describe('startPostgres', () => {
  let server: PostgresSandbox;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(() => server.stop());

  it('serves a real round trip through pg over TCP with SCRAM authentication', async () => {
    const client = new pg.Client(server.connection());
    await client.connect();
    try {
      await client.query('create table notes (id serial primary key, body text not null)');
      await client.query('insert into notes (body) values ($1), ($2)', ['first', 'zweite \u00fc']);
      const { rows } = await client.query<{ body: string }>('select body from notes order by id');
      expect(rows.map((r) => r.body)).toEqual(['first', 'zweite \u00fc']);
      const { rows: version } = await client.query<{ server_version: string }>('show server_version');
      expect(version[0]?.server_version.startsWith(server.version)).toBe(true);
    } finally {
      await client.end();
    }
  });

  it('refuses a wrong password', async () => {
    const client = new pg.Client({ ...server.connection(), password: 'wrong' });
    await expect(client.connect()).rejects.toMatchObject({ code: '28P01' });
  });

  it('accepts the URL and a database created on it', async () => {
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    await admin.query('create database app');
    await admin.end();
    const client = new pg.Client({ connectionString: server.url('app') });
    await client.connect();
    const { rows } = await client.query<{ db: string }>('select current_database() as db');
    await client.end();
    expect(rows[0]?.db).toBe('app');
  });

  it('runs the server as an unprivileged account when the test runs as root', () => {
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))?.[1]);
    if (process.getuid?.() === 0) expect(uid).not.toBe(0);
    else expect(uid).toBe(process.getuid?.());
  });
});

describe('startPostgres lifecycle and bad input', () => {
  it('stop() leaves no process and no temp dir, and can be called twice', async () => {
    const server = await startPostgres();
    const client = new pg.Client(server.connection());
    await client.connect();
    // An open client must not hold the shutdown up: the sandbox uses the fast mode.
    client.on('error', () => {});
    await server.stop();
    await server.stop();
    expect(await leftovers(server.dir)).toEqual({ processes: [], dirExists: false });
  });

  it('names the package to install when the binaries are missing', async () => {
    const error = await startPostgres({ binDir: '/nonexistent/pg/bin' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SandboxError);
    expect(error).toMatchObject({ code: 'SANDBOX_BINARY_MISSING' });
    expect((error as Error).message).toMatch(/apt-get install postgresql/);
  });

  it('moves to another port when the preferred one is taken', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const server = await startPostgres({ port: taken });
      try {
        expect(server.port).not.toBe(taken);
        const client = new pg.Client(server.connection());
        await client.connect();
        await client.end();
      } finally {
        await server.stop();
      }
    } finally {
      blocker.close();
    }
  });
});
