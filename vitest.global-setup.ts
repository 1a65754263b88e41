// After the whole run: a sandbox server or temp dir still there is a bug, so the run fails.
import { setTimeout as sleep } from 'node:timers/promises';
import { findSandboxDirs, findSandboxProcesses } from '@drkit/sandbox';

export default function setup() {
  const before = new Set(findSandboxDirs());
  return async function teardown() {
    // Reapers of servers killed with their test worker need a moment to finish.
    let processes = findSandboxProcesses();
    let dirs = findSandboxDirs().filter((d) => !before.has(d));
    for (let i = 0; i < 40 && (processes.length > 0 || dirs.length > 0); i++) {
      await sleep(250);
      processes = findSandboxProcesses();
      dirs = findSandboxDirs().filter((d) => !before.has(d));
    }
    if (processes.length > 0 || dirs.length > 0) {
      throw new Error(
        `sandbox services outlived the test run:\n${[...processes.map((p) => `process ${p.pid}: ${p.command}`), ...dirs.map((d) => `dir ${d}`)].join('\n')}`,
      );
    }
  };
}
