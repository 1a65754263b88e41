/** Stable codes of every failure of file-archive. */
export const FILES_ERROR_CODES = [
  // What to back up, and where to restore.
  'FILES_SOURCE_INVALID',
  'FILES_TARGET_INVALID',
  'FILES_TARGET_NOT_EMPTY',
  'FILES_NO_MATCH',
  // The backup and its chain.
  'FILES_BACKUP_NOT_FOUND',
  'FILES_BACKUP_INVALID',
  'FILES_CHAIN_BROKEN',
  'FILES_BACKUP_TAMPERED',
  'FILES_WRONG_KEY',
  // What an archive may not do to the machine it is restored on.
  'FILES_UNSAFE_ENTRY',
  // A restored file that is not what the index says.
  'FILES_HASH_MISMATCH',
  // Other.
  'FILES_IO_FAILED',
  'FILES_OPTIONS_INVALID',
  'FILES_ABORTED',
] as const;

/** One of {@link FILES_ERROR_CODES}. */
export type FilesErrorCode = (typeof FILES_ERROR_CODES)[number];

/**
 * The one error type of this package. `code` is stable; `message` says what happened and what
 * to do, and never contains key material.
 */
export class FilesError extends Error {
  override readonly name = 'FilesError';
  readonly code: FilesErrorCode;
  /** Facts for callers: the entry refused, the paths that differ, ... */
  readonly details: Record<string, unknown>;

  constructor(code: FilesErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** True for a {@link FilesError}, optionally of one code. */
export function isFilesError(error: unknown, code?: FilesErrorCode): error is FilesError {
  return error instanceof FilesError && (code === undefined || error.code === code);
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** @throws FilesError FILES_ABORTED when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new FilesError('FILES_ABORTED', `${what} was aborted`, { cause: signal.reason });
}
