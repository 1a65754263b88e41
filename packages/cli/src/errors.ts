/** Exit codes of `drkit`. */
export const EXIT = {
  OK: 0,
  /** The operation failed (the message says why and what to do). */
  FAILED: 1,
  /** The command line was wrong: unknown command, unknown flag, missing argument. */
  USAGE: 2,
  /** A destructive operation was refused: no confirmation and no --yes. */
  REFUSED: 3,
  /** Interrupted by SIGINT/SIGTERM. */
  ABORTED: 130,
} as const;

/** A mistake in the command line; printed as one line and exits with {@link EXIT.USAGE}. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code = 'CLI_USAGE';
}
