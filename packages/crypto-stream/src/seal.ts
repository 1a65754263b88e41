import { createCipheriv, randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { compressor } from './compression.js';
import { SealError } from './errors.js';
import {
  AEAD_AES_256_GCM,
  type Compression,
  chunkNonce,
  DEFAULT_CHUNK_SIZE,
  encodeHeader,
  FORMAT_VERSION,
  type KeySource,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  NONCE_LENGTH,
  SCRYPT_SALT_LENGTH,
  STREAM_ID_LENGTH,
  TAG_LENGTH,
  wrapAadOf,
} from './format.js';
import { headerMac, passphraseKey, streamKeys, wrapDataKey } from './kdf.js';
import { KEY_LENGTH_BYTES, type Keyring, type MasterKey, type Passphrase, scryptParams } from './keys.js';
import { reclaimer } from './reclaim.js';
import { type ByteSource, bytesOf, collect, FixedBlocks, through } from './source.js';

/** Progress of a seal or open, reported after every chunk. */
export interface StreamProgress {
  /** Plaintext bytes consumed (seal) or produced (open), before compression / after decompression. */
  plainBytes: number;
  /** Sealed bytes produced (seal) or consumed (open), header included. */
  sealedBytes: number;
  /** Chunks sealed or authenticated so far. */
  chunks: number;
}

/** Options of {@link seal}. */
export interface SealOptions {
  /** The key to seal with: a keyring's current key, one key, or a passphrase. */
  key: Keyring | MasterKey | Passphrase;
  /** @default "zstd" */
  compression?: Compression;
  /** Compression level. @default gzip 6, zstd 3 */
  level?: number;
  /** Bytes of (compressed) plaintext per chunk. @default 1048576 */
  chunkSize?: number;
  signal?: AbortSignal;
  onProgress?: (progress: StreamProgress) => void;
  /**
   * Run a young-generation collection every few MiB so that dead chunk buffers do not pile up
   * (keeps peak RSS under 100 MB; see reclaim.ts for the measurements). @default true
   */
  reclaimMemory?: boolean;
}

/** The master key and how it is recorded in the header. */
async function masterFor(key: SealOptions['key']): Promise<{ id: string; master: Buffer; source: KeySource }> {
  if ('passphrase' in key) {
    const params = scryptParams(key);
    const source = { kind: 'scrypt' as const, ...params, salt: randomBytes(SCRYPT_SALT_LENGTH) };
    return { id: key.id ?? 'passphrase', master: await passphraseKey(key.passphrase, source), source };
  }
  const master = 'current' in key ? key.current : key;
  return { id: master.id, master: master.key, source: { kind: 'raw' } };
}

/** Builds a header for a new stream: fresh stream id and data key, wrapped by the master key. */
export async function newHeader(
  key: SealOptions['key'],
  compression: Compression,
  chunkSize: number,
  dataKey: Buffer = randomBytes(KEY_LENGTH_BYTES),
  streamId: Buffer = randomBytes(STREAM_ID_LENGTH),
): Promise<{ bytes: Buffer; chunkKey: Buffer }> {
  const { id, master, source } = await masterFor(key);
  const wrapNonce = randomBytes(NONCE_LENGTH);
  const wrappedKey = wrapDataKey(master, streamId, wrapNonce, wrapAadOf({ streamId, keyId: id, keySource: source }), dataKey);
  const encoded = encodeHeader({
    version: FORMAT_VERSION,
    aead: AEAD_AES_256_GCM,
    compression,
    chunkSize,
    streamId,
    keyId: id,
    keySource: source,
    wrapNonce,
    wrappedKey,
  });
  const keys = streamKeys(dataKey, streamId);
  return { bytes: Buffer.concat([encoded.bytes, headerMac(keys.macKey, encoded)]), chunkKey: keys.chunkKey };
}

function checkChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE)
    throw new SealError(
      'SEAL_INVALID_OPTIONS',
      `chunkSize must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}, not ${chunkSize}`,
    );
}

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new SealError('SEAL_ABORTED', 'sealing was aborted', { cause: signal.reason });
}

/**
 * Seals a byte stream: compresses it, cuts it into chunks, and encrypts each chunk with
 * AES-256-GCM under a fresh per-stream data key (see docs/FORMAT.md). Yields the header,
 * then each chunk's ciphertext and tag. Memory stays at about one chunk whatever the size.
 * @throws SealError SEAL_INVALID_OPTIONS, SEAL_KEY_*, SEAL_COMPRESSION_UNSUPPORTED, SEAL_ABORTED
 */
export async function* seal(input: ByteSource, options: SealOptions): AsyncGenerator<Buffer> {
  const compression = options.compression ?? 'zstd';
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  checkChunkSize(chunkSize);
  const zip = compressor(compression, options.level);
  const { bytes: header, chunkKey } = await newHeader(options.key, compression, chunkSize);
  const progress: StreamProgress = { plainBytes: 0, sealedBytes: header.length, chunks: 0 };
  yield header;

  const reclaim = reclaimer(options.reclaimMemory);
  const counted = (async function* () {
    for await (const piece of bytesOf(input)) {
      progress.plainBytes += piece.length;
      reclaim(piece.length);
      yield piece;
    }
  })();
  const compressed: AsyncIterable<Buffer> = zip ? through(counted, zip) : counted;

  const nonce = Buffer.alloc(NONCE_LENGTH);
  let index = 0n;
  const encrypt = (plain: Buffer, final: boolean): [Buffer, Buffer] => {
    reclaim(plain.length);
    const cipher = createCipheriv('aes-256-gcm', chunkKey, chunkNonce(index++, final, nonce), { authTagLength: TAG_LENGTH });
    const body = cipher.update(plain);
    cipher.final();
    progress.sealedBytes += body.length + TAG_LENGTH;
    progress.chunks++;
    options.onProgress?.({ ...progress });
    return [body, cipher.getAuthTag()];
  };

  // The final chunk always holds fewer than chunkSize bytes (possibly none), so a reader
  // knows a full-size chunk is never the last one.
  const blocks = new FixedBlocks(chunkSize);
  for await (const piece of compressed) {
    aborted(options.signal);
    for (const block of blocks.push(piece)) yield* encrypt(block, false);
  }
  aborted(options.signal);
  yield* encrypt(blocks.rest, true);
}

/** {@link seal} as a Node Duplex stream: write plaintext, read sealed bytes. */
export function createSealStream(options: SealOptions): Duplex {
  return Duplex.from((source: AsyncIterable<Uint8Array>) => seal(source, options));
}

/** Seals a whole buffer in memory (small payloads: secrets, configs, manifests). */
export function sealBuffer(plain: Uint8Array, options: SealOptions): Promise<Buffer> {
  return collect(seal(plain, options));
}
