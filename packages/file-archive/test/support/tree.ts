import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readlink, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** A small deterministic PRNG (xorshift32): the same tree on every run. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s / 0x100000000;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
}

const WORDS = [
  'alpha',
  'Bravo',
  'café',
  'délta',
  'ecHo',
  'foxtrot',
  'gölf',
  'hotel',
  'índia',
  'juliet',
  '日本',
  'Ωmega',
  'with space',
  'tab',
];

/** Content: text-like (compressible) or random (incompressible), by a coin. */
export function content(rng: Rng, size: number): Buffer {
  if (size === 0) return Buffer.alloc(0);
  if (rng.next() < 0.5) return randomBytes(size);
  const line = Buffer.from(`${rng.pick(WORDS)} ${rng.int(1e6)} ${rng.pick(WORDS)} lorem ipsum dolor sit amet\n`);
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += line.length) line.copy(out, i, 0, Math.min(line.length, size - i));
  return out;
}

/** A name with unicode and spaces now and then. */
export function name(rng: Rng, i: number): string {
  const base = `${rng.pick(WORDS)}-${i}`;
  return rng.next() < 0.2 ? `${base} copy.txt` : rng.next() < 0.5 ? `${base}.dat` : base;
}

/** Writes `size` bytes of half-compressible data in 1 MiB pieces (the 200 MB file). */
export async function writeLarge(path: string, size: number, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const { open } = await import('node:fs/promises');
  const handle = await open(path, 'w');
  try {
    const piece = 1024 * 1024;
    for (let at = 0; at < size; at += piece) await handle.write(content(rng, Math.min(piece, size - at)));
  } finally {
    await handle.close();
  }
}

/**
 * A tree of `files` files in nested directories (up to 4 deep), with empty files, empty
 * directories, relative and dangling symlinks, unicode and space-containing names, and
 * varied modes and mtimes.
 */
export async function generateTree(root: string, files: number, seed = 1): Promise<string[]> {
  const rng = new Rng(seed);
  const dirs = [''];
  await mkdir(root, { recursive: true });
  for (let i = 0; i < Math.max(4, files / 25); i++) {
    const parent = rng.pick(dirs.filter((d) => d.split('/').length < 4));
    const dir = parent ? `${parent}/${name(rng, i)}` : name(rng, i);
    if (dirs.includes(dir)) continue;
    await mkdir(join(root, dir));
    dirs.push(dir);
  }
  const paths: string[] = [];
  for (let i = 0; i < files; i++) {
    const dir = rng.pick(dirs);
    const path = dir ? `${dir}/${name(rng, i)}` : name(rng, i);
    if (paths.includes(path) || dirs.includes(path)) continue;
    const size = rng.next() < 0.05 ? 0 : rng.next() < 0.9 ? rng.int(4096) : rng.int(200_000);
    await writeFile(join(root, path), content(rng, size), { mode: rng.pick([0o644, 0o600, 0o755, 0o640]) });
    paths.push(path);
  }
  await mkdir(join(root, 'empty dir/nested empty'), { recursive: true });
  for (let i = 0; i < 12; i++) {
    const from = rng.pick(paths);
    const at = `${dirname(from) === '.' ? '' : `${dirname(from)}/`}link-${i}`;
    await symlink(i === 0 ? 'does-not-exist' : (from.split('/').pop() as string), join(root, at)).catch(() => {});
  }
  // Times at microsecond precision (what utimes sets exactly), some far in the past.
  for (const p of paths.filter((_, i) => i % 3 === 0)) {
    const t = 1_500_000_000 + rng.int(200_000_000) + rng.int(1_000_000) / 1e6;
    await utimes(join(root, p), t, t);
  }
  return paths;
}

/** What a restore must reproduce of one entry. */
export interface Snap {
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  /** Modification time in microseconds (utimes cannot set nanoseconds). */
  mtimeUs: bigint;
  size: number;
  sha256?: string;
  link?: string;
}

/** Every entry under `root` (not root itself), by relative path. */
export async function snapshot(root: string): Promise<Map<string, Snap>> {
  const out = new Map<string, Snap>();
  const visit = async (dir: string, rel: string) => {
    for (const n of await readdir(dir)) {
      const full = join(dir, n);
      const path = rel ? `${rel}/${n}` : n;
      const s = await lstat(full, { bigint: true });
      const type = s.isDirectory() ? 'directory' : s.isSymbolicLink() ? 'symlink' : 'file';
      const snap: Snap = { type, mode: Number(s.mode) & 0o7777, mtimeUs: s.mtimeNs / 1000n, size: type === 'file' ? Number(s.size) : 0 };
      if (type === 'symlink') {
        snap.link = await readlink(full);
        snap.mode = 0; // Linux symlink modes are always 0777 and cannot be set.
      }
      if (type === 'file') snap.sha256 = await sha256File(full);
      out.set(path, snap);
      if (type === 'directory') await visit(full, path);
    }
  };
  await visit(root, '');
  return out;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer);
  return hash.digest('hex');
}

/**
 * Differences between two snapshots, as readable lines (empty when equal). mtimes may differ
 * by 1 µs: utimes goes through a double of seconds.
 */
export function compareSnapshots(expected: Map<string, Snap>, actual: Map<string, Snap>): string[] {
  const out: string[] = [];
  for (const [path, e] of expected) {
    const a = actual.get(path);
    if (!a) {
      out.push(`missing ${path}`);
      continue;
    }
    for (const key of ['type', 'mode', 'size', 'sha256', 'link'] as const)
      if (e[key] !== a[key]) out.push(`${path}: ${key} ${String(a[key])}, expected ${String(e[key])}`);
    const dt = e.mtimeUs - a.mtimeUs;
    if (dt > 1n || dt < -1n) out.push(`${path}: mtime ${a.mtimeUs}us, expected ${e.mtimeUs}us`);
  }
  for (const path of actual.keys()) if (!expected.has(path)) out.push(`unexpected ${path}`);
  return out;
}

/** Helpers for the mutations between backups. */
export const fsops = { chmod, mkdir, rename, rm, symlink, writeFile, utimes };
