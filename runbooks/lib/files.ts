// What the file recovery runbooks share: finding the backups that hold a lost path, choosing
// one by id, date or "latest", comparing a tree on disk with a backup's index (SHA-256, size,
// mode), and copying restored files back into the live tree without ever losing a byte:
// each file is written to a temp file beside its destination and moved in atomically, a file
// that exists with other content is left alone unless the operator asked to overwrite, and
// what an overwrite replaces is kept aside.

import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { chmod, chown, copyFile, link, lstat, mkdir, open, readlink, rename, symlink, unlink, utimes } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { findBackupsHolding, type ListedEntry, listFiles } from '@drkit/file-archive';
import { type BaseContext, RunbookError, type StepContext } from '@drkit/runbook';
import type { Catalog, Manifest } from '@drkit/s3-store';
import { backupKeys, required } from './platform.ts';

/** The live tree the backups hold: `vars.files.root`, absolute. */
export function filesRootOf(ctx: BaseContext<unknown>): string {
  return resolve(required(ctx, 'files').root);
}

/** One backup holding the lost path, for the log and the choice. */
export interface Holder {
  id: string;
  createdAt: string;
  tier: string;
  type: string;
  /** Entries matching the path: files, and their bytes. */
  files: number;
  bytes: number;
  snapshot: boolean;
}

/**
 * Every backup of the live tree that holds `path` (a path or glob relative to it), newest
 * first, with how many files of it each holds. Backups whose index cannot be read are logged
 * and left out.
 */
export async function findHolders(ctx: StepContext<unknown>, catalog: Catalog, path: string): Promise<Holder[]> {
  const found = await findBackupsHolding({
    catalog,
    keys: backupKeys(ctx),
    path,
    root: filesRootOf(ctx),
    onUnreadable: (manifest, error) =>
      ctx.log.warn(`backup ${manifest.id} cannot be read and is left out: ${error instanceof Error ? error.message : String(error)}`),
    signal: ctx.signal,
  });
  const byId = new Map<string, Holder>();
  for (const { manifest, entry } of found) {
    const holder =
      byId.get(manifest.id) ??
      ({
        id: manifest.id,
        createdAt: manifest.createdAt,
        tier: manifest.tier,
        type: manifest.type,
        files: 0,
        bytes: 0,
        snapshot: manifest.labels?.snapshot === 'true',
      } satisfies Holder);
    if (entry.type === 'file') {
      holder.files++;
      holder.bytes += entry.size;
    }
    byId.set(manifest.id, holder);
  }
  return [...byId.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/**
 * Chooses the backup to restore among those holding the path: "latest" (the newest that is
 * not a snapshot), a date YYYY-MM-DD (the newest of that UTC day, as the plan's
 * "files_2025-10-17"), or an id. The error lists what there is to choose from.
 */
export function chooseHolder(holders: Holder[], ref: string, path: string): Holder {
  const listing = () =>
    holders.length === 0
      ? 'none of the file backups of this tree holds it (the path is relative to vars.files.root; a directory may end with /, globs take * and **)'
      : `backups holding it: ${holders
          .slice(0, 10)
          .map((h) => `${h.id} (${h.createdAt})`)
          .join(', ')}`;
  let chosen: Holder | undefined;
  if (ref === 'latest') chosen = holders.find((h) => !h.snapshot);
  else if (DATE.test(ref)) chosen = holders.find((h) => h.createdAt.startsWith(ref));
  else chosen = holders.find((h) => h.id === ref);
  if (chosen) return chosen;
  const none =
    ref === 'latest'
      ? `no backup holds "${path}"`
      : DATE.test(ref)
        ? `no backup of ${ref} (UTC) holds "${path}"`
        : `backup ${ref} does not hold "${path}", or does not exist`;
  throw new RunbookError('RUNBOOK_STEP_FAILED', `${none}: ${listing()}`);
}

/** The entries of a backup selected by `path` (and, for a directory, everything under it), parents first. */
export async function selectedEntries(
  ctx: StepContext<unknown>,
  catalog: Catalog,
  backup: string | Manifest,
  path: string,
): Promise<ListedEntry[]> {
  const { entries } = await listFiles({ catalog, keys: backupKeys(ctx), backup, paths: [path], signal: ctx.signal });
  return entries.sort((a, b) => {
    const x = a.path.replaceAll('/', '\u0000');
    const y = b.path.replaceAll('/', '\u0000');
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/** SHA-256 of a file's content, hex. */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, signal ? { signal } : {})) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** What a path of the backup is in a tree on disk. */
export type PathState = 'missing' | 'identical' | 'different' | 'other-type';

/** Compares one entry of the backup with the same path under `dir`. */
export async function stateOf(dir: string, entry: ListedEntry, signal?: AbortSignal): Promise<PathState> {
  const path = join(dir, entry.path);
  const info = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
    throw error;
  });
  if (!info) return 'missing';
  if (entry.type === 'directory') return info.isDirectory() ? 'identical' : 'other-type';
  if (entry.type === 'symlink')
    return info.isSymbolicLink() ? ((await readlink(path)) === entry.link ? 'identical' : 'different') : 'other-type';
  if (!info.isFile()) return 'other-type';
  if (info.size !== entry.size) return 'different';
  return (await sha256File(path, signal)) === entry.sha256 ? 'identical' : 'different';
}

/** How a tree on disk compares with the backup's entries. */
export interface TreeComparison {
  missing: string[];
  identical: string[];
  different: string[];
  otherType: string[];
}

/** Compares every file and symlink of `entries` with `dir` (directories are implied by them). */
export async function compareTree(dir: string, entries: readonly ListedEntry[], signal?: AbortSignal): Promise<TreeComparison> {
  const out: TreeComparison = { missing: [], identical: [], different: [], otherType: [] };
  for (const entry of entries) {
    if (entry.type === 'directory') continue;
    const state = await stateOf(dir, entry, signal);
    (state === 'missing'
      ? out.missing
      : state === 'identical'
        ? out.identical
        : state === 'different'
          ? out.different
          : out.otherType
    ).push(entry.path);
  }
  return out;
}

/** "1 file", "3 files". */
export function files(n: number): string {
  return `${n} file${n === 1 ? '' : 's'}`;
}

/** A few paths for a log line: "a, b, c and 12 more". */
export function somePaths(paths: readonly string[], max = 5): string {
  if (paths.length === 0) return '(none)';
  return `${paths.slice(0, max).join(', ')}${paths.length > max ? ` and ${paths.length - max} more` : ''}`;
}

/**
 * Why a file under `dir` does not match the backup's entry (type, size, SHA-256 and, unless
 * `mode: false`, permission bits), or undefined when it does.
 */
export async function mismatchOf(
  dir: string,
  entry: ListedEntry,
  options: { signal?: AbortSignal; mode?: boolean } = {},
): Promise<string | undefined> {
  const { signal } = options;
  const path = join(dir, entry.path);
  const info = await lstat(path).catch(() => undefined);
  if (!info) return 'missing';
  if (entry.type === 'symlink')
    return info.isSymbolicLink() && (await readlink(path)) === entry.link ? undefined : `not the symlink to ${entry.link}`;
  if (entry.type === 'directory') return info.isDirectory() ? undefined : 'not a directory';
  if (!info.isFile()) return 'not a regular file';
  if (info.size !== entry.size) return `size ${info.size}, backup ${entry.size}`;
  const sha = await sha256File(path, signal);
  if (sha !== entry.sha256) return `sha256 ${sha.slice(0, 12)}…, backup ${entry.sha256?.slice(0, 12)}…`;
  if (options.mode !== false && (info.mode & 0o7777) !== (entry.mode & 0o7777))
    return `mode ${(info.mode & 0o7777).toString(8)}, backup ${(entry.mode & 0o7777).toString(8)}`;
  return undefined;
}

/** Options of {@link copyBack}. */
export interface CopyBackOptions {
  /** The verified restore, holding the entries at the same relative paths. */
  from: string;
  /** The live tree. */
  root: string;
  entries: readonly ListedEntry[];
  /** Replace files that exist with other content (what they held is kept in `aside`). */
  overwrite: boolean;
  /** Where replaced files are kept, at their relative paths. */
  aside: string;
  signal?: AbortSignal;
  onFile?: (done: number, total: number, bytes: number) => void;
}

/** What {@link copyBack} did. */
export interface CopyBackResult {
  /** Files and symlinks put back where nothing was. */
  restored: string[];
  /** Already there with the backup's content: left alone. */
  identical: string[];
  /** There with other content, left alone (no --overwrite). */
  conflicts: string[];
  /** There with other content, replaced (--overwrite); the old one is in `aside`. */
  replaced: string[];
  /** Something else (a directory where the backup has a file, ...) is there: left alone. */
  blocked: string[];
  createdDirectories: number;
  bytes: number;
}

const ownersToo = () => process.getuid?.() === 0;

function nsToSeconds(ns: string): number {
  const value = BigInt(ns);
  return Number(value / 1_000_000_000n) + Number(value % 1_000_000_000n) / 1e9;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Moves `temp` to `dest` only if nothing is at `dest`: link() fails with EEXIST instead of
 * replacing, so a file that appears meanwhile is never overwritten. False when something was there.
 */
async function placeExclusive(temp: string, dest: string): Promise<boolean> {
  try {
    await link(temp, dest);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // Filesystems without hard links: check, then rename (a small window, logged by the caller's check after).
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw error;
    if (await exists(dest)) return false;
    await rename(temp, dest);
    return true;
  }
  await unlink(temp);
  return true;
}

/** Keeps what is at `live` in the aside tree, without copying when a hard link will do. */
async function keepAside(live: string, asidePath: string): Promise<void> {
  await mkdir(dirname(asidePath), { recursive: true, mode: 0o700 });
  try {
    await link(live, asidePath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
    await copyFile(live, asidePath, constants.COPYFILE_EXCL);
  }
}

/**
 * Copies the verified restore back into the live tree. Per file: a temp file beside the
 * destination (content, mode, owner when root, mtime, fsynced), then an atomic move: into an
 * empty place with link() so nothing that appeared meanwhile is replaced, or over a differing
 * file only with `overwrite`, after that file was kept in `aside`. Directories that are missing
 * are created and given the backup's mode and mtime last, deepest first. Running it again
 * finds the files identical and does nothing.
 */
export async function copyBack(options: CopyBackOptions): Promise<CopyBackResult> {
  const result: CopyBackResult = { restored: [], identical: [], conflicts: [], replaced: [], blocked: [], createdDirectories: 0, bytes: 0 };
  const created: string[] = [];
  const touched = new Set<string>();
  const blockedDirs: string[] = [];
  const owners = ownersToo();
  const underBlocked = (path: string) => blockedDirs.some((d) => path.startsWith(`${d}/`));
  // Directories above the selection (e.g. uploads/2025 for uploads/2025/10/) come from the restore.
  const ensureParents = async (relative: string): Promise<void> => {
    const parts = relative.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      const path = join(options.root, rel);
      const info = await lstat(path).catch(() => undefined);
      if (info?.isDirectory()) continue;
      if (info) throw Object.assign(new Error(`${rel} is not a directory in the live tree`), { blockedAt: rel });
      await mkdir(path, { mode: 0o700 });
      created.push(rel);
      result.createdDirectories++;
    }
  };
  const files = options.entries.filter((e) => e.type !== 'directory');
  let done = 0;
  for (const entry of options.entries) {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
    if (underBlocked(entry.path)) {
      if (entry.type !== 'directory') result.blocked.push(entry.path);
      continue;
    }
    try {
      await ensureParents(entry.path);
    } catch (error) {
      const at = (error as { blockedAt?: string }).blockedAt;
      if (at === undefined) throw error;
      blockedDirs.push(at);
      if (entry.type !== 'directory') result.blocked.push(entry.path);
      continue;
    }
    const dest = join(options.root, entry.path);
    const source = join(options.from, entry.path);
    if (entry.type === 'directory') {
      const info = await lstat(dest).catch(() => undefined);
      if (!info) {
        await mkdir(dest, { mode: 0o700 });
        created.push(entry.path);
        result.createdDirectories++;
      } else if (!info.isDirectory()) blockedDirs.push(entry.path);
      continue;
    }
    const state = await stateOf(options.root, entry, options.signal);
    if (state === 'identical') result.identical.push(entry.path);
    else if (state === 'other-type') result.blocked.push(entry.path);
    else if (state === 'different' && !options.overwrite) result.conflicts.push(entry.path);
    else {
      const temp = join(dirname(dest), `.${entry.path.split('/').pop()}.drkit-${randomBytes(4).toString('hex')}`);
      try {
        if (entry.type === 'symlink') await symlink(entry.link as string, temp);
        else {
          await copyFile(source, temp, constants.COPYFILE_EXCL);
          await chmod(temp, entry.mode & 0o7777);
          if (owners) await chown(temp, entry.uid, entry.gid);
          const time = nsToSeconds(entry.mtimeNs);
          await utimes(temp, time, time);
          await fsyncPath(temp);
        }
        if (state === 'missing') {
          if (await placeExclusive(temp, dest)) result.restored.push(entry.path);
          else result.conflicts.push(entry.path);
        } else {
          await keepAside(dest, join(options.aside, entry.path));
          await rename(temp, dest);
          result.replaced.push(entry.path);
        }
      } finally {
        await unlink(temp).catch(() => {});
      }
      if (entry.type === 'file') result.bytes += entry.size;
      touched.add(dirname(dest));
    }
    done++;
    options.onFile?.(done, files.length, result.bytes);
  }
  // Deepest first, so that creating a child does not change its parent's restored mtime again.
  for (const rel of created.sort((a, b) => b.split('/').length - a.split('/').length)) {
    const restored = await lstat(join(options.from, rel), { bigint: true }).catch(() => undefined);
    if (!restored) continue;
    const path = join(options.root, rel);
    await chmod(path, Number(restored.mode) & 0o7777);
    if (owners) await chown(path, Number(restored.uid), Number(restored.gid));
    const time = nsToSeconds(String(restored.mtimeNs));
    await utimes(path, time, time);
  }
  for (const dir of touched) await fsyncPath(dir).catch(() => {});
  return result;
}
