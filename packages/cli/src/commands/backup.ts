import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { type Compression, isSealError, open, type StreamProgress, seal } from '@drkit/crypto-stream';
import { type Catalog, createCatalog, type Manifest, type RetentionPolicy, StoreError, TIERS, type Tier } from '@drkit/s3-store';
import { type CliIo, defineCommand } from '../command.js';
import { EXIT, UsageError } from '../errors.js';
import { KEY_FILE_HELP, KEY_SOURCES_HELP, loadCommandKeys, sealingKeyId } from '../keys.js';
import { VERSION } from '../version.js';
import { commandStore } from './store.js';

export { commandStore } from './store.js';

import { checkInput, checkOutput, inputStream, requiredPath, seconds, writeFileAtomically } from './seal.js';

const STORE_HELP = 'where backups live: file:///var/backups/drkit or s3://bucket/prefix?region=us-east-1 (default $DRKIT_STORE)';

const storeOption = { store: { type: 'string', value: 'URL', description: STORE_HELP } } as const;

/** Opens the store, runs `body` with its catalog, and closes the store whatever happens. */
export async function withCatalog<T>(url: string | undefined, io: CliIo, body: (catalog: Catalog) => Promise<T>): Promise<T> {
  const store = commandStore(url, io);
  try {
    return await body(
      createCatalog(store, {
        onEvent: (event) => {
          if (event.type === 'manifest-invalid') io.stderr.write(`drkit: warning: skipped ${event.key}: ${event.reason}\n`);
          if (event.type === 'object-missing')
            io.stderr.write(`drkit: warning: backup ${event.id} skipped: its object ${event.key} ${event.reason}\n`);
        },
      }),
    );
  } finally {
    await store.close();
  }
}

/** Writes "N MB done" lines to stderr at most every `everyMs` while a long transfer runs. */
export function progressLine(io: CliIo, label: string, everyMs = 5000): (bytes: number) => void {
  let last = performance.now();
  return (bytes) => {
    const t = performance.now();
    if (t - last < everyMs) return;
    last = t;
    io.stderr.write(`drkit: ${label}: ${(bytes / 1e6).toFixed(1)} MB\n`);
  };
}

function parseKind(value: string | undefined, command: string, required: boolean): string | undefined {
  if (value === undefined) {
    if (required) throw new UsageError(`'drkit ${command}' needs --kind KIND (e.g. config, postgres, files)`);
    return undefined;
  }
  if (!/^[a-z][a-z0-9-]{0,39}$/.test(value)) throw new UsageError(`--kind must be lower-case letters, digits and dashes (got '${value}')`);
  return value;
}

/** `--tier`, checked against the tiers of the plans' schedule. */
export function parseTier(value: string | undefined): Tier | undefined {
  if (value === undefined) return undefined;
  const tier = TIERS.find((t) => t === value);
  if (!tier) throw new UsageError(`--tier must be one of ${TIERS.join(', ')} (got '${value}')`);
  return tier;
}

function oneRef(positionals: string[], command: string): string {
  const ref = positionals[0];
  if (ref === undefined) throw new UsageError(`'drkit ${command}' needs a backup id or 'latest'`);
  return ref;
}

/** Key errors say nothing about the backup itself: they must not mark it failed. */
const KEY_CODES = new Set(['SEAL_KEY_INVALID', 'SEAL_KEY_MISSING', 'SEAL_UNKNOWN_KEY', 'SEAL_WRONG_KEY']);

/** `drkit backup put`: seal a file into the store as a single-file artifact. */
export const backupPutCommand = defineCommand({
  path: ['backup', 'put'],
  summary: 'seal a file (a configuration file, an export) and store it as a backup',
  options: {
    in: { type: 'string', value: 'FILE', description: "the file to back up; '-' reads stdin" },
    kind: { type: 'string', value: 'KIND', description: 'what it is: config, secrets, postgres, ... (lower-case, digits, dashes)' },
    tier: { type: 'string', value: 'TIER', description: `${TIERS.join(', ')} (default manual)` },
    source: {
      type: 'string',
      value: 'TEXT',
      description: 'what was backed up, for the manifest (default: the file path); never credentials',
    },
    compress: { type: 'string', value: 'none|gzip|zstd', description: 'compression before sealing (default zstd)' },
    'key-file': { type: 'string', value: 'FILE', description: KEY_FILE_HELP },
    ...storeOption,
  },
  details: `
The file is compressed, sealed (AES-256-GCM, chunk by chunk) and streamed into the store; the
stored bytes are read back and hashed, and only then is the manifest written. An interrupted
put leaves no backup behind (at most an orphan object, see 'drkit backup orphans'). The new
backup's id goes to stdout; a summary goes to stderr.

${KEY_SOURCES_HELP}

Examples:
  drkit backup put --in /etc/app/config.yaml --kind config --store file:///var/backups/drkit
  DRKIT_STORE=s3://backups/prod?region=us-east-1 drkit backup put --in app.env --kind config --tier daily`,
  async run({ options, io, signal }) {
    const inPath = requiredPath(options.in, '--in', 'backup put');
    const kind = parseKind(options.kind, 'backup put', true) as string;
    const tier = parseTier(options.tier) ?? 'manual';
    const compression = (options.compress ?? 'zstd') as Compression;
    if (!['none', 'gzip', 'zstd'].includes(compression))
      throw new UsageError(`--compress must be none, gzip or zstd (got '${compression}')`);
    await checkInput(inPath);
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const started = performance.now();
    let progress: StreamProgress = { plainBytes: 0, sealedBytes: 0, chunks: 0 };
    const manifest = await withCatalog(options.store, io, (catalog) =>
      catalog.put({
        kind,
        tier,
        source: { description: options.source ?? (inPath === '-' ? 'stdin' : inPath) },
        tool: { name: 'drkit', version: VERSION },
        compression,
        encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: sealingKeyId(keys) },
        body: seal(inputStream(inPath, io, signal), {
          key: keys,
          compression,
          signal,
          onProgress: (p) => {
            progress = p;
          },
        }),
        signal,
        onProgress: progressLine(io, `stored ${inPath}`),
        beforeManifest: async () => ({ plainSize: progress.plainBytes }),
      }),
    );
    io.stdout.write(`${manifest.id}\n`);
    io.stderr.write(
      `drkit: stored ${kind} backup ${manifest.id}: ${progress.plainBytes} bytes in, ${manifest.object.size} bytes stored ` +
        `(sha256 ${manifest.object.sha256.slice(0, 16)}...), key ${sealingKeyId(keys)}, ${seconds(started)}\n`,
    );
    return EXIT.OK;
  },
});

/**
 * The stored bytes of `manifest`, checked against its size and SHA-256 as they pass: the
 * generator throws at the end (before a caller renames its output into place) on a mismatch.
 */
async function* checkedStored(stream: Readable, manifest: Manifest): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
    yield chunk;
  }
  const sha256 = hash.digest('hex');
  if (size !== manifest.object.size || sha256 !== manifest.object.sha256)
    throw new StoreError(
      'STORE_INTEGRITY',
      `backup ${manifest.id}: the stored object is ${size} bytes with sha256 ${sha256}, but its manifest says ${manifest.object.size} bytes with sha256 ${manifest.object.sha256}; it was altered in the store, use another backup`,
    );
}

/** `drkit backup get`: fetch, authenticate and unseal a stored single-file backup. */
export const backupGetCommand = defineCommand({
  path: ['backup', 'get'],
  summary: 'fetch a backup, authenticate and decrypt it into a file',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    kind: { type: 'string', value: 'KIND', description: "the backup's kind (required with 'latest')" },
    out: { type: 'string', value: 'FILE', description: 'where the restored file goes' },
    force: { type: 'boolean', description: 'replace --out if it already exists' },
    'key-file': { type: 'string', value: 'FILE', description: 'key file; any key in it may open' },
    ...storeOption,
  },
  details: `
'latest' is the newest complete backup of --kind whose verification did not fail. The output
file appears only after every chunk has authenticated and the stored bytes matched the
manifest's SHA-256; otherwise nothing is written and the command exits 1 naming the cause.

Example:
  drkit backup get latest --kind config --out /etc/app/config.yaml.restored`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals, 'backup get');
    const kind = parseKind(options.kind, 'backup get', ref === 'latest');
    const outPath = requiredPath(options.out, '--out', 'backup get');
    if (outPath === '-') throw new UsageError("'drkit backup get' writes a file: give --out FILE");
    const refusal = await checkOutput(outPath, undefined, options.force);
    if (refusal) {
      io.stderr.write(`drkit: refused: ${refusal}\n`);
      return EXIT.REFUSED;
    }
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const started = performance.now();
    let plain = 0;
    const manifest = await withCatalog(options.store, io, async (catalog) => {
      const found = await catalog.resolve(ref, kind);
      const stored = checkedStored(await catalog.open(found, { signal }), found);
      const report = progressLine(io, `restoring ${found.id}`);
      await writeFileAtomically(
        outPath,
        open(stored, {
          keys,
          signal,
          onProgress: (p) => {
            plain = p.plainBytes;
            report(p.sealedBytes);
          },
        }),
        { replace: options.force === true, signal },
      );
      return found;
    });
    io.stderr.write(
      `drkit: restored ${manifest.kind} backup ${manifest.id} (${manifest.createdAt}) -> ${outPath}: ${plain} bytes, every chunk authenticated, ${seconds(started)}\n`,
    );
    return EXIT.OK;
  },
});

function human(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** `drkit backup list`: the backups in the store. */
export const backupListCommand = defineCommand({
  path: ['backup', 'list'],
  summary: 'list the backups in the store (complete ones only: each has its manifest)',
  options: {
    kind: { type: 'string', value: 'KIND', description: 'only this kind' },
    tier: { type: 'string', value: 'TIER', description: `only this tier: ${TIERS.join(', ')}` },
    json: { type: 'boolean', description: 'print the manifests as a JSON array' },
    ...storeOption,
  },
  details: `
Oldest first. Each backup's type is full or incremental; an incremental builds on its parent
(TYPE and PARENT columns appear when the list holds incrementals; in --json every manifest has
"type", and an incremental's has "parent").`,
  async run({ options, io }) {
    const kind = parseKind(options.kind, 'backup list', false);
    const tier = parseTier(options.tier);
    const manifests = await withCatalog(options.store, io, (catalog) =>
      catalog.list({ ...(kind ? { kind } : {}), ...(tier ? { tier } : {}) }),
    );
    if (options.json) {
      io.stdout.write(`${JSON.stringify(manifests, null, 2)}\n`);
      return EXIT.OK;
    }
    if (manifests.length === 0) {
      io.stderr.write(`drkit: no backups${kind ? ` of kind ${kind}` : ''}${tier ? ` in tier ${tier}` : ''}\n`);
      return EXIT.OK;
    }
    // Chains (incrementals on a parent) get TYPE and PARENT columns; a list of full backups only needs neither.
    const chained = manifests.some((m) => m.type === 'incremental');
    const rows = manifests.map((m) => [
      m.id,
      m.kind,
      m.tier,
      m.createdAt.replace(/\.\d{3}Z$/, 'Z'),
      human(m.object.size),
      m.verification ? `${m.verification.status} (${m.verification.level})` : '-',
      ...(chained ? [m.type, m.parent ?? '-'] : []),
    ]);
    const header = ['ID', 'KIND', 'TIER', 'CREATED', 'SIZE', 'VERIFIED', ...(chained ? ['TYPE', 'PARENT'] : [])];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
    for (const row of [header, ...rows])
      io.stdout.write(
        `${row
          .map((cell, i) => cell.padEnd(widths[i] as number))
          .join('  ')
          .trimEnd()}\n`,
      );
    return EXIT.OK;
  },
});

/** `drkit backup verify`: stored bytes against the manifest, then a full authenticated read. */
export const backupVerifyCommand = defineCommand({
  path: ['backup', 'verify'],
  summary: 'check a backup: stored bytes against its manifest, then decrypt every chunk',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    kind: { type: 'string', value: 'KIND', description: "the backup's kind (required with 'latest')" },
    'key-file': { type: 'string', value: 'FILE', description: 'key file; any key in it may open' },
    'no-record': { type: 'boolean', description: 'do not record the outcome in the manifest' },
    ...storeOption,
  },
  details: `
Two checks: the stored object's size and SHA-256 against the manifest, then a full read that
authenticates and decompresses every chunk (nothing is written). The outcome is recorded in
the manifest (verification: passed or failed); a failed backup is never chosen as 'latest'.
A missing or wrong key is reported but not recorded: it says nothing about the backup.
Exit 0 when both checks pass, 1 otherwise.`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals, 'backup verify');
    const kind = parseKind(options.kind, 'backup verify', ref === 'latest');
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const started = performance.now();
    return withCatalog(options.store, io, async (catalog) => {
      const manifest = await catalog.resolve(ref, kind);
      const record = async (status: 'passed' | 'failed', detail: string) => {
        if (options['no-record']) return;
        await catalog.recordVerification(manifest, { status, at: new Date().toISOString(), level: 'authenticated-read', detail });
      };
      const check = await catalog.verify(manifest, { signal, onProgress: progressLine(io, `hashing ${manifest.id}`) });
      if (!check.ok) {
        const detail = `stored bytes are ${check.size} with sha256 ${check.sha256}; manifest says ${check.expected.size} with ${check.expected.sha256}`;
        await record('failed', detail);
        throw new StoreError(
          'STORE_INTEGRITY',
          `backup ${manifest.id} failed verification: ${detail}; do not restore it, use another backup`,
        );
      }
      let plain = 0;
      let chunks = 0;
      try {
        const stored = checkedStored(await catalog.open(manifest, { signal }), manifest);
        for await (const piece of open(stored, {
          keys,
          signal,
          onProgress: (p) => {
            chunks = p.chunks;
          },
        }))
          plain += piece.length;
      } catch (error) {
        if (isSealError(error) && !KEY_CODES.has(error.code) && error.code !== 'SEAL_ABORTED')
          await record('failed', `${error.code}: ${error.message}`);
        throw error;
      }
      if (manifest.plainSize !== undefined && manifest.plainSize !== plain) {
        const detail = `decrypted to ${plain} bytes, the manifest recorded ${manifest.plainSize}`;
        await record('failed', detail);
        throw new StoreError('STORE_INTEGRITY', `backup ${manifest.id} failed verification: ${detail}`);
      }
      await record('passed', `${check.size} stored bytes match sha256; ${chunks} chunks authenticated; ${plain} bytes`);
      io.stdout.write(`${manifest.id} ok\n`);
      io.stderr.write(
        `drkit: verified ${manifest.kind} backup ${manifest.id}: ${check.size} stored bytes match the manifest's sha256, ${chunks} chunks authenticated, ${plain} bytes, ${seconds(started)}\n`,
      );
      return EXIT.OK;
    });
  },
});

/** `drkit backup orphans`: objects without manifests (interrupted backups), optionally removed. */
export const backupOrphansCommand = defineCommand({
  path: ['backup', 'orphans'],
  summary: 'list objects without a manifest (interrupted backups) and manifests without an object',
  options: {
    clean: { type: 'boolean', description: 'delete the orphan objects (never ones younger than --grace)' },
    grace: { type: 'string', value: 'HOURS', description: 'objects younger than this may still be being written (default 6)' },
    ...storeOption,
  },
  async run({ options, io }) {
    const hours = options.grace === undefined ? 6 : Number(options.grace);
    if (!Number.isFinite(hours) || hours < 0) throw new UsageError(`--grace must be a number of hours >= 0 (got '${options.grace}')`);
    const graceMs = hours * 3600 * 1000;
    return withCatalog(options.store, io, async (catalog) => {
      const report = await catalog.orphans({ graceMs });
      for (const o of report.objects) io.stdout.write(`orphan  ${o.key}  ${human(o.size)}  ${o.modifiedAt.toISOString()}\n`);
      for (const o of report.young) io.stdout.write(`young   ${o.key}  ${human(o.size)}  (may still be being written)\n`);
      for (const m of report.broken) io.stdout.write(`broken  ${m.id}  ${m.kind}  object ${m.object.key} missing or resized\n`);
      for (const i of report.invalid) io.stdout.write(`invalid ${i.key}  ${i.reason}\n`);
      if (options.clean) {
        const deleted = await catalog.cleanOrphans({ graceMs });
        io.stderr.write(`drkit: deleted ${deleted.length} orphan object(s)\n`);
      }
      return EXIT.OK;
    });
  },
});

const COUNT_RULES = [
  ['keep-last', 'keepLast'],
  ['keep-hourly', 'keepHourly'],
  ['keep-daily', 'keepDaily'],
  ['keep-weekly', 'keepWeekly'],
  ['keep-monthly', 'keepMonthly'],
  ['keep-yearly', 'keepYearly'],
] as const;

/** `drkit prune`: apply a retention policy. */
export const pruneCommand = defineCommand({
  path: ['prune'],
  summary: 'delete backups a retention policy no longer keeps (restic forget semantics)',
  options: {
    'keep-last': { type: 'string', value: 'N', description: 'keep the N newest' },
    'keep-hourly': { type: 'string', value: 'N', description: 'keep the newest of each of the last N hours that have backups' },
    'keep-daily': { type: 'string', value: 'N', description: 'likewise for days' },
    'keep-weekly': { type: 'string', value: 'N', description: 'likewise for weeks (Monday to Sunday)' },
    'keep-monthly': { type: 'string', value: 'N', description: 'likewise for months' },
    'keep-yearly': { type: 'string', value: 'N', description: 'likewise for years' },
    'keep-within': { type: 'string', value: 'DURATION', description: 'keep everything newer than this, e.g. 30d, 12h, 1y6m' },
    'keep-within-incremental': {
      type: 'string',
      value: 'DURATION',
      description: 'incrementals: keep those newer than this (e.g. 7d) instead of following the rules above',
    },
    kind: { type: 'string', value: 'KIND', description: 'only this kind (default every kind, each planned on its own)' },
    'dry-run': { type: 'boolean', description: 'show what would be kept and deleted, delete nothing' },
    yes: { type: 'boolean', description: 'delete without asking (needed when not at a terminal)' },
    json: { type: 'boolean', description: 'print the plan as JSON' },
    ...storeOption,
  },
  details: `
Rules are OR-ed: a backup is kept when any rule keeps it, and the reasons are shown. Retention
never deletes the newest verified backup of a kind, nor a backup that a kept incremental
builds on. Deleting needs --yes; without it (and without --dry-run) the plan is shown and
nothing is deleted (exit 3).

Examples (the platform plan, then the trading plan):
  drkit prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
  drkit prune --keep-within 30d --keep-within-incremental 7d --yes`,
  async run({ options, io }) {
    const policy: RetentionPolicy = {};
    for (const [flag, field] of COUNT_RULES) {
      const value = options[flag];
      if (value === undefined) continue;
      if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} must be a whole number (got '${value}')`);
      policy[field] = Number(value);
    }
    if (options['keep-within'] !== undefined) policy.keepWithin = options['keep-within'];
    if (options['keep-within-incremental'] !== undefined) policy.incremental = { keepWithin: options['keep-within-incremental'] };
    if (Object.keys(policy).length === 0) throw new UsageError('prune needs at least one --keep-* rule (refusing to delete every backup)');
    const kind = parseKind(options.kind, 'prune', false);
    const confirmed = options.yes === true;
    const dryRun = options['dry-run'] === true || !confirmed;
    return withCatalog(options.store, io, async (catalog) => {
      const result = await catalog.prune(policy, { dryRun, ...(kind ? { kind } : {}) });
      if (options.json) io.stdout.write(`${JSON.stringify({ ...result.plan, deleted: result.deleted, dryRun }, null, 2)}\n`);
      else {
        for (const d of result.plan.keep) io.stdout.write(`keep    ${d.id}  ${d.kind.padEnd(13)}  ${d.reasons.join(', ')}\n`);
        for (const d of result.plan.drop)
          io.stdout.write(`${dryRun ? 'drop   ' : 'deleted'} ${d.id}  ${d.kind.padEnd(13)}  ${d.reasons.join(', ')}\n`);
      }
      for (const warning of result.plan.warnings) io.stderr.write(`drkit: warning: ${warning}\n`);
      const summary = `${result.plan.keep.length} kept, ${result.plan.drop.length} ${dryRun ? 'to delete' : 'deleted'}`;
      if (dryRun && !options['dry-run'] && result.plan.drop.length > 0) {
        io.stderr.write(`drkit: refused: ${summary}; nothing was deleted (pass --yes to delete, or --dry-run to only look)\n`);
        return EXIT.REFUSED;
      }
      io.stderr.write(`drkit: prune: ${summary}${dryRun ? ' (dry run: nothing deleted)' : ''}\n`);
      return EXIT.OK;
    });
  },
});
