import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  type Compression,
  createOpenStream,
  createSealStream,
  DEFAULT_CHUNK_SIZE,
  inspectSealed,
  Keyring,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  openBuffer,
  type SealOptions,
  type StreamProgress,
  seal,
  sealBuffer,
} from '../src/index.js';
import {
  collect,
  drain,
  expectedHeaderLength,
  expectSealError,
  fileStream,
  layoutOf,
  MiB,
  randomData,
  SMALL_CHUNK,
  split,
  TAG,
  testKey,
  textData,
  tinyPieces,
} from './unit-helpers.js';

const key = testKey(1);

interface Config {
  name: string;
  compression: Compression;
  level?: number;
}

const CONFIGS: Config[] = [
  { name: 'none', compression: 'none' },
  { name: 'gzip 1', compression: 'gzip', level: 1 },
  { name: 'gzip 9', compression: 'gzip', level: 9 },
  { name: 'zstd 3', compression: 'zstd', level: 3 },
  { name: 'zstd 19', compression: 'zstd', level: 19 },
];

function optionsOf(config: Config, chunkSize?: number): SealOptions {
  return {
    key,
    compression: config.compression,
    ...(config.level === undefined ? {} : { level: config.level }),
    ...(chunkSize === undefined ? {} : { chunkSize }),
  };
}

/** Sizes around the chunk boundaries, and many chunks. */
function sizesFor(chunk: number, many: number): number[] {
  return [0, 1, chunk - 1, chunk, chunk + 1, many];
}

const CONTENTS = [
  { kind: 'random', make: randomData },
  { kind: 'text', make: (n: number) => textData(n) },
] as const;

/** Seals, checks the layout invariants every stream has, opens, and compares. */
async function roundTrip(plain: Buffer, options: SealOptions): Promise<Buffer> {
  const sealed = await sealBuffer(plain, options);
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const info = await inspectSealed(sealed);
  expect(info).toEqual({
    version: 1,
    keyId: key.id,
    keySource: 'raw',
    compression: options.compression ?? 'zstd',
    chunkSize,
    headerLength: expectedHeaderLength(key.id, 'raw'),
  });
  // The last record holds a tag and fewer than chunkSize bytes.
  const lastRecord = (sealed.length - info.headerLength) % (chunkSize + TAG);
  expect(lastRecord).toBeGreaterThanOrEqual(TAG);
  if ((options.compression ?? 'zstd') === 'none')
    expect(sealed.length).toBe(info.headerLength + plain.length + TAG * (Math.floor(plain.length / chunkSize) + 1));
  const opened = await openBuffer(sealed, { keys: key });
  expect(opened.length).toBe(plain.length);
  expect(opened.equals(plain)).toBe(true);
  return sealed;
}

describe('seal round trips with chunkSize 64', () => {
  const sizes = sizesFor(SMALL_CHUNK, SMALL_CHUNK * 40 + 17);
  for (const config of CONFIGS) {
    for (const { kind, make } of CONTENTS) {
      it.each(sizes)(`${config.name}, ${kind}, %i bytes`, async (n) => {
        await roundTrip(make(n), optionsOf(config, SMALL_CHUNK));
      });
    }
  }
});

describe('seal round trips with the default chunk size (1 MiB)', () => {
  it.each(sizesFor(MiB, 2 * MiB + 5))('none, random, %i bytes', async (n) => {
    await roundTrip(randomData(n), optionsOf({ name: 'none', compression: 'none' }));
  });

  it.each(sizesFor(MiB, 2 * MiB + 5))('none, text, %i bytes', async (n) => {
    await roundTrip(textData(n), { key, compression: 'none' });
  });

  // gzip 9 and zstd 19 cost up to half a second per MiB of text: fewer sizes for them.
  for (const config of CONFIGS.filter((c) => c.compression !== 'none')) {
    const slow = config.level === 9 || config.level === 19;
    it.each(slow ? [1, MiB + 1] : [0, 1, MiB - 1, MiB, MiB + 1])(`${config.name}, random, %i bytes`, async (n) => {
      await roundTrip(randomData(n), optionsOf(config));
    });
    it.each(slow ? [MiB + 1] : [MiB - 1, MiB + 1])(`${config.name}, text, %i bytes`, async (n) => {
      await roundTrip(textData(n), optionsOf(config));
    });
  }

  it.each(['gzip', 'zstd'] as const)('%s at its default level, random, many chunks', async (compression) => {
    const sealed = await roundTrip(randomData(2 * MiB + 5), { key, compression });
    expect((await layoutOf(sealed)).chunks).toBe(3);
  });

  it('defaults to zstd and 1 MiB chunks', async () => {
    const sealed = await roundTrip(textData(5000), { key });
    const info = await inspectSealed(sealed);
    expect(info.compression).toBe('zstd');
    expect(info.chunkSize).toBe(DEFAULT_CHUNK_SIZE);
    expect(DEFAULT_CHUNK_SIZE).toBe(MiB);
  });
});

describe('compression inside the seal', () => {
  const plain = textData(100_000);

  it.each([
    ['gzip', 1],
    ['gzip', 6],
    ['gzip', 9],
    ['zstd', 3],
    ['zstd', 19],
  ] as const)('%s level %i stores what the same compressor makes (within a few bytes)', async (compression, level) => {
    const sealed = await sealBuffer(plain, { key, compression, level });
    const { content } = await layoutOf(sealed);
    const reference =
      compression === 'gzip'
        ? zlib.gzipSync(plain, { level }).length
        : zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } }).length;
    // gzip streams exactly what gzipSync makes; streaming zstd does not know the input size
    // up front, so it may pick other parameters than the one-shot call (measured: < 1%).
    expect(Math.abs(content - reference)).toBeLessThanOrEqual(compression === 'gzip' ? 32 : 64 + reference * 0.02);
    expect(content).toBeLessThan(plain.length / 2);
  });

  it('higher levels store less for compressible text', async () => {
    const contentOf = async (compression: Compression, level: number) =>
      (await layoutOf(await sealBuffer(plain, { key, compression, level }))).content;
    expect(await contentOf('gzip', 9)).toBeLessThan(await contentOf('gzip', 1));
    expect(await contentOf('zstd', 19)).toBeLessThan(await contentOf('zstd', 3));
  });

  it('the sealed chunks hide the plaintext (no compressed or clear text visible)', async () => {
    const marker = Buffer.from('postgres backup restore keyring');
    const clear = Buffer.concat([marker, textData(10_000), marker]);
    for (const compression of ['none', 'gzip', 'zstd'] as const) {
      const sealed = await sealBuffer(clear, { key, compression });
      expect(sealed.includes(marker)).toBe(false);
      expect(sealed.includes(Buffer.from('restore'))).toBe(false);
    }
  });
});

describe('stored size', () => {
  it('is exactly header + plaintext + one tag per chunk for compression none', async () => {
    for (const [n, chunkSize] of [
      [0, SMALL_CHUNK],
      [SMALL_CHUNK * 3, SMALL_CHUNK],
      [SMALL_CHUNK * 3 + 1, SMALL_CHUNK],
      [1000, 100],
      [3 * MiB, DEFAULT_CHUNK_SIZE],
    ] as const) {
      const sealed = await sealBuffer(randomData(n), { key, compression: 'none', chunkSize });
      const headerLength = expectedHeaderLength(key.id, 'raw');
      expect(sealed.length).toBe(headerLength + n + TAG * (Math.floor(n / chunkSize) + 1));
    }
  });

  it.each([
    ['gzip', (b: Buffer) => zlib.gzipSync(b, { level: 6 }).length],
    ['zstd', (b: Buffer) => zlib.zstdCompressSync(b).length],
  ] as const)('%s with 1 MiB chunks costs at most 0.1%% + 256 bytes over the compressed size', async (compression, compress) => {
    // Half incompressible, half text: about 1.6 MB compressed, so two chunks.
    const plain = Buffer.concat([randomData(1_500_000), textData(1_500_000)]);
    const sealed = await sealBuffer(plain, { key, compression });
    const { headerLength, chunks, content } = await layoutOf(sealed);
    expect(chunks).toBe(2);
    expect(sealed.length).toBe(headerLength + content + TAG * chunks);
    expect(Math.abs(content - compress(plain))).toBeLessThanOrEqual(32);
    expect(sealed.length).toBeLessThanOrEqual(content * 1.001 + 256);
    expect((await openBuffer(sealed, { keys: key })).equals(plain)).toBe(true);
  });
});

describe('seal input types', () => {
  const plain = textData(SMALL_CHUNK * 30 + 5);

  /** Seals `input`, checks the stream opens to `plain` and has the layout of `plain`. */
  async function sealsTo(input: Parameters<typeof seal>[0], compression: Compression, chunkSize = SMALL_CHUNK): Promise<void> {
    const sealed = await collect(seal(input, { key, compression, chunkSize }));
    expect((await openBuffer(sealed, { keys: key })).equals(plain)).toBe(true);
    if (compression === 'none')
      expect(sealed.length).toBe(expectedHeaderLength(key.id, 'raw') + plain.length + TAG * (Math.floor(plain.length / chunkSize) + 1));
  }

  for (const compression of ['none', 'gzip', 'zstd'] as const) {
    describe(compression, () => {
      it('a Buffer', async () => {
        await sealsTo(plain, compression);
      });

      it('a Uint8Array view into a larger buffer (offset honoured)', async () => {
        const backing = new Uint8Array(plain.length + 100).fill(0xee);
        backing.set(plain, 37);
        await sealsTo(backing.subarray(37, 37 + plain.length), compression);
      });

      it('a Readable from fs.createReadStream of a temp file', async () => {
        await sealsTo(await fileStream(plain, 100), compression);
      });

      it('an async iterable of many tiny Uint8Array pieces', async () => {
        await sealsTo(tinyPieces(plain), compression);
      });

      it('a sync iterable (array) of Buffers', async () => {
        await sealsTo(split(plain, 50), compression);
      });

      it('a Readable of strings', async () => {
        await sealsTo(Readable.from(split(plain, 33).map((b) => b.toString('latin1'))), compression);
      });

      it('createSealStream and createOpenStream piped with stream.pipeline', async () => {
        const parts: Buffer[] = [];
        await pipeline(
          Readable.from(tinyPieces(plain)),
          createSealStream({ key, compression, chunkSize: SMALL_CHUNK }),
          createOpenStream({ keys: key }),
          new Writable({
            write(chunk: Buffer, _encoding, callback) {
              parts.push(chunk);
              callback();
            },
          }),
        );
        expect(Buffer.concat(parts).equals(plain)).toBe(true);
      });
    });
  }

  it('a large file through a read stream with the default chunk size', async () => {
    const big = randomData(2 * MiB + 123);
    const sealed = await collect(seal(await fileStream(big, 64 * 1024), { key, compression: 'none' }));
    expect(sealed.length).toBe(expectedHeaderLength(key.id, 'raw') + big.length + TAG * 3);
    expect((await openBuffer(sealed, { keys: key })).equals(big)).toBe(true);
  });

  it('the sealed output of createSealStream opens with openBuffer', async () => {
    const sealedParts: Buffer[] = [];
    await pipeline(
      Readable.from(split(plain, 10)),
      createSealStream({ key, compression: 'gzip', chunkSize: 100 }),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          sealedParts.push(chunk);
          callback();
        },
      }),
    );
    const sealed = Buffer.concat(sealedParts);
    expect((await inspectSealed(sealed)).chunkSize).toBe(100);
    expect((await openBuffer(sealed, { keys: key })).equals(plain)).toBe(true);
  });

  it('an error of the input comes out of seal as the same error', async () => {
    const boom = new Error('source failed');
    for (const compression of ['none', 'gzip', 'zstd'] as const) {
      const failing = (async function* () {
        yield randomData(1000);
        throw boom;
      })();
      await expect(drain(seal(failing, { key, compression, chunkSize: SMALL_CHUNK }))).rejects.toBe(boom);
    }
  });
});

describe('seal progress', () => {
  function checkMonotonic(events: StreamProgress[]): void {
    for (let i = 1; i < events.length; i++) {
      const [a, b] = [events[i - 1] as StreamProgress, events[i] as StreamProgress];
      expect(b.plainBytes).toBeGreaterThanOrEqual(a.plainBytes);
      expect(b.sealedBytes).toBeGreaterThan(a.sealedBytes);
      expect(b.chunks).toBe(a.chunks + 1);
    }
  }

  it('reports every chunk, ending at the input and output sizes (compression none)', async () => {
    const n = SMALL_CHUNK * 10 + 3;
    const events: StreamProgress[] = [];
    const sealed = await collect(
      seal(tinyPieces(randomData(n)), { key, compression: 'none', chunkSize: SMALL_CHUNK, onProgress: (p) => events.push(p) }),
    );
    expect(events).toHaveLength(11);
    checkMonotonic(events);
    const headerLength = expectedHeaderLength(key.id, 'raw');
    expect(events[0]).toMatchObject({ chunks: 1, sealedBytes: headerLength + SMALL_CHUNK + TAG });
    expect(events.at(-1)).toEqual({ plainBytes: n, sealedBytes: sealed.length, chunks: 11 });
  });

  it('reports a single event for an empty input', async () => {
    const events: StreamProgress[] = [];
    const sealed = await sealBuffer(Buffer.alloc(0), { key, compression: 'none', onProgress: (p) => events.push(p) });
    expect(events).toEqual([{ plainBytes: 0, sealedBytes: sealed.length, chunks: 1 }]);
  });

  it.each(['gzip', 'zstd'] as const)('%s: plainBytes counts plaintext, sealedBytes the output, chunks the records', async (compression) => {
    const plain = Buffer.concat([textData(20_000), randomData(5_000)]);
    const events: StreamProgress[] = [];
    const sealed = await collect(
      seal(tinyPieces(plain, [97, 13, 1000]), { key, compression, chunkSize: 256, onProgress: (p) => events.push(p) }),
    );
    const { chunks } = await layoutOf(sealed);
    expect(chunks).toBeGreaterThan(10);
    expect(events).toHaveLength(chunks);
    checkMonotonic(events);
    expect(events.at(-1)).toEqual({ plainBytes: plain.length, sealedBytes: sealed.length, chunks });
  });

  it('the events are copies (a listener that keeps them sees each value)', async () => {
    const events: StreamProgress[] = [];
    await sealBuffer(randomData(SMALL_CHUNK * 3), { key, compression: 'none', chunkSize: SMALL_CHUNK, onProgress: (p) => events.push(p) });
    expect(events.map((e) => e.chunks)).toEqual([1, 2, 3, 4]);
  });
});

describe('seal abort', () => {
  /** 1000 pieces of 64 bytes; records how many were pulled and whether it was closed. */
  function source() {
    const state = { pulled: 0, closed: false };
    const iterable = (async function* () {
      try {
        for (let i = 0; i < 1000; i++) {
          state.pulled++;
          yield randomData(64);
        }
      } finally {
        state.closed = true;
      }
    })();
    return { state, iterable };
  }

  it.each(['none', 'gzip', 'zstd'] as const)(
    'aborting mid-seal (%s) rejects with SEAL_ABORTED and releases the input',
    async (compression) => {
      const controller = new AbortController();
      const reason = new Error('operator pressed ctrl-c');
      const { state, iterable } = source();
      const error = await expectSealError(
        drain(
          seal(iterable, {
            key,
            compression,
            chunkSize: SMALL_CHUNK,
            signal: controller.signal,
            onProgress: (p) => {
              if (p.chunks === 3) controller.abort(reason);
            },
          }),
        ),
        'SEAL_ABORTED',
      );
      expect(error.cause).toBe(reason);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(state.closed).toBe(true);
      if (compression === 'none') expect(state.pulled).toBeLessThan(10);
    },
  );

  it('an already aborted signal rejects before any chunk is sealed', async () => {
    const events: StreamProgress[] = [];
    await expectSealError(
      sealBuffer(randomData(1000), { key, signal: AbortSignal.abort(), onProgress: (p) => events.push(p) }),
      'SEAL_ABORTED',
    );
    expect(events).toEqual([]);
  });

  it('aborting a createSealStream in a pipeline rejects with SEAL_ABORTED', async () => {
    const controller = new AbortController();
    const { iterable } = source();
    await expectSealError(
      pipeline(
        Readable.from(iterable),
        createSealStream({
          key,
          compression: 'none',
          chunkSize: SMALL_CHUNK,
          signal: controller.signal,
          onProgress: (p) => {
            if (p.chunks === 2) controller.abort();
          },
        }),
        new Writable({
          write(_chunk, _encoding, callback) {
            callback();
          },
        }),
      ),
      'SEAL_ABORTED',
    );
  });
});

describe('seal options validation', () => {
  it.each([0, 1, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, 100.5, Number.NaN, -64])(
    'chunkSize %d is SEAL_INVALID_OPTIONS before anything is yielded',
    async (chunkSize) => {
      const generator = seal(Buffer.from('x'), { key, chunkSize });
      await expectSealError(generator.next(), 'SEAL_INVALID_OPTIONS');
    },
  );

  it('accepts the chunk size bounds', async () => {
    for (const chunkSize of [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]) {
      const sealed = await sealBuffer(Buffer.from('bounds'), { key, compression: 'none', chunkSize });
      expect((await inspectSealed(sealed)).chunkSize).toBe(chunkSize);
      expect((await openBuffer(sealed, { keys: key })).toString()).toBe('bounds');
    }
  });

  it.each([
    ['gzip', 0],
    ['gzip', 10],
    ['gzip', 2.5],
    ['gzip', -1],
    ['zstd', 0],
    ['zstd', 20],
    ['zstd', 3.5],
  ] as const)('%s level %d is SEAL_INVALID_OPTIONS before anything is yielded', async (compression, level) => {
    const generator = seal(Buffer.from('x'), { key, compression, level });
    const error = await expectSealError(generator.next(), 'SEAL_INVALID_OPTIONS');
    expect(error.message).toContain(compression);
  });

  it('an empty keyring is SEAL_KEY_MISSING', async () => {
    await expectSealError(sealBuffer(Buffer.from('x'), { key: new Keyring() }), 'SEAL_KEY_MISSING');
  });

  it('an unknown compression name is SEAL_INVALID_OPTIONS, not silently sealed as none', async () => {
    // Regression: compressor() had no default branch and encodeHeader wrote
    // COMPRESSION_IDS['brotli'] (undefined -> 0): a typo sealed uncompressed under a 'none' header.
    await expectSealError(sealBuffer(Buffer.from('x'), { key, compression: 'brotli' as Compression }), 'SEAL_INVALID_OPTIONS');
  });
});

describe('every seal is fresh', () => {
  it('two seals of the same plaintext with the same key differ (stream id, wrapped key, chunks)', async () => {
    const plain = textData(SMALL_CHUNK * 4);
    const a = await sealBuffer(plain, { key, compression: 'none', chunkSize: SMALL_CHUNK });
    const b = await sealBuffer(plain, { key, compression: 'none', chunkSize: SMALL_CHUNK });
    expect(a.length).toBe(b.length);
    expect(a.equals(b)).toBe(false);
    const headerLength = expectedHeaderLength(key.id, 'raw');
    // Same fixed fields and key id...
    expect(a.subarray(0, 16).equals(b.subarray(0, 16))).toBe(true);
    // ...a different stream id (bytes 16-32)...
    expect(a.subarray(16, 32).equals(b.subarray(16, 32))).toBe(false);
    // ...a different wrapped data key and MAC...
    expect(a.subarray(headerLength - 92, headerLength).equals(b.subarray(headerLength - 92, headerLength))).toBe(false);
    // ...and every chunk differs (fresh data key).
    for (let at = headerLength; at < a.length; at += SMALL_CHUNK + TAG) {
      expect(a.subarray(at, at + SMALL_CHUNK + TAG).equals(b.subarray(at, at + SMALL_CHUNK + TAG))).toBe(false);
    }
    expect((await openBuffer(a, { keys: key })).equals(plain)).toBe(true);
    expect((await openBuffer(b, { keys: key })).equals(plain)).toBe(true);
  });

  it('the key material never appears in the sealed bytes', async () => {
    const sealed = await sealBuffer(Buffer.alloc(1000), { key, compression: 'none' });
    expect(sealed.includes(key.key)).toBe(false);
    expect(sealed.includes(key.key.subarray(0, 8))).toBe(false);
    expect(sealed.toString('latin1')).toContain(key.id);
  });
});

describe('inspectSealed', () => {
  it('reports key id, key source, compression, chunk size and header length without a key', async () => {
    const named = testKey(2, 'prod-2025');
    const sealed = await sealBuffer(textData(1000), { key: named, compression: 'gzip', chunkSize: 4096 });
    expect(await inspectSealed(sealed)).toEqual({
      version: 1,
      keyId: 'prod-2025',
      keySource: 'raw',
      compression: 'gzip',
      chunkSize: 4096,
      headerLength: expectedHeaderLength('prod-2025', 'raw'),
    });
  });

  it('reads a passphrase header (scrypt) from one-byte pieces', async () => {
    const sealed = await sealBuffer(Buffer.from('x'), { key: { passphrase: 'correct horse', log2N: 10 }, compression: 'zstd' });
    expect(await inspectSealed(tinyPieces(sealed, [1]))).toEqual({
      version: 1,
      keyId: 'passphrase',
      keySource: 'scrypt',
      compression: 'zstd',
      chunkSize: DEFAULT_CHUNK_SIZE,
      headerLength: expectedHeaderLength('passphrase', 'scrypt'),
    });
  });
});
