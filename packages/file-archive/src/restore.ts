import type { Catalog, Manifest } from '@drkit/s3-store';
import type { FilesKeys } from './archive.js';
import type { FilesEventListener } from './events.js';

/** Options of {@link restoreFiles}. */
export interface RestoreFilesOptions {
  catalog: Catalog;
  keys: FilesKeys;
  /** A backup id, "latest", or a manifest. */
  backup: string | Manifest;
  /** With "latest": the newest backup of this directory (absolute path as backed up). */
  root?: string;
  /** The directory to restore into. */
  target: string;
  /** Restore only these paths or globs (see compileSelectors), e.g. ["uploads/2025/10/"]. */
  paths?: string[];
  /**
   * A target that exists and is not empty: "refuse" (FILES_TARGET_NOT_EMPTY), or "merge": the
   * restored entries are moved in, and entries they replace are moved (kept) to a sibling
   * directory `<target>.drkit-replaced-<time>`. @default "refuse"
   */
  existing?: 'refuse' | 'merge';
  /** Restore owners (uid/gid). @default true when running as root */
  owners?: boolean;
  /** Create symlinks that point outside the restored tree (never followed by the restore). @default false */
  allowExternalLinks?: boolean;
  signal?: AbortSignal;
  onEvent?: FilesEventListener;
}

/** What {@link restoreFiles} did. */
export interface FilesRestore {
  manifest: Manifest;
  /** The target directory, absolute. */
  target: string;
  files: number;
  directories: number;
  symlinks: number;
  /** Bytes of file content written (each file's SHA-256 checked against the index). */
  bytes: number;
  /** Where entries replaced by a merge were moved, when there were any. */
  replaced?: string;
  /** Backups whose archives were read (this one and ancestors holding unchanged files). */
  archives: string[];
  /** Sealed bytes fetched from the store. */
  fetched: number;
}

/**
 * Restores the tree as it was at a backup (or the selected paths of it) into a target
 * directory. It reads the backup's index, refuses the whole restore if any entry could write
 * outside the target (absolute paths, `..`, entries under a symlink, links that escape,
 * devices), extracts into a staging directory next to the target, checks every file's SHA-256
 * against the index, sets modes and mtimes, and only then renames the result into place.
 * @throws FilesError FILES_BACKUP_NOT_FOUND, FILES_UNSAFE_ENTRY, FILES_TARGET_NOT_EMPTY, FILES_TARGET_INVALID, FILES_NO_MATCH, FILES_HASH_MISMATCH, FILES_BACKUP_TAMPERED, FILES_WRONG_KEY, FILES_CHAIN_BROKEN, FILES_IO_FAILED, FILES_ABORTED
 */
export async function restoreFiles(options: RestoreFilesOptions): Promise<FilesRestore> {
  void options;
  throw new Error('restoreFiles: being written');
}
