import type { Catalog, Manifest } from '@drkit/s3-store';
import type { FilesKeys } from './archive.js';
import type { IndexEntry } from './tree-index.js';

/** One path of a backup's tree, as listings show it. */
export interface ListedEntry {
  path: string;
  type: IndexEntry['type'];
  size: number;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, ISO 8601 (to the millisecond); `mtimeNs` has it exactly. */
  mtime: string;
  mtimeNs: string;
  sha256?: string;
  link?: string;
  /** The backup whose archive holds this file's content. */
  storedIn?: string;
  /** The file changed while it was being read. */
  unstable?: boolean;
}

/** Options of {@link listFiles}. */
export interface ListFilesOptions {
  catalog: Catalog;
  keys: FilesKeys;
  /** A backup id, "latest", or a manifest. */
  backup: string | Manifest;
  /** With "latest": the newest backup of this directory. */
  root?: string;
  /** Only these paths or globs (and what is under them). */
  paths?: string[];
  signal?: AbortSignal;
}

/** The tree at a backup (or part of it), read from its index alone. */
export async function listFiles(options: ListFilesOptions): Promise<{ manifest: Manifest; entries: ListedEntry[] }> {
  void options;
  throw new Error('listFiles: being written');
}

/** What differs between two backups' trees. */
export interface FilesDiff {
  from: Manifest;
  to: Manifest;
  added: ListedEntry[];
  deleted: ListedEntry[];
  /** Content (or symlink target, or type) changed. */
  modified: { before: ListedEntry; after: ListedEntry }[];
  /** Same content, other mode, owner or mtime. */
  metadata: { before: ListedEntry; after: ListedEntry }[];
  /** A path gone and a new one with the same content. */
  renamed: { before: ListedEntry; after: ListedEntry }[];
}

/** Compares the trees of two backups (of the same directory, typically), from their indexes alone. */
export async function diffBackups(options: {
  catalog: Catalog;
  keys: FilesKeys;
  from: string | Manifest;
  to: string | Manifest;
  paths?: string[];
  signal?: AbortSignal;
}): Promise<FilesDiff> {
  void options;
  throw new Error('diffBackups: being written');
}

/** One backup holding a path, and what the path was there. */
export interface PathVersion {
  manifest: Manifest;
  entry: ListedEntry;
}

/**
 * Which backups hold a path (or paths matching a glob), newest first: what an engineer looks
 * for before restoring a deleted file. Reads only indexes.
 */
export async function findBackupsHolding(options: {
  catalog: Catalog;
  keys: FilesKeys;
  path: string;
  /** Only backups of this directory. */
  root?: string;
  signal?: AbortSignal;
}): Promise<PathVersion[]> {
  void options;
  throw new Error('findBackupsHolding: being written');
}
