import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { masterKey, open } from '@drkit/crypto-stream';
import { type Catalog, createCatalog, createFsStore, readStored } from '@drkit/s3-store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, type FilesBackup, type FilesEvent, listFiles, restoreFiles } from '../src/index.js';
import { compareSnapshots, fsops, generateTree, Rng, type Snap, snapshot, writeLarge } from './support/tree.js';

const BIG = 200 * 1024 * 1024;
const keys = masterKey(randomBytes(32), 'files-test');

/** Decrypts a whole archive and lists it with GNU tar (the format promise). */
async function gnuTarList(catalog: Catalog, backup: FilesBackup, dir: string): Promise<string[]> {
  const file = join(dir, `${backup.manifest.id}.tar.${backup.fingerprint.compression === 'zstd' ? 'zst' : 'gz'}`);
  const parts: Buffer[] = [];
  for await (const piece of open(readStored(catalog, backup.manifest), { keys })) parts.push(piece);
  await writeFile(file, Buffer.concat(parts));
  const out = execFileSync('tar', [backup.fingerprint.compression === 'zstd' ? '--zstd' : '-z', '-tf', file], { encoding: 'utf8' });
  await rm(file);
  return out
    .split('\n')
    .filter(Boolean)
    .map((line) => line.replace(/\/$/, ''));
}

describe('a full backup and 5 incrementals of a generated tree', () => {
  let dir: string;
  let src: string;
  let catalog: Catalog;
  const points: { backup: FilesBackup; tree: Map<string, Snap> }[] = [];
  const events: FilesEvent[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drkit-files-chain-'));
    src = join(dir, 'src');
    catalog = createCatalog(await createFsStore({ root: join(dir, 'store') }));
    const paths = await generateTree(src, 2500, 7);
    await writeLarge(join(src, 'big file.bin'), BIG, 3);
    const rng = new Rng(99);
    const live = new Set(paths);
    const take = () => {
      const p = rng.pick([...live]);
      live.delete(p);
      return p;
    };
    const mutations: ((step: number) => Promise<void>)[] = [
      async (step) => {
        // Adds (a new directory too), edits, deletes, renames, a chmod.
        await fsops.mkdir(join(src, `new dir ${step}/deeper`), { recursive: true });
        for (let i = 0; i < 30; i++) {
          const p = `new dir ${step}/${i % 2 ? 'deeper/' : ''}added ${i}.txt`;
          await writeFile(join(src, p), `added at step ${step} #${i}\n`.repeat(i + 1));
          live.add(p);
        }
        for (let i = 0; i < 20; i++) await appendFile(join(src, take()), `edited at step ${step}\n`);
        for (let i = 0; i < 15; i++) await rm(join(src, take()));
        for (let i = 0; i < 10; i++) {
          const from = take();
          await fsops.rename(join(src, from), join(src, `${from} (renamed ${step})`));
          live.add(`${from} (renamed ${step})`);
        }
        const p = take();
        await fsops.chmod(join(src, p), 0o604);
        live.add(p);
      },
    ];
    // The first backup is full; each later one follows a round of changes.
    points.push({ backup: await backupFiles({ dir: src, catalog, keys, onEvent: (e) => events.push(e) }), tree: await snapshot(src) });
    for (let step = 1; step <= 5; step++) {
      await (mutations[0] as (s: number) => Promise<void>)(step);
      if (step === 2) {
        // The 200 MB file changes in the middle (same size), a whole directory goes, a symlink is retargeted.
        const handle = await (await import('node:fs/promises')).open(join(src, 'big file.bin'), 'r+');
        await handle.write(Buffer.from('changed in the middle'), 0, 21, BIG / 2);
        await handle.close();
        await rm(join(src, 'empty dir'), { recursive: true });
        await rm(join(src, 'new dir 1'), { recursive: true });
        for (const p of [...live]) if (p.startsWith('new dir 1/')) live.delete(p);
        const link = [...(await snapshot(src))].find(([, s]) => s.type === 'symlink')?.[0] as string;
        await rm(join(src, link));
        await fsops.symlink('elsewhere/else', join(src, link));
      }
      if (step === 4) {
        // A directory renamed with everything in it, and an empty file that gets content.
        await fsops.rename(join(src, 'new dir 3'), join(src, 'moved dir 3'));
        for (const p of [...live]) if (p.startsWith('new dir 3/')) live.delete(p);
      }
      points.push({ backup: await backupFiles({ dir: src, catalog, keys }), tree: await snapshot(src) });
    }
  }, 600_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes one full backup and then incrementals, each on the previous one', () => {
    expect(points.map((p) => p.backup.type)).toEqual(['full', 'incremental', 'incremental', 'incremental', 'incremental', 'incremental']);
    for (let i = 1; i < points.length; i++) {
      expect(points[i]?.backup.parent).toBe(points[i - 1]?.backup.manifest.id);
      expect(points[i]?.backup.manifest.parent).toBe(points[i - 1]?.backup.manifest.id);
      expect(points[i]?.backup.fingerprint.chain).toEqual({ base: points[0]?.backup.manifest.id, length: i + 1 });
    }
    expect(events.some((e) => e.type === 'progress' && e.operation === 'archive')).toBe(true);
  });

  it('stores only what changed: renamed files are not stored again, and the 200 MB file only when it changed', () => {
    const [full, first, second, third] = points.map((p) => p.backup);
    expect(full?.fingerprint.stored.bytes).toBeGreaterThan(BIG);
    // Step 1: 30 added + 20 edited files; the 10 renames and the chmod reuse stored content.
    expect(first?.fingerprint.stored.files).toBe(50);
    expect(first?.changes.renamed).toHaveLength(10);
    expect(first?.changes.added).toEqual(expect.arrayContaining(['new dir 1/added 0.txt']));
    expect(first?.changes.deleted).toHaveLength(15);
    expect(first?.changes.metadata.length).toBeGreaterThanOrEqual(1);
    expect(first?.fingerprint.stored.bytes).toBeLessThan(1024 * 1024);
    expect(second?.fingerprint.stored.bytes).toBeGreaterThan(BIG);
    expect(third?.fingerprint.stored.bytes).toBeLessThan(1024 * 1024);
  });

  it('restores every point of the chain exactly: content, modes, mtimes, symlink targets, empty files and dirs', async () => {
    for (const [i, point] of points.entries()) {
      const target = join(dir, `restore-${i}`);
      const result = await restoreFiles({ catalog, keys, backup: point.backup.manifest.id, target });
      expect(compareSnapshots(point.tree, await snapshot(target)), `point ${i}`).toEqual([]);
      expect(result.files).toBe([...point.tree.values()].filter((s) => s.type === 'file').length);
      // Later points read unchanged files from the archives they were first stored in.
      if (i > 0) expect(result.archives.length).toBeGreaterThan(1);
      await rm(target, { recursive: true });
    }
  }, 600_000);

  it('restores one directory of the last point reading a small part of the chain', async () => {
    const last = points.at(-1) as (typeof points)[number];
    const sub = [...last.tree.entries()].find(([p, s]) => s.type === 'directory' && p.startsWith('moved dir 3'))?.[0] as string;
    const target = join(dir, 'selective');
    const result = await restoreFiles({ catalog, keys, backup: 'latest', target, paths: [`${sub}/`] });
    const expected = new Map([...last.tree].filter(([p]) => p === sub || p.startsWith(`${sub}/`) || sub.startsWith(`${p}/`)));
    const got = await snapshot(target);
    // Ancestors of the selection are created; compare the selection itself exactly.
    expect(
      compareSnapshots(new Map([...expected].filter(([p]) => p.startsWith(sub))), new Map([...got].filter(([p]) => p.startsWith(sub)))),
    ).toEqual([]);
    expect(result.files).toBe([...expected].filter(([p, s]) => p.startsWith(`${sub}/`) && s.type === 'file').length);
    expect(result.files).toBeGreaterThan(20);
    const total = points.reduce((n, p) => n + p.backup.manifest.object.size, 0);
    expect(result.fetched).toBeLessThan(total / 50);
  });

  it('writes archives GNU tar lists once decrypted and decompressed, holding exactly what each stored', async () => {
    const full = points[0]?.backup as FilesBackup;
    const listed = await gnuTarList(catalog, full, dir);
    expect(listed.sort()).toEqual([...(points[0]?.tree.keys() ?? [])].sort());
    const inc = points[1]?.backup as FilesBackup;
    const incListed = await gnuTarList(catalog, inc, dir);
    // An incremental holds the files it stored, plus headers of new or changed directories and symlinks.
    const storedFiles = incListed.filter((p) => points[1]?.tree.get(p)?.type === 'file');
    expect(storedFiles).toHaveLength(inc.fingerprint.stored.files);
    expect(incListed).toEqual(expect.arrayContaining(inc.changes.added));
    expect(incListed).not.toContain(inc.changes.renamed[0]?.[1]);
  });

  it('lists any point from its index alone', async () => {
    const { entries } = await listFiles({ catalog, keys, backup: points[3]?.backup.manifest.id as string });
    expect(entries.map((e) => e.path).sort()).toEqual([...(points[3]?.tree.keys() ?? [])].sort());
    const big = entries.find((e) => e.path === 'big file.bin');
    expect(big).toMatchObject({ type: 'file', size: BIG, storedIn: points[2]?.backup.manifest.id });
    expect(big?.sha256).toBe(points[3]?.tree.get('big file.bin')?.sha256);
  });
});
