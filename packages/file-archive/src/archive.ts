import { isSealError, type OpenKeys, openRandomAccess, releaseBuffer, type SealedRandomAccess } from '@drkit/crypto-stream';
import { type Catalog, isStoreError, type Manifest } from '@drkit/s3-store';
import { FilesError } from './errors.js';
import { type ArchiveCompression, decompressFrame } from './frames.js';
import { type ArchiveRef, decodeIndex, type FilesIndex, type IndexLocation } from './tree-index.js';

/** The artifact kind of file backups. */
export const FILES_KIND = 'files';

/** What drkit records in a file backup's manifest `fingerprint`. */
export interface FilesFingerprint {
  format: 'drkit-files/1';
  /** The directory backed up, absolute, on `host`. */
  root: string;
  host: string;
  compression: ArchiveCompression;
  level: number;
  /** The tree at this backup. */
  files: number;
  directories: number;
  symlinks: number;
  /** Bytes of file content in the tree. */
  bytes: number;
  /** What this backup's own archive holds. */
  stored: { files: number; bytes: number; tarBytes: number };
  changes: { added: number; modified: number; deleted: number; renamed: number; metadata: number };
  /** The first backup of the chain (a full backup), and how many backups the chain has up to this one. */
  chain: { base: string; length: number };
  index: IndexLocation & { entries: number };
  /** Files that changed while being read (see the backup's warnings), and entries left out (sockets, devices, bad names). */
  unstable: number;
  skipped: number;
}

/** The keys a backup is sealed and opened with. */
export type FilesKeys = OpenKeys;

/**
 * The fingerprint of a file backup's manifest, checked to be one drkit wrote.
 * @throws FilesError FILES_BACKUP_INVALID
 */
export function fingerprintOf(manifest: Manifest): FilesFingerprint {
  const f = manifest.fingerprint as Partial<FilesFingerprint> | undefined;
  if (manifest.kind !== FILES_KIND || f?.format !== 'drkit-files/1' || typeof f.index?.offset !== 'number')
    throw new FilesError(
      'FILES_BACKUP_INVALID',
      manifest.kind === FILES_KIND
        ? `backup ${manifest.id} has no drkit-files/1 fingerprint: it was not written by this version of drkit`
        : `backup ${manifest.id} is a ${manifest.kind} backup, not a file backup`,
    );
  return f as FilesFingerprint;
}

/**
 * Resolves "latest" or an id to a file backup's manifest. "latest" may be narrowed to the
 * backups of one directory (and host).
 * @throws FilesError FILES_BACKUP_NOT_FOUND
 */
export async function resolveFilesBackup(catalog: Catalog, ref: string, options: { root?: string; host?: string } = {}): Promise<Manifest> {
  if (ref === 'latest') {
    const all = await catalog.list({ kind: FILES_KIND });
    const candidates = all.filter(
      (m) =>
        (options.root === undefined || m.labels?.dir === options.root) && (options.host === undefined || m.labels?.host === options.host),
    );
    for (let i = candidates.length - 1; i >= 0; i--) {
      const m = candidates[i] as Manifest;
      if (m.verification?.status === 'failed' || m.labels?.snapshot === 'true') continue;
      return m;
    }
    throw new FilesError(
      'FILES_BACKUP_NOT_FOUND',
      `there is no file backup${options.root === undefined ? '' : ` of ${options.root}`} in this store: run 'drkit backup files --dir DIR' first, or check the store URL`,
    );
  }
  try {
    return await catalog.get(ref, FILES_KIND);
  } catch (error) {
    if (isStoreError(error) && error.code === 'STORE_ARTIFACT_NOT_FOUND')
      throw new FilesError(
        'FILES_BACKUP_NOT_FOUND',
        `there is no file backup ${ref} in this store: list them with 'drkit backup list --kind files'`,
        {
          cause: error,
        },
      );
    throw error;
  }
}

/** Maps the failures of reading a sealed archive to this package's errors. */
export function archiveReadError(id: string, error: unknown): unknown {
  if (error instanceof FilesError) return error;
  if (isSealError(error)) {
    if (['SEAL_WRONG_KEY', 'SEAL_UNKNOWN_KEY', 'SEAL_KEY_MISSING', 'SEAL_KEY_INVALID'].includes(error.code))
      return new FilesError('FILES_WRONG_KEY', `backup ${id} cannot be opened with the given keys: ${error.message}`, { cause: error });
    if (error.code === 'SEAL_ABORTED') return new FilesError('FILES_ABORTED', `reading backup ${id} was aborted`, { cause: error });
    return new FilesError(
      'FILES_BACKUP_TAMPERED',
      `backup ${id} failed authentication (${error.code}: ${error.message}): its bytes were altered or cut. Nothing was restored from it; use another backup`,
      { cause: error },
    );
  }
  if (isStoreError(error) && (error.code === 'STORE_NOT_FOUND' || error.code === 'STORE_ARTIFACT_NOT_FOUND'))
    return new FilesError('FILES_CHAIN_BROKEN', `the archive of backup ${id} is missing from the store: ${error.message}`, {
      cause: error,
    });
  return error;
}

/** One archive opened for random access, with byte accounting. */
export interface OpenArchive {
  manifest: Manifest;
  access: SealedRandomAccess;
  /** Sealed bytes fetched so far from the store. */
  fetched: number;
}

/**
 * Opens a backup's archive for random access: one small ranged read of its header.
 * @throws FilesError FILES_WRONG_KEY, FILES_BACKUP_TAMPERED, FILES_CHAIN_BROKEN
 */
export async function openArchive(catalog: Catalog, manifest: Manifest, keys: OpenKeys, signal?: AbortSignal): Promise<OpenArchive> {
  const opened: OpenArchive = { manifest, access: undefined as unknown as SealedRandomAccess, fetched: 0 };
  try {
    opened.access = await openRandomAccess({
      keys,
      size: manifest.object.size,
      ...(signal ? { signal } : {}),
      fetch: async (start, end) => {
        opened.fetched += end - start + 1;
        return catalog.store.get(manifest.object.key, { range: { start, end }, ...(signal ? { signal } : {}) });
      },
    });
  } catch (error) {
    throw archiveReadError(manifest.id, error);
  }
  return opened;
}

/** Reads plaintext `[from, to)` of an open archive in one piece. */
export async function readRange(archive: OpenArchive, from: number, to: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  try {
    for await (const part of archive.access.read(from, to)) parts.push(part);
  } catch (error) {
    throw archiveReadError(archive.manifest.id, error);
  }
  if (parts.length === 1) return parts[0] as Buffer;
  const whole = Buffer.concat(parts);
  // Each part is a chunk's own fresh plaintext, dead once copied: a large restore reads
  // hundreds of MB this way, and waiting for the collector to find them held ~5 MB more.
  for (const part of parts) releaseBuffer(part);
  return whole;
}

/**
 * A backup's index: the tree at that backup and where each file's content is.
 * @throws FilesError FILES_BACKUP_INVALID, FILES_WRONG_KEY, FILES_BACKUP_TAMPERED
 */
export async function readIndex(archive: OpenArchive): Promise<FilesIndex> {
  const fingerprint = fingerprintOf(archive.manifest);
  const { offset, length } = fingerprint.index;
  if (offset + length > archive.access.plainSize)
    throw new FilesError(
      'FILES_BACKUP_INVALID',
      `the manifest of backup ${archive.manifest.id} places its index past the end of its archive`,
    );
  const wrapped = await readRange(archive, offset, offset + length);
  return decodeIndex(wrapped, fingerprint.index, fingerprint.compression, archive.manifest.id);
}

/** Opens backups' archives on demand, once each, and loads indexes: what a restore or a listing reads through. */
export class ArchiveSet {
  readonly #catalog: Catalog;
  readonly #keys: OpenKeys;
  readonly #signal: AbortSignal | undefined;
  readonly #open = new Map<string, Promise<OpenArchive>>();

  constructor(catalog: Catalog, keys: OpenKeys, signal?: AbortSignal) {
    this.#catalog = catalog;
    this.#keys = keys;
    this.#signal = signal;
  }

  /** The open archive of backup `id` (its manifest fetched and checked to be a file backup). */
  archive(id: string, manifest?: Manifest): Promise<OpenArchive> {
    let found = this.#open.get(id);
    if (!found) {
      found = (async () => {
        let m = manifest;
        if (!m)
          try {
            m = await this.#catalog.get(id, FILES_KIND);
          } catch (error) {
            if (isStoreError(error) && error.code === 'STORE_ARTIFACT_NOT_FOUND')
              throw new FilesError(
                'FILES_CHAIN_BROKEN',
                `backup ${id}, which holds files of the backup being read, is not in the store (deleted by hand?): restore from a backup of another chain`,
                { cause: error, details: { missing: id } },
              );
            throw error;
          }
        fingerprintOf(m);
        return openArchive(this.#catalog, m, this.#keys, this.#signal);
      })();
      found.catch(() => {});
      this.#open.set(id, found);
    }
    return found;
  }

  /** The index of a backup. */
  async index(manifest: Manifest): Promise<FilesIndex> {
    return readIndex(await this.archive(manifest.id, manifest));
  }

  /** Sealed bytes fetched so far from every archive opened. */
  async fetched(): Promise<number> {
    let total = 0;
    for (const archive of this.#open.values()) total += (await archive.catch(() => ({ fetched: 0 }))).fetched;
    return total;
  }

  /**
   * The decompressed frames `first..last` of an archive, in order. They are fetched in ranged
   * reads of a few frames each (every chunk authenticated), decompressed on the thread pool in
   * parallel, and the next batch is fetched while the caller consumes this one.
   */
  async *frames(ref: ArchiveRef, first: number, last: number): AsyncGenerator<{ tar: Buffer; tarOffset: number }> {
    const archive = await this.archive(ref.id);
    const batches: [number, number][] = [];
    for (let i = first; i <= last; ) {
      let j = i;
      let bytes = (ref.frames[i] as [number, number, number])[1];
      while (j + 1 <= last && j + 1 - i < BATCH_FRAMES && bytes + (ref.frames[j + 1] as [number, number, number])[1] <= BATCH_BYTES) {
        j++;
        bytes += (ref.frames[j] as [number, number, number])[1];
      }
      batches.push([i, j]);
      i = j + 1;
    }
    const load = async ([i, j]: [number, number]) => {
      const frames = ref.frames.slice(i, j + 1);
      const head = frames[0] as [number, number, number];
      const tail = frames.at(-1) as [number, number, number];
      const bytes = await readRange(archive, head[0], tail[0] + tail[1]);
      try {
        return await Promise.all(
          frames.map(async ([offset, length, tarOffset], k) => {
            // A frame's tar length is up to the next frame's tar offset (unknown for the last one).
            const next = ref.frames[i + k + 1];
            return {
              tar: await decompressFrame(
                ref.compression,
                bytes.subarray(offset - head[0], offset - head[0] + length),
                next ? next[2] - tarOffset : undefined,
              ),
              tarOffset,
            };
          }),
        );
      } catch (cause) {
        throw new FilesError(
          'FILES_BACKUP_INVALID',
          `frames of backup ${ref.id} authenticated but do not decompress as ${ref.compression}: it was written by a faulty writer`,
          { cause },
        );
      }
    };
    let next = batches.length > 0 ? load(batches[0] as [number, number]) : undefined;
    for (let b = 0; b < batches.length; b++) {
      const current = await (next as ReturnType<typeof load>);
      next = b + 1 < batches.length ? load(batches[b + 1] as [number, number]) : undefined;
      next?.catch(() => {});
      yield* current;
    }
  }
}

/** A ranged read covers at most this many frames, and this many compressed bytes (unless one frame is larger). */
const BATCH_FRAMES = 4;
const BATCH_BYTES = 4 * 1024 * 1024;
