import type { Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  type ArchiveCompression,
  backupFiles,
  compileSelectors,
  diffBackups,
  type FilesDiff,
  FilesError,
  type FilesEvent,
  type FilesKeys,
  findBackupsHolding,
  fingerprintOf,
  isFilesError,
  type ListedEntry,
  listFiles,
  type PathVersion,
  resolveFilesBackup,
  restoreFiles,
} from '@drkit/file-archive';
import { type Catalog, type Manifest, TIERS } from '@drkit/s3-store';
import { type CliIo, defineCommand } from '../command.js';
import { confirmDestructive } from '../confirm.js';
import { EXIT, UsageError } from '../errors.js';
import { eventPrinter, mb } from '../events.js';
import { KEY_FILE_HELP, KEY_SOURCES_HELP, loadCommandKeys, sealingKeyId } from '../keys.js';
import { guarded as guardedBy } from '../secrets.js';
import { parseTier, withCatalog } from './backup.js';
import { plural, seconds } from './seal.js';

const STORE_HELP = 'where backups live: file:///var/backups/drkit or s3://bucket/prefix?region=us-east-1 (default $DRKIT_STORE)';
const storeOption = { store: { type: 'string', value: 'URL', description: STORE_HELP } } as const;
const keyFileOption = { 'key-file': { type: 'string', value: 'FILE', description: KEY_FILE_HELP } } as const;

const SELECTOR_HELP = `Paths and globs are relative to the backed-up directory: uploads/2025/10/ is that directory
and everything under it, config/app.yaml one file; * and ? match within one name, ** across
directories (e.g. '**/*.pdf'), [abc] one of a class. Quote globs so the shell leaves them alone.`;

/** File backups print no connection strings: there is nothing of theirs to scrub beyond what the printer always scrubs. */
const NO_SECRETS: readonly string[] = [];

// ---------------------------------------------------------------------------------------------
// Options

/** An invalid option or path selector of file-archive is a mistake in the command line (exit 2). */
function isFilesUsageError(error: unknown): error is FilesError {
  return isFilesError(error, 'FILES_OPTIONS_INVALID');
}

/** Runs `body`; FILES_OPTIONS_INVALID becomes a usage error (exit 2). */
function guarded<T>(body: () => Promise<T>): Promise<T> {
  return guardedBy(NO_SECRETS, isFilesUsageError, body);
}

function oneRef(value: string | undefined, command: string): string {
  const ref = value?.trim();
  if (!ref) throw new UsageError(`'drkit ${command}' needs a backup id or 'latest'`);
  return ref;
}

/** A directory flag as an absolute path (backups record the absolute path they were taken of). */
function absoluteDir(value: string | undefined, flag: string): string | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === '') throw new UsageError(`${flag} needs a directory`);
  return resolve(value);
}

/**
 * `--path` or `--exclude` selectors (repeatable), without empty ones, checked before any work
 * starts. @throws UsageError for a selector that climbs out with ".." or is empty
 */
function selectors(values: readonly string[] | undefined, flag: string): string[] | undefined {
  const paths = (values ?? []).filter((p) => p.trim() !== '');
  if (paths.length === 0) return undefined;
  try {
    compileSelectors(paths);
  } catch (error) {
    if (isFilesUsageError(error)) throw new UsageError(`${flag}: ${error.message}`);
    throw error;
  }
  return paths;
}

/**
 * The file backup `ref` names: an id, or "latest" (of `dir` when given). With an id and a
 * `dir`, the backup must be one of that directory.
 * @throws FilesError FILES_BACKUP_NOT_FOUND
 */
async function resolveBackup(catalog: Catalog, ref: string, dir: string | undefined): Promise<Manifest> {
  if (ref === 'latest') return resolveFilesBackup(catalog, 'latest', dir === undefined ? {} : { root: dir });
  const manifest = await resolveFilesBackup(catalog, ref);
  if (dir !== undefined && manifest.labels?.dir !== dir)
    throw new FilesError(
      'FILES_BACKUP_NOT_FOUND',
      `backup ${ref} is a backup of ${manifest.source.description}, not of ${dir}: leave out --dir, or name a backup of that directory`,
    );
  return manifest;
}

// ---------------------------------------------------------------------------------------------
// Output

/** "1 entry", "2 entries". */
function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * Renders file-archive's events on stderr: every step, every warning, and progress at most
 * every `everyMs` (entries scanned; files and MB archived or restored, of the total when
 * known). `skipSteps` are steps the command summarises itself.
 */
export function filesEventPrinter(
  io: CliIo,
  options: { everyMs?: number; skipSteps?: readonly string[] } = {},
): { onEvent: (event: FilesEvent) => void; warnings: Set<string> } {
  return eventPrinter<FilesEvent>(
    io,
    NO_SECRETS,
    (event) => {
      const at = event.path ? `, at ${event.path}` : '';
      if (event.operation === 'scan') return `scan: ${count(event.files, 'entry', 'entries')}${at}`;
      const of = event.totalBytes !== undefined ? ` of ${mb(event.totalBytes)}` : '';
      return `${event.operation}: ${plural(event.files, 'file')}, ${mb(event.bytes)}${of}${at}`;
    },
    options,
  );
}

/** `ls -l`-style type and permission bits, e.g. `drwxr-xr-x`, `-rw-r-----`, `lrwxrwxrwx`. */
export function modeString(type: ListedEntry['type'], mode: number): string {
  const kind = type === 'directory' ? 'd' : type === 'symlink' ? 'l' : '-';
  const bit = (mask: number, ch: string) => (mode & mask ? ch : '-');
  const special = (exec: number, flag: number, set: string, unset: string, normal: string) =>
    mode & flag ? (mode & exec ? set : unset) : mode & exec ? normal : '-';
  return (
    kind +
    bit(0o400, 'r') +
    bit(0o200, 'w') +
    special(0o100, 0o4000, 's', 'S', 'x') +
    bit(0o040, 'r') +
    bit(0o020, 'w') +
    special(0o010, 0o2000, 's', 'S', 'x') +
    bit(0o004, 'r') +
    bit(0o002, 'w') +
    special(0o001, 0o1000, 't', 'T', 'x')
  );
}

/** A time of the index as shown in listings: ISO 8601 to the second, UTC. */
function shortTime(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

/** What the JSON outputs say about a backup. */
function backupJson(manifest: Manifest): Record<string, unknown> {
  const f = fingerprintOf(manifest);
  return {
    id: manifest.id,
    createdAt: manifest.createdAt,
    type: manifest.type,
    parent: manifest.parent ?? null,
    tier: manifest.tier,
    host: f.host,
    dir: f.root,
  };
}

/** One line about a backup for stderr: "backup X (createdAt, full, of host:/dir)". */
function backupLine(manifest: Manifest): string {
  const parent = manifest.parent ? ` on ${manifest.parent}` : '';
  return `backup ${manifest.id} (${manifest.createdAt}, ${manifest.type}${parent}, of ${manifest.source.description})`;
}

/** Rows padded into columns (the last one is not padded); `right` columns are right-aligned. */
function columns(rows: readonly string[][], right: readonly number[] = []): string {
  const widths: number[] = [];
  for (const row of rows) for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  return rows
    .map(
      (row) =>
        `${row
          .map((cell, i) =>
            i === row.length - 1 ? cell : right.includes(i) ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number),
          )
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

/** A path as listings show it: a symlink with its target. */
function shownPath(entry: ListedEntry): string {
  return entry.type === 'symlink' ? `${entry.path} -> ${entry.link ?? '?'}` : entry.path;
}

/** `ls -l`-style lines of a tree: mode, size, mtime, path (`-> target` for symlinks). */
export function renderListing(entries: readonly ListedEntry[]): string {
  return columns(
    entries.map((e) => [modeString(e.type, e.mode), e.type === 'file' ? String(e.size) : '-', shortTime(e.mtime), shownPath(e)]),
    [1],
  );
}

/** What differs in the metadata of one path, e.g. "mode -rw-r--r-- -> -rw-------". */
function metadataChange(before: ListedEntry, after: ListedEntry): string {
  const parts: string[] = [];
  if (before.mode !== after.mode) parts.push(`mode ${modeString(before.type, before.mode)} -> ${modeString(after.type, after.mode)}`);
  if (before.uid !== after.uid || before.gid !== after.gid) parts.push(`owner ${before.uid}:${before.gid} -> ${after.uid}:${after.gid}`);
  if (before.mtimeNs !== after.mtimeNs) parts.push(`mtime ${before.mtime} -> ${after.mtime}`);
  return parts.join(', ');
}

/** What changed in the content of one path, e.g. "12 -> 40 bytes" or "file -> symlink". */
function contentChange(before: ListedEntry, after: ListedEntry): string {
  if (before.type !== after.type) return `${before.type} -> ${after.type}`;
  if (after.type === 'symlink') return `-> ${before.link ?? '?'} became -> ${after.link ?? '?'}`;
  return before.size === after.size ? `${after.size} bytes, other content` : `${before.size} -> ${after.size} bytes`;
}

/** A diff as lines sorted by path: `+` added, `-` deleted, `M` modified, `R` renamed (from -> to), `m` metadata. */
export function renderDiff(diff: FilesDiff): string {
  const rows: { path: string; line: string }[] = [
    ...diff.added.map((e) => ({ path: e.path, line: `+ ${shownPath(e)}` })),
    ...diff.deleted.map((e) => ({ path: e.path, line: `- ${shownPath(e)}` })),
    ...diff.modified.map(({ before, after }) => ({ path: after.path, line: `M ${after.path} (${contentChange(before, after)})` })),
    ...diff.renamed.map(({ before, after }) => ({ path: after.path, line: `R ${before.path} -> ${after.path}` })),
    ...diff.metadata.map(({ before, after }) => ({ path: after.path, line: `m ${after.path} (${metadataChange(before, after)})` })),
  ];
  rows.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return rows.map((r) => `${r.line}\n`).join('');
}

/** The counts of a diff, for the summary line. */
function diffCounts(diff: FilesDiff): string {
  return [
    `${diff.added.length} added`,
    `${diff.deleted.length} deleted`,
    `${diff.modified.length} modified`,
    `${diff.renamed.length} renamed`,
    `${diff.metadata.length} with other metadata`,
  ].join(', ');
}

// ---------------------------------------------------------------------------------------------
// backup files

/** `drkit backup files`: a full or incremental archive of a directory tree, sealed into the store. */
export const backupFilesCommand = defineCommand({
  path: ['backup', 'files'],
  summary: 'back up a directory tree: a full archive the first time, then incrementals of what changed, sealed and stored',
  options: {
    dir: { type: 'string', value: 'DIR', description: 'the directory to back up' },
    compress: { type: 'string', value: 'gzip|zstd', description: 'compression of the archive (default zstd)' },
    full: { type: 'boolean', description: 'take a full backup even when there is a previous one of this directory' },
    exclude: {
      type: 'string',
      value: 'GLOB',
      multiple: true,
      description: "leave out a path or glob relative to --dir (repeatable), e.g. cache/ or '**/*.tmp'",
    },
    tier: { type: 'string', value: 'TIER', description: `${TIERS.join(', ')} (default manual)` },
    env: { type: 'string', value: 'NAME', description: 'the environment, recorded in the manifest (e.g. production)' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
The first backup of a directory (on this host) is full; the next ones are incremental: they
store only the files that changed since the previous backup of the same directory (size,
mtime, ctime and inode are compared, and the content is hashed when they disagree); renamed
files reuse the content already stored. --full forces a full backup; a chain of 30 backups
also gets a full one next. Symlinks are stored as links, never followed; sockets, FIFOs and
devices are skipped with a warning. A file that changes while it is read is stored, marked
and reported: the next backup takes it again.

The archive is standard pax tar, compressed (zstd or gzip) in independent frames and sealed
(AES-256-GCM), with an index of the whole tree that listings, diffs and selective restores
read. The manifest is written last: an interrupted backup leaves no backup behind.

The new backup's id goes to stdout; steps, progress (every 5 s: entries scanned, files and MB
archived), warnings and a summary (full or incremental, its parent, what it stored, what
changed) go to stderr.

${SELECTOR_HELP}

${KEY_SOURCES_HELP}

Examples:
  drkit backup files --dir /srv/app/uploads --store s3://backups/prod --tier hourly
  drkit backup files --dir /etc --full --compress gzip --exclude 'ssl/private/'`,
  async run({ options, io, signal }) {
    if (options.dir === undefined || options.dir.trim() === '')
      throw new UsageError("'drkit backup files' needs --dir DIR, the directory to back up (see 'drkit backup files --help')");
    const dir = resolve(options.dir);
    let compression: ArchiveCompression | undefined;
    if (options.compress !== undefined) {
      if (options.compress !== 'gzip' && options.compress !== 'zstd')
        throw new UsageError(`--compress must be gzip or zstd (got '${options.compress}')`);
      compression = options.compress;
    }
    const tier = parseTier(options.tier) ?? 'manual';
    const environment = options.env?.trim();
    if (environment !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(environment))
      throw new UsageError(`--env must be a name of letters, digits, '.', '_' and '-' (got '${options.env}')`);
    const exclude = selectors(options.exclude, '--exclude');
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const started = performance.now();
    const printer = filesEventPrinter(io, { skipSteps: ['stored'] });
    const result = await guarded(() =>
      withCatalog(options.store, io, (catalog) =>
        backupFiles({
          dir,
          catalog,
          keys,
          ...(compression ? { compression } : {}),
          full: options.full === true,
          ...(exclude ? { exclude } : {}),
          tier,
          ...(environment ? { environment } : {}),
          signal,
          onEvent: printer.onEvent,
        }),
      ),
    );
    // Every warning is also an event; one that was not shown must not get lost.
    for (const warning of result.warnings) if (!printer.warnings.has(warning)) io.stderr.write(`drkit: warning: ${warning}\n`);
    const { manifest, fingerprint: f } = result;
    io.stdout.write(`${manifest.id}\n`);
    const c = f.changes;
    const flagged = [
      f.unstable > 0 ? `${plural(f.unstable, 'file')} changed while being read` : '',
      f.skipped > 0 ? `${count(f.skipped, 'entry', 'entries')} skipped` : '',
    ].filter(Boolean);
    io.stderr.write(
      `drkit: stored ${result.type} file backup ${manifest.id} of ${manifest.source.description}` +
        `${result.parent ? `, parent ${result.parent}` : ', no parent'}: ` +
        `stored ${plural(f.stored.files, 'file')}, ${f.stored.bytes} bytes of content (${manifest.object.size} bytes in the store); ` +
        `changes: ${c.added} added, ${c.modified} modified, ${c.deleted} deleted, ${c.renamed} renamed, ${c.metadata} with other metadata; ` +
        `the tree has ${plural(f.files, 'file')}, ${count(f.directories, 'directory', 'directories')}, ` +
        `${plural(f.symlinks, 'symlink')}, ${f.bytes} bytes; ${f.compression}, key ${sealingKeyId(keys)}, ${seconds(started)}` +
        `${flagged.length > 0 ? `; ${flagged.join(', ')}` : ''}` +
        `${result.warnings.length > 0 ? ` (${plural(result.warnings.length, 'warning')}, see above)` : ''}\n`,
    );
    return EXIT.OK;
  },
});

// ---------------------------------------------------------------------------------------------
// restore files

/** What the target directory is now: absent, an empty directory, or a directory with entries. */
async function targetState(target: string): Promise<'absent' | 'empty' | 'not-empty'> {
  let info: Stats;
  try {
    info = await lstat(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw new FilesError('FILES_TARGET_INVALID', `cannot use ${target} as the target: ${(error as Error).message}`, { cause: error });
  }
  if (!info.isDirectory())
    throw new FilesError(
      'FILES_TARGET_INVALID',
      `${target} is ${info.isSymbolicLink() ? 'a symlink' : 'not a directory'}: restore into a directory (a new one is created)`,
    );
  return (await readdir(target)).length === 0 ? 'empty' : 'not-empty';
}

/** What a merge restore will do, for the confirmation (said before anything is read). */
export function describeMerge(p: {
  manifest: Manifest;
  target: string;
  paths: readonly string[] | undefined;
  externalLinks: boolean;
}): string[] {
  const f = fingerprintOf(p.manifest);
  const what = p.paths ? `the entries matching ${p.paths.join(', ')}` : `the whole tree (${plural(f.files, 'file')}, ${f.bytes} bytes)`;
  return [
    `read ${backupLine(p.manifest)} and refuse everything if any entry could write outside ${p.target}${p.externalLinks ? '' : ' (symlinks pointing outside it included)'}`,
    `restore ${what} into a staging directory beside ${p.target}, checking every file's SHA-256 against the index`,
    `move the restored entries into ${p.target}; the entries of ${p.target} they replace are moved (kept, not deleted) to ${p.target}.drkit-replaced-<time>, and its other entries are left as they are`,
  ];
}

/** `drkit restore files`: the tree at a backup (or some paths of it) into a directory. */
export const restoreFilesCommand = defineCommand({
  path: ['restore', 'files'],
  summary: 'restore a file backup (or some paths of it) into a directory, checking every file against the index',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    'target-dir': {
      type: 'string',
      value: 'DIR',
      description: 'where to restore: a new or empty directory, or an existing one with --merge',
    },
    path: {
      type: 'string',
      value: 'PATH',
      multiple: true,
      description: 'restore only this path or glob of the backup (repeatable), e.g. uploads/2025/10/',
    },
    dir: { type: 'string', value: 'DIR', description: "with 'latest': the newest backup of this directory (the path as backed up)" },
    merge: {
      type: 'boolean',
      description: 'restore into a non-empty --target-dir, moving the entries it replaces aside (needs --yes or confirmation)',
    },
    yes: { type: 'boolean', description: 'merge without asking (needed when not at a terminal)' },
    'allow-external-links': { type: 'boolean', description: 'create symlinks that point outside the restored tree (refused by default)' },
    threads: {
      type: 'string',
      value: 'N',
      description:
        'extraction threads beside the one decrypting (default: one per core, at most 2, for 16 MiB or more; 0 uses least memory)',
    },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
The backup's index is read first, and the whole restore is refused if any entry could write
outside --target-dir (absolute paths, '..', entries under a symlink, devices) or, unless
--allow-external-links, is a symlink pointing outside it. Files are extracted into a staging
directory beside the target, each checked against the SHA-256 in the index, given their modes
and mtimes (and owners when run as root), and only then moved into place. An incremental
backup's unchanged files are read from the earlier backups that hold them.

Restoring into a new or empty directory changes nothing else and needs no confirmation. A
non-empty --target-dir is refused (exit 3) unless --merge: then entries of the target that
the restore replaces are moved to <target>.drkit-replaced-<time> (nothing is deleted), and
its other entries stay. --merge into a non-empty directory needs --yes; at a terminal without
it, the plan is shown and you are asked to type the directory's name. Otherwise the command
refuses at once (exit 3) and changes nothing.

'latest' is the newest file backup in the store (of --dir when given) whose verification did
not fail. The summary (files, directories, symlinks and bytes restored and verified, where
replaced entries went, the backups read) goes to stdout; steps, progress and warnings to
stderr.

${SELECTOR_HELP}

${KEY_SOURCES_HELP}

Examples:
  drkit restore files latest --dir /srv/app/uploads --target-dir /srv/restore/uploads
  drkit restore files 20250301T020000123Z-a1b2c3 --target-dir /srv/app/uploads --path 2025/10/ --merge --yes`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals[0], 'restore files');
    const targetDir = options['target-dir'];
    if (targetDir === undefined || targetDir.trim() === '')
      throw new UsageError("'drkit restore files' needs --target-dir DIR, where to restore (see 'drkit restore files --help')");
    const target = resolve(targetDir);
    const dir = absoluteDir(options.dir, '--dir');
    const paths = selectors(options.path, '--path');
    const merge = options.merge === true;
    const externalLinks = options['allow-external-links'] === true;
    const threads = options.threads === undefined ? undefined : Number(options.threads);
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 0 && threads <= 16))
      throw new UsageError(`--threads must be an integer from 0 to 16 (got '${options.threads}')`);
    const keys = await loadCommandKeys(options['key-file'], io.env);
    // The summary below says what the library's last step says.
    const printer = filesEventPrinter(io, { skipSteps: ['restored'] });
    const started = performance.now();

    return guarded(() =>
      withCatalog(options.store, io, async (catalog) => {
        const manifest = await resolveBackup(catalog, ref, dir);
        const state = await targetState(target);
        if (state === 'not-empty' && !merge) {
          io.stderr.write(
            `drkit: refused: ${target} is not empty; nothing was restored (restore into a new or empty directory, or pass --merge to restore into it, moving the entries it replaces aside)\n`,
          );
          return EXIT.REFUSED;
        }
        const replacing = state === 'not-empty';
        if (
          replacing &&
          options.yes !== true &&
          !(await confirmDestructive({
            io,
            signal,
            secrets: NO_SECRETS,
            action: `restoring ${manifest.id} into ${target} with --merge`,
            steps: describeMerge({ manifest, target, paths, externalLinks }),
            hint: 'Pass --yes to merge, or restore into a new or empty directory.',
            what: "the target directory's name",
            expected: basename(target),
          }))
        )
          return EXIT.REFUSED;

        const result = await restoreFiles({
          catalog,
          keys,
          backup: manifest,
          target,
          ...(paths ? { paths } : {}),
          // A target found empty is restored into as such: a non-empty one appearing meanwhile is refused, not merged unasked.
          existing: replacing ? 'merge' : 'refuse',
          allowExternalLinks: externalLinks,
          ...(threads === undefined ? {} : { threads }),
          signal,
          onEvent: printer.onEvent,
        });
        const out = (text: string) => io.stdout.write(text);
        out(
          `restored ${backupLine(manifest)}${paths ? ` (${paths.join(', ')})` : ''} into ${result.target}: ` +
            `${plural(result.files, 'file')}, ${count(result.directories, 'directory', 'directories')}, ` +
            `${plural(result.symlinks, 'symlink')}, ${result.bytes} bytes, every file's SHA-256 verified against the index, ${seconds(started)}\n`,
        );
        if (result.replaced) out(`the entries it replaced were moved to ${result.replaced}\n`);
        else if (replacing) out('no entry of the target was replaced\n');
        out(
          `read the archives of ${plural(result.archives.length, 'backup')}: ${result.archives.join(', ')} (${result.fetched} bytes fetched)\n`,
        );
        return EXIT.OK;
      }),
    );
  },
});

// ---------------------------------------------------------------------------------------------
// files list / diff / which

/** `drkit files list`: the tree at a backup, from its index. */
export const filesListCommand = defineCommand({
  path: ['files', 'list'],
  summary: 'list the tree at a file backup (or some paths of it): type, mode, size, mtime, path',
  args: '<id|latest>',
  positionals: { min: 1, max: 1 },
  options: {
    path: { type: 'string', value: 'PATH', multiple: true, description: 'only this path or glob, and what is under it (repeatable)' },
    dir: { type: 'string', value: 'DIR', description: "with 'latest': the newest backup of this directory (the path as backed up)" },
    json: { type: 'boolean', description: 'print the backup and its entries as JSON' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
Reads only the backup's index (a small ranged read), never its archive. One line per entry on
stdout, like ls -l: type and permission bits, size in bytes (files), mtime (UTC), the path
relative to the backed-up directory, and '-> target' for symlinks. The backup listed goes to
stderr. --json prints {"backup": {...}, "entries": [...]} with modes, owners, exact mtimes,
SHA-256 and the backup holding each file's content.

${SELECTOR_HELP}

Examples:
  drkit files list latest --dir /srv/app/uploads --path 2025/10/
  drkit files list 20250301T020000123Z-a1b2c3 --json`,
  async run({ options, positionals, io, signal }) {
    const ref = oneRef(positionals[0], 'files list');
    const dir = absoluteDir(options.dir, '--dir');
    const paths = selectors(options.path, '--path');
    const keys = await loadCommandKeys(options['key-file'], io.env);
    return guarded(() =>
      withCatalog(options.store, io, async (catalog) => {
        const manifest = await resolveBackup(catalog, ref, dir);
        const { entries } = await listFiles({ catalog, keys, backup: manifest, ...(paths ? { paths } : {}), signal });
        if (options.json) {
          io.stdout.write(`${JSON.stringify({ backup: backupJson(manifest), entries }, null, 2)}\n`);
          return EXIT.OK;
        }
        io.stdout.write(renderListing(entries));
        io.stderr.write(
          `drkit: ${backupLine(manifest)}: ${count(entries.length, 'entry', 'entries')}${paths ? ` matching ${paths.join(', ')}` : ''}\n`,
        );
        return EXIT.OK;
      }),
    );
  },
});

/** `drkit files diff`: what differs between the trees of two backups. */
export const filesDiffCommand = defineCommand({
  path: ['files', 'diff'],
  summary: 'show what differs between two file backups: added, deleted, modified, renamed, metadata',
  args: '<id1> <id2>',
  positionals: { min: 2, max: 2 },
  options: {
    path: { type: 'string', value: 'PATH', multiple: true, description: 'only this path or glob, and what is under it (repeatable)' },
    json: { type: 'boolean', description: 'print the differences as JSON' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
Compares the trees of two backups (of the same directory, typically; the older one first)
from their indexes alone. One line per path on stdout, sorted by path:
  + PATH          added
  - PATH          deleted
  M PATH (...)    modified: other content, symlink target or type
  R FROM -> TO    renamed: a path gone and a new one with the same content
  m PATH (...)    same content, other mode, owner or mtime
Counts go to stderr. --json prints {"from", "to", "added", "deleted", "modified", "renamed",
"metadata"} with full entries. 'latest' may name either backup.

${SELECTOR_HELP}

Example:
  drkit files diff 20250301T020000123Z-a1b2c3 latest --path config/`,
  async run({ options, positionals, io, signal }) {
    const from = oneRef(positionals[0], 'files diff');
    const to = oneRef(positionals[1], 'files diff');
    const paths = selectors(options.path, '--path');
    const keys = await loadCommandKeys(options['key-file'], io.env);
    return guarded(() =>
      withCatalog(options.store, io, async (catalog) => {
        const diff = await diffBackups({ catalog, keys, from, to, ...(paths ? { paths } : {}), signal });
        if (options.json) {
          io.stdout.write(
            `${JSON.stringify(
              {
                from: backupJson(diff.from),
                to: backupJson(diff.to),
                added: diff.added,
                deleted: diff.deleted,
                modified: diff.modified,
                renamed: diff.renamed,
                metadata: diff.metadata,
              },
              null,
              2,
            )}\n`,
          );
          return EXIT.OK;
        }
        io.stdout.write(renderDiff(diff));
        io.stderr.write(`drkit: ${diff.from.id} -> ${diff.to.id}${paths ? ` (${paths.join(', ')})` : ''}: ${diffCounts(diff)}\n`);
        return EXIT.OK;
      }),
    );
  },
});

/** The JSON of one backup holding a path. */
function versionJson(v: PathVersion): Record<string, unknown> {
  return { ...backupJson(v.manifest), entry: v.entry };
}

/** `drkit files which`: which backups hold a path, newest first. */
export const filesWhichCommand = defineCommand({
  path: ['files', 'which'],
  summary: 'find the file backups holding a path (or glob), newest first: what to restore a lost file from',
  args: '<path-or-glob>',
  positionals: { min: 1, max: 1 },
  options: {
    dir: { type: 'string', value: 'DIR', description: 'only backups of this directory (the path as backed up)' },
    json: { type: 'boolean', description: 'print the backups and entries as JSON' },
    ...keyFileOption,
    ...storeOption,
  },
  details: `
Reads only indexes. One line per backup and path on stdout, newest first: the backup id, when
it was taken, the size, the first 12 hex digits of the content's SHA-256 (a change of content
shows as a change of hash), the file's mtime (UTC) and the path. --json prints an array of
{"id", "createdAt", ..., "entry"}.

${SELECTOR_HELP}

Example:
  drkit files which 'invoices/2025/**/INV-0042.pdf' --dir /srv/app/uploads`,
  async run({ options, positionals, io, signal }) {
    const path = positionals[0]?.trim();
    if (!path) throw new UsageError("'drkit files which' needs a path or glob");
    const dir = absoluteDir(options.dir, '--dir');
    const keys: FilesKeys = await loadCommandKeys(options['key-file'], io.env);
    return guarded(() =>
      withCatalog(options.store, io, async (catalog) => {
        const found = await findBackupsHolding({
          catalog,
          keys,
          path,
          ...(dir === undefined ? {} : { root: dir }),
          // One unreadable backup (another key, damaged) is left out: say so, the answer is incomplete.
          onUnreadable: (manifest, error) =>
            io.stderr.write(
              `drkit: warning: backup ${manifest.id} was not searched: ${isFilesError(error) ? `${error.code}: ` : ''}${error instanceof Error ? error.message : String(error)}\n`,
            ),
          signal,
        });
        // Newest first (ids sort by time), then by path; the order found among equals is kept.
        const versions = [...found].sort((a, b) =>
          a.manifest.id === b.manifest.id
            ? a.entry.path < b.entry.path
              ? -1
              : a.entry.path > b.entry.path
                ? 1
                : 0
            : a.manifest.id < b.manifest.id
              ? 1
              : -1,
        );
        if (options.json) {
          io.stdout.write(`${JSON.stringify(versions.map(versionJson), null, 2)}\n`);
          return EXIT.OK;
        }
        if (versions.length === 0) {
          io.stderr.write(`drkit: no file backup in this store${dir === undefined ? '' : ` of ${dir}`} holds ${path}\n`);
          return EXIT.OK;
        }
        const rows = versions.map(({ manifest, entry }) => [
          manifest.id,
          shortTime(manifest.createdAt),
          entry.type === 'file' ? String(entry.size) : '-',
          entry.sha256 ? entry.sha256.slice(0, 12) : '-',
          shortTime(entry.mtime),
          shownPath(entry),
        ]);
        io.stdout.write(columns([['ID', 'CREATED', 'SIZE', 'SHA256', 'MTIME', 'PATH'], ...rows], [2]));
        const backups = new Set(versions.map((v) => v.manifest.id)).size;
        io.stderr.write(`drkit: ${plural(backups, 'backup')} ${backups === 1 ? 'holds' : 'hold'} ${path}\n`);
        return EXIT.OK;
      }),
    );
  },
});
