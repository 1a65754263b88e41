import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { findSandboxProcesses } from '../src/index.js';

/** Waits (briefly) until no process of `dir` runs and the dir is gone; returns what is left. */
export async function leftovers(dir: string, waitMs = 5000): Promise<{ processes: number[]; dirExists: boolean }> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const processes = findSandboxProcesses(dir).map((p) => p.pid);
    const dirExists = existsSync(dir);
    if ((processes.length === 0 && !dirExists) || Date.now() > deadline) return { processes, dirExists };
    await sleep(100);
  }
}
