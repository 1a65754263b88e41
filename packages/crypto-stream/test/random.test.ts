import { describe, expect, it } from 'vitest';
import { isSealError, Keyring, openRandomAccess, type SealErrorCode, sealBuffer } from '../src/index.js';
import { collect, randomData, SMALL_CHUNK, testKey } from './unit-helpers.js';

const key = testKey(1, 'k1');

/** A sealed buffer and a fetch over it that records every range asked for. */
async function sealed(length: number, options: { compression?: 'none' | 'gzip' } = {}) {
  const plain = randomData(length);
  const bytes = await sealBuffer(plain, { key, chunkSize: SMALL_CHUNK, compression: options.compression ?? 'none' });
  const ranges: [number, number][] = [];
  const fetch = (start: number, end: number) => {
    ranges.push([start, end]);
    return bytes.subarray(start, end + 1);
  };
  return { plain, bytes, ranges, fetch };
}

async function codeOf(promise: Promise<unknown>): Promise<SealErrorCode | string> {
  try {
    await promise;
    return 'no error';
  } catch (error) {
    return isSealError(error) ? error.code : String(error);
  }
}

describe('openRandomAccess', () => {
  it('reads any plaintext range, fetching only the chunks that hold it', async () => {
    const { plain, bytes, ranges, fetch } = await sealed(SMALL_CHUNK * 10 + 17);
    const access = await openRandomAccess({ keys: key, size: bytes.length, fetch });
    expect(access.plainSize).toBe(plain.length);
    expect(ranges).toHaveLength(1);
    for (const [from, to] of [
      [0, 1],
      [0, plain.length],
      [SMALL_CHUNK - 1, SMALL_CHUNK + 1],
      [SMALL_CHUNK * 3, SMALL_CHUNK * 4],
      [SMALL_CHUNK * 10, plain.length],
      [plain.length - 3, plain.length],
      [100, 100],
      [plain.length, plain.length],
    ] as const) {
      ranges.length = 0;
      expect(await collect(access.read(from, to))).toEqual(plain.subarray(from, to));
      const span = access.locate(from, to);
      if (to > from || to === plain.length) {
        expect(ranges).toEqual([[span.start, span.end]]);
        expect(span.lastChunk - span.firstChunk + 1).toBe(
          Math.floor(Math.max(from, to - 1) / SMALL_CHUNK) - Math.floor(from / SMALL_CHUNK) + 1,
        );
      } else expect(ranges).toEqual([]);
    }
  });

  it('handles a stream whose final chunk is empty and an empty stream', async () => {
    for (const length of [SMALL_CHUNK * 4, 0]) {
      const { plain, bytes, fetch } = await sealed(length);
      const access = await openRandomAccess({ keys: key, size: bytes.length, fetch });
      expect(access.plainSize).toBe(length);
      expect(await collect(access.read(0, length))).toEqual(plain);
    }
  });

  it('opens with a keyring holding the key among others', async () => {
    const { plain, bytes, fetch } = await sealed(500);
    const keys = new Keyring([testKey(2, 'k2'), key]);
    const access = await openRandomAccess({ keys, size: bytes.length, fetch });
    expect(await collect(access.read(10, 20))).toEqual(plain.subarray(10, 20));
  });

  it('authenticates every chunk: a flipped byte, swapped chunks and a cut object fail', async () => {
    const { bytes } = await sealed(SMALL_CHUNK * 6 + 5);
    const access = await openRandomAccess({ keys: key, size: bytes.length, fetch: (s, e) => bytes.subarray(s, e + 1) });
    const { start } = access.locate(SMALL_CHUNK * 2, SMALL_CHUNK * 3);
    const record = SMALL_CHUNK + 16;

    const flipped = Buffer.from(bytes);
    flipped[start + 5] = (flipped[start + 5] as number) ^ 1;
    const a = await openRandomAccess({ keys: key, size: bytes.length, fetch: (s, e) => flipped.subarray(s, e + 1) });
    expect(await codeOf(collect(a.read(SMALL_CHUNK * 2, SMALL_CHUNK * 2 + 1)))).toBe('SEAL_CHUNK_TAMPERED');
    // Chunks outside the damaged one still read.
    expect((await collect(a.read(0, SMALL_CHUNK))).length).toBe(SMALL_CHUNK);

    // Chunk 3 served where chunk 2 is asked for: the nonce binds the index.
    const swapped = Buffer.from(bytes);
    bytes.copy(swapped, start, start + record, start + 2 * record);
    const b = await openRandomAccess({ keys: key, size: bytes.length, fetch: (s, e) => swapped.subarray(s, e + 1) });
    expect(await codeOf(collect(b.read(SMALL_CHUNK * 2, SMALL_CHUNK * 3)))).toBe('SEAL_CHUNK_TAMPERED');

    // A store returning fewer bytes than asked.
    const c = await openRandomAccess({ keys: key, size: bytes.length, fetch: (s, e) => bytes.subarray(s, e - 10) });
    expect(await codeOf(collect(c.read(SMALL_CHUNK * 2, SMALL_CHUNK * 4)))).toBe('SEAL_CHUNK_TAMPERED');

    // A manifest size that cuts the last chunk: the new "last" chunk is not the final one.
    const shorter = await openRandomAccess({ keys: key, size: bytes.length - 5, fetch: (s, e) => bytes.subarray(s, e + 1) });
    expect(await codeOf(collect(shorter.read(0, shorter.plainSize)))).toBe('SEAL_CHUNK_TAMPERED');
  });

  it('refuses a compressed stream, a wrong key, a cut header and ranges outside the stream', async () => {
    const gz = await sealed(300, { compression: 'gzip' });
    expect(await codeOf(openRandomAccess({ keys: key, size: gz.bytes.length, fetch: gz.fetch }))).toBe('SEAL_COMPRESSION_UNSUPPORTED');
    const { bytes, fetch } = await sealed(300);
    expect(await codeOf(openRandomAccess({ keys: testKey(3, 'k1'), size: bytes.length, fetch }))).toBe('SEAL_WRONG_KEY');
    expect(await codeOf(openRandomAccess({ keys: key, size: 40, fetch }))).toBe('SEAL_TRUNCATED');
    const access = await openRandomAccess({ keys: key, size: bytes.length, fetch });
    expect(() => access.locate(0, 301)).toThrow(/not within/);
    const controller = new AbortController();
    const aborting = await openRandomAccess({ keys: key, size: bytes.length, fetch, signal: controller.signal });
    controller.abort();
    expect(await codeOf(collect(aborting.read(0, 10)))).toBe('SEAL_ABORTED');
  });
});
