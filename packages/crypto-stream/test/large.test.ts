// One sealed stream larger than 64 GiB, the most one AES-GCM invocation may encrypt
// (2^39 - 256 bits): per-chunk nonces (a counter and a final flag) keep every invocation to one
// chunk. The input is generated on the fly from a few shared 16 MiB patterns in a seeded
// order, sealed, piped straight into open(), and every opened byte is compared with the byte
// generated at the same offset (so reordered, dropped or repeated chunks fail). Nothing
// touches the disk and memory stays at a few chunks. A direct comparison instead of two
// SHA-256 passes keeps the test near the cost of AES-GCM itself (about half the time).
import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateKey, masterKey, open, type StreamProgress, seal } from '../src/index.js';
import { Prng, seedFrom } from './helpers.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const CHUNK_SIZE = 16 * MiB;
/** Just past 64 GiB, and not a multiple of the chunk size, so the final chunk is short. */
const TOTAL = 64 * GiB + 12_345;
const PATTERNS = 5;
const SEED = seedFrom('LARGE_SEED', 0x64676962);
const TAG = 16;

describe('a sealed stream larger than 64 GiB', () => {
  it(`seals and opens ${TOTAL} bytes in chunks of 16 MiB, byte for byte (seed ${SEED})`, { timeout: 240_000 }, async () => {
    const key = masterKey(generateKey());
    const rng = new Prng(SEED);
    // The patterns never change after this line; `order` records which one each input piece was.
    const patterns = Array.from({ length: PATTERNS }, () => randomFillSync(Buffer.alloc(CHUNK_SIZE)));
    const order: number[] = [];
    {
      let generated = 0;
      let pieces = 0;
      async function* input(): AsyncGenerator<Buffer> {
        while (generated < TOTAL) {
          const n = Math.min(TOTAL - generated, CHUNK_SIZE);
          const which = rng.int(PATTERNS);
          order.push(which);
          const piece = (patterns[which] as Buffer).subarray(0, n);
          generated += n;
          pieces++;
          yield piece;
        }
      }

      let sealProgress: StreamProgress | undefined;
      let sealedBytes = 0;
      const sealed = seal(input(), {
        key,
        compression: 'none',
        chunkSize: CHUNK_SIZE,
        onProgress: (p) => {
          sealProgress = p;
        },
      });
      async function* countSealed(): AsyncGenerator<Buffer> {
        for await (const piece of sealed) {
          sealedBytes += piece.length;
          yield piece;
        }
      }

      let openProgress: StreamProgress | undefined;
      let opened = 0;
      const mismatches: number[] = [];
      const started = performance.now();
      for await (const plain of open(countSealed(), {
        keys: key,
        onProgress: (p) => {
          openProgress = p;
        },
      })) {
        // Compare with what was generated at the same offsets, across piece boundaries.
        let at = 0;
        while (at < plain.length) {
          const piece = Math.floor(opened / CHUNK_SIZE);
          const offset = opened % CHUNK_SIZE;
          const n = Math.min(plain.length - at, CHUNK_SIZE - offset);
          const expected = (patterns[order[piece] as number] as Buffer).subarray(offset, offset + n);
          if (!plain.subarray(at, at + n).equals(expected)) mismatches.push(opened);
          at += n;
          opened += n;
        }
      }
      const seconds = (performance.now() - started) / 1000;

      const chunks = Math.ceil((TOTAL + 1) / CHUNK_SIZE);
      expect(TOTAL).toBeGreaterThan(2 ** 36);
      expect(chunks).toBe(4097);
      expect(generated).toBe(TOTAL);
      expect(pieces).toBe(chunks);
      expect(opened, `plaintext bytes after ${seconds.toFixed(1)} s`).toBe(TOTAL);
      expect(mismatches, 'offsets where the opened plaintext differs from the generated input').toEqual([]);
      expect(sealProgress?.chunks, 'chunks sealed').toBe(chunks);
      expect(sealProgress?.plainBytes).toBe(TOTAL);
      expect(sealProgress?.sealedBytes).toBe(sealedBytes);
      expect(openProgress?.chunks, 'chunks authenticated').toBe(chunks);
      expect(openProgress?.plainBytes).toBe(TOTAL);
      expect(openProgress?.sealedBytes).toBe(sealedBytes);
      const headerLength = sealedBytes - TOTAL - chunks * TAG;
      expect(headerLength, 'header length of a raw-key stream with a 17-byte key id').toBe(16 + 16 + 1 + 17 + 1 + 12 + 48 + 32);
    }
  });
});
