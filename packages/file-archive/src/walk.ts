import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** One entry of a scanned tree, with what change detection compares. */
export interface ScannedEntry {
  /** Relative path, `/`-separated. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  /** Symlink target. */
  link?: string;
}

/** Why an entry of the tree is not in the backup. */
export interface Skipped {
  path: string;
  reason: string;
}

/** Options of {@link scanTree}. */
export interface ScanOptions {
  /** True for relative paths to leave out (and, for directories, everything under them). */
  exclude?: (path: string, type: ScannedEntry['type']) => boolean;
  signal?: AbortSignal;
  onEntry?: (entry: ScannedEntry) => void;
}

const SCAN_CONCURRENCY = 64;

/**
 * Scans a directory tree without following symlinks, sorted by path (byte order of the
 * UTF-8 names, the order archives and indexes use). Sockets, FIFOs, devices and names that
 * are not valid UTF-8 are skipped and reported; entries that vanish while the scan runs are
 * left out.
 */
export async function scanTree(root: string, options: ScanOptions = {}): Promise<{ entries: ScannedEntry[]; skipped: Skipped[] }> {
  const entries: ScannedEntry[] = [];
  const skipped: Skipped[] = [];

  async function visit(dirPath: string, relative: string): Promise<void> {
    if (options.signal?.aborted) throw options.signal.reason;
    let names: Buffer[];
    try {
      names = await readdir(dirPath, { encoding: 'buffer' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    const children: { name: string; path: string }[] = [];
    for (const raw of names) {
      const name = raw.toString('utf8');
      const path = relative ? `${relative}/${name}` : name;
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        skipped.push({ path, reason: 'its name is not valid UTF-8' });
        continue;
      }
      children.push({ name, path });
    }
    const stats = await mapLimit(children, SCAN_CONCURRENCY, async ({ name, path }) => {
      try {
        return { path, full: join(dirPath, name), stat: await lstat(join(dirPath, name), { bigint: true }) };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    });
    const dirs: [string, string][] = [];
    for (const found of stats) {
      if (!found) continue;
      const { path, full, stat } = found;
      const type = stat.isFile() ? 'file' : stat.isDirectory() ? 'directory' : stat.isSymbolicLink() ? 'symlink' : undefined;
      if (!type) {
        skipped.push({
          path,
          reason: stat.isSocket() ? 'it is a socket' : stat.isFIFO() ? 'it is a FIFO' : 'it is a device file',
        });
        continue;
      }
      if (options.exclude?.(path, type)) continue;
      const entry: ScannedEntry = {
        path,
        type,
        size: type === 'file' ? Number(stat.size) : 0,
        mode: Number(stat.mode) & 0o7777,
        uid: Number(stat.uid),
        gid: Number(stat.gid),
        mtimeNs: stat.mtimeNs,
        ctimeNs: stat.ctimeNs,
        ino: stat.ino,
      };
      if (type === 'symlink') {
        try {
          entry.link = await readlink(full);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw error;
        }
      }
      entries.push(entry);
      options.onEntry?.(entry);
      if (type === 'directory') dirs.push([full, path]);
    }
    for (const [full, path] of dirs) await visit(full, path);
  }

  await visit(root, '');
  sortByPath(entries);
  return { entries, skipped };
}

/**
 * Path order of archives and indexes: component by component, so that a directory's entries
 * follow it directly ("a/b" before "a.b", which plain string order would not give).
 */
export function comparePaths(a: string, b: string): number {
  const x = pathKey(a);
  const y = pathKey(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A string whose plain order is {@link comparePaths}' order. */
export function pathKey(path: string): string {
  return path.replaceAll('/', '\u0000');
}

/** `fn` over `items` with at most `limit` calls at once, results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Sorts entries in place by {@link comparePaths}, computing each key once. */
export function sortByPath<T extends { path: string }>(entries: T[]): T[] {
  const keyed = entries.map((entry) => ({ entry, key: pathKey(entry.path) }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (let i = 0; i < keyed.length; i++) entries[i] = (keyed[i] as { entry: T }).entry;
  return entries;
}
