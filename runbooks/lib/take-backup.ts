// Taking the plans' backup set, one component at a time, and checking it once it is stored.
// The scheduled backup runbook and the DR drill both call these, so a drill exercises the
// very code that runs every night. Each component goes straight from its source into the
// sealed stream and the store (no plaintext file on disk); the catalog writes a manifest only
// after the object was read back, so a component that fails leaves no backup behind.
//
// "Verified after upload" means two things here. Every copy of a mirrored store (local disk,
// us-east-1, us-west-2) holds the manifest and bytes whose size and SHA-256 match it: a put
// already checked that, but a copy can be lost or altered later, and this is the moment to
// find out. And, read back from the primary, every chunk authenticates and decrypts with the
// keys the operators hold: a backup nobody can open is not a backup.

import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { VERSION } from '@drkit/cli';
import { parseKeyFile, type StreamProgress, seal, sealingKeyId } from '@drkit/crypto-stream';
import { backupFiles } from '@drkit/file-archive';
import { backupBase, backupPostgres } from '@drkit/postgres-backup';
import { backupRedis } from '@drkit/redis-backup';
import type { StepContext } from '@drkit/runbook';
import { type Catalog, createCatalog, type Manifest, openStore, type Store, splitStoreUrls } from '@drkit/s3-store';
import { type ArtifactCheck, type BackupTier, CONFIG_KIND, verifyArtifact } from './backup-set.ts';
import {
  type BackupComponent,
  backupKeys,
  backupStoreUrl,
  databaseUrl,
  type Platform,
  platformOf,
  redisUrl,
  reportEvents,
  required,
  withBackups,
} from './platform.ts';
import { backupSecrets } from './secrets.ts';

/** One stored artifact of a backup run. */
export interface TakenArtifact {
  component: BackupComponent;
  kind: string;
  id: string;
  createdAt: string;
  tier: string;
  type: 'full' | 'incremental';
  /** Stored (sealed) bytes. */
  size: number;
  /** Bytes before compression and encryption, when the package records them. */
  plainSize?: number;
  /** The backup an incremental builds on. */
  parent?: string;
}

/** What {@link verifyUploaded} found for one artifact. */
export interface UploadCheck {
  id: string;
  kind: string;
  /** Every copy matched and the primary's bytes authenticated and decrypted. */
  ok: boolean;
  /** One entry per copy of the store, in the configured order (the first is the primary). */
  copies: { url: string /* credential-free, as configured */; ok: boolean; detail: string }[];
  /** The authenticated read from the primary. */
  decrypt: ArtifactCheck;
}

/** The compression of the plan's backup components: "gzip level 9" for the database dump. */
const PG_GZIP_LEVEL = 9;

/**
 * Whether a tier's file backups are full: the tier's `fullFiles`, else the plan's rule (the
 * weekly and monthly backups are "full"; daily and hourly are incremental).
 */
export function fullFilesOf(platform: Platform, tier: BackupTier): boolean {
  return platform.backup.tiers[tier]?.fullFiles ?? (tier === 'weekly' || tier === 'monthly');
}

/** A manifest as the artifact a run reports (also for backups a drill finds already stored). */
export function takenOf(component: BackupComponent, manifest: Manifest): TakenArtifact {
  return {
    component,
    kind: manifest.kind,
    id: manifest.id,
    createdAt: manifest.createdAt,
    tier: manifest.tier,
    type: manifest.type,
    size: manifest.object.size,
    ...(manifest.plainSize !== undefined ? { plainSize: manifest.plainSize } : {}),
    ...(manifest.parent !== undefined ? { parent: manifest.parent } : {}),
  };
}

function messageOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' && !message.startsWith(code) ? `${code}: ${message}` : message;
}

/**
 * Backs up one component of the set (postgres also stores its globals companion; redis one or
 * two kinds per vars.backup.redisMode). Logs and reports progress through ctx. Throws on
 * failure (nothing partial is listed: the catalog writes manifests last).
 *
 * `full` forces a full files backup; without it, the tier decides (weekly and monthly are
 * full unless `vars.backup.tiers.<tier>.fullFiles` says otherwise). Other components are
 * always full.
 */
export async function backupComponent(
  ctx: StepContext<unknown>,
  component: BackupComponent,
  options: { tier: BackupTier; full?: boolean },
): Promise<{ artifacts: TakenArtifact[]; warnings: string[] }> {
  const platform = platformOf(ctx);
  const { tier } = options;
  const onEvent = reportEvents(ctx);
  const signal = ctx.signal;
  const environment = ctx.environment;
  switch (component) {
    case 'postgres': {
      const url = databaseUrl(ctx);
      const keys = backupKeys(ctx);
      const result = await withBackups(ctx, ({ catalog }) =>
        backupPostgres({
          url,
          catalog,
          keys,
          tier,
          // One compression, the plan's: pg_dump's own gzip at level 9 inside its custom format.
          compression: 'pg_dump',
          compressLevel: PG_GZIP_LEVEL,
          globals: true,
          environment,
          signal,
          onEvent,
        }),
      );
      const artifacts = [takenOf('postgres', result.manifest)];
      if (result.globals) artifacts.push(takenOf('postgres', result.globals));
      else result.warnings.push('no roles and tablespaces companion (postgres-globals) was stored with this dump');
      return { artifacts, warnings: result.warnings };
    }
    case 'postgres-base': {
      const url = databaseUrl(ctx);
      const keys = backupKeys(ctx);
      const result = await withBackups(ctx, ({ catalog }) => backupBase({ url, catalog, keys, tier, environment, signal, onEvent }));
      ctx.log.info(
        `stored base backup ${result.manifest.id}: ${result.base.startLsn} to ${result.base.stopLsn} on timeline ${result.base.timeline} (cluster ${result.base.systemId})`,
      );
      return { artifacts: [takenOf('postgres-base', result.manifest)], warnings: [] };
    }
    case 'redis': {
      const url = redisUrl(ctx);
      const keys = backupKeys(ctx);
      const result = await withBackups(ctx, ({ catalog }) =>
        backupRedis({ url, catalog, keys, tier, mode: platform.backup.redisMode, environment, signal, onEvent }),
      );
      const artifacts: TakenArtifact[] = [];
      if (result.rdb) artifacts.push(takenOf('redis', result.rdb));
      if (result.logical) artifacts.push(takenOf('redis', result.logical));
      if (artifacts.length === 0) throw new Error('the Redis backup stored nothing (no RDB and no logical export)');
      return { artifacts, warnings: result.warnings };
    }
    case 'files': {
      const root = required(ctx, 'files').root;
      const keys = backupKeys(ctx);
      const full = options.full ?? fullFilesOf(platform, tier);
      const result = await withBackups(ctx, ({ catalog }) =>
        backupFiles({
          dir: root,
          catalog,
          keys,
          // The plan's "incremental tar archives, gzip": GNU tar can read the decrypted archive.
          compression: 'gzip',
          full,
          exclude: platform.backup.filesExclude,
          tier,
          environment,
          signal,
          onEvent,
        }),
      );
      return { artifacts: [takenOf('files', result.manifest)], warnings: result.warnings };
    }
    case 'config': {
      const manifest = await withBackups(ctx, ({ catalog }) => backupConfigFiles(ctx, catalog, tier));
      return { artifacts: [takenOf('config', manifest)], warnings: [] };
    }
    case 'secrets': {
      const envFile = required(ctx, 'envFile');
      const inner = ctx.optionalSecret('secretsKey');
      if (inner === undefined)
        throw new Error(
          'the secrets backup needs the secretsKey secret (DRKIT_SECRETS_KEY, or the file the config names): it is the inner key of the double seal, separate from the backup key. Set it, or leave "secrets" out of vars.backup.components',
        );
      const keys = { secretsKey: parseKeyFile(inner, 'the secretsKey secret'), backupKey: backupKeys(ctx) };
      ctx.log.info(`sealing the secrets of ${envFile} twice (the secrets key inside, the backup key outside)`);
      const manifest = await withBackups(ctx, ({ catalog }) =>
        backupSecrets({ catalog, secrets: { envFile }, keys, tier, source: envFile, environment }),
      );
      ctx.log.info(
        `stored secrets backup ${manifest.id}: ${String(manifest.fingerprint?.secrets ?? '?')} secrets (names recorded, values sealed)`,
      );
      return { artifacts: [takenOf('secrets', manifest)], warnings: [] };
    }
  }
}

// ---------------------------------------------------------------------------------------
// Configuration files: one tar of every configured file, sealed as one `config` artifact
// ---------------------------------------------------------------------------------------

/** A configuration file to archive: its name in the tar and where it is. */
interface ConfigEntry {
  name: string;
  path: string;
}

/** The configured paths (files, or directories taken whole), as tar entries, sorted by name. */
async function configEntries(paths: readonly string[]): Promise<ConfigEntry[]> {
  const entries: ConfigEntry[] = [];
  const walk = async (path: string): Promise<void> => {
    const info = await stat(path).catch((error: unknown) => {
      throw new Error(
        `configuration file ${path} cannot be read (${messageOf(error)}): restore it, or remove it from vars.backup.configFiles`,
      );
    });
    if (info.isDirectory()) {
      for (const name of (await readdir(path)).sort()) {
        const child = join(path, name);
        // Links inside a configured directory are not followed: they may leave the tree.
        if ((await lstat(child)).isSymbolicLink()) continue;
        await walk(child);
      }
    } else if (info.isFile()) entries.push({ name: path.replace(/^\/+/, ''), path });
  };
  for (const configured of paths) await walk(isAbsolute(configured) ? configured : resolve(configured));
  const unique = new Map(entries.map((e) => [e.name, e]));
  return [...unique.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** One 512-byte ustar header. */
function tarHeader(name: string, size: number, mode: number, mtime: number, type: '0' | 'x'): Buffer {
  const header = Buffer.alloc(512);
  const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, '0');
  header.write(name.slice(0, 100), 0, 100, 'utf8');
  header.write(octal(mode & 0o7777, 8), 100, 8, 'ascii');
  header.write(octal(0, 8), 108, 8, 'ascii');
  header.write(octal(0, 8), 116, 8, 'ascii');
  header.write(octal(size, 12), 124, 12, 'ascii');
  header.write(octal(Math.floor(mtime), 12), 136, 12, 'ascii');
  header.write('        ', 148, 8, 'ascii');
  header.write(type, 156, 1, 'ascii');
  header.write('ustar\u000000', 257, 8, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return header;
}

const padding = (size: number) => Buffer.alloc((512 - (size % 512)) % 512);

/** A pax record ("<length> path=<name>\n"), whose length counts its own digits. */
function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length++;
  return Buffer.from(`${length}${body}`, 'utf8');
}

/** Tar entries of the files, with their digests for the manifest's fingerprint. */
async function* tarOf(
  entries: readonly ConfigEntry[],
  record: (entry: { path: string; size: number; sha256: string }) => void,
): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    const info = await stat(entry.path);
    const content = await readFile(entry.path);
    record({ path: `/${entry.name}`, size: content.length, sha256: createHash('sha256').update(content).digest('hex') });
    if (Buffer.byteLength(entry.name) > 100) {
      const pax = paxRecord('path', entry.name);
      yield tarHeader('././@PaxHeader', pax.length, 0o644, info.mtimeMs / 1000, 'x');
      yield Buffer.concat([pax, padding(pax.length)]);
    }
    yield tarHeader(entry.name, content.length, info.mode, info.mtimeMs / 1000, '0');
    yield Buffer.concat([content, padding(content.length)]);
  }
  yield Buffer.alloc(1024);
}

/**
 * Stores `vars.backup.configFiles` as one `config` artifact: a plain tar (GNU tar extracts it
 * once `drkit backup get` has decrypted it), gzip-compressed and sealed. One artifact per run,
 * not one per file, so retention keeps or drops a day's configuration as a whole.
 */
async function backupConfigFiles(ctx: StepContext<unknown>, catalog: Catalog, tier: BackupTier): Promise<Manifest> {
  const configured = platformOf(ctx).backup.configFiles;
  if (configured.length === 0)
    throw new Error('no configuration files to back up: list them in vars.backup.configFiles, or leave "config" out of the components');
  const entries = await configEntries(configured);
  if (entries.length === 0) throw new Error(`vars.backup.configFiles (${configured.join(', ')}) holds no regular file`);
  const keys = backupKeys(ctx);
  const files: { path: string; size: number; sha256: string }[] = [];
  let progress: StreamProgress = { plainBytes: 0, sealedBytes: 0, chunks: 0 };
  ctx.log.info(`archiving ${entries.length} configuration files: ${entries.map((e) => `/${e.name}`).join(', ')}`);
  const description = `configuration files: ${configured.join(', ')}`;
  const manifest = await catalog.put({
    kind: CONFIG_KIND,
    tier,
    source: {
      description: description.length > 1000 ? `${description.slice(0, 990)}...` : description,
      environment: ctx.environment,
    },
    tool: { name: 'drkit', version: VERSION },
    compression: 'gzip',
    encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: sealingKeyId(keys) },
    body: seal(
      tarOf(entries, (f) => files.push(f)),
      {
        key: keys,
        compression: 'gzip',
        signal: ctx.signal,
        onProgress: (p) => {
          progress = p;
        },
      },
    ),
    signal: ctx.signal,
    beforeManifest: async () => ({
      plainSize: progress.plainBytes,
      fingerprint: { format: 'tar', files: files.length, entries: files },
    }),
  });
  ctx.log.info(`stored config backup ${manifest.id}: ${files.length} files, ${progress.plainBytes} bytes of tar`);
  return manifest;
}

// ---------------------------------------------------------------------------------------
// Verification after upload
// ---------------------------------------------------------------------------------------

/** One copy of the (possibly mirrored) backup store, opened on its own. */
interface Copy {
  url: string;
  store: Store;
  catalog: Catalog;
}

function openCopies(ctx: StepContext<unknown>): Copy[] {
  return splitStoreUrls(backupStoreUrl(ctx)).map((url) => {
    const store = openStore(url, {
      onEvent: (event) => {
        if (event.type === 'retry') ctx.log.debug(`${event.operation} on ${event.store}: retry ${event.attempt} (${event.reason})`);
      },
    });
    return { url, store, catalog: createCatalog(store) };
  });
}

/** Checks one copy: the manifest is there and describes the same object, whose bytes match it. */
async function checkCopy(copy: Copy, manifest: Manifest, signal: AbortSignal): Promise<{ url: string; ok: boolean; detail: string }> {
  try {
    const own = await copy.catalog.get(manifest.id, manifest.kind).catch(() => undefined);
    if (own === undefined)
      return { url: copy.url, ok: false, detail: `the manifest of ${manifest.kind} ${manifest.id} is missing on this copy` };
    if (own.object.sha256 !== manifest.object.sha256 || own.object.size !== manifest.object.size)
      return {
        url: copy.url,
        ok: false,
        detail: `this copy's manifest describes ${own.object.size} bytes with SHA-256 ${own.object.sha256.slice(0, 16)}..., not the ${manifest.object.size} bytes with ${manifest.object.sha256.slice(0, 16)}... the artifact was stored with`,
      };
    const check = await copy.catalog.verify(manifest, { signal });
    return check.ok
      ? { url: copy.url, ok: true, detail: `${check.size} bytes, SHA-256 ${check.sha256.slice(0, 16)}... as recorded` }
      : {
          url: copy.url,
          ok: false,
          detail: `STORE_INTEGRITY: the stored object is ${check.size} bytes with SHA-256 ${check.sha256.slice(0, 16)}..., the manifest says ${check.expected.size} bytes with ${check.expected.sha256.slice(0, 16)}...`,
        };
  } catch (error) {
    return { url: copy.url, ok: false, detail: messageOf(error) };
  }
}

/**
 * Verifies artifacts after upload: on EVERY copy of the (mirrored) store the stored bytes
 * match the manifest (catalog.verify on a catalog per copy URL — splitStoreUrls), and, read
 * from the primary, every chunk authenticates and decrypts (verifyArtifact). Never throws for
 * bad artifacts: returns the findings.
 *
 * The outcome is recorded in the manifest on every copy (level "authenticated-read"): passed
 * only when the decryption and every copy passed, so `latest` and retention never count an
 * artifact whose post-upload check failed. The read runs on the primary alone, never through
 * the mirror, so a replica cannot hide a bad primary by answering in its place.
 */
export async function verifyUploaded(ctx: StepContext<unknown>, artifacts: readonly TakenArtifact[]): Promise<UploadCheck[]> {
  const copies = openCopies(ctx);
  const primary = copies[0] as Copy;
  const keys = backupKeys(ctx);
  const checks: UploadCheck[] = [];
  try {
    return await withBackups(ctx, async ({ catalog: mirror }) => {
      for (const [index, artifact] of artifacts.entries()) {
        ctx.progress({ done: index, total: artifacts.length, unit: 'artifacts', message: `${artifact.kind} ${artifact.id}` });
        let manifest: Manifest | undefined;
        for (const copy of copies) {
          manifest = await copy.catalog.get(artifact.id, artifact.kind).catch(() => undefined);
          if (manifest !== undefined) break;
        }
        if (manifest === undefined) {
          const detail = `no copy of the store has a manifest for ${artifact.kind} ${artifact.id}`;
          checks.push({
            id: artifact.id,
            kind: artifact.kind,
            ok: false,
            copies: copies.map((c) => ({ url: c.url, ok: false, detail })),
            decrypt: { id: artifact.id, kind: artifact.kind, ok: false, storedBytes: 0, plainBytes: 0, detail },
          });
          ctx.log.error(`${artifact.kind} ${artifact.id}: ${detail}`);
          continue;
        }
        const found = manifest;
        // The regions are independent: read them at once.
        const copyChecks = await Promise.all(copies.map((copy) => checkCopy(copy, found, ctx.signal)));
        const decrypt = await verifyArtifact(primary.catalog, found, keys, { signal: ctx.signal });
        const ok = decrypt.ok && copyChecks.every((c) => c.ok);
        const bad = copyChecks.filter((c) => !c.ok);
        const detail = ok
          ? decrypt.detail
          : [decrypt.ok ? undefined : decrypt.detail, ...bad.map((c) => `copy ${c.url}: ${c.detail}`)].filter(Boolean).join('; ');
        await mirror
          .recordVerification(found, {
            status: ok ? 'passed' : 'failed',
            at: new Date().toISOString(),
            level: 'authenticated-read',
            detail: detail.slice(0, 1000),
          })
          .catch((error: unknown) =>
            ctx.log.warn(`could not record the verification of ${found.kind} ${found.id} on every copy: ${messageOf(error)}`),
          );
        if (ok)
          ctx.log.info(`${found.kind} ${found.id}: ${copies.length} ${copies.length === 1 ? 'copy' : 'copies'} match; ${decrypt.detail}`);
        else ctx.log.error(`${found.kind} ${found.id} failed verification: ${detail}`);
        checks.push({ id: found.id, kind: found.kind, ok, copies: copyChecks, decrypt });
      }
      ctx.progress({ done: artifacts.length, total: artifacts.length, unit: 'artifacts' });
      return checks;
    });
  } finally {
    await Promise.all(copies.map((c) => c.store.close().catch(() => {})));
  }
}

/** The weekday (0 = Sunday) and day of the month of `now` in `timeZone`. */
function calendarDay(now: Date, timeZone: string): { weekday: number; day: number } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', day: 'numeric' }).formatToParts(now);
  const weekday = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'].indexOf(parts.find((p) => p.type === 'weekday')?.value ?? '');
  return { weekday, day: Number(parts.find((p) => p.type === 'day')?.value) };
}

/** The tier to take now when --tier auto: monthly on the 1st, weekly on Sunday, else daily (in the retention timeZone, default UTC). */
export function tierFor(now: Date, timeZone = 'UTC'): BackupTier {
  const { weekday, day } = calendarDay(now, timeZone);
  if (day === 1) return 'monthly';
  if (weekday === 0) return 'weekly';
  return 'daily';
}
