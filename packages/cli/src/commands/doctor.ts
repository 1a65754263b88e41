import { execFile } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { defineCommand } from '../command.js';
import { EXIT } from '../errors.js';

const run = promisify(execFile);

interface Tool {
  name: string;
  /** What drkit uses it for. */
  purpose: string;
  versionArgs: string[];
  /** apt package that provides it. */
  aptPackage: string;
  required: boolean;
}

const TOOLS: Tool[] = [
  { name: 'pg_dump', purpose: 'PostgreSQL backups', versionArgs: ['--version'], aptPackage: 'postgresql-client', required: true },
  { name: 'pg_restore', purpose: 'PostgreSQL restores', versionArgs: ['--version'], aptPackage: 'postgresql-client', required: true },
  { name: 'psql', purpose: 'PostgreSQL checks', versionArgs: ['--version'], aptPackage: 'postgresql-client', required: true },
  { name: 'redis-cli', purpose: 'Redis diagnostics', versionArgs: ['--version'], aptPackage: 'redis-tools', required: false },
  { name: 'tar', purpose: 'listing file archives by hand', versionArgs: ['--version'], aptPackage: 'tar', required: false },
  { name: 'zstd', purpose: 'reading zstd archives by hand', versionArgs: ['--version'], aptPackage: 'zstd', required: false },
];

function findOnPath(name: string, extraDirs: string[], env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of [...extraDirs, ...(env.PATH ?? '').split(delimiter)]) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

// PostgreSQL client binaries on Debian live outside PATH, one dir per major version. An
// explicit PG_BIN is the only place looked at, so a wrong one is reported, not papered over.
function postgresDirs(env: NodeJS.ProcessEnv): string[] {
  if (env.PG_BIN) return [env.PG_BIN];
  const dirs: string[] = [];
  try {
    const majors = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
    dirs.push(...majors.map((m) => join('/usr/lib/postgresql', m, 'bin')));
  } catch {
    // not a Debian-style layout
  }
  return dirs;
}

/** `drkit doctor`: is this host ready to run drkit's backups and restores? */
export const doctorCommand = defineCommand({
  path: ['doctor'],
  summary: 'check that this host has what drkit needs (Node, PostgreSQL client, tools)',
  options: {
    json: { type: 'boolean', description: 'print the checks as JSON' },
  },
  async run({ options, io }) {
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    const checks: { name: string; ok: boolean; required: boolean; detail: string }[] = [
      {
        name: 'node',
        ok: major > 22 || (major === 22 && minor >= 12),
        required: true,
        detail: `v${process.versions.node}${major >= 22 ? '' : ' (drkit needs >= 22.12; Node 24 LTS recommended)'}`,
      },
    ];
    const pgDirs = postgresDirs(io.env);
    for (const tool of TOOLS) {
      const isPostgres = tool.aptPackage === 'postgresql-client';
      const path =
        isPostgres && io.env.PG_BIN ? findOnPath(tool.name, pgDirs, {}) : findOnPath(tool.name, isPostgres ? pgDirs : [], io.env);
      if (!path) {
        checks.push({
          name: tool.name,
          ok: false,
          required: tool.required,
          detail: `missing (${tool.purpose}): apt-get install ${tool.aptPackage}`,
        });
        continue;
      }
      try {
        const { stdout } = await run(path, tool.versionArgs, { timeout: 5000 });
        checks.push({ name: tool.name, ok: true, required: tool.required, detail: `${stdout.split('\n')[0]?.trim()} (${path})` });
      } catch (error) {
        checks.push({ name: tool.name, ok: false, required: tool.required, detail: `${path} did not run: ${(error as Error).message}` });
      }
    }
    const failed = checks.some((c) => c.required && !c.ok);
    if (options.json) {
      io.stdout.write(`${JSON.stringify({ ok: !failed, checks }, null, 2)}\n`);
    } else {
      for (const c of checks) io.stdout.write(`${c.ok ? 'ok  ' : c.required ? 'FAIL' : 'warn'}  ${c.name.padEnd(10)} ${c.detail}\n`);
    }
    return failed ? EXIT.FAILED : EXIT.OK;
  },
});
