/** Stable codes of every failure of a sealed stream, grouped by what the caller can do. */
export const SEAL_ERROR_CODES = [
  // The input is not something this version can read.
  'SEAL_NOT_SEALED',
  'SEAL_UNSUPPORTED_VERSION',
  'SEAL_UNSUPPORTED_ALGORITHM',
  'SEAL_HEADER_INVALID',
  // Keys.
  'SEAL_KEY_INVALID',
  'SEAL_KEY_MISSING',
  'SEAL_UNKNOWN_KEY',
  'SEAL_WRONG_KEY',
  // Authentication failures: the bytes were altered, cut, or extended (trailing bytes make
  // the last chunk fail, so they surface as SEAL_CHUNK_TAMPERED).
  'SEAL_HEADER_TAMPERED',
  'SEAL_CHUNK_TAMPERED',
  'SEAL_TRUNCATED',
  // Other.
  'SEAL_DECOMPRESS_FAILED',
  'SEAL_COMPRESSION_UNSUPPORTED',
  'SEAL_INVALID_OPTIONS',
  'SEAL_SECRETS_INVALID',
  'SEAL_ABORTED',
] as const;

/** One of {@link SEAL_ERROR_CODES}. */
export type SealErrorCode = (typeof SEAL_ERROR_CODES)[number];

/**
 * The one error type of this package. `code` is stable; `message` says what happened and what
 * to do, and never contains key material or plaintext.
 */
export class SealError extends Error {
  override readonly name = 'SealError';
  readonly code: SealErrorCode;

  constructor(code: SealErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** True for a {@link SealError}, optionally of one code. */
export function isSealError(error: unknown, code?: SealErrorCode): error is SealError {
  return error instanceof SealError && (code === undefined || error.code === code);
}
