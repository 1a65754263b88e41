import { createSecretKey } from 'node:crypto';
import { SealError } from './errors.js';
import { decodeHeader, NONCE_LENGTH, TAG_LENGTH } from './format.js';
import { type OpenKeys, openHeader } from './kdf.js';
import { infoOf, openChunk, type SealedInfo } from './open.js';
import { reclaimer } from './reclaim.js';
import { type ByteSource, bytesOf, FixedBlocks } from './source.js';

/**
 * Fetches bytes `[start, end]` (inclusive, as an HTTP range) of the sealed object: a store's
 * ranged GET, a file read.
 */
export type RangeFetch = (start: number, end: number) => ByteSource | Promise<ByteSource>;

/** Options of {@link openRandomAccess}. */
export interface RandomAccessOptions {
  keys: OpenKeys;
  /** Bytes of the whole sealed object (from its manifest): where the final chunk is follows from it. */
  size: number;
  fetch: RangeFetch;
  signal?: AbortSignal;
  /** As OpenOptions.reclaimMemory. @default true */
  reclaimMemory?: boolean;
}

/** Where plaintext `[from, to)` lies in the sealed object. */
export interface SealedSpan {
  /** First and last sealed byte to fetch (inclusive). */
  start: number;
  end: number;
  firstChunk: number;
  lastChunk: number;
}

/** Reads any run of plaintext of one sealed stream, fetching and authenticating only the chunks that hold it. */
export interface SealedRandomAccess {
  readonly info: SealedInfo;
  /** Plaintext bytes of the whole stream. */
  readonly plainSize: number;
  /** The sealed bytes that hold plaintext `[from, to)`. */
  locate(from: number, to: number): SealedSpan;
  /**
   * Plaintext `[from, to)`. Every chunk is authenticated (its index and whether it is the last
   * one are bound into its nonce) before any of its bytes are released, so a chunk moved,
   * swapped or cut fails as it would in a full read. Each piece is the caller's own: a chunk's
   * fresh plaintext or a slice of it, shared with nothing else (so it may be released with
   * `releaseBuffer` once read).
   * @throws SealError SEAL_CHUNK_TAMPERED, SEAL_TRUNCATED, SEAL_ABORTED, SEAL_INVALID_OPTIONS
   */
  read(from: number, to: number): AsyncGenerator<Buffer>;
}

const HEADER_PROBE = 1024;

/**
 * Opens a sealed stream for random access: reads and authenticates its header (one small
 * ranged fetch) and derives the chunk key once. Only uncompressed streams can be read at an
 * offset: a caller that wants compression compresses in independent frames itself (as
 * file-archive does) and seals with compression "none".
 * @throws SealError the codes of a header check (SEAL_NOT_SEALED, SEAL_WRONG_KEY, ...), SEAL_TRUNCATED, SEAL_COMPRESSION_UNSUPPORTED
 */
export async function openRandomAccess(options: RandomAccessOptions): Promise<SealedRandomAccess> {
  const { size, fetch, signal } = options;
  if (!Number.isSafeInteger(size) || size < 0)
    throw new SealError('SEAL_INVALID_OPTIONS', `size must be the sealed object's byte count, got ${size}`);
  let probe = Buffer.alloc(0);
  let decoded: ReturnType<typeof decodeHeader>;
  for (let want = Math.min(size, HEADER_PROBE); ; want = Math.min(size, want * 4)) {
    if (want > probe.length) probe = Buffer.concat([probe, await fetchAll(fetch, probe.length, want - 1)]);
    decoded = decodeHeader(probe);
    if (decoded) break;
    if (want >= size)
      throw new SealError('SEAL_TRUNCATED', size === 0 ? 'the sealed object is empty' : 'the sealed object ends inside its header');
  }
  const { header, encoded, length } = decoded;
  if (header.compression !== 'none')
    throw new SealError(
      'SEAL_COMPRESSION_UNSUPPORTED',
      `random access needs a stream sealed without compression (this one uses ${header.compression}): read it whole with open()`,
    );
  // One key object for every chunk: re-importing the raw key per 64 KiB chunk shows in profiles.
  const chunkKey = createSecretKey((await openHeader(header, encoded, options.keys)).chunkKey);
  const reclaim = reclaimer(options.reclaimMemory);
  const recordSize = header.chunkSize + TAG_LENGTH;
  const body = size - length;
  const lastChunk = Math.floor(body / recordSize);
  const lastRecord = body - lastChunk * recordSize;
  if (lastRecord < TAG_LENGTH)
    throw new SealError(
      'SEAL_TRUNCATED',
      `the sealed object (${size} bytes) ends ${lastRecord} bytes into chunk ${lastChunk}: it is truncated; restore from another backup`,
    );
  const plainSize = lastChunk * header.chunkSize + lastRecord - TAG_LENGTH;

  const locate = (from: number, to: number): SealedSpan => {
    if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 0 && from <= to && to <= plainSize))
      throw new SealError('SEAL_INVALID_OPTIONS', `plaintext range [${from}, ${to}) is not within the stream's ${plainSize} bytes`);
    const firstChunk = Math.floor(from / header.chunkSize);
    // A read to the end takes in the final chunk, even an empty one: a cut-off end then fails.
    const last = to === plainSize ? lastChunk : to === from ? firstChunk : Math.floor((to - 1) / header.chunkSize);
    return {
      start: length + firstChunk * recordSize,
      end: Math.min(size, length + (last + 1) * recordSize) - 1,
      firstChunk,
      lastChunk: last,
    };
  };

  async function* read(from: number, to: number): AsyncGenerator<Buffer> {
    const span = locate(from, to);
    if (to === from && to !== plainSize) return;
    const nonce = Buffer.alloc(NONCE_LENGTH);
    let index = span.firstChunk;
    let offset = span.firstChunk * header.chunkSize;
    const decrypt = (record: Buffer): Buffer => {
      reclaim(record.length);
      if (signal?.aborted) throw new SealError('SEAL_ABORTED', 'reading was aborted', { cause: signal.reason });
      const plain = openChunk(chunkKey, record, BigInt(index), index === lastChunk, nonce);
      const slice = plain.subarray(Math.max(0, from - offset), Math.min(plain.length, to - offset));
      index++;
      offset += plain.length;
      return slice;
    };
    const records = new FixedBlocks(recordSize);
    // for-await closes the fetched stream when this generator stops early or fails.
    for await (const piece of bytesOf(await fetch(span.start, span.end))) {
      for (const record of records.push(piece)) {
        if (index > span.lastChunk) throw extra(span);
        yield decrypt(record);
      }
    }
    const rest = records.rest;
    if (rest.length > 0) {
      if (index !== lastChunk || index > span.lastChunk) throw extra(span);
      yield decrypt(rest);
    }
    if (index <= span.lastChunk)
      throw new SealError(
        'SEAL_TRUNCATED',
        `the store returned bytes up to chunk ${index - 1} of the range asked for (chunks ${span.firstChunk}..${span.lastChunk}): the object is shorter than its manifest says`,
      );
  }

  return { info: infoOf(header, length), plainSize, locate, read };
}

function extra(span: SealedSpan): SealError {
  return new SealError(
    'SEAL_CHUNK_TAMPERED',
    `the store returned more bytes than sealed bytes ${span.start}..${span.end} asked for: the object is not what its manifest describes`,
  );
}

async function fetchAll(fetch: RangeFetch, start: number, end: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const piece of bytesOf(await fetch(start, end))) parts.push(piece);
  return Buffer.concat(parts);
}
