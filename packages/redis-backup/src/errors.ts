/** Stable codes of every failure of redis-backup. */
export const REDIS_ERROR_CODES = [
  // Reaching the server.
  'REDIS_URL_INVALID',
  'REDIS_CONNECTION_REFUSED',
  'REDIS_UNREACHABLE',
  'REDIS_AUTH_FAILED',
  'REDIS_PERMISSION_DENIED',
  'REDIS_COMMAND_FAILED',
  // Pulling an RDB over the replication protocol.
  'REDIS_SYNC_REFUSED',
  'REDIS_PROTOCOL_ERROR',
  'REDIS_RDB_INVALID',
  // The backup.
  'REDIS_BACKUP_NOT_FOUND',
  'REDIS_BACKUP_INVALID',
  'REDIS_BACKUP_TAMPERED',
  'REDIS_WRONG_KEY',
  // Restore and verification.
  'REDIS_RDB_VERSION_TOO_NEW',
  'REDIS_AOF_ENABLED',
  'REDIS_SERVICE_FAILED',
  'REDIS_KEYS_EXIST',
  'REDIS_RESTORE_FAILED',
  'REDIS_VERIFY_FAILED',
  // Other.
  'REDIS_OPTIONS_INVALID',
  'REDIS_TIMEOUT',
  'REDIS_ABORTED',
] as const;

/** One of {@link REDIS_ERROR_CODES}. */
export type RedisErrorCode = (typeof REDIS_ERROR_CODES)[number];

/**
 * The one error type of this package. `code` is stable; `message` says what happened and what
 * to do, and never contains a password or key material.
 */
export class RedisBackupError extends Error {
  override readonly name = 'RedisBackupError';
  readonly code: RedisErrorCode;
  /** Facts for callers: the keys that exist, the differences a verification found, ... */
  readonly details: Record<string, unknown>;

  constructor(code: RedisErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** True for a {@link RedisBackupError}, optionally of one code. */
export function isRedisBackupError(error: unknown, code?: RedisErrorCode): error is RedisBackupError {
  return error instanceof RedisBackupError && (code === undefined || error.code === code);
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Throws REDIS_ABORTED when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new RedisBackupError('REDIS_ABORTED', `${what} was aborted`, { cause: signal.reason });
}

/** `{ signal }` when `options` has one: spread into the options of what an operation calls. */
export function signalOf(options: { signal?: AbortSignal | undefined }): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}
