import { SealError } from './errors.js';

// The byte layout is specified in docs/FORMAT.md; keep the two in step.

/** First 8 bytes of every sealed stream: "DRKSEAL" and a NUL. */
export const MAGIC = Buffer.from('DRKSEAL\0', 'latin1');
/** The format version this code writes and reads. */
export const FORMAT_VERSION = 1;
/** AEAD id 1: AES-256-GCM, 12-byte nonce, 16-byte tag. */
export const AEAD_AES_256_GCM = 1;
export const TAG_LENGTH = 16;
export const NONCE_LENGTH = 12;
export const KEY_LENGTH = 32;
export const STREAM_ID_LENGTH = 16;
export const SCRYPT_SALT_LENGTH = 16;
export const WRAPPED_KEY_LENGTH = KEY_LENGTH + TAG_LENGTH;
export const HEADER_MAC_LENGTH = 32;
export const MAX_KEY_ID_LENGTH = 64;
export const MIN_CHUNK_SIZE = 64;
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/** 1 MiB: large enough for AES-GCM to run at several GB/s, small enough to keep memory flat. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

/** Compression of the plaintext before it is sealed, as recorded in the header. */
export type Compression = 'none' | 'gzip' | 'zstd';
export const COMPRESSION_IDS: Record<Compression, number> = { none: 0, gzip: 1, zstd: 2 };

/** How the master key that wraps the data key was obtained. */
export type KeySource = { kind: 'raw' } | { kind: 'scrypt'; log2N: number; r: number; p: number; salt: Buffer };
export const KEY_SOURCE_RAW = 1;
export const KEY_SOURCE_SCRYPT = 2;

/**
 * Bounds on scrypt parameters. A header is read before it can be authenticated, so these
 * bound what a forged one can cost: at most 256 MiB (128 * N * r) and about 2 s of work.
 */
export const SCRYPT_LIMITS = { minLog2N: 10, maxLog2N: 18, maxR: 8, maxP: 2 } as const;

/** Everything the header says. */
export interface Header {
  version: number;
  aead: number;
  compression: Compression;
  chunkSize: number;
  streamId: Buffer;
  keyId: string;
  keySource: KeySource;
  wrapNonce: Buffer;
  wrappedKey: Buffer;
  mac: Buffer;
}

/** The header without its MAC, and where its parts end in the encoded bytes. */
export interface EncodedHeader {
  bytes: Buffer;
  /** Bytes that the data-key wrap authenticates as associated data: stream id, key id and key source. */
  wrapAad: Buffer;
  /** Length of the header before the MAC (the MAC covers bytes [0, macOffset)). */
  macOffset: number;
}

function compressionOf(id: number): Compression {
  const found = (Object.entries(COMPRESSION_IDS) as [Compression, number][]).find(([, v]) => v === id);
  if (!found) throw new SealError('SEAL_UNSUPPORTED_ALGORITHM', `unknown compression id ${id} in the header; a newer drkit may read it`);
  return found[0];
}

function keySourceBytes(source: KeySource): Buffer {
  if (source.kind === 'raw') return Buffer.from([KEY_SOURCE_RAW]);
  return Buffer.concat([Buffer.from([KEY_SOURCE_SCRYPT, source.log2N, source.r, source.p]), source.salt]);
}

/** The key block's associated data: stream id, key id and key source, as laid out in the header. */
export function wrapAadOf(h: Pick<Header, 'streamId' | 'keyId' | 'keySource'>): Buffer {
  const id = Buffer.from(h.keyId, 'utf8');
  return Buffer.concat([h.streamId, Buffer.from([id.length]), id, keySourceBytes(h.keySource)]);
}

/** Encodes a header; `mac` is ignored and left for the caller to append. */
export function encodeHeader(h: Omit<Header, 'mac'>): EncodedHeader {
  const id = Buffer.from(h.keyId, 'utf8');
  if (id.length > MAX_KEY_ID_LENGTH)
    throw new SealError('SEAL_INVALID_OPTIONS', `key id is ${id.length} bytes; at most ${MAX_KEY_ID_LENGTH}`);
  const fixed = Buffer.alloc(MAGIC.length + 8);
  MAGIC.copy(fixed, 0);
  fixed.writeUInt8(h.version, 8);
  fixed.writeUInt8(h.aead, 9);
  fixed.writeUInt8(COMPRESSION_IDS[h.compression], 10);
  fixed.writeUInt8(0, 11); // reserved, must be 0
  fixed.writeUInt32BE(h.chunkSize, 12);
  const wrapAad = wrapAadOf(h);
  const bytes = Buffer.concat([fixed, wrapAad, h.wrapNonce, h.wrappedKey]);
  return { bytes, wrapAad, macOffset: bytes.length };
}

/**
 * Parses a header from the start of `buffer`. Returns undefined when more bytes are needed,
 * else the header and the number of bytes it took (MAC included).
 * @throws SealError for anything that is not a v1 sealed stream header.
 */
export function decodeHeader(buffer: Buffer): { header: Header; length: number; encoded: EncodedHeader } | undefined {
  const need = (n: number) => buffer.length >= n;
  if (!need(MAGIC.length)) {
    if (!MAGIC.subarray(0, buffer.length).equals(buffer)) notSealed();
    return undefined;
  }
  if (!buffer.subarray(0, MAGIC.length).equals(MAGIC)) notSealed();
  if (!need(16)) return undefined;
  const version = buffer.readUInt8(8);
  if (version !== FORMAT_VERSION)
    throw new SealError(
      'SEAL_UNSUPPORTED_VERSION',
      `sealed stream format version ${version} is not supported (this drkit reads version ${FORMAT_VERSION}); use the drkit release that wrote it`,
    );
  const aead = buffer.readUInt8(9);
  if (aead !== AEAD_AES_256_GCM) throw new SealError('SEAL_UNSUPPORTED_ALGORITHM', `unknown AEAD id ${aead} in the header`);
  const compression = compressionOf(buffer.readUInt8(10));
  if (buffer.readUInt8(11) !== 0) throw new SealError('SEAL_HEADER_INVALID', 'reserved header byte is not zero: the header is damaged');
  const chunkSize = buffer.readUInt32BE(12);
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE)
    throw new SealError('SEAL_HEADER_INVALID', `chunk size ${chunkSize} in the header is out of range: the header is damaged`);
  let at = 16;
  if (!need(at + STREAM_ID_LENGTH + 1)) return undefined;
  const streamId = Buffer.from(buffer.subarray(at, at + STREAM_ID_LENGTH));
  at += STREAM_ID_LENGTH;
  const idLength = buffer.readUInt8(at);
  at += 1;
  if (idLength > MAX_KEY_ID_LENGTH)
    throw new SealError('SEAL_HEADER_INVALID', 'key id length in the header is out of range: the header is damaged');
  if (!need(at + idLength + 1)) return undefined;
  const keyIdBytes = buffer.subarray(at, at + idLength);
  let keyId: string;
  try {
    keyId = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(keyIdBytes);
  } catch (cause) {
    throw new SealError('SEAL_HEADER_INVALID', 'key id in the header is not UTF-8: the header is damaged', { cause });
  }
  at += idLength;
  const sourceKind = buffer.readUInt8(at);
  at += 1;
  let keySource: KeySource;
  if (sourceKind === KEY_SOURCE_RAW) {
    keySource = { kind: 'raw' };
  } else if (sourceKind === KEY_SOURCE_SCRYPT) {
    if (!need(at + 3 + SCRYPT_SALT_LENGTH)) return undefined;
    const [log2N = 0, r = 0, p = 0] = buffer.subarray(at, at + 3);
    at += 3;
    if (
      log2N < SCRYPT_LIMITS.minLog2N ||
      log2N > SCRYPT_LIMITS.maxLog2N ||
      r < 1 ||
      r > SCRYPT_LIMITS.maxR ||
      p < 1 ||
      p > SCRYPT_LIMITS.maxP
    )
      throw new SealError('SEAL_HEADER_INVALID', 'scrypt parameters in the header are out of range: the header is damaged');
    keySource = { kind: 'scrypt', log2N, r, p, salt: Buffer.from(buffer.subarray(at, at + SCRYPT_SALT_LENGTH)) };
    at += SCRYPT_SALT_LENGTH;
  } else {
    throw new SealError('SEAL_HEADER_INVALID', `unknown key source ${sourceKind} in the header: the header is damaged`);
  }
  const keyBlockEnd = at;
  if (!need(at + NONCE_LENGTH + WRAPPED_KEY_LENGTH + HEADER_MAC_LENGTH)) return undefined;
  const wrapNonce = Buffer.from(buffer.subarray(at, at + NONCE_LENGTH));
  at += NONCE_LENGTH;
  const wrappedKey = Buffer.from(buffer.subarray(at, at + WRAPPED_KEY_LENGTH));
  at += WRAPPED_KEY_LENGTH;
  const macOffset = at;
  const mac = Buffer.from(buffer.subarray(at, at + HEADER_MAC_LENGTH));
  at += HEADER_MAC_LENGTH;
  const header: Header = { version, aead, compression, chunkSize, streamId, keyId, keySource, wrapNonce, wrappedKey, mac };
  return {
    header,
    length: at,
    // The AAD is the key block's bytes as read, never re-encoded from the parsed fields.
    encoded: { bytes: Buffer.from(buffer.subarray(0, macOffset)), wrapAad: Buffer.from(buffer.subarray(16, keyBlockEnd)), macOffset },
  };
}

function notSealed(): never {
  throw new SealError('SEAL_NOT_SEALED', 'the input is not a drkit sealed stream (bad magic bytes); check that you picked the right file');
}

/**
 * The nonce of chunk `index`: 3 zero bytes, the index as a 64-bit big-endian counter, and 1
 * for the final chunk or 0 otherwise. Every stream has its own data key, so a counter is a
 * safe nonce, and the flag makes a cut at a chunk boundary detectable.
 */
export function chunkNonce(index: bigint, final: boolean, into: Buffer = Buffer.alloc(NONCE_LENGTH)): Buffer {
  into.fill(0, 0, 3);
  into.writeBigUInt64BE(index, 3);
  into.writeUInt8(final ? 1 : 0, 11);
  return into;
}
