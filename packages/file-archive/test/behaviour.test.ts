import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { masterKey, open } from '@drkit/crypto-stream';
import { type Catalog, createCatalog, createFsStore, readStored } from '@drkit/s3-store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openArchive, readIndex } from '../src/archive.js';
import { backupFiles, compileSelectors, type FilesEvent, isFilesError, listFiles, restoreFiles } from '../src/index.js';
import { BLOCK, END_OF_ARCHIVE, encodeHeader, TarHeaderReader } from '../src/tar.js';
import { compareSnapshots, snapshot } from './support/tree.js';

const keys = masterKey(randomBytes(32), 'k-files');

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'no error';
  } catch (error) {
    return isFilesError(error) ? error.code : String(error);
  }
}

describe('file backups', () => {
  let dir: string;
  let src: string;
  let catalog: Catalog;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drkit-files-'));
    src = join(dir, 'src');
    await mkdir(join(src, 'docs/sub'), { recursive: true });
    await writeFile(join(src, 'docs/a.txt'), 'alpha\n');
    await writeFile(join(src, 'docs/sub/b.txt'), 'bravo\n');
    await writeFile(join(src, 'c.bin'), randomBytes(3000));
    catalog = createCatalog(await createFsStore({ root: join(dir, 'store') }));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('hashes a file whose ctime changed but not its size or mtime: a chmod is metadata, a same-size edit put back to its old mtime is content', async () => {
    await backupFiles({ dir: src, catalog, keys });
    await chmod(join(src, 'docs/a.txt'), 0o600);
    const { mtime } = await stat(join(src, 'docs/sub/b.txt'));
    await writeFile(join(src, 'docs/sub/b.txt'), 'BRAVO\n');
    await utimes(join(src, 'docs/sub/b.txt'), mtime, mtime);
    const next = await backupFiles({ dir: src, catalog, keys });
    expect(next.changes.metadata).toContain('docs/a.txt');
    expect(next.changes.modified).toEqual(['docs/sub/b.txt']);
    expect(next.fingerprint.stored.files).toBe(1);
    const out = join(dir, 'out');
    await restoreFiles({ catalog, keys, backup: next.manifest.id, target: out });
    expect(await readFile(join(out, 'docs/sub/b.txt'), 'utf8')).toBe('BRAVO\n');
    expect((await stat(join(out, 'docs/a.txt'))).mode & 0o777).toBe(0o600);
  });

  it('recognises a rename by inode and does not store the file again', async () => {
    await backupFiles({ dir: src, catalog, keys });
    await rename(join(src, 'c.bin'), join(src, 'docs/c moved.bin'));
    const next = await backupFiles({ dir: src, catalog, keys });
    expect(next.changes.renamed).toEqual([['c.bin', 'docs/c moved.bin']]);
    expect(next.changes.deleted).toEqual([]);
    expect(next.fingerprint.stored.files).toBe(0);
    const out = join(dir, 'out');
    await restoreFiles({ catalog, keys, backup: 'latest', target: out });
    expect(compareSnapshots(await snapshot(src), await snapshot(out))).toEqual([]);
  });

  it('reports a file that changes while it is read, marks it, and takes it again next time', async () => {
    await writeFile(join(src, 'growing.log'), 'x'.repeat(100_000));
    const events: FilesEvent[] = [];
    const first = await backupFiles({
      dir: src,
      catalog,
      keys,
      // After the scan, before the archive reads it: the file grows and its mtime moves.
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'step' && e.step === 'archive') execFileSync('sh', ['-c', `echo more >> '${join(src, 'growing.log')}'`]);
      },
    });
    expect(first.fingerprint.unstable).toBe(1);
    expect(first.warnings.join('\n')).toMatch(/growing\.log changed while it was being read/);
    expect(events.some((e) => e.type === 'warning' && e.path === 'growing.log')).toBe(true);
    const { entries } = await listFiles({ catalog, keys, backup: first.manifest.id });
    expect(entries.find((e) => e.path === 'growing.log')).toMatchObject({ unstable: true, size: 100_000 });
    const second = await backupFiles({ dir: src, catalog, keys });
    expect(second.changes.modified).toEqual(['growing.log']);
    expect(second.fingerprint.unstable).toBe(0);
  });

  it('skips sockets with a warning, and leaves out excluded paths', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(src, 'app.sock'), resolve));
    await mkdir(join(src, 'cache'));
    await writeFile(join(src, 'cache/big.tmp'), 'tmp');
    await writeFile(join(src, 'docs/x.tmp'), 'tmp');
    try {
      const backup = await backupFiles({ dir: src, catalog, keys, exclude: ['cache/', '**/*.tmp'] });
      expect(backup.warnings).toEqual(['app.sock is not backed up: it is a socket']);
      const { entries } = await listFiles({ catalog, keys, backup: 'latest' });
      expect(entries.map((e) => e.path).sort()).toEqual(['c.bin', 'docs', 'docs/a.txt', 'docs/sub', 'docs/sub/b.txt']);
    } finally {
      server.close();
    }
  });

  it('gives a restored new directory the backed-up directory its own mode and mtime', async () => {
    await chmod(src, 0o750);
    await utimes(src, 1_600_000_000, 1_600_000_000);
    await backupFiles({ dir: src, catalog, keys });
    const out = join(dir, 'out');
    await restoreFiles({ catalog, keys, backup: 'latest', target: out });
    const s = await stat(out);
    expect(s.mode & 0o7777).toBe(0o750);
    expect(s.mtimeMs).toBe(1_600_000_000_000);
  });

  it('writes gzip archives that gzip and GNU tar read, and restores them', async () => {
    const backup = await backupFiles({ dir: src, catalog, keys, compression: 'gzip' });
    expect(backup.manifest.compression).toBe('gzip');
    const parts: Buffer[] = [];
    for await (const piece of open(readStored(catalog, backup.manifest), { keys })) parts.push(piece);
    const file = join(dir, 'x.tar.gz');
    await writeFile(file, Buffer.concat(parts));
    execFileSync('gzip', ['-t', file]);
    const listed = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).trim().split('\n');
    expect(listed.sort()).toEqual(['c.bin', 'docs/', 'docs/a.txt', 'docs/sub/', 'docs/sub/b.txt']);
    const out = join(dir, 'out');
    await restoreFiles({ catalog, keys, backup: 'latest', target: out });
    expect(compareSnapshots(await snapshot(src), await snapshot(out))).toEqual([]);
  });

  it('takes a full backup when asked, and when the chain reaches its maximum length', async () => {
    const a = await backupFiles({ dir: src, catalog, keys });
    const b = await backupFiles({ dir: src, catalog, keys, maxChainLength: 2 });
    const c = await backupFiles({ dir: src, catalog, keys, maxChainLength: 2 });
    const d = await backupFiles({ dir: src, catalog, keys, full: true });
    expect([a.type, b.type, c.type, d.type]).toEqual(['full', 'incremental', 'full', 'full']);
    expect(c.fingerprint.chain).toEqual({ base: c.manifest.id, length: 1 });
  });

  it('falls back to a full backup, with a warning, when the previous one cannot be opened', async () => {
    await backupFiles({ dir: src, catalog, keys });
    const other = masterKey(randomBytes(32), 'k-other');
    const next = await backupFiles({ dir: src, catalog, keys: other });
    expect(next.type).toBe('full');
    expect(next.warnings[0]).toMatch(/could not be read .*taking a full backup instead/);
  });

  it('refuses a missing or non-directory source, and a bad compression', async () => {
    expect(await codeOf(backupFiles({ dir: join(dir, 'nope'), catalog, keys }))).toBe('FILES_SOURCE_INVALID');
    expect(await codeOf(backupFiles({ dir: join(src, 'c.bin'), catalog, keys }))).toBe('FILES_SOURCE_INVALID');
    expect(await codeOf(backupFiles({ dir: src, catalog, keys, compression: 'lz4' as 'zstd' }))).toBe('FILES_OPTIONS_INVALID');
    expect(await catalog.list()).toEqual([]);
  });

  it('leaves nothing in the store when the backup is aborted', async () => {
    const controller = new AbortController();
    const failed = backupFiles({
      dir: src,
      catalog,
      keys,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'step' && e.step === 'archive') controller.abort();
      },
    });
    expect(await codeOf(failed)).toBe('FILES_ABORTED');
    expect(await catalog.list()).toEqual([]);
    expect((await catalog.orphans({ graceMs: 0 })).objects).toEqual([]);
  });

  describe('restores', () => {
    it('refuse a wrong key and a tampered archive, creating nothing', async () => {
      const backup = await backupFiles({ dir: src, catalog, keys });
      const out = join(dir, 'out');
      expect(await codeOf(restoreFiles({ catalog, keys: masterKey(randomBytes(32), 'k-files'), backup: 'latest', target: out }))).toBe(
        'FILES_WRONG_KEY',
      );
      const object = join(dir, 'store', backup.manifest.object.key);
      const bytes = await readFile(object);
      bytes[300] = (bytes[300] as number) ^ 0xff;
      await writeFile(object, bytes);
      expect(await codeOf(restoreFiles({ catalog, keys, backup: 'latest', target: out }))).toBe('FILES_BACKUP_TAMPERED');
      expect(await readdir(dir)).toEqual(['src', 'store']);
    });

    it('refuse a non-empty target, or merge into it keeping what they replace', async () => {
      await backupFiles({ dir: src, catalog, keys });
      const out = join(dir, 'out');
      await mkdir(join(out, 'docs'), { recursive: true });
      await writeFile(join(out, 'docs/a.txt'), 'local edit\n');
      await writeFile(join(out, 'mine.txt'), 'keep me\n');
      expect(await codeOf(restoreFiles({ catalog, keys, backup: 'latest', target: out }))).toBe('FILES_TARGET_NOT_EMPTY');
      const merged = await restoreFiles({ catalog, keys, backup: 'latest', target: out, existing: 'merge' });
      expect(await readFile(join(out, 'docs/a.txt'), 'utf8')).toBe('alpha\n');
      expect(await readFile(join(out, 'mine.txt'), 'utf8')).toBe('keep me\n');
      expect(merged.replaced).toMatch(/out\.drkit-replaced-/);
      expect(await readFile(join(merged.replaced as string, 'docs/a.txt'), 'utf8')).toBe('local edit\n');
      expect((await readdir(dir)).filter((n) => n.includes('drkit-restore'))).toEqual([]);
    });

    it('refuse a file as target and a selection that matches nothing', async () => {
      await backupFiles({ dir: src, catalog, keys });
      expect(await codeOf(restoreFiles({ catalog, keys, backup: 'latest', target: join(src, 'c.bin') }))).toBe('FILES_TARGET_INVALID');
      expect(await codeOf(restoreFiles({ catalog, keys, backup: 'latest', target: join(dir, 'o'), paths: ['nope/'] }))).toBe(
        'FILES_NO_MATCH',
      );
      expect(await codeOf(restoreFiles({ catalog, keys, backup: '20260101T000000000Z-000000', target: join(dir, 'o') }))).toBe(
        'FILES_BACKUP_NOT_FOUND',
      );
    });

    it('restore selected paths with their parent directories only', async () => {
      await backupFiles({ dir: src, catalog, keys });
      const out = join(dir, 'out');
      const result = await restoreFiles({ catalog, keys, backup: 'latest', target: out, paths: ['docs/sub/*.txt'] });
      expect(result.files).toBe(1);
      expect(await readdir(join(out))).toEqual(['docs']);
      expect(await readdir(join(out, 'docs'))).toEqual(['sub']);
      expect(await readFile(join(out, 'docs/sub/b.txt'), 'utf8')).toBe('bravo\n');
      expect((await lstat(join(out, 'docs'))).isDirectory()).toBe(true);
    });
  });
});

describe('the index', () => {
  it('is found through the manifest alone and names every entry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-files-'));
    try {
      await mkdir(join(dir, 'src'));
      await writeFile(join(dir, 'src/f'), 'x');
      await writeFile(join(dir, 'src/g'), randomBytes(3_000_000));
      const catalog = createCatalog(await createFsStore({ root: join(dir, 'store') }));
      const backup = await backupFiles({ dir: join(dir, 'src'), catalog, keys });
      const archive = await openArchive(catalog, backup.manifest, keys);
      const index = await readIndex(archive);
      expect(index).toMatchObject({ id: backup.manifest.id, root: join(dir, 'src'), entries: [{ path: 'f', size: 1 }, { path: 'g' }] });
      // Only the header and the index were fetched, not the archive.
      expect(archive.fetched).toBeLessThan(backup.manifest.object.size / 10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('selectors', () => {
  it('match a path and everything under it, or globs within and across directories', () => {
    const s = compileSelectors(['uploads/2025/10/', 'config/app.yaml', '**/*.mp3', 'users/*/avatar.png']);
    expect(s.matches('uploads/2025/10')).toBe(true);
    expect(s.matches('uploads/2025/10/x/y.wav')).toBe(true);
    expect(s.matches('uploads/2025/100/y.wav')).toBe(false);
    expect(s.matches('config/app.yaml')).toBe(true);
    expect(s.matches('config/app.yaml.bak')).toBe(false);
    expect(s.matches('a/b/song.mp3')).toBe(true);
    expect(s.matches('song.mp3')).toBe(true);
    expect(s.matches('users/7/avatar.png')).toBe(true);
    expect(s.matches('users/7/8/avatar.png')).toBe(false);
    expect(() => compileSelectors(['../etc'])).toThrow(/climbs out/);
    expect(() => compileSelectors(['/'])).toThrow(/empty/);
    expect(compileSelectors(['./a/[bc]?']).matches('a/cd')).toBe(true);
  });
});

describe('tar headers', () => {
  it('carry long unicode paths, link targets, large ids and nanosecond mtimes through pax', () => {
    const entries = [
      {
        path: `${'ü'.repeat(80)}/with space/${'x'.repeat(200)}`,
        type: 'file' as const,
        size: 3,
        mode: 0o640,
        uid: 3_000_000,
        gid: 5,
        mtimeNs: 1_700_000_000_123_456_789n,
      },
      { path: 'dir', type: 'directory' as const, size: 0, mode: 0o755, uid: 0, gid: 0, mtimeNs: -5_000_000_001n },
      { path: 'l', type: 'symlink' as const, size: 0, mode: 0o777, uid: 0, gid: 0, mtimeNs: 0n, link: `../${'日本'.repeat(60)}` },
    ];
    const stream = Buffer.concat([
      ...entries.flatMap((e) => (e.type === 'file' ? [encodeHeader(e), Buffer.from('abc'), Buffer.alloc(BLOCK - 3)] : [encodeHeader(e)])),
      END_OF_ARCHIVE,
    ]);
    const reader = new TarHeaderReader();
    const parsed = [];
    for (let at = 0; at < stream.length; ) {
      const r = reader.block(stream.subarray(at, at + BLOCK), at);
      at += BLOCK;
      if (r.kind === 'end') break;
      if (r.kind === 'pax') {
        reader.pax(stream.subarray(at, at + r.size));
        at += Math.ceil(r.size / BLOCK) * BLOCK;
      } else if (r.kind === 'entry') {
        parsed.push(r.entry);
        at += Math.ceil(r.entry.size / BLOCK) * BLOCK;
      }
    }
    expect(parsed.map(({ headerOffset: _h, dataOffset: _d, ...e }) => e)).toEqual(entries);
    const broken = Buffer.from(stream);
    broken[BLOCK * 3 + 10] = 0x41;
    expect(() => new TarHeaderReader().block(broken.subarray(0, BLOCK), 0)).not.toThrow();
    expect(() => new TarHeaderReader().block(broken.subarray(BLOCK * 3, BLOCK * 4), BLOCK * 3)).toThrow(/checksum/);
  });
});
