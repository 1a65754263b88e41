import { performance } from 'node:perf_hooks';
import {
  backupPostgres,
  describeVerification,
  isPgBackupError,
  type PgBackupEvent,
  type PgTarget,
  type PostgresVerification,
  pgTarget,
  RESTORE_ERROR_CLASSES,
  type RestoreErrorClass,
  resolveBackup,
  restorePostgres,
  type VerifyLevel,
  verifyPostgresBackup,
} from '@drkit/postgres-backup';
import { type Manifest, TIERS } from '@drkit/s3-store';
import { type CliIo, defineCommand } from '../command.js';
import { confirmDestructive, numbered } from '../confirm.js';
import { EXIT, UsageError } from '../errors.js';
import { eventPrinter, mb } from '../events.js';
import { KEY_FILE_HELP, KEY_SOURCES_HELP, loadCommandKeys, sealingKeyId } from '../keys.js';
import { guarded as guardedBy, scrub, urlSecrets } from '../secrets.js';
import { parseTier, withCatalog } from './backup.js';
import { seconds } from './seal.js';

const STORE_HELP = 'where backups live: file:///var/backups/drkit or s3://bucket/prefix?region=us-east-1 (default $DRKIT_STORE)';
const storeOption = { store: { type: 'string', value: 'URL', description: STORE_HELP } } as const;
const keyFileOption = { 'key-file': { type: 'string', value: 'FILE', description: KEY_FILE_HELP } } as const;

const DATABASE_HELP = `The database comes from --url or DATABASE_URL: postgres://user:password@host:5432/db
(?sslmode=require for TLS, ?host=/var/run/postgresql for a unix socket). The password is handed
to pg_dump/pg_restore through their environment and is never printed. pg_dump and pg_restore
of the server's major version are looked up in PG_BIN, /usr/lib/postgresql/<major>/bin, PATH.`;

// ---------------------------------------------------------------------------------------------
// Secrets (shared with the other commands: ../secrets.ts)

export { readLine } from '../confirm.js';
export { scrub, urlSecrets } from '../secrets.js';

/**
 * Runs `body`; a failure leaves with its message scrubbed of `secrets`, and an invalid URL or
 * option (PG_URL_INVALID, PG_OPTIONS_INVALID) becomes a usage error (exit 2).
 */
function guarded<T>(secrets: readonly string[], body: () => Promise<T>): Promise<T> {
  return guardedBy(secrets, (error) => isPgBackupError(error, 'PG_URL_INVALID') || isPgBackupError(error, 'PG_OPTIONS_INVALID'), body);
}

// ---------------------------------------------------------------------------------------------
// Options

function databaseUrl(value: string | undefined, io: CliIo, flag: string, envName: string, what: string): string {
  const url = value ?? io.env[envName];
  if (url === undefined || url.trim() === '')
    throw new UsageError(`no ${what}: pass ${flag} URL or set ${envName} (postgres://user:password@host:5432/database)`);
  return url.trim();
}

/** Parses a URL for the commands below; a bad one is a usage error whose message never repeats the password. */
function target(url: string, flag: string): PgTarget {
  try {
    return pgTarget(url);
  } catch (error) {
    if (isPgBackupError(error)) throw new UsageError(`${flag}: ${scrub(error.message, urlSecrets(url))}`);
    throw error;
  }
}

function parseInteger(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) < min || Number(value) > max)
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max} (got '${value}')`);
  return Number(value);
}

/** `--allow-errors missing-role,already-exists` (repeatable), checked against the known classes. */
export function parseAllowErrors(values: readonly string[] | undefined): RestoreErrorClass[] {
  const out: RestoreErrorClass[] = [];
  for (const name of (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim())) {
    if (name === '') continue;
    const known = RESTORE_ERROR_CLASSES.find((c) => c === name);
    if (!known) throw new UsageError(`--allow-errors: unknown restore error class '${name}' (use ${RESTORE_ERROR_CLASSES.join(', ')})`);
    if (!out.includes(known)) out.push(known);
  }
  return out;
}

function oneRef(positionals: string[], command: string): string {
  const ref = positionals[0];
  if (ref === undefined || ref.trim() === '') throw new UsageError(`'drkit ${command}' needs a backup id or 'latest'`);
  return ref.trim();
}

/** Where pg_dump and pg_restore are: PG_BIN of the command's environment, else the library's search. */
function binDirOf(io: CliIo): { binDir?: string } {
  return io.env.PG_BIN ? { binDir: io.env.PG_BIN } : {};
}

// ---------------------------------------------------------------------------------------------
// Output

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A snapshot taken before a drop-existing restore holds the state a recovery replaced: say so whenever one is picked. */
function snapshotNote(manifest: Manifest): string | undefined {
  if (manifest.labels?.snapshot !== 'true') return undefined;
  return `backup ${manifest.id} is a SNAPSHOT of the database as it was before a restore${manifest.labels.reason ? ` (${manifest.labels.reason})` : ''}, not a regular backup: name the backup id to use another`;
}

/**
 * Renders postgres-backup's events on stderr: every step, every warning, and progress at most
 * every `everyMs` (MB so far, of the total when known, and the table being processed). Secrets
 * are scrubbed; `skipSteps` are steps the command summarises itself.
 */
export function pgEventPrinter(
  io: CliIo,
  secrets: readonly string[],
  options: { everyMs?: number; skipSteps?: readonly string[] } = {},
): { onEvent: (event: PgBackupEvent) => void; warnings: Set<string> } {
  return eventPrinter<PgBackupEvent>(
    io,
    secrets,
    (event) => {
      const of = event.total !== undefined && event.operation !== 'dump' ? ` of ${mb(event.total)} stored` : '';
      return `${event.operation}: ${mb(event.bytes)}${of}${event.item ? `, table ${event.item}` : ''}`;
    },
    options,
  );
}

// ---------------------------------------------------------------------------------------------
// backup postgres

/** `drkit backup postgres`: pg_dump, sealed, into the store. */
export const backupPostgresCommand = defineCommand({
  path: ['backup', 'postgres'],
  summary: 'back up a PostgreSQL database: pg_dump streamed, sealed and stored, with a row-count fingerprint',
  options: {
    url: { type: 'string', value: 'URL', description: 'the database: postgres://user:password@host:5432/db (default $DATABASE_URL)' },
    tier: { type: 'string', value: 'TIER', description: `${TIERS.join(', ')} (default manual)` },
    compress: {
      type: 'string',
      value: 'zstd|pg_dump|none',
      description: "where the one compression happens: pg_dump's own gzip (default), zstd in the sealed stream, or none",
    },
    'compress-level': { type: 'string', value: 'N', description: 'its level: pg_dump gzip 0-9 (default 1), zstd 1-19 (default 3)' },
    'no-globals': { type: 'boolean', description: 'do not store roles and tablespaces (pg_dumpall --globals-only) beside the dump' },
    env: { type: 'string', value: 'NAME', description: 'the environment, recorded in the manifest (e.g. production)' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
pg_dump --format=custom streams through the sealed stream (AES-256-GCM, chunk by chunk) into
the store: no plaintext touches the disk. Exact row counts, sequence values and object counts
are read in the same snapshot as the dump and recorded in the manifest, so that a restore (and
'drkit verify postgres --level 3') can prove it got everything back. Roles and tablespaces are
stored as a companion postgres-globals backup unless --no-globals. The manifest is written
last: an interrupted backup leaves no backup behind.

The new backup's id goes to stdout; steps, progress (every 5 s), warnings and a summary go to
stderr.

${DATABASE_HELP}

${KEY_SOURCES_HELP}

Example:
  DATABASE_URL=postgres://backup@db.internal/app drkit backup postgres --store s3://backups/prod --tier daily --env production`,
  async run({ options, io, signal }) {
    const url = databaseUrl(options.url, io, '--url', 'DATABASE_URL', 'database');
    const secrets = urlSecrets(url);
    const db = target(url, '--url');
    const tier = parseTier(options.tier) ?? 'manual';
    const compression = (options.compress ?? 'pg_dump') as 'zstd' | 'pg_dump' | 'none';
    if (!['zstd', 'pg_dump', 'none'].includes(compression))
      throw new UsageError(`--compress must be zstd, pg_dump or none (got '${options.compress}')`);
    const compressLevel =
      compression === 'zstd'
        ? parseInteger(options['compress-level'], '--compress-level', 1, 19)
        : parseInteger(options['compress-level'], '--compress-level', 0, 9);
    const environment = options.env?.trim();
    if (environment !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(environment))
      throw new UsageError(`--env must be a name of letters, digits, '.', '_' and '-' (got '${options.env}')`);
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const started = performance.now();
    const printer = pgEventPrinter(io, secrets, { skipSteps: ['stored'] });
    const backup = await guarded(secrets, () =>
      withCatalog(options.store, io, (catalog) =>
        backupPostgres({
          url: db,
          catalog,
          keys,
          tier,
          compression,
          ...(compressLevel !== undefined ? { compressLevel } : {}),
          globals: options['no-globals'] !== true,
          ...(environment ? { environment } : {}),
          ...binDirOf(io),
          signal,
          onEvent: printer.onEvent,
        }),
      ),
    );
    const { manifest, fingerprint } = backup;
    io.stdout.write(`${manifest.id}\n`);
    const tables = Object.keys(fingerprint.tables).length;
    const rows = Object.values(fingerprint.tables).reduce((a, b) => a + b, 0);
    io.stderr.write(
      `drkit: ${scrub(
        `stored postgres backup ${manifest.id} of ${db.description}: ${plural(tables, 'table')} (${plural(rows, 'row')}), ` +
          `${manifest.plainSize ?? 0} bytes dumped, ${manifest.object.size} bytes stored, key ${sealingKeyId(keys)}, ${seconds(started)}` +
          (backup.globals ? `; roles and tablespaces in ${backup.globals.id}` : ''),
        secrets,
      )}\n`,
    );
    return EXIT.OK;
  },
});

// ---------------------------------------------------------------------------------------------
// restore postgres

interface RestorePlan {
  manifest: Manifest;
  db: PgTarget;
  dropExisting: boolean;
  keepDamaged: boolean;
  jobs: number;
  stageDir: string | undefined;
  allowErrors: readonly RestoreErrorClass[];
}

/** What a restore will do, in a few lines for people (no decryption needed to say it). */
export function describeRestore(p: RestorePlan): string[] {
  const name = p.db.database;
  const source = `backup ${p.manifest.id} (${p.manifest.createdAt}, of ${p.manifest.source.description})`;
  const how =
    p.jobs > 1
      ? `decrypting it to a private staging file in ${p.stageDir ?? 'the temp dir'} for pg_restore --jobs=${p.jobs} (removed afterwards)`
      : 'streaming it into pg_restore (nothing staged on disk)';
  const allowed = p.allowErrors.length > 0 ? `; restore errors of class ${p.allowErrors.join(', ')} are tolerated` : '';
  if (p.dropExisting)
    return [
      `verify ${source} in full (decrypt and decode it)`,
      `snapshot the current ${name} into the store, then terminate its sessions, DROP DATABASE ${name} and create it empty`,
      `restore the backup into ${name} on ${p.db.host}:${p.db.port}, ${how}${allowed}`,
      `check ${name} against the backup's fingerprint (row counts, sequence values, object counts)`,
    ];
  return [
    `restore ${source} into a new shadow database beside ${name} on ${p.db.host}:${p.db.port}, ${how}${allowed}`,
    `check the shadow against the backup's fingerprint (row counts, sequence values, object counts); on any failure it is dropped and ${name} is left as it was`,
    `terminate the sessions of ${name} and swap the shadow in by renaming; the current ${name} is ${p.keepDamaged ? `kept as ${name}_damaged_<time>` : 'then dropped'}`,
  ];
}

/** `drkit restore postgres`: restore beside the database, verify, swap in. */
export const restorePostgresCommand = defineCommand({
  path: ['restore', 'postgres'],
  summary: 'restore a PostgreSQL backup into a shadow database, check it, then swap it in (needs --yes or confirmation)',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    url: {
      type: 'string',
      value: 'URL',
      description: 'the database to restore: postgres://user:password@host:5432/db (default $DATABASE_URL)',
    },
    'drop-existing': {
      type: 'boolean',
      description: 'snapshot, drop and recreate the database, then restore into it (instead of restoring beside it and swapping)',
    },
    'drop-damaged': {
      type: 'boolean',
      description: 'after the swap, drop the replaced database instead of keeping it as <db>_damaged_<time>',
    },
    'dry-run': { type: 'boolean', description: 'decrypt and decode the backup and print the plan; change nothing' },
    jobs: {
      type: 'string',
      value: 'N',
      description: 'parallel pg_restore jobs (default 1); above 1 the decrypted dump is staged to a file',
    },
    'stage-dir': {
      type: 'string',
      value: 'DIR',
      description: 'where to stage for --jobs above 1 (default the temp dir; needs room for the dump)',
    },
    'allow-errors': {
      type: 'string',
      value: 'CLASS[,CLASS]',
      multiple: true,
      description: `pg_restore errors that do not fail the restore: ${RESTORE_ERROR_CLASSES.join(', ')}`,
    },
    yes: { type: 'boolean', description: 'restore without asking (needed when not at a terminal)' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
By default nothing is destroyed before the restore is proven: the backup is restored into a
shadow database on the same server, checked against the backup's fingerprint (exact row counts,
sequence values, object counts), and only then swapped in by renaming, after terminating the
database's sessions. The replaced database is kept as <db>_damaged_<time> (--drop-damaged drops
it). A tampered backup, a wrong key, a restore error or a fingerprint mismatch drops the shadow
and leaves the database as it was. The user needs CREATEDB and must be able to terminate the
database's sessions.

--drop-existing follows the literal order instead: verify the backup in full, snapshot the
current database into the store (a normal backup labelled snapshot), drop it, recreate it and
restore into it. Use it when the server has no room for a second copy.

'latest' is the newest complete postgres backup whose verification did not fail.

Restoring needs --yes; at a terminal without it, the plan is shown and you are asked to type
the database's name. Otherwise the command refuses (exit 3) and changes nothing. --dry-run needs
no confirmation: it decrypts and decodes the whole backup (verification level 2) and prints the
plan.

${DATABASE_HELP}

${KEY_SOURCES_HELP}

Examples:
  drkit restore postgres latest --url postgres://admin@db.internal/app --dry-run
  drkit restore postgres 20250301T020000123Z-a1b2c3 --url postgres://admin@db.internal/app --yes --allow-errors missing-role`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals, 'restore postgres');
    const url = databaseUrl(options.url, io, '--url', 'DATABASE_URL', 'database to restore');
    const secrets = urlSecrets(url);
    const db = target(url, '--url');
    const jobs = parseInteger(options.jobs, '--jobs', 1, 64) ?? 1;
    const allowErrors = parseAllowErrors(options['allow-errors']);
    const dropExisting = options['drop-existing'] === true;
    const dryRun = options['dry-run'] === true;
    const keepDamaged = options['drop-damaged'] !== true;
    if (dropExisting && !keepDamaged)
      throw new UsageError(
        '--drop-damaged applies to a swap; --drop-existing drops the database itself (its snapshot is kept in the store)',
      );
    const stageDir = options['stage-dir']?.trim() || undefined;
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const printer = pgEventPrinter(io, secrets);
    const out = (text: string) => io.stdout.write(scrub(text, secrets));

    return guarded(secrets, () =>
      withCatalog(options.store, io, async (catalog) => {
        const manifest = await resolveBackup(catalog, ref);
        const note = snapshotNote(manifest);
        if (note) io.stderr.write(`drkit: warning: ${scrub(note, secrets)}\n`);
        const plan: RestorePlan = { manifest, db, dropExisting, keepDamaged, jobs, stageDir, allowErrors };
        if (
          !dryRun &&
          options.yes !== true &&
          !(await confirmDestructive({
            io,
            signal,
            secrets,
            action: `restoring ${db.description}`,
            steps: describeRestore(plan),
            hint: 'Pass --yes to restore, or --dry-run to check the backup and see the plan.',
            what: 'the name of the database',
            expected: db.database,
          }))
        )
          return EXIT.REFUSED;

        const result = await restorePostgres({
          catalog,
          backup: manifest.id,
          target: db,
          keys,
          dropExisting,
          keepDamaged,
          jobs,
          ...(stageDir ? { stageDir } : {}),
          allowErrors,
          dryRun,
          ...binDirOf(io),
          signal,
          onEvent: printer.onEvent,
        });
        for (const e of result.allowedErrors) {
          const message = `allowed restore error (${e.class}): ${e.message}`;
          if (!printer.warnings.has(message)) io.stderr.write(`drkit: warning: ${scrub(message, secrets)}\n`);
        }
        const duration = `${(result.durationMs / 1000).toFixed(2)} s`;

        if (result.mode === 'dry-run') {
          // The library plans a dry run as a swap; with --drop-existing, say what that would do.
          const steps = dropExisting ? describeRestore(plan) : result.plan;
          out(`dry run: nothing was changed. Restoring backup ${manifest.id} into ${db.description} would:\n${numbered(steps)}`);
          if (result.verification) out(`the backup decrypts and decodes:\n${describeVerification(result.verification)}\n`);
          io.stderr.write(scrub(`drkit: dry run of the restore of ${manifest.id} into ${db.description}: ok, ${duration}\n`, secrets));
          return EXIT.OK;
        }

        out(`restored ${db.description} from backup ${manifest.id} (${manifest.createdAt}) in ${duration}\n`);
        if (result.damaged) out(`the replaced database is kept as ${result.damaged}\n`);
        else if (!dropExisting)
          out(keepDamaged ? `${db.database} did not exist before: nothing was replaced\n` : 'the replaced database was dropped\n');
        if (result.snapshot?.manifest)
          out(
            `snapshot of the dropped ${db.database}: backup ${result.snapshot.manifest.id}${result.snapshot.complete ? '' : ` (incomplete: ${result.snapshot.excludedTableData.length} table(s) without data)`}\n`,
          );
        if (result.staged) out(`staged the decrypted dump in ${result.staged} for ${jobs} parallel jobs (removed)\n`);
        if (result.fingerprint) {
          const tables = Object.keys(result.fingerprint.tables).length;
          const rows = Object.values(result.fingerprint.tables).reduce((a, b) => a + b, 0);
          out(`checked against the backup's fingerprint: ${plural(tables, 'table')} (${plural(rows, 'row')}) match\n`);
        }
        if (result.allowedErrors.length > 0) out(`${result.allowedErrors.length} restore error(s) were allowed (see the warnings)\n`);
        return EXIT.OK;
      }),
    );
  },
});

// ---------------------------------------------------------------------------------------------
// verify postgres

/** `drkit verify postgres`: L1 stored bytes, L2 decrypt and decode, L3 restore and compare. */
export const verifyPostgresCommand = defineCommand({
  path: ['verify', 'postgres'],
  summary: 'verify a PostgreSQL backup: 1 stored bytes, 2 decrypt and decode, 3 restore into a scratch database and compare',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    level: { type: 'string', value: '1|2|3', description: 'how deep (default 2); each level includes the ones below' },
    scratch: {
      type: 'string',
      value: 'URL',
      description:
        'level 3: a database on the server to restore on, e.g. postgres://verifier:pw@scratch:5432/postgres (default $DRKIT_SCRATCH_DATABASE_URL)',
    },
    'no-record': { type: 'boolean', description: 'do not record the outcome in the manifest' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
Levels, each including the ones below:
  1  the stored object's size and SHA-256 against its manifest (no key needed)
  2  decrypt and authenticate every chunk, and decode the whole archive with pg_restore (no database)
  3  restore into a scratch database created beside --scratch (and dropped afterwards), and compare
     exact row counts, sequence values and object counts with the fingerprint taken at backup time;
     missing roles are tolerated (a scratch server need not have production's roles)

The outcome is recorded in the manifest (passed or failed, with the level); a failed backup is
never chosen as 'latest'. Problems of the verifier itself (a wrong key, an unreachable scratch
server) are reported but not recorded. Exit 0 when the backup passed, 1 when it failed or could
not be verified.

${KEY_SOURCES_HELP}

Example:
  drkit verify postgres latest --level 3 --scratch postgres://verifier@scratch-db.internal/postgres`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals, 'verify postgres');
    const level = (parseInteger(options.level, '--level', 1, 3) ?? 2) as VerifyLevel;
    let scratchUrl: string | undefined;
    if (level === 3) {
      scratchUrl = options.scratch ?? io.env.DRKIT_SCRATCH_DATABASE_URL;
      if (scratchUrl === undefined || scratchUrl.trim() === '')
        throw new UsageError(
          'level 3 restores the backup into a scratch database: pass --scratch URL or set DRKIT_SCRATCH_DATABASE_URL (a database on the server to use, e.g. postgres://verifier@scratch:5432/postgres)',
        );
      scratchUrl = scratchUrl.trim();
    }
    const secrets = urlSecrets(scratchUrl);
    const scratch = scratchUrl ? target(scratchUrl, '--scratch') : undefined;
    const keys = level >= 2 ? await loadCommandKeys(options['key-file'], io.env) : undefined;
    const printer = pgEventPrinter(io, secrets);
    const started = performance.now();
    const result: PostgresVerification = await guarded(secrets, () =>
      withCatalog(options.store, io, (catalog) =>
        verifyPostgresBackup({
          catalog,
          backup: ref,
          level,
          ...(keys ? { keys } : {}),
          ...(scratch ? { scratch } : {}),
          record: options['no-record'] !== true,
          ...binDirOf(io),
          signal,
          onEvent: printer.onEvent,
        }),
      ),
    );
    const note = snapshotNote(result.backup);
    if (note) io.stderr.write(`drkit: warning: ${scrub(note, secrets)}\n`);
    io.stdout.write(`${scrub(describeVerification(result), secrets)}\n`);
    const recorded = options['no-record'] === true ? 'not recorded' : 'recorded in the manifest';
    if (!result.ok) {
      const code = result.error?.code ?? 'PG_BACKUP_INVALID';
      const why = result.error?.message ?? result.checks.find((c) => !c.ok)?.detail ?? 'verification failed';
      io.stderr.write(
        `drkit: error ${code}: ${scrub(why, secrets)}; backup ${result.backup.id} FAILED verification (${recorded}): do not restore it, use another backup\n`,
      );
      return EXIT.FAILED;
    }
    io.stderr.write(
      `drkit: verified postgres backup ${result.backup.id} up to level ${level}: passed (${recorded}), ${seconds(started)}\n`,
    );
    return EXIT.OK;
  },
});
