import { createHash } from 'node:crypto';
import { FilesError } from './errors.js';
import { type ArchiveCompression, type Frame, unwrapMetadata, wrapMetadata } from './frames.js';

/** The `format` of every index this version writes. */
export const INDEX_FORMAT = 'drkit-files-index/1';

/**
 * One path of the tree as it was at a backup. Times are nanoseconds since the epoch, as
 * decimal strings (JSON numbers cannot hold them exactly).
 */
export interface IndexEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** Bytes of content (files), else 0. */
  size: number;
  /** Permission bits. */
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  /** ctime and inode at the backup: what tells the next backup that a file may have changed. */
  ctime: string;
  ino: string;
  /** SHA-256 of the content (files). */
  sha256?: string;
  /** Symlink target. */
  link?: string;
  /**
   * Where the content is (files): the archive (an index into {@link FilesIndex.archives}) and
   * the entry's first and past-the-end byte in that archive's tar stream (headers, content
   * and padding).
   */
  at?: [archive: number, start: number, end: number];
  /** The path the content is stored under in that archive, when it was stored under another path (a rename). */
  storedAs?: string;
  /** The file changed while it was being read: its content may be a mix of before and after. */
  unstable?: true;
}

/** An archive whose frames hold content of the tree: this backup's own, or an ancestor's. */
export interface ArchiveRef {
  id: string;
  compression: ArchiveCompression;
  /** Its frames: [compressed offset, compressed length, tar offset]. */
  frames: [number, number, number][];
}

/** What changed since the parent backup (all paths, for a full backup). */
export interface Changes {
  added: string[];
  modified: string[];
  deleted: string[];
  /** [from, to]: a path gone and a new one with the same content (and inode, when detected by it). */
  renamed: [string, string][];
  /** Same content, other mode, owner or times. */
  metadata: string[];
}

/** The index of one backup: the whole tree at that backup, and where each file's content is. */
export interface FilesIndex {
  format: typeof INDEX_FORMAT;
  id: string;
  parent?: string;
  /** The directory backed up (absolute path on its host). */
  root: string;
  /** Its own mode, owner and mtime (ns): what a restore into a new directory gives that directory. */
  rootMeta?: { mode: number; uid: number; gid: number; mtime: string };
  createdAt: string;
  /** archives[0] is this backup's own; the others are ancestors that hold content still in the tree. */
  archives: ArchiveRef[];
  /** The tree, sorted by path (see comparePaths). */
  entries: IndexEntry[];
  changes: Changes;
}

/** Where a backup's index lies in its compressed stream: recorded in the manifest. */
export interface IndexLocation {
  offset: number;
  length: number;
  sha256: string;
}

/** Serialises an index into metadata frames. */
export function encodeIndex(index: FilesIndex, compression: ArchiveCompression): Buffer {
  return wrapMetadata(compression, Buffer.from(JSON.stringify(index), 'utf8'));
}

/**
 * Reads an index from its metadata frames, checked against the manifest's hash and shape.
 * @throws FilesError FILES_BACKUP_INVALID
 */
export function decodeIndex(wrapped: Buffer, location: IndexLocation, compression: ArchiveCompression, id: string): FilesIndex {
  const sha256 = createHash('sha256').update(wrapped).digest('hex');
  if (sha256 !== location.sha256)
    throw new FilesError('FILES_BACKUP_INVALID', `the index of backup ${id} does not have the SHA-256 its manifest records`);
  let index: FilesIndex;
  try {
    index = JSON.parse(unwrapMetadata(compression, wrapped).toString('utf8')) as FilesIndex;
  } catch (cause) {
    throw new FilesError('FILES_BACKUP_INVALID', `the index of backup ${id} does not decode: it was written by a faulty writer`, {
      cause,
    });
  }
  if (index?.format !== INDEX_FORMAT || index.id !== id || !Array.isArray(index.entries) || !Array.isArray(index.archives))
    throw new FilesError(
      'FILES_BACKUP_INVALID',
      `the index of backup ${id} is not a ${INDEX_FORMAT} index of that backup (format ${String(index?.format)})`,
    );
  for (const entry of index.entries)
    if (entry.at && !index.archives[entry.at[0]])
      throw new FilesError('FILES_BACKUP_INVALID', `the index of backup ${id} points ${entry.path} at an archive it does not list`);
  return index;
}

/** The frames of `ref` that hold tar bytes `[start, end)`. */
export function framesFor(ref: ArchiveRef, start: number, end: number): { first: number; last: number } {
  const frames = ref.frames;
  let lo = 0;
  let hi = frames.length - 1;
  // The last frame whose tar offset is <= start.
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((frames[mid] as Frame3)[2] <= start) lo = mid;
    else hi = mid - 1;
  }
  let last = lo;
  while (last + 1 < frames.length && (frames[last + 1] as Frame3)[2] < end) last++;
  return { first: lo, last };
}

type Frame3 = [number, number, number];

/** A frame table entry in the index's compact form. */
export function compactFrame(frame: Frame): Frame3 {
  return [frame.offset, frame.length, frame.tarOffset];
}
