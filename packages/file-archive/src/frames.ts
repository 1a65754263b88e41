// The compressed layer of an archive: the tar stream cut into independent frames (zstd frames
// or gzip members), so that a reader can decompress any one of them alone, and the index
// carried in frames that decompress to nothing (zstd skippable frames; gzip members whose
// only payload is an extra header field). `zstd -d` and `gzip -d` output exactly the tar,
// which GNU tar lists; drkit finds frames and index through the table in the manifest.
import { promisify } from 'node:util';
import zlib from 'node:zlib';

/** Content compression of an archive. */
export type ArchiveCompression = 'gzip' | 'zstd';

/** Default levels: zstd's default, and gzip's (the plan's `gzip -9` costs 3x the time for ~1% less). */
export const DEFAULT_ARCHIVE_LEVELS: Record<ArchiveCompression, number> = { zstd: 3, gzip: 6 };

/** Bytes of tar per frame: a frame is the smallest unit a selective restore decompresses. */
export const FRAME_BYTES = 1024 * 1024;
/** An entry starting when the frame holds this much starts a new frame (small files stay together). */
export const FRAME_CUT_AT_ENTRY = 256 * 1024;

/** One frame: where it is in the compressed stream, and which tar bytes it holds. */
export interface Frame {
  /** Offset in the compressed stream (the sealed plaintext). */
  offset: number;
  length: number;
  /** Offset of its first byte in the tar stream. */
  tarOffset: number;
}

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);
const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

/** Compresses one frame on the libuv thread pool (the main thread goes on hashing and sealing). */
export function compressFrame(compression: ArchiveCompression, data: Buffer, level: number): Promise<Buffer> {
  const chunkSize = outputChunk(data.length);
  if (compression === 'zstd')
    return zstdCompress(data, {
      chunkSize,
      params: { [zlib.constants.ZSTD_c_compressionLevel]: level, [zlib.constants.ZSTD_c_checksumFlag]: 1 },
    });
  return gzip(data, { level, chunkSize });
}

/**
 * Decompresses one frame (one zstd frame, or one gzip member) on the thread pool. `size` is
 * the frame's tar length when known: the output then arrives in one piece.
 */
export function decompressFrame(compression: ArchiveCompression, data: Buffer, size?: number): Promise<Buffer> {
  const options = { chunkSize: outputChunk(size ?? 4 * data.length) };
  return compression === 'zstd' ? zstdDecompress(data, options) : gunzip(data, options);
}

/**
 * zlib's one-shot calls hand their output back in pieces of `chunkSize` (16 KiB by default),
 * each a callback on the main thread and a copy at the end: a frame-sized chunk makes it one.
 */
function outputChunk(expected: number): number {
  return Math.min(8 * 1024 * 1024, Math.max(64 * 1024, expected + 1024));
}

/** Compresses a whole buffer in one call (the index). */
function compressIndex(compression: ArchiveCompression, data: Buffer): Buffer {
  return compression === 'zstd'
    ? zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 9 } })
    : zlib.gzipSync(data, { level: 9 });
}

// zstd skippable frames: magic 0x184D2A50..5F, a 32-bit little-endian length, then anything.
const SKIPPABLE_MAGIC = 0x184d2a5d;
const SKIPPABLE_LIMIT = 0xffffffff;
// gzip members with FEXTRA: the payload rides in subfields "DK" of at most this many bytes.
const GZIP_EXTRA_LIMIT = 65535 - 4;
// An empty final static deflate block, then CRC32 and ISIZE of empty content.
const EMPTY_DEFLATE_TRAILER = Buffer.from([0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);

/**
 * The index (or any metadata) compressed and wrapped in frames that decompress to nothing,
 * so the archive stays a plain `.tar.zst` / `.tar.gz`.
 */
export function wrapMetadata(compression: ArchiveCompression, data: Buffer): Buffer {
  const payload = compressIndex(compression, data);
  const parts: Buffer[] = [];
  if (compression === 'zstd') {
    for (let at = 0; at < payload.length || at === 0; at += SKIPPABLE_LIMIT) {
      const piece = payload.subarray(at, at + SKIPPABLE_LIMIT);
      const head = Buffer.alloc(8);
      head.writeUInt32LE(SKIPPABLE_MAGIC, 0);
      head.writeUInt32LE(piece.length, 4);
      parts.push(head, piece);
      if (payload.length === 0) break;
    }
    return Buffer.concat(parts);
  }
  for (let at = 0; at < payload.length || at === 0; at += GZIP_EXTRA_LIMIT) {
    const piece = payload.subarray(at, at + GZIP_EXTRA_LIMIT);
    const head = Buffer.alloc(16);
    // ID1 ID2 CM=deflate FLG=FEXTRA MTIME=0 XFL=0 OS=unknown, XLEN, then subfield "DK" LEN.
    head.set([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff]);
    head.writeUInt16LE(piece.length + 4, 10);
    head.write('DK', 12, 'latin1');
    head.writeUInt16LE(piece.length, 14);
    parts.push(head, piece, EMPTY_DEFLATE_TRAILER);
    if (payload.length === 0) break;
  }
  return Buffer.concat(parts);
}

/**
 * The metadata {@link wrapMetadata} wrapped.
 * @throws Error when the bytes are not such frames
 */
export function unwrapMetadata(compression: ArchiveCompression, wrapped: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < wrapped.length) {
    if (compression === 'zstd') {
      if (wrapped.length - at < 8 || wrapped.readUInt32LE(at) !== SKIPPABLE_MAGIC) throw new Error('not a metadata frame');
      const length = wrapped.readUInt32LE(at + 4);
      if (at + 8 + length > wrapped.length) throw new Error('metadata frame cut short');
      parts.push(wrapped.subarray(at + 8, at + 8 + length));
      at += 8 + length;
    } else {
      if (wrapped.length - at < 16 + 10 || wrapped[at] !== 0x1f || wrapped[at + 1] !== 0x8b || wrapped[at + 3] !== 0x04)
        throw new Error('not a metadata member');
      if (wrapped.toString('latin1', at + 12, at + 14) !== 'DK') throw new Error('not a drkit metadata member');
      const length = wrapped.readUInt16LE(at + 14);
      if (at + 16 + length + 10 > wrapped.length) throw new Error('metadata member cut short');
      parts.push(wrapped.subarray(at + 16, at + 16 + length));
      at += 16 + length + 10;
    }
  }
  const payload = Buffer.concat(parts);
  return compression === 'zstd' ? zlib.zstdDecompressSync(payload) : zlib.gunzipSync(payload);
}
