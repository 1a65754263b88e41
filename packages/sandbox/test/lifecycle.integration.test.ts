import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findSandboxProcesses, isAlive, startSandbox } from '../src/index.js';
import { leftovers } from './helpers.js';

const owner = fileURLToPath(new URL('./fixtures/owner.ts', import.meta.url));

interface Started {
  dirs: string[];
  pids: number[];
}

/** Runs the owner fixture until it reports its services, then ends it as `how` says. */
async function runOwner(how: 'throw' | NodeJS.Signals): Promise<{ started: Started; exit: Promise<unknown> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', owner, how === 'throw' ? 'throw' : 'wait'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let out = '';
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const started = await new Promise<Started>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line) as Started);
    });
    child.once('exit', () => reject(new Error(`owner exited before starting its services:\n${err}`)));
  });
  if (how !== 'throw') child.kill(how);
  return { started, exit };
}

describe('sandbox lifecycle', () => {
  it('starts all three services (and a replica region) together and stops them all', async () => {
    const sandbox = await startSandbox({ s3Replica: true });
    const dirs = [sandbox.postgres.dir, sandbox.redis.dir, sandbox.s3.dir, sandbox.s3Replica.dir];
    expect(dirs.every((d) => existsSync(d))).toBe(true);
    expect(findSandboxProcesses().length).toBeGreaterThanOrEqual(4);
    await sandbox.stop();
    for (const dir of dirs) expect(await leftovers(dir)).toEqual({ processes: [], dirExists: false });
  });

  it('leaves out what is set to false', async () => {
    const sandbox = await startSandbox({ postgres: false, s3: false });
    try {
      expect(sandbox.postgres).toBeUndefined();
      expect(sandbox.s3).toBeUndefined();
      expect(sandbox.redis.port).toBeGreaterThan(0);
    } finally {
      await sandbox.stop();
    }
  });

  it('stops the services that did start when another one fails to start', async () => {
    const error = await startSandbox({ redis: { serverPath: '/nonexistent/redis-server' } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SANDBOX_BINARY_MISSING' });
  });

  for (const how of ['throw', 'SIGTERM', 'SIGINT', 'SIGKILL'] as const) {
    it(`cleans up when the owning process ${how === 'throw' ? 'dies of an uncaught exception' : `gets ${how}`}`, async () => {
      const { started, exit } = await runOwner(how);
      await exit;
      for (const dir of started.dirs) expect(await leftovers(dir, 10_000)).toEqual({ processes: [], dirExists: false });
      expect(started.pids.filter(isAlive)).toEqual([]);
    });
  }
});
