import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, openSync, writeSync } from 'node:fs';
import {
  chmod,
  chown,
  type FileHandle,
  lchown,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  rename,
  rm,
  rmdir,
  symlink,
  utimes,
} from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Catalog, Manifest } from '@drkit/s3-store';
import { ArchiveSet, type FilesKeys, fingerprintOf, readRange, resolveFilesBackup } from './archive.js';
import { FilesError, messageOf, throwIfAborted } from './errors.js';
import { emitter, type FilesEventListener, throttle } from './events.js';
import { ExtractThreads, type Segment, type SegmentFailure, type SegmentFile, threadCount } from './extract-threads.js';
import { compileSelectors } from './select.js';
import { BLOCK, TarFormatError, TarHeaderReader } from './tar.js';
import { type ArchiveRef, type FilesIndex, framesFor, type IndexEntry } from './tree-index.js';
import { comparePaths } from './walk.js';

/** Options of {@link restoreFiles}. */
export interface RestoreFilesOptions {
  catalog: Catalog;
  keys: FilesKeys;
  /** A backup id, "latest", or a manifest. */
  backup: string | Manifest;
  /** With "latest": the newest backup of this directory (absolute path as backed up). */
  root?: string;
  /** With \"latest\": only backups made on this host (as recorded in their manifests). */
  host?: string;
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
  /**
   * Threads that decompress, check and write small files beside the one fetching and
   * decrypting the archive (each adds 60-100 MB of memory at peak). @default for restores of
   * 16 MiB or more, one per core (at most 2); 0 for smaller ones
   */
  threads?: number;
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
  const emit = emitter(options.onEvent);
  const { catalog, keys, signal } = options;
  const manifest =
    typeof options.backup === 'string'
      ? await resolveFilesBackup(catalog, options.backup, {
          ...(options.root === undefined ? {} : { root: options.root }),
          ...(options.host === undefined ? {} : { host: options.host }),
        })
      : options.backup;
  fingerprintOf(manifest);
  const target = resolve(options.target);
  const existing = options.existing ?? 'refuse';
  if (existing !== 'refuse' && existing !== 'merge')
    throw new FilesError('FILES_OPTIONS_INVALID', `existing must be "refuse" or "merge", got ${JSON.stringify(existing)}`);
  const owners = options.owners ?? process.getuid?.() === 0;
  const targetState = await inspectTarget(target);
  if (targetState === 'non-empty' && existing === 'refuse')
    throw new FilesError(
      'FILES_TARGET_NOT_EMPTY',
      `${target} exists and is not empty: restore into a new directory and copy back what you need, or merge into it (replaced files are kept aside)`,
      { details: { target } },
    );
  throwIfAborted(signal, 'the restore');

  emit({ type: 'step', step: 'index', message: `reading the index of backup ${manifest.id}` });
  const archives = new ArchiveSet(catalog, keys, signal);
  const index = await archives.index(manifest);
  checkEntries(index, { allowExternalLinks: options.allowExternalLinks ?? false });
  const selected = selectEntries(index, options.paths);
  const totalBytes = selected.reduce((n, e) => n + (e.type === 'file' ? e.size : 0), 0);

  const staging = join(dirname(target), `.${basename(target)}.drkit-restore-${randomBytes(4).toString('hex')}`);
  await mkdir(dirname(target), { recursive: true });
  await mkdir(staging, { mode: 0o700 });
  const result: FilesRestore = {
    manifest,
    target,
    files: 0,
    directories: 0,
    symlinks: 0,
    bytes: 0,
    archives: [],
    fetched: 0,
  };
  try {
    emit({
      type: 'step',
      step: 'restore',
      message: `restoring ${selected.length} entries (${totalBytes} bytes) of backup ${manifest.id} into ${staging}`,
    });
    // Directories first, writable for now: their real modes and times are set last.
    for (const entry of selected)
      if (entry.type === 'directory') {
        await mkdir(join(staging, entry.path), { mode: 0o700 });
        result.directories++;
      }
    await extractFiles(
      index,
      selected,
      staging,
      archives,
      { owners, threads: undefined, emit, totalBytes, result, signal },
      options.threads,
    );
    for (const entry of selected)
      if (entry.type === 'symlink') {
        const path = join(staging, entry.path);
        await symlink(entry.link as string, path);
        if (owners) await lchown(path, entry.uid, entry.gid);
        const time = nsToSeconds(entry.mtime);
        await lutimes(path, time, time);
        result.symlinks++;
      }
    // Deepest first, so that setting a directory's times is not undone by work inside it.
    for (let i = selected.length - 1; i >= 0; i--) {
      const entry = selected[i] as IndexEntry;
      if (entry.type !== 'directory') continue;
      const path = join(staging, entry.path);
      if (owners) await chown(path, entry.uid, entry.gid);
      await chmodSafe(path, entry.mode, owners);
      const time = nsToSeconds(entry.mtime);
      await utimes(path, time, time);
    }
    throwIfAborted(signal, 'the restore');
    const state = await inspectTarget(target);
    // A new target becomes the backed-up directory itself: its mode, owner and mtime too.
    if (state !== 'non-empty' && index.rootMeta) {
      const meta = index.rootMeta;
      if (owners) await chown(staging, meta.uid, meta.gid);
      await chmodSafe(staging, meta.mode, owners);
      const time = nsToSeconds(meta.mtime);
      await utimes(staging, time, time);
    }
    emit({ type: 'step', step: 'swap', message: `moving the verified tree into ${target}` });
    const replaced = await moveIntoPlace(staging, target, state);
    if (replaced) result.replaced = replaced;
  } catch (error) {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
    if (signal?.aborted && !(error instanceof FilesError && error.code === 'FILES_ABORTED'))
      throw new FilesError('FILES_ABORTED', `the restore of backup ${manifest.id} was aborted; ${target} was not changed`, {
        cause: error,
      });
    if (error instanceof FilesError) throw error;
    throw new FilesError('FILES_IO_FAILED', `restoring backup ${manifest.id} into ${target} failed: ${messageOf(error)}`, { cause: error });
  } finally {
    result.fetched = await archives.fetched();
  }
  emit({
    type: 'step',
    step: 'restored',
    message: `restored ${result.files} files (${result.bytes} bytes, every SHA-256 checked), ${result.directories} directories and ${result.symlinks} symlinks of backup ${manifest.id} into ${target}`,
  });
  return result;
}

type TargetState = 'missing' | 'empty' | 'non-empty';

async function inspectTarget(target: string): Promise<TargetState> {
  let info: Awaited<ReturnType<typeof lstat>>;
  try {
    info = await lstat(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw new FilesError('FILES_TARGET_INVALID', `cannot use ${target} as the target: ${messageOf(error)}`, { cause: error });
  }
  if (!info.isDirectory())
    throw new FilesError(
      'FILES_TARGET_INVALID',
      `${target} is ${info.isSymbolicLink() ? 'a symlink' : 'not a directory'}: restore into a directory (a new one is created)`,
    );
  return (await readdir(target)).length === 0 ? 'empty' : 'non-empty';
}

const SAFE_TYPES = new Set(['file', 'directory', 'symlink']);

/**
 * Refuses an index any of whose entries could write outside the target: absolute paths,
 * empty, "." or ".." components, entries under a symlink or a file, duplicates, types other
 * than file/directory/symlink, and (unless allowed) symlinks whose target leaves the tree.
 * @throws FilesError FILES_UNSAFE_ENTRY naming the entry and why
 */
export function checkEntries(index: FilesIndex, options: { allowExternalLinks: boolean }): void {
  const types = new Map<string, string>();
  const links = new Map<string, string>();
  const refuse = (path: string, reason: string): never => {
    throw new FilesError(
      'FILES_UNSAFE_ENTRY',
      `backup ${index.id} holds an entry that could write outside the target (${JSON.stringify(path.slice(0, 200))}: ${reason}); nothing was restored. The backup was altered or made by a faulty writer: use another one`,
      { details: { path, reason } },
    );
  };
  for (const entry of index.entries) {
    const path = entry.path;
    if (typeof path !== 'string' || path === '') refuse(String(path), 'empty path');
    if (path.includes('\0')) refuse(path, 'NUL in the path');
    if (path.startsWith('/')) refuse(path, 'absolute path');
    const parts = path.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..')) refuse(path, 'empty, "." or ".." path component');
    if (!SAFE_TYPES.has(entry.type)) refuse(path, `${entry.type} entries are never restored`);
    if (types.has(path)) refuse(path, 'the path appears twice');
    const parent = parts.slice(0, -1).join('/');
    if (parent !== '') {
      const parentType = types.get(parent);
      if (parentType === 'symlink') refuse(path, `it would be written through the symlink ${parent}`);
      if (parentType !== 'directory') refuse(path, `its parent ${parent} is not a directory of the backup`);
    }
    if (entry.type === 'file' && (!entry.at || typeof entry.sha256 !== 'string')) refuse(path, 'a file without content location or hash');
    if (entry.type === 'symlink') {
      if (typeof entry.link !== 'string' || entry.link === '' || entry.link.includes('\0'))
        refuse(path, 'a symlink without a valid target');
      links.set(path, entry.link as string);
    }
    types.set(path, entry.type);
  }
  if (options.allowExternalLinks) return;
  for (const [path, link] of links) {
    const escaping = escapes(path, link, links);
    if (escaping)
      refuse(
        path,
        `a symlink to ${link}, outside the restored tree: it ${escaping} (allow external links to restore it anyway; the restore never follows it)`,
      );
  }
}

/** Symlinks followed while resolving one link target before it counts as a loop. */
const MAX_LINK_HOPS = 40;

/**
 * Why the symlink at `path` with target `link` would point outside the restored tree, or
 * undefined when it stays inside. It resolves the target component by component from the
 * link's directory, following the backup's own symlinks (a `..` after a symlink applies to
 * where that link points, as the kernel does it), so `esc -> self/..` with `self -> .` is caught.
 */
function escapes(path: string, link: string, links: Map<string, string>): string | undefined {
  if (link.startsWith('/')) return 'is an absolute path';
  const stack = path.split('/').slice(0, -1);
  const queue = link.split('/');
  let hops = 0;
  while (queue.length > 0) {
    const part = queue.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) return 'climbs above the restored tree';
      stack.pop();
      continue;
    }
    stack.push(part);
    const through = links.get(stack.join('/'));
    if (through === undefined) continue;
    if (++hops > MAX_LINK_HOPS) return 'resolves through a loop of symlinks';
    if (through.startsWith('/')) return `goes through ${stack.join('/')}, a link to an absolute path`;
    stack.pop();
    queue.unshift(...through.split('/'));
  }
  return undefined;
}

/** The entries to restore: all, or those matching the selectors plus the directories above them. */
function selectEntries(index: FilesIndex, paths: string[] | undefined): IndexEntry[] {
  if (!paths || paths.length === 0) return index.entries;
  const selectors = compileSelectors(paths);
  const chosen = new Set<string>();
  for (const entry of index.entries)
    if (selectors.matches(entry.path)) {
      chosen.add(entry.path);
      const parts = entry.path.split('/');
      for (let i = 1; i < parts.length; i++) chosen.add(parts.slice(0, i).join('/'));
    }
  if (chosen.size === 0)
    throw new FilesError(
      'FILES_NO_MATCH',
      `nothing in backup ${index.id} matches ${paths.map((p) => JSON.stringify(p)).join(', ')}: list its tree with 'drkit files list ${index.id}', or find the backups holding a path with 'drkit files which PATH'`,
      { details: { paths } },
    );
  return index.entries.filter((e) => chosen.has(e.path));
}

/** A run of files of one archive whose frames are read in one pass. */
interface Run {
  ref: ArchiveRef;
  first: number;
  last: number;
  entries: IndexEntry[];
}

/** Runs of files grouped by archive, in tar order, merging files whose frames touch or nearly do. */
function planRuns(index: FilesIndex, files: IndexEntry[]): Run[] {
  const byArchive = new Map<number, IndexEntry[]>();
  for (const e of files) {
    const list = byArchive.get((e.at as number[])[0] as number) ?? [];
    list.push(e);
    byArchive.set((e.at as number[])[0] as number, list);
  }
  const runs: Run[] = [];
  for (const [archive, entries] of byArchive) {
    const ref = index.archives[archive] as ArchiveRef;
    entries.sort((a, b) => ((a.at as number[])[1] as number) - ((b.at as number[])[1] as number));
    let run: Run | undefined;
    for (const e of entries) {
      const [, start, end] = e.at as [number, number, number];
      const { first, last } = framesFor(ref, start, end);
      if (run && first <= run.last + RUN_GAP_FRAMES) {
        run.last = Math.max(run.last, last);
        run.entries.push(e);
      } else {
        run = { ref, first, last, entries: [e] };
        runs.push(run);
      }
    }
  }
  return runs;
}

/** Files whose frames are at most this many frames apart are read in one pass (a seek costs more). */
const RUN_GAP_FRAMES = 2;

interface ExtractContext {
  owners: boolean;
  /** Threads extracting segments of small files, for large restores; none: this thread does it all. */
  threads: ExtractThreads | undefined;
  emit: ReturnType<typeof emitter>;
  totalBytes: number;
  result: FilesRestore;
  signal: AbortSignal | undefined;
}

async function extractFiles(
  index: FilesIndex,
  selected: IndexEntry[],
  staging: string,
  archives: ArchiveSet,
  ctx: ExtractContext,
  requestedThreads: number | undefined,
) {
  const runs = planRuns(
    index,
    selected.filter((e) => e.type === 'file'),
  );
  const read = new Set<string>();
  const due = throttle();
  const progress = (files: number, bytes: number, path?: string) => {
    ctx.result.files += files;
    ctx.result.bytes += bytes;
    if (due())
      ctx.emit({
        type: 'progress',
        operation: 'restore',
        files: ctx.result.files,
        bytes: ctx.result.bytes,
        totalBytes: ctx.totalBytes,
        ...(path === undefined ? {} : { path }),
      });
  };
  const count = threadCount(ctx.totalBytes, requestedThreads);
  const byPath = new Map(selected.map((e) => [e.path, e]));
  ctx.threads =
    count > 0
      ? new ExtractThreads(count, { toError: (failure) => segmentError(failure, byPath), onDone: (files, bytes) => progress(files, bytes) })
      : undefined;
  try {
    for (const run of runs) {
      read.add(run.ref.id);
      if (!ctx.threads) {
        await extractHere(run.ref, run.entries, staging, archives, ctx, progress);
        continue;
      }
      for (const part of segmentsOf(run.entries)) {
        throwIfAborted(ctx.signal, 'the restore');
        const entry = part.entries[0] as IndexEntry;
        if (part.large)
          await ctx.threads.stream(run.ref.id, run.ref.compression, segmentFile(entry, staging, ctx), partsOf(run.ref, entry, archives));
        else await ctx.threads.add(await loadSegment(run.ref, part.entries, staging, archives, ctx));
      }
    }
    await ctx.threads?.drain();
  } finally {
    await ctx.threads?.close();
  }
  ctx.emit({ type: 'progress', operation: 'restore', files: ctx.result.files, bytes: ctx.result.bytes, totalBytes: ctx.totalBytes });
  ctx.result.archives = [...read];
}

/** Tar bytes of small files a segment spans at most: what one thread takes at a time. */
const SEGMENT_BYTES = 2 * 1024 * 1024;

/** The files of a run cut into segments of small files, and large files on their own. */
function segmentsOf(entries: IndexEntry[]): { large: boolean; entries: IndexEntry[] }[] {
  const parts: { large: boolean; entries: IndexEntry[] }[] = [];
  let group: IndexEntry[] = [];
  const flush = () => {
    if (group.length > 0) parts.push({ large: false, entries: group });
    group = [];
  };
  for (const entry of entries) {
    const [, start, end] = entry.at as [number, number, number];
    if (end - start > SEGMENT_BYTES) {
      flush();
      parts.push({ large: true, entries: [entry] });
      continue;
    }
    const groupStart = (group[0]?.at as number[] | undefined)?.[1];
    if (groupStart !== undefined && end - groupStart > SEGMENT_BYTES) flush();
    group.push(entry);
  }
  flush();
  return parts;
}

/** The frames holding a large file, fetched and authenticated a few at a time, for a thread to extract. */
async function* partsOf(
  ref: ArchiveRef,
  entry: IndexEntry,
  archives: ArchiveSet,
): AsyncGenerator<Omit<Segment, 'archive' | 'compression' | 'files'>> {
  const [, start, end] = entry.at as [number, number, number];
  const span = framesFor(ref, start, end);
  const archive = await archives.archive(ref.id);
  for (let i = span.first; i <= span.last; ) {
    let j = i;
    let bytes = (ref.frames[i] as [number, number, number])[1];
    while (j < span.last && j + 1 - i < PART_FRAMES && bytes + (ref.frames[j + 1] as [number, number, number])[1] <= SEGMENT_BYTES)
      bytes += (ref.frames[++j] as [number, number, number])[1];
    const tail = ref.frames[j] as [number, number, number];
    yield framesPart(ref, i, j, await readRange(archive, (ref.frames[i] as [number, number, number])[0], tail[0] + tail[1]));
    i = j + 1;
  }
}

/** Frames a part of a large file carries at most. */
const PART_FRAMES = 4;

/** Frames `first..last` of an archive as a message part: their bytes in a buffer of their own, offsets relative to it. */
function framesPart(ref: ArchiveRef, first: number, last: number, bytes: Buffer): Omit<Segment, 'archive' | 'compression' | 'files'> {
  const head = ref.frames[first] as [number, number, number];
  const data =
    bytes.byteOffset === 0 && bytes.length === bytes.buffer.byteLength
      ? (bytes.buffer as ArrayBuffer)
      : (bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer);
  return {
    data,
    frames: ref.frames.slice(first, last + 1).map(([offset, length, tarOffset], k) => {
      const next = ref.frames[first + k + 1];
      return [offset - head[0], length, next ? next[2] - tarOffset : undefined];
    }),
    tarStart: head[2],
  };
}

/** Fetches and authenticates the frames of a segment, for a thread to extract. */
async function loadSegment(
  ref: ArchiveRef,
  entries: IndexEntry[],
  staging: string,
  archives: ArchiveSet,
  ctx: ExtractContext,
): Promise<Segment> {
  const first = entries[0]?.at as [number, number, number];
  const last = entries.at(-1)?.at as [number, number, number];
  const span = framesFor(ref, first[1], last[2]);
  const head = ref.frames[span.first] as [number, number, number];
  const tail = ref.frames[span.last] as [number, number, number];
  const bytes = await readRange(await archives.archive(ref.id), head[0], tail[0] + tail[1]);
  return {
    archive: ref.id,
    compression: ref.compression,
    ...framesPart(ref, span.first, span.last, bytes),
    files: entries.map((e) => segmentFile(e, staging, ctx)),
  };
}

/** The error of a segment a thread refused. */
function segmentError(failure: SegmentFailure, byPath: Map<string, IndexEntry>): unknown {
  if (failure.kind === 'corrupt') return corrupt(failure.archive, failure.path, failure.detail);
  if (failure.kind === 'hash') {
    const expected = byPath.get(failure.path)?.sha256 ?? '';
    return new FilesError(
      'FILES_HASH_MISMATCH',
      `${failure.path} restored from backup ${failure.archive} has SHA-256 ${failure.detail.slice(0, 16)}..., the index says ${expected.slice(0, 16)}...: the backup is inconsistent; nothing was moved into the target`,
      { details: { path: failure.path, expected, actual: failure.detail } },
    );
  }
  if (failure.kind === 'undecodable')
    return new FilesError(
      'FILES_BACKUP_INVALID',
      `frames of backup ${failure.archive} authenticated but do not decompress: it was written by a faulty writer (${failure.detail})`,
    );
  return new FilesError('FILES_IO_FAILED', `writing ${failure.path || 'the restored files'} failed: ${failure.detail}`, {
    details: { path: failure.path },
  });
}

/** Extracts files of one archive on this thread, reading their frames in order. */
async function extractHere(
  ref: ArchiveRef,
  entries: IndexEntry[],
  staging: string,
  archives: ArchiveSet,
  ctx: ExtractContext,
  progress: (files: number, bytes: number, path?: string) => void,
) {
  const [, firstStart, firstEnd] = (entries[0] as IndexEntry).at as [number, number, number];
  const [, lastStart, lastEnd] = (entries.at(-1) as IndexEntry).at as [number, number, number];
  const first = framesFor(ref, firstStart, firstEnd).first;
  const last = framesFor(ref, lastStart, lastEnd).last;
  const cursor = new TarCursor(archives.frames(ref, first, last), ref.id);
  try {
    for (const entry of entries) {
      throwIfAborted(ctx.signal, 'the restore');
      await extractFile(entry, cursor, staging, ref.id, ctx);
      progress(1, entry.size, entry.path);
    }
  } finally {
    await cursor.close();
  }
}

/** Files up to this size are taken whole from the tar stream and written with synchronous calls. */
const SMALL_FILE = 1024 * 1024;
/** One file: its tar header checked against the index, its content hashed, checked and written. */
async function extractFile(entry: IndexEntry, cursor: TarCursor, staging: string, archiveId: string, ctx: ExtractContext) {
  const [, start, end] = entry.at as [number, number, number];
  await cursor.skipTo(start);
  const reader = new TarHeaderReader();
  let parsed: ReturnType<TarHeaderReader['block']>;
  for (;;) {
    const offset = cursor.offset;
    try {
      parsed = reader.block(await cursor.take(BLOCK), offset);
    } catch (error) {
      if (error instanceof TarFormatError) throw corrupt(archiveId, entry.path, error.message);
      throw error;
    }
    if (parsed.kind === 'entry') break;
    if (parsed.kind === 'pax') reader.pax(await cursor.take(parsed.size));
    if (parsed.kind === 'pax' || parsed.kind === 'skip')
      await cursor.skipTo(cursor.offset + ((BLOCK - (parsed.size % BLOCK)) % BLOCK) + (parsed.kind === 'skip' ? parsed.size : 0));
    else throw corrupt(archiveId, entry.path, `no entry at offset ${start}`);
  }
  const header = parsed.entry;
  if (header.path !== (entry.storedAs ?? entry.path) || header.type !== 'file' || header.size !== entry.size)
    throw corrupt(
      archiveId,
      entry.path,
      `the archive holds ${header.type} ${JSON.stringify(header.path)} (${header.size} bytes) where the index expects this file`,
    );
  const path = join(staging, entry.path);
  if (entry.size <= SMALL_FILE) {
    const data = await cursor.take(entry.size);
    checkHash(entry, createHash('sha256').update(data).digest('hex'), archiveId);
    writeSmallFile(path, entry, ctx, data);
  } else
    await writeFileAt(path, entry, ctx, async (handle) => {
      const hash = createHash('sha256');
      for await (const piece of cursor.stream(entry.size)) {
        hash.update(piece);
        await handle.write(piece);
      }
      checkHash(entry, hash.digest('hex'), archiveId);
    });
  if (cursor.offset + ((BLOCK - (entry.size % BLOCK)) % BLOCK) !== end)
    throw corrupt(archiveId, entry.path, `the entry ends at ${cursor.offset}, the index says ${end}`);
}

/** Creates a file of the staging tree, writes it with `write`, then sets owner, mode and times. */
async function writeFileAt(path: string, entry: IndexEntry, ctx: ExtractContext, write: (handle: FileHandle) => Promise<void>) {
  const { mode, chmod: needsChmod, chown: needsChown } = creation(entry, ctx);
  // O_EXCL and O_NOFOLLOW: never through a link, never over something that exists.
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await write(handle);
    if (needsChown) await handle.chown(entry.uid, entry.gid);
    if (needsChmod) await handle.chmod(finalMode(entry, ctx));
    const time = nsToSeconds(entry.mtime);
    await handle.utimes(time, time);
  } finally {
    await handle.close();
  }
}

/**
 * A small file written with synchronous calls: for files of a few kB, the thread-pool round
 * trips and promises of six async calls cost more than the calls themselves.
 */
function writeSmallFile(path: string, entry: IndexEntry, ctx: ExtractContext, data: Buffer): void {
  const { mode, chmod: needsChmod, chown: needsChown } = creation(entry, ctx);
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at);
    if (needsChown) fchownSync(fd, entry.uid, entry.gid);
    if (needsChmod) fchmodSync(fd, finalMode(entry, ctx));
    const time = nsToSeconds(entry.mtime);
    futimesSync(fd, time, time);
  } finally {
    closeSync(fd);
  }
}

/** What an extraction thread needs for one file. */
function segmentFile(entry: IndexEntry, staging: string, ctx: ExtractContext): SegmentFile {
  const { mode, chmod, chown } = creation(entry, ctx);
  const [, start, end] = entry.at as [number, number, number];
  return {
    path: join(staging, entry.path),
    rel: entry.path,
    ...(entry.storedAs === undefined ? {} : { storedAs: entry.storedAs }),
    size: entry.size,
    start,
    end,
    sha256: entry.sha256 as string,
    mode,
    ...(chmod ? { chmod: finalMode(entry, ctx) } : {}),
    chown,
    uid: entry.uid,
    gid: entry.gid,
    time: nsToSeconds(entry.mtime),
  };
}

/** The mode a restored file ends with: without owners restored, no setuid/setgid. */
function finalMode(entry: IndexEntry, ctx: ExtractContext): number {
  return ctx.owners ? entry.mode : entry.mode & 0o1777;
}

let processUmask: number | undefined;

/**
 * How to create a file: with its final mode when the umask leaves it intact (no chmod
 * needed), and whether its owner must be set (not when it is already the process's).
 */
function creation(entry: IndexEntry, ctx: ExtractContext): { mode: number; chmod: boolean; chown: boolean } {
  processUmask ??= process.umask();
  const wanted = finalMode(entry, ctx);
  const direct = (wanted & ~0o777) === 0 && (wanted & processUmask) === 0 && (wanted & 0o200) !== 0;
  const chown = ctx.owners && (entry.uid !== process.geteuid?.() || entry.gid !== process.getegid?.());
  return { mode: direct ? wanted : 0o600, chmod: !direct, chown };
}

function checkHash(entry: IndexEntry, sha256: string, archiveId: string): void {
  if (sha256 !== entry.sha256)
    throw new FilesError(
      'FILES_HASH_MISMATCH',
      `${entry.path} restored from backup ${archiveId} has SHA-256 ${sha256.slice(0, 16)}..., the index says ${entry.sha256?.slice(0, 16)}...: the backup is inconsistent; nothing was moved into the target`,
      { details: { path: entry.path, expected: entry.sha256, actual: sha256 } },
    );
}

function corrupt(archiveId: string, path: string, reason: string): FilesError {
  return new FilesError(
    'FILES_BACKUP_INVALID',
    `backup ${archiveId} does not hold ${path} where its index says (${reason}): it was written by a faulty writer; nothing was moved into the target`,
    { details: { path } },
  );
}

/** Reads a tar stream that arrives as decompressed frames: skip, take a few bytes, stream the content. */
class TarCursor {
  readonly #frames: AsyncGenerator<{ tar: Buffer; tarOffset: number }>;
  readonly #archive: string;
  #buffer: Buffer = Buffer.alloc(0);
  /** Tar offset of #buffer[0]. */
  #at = -1;

  constructor(frames: AsyncGenerator<{ tar: Buffer; tarOffset: number }>, archive: string) {
    this.#frames = frames;
    this.#archive = archive;
  }

  /** The tar offset of the next byte. */
  get offset(): number {
    return this.#at;
  }

  async #more(): Promise<void> {
    const next = await this.#frames.next();
    if (next.done) throw corrupt(this.#archive, '(a file)', 'the frames end before the entry does');
    const { tar, tarOffset } = next.value;
    if (this.#at === -1) this.#at = tarOffset;
    else if (tarOffset !== this.#at + this.#buffer.length) throw corrupt(this.#archive, '(a file)', 'frames out of order');
    this.#buffer = this.#buffer.length === 0 ? tar : Buffer.concat([this.#buffer, tar]);
  }

  async skipTo(offset: number): Promise<void> {
    if (this.#at === -1) await this.#more();
    if (offset < this.#at) throw corrupt(this.#archive, '(a file)', 'entries out of order');
    while (this.#at + this.#buffer.length < offset) {
      this.#at += this.#buffer.length;
      this.#buffer = Buffer.alloc(0);
      await this.#more();
    }
    this.#buffer = this.#buffer.subarray(offset - this.#at);
    this.#at = offset;
  }

  async take(n: number): Promise<Buffer> {
    while (this.#buffer.length < n) await this.#more();
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    this.#at += n;
    return out;
  }

  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buffer.length === 0) await this.#more();
      const piece = this.#buffer.subarray(0, Math.min(left, this.#buffer.length));
      this.#buffer = this.#buffer.subarray(piece.length);
      this.#at += piece.length;
      left -= piece.length;
      yield piece;
    }
  }

  async close(): Promise<void> {
    await this.#frames.return(undefined);
  }
}

async function chmodSafe(path: string, mode: number, owners: boolean): Promise<void> {
  // Without owners restored, setuid/setgid bits would grant the restoring user's rights: drop them.
  await chmod(path, owners ? mode : mode & 0o1777);
}

/** Seconds since the epoch (fractional) from a nanosecond string: what utimes takes. */
function nsToSeconds(ns: string): number {
  const value = BigInt(ns);
  return Number(value / 1_000_000_000n) + Number(value % 1_000_000_000n) / 1e9;
}

/**
 * Moves the staged tree into the target: a rename when the target is missing or empty, else
 * (merge) entry by entry, moving what is replaced to a sibling directory that is kept.
 */
async function moveIntoPlace(staging: string, target: string, state: TargetState): Promise<string | undefined> {
  if (state === 'missing') {
    await rename(staging, target);
    return undefined;
  }
  if (state === 'empty') {
    await rmdir(target);
    await rename(staging, target);
    return undefined;
  }
  const replaced = `${target}.drkit-replaced-${new Date().toISOString().replace(/[-:.]/g, '')}`;
  let used = false;
  const merge = async (from: string, to: string, relative: string): Promise<void> => {
    for (const name of (await readdir(from)).sort(comparePaths)) {
      const source = join(from, name);
      const destination = join(to, name);
      const rel = relative ? `${relative}/${name}` : name;
      const [src, dst] = await Promise.all([lstat(source), lstat(destination).catch(() => undefined)]);
      if (dst === undefined) {
        await rename(source, destination);
        continue;
      }
      if (src.isDirectory() && dst.isDirectory()) {
        await merge(source, destination, rel);
        continue;
      }
      const aside = join(replaced, rel);
      await mkdir(dirname(aside), { recursive: true });
      await rename(destination, aside);
      used = true;
      await rename(source, destination);
    }
  };
  await merge(staging, target, '');
  await rm(staging, { recursive: true, force: true });
  return used ? replaced : undefined;
}
