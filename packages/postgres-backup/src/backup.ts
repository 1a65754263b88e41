import { type OpenKeys, seal, sealingKeyId } from '@drkit/crypto-stream';
import type { Catalog, Manifest, Tier } from '@drkit/s3-store';
import type pg from 'pg';
import { POSTGRES_GLOBALS_KIND, POSTGRES_KIND, type PostgresFingerprintRecord } from './archive.js';
import { connect, connectionError, libpqEnv, type PgTarget, pgTarget } from './connection.js';
import { messageOf, PgBackupError, signalOf, throwIfAborted } from './errors.js';
import { emitter, type PgBackupEventListener, throttledProgress } from './events.js';
import { type FingerprintFailure, readDatabaseProperties, readSequences, takeFingerprint } from './fingerprint.js';
import { checkClientVersion, errorLines, findTool, prefetchTool, startTool, type ToolInfo, type ToolProcess } from './tools.js';

/** The version drkit records as the tool of its manifests. */
export const DRKIT_VERSION = '0.1.0';

/** pg_dump's gzip level unless the caller picks one (see {@link BackupPostgresOptions.compressLevel}). */
export const DEFAULT_PG_DUMP_LEVEL = 1;

/** Keys that can seal: a keyring (its current key seals), one key, or a passphrase. */
export type SealKeys = OpenKeys;

/** Options of {@link backupPostgres}. */
export interface BackupPostgresOptions {
  /** The database: `postgres://user:password@host:5432/db` (the password never leaves this process's memory except to pg_dump's environment). */
  url: string | PgTarget;
  /** Where the backup goes. */
  catalog: Catalog;
  keys: SealKeys;
  /** @default "manual" */
  tier?: Tier;
  /**
   * Where the one compression happens. `pg_dump` (default): pg_dump's own gzip inside its
   * archive, and none in the sealed stream. `zstd`: pg_dump writes its archive uncompressed
   * and the sealed stream compresses it with zstd — a third of the size, but measured at
   * pgbench scale 50 to cost ~20 MB more peak memory and slower restores (Node decompresses).
   * `none`: neither.
   */
  compression?: 'zstd' | 'pg_dump' | 'none';
  /**
   * Level of that compression: pg_dump's gzip 0–9 (default 1), zstd 1–19 (default 3).
   * pg_dump's gzip runs in pg_dump's single thread and is the dump's critical path: at level 1
   * a 2M-row orders table dumped in 2.3 s instead of 4.9 s (pg_dump's own default, 6) for a
   * dump 13% larger (92 MB instead of 81), and restores are not slower (inflate costs the same).
   */
  compressLevel?: number;
  /** Also store roles and tablespaces (`pg_dumpall --globals-only`) as a companion artifact. @default true */
  globals?: boolean;
  /** Tables whose data is left out (pg_dump `--exclude-table-data` patterns); their definitions stay. */
  excludeTableData?: string[];
  /** Recorded in the manifest. */
  environment?: string;
  labels?: Record<string, string>;
  /** Where pg_dump lives. @default the server's major under /usr/lib/postgresql, PG_BIN, PATH */
  binDir?: string;
  signal?: AbortSignal;
  onEvent?: PgBackupEventListener;
  /** @internal best-effort snapshots: a table that cannot be counted is recorded, not fatal. */
  bestEffortFingerprint?: boolean;
}

/** The outcome of {@link backupPostgres}. */
export interface PostgresBackup {
  manifest: Manifest;
  /** The companion roles/tablespaces artifact, when one was stored. */
  globals?: Manifest;
  fingerprint: PostgresFingerprintRecord;
  warnings: string[];
}

/** What the server says about itself. */
export interface ServerInfo {
  version: string;
  major: number;
  databaseSize: number;
}

/** Reads the server's version and the database's size. */
export async function serverInfo(client: pg.Client): Promise<ServerInfo> {
  const row = (
    await client.query<{ version: string; num: string; size: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num,
              pg_database_size(current_database())::text AS size`,
    )
  ).rows[0] as { version: string; num: string; size: string };
  return { version: row.version.split(' ')[0] ?? row.version, major: Math.floor(Number(row.num) / 10000), databaseSize: Number(row.size) };
}

/**
 * Backs up one database: `pg_dump --format=custom` streamed from its stdout through the sealed
 * stream (AES-256-GCM, chunk by chunk) into the catalog — no plaintext touches the disk, and
 * there is one compression, not two (by default pg_dump's own; a second compression over
 * compressed data only costs
 * CPU). The fingerprint (exact row counts, sequence values, object counts) is read in the
 * snapshot pg_dump dumps (an exported REPEATABLE READ snapshot), at the same time. The manifest
 * is written last, once the stored bytes were read back and hashed: an interrupted backup
 * leaves no backup behind.
 *
 * @throws PgBackupError PG_UNREACHABLE, PG_AUTH_FAILED, PG_DATABASE_MISSING, PG_CLIENT_TOO_OLD,
 *   PG_TOOL_MISSING, PG_DUMP_FAILED, PG_ABORTED; StoreError from the store
 */
export async function backupPostgres(options: BackupPostgresOptions): Promise<PostgresBackup> {
  const target = typeof options.url === 'string' ? pgTarget(options.url) : options.url;
  const emit = emitter(options.onEvent);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    emit({ type: 'warning', message });
  };
  const compression = options.compression ?? 'pg_dump';
  if (!['zstd', 'pg_dump', 'none'].includes(compression))
    throw new PgBackupError('PG_OPTIONS_INVALID', `compression must be zstd, pg_dump or none, got ${String(options.compression)}`);
  const maxLevel = compression === 'zstd' ? 19 : 9;
  if (
    options.compressLevel !== undefined &&
    !(
      Number.isInteger(options.compressLevel) &&
      options.compressLevel >= (compression === 'zstd' ? 1 : 0) &&
      options.compressLevel <= maxLevel
    )
  )
    throw new PgBackupError(
      'PG_OPTIONS_INVALID',
      `compressLevel for ${compression} must be an integer from ${compression === 'zstd' ? 1 : 0} to ${maxLevel}, got ${options.compressLevel}`,
    );
  const level = options.compressLevel ?? (compression === 'pg_dump' ? DEFAULT_PG_DUMP_LEVEL : undefined);
  throwIfAborted(options.signal, 'the backup');

  emit({ type: 'step', step: 'connect', message: `connecting to ${target.description}` });
  prefetchTool('pg_dump', options);
  if (options.globals !== false) prefetchTool('pg_dumpall', options);
  const client = await connect(target);
  let inTransaction = false;
  let dumping: ToolProcess | undefined;
  let globalsDone: Promise<Manifest | undefined> = Promise.resolve(undefined);
  try {
    const server = await serverInfo(client);
    const pgDump = await findTool('pg_dump', { binDir: options.binDir, serverMajor: server.major });
    checkClientVersion(pgDump, 'pg_dump', server.major, server.version);
    const properties = await readDatabaseProperties(client, target.database);

    // Roles and tablespaces go beside the dump, not before it: off the critical path.
    if (options.globals !== false) {
      emit({ type: 'step', step: 'globals', message: 'dumping roles and tablespaces (pg_dumpall --globals-only)' });
      globalsDone = backupGlobals(target, options, server, warn);
      globalsDone.catch(() => {});
    }
    let globals: Manifest | undefined;

    // One snapshot for pg_dump and for the fingerprint: the counts describe exactly the dump.
    // The counts run beside pg_dump on the same cores: parallel workers and JIT compilation
    // would take CPU from the dump (measured: ~10% slower at pgbench scale 50) to save little.
    // One round trip for all four statements: everything before pg_dump starts is added to the
    // backup's wall time.
    inTransaction = true;
    const opened = (await client.query(
      `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off;
       SELECT pg_export_snapshot() AS id`,
    )) as unknown as pg.QueryResult<{ id: string }>[];
    const snapshot = opened.at(-1)?.rows[0]?.id as string;

    // Sequences are not frozen by the snapshot: read them before pg_dump does (see readSequences).
    const sequenceFailures: FingerprintFailure[] = [];
    const sequences = await readSequences(client, { bestEffort: options.bestEffortFingerprint === true, failures: sequenceFailures });
    // The counts are sent before pg_dump starts: the server begins them while pg_dump is still
    // starting and reading the catalogs, when it has a core to spare.
    let fingerprintFailures: FingerprintFailure[] = [];
    const fingerprinting = takeFingerprint(client, { bestEffort: options.bestEffortFingerprint === true, sequences }).then((f) => {
      fingerprintFailures = [...sequenceFailures, ...f.failures];
      return f;
    });
    // Surfaced through beforeManifest; never an unhandled rejection if the dump fails first.
    fingerprinting.catch(() => {});
    emit({
      type: 'step',
      step: 'dump',
      message: `dumping ${target.description} (${(server.databaseSize / 1e6).toFixed(1)} MB on disk) with pg_dump ${pgDump.version}`,
    });
    const args = [
      '--format=custom',
      '--verbose',
      '--no-password',
      `--snapshot=${snapshot}`,
      `--compress=${compression === 'pg_dump' ? level : 0}`,
      ...(options.excludeTableData ?? []).map((pattern) => `--exclude-table-data=${pattern}`),
    ];
    const progress = throttledProgress(emit, 'dump');
    const dump = startTool(pgDump.path, args, {
      env: libpqEnv(target),
      ...signalOf(options),
      onLine: (line) => {
        const m = /dumping contents of table "([^"]+)"/.exec(line);
        if (m) progress.item(m[1] as string);
      },
    });
    dumping = dump;

    async function* dumpBytes(): AsyncGenerator<Buffer> {
      let completed = false;
      try {
        for await (const chunk of dump.child.stdout as AsyncIterable<Buffer>) {
          progress.bytes(chunk.length);
          yield chunk;
        }
        const exit = await dump.exited;
        if (exit.code !== 0) throw dumpError(target, pgDump, dump.stderrLines, exit, options.signal);
        completed = true;
      } finally {
        // The consumer stopped early (a store failure, an abort): pg_dump must not linger.
        if (!completed) dump.child.kill('SIGTERM');
      }
    }

    let plainSize = 0;
    const keyId = sealingKeyId(options.keys);
    let fingerprint: PostgresFingerprintRecord | undefined;
    const manifest = await options.catalog.put({
      kind: POSTGRES_KIND,
      tier: options.tier ?? 'manual',
      source: {
        description: target.description,
        host: target.host,
        ...(options.environment ? { environment: options.environment } : {}),
      },
      tool: { name: 'drkit', version: DRKIT_VERSION },
      server: { name: 'PostgreSQL', version: server.version },
      // pg_dump compresses (gzip) inside its archive; the sealed stream adds none on top.
      compression: compression === 'zstd' ? 'zstd' : compression === 'pg_dump' && level !== 0 ? 'gzip' : 'none',
      encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId },
      body: seal(dumpBytes(), {
        key: options.keys,
        compression: compression === 'zstd' ? 'zstd' : 'none',
        ...(compression === 'zstd' && level !== undefined ? { level } : {}),
        ...signalOf(options),
        onProgress: (p) => {
          plainSize = p.plainBytes;
        },
      }),
      ...signalOf(options),
      beforeManifest: async () => {
        const f = await fingerprinting;
        globals = await globalsDone;
        fingerprint = {
          tables: f.tables,
          sequences: f.sequences,
          objects: f.objects,
          database: { name: target.database, sizeBytes: server.databaseSize, ...(properties ? { properties } : {}) },
          dump: {
            tool: 'pg_dump',
            version: pgDump.version,
            format: 'custom',
            compression,
            ...(level !== undefined ? { compressLevel: level } : {}),
          },
          ...(globals ? { globals: globals.id } : {}),
          ...(fingerprintFailures.length > 0 ? { failures: fingerprintFailures } : {}),
          ...(options.excludeTableData?.length ? { excludedTableData: options.excludeTableData } : {}),
        };
        return {
          plainSize,
          fingerprint: fingerprint as unknown as Record<string, unknown>,
          labels: { database: target.database, ...(globals ? { globals: globals.id } : {}), ...options.labels },
        };
      },
    });
    progress.done();
    await client.query('COMMIT');
    inTransaction = false;
    emit({
      type: 'step',
      step: 'stored',
      message: `stored backup ${manifest.id}: ${Object.keys((fingerprint as PostgresFingerprintRecord).tables).length} tables, ${plainSize} bytes dumped, ${manifest.object.size} bytes stored`,
    });
    return { manifest, ...(globals ? { globals } : {}), fingerprint: fingerprint as PostgresFingerprintRecord, warnings };
  } catch (error) {
    // No dump, no backup: its companion globals artifact goes too.
    const orphan = await globalsDone.catch(() => undefined);
    if (orphan) await options.catalog.delete(orphan).catch(() => {});
    if (options.signal?.aborted && !(error instanceof PgBackupError && error.code === 'PG_ABORTED'))
      throw new PgBackupError('PG_ABORTED', `the backup of ${target.description} was aborted; no backup was recorded`, { cause: error });
    // The store reports a failed source as its own I/O error; pg_dump's failure is the news.
    throw ownCause(error) ?? error;
  } finally {
    // The store may fail before it read a byte of the dump: pg_dump must not linger.
    if (dumping && dumping.child.exitCode === null && dumping.child.signalCode === null) dumping.child.kill('SIGTERM');
    if (inTransaction) await client.query('ROLLBACK').catch(() => {});
    await client.end().catch(() => {});
  }
}

/** Turns a failed pg_dump into one error: connection problems keep their own codes. */
function dumpError(
  target: PgTarget,
  tool: ToolInfo,
  lines: readonly string[],
  exit: { code: number; signal: NodeJS.Signals | null },
  signal: AbortSignal | undefined,
): PgBackupError {
  if (signal?.aborted) return new PgBackupError('PG_ABORTED', `the backup of ${target.description} was aborted; no backup was recorded`);
  const text = lines.join('\n');
  if (
    /connection to server .* failed|could not connect|password authentication failed|does not exist\s*$/im.test(text) &&
    !/Dumping the contents/i.test(text)
  )
    return connectionError(target, new Error(errorLines(lines)[0] ?? 'pg_dump could not connect'), text);
  if (/server version mismatch|aborting because of server version mismatch/i.test(text)) {
    const server = /server version: ([\d.]+)/i.exec(text)?.[1] ?? 'newer';
    return new PgBackupError(
      'PG_CLIENT_TOO_OLD',
      `pg_dump ${tool.version} is older than the server (${server}): install the postgresql-client package of the server's major version and pass binDir`,
    );
  }
  const failedTable = /Command was: COPY (\S+)/.exec(text)?.[1];
  return new PgBackupError(
    'PG_DUMP_FAILED',
    `pg_dump of ${target.description} failed (${exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`}): ${errorLines(lines).join(' | ') || 'no error message'}; no backup was recorded`,
    { details: { stderr: errorLines(lines), ...(failedTable ? { table: failedTable } : {}) } },
  );
}

/** `pg_dumpall --globals-only` into its own artifact; a non-superuser gets roles without passwords. */
async function backupGlobals(
  target: PgTarget,
  options: BackupPostgresOptions,
  server: ServerInfo,
  warn: (message: string) => void,
): Promise<Manifest | undefined> {
  const tool = await findTool('pg_dumpall', { binDir: options.binDir, serverMajor: server.major });
  checkClientVersion(tool, 'pg_dumpall', server.major, server.version);
  const attempt = async (extra: string[]) => {
    const proc = startTool(tool.path, ['--globals-only', '--no-password', `--database=${target.database}`, ...extra], {
      env: libpqEnv(target),
      ...signalOf(options),
    });
    const chunks: Buffer[] = [];
    for await (const chunk of proc.child.stdout as AsyncIterable<Buffer>) chunks.push(chunk);
    const exit = await proc.exited;
    return { ok: exit.code === 0, sql: Buffer.concat(chunks), lines: proc.stderrLines };
  };
  let result = await attempt([]);
  let withPasswords = true;
  if (!result.ok && /permission denied/i.test(result.lines.join('\n'))) {
    // Managed servers (RDS, Cloud SQL) do not let anyone read pg_authid.
    result = await attempt(['--no-role-passwords']);
    withPasswords = false;
  }
  if (!result.ok) {
    warn(
      `roles and tablespaces were not backed up (pg_dumpall failed: ${errorLines(result.lines).join(' | ')}); the database dump itself is unaffected`,
    );
    return undefined;
  }
  if (!withPasswords)
    warn('roles were backed up without their passwords (this user cannot read pg_authid): set them again after a restore to a new server');
  try {
    return await options.catalog.put({
      kind: POSTGRES_GLOBALS_KIND,
      tier: options.tier ?? 'manual',
      source: {
        description: `${target.description} (globals)`,
        host: target.host,
        ...(options.environment ? { environment: options.environment } : {}),
      },
      tool: { name: 'drkit', version: DRKIT_VERSION },
      server: { name: 'PostgreSQL', version: server.version },
      compression: 'zstd',
      encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: sealingKeyId(options.keys) },
      plainSize: result.sql.length,
      body: seal([result.sql], { key: options.keys, compression: 'zstd' }),
      labels: { database: target.database, passwords: withPasswords ? 'included' : 'omitted' },
      ...signalOf(options),
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    warn(`roles and tablespaces were not stored: ${messageOf(error)}`);
    return undefined;
  }
}

/** The PgBackupError somewhere in `error`'s cause chain (a store wraps what its source threw). */
function ownCause(error: unknown): PgBackupError | undefined {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof PgBackupError) return e;
  return undefined;
}
