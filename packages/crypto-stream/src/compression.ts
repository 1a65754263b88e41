import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { SealError } from './errors.js';
import type { Compression } from './format.js';

/** Default levels: gzip 6 (zlib's default), zstd 3 (zstd's default). */
export const DEFAULT_LEVELS: Record<Exclude<Compression, 'none'>, number> = { gzip: 6, zstd: 3 };

/** True when this Node has zstd in zlib (Node >= 22.15 / 23.8). */
export function zstdAvailable(): boolean {
  return typeof zlib.createZstdCompress === 'function';
}

function needZstd(): void {
  if (!zstdAvailable())
    throw new SealError('SEAL_COMPRESSION_UNSUPPORTED', `zstd needs Node >= 22.15 (this is ${process.version}); upgrade Node or use gzip`);
}

/** A compressing transform for `compression`, or undefined for none. */
export function compressor(compression: Compression, level?: number): Duplex | undefined {
  checkCompression(compression);
  switch (compression) {
    case 'none':
      return undefined;
    case 'gzip': {
      const l = level ?? DEFAULT_LEVELS.gzip;
      if (!Number.isInteger(l) || l < 1 || l > 9) throw new SealError('SEAL_INVALID_OPTIONS', `gzip level must be 1-9, not ${l}`);
      return zlib.createGzip({ level: l, chunkSize: 256 * 1024 });
    }
    case 'zstd': {
      needZstd();
      const l = level ?? DEFAULT_LEVELS.zstd;
      if (!Number.isInteger(l) || l < 1 || l > 19) throw new SealError('SEAL_INVALID_OPTIONS', `zstd level must be 1-19, not ${l}`);
      return zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: l }, chunkSize: 256 * 1024 });
    }
  }
}

/** @throws SealError SEAL_INVALID_OPTIONS for a name that is not none, gzip or zstd */
export function checkCompression(compression: string): asserts compression is Compression {
  if (compression !== 'none' && compression !== 'gzip' && compression !== 'zstd')
    throw new SealError('SEAL_INVALID_OPTIONS', `compression must be none, gzip or zstd, not '${compression}'`);
}

/** The decompressing transform for `compression`, or undefined for none. */
export function decompressor(compression: Compression): Duplex | undefined {
  switch (compression) {
    case 'none':
      return undefined;
    case 'gzip':
      return zlib.createGunzip({ chunkSize: 256 * 1024 });
    case 'zstd':
      needZstd();
      return zlib.createZstdDecompress({ chunkSize: 256 * 1024 });
  }
}
