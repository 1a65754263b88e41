import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { isRunbookError } from '../../src/errors.js';
import { createController, type SystemdServiceConfig } from '../../src/services/index.js';
import { type FakeTools, fakeTools } from '../fixtures/services/fake-tools.js';

interface SystemdState {
  unit: string;
  active: string;
  restarts: number;
}

const fakes: FakeTools = fakeTools();
afterAll(() => fakes.remove());

const unit = (cfg: Omit<SystemdServiceConfig, 'type'>) => createController('app', { type: 'systemd', ...cfg }, { shell: fakes.shell });

function setUnit(active = 'active') {
  fakes.setState({ systemd: { unit: 'app.service', active, restarts: 0 } satisfies SystemdState });
  fakes.clearCalls();
}
beforeEach(() => setUnit());

describe('systemd controller', () => {
  it('stops and starts the unit and reads is-active', async () => {
    const app = unit({ unit: 'app.service' });
    await app.stop();
    expect(await app.status()).toEqual({ state: 'stopped', detail: 'app.service is inactive' });
    await app.start();
    expect(await app.status()).toEqual({ state: 'running', detail: 'app.service is active' });
    await app.restart();
    expect(fakes.lines()).toEqual([
      'systemctl stop app.service',
      'systemctl is-active app.service',
      'systemctl start app.service',
      'systemctl is-active app.service',
      'systemctl restart app.service',
    ]);
    expect(fakes.state<SystemdState>('systemd').restarts).toBe(1);
  });

  it('passes --user, and runs state changes and the journal through sudo -n but not is-active', async () => {
    const app = unit({ unit: 'app.service', user: true, sudo: true });
    await app.stop();
    await app.status();
    expect(await app.logs?.({ lines: 3, since: '1 hour ago' })).toBe('journal line 1\njournal line 2\njournal line 3');
    expect(fakes.lines()).toEqual([
      'sudo -n systemctl --user stop app.service',
      'systemctl --user stop app.service',
      'systemctl --user is-active app.service',
      'sudo -n journalctl --user -u app.service -n 3 --no-pager --since 1 hour ago',
      'journalctl --user -u app.service -n 3 --no-pager --since 1 hour ago',
    ]);
  });

  it('describe() gives the same command lines and runs nothing', () => {
    expect(unit({ unit: 'app.service', sudo: true }).describe('restart')).toBe('sudo -n systemctl restart app.service');
    expect(unit({ unit: 'app.service', user: true }).describe('stop')).toBe('systemctl --user stop app.service');
    expect(fakes.calls()).toEqual([]);
  });

  it('maps failed to stopped and activating to degraded', async () => {
    setUnit('failed');
    expect(await unit({ unit: 'app.service' }).status()).toEqual({ state: 'stopped', detail: 'app.service is failed' });
    setUnit('activating');
    expect(await unit({ unit: 'app.service' }).status()).toEqual({ state: 'degraded', detail: 'app.service is activating' });
  });

  it('a unit systemctl does not know is RUNBOOK_SERVICE_FAILED with its message', async () => {
    const error = await unit({ unit: 'nope.service' })
      .start()
      .catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_SERVICE_FAILED')).toBe(true);
    expect((error as Error).message).toContain('could not start service "app": `systemctl start nope.service` exited with code 5');
    expect((error as Error).message).toContain('Unit nope.service could not be found.');
    expect((await unit({ unit: 'nope.service' }).status()).state).toBe('unknown');
  });
});
