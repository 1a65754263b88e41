/** Stable codes of every failure of a store, its catalog, retention and locks. */
export const STORE_ERROR_CODES = [
  // Configuration: fix the URL, options or environment.
  'STORE_URL_INVALID',
  'STORE_SCHEME_UNSUPPORTED',
  'STORE_OPTIONS_INVALID',
  'STORE_KEY_INVALID',
  // The backend refused or is missing something.
  'STORE_BUCKET_NOT_FOUND',
  'STORE_ACCESS_DENIED',
  'STORE_NOT_FOUND',
  'STORE_UNSUPPORTED',
  'STORE_UNAVAILABLE',
  'STORE_IO',
  // Integrity: the bytes are not what was written or promised.
  'STORE_INTEGRITY',
  'STORE_TOO_LARGE',
  // Mirrors.
  'STORE_MIRROR_DEGRADED',
  // Catalog.
  'STORE_MANIFEST_INVALID',
  'STORE_ARTIFACT_NOT_FOUND',
  'STORE_ARTIFACT_INCOMPLETE',
  // Retention.
  'STORE_RETENTION_INVALID',
  // Locks.
  'STORE_LOCKED',
  'STORE_LOCK_LOST',
  // Other.
  'STORE_ABORTED',
] as const;

/** One of {@link STORE_ERROR_CODES}. */
export type StoreErrorCode = (typeof STORE_ERROR_CODES)[number];

/**
 * The one error type of this package. `code` is stable; `message` says what happened and
 * what to do, and never contains credentials (access keys, secrets, session tokens).
 */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** True for a {@link StoreError}, optionally of one code. */
export function isStoreError(error: unknown, code?: StoreErrorCode): error is StoreError {
  return error instanceof StoreError && (code === undefined || error.code === code);
}

/** The error to throw when `signal` is aborted (its reason as the cause). */
export function abortedError(signal: AbortSignal | undefined, what: string): StoreError {
  return new StoreError('STORE_ABORTED', `${what} was aborted`, { cause: signal?.reason });
}

/** Throws STORE_ABORTED when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortedError(signal, what);
}
