import type { Catalog, Manifest } from '@drkit/s3-store';
import { openBackup, type PostgresFingerprintRecord } from './archive.js';
import type { SealKeys } from './backup.js';
import { type PgTarget, withClient, withDatabase } from './connection.js';
import { PgBackupError, signalOf } from './errors.js';
import { type PgBackupEventListener, throttledProgress } from './events.js';
import {
  compareFingerprints,
  describeDifferences,
  type FingerprintDifference,
  type PgFingerprint,
  takeFingerprint,
} from './fingerprint.js';
import { checkRestoreRun, type PgRestoreRun, runPgRestore, stageArchive } from './pg-restore.js';
import type { RestoreErrorClass, RestoreErrorEntry } from './restore-errors.js';
import type { ToolInfo } from './tools.js';

/** What a restore of one backup into one database needs. */
export interface RestoreIntoContext {
  options: {
    catalog: Catalog;
    keys: SealKeys;
    stageDir?: string;
    allowErrors?: readonly RestoreErrorClass[];
    signal?: AbortSignal;
  };
  /** Any database on the server restored to: its host, port and credentials are used. */
  target: PgTarget;
  manifest: Manifest;
  record: PostgresFingerprintRecord;
  tool: ToolInfo;
  emit: PgBackupEventListener;
  warn: (message: string) => void;
}

/** What {@link restoreArchiveInto} did. */
export interface RestoredInto {
  allowed: RestoreErrorEntry[];
  fingerprint: PgFingerprint;
  /** Set when the dump was staged to a file for a parallel restore (the file is gone). */
  staged?: string;
}

/**
 * Restores a backup into the existing, empty database `into` — streamed through pg_restore's
 * stdin, or staged to a private file for jobs > 1 — then compares the result with the backup's
 * fingerprint.
 * @throws PgBackupError PG_RESTORE_ERRORS, PG_RESTORE_FAILED, PG_FINGERPRINT_MISMATCH,
 *   PG_BACKUP_TAMPERED, PG_WRONG_KEY, PG_NOT_ENOUGH_DISK, PG_ABORTED
 */
export async function restoreArchiveInto(ctx: RestoreIntoContext, into: string, jobs: number): Promise<RestoredInto> {
  const { options, emit } = ctx;
  emit({
    type: 'step',
    step: 'restore',
    message: `restoring backup ${ctx.manifest.id} into ${into}${jobs > 1 ? ` with ${jobs} jobs` : ''}`,
  });
  const progress = throttledProgress(emit, 'restore', ctx.manifest.object.size);
  const source = await openBackup(options.catalog, ctx.manifest, options.keys, {
    ...signalOf(options),
    onStoredBytes: (n) => progress.bytes(n),
  });
  let run: PgRestoreRun;
  let staged: string | undefined;
  if (jobs > 1) {
    emit({
      type: 'step',
      step: 'stage',
      message: `pg_restore cannot run parallel jobs from a pipe: staging the decrypted dump (${mbOf(ctx.manifest.plainSize)}) to a private file in ${options.stageDir ?? 'the temp dir'}; it is removed after the restore`,
    });
    const stage = await stageArchive(source, {
      expectedBytes: ctx.manifest.plainSize ?? ctx.manifest.object.size,
      ...(options.stageDir ? { dir: options.stageDir } : {}),
      ...signalOf(options),
    }).catch(async (error: unknown) => {
      await source.return(undefined);
      throw error;
    });
    staged = stage.file;
    try {
      run = await runPgRestore({
        tool: ctx.tool,
        server: ctx.target,
        database: into,
        source: { file: stage.file },
        jobs,
        ...signalOf(options),
        onItem: (i) => progress.item(i),
      });
    } finally {
      await stage.cleanup();
    }
  } else {
    run = await runPgRestore({
      tool: ctx.tool,
      server: ctx.target,
      database: into,
      source,
      jobs: 1,
      ...signalOf(options),
      onItem: (i) => progress.item(i),
    });
  }
  progress.done();
  const allowed = checkRestoreRun(run, options.allowErrors ?? [], into);
  for (const e of allowed) ctx.warn(`allowed restore error (${e.class}): ${e.message}`);

  emit({ type: 'step', step: 'fingerprint', message: `checking ${into} against the backup's fingerprint` });
  const fingerprint = await withClient(withDatabase(ctx.target, into), async (client) => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    try {
      return await takeFingerprint(client, options.signal ? { signal: options.signal } : {});
    } finally {
      await client.query('ROLLBACK').catch(() => {});
    }
  });
  const differences: FingerprintDifference[] = compareFingerprints(...comparable(ctx.record, fingerprint));
  if (differences.length > 0)
    throw new PgBackupError(
      'PG_FINGERPRINT_MISMATCH',
      `the restored database differs from backup ${ctx.manifest.id}: ${describeDifferences(differences)}`,
      { details: { differences } },
    );
  return {
    allowed,
    fingerprint: { tables: fingerprint.tables, sequences: fingerprint.sequences, objects: fingerprint.objects },
    ...(staged ? { staged } : {}),
  };
}

function mbOf(bytes: number | undefined): string {
  return bytes === undefined ? 'size unknown' : `${(bytes / 1e6).toFixed(1)} MB`;
}

/**
 * What a restore can be held to. A best-effort snapshot left some tables' data out (they come
 * back empty) and could not read some objects at all (nothing to compare them with).
 */
function comparable(record: PostgresFingerprintRecord, actual: PgFingerprint): [PgFingerprint, PgFingerprint] {
  const unknown = new Set((record.failures ?? []).map((f) => f.object));
  const keep = <T>(values: Record<string, T>) => Object.fromEntries(Object.entries(values).filter(([name]) => !unknown.has(name)));
  const tables = keep(record.tables);
  for (const name of record.excludedTableData ?? []) if (name in tables) tables[name] = 0;
  return [
    { tables, sequences: keep(record.sequences), objects: record.objects },
    { tables: keep(actual.tables), sequences: keep(actual.sequences), objects: actual.objects },
  ];
}
