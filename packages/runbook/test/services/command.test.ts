import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getFreePort } from '@drkit/sandbox';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { isRunbookError } from '../../src/errors.js';
import { createHealthCheck } from '../../src/health/index.js';
import { createLogger, type LogEntry } from '../../src/log.js';
import { type CommandServiceConfig, createController, isPidAlive, type ServiceController } from '../../src/services/index.js';
import { createShell } from '../../src/shell.js';

const app = fileURLToPath(new URL('../fixtures/services/app.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'drkit-runbook-command-'));
const pidPath = join(dir, 'app.pid');
/** Every pid a test saw, killed at the end whatever happened. */
const seen = new Set<number>();

afterEach(() => {
  // A test that killed its app with SIGKILL leaves a stale pid file behind.
  if (existsSync(pidPath)) seen.add(Number(readFileSync(pidPath, 'utf8')));
  rmSync(pidPath, { force: true });
});
afterAll(() => {
  for (const pid of seen) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone, as it should be
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

const entries: LogEntry[] = [];
const log = createLogger({ sink: (entry) => entries.push(entry) });
const shell = createShell({ log });

function pid(): number {
  const value = Number(readFileSync(pidPath, 'utf8'));
  seen.add(value);
  return value;
}

// The app is put in the background with all its output redirected: a child that kept
// the shell's stdout open would keep the start command from ever returning.
const launch = (port: number, extra = '') => `'${process.execPath}' '${app}' --port ${port} --pid-file app.pid ${extra} > app.log 2>&1 &`;

async function service(overrides: Partial<CommandServiceConfig> = {}, omit: 'stop'[] = []) {
  const port = await getFreePort();
  const config: CommandServiceConfig = {
    type: 'command',
    start: launch(port),
    stop: 'kill "$(cat app.pid)"',
    pidFile: 'app.pid',
    cwd: dir,
    logs: 'tail -n "$DRKIT_LOG_LINES" app.log',
    startTimeoutMs: 15_000,
    ...overrides,
  };
  for (const key of omit) delete config[key];
  const controller = createController('app', config, { shell, log, pollIntervalMs: 50 });
  const health = createHealthCheck('app', { type: 'http', url: `http://127.0.0.1:${port}/health`, contains: 'ok', timeoutMs: 2000 });
  return { controller, health, port, config };
}

async function stopQuietly(controller: ServiceController) {
  await controller.stop().catch(() => {});
}

describe('command controller', () => {
  it('starts a real app in the background, sees it running, and stops it for good', async () => {
    const { controller, health, port } = await service();
    expect(await controller.status()).toEqual({ state: 'stopped', detail: `no pid in ${pidPath}` });

    await controller.start();
    const first = pid();
    expect(isPidAlive(first)).toBe(true);
    expect(await health.check()).toMatchObject({ ok: true, detail: '200 OK, body contains "ok"' });
    expect(await controller.status()).toEqual({ state: 'running', detail: `pid ${first} is alive` });
    expect(await controller.logs?.({ lines: 1 })).toBe(`listening on ${port} as pid ${first}`);

    await controller.stop();
    expect(isPidAlive(first)).toBe(false);
    expect(existsSync(pidPath)).toBe(false);
    const down = await health.check();
    expect(down.ok).toBe(false);
    expect(down.detail).toMatch(/connection refused/);
    expect((await controller.status()).state).toBe('stopped');
  });

  it('restart gives a new process, and start on a running service starts no second one', async () => {
    const { controller, health } = await service();
    try {
      await controller.start();
      const first = pid();
      await controller.start();
      expect(pid()).toBe(first);

      await controller.restart();
      const second = pid();
      expect(second).not.toBe(first);
      expect(isPidAlive(first)).toBe(false);
      expect(isPidAlive(second)).toBe(true);
      expect((await health.check()).ok).toBe(true);
    } finally {
      await stopQuietly(controller);
    }
  });

  it('start waits until the pid file appears, for an app that takes a while to listen', async () => {
    const port = await getFreePort();
    const { controller } = await service({ start: launch(port, '--delay-ms 600') });
    try {
      const health = createHealthCheck('app', { type: 'http', url: `http://127.0.0.1:${port}/health` });
      await controller.start();
      expect((await health.check()).ok).toBe(true);
    } finally {
      await stopQuietly(controller);
    }
  });

  it('without a stop command, sends SIGTERM to the pid and waits until it is gone', async () => {
    const { controller, health } = await service({}, ['stop']);
    await controller.start();
    const running = pid();
    entries.length = 0;
    await controller.stop();
    expect(isPidAlive(running)).toBe(false);
    expect((await health.check()).ok).toBe(false);
    expect(entries.map((e) => e.message)).toContain(`$ kill -TERM ${running}`);
  });

  it('stop fails with RUNBOOK_SERVICE_FAILED, naming the pid, when the process outlives stopTimeoutMs', async () => {
    const port = await getFreePort();
    const { controller } = await service({ start: launch(port, '--ignore-term'), stopTimeoutMs: 500 });
    await controller.start();
    const stubborn = pid();
    try {
      const error = await controller.stop().catch((e: unknown) => e);
      expect(isRunbookError(error, 'RUNBOOK_SERVICE_FAILED')).toBe(true);
      expect((error as Error).message).toContain(`did not stop within 500 ms: pid ${stubborn} is still running`);
      expect((error as Error).message).toContain(`kill -KILL ${stubborn}`);
      expect(isPidAlive(stubborn)).toBe(true);
    } finally {
      process.kill(stubborn, 'SIGKILL');
    }
  });

  it('a failing start command is RUNBOOK_SERVICE_FAILED with the command, its exit code and its stderr', async () => {
    const { controller } = await service({ start: 'echo "cannot read /etc/app.conf" >&2; exit 3' });
    const error = await controller.start().catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_SERVICE_FAILED')).toBe(true);
    expect((error as Error).message).toBe(
      'could not start service "app": `echo "cannot read /etc/app.conf" >&2; exit 3` exited with code 3: cannot read /etc/app.conf. ' +
        'Run it by hand to see the whole output.',
    );
  });

  it('a start command that returns without starting anything fails once startTimeoutMs has passed', async () => {
    const { controller } = await service({ start: 'true', startTimeoutMs: 400 });
    const error = await controller.start().catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_SERVICE_FAILED')).toBe(true);
    expect((error as Error).message).toMatch(/service "app" was not running 400 ms after `true` \(stopped: no pid in .*app\.pid\)/);
    expect((error as Error).message).toContain('tail -n "$DRKIT_LOG_LINES" app.log');
  });

  it('the abort signal kills a start command that hangs', async () => {
    const { controller } = await service({ start: 'echo $$ > hang.pid; exec sleep 30' });
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error('operator pressed Ctrl-C')), 300);
    const started = Date.now();
    const error = await controller.start({ signal: abort.signal }).catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_ABORTED')).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
    const hung = Number(readFileSync(join(dir, 'hang.pid'), 'utf8'));
    seen.add(hung);
    expect(isPidAlive(hung)).toBe(false);
  });

  it('uses the status command: exit 0 is running, and a live pid whose status fails is degraded', async () => {
    const flag = createController(
      'flag',
      { type: 'command', start: 'touch up', stop: 'rm -f up', status: 'test -f up', cwd: dir, env: { UNUSED: 'x' } },
      { shell, pollIntervalMs: 20 },
    );
    await flag.start();
    expect(await flag.status()).toEqual({ state: 'running', detail: 'the status command exited 0' });
    await flag.stop();
    expect(await flag.status()).toEqual({ state: 'stopped', detail: 'the status command exited 1' });

    const port = await getFreePort();
    const { controller } = await service({
      start: `echo launched >> launches; ${launch(port)}`,
      status: 'echo "db pool exhausted" >&2; exit 2',
      startTimeoutMs: 1000,
    });
    try {
      const error = await controller.start().catch((e: unknown) => e);
      expect((error as Error).message).toContain('was not running 1000 ms after');
      const status = await controller.status();
      expect(status.state).toBe('degraded');
      expect(status.detail).toBe(`pid ${pid()} is alive but the status command exited 2: db pool exhausted`);
      // A second start waits for the live process instead of launching a rival copy.
      await expect(controller.start()).rejects.toThrow(/was not running 1000 ms after/);
      expect(readFileSync(join(dir, 'launches'), 'utf8')).toBe('launched\n');
    } finally {
      process.kill(pid(), 'SIGKILL');
    }
  });

  it('passes env to the commands and reports unknown status when nothing can tell', async () => {
    const echo = createController(
      'echo',
      { type: 'command', start: 'printf %s "$GREETING" > greeting', stop: 'true', cwd: dir, env: { GREETING: 'hello' } },
      { shell },
    );
    await echo.start();
    expect(readFileSync(join(dir, 'greeting'), 'utf8')).toBe('hello');
    expect(await echo.status()).toEqual({ state: 'unknown', detail: 'neither a status command nor a pidFile is configured' });
    expect(echo.logs).toBeUndefined();
  });

  it('describe() shows the commands and the waits, and runs nothing', async () => {
    const { controller } = await service({ start: 'touch started && ./run-app &', stop: 'touch stopped' });
    expect(controller.describe('start')).toBe(
      'touch started && ./run-app &\n# then wait until the pid in app.pid is alive (up to 15000 ms)',
    );
    expect(controller.describe('stop')).toBe('touch stopped\n# then wait until that pid is gone (up to 30000 ms)');
    expect(controller.describe('restart')).toBe(`${controller.describe('stop')}\n${controller.describe('start')}`);
    const bare = createController('x', { type: 'command', start: 'a', pidFile: 'x.pid', status: 'b', restart: 'c' }, { shell });
    expect(bare.describe('stop')).toBe('kill -TERM $(cat x.pid)\n# then wait until that pid is gone (up to 30000 ms)');
    expect(bare.describe('restart')).toBe('c\n# then wait until the pid in x.pid is alive and `b` exits 0 (up to 30000 ms)');
    expect(existsSync(join(dir, 'started'))).toBe(false);
    expect(existsSync(join(dir, 'stopped'))).toBe(false);
  });

  it('the config needs a stop command or a pid file, and refuses unknown keys', () => {
    const service = (entry: unknown) => {
      const parsed = parseConfig({ environments: { x: { services: { a: entry } } } }).environment('x').services.a;
      if (parsed === undefined) throw new Error('service "a" is missing from the parsed config');
      return parsed;
    };
    expect(() => service({ type: 'command', start: 'a' })).toThrow(/environments\.x\.services\.a\.stop: give a stop command, or a pidFile/);
    expect(service({ type: 'command', start: 'a', pidFile: 'a.pid' })).toEqual({
      type: 'command',
      start: 'a',
      pidFile: 'a.pid',
    });
    expect(() => service({ type: 'command', start: 'a', stop: 'b', startTimeout: 5 })).toThrow(
      /environments\.x\.services\.a\.startTimeout: unknown field 'startTimeout'/,
    );
    const parsed = service({ type: 'command', start: 'a', stop: 'b', env: { A: '1' }, startTimeoutMs: 100 });
    // The parsed value goes straight into createController: this line does not compile if the types drift.
    expect(createController('a', parsed, { shell }).type).toBe('command');
  });
});
