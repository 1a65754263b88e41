import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { virtualClock } from '../../src/clock.js';
import { isRunbookError } from '../../src/errors.js';
import { createController, type KubernetesServiceConfig, REPLICAS_ANNOTATION } from '../../src/services/index.js';
import { type FakeTools, fakeTools } from '../fixtures/services/fake-tools.js';

interface KubeState {
  kind: string;
  name: string;
  namespace?: string;
  context?: string;
  replicas: number;
  ready: number;
  pods: number;
  annotations: Record<string, string>;
  restarts: number;
  rolloutFails?: boolean;
  podsStuck?: boolean;
}

const fakes: FakeTools = fakeTools();
afterAll(() => fakes.remove());

const scope = '--namespace=prod --context=staging';
const config: KubernetesServiceConfig = {
  type: 'kubernetes',
  name: 'api',
  namespace: 'prod',
  context: 'staging',
  rolloutTimeoutMs: 120_000,
};

function setKube(overrides: Partial<KubeState> = {}) {
  fakes.setState({
    kubectl: {
      kind: 'deployment',
      name: 'api',
      namespace: 'prod',
      context: 'staging',
      replicas: 3,
      ready: 3,
      pods: 3,
      annotations: {},
      restarts: 0,
      ...overrides,
    } satisfies KubeState,
  });
  fakes.clearCalls();
}

// The waits poll through a virtual clock: the fake's pods vanish one per poll, instantly.
const controller = (cfg: KubernetesServiceConfig = config) =>
  createController('api', cfg, { shell: fakes.shell, clock: virtualClock(), pollIntervalMs: 2000 });

beforeEach(() => setKube());

describe('kubernetes controller', () => {
  it('stop scales to 0 and waits for the pods to be gone; start scales back to the previous count and waits for the rollout', async () => {
    const api = controller();
    expect(await api.status()).toEqual({ state: 'running', detail: '3/3 replicas ready', replicas: { ready: 3, desired: 3 } });
    fakes.clearCalls();

    await api.stop();
    expect(fakes.lines()).toEqual([
      `kubectl get deployment/api -o json ${scope}`,
      `kubectl annotate deployment/api ${REPLICAS_ANNOTATION}=3 --overwrite ${scope}`,
      `kubectl scale deployment/api --replicas=0 ${scope}`,
      // three terminating pods, one gone per poll, then an empty list
      `kubectl get pods --selector=app=api -o json ${scope}`,
      `kubectl get pods --selector=app=api -o json ${scope}`,
      `kubectl get pods --selector=app=api -o json ${scope}`,
      `kubectl get pods --selector=app=api -o json ${scope}`,
    ]);
    expect(fakes.state<KubeState>('kubectl')).toMatchObject({ replicas: 0, pods: 0 });
    expect((await api.status()).state).toBe('stopped');
    fakes.clearCalls();

    await api.start();
    expect(fakes.lines()).toEqual([
      `kubectl scale deployment/api --replicas=3 ${scope}`,
      `kubectl rollout status deployment/api --timeout=120s ${scope}`,
    ]);
    expect(await api.status()).toMatchObject({ state: 'running', replicas: { ready: 3, desired: 3 } });
  });

  it('a controller of a later run restores the count stop kept in the annotation', async () => {
    await controller().stop();
    fakes.clearCalls();
    await controller().start();
    expect(fakes.lines()).toEqual([
      `kubectl get deployment/api -o json ${scope}`,
      `kubectl scale deployment/api --replicas=3 ${scope}`,
      `kubectl rollout status deployment/api --timeout=120s ${scope}`,
    ]);
    expect(fakes.state<KubeState>('kubectl')).toMatchObject({ replicas: 3, ready: 3 });
  });

  it('stopping what is already at 0 keeps the saved count, so a retried stop does not lose it', async () => {
    await controller().stop();
    fakes.clearCalls();
    await controller().stop();
    expect(fakes.lines()).toEqual([`kubectl get deployment/api -o json ${scope}`, `kubectl get pods --selector=app=api -o json ${scope}`]);
    expect(fakes.state<KubeState>('kubectl').annotations[REPLICAS_ANNOTATION]).toBe('3');
  });

  it('start scales to the configured replicas, or to 1 when nothing says otherwise', async () => {
    setKube({ replicas: 0, ready: 0, pods: 0 });
    await controller({ ...config, replicas: 5 }).start();
    expect(fakes.lines()[0]).toBe(`kubectl scale deployment/api --replicas=5 ${scope}`);

    setKube({ replicas: 0, ready: 0, pods: 0 });
    await controller().start();
    expect(fakes.lines()).toEqual([
      `kubectl get deployment/api -o json ${scope}`,
      `kubectl scale deployment/api --replicas=1 ${scope}`,
      `kubectl rollout status deployment/api --timeout=120s ${scope}`,
    ]);
  });

  it('restart is a rollout restart followed by rollout status', async () => {
    await controller().restart();
    expect(fakes.lines()).toEqual([
      `kubectl rollout restart deployment/api ${scope}`,
      `kubectl rollout status deployment/api --timeout=120s ${scope}`,
    ]);
    expect(fakes.state<KubeState>('kubectl').restarts).toBe(1);
  });

  it('describe() gives the same command lines and runs nothing', () => {
    const api = controller({ ...config, kind: 'statefulset', name: 'db', replicas: 2 });
    expect(api.describe('stop')).toBe(
      [
        `kubectl annotate statefulset/db '${REPLICAS_ANNOTATION}=<current replicas>' --overwrite ${scope}`,
        `kubectl scale statefulset/db --replicas=0 ${scope}`,
        '# then wait until the pods of statefulset/db are gone (up to 120000 ms)',
      ].join('\n'),
    );
    expect(api.describe('start')).toBe(
      `kubectl scale statefulset/db --replicas=2 ${scope}\nkubectl rollout status statefulset/db --timeout=120s ${scope}`,
    );
    expect(api.describe('restart')).toBe(
      `kubectl rollout restart statefulset/db ${scope}\nkubectl rollout status statefulset/db --timeout=120s ${scope}`,
    );
    expect(fakes.calls()).toEqual([]);
  });

  it('passes no --namespace/--context when none is configured, and drives statefulsets the same way', async () => {
    setKube({ kind: 'statefulset', namespace: 'default', context: 'default' });
    const db = controller({ type: 'kubernetes', kind: 'statefulset', name: 'api' });
    await db.restart();
    expect(fakes.lines()).toEqual(['kubectl rollout restart statefulset/api', 'kubectl rollout status statefulset/api --timeout=300s']);
  });

  it('reports degraded and stopped states from the replica counts', async () => {
    setKube({ replicas: 3, ready: 1 });
    expect(await controller().status()).toEqual({ state: 'degraded', detail: '1/3 replicas ready', replicas: { ready: 1, desired: 3 } });
    setKube({ replicas: 0, ready: 0, pods: 2 });
    expect(await controller().status()).toMatchObject({ state: 'degraded', detail: 'scaled to 0, 2 pod(s) still running' });
    setKube({ replicas: 0, ready: 0, pods: 0 });
    expect(await controller().status()).toMatchObject({ state: 'stopped', detail: 'scaled to 0' });
  });

  it('status is unknown, with kubectl’s error, when the workload cannot be read', async () => {
    const status = await controller({ ...config, namespace: 'staging' }).status();
    expect(status.state).toBe('unknown');
    expect(status.detail).toMatch(/NotFound.*namespace "staging"/);
  });

  it('a failed rollout is RUNBOOK_SERVICE_FAILED naming the service and quoting kubectl', async () => {
    setKube({ replicas: 0, ready: 0, pods: 0, rolloutFails: true });
    const error = await controller({ ...config, replicas: 2 })
      .start()
      .catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_SERVICE_FAILED')).toBe(true);
    expect((error as Error).message).toMatch(/could not start service "api".*kubectl rollout status.*timed out waiting for the condition/s);
  });

  it('stop fails with RUNBOOK_SERVICE_FAILED when the pods outlive rolloutTimeoutMs', async () => {
    setKube({ podsStuck: true });
    const error = await controller({ ...config, rolloutTimeoutMs: 10_000 })
      .stop()
      .catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_SERVICE_FAILED')).toBe(true);
    expect((error as Error).message).toContain('3 pod(s) left: api-0, api-1, api-2');
    expect((error as Error).message).toContain('kubectl describe pods --selector=app=api');
    // 10 s at one poll per 2 s: the first poll and five more
    expect(fakes.lines().filter((l) => l.startsWith('kubectl get pods'))).toHaveLength(6);
  });

  it('reads logs with --tail and --since', async () => {
    const logs = await controller().logs?.({ lines: 2, since: '10m' });
    expect(logs).toBe('log line 1\nlog line 2');
    expect(fakes.lines()).toEqual([`kubectl logs deployment/api --tail=2 --since=10m ${scope}`]);
  });
});
