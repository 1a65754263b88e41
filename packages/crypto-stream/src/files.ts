import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open as openFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type OpenOptions, open } from './open.js';
import { type SealOptions, seal } from './seal.js';
import type { ByteSource } from './source.js';

/** Options of {@link writeAtomically}. */
export interface AtomicWriteOptions {
  /** File mode of the result. @default 0o600: opened backups and secrets are private */
  mode?: number;
  signal?: AbortSignal;
}

/**
 * Writes a byte stream to `path` through a temp file in the same directory, fsyncs it and
 * renames it into place only when the whole stream was written. On any failure the temp file
 * is removed and `path` is untouched: no partial output is ever visible.
 */
export async function writeAtomically(path: string, source: ByteSource, options: AtomicWriteOptions = {}): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.drkit-${randomBytes(6).toString('hex')}.tmp`);
  const handle = await openFile(temp, 'wx', options.mode ?? 0o600);
  try {
    await pipeline(source as AsyncIterable<Uint8Array>, createWriteStream('', { fd: handle, autoClose: false }), {
      ...(options.signal ? { signal: options.signal } : {}),
    });
    await handle.sync();
    await handle.close();
    await rename(temp, path);
  } catch (error) {
    await handle.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw error;
  }
}

/** Seals the file at `from` into `to` atomically. */
export async function sealFile(from: string, to: string, options: SealOptions): Promise<void> {
  await writeAtomically(to, seal(createReadStream(from, { highWaterMark: 1024 * 1024 }), options), {
    mode: 0o600,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * Opens a sealed source into the file `to`: the file appears only after the last chunk has
 * authenticated; a tampered, truncated or wrongly keyed input leaves no file at all.
 */
export async function openToFile(source: ByteSource, to: string, options: OpenOptions & { mode?: number }): Promise<void> {
  await writeAtomically(to, open(source, options), {
    mode: options.mode ?? 0o600,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
