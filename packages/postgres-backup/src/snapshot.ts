import type { Catalog, Manifest } from '@drkit/s3-store';
import { shortError } from './archive.js';
import { backupPostgres, type SealKeys } from './backup.js';
import type { PgTarget } from './connection.js';
import { isPgBackupError, type PgBackupError, signalOf } from './errors.js';
import { emitter, type PgBackupEventListener } from './events.js';
import type { FingerprintFailure } from './fingerprint.js';

/** Options of {@link snapshotCurrentState}. */
export interface SnapshotOptions {
  url: string | PgTarget;
  catalog: Catalog;
  keys: SealKeys;
  /** Why the snapshot was taken, recorded as a label ("before restoring backup X"). */
  reason?: string;
  /** Tables whose data fails to dump are left out and the dump retried, at most this many times. @default 20 */
  maxExclusions?: number;
  environment?: string;
  binDir?: string;
  signal?: AbortSignal;
  onEvent?: PgBackupEventListener;
}

/** The outcome of {@link snapshotCurrentState}: what was saved and what could not be. */
export interface PostgresSnapshot {
  /** The stored snapshot, when anything could be stored. */
  manifest?: Manifest;
  /** True when every table's data and every count made it. */
  complete: boolean;
  /** What failed: a table whose data could not be dumped, a count that failed, or the whole database. */
  failures: FingerprintFailure[];
  /** Tables whose data is missing from the snapshot (their definitions are there). */
  excludedTableData: string[];
  attempts: number;
}

/**
 * Dumps the current — possibly corrupted — state of a database before a recovery changes it,
 * as a normal sealed backup labelled `snapshot`. Best effort: a table whose data cannot be
 * read is recorded and left out (its definition stays) and the dump retried; a row count that
 * fails is recorded. It never throws for the database's own faults: when nothing at all can be
 * saved, `manifest` is absent and `failures` says why. Only an abort throws.
 */
export async function snapshotCurrentState(options: SnapshotOptions): Promise<PostgresSnapshot> {
  const excluded: string[] = [];
  const failures: FingerprintFailure[] = [];
  const max = options.maxExclusions ?? 20;
  for (let attempt = 1; ; attempt++) {
    try {
      const backup = await backupPostgres({
        url: options.url,
        catalog: options.catalog,
        keys: options.keys,
        tier: 'manual',
        globals: false,
        excludeTableData: [...excluded],
        bestEffortFingerprint: true,
        labels: { snapshot: 'true', ...(options.reason ? { reason: options.reason.slice(0, 200) } : {}) },
        ...(options.environment ? { environment: options.environment } : {}),
        ...(options.binDir ? { binDir: options.binDir } : {}),
        ...signalOf(options),
        ...(options.onEvent ? { onEvent: options.onEvent } : {}),
      });
      const countFailures = backup.fingerprint.failures ?? [];
      failures.push(...countFailures.filter((f) => !failures.some((g) => g.object === f.object && g.error === f.error)));
      return { manifest: backup.manifest, complete: failures.length === 0, failures, excludedTableData: excluded, attempts: attempt };
    } catch (error) {
      if (isPgBackupError(error, 'PG_ABORTED')) throw error;
      const table = isPgBackupError(error, 'PG_DUMP_FAILED') ? (error.details.table as string | undefined) : undefined;
      if (table && !excluded.includes(table) && excluded.length < max) {
        excluded.push(table);
        failures.push({
          object: table,
          error: `its data could not be dumped: ${((error as PgBackupError).details.stderr as string[] | undefined)?.join(' | ') ?? shortError(error)}`,
        });
        emitter(options.onEvent)({ type: 'warning', message: `snapshot: the data of ${table} cannot be read; dumping without it` });
        continue;
      }
      failures.push({ object: 'database', error: shortError(error) });
      return { complete: false, failures, excludedTableData: excluded, attempts: attempt };
    }
  }
}
