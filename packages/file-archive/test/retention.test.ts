// A chain is kept or dropped as a whole by retention: an incremental never outlives its parent.
// Real file backups, one a day, in two chains; Date is faked while they are taken so that their
// ids (and so createdAt) fall on chosen days, and the catalog's clock says when "now" is.
import { randomBytes } from 'node:crypto';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { masterKey } from '@drkit/crypto-stream';
import { type Catalog, createCatalog, createFsStore, type Manifest, planRetention, type RetentionPolicy } from '@drkit/s3-store';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FilesKeys, fingerprintOf } from '../src/archive.js';
import { backupFiles } from '../src/backup.js';
import { FilesError } from '../src/errors.js';
import { restoreFiles } from '../src/restore.js';

const NOW = new Date('2026-11-07T12:00:00.000Z');
/** Backups A0 (full), A1..A3, then B0 (full), B1, B2: one a day at 02:00 UTC from November 1st (a Sunday). */
const NAMES = ['A0', 'A1', 'A2', 'A3', 'B0', 'B1', 'B2'] as const;
type Name = (typeof NAMES)[number];

let base: string;
let src: string;
let keys: FilesKeys;
/** The store every test starts from; tests that prune work on a copy. */
let storeRoot: string;
const ids = {} as Record<Name, string>;
const nameOf = new Map<string, Name>();
/** The tree at each backup: path → content, "dir", or "-> target". */
const trees = {} as Record<Name, Record<string, string>>;

async function read(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const s = await lstat(full);
      if (s.isDirectory()) {
        out[path] = 'dir';
        await visit(full, path);
      } else if (s.isSymbolicLink()) out[path] = `-> ${await readlink(full)}`;
      else out[path] = await readFile(full, 'utf8');
    }
  };
  await visit(root, '');
  return out;
}

let copies = 0;
/** A catalog over a fresh copy of the store, its clock at NOW. */
async function freshCatalog(): Promise<Catalog> {
  const root = join(base, `store-${++copies}`);
  await cp(storeRoot, root, { recursive: true });
  return createCatalog(createFsStore({ root }), { now: () => NOW });
}

/** Backups (manifests, decisions or ids) by their names in NAMES. */
const names = (items: ({ id: string } | string)[]) =>
  items.map((item) => {
    const id = typeof item === 'string' ? item : item.id;
    return nameOf.get(id) ?? id;
  });
const reasonsOf = (plan: { keep: { id: string; reasons: string[] }[] }, name: Name) => plan.keep.find((d) => d.id === ids[name])?.reasons;

/** Every incremental's parent, and its chain's full, is among `manifests`. */
function expectWholeChains(manifests: Manifest[]): void {
  const present = new Set(manifests.map((m) => m.id));
  for (const m of manifests) {
    if (m.type !== 'incremental') continue;
    expect(present.has(m.parent as string), `${nameOf.get(m.id)} kept without its parent ${nameOf.get(m.parent as string)}`).toBe(true);
    const base = fingerprintOf(m).chain.base;
    expect(present.has(base), `${nameOf.get(m.id)} kept without its full ${nameOf.get(base)}`).toBe(true);
  }
}

async function restoreInto(catalog: Catalog, name: Name) {
  const target = join(base, `restore-${++copies}`);
  const result = await restoreFiles({ catalog, keys, backup: ids[name], target });
  return { result, tree: await read(target) };
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'drkit-files-retention-'));
  src = join(base, 'src');
  storeRoot = join(base, 'store');
  keys = masterKey(randomBytes(32));
  let clock = new Date(0);
  const catalog = createCatalog(createFsStore({ root: storeRoot }), { now: () => clock });
  await mkdir(join(src, 'docs'), { recursive: true });
  await writeFile(join(src, 'stable.txt'), 'stored once per chain, by its full backup\n');
  vi.useFakeTimers({ toFake: ['Date'] });
  try {
    for (const [day, name] of NAMES.entries()) {
      // What changes each day: a counter (another size every time), a new file, a link, a deletion.
      await writeFile(join(src, 'counter.txt'), `${name} `.repeat(day + 1));
      await writeFile(join(src, 'docs', `day-${day}.txt`), `written before ${name}\n`);
      if (day === 3) await rm(join(src, 'docs', 'day-1.txt'));
      if (day === 5) await symlink(`day-${day}.txt`, join(src, 'docs', 'latest'));
      clock = new Date(Date.UTC(2026, 10, 1 + day, 2));
      vi.setSystemTime(clock);
      const backup = await backupFiles({ dir: src, catalog, keys, full: name === 'B0' });
      ids[name] = backup.manifest.id;
      nameOf.set(backup.manifest.id, name);
      trees[name] = await read(src);
    }
  } finally {
    vi.useRealTimers();
  }
});

afterAll(() => rm(base, { recursive: true, force: true }));

describe('the backups under test', () => {
  it('are two chains, one backup a day', async () => {
    const catalog = createCatalog(createFsStore({ root: storeRoot }), { now: () => NOW });
    const all = await catalog.list({ kind: 'files' });
    expect(names(all)).toEqual([...NAMES]);
    const by = new Map(all.map((m) => [nameOf.get(m.id), m]));
    const shape = NAMES.map((n) => {
      const m = by.get(n) as Manifest;
      return [n, m.type, m.parent ? nameOf.get(m.parent) : '-', m.createdAt];
    });
    expect(shape).toEqual([
      ['A0', 'full', '-', '2026-11-01T02:00:00.000Z'],
      ['A1', 'incremental', 'A0', '2026-11-02T02:00:00.000Z'],
      ['A2', 'incremental', 'A1', '2026-11-03T02:00:00.000Z'],
      ['A3', 'incremental', 'A2', '2026-11-04T02:00:00.000Z'],
      ['B0', 'full', '-', '2026-11-05T02:00:00.000Z'],
      ['B1', 'incremental', 'B0', '2026-11-06T02:00:00.000Z'],
      ['B2', 'incremental', 'B1', '2026-11-07T02:00:00.000Z'],
    ]);
    expect(fingerprintOf(by.get('A3') as Manifest).chain).toEqual({ base: ids.A0, length: 4 });
    expect(fingerprintOf(by.get('B2') as Manifest).chain).toEqual({ base: ids.B0, length: 3 });
    // The incrementals really build on their parents: B2 holds only what changed.
    expect(fingerprintOf(by.get('B2') as Manifest).stored.files).toBe(2);
  });
});

describe('planning keeps every ancestor of a kept incremental', () => {
  it('keeping only the newest incremental keeps its parent and its full ("parent of ...")', async () => {
    const catalog = createCatalog(createFsStore({ root: storeRoot }), { now: () => NOW });
    const { plan, deleted, dryRun } = await catalog.prune({ keepLast: 1 }, { dryRun: true });
    expect(dryRun).toBe(true);
    expect(deleted).toEqual([]);
    expect(names(plan.keep)).toEqual(['B2', 'B1', 'B0']);
    expect(reasonsOf(plan, 'B2')).toContain('last 1 of 1');
    expect(reasonsOf(plan, 'B1')).toEqual([`parent of ${ids.B2}`]);
    expect(reasonsOf(plan, 'B0')).toEqual([`parent of ${ids.B1}`]);
    // The older chain falls out as a whole.
    expect(names(plan.drop)).toEqual(['A3', 'A2', 'A1', 'A0']);
    expect(plan.warnings).toEqual([]);
    // A dry run deletes nothing.
    expect(names(await catalog.list({ kind: 'files' }))).toEqual([...NAMES]);
  });

  it('follows a long chain to its full even when no rule keeps the full', async () => {
    const catalog = createCatalog(createFsStore({ root: storeRoot }), { now: () => NOW });
    const manifests = await catalog.list({ kind: 'files' });
    // Fulls: only the newest one; incrementals: the newest three, which reach into chain A.
    const policy: RetentionPolicy = { keepLast: 1, incremental: { keepLast: 3 } };
    const items = manifests.map(({ id, kind, createdAt, type, parent }) => ({ id, kind, createdAt, type, ...(parent ? { parent } : {}) }));
    const plan = planRetention(items, policy, NOW);
    expect(names(plan.keep)).toEqual([...NAMES].reverse());
    expect(reasonsOf(plan, 'A3')).toEqual(['last 3 of 3']);
    expect(reasonsOf(plan, 'A2')).toEqual([`parent of ${ids.A3}`]);
    expect(reasonsOf(plan, 'A1')).toEqual([`parent of ${ids.A2}`]);
    expect(reasonsOf(plan, 'A0')).toEqual([`parent of ${ids.A1}`]);
    expect(reasonsOf(plan, 'B0')).toEqual(['last 1 of 1', `parent of ${ids.B1}`]);
    // The catalog plans the same thing from the same manifests.
    expect((await catalog.prune(policy, { dryRun: true })).plan).toEqual(plan);
  });

  it('never keeps an incremental without its parent, whatever the policy', async () => {
    const catalog = createCatalog(createFsStore({ root: storeRoot }), { now: () => NOW });
    const manifests = await catalog.list({ kind: 'files' });
    const byId = new Map(manifests.map((m) => [m.id, m]));
    const policies: RetentionPolicy[] = [];
    for (let n = 1; n <= 7; n++)
      policies.push(
        { keepLast: n },
        { keepDaily: n },
        { keepWithin: `${n}d` },
        { keepLast: 1, incremental: { keepLast: n } },
        { keepWeekly: 1, incremental: { keepWithin: `${n}d` } },
        { keepLast: n, incremental: { keepDaily: 1 } },
      );
    policies.push({ keepWeekly: 2 }, { keepMonthly: 1 }, { keepWithin: '12h' }, { keepHourly: 3, timeZone: 'Pacific/Auckland' });
    const kept: string[] = [];
    for (const policy of policies) {
      const { plan } = await catalog.prune(policy, { dryRun: true });
      const keep = new Set(plan.keep.map((d) => d.id));
      for (const id of keep) {
        const parent = byId.get(id)?.parent;
        if (parent !== undefined)
          expect(keep.has(parent), `${JSON.stringify(policy)} keeps ${nameOf.get(id)} but not its parent`).toBe(true);
      }
      expectWholeChains(manifests.filter((m) => keep.has(m.id)));
      kept.push(`${JSON.stringify(policy)}: ${names(plan.keep).join(' ')}`);
    }
    // The policies are not all alike: some drop whole chains, some keep both.
    expect(kept.some((k) => k.endsWith(': B2 B1 B0'))).toBe(true);
    expect(kept.some((k) => k.endsWith(': B2 B1 B0 A3 A2 A1 A0'))).toBe(true);
    expect(kept.some((k) => k.endsWith(': B2 B1 B0 A0'))).toBe(true);
  });
});

describe('pruning', () => {
  it('drops an old chain entirely and the newest backup still restores', async () => {
    const catalog = await freshCatalog();
    // Within 3 days of NOW: B0..B2. Every member of chain A is older.
    const { plan, deleted } = await catalog.prune({ keepWithin: '3d' });
    expect(names(plan.keep)).toEqual(['B2', 'B1', 'B0']);
    expect(names(deleted)).toEqual(['A3', 'A2', 'A1', 'A0']);
    const left = await catalog.list({ kind: 'files' });
    expect(names(left)).toEqual(['B0', 'B1', 'B2']);
    expectWholeChains(left);
    // The archives are gone with their manifests, not only hidden.
    const objects = await readdir(join(base, `store-${copies}`, 'artifacts', 'files'));
    expect(objects.sort()).toEqual([ids.B0, ids.B1, ids.B2].map((id) => `${id}.sealed`).sort());

    const newest = await restoreInto(catalog, 'B2');
    expect(newest.tree).toEqual(trees.B2);
    // Its unchanged files come from the full and the first incremental: all three archives are read.
    expect(newest.result.archives.sort()).toEqual([ids.B0, ids.B1, ids.B2].sort());
    expect((await restoreInto(catalog, 'B1')).tree).toEqual(trees.B1);
  });

  it('may drop the tail of a chain, never its head: what stays restores', async () => {
    const catalog = await freshCatalog();
    // Two ISO weeks have backups: W44 (A0, Sunday November 1st) and W45 (the rest).
    const { plan, deleted } = await catalog.prune({ keepWeekly: 2 });
    expect(reasonsOf(plan, 'A0')).toEqual(['weekly 2026-W44']);
    expect(names(deleted)).toEqual(['A3', 'A2', 'A1']);
    const left = await catalog.list({ kind: 'files' });
    expect(names(left)).toEqual(['A0', 'B0', 'B1', 'B2']);
    expectWholeChains(left);
    expect((await restoreInto(catalog, 'A0')).tree).toEqual(trees.A0);
    expect((await restoreInto(catalog, 'B2')).tree).toEqual(trees.B2);
  });

  it('keeps the ancestors of an incremental a rule picks in the middle of a chain, dropping only its failed child', async () => {
    const catalog = await freshCatalog();
    // A3 failed its restore test: it fills no slot, so the newest three good incrementals
    // are B2, B1 and A2, and A2 needs A1 and A0.
    const a3 = await catalog.get(ids.A3, 'files');
    await catalog.recordVerification(a3, { status: 'failed', at: NOW.toISOString(), level: 'restore-test' });
    const { plan, deleted } = await catalog.prune({ keepLast: 1, incremental: { keepLast: 3 } });
    expect(reasonsOf(plan, 'A2')).toEqual(['last 3 of 3']);
    expect(reasonsOf(plan, 'A1')).toEqual([`parent of ${ids.A2}`]);
    expect(reasonsOf(plan, 'A0')).toEqual([`parent of ${ids.A1}`]);
    expect(plan.drop).toEqual([
      {
        id: ids.A3,
        kind: 'files',
        createdAt: '2026-11-04T02:00:00.000Z',
        action: 'drop',
        reasons: ['verification failed and no rule keeps it'],
      },
    ]);
    expect(names(deleted)).toEqual(['A3']);
    const left = await catalog.list({ kind: 'files' });
    expectWholeChains(left);
    const a2 = await restoreInto(catalog, 'A2');
    expect(a2.tree).toEqual(trees.A2);
    expect(a2.result.archives).toContain(ids.A0);
  });

  it('is what keeps a chain restorable: a parent deleted by hand breaks it (FILES_CHAIN_BROKEN)', async () => {
    const catalog = await freshCatalog();
    await catalog.delete(await catalog.get(ids.B1, 'files'));
    const left = await catalog.list({ kind: 'files' });
    expect(() => expectWholeChains(left)).toThrow(/B2 kept without its parent B1/);
    const error = await restoreInto(catalog, 'B2').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FilesError);
    expect((error as FilesError).code).toBe('FILES_CHAIN_BROKEN');
    expect((error as FilesError).message).toContain(ids.B1);
  });
});
