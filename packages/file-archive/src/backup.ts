import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { seal, sealingKeyId } from '@drkit/crypto-stream';
import { type Catalog, type Manifest, newArtifactId, type Tier } from '@drkit/s3-store';
import { ArchiveSet, FILES_KIND, type FilesFingerprint, type FilesKeys, fingerprintOf, resolveFilesBackup } from './archive.js';
import { FilesError, isFilesError, messageOf, throwIfAborted } from './errors.js';
import { emitter, type FilesEventListener, throttle } from './events.js';
import { type ArchiveCompression, compressFrame, DEFAULT_ARCHIVE_LEVELS, FRAME_BYTES, FRAME_CUT_AT_ENTRY, type Frame } from './frames.js';
import { compileSelectors } from './select.js';
import { END_OF_ARCHIVE, encodeHeader, padding, type TarEntry } from './tar.js';
import { type ArchiveRef, type Changes, compactFrame, encodeIndex, type FilesIndex, INDEX_FORMAT, type IndexEntry } from './tree-index.js';
import { type ScannedEntry, scanTree } from './walk.js';

/** Options of {@link backupFiles}. */
export interface BackupFilesOptions {
  /** The directory to back up. */
  dir: string;
  catalog: Catalog;
  keys: FilesKeys;
  /** @default "zstd" (the plan's gzip is there for tools that only speak gzip) */
  compression?: ArchiveCompression;
  /** @default zstd 3, gzip 6 */
  level?: number;
  /** Take a full backup even when there is a previous one of this directory. @default false */
  full?: boolean;
  /** A chain this long (full plus incrementals) gets a full backup next: restores stay quick and a chain's loss stays bounded. @default 30 */
  maxChainLength?: number;
  /** Paths or globs (relative to `dir`) to leave out, e.g. "cache/", "**\/*.tmp". */
  exclude?: string[];
  tier?: Tier;
  environment?: string;
  labels?: Record<string, string>;
  signal?: AbortSignal;
  onEvent?: FilesEventListener;
}

/** What {@link backupFiles} stored. */
export interface FilesBackup {
  manifest: Manifest;
  fingerprint: FilesFingerprint;
  type: 'full' | 'incremental';
  parent?: string;
  /** What changed since the parent (empty lists for a full backup: everything is new). */
  changes: Changes;
  /** Files that changed while being read, entries skipped, a parent that could not be read. */
  warnings: string[];
}

/** The drkit version recorded in manifests. */
export const DRKIT_VERSION = '0.1.0';
const READ_BYTES = 1024 * 1024;
/**
 * Sealed chunk size: the unit a ranged read fetches and authenticates. Smaller than the
 * default 1 MiB so that reading an index or one small file fetches little.
 */
const SEAL_CHUNK = 64 * 1024;
/** Frames compressing on the thread pool at once. */
const FRAMES_IN_FLIGHT = 4;

type Plan =
  | { kind: 'store'; entry: ScannedEntry }
  | { kind: 'reuse'; entry: ScannedEntry; from: IndexEntry; metadataOnly: boolean }
  | { kind: 'hash'; entry: ScannedEntry; from: IndexEntry; renamedFrom?: string }
  | { kind: 'header'; entry: ScannedEntry }
  | { kind: 'keep'; entry: ScannedEntry };

/**
 * Backs up a directory tree: a full archive the first time (or when asked, or when the chain
 * is long), then incrementals holding only what changed since the previous backup of the same
 * directory on the same host. Change detection compares size, mtime, ctime and inode, and
 * hashes the content when they disagree about whether it changed; renames (same inode, or same
 * content at a new path) reuse the content already stored. The archive is standard pax tar,
 * compressed in independent frames, sealed with AES-256-GCM, and stored manifest-last with an
 * index of the whole tree (listing and selective restore read only that and the frames they need).
 * @throws FilesError FILES_SOURCE_INVALID, FILES_OPTIONS_INVALID, FILES_IO_FAILED, FILES_ABORTED
 */
export async function backupFiles(options: BackupFilesOptions): Promise<FilesBackup> {
  const emit = emitter(options.onEvent);
  const compression = options.compression ?? 'zstd';
  if (compression !== 'zstd' && compression !== 'gzip')
    throw new FilesError('FILES_OPTIONS_INVALID', `compression must be zstd or gzip, got ${JSON.stringify(compression)}`);
  const level = options.level ?? DEFAULT_ARCHIVE_LEVELS[compression];
  const maxChain = options.maxChainLength ?? 30;
  if (!Number.isInteger(maxChain) || maxChain < 1)
    throw new FilesError('FILES_OPTIONS_INVALID', `maxChainLength must be a positive integer, got ${maxChain}`);
  const root = resolve(options.dir);
  const host = hostname();
  const rootStat = await stat(root, { bigint: true }).catch((error: NodeJS.ErrnoException) => {
    throw new FilesError(
      'FILES_SOURCE_INVALID',
      `cannot back up ${root}: ${error.code === 'ENOENT' ? 'it does not exist' : error.message}`,
      {
        cause: error,
      },
    );
  });
  if (!rootStat.isDirectory()) throw new FilesError('FILES_SOURCE_INVALID', `cannot back up ${root}: it is not a directory`);
  const warnings: string[] = [];
  const warn = (message: string, path?: string) => {
    warnings.push(message);
    emit({ type: 'warning', message, ...(path === undefined ? {} : { path }) });
  };
  throwIfAborted(options.signal, 'the backup');

  // The previous backup of this directory on this host, unless a full one is due.
  const archives = new ArchiveSet(options.catalog, options.keys, options.signal);
  let parent: { manifest: Manifest; index: FilesIndex; length: number; base: string } | undefined;
  if (!options.full) {
    const previous = await resolveFilesBackup(options.catalog, 'latest', { root, host }).catch((error: unknown) => {
      if (isFilesError(error, 'FILES_BACKUP_NOT_FOUND')) return undefined;
      throw error;
    });
    if (previous) {
      const chain = fingerprintOf(previous).chain;
      if (chain.length >= maxChain)
        emit({
          type: 'step',
          step: 'full',
          message: `the chain of ${chain.base} has ${chain.length} backups (max ${maxChain}): taking a full backup`,
        });
      else
        try {
          parent = { manifest: previous, index: await archives.index(previous), length: chain.length, base: chain.base };
        } catch (error) {
          if (isFilesError(error, 'FILES_ABORTED')) throw error;
          warn(`the previous backup ${previous.id} could not be read (${messageOf(error)}): taking a full backup instead`);
        }
    }
  }

  emit({ type: 'step', step: 'scan', message: `scanning ${root}` });
  const exclude = options.exclude?.length ? compileSelectors(options.exclude) : undefined;
  let scanned = 0;
  const scanDue = throttle();
  const { entries, skipped } = await scanTree(root, {
    ...(exclude ? { exclude: (path: string) => exclude.matches(path) } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onEntry: (entry) => {
      scanned++;
      if (scanDue()) emit({ type: 'progress', operation: 'scan', files: scanned, bytes: 0, path: entry.path });
    },
  }).catch((error: unknown) => {
    if (options.signal?.aborted) throw new FilesError('FILES_ABORTED', 'the backup was aborted while scanning', { cause: error });
    throw new FilesError('FILES_IO_FAILED', `scanning ${root} failed: ${messageOf(error)}`, { cause: error });
  });
  for (const s of skipped) warn(`${s.path} is not backed up: ${s.reason}`, s.path);

  const plans = planBackup(entries, parent?.index);
  const toStore = plans.reduce((n, p) => n + (p.kind === 'store' || p.kind === 'hash' ? p.entry.size : 0), 0);
  emit({
    type: 'step',
    step: 'archive',
    message: parent
      ? `incremental backup of ${root} on ${parent.manifest.id}: ${plural(plans.filter((p) => p.kind === 'store').length, 'file')} to store`
      : `full backup of ${root}: ${entries.length} entries`,
  });

  const state = new ArchiveState(compression, level, parent?.index);
  // The index names its own backup, so the id is made before the archive is written.
  const id = newArtifactId();
  const body = archiveBody(root, id, plans, parent?.index, state, {
    rootMeta: {
      mode: Number(rootStat.mode) & 0o7777,
      uid: Number(rootStat.uid),
      gid: Number(rootStat.gid),
      mtime: String(rootStat.mtimeNs),
    },
    emit,
    warn,
    toStore,
    signal: options.signal,
  });
  let fingerprint: FilesFingerprint | undefined;
  let manifest: Manifest;
  try {
    manifest = await options.catalog.put({
      kind: FILES_KIND,
      tier: options.tier ?? 'manual',
      ...(parent ? { type: 'incremental' as const, parent: parent.manifest.id } : { type: 'full' as const }),
      source: {
        description: `${host}:${root}`,
        host,
        ...(options.environment ? { environment: options.environment } : {}),
      },
      tool: { name: 'drkit', version: DRKIT_VERSION },
      compression,
      encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: sealingKeyId(options.keys) },
      labels: { ...options.labels, dir: root, host },
      id,
      body: seal(body, {
        key: options.keys,
        compression: 'none',
        chunkSize: SEAL_CHUNK,
        ...(options.signal ? { signal: options.signal } : {}),
      }),
      ...(options.signal ? { signal: options.signal } : {}),
      beforeManifest: async () => {
        const index = state.index;
        if (!index) throw new FilesError('FILES_IO_FAILED', 'the archive ended before its index was written');
        const location = state.indexLocation as NonNullable<ArchiveState['indexLocation']>;
        const counts = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
        for (const e of index.entries) {
          if (e.type === 'file') {
            counts.files++;
            counts.bytes += e.size;
          } else if (e.type === 'directory') counts.directories++;
          else counts.symlinks++;
        }
        fingerprint = {
          format: 'drkit-files/1',
          root,
          host,
          compression,
          level,
          ...counts,
          stored: { files: state.storedFiles, bytes: state.storedBytes, tarBytes: state.tarOffset },
          changes: {
            added: parent ? index.changes.added.length : index.entries.length,
            modified: index.changes.modified.length,
            deleted: index.changes.deleted.length,
            renamed: index.changes.renamed.length,
            metadata: index.changes.metadata.length,
          },
          chain: parent ? { base: parent.base, length: parent.length + 1 } : { base: id, length: 1 },
          index: { ...location, entries: index.entries.length },
          unstable: state.unstable,
          skipped: skipped.length,
        };
        return { plainSize: state.compressedOffset, fingerprint: fingerprint as unknown as Record<string, unknown> };
      },
    });
  } catch (error) {
    if (options.signal?.aborted && !isFilesError(error, 'FILES_ABORTED'))
      throw new FilesError('FILES_ABORTED', `the backup of ${root} was aborted; no backup was recorded`, { cause: error });
    throw ownCause(error) ?? error;
  }
  emit({
    type: 'step',
    step: 'stored',
    message: `stored ${parent ? 'incremental' : 'full'} file backup ${manifest.id}: ${state.storedFiles} files, ${state.storedBytes} bytes of content, ${manifest.object.size} bytes stored`,
  });
  return {
    manifest,
    fingerprint: fingerprint as FilesFingerprint,
    type: parent ? 'incremental' : 'full',
    ...(parent ? { parent: parent.manifest.id } : {}),
    changes: state.index?.changes as Changes,
    warnings,
  };
}

/** The first FilesError in an error's cause chain (a store wraps its source's failure). */
function ownCause(error: unknown): FilesError | undefined {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof FilesError) return e;
  return undefined;
}

/** Decides, entry by entry, what the archive must hold (see {@link backupFiles}). */
export function planBackup(entries: ScannedEntry[], parent: FilesIndex | undefined): Plan[] {
  if (!parent) return entries.map((entry) => (entry.type === 'file' ? { kind: 'store', entry } : { kind: 'header', entry }));
  const before = new Map(parent.entries.map((e) => [e.path, e]));
  const present = new Set(entries.map((e) => e.path));
  // Files of the parent whose path is gone, by inode: where a renamed file came from.
  const goneByInode = new Map<string, IndexEntry>();
  for (const e of parent.entries) if (e.type === 'file' && !present.has(e.path)) goneByInode.set(e.ino, e);
  return entries.map((entry): Plan => {
    const old = before.get(entry.path);
    if (entry.type !== 'file') {
      if (!old || old.type !== entry.type || old.link !== entry.link) return { kind: 'header', entry };
      return sameMetadata(entry, old) ? { kind: 'keep', entry } : { kind: 'header', entry };
    }
    if (old?.type === 'file' && old.at && old.sha256) {
      if (old.size !== entry.size || old.mtime !== String(entry.mtimeNs) || old.unstable) return { kind: 'store', entry };
      if (old.ctime === String(entry.ctimeNs) && old.ino === String(entry.ino))
        return { kind: 'reuse', entry, from: old, metadataOnly: false };
      // Same size and mtime but a new ctime or inode: a chmod, a touch back, or a replaced file. Hash to know.
      return { kind: 'hash', entry, from: old };
    }
    if (!old) {
      const moved = goneByInode.get(String(entry.ino));
      if (moved?.at && moved.sha256 && moved.size === entry.size && moved.mtime === String(entry.mtimeNs) && !moved.unstable)
        return { kind: 'hash', entry, from: moved, renamedFrom: moved.path };
    }
    return { kind: 'store', entry };
  });
}

function sameMetadata(entry: ScannedEntry, old: IndexEntry): boolean {
  return old.mode === entry.mode && old.uid === entry.uid && old.gid === entry.gid && old.mtime === String(entry.mtimeNs);
}

/** What the archive body builds as it goes: frames, offsets, the index. */
class ArchiveState {
  frames: Frame[] = [];
  tarOffset = 0;
  compressedOffset = 0;
  storedFiles = 0;
  storedBytes = 0;
  unstable = 0;
  index: FilesIndex | undefined;
  indexLocation: { offset: number; length: number; sha256: string } | undefined;
  /** Ancestor archives referenced by reused content: id → position in this index's table. */
  readonly refs = new Map<string, number>();
  readonly archives: ArchiveRef[];

  readonly compression: ArchiveCompression;
  readonly level: number;
  readonly parent: FilesIndex | undefined;

  constructor(compression: ArchiveCompression, level: number, parent: FilesIndex | undefined) {
    this.compression = compression;
    this.level = level;
    this.parent = parent;
    this.archives = [{ id: '', compression, frames: [] }];
  }

  /** The location of reused content, re-pointed at this index's archive table. */
  reuse(at: NonNullable<IndexEntry['at']>): NonNullable<IndexEntry['at']> {
    const ref = this.parent?.archives[at[0]] as ArchiveRef;
    let position = this.refs.get(ref.id);
    if (position === undefined) {
      position = this.archives.length;
      this.archives.push(ref);
      this.refs.set(ref.id, position);
    }
    return [position, at[1], at[2]];
  }
}

interface BodyContext {
  /** Mode, owner and mtime of the backed-up directory itself. */
  rootMeta: NonNullable<FilesIndex['rootMeta']>;
  emit: ReturnType<typeof emitter>;
  warn: (message: string, path?: string) => void;
  toStore: number;
  signal: AbortSignal | undefined;
}

/** The compressed archive: tar in frames compressed on the thread pool, then the index. */
async function* archiveBody(
  root: string,
  id: string,
  plans: Plan[],
  parent: FilesIndex | undefined,
  state: ArchiveState,
  ctx: BodyContext,
): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let frameTar = 0;
  const inFlight: { promise: Promise<Buffer>; tarOffset: number }[] = [];
  const due = throttle();
  let files = 0;
  let bytes = 0;

  const cut = () => {
    if (pendingBytes === 0) return;
    const data = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
    const promise = compressFrame(state.compression, data, state.level);
    promise.catch(() => {});
    inFlight.push({ promise, tarOffset: frameTar });
    frameTar = state.tarOffset;
    pending = [];
    pendingBytes = 0;
  };
  const push = (bytes: Buffer) => {
    pending.push(bytes);
    pendingBytes += bytes.length;
    state.tarOffset += bytes.length;
    if (pendingBytes >= FRAME_BYTES) cut();
  };
  async function* drain(all: boolean): AsyncGenerator<Buffer> {
    while (inFlight.length > (all ? 0 : FRAMES_IN_FLIGHT - 1)) {
      const next = inFlight.shift() as { promise: Promise<Buffer>; tarOffset: number };
      const compressed = await next.promise;
      state.frames.push({ offset: state.compressedOffset, length: compressed.length, tarOffset: next.tarOffset });
      state.compressedOffset += compressed.length;
      yield compressed;
    }
  }

  const entries: IndexEntry[] = [];
  const changes: Changes = { added: [], modified: [], deleted: [], renamed: [], metadata: [] };
  const before = parent ? new Map(parent.entries.map((e) => [e.path, e])) : undefined;
  const renamedFrom = new Set<string>();
  const reuse = (record: IndexEntry, from: IndexEntry) => {
    record.at = state.reuse(from.at as NonNullable<IndexEntry['at']>);
    const storedAs = from.storedAs ?? from.path;
    if (storedAs !== record.path) record.storedAs = storedAs;
  };

  const readAhead = new ReadAhead(root, plans);
  for (const [index, plan] of plans.entries()) {
    throwIfAborted(ctx.signal, 'the backup');
    readAhead.fill(index);
    const { entry } = plan;
    const old = before?.get(entry.path);
    const record: IndexEntry = {
      path: entry.path,
      type: entry.type,
      size: entry.size,
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      mtime: String(entry.mtimeNs),
      ctime: String(entry.ctimeNs),
      ino: String(entry.ino),
      ...(entry.link === undefined ? {} : { link: entry.link }),
    };
    let kind = plan.kind;
    if (plan.kind === 'hash') {
      const digest = await hashFile(join(root, entry.path), entry.size).catch(() => undefined);
      if (digest !== undefined && digest === plan.from.sha256) {
        record.sha256 = digest;
        reuse(record, plan.from);
        if (plan.renamedFrom !== undefined) {
          changes.renamed.push([plan.renamedFrom, entry.path]);
          renamedFrom.add(plan.renamedFrom);
        } else changes.metadata.push(entry.path);
      } else kind = 'store';
    } else if (plan.kind === 'reuse') {
      record.sha256 = plan.from.sha256 as string;
      reuse(record, plan.from);
      if (!sameMetadata(entry, plan.from)) changes.metadata.push(entry.path);
    }
    if (kind === 'store') {
      if (pendingBytes >= FRAME_CUT_AT_ENTRY) cut();
      yield* drain(false);
      const start = state.tarOffset;
      const ahead = readAhead.take(index);
      const stored = ahead ? await pushSmall(await ahead, entry, push, ctx) : await storeFile(root, entry, push, ctx);
      if (!stored) continue;
      yield* drain(false);
      record.sha256 = stored.sha256;
      record.at = [0, start, state.tarOffset];
      if (stored.unstable) {
        record.unstable = true;
        state.unstable++;
      }
      state.storedFiles++;
      state.storedBytes += entry.size;
      files++;
      bytes += entry.size;
      if (due()) ctx.emit({ type: 'progress', operation: 'archive', files, bytes, totalBytes: ctx.toStore, path: entry.path });
      if (before) (old ? changes.modified : changes.added).push(entry.path);
    } else if (kind === 'header') {
      push(encodeHeader(tarEntryOf(entry)));
      if (before) {
        if (!old) changes.added.push(entry.path);
        else if (old.type !== entry.type || old.link !== entry.link) changes.modified.push(entry.path);
        else changes.metadata.push(entry.path);
      }
    }
    entries.push(record);
  }
  if (before) {
    const present = new Set(entries.map((e) => e.path));
    for (const e of parent?.entries ?? []) if (!present.has(e.path) && !renamedFrom.has(e.path)) changes.deleted.push(e.path);
  }
  push(END_OF_ARCHIVE);
  cut();
  yield* drain(true);
  ctx.emit({ type: 'progress', operation: 'archive', files, bytes, totalBytes: ctx.toStore });

  state.archives[0] = { id, compression: state.compression, frames: state.frames.map(compactFrame) };
  const index: FilesIndex = {
    format: INDEX_FORMAT,
    id,
    ...(parent ? { parent: parent.id } : {}),
    root,
    rootMeta: ctx.rootMeta,
    createdAt: new Date().toISOString(),
    archives: state.archives,
    entries,
    changes,
  };
  state.index = index;
  const wrapped = encodeIndex(index, state.compression);
  state.indexLocation = {
    offset: state.compressedOffset,
    length: wrapped.length,
    sha256: createHash('sha256').update(wrapped).digest('hex'),
  };
  state.compressedOffset += wrapped.length;
  yield wrapped;
}

function tarEntryOf(entry: ScannedEntry): TarEntry {
  return {
    path: entry.path,
    type: entry.type,
    size: entry.type === 'file' ? entry.size : 0,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    mtimeNs: entry.mtimeNs,
    ...(entry.link === undefined ? {} : { link: entry.link }),
  };
}

/** Files up to this size are read whole, several at a time, ahead of the archive writer. */
const SMALL_FILE = 1024 * 1024;
/** Small files being read at once: opening and reading many small files is latency-bound. */
const READS_AHEAD = 16;

/** A source file read (exactly its scanned size), or why it could not be. */
type SourceRead<T> = { missing: string } | { value: T; unstable: boolean };

/** A small file read whole: its bytes and their hash. */
type SmallRead = SourceRead<{ data: Buffer; sha256: string }>;

/**
 * Opens a file of the tree without following links, checks it is still a regular file, lets
 * `read` take its scanned size, and tells whether it changed meanwhile (size, mtime or ctime
 * moved, or fewer bytes than scanned were there).
 * @throws FilesError FILES_IO_FAILED
 */
async function readSource<T>(
  root: string,
  entry: ScannedEntry,
  read: (handle: FileHandle) => Promise<{ value: T; complete: boolean }>,
): Promise<SourceRead<T>> {
  let handle: FileHandle;
  try {
    handle = await open(join(root, entry.path), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') return { missing: 'vanished (or was replaced by a symlink) before it was read' };
    throw new FilesError('FILES_IO_FAILED', `cannot read ${join(root, entry.path)}: ${messageOf(error)}`, { cause: error });
  }
  try {
    const before = await handle.stat({ bigint: true });
    if (!before.isFile()) return { missing: 'is no longer a regular file' };
    const { value, complete } = await read(handle);
    const after = await handle.stat({ bigint: true });
    const unstable =
      !complete ||
      after.size !== BigInt(entry.size) ||
      after.mtimeNs !== entry.mtimeNs ||
      after.ctimeNs !== entry.ctimeNs ||
      before.mtimeNs !== entry.mtimeNs;
    return { value, unstable };
  } catch (error) {
    if (error instanceof FilesError) throw error;
    throw new FilesError('FILES_IO_FAILED', `reading ${join(root, entry.path)} failed: ${messageOf(error)}`, { cause: error });
  } finally {
    await handle.close();
  }
}

class ReadAhead {
  readonly #root: string;
  readonly #plans: Plan[];
  readonly #reads = new Map<number, Promise<SmallRead>>();
  #next = 0;

  constructor(root: string, plans: Plan[]) {
    this.#root = root;
    this.#plans = plans;
  }

  /** Starts reads of the small files to store at or after `index`, up to the limit. */
  fill(index: number): void {
    if (this.#next < index) this.#next = index;
    while (this.#reads.size < READS_AHEAD && this.#next < this.#plans.length) {
      const plan = this.#plans[this.#next] as Plan;
      if (plan.kind === 'store' && plan.entry.size <= SMALL_FILE) {
        const read = readSmall(this.#root, plan.entry);
        read.catch(() => {});
        this.#reads.set(this.#next, read);
      }
      this.#next++;
    }
  }

  /** The read started for plan `index`, if one was. */
  take(index: number): Promise<SmallRead> | undefined {
    const read = this.#reads.get(index);
    this.#reads.delete(index);
    return read;
  }
}

async function readSmall(root: string, entry: ScannedEntry): Promise<SmallRead> {
  return readSource(root, entry, async (handle) => {
    const data = Buffer.alloc(entry.size);
    let filled = 0;
    while (filled < entry.size) {
      const { bytesRead } = await handle.read(data, filled, entry.size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return { value: { data, sha256: createHash('sha256').update(data).digest('hex') }, complete: filled === entry.size };
  });
}

/** Puts a small file read ahead into the tar stream (see {@link storeFile}). */
async function pushSmall(
  read: SmallRead,
  entry: ScannedEntry,
  push: (bytes: Buffer) => void,
  ctx: BodyContext,
): Promise<{ sha256: string; unstable: boolean } | undefined> {
  if ('missing' in read) {
    ctx.warn(`${entry.path} ${read.missing}: not in this backup`, entry.path);
    return undefined;
  }
  push(encodeHeader(tarEntryOf(entry)));
  if (read.value.data.length > 0) push(read.value.data);
  const pad = padding(entry.size);
  if (pad) push(Buffer.alloc(pad));
  if (read.unstable) warnUnstable(entry, ctx);
  return { sha256: read.value.sha256, unstable: read.unstable };
}

function warnUnstable(entry: ScannedEntry, ctx: BodyContext): void {
  ctx.warn(
    `${entry.path} changed while it was being read: its copy in this backup may mix old and new content (the next backup takes it again)`,
    entry.path,
  );
}

/**
 * Writes one file into the tar stream: the header with the scanned size, then exactly that
 * many bytes (zeros if the file shrank meanwhile), hashed on the way. A file that changed
 * while being read is marked unstable and reported; one that vanished is left out.
 */
async function storeFile(
  root: string,
  entry: ScannedEntry,
  push: (bytes: Buffer) => void,
  ctx: BodyContext,
): Promise<{ sha256: string; unstable: boolean } | undefined> {
  const read = await readSource(root, entry, async (handle) => {
    push(encodeHeader(tarEntryOf(entry)));
    const hash = createHash('sha256');
    let left = entry.size;
    let complete = true;
    while (left > 0) {
      const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, left));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      // A file that shrank is padded with zeros to the size its header announced.
      if (bytesRead === 0) {
        complete = false;
        buffer.fill(0);
      }
      const piece = bytesRead === 0 || bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      hash.update(piece);
      push(piece);
      left -= piece.length;
    }
    const pad = padding(entry.size);
    if (pad) push(Buffer.alloc(pad));
    return { value: hash.digest('hex'), complete };
  });
  if ('missing' in read) {
    ctx.warn(`${entry.path} ${read.missing}: not in this backup`, entry.path);
    return undefined;
  }
  if (read.unstable) warnUnstable(entry, ctx);
  return { sha256: read.value, unstable: read.unstable };
}

/** SHA-256 of a file's first `size` bytes, or undefined when it cannot be read. */
async function hashFile(path: string, size: number): Promise<string | undefined> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, Math.max(size, 1)));
    let left = size;
    while (left > 0) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, left), null);
      if (bytesRead === 0) return undefined;
      hash.update(buffer.subarray(0, bytesRead));
      left -= bytesRead;
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

/** "1 file", "3 files". */
function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
