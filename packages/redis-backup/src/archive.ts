import { isSealError, type OpenKeys, open } from '@drkit/crypto-stream';
import { type Catalog, isStoreError, type Manifest, readStored, type StoredBytes } from '@drkit/s3-store';
import { RedisBackupError } from './errors.js';
import type { ExportEncoding } from './records.js';
import type { Keyspace } from './server.js';

/** Artifact kinds: an RDB file pulled over replication, and a logical export. */
export const REDIS_RDB_KIND = 'redis-rdb';
export const REDIS_LOGICAL_KIND = 'redis-logical';
export type RedisKind = typeof REDIS_RDB_KIND | typeof REDIS_LOGICAL_KIND;

/** What drkit records in an RDB backup's manifest `fingerprint`. */
export interface RdbFingerprint {
  redisVersion: string;
  rdbVersion: number;
  /** How the server framed it: length-prefixed (disk-based sync) or EOF-marked (diskless). */
  framing: 'length' | 'eof';
  /** The RDB's own CRC64 was checked ("ok"), or the server writes none ("disabled"). */
  checksum: 'ok' | 'disabled';
  /** Bytes of the RDB file. */
  bytes: number;
  /** INFO keyspace when the pull started: about what the RDB holds (it is taken a moment later). */
  keyspace: Keyspace;
}

/** What drkit records in a logical export's manifest `fingerprint`. */
export interface LogicalFingerprint {
  encoding: ExportEncoding;
  redisVersion: string;
  /** The RDB version of the DUMP payloads (exact exports): a target must read at least this. */
  rdbVersion?: number;
  expiry: 'pexpiretime' | 'pttl';
  keys: number;
  /** Database → keys exported, and keys with an expiry. */
  databases: Record<string, number>;
  expires: Record<string, number>;
  startedAt: string;
  finishedAt: string;
  /**
   * DEBUG DIGEST of the source, when it was the same before and after the export (nothing
   * changed meanwhile, so the export is exactly that dataset) and the server allows DEBUG.
   */
  digest?: string;
}

/** The keys a backup can be sealed with. */
export type SealKeys = OpenKeys;

/**
 * The fingerprint of a Redis manifest, checked to be one drkit wrote.
 * @throws RedisBackupError REDIS_BACKUP_INVALID
 */
export function fingerprintOf(manifest: Manifest, kind: typeof REDIS_RDB_KIND): RdbFingerprint;
export function fingerprintOf(manifest: Manifest, kind: typeof REDIS_LOGICAL_KIND): LogicalFingerprint;
export function fingerprintOf(manifest: Manifest, kind: RedisKind): RdbFingerprint | LogicalFingerprint {
  const f = manifest.fingerprint as Record<string, unknown> | undefined;
  const ok =
    manifest.kind === kind &&
    f &&
    typeof f.redisVersion === 'string' &&
    (kind === REDIS_RDB_KIND ? typeof f.rdbVersion === 'number' : typeof f.databases === 'object');
  if (!ok)
    throw new RedisBackupError(
      'REDIS_BACKUP_INVALID',
      manifest.kind === REDIS_RDB_KIND || manifest.kind === REDIS_LOGICAL_KIND
        ? `backup ${manifest.id} is a ${manifest.kind} backup, not ${kind}: ${kind === REDIS_RDB_KIND ? 'restore it as a logical export (no server restart)' : 'restore it as an RDB (the server is restarted)'}`
        : `backup ${manifest.id} (kind ${manifest.kind}) is not a Redis backup made by drkit`,
    );
  return f as unknown as RdbFingerprint | LogicalFingerprint;
}

/**
 * Resolves "latest" (of `kind`, or of either kind: the newer) or an id to a Redis manifest.
 * @throws RedisBackupError REDIS_BACKUP_NOT_FOUND
 */
export async function resolveRedisBackup(catalog: Catalog, ref: string, kind?: RedisKind): Promise<Manifest> {
  const kinds: RedisKind[] = kind ? [kind] : [REDIS_LOGICAL_KIND, REDIS_RDB_KIND];
  if (ref === 'latest') {
    const found = (await Promise.all(kinds.map((k) => catalog.latest(k)))).filter((m): m is Manifest => m !== undefined);
    const newest = found.sort((a, b) => b.createdAt.localeCompare(a.createdAt))[0];
    if (newest) return newest;
    throw new RedisBackupError(
      'REDIS_BACKUP_NOT_FOUND',
      `there is no complete Redis ${kind ?? ''} backup in this store: run 'drkit backup redis' first, or check the store URL`.replace(
        '  ',
        ' ',
      ),
    );
  }
  for (const k of kinds) {
    try {
      return await catalog.get(ref, k);
    } catch (error) {
      if (!(isStoreError(error) && error.code === 'STORE_ARTIFACT_NOT_FOUND')) throw error;
    }
  }
  throw new RedisBackupError(
    'REDIS_BACKUP_NOT_FOUND',
    `there is no Redis backup ${ref} in this store: list them with 'drkit backup list --kind ${kind ?? REDIS_LOGICAL_KIND}'`,
  );
}

/** Maps the failures of reading a sealed backup to this package's errors. */
export function backupReadError(manifest: Manifest, error: unknown): unknown {
  if (error instanceof RedisBackupError) return error;
  if (isSealError(error)) {
    if (['SEAL_WRONG_KEY', 'SEAL_UNKNOWN_KEY', 'SEAL_KEY_MISSING', 'SEAL_KEY_INVALID'].includes(error.code))
      return new RedisBackupError(
        'REDIS_WRONG_KEY',
        `backup ${manifest.id} cannot be opened with the given keys (${error.message}); it was sealed with key "${manifest.encryption.format === 'none' ? '(none)' : manifest.encryption.keyId}"`,
        { cause: error },
      );
    if (error.code === 'SEAL_ABORTED')
      return new RedisBackupError('REDIS_ABORTED', `reading backup ${manifest.id} was aborted`, { cause: error });
    return new RedisBackupError(
      'REDIS_BACKUP_TAMPERED',
      `backup ${manifest.id} failed authentication (${error.code}: ${error.message}): its bytes were altered or cut. Nothing was restored from it; use another backup`,
      { cause: error },
    );
  }
  if (isStoreError(error) && error.code === 'STORE_INTEGRITY')
    return new RedisBackupError('REDIS_BACKUP_TAMPERED', error.message.replace(/^artifact /, 'backup '), { cause: error });
  if (isStoreError(error) && error.code === 'STORE_ARTIFACT_NOT_FOUND')
    return new RedisBackupError('REDIS_BACKUP_NOT_FOUND', error.message, { cause: error });
  return error;
}

/**
 * The plaintext of a backup, authenticated chunk by chunk (no byte before its chunk's tag
 * checked), with the stored bytes' size and SHA-256 checked against the manifest at the end.
 * @throws RedisBackupError REDIS_BACKUP_TAMPERED, REDIS_WRONG_KEY, REDIS_ABORTED, REDIS_BACKUP_NOT_FOUND
 */
export async function* readRedisBackup(
  catalog: Catalog,
  manifest: Manifest,
  keys: OpenKeys,
  options: { signal?: AbortSignal; onStoredBytes?: (n: number) => void; stored?: StoredBytes } = {},
): AsyncGenerator<Buffer> {
  const signal = options.signal ? { signal: options.signal } : {};
  try {
    const stored = readStored(catalog, manifest, {
      ...signal,
      ...(options.onStoredBytes ? { onBytes: options.onStoredBytes } : {}),
      ...(options.stored ? { stored: options.stored } : {}),
    });
    yield* open(stored, { keys, ...signal });
  } catch (error) {
    throw backupReadError(manifest, error);
  }
}
