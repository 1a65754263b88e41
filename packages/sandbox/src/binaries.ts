import { execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { SandboxError } from './errors.js';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds `name` on `PATH` (as `which` does), or returns undefined. */
export function which(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function compareVersionsDesc(a: string, b: string): number {
  return Number.parseFloat(b) - Number.parseFloat(a);
}

/**
 * Locates the PostgreSQL server binaries (initdb, postgres, pg_ctl ...).
 * Order: the explicit `binDir`, `PG_BIN`, `pg_config --bindir`, the directory of `initdb`
 * on PATH, then the newest `/usr/lib/postgresql/<major>/bin` (Debian keeps them off PATH).
 * @throws SandboxError SANDBOX_BINARY_MISSING naming the packages to install.
 */
export function findPostgresBinDir(binDir?: string): string {
  const hasServer = (dir: string) => isExecutable(join(dir, 'initdb')) && isExecutable(join(dir, 'postgres'));
  const explicit = binDir ?? process.env.PG_BIN;
  if (explicit !== undefined && explicit !== '') {
    if (hasServer(explicit)) return explicit;
    throw new SandboxError(
      'SANDBOX_BINARY_MISSING',
      `PostgreSQL server binaries (initdb, postgres) are not in ${explicit} (from ${binDir ? 'the binDir option' : 'PG_BIN'}). ` +
        'Point it at the directory that holds them, or install the server: apt-get install postgresql (Debian/Ubuntu).',
    );
  }
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // pg_config is optional: it ships with the client dev packages, not the server.
  }
  const initdb = which('initdb');
  if (initdb) candidates.push(join(initdb, '..'));
  try {
    const majors = readdirSync('/usr/lib/postgresql').sort(compareVersionsDesc);
    for (const major of majors) candidates.push(join('/usr/lib/postgresql', major, 'bin'));
  } catch {
    // not a Debian-style layout
  }
  const found = candidates.find(hasServer);
  if (found) return found;
  throw new SandboxError(
    'SANDBOX_BINARY_MISSING',
    'PostgreSQL server binaries (initdb, postgres) were not found via PG_BIN, pg_config, PATH or /usr/lib/postgresql. ' +
      'Install the server: apt-get install postgresql (Debian/Ubuntu), or set PG_BIN to the directory that holds them.',
  );
}

/**
 * Locates `redis-server`: the explicit path, `REDIS_SERVER`, then PATH.
 * @throws SandboxError SANDBOX_BINARY_MISSING naming the package to install.
 */
export function findRedisServer(path?: string): string {
  const explicit = path ?? process.env.REDIS_SERVER;
  if (explicit !== undefined && explicit !== '') {
    if (isExecutable(explicit)) return explicit;
    throw new SandboxError(
      'SANDBOX_BINARY_MISSING',
      `redis-server is not executable at ${explicit} (from ${path ? 'the serverPath option' : 'REDIS_SERVER'}). ` +
        'Fix the path, or install it: apt-get install redis-server (Debian/Ubuntu).',
    );
  }
  const found = which('redis-server');
  if (found) return found;
  throw new SandboxError(
    'SANDBOX_BINARY_MISSING',
    'redis-server was not found on PATH. Install it: apt-get install redis-server (Debian/Ubuntu), or set REDIS_SERVER to its path.',
  );
}
