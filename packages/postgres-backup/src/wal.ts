// Continuous WAL archiving: what `drkit wal-push %p` (archive_command) and `drkit wal-fetch %f
// %p` (restore_command) do. PostgreSQL starts one of them per file, so this module imports only
// what a push or a fetch needs: no pg client, no catalog scan.
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { type OpenKeys, open, openToFile, seal } from '@drkit/crypto-stream';
import { isStoreError, type Store } from '@drkit/s3-store/stores';
import { messageOf, PgBackupError } from './errors.js';
import { controlFileSystemId, segmentHeader, type WalName, walName } from './wal-names.js';

/** Where the WAL archive lives in a store: `wal/<system identifier>/<file name>`. */
export const WAL_PREFIX = 'wal/';

/** The store key of WAL file `name` of the cluster `systemId`. */
export function walKey(systemId: string, name: string): string {
  if (!/^\d{1,20}$/.test(systemId))
    throw new PgBackupError('PG_OPTIONS_INVALID', `"${systemId.slice(0, 40)}" is not a database system identifier`);
  return `${WAL_PREFIX}${systemId}/${walName(name).name}`;
}

/** Options of {@link walPush}. */
export interface WalPushOptions {
  store: Store;
  /** The newest key seals. A raw key, not a passphrase: scrypt would cost every segment ~100 ms. */
  keys: OpenKeys;
  /**
   * The cluster's system identifier. @default read from the segment's own page header, else
   * from `global/pg_control` under `dataDir`
   */
  systemId?: string;
  /** The data directory (archive_command runs in it). @default process.cwd() */
  dataDir?: string;
  /** zstd level. Switched segments are mostly zeros, so the fastest level loses little. @default 1 */
  level?: number;
  signal?: AbortSignal;
}

/** What {@link walPush} did. */
export interface WalPushResult {
  name: string;
  key: string;
  systemId: string;
  /** `archived` now, or `already-archived` with the same content (a retried archive_command). */
  status: 'archived' | 'already-archived';
  size: number;
  storedSize: number;
}

/**
 * Seals one WAL file (`%p` of archive_command) into the store, under its cluster's system
 * identifier. Returns only once the sealed object is stored (atomically: never a partial
 * one). Idempotent: a file already archived with the same content succeeds at once, which is
 * what PostgreSQL needs when it retries after a push whose answer was lost; a different file
 * under the same name is refused, never overwritten.
 * @throws PgBackupError PG_WAL_NAME_INVALID, PG_WAL_UNREADABLE, PG_WAL_CONFLICT; StoreError,
 *   SealError from the store and the keys
 */
export async function walPush(path: string, options: WalPushOptions): Promise<WalPushResult> {
  const name = walName(basename(path));
  const bytes = await readFile(path).catch((error: unknown) => {
    throw new PgBackupError('PG_WAL_UNREADABLE', `cannot read WAL file ${path}: ${messageOf(error)}`, { cause: error });
  });
  const systemId = options.systemId ?? (await systemIdFor(name, bytes, options.dataDir ?? process.cwd()));
  const key = walKey(systemId, name.name);
  const signal = options.signal ? { signal: options.signal } : {};
  if (await options.store.head(key)) {
    const same = await sameContent(options.store, key, bytes, options.keys, options.signal);
    if (!same)
      throw new PgBackupError(
        'PG_WAL_CONFLICT',
        `${name.name} is already archived at ${options.store.url}/${key} with different content; refusing to overwrite it. Two servers with the same system identifier push to one archive, or this server's timeline was reused: give each cluster its own store prefix, and check the archive with 'drkit wal verify'`,
      );
    return { name: name.name, key, systemId, status: 'already-archived', size: bytes.length, storedSize: 0 };
  }
  const stored = await options.store.put(
    key,
    seal([bytes], { key: options.keys, compression: 'zstd', level: options.level ?? 1, reclaimMemory: false, ...signal }),
    signal,
  );
  return { name: name.name, key, systemId, status: 'archived', size: bytes.length, storedSize: stored.size };
}

/** Options of {@link walFetch}. */
export interface WalFetchOptions {
  store: Store;
  keys: OpenKeys;
  /** @default from `global/pg_control` under `dataDir` */
  systemId?: string;
  /** The data directory (restore_command runs in it). @default process.cwd() */
  dataDir?: string;
  signal?: AbortSignal;
}

/**
 * Fetches WAL file `name` (`%f` of restore_command) from the archive, authenticates every
 * chunk and writes it to `to` (`%p`) atomically: PostgreSQL never sees a partial segment.
 * @throws PgBackupError PG_WAL_MISSING when the archive has no such file (PostgreSQL asks
 *   for files past the end of the archive: that is how recovery learns where it ends);
 *   PG_WAL_NAME_INVALID; StoreError, SealError when the archive cannot be read or trusted
 */
export async function walFetch(name: string, to: string, options: WalFetchOptions): Promise<{ key: string; systemId: string }> {
  const parsed = walName(name);
  const systemId = options.systemId ?? (await controlSystemId(options.dataDir ?? process.cwd()));
  const key = walKey(systemId, parsed.name);
  const signal = options.signal ? { signal: options.signal } : {};
  let body: Readable;
  try {
    body = await options.store.get(key, signal);
  } catch (error) {
    if (isStoreError(error, 'STORE_NOT_FOUND'))
      throw new PgBackupError('PG_WAL_MISSING', `${parsed.name} is not in the archive ${options.store.url}/${WAL_PREFIX}${systemId}/`);
    throw error;
  }
  await openToFile(body, to, { keys: options.keys, reclaimMemory: false, ...signal });
  return { key, systemId };
}

/** The system identifier a pushed file belongs to: its own page header, else pg_control. */
async function systemIdFor(name: WalName, bytes: Buffer, dataDir: string): Promise<string> {
  if (name.kind === 'segment' || name.kind === 'partial') {
    const header = segmentHeader(bytes);
    if (header) return header.systemId;
  }
  return controlSystemId(dataDir);
}

/**
 * The system identifier in `<dataDir>/global/pg_control`.
 * @throws PgBackupError PG_OPTIONS_INVALID when it cannot be read (pass the id explicitly)
 */
export async function controlSystemId(dataDir: string): Promise<string> {
  const path = join(dataDir, 'global', 'pg_control');
  const bytes = await readFile(path).catch(() => undefined);
  const id = bytes && controlFileSystemId(bytes);
  if (!id)
    throw new PgBackupError(
      'PG_OPTIONS_INVALID',
      `cannot read the system identifier from ${path}: run in the data directory (as archive_command and restore_command do) or pass --system-id`,
    );
  return id;
}

/** Whether the sealed object at `key` opens to exactly `bytes`. */
async function sameContent(store: Store, key: string, bytes: Buffer, keys: OpenKeys, signal?: AbortSignal): Promise<boolean> {
  let offset = 0;
  for await (const chunk of open(await store.get(key, signal ? { signal } : {}), {
    keys,
    reclaimMemory: false,
    ...(signal ? { signal } : {}),
  })) {
    if (offset + chunk.length > bytes.length || !bytes.subarray(offset, offset + chunk.length).equals(chunk)) return false;
    offset += chunk.length;
  }
  return offset === bytes.length;
}
