/** Classes of pg_restore errors, so that a caller can allow some by name. */
export const RESTORE_ERROR_CLASSES = [
  /** An owner or grantee role that does not exist on this server (globals not restored). */
  'missing-role',
  /** An extension whose files are not installed on this server. */
  'missing-extension',
  /** An object that already exists (restoring over a non-empty database). */
  'already-exists',
  /** Not allowed for the restoring user (e.g. a non-superuser restoring an extension or an event trigger). */
  'permission-denied',
  /** An object the statement needs is missing (often a consequence of an earlier error). */
  'missing-object',
  'other',
] as const;

/** One of {@link RESTORE_ERROR_CLASSES}. */
export type RestoreErrorClass = (typeof RESTORE_ERROR_CLASSES)[number];

/** One error pg_restore reported and continued past. */
export interface RestoreErrorEntry {
  class: RestoreErrorClass;
  /** The server's message, e.g. `role "app" does not exist`. */
  message: string;
  /** The archive entry being restored, e.g. `216; 1255 16388 FUNCTION f() app`. */
  tocEntry?: string;
  /** The statement that failed (its first 500 characters). */
  command?: string;
}

/** Classifies one server error message. */
export function classifyRestoreError(message: string): RestoreErrorClass {
  if (/role "[^"]*" does not exist/i.test(message)) return 'missing-role';
  if (/extension "[^"]*" is not available|could not open extension control file|extension "[^"]*" does not exist/i.test(message))
    return 'missing-extension';
  if (/already exists/i.test(message)) return 'already-exists';
  if (/permission denied|must be (owner|superuser|a member)/i.test(message)) return 'permission-denied';
  if (/does not exist/i.test(message)) return 'missing-object';
  return 'other';
}

/**
 * Parses pg_restore's stderr (run with --verbose) into the errors it continued past. Lines
 * that are not errors (progress, the "errors ignored on restore: N" summary) are skipped.
 */
export function parseRestoreErrors(lines: readonly string[]): { errors: RestoreErrorEntry[]; ignoredCount?: number } {
  const errors: RestoreErrorEntry[] = [];
  let toc: string | undefined;
  let current: RestoreErrorEntry | undefined;
  let inCommand = false;
  let ignoredCount: number | undefined;
  for (const line of lines) {
    if (line.startsWith('pg_restore: ')) {
      inCommand = false;
      current = undefined;
      const body = line.slice('pg_restore: '.length);
      const from = /^from TOC entry (.+)$/.exec(body);
      if (from) {
        toc = from[1];
        continue;
      }
      const ignored = /^warning: errors ignored on restore: (\d+)/.exec(body);
      if (ignored) {
        ignoredCount = Number(ignored[1]);
        continue;
      }
      const error = /^(?:\[archiver \(db\)\] )?error: (.*)$/.exec(body);
      if (error) {
        const text = (error[1] as string).replace(/^could not execute query: /, '').replace(/^ERROR:\s+/, '');
        current = { class: classifyRestoreError(text), message: text, ...(toc ? { tocEntry: toc } : {}) };
        errors.push(current);
      } else if (/^creating |^processing |^executing |^launching |^finished /.test(body)) {
        toc = undefined;
      }
      continue;
    }
    if (!current) continue;
    if (line.startsWith('Command was: ')) {
      inCommand = true;
      current.command = line.slice('Command was: '.length);
    } else if (inCommand) {
      if (line.trim() !== '' && (current.command ?? '').length < 500) current.command = `${current.command}\n${line}`;
    } else if (line.trim() !== '') {
      // LINE n:, DETAIL:, HINT: lines continue the server's message.
      current.message = `${current.message} ${line.trim()}`;
    }
  }
  for (const e of errors) if (e.command && e.command.length > 500) e.command = `${e.command.slice(0, 500)}...`;
  return { errors, ...(ignoredCount !== undefined ? { ignoredCount } : {}) };
}
