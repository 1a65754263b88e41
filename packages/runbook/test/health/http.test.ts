import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getFreePort } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { isRunbookError } from '../../src/errors.js';
import { createHealthCheck, type HttpHealthConfig } from '../../src/health/index.js';

let server: Server;
let base: string;
const seenAuth: (string | undefined)[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    switch (req.url) {
      case '/health':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        return;
      case '/down':
        res.writeHead(503, { 'content-type': 'text/plain' }).end('database   unreachable\n');
        return;
      case '/version':
        res.writeHead(200).end('{"version":"1.2.3","status":"starting"}');
        return;
      case '/auth':
        seenAuth.push(req.headers.authorization);
        res.writeHead(req.headers.authorization === `Basic ${Buffer.from('probe:s3cr3t-pass').toString('base64')}` ? 204 : 401).end();
        return;
      case '/hang':
        // never answers: the check's timeout has to end it
        return;
      default:
        res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const check = (config: Omit<HttpHealthConfig, 'type'>) => createHealthCheck('web', { type: 'http', ...config });

describe('http health check', () => {
  it('is ok on any 2xx by default, and on the body containing `contains`', async () => {
    const result = await check({ url: `${base}/health`, contains: 'ok' }).check();
    expect(result).toMatchObject({ ok: true, detail: '200 OK, body contains "ok"' });
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    expect(await check({ url: `${base}/health` }).check()).toMatchObject({ ok: true, detail: '200 OK' });
  });

  it('fails on another status than expected, quoting the start of the body', async () => {
    expect(await check({ url: `${base}/down` }).check()).toMatchObject({
      ok: false,
      detail: '503 Service Unavailable, expected 2xx: database unreachable',
    });
    expect(await check({ url: `${base}/health`, expectStatus: 204 }).check()).toMatchObject({
      ok: false,
      detail: '200 OK, expected 204: ok',
    });
    expect(await check({ url: `${base}/down`, expectStatus: 503 }).check()).toMatchObject({ ok: true });
  });

  it('fails when the body does not contain `contains`', async () => {
    expect(await check({ url: `${base}/version`, contains: '"status":"ready"' }).check()).toMatchObject({
      ok: false,
      detail: '200 OK, but the body does not contain "\\"status\\":\\"ready\\"": {"version":"1.2.3","status":"starting"}',
    });
  });

  it('fails with "connection refused" when nothing listens', async () => {
    const port = await getFreePort();
    const result = await check({ url: `http://127.0.0.1:${port}/health` }).check();
    expect(result).toMatchObject({ ok: false, detail: 'connection refused (ECONNREFUSED)' });
  });

  it('fails after timeoutMs when the server does not answer', async () => {
    const result = await check({ url: `${base}/hang`, timeoutMs: 300 }).check();
    expect(result).toMatchObject({ ok: false, detail: 'no answer within 300 ms' });
    expect(result.latencyMs).toBeGreaterThanOrEqual(250);
    expect(result.latencyMs).toBeLessThan(5000);
  });

  it('sends URL credentials as basic auth and never shows the password', async () => {
    const url = `${base.replace('http://', 'http://probe:s3cr3t-pass@')}/auth`;
    const probe = check({ url });
    const result = await probe.check();
    expect(result).toMatchObject({ ok: true, detail: '204 No Content' });
    expect(seenAuth.at(-1)).toBe(`Basic ${Buffer.from('probe:s3cr3t-pass').toString('base64')}`);
    expect(probe.describe()).toBe(`GET ${base.replace('http://', 'http://probe:[redacted]@')}/auth (expect 2xx)`);
    const wrong = await check({ url: url.replace('s3cr3t-pass', 'wrong-pass'), expectStatus: 204 }).check();
    expect(wrong).toMatchObject({ ok: false, detail: '401 Unauthorized, expected 204' });
  });

  it('describe() says what it probes without probing', () => {
    expect(check({ url: 'http://10.255.255.1:9/health', contains: 'ok', expectStatus: 200 }).describe()).toBe(
      'GET http://10.255.255.1:9/health (expect 200, a body containing "ok")',
    );
  });

  it('an aborted check throws RUNBOOK_ABORTED instead of reporting the target unhealthy', async () => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    const error = await check({ url: `${base}/hang`, timeoutMs: 10_000 })
      .check({ signal: abort.signal })
      .catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_ABORTED')).toBe(true);
  });

  it('the config takes http(s) URLs only and does not echo a refused URL', () => {
    const health = (entry: unknown) => parseConfig({ environments: { x: { health: { a: entry } } } }).environment('x').health.a;
    expect(health({ type: 'http', url: 'https://example.org/health', expectStatus: 204 })).toEqual({
      type: 'http',
      url: 'https://example.org/health',
      expectStatus: 204,
    });
    expect(() => health({ type: 'http', url: 'ftp://example.org/' })).toThrow(
      /environments\.x\.health\.a\.url: expected a http:\/\/ or https:\/\/ URL/,
    );
    // A password in the URL is refused too (for the passwordEnv-less http check as well), and never quoted back.
    const refused = (() => {
      try {
        health({ type: 'http', url: 'ftp://user:hunter22@example.org/' });
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    expect(isRunbookError(refused, 'RUNBOOK_CONFIG_INVALID')).toBe(true);
    expect((refused as Error).message).toMatch(/environments\.x\.health\.a\.url: /);
    expect((refused as Error).message).not.toContain('hunter22');
    expect(() => health({ type: 'http', url: 'https://user:hunter22@example.org/' })).toThrow(
      /environments\.x\.health\.a\.url: the URL contains a password/,
    );
    expect(() => health({ type: 'http', url: 'http://x/', retries: 3 })).toThrow(
      /environments\.x\.health\.a\.retries: unknown field 'retries'/,
    );
  });
});
