import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { isRunbookError } from '../../src/errors.js';
import { type ComposeServiceConfig, createController } from '../../src/services/index.js';
import { type FakeTools, fakeTools } from '../fixtures/services/fake-tools.js';

interface ComposeState {
  service: string;
  running: boolean;
  /** The Health of each container ("" when it has no healthcheck). */
  containers: string[];
  restarts: number;
  format?: 'array';
}

const fakes: FakeTools = fakeTools();
afterAll(() => fakes.remove());
const project = join(fakes.dir, 'project');
mkdirSync(project);

const config: ComposeServiceConfig = { type: 'compose', service: 'web', file: 'compose.prod.yml', project: 'shop', cwd: project };
const web = (cfg: ComposeServiceConfig = config) => createController('web', cfg, { shell: fakes.shell });

function setCompose(overrides: Partial<ComposeState> = {}) {
  fakes.setState({ compose: { service: 'web', running: true, containers: [''], restarts: 0, ...overrides } satisfies ComposeState });
  fakes.clearCalls();
}
beforeEach(() => setCompose());

describe('compose controller', () => {
  it('stops, starts and restarts the service with -f and -p, in its cwd', async () => {
    const service = web();
    await service.stop();
    expect((await service.status()).state).toBe('stopped');
    await service.start();
    expect((await service.status()).state).toBe('running');
    await service.restart();
    expect(fakes.lines()).toEqual([
      'docker compose -f compose.prod.yml -p shop stop web',
      'docker compose -f compose.prod.yml -p shop ps --format json web',
      'docker compose -f compose.prod.yml -p shop start web',
      'docker compose -f compose.prod.yml -p shop ps --format json web',
      'docker compose -f compose.prod.yml -p shop restart web',
    ]);
    expect(new Set(fakes.calls().map((c) => c.cwd))).toEqual(new Set([project]));
    expect(fakes.state<ComposeState>('compose').restarts).toBe(1);
  });

  it('describe() gives the same command lines and runs nothing', () => {
    expect(web().describe('stop')).toBe('docker compose -f compose.prod.yml -p shop stop web');
    expect(web({ type: 'compose', service: 'web' }).describe('restart')).toBe('docker compose restart web');
    expect(fakes.calls()).toEqual([]);
  });

  it('reads status from one JSON object per line and from the older JSON array', async () => {
    setCompose({ containers: ['healthy', ''] });
    expect(await web().status()).toEqual({
      state: 'running',
      detail: 'shop-web-1: Up 5 minutes (healthy); shop-web-2: Up 5 minutes',
      replicas: { ready: 2, desired: 2 },
    });
    setCompose({ containers: ['healthy'], format: 'array' });
    expect(await web().status()).toMatchObject({ state: 'running', replicas: { ready: 1, desired: 1 } });
  });

  it('reports degraded when a container is unhealthy, stopped when none runs', async () => {
    setCompose({ containers: ['healthy', 'unhealthy'] });
    expect(await web().status()).toMatchObject({ state: 'degraded', replicas: { ready: 1, desired: 2 } });
    setCompose({ running: false });
    expect(await web().status()).toEqual({ state: 'stopped', detail: 'no running container of web' });
  });

  it('a failing docker is RUNBOOK_SERVICE_FAILED naming the service; status is unknown', async () => {
    const other = web({ type: 'compose', service: 'worker' });
    const error = await other.stop().catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_SERVICE_FAILED')).toBe(true);
    expect((error as Error).message).toMatch(
      /could not stop service "web": `docker compose stop worker` exited with code 1: no such service: worker/,
    );
    expect(await other.status()).toMatchObject({ state: 'unknown', detail: expect.stringContaining('no such service') });
  });

  it('reads logs with --tail and --since', async () => {
    expect(await web().logs?.({ lines: 50, since: '5m' })).toBe('web-1  | started\nweb-1  | ready');
    expect(fakes.lines()).toEqual(['docker compose -f compose.prod.yml -p shop logs --no-color --tail 50 --since 5m web']);
  });

  it('the config takes a compose service, and refuses unknown keys and types', () => {
    const service = (entry: unknown) => parseConfig({ environments: { x: { services: { a: entry } } } }).environment('x').services.a;
    expect(service({ type: 'compose', service: 'web', project: 'shop' })).toEqual({
      type: 'compose',
      service: 'web',
      project: 'shop',
    });
    expect(() => service({ type: 'compose', service: 'web', replicas: 2 })).toThrow(
      /environments\.x\.services\.a\.replicas: unknown field 'replicas'/,
    );
    expect(() => service({ type: 'swarm', service: 'web' })).toThrow(
      /environments\.x\.services\.a\.type: expected one of "command", "compose", "kubernetes", "systemd", got "swarm"/,
    );
  });
});
