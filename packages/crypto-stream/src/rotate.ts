import { type OpenKeys, openHeader } from './kdf.js';
import { readHeader } from './open.js';
import { newHeader, type SealOptions } from './seal.js';
import { type ByteSource, bytesOf } from './source.js';

/**
 * Re-wraps a sealed stream for a new key without decrypting its chunks: the header is
 * rewritten (new key id, the same data key wrapped by the new key, a new MAC) and every chunk
 * passes through unchanged. The old key is needed once, to unwrap the data key.
 * @throws SealError as {@link open} does for the header, before anything is yielded
 */
export async function* rewrap(input: ByteSource, from: OpenKeys, to: SealOptions['key']): AsyncGenerator<Buffer> {
  const iterator = bytesOf(input);
  try {
    const { header, encoded, rest } = await readHeader(iterator);
    const { dataKey } = await openHeader(header, encoded, from);
    const fresh = await newHeader(to, header.compression, header.chunkSize, dataKey, header.streamId);
    yield fresh.bytes;
    if (rest.length > 0) yield rest;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Closes the source on failure or when the consumer stops early.
    await iterator.return(undefined);
  }
}
