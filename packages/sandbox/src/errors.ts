/** Stable codes of every failure the sandbox reports. */
export const SANDBOX_ERROR_CODES = [
  'SANDBOX_BINARY_MISSING',
  'SANDBOX_START_FAILED',
  'SANDBOX_START_TIMEOUT',
  'SANDBOX_PORT_UNAVAILABLE',
  'SANDBOX_USER_MISSING',
] as const;

/** One of {@link SANDBOX_ERROR_CODES}. */
export type SandboxErrorCode = (typeof SANDBOX_ERROR_CODES)[number];

/**
 * The one error type the sandbox throws: `code` is stable, `message` says what happened and
 * what to do, and a server's own output (the tail of its log) is kept in `log` for diagnosis.
 */
export class SandboxError extends Error {
  override readonly name = 'SandboxError';
  readonly code: SandboxErrorCode;
  readonly log: string | undefined;

  constructor(code: SandboxErrorCode, message: string, options: { cause?: unknown; log?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.log = options.log;
  }
}
