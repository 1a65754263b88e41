import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type Command, defineCommand, EXIT, main, UsageError, VERSION } from '../src/index.js';
import { memoryIo } from './io.js';

const echo = defineCommand({
  path: ['backup', 'echo'],
  summary: 'echo the arguments back',
  args: '<what>',
  positionals: { min: 1, max: 1 },
  options: {
    loud: { type: 'boolean', short: 'l', description: 'upper-case it' },
    kind: { type: 'string', value: 'KIND', description: 'a kind' },
  },
  run({ options, positionals, io }) {
    const text = `${positionals[0]}${options.kind ? `:${options.kind}` : ''}`;
    io.stdout.write(`${options.loud ? text.toUpperCase() : text}\n`);
    return EXIT.OK;
  },
});
const failing = defineCommand({
  path: ['backup', 'fail'],
  summary: 'fails with a coded error',
  options: {},
  run() {
    throw Object.assign(new Error('the store is unreachable; check DRKIT_STORE'), { code: 'STORE_UNREACHABLE' });
  },
});
const misuse = defineCommand({
  path: ['misuse'],
  summary: 'reports a usage error from inside run',
  options: {},
  run() {
    throw new UsageError("--kind must be one of postgres, redis (got 'mysql')");
  },
});
const commands = [echo, failing, misuse] as unknown as Command[];

async function run(argv: string[]) {
  const io = memoryIo();
  const code = await main(argv, io, { commands });
  return { code, out: io.out(), err: io.err() };
}

describe('drkit main', () => {
  it('prints help listing every command with --help, and exits 2 with no arguments', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/backup echo <what>\s+echo the arguments back/);
    expect(help.out).toMatch(/backup fail\s+fails with a coded error/);
    const bare = await run([]);
    expect(bare.code).toBe(2);
  });

  it('prints the package version', async () => {
    expect(await run(['--version'])).toEqual({ code: 0, out: `${VERSION}\n`, err: '' });
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('routes to the longest matching command and parses its flags', async () => {
    expect(await run(['backup', 'echo', 'hello', '--kind', 'config', '-l'])).toEqual({ code: 0, out: 'HELLO:CONFIG\n', err: '' });
  });

  it('shows one command help with its flags', async () => {
    const { code, out } = await run(['backup', 'echo', '--help']);
    expect(code).toBe(0);
    expect(out).toMatch(/Usage: drkit backup echo <what>/);
    expect(out).toMatch(/-l, --loud\s+upper-case it/);
    expect(out).toMatch(/--kind <KIND>\s+a kind/);
  });

  it.each([
    [['bogus'], /^drkit: unknown command 'bogus' \(see 'drkit --help'\)\n$/],
    [['--bogus'], /^drkit: unknown flag '--bogus' \(see 'drkit --help'\)\n$/],
    [['backup', 'nope'], /^drkit: unknown command 'drkit backup nope' \(see 'drkit backup --help'\)\n$/],
    [['backup', 'echo', 'x', '--nope'], /^drkit: unknown flag '--nope' for 'drkit backup echo' \(see 'drkit backup echo --help'\)\n$/],
    [['backup', 'echo'], /^drkit: 'drkit backup echo' needs <what>/],
    [['backup', 'echo', 'a', 'b'], /^drkit: unexpected argument 'b' for 'drkit backup echo'/],
    [['backup', 'echo', 'a', '--kind'], /^drkit: flag '--kind' needs a value/],
    [['misuse'], /^drkit: --kind must be one of postgres, redis \(got 'mysql'\)\n$/],
  ])('rejects %j with one clear line and exit 2', async (argv, message) => {
    const { code, out, err } = await run(argv);
    expect(code).toBe(2);
    expect(out).toBe('');
    expect(err).toMatch(message);
    expect(err.trim().split('\n')).toHaveLength(1);
  });

  it('lists a group of commands for a bare first word, exiting 2', async () => {
    const { code, err } = await run(['backup']);
    expect(code).toBe(2);
    expect(err).toMatch(/Usage: drkit backup <command>/);
    expect(err).toMatch(/backup echo/);
  });

  it('reports a failing command as one line with its code, exit 1', async () => {
    expect(await run(['backup', 'fail'])).toEqual({
      code: 1,
      out: '',
      err: 'drkit: error STORE_UNREACHABLE: the store is unreachable; check DRKIT_STORE\n',
    });
  });
});

describe('the drkit binary', () => {
  const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
  const exec = promisify(execFile);

  it('runs --version and --help as a real process', async () => {
    const version = await exec(process.execPath, [bin, '--version']);
    expect(version.stdout.trim()).toBe(VERSION);
    const help = await exec(process.execPath, [bin, '--help']);
    expect(help.stdout).toMatch(/doctor/);
  });

  it('exits 2 with one line on stderr for an unknown command', async () => {
    const error = (await exec(process.execPath, [bin, 'frobnicate']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(error.code).toBe(2);
    expect(error.stderr).toBe("drkit: unknown command 'frobnicate' (see 'drkit --help')\n");
  });

  it('doctor reports each tool and exits by whether the required ones are there', async () => {
    const ok = await exec(process.execPath, [bin, 'doctor', '--json']).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => e,
    );
    const report = JSON.parse(ok.stdout) as { ok: boolean; checks: { name: string; ok: boolean; required: boolean }[] };
    expect(report.checks.map((c) => c.name)).toEqual(['node', 'pg_dump', 'pg_restore', 'psql', 'redis-cli', 'tar', 'zstd']);
    expect(ok.code).toBe(report.ok ? 0 : 1);
  });

  it('doctor fails and names the package when PG_BIN points where the client is not', async () => {
    const error = (await exec(process.execPath, [bin, 'doctor'], { env: { ...process.env, PG_BIN: '/nonexistent' } }).catch(
      (e: unknown) => e,
    )) as { code: number; stdout: string };
    expect(error.code).toBe(1);
    expect(error.stdout).toMatch(/FAIL\s+pg_dump\s+missing \(PostgreSQL backups\): apt-get install postgresql-client/);
  });
});
