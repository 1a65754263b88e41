import type { Catalog, Manifest } from '@drkit/s3-store';
import { ArchiveSet, FILES_KIND, type FilesKeys, fingerprintOf, resolveFilesBackup } from './archive.js';
import { isFilesError } from './errors.js';
import { compileSelectors } from './select.js';
import type { FilesIndex, IndexEntry } from './tree-index.js';

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
  /** With \"latest\": only backups made on this host (as recorded in their manifests). */
  host?: string;
  /** Only these paths or globs (and what is under them). */
  paths?: string[];
  signal?: AbortSignal;
}

/** The tree at a backup (or part of it), read from its index alone. */
export async function listFiles(options: ListFilesOptions): Promise<{ manifest: Manifest; entries: ListedEntry[] }> {
  const { manifest, index } = await loadIndex(options.catalog, options.keys, options.backup, options, options.signal);
  return { manifest, entries: listed(index, options.paths) };
}

async function loadIndex(
  catalog: Catalog,
  keys: FilesKeys,
  backup: string | Manifest,
  scope: { root?: string; host?: string },
  signal: AbortSignal | undefined,
  archives = new ArchiveSet(catalog, keys, signal),
): Promise<{ manifest: Manifest; index: FilesIndex }> {
  const manifest =
    typeof backup === 'string'
      ? await resolveFilesBackup(catalog, backup, {
          ...(scope.root === undefined ? {} : { root: scope.root }),
          ...(scope.host === undefined ? {} : { host: scope.host }),
        })
      : backup;
  fingerprintOf(manifest);
  return { manifest, index: await archives.index(manifest) };
}

/** An index entry as listings show it. */
export function listedEntry(index: FilesIndex, e: IndexEntry): ListedEntry {
  const ns = BigInt(e.mtime);
  return {
    path: e.path,
    type: e.type,
    size: e.size,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: new Date(Number(ns / 1_000_000n)).toISOString(),
    mtimeNs: e.mtime,
    ...(e.sha256 === undefined ? {} : { sha256: e.sha256 }),
    ...(e.link === undefined ? {} : { link: e.link }),
    ...(e.at ? { storedIn: index.archives[e.at[0]]?.id as string } : {}),
    ...(e.unstable ? { unstable: true } : {}),
  };
}

function listed(index: FilesIndex, paths: string[] | undefined): ListedEntry[] {
  const selectors = paths?.length ? compileSelectors(paths) : undefined;
  return index.entries.filter((e) => !selectors || selectors.matches(e.path)).map((e) => listedEntry(index, e));
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
  const archives = new ArchiveSet(options.catalog, options.keys, options.signal);
  const a = await loadIndex(options.catalog, options.keys, options.from, {}, options.signal, archives);
  const b = await loadIndex(options.catalog, options.keys, options.to, {}, options.signal, archives);
  const before = new Map(listed(a.index, options.paths).map((e) => [e.path, e]));
  const after = new Map(listed(b.index, options.paths).map((e) => [e.path, e]));
  const diff: FilesDiff = { from: a.manifest, to: b.manifest, added: [], deleted: [], modified: [], metadata: [], renamed: [] };
  for (const [path, y] of after) {
    const x = before.get(path);
    if (!x) diff.added.push(y);
    else if (x.type !== y.type || x.sha256 !== y.sha256 || x.link !== y.link || x.size !== y.size)
      diff.modified.push({ before: x, after: y });
    else if (x.mode !== y.mode || x.uid !== y.uid || x.gid !== y.gid || x.mtimeNs !== y.mtimeNs)
      diff.metadata.push({ before: x, after: y });
  }
  for (const [path, x] of before) if (!after.has(path)) diff.deleted.push(x);
  // A deleted file and an added one with the same content: a rename (each deleted file pairs once).
  const gone = new Map<string, ListedEntry[]>();
  for (const x of diff.deleted) if (x.type === 'file' && x.sha256) gone.set(x.sha256, [...(gone.get(x.sha256) ?? []), x]);
  const moved = new Set<ListedEntry>();
  diff.added = diff.added.filter((y) => {
    const candidates = y.type === 'file' && y.sha256 ? gone.get(y.sha256) : undefined;
    const x = candidates?.shift();
    if (!x) return true;
    diff.renamed.push({ before: x, after: y });
    moved.add(x);
    return false;
  });
  diff.deleted = diff.deleted.filter((x) => !moved.has(x));
  return diff;
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
  /** Only backups made on this host. */
  host?: string;
  /** Told about each backup whose index cannot be read (wrong key, damaged): it is left out of the result. */
  onUnreadable?: (manifest: Manifest, error: unknown) => void;
  signal?: AbortSignal;
}): Promise<PathVersion[]> {
  const selectors = compileSelectors([options.path]);
  const manifests = (await options.catalog.list({ kind: FILES_KIND }))
    .filter(
      (m) =>
        (options.root === undefined || m.labels?.dir === options.root) && (options.host === undefined || m.labels?.host === options.host),
    )
    .reverse();
  const archives = new ArchiveSet(options.catalog, options.keys, options.signal);
  const found: PathVersion[] = [];
  for (const manifest of manifests) {
    let index: FilesIndex;
    try {
      fingerprintOf(manifest);
      index = await archives.index(manifest);
    } catch (error) {
      // One unreadable backup must not hide the others: it is reported and left out.
      if (isFilesError(error, 'FILES_ABORTED')) throw error;
      options.onUnreadable?.(manifest, error);
      continue;
    }
    for (const e of index.entries) if (selectors.matches(e.path)) found.push({ manifest, entry: listedEntry(index, e) });
  }
  return found;
}
