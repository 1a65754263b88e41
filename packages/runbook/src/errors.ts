/** Stable codes of every failure of the runbook engine, its config, notifiers and controllers. */
export const RUNBOOK_ERROR_CODES = [
  // The runbook itself is wrong: fix its definition.
  'RUNBOOK_DEFINITION_INVALID',
  // What the run was given: fix the command line, params or config.
  'RUNBOOK_PARAMS_INVALID',
  'RUNBOOK_CONFIG_INVALID',
  'RUNBOOK_CONFIG_NOT_FOUND',
  'RUNBOOK_SECRET_MISSING',
  // The run would not start or go on.
  'RUNBOOK_REFUSED',
  'RUNBOOK_LOCKED',
  'RUNBOOK_RESUME_INVALID',
  // A step failed.
  'RUNBOOK_STEP_FAILED',
  'RUNBOOK_STEP_TIMEOUT',
  'RUNBOOK_VERIFY_FAILED',
  'RUNBOOK_ABORTED',
  // The world outside: commands, services, health checks, notification targets.
  'RUNBOOK_COMMAND_FAILED',
  'RUNBOOK_SERVICE_FAILED',
  'RUNBOOK_HEALTH_FAILED',
  'RUNBOOK_NOTIFY_FAILED',
  'RUNBOOK_JOURNAL_IO',
] as const;

/** One of {@link RUNBOOK_ERROR_CODES}. */
export type RunbookErrorCode = (typeof RUNBOOK_ERROR_CODES)[number];

/**
 * The one error type of this package. `code` is stable; `message` says what happened and
 * what to do, and never contains a secret (the engine redacts every message it records).
 */
export class RunbookError extends Error {
  override readonly name = 'RunbookError';
  readonly code: RunbookErrorCode;

  constructor(code: RunbookErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** True for a {@link RunbookError}, optionally of one code. */
export function isRunbookError(error: unknown, code?: RunbookErrorCode): error is RunbookError {
  return error instanceof RunbookError && (code === undefined || error.code === code);
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The stable code of anything thrown that carries one (ours, a store's, Node's), else undefined. */
export function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
