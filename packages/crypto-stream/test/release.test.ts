import { describe, expect, it } from 'vitest';
import { openRandomAccess, releaseBuffer, sealBuffer } from '../src/index.js';
import { randomData, SMALL_CHUNK, testKey } from './unit-helpers.js';

describe('releaseBuffer', () => {
  it('frees a buffer that spans its whole ArrayBuffer, and says so', () => {
    const buffer = Buffer.alloc(64 * 1024, 7);
    const backing = buffer.buffer;
    expect(releaseBuffer(buffer)).toBe(true);
    expect(backing.detached).toBe(true);
    expect(buffer.length).toBe(0);
    // A second call finds nothing left to free.
    expect(releaseBuffer(buffer)).toBe(false);
  });

  it('frees an ArrayBuffer handed over on its own (a transferred message body)', () => {
    const data = new ArrayBuffer(8192);
    const view = new Uint8Array(data);
    expect(releaseBuffer(data)).toBe(true);
    expect(data.detached).toBe(true);
    expect(view.length).toBe(0);
  });

  it('leaves a slice alone: other views share its memory', () => {
    const parent = Buffer.alloc(16 * 1024, 1);
    for (const slice of [parent.subarray(1), parent.subarray(0, parent.length - 1), parent.subarray(100, 200)]) {
      expect(releaseBuffer(slice)).toBe(false);
      expect(parent.buffer.detached).toBe(false);
      expect(parent.every((b) => b === 1)).toBe(true);
    }
  });

  it("leaves small buffers of Node's shared pool alone, neighbours intact", () => {
    const first = Buffer.from('first neighbour');
    const small = Buffer.from('a pooled buffer');
    const last = Buffer.from('last neighbour');
    // Pooled: these share one ArrayBuffer larger than any of them.
    expect(small.buffer.byteLength).toBeGreaterThan(small.length);
    expect(releaseBuffer(small)).toBe(false);
    expect([first.toString(), small.toString(), last.toString()]).toEqual(['first neighbour', 'a pooled buffer', 'last neighbour']);
  });

  it('leaves memory it cannot detach to the collector: shared, WebAssembly, empty', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(8192));
    expect(releaseBuffer(shared)).toBe(false);
    expect(shared.length).toBe(8192);
    // WebAssembly is a Node global that the project's ES-only lib does not declare.
    const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: new (size: { initial: number }) => { buffer: ArrayBuffer } } })
      .WebAssembly;
    const wasm = new Uint8Array(new Memory({ initial: 1 }).buffer);
    expect(releaseBuffer(wasm)).toBe(false);
    expect(wasm.length).toBe(65536);
    expect(releaseBuffer(Buffer.alloc(0))).toBe(false);
  });

  it('may release every piece a random-access read yields without changing what later reads return', async () => {
    const key = testKey(2, 'k2');
    const plain = randomData(SMALL_CHUNK * 6 + 5);
    const bytes = await sealBuffer(plain, { key, chunkSize: SMALL_CHUNK, compression: 'none' });
    const access = await openRandomAccess({ keys: key, size: bytes.length, fetch: (start, end) => bytes.subarray(start, end + 1) });
    let released = 0;
    for (const [from, to] of [
      [0, plain.length],
      [SMALL_CHUNK, SMALL_CHUNK * 3],
      [0, plain.length],
      [SMALL_CHUNK * 2 + 9, SMALL_CHUNK * 5 - 3],
      [0, plain.length],
    ] as const) {
      const parts: Buffer[] = [];
      for await (const part of access.read(from, to)) parts.push(part);
      expect(Buffer.concat(parts)).toEqual(plain.subarray(from, to));
      for (const part of parts) if (releaseBuffer(part)) released++;
    }
    // Whole chunks are the reads' own and were freed; the sealed bytes were not touched.
    expect(released).toBeGreaterThanOrEqual(6 * 3 + 2);
    expect((bytes.buffer as ArrayBuffer).detached).toBe(false);
  });
});
