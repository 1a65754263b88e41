import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compressor, DEFAULT_LEVELS, decompressor, zstdAvailable } from '../src/index.js';
import { collect, randomData, textData } from './unit-helpers.js';

/** Runs `data` (in pieces) through a transform and collects the output. */
async function run(transform: NodeJS.ReadWriteStream | undefined, data: Buffer, piece = 10_000): Promise<Buffer> {
  if (!transform) throw new Error('expected a transform');
  const input = Readable.from(
    (function* () {
      for (let at = 0; at < data.length; at += piece) yield data.subarray(at, at + piece);
    })(),
  );
  return collect(input.pipe(transform) as unknown as AsyncIterable<Uint8Array>);
}

describe('compression', () => {
  it('zstd is available on this Node', () => {
    expect(zstdAvailable()).toBe(true);
  });

  it('none has no compressor and no decompressor', () => {
    expect(compressor('none')).toBeUndefined();
    expect(decompressor('none')).toBeUndefined();
  });

  it('default levels are gzip 6 and zstd 3', () => {
    expect(DEFAULT_LEVELS).toEqual({ gzip: 6, zstd: 3 });
  });

  const text = textData(300_000);
  const random = randomData(100_000);

  it.each([
    ['gzip', undefined],
    ['gzip', 1],
    ['gzip', 9],
    ['zstd', undefined],
    ['zstd', 1],
    ['zstd', 19],
  ] as const)('%s level %s: decompressor is the inverse of compressor', async (compression, level) => {
    for (const data of [text, random, Buffer.alloc(0), Buffer.from('x')]) {
      const packed = await run(compressor(compression, level), data);
      expect((await run(decompressor(compression), packed, 777)).equals(data)).toBe(true);
    }
  });

  it('gzip output is standard gzip, at the level asked for', async () => {
    for (const level of [1, 6, 9]) {
      const packed = await run(compressor('gzip', level), text);
      expect(packed.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
      expect(zlib.gunzipSync(packed).equals(text)).toBe(true);
      expect(Math.abs(packed.length - zlib.gzipSync(text, { level }).length)).toBeLessThanOrEqual(32);
    }
    expect((await run(compressor('gzip'), text)).length).toBe((await run(compressor('gzip', 6), text)).length);
  });

  it('zstd output is standard zstd, and higher levels compress more', async () => {
    const fast = await run(compressor('zstd', 1), text);
    const strong = await run(compressor('zstd', 19), text);
    for (const packed of [fast, strong]) {
      expect(packed.readUInt32LE(0)).toBe(0xfd2fb528);
      expect(zlib.zstdDecompressSync(packed).equals(text)).toBe(true);
    }
    expect(strong.length).toBeLessThan(fast.length);
    expect((await run(compressor('zstd'), text)).equals(await run(compressor('zstd', 3), text))).toBe(true);
  });

  it('decompressors read what zlib made in one shot', async () => {
    expect((await run(decompressor('gzip'), zlib.gzipSync(text))).equals(text)).toBe(true);
    expect((await run(decompressor('zstd'), zlib.zstdCompressSync(text))).equals(text)).toBe(true);
  });

  it.each([
    ['gzip', 0],
    ['gzip', 10],
    ['gzip', 1.5],
    ['gzip', Number.NaN],
    ['zstd', 0],
    ['zstd', 20],
    ['zstd', -1],
    ['zstd', 2.5],
  ] as const)('%s level %d is SEAL_INVALID_OPTIONS', (compression, level) => {
    expect(() => compressor(compression, level)).toThrow(expect.objectContaining({ name: 'SealError', code: 'SEAL_INVALID_OPTIONS' }));
  });

  it('each call gives a fresh transform', () => {
    expect(compressor('gzip')).not.toBe(compressor('gzip'));
    expect(decompressor('zstd')).not.toBe(decompressor('zstd'));
  });

  it('a corrupt input makes the decompressor fail', async () => {
    await expect(run(decompressor('gzip'), Buffer.from('definitely not gzip data'))).rejects.toThrow();
    await expect(run(decompressor('zstd'), Buffer.from('definitely not zstd data'))).rejects.toThrow();
  });
});
