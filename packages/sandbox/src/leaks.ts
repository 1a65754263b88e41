import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { SANDBOX_DIR_PREFIX } from './prefix.js';

/** A process whose command line names a sandbox temp dir. */
export interface SandboxProcess {
  pid: number;
  command: string;
}

/**
 * Lists running processes that belong to sandbox servers, optionally only those of one
 * dir: their working dir or command line is in a sandbox temp dir (servers run in their
 * dir; redis-server rewrites its command line, so the working dir is what names it).
 * Reapers count too. Linux only: reads /proc.
 */
export function findSandboxProcesses(dir?: string): SandboxProcess[] {
  const needle = dir ?? `${tmpdir()}/${SANDBOX_DIR_PREFIX}`;
  const found: SandboxProcess[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let command: string;
    try {
      if (isZombie(Number(name))) continue;
      command = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue;
    }
    let cwd = '';
    try {
      cwd = readlinkSync(`/proc/${name}/cwd`);
    } catch {
      // a process of another user that we may not inspect, or one that just exited
    }
    if (command.includes(needle) || cwd.startsWith(needle)) found.push({ pid: Number(name), command });
  }
  return found;
}

/**
 * True when `pid` has exited but not been reaped. Such a process is dead, yet signal 0
 * still reaches it; an init that does not reap (some containers) leaves many of them.
 */
export function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** True when `pid` runs (a zombie does not count). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !isZombie(pid);
}

/**
 * Sends SIGKILL to every process of a sandbox dir. A process group is not enough:
 * PostgreSQL's children call setsid(), so they leave the postmaster's group.
 */
export function killDirProcesses(dir: string): void {
  for (const { pid } of findSandboxProcesses(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** Lists sandbox temp dirs that exist now under the OS temp dir. */
export function findSandboxDirs(): string[] {
  return readdirSync(tmpdir())
    .filter((name) => name.startsWith(SANDBOX_DIR_PREFIX))
    .map((name) => `${tmpdir()}/${name}`);
}
