/**
 * What redis-backup reports while it works. Libraries never print: the CLI and runbooks render
 * these for people, and tests assert on them.
 */
export type RedisBackupEvent =
  /** A step began: "connect", "sync", "export", "restore", "flush", "verify", ... */
  | { type: 'step'; step: string; message: string }
  /** Work done so far: bytes of an RDB, keys of an export or a restore. */
  | { type: 'progress'; operation: 'rdb' | 'export' | 'restore' | 'verify'; bytes?: number; keys?: number; total?: number; db?: number }
  /** Something the caller should know that does not stop the work. */
  | { type: 'warning'; message: string };

/** A listener of {@link RedisBackupEvent}s. */
export type RedisBackupEventListener = (event: RedisBackupEvent) => void;

/** Emits to `listener`, which must never break the operation it observes. */
export function emitter(listener: RedisBackupEventListener | undefined): RedisBackupEventListener {
  return (event) => {
    try {
      listener?.(event);
    } catch {
      // A broken progress display must not fail a backup or a restore.
    }
  };
}

/** Calls `send` at most every `everyMs` (and always when forced): progress without flooding. */
export function throttle(everyMs = 1000): (force?: boolean) => boolean {
  let last = 0;
  return (force = false) => {
    const now = performance.now();
    if (!force && now - last < everyMs) return false;
    last = now;
    return true;
  };
}
