import { isSealError, type OpenKeys, open } from '@drkit/crypto-stream';
import { type Catalog, isStoreError, type Manifest, readStored, type StoredBytes } from '@drkit/s3-store';
import { messageOf, PgBackupError } from './errors.js';
import type { DatabaseProperties, FingerprintFailure, PgFingerprint } from './fingerprint.js';

/** The artifact kind of a database dump, and of its companion globals (roles, tablespaces). */
export const POSTGRES_KIND = 'postgres';
export const POSTGRES_GLOBALS_KIND = 'postgres-globals';

/** What drkit records in a dump's manifest `fingerprint` field. */
export interface PostgresFingerprintRecord extends PgFingerprint {
  database: { name: string; sizeBytes: number; properties?: DatabaseProperties };
  dump: { tool: 'pg_dump'; version: string; format: 'custom'; compression?: 'zstd' | 'pg_dump' | 'none'; compressLevel?: number };
  /** The id of the companion globals artifact, if one was stored. */
  globals?: string;
  /** Best-effort snapshots only: what could not be read or dumped. */
  failures?: FingerprintFailure[];
  excludedTableData?: string[];
}

/**
 * The fingerprint record of a postgres manifest.
 * @throws PgBackupError PG_BACKUP_INVALID for an artifact that is not a drkit PostgreSQL dump
 */
export function fingerprintOf(manifest: Manifest): PostgresFingerprintRecord {
  const f = manifest.fingerprint as Partial<PostgresFingerprintRecord> | undefined;
  if (manifest.kind !== POSTGRES_KIND || !f || typeof f.tables !== 'object' || typeof f.dump !== 'object' || typeof f.database !== 'object')
    throw new PgBackupError(
      'PG_BACKUP_INVALID',
      `backup ${manifest.id} (kind ${manifest.kind}) is not a PostgreSQL dump made by drkit: restore it with the tool that made it`,
    );
  return f as PostgresFingerprintRecord;
}

/** Maps the failures of reading a sealed backup to this package's errors. */
export function backupReadError(manifest: Manifest, error: unknown): unknown {
  if (error instanceof PgBackupError) return error;
  if (isSealError(error)) {
    if (['SEAL_WRONG_KEY', 'SEAL_UNKNOWN_KEY', 'SEAL_KEY_MISSING', 'SEAL_KEY_INVALID'].includes(error.code))
      return new PgBackupError(
        'PG_WRONG_KEY',
        `backup ${manifest.id} cannot be opened with the given keys (${error.message}); it was sealed with key "${keyIdOf(manifest)}"`,
        { cause: error },
      );
    if (error.code === 'SEAL_ABORTED')
      return new PgBackupError('PG_ABORTED', `reading backup ${manifest.id} was aborted`, { cause: error });
    return new PgBackupError(
      'PG_BACKUP_TAMPERED',
      `backup ${manifest.id} failed authentication (${error.code}: ${error.message}): its bytes were altered or cut. Nothing was restored from it; use another backup`,
      { cause: error },
    );
  }
  if (isStoreError(error) && error.code === 'STORE_INTEGRITY')
    return new PgBackupError('PG_BACKUP_TAMPERED', error.message.replace(/^artifact /, 'backup '), { cause: error });
  if (isStoreError(error) && error.code === 'STORE_ARTIFACT_NOT_FOUND')
    return new PgBackupError('PG_BACKUP_NOT_FOUND', error.message, { cause: error });
  return error;
}

function keyIdOf(manifest: Manifest): string {
  return manifest.encryption.format === 'none' ? '(none)' : manifest.encryption.keyId;
}

/**
 * Resolves "latest" or an id to a postgres manifest.
 * @throws PgBackupError PG_BACKUP_NOT_FOUND
 */
export async function resolveBackup(catalog: Catalog, ref: string): Promise<Manifest> {
  try {
    return await catalog.resolve(ref, POSTGRES_KIND);
  } catch (error) {
    if (isStoreError(error) && error.code === 'STORE_ARTIFACT_NOT_FOUND')
      throw new PgBackupError(
        'PG_BACKUP_NOT_FOUND',
        ref === 'latest'
          ? 'there is no complete PostgreSQL backup in this store: run a backup first, or check the store URL'
          : `there is no PostgreSQL backup ${ref} in this store: list them with 'drkit backup list --kind postgres'`,
        { cause: error },
      );
    throw error;
  }
}

/** What {@link readBackup} saw of the stored bytes, complete once the iteration ended. */
export type { StoredBytes } from '@drkit/s3-store';

/**
 * The plaintext (pg_dump's archive) of a backup, authenticated chunk by chunk as it streams:
 * no byte reaches the consumer before its chunk authenticated. The stored bytes are also hashed
 * on the way, and a size or SHA-256 that differs from the manifest fails the iteration at its
 * end — before a caller commits to what it restored.
 * @throws PgBackupError PG_BACKUP_TAMPERED, PG_WRONG_KEY, PG_ABORTED
 */
export async function* readBackup(
  catalog: Catalog,
  manifest: Manifest,
  keys: OpenKeys,
  options: { signal?: AbortSignal; onStoredBytes?: (n: number) => void; stored?: StoredBytes } = {},
): AsyncGenerator<Buffer> {
  const hashed = () =>
    readStored(catalog, manifest, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onStoredBytes ? { onBytes: options.onStoredBytes } : {}),
      ...(options.stored ? { stored: options.stored } : {}),
    });
  try {
    yield* open(hashed(), { keys, ...(options.signal ? { signal: options.signal } : {}) });
  } catch (error) {
    throw backupReadError(manifest, error);
  }
}

/**
 * Starts reading a backup and pulls its first authenticated chunk, so that a wrong key or a
 * damaged header fails before anything is created or changed. Returns the whole plaintext.
 */
export async function openBackup(
  catalog: Catalog,
  manifest: Manifest,
  keys: OpenKeys,
  options: { signal?: AbortSignal; onStoredBytes?: (n: number) => void; stored?: StoredBytes } = {},
): Promise<AsyncGenerator<Buffer>> {
  const source = readBackup(catalog, manifest, keys, options);
  const first = await source.next();
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (!first.done) yield first.value;
      yield* source;
    } finally {
      await source.return(undefined);
    }
  }
  return all();
}

/** A short, safe description of an error for a manifest or report. */
export function shortError(error: unknown): string {
  return messageOf(error).split('\n')[0]?.slice(0, 500) ?? 'unknown error';
}
