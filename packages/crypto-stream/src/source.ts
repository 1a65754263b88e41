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
