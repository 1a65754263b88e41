// accidental-file-deletion.ts against a real platform: user files are deleted (and changed)
// for real, the runbook runs as its own process, and the result is checked by hashing and
// stat-ing the live tree against what was captured before the deletion.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { backupFiles } from '@drkit/file-archive';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BackupSet, type Outcome, startPlatform, type TestPlatform } from '../support/platform.ts';

interface FileFacts {
  sha256: string;
  mode: number;
  mtimeNs: bigint;
}

let platform: TestPlatform;
let backups: BackupSet;
/** The whole tree as it was at the first backup. */
let before: Map<string, FileFacts>;

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

/** sha256, mode and mtime of every file under `sub` of the live tree, by path relative to the root. */
function facts(sub = ''): Map<string, FileFacts> {
  const root = platform.uploadsDir;
  return new Map(
    filesUnder(join(root, sub)).map((path) => {
      const info = statSync(path, { bigint: true });
      const sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
      return [relative(root, path), { sha256, mode: Number(info.mode) & 0o7777, mtimeNs: info.mtimeNs }];
    }),
  );
}

function sha(path: string): string {
  return createHash('sha256')
    .update(readFileSync(join(platform.uploadsDir, path)))
    .digest('hex');
}

/** Every file of `expected` is live again with the same content and mode, and its mtime to the microsecond. */
function expectBack(expected: Map<string, FileFacts>): void {
  const now = facts();
  for (const [path, was] of expected) {
    const is = now.get(path);
    expect(is, path).toBeDefined();
    expect(is?.sha256, path).toBe(was.sha256);
    expect(is?.mode, path).toBe(was.mode);
    const drift = (is?.mtimeNs ?? 0n) - was.mtimeNs;
    expect(drift < 0n ? -drift : drift, path).toBeLessThan(1000n);
  }
}

function under(prefix: string): Map<string, FileFacts> {
  return new Map([...before].filter(([path]) => path.startsWith(prefix)));
}

/**
 * Runs the runbook; the restored copy it leaves in a new temp directory (the default target)
 * is removed afterwards, as the operator is told to once done.
 */
async function runFiles(args: string[]): Promise<Outcome> {
  const outcome = await platform.runbook('accidental-file-deletion', args);
  const kept = /The restored copy stays in (\S+): delete it/.exec(outcome.stderr)?.[1];
  if (kept?.startsWith(join(tmpdir(), 'drkit-files-'))) rmSync(kept, { recursive: true, force: true });
  return outcome;
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

beforeAll(async () => {
  platform = await startPlatform();
  backups = await platform.backupAll();
  before = facts();
}, 120_000);

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('accidental-file-deletion runbook', () => {
  it('the seeded tree has the directories the scenarios delete', () => {
    expect(under('uploads/2025/10/').size).toBeGreaterThan(2);
    expect(under('audio/generated/').size).toBeGreaterThan(1);
    expect(under('profiles/').size).toBeGreaterThan(0);
  });

  it('--dry-run finds the backup and what is missing, and changes nothing', async () => {
    rmSync(join(platform.uploadsDir, 'uploads/2025/10'), { recursive: true });
    const outcome = await runFiles(['--path', 'uploads/2025/10/', '--dry-run']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    const text = outcome.stdout + outcome.stderr;
    expect(text).toContain(backups.files.manifest.id);
    expect(text).toContain(`${under('uploads/2025/10/').size} are missing`);
    expect(existsSync(join(platform.uploadsDir, 'uploads/2025/10'))).toBe(false);
    expect(readdirSync(join(platform.uploadsDir, '..')).filter((f) => f.includes('drkit'))).toEqual([]);
    expect(platform.slack.requests).toEqual([]);
  }, 180_000);

  it('restores a deleted directory, and only that: content, mode and mtime back, another deleted file stays deleted', async () => {
    // The directory is still gone from the dry run; a profile is deleted too and not asked for.
    const profile = [...under('profiles/').keys()][0] as string;
    unlinkSync(join(platform.uploadsDir, profile));
    platform.slack.requests.length = 0;
    const runsBefore = runDirs();
    const target = join(platform.dir, 'restore-main');
    const outcome = await runFiles(['--path', 'uploads/2025/10/', '--target-dir', target, '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    expectBack(under('uploads/2025/10/'));
    expect(existsSync(join(platform.uploadsDir, profile))).toBe(false);
    // The verified restore stays in the target directory, holding only the selected path.
    expect(
      filesUnder(target)
        .map((p) => relative(target, p))
        .every((p) => p.startsWith('uploads/2025/10/')),
    ).toBe(true);
    // The app serves a restored upload again.
    const one = [...under('uploads/2025/10/').keys()][0] as string;
    const served = await fetch(`${platform.app.url}/api/uploads/${one.split('/').map(encodeURIComponent).join('/')}`);
    expect(served.status).toBe(200);
    expect(
      createHash('sha256')
        .update(Buffer.from(await served.arrayBuffer()))
        .digest('hex'),
    ).toBe(before.get(one)?.sha256);

    const texts = platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
    expect(texts[0]).toMatch(/INCIDENT - Sev3/);
    expect(texts.at(-1)).toMatch(/INCIDENT RESOLVED/);
    const run = runDirs().find((d) => !runsBefore.includes(d));
    expect(run).toBeDefined();
    const report = readFileSync(join(platform.runsDir, run as string, 'report.md'), 'utf8');
    expect(report).toMatch(/copy-back/);
    expect(report).toMatch(/succeeded/i);
    // Put the profile back for the next scenarios.
    const again = await runFiles(['--path', profile, '--yes']);
    expect(again.code, again.stderr).toBe(0);
    expectBack(under(profile));
  }, 180_000);

  it('--backup YYYY-MM-DD takes the newest backup of that day; a day without one is refused', async () => {
    // A second backup the same day, after one file changed: the date must pick it, not the first.
    const changed = [...under('audio/generated/').keys()][0] as string;
    writeFileSync(join(platform.uploadsDir, changed), 'the newer take of this clip');
    const newer = facts('audio/generated');
    const second = await platform.withCatalog((catalog) =>
      backupFiles({ dir: platform.uploadsDir, catalog, keys: platform.keys.backupRing, tier: 'daily' }),
    );
    expect(second.type).toBe('incremental');
    rmSync(join(platform.uploadsDir, 'audio/generated'), { recursive: true });

    const day = second.manifest.createdAt.slice(0, 10);
    const none = await runFiles(['--path', 'audio/generated/', '--backup', '2020-01-01', '--yes']);
    expect(none.code).toBe(1);
    expect(none.stdout + none.stderr).toMatch(/no backup of 2020-01-01/);
    expect(none.stdout + none.stderr).toContain(second.manifest.id);
    expect(existsSync(join(platform.uploadsDir, 'audio/generated'))).toBe(false);

    const outcome = await runFiles(['--path', 'audio/generated/', '--backup', day, '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    expect(outcome.stdout + outcome.stderr).toContain(`chose backup ${second.manifest.id}`);
    expectBack(newer);
    expect(sha(changed)).toBe(createHash('sha256').update('the newer take of this clip').digest('hex'));
  }, 180_000);

  it('leaves a file changed since the backup alone without --overwrite, and keeps it aside with --overwrite', async () => {
    const [changed, deleted] = [...under('uploads/2025/10/').keys()] as [string, string];
    writeFileSync(join(platform.uploadsDir, changed), 'edited after the backup');
    unlinkSync(join(platform.uploadsDir, deleted));
    const edited = sha(changed);

    const outcome = await runFiles(['--path', 'uploads/2025/10/', '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    expect(outcome.stdout + outcome.stderr).toMatch(/not overwritten, changed since the backup: 1 file/);
    expect(sha(changed)).toBe(edited);
    expectBack(under(deleted));

    const overwrite = await runFiles(['--path', 'uploads/2025/10/', '--overwrite', '--yes']);
    expect(overwrite.code, `${overwrite.stdout}\n${overwrite.stderr}`).toBe(0);
    expectBack(under('uploads/2025/10/'));
    const asides = readdirSync(join(platform.uploadsDir, '..')).filter((f) => f.startsWith('uploads.drkit-replaced-'));
    expect(asides).toHaveLength(1);
    const kept = readFileSync(join(platform.uploadsDir, '..', asides[0] as string, changed), 'utf8');
    expect(kept).toBe('edited after the backup');
  }, 180_000);

  it('--no-copy-back restores into the target directory for inspection and leaves the live tree alone', async () => {
    const profile = [...under('profiles/').keys()][0] as string;
    unlinkSync(join(platform.uploadsDir, profile));
    const tree = facts();
    const target = join(platform.dir, 'inspect');
    const outcome = await runFiles(['--path', 'profiles/**', '--no-copy-back', '--target-dir', target, '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    expect(facts()).toEqual(tree);
    const restored = filesUnder(target).map((p) => relative(target, p));
    expect(restored.sort()).toEqual([...under('profiles/').keys()].sort());
    expect(
      createHash('sha256')
        .update(readFileSync(join(target, profile)))
        .digest('hex'),
    ).toBe(before.get(profile)?.sha256);
  }, 180_000);

  it('refuses a path no backup holds (exit 1), touching nothing', async () => {
    const tree = facts();
    const outcome = await runFiles(['--path', 'uploads/1999/', '--yes']);
    expect(outcome.code).toBe(1);
    expect(outcome.stdout + outcome.stderr).toMatch(/no backup holds "uploads\/1999\/"/);
    expect(facts()).toEqual(tree);
  }, 180_000);
});
