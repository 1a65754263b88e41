// Point-in-time recovery commands: base backups, restore to a moment, and the WAL archive's
// verification and retention. wal-push and wal-fetch themselves are in ./wal.ts.
import { fileURLToPath } from 'node:url';
import {
  backupBase,
  pruneWal,
  type RecoveryTarget,
  restorePointInTime,
  verifyWalArchive,
  type WalArchiveReport,
} from '@drkit/postgres-backup';
import { TIERS } from '@drkit/s3-store';
import { type CliIo, defineCommand } from '../command.js';
import { EXIT, UsageError } from '../errors.js';
import { KEY_FILE_HELP, KEY_SOURCES_HELP, loadCommandKeys } from '../keys.js';
import { scrub, urlSecrets } from '../secrets.js';
import { parseTier, withCatalog } from './backup.js';
import { pgEventPrinter } from './postgres.js';
import { seconds } from './seal.js';

const storeOption = {
  store: { type: 'string', value: 'URL', description: 'where backups and the WAL archive live (default $DRKIT_STORE)' },
} as const;
const keyFileOption = { 'key-file': { type: 'string', value: 'FILE', description: KEY_FILE_HELP } } as const;

/** The drkit binary PostgreSQL runs as restore_command: this installation's own. */
function drkitBin(): string {
  return fileURLToPath(new URL('../../dist/bin.js', import.meta.url));
}

/** A shell word: single-quoted. */
function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The restore_command of a recovery through this installation's drkit, and the environment it
 * needs (keys and store credentials go through the server's environment, never into
 * postgresql.auto.conf).
 */
export function walFetchCommand(
  store: string,
  keyFile: string | undefined,
  env: NodeJS.ProcessEnv,
): { command: string; env: Record<string, string> } {
  const pass: Record<string, string> = {};
  for (const name of [
    'DRKIT_KEY_FILE',
    'DRKIT_KEY',
    'DRKIT_OLD_KEYS',
    'DRKIT_PASSPHRASE',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_REGION',
    'AWS_DEFAULT_REGION',
    'AWS_ENDPOINT_URL',
    'AWS_ENDPOINT_URL_S3',
    'AWS_PROFILE',
  ]) {
    const value = env[name];
    if (value) pass[name] = value;
  }
  const command = [
    quote(process.execPath),
    quote(drkitBin()),
    'wal-fetch',
    '--store',
    quote(store),
    ...(keyFile ? ['--key-file', quote(keyFile)] : []),
    '%f',
    '%p',
  ].join(' ');
  return { command, env: pass };
}

function storeUrl(value: string | undefined, io: CliIo): string {
  const url = value ?? io.env.DRKIT_STORE;
  if (!url) throw new UsageError('no store: pass --store URL or set DRKIT_STORE');
  return url;
}

/** `drkit backup postgres-base`. */
export const backupBaseCommand = defineCommand({
  path: ['backup', 'postgres-base'],
  summary: 'take a physical base backup (pg_basebackup, WAL included) for point-in-time recovery',
  options: {
    url: {
      type: 'string',
      value: 'URL',
      description: 'a user with REPLICATION: postgres://user:password@host:5432/db (default $DATABASE_URL)',
    },
    tier: { type: 'string', value: 'TIER', description: `${TIERS.join(', ')} (default manual)` },
    'max-rate': { type: 'string', value: 'RATE', description: "throttle the server's reads, e.g. 50M (pg_basebackup --max-rate)" },
    env: { type: 'string', value: 'NAME', description: 'the environment, recorded in the manifest' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `pg_basebackup --format=tar --wal-method=fetch streams through the sealed stream into the
store. With the server archiving its WAL ('drkit wal-push %p' as archive_command) it is the
starting point of 'drkit restore point-in-time'. Prints the new backup's id on stdout.

${KEY_SOURCES_HELP}`,
  async run({ options, io, signal }) {
    const url = options.url ?? io.env.DATABASE_URL;
    if (!url) throw new UsageError('no database: pass --url URL or set DATABASE_URL');
    const secrets = urlSecrets(url);
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const tier = parseTier(options.tier) ?? 'manual';
    const started = performance.now();
    const printer = pgEventPrinter(io, secrets);
    const { manifest, base } = await withCatalog(options.store, io, (catalog) =>
      backupBase({
        url,
        catalog,
        keys,
        tier,
        signal,
        onEvent: printer.onEvent,
        ...(options['max-rate'] ? { maxRate: options['max-rate'] } : {}),
        ...(options.env ? { environment: options.env } : {}),
        ...(io.env.PG_BIN ? { binDir: io.env.PG_BIN } : {}),
      }),
    );
    io.stdout.write(`${manifest.id}\n`);
    io.stderr.write(
      `drkit: ${scrub(`base backup ${manifest.id}: ${base.startLsn} to ${base.stopLsn} on timeline ${base.timeline}, system ${base.systemId}, ${manifest.object.size} bytes stored, ${seconds(started)}`, secrets)}\n`,
    );
    return EXIT.OK;
  },
});

/** `--to`, `--lsn`, `--latest`: exactly one. */
export function parseRecoveryTarget(options: {
  to?: string | undefined;
  lsn?: string | undefined;
  latest?: boolean | undefined;
}): RecoveryTarget {
  const given = [options.to !== undefined, options.lsn !== undefined, options.latest === true].filter(Boolean).length;
  if (given !== 1) throw new UsageError('say where to stop with exactly one of --to TIME, --lsn LSN or --latest');
  if (options.latest) return 'latest';
  if (options.lsn !== undefined) {
    if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(options.lsn))
      throw new UsageError(`--lsn must be a WAL position like 0/3000028 (got '${options.lsn}')`);
    return { lsn: options.lsn };
  }
  const text = options.to as string;
  // A time without a zone would be read in this host's zone: in an incident, say which.
  if (!/(Z|[+-]\d\d:?\d\d)$/i.test(text.trim()))
    throw new UsageError(`--to needs a time with its zone, e.g. 2026-11-22T10:00:00Z (got '${text}')`);
  const time = new Date(text.trim());
  if (Number.isNaN(time.getTime())) throw new UsageError(`--to is not a time: '${text}' (use ISO 8601, e.g. 2026-11-22T10:00:00Z)`);
  return { time };
}

/** `drkit restore point-in-time`. */
export const restorePointInTimeCommand = defineCommand({
  path: ['restore', 'point-in-time'],
  summary: 'recover PostgreSQL to a moment into a new data directory (base backup + archived WAL)',
  options: {
    to: { type: 'string', value: 'TIME', description: 'stop before the first transaction committed at or after TIME (ISO 8601 with zone)' },
    lsn: { type: 'string', value: 'LSN', description: 'stop at this WAL position instead' },
    latest: { type: 'boolean', description: 'replay everything the archive holds' },
    into: { type: 'string', value: 'DIR', description: 'the new data directory (absent or empty)' },
    port: { type: 'string', value: 'PORT', description: 'port of the recovered server on 127.0.0.1 (default: a free one)' },
    url: {
      type: 'string',
      value: 'URL',
      description:
        "a login of the recovered cluster to check it with (its roles are the source's): postgres://user:password@host/db (default $DATABASE_URL; host and port are ignored)",
    },
    base: { type: 'string', value: 'ID', description: 'the base backup (default: the newest that finished before the target)' },
    'system-id': { type: 'string', value: 'ID', description: 'the cluster, when the store holds several' },
    'os-user': { type: 'string', value: 'NAME', description: 'when root: the account the server runs as (default postgres)' },
    inclusive: { type: 'boolean', description: 'also replay a transaction committed exactly at TIME' },
    stop: { type: 'boolean', description: 'stop the recovered server once it is checked (default: leave it running)' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `Nothing existing is touched: the recovered cluster is a new one in --into, like a managed
database's restore to a point in time makes a new instance. It picks the newest base backup
that finished before the target, extracts and checks it (pg_verifybackup), replays the
archived WAL through 'drkit wal-fetch' up to the target, promotes, and checks that the server
is out of recovery on a new timeline. Archiving is off on the recovered server: turn it on
when it becomes the primary. Prints the recovered server's port on stdout.`,
  async run({ options, io, signal }) {
    const target = parseRecoveryTarget(options);
    if (!options.into) throw new UsageError("'drkit restore point-in-time' needs --into DIR (a new, empty data directory)");
    const url = options.url ?? io.env.DATABASE_URL;
    if (!url) throw new UsageError('no login to check the recovered server with: pass --url or set DATABASE_URL');
    const secrets = urlSecrets(url);
    let login: { user: string; password?: string; database: string };
    try {
      const parsed = new URL(url.replace(/^postgres(ql)?:/i, 'http:'));
      login = {
        user: decodeURIComponent(parsed.username || 'postgres'),
        ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
        database: decodeURIComponent(parsed.pathname.slice(1) || 'postgres'),
      };
    } catch {
      throw new UsageError('--url must look like postgres://user:password@host:5432/db');
    }
    const port = options.port === undefined ? undefined : Number(options.port);
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536))
      throw new UsageError(`--port must be a TCP port (got '${options.port}')`);
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const store = storeUrl(options.store, io);
    const fetch = walFetchCommand(store, options['key-file'], io.env);
    const started = performance.now();
    const printer = pgEventPrinter(io, secrets);
    const recovered = await withCatalog(options.store, io, (catalog) =>
      restorePointInTime({
        catalog,
        keys,
        target,
        into: options.into as string,
        restoreCommand: fetch.command,
        env: fetch.env,
        login,
        keepRunning: options.stop !== true,
        inclusive: options.inclusive === true,
        signal,
        onEvent: printer.onEvent,
        ...(port ? { port } : {}),
        ...(options.base ? { base: options.base } : {}),
        ...(options['system-id'] ? { systemId: options['system-id'] } : {}),
        ...(options['os-user'] ? { osUser: options['os-user'] } : {}),
        ...(io.env.PG_BIN ? { binDir: io.env.PG_BIN } : {}),
      }),
    );
    io.stdout.write(`${recovered.port}\n`);
    io.stderr.write(
      `drkit: recovered from base backup ${recovered.base.id} into ${recovered.dataDir}: ${recovered.stoppedAt.reason ?? `to the end of the archive (redo done at ${recovered.stoppedAt.redoDoneAt ?? '?'})`}; ${recovered.walRestored} WAL files replayed; timeline ${recovered.timeline}; ${options.stop ? 'stopped' : `running on 127.0.0.1:${recovered.port}`}, ${seconds(started)}\n`,
    );
    return EXIT.OK;
  },
});

/** The lines of a WAL archive report, for people. */
export function describeArchive(report: WalArchiveReport): string[] {
  const lines = [
    `cluster ${report.systemId}: ${report.segments} segments (${(report.storedBytes / 1e6).toFixed(1)} MB stored)${report.newest ? `, newest ${report.newest.name} archived ${report.newest.archivedAt.toISOString()}` : ''}`,
  ];
  for (const t of report.timelines)
    if (t.parent !== undefined) lines.push(`  timeline ${t.timeline} branched from ${t.parent} at ${t.switchLsn}`);
  for (const b of report.bases)
    lines.push(
      `  base backup ${b.id} (timeline ${b.timeline}, from ${b.startWal}): recovers ${b.from.toISOString()} to ${b.to.toISOString()}${b.gap ? ` — stops at the gap before ${b.gap}` : ''}`,
    );
  for (const w of report.windows) lines.push(`  recovery window: ${w.from.toISOString()} to ${w.to.toISOString()}`);
  for (const p of report.problems) lines.push(`  PROBLEM: ${p}`);
  return lines;
}

/** `drkit wal verify`. */
export const walVerifyCommand = defineCommand({
  path: ['wal', 'verify'],
  summary: 'check the WAL archive is continuous from every base backup, and show the recovery window',
  options: {
    'system-id': { type: 'string', value: 'ID', description: 'only this cluster' },
    json: { type: 'boolean', description: 'print the report as JSON' },
    ...keyFileOption,
    ...storeOption,
  },
  async run({ options, io, signal }) {
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const reports = await withCatalog(options.store, io, (catalog) =>
      verifyWalArchive({ catalog, keys, signal, ...(options['system-id'] ? { systemId: options['system-id'] } : {}) }),
    );
    if (options.json) io.stdout.write(`${JSON.stringify(reports, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
    else
      io.stdout.write(
        `${reports.length === 0 ? 'no base backups and no WAL in this store' : reports.flatMap(describeArchive).join('\n')}\n`,
      );
    return reports.every((r) => r.ok) ? EXIT.OK : EXIT.FAILED;
  },
});

/** `drkit wal prune`. */
export const walPruneCommand = defineCommand({
  path: ['wal', 'prune'],
  summary: "delete WAL older than the oldest kept base backup (run after the base backups' retention)",
  options: {
    'dry-run': { type: 'boolean', description: 'say what would be deleted, delete nothing' },
    'system-id': { type: 'string', value: 'ID', description: 'only this cluster' },
    ...storeOption,
  },
  async run({ options, io }) {
    const results = await withCatalog(options.store, io, (catalog) =>
      pruneWal({ catalog, dryRun: options['dry-run'] === true, ...(options['system-id'] ? { systemId: options['system-id'] } : {}) }),
    );
    for (const r of results)
      io.stdout.write(
        `cluster ${r.systemId}: ${r.reason ?? `${options['dry-run'] ? 'would delete' : 'deleted'} ${r.deleted.length} files before ${r.keepFrom}; ${r.kept} kept`}\n`,
      );
    return EXIT.OK;
  },
});
