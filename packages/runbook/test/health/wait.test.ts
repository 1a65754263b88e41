import { createServer, type Server } from 'node:http';
import { getFreePort } from '@drkit/sandbox';
import { afterAll, describe, expect, it } from 'vitest';
import { virtualClock } from '../../src/clock.js';
import { isRunbookError } from '../../src/errors.js';
import { createHealthCheck, waitHealthy } from '../../src/health/index.js';
import { createLogger, type LogEntry } from '../../src/log.js';

const servers: Server[] = [];
afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

describe('waitHealthy', () => {
  it('keeps probing until the target comes up, and returns the healthy result', async () => {
    const port = await getFreePort();
    const check = createHealthCheck('api', { type: 'http', url: `http://127.0.0.1:${port}/health`, timeoutMs: 1000 });
    setTimeout(() => {
      const server = createServer((_req, res) => res.end('ok'));
      servers.push(server);
      server.listen(port, '127.0.0.1');
    }, 600);
    const entries: LogEntry[] = [];
    const log = createLogger({ sink: (entry) => entries.push(entry) });
    const result = await waitHealthy(check, { timeoutMs: 15_000, intervalMs: 100, log });
    expect(result).toMatchObject({ ok: true, detail: '200 OK' });
    const misses = entries.filter((e) => e.message.startsWith('api is not healthy yet'));
    expect(misses.length).toBeGreaterThanOrEqual(3);
    expect(misses[0]?.message).toBe('api is not healthy yet: connection refused (ECONNREFUSED)');
    expect(entries.at(-1)?.message).toBe('api is healthy (200 OK)');
  });

  it('throws RUNBOOK_HEALTH_FAILED with the last reason once the deadline passes', async () => {
    const port = await getFreePort();
    const check = createHealthCheck('api', { type: 'http', url: `http://127.0.0.1:${port}/health` });
    const clock = virtualClock();
    const started = clock.now();
    const error = await waitHealthy(check, { timeoutMs: 5000, intervalMs: 1000, clock }).catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_HEALTH_FAILED')).toBe(true);
    expect((error as Error).message).toBe(
      'api was not healthy within 5000 ms (6 attempts; last: connection refused (ECONNREFUSED)). ' +
        `It probes GET http://127.0.0.1:${port}/health (expect 2xx): check that target, or give it more time.`,
    );
    expect(clock.now() - started).toBe(5000);
  });

  it('stops waiting with RUNBOOK_ABORTED when the signal aborts', async () => {
    const port = await getFreePort();
    const check = createHealthCheck('api', { type: 'http', url: `http://127.0.0.1:${port}/health` });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    const error = await waitHealthy(check, { timeoutMs: 60_000, intervalMs: 50, signal: abort.signal }).catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_ABORTED')).toBe(true);
  });
});
