import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Keyring } from '@drkit/crypto-stream';
import {
  type BackupMode,
  backupRedis,
  type ExistingKeyPolicy,
  type ExportEncoding,
  fingerprintOf,
  isRedisBackupError,
  type RdbServer,
  REDIS_LOGICAL_KIND,
  REDIS_RDB_KIND,
  type RedisBackupError,
  type RedisBackupEvent,
  type RedisRestoreCheck,
  type RedisTarget,
  redisTarget,
  resolveRedisBackup,
  restoreRedis,
  restoreRedisRdb,
  verifyRedisBackup,
  verifyRedisRestore,
} from '@drkit/redis-backup';
import { type Catalog, type Manifest, TIERS } from '@drkit/s3-store';
import { type CliIo, defineCommand } from '../command.js';
import { confirmDestructive, numbered } from '../confirm.js';
import { EXIT, UsageError } from '../errors.js';
import { eventPrinter, mb } from '../events.js';
import { KEY_FILE_HELP, KEY_SOURCES_HELP, loadCommandKeys, sealingKeyId } from '../keys.js';
import { guarded, scrub, urlSecrets } from '../secrets.js';
import { parseTier, withCatalog } from './backup.js';
import { plural, seconds } from './seal.js';

const STORE_HELP = 'where backups live: file:///var/backups/drkit or s3://bucket/prefix?region=us-east-1 (default $DRKIT_STORE)';
const storeOption = { store: { type: 'string', value: 'URL', description: STORE_HELP } } as const;
const keyFileOption = { 'key-file': { type: 'string', value: 'FILE', description: KEY_FILE_HELP } } as const;

const SERVER_HELP = `The server comes from --url or REDIS_URL: redis://[user:password@]host:6379[/db], rediss://
for TLS, unix:///path/to/redis.sock. Backups and restores cover every database of the server,
whatever /db the URL names. The password is never printed.`;

// ---------------------------------------------------------------------------------------------
// Options

/** Invalid URLs and options of redis-backup are mistakes in the command line (exit 2). */
function isRedisUsageError(error: unknown): error is RedisBackupError {
  return isRedisBackupError(error, 'REDIS_URL_INVALID') || isRedisBackupError(error, 'REDIS_OPTIONS_INVALID');
}

/** The server's URL: --url, else REDIS_URL, with the flag or variable it came from. */
function serverUrl(value: string | undefined, io: CliIo, what: string): { url: string; from: string } {
  const url = value ?? io.env.REDIS_URL;
  if (url === undefined || url.trim() === '')
    throw new UsageError(`no ${what}: pass --url URL or set REDIS_URL (redis://[user:password@]host:6379, rediss:// or unix:///path.sock)`);
  return { url: url.trim(), from: value === undefined ? 'REDIS_URL' : '--url' };
}

/** Parses a server URL; a bad one is a usage error whose message never repeats the password. */
function target(url: string, from: string): RedisTarget {
  try {
    return redisTarget(url);
  } catch (error) {
    if (isRedisBackupError(error)) throw new UsageError(`${from}: ${scrub(error.message, urlSecrets(url))}`);
    throw error;
  }
}

function oneOf<T extends string>(value: string | undefined, flag: string, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  const found = allowed.find((a) => a === value.trim());
  if (!found) throw new UsageError(`${flag} must be ${allowed.join(', ').replace(/, (?=[^,]*$)/, ' or ')} (got '${value}')`);
  return found;
}

function oneRef(positionals: string[], command: string): string {
  const ref = positionals[0]?.trim();
  if (!ref) throw new UsageError(`'drkit ${command}' needs a backup id or 'latest'`);
  return ref;
}

// ---------------------------------------------------------------------------------------------
// Output

/**
 * Renders redis-backup's events on stderr: every step, every warning, and progress at most
 * every `everyMs` (MB of an RDB, keys of an export or a restore). Secrets are scrubbed;
 * `skipSteps` are steps the command summarises itself.
 */
export function redisEventPrinter(
  io: CliIo,
  secrets: readonly string[],
  options: { everyMs?: number; skipSteps?: readonly string[] } = {},
): { onEvent: (event: RedisBackupEvent) => void; warnings: Set<string> } {
  return eventPrinter<RedisBackupEvent>(
    io,
    secrets,
    (event) => {
      const what = event.operation === 'rdb' ? 'RDB' : event.operation;
      const db = event.db !== undefined ? `, db ${event.db}` : '';
      if (event.keys !== undefined) return `${what}: ${event.keys}${event.total !== undefined ? ` of ${event.total}` : ''} keys${db}`;
      if (event.bytes !== undefined) return `${what}: ${mb(event.bytes)}${event.total !== undefined ? ` of ${mb(event.total)}` : ''}${db}`;
      return undefined;
    },
    options,
  );
}

/** A snapshot taken before a flush or a replace holds the state a restore replaced: say so whenever one is picked. */
function snapshotNote(manifest: Manifest): string | undefined {
  if (manifest.labels?.snapshot !== 'true') return undefined;
  return `backup ${manifest.id} is a SNAPSHOT of a server as it was before a restore${manifest.labels.reason ? ` (${manifest.labels.reason})` : ''}, not a regular backup`;
}

const DIGEST: Record<RedisRestoreCheck['digest'], string> = {
  equal: "DEBUG DIGEST equal to the source's",
  different: "DEBUG DIGEST DIFFERS from the source's",
  'not-recorded': 'DEBUG DIGEST not compared (none was recorded at backup time)',
  unavailable: 'DEBUG DIGEST not compared (the server refuses DEBUG)',
  'not-comparable': 'DEBUG DIGEST not compared (keys expired since the backup, or other keys exist)',
};

/**
 * A key-by-key comparison for people, and whether it failed. `extraAllowed`: other keys are
 * expected (a restore without --flush); `skipped`: keys left as they were (--policy skip),
 * which may legitimately differ from the backup.
 */
export function describeCheck(
  check: RedisRestoreCheck,
  options: { extraAllowed?: boolean; skipped?: number } = {},
): { failed: boolean; lines: string[] } {
  const skipped = options.skipped ?? 0;
  const failed =
    check.differenceCount > skipped ||
    (check.digest === 'different' && skipped === 0) ||
    (check.extra > 0 && options.extraAllowed !== true);
  const dbs = Object.keys(check.databases)
    .map(Number)
    .sort((a, b) => a - b);
  const lines = [
    `verification: ${failed ? 'FAILED' : 'ok'}: ${check.matched} of ${check.expected} keys of backup ${check.backup.id} match (type and exact expiry)` +
      (dbs.length > 0 ? ` in ${dbs.length === 1 ? 'database' : 'databases'} ${dbs.join(', ')}` : ''),
  ];
  if (check.expired > 0) lines.push(`  ${plural(check.expired, 'key')} of the backup expired since it was taken (gone by design)`);
  if (check.differenceCount > 0) {
    lines.push(
      `  ${plural(check.differenceCount, 'difference')}${skipped > 0 ? ` (${skipped} key(s) were skipped as they existed, and may differ)` : ''}:`,
    );
    for (const d of check.differences.slice(0, 5))
      lines.push(`    db ${d.db} ${d.key}: ${d.problem} (expected ${d.expected}, found ${d.actual})`);
    if (check.differenceCount > 5) lines.push(`    ... and ${check.differenceCount - 5} more`);
  }
  if (check.extra > 0)
    lines.push(
      `  ${plural(check.extra, 'other key')} in the server that the backup does not have${options.extraAllowed ? ' (expected: the server was not flushed)' : ''}`,
    );
  lines.push(`  ${DIGEST[check.digest]}`);
  return { failed, lines };
}

// ---------------------------------------------------------------------------------------------
// Service control for RDB restores

/** The environment of a stop/start command: the command's own, without drkit's key material. */
function shellEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { DRKIT_KEY: _k, DRKIT_OLD_KEYS: _o, DRKIT_PASSPHRASE: _p, ...rest } = env;
  return rest;
}

/**
 * Runs `command` with /bin/sh -c and resolves when it exits with status 0. Its output is kept
 * for the error message only. A server it leaves running in the background (with our pipes
 * still open) does not hold it up: the command is done when its shell exits.
 */
export function runShell(command: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: shellEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(signal ? { signal } : {}),
    });
    let output = '';
    const take = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let status: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = () => {
      if (settled || !status) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      if (status.code === 0) return resolve();
      const tail = output.trim().split('\n').slice(-5).join(' | ');
      const how = status.code !== null ? `exited with status ${status.code}` : `was killed by ${status.signal}`;
      reject(new Error(`'${command}' ${how}${tail ? `: ${tail}` : ''}`));
    };
    child.once('error', (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, sig) => {
      status = { code, signal: sig };
      // The rest of its output, unless something it started keeps the pipes open.
      timer = setTimeout(settle, 200);
    });
    child.once('close', () => settle());
  });
}

// ---------------------------------------------------------------------------------------------
// backup redis

/** `drkit backup redis`: an RDB pulled over replication and/or a logical export, sealed into the store. */
export const backupRedisCommand = defineCommand({
  path: ['backup', 'redis'],
  summary: 'back up a Redis server: its RDB pulled over the replication protocol and/or a logical export, sealed and stored',
  options: {
    url: { type: 'string', value: 'URL', description: 'the server: redis://[user:password@]host:6379 (default $REDIS_URL)' },
    mode: {
      type: 'string',
      value: 'rdb|logical|both',
      description: 'the RDB file, a logical export of every key, or both (default both)',
    },
    encoding: {
      type: 'string',
      value: 'exact|ndjson',
      description: 'the logical export: DUMP payloads (exact, default) or readable NDJSON (restores into older Redis)',
    },
    tier: { type: 'string', value: 'TIER', description: `${TIERS.join(', ')} (default manual)` },
    env: { type: 'string', value: 'NAME', description: 'the environment, recorded in the manifests (e.g. production)' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
--mode rdb asks the server for its RDB over the replication protocol (SYNC), exactly as it
would save it: one instant of the whole dataset. --mode logical exports every key of every
database with its absolute expiry (to the millisecond): DUMP payloads (--encoding exact), or
typed NDJSON records (--encoding ndjson) that any Redis can restore. --mode both (default) does
both. Everything is sealed (AES-256-GCM) on the way into the store; the manifest is written
last, so an interrupted backup leaves no backup behind.

Managed services (and ACLs without SYNC) refuse to send the RDB: the backup then makes the
logical export instead and says so with a warning.

The new backups' ids go to stdout, one a line (the RDB first); steps, progress (every 5 s:
MB of the RDB, keys of the export), warnings and a summary go to stderr.

${SERVER_HELP}

${KEY_SOURCES_HELP}

Example:
  REDIS_URL=redis://:secret@cache.internal:6379 drkit backup redis --store s3://backups/prod --tier daily --env production`,
  async run({ options, io, signal }) {
    const { url, from } = serverUrl(options.url, io, 'Redis server to back up');
    const secrets = urlSecrets(url);
    const server = target(url, from);
    const mode: BackupMode = oneOf(options.mode, '--mode', ['rdb', 'logical', 'both'] as const) ?? 'both';
    const encoding: ExportEncoding = oneOf(options.encoding, '--encoding', ['exact', 'ndjson'] as const) ?? 'exact';
    const tier = parseTier(options.tier) ?? 'manual';
    const environment = options.env?.trim();
    if (environment !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(environment))
      throw new UsageError(`--env must be a name of letters, digits, '.', '_' and '-' (got '${options.env}')`);
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const started = performance.now();
    const printer = redisEventPrinter(io, secrets, { skipSteps: ['stored'] });
    const result = await guarded(secrets, isRedisUsageError, () =>
      withCatalog(options.store, io, (catalog) =>
        backupRedis({
          url: server,
          catalog,
          keys,
          mode,
          encoding,
          tier,
          ...(environment ? { environment } : {}),
          signal,
          onEvent: printer.onEvent,
        }),
      ),
    );
    const stored: string[] = [];
    if (result.rdb) {
      const f = fingerprintOf(result.rdb, REDIS_RDB_KIND);
      io.stdout.write(`${result.rdb.id}\n`);
      stored.push(`RDB ${result.rdb.id} (${f.bytes} bytes, RDB version ${f.rdbVersion}, ${result.rdb.object.size} bytes stored)`);
    }
    if (result.logical) {
      const f = fingerprintOf(result.logical, REDIS_LOGICAL_KIND);
      io.stdout.write(`${result.logical.id}\n`);
      stored.push(
        `logical export ${result.logical.id} (${plural(f.keys, 'key')}, ${f.encoding}, ${result.logical.object.size} bytes stored${f.digest ? ', DEBUG DIGEST recorded' : ''})`,
      );
    }
    if (result.fallback)
      io.stderr.write(
        `drkit: warning: NO RDB BACKUP was made: ${scrub(server.description, secrets)} refused SYNC (see above); the logical export ${result.logical?.id ?? ''} was stored instead\n`,
      );
    io.stderr.write(
      `drkit: ${scrub(`stored redis backup of ${server.description}: ${stored.join('; ')}, key ${sealingKeyId(keys)}, ${seconds(started)}`, secrets)}` +
        `${result.warnings.length > 0 ? ` (${plural(result.warnings.length, 'warning')}, see above)` : ''}\n`,
    );
    return EXIT.OK;
  },
});

// ---------------------------------------------------------------------------------------------
// restore redis

/** What a logical restore will do, for the confirmation (said before anything is read). */
export function describeLogicalRestore(p: {
  manifest: Manifest;
  server: RedisTarget;
  policy: ExistingKeyPolicy;
  flush: boolean;
  snapshot: boolean;
  verify: boolean;
}): string[] {
  const f = fingerprintOf(p.manifest, REDIS_LOGICAL_KIND);
  const lines = [
    `read backup ${p.manifest.id} (${p.manifest.createdAt}, ${plural(f.keys, 'key')} of ${p.manifest.source.description}) to the end, authenticating every chunk, before changing anything`,
  ];
  if (p.flush || p.policy === 'replace')
    lines.push(
      p.snapshot
        ? `save the keys ${p.server.description} holds now (if any) as a snapshot backup in the store`
        : `take NO snapshot (--no-snapshot): the keys ${p.server.description} holds now are not saved anywhere`,
    );
  if (p.flush) lines.push(`FLUSHALL: delete every key of every database of ${p.server.description}`);
  const existing = p.flush
    ? ''
    : p.policy === 'replace'
      ? '; keys that exist are OVERWRITTEN'
      : p.policy === 'skip'
        ? '; keys that exist are left as they are'
        : '; if any of them exists, nothing is written';
  lines.push(`write the backup's ${plural(f.keys, 'key')} with their expiries${existing}`);
  if (p.verify) lines.push('compare every key with the backup (type, expiry, DBSIZE, DEBUG DIGEST)');
  return lines;
}

/** What an RDB restore will do, for the confirmation. */
export function describeRdbRestore(p: {
  manifest: Manifest;
  server: RedisTarget;
  stop: string;
  start: string;
  dataDir: string | undefined;
  dbFilename: string | undefined;
}): string[] {
  const f = fingerprintOf(p.manifest, REDIS_RDB_KIND);
  const file =
    p.dataDir || p.dbFilename
      ? `${p.dataDir ?? '<dir>'}/${p.dbFilename ?? '<dbfilename>'}`
      : "the server's dump file (its dir and dbfilename, from CONFIG GET)";
  return [
    `decrypt and check RDB backup ${p.manifest.id} (${p.manifest.createdAt}, of ${p.manifest.source.description}, RDB version ${f.rdbVersion}, ${f.bytes} bytes) into a temp file beside ${file}`,
    `STOP ${p.server.description}: ${p.stop}`,
    'keep the dump file as <file>.drkit-before-<time> and put the backup in its place',
    `start it: ${p.start}; wait until it has loaded the data. Every write since the backup was taken is LOST`,
  ];
}

/** The words of the confirmation: the server's address. */
function addressOf(server: RedisTarget): string {
  return server.path ?? `${server.host}:${server.port}`;
}

const LOGICAL_ONLY = ['flush', 'policy', 'no-snapshot', 'no-verify'] as const;
const RDB_ONLY = ['data-dir', 'db-filename', 'stop-command', 'start-command'] as const;

/** `drkit restore redis`: a logical restore into the running server, or an RDB with a restart. */
export const restoreRedisCommand = defineCommand({
  path: ['restore', 'redis'],
  summary: 'restore a Redis backup: a logical export into the running server (no restart), or an RDB with --rdb (restarts it)',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    url: { type: 'string', value: 'URL', description: 'the server to restore: redis://[user:password@]host:6379 (default $REDIS_URL)' },
    policy: {
      type: 'string',
      value: 'fail|replace|skip',
      description: 'keys of the backup that exist in the server: refuse before writing anything (default), overwrite them, or keep them',
    },
    flush: { type: 'boolean', description: 'FLUSHALL first, so that the server ends equal to the backup (needs --yes or confirmation)' },
    'dry-run': { type: 'boolean', description: 'read and authenticate the whole backup, print the plan; change nothing' },
    yes: {
      type: 'boolean',
      description: 'go ahead without asking (needed for --flush, --policy replace and --rdb when not at a terminal)',
    },
    'no-snapshot': {
      type: 'boolean',
      description: 'with --flush or --policy replace: do not save the current keys as a snapshot backup first',
    },
    'no-verify': { type: 'boolean', description: 'do not compare every key with the backup afterwards' },
    rdb: {
      type: 'boolean',
      description: "restore an RDB backup as the server's dump file: stops and starts the server (implied by an RDB backup's id)",
    },
    'data-dir': { type: 'string', value: 'DIR', description: "--rdb: the server's dir (default CONFIG GET dir)" },
    'db-filename': { type: 'string', value: 'NAME', description: "--rdb: the server's dbfilename (default CONFIG GET dbfilename)" },
    'stop-command': {
      type: 'string',
      value: 'CMD',
      description: "--rdb: stops the server, run by /bin/sh -c (e.g. 'systemctl stop redis-server'); must return once it has stopped",
    },
    'start-command': {
      type: 'string',
      value: 'CMD',
      description: "--rdb: starts it again, run by /bin/sh -c (e.g. 'systemctl start redis-server')",
    },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
By default a logical backup is written into the running server (no restart): RESTORE ... ABSTTL
for exact exports (every expiry the very millisecond it was), typed writes for NDJSON ones,
pipelined. The whole backup is read and authenticated before anything is written. Keys of the
backup that exist stop the restore before anything is written (--policy fail), unless
--policy skip keeps them or --policy replace overwrites them; --flush empties every database
first, so that the server ends equal to the backup. Keys whose expiry passed since the backup
are counted and named. Afterwards every key is compared with the backup (type, exact expiry,
DBSIZE and, when it was recorded and can be compared, DEBUG DIGEST): exit 1 when they differ.

--flush and --policy replace destroy data: before they run, the server's current keys are
saved as a snapshot backup in the store (label snapshot=true; 'latest' never picks one) unless
--no-snapshot. They need --yes; at a terminal without it, the plan is shown and you are asked
to type the server's address (host:port). Otherwise the command refuses at once (exit 3) and
changes nothing. --dry-run needs no confirmation.

--rdb (implied when the id names an RDB backup; 'latest' means the latest logical backup unless
--rdb) replaces the whole dataset: the RDB is decrypted and checked (CRC64) beside the server's
dump file, the server is stopped with --stop-command, the dump file is kept as
<file>.drkit-before-<time> and replaced, and the server is started with --start-command; drkit
waits until it has loaded the data. The server must run with appendonly no and read the RDB's
version. If it does not come back, the previous dump file is put back and it is started again.
Always needs --yes or confirmation. The commands run with drkit's environment, without
DRKIT_KEY, DRKIT_OLD_KEYS and DRKIT_PASSPHRASE.

${SERVER_HELP}

${KEY_SOURCES_HELP}

Examples:
  drkit restore redis latest --url redis://:secret@127.0.0.1:6379 --dry-run
  drkit restore redis latest --flush --yes
  drkit restore redis 20250301T020000123Z-a1b2c3 --rdb --yes \\
    --stop-command 'systemctl stop redis-server' --start-command 'systemctl start redis-server'`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals, 'restore redis');
    const { url, from } = serverUrl(options.url, io, 'Redis server to restore');
    const secrets = urlSecrets(url);
    const server = target(url, from);
    const policy: ExistingKeyPolicy = oneOf(options.policy, '--policy', ['fail', 'replace', 'skip'] as const) ?? 'fail';
    const flush = options.flush === true;
    const dryRun = options['dry-run'] === true;
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const printer = redisEventPrinter(io, secrets);
    const out = (text: string) => io.stdout.write(scrub(text, secrets));
    const started = performance.now();

    return guarded(secrets, isRedisUsageError, () =>
      withCatalog(options.store, io, async (catalog) => {
        const manifest = await resolveRedisBackup(
          catalog,
          ref,
          options.rdb ? REDIS_RDB_KIND : ref === 'latest' ? REDIS_LOGICAL_KIND : undefined,
        );
        const note = snapshotNote(manifest);
        if (note) io.stderr.write(`drkit: warning: ${scrub(note, secrets)}\n`);
        const given = (names: readonly string[]) =>
          names.filter((n) => options[n as keyof typeof options] !== undefined).map((n) => `--${n}`);

        if (manifest.kind === REDIS_RDB_KIND) {
          const wrong = given(LOGICAL_ONLY);
          if (wrong.length > 0)
            throw new UsageError(
              `${wrong.join(', ')}: backup ${manifest.id} is an RDB, which replaces the whole dataset and is checked by the server loading it; those flags are for logical restores`,
            );
          return restoreRdb(manifest, catalog);
        }
        const wrong = given(RDB_ONLY);
        if (wrong.length > 0)
          throw new UsageError(
            `${wrong.join(', ')}: only for --rdb (backup ${manifest.id} is a logical export, restored without a restart)`,
          );
        return restoreLogical(manifest, catalog);
      }),
    );

    async function restoreLogical(manifest: Manifest, catalog: Catalog): Promise<number> {
      const snapshot = options['no-snapshot'] !== true;
      const verify = options['no-verify'] !== true;
      const destructive = flush || policy === 'replace';
      if (
        destructive &&
        !dryRun &&
        options.yes !== true &&
        !(await confirmDestructive({
          io,
          signal,
          secrets,
          action: `restoring ${server.description}${flush ? ' with --flush' : ' with --policy replace'}`,
          steps: describeLogicalRestore({ manifest, server, policy, flush, snapshot, verify }),
          hint: 'Pass --yes to restore, or --dry-run to check the backup and see the plan.',
          what: "the server's address",
          expected: addressOf(server),
        }))
      )
        return EXIT.REFUSED;

      const result = await restoreRedis({
        url: server,
        catalog,
        backup: manifest,
        keys,
        policy,
        flush,
        dryRun,
        snapshot,
        // Compared below, so that a difference still reports what was restored and the snapshot.
        verify: false,
        signal,
        onEvent: printer.onEvent,
      });
      if (result.mode === 'dry-run') {
        out(`dry run: nothing was changed. Restoring backup ${manifest.id} into ${server.description} would:\n${numbered(result.plan)}`);
        if (policy === 'fail' && !flush && result.existing > 0) {
          io.stderr.write(
            `drkit: dry run: the restore would be REFUSED: ${result.existing} key(s) of the backup already exist in ${scrub(server.description, secrets)}; choose --policy replace or skip, or --flush\n`,
          );
          return EXIT.FAILED;
        }
        io.stderr.write(`drkit: dry run of the restore of ${manifest.id}: the backup authenticated in full, ${seconds(started)}\n`);
        return EXIT.OK;
      }

      const counts = result.imported ?? { restored: 0, skipped: 0, expired: 0, expiredSample: [], databases: {} };
      const expired =
        counts.expired > 0
          ? `, ${counts.expired} expired before they could be restored (${counts.expiredSample.slice(0, 10).join(', ')}${counts.expired > 10 ? ', ...' : ''})`
          : ', 0 expired';
      out(
        `restored backup ${manifest.id} (${manifest.createdAt}) into ${server.description}: ${plural(counts.restored, 'key')} restored, ${counts.skipped} skipped (they existed)${expired}, ${seconds(started)}\n`,
      );
      if (result.flushed) out('the server was emptied first (FLUSHALL)\n');
      if (result.snapshot) out(`snapshot of the server before the restore: backup ${result.snapshot.id}\n`);
      if (!verify) return EXIT.OK;

      printer.onEvent({
        type: 'step',
        step: 'verify',
        message: 'comparing every key with the backup (type, expiry, DBSIZE, DEBUG DIGEST)',
      });
      const check = await verifyRedisRestore({ url: server, catalog, backup: manifest, keys, signal });
      const { failed, lines } = describeCheck(check, { extraAllowed: !result.flushed, skipped: counts.skipped });
      out(`${lines.join('\n')}\n`);
      if (failed) {
        io.stderr.write(
          `drkit: error REDIS_VERIFY_FAILED: ${scrub(server.description, secrets)} differs from backup ${manifest.id} after the restore (see above)` +
            `${result.snapshot ? `; its state before the restore is backup ${result.snapshot.id}` : ''}\n`,
        );
        return EXIT.FAILED;
      }
      return EXIT.OK;
    }

    async function restoreRdb(manifest: Manifest, catalog: Catalog): Promise<number> {
      const stop = options['stop-command']?.trim();
      const start = options['start-command']?.trim();
      if (!dryRun && (!stop || !start))
        throw new UsageError(
          `backup ${manifest.id} is an RDB: restoring it stops and starts the server, so give --stop-command CMD and --start-command CMD (e.g. 'systemctl stop redis-server'), or restore a logical backup without a restart`,
        );
      const dataDir = options['data-dir']?.trim() || undefined;
      const dbFilename = options['db-filename']?.trim() || undefined;
      if (
        !dryRun &&
        options.yes !== true &&
        !(await confirmDestructive({
          io,
          signal,
          secrets,
          action: `restoring the RDB into ${server.description}`,
          steps: describeRdbRestore({ manifest, server, stop: stop ?? '', start: start ?? '', dataDir, dbFilename }),
          hint: 'Pass --yes to restore, or --dry-run to check the backup and see the plan.',
          what: "the server's address",
          expected: addressOf(server),
        }))
      )
        return EXIT.REFUSED;
      const control: RdbServer = {
        stop: () => runShell(stop ?? 'false', io.env, signal),
        start: () => runShell(start ?? 'false', io.env, signal),
        ...(dataDir ? { dataDir } : {}),
        ...(dbFilename ? { dbFilename } : {}),
      };
      let result: Awaited<ReturnType<typeof restoreRedisRdb>>;
      try {
        result = await restoreRedisRdb({
          url: server,
          catalog,
          backup: manifest,
          keys,
          server: control,
          dryRun,
          signal,
          onEvent: printer.onEvent,
        });
      } catch (error) {
        if (isRedisBackupError(error, 'REDIS_OPTIONS_INVALID')) error.message += ' (--data-dir DIR --db-filename NAME)';
        throw error;
      }
      const total = (k: Record<string, { keys: number }>) => Object.values(k).reduce((n, d) => n + d.keys, 0);
      if (result.mode === 'dry-run') {
        out(
          `dry run: nothing was changed. Restoring RDB backup ${manifest.id} into ${server.description} would:\n${numbered(result.plan)}`,
        );
        io.stderr.write(
          `drkit: dry run of the RDB restore of ${manifest.id}: the RDB decrypted and checked (CRC64), ${seconds(started)}\n`,
        );
        return EXIT.OK;
      }
      out(
        `restored RDB backup ${manifest.id} (${manifest.createdAt}) into ${server.description}: the server runs on it with ${plural(total(result.keyspace ?? {}), 'key')} ` +
          `(the backup recorded about ${total(result.recorded)} when it was taken), ${seconds(started)}\n`,
      );
      out(result.previous ? `the previous dump file is kept as ${result.previous}\n` : 'the server had no dump file before\n');
      return EXIT.OK;
    }
  },
});

// ---------------------------------------------------------------------------------------------
// verify redis

/** `drkit verify redis`: L1 stored bytes, L2 decrypt and decode; --url compares a server key by key. */
export const verifyRedisCommand = defineCommand({
  path: ['verify', 'redis'],
  summary: 'verify a Redis backup: 1 stored bytes, 2 decrypt and decode; --url also compares a running server key by key',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    level: { type: 'string', value: '1|2', description: 'how deep (default 2); level 2 includes level 1' },
    url: {
      type: 'string',
      value: 'URL',
      description: 'also compare this server with the (logical) backup, key by key: redis://[user:password@]host:6379 (no default)',
    },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
Levels:
  1  the stored object's size and SHA-256 against its manifest (no key needed)
  2  decrypt and authenticate every chunk and decode it all: an export line by line to its last
     line, holding the keys its manifest says; an RDB to its end marker and CRC64 (no server)

With --url, the server is compared with a logical backup key by key (read-only): every key of
the backup exists with its type and exact expiry (keys whose expiry passed since are counted,
not failures), DBSIZE of each database matches, no other keys exist, and DEBUG DIGEST equals the
one recorded at backup time when it can be compared. REDIS_URL is not used here: a server is
only reached when --url names it.

'latest' is the newest complete Redis backup (the logical one with --url). Exit 0 when
everything passed, 1 when the backup failed or the server differs.

${KEY_SOURCES_HELP}

Examples:
  drkit verify redis latest --level 2
  drkit verify redis latest --url redis://:secret@restore-test.internal:6379`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals, 'verify redis');
    const level = oneOf(options.level, '--level', ['1', '2'] as const) === '1' ? 1 : 2;
    const url = options.url?.trim() || undefined;
    const secrets = urlSecrets(url);
    const server = url ? target(url, '--url') : undefined;
    // Level 1 reads no plaintext: it needs no key (an empty keyring is never used).
    const keys = level === 2 || server ? await loadCommandKeys(options['key-file'], io.env) : new Keyring();
    const started = performance.now();
    const out = (text: string) => io.stdout.write(scrub(text, secrets));

    return guarded(secrets, isRedisUsageError, () =>
      withCatalog(options.store, io, async (catalog) => {
        const manifest = await resolveRedisBackup(catalog, ref, server && ref === 'latest' ? REDIS_LOGICAL_KIND : undefined);
        const note = snapshotNote(manifest);
        if (note) io.stderr.write(`drkit: warning: ${scrub(note, secrets)}\n`);
        if (server && manifest.kind !== REDIS_LOGICAL_KIND) {
          const companion = (await catalog.list({ kind: REDIS_LOGICAL_KIND })).find((m) => m.labels?.rdb === manifest.id);
          throw new UsageError(
            `--url compares a server with a logical backup key by key; ${manifest.id} is an RDB` +
              (companion ? `: compare with ${companion.id}, the logical export made with it` : ': verify it without --url'),
          );
        }
        const result = await verifyRedisBackup({ catalog, backup: manifest, keys, level, signal });
        if (result.level === 2) out('ok   L1 stored bytes: size and SHA-256 match the manifest\n');
        out(
          `${result.ok ? 'ok  ' : 'FAIL'} L${result.level} ${result.level === 1 ? 'stored bytes' : 'decrypt and decode'}: ${result.detail}\n`,
        );
        if (!result.ok) {
          io.stderr.write(
            `drkit: error ${result.error?.code ?? 'REDIS_BACKUP_INVALID'}: ${scrub(result.detail, secrets)}; backup ${manifest.id} FAILED verification: do not restore it, use another backup\n`,
          );
          return EXIT.FAILED;
        }
        if (server) {
          const check = await verifyRedisRestore({ url: server, catalog, backup: manifest, keys, signal });
          const { failed, lines } = describeCheck(check);
          out(`${lines.join('\n')}\n`);
          if (failed) {
            io.stderr.write(
              `drkit: error REDIS_VERIFY_FAILED: ${scrub(server.description, secrets)} differs from backup ${manifest.id} (see above)\n`,
            );
            return EXIT.FAILED;
          }
        }
        io.stderr.write(
          `drkit: verified redis backup ${manifest.id} up to level ${level}${server ? ` and ${scrub(server.description, secrets)} against it` : ''}: passed, ${seconds(started)}\n`,
        );
        return EXIT.OK;
      }),
    );
  },
});
