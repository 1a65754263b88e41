// A minimal, independent decryptor of sealed streams, version 1, written from docs/FORMAT.md
// alone (node:crypto and node:zlib only; nothing from ../src). It exists to show that the
// specification is sufficient and that the library writes what the specification says.
// Section numbers (§) refer to docs/FORMAT.md. Whole-buffer and synchronous: for tests only.
import { isUtf8 } from 'node:buffer';
import { createDecipheriv, createHmac, hkdfSync, scryptSync, timingSafeEqual } from 'node:crypto';
import zlib from 'node:zlib';

/** A failure, with the code §8 assigns to it. */
export class ReferenceDecodeError extends Error {
  override readonly name = 'ReferenceDecodeError';
  readonly code: string;

  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

/** What the reader is given (§8, "Key"): raw keys by id, or a passphrase. */
export type ReferenceKeys = { keys: readonly { id: string; key: Buffer }[] } | { passphrase: string };

export type ReferenceCompression = 'none' | 'gzip' | 'zstd';

/** The parsed header (§3), with the two byte ranges §3.1 names. */
export interface ReferenceHeader {
  version: number;
  compression: ReferenceCompression;
  chunkSize: number;
  streamId: Buffer;
  keyIdBytes: Buffer;
  keyId: string;
  keySource: { kind: 'raw' } | { kind: 'scrypt'; log2N: number; r: number; p: number; salt: Buffer };
  wrapNonce: Buffer;
  wrappedKey: Buffer;
  mac: Buffer;
  /** header[16 .. 34+K+S): the AAD of the data-key wrap. */
  keyBlock: Buffer;
  /** header[0 .. 94+K+S): what the header MAC covers. */
  macInput: Buffer;
  /** Where the first record starts. */
  length: number;
}

const MAGIC = Buffer.from('DRKSEAL\0', 'latin1');
const TAG = 16;
const MIN_CHUNK = 64;
const MAX_CHUNK = 64 * 1024 * 1024;
const COMPRESSIONS: readonly ReferenceCompression[] = ['none', 'gzip', 'zstd'];

const fail = (code: string, message: string): never => {
  throw new ReferenceDecodeError(code, message);
};

/** Parses and checks the header: steps 1-10 of §8. Needs no key. */
export function parseHeader(input: Buffer): ReferenceHeader {
  // Step 1: the magic, or a prefix of it when the input is shorter.
  const present = input.subarray(0, MAGIC.length);
  if (!MAGIC.subarray(0, present.length).equals(present)) fail('SEAL_NOT_SEALED', 'bad magic');
  let at = 0;
  const take = (n: number): Buffer => {
    if (input.length < at + n) fail('SEAL_TRUNCATED', `input ends inside the header (needs ${at + n} bytes, has ${input.length})`);
    const out = input.subarray(at, at + n);
    at += n;
    return out;
  };
  const byte = (): number => take(1)[0] ?? 0;
  take(MAGIC.length);
  const version = byte();
  if (version !== 1) fail('SEAL_UNSUPPORTED_VERSION', `version ${version}`);
  const aead = byte();
  if (aead !== 1) fail('SEAL_UNSUPPORTED_ALGORITHM', `AEAD id ${aead}`);
  const compressionId = byte();
  const compression = COMPRESSIONS[compressionId] ?? fail('SEAL_UNSUPPORTED_ALGORITHM', `compression id ${compressionId}`);
  if (byte() !== 0) fail('SEAL_HEADER_INVALID', 'reserved byte is not 0');
  const chunkSize = take(4).readUInt32BE(0);
  if (chunkSize < MIN_CHUNK || chunkSize > MAX_CHUNK) fail('SEAL_HEADER_INVALID', `chunk size ${chunkSize}`);
  const keyBlockStart = at;
  const streamId = take(16);
  const keyIdLength = byte();
  if (keyIdLength > 64) fail('SEAL_HEADER_INVALID', `key id length ${keyIdLength}`);
  const keyIdBytes = take(keyIdLength);
  if (!isUtf8(keyIdBytes)) fail('SEAL_HEADER_INVALID', 'key id is not UTF-8');
  const sourceKind = byte();
  let keySource: ReferenceHeader['keySource'];
  if (sourceKind === 1) {
    keySource = { kind: 'raw' };
  } else if (sourceKind === 2) {
    const log2N = byte();
    const r = byte();
    const p = byte();
    if (log2N < 10 || log2N > 20 || r < 1 || r > 16 || p < 1 || p > 4) fail('SEAL_HEADER_INVALID', 'scrypt parameters out of bounds');
    keySource = { kind: 'scrypt', log2N, r, p, salt: take(16) };
  } else {
    return fail('SEAL_HEADER_INVALID', `key source ${sourceKind}`);
  }
  const keyBlock = input.subarray(keyBlockStart, at);
  const wrapNonce = take(12);
  const wrappedKey = take(48);
  const macInput = input.subarray(0, at);
  const mac = take(32);
  return {
    version,
    compression,
    chunkSize,
    streamId,
    keyIdBytes,
    keyId: keyIdBytes.toString('utf8'),
    keySource,
    wrapNonce,
    wrappedKey,
    mac,
    keyBlock,
    macInput,
    length: at,
  };
}

/** The header as `inspectSealed` describes it. */
export function inspectHeader(input: Buffer): {
  version: number;
  keyId: string;
  keySource: 'raw' | 'scrypt';
  compression: ReferenceCompression;
  chunkSize: number;
  headerLength: number;
} {
  const h = parseHeader(input);
  return {
    version: h.version,
    keyId: h.keyId,
    keySource: h.keySource.kind,
    compression: h.compression,
    chunkSize: h.chunkSize,
    headerLength: h.length,
  };
}

const hkdf = (ikm: Buffer, salt: Buffer, info: string): Buffer => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

/** AES-256-GCM open of `ciphertext || tag`; undefined when the tag does not verify. */
function gcmOpen(key: Buffer, nonce: Buffer, sealed: Buffer, aad?: Buffer): Buffer | undefined {
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
  if (aad) decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
  const plain = decipher.update(sealed.subarray(0, sealed.length - TAG));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return plain;
}

/** Nonce of chunk `index` (§6.2): 3 zero bytes, u64 index, final flag. */
function chunkNonce(index: number, final: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(index), 3);
  nonce[11] = final ? 1 : 0;
  return nonce;
}

/** Steps 11-14: finds the master key, unwraps the data key, checks the header MAC. */
function openHeader(h: ReferenceHeader, keys: ReferenceKeys): Buffer {
  let master: Buffer;
  if (h.keySource.kind === 'scrypt') {
    if (!('passphrase' in keys)) return fail('SEAL_KEY_MISSING', 'passphrase stream, no passphrase given');
    const { log2N, r, p, salt } = h.keySource;
    const N = 2 ** log2N;
    master = scryptSync(Buffer.from(keys.passphrase.normalize('NFC'), 'utf8'), salt, 32, { N, r, p, maxmem: 256 * N * r * p + 2 ** 20 });
  } else {
    if (!('keys' in keys)) return fail('SEAL_KEY_MISSING', 'raw-key stream, only a passphrase given');
    const found = keys.keys.find((k) => Buffer.from(k.id, 'utf8').equals(h.keyIdBytes));
    if (!found) return fail('SEAL_UNKNOWN_KEY', 'no key with the header key id');
    master = found.key;
  }
  const wrapKey = hkdf(master, h.streamId, 'drkit-seal/v1/wrap');
  const dataKey = gcmOpen(wrapKey, h.wrapNonce, h.wrappedKey, h.keyBlock) ?? fail('SEAL_WRONG_KEY', 'the data key does not unwrap');
  const macKey = hkdf(dataKey, h.streamId, 'drkit-seal/v1/header-mac');
  const expected = createHmac('sha256', macKey).update(h.macInput).digest();
  if (!timingSafeEqual(expected, h.mac)) fail('SEAL_HEADER_TAMPERED', 'header MAC mismatch');
  return dataKey;
}

/** Splits zstd content into its frames (RFC 8878 §3.1): Zstandard frames, skippable frames dropped. */
function zstdFrames(content: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  let at = 0;
  const need = (n: number) => {
    if (content.length < at + n) throw new Error('zstd content ends inside a frame');
  };
  while (at < content.length) {
    need(4);
    const magic = content.readUInt32LE(at);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      need(8);
      const size = content.readUInt32LE(at + 4);
      need(8 + size);
      at += 8 + size;
      continue;
    }
    if (magic !== 0xfd2fb528) throw new Error('bytes that are not a zstd frame');
    const start = at;
    need(5);
    const descriptor = content[at + 4] ?? 0;
    const fcsFlag = descriptor >> 6;
    const singleSegment = (descriptor >> 5) & 1;
    const checksum = (descriptor >> 2) & 1;
    const dictionaryIdSize = [0, 1, 2, 4][descriptor & 3] ?? 0;
    const contentSizeSize = [singleSegment, 2, 4, 8][fcsFlag] ?? 0;
    const frameHeaderSize = 5 + (singleSegment ? 0 : 1) + dictionaryIdSize + contentSizeSize;
    need(frameHeaderSize);
    at += frameHeaderSize;
    for (let last = false; !last; ) {
      need(3);
      const blockHeader = content.readUIntLE(at, 3);
      last = (blockHeader & 1) === 1;
      const type = (blockHeader >> 1) & 3;
      if (type === 3) throw new Error('reserved zstd block type');
      const size = 3 + (type === 1 ? 1 : blockHeader >> 3);
      need(size);
      at += size;
    }
    need(checksum ? 4 : 0);
    at += checksum ? 4 : 0;
    frames.push(content.subarray(start, at));
  }
  if (frames.length === 0) throw new Error('no zstd frame');
  return frames;
}

/** Step 18 (§5). */
function decompress(compression: ReferenceCompression, content: Buffer): Buffer {
  try {
    if (compression === 'gzip') return zlib.gunzipSync(content);
    if (compression === 'zstd') return Buffer.concat(zstdFrames(content).map((frame) => zlib.zstdDecompressSync(frame)));
    return content;
  } catch (error) {
    return fail('SEAL_DECOMPRESS_FAILED', `content does not decompress as ${compression}: ${(error as Error).message}`);
  }
}

/** Opens a whole sealed stream (§8, steps 1-18) and returns the plaintext. */
export function decode(input: Buffer, keys: ReferenceKeys): Buffer {
  const h = parseHeader(input);
  const dataKey = openHeader(h, keys);
  const chunkKey = hkdf(dataKey, h.streamId, 'drkit-seal/v1/chunk');
  const recordSize = h.chunkSize + TAG;
  const chunks: Buffer[] = [];
  let at = h.length;
  let index = 0;
  // Step 15: full-size records are never final.
  while (input.length - at >= recordSize) {
    const plain = gcmOpen(chunkKey, chunkNonce(index, false), input.subarray(at, at + recordSize));
    chunks.push(plain ?? fail('SEAL_CHUNK_TAMPERED', `chunk ${index} failed authentication`));
    at += recordSize;
    index++;
  }
  // Step 16: what is left must be a final record of 16 to C+15 bytes.
  if (input.length - at < TAG) fail('SEAL_TRUNCATED', `the input ends without a final chunk (after chunk ${index})`);
  // Step 17.
  const last = gcmOpen(chunkKey, chunkNonce(index, true), input.subarray(at));
  chunks.push(last ?? fail('SEAL_CHUNK_TAMPERED', `final chunk ${index} failed authentication`));
  return decompress(h.compression, Buffer.concat(chunks));
}
