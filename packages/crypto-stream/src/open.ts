import { type CipherKey, createDecipheriv } from 'node:crypto';
import { Duplex } from 'node:stream';
import { decompressor } from './compression.js';
import { isSealError, SealError } from './errors.js';
import { chunkNonce, decodeHeader, type EncodedHeader, type Header, NONCE_LENGTH, TAG_LENGTH } from './format.js';
import { type OpenKeys, openHeader } from './kdf.js';
import { reclaimer } from './reclaim.js';
import type { SealOptions, StreamProgress } from './seal.js';
import { type ByteSource, bytesOf, collect, FixedBlocks, through } from './source.js';
import { zstdDecompressFrames } from './zstd-frames.js';

/** Options of {@link open}. */
export interface OpenOptions {
  /** Keys that may open the stream: a keyring (old keys included), one key, or a passphrase. */
  keys: OpenKeys;
  signal?: AbortSignal;
  onProgress?: (progress: StreamProgress) => void;
  /** As {@link SealOptions.reclaimMemory}. @default true */
  reclaimMemory?: boolean;
}

/** What a header says, without key material: for manifests, listings and `drkit inspect`. */
export interface SealedInfo {
  version: number;
  keyId: string;
  keySource: 'raw' | 'scrypt';
  compression: Header['compression'];
  chunkSize: number;
  /** Bytes of header at the start of the stream. */
  headerLength: number;
}

/** The public description of a parsed header. */
export function infoOf(header: Header, length: number): SealedInfo {
  return {
    version: header.version,
    keyId: header.keyId,
    keySource: header.keySource.kind,
    compression: header.compression,
    chunkSize: header.chunkSize,
    headerLength: length,
  };
}

/**
 * Reads and parses the header from the start of a byte iterator. Returns the header and the
 * bytes read past it.
 * @throws SealError SEAL_NOT_SEALED, SEAL_UNSUPPORTED_*, SEAL_HEADER_INVALID, SEAL_TRUNCATED
 */
export async function readHeader(
  iterator: AsyncIterator<Buffer>,
): Promise<{ header: Header; encoded: EncodedHeader; length: number; rest: Buffer }> {
  let pending = Buffer.alloc(0);
  for (;;) {
    const decoded = decodeHeader(pending);
    if (decoded) return { ...decoded, rest: pending.subarray(decoded.length) };
    const next = await iterator.next();
    if (next.done)
      throw new SealError(
        'SEAL_TRUNCATED',
        pending.length === 0
          ? 'the input is empty: a sealed stream has at least a header and a final chunk; the artifact is truncated'
          : 'the input ends inside the header: the artifact is truncated',
      );
    pending = Buffer.concat([pending, next.value]);
  }
}

/** Reads just the header of a sealed stream and describes it (no key needed, nothing verified). */
export async function inspectSealed(input: ByteSource): Promise<SealedInfo> {
  const iterator = bytesOf(input);
  try {
    const { header, length } = await readHeader(iterator);
    return infoOf(header, length);
  } finally {
    await iterator.return(undefined);
  }
}

/**
 * Authenticates and decrypts one chunk record (ciphertext then tag) at position `index`.
 * Node releases GCM plaintext before the tag is checked: it is held until final() passes.
 * @throws SealError SEAL_CHUNK_TAMPERED
 */
export function openChunk(key: CipherKey, record: Buffer, index: bigint, final: boolean, nonce: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, chunkNonce(index, final, nonce), { authTagLength: TAG_LENGTH });
  decipher.setAuthTag(record.subarray(record.length - TAG_LENGTH));
  const plain = decipher.update(record.subarray(0, record.length - TAG_LENGTH));
  try {
    decipher.final();
  } catch (cause) {
    throw new SealError(
      'SEAL_CHUNK_TAMPERED',
      `chunk ${index} failed authentication${final ? ' (as the last chunk)' : ''}: the artifact was altered, cut short or extended; do not use it, restore from another backup`,
      { cause },
    );
  }
  return plain;
}

/**
 * Authenticates and decrypts the chunks of a sealed stream, yielding each chunk's plaintext
 * (still compressed) only after its tag has been verified.
 */
async function* authenticatedChunks(
  input: ByteSource,
  options: OpenOptions,
  progress: StreamProgress,
  onHeader: (header: Header) => void,
): AsyncGenerator<Buffer> {
  const iterator = bytesOf(input);
  try {
    yield* chunksOf(iterator, options, progress, onHeader);
  } finally {
    // Closes the source (a file stream, a socket) on failure or when the consumer stops early.
    await iterator.return(undefined);
  }
}

async function* chunksOf(
  iterator: AsyncGenerator<Buffer>,
  options: OpenOptions,
  progress: StreamProgress,
  onHeader: (header: Header) => void,
): AsyncGenerator<Buffer> {
  if (options.signal?.aborted) throw new SealError('SEAL_ABORTED', 'opening was aborted', { cause: options.signal.reason });
  const { header, encoded, length, rest } = await readHeader(iterator);
  const { chunkKey } = await openHeader(header, encoded, options.keys);
  onHeader(header);
  progress.sealedBytes = length;
  const recordSize = header.chunkSize + TAG_LENGTH;
  const nonce = Buffer.alloc(NONCE_LENGTH);
  let index = 0n;
  const reclaim = reclaimer(options.reclaimMemory);

  const decrypt = (record: Buffer, final: boolean): Buffer => {
    reclaim(record.length);
    if (options.signal?.aborted) throw new SealError('SEAL_ABORTED', 'opening was aborted', { cause: options.signal.reason });
    const plain = openChunk(chunkKey, record, index, final, nonce);
    index++;
    progress.sealedBytes += record.length;
    progress.chunks++;
    return plain;
  };

  // A full-size record is never the last one (the writer's last chunk is shorter), so every
  // full record decrypts as not final, and what is left at the end is the final chunk.
  const records = new FixedBlocks(recordSize);
  for (const record of records.push(rest)) yield decrypt(record, false);
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    for (const record of records.push(next.value)) yield decrypt(record, false);
  }
  const last = records.rest;
  if (last.length < TAG_LENGTH)
    throw new SealError(
      'SEAL_TRUNCATED',
      last.length === 0
        ? `the artifact ends ${index === 0n ? 'right after its header' : `after chunk ${index - 1n}`} without its final chunk: it is truncated; restore from another backup`
        : `the artifact ends ${last.length} bytes into chunk ${index}: it is truncated; restore from another backup`,
    );
  yield decrypt(last, true);
}

/**
 * Opens a sealed stream: checks the header, then authenticates every chunk before releasing
 * any of its plaintext, and decompresses. A stream that is altered, reordered, cut short or
 * extended fails with a typed error; plaintext already yielded came only from chunks that
 * authenticated, so callers writing files must write to a temp file and rename at the end
 * (as {@link openToFile} does).
 * @throws SealError with the code of what is wrong (see SEAL_ERROR_CODES)
 */
export async function* open(input: ByteSource, options: OpenOptions): AsyncGenerator<Buffer> {
  const progress: StreamProgress = { plainBytes: 0, sealedBytes: 0, chunks: 0 };
  let header: Header | undefined;
  const chunks = authenticatedChunks(input, options, progress, (h) => {
    header = h;
  });
  // The header names the compression, so the first chunk must be pulled before the
  // decompressor can be chosen.
  const first = await chunks.next();
  if (!header) throw new SealError('SEAL_HEADER_INVALID', 'no header was read');
  const all = (async function* () {
    if (!first.done) yield first.value;
    yield* chunks;
  })();
  let reported = false;
  const report = (n: number) => {
    progress.plainBytes += n;
    reported = true;
    options.onProgress?.({ ...progress });
  };
  // Node's zstd decoder stops after one frame, so zstd goes through the frame splitter.
  const plainStream =
    header.compression === 'none'
      ? all
      : header.compression === 'zstd'
        ? zstdDecompressFrames(all, decompressor('zstd'))
        : through(all, decompressor('gzip') as Duplex);
  try {
    for await (const plain of plainStream) {
      report(plain.length);
      yield plain;
    }
    // An empty plaintext still gets its one event.
    if (!reported) report(0);
  } catch (error) {
    if (isSealError(error)) throw error;
    throw new SealError(
      'SEAL_DECOMPRESS_FAILED',
      `the authenticated content did not decompress as ${header.compression}: it was sealed by a faulty writer; report this`,
      { cause: error },
    );
  } finally {
    // Stopping early must still close the source, whichever generator was suspended.
    await chunks.return(undefined);
  }
}

/** {@link open} as a Node Duplex stream: write sealed bytes, read plaintext. */
export function createOpenStream(options: OpenOptions): Duplex {
  return Duplex.from((source: AsyncIterable<Uint8Array>) => open(source, options));
}

/** Opens a whole sealed buffer in memory. */
export function openBuffer(sealed: Uint8Array, options: OpenOptions): Promise<Buffer> {
  return collect(open(sealed, options));
}
