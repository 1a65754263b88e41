/** Stable codes of every failure of the kill switch. */
export const HALT_ERROR_CODES = [
  // Trading refused by a guard.
  'HALT_ACTIVE',
  'HALT_STALE_EPOCH',
  'HALT_STATE_UNKNOWN',
  // Engage / release.
  'HALT_NOT_PROPAGATED',
  'HALT_NOT_AUDITED',
  'HALT_TWO_PERSON_RULE',
  'HALT_ORDERS_IN_FLIGHT',
  'HALT_NOT_ENGAGED',
  'HALT_INVALID_INPUT',
  // Verification.
  'HALT_NOT_ACKNOWLEDGED',
  // Wallet recovery.
  'HALT_WALLET_INTEGRITY',
  // Storage.
  'HALT_AUDIT_IO',
  'HALT_REDIS_IO',
] as const;

/** One of {@link HALT_ERROR_CODES}. */
export type HaltErrorCode = (typeof HALT_ERROR_CODES)[number];

/** The one error type of this package: a stable `code` and a message that says what to do. */
export class HaltError extends Error {
  override readonly name = 'HaltError';
  readonly code: HaltErrorCode;
  /** Extra facts for callers (the epoch, the workers that did not acknowledge, the audit id). */
  readonly details: Record<string, unknown>;

  constructor(code: HaltErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** True for a {@link HaltError}, optionally of one code. */
export function isHaltError(error: unknown, code?: HaltErrorCode): error is HaltError {
  return error instanceof HaltError && (code === undefined || error.code === code);
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
