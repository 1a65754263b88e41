import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, link, open as openFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { SealError } from './errors.js';
import { type OpenOptions, open } from './open.js';
import { type SealOptions, seal } from './seal.js';
import { type ByteSource, bytesOf } from './source.js';

/** Options of {@link writeAtomically}. */
export interface AtomicWriteOptions {
  /** File mode of the result. @default 0o600: opened backups and secrets are private */
  mode?: number;
  /**
   * Never replace an existing `path`: the temp file is hard-linked into place, which fails with
   * EEXIST (the error is thrown as it is) if `path` appeared meanwhile. Where hard links are
   * not supported, it checks and renames.
   * @default false
   */
  exclusive?: boolean;
  signal?: AbortSignal;
}

/**
 * Writes a byte stream to `path` through a temp file in the same directory, flushes it to
 * disk and renames it into place only when the whole stream was written, then syncs the
 * directory so the rename survives a crash. On any failure the temp file is removed and
 * `path` is untouched: no partial output is ever visible.
 */
export async function writeAtomically(path: string, source: ByteSource, options: AtomicWriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const temp = join(dirname(path), `.${basename(path)}.drkit-${randomBytes(6).toString('hex')}.tmp`);
  const out = createWriteStream(temp, { flags: 'wx', mode, flush: true });
  try {
    await pipeline(bytesOf(source), out, {
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // The umask may have narrowed the mode at creation.
    await chmod(temp, mode);
    if (options.exclusive) await linkIntoPlace(temp, path);
    else await rename(temp, path);
  } catch (error) {
    // The file is opened in the background: wait until the stream has closed, or the temp
    // file could be created after it was removed.
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    await rm(temp, { force: true });
    if (options.signal?.aborted && !(error instanceof SealError))
      throw new SealError('SEAL_ABORTED', `writing ${path} was aborted; nothing was written`, { cause: error });
    throw error;
  }
  await syncDirectory(dirname(path));
}

async function linkIntoPlace(temp: string, path: string): Promise<void> {
  try {
    await link(temp, path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
    // No hard links here: check, then rename (a narrow race, but never a silent overwrite of
    // a file that was there before the write began).
    const exists = await stat(path).then(
      () => true,
      () => false,
    );
    if (exists) throw Object.assign(new Error(`EEXIST: file already exists, '${path}'`), { code: 'EEXIST', path });
    await rename(temp, path);
    return;
  }
  await rm(temp, { force: true });
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await openFile(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    await handle.close();
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
