// Restores of backups an attacker holding the key (or a faulty writer) could have made. Each
// refusal must be typed, name the entry, and leave the machine as it was: nothing outside the
// target, no target, no staging directory. The positive control proves the forger writes
// backups that restore, so the refusals are refusals of the entries.
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { masterKey } from '@drkit/crypto-stream';
import { type Catalog, createCatalog, createFsStore, type Manifest } from '@drkit/s3-store';
import { beforeEach, describe, expect, it } from 'vitest';
import type { FilesKeys } from '../src/archive.js';
import { FilesError, type FilesErrorCode } from '../src/errors.js';
import { type RestoreFilesOptions, restoreFiles } from '../src/restore.js';
import { DEFAULT_MTIME_NS, type ForgedEntry, type ForgeSpec, forgeBackup } from './support/forge.js';

interface Node {
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  uid: number;
  mtimeNs: bigint;
  size: number;
  sha256?: string;
  link?: string;
}

/** Everything under `root` (not root itself), by relative path: type, mode, owner, mtime, content. */
async function tree(root: string): Promise<Record<string, Node>> {
  const out: Record<string, Node> = {};
  const visit = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const s = await lstat(full, { bigint: true });
      const type = s.isFile() ? 'file' : s.isDirectory() ? 'directory' : s.isSymbolicLink() ? 'symlink' : 'other';
      const node: Node = { type, mode: Number(s.mode) & 0o7777, uid: Number(s.uid), mtimeNs: s.mtimeNs, size: Number(s.size) };
      if (type === 'file')
        node.sha256 = createHash('sha256')
          .update(await readFile(full))
          .digest('hex');
      if (type === 'symlink') node.link = await readlink(full);
      out[path] = node;
      if (type === 'directory') await visit(full, path);
    }
  };
  await visit(root, '');
  return out;
}

const OLD = new Date('2010-01-02T03:04:05Z');

let base: string;
let work: string;
let target: string;
let outside: string;
let catalog: Catalog;
let keys: FilesKeys;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'drkit-files-malicious-'));
  catalog = createCatalog(createFsStore({ root: join(base, 'store') }));
  keys = masterKey(randomBytes(32));
  // The target's parent holds the target-to-be and a sentinel directory next to it.
  work = join(base, 'work');
  target = join(work, 'target');
  outside = join(work, 'outside');
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, 'sentinel.txt'), 'do not touch\n');
  await utimes(join(outside, 'sentinel.txt'), OLD, OLD);
  await utimes(outside, OLD, OLD);
  return () => rm(base, { recursive: true, force: true });
});

const forge = (entries: ForgedEntry[], spec: Omit<ForgeSpec, 'entries'> = {}) => forgeBackup(catalog, keys, { ...spec, entries });
const restore = (backup: Manifest, options: Partial<RestoreFilesOptions> = {}) =>
  restoreFiles({ catalog, keys, backup, target, ...options });

/** The restore fails with `code`, naming `path`; returns the error for more checks. */
async function expectRefused(restoring: Promise<unknown>, code: FilesErrorCode, path: string): Promise<FilesError> {
  const error = await restoring.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the restore should have been refused').toBeInstanceOf(FilesError);
  const e = error as FilesError;
  expect(e.code, e.message).toBe(code);
  expect(e.message.includes(path) || e.message.includes(JSON.stringify(path)), `${e.message} should name ${JSON.stringify(path)}`).toBe(
    true,
  );
  return e;
}

/** A refused restore left the target's parent exactly as it was: no target, no staging, sentinel untouched. */
async function expectUntouched(before: Record<string, Node>): Promise<void> {
  expect(await tree(work)).toEqual(before);
  expect(await readdir(base)).toEqual(['store', 'work']);
}

describe('a forged but well-formed backup (the control)', () => {
  it.each(['zstd', 'gzip'] as const)('restores exactly (%s)', async (compression) => {
    // Half a second: exact in the double utimes takes, so the restored mtime is exact too.
    const t1 = 1_600_000_000_500_000_000n;
    const backup = await forge(
      [
        { path: 'a.txt', content: 'alpha\n', mode: 0o640, mtimeNs: t1 },
        { path: 'docs', type: 'directory', mode: 0o750 },
        { path: 'docs/latest', type: 'symlink', link: 'sub/b.bin' },
        { path: 'docs/sub', type: 'directory' },
        { path: 'docs/sub/b.bin', content: randomBytes(70_000), mode: 0o600 },
        { path: 'docs/sub/empty', content: '' },
        { path: 'docs/up', type: 'symlink', link: '../a.txt' },
      ],
      { compression },
    );
    const before = await tree(work);
    const result = await restore(backup);
    expect(result).toMatchObject({ files: 3, directories: 2, symlinks: 2 });

    const restored = await tree(target);
    expect(Object.keys(restored)).toEqual(['a.txt', 'docs', 'docs/latest', 'docs/sub', 'docs/sub/b.bin', 'docs/sub/empty', 'docs/up']);
    expect(await readFile(join(target, 'a.txt'), 'utf8')).toBe('alpha\n');
    expect(restored['a.txt']).toMatchObject({ mode: 0o640, mtimeNs: t1 });
    expect(restored.docs).toMatchObject({ type: 'directory', mode: 0o750, mtimeNs: DEFAULT_MTIME_NS });
    expect(restored['docs/sub/b.bin']).toMatchObject({ size: 70_000, mode: 0o600 });
    expect(restored['docs/sub/empty']).toMatchObject({ type: 'file', size: 0 });
    expect(restored['docs/latest']).toMatchObject({ type: 'symlink', link: 'sub/b.bin' });
    expect(await readFile(join(target, 'docs/up'), 'utf8')).toBe('alpha\n');
    // Only the target is new in its parent: the staging directory is gone.
    const after = await tree(work);
    expect(Object.keys(after).filter((p) => !p.startsWith('target'))).toEqual(Object.keys(before));
    expect(await readdir(work)).toEqual(['outside', 'target']);
  });

  it('restores a selection of it', async () => {
    const backup = await forge([
      { path: 'bad', type: 'directory' },
      { path: 'bad/x.txt', content: 'x' },
      { path: 'good', type: 'directory' },
      { path: 'good/y.txt', content: 'y' },
    ]);
    await restore(backup, { paths: ['good/'] });
    expect(Object.keys(await tree(target))).toEqual(['good', 'good/y.txt']);
  });
});

describe('entries that name a place outside the target', () => {
  const cases: [string, (outside: string) => ForgedEntry[], string][] = [
    ['../evil', () => [{ path: '../evil', content: 'pwned' }], '../evil'],
    [
      'a/../../evil',
      () => [
        { path: 'a', type: 'directory' },
        { path: 'a/../../evil', content: 'pwned' },
      ],
      'a/../../evil',
    ],
    ['an absolute path', (o) => [{ path: `${o}/evil`, content: 'pwned' }], '<outside>/evil'],
    [
      'an empty component (a//b)',
      () => [
        { path: 'a', type: 'directory' },
        { path: 'a//b', content: 'pwned' },
      ],
      'a//b',
    ],
    ['"."', () => [{ path: '.', type: 'directory' }], '.'],
    ['"./x"', () => [{ path: './x', content: 'pwned' }], './x'],
    ['a NUL in the path', () => [{ path: 'a\0b', content: 'pwned' }], 'a\0b'],
    [
      'an entry under a file',
      () => [
        { path: 'f', content: 'f' },
        { path: 'f/evil', content: 'pwned' },
      ],
      'f/evil',
    ],
    ['an entry whose parent is not in the backup', () => [{ path: 'missing/evil', content: 'pwned' }], 'missing/evil'],
  ];

  it.each(cases)('refuses %s (FILES_UNSAFE_ENTRY), writing nothing', async (_, entries, named) => {
    const path = named.replace('<outside>', outside);
    const backup = await forge([{ path: 'good.txt', content: 'fine' }, ...entries(outside)]);
    const before = await tree(work);
    const error = await expectRefused(restore(backup), 'FILES_UNSAFE_ENTRY', path);
    expect(error.details.path).toBe(path);
    await expectUntouched(before);
  });

  it('refuses a file written through a symlink to an outside directory, even with external links allowed', async () => {
    const backup = await forge([
      { path: 'link', type: 'symlink', link: outside },
      { path: 'link/evil', content: 'pwned' },
    ]);
    const before = await tree(work);
    // The file written through the link is refused by default ...
    const first = await expectRefused(restore(backup), 'FILES_UNSAFE_ENTRY', 'link/evil');
    expect(first.details.path).toBe('link/evil');
    await expectUntouched(before);
    // ... and allowing external links never allows writing through one.
    const second = await expectRefused(restore(backup, { allowExternalLinks: true }), 'FILES_UNSAFE_ENTRY', 'link/evil');
    expect(second.details.reason).toMatch(/through the symlink link/);
    await expectUntouched(before);
  });

  it('refuses a directory under a symlink too (and what is under that directory)', async () => {
    const backup = await forge([
      { path: 'link', type: 'symlink', link: '.' },
      { path: 'link/sub', type: 'directory' },
      { path: 'link/sub/evil', content: 'pwned' },
    ]);
    const before = await tree(work);
    await expectRefused(restore(backup, { allowExternalLinks: true }), 'FILES_UNSAFE_ENTRY', 'link/sub');
    await expectUntouched(before);
  });

  // Relative targets are resolved from the link's own directory, component by component.
  it.each([
    ['sub/link -> ../../outside', 'sub/link', '../../outside'],
    ['evil -> ../outside', 'evil', '../outside'],
    ['deep -> ../../../../../../etc', 'deep', '../../../../../../etc'],
  ])('refuses a relative symlink that escapes the tree by default: %s', async (_, path, link) => {
    const backup = await forge([
      { path: 'sub', type: 'directory' },
      { path, type: 'symlink', link },
    ]);
    const before = await tree(work);
    const error = await expectRefused(restore(backup), 'FILES_UNSAFE_ENTRY', path);
    expect(error.details.reason).toMatch(/outside the restored tree/);
    await expectUntouched(before);
  });

  it('creates an escaping symlink when external links are allowed, and never follows it', async () => {
    const backup = await forge([
      { path: 'sub', type: 'directory' },
      // From target/sub, ../../outside is the sentinel directory. The entry's mtime is far from
      // the sentinel's: a restore that followed the link to set times or modes would show.
      { path: 'sub/link', type: 'symlink', link: '../../outside', mtimeNs: 1_234_567_890_000_000_000n, mode: 0o700 },
      { path: 'sub/z.txt', content: 'after the link' },
    ]);
    const before = await tree(work);
    await restore(backup, { allowExternalLinks: true });
    const restored = await tree(target);
    expect(restored['sub/link']).toMatchObject({ type: 'symlink', link: '../../outside', mtimeNs: 1_234_567_890_000_000_000n });
    expect(await realpath(join(target, 'sub/link'))).toBe(await realpath(outside));
    expect(await readFile(join(target, 'sub/z.txt'), 'utf8')).toBe('after the link');
    // The sentinel directory is as it was: no file appeared, no time or mode changed.
    const after = await tree(work);
    for (const path of Object.keys(before)) expect(after[path], path).toEqual(before[path]);
    expect(await readdir(outside)).toEqual(['sentinel.txt']);
    expect(await readdir(work)).toEqual(['outside', 'target']);
  });
});

describe('entries of types a restore never creates', () => {
  const cases: [string, ForgedEntry][] = [
    ['char-device', { path: 'dev/null2', type: 'char-device' }],
    ['block-device', { path: 'dev/sda9', type: 'block-device' }],
    ['fifo', { path: 'dev/pipe', type: 'fifo' }],
    ['hardlink', { path: 'dev/passwd', type: 'hardlink', link: '../outside/sentinel.txt' }],
  ];
  it.each(cases)('refuses a %s entry (FILES_UNSAFE_ENTRY)', async (type, entry) => {
    const backup = await forge([{ path: 'dev', type: 'directory' }, entry, { path: 'dev/z.txt', content: 'z' }]);
    const before = await tree(work);
    const error = await expectRefused(restore(backup), 'FILES_UNSAFE_ENTRY', entry.path);
    expect(error.details.reason).toBe(`${type} entries are never restored`);
    await expectUntouched(before);
  });

  it('refuses a tar entry that is a hard link where the index says file (FILES_BACKUP_INVALID)', async () => {
    const backup = await forge([
      { path: 'passwd', content: 'root:x:0:0\n', tar: { type: 'hardlink', link: join(outside, 'sentinel.txt') } },
    ]);
    const before = await tree(work);
    const error = await expectRefused(restore(backup), 'FILES_BACKUP_INVALID', 'passwd');
    expect(error.message).toMatch(/hardlink/);
    await expectUntouched(before);
  });
});

describe('backups whose index and tar disagree, or that repeat a path', () => {
  it.each([
    [
      'two files',
      [
        { path: 'a.txt', content: 'one' },
        { path: 'a.txt', content: 'two' },
      ],
    ],
    [
      'a directory, then a symlink of the same name',
      [
        { path: 'd', type: 'directory' },
        { path: 'd', type: 'symlink', link: '/etc' },
      ],
    ],
  ] as [string, ForgedEntry[]][])('refuses a path that appears twice: %s (FILES_UNSAFE_ENTRY)', async (_, entries) => {
    const backup = await forge(entries);
    const before = await tree(work);
    const error = await expectRefused(restore(backup, { allowExternalLinks: true }), 'FILES_UNSAFE_ENTRY', entries[1]?.path as string);
    expect(error.details.reason).toBe('the path appears twice');
    await expectUntouched(before);
  });

  it('refuses a file whose content does not have the SHA-256 of the index (FILES_HASH_MISMATCH), leaving no staging', async () => {
    const backup = await forge([
      { path: 'd', type: 'directory' },
      { path: 'd/first.txt', content: 'staged before the bad one' },
      { path: 'd/second.txt', content: 'original!', tar: { content: 'tampered!' } },
    ]);
    const before = await tree(work);
    const error = await expectRefused(restore(backup), 'FILES_HASH_MISMATCH', 'd/second.txt');
    expect(error.details).toMatchObject({
      path: 'd/second.txt',
      expected: createHash('sha256').update('original!').digest('hex'),
      actual: createHash('sha256').update('tampered!').digest('hex'),
    });
    await expectUntouched(before);
  });

  it('refuses an index entry whose tar header names another path (FILES_BACKUP_INVALID)', async () => {
    const backup = await forge([{ path: 'a.txt', content: 'same bytes', tar: { path: 'b.txt' } }]);
    const before = await tree(work);
    const error = await expectRefused(restore(backup), 'FILES_BACKUP_INVALID', 'a.txt');
    expect(error.message).toContain('"b.txt"');
    await expectUntouched(before);
  });

  it('refuses a file with no tar entry at its place (FILES_BACKUP_INVALID)', async () => {
    const backup = await forge([{ path: 'a.txt', content: 'in the index only', tar: false }]);
    const before = await tree(work);
    await expectRefused(restore(backup), 'FILES_BACKUP_INVALID', 'a.txt');
    await expectUntouched(before);
  });
});

describe('the same refusals when extraction threads do the writing', () => {
  // Large restores hand segments of small files to threads: the checks must hold there too.
  it('refuses a hash mismatch, a tar header naming another path and a missing tar entry', async () => {
    const cases: [ForgedEntry[], FilesErrorCode, string][] = [
      [
        [
          { path: 'd', type: 'directory' },
          { path: 'd/first.txt', content: 'written by a thread first' },
          { path: 'd/second.txt', content: 'original!', tar: { content: 'tampered!' } },
        ],
        'FILES_HASH_MISMATCH',
        'd/second.txt',
      ],
      [[{ path: 'a.txt', content: 'same bytes', tar: { path: 'b.txt' } }], 'FILES_BACKUP_INVALID', 'a.txt'],
      [[{ path: 'a.txt', content: 'in the index only', tar: false }], 'FILES_BACKUP_INVALID', 'a.txt'],
      // Files past 2 MiB reach the thread in parts: the checks hold across parts.
      [
        [{ path: 'big.bin', content: Buffer.alloc(6_000_000, 1), tar: { content: Buffer.alloc(6_000_000, 2) } }],
        'FILES_HASH_MISMATCH',
        'big.bin',
      ],
      [[{ path: 'big.bin', content: Buffer.alloc(6_000_000, 1), tar: { path: 'other.bin' } }], 'FILES_BACKUP_INVALID', 'big.bin'],
    ];
    for (const [entries, code, path] of cases) {
      const backup = await forge(entries);
      const before = await tree(work);
      await expectRefused(restore(backup, { threads: 1 }), code, path);
      await expectUntouched(before);
    }
  });

  it('restores a well-formed backup through a thread exactly as on the main thread', async () => {
    const big = randomBytes(9_000_000);
    const backup = await forge([
      { path: 'd', type: 'directory' },
      { path: 'd/a.txt', content: 'alpha' },
      { path: 'd/b.txt', content: 'bravo' },
      { path: 'd/big.bin', content: big },
    ]);
    const result = await restore(backup, { threads: 2 });
    expect(result.files).toBe(3);
    expect(await readFile(join(target, 'd/b.txt'), 'utf8')).toBe('bravo');
    expect((await readFile(join(target, 'd/big.bin'))).equals(big)).toBe(true);
  });
});

describe('one thread decoding many segments in a row', () => {
  // A thread keeps one decompressor for its life: every segment after the first must decode
  // from a clean frame boundary, for both compressions, across small-file segments and parts.
  it.each(['zstd', 'gzip'] as const)('restores every file exactly (%s)', async (compression) => {
    const small = Array.from({ length: 60 }, (_, i) => ({
      path: `d/f${String(i).padStart(2, '0')}.bin`,
      content: randomBytes(100_000 + i),
    }));
    const big = randomBytes(5_000_000);
    const backup = await forge([{ path: 'd', type: 'directory' }, ...small, { path: 'd/zz-big.bin', content: big }], { compression });
    const result = await restore(backup, { threads: 1 });
    expect(result.files).toBe(61);
    for (const file of small) expect((await readFile(join(target, file.path))).equals(file.content)).toBe(true);
    expect((await readFile(join(target, 'd/zz-big.bin'))).equals(big)).toBe(true);
  });
});

describe('refusals are of the whole restore', () => {
  it('refuses a selective restore of good/ when the backup holds ../evil elsewhere', async () => {
    const backup = await forge([
      { path: 'good', type: 'directory' },
      { path: 'good/y.txt', content: 'y' },
      { path: '../evil', content: 'pwned' },
    ]);
    const before = await tree(work);
    await expectRefused(restore(backup, { paths: ['good/'] }), 'FILES_UNSAFE_ENTRY', '../evil');
    await expectUntouched(before);
  });

  describe('merging into a non-empty target', () => {
    beforeEach(async () => {
      await mkdir(join(target, 'keep'), { recursive: true });
      await writeFile(join(target, 'a.txt'), 'the live a.txt\n');
      await writeFile(join(target, 'keep/k.txt'), 'the live k.txt\n');
      for (const p of ['a.txt', 'keep/k.txt', 'keep', '.']) await utimes(join(target, p), OLD, OLD);
    });

    it.each([
      ['an unsafe entry', [{ path: '../evil', content: 'pwned' }], 'FILES_UNSAFE_ENTRY', '../evil'],
      [
        'a file with a bad hash over an existing one',
        [{ path: 'a.txt', content: 'backed up', tar: { content: 'tampered!' } }],
        'FILES_HASH_MISMATCH',
        'a.txt',
      ],
      [
        'a file the tar does not hold',
        [
          { path: 'keep', type: 'directory' },
          { path: 'keep/k.txt', content: 'x', tar: { path: 'keep/other' } },
        ],
        'FILES_BACKUP_INVALID',
        'keep/k.txt',
      ],
    ] as [string, ForgedEntry[], FilesErrorCode, string][])('leaves the target as it was on %s', async (_, entries, code, path) => {
      const backup = await forge([{ path: 'new.txt', content: 'would be added' }, ...entries]);
      const before = await tree(work);
      expect(Object.keys(before)).toContain('target/a.txt');
      await expectRefused(restore(backup, { existing: 'merge' }), code, path);
      // Same content and mtimes, nothing added, nothing moved aside.
      await expectUntouched(before);
      expect(await readFile(join(target, 'a.txt'), 'utf8')).toBe('the live a.txt\n');
      expect((await lstat(join(target, 'keep/k.txt'))).mtime).toEqual(OLD);
    });
  });
});

describe('symlinks whose target leaves the tree only through another symlink', () => {
  // Lexically "self/.." is ".", but the kernel applies ".." after following "self": the link
  // points at the target's parent. checkEntries follows the backup's own links as the kernel does.
  it('refuses esc -> self/.. where self -> . (it points at the parent of the target)', async () => {
    const backup = await forge([
      { path: 'esc', type: 'symlink', link: 'self/..' },
      { path: 'self', type: 'symlink', link: '.' },
    ]);
    const before = await tree(work);
    const restoring = restore(backup);
    const error = await restoring.then(
      () => undefined,
      (e: unknown) => e,
    );
    const where = await realpath(join(target, 'esc')).catch(() => 'not created');
    expect({ code: (error as FilesError | undefined)?.code, esc: where }).toEqual({ code: 'FILES_UNSAFE_ENTRY', esc: 'not created' });
    await expectUntouched(before);
  });
});
