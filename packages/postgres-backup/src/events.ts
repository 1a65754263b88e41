/**
 * What postgres-backup reports while it works. Libraries never print: the CLI and runbooks
 * render these for people, and tests assert on them.
 */
export type PgBackupEvent =
  /** A step began: "dump", "globals", "shadow", "restore", "fingerprint", "swap", ... */
  | { type: 'step'; step: string; message: string }
  /** Bytes through the pipeline so far, and the table or object being processed. */
  | { type: 'progress'; operation: 'dump' | 'restore' | 'verify' | 'stage'; bytes: number; total?: number; item?: string }
  /** Something the caller should know that does not stop the work. */
  | { type: 'warning'; message: string };

/** A listener of {@link PgBackupEvent}s. */
export type PgBackupEventListener = (event: PgBackupEvent) => void;

/** Emits to `listener`, which must never break the operation it observes. */
export function emitter(listener: PgBackupEventListener | undefined): PgBackupEventListener {
  return (event) => {
    try {
      listener?.(event);
    } catch {
      // A broken progress display must not fail a backup or a restore.
    }
  };
}

/** Progress events at most every `everyMs`, and whenever the item changes. */
export function throttledProgress(
  emit: PgBackupEventListener,
  operation: 'dump' | 'restore' | 'verify' | 'stage',
  total?: number,
  everyMs = 1000,
): { bytes(n: number): void; item(name: string): void; done(): void; readonly total: number } {
  let bytes = 0;
  let item: string | undefined;
  let last = 0;
  const send = () => {
    last = performance.now();
    emit({ type: 'progress', operation, bytes, ...(total !== undefined ? { total } : {}), ...(item !== undefined ? { item } : {}) });
  };
  return {
    bytes(n) {
      bytes += n;
      if (performance.now() - last >= everyMs) send();
    },
    item(name) {
      // A new table is news, but a schema of thousands of small tables must not flood listeners.
      if (name === item) return;
      item = name;
      if (performance.now() - last >= Math.min(everyMs, 200)) send();
    },
    done: send,
    get total() {
      return bytes;
    },
  };
}
