import type { Catalog, Manifest } from '@drkit/s3-store';
import type pg from 'pg';
import { fingerprintOf, type PostgresFingerprintRecord, resolveBackup } from './archive.js';
import { type SealKeys, serverInfo } from './backup.js';
import { connect, ident, type PgTarget, pgTarget, withClient, withDatabase } from './connection.js';
import { isPgBackupError, messageOf, PgBackupError, signalOf, throwIfAborted } from './errors.js';
import { emitter, type PgBackupEventListener } from './events.js';
import type { PgFingerprint } from './fingerprint.js';
import { createDatabaseFor, databaseExists, databaseName, dropDatabaseQuietly, shadowName, stamp } from './pg-restore.js';
import { RESTORE_ERROR_CLASSES, type RestoreErrorClass, type RestoreErrorEntry } from './restore-errors.js';
import { type RestoreIntoContext, restoreArchiveInto } from './restore-into.js';
import { type PostgresSnapshot, snapshotCurrentState } from './snapshot.js';
import { checkClientVersion, findTool, type ToolInfo } from './tools.js';
import { type PostgresVerification, verifyPostgresBackup } from './verify.js';

/** Options of {@link restorePostgres}. */
export interface RestorePostgresOptions {
  catalog: Catalog;
  /** A backup id, or "latest" (the newest complete backup whose verification did not fail). */
  backup: string;
  /** The database to restore: its URL. The user needs CREATEDB, and must be able to terminate sessions. */
  target: string | PgTarget;
  /** Keys that open the backup (a keyring with old keys, a key, a passphrase); with `dropExisting`, they also seal the snapshot. */
  keys: SealKeys;
  /**
   * Follow the plan's literal order — snapshot the current database, drop it, recreate it,
   * restore into it — instead of restoring beside it and swapping. The backup is verified
   * (decrypted and decoded in full) before anything is dropped.
   */
  dropExisting?: boolean;
  /** Swap mode: keep the replaced database as `<db>_damaged_<time>`. @default true */
  keepDamaged?: boolean;
  /** Parallel pg_restore jobs. Above 1 the decrypted dump is staged to a local file first. @default 1 */
  jobs?: number;
  /** Where to stage for jobs > 1. @default the OS temp dir */
  stageDir?: string;
  /** pg_restore error classes that do not fail the restore (e.g. "missing-role"). @default none */
  allowErrors?: readonly RestoreErrorClass[];
  /** Decrypt and decode the backup (verification level 2) and return the plan; change nothing. */
  dryRun?: boolean;
  /** Where the connection for CREATE/RENAME/DROP DATABASE goes. @default "postgres" (template1 when restoring postgres itself) */
  maintenanceDatabase?: string;
  /** How long to wait for the target's sessions to end before the swap gives up. @default 30000 */
  swapTimeoutMs?: number;
  binDir?: string;
  signal?: AbortSignal;
  onEvent?: PgBackupEventListener;
}

/** The outcome of {@link restorePostgres}. */
export interface PostgresRestore {
  backup: Manifest;
  target: string;
  mode: 'swap' | 'drop-existing' | 'dry-run';
  /** What was (or, in a dry run, would be) done, in order. */
  plan: string[];
  /** Swap mode: the name the replaced database now has (unless it was dropped or there was none). */
  damaged?: string;
  /** Drop-existing mode: the snapshot of the database taken before it was dropped. */
  snapshot?: PostgresSnapshot;
  /** The errors pg_restore reported that `allowErrors` accepted. */
  allowedErrors: RestoreErrorEntry[];
  /** The restored database's fingerprint (equal to the backup's, or the restore failed). */
  fingerprint?: PgFingerprint;
  /** Jobs > 1: the decrypted dump was staged here (and removed). */
  staged?: string;
  /** Dry run: the level-2 verification. */
  verification?: PostgresVerification;
  warnings: string[];
  durationMs: number;
}

interface Ctx extends RestoreIntoContext {
  options: RestorePostgresOptions;
  target: PgTarget;
  maintenance: PgTarget;
  manifest: Manifest;
  record: PostgresFingerprintRecord;
  tool: ToolInfo;
  emit: PgBackupEventListener;
  warn: (message: string) => void;
  warnings: string[];
}

/**
 * Restores a PostgreSQL backup without destroying anything first. By default it restores into
 * a shadow database on the same server, checks the result against the backup's fingerprint
 * (exact row counts, sequence values, object counts), and only then swaps it in by renaming —
 * after terminating the target's sessions — keeping the old database as
 * `<db>_damaged_<time>`. A tampered backup, a wrong key, a restore error or a fingerprint
 * mismatch drops the shadow and leaves the target as it was; a process killed midway leaves
 * at most a `<db>_drkit_restore_*` database, which the next restore removes.
 *
 * @throws PgBackupError PG_BACKUP_NOT_FOUND, PG_WRONG_KEY, PG_BACKUP_TAMPERED, PG_RESTORE_ERRORS,
 *   PG_RESTORE_FAILED, PG_FINGERPRINT_MISMATCH, PG_TARGET_BUSY, PG_SWAP_FAILED,
 *   PG_NOT_ENOUGH_DISK, PG_CLIENT_TOO_OLD, connection errors
 */
export async function restorePostgres(options: RestorePostgresOptions): Promise<PostgresRestore> {
  const started = performance.now();
  const target = typeof options.target === 'string' ? pgTarget(options.target) : options.target;
  const jobs = options.jobs ?? 1;
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64)
    throw new PgBackupError('PG_OPTIONS_INVALID', `jobs must be an integer from 1 to 64, got ${options.jobs}`);
  for (const c of options.allowErrors ?? [])
    if (!RESTORE_ERROR_CLASSES.includes(c))
      throw new PgBackupError('PG_OPTIONS_INVALID', `unknown restore error class "${c}": use ${RESTORE_ERROR_CLASSES.join(', ')}`);
  throwIfAborted(options.signal, 'the restore');
  const emit = emitter(options.onEvent);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    emit({ type: 'warning', message });
  };

  const manifest = await resolveBackup(options.catalog, options.backup);
  const record = fingerprintOf(manifest);
  // A database cannot rename or drop itself from its own session: restoring `postgres` itself
  // goes through template1.
  const maintenance = withDatabase(target, options.maintenanceDatabase ?? (target.database === 'postgres' ? 'template1' : 'postgres'));
  const tool = await withClient(maintenance, async (client) => {
    const server = await serverInfo(client);
    const found = await findTool('pg_restore', { binDir: options.binDir, serverMajor: server.major });
    checkClientVersion(found, 'pg_restore', server.major, server.version);
    const dumpMajor = Number(record.dump.version.split('.')[0]);
    if (found.major < dumpMajor)
      throw new PgBackupError(
        'PG_CLIENT_TOO_OLD',
        `backup ${manifest.id} was made by pg_dump ${record.dump.version}; pg_restore ${found.version} cannot read it: install postgresql-client-${dumpMajor} and pass binDir`,
      );
    return found;
  });
  const ctx: Ctx = { options, target, maintenance, manifest, record, tool, emit, warn, warnings };
  const mode = options.dryRun ? 'dry-run' : options.dropExisting ? 'drop-existing' : 'swap';
  // A dry run shows the plan of the restore it stands for.
  const plan = planOf(ctx, options.dropExisting ? 'drop-existing' : 'swap', jobs);
  const result = (extra: Partial<PostgresRestore>): PostgresRestore => ({
    backup: manifest,
    target: target.description,
    mode,
    plan,
    allowedErrors: [],
    warnings,
    durationMs: Math.round(performance.now() - started),
    ...extra,
  });

  if (options.dryRun) {
    emit({ type: 'step', step: 'verify', message: `dry run: decrypting and decoding backup ${manifest.id} (nothing is changed)` });
    const verification = await verifyPostgresBackup({
      catalog: options.catalog,
      backup: manifest.id,
      keys: options.keys,
      level: 2,
      record: false,
      ...(options.binDir ? { binDir: options.binDir } : {}),
      ...signalOf(options),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
    if (!verification.ok) throw verification.error as PgBackupError;
    return { ...result({ verification }), durationMs: Math.round(performance.now() - started) };
  }
  const done = options.dropExisting ? await dropAndRestore(ctx, jobs) : await restoreAndSwap(ctx, jobs);
  return { ...result(done), durationMs: Math.round(performance.now() - started) };
}

function planOf(ctx: Ctx, mode: 'swap' | 'drop-existing', jobs: number): string[] {
  const db = ctx.target.database;
  const how =
    jobs > 1
      ? `decrypt backup ${ctx.manifest.id} to a private staging file (${mbOf(ctx.manifest.plainSize)}), then pg_restore --jobs=${jobs}`
      : `stream backup ${ctx.manifest.id} (decrypted chunk by chunk, nothing staged on disk) into pg_restore`;
  const check = `compare the restored database with the backup's fingerprint (${Object.keys(ctx.record.tables).length} tables' row counts, ${Object.keys(ctx.record.sequences).length} sequences, object counts)`;
  if (mode === 'drop-existing')
    return [
      `verify backup ${ctx.manifest.id}: decrypt and decode it in full (pg_restore --list and a read to /dev/null)`,
      `snapshot the current ${db} (best effort) into the store`,
      `terminate the sessions of ${db}, DROP DATABASE ${db}, CREATE DATABASE ${db}`,
      `${how} into ${db}`,
      check,
    ];
  return [
    `remove shadow databases left by interrupted restores of ${db}`,
    `create an empty shadow database ${db}_drkit_restore_* on ${ctx.target.host}:${ctx.target.port}`,
    `${how} into the shadow`,
    check,
    `terminate the sessions of ${db}, then in one transaction rename ${db} to ${db}_damaged_<time> and the shadow to ${db}`,
    ...(ctx.options.keepDamaged === false ? [`drop ${db}_damaged_<time>`] : [`keep ${db}_damaged_<time> for inspection`]),
  ];
}

function mbOf(bytes: number | undefined): string {
  return bytes === undefined ? 'size unknown' : `${(bytes / 1e6).toFixed(1)} MB`;
}

/** The shadow databases earlier, interrupted restores of `db` left behind. */
async function leftoverShadows(client: pg.Client, db: string): Promise<string[]> {
  const prefix = databaseName(db, '_drkit_restore_');
  const rows = await client.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 AND datname ~ '_drkit_restore_[0-9a-f]{6}$'`,
    [prefix],
  );
  return rows.rows.map((r) => r.datname);
}

async function restoreAndSwap(ctx: Ctx, jobs: number): Promise<Partial<PostgresRestore>> {
  const { target, emit, warn } = ctx;
  const db = target.database;
  const admin = await connect(ctx.maintenance);
  let shadow: string | undefined;
  let swapped = false;
  try {
    for (const old of await leftoverShadows(admin, db)) {
      emit({ type: 'step', step: 'cleanup', message: `dropping ${old}, left by an interrupted restore` });
      await dropDatabaseQuietly(admin, old, warn);
    }
    shadow = shadowName(db, 'restore');
    emit({ type: 'step', step: 'shadow', message: `creating the shadow database ${shadow}` });
    await createDatabaseFor(admin, shadow, ctx.record.database.properties, warn);
    const restored = await restoreArchiveInto(ctx, shadow, jobs);

    throwIfAborted(ctx.options.signal, 'the restore');
    const damaged = databaseName(db, `_damaged_${stamp()}`);
    emit({ type: 'step', step: 'swap', message: `swapping: ${db} becomes ${damaged}, ${shadow} becomes ${db}` });
    const hadTarget = await swapIn(ctx, admin, shadow, damaged);
    swapped = true;
    let kept: string | undefined = hadTarget ? damaged : undefined;
    if (hadTarget && ctx.options.keepDamaged === false) {
      emit({ type: 'step', step: 'cleanup', message: `dropping ${damaged}` });
      if (await dropDatabaseQuietly(admin, damaged, warn)) kept = undefined;
    }
    emit({
      type: 'step',
      step: 'done',
      message: `${db} restored from backup ${ctx.manifest.id}${kept ? `; the previous database is kept as ${kept}` : ''}`,
    });
    return {
      ...(kept ? { damaged: kept } : {}),
      allowedErrors: restored.allowed,
      fingerprint: restored.fingerprint,
      ...(restored.staged ? { staged: restored.staged } : {}),
    };
  } catch (error) {
    if (shadow && !swapped) {
      emit({ type: 'step', step: 'cleanup', message: `the restore failed: dropping ${shadow}; ${db} was not touched` });
      await dropDatabaseQuietly(admin, shadow, warn);
    }
    throw abortedOr(ctx, error);
  } finally {
    await admin.end().catch(() => {});
  }
}

function abortedOr(ctx: Ctx, error: unknown): unknown {
  if (ctx.options.signal?.aborted && !isPgBackupError(error, 'PG_ABORTED'))
    return new PgBackupError('PG_ABORTED', `the restore of ${ctx.target.database} was aborted`, { cause: error });
  return error;
}

/**
 * Renames the target away and the shadow into its place, in one transaction, after ending
 * the target's sessions. Applications reconnecting in between make the rename fail; it is
 * retried, then connections are refused for the last attempts.
 */
async function swapIn(ctx: Ctx, admin: pg.Client, shadow: string, damaged: string): Promise<boolean> {
  const db = ctx.target.database;
  const deadline = performance.now() + (ctx.options.swapTimeoutMs ?? 30_000);
  const exists = await databaseExists(admin, db);
  let blocked = false;
  try {
    for (let attempt = 1; ; attempt++) {
      if (exists)
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db]);
      try {
        await admin.query('BEGIN');
        if (exists) await admin.query(`ALTER DATABASE ${ident(db)} RENAME TO ${ident(damaged)}`);
        await admin.query(`ALTER DATABASE ${ident(shadow)} RENAME TO ${ident(db)}`);
        await admin.query('COMMIT');
        return exists;
      } catch (error) {
        await admin.query('ROLLBACK').catch(() => {});
        // 55006: object_in_use — a session (re)connected between the terminate and the rename.
        if ((error as { code?: string }).code !== '55006')
          throw new PgBackupError('PG_SWAP_FAILED', `could not rename ${db} and ${shadow}: ${messageOf(error)}; ${db} is unchanged`, {
            cause: error,
          });
        if (performance.now() > deadline)
          throw new PgBackupError(
            'PG_TARGET_BUSY',
            `sessions kept reconnecting to ${db} for ${(ctx.options.swapTimeoutMs ?? 30_000) / 1000} s, so it could not be swapped: stop the applications using it (the runbook's "stop the app" step) and retry; ${db} is unchanged`,
          );
        if (attempt >= 3 && !blocked && exists) {
          blocked = true;
          await admin.query(`ALTER DATABASE ${ident(db)} WITH ALLOW_CONNECTIONS false`);
        }
        await new Promise((r) => setTimeout(r, Math.min(50 * attempt, 500)));
      }
    }
  } finally {
    if (blocked) {
      // Whichever name the old database has now, it accepts connections again.
      const name = (await databaseExists(admin, damaged).catch(() => false)) ? damaged : db;
      await admin.query(`ALTER DATABASE ${ident(name)} WITH ALLOW_CONNECTIONS true`).catch(() => {});
    }
  }
}

async function dropAndRestore(ctx: Ctx, jobs: number): Promise<Partial<PostgresRestore>> {
  const { options, target, emit, warn } = ctx;
  const db = target.database;
  emit({ type: 'step', step: 'verify', message: `verifying backup ${ctx.manifest.id} in full before anything is dropped` });
  const verification = await verifyPostgresBackup({
    catalog: options.catalog,
    backup: ctx.manifest.id,
    keys: options.keys,
    level: 2,
    record: false,
    ...(options.binDir ? { binDir: options.binDir } : {}),
    ...signalOf(options),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
  });
  if (!verification.ok) throw verification.error as PgBackupError;

  const admin = await connect(ctx.maintenance);
  try {
    let snapshot: PostgresSnapshot | undefined;
    if (await databaseExists(admin, db)) {
      emit({ type: 'step', step: 'snapshot', message: `snapshotting the current ${db} before it is dropped` });
      snapshot = await snapshotCurrentState({
        url: target,
        catalog: options.catalog,
        keys: options.keys,
        reason: `before a drop-existing restore of backup ${ctx.manifest.id}`,
        ...(options.binDir ? { binDir: options.binDir } : {}),
        ...signalOf(options),
        ...(options.onEvent ? { onEvent: options.onEvent } : {}),
      });
      if (!snapshot.manifest)
        throw new PgBackupError(
          'PG_DUMP_FAILED',
          `the current ${db} could not be snapshotted (${snapshot.failures.map((f) => f.error).join('; ')}), so it was not dropped: restore without dropExisting (into a shadow, then swap) instead`,
          { details: { failures: snapshot.failures } },
        );
      throwIfAborted(options.signal, 'the restore');
      emit({ type: 'step', step: 'drop', message: `dropping ${db} (snapshot ${snapshot.manifest.id})` });
      await admin.query(`DROP DATABASE ${ident(db)} WITH (FORCE)`);
    }
    await createDatabaseFor(admin, db, ctx.record.database.properties, warn);
    try {
      const restored = await restoreArchiveInto(ctx, db, jobs);
      emit({ type: 'step', step: 'done', message: `${db} restored from backup ${ctx.manifest.id}` });
      return {
        ...(snapshot ? { snapshot } : {}),
        allowedErrors: restored.allowed,
        fingerprint: restored.fingerprint,
        ...(restored.staged ? { staged: restored.staged } : {}),
      };
    } catch (error) {
      const err = abortedOr(ctx, error);
      if (err instanceof PgBackupError && snapshot?.manifest)
        err.message = `${err.message}. ${db} was dropped before this restore; its snapshot is backup ${snapshot.manifest.id}`;
      throw err;
    }
  } finally {
    await admin.end().catch(() => {});
  }
}
