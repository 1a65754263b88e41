/**
 * What file-archive reports while it works. Libraries never print: the CLI and runbooks render
 * these for people, and tests assert on them.
 */
export type FilesEvent =
  /** A step began: "scan", "archive", "index", "restore", "verify", "swap", ... */
  | { type: 'step'; step: string; message: string }
  /** Work done so far. `totalBytes` is known for restores and for the archive step of backups. */
  | { type: 'progress'; operation: 'scan' | 'archive' | 'restore'; files: number; bytes: number; totalBytes?: number; path?: string }
  /** Something the caller should know that does not stop the work (a file changed while it was read, a socket skipped, ...). */
  | { type: 'warning'; message: string; path?: string };

/** A listener of {@link FilesEvent}s. */
export type FilesEventListener = (event: FilesEvent) => void;

/** Emits to `listener`, which must never break the operation it observes. */
export function emitter(listener: FilesEventListener | undefined): FilesEventListener {
  return (event) => {
    try {
      listener?.(event);
    } catch {
      // A broken progress display must not fail a backup or a restore.
    }
  };
}

/** True at most every `everyMs`, and always when forced: progress without flooding. */
export function throttle(everyMs = 1000): (force?: boolean) => boolean {
  let last = 0;
  return (force = false) => {
    const now = performance.now();
    if (!force && now - last < everyMs) return false;
    last = now;
    return true;
  };
}
