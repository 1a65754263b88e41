import type { Duplex, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** Anything a sealed stream can read from: a Node stream, an async iterable of bytes, or bytes. */
export type ByteSource = Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array;

/** Normalises every {@link ByteSource} to an async iterable of Buffers (no copies). */
export async function* bytesOf(source: ByteSource): AsyncGenerator<Buffer> {
  if (source instanceof Uint8Array) {
    yield Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    return;
  }
  for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
    if (typeof chunk === 'string') yield Buffer.from(chunk);
    else yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
}

/** Collects an async iterable of bytes into one Buffer (for small payloads only). */
export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

/**
 * Feeds an async iterable through a transform and returns the transform's output. An error
 * of the source (or of the transform) comes out of the output, as the same error object.
 */
export function through(source: AsyncIterable<Uint8Array>, transform: Duplex): AsyncIterable<Buffer> {
  // The output carries every error; the pipeline's own rejection would only repeat it.
  pipeline(source, transform).catch(() => {});
  return transform;
}

/**
 * Cuts a byte stream into blocks of exactly `size` bytes. A block is a view of the input when
 * a whole one lies in it (no copy), otherwise of one reused buffer: use each block before
 * asking for the next. `rest` is what is left after the last full block.
 */
export class FixedBlocks {
  readonly #size: number;
  readonly #pending: Buffer;
  #fill = 0;

  constructor(size: number) {
    this.#size = size;
    this.#pending = Buffer.allocUnsafe(size);
  }

  /** Takes `piece` and yields every block it completes. */
  *push(piece: Buffer): Generator<Buffer> {
    const size = this.#size;
    let at = 0;
    while (at < piece.length) {
      if (this.#fill === 0 && piece.length - at >= size) {
        yield piece.subarray(at, at + size);
        at += size;
        continue;
      }
      const n = Math.min(size - this.#fill, piece.length - at);
      piece.copy(this.#pending, this.#fill, at, at + n);
      this.#fill += n;
      at += n;
      if (this.#fill === size) {
        this.#fill = 0;
        yield this.#pending;
      }
    }
  }

  /** The bytes after the last full block (fewer than `size`, possibly none). */
  get rest(): Buffer {
    return this.#pending.subarray(0, this.#fill);
  }
}
