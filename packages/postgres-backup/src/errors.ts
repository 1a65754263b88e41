/** Stable codes of every failure of postgres-backup. */
export const PG_ERROR_CODES = [
  // Reaching the server.
  'PG_UNREACHABLE',
  'PG_AUTH_FAILED',
  'PG_DATABASE_MISSING',
  'PG_PERMISSION_DENIED',
  'PG_URL_INVALID',
  // The client tools.
  'PG_TOOL_MISSING',
  'PG_CLIENT_TOO_OLD',
  'PG_DUMP_FAILED',
  'PG_RESTORE_FAILED',
  // The backup.
  'PG_BACKUP_NOT_FOUND',
  'PG_BACKUP_TAMPERED',
  'PG_WRONG_KEY',
  'PG_BACKUP_INVALID',
  // Restore and verification.
  'PG_RESTORE_ERRORS',
  'PG_FINGERPRINT_MISMATCH',
  'PG_SWAP_FAILED',
  'PG_NOT_ENOUGH_DISK',
  'PG_TARGET_BUSY',
  // Point-in-time recovery: base backups, the WAL archive, recovery.
  'PG_BASE_BACKUP_FAILED',
  'PG_WAL_NAME_INVALID',
  'PG_WAL_UNREADABLE',
  'PG_WAL_MISSING',
  'PG_WAL_CONFLICT',
  'PG_WAL_GAP',
  'PG_TARGET_OUT_OF_WINDOW',
  'PG_TARGET_DIR_NOT_EMPTY',
  'PG_RECOVERY_FAILED',
  // Other.
  'PG_OPTIONS_INVALID',
  'PG_ABORTED',
] as const;

/** One of {@link PG_ERROR_CODES}. */
export type PgErrorCode = (typeof PG_ERROR_CODES)[number];

/**
 * The one error type of this package. `code` is stable; `message` says what happened and what
 * to do, and never contains a password or key material.
 */
export class PgBackupError extends Error {
  override readonly name = 'PgBackupError';
  readonly code: PgErrorCode;
  /** Facts for callers: the failed restore errors, the fingerprint differences, a snapshot id. */
  readonly details: Record<string, unknown>;

  constructor(code: PgErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** True for a {@link PgBackupError}, optionally of one code. */
export function isPgBackupError(error: unknown, code?: PgErrorCode): error is PgBackupError {
  return error instanceof PgBackupError && (code === undefined || error.code === code);
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Throws PG_ABORTED when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new PgBackupError('PG_ABORTED', `${what} was aborted`, { cause: signal.reason });
}

/** `{ signal }` when `options` has one: spread into the options of what an operation calls. */
export function signalOf(options: { signal?: AbortSignal | undefined }): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}
