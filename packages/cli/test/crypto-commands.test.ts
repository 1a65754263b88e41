import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { generateKey, inspectSealed, keyIdOf, parseKey } from '@drkit/crypto-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CliIo, main } from '../src/index.js';
import { memoryIo } from './io.js';

/** Half-compressible bytes: JSON-ish lines alternating with random blocks. */
function sample(size: number): Buffer {
  const parts: Buffer[] = [];
  let length = 0;
  for (let i = 0; length < size; i++) {
    const part =
      i % 2 === 0 ? Buffer.from(`{"row":${i},"name":"user-${i}","active":true,"note":"same text again"}\n`.repeat(60)) : randomBytes(4096);
    parts.push(part);
    length += part.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

const KEY = generateKey();
const KEY_B64 = KEY.toString('base64');
const KEY_ID = keyIdOf(KEY);
const OTHER = generateKey();
const keyEnv = (key: Buffer = KEY): NodeJS.ProcessEnv => ({ DRKIT_KEY: key.toString('base64') });

interface Result {
  code: number;
  out: string;
  err: string;
  stdout: Buffer;
}

/** Runs `drkit` in-process; stdin is `input` when given. Stdout is kept as bytes too. */
async function drkit(argv: string[], env: NodeJS.ProcessEnv, input?: Buffer): Promise<Result> {
  const io: CliIo & { out(): string; err(): string } = memoryIo(env);
  const chunks: Buffer[] = [];
  const stdout = new PassThrough();
  stdout.on('data', (c: Buffer) => chunks.push(c));
  const result = await main(argv, { ...io, stdout, ...(input ? { stdin: Readable.from([input]) } : {}) });
  const bytes = Buffer.concat(chunks);
  const secrets = [KEY_B64, KEY.toString('hex'), OTHER.toString('base64'), OTHER.toString('hex'), env.DRKIT_PASSPHRASE].filter(
    (s): s is string => typeof s === 'string' && s !== '',
  );
  // Key material never reaches the output, whatever happened.
  for (const secret of secrets) {
    expect(io.err()).not.toContain(secret);
    expect(bytes.includes(secret)).toBe(false);
  }
  return { code: result, out: bytes.toString('latin1'), err: io.err(), stdout: bytes };
}

let dir: string;
const at = (name: string) => join(dir, name);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-cli-crypto-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('drkit key generate', () => {
  it('prints one base64 32-byte key on stdout and only its id on stderr', async () => {
    const io = memoryIo();
    expect(await main(['key', 'generate'], io)).toBe(0);
    expect(io.out()).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    const key = parseKey(io.out());
    expect(key).toHaveLength(32);
    expect(io.err()).toBe(`key id: ${keyIdOf(key)}\n`);
    expect(keyIdOf(key)).toMatch(/^k[0-9a-f]{16}$/);
  });

  it('prints hex with --hex, and a new key every time', async () => {
    const a = memoryIo();
    const b = memoryIo();
    expect(await main(['key', 'generate', '--hex'], a)).toBe(0);
    expect(await main(['key', 'generate', '--hex'], b)).toBe(0);
    expect(a.out()).toMatch(/^[0-9a-f]{64}\n$/);
    expect(parseKey(a.out())).toHaveLength(32);
    expect(a.out()).not.toBe(b.out());
    expect(a.err()).toBe(`key id: ${keyIdOf(parseKey(a.out()))}\n`);
  });
});

describe('drkit seal and open', () => {
  const plain = sample(300_000);

  it.each(['none', 'gzip', 'zstd'] as const)('round-trips a file with --compress %s and DRKIT_KEY', async (compression) => {
    await writeFile(at('data'), plain);
    const sealed = await drkit(
      ['seal', '--in', at('data'), '--out', at('data.sealed'), '--compress', compression, '--chunk-size', '16K'],
      keyEnv(),
    );
    expect(sealed).toMatchObject({ code: 0, out: '' });
    const level = { none: 'no compression', gzip: 'gzip-6', zstd: 'zstd-3' }[compression];
    const size = (await stat(at('data.sealed'))).size;
    expect(sealed.err).toMatch(
      new RegExp(
        `^drkit: sealed ${at('data')} -> ${at('data.sealed')}: 300000 bytes in, ${size} bytes out, \\d+ chunks, ${level}, key ${KEY_ID}, [\\d.]+ s\\n$`,
      ),
    );
    expect(Number(sealed.err.match(/(\d+) chunks/)?.[1])).toBeGreaterThan(1);
    if (compression !== 'none') expect(size).toBeLessThan(plain.length);
    expect((await stat(at('data.sealed'))).mode & 0o777).toBe(0o600);
    const info = await inspectSealed(await readFile(at('data.sealed')));
    expect(info).toMatchObject({ compression, keyId: KEY_ID, chunkSize: 16 * 1024 });

    const opened = await drkit(['open', '--in', at('data.sealed'), '--out', at('data.opened')], keyEnv());
    expect(opened).toMatchObject({ code: 0, out: '' });
    expect(opened.err).toMatch(
      new RegExp(
        `^drkit: opened ${at('data.sealed')} -> ${at('data.opened')}: ${size} bytes in, 300000 bytes out, \\d+ chunks, .*key ${KEY_ID}, [\\d.]+ s\\n$`,
      ),
    );
    expect((await readFile(at('data.opened'))).equals(plain)).toBe(true);
    expect((await stat(at('data.opened'))).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).sort()).toEqual(['data', 'data.opened', 'data.sealed']);
  });

  it('round-trips with --key-file (the last key seals, any key opens) and with DRKIT_KEY_FILE', async () => {
    await writeFile(at('data'), plain);
    await writeFile(at('keys'), `# old key first, the current one last\n${OTHER.toString('hex')}\n\n${KEY_B64}\n`);
    const sealed = await drkit(['seal', '--in', at('data'), '--out', at('data.sealed'), '--key-file', at('keys')], {});
    expect(sealed.code).toBe(0);
    expect(sealed.err).toContain(`key ${KEY_ID}`);
    const opened = await drkit(['open', '--in', at('data.sealed'), '--out', at('data.opened')], { DRKIT_KEY_FILE: at('keys') });
    expect(opened.code).toBe(0);
    expect((await readFile(at('data.opened'))).equals(plain)).toBe(true);

    // A stream sealed with an older key opens with DRKIT_KEY plus DRKIT_OLD_KEYS after a rotation.
    const rotated = await drkit(['open', '--in', at('data.sealed'), '--out', at('rotated')], {
      DRKIT_KEY: generateKey().toString('base64'),
      DRKIT_OLD_KEYS: `${OTHER.toString('base64')},${KEY_B64}`,
    });
    expect(rotated.code).toBe(0);
    expect((await readFile(at('rotated'))).equals(plain)).toBe(true);
  });

  it('round-trips with DRKIT_PASSPHRASE, and names a wrong passphrase or a missing one', async () => {
    const env = { DRKIT_PASSPHRASE: 'correct horse battery staple' };
    await writeFile(at('data'), plain);
    const sealed = await drkit(['seal', '--in', at('data'), '--out', at('data.sealed'), '--compress', 'gzip'], env);
    expect(sealed.code).toBe(0);
    expect(sealed.err).toContain('key passphrase');
    const opened = await drkit(['open', '--in', at('data.sealed'), '--out', at('data.opened')], env);
    expect(opened.code).toBe(0);
    expect((await readFile(at('data.opened'))).equals(plain)).toBe(true);

    const wrong = await drkit(['open', '--in', at('data.sealed'), '--out', at('wrong')], { DRKIT_PASSPHRASE: 'battery horse' });
    expect(wrong).toMatchObject({ code: 1, out: '' });
    expect(wrong.err).toMatch(/^drkit: error SEAL_WRONG_KEY: the passphrase does not open this stream[^\n]*\n$/);
    const raw = await drkit(['open', '--in', at('data.sealed'), '--out', at('wrong')], keyEnv());
    expect(raw.err).toMatch(/^drkit: error SEAL_KEY_MISSING: this stream was sealed with a passphrase[^\n]*\n$/);
    expect((await readdir(dir)).sort()).toEqual(['data', 'data.opened', 'data.sealed']);
  });

  it('seals stdin to stdout and opens stdin to stdout', async () => {
    const sealed = await drkit(['seal', '--in', '-', '--out', '-'], keyEnv(), plain);
    expect(sealed.code).toBe(0);
    expect(sealed.stdout.subarray(0, 8).toString('latin1')).toBe('DRKSEAL\0');
    expect(sealed.err).toMatch(/^drkit: sealed stdin -> stdout: 300000 bytes in, \d+ bytes out, /);
    const opened = await drkit(['open', '--in', '-', '--out', '-'], keyEnv(), sealed.stdout);
    expect(opened.code).toBe(0);
    expect(opened.stdout.equals(plain)).toBe(true);
    expect(opened.err).toMatch(
      new RegExp(`^drkit: opened stdin -> stdout: ${sealed.stdout.length} bytes in, 300000 bytes out, .*zstd, key ${KEY_ID}`),
    );
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('drkit open of a bad input', () => {
  // No compression and 4 KiB chunks: chunk boundaries are known. 40000 bytes = 9 full chunks + a last one.
  const CHUNK = 4096;
  const RECORD = CHUNK + 16;
  const plain = sample(40_000);
  let sealed: Buffer;
  let headerLength: number;

  beforeEach(async () => {
    await writeFile(at('data'), plain);
    const result = await drkit(
      ['seal', '--in', at('data'), '--out', at('good.sealed'), '--compress', 'none', '--chunk-size', `${CHUNK}`],
      keyEnv(),
    );
    expect(result.err).toContain('10 chunks');
    sealed = await readFile(at('good.sealed'));
    headerLength = (await inspectSealed(sealed)).headerLength;
  });

  const flip = (bytes: Buffer, at: number, value?: number) => {
    const copy = Buffer.from(bytes);
    copy[at] = value ?? (copy[at] as number) ^ 1;
    return copy;
  };

  it.each<[string, string, () => Buffer, NodeJS.ProcessEnv | 'same id, other key']>([
    ['a chunk was altered', 'SEAL_CHUNK_TAMPERED', () => flip(sealed, headerLength + RECORD * 5 + 100), keyEnv()],
    ['the last chunk was altered', 'SEAL_CHUNK_TAMPERED', () => flip(sealed, sealed.length - 1), keyEnv()],
    ['it was cut at a chunk boundary', 'SEAL_TRUNCATED', () => sealed.subarray(0, headerLength + RECORD * 4), keyEnv()],
    ['it was cut inside the header', 'SEAL_TRUNCATED', () => sealed.subarray(0, headerLength - 10), keyEnv()],
    ['it is empty', 'SEAL_TRUNCATED', () => Buffer.alloc(0), keyEnv()],
    ['it was cut inside a chunk', 'SEAL_CHUNK_TAMPERED', () => sealed.subarray(0, headerLength + RECORD * 4 + 100), keyEnv()],
    ['the header was altered', 'SEAL_HEADER_TAMPERED', () => flip(sealed, 14, 0x20), keyEnv()],
    ['another key is given', 'SEAL_UNKNOWN_KEY', () => sealed, keyEnv(OTHER)],
    ['a wrong key has the same id', 'SEAL_WRONG_KEY', () => sealed, 'same id, other key'],
    ['it is not a sealed stream', 'SEAL_NOT_SEALED', () => plain, keyEnv()],
    ['it has a newer format version', 'SEAL_UNSUPPORTED_VERSION', () => flip(sealed, 8, 2), keyEnv()],
  ])('exits 1 when %s (%s), leaving no output and no temp file', async (_what, code, bytes, env) => {
    await writeFile(at('bad.sealed'), bytes());
    let useEnv: NodeJS.ProcessEnv;
    if (env === 'same id, other key') {
      await writeFile(at('keys'), `${KEY_ID} ${OTHER.toString('base64')}\n`);
      useEnv = { DRKIT_KEY_FILE: at('keys') };
    } else {
      useEnv = env;
    }
    const before = (await readdir(dir)).sort();
    const result = await drkit(['open', '--in', at('bad.sealed'), '--out', at('restored')], useEnv);
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    expect(result.err).toMatch(new RegExp(`^drkit: error ${code}: [^\\n]+\\n$`));
    expect((await readdir(dir)).sort()).toEqual(before);
  });

  it('with --out -, writes only the chunks that authenticated and exits 1', async () => {
    const tampered = flip(sealed, headerLength + RECORD * 5 + 100);
    const result = await drkit(['open', '--in', '-', '--out', '-'], keyEnv(), tampered);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/^drkit: error SEAL_CHUNK_TAMPERED: chunk 5 failed authentication[^\n]*\n$/);
    expect(result.stdout.equals(plain.subarray(0, CHUNK * 5))).toBe(true);
  });

  it('reports a malformed DRKIT_KEY without repeating it', async () => {
    const result = await drkit(['open', '--in', at('good.sealed'), '--out', at('x')], { DRKIT_KEY: 'not-a-key-but-a-secret' });
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/^drkit: error SEAL_KEY_INVALID: DRKIT_KEY is not a 32-byte key[^\n]*\n$/);
    expect(result.err).not.toContain('not-a-key-but-a-secret');
  });
});

describe('drkit seal and open refuse', () => {
  it.each([
    ['seal', ['seal', '--in', 'IN', '--out', 'OUT']],
    ['open', ['open', '--in', 'SEALED', '--out', 'OUT']],
  ])('%s: an existing --out without --force (exit 3, file unchanged), and replace it with --force', async (_name, argv) => {
    await writeFile(at('in'), 'precious input');
    await drkit(['seal', '--in', at('in'), '--out', at('sealed')], keyEnv());
    await writeFile(at('out'), 'do not destroy me');
    const paths: Record<string, string> = { IN: at('in'), SEALED: at('sealed'), OUT: at('out') };
    const args = argv.map((a) => paths[a] ?? a);
    const refused = await drkit(args, keyEnv());
    expect(refused.code).toBe(3);
    expect(refused.err).toBe(`drkit: refused: ${at('out')} already exists; nothing was written (pass --force to replace it)\n`);
    expect(await readFile(at('out'), 'utf8')).toBe('do not destroy me');
    expect((await readdir(dir)).sort()).toEqual(['in', 'out', 'sealed']);

    const forced = await drkit([...args, '--force'], keyEnv());
    expect(forced.code).toBe(0);
    expect(await readFile(at('out'), 'utf8')).not.toBe('do not destroy me');
  });

  it.each<[string, string[], RegExp]>([
    ['an unknown --compress', ['--compress', 'xz'], /^drkit: --compress must be one of none, gzip, zstd \(got 'xz'\)\n$/],
    ['a --level out of range', ['--compress', 'gzip', '--level', '12'], /^drkit: --level for gzip must be an integer from 1 to 9/],
    ['--level without compression', ['--compress', 'none', '--level', '3'], /^drkit: --level needs --compress gzip or zstd\n$/],
    ['a --chunk-size too large', ['--chunk-size', '65M'], /^drkit: --chunk-size must be 64 to 67108864 bytes/],
    ['no --in', ['--in'], /^drkit: flag '--in' needs a value/],
  ])('seal: %s is a usage error (exit 2) and writes nothing', async (_what, extra, message) => {
    await writeFile(at('in'), 'data');
    const args = ['seal', '--in', at('in'), '--out', at('out'), ...extra];
    const result = await drkit(args, keyEnv());
    expect(result).toMatchObject({ code: 2, out: '' });
    expect(result.err).toMatch(message);
    expect(result.err.trim().split('\n')).toHaveLength(1);
    expect(await readdir(dir)).toEqual(['in']);
  });

  it.each([
    [['seal', '--out', 'x'], /^drkit: 'drkit seal' needs --in <FILE> \('-' for stdin\)/],
    [['seal', '--in', 'x'], /^drkit: 'drkit seal' needs --out <FILE> \('-' for stdout\)/],
    [['open', '--in', 'x'], /^drkit: 'drkit open' needs --out <FILE>/],
    [['open', '--out', 'x'], /^drkit: 'drkit open' needs --in <FILE>/],
  ])('%j: a missing --in or --out is a usage error (exit 2)', async (argv, message) => {
    const result = await drkit(argv, keyEnv());
    expect(result.code).toBe(2);
    expect(result.err).toMatch(message);
  });

  it('names a missing input file and the same file given as --in and --out', async () => {
    const missing = await drkit(['seal', '--in', at('nope'), '--out', at('out')], keyEnv());
    expect(missing).toMatchObject({ code: 1, err: `drkit: error CLI_INPUT_MISSING: the input file ${at('nope')} does not exist\n` });
    await writeFile(at('in'), 'data');
    const same = await drkit(['seal', '--in', at('in'), '--out', at('in'), '--force'], keyEnv());
    expect(same.code).toBe(2);
    expect(same.err).toMatch(/--in and --out are the same file/);
    expect(await readFile(at('in'), 'utf8')).toBe('data');
    const nokey = await drkit(['seal', '--in', at('in'), '--out', at('out')], {});
    expect(nokey.code).toBe(1);
    expect(nokey.err).toMatch(/^drkit: error SEAL_KEY_MISSING: no key given/);
    expect(await readdir(dir)).toEqual(['in']);
  });
});

describe('the drkit binary', () => {
  const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
  const env = { ...process.env, DRKIT_KEY: KEY_B64 };

  function exited(child: ReturnType<typeof spawn>): Promise<{ code: number | null; stderr: string }> {
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
  }

  it('seals and opens through stdin/stdout pipes: drkit seal | drkit open', async () => {
    const plain = sample(2_000_000);
    const sealer = spawn(process.execPath, [bin, 'seal', '--in', '-', '--out', '-', '--compress', 'gzip', '--chunk-size', '64K'], { env });
    const opener = spawn(process.execPath, [bin, 'open', '--in', '-', '--out', '-'], { env });
    sealer.stdout.pipe(opener.stdin);
    const out: Buffer[] = [];
    opener.stdout.on('data', (c: Buffer) => out.push(c));
    const done = Promise.all([exited(sealer), exited(opener)]);
    sealer.stdin.end(plain);
    const [sealed, opened] = await done;
    expect(sealed.code).toBe(0);
    expect(opened.code).toBe(0);
    expect(Buffer.concat(out).equals(plain)).toBe(true);
    expect(sealed.stderr).toMatch(
      new RegExp(`^drkit: sealed stdin -> stdout: 2000000 bytes in, \\d+ bytes out, (1[0-9]|[2-9]\\d) chunks, gzip-6, key ${KEY_ID}, `),
    );
    expect(opened.stderr).toMatch(/^drkit: opened stdin -> stdout: \d+ bytes in, 2000000 bytes out, /);
    for (const text of [sealed.stderr, opened.stderr]) expect(text).not.toContain(KEY_B64);
  });

  it('stops on SIGINT with exit 130, leaving no output and no temp file', async () => {
    const child = spawn(process.execPath, [bin, 'seal', '--in', '-', '--out', at('out.sealed')], { env });
    const done = exited(child);
    child.stdin.write(sample(100_000)); // and never end: the seal waits for more
    // Signal once the temp file exists: the command is then streaming.
    for (let i = 0; i < 200 && !(await readdir(dir)).some((f) => f.endsWith('.tmp')); i++) await sleep(25);
    expect((await readdir(dir)).some((f) => f.endsWith('.tmp'))).toBe(true);
    child.kill('SIGINT');
    const { code, stderr } = await done;
    expect(code).toBe(130);
    expect(stderr).toBe('drkit: interrupted\n');
    expect(await readdir(dir)).toEqual([]);
  });
});
