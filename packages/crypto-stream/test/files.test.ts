import { createReadStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  inspectSealed,
  isSealError,
  openBuffer,
  openToFile as openToFileRaw,
  type SealErrorCode,
  sealBuffer,
  sealFile as sealFileRaw,
  writeAtomically as writeAtomicallyRaw,
} from '../src/index.js';
import { expectedHeaderLength, expectSealError, randomData, TAG, tempDir, testKey, textData, within } from './unit-helpers.js';

// Every file operation here takes milliseconds; a hang fails its test after 2 s, not 60.
const DEADLINE = 2000;
const sealFile = (...args: Parameters<typeof sealFileRaw>) => within(sealFileRaw(...args), DEADLINE, 'sealFile');
const openToFile = (...args: Parameters<typeof openToFileRaw>) => within(openToFileRaw(...args), DEADLINE, 'openToFile');
const writeAtomically = (...args: Parameters<typeof writeAtomicallyRaw>) =>
  within(writeAtomicallyRaw(...args), DEADLINE, 'writeAtomically');

const key = testKey(51);
const CHUNK = 4096;
const plain = Buffer.concat([textData(150_000), randomData(100_000)]);

/** The names in `dir`, sorted. */
async function names(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** A copy of `bytes` with the byte at `at` XORed with 1. */
function flip(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = (copy[at] ?? 0) ^ 1;
  return copy;
}

describe('sealFile and openToFile', () => {
  it.each(['none', 'gzip', 'zstd'] as const)('%s: round trip through files, both written with mode 0600', async (compression) => {
    const dir = await tempDir();
    await writeFile(join(dir, 'dump.pgc'), plain);
    await sealFile(join(dir, 'dump.pgc'), join(dir, 'dump.sealed'), { key, compression, chunkSize: CHUNK });
    const sealed = await readFile(join(dir, 'dump.sealed'));
    expect(await inspectSealed(sealed)).toMatchObject({ keyId: key.id, compression, chunkSize: CHUNK });
    if (compression === 'none')
      expect(sealed.length).toBe(expectedHeaderLength(key.id, 'raw') + plain.length + TAG * (Math.floor(plain.length / CHUNK) + 1));
    expect((await stat(join(dir, 'dump.sealed'))).mode & 0o777).toBe(0o600);

    await openToFile(createReadStream(join(dir, 'dump.sealed'), { highWaterMark: 1000 }), join(dir, 'restored.pgc'), { keys: key });
    expect((await readFile(join(dir, 'restored.pgc'))).equals(plain)).toBe(true);
    expect((await stat(join(dir, 'restored.pgc'))).mode & 0o777).toBe(0o600);
    expect(await names(dir)).toEqual(['dump.pgc', 'dump.sealed', 'restored.pgc']);
  });

  it('sealFile of an empty file', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'empty'), '');
    await sealFile(join(dir, 'empty'), join(dir, 'empty.sealed'), { key, compression: 'none' });
    const sealed = await readFile(join(dir, 'empty.sealed'));
    expect(sealed.length).toBe(expectedHeaderLength(key.id, 'raw') + TAG);
    expect((await openBuffer(sealed, { keys: key })).length).toBe(0);
  });

  it('openToFile takes a Buffer and a mode, and replaces an existing file', async () => {
    const dir = await tempDir();
    const target = join(dir, 'out.bin');
    await writeFile(target, 'previous content');
    await openToFile(await sealBuffer(plain, { key, chunkSize: CHUNK }), target, { keys: key, mode: 0o640 });
    expect((await readFile(target)).equals(plain)).toBe(true);
    expect((await stat(target)).mode & 0o777).toBe(0o640);
    expect(await names(dir)).toEqual(['out.bin']);
  });

  it('sealFile replaces an existing output atomically', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'in'), plain);
    await writeFile(join(dir, 'out'), 'stale');
    await sealFile(join(dir, 'in'), join(dir, 'out'), { key, compression: 'zstd' });
    expect((await openBuffer(await readFile(join(dir, 'out')), { keys: key })).equals(plain)).toBe(true);
    expect(await names(dir)).toEqual(['in', 'out']);
  });

  describe('openToFile failures leave no target and no temp file, and an existing target untouched', () => {
    const cases: [string, (sealed: Buffer) => Buffer, SealErrorCode, typeof key][] = [
      ['a tampered middle chunk (after output was written)', (s) => flip(s, s.length - 3 * (CHUNK + TAG)), 'SEAL_CHUNK_TAMPERED', key],
      ['a tampered final chunk', (s) => flip(s, s.length - 2), 'SEAL_CHUNK_TAMPERED', key],
      ['a tampered header', (s) => flip(s, 14), 'SEAL_HEADER_TAMPERED', key],
      ['a truncation inside a chunk', (s) => s.subarray(0, s.length - CHUNK), 'SEAL_CHUNK_TAMPERED', key],
      [
        'a truncation at a chunk boundary',
        (s) => s.subarray(0, expectedHeaderLength(key.id, 'raw') + 10 * (CHUNK + TAG)),
        'SEAL_TRUNCATED',
        key,
      ],
      ['an input that is not sealed', () => plain, 'SEAL_NOT_SEALED', key],
      ['a wrong key', (s) => s, 'SEAL_WRONG_KEY', testKey(52, key.id)],
      ['an unknown key', (s) => s, 'SEAL_UNKNOWN_KEY', testKey(53)],
    ];

    it.each(cases)('%s', async (_name, damage, code, keys) => {
      const dir = await tempDir();
      const sealed = await sealBuffer(plain, { key, compression: 'none', chunkSize: CHUNK });
      const input = join(dir, 'input.sealed');
      await writeFile(input, damage(sealed));

      // No previous file: none afterwards.
      await expectSealError(openToFile(createReadStream(input, { highWaterMark: 8192 }), join(dir, 'restored'), { keys }), code);
      expect(await names(dir)).toEqual(['input.sealed']);

      // A previous file: unchanged afterwards (content, inode and mode).
      const existing = join(dir, 'existing');
      await writeFile(existing, 'the good copy\n', { mode: 0o644 });
      const before = await stat(existing);
      await expectSealError(openToFile(damage(sealed), existing, { keys }), code);
      expect(await readFile(existing, 'utf8')).toBe('the good copy\n');
      const after = await stat(existing);
      expect(after.ino).toBe(before.ino);
      expect(after.mode & 0o777).toBe(0o644);
      expect(await names(dir)).toEqual(['existing', 'input.sealed']);
    });
  });

  it('sealFile of a missing input rejects (ENOENT) and leaves nothing', async () => {
    const dir = await tempDir();
    await expect(sealFile(join(dir, 'missing'), join(dir, 'out'), { key })).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await names(dir)).toEqual([]);
  });

  it('sealFile with invalid options rejects (SEAL_INVALID_OPTIONS) and leaves nothing', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'in'), 'x');
    await expectSealError(sealFile(join(dir, 'in'), join(dir, 'out'), { key, chunkSize: 1 }), 'SEAL_INVALID_OPTIONS');
    expect(await names(dir)).toEqual(['in']);
  });

  it('aborting sealFile and openToFile mid-way rejects and leaves nothing', async () => {
    // Whichever notices first (the sealer or the file pipeline), the caller sees SEAL_ABORTED.
    const isAbort = (e: unknown) => isSealError(e, 'SEAL_ABORTED');
    const dir = await tempDir();
    const big = randomData(2_000_000);
    await writeFile(join(dir, 'in'), big);
    const sealing = new AbortController();
    await expect(
      sealFile(join(dir, 'in'), join(dir, 'out'), {
        key,
        compression: 'none',
        chunkSize: CHUNK,
        signal: sealing.signal,
        onProgress: (p) => {
          if (p.chunks === 10) sealing.abort();
        },
      }),
    ).rejects.toSatisfy(isAbort);
    expect(await names(dir)).toEqual(['in']);

    const opening = new AbortController();
    const sealed = await sealBuffer(big, { key, compression: 'none', chunkSize: CHUNK });
    await expect(
      openToFile(sealed, join(dir, 'out'), {
        keys: key,
        signal: opening.signal,
        onProgress: (p) => {
          if (p.chunks === 10) opening.abort();
        },
      }),
    ).rejects.toSatisfy(isAbort);
    expect(await names(dir)).toEqual(['in']);
  });
});

describe('writeAtomically', () => {
  it('exclusive: refuses to replace an existing file with EEXIST, leaving it and no temp file', async () => {
    const dir = await tempDir();
    const target = join(dir, 'kept');
    await writeFile(target, 'precious');
    const error = await writeAtomically(target, Buffer.from('new'), { exclusive: true }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'EEXIST' });
    expect(await readFile(target, 'utf8')).toBe('precious');
    expect(await names(dir)).toEqual(['kept']);
    await writeAtomically(join(dir, 'fresh'), Buffer.from('new'), { exclusive: true });
    expect(await readFile(join(dir, 'fresh'), 'utf8')).toBe('new');
    expect(await names(dir)).toEqual(['fresh', 'kept']);
  });

  it('a successful write settles, renames the temp file into place and closes it', async () => {
    // Regression: an fs.WriteStream made over a FileHandle (autoClose: false) holds a reference
    // on the handle until the stream is destroyed, which it never was on success: handle.close()
    // waited forever, the rename never happened and the temp file stayed. Every successful
    // writeAtomically / sealFile / openToFile / writeEnvFile hung.
    const dir = await tempDir();
    await writeAtomically(
      join(dir, 'out'),
      (async function* () {
        yield Buffer.from('done');
      })(),
    );
    expect(await readFile(join(dir, 'out'), 'utf8')).toBe('done');
    expect(await names(dir)).toEqual(['out']);
  });

  it('writes an async iterable with mode 0600 by default, or the mode given', async () => {
    const dir = await tempDir();
    const parts = [Buffer.from('one '), new Uint8Array([116, 119, 111]), Buffer.from(' three')];
    await writeAtomically(
      join(dir, 'a'),
      (async function* () {
        yield* parts;
      })(),
    );
    expect(await readFile(join(dir, 'a'), 'utf8')).toBe('one two three');
    expect((await stat(join(dir, 'a'))).mode & 0o777).toBe(0o600);
    await writeAtomically(join(dir, 'b'), (async function* () {})(), { mode: 0o640 });
    expect(await readFile(join(dir, 'b'), 'utf8')).toBe('');
    expect((await stat(join(dir, 'b'))).mode & 0o777).toBe(0o640);
    expect(await names(dir)).toEqual(['a', 'b']);
  });

  it('a source that throws midway rejects with its error and leaves nothing; an existing file is untouched', async () => {
    const dir = await tempDir();
    const boom = new Error('source failed midway');
    const failing = () =>
      (async function* () {
        for (let i = 0; i < 50; i++) yield randomData(64 * 1024);
        throw boom;
      })();
    await expect(writeAtomically(join(dir, 'new'), failing())).rejects.toBe(boom);
    expect(await names(dir)).toEqual([]);
    await writeFile(join(dir, 'old'), 'keep me');
    await expect(writeAtomically(join(dir, 'old'), failing())).rejects.toBe(boom);
    expect(await readFile(join(dir, 'old'), 'utf8')).toBe('keep me');
    expect(await names(dir)).toEqual(['old']);
  });

  it('a Readable source (fs.createReadStream) is copied', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'src'), plain);
    await writeAtomically(join(dir, 'copy'), createReadStream(join(dir, 'src'), { highWaterMark: 999 }));
    expect((await readFile(join(dir, 'copy'))).equals(plain)).toBe(true);
    expect(await names(dir)).toEqual(['copy', 'src']);
  });

  it('aborting rejects with SEAL_ABORTED and leaves nothing', async () => {
    const dir = await tempDir();
    const controller = new AbortController();
    const source = (async function* () {
      for (let i = 0; i < 100; i++) {
        if (i === 5) controller.abort();
        yield Buffer.alloc(1000, i);
      }
    })();
    await expect(writeAtomically(join(dir, 'x'), source, { signal: controller.signal })).rejects.toMatchObject({ code: 'SEAL_ABORTED' });
    expect(await names(dir)).toEqual([]);
  });

  it('a missing directory rejects with ENOENT', async () => {
    const dir = await tempDir();
    await expect(writeAtomically(join(dir, 'no', 'x'), (async function* () {})())).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await names(dir)).toEqual([]);
  });

  it('concurrent writes to one path end with one complete version and no temp files', async () => {
    const dir = await tempDir();
    const versions = [randomData(300_000), randomData(300_000), randomData(300_000)];
    await Promise.all(
      versions.map((v) =>
        writeAtomically(
          join(dir, 'target'),
          (async function* () {
            for (let at = 0; at < v.length; at += 10_000) yield v.subarray(at, at + 10_000);
          })(),
        ),
      ),
    );
    const result = await readFile(join(dir, 'target'));
    expect(versions.some((v) => v.equals(result))).toBe(true);
    expect(await names(dir)).toEqual(['target']);
  });

  it('a Buffer or Uint8Array source (a ByteSource) is written as is', async () => {
    // Regression: pipeline() iterates a Buffer as numbers, so the write stream threw
    // ERR_INVALID_ARG_TYPE, and writeEnvFile() (which passes a Buffer) never wrote anything.
    const dir = await tempDir();
    await writeAtomically(join(dir, 'buf'), Buffer.from('hello'));
    expect(await readFile(join(dir, 'buf'), 'utf8')).toBe('hello');
    await writeAtomically(join(dir, 'u8'), new Uint8Array([104, 105]));
    expect(await readFile(join(dir, 'u8'), 'utf8')).toBe('hi');
    expect(await names(dir)).toEqual(['buf', 'u8']);
  });

  it('a failed Buffer write leaves no temp file behind', async () => {
    const dir = await tempDir();
    await writeAtomically(join(dir, 'buf'), Buffer.from('hello')).catch(() => {});
    expect((await names(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});
