import { createHash, randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, open, readdir, realpath, rename, rm } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/** A path that is not a safe relative path inside the uploads directory (answered 400). */
export class UploadPathError extends Error {
  override readonly name = 'UploadPathError';
}

/** A body larger than the limit (answered 413). */
export class UploadTooLargeError extends Error {
  override readonly name = 'UploadTooLargeError';
}

/** What was written by {@link writeFileAtomic}. */
export interface WrittenFile {
  bytes: number;
  sha256: string;
}

/**
 * Resolves `relativePath` (already percent-decoded, "/"-separated) inside `root`, refusing
 * absolute paths, `..`, empty or `.` segments, backslashes and NUL: a client names a file
 * under the uploads directory and nothing else.
 */
export function resolveUploadPath(root: string, relativePath: string): string {
  if (relativePath === '') throw new UploadPathError('an upload path is required');
  if (relativePath.includes('\0')) throw new UploadPathError('the path contains a NUL byte');
  if (isAbsolute(relativePath) || /^[A-Za-z]:/.test(relativePath)) throw new UploadPathError('absolute paths are refused');
  // A backslash is a separator on Windows and a trap everywhere else.
  if (relativePath.includes('\\')) throw new UploadPathError('backslashes are refused');
  const segments = relativePath.split('/');
  for (const segment of segments) {
    if (segment === '..') throw new UploadPathError('".." is refused: the path must stay inside the uploads directory');
    if (segment === '' || segment === '.') throw new UploadPathError('empty and "." path segments are refused');
  }
  const base = resolve(root);
  const full = resolve(base, ...segments);
  const inside = relative(base, full);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) throw new UploadPathError('the path escapes the uploads directory');
  return full;
}

/**
 * True when `path` (which exists) is inside `root` once symbolic links are followed: a link
 * planted in the uploads directory must not lead a read or a write outside it.
 */
export async function isInsideRoot(root: string, path: string): Promise<boolean> {
  const [realRoot, realPath] = await Promise.all([realpath(root), realpath(path)]);
  return realPath === realRoot || realPath.startsWith(realRoot.endsWith(sep) ? realRoot : `${realRoot}${sep}`);
}

/**
 * Writes `content` to `path` atomically: into a temp file beside it, fsynced, then renamed
 * over, so a reader (or a backup) sees the old file or the new one, never half of one.
 * Creates the parent directories. With `root`, refuses a parent reached through a link
 * leading outside `root`.
 */
export async function writeFileAtomic(
  path: string,
  content: Uint8Array | AsyncIterable<Uint8Array>,
  options: { maxBytes?: number; root?: string } = {},
): Promise<WrittenFile> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  if (options.root !== undefined && !(await isInsideRoot(options.root, dir)))
    throw new UploadPathError('the path leads outside the uploads directory through a symbolic link');
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const hash = createHash('sha256');
  let bytes = 0;
  const handle = await open(temp, 'wx', 0o644);
  let renamed = false;
  try {
    const chunks = content instanceof Uint8Array ? [content] : content;
    for await (const chunk of chunks) {
      bytes += chunk.byteLength;
      if (options.maxBytes !== undefined && bytes > options.maxBytes)
        throw new UploadTooLargeError(`the upload is larger than ${options.maxBytes} bytes`);
      hash.update(chunk);
      await handle.write(chunk);
    }
    await handle.sync();
    await handle.close();
    await rename(temp, path);
    renamed = true;
  } finally {
    if (!renamed) {
      await handle.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
    }
  }
  // The rename itself is durable only once the directory is synced.
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Regular files under `dir`, recursively (links are not followed); 0 when `dir` does not exist. */
export async function countFiles(dir: string): Promise<number> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let count = 0;
  for (const entry of entries) {
    if (entry.isFile()) count++;
    else if (entry.isDirectory()) count += await countFiles(join(dir, entry.name));
  }
  return count;
}
