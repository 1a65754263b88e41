// Watchdog started beside every sandbox server. If the process that started the server
// dies without stopping it (SIGKILL, a crashed test worker), the reaper kills every process
// of the server's dir and removes the dir, so nothing outlives its owner.
// Runs as a standalone script (Node built-ins only, no relative imports, erasable types), so
// it repeats in small what leaks.ts does.
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';

const [ownerArg, serviceArg, dir] = process.argv.slice(2);
const owner = Number(ownerArg);
const service = Number(serviceArg);

function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !zombie(pid);
}

// PostgreSQL's children call setsid(), so the server's process group does not hold them
// all: everything that runs in the dir or names it goes.
function killAll(root: string): number {
  let left = 0;
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!pid || pid === process.pid || zombie(pid)) continue;
    let match = false;
    try {
      match = readlinkSync(`/proc/${pid}/cwd`).startsWith(root);
    } catch {
      // not ours to inspect, or gone
    }
    try {
      match ||= readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(root);
    } catch {
      // gone
    }
    if (!match) continue;
    left++;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  return left;
}

if (!owner || !service || !dir) process.exit(2);

const timer = setInterval(() => {
  if (!alive(service)) {
    // Stopped by its owner, who removes the dir itself.
    clearInterval(timer);
    return;
  }
  if (alive(owner)) return;
  clearInterval(timer);
  const deadline = Date.now() + 10_000;
  const finish = setInterval(() => {
    if (killAll(dir) > 0 && Date.now() < deadline) return;
    clearInterval(finish);
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }, 50);
}, 200);
