import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { generateKey } from '@drkit/crypto-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modeString } from '../src/commands/files.js';
import { EXIT } from '../src/index.js';
import { cliRunner } from './io.js';

const KEY = generateKey();
const ID = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;

let dir: string;
let src: string;
let storeDir: string;
/** The store and the key file. */
let env: NodeJS.ProcessEnv;

// The key may never be printed.
const { drkit, drkitAtTerminal } = cliRunner(
  () => env,
  () => [KEY.toString('base64'), KEY.toString('hex')],
  (printed, secret) => expect(printed).not.toContain(secret),
);

/** What a restore must reproduce of one entry: type, permission bits, content (or link target), mtime of files. */
interface Snap {
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  sha256?: string;
  link?: string;
  mtimeMs?: number;
}

/** Every entry under `root`, by relative path. */
async function snapshot(root: string, relative = '', out = new Map<string, Snap>()): Promise<Map<string, Snap>> {
  for (const name of (await readdir(join(root, relative))).sort()) {
    const rel = relative ? `${relative}/${name}` : name;
    const path = join(root, rel);
    const info = await lstat(path);
    const mode = info.mode & 0o7777;
    if (info.isSymbolicLink()) out.set(rel, { type: 'symlink', mode: 0, link: await readlink(path) });
    else if (info.isDirectory()) {
      out.set(rel, { type: 'directory', mode });
      await snapshot(root, rel, out);
    } else
      out.set(rel, {
        type: 'file',
        mode,
        sha256: createHash('sha256')
          .update(await readFile(path))
          .digest('hex'),
        mtimeMs: Math.floor(info.mtimeMs),
      });
  }
  return out;
}

async function put(path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  await mkdir(dirname(join(src, path)), { recursive: true });
  await writeFile(join(src, path), content);
  await chmod(join(src, path), mode);
}

interface ListedBackup {
  id: string;
  kind: string;
  createdAt: string;
  type: 'full' | 'incremental';
  parent?: string;
  compression: string;
  labels?: Record<string, string>;
}

async function fileBackups(): Promise<ListedBackup[]> {
  const list = await drkit(['backup', 'list', '--kind', 'files', '--json']);
  expect(list.code, list.err).toBe(EXIT.OK);
  return JSON.parse(list.out) as ListedBackup[];
}

async function backup(...flags: string[]): Promise<{ id: string; err: string }> {
  const result = await drkit(['backup', 'files', '--dir', src, ...flags]);
  expect(result.code, result.err).toBe(EXIT.OK);
  const id = result.out.trim();
  expect(id).toMatch(ID);
  return { id, err: result.err };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-cli-files-'));
  src = join(dir, 'src');
  storeDir = join(dir, 'store');
  const keyFile = join(dir, 'drkit.key');
  await writeFile(keyFile, `${KEY.toString('base64')}\n`, { mode: 0o600 });
  env = { DRKIT_STORE: pathToFileURL(storeDir).href, DRKIT_KEY_FILE: keyFile };
  await put('a.txt', 'alpha\n');
  await put('bin/run.sh', '#!/bin/sh\necho run\n', 0o755);
  await put('secret.key', 'not really a key\n', 0o600);
  await put('docs/readme.md', '# read me\n'.repeat(50));
  await put('docs/guide.md', '# guide\n'.repeat(20), 0o640);
  await put('docs/big.bin', randomBytes(300_000));
  await put('space name/unicode café.txt', 'ünïcödé\n');
  await mkdir(join(src, 'empty'), { mode: 0o750 });
  await chmod(join(src, 'empty'), 0o750);
  await symlink('a.txt', join(src, 'link'));
  await symlink('../docs/guide.md', join(src, 'bin/guide'));
  // An old mtime, to see it restored exactly.
  await utimes(join(src, 'docs/guide.md'), new Date('2021-03-04T05:06:07.123Z'), new Date('2021-03-04T05:06:07.123Z'));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('drkit backup/restore files and drkit files list/diff/which on a file:// store', () => {
  let full = '';
  let incremental = '';

  it('backup files: the first backup is full, with no parent; the summary says what it stored', async () => {
    const { id, err } = await backup('--tier', 'daily');
    full = id;
    expect(err).toMatch(
      new RegExp(
        `^drkit: stored full file backup ${id} of ${hostname()}:${src}, no parent: stored 7 files, \\d+ bytes of content \\(\\d+ bytes in the store\\); ` +
          'changes: 13 added, 0 modified, 0 deleted, 0 renamed, 0 with other metadata; ' +
          'the tree has 7 files, 4 directories, 2 symlinks, \\d+ bytes; zstd, key k\\w+, [\\d.]+ s\\n',
        'm',
      ),
    );
    expect(err).not.toMatch(/warning/);
    const [listed] = await fileBackups();
    expect(listed).toMatchObject({ id, kind: 'files', type: 'full', compression: 'zstd', labels: { dir: src } });
    expect(listed?.parent).toBeUndefined();
  });

  it('backup files again: incremental on the previous one, counting added, modified, deleted, renamed and metadata changes', async () => {
    await put('a.txt', 'alpha, edited and longer\n');
    await put('new.txt', 'brand new\n');
    await rm(join(src, 'docs/readme.md'));
    await rename(join(src, 'secret.key'), join(src, 'secret-renamed.key'));
    await chmod(join(src, 'bin/run.sh'), 0o700);
    const { id, err } = await backup('--tier', 'daily');
    incremental = id;
    expect(err).toMatch(
      new RegExp(
        `drkit: stored incremental file backup ${id} of ${hostname()}:${src}, parent ${full}: stored 2 files, 35 bytes of content .*; ` +
          // The docs directory's mtime changed with its deleted file: metadata, as run.sh's mode.
          'changes: 1 added, 1 modified, 1 deleted, 1 renamed, 2 with other metadata; the tree has 7 files,',
      ),
    );
  });

  it('backup list --kind files --json lists id, createdAt, type and parent; the table shows TYPE and PARENT', async () => {
    const listed = await fileBackups();
    expect(listed.map((m) => [m.id, m.type, m.parent])).toEqual([
      [full, 'full', undefined],
      [incremental, 'incremental', full],
    ]);
    for (const m of listed) expect(Date.parse(m.createdAt)).not.toBeNaN();
    const table = await drkit(['backup', 'list', '--kind', 'files']);
    expect(table.code, table.err).toBe(EXIT.OK);
    expect(table.out).toMatch(/^ID +KIND +TIER +CREATED +SIZE +VERIFIED +TYPE +PARENT\n/);
    expect(table.out).toMatch(new RegExp(`^${full} +files +daily .* full +-\\n`, 'm'));
    expect(table.out).toMatch(new RegExp(`^${incremental} +files +daily .* incremental +${full}\\n`, 'm'));
  });

  it('backup files --full takes a full backup although there is a previous one; --compress gzip is recorded', async () => {
    const { id, err } = await backup('--full', '--compress', 'gzip');
    expect(err).toMatch(new RegExp(`stored full file backup ${id} of \\S+, no parent: .*; gzip, key `));
    const listed = (await fileBackups()).find((m) => m.id === id);
    expect(listed).toMatchObject({ type: 'full', compression: 'gzip' });
    expect(listed?.parent).toBeUndefined();
    // And the next one is incremental on it (gzip only when asked: zstd again).
    const next = await backup('--exclude', 'docs/big.bin', '--exclude', '**/*.sh');
    expect(next.err).toMatch(new RegExp(`stored incremental file backup ${next.id} of \\S+, parent ${id}: .*; zstd, key `));
    const { out } = await drkit(['files', 'list', next.id]);
    expect(out).not.toMatch(/big\.bin|run\.sh/);
    expect(out).toMatch(/ docs\/guide\.md\n/);
  });

  it('backup files of a missing directory fails with one line naming the error code; bad flags are usage errors', async () => {
    const missing = join(dir, 'no-such-dir');
    const result = await drkit(['backup', 'files', '--dir', missing]);
    expect(result.code).toBe(EXIT.FAILED);
    expect(result.out).toBe('');
    expect(result.err).toBe(`drkit: error FILES_SOURCE_INVALID: cannot back up ${missing}: it does not exist\n`);
    const file = await drkit(['backup', 'files', '--dir', join(src, 'a.txt')]);
    expect(file.code).toBe(EXIT.FAILED);
    expect(file.err).toMatch(/^drkit: error FILES_SOURCE_INVALID: .* it is not a directory\n$/);

    const noDir = await drkit(['backup', 'files']);
    expect(noDir.code).toBe(EXIT.USAGE);
    expect(noDir.err).toMatch(/^drkit: 'drkit backup files' needs --dir DIR/);
    const compress = await drkit(['backup', 'files', '--dir', src, '--compress', 'bzip2']);
    expect(compress.code).toBe(EXIT.USAGE);
    expect(compress.err).toBe("drkit: --compress must be gzip or zstd (got 'bzip2')\n");
    const climbing = await drkit(['backup', 'files', '--dir', src, '--exclude', '../etc']);
    expect(climbing.code).toBe(EXIT.USAGE);
    expect(climbing.err).toMatch(/^drkit: --exclude: path selector "\.\.\/etc" climbs out/);
    const noStore = await drkit(['backup', 'files', '--dir', src], { DRKIT_STORE: undefined });
    expect(noStore.code).toBe(EXIT.USAGE);
    expect(noStore.err).toMatch(/DRKIT_STORE/);
    for (const r of [result, file, noDir, compress, climbing, noStore]) expect(r.err.trim().split('\n')).toHaveLength(1);
  });

  it('restore files into a new directory gives back the source: content, modes, symlinks, mtimes', async () => {
    const { id } = await backup();
    const target = join(dir, 'restored', 'new');
    const result = await drkit(['restore', 'files', 'latest', '--dir', src, '--target-dir', target]);
    expect(result.code, result.err).toBe(EXIT.OK);
    expect(result.out).toMatch(
      new RegExp(
        `^restored backup ${id} \\(\\S+, incremental on \\S+, of ${hostname()}:${src}\\) into ${target}: 7 files, [45] directories, 2 symlinks, \\d+ bytes, every file's SHA-256 verified against the index, [\\d.]+ s\\n`,
      ),
    );
    expect(result.out).toMatch(
      new RegExp(`^read the archives of \\d+ backups?: ${ID.source.slice(1, -1)}.* \\(\\d+ bytes fetched\\)\\n`, 'm'),
    );
    expect(result.out).not.toMatch(/replaced/);
    const [restored, source] = [await snapshot(target), await snapshot(src)];
    expect([...restored.keys()]).toEqual([...source.keys()]);
    expect(restored).toEqual(source);
    expect(restored.get('bin/run.sh')?.mode).toBe(0o700);
    expect(restored.get('empty')?.mode).toBe(0o750);
    expect(restored.get('docs/guide.md')?.mtimeMs).toBe(Date.parse('2021-03-04T05:06:07.123Z'));

    // An empty directory is restored into just as well, without any confirmation.
    const empty = join(dir, 'restored', 'empty-dir');
    await mkdir(empty);
    const again = await drkit(['restore', 'files', id, '--target-dir', empty]);
    expect(again.code, again.err).toBe(EXIT.OK);
    expect(await snapshot(empty)).toEqual(source);

    // --threads: extraction threads (or none); a bad count is a usage error.
    const threaded = join(dir, 'restored', 'threaded');
    const withThreads = await drkit(['restore', 'files', id, '--target-dir', threaded, '--threads', '2']);
    expect(withThreads.code, withThreads.err).toBe(EXIT.OK);
    expect(await snapshot(threaded)).toEqual(source);
    const bad = await drkit(['restore', 'files', id, '--target-dir', join(dir, 'restored', 'x'), '--threads', 'many']);
    expect(bad.code).toBe(EXIT.USAGE);
    expect(bad.err).toMatch(/--threads must be an integer from 0 to 16/);
  });

  it('restore files --path restores only those paths (globs too), from an older backup by id', async () => {
    const target = join(dir, 'restored', 'docs-only');
    const result = await drkit(['restore', 'files', full, '--target-dir', target, '--path', 'docs/', '--path', '**/*.sh']);
    expect(result.code, result.err).toBe(EXIT.OK);
    expect(result.out).toMatch(new RegExp(`^restored backup ${full} .*\\(docs/, \\*\\*/\\*\\.sh\\) into ${target}: 4 files,`));
    const restored = await snapshot(target);
    expect([...restored.keys()].filter((p) => restored.get(p)?.type !== 'directory')).toEqual([
      'bin/run.sh',
      'docs/big.bin',
      'docs/guide.md',
      'docs/readme.md',
    ]);
    // As it was in the full backup: readme.md since deleted, run.sh still 0755.
    expect(restored.get('bin/run.sh')?.mode).toBe(0o755);
    expect(await readFile(join(target, 'docs/readme.md'), 'utf8')).toBe('# read me\n'.repeat(50));

    const none = await drkit(['restore', 'files', full, '--target-dir', join(dir, 'restored', 'none'), '--path', 'nothing/here']);
    expect(none.code).toBe(EXIT.FAILED);
    expect(none.err).toMatch(/^drkit: error FILES_NO_MATCH: nothing in backup \S+ matches "nothing\/here"/m);
    const badPath = await drkit(['restore', 'files', full, '--target-dir', join(dir, 'restored', 'none'), '--path', '/../x']);
    expect(badPath.code).toBe(EXIT.USAGE);
    expect(badPath.err).toMatch(/^drkit: --path: path selector "\/\.\.\/x" climbs out/);
    expect(existsSync(join(dir, 'restored', 'none'))).toBe(false);
  });

  it('restore files into a non-empty directory without --merge is refused, changing nothing', async () => {
    const target = join(dir, 'occupied');
    await mkdir(target);
    await writeFile(join(target, 'a.txt'), 'local copy\n');
    const result = await drkit(['restore', 'files', 'latest', '--target-dir', target]);
    expect(result.code).toBe(EXIT.REFUSED);
    expect(result.out).toBe('');
    expect(result.err).toBe(
      `drkit: refused: ${target} is not empty; nothing was restored (restore into a new or empty directory, or pass --merge to restore into it, moving the entries it replaces aside)\n`,
    );
    expect(await readdir(target)).toEqual(['a.txt']);
    const notDir = await drkit(['restore', 'files', 'latest', '--target-dir', join(target, 'a.txt')]);
    expect(notDir.code).toBe(EXIT.FAILED);
    expect(notDir.err).toMatch(/^drkit: error FILES_TARGET_INVALID: .*a\.txt is not a directory/);
  });

  it('restore files --merge needs --yes without a terminal, asks at one, and keeps what it replaces aside', async () => {
    const target = join(dir, 'merge-target');
    await mkdir(target);
    await writeFile(join(target, 'a.txt'), 'local copy\n');
    await writeFile(join(target, 'local-only.txt'), 'mine\n');

    const refused = await drkit(['restore', 'files', 'latest', '--target-dir', target, '--merge']);
    expect(refused.code).toBe(EXIT.REFUSED);
    expect(refused.out).toBe('');
    expect(refused.err).toMatch(new RegExp(`^drkit: refused: restoring \\S+ into ${target} with --merge would:\\n {2}1\\. read backup `));
    expect(refused.err).toContain(`moved (kept, not deleted) to ${target}.drkit-replaced-<time>`);
    expect(refused.err).toMatch(/drkit: nothing was changed\. Pass --yes to merge, or restore into a new or empty directory\.\n$/);
    expect(await readFile(join(target, 'a.txt'), 'utf8')).toBe('local copy\n');

    const declined = await drkitAtTerminal(['restore', 'files', 'latest', '--target-dir', target, '--merge'], 'yes\n');
    expect(declined.code).toBe(EXIT.REFUSED);
    expect(declined.err).toContain("Type the target directory's name (merge-target) to go ahead");
    expect(declined.err).toContain("refused: the answer was not 'merge-target'");
    expect(await readFile(join(target, 'a.txt'), 'utf8')).toBe('local copy\n');

    const merged = await drkitAtTerminal(
      ['restore', 'files', 'latest', '--target-dir', target, '--merge', '--path', 'a.txt'],
      'merge-target\n',
    );
    expect(merged.code, merged.err).toBe(EXIT.OK);
    const aside = /^the entries it replaced were moved to (\S+)$/m.exec(merged.out)?.[1] as string;
    expect(aside).toMatch(new RegExp(`^${target}\\.drkit-replaced-`));
    expect(await readFile(join(aside, 'a.txt'), 'utf8')).toBe('local copy\n');
    expect(await readFile(join(target, 'a.txt'), 'utf8')).toBe('alpha, edited and longer\n');
    expect(await readFile(join(target, 'local-only.txt'), 'utf8')).toBe('mine\n');

    const yes = await drkit(['restore', 'files', 'latest', '--target-dir', target, '--merge', '--yes']);
    expect(yes.code, yes.err).toBe(EXIT.OK);
    expect(yes.out).toMatch(/^the entries it replaced were moved to \S+$/m);
    expect(await readFile(join(target, 'docs/guide.md'), 'utf8')).toBe('# guide\n'.repeat(20));
    expect(await readFile(join(target, 'local-only.txt'), 'utf8')).toBe('mine\n');
  });

  it('files list prints the tree like ls -l, and --json the backup and its entries', async () => {
    const list = await drkit(['files', 'list', full]);
    expect(list.code, list.err).toBe(EXIT.OK);
    const lines = list.out.trimEnd().split('\n');
    expect(lines).toHaveLength(13);
    expect(list.out).toMatch(/^-rwxr-xr-x +19 +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {2}bin\/run\.sh$/m);
    expect(list.out).toMatch(/^-rw------- +17 +\S+ {2}secret\.key$/m);
    expect(list.out).toMatch(/^-rw-r----- +160 +2021-03-04T05:06:07Z {2}docs\/guide\.md$/m);
    expect(list.out).toMatch(/^lrwxrwxrwx +- +\S+ {2}link -> a\.txt$/m);
    expect(list.out).toMatch(/^lrwxrwxrwx +- +\S+ {2}bin\/guide -> \.\.\/docs\/guide\.md$/m);
    expect(list.out).toMatch(/^drwxr-x--- +- +\S+ {2}empty$/m);
    expect(list.out).toMatch(/ space name\/unicode café\.txt$/m);
    expect(list.err).toMatch(new RegExp(`^drkit: backup ${full} \\(\\S+, full, of ${hostname()}:${src}\\): 13 entries\\n$`));

    const docs = await drkit(['files', 'list', 'latest', '--dir', src, '--path', 'docs/*.md']);
    expect(docs.code, docs.err).toBe(EXIT.OK);
    expect(
      docs.out
        .trimEnd()
        .split('\n')
        .map((l) => l.split('  ').at(-1)),
    ).toEqual(['docs/guide.md']);

    const json = await drkit(['files', 'list', incremental, '--json']);
    expect(json.code, json.err).toBe(EXIT.OK);
    const parsed = JSON.parse(json.out) as {
      backup: Record<string, unknown>;
      entries: { path: string; type: string; mode: number; size: number; sha256?: string; link?: string; storedIn?: string }[];
    };
    expect(parsed.backup).toMatchObject({ id: incremental, type: 'incremental', parent: full, dir: src, host: hostname() });
    expect(parsed.entries.find((e) => e.path === 'bin/run.sh')).toMatchObject({ type: 'file', mode: 0o700, size: 19 });
    expect(parsed.entries.find((e) => e.path === 'link')).toMatchObject({ type: 'symlink', link: 'a.txt' });
    // Unchanged content is still read from the full backup.
    expect(parsed.entries.find((e) => e.path === 'docs/big.bin')?.storedIn).toBe(full);
    expect(parsed.entries.find((e) => e.path === 'a.txt')?.storedIn).toBe(incremental);
    expect(parsed.entries.find((e) => e.path === 'a.txt')?.sha256).toBe(
      createHash('sha256').update('alpha, edited and longer\n').digest('hex'),
    );

    const other = await drkit(['files', 'list', full, '--dir', join(dir, 'elsewhere')]);
    expect(other.code).toBe(EXIT.FAILED);
    expect(other.err).toMatch(
      new RegExp(`^drkit: error FILES_BACKUP_NOT_FOUND: backup ${full} is a backup of \\S+, not of ${join(dir, 'elsewhere')}`),
    );
    const unknown = await drkit(['files', 'list', '20200101T000000000Z-abcdef']);
    expect(unknown.code).toBe(EXIT.FAILED);
    expect(unknown.err).toMatch(/^drkit: error FILES_BACKUP_NOT_FOUND: there is no file backup 20200101T000000000Z-abcdef in this store/);
  });

  it('files diff prints +, -, M, R and m lines sorted by path, and --json the entries', async () => {
    const diff = await drkit(['files', 'diff', full, incremental]);
    expect(diff.code, diff.err).toBe(EXIT.OK);
    expect(diff.out.split('\n')).toEqual([
      'M a.txt (6 -> 25 bytes)',
      'm bin/run.sh (mode -rwxr-xr-x -> -rwx------)',
      // Its file deleted, the directory has another mtime.
      expect.stringMatching(/^m docs \(mtime \S+Z -> \S+Z\)$/),
      '- docs/readme.md',
      '+ new.txt',
      'R secret.key -> secret-renamed.key',
      '',
    ]);
    expect(diff.err).toBe(`drkit: ${full} -> ${incremental}: 1 added, 1 deleted, 1 modified, 1 renamed, 2 with other metadata\n`);

    const narrowed = await drkit(['files', 'diff', full, incremental, '--path', 'docs/']);
    expect(narrowed.code, narrowed.err).toBe(EXIT.OK);
    expect(narrowed.out).toMatch(/^m docs \(mtime \S+ -> \S+\)\n- docs\/readme\.md\n$/);

    const json = await drkit(['files', 'diff', full, incremental, '--json']);
    expect(json.code, json.err).toBe(EXIT.OK);
    const parsed = JSON.parse(json.out) as {
      from: { id: string };
      to: { id: string; parent: string };
      added: { path: string }[];
      deleted: { path: string }[];
      modified: { before: { size: number }; after: { path: string; size: number } }[];
      renamed: { before: { path: string }; after: { path: string } }[];
      metadata: { before: { mode: number }; after: { path: string; mode: number } }[];
    };
    expect(parsed.from.id).toBe(full);
    expect(parsed.to).toMatchObject({ id: incremental, parent: full });
    expect(parsed.added.map((e) => e.path)).toEqual(['new.txt']);
    expect(parsed.deleted.map((e) => e.path)).toEqual(['docs/readme.md']);
    expect(parsed.modified).toMatchObject([{ before: { size: 6 }, after: { path: 'a.txt', size: 25 } }]);
    expect(parsed.renamed).toMatchObject([{ before: { path: 'secret.key' }, after: { path: 'secret-renamed.key' } }]);
    expect(parsed.metadata).toMatchObject([
      { before: { mode: 0o755 }, after: { path: 'bin/run.sh', mode: 0o700 } },
      { after: { path: 'docs' } },
    ]);

    const same = await drkit(['files', 'diff', incremental, incremental]);
    expect(same.code, same.err).toBe(EXIT.OK);
    expect(same.out).toBe('');
    expect((await drkit(['files', 'diff', full])).code).toBe(EXIT.USAGE);
  });

  it('files which lists the backups holding a path or glob, newest first, with size, hash and mtime', async () => {
    const all = (await fileBackups()).map((m) => m.id);
    const which = await drkit(['files', 'which', 'a.txt', '--dir', src]);
    expect(which.code, which.err).toBe(EXIT.OK);
    const [header, ...rows] = which.out.trimEnd().split('\n');
    expect(header).toMatch(/^ID +CREATED +SIZE +SHA256 +MTIME +PATH$/);
    expect(rows.map((r) => r.split(/ +/)[0])).toEqual([...all].reverse());
    const sha = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 12);
    expect(rows.at(-1)).toMatch(new RegExp(`^${full} +\\S+Z +6 +${sha('alpha\n')} +\\S+Z +a\\.txt$`));
    expect(rows[0]).toMatch(new RegExp(` +25 +${sha('alpha, edited and longer\n')} +\\S+Z +a\\.txt$`));
    expect(which.err).toBe(`drkit: ${all.length} backups hold a.txt\n`);

    const deleted = await drkit(['files', 'which', '**/readme.md', '--json']);
    expect(deleted.code, deleted.err).toBe(EXIT.OK);
    const parsed = JSON.parse(deleted.out) as {
      id: string;
      createdAt: string;
      dir: string;
      entry: { path: string; size: number; sha256: string };
    }[];
    expect(parsed.map((v) => v.id)).toEqual([full]);
    expect(parsed[0]).toMatchObject({ dir: src, entry: { path: 'docs/readme.md', size: 500 } });
    expect(Date.parse(parsed[0]?.createdAt as string)).not.toBeNaN();

    const nowhere = await drkit(['files', 'which', 'never/was.txt']);
    expect(nowhere.code, nowhere.err).toBe(EXIT.OK);
    expect(nowhere.out).toBe('');
    expect(nowhere.err).toBe('drkit: no file backup in this store holds never/was.txt\n');
    const other = await drkit(['files', 'which', 'a.txt', '--dir', join(dir, 'elsewhere'), '--json']);
    expect(other.out).toBe('[]\n');
  });

  it('help: drkit help <command>, <command> --help and the files group', async () => {
    for (const argv of [
      ['help', 'backup', 'files'],
      ['backup', 'files', '--help'],
    ]) {
      const help = await drkit(argv);
      expect(help.code).toBe(EXIT.OK);
      expect(help.out).toMatch(/^Usage: drkit backup files \[flags\]/);
      expect(help.out).toMatch(/--exclude <GLOB>\s+leave out a path or glob/);
      expect(help.out).toMatch(/--compress <gzip\|zstd>/);
    }
    const restore = await drkit(['help', 'restore', 'files']);
    expect(restore.out).toMatch(/^Usage: drkit restore files <id\|latest> \[flags\]/);
    expect(restore.out).toMatch(/--merge\s+restore into a non-empty --target-dir/);
    for (const [name, args] of [
      ['list', '<id|latest>'],
      ['diff', '<id1> <id2>'],
      ['which', '<path-or-glob>'],
    ] as const) {
      const help = await drkit(['files', name, '--help']);
      expect(help.out).toContain(`Usage: drkit files ${name} ${args} [flags]`);
      expect((await drkit(['help', 'files', name])).out).toBe(help.out);
    }
    const group = await drkit(['help', 'files']);
    expect(group.code).toBe(EXIT.OK);
    expect(group.out).toMatch(/files list <id\|latest> +list the tree/);
    expect(group.out).toMatch(/files which <path-or-glob>/);
    const root = await drkit(['--help']);
    expect(root.out).toMatch(/backup files +back up a directory tree/);
    expect(root.out).toMatch(/restore files <id\|latest> +restore a file backup/);
    const unknown = await drkit(['help', 'files', 'nope']);
    expect(unknown.code).toBe(EXIT.USAGE);
    expect(unknown.err).toBe("drkit: unknown command 'files nope' (see 'drkit --help')\n");
  });
});

describe('modeString', () => {
  it('renders type and permission bits like ls -l, with setuid, setgid and sticky bits', () => {
    expect(modeString('file', 0o644)).toBe('-rw-r--r--');
    expect(modeString('directory', 0o1777)).toBe('drwxrwxrwt');
    expect(modeString('file', 0o4755)).toBe('-rwsr-xr-x');
    expect(modeString('file', 0o2640)).toBe('-rw-r-S---');
    expect(modeString('symlink', 0o777)).toBe('lrwxrwxrwx');
  });
});
