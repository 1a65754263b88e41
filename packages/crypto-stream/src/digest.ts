import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** The SHA-256 and size of the bytes that passed through. */
export interface Digest {
  sha256: string;
  bytes: number;
}

/**
 * A pass-through stream that hashes (SHA-256) and counts what flows through it, e.g. the
 * stored bytes of an artifact on their way to a store. `digest()` is available after 'finish'.
 */
export class DigestStream extends Transform {
  readonly #hash: Hash = createHash('sha256');
  #bytes = 0;
  #result: Digest | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#result = { sha256: this.#hash.digest('hex'), bytes: this.#bytes };
    callback();
  }

  /** Bytes seen so far (for progress). */
  get bytes(): number {
    return this.#bytes;
  }

  /** The final digest. @throws Error before the stream has finished */
  digest(): Digest {
    if (!this.#result) throw new Error('DigestStream.digest() called before the stream finished');
    return this.#result;
  }
}

/**
 * Wraps an async iterable of bytes so that it hashes and counts them as they are consumed;
 * `digest()` resolves once the iterable has been read to the end.
 */
export function digesting(source: AsyncIterable<Uint8Array>): { stream: AsyncGenerator<Uint8Array>; digest: () => Digest } {
  const hash = createHash('sha256');
  let bytes = 0;
  let result: Digest | undefined;
  const stream = (async function* () {
    for await (const chunk of source) {
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
    result = { sha256: hash.digest('hex'), bytes };
  })();
  return {
    stream,
    digest: () => {
      if (!result) throw new Error('digest() called before the stream was read to the end');
      return result;
    },
  };
}

/** SHA-256 and size of a whole byte source. */
export async function digestOf(source: AsyncIterable<Uint8Array>): Promise<Digest> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of source) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}
