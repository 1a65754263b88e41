import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { PgBackupError } from './errors.js';

const run = promisify(execFile);

/** The client programs drkit runs. */
export type PgTool = 'pg_dump' | 'pg_dumpall' | 'pg_restore' | 'psql' | 'pg_basebackup' | 'pg_verifybackup' | 'pg_ctl' | 'postgres';

/** Where to look for the client tools. */
export interface ToolOptions {
  /** Directory of pg_dump, pg_restore, ... @default PG_BIN, then /usr/lib/postgresql/<server major>/bin, then PATH */
  binDir?: string | undefined;
}

/** A located client tool and its version. */
export interface ToolInfo {
  path: string;
  /** "15.8" */
  version: string;
  major: number;
}

const cache = new Map<string, Promise<ToolInfo>>();

function candidates(tool: PgTool, serverMajor: number | undefined, binDir: string | undefined): string[] {
  if (binDir) return [join(binDir, tool)];
  const out: string[] = [];
  if (process.env.PG_BIN) out.push(join(process.env.PG_BIN, tool));
  // Debian and Ubuntu install every major side by side: the server's own major first, then
  // newer ones (a newer pg_dump can dump an older server), then PATH.
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const majors = readdirSync(root)
      .map(Number)
      .filter((m) => Number.isInteger(m) && (serverMajor === undefined || m >= serverMajor))
      .sort((a, b) => (a === serverMajor ? -1 : b === serverMajor ? 1 : b - a));
    for (const major of majors) out.push(join(root, String(major), 'bin', tool));
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) out.push(join(dir, tool));
  return out;
}

/**
 * Finds `tool`, preferring the one that matches the server's major version, and reads its version.
 * @throws PgBackupError PG_TOOL_MISSING naming the Debian package to install
 */
export function findTool(tool: PgTool, options: ToolOptions & { serverMajor?: number } = {}): Promise<ToolInfo> {
  // With binDir the server's major plays no part (see candidates): a lookup started before the
  // server answered (see prefetchTool) is the same lookup.
  const key = options.binDir ? `${tool}\0${options.binDir}` : `${tool}\0\0${options.serverMajor ?? ''}\0${process.env.PG_BIN ?? ''}`;
  let found = cache.get(key);
  if (!found) {
    found = locate(tool, options);
    cache.set(key, found);
    found.catch(() => cache.delete(key));
  }
  return found;
}

async function locate(tool: PgTool, options: ToolOptions & { serverMajor?: number }): Promise<ToolInfo> {
  for (const path of candidates(tool, options.serverMajor, options.binDir)) {
    if (!existsSync(path)) continue;
    const { stdout } = await run(path, ['--version']);
    const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(stdout);
    if (!m) continue;
    return { path, version: m[2] === undefined ? (m[1] as string) : `${m[1]}.${m[2]}`, major: Number(m[1]) };
  }
  const pkg = `postgresql-client-${options.serverMajor ?? 15}`;
  throw new PgBackupError(
    'PG_TOOL_MISSING',
    `${tool} was not found${options.binDir ? ` in ${options.binDir}` : ' (looked in PG_BIN, /usr/lib/postgresql/*/bin and PATH)'}: install ${pkg} (apt-get install ${pkg}) or pass binDir`,
  );
}

/**
 * Starts {@link findTool} for `tool` when its answer cannot depend on the server (`binDir` is
 * given), so that probing its version (a process start, ~10 ms) overlaps connecting to the
 * server instead of following it. The later findTool call with the server's major gets the same
 * lookup; a failure surfaces there, not here.
 */
export function prefetchTool(tool: PgTool, options: ToolOptions): void {
  if (options.binDir) findTool(tool, { binDir: options.binDir }).catch(() => {});
}

/**
 * Refuses a client older than the server: pg_dump cannot dump a newer server, and pg_restore
 * may not read what a newer pg_dump wrote.
 * @throws PgBackupError PG_CLIENT_TOO_OLD naming the client to install
 */
export function checkClientVersion(tool: ToolInfo, toolName: PgTool, serverMajor: number, serverVersion: string): void {
  if (tool.major >= serverMajor) return;
  throw new PgBackupError(
    'PG_CLIENT_TOO_OLD',
    `${toolName} ${tool.version} (${tool.path}) is older than the server (PostgreSQL ${serverVersion}) and cannot work with it: ` +
      `install postgresql-client-${serverMajor} (apt-get install postgresql-client-${serverMajor}) and pass its directory as binDir, or set PG_BIN`,
    { details: { client: tool.version, server: serverVersion } },
  );
}

/** A running client tool whose stderr is collected and split into lines as they come. */
export interface ToolProcess {
  child: ChildProcess;
  /** Every stderr line so far. */
  readonly stderrLines: string[];
  /** Resolves with the exit code (or -1 with the signal) once the process has exited. */
  exited: Promise<{ code: number; signal: NodeJS.Signals | null }>;
}

/**
 * Starts a client tool with stdio piped, its stderr read line by line into `onLine`. The
 * process is killed when `signal` aborts.
 */
export function startTool(
  path: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; signal?: AbortSignal; onLine?: (line: string) => void; stdin?: 'pipe' | 'ignore' },
): ToolProcess {
  const child = spawn(path, args, { env: options.env, stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'] });
  const stderrLines: string[] = [];
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // A dump of a huge database can log a line per object: keep the last ones only.
      if (stderrLines.length > 5000) stderrLines.splice(0, 1000);
      stderrLines.push(line);
      options.onLine?.(line);
    }
  });
  const onAbort = () => child.kill('SIGTERM');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const exited = new Promise<{ code: number; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (error) => {
      stderrLines.push(`could not start ${path}: ${error.message}`);
      resolve({ code: -1, signal: null });
    });
    child.once('close', (code, sig) => {
      options.signal?.removeEventListener('abort', onAbort);
      if (partial !== '') {
        stderrLines.push(partial);
        options.onLine?.(partial);
        partial = '';
      }
      resolve({ code: code ?? -1, signal: sig });
    });
  });
  return { child, stderrLines, exited };
}

/** The lines of a tool's stderr that say what went wrong (its own "error:" and server errors). */
export function errorLines(lines: readonly string[]): string[] {
  return lines.filter((l) => /error|fatal|could not|failed|aborting/i.test(l)).slice(-10);
}
