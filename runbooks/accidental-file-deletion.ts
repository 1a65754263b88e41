// Accidental File Deletion (first plan, Recovery Procedures): list the backups, restore a dated
// backup into a target directory, copy the deleted files back, verify. Unlike the plan's
// `cp -r`, only the lost path is restored (from the backups that hold it, not a whole tree),
// every restored file is checked against the SHA-256 the backup recorded before anything
// touches the live tree, files go back atomically one by one (temp file, then rename), a file
// that exists with other content is never overwritten unless --overwrite is given (and then
// what it held is kept aside), and the live files are hashed again at the end.
//
//   tsx runbooks/accidental-file-deletion.ts --env staging --path uploads/2025/10/ --plan
//   tsx runbooks/accidental-file-deletion.ts --env production --path uploads/2025/10/ --backup 2025-10-17

import { lstat, mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { restoreFiles } from '@drkit/file-archive';
import { defineRunbook, isMain, RunbookError, runbookCli } from '@drkit/runbook';
import { z } from 'zod';
import {
  chooseHolder,
  compareTree,
  copyBack,
  files,
  filesRootOf,
  findHolders,
  mismatchOf,
  selectedEntries,
  somePaths,
} from './lib/files.ts';
import { ageOf, backupKeys, backupStoreUrl, PLATFORM_SECRETS, reportEvents, withBackups } from './lib/platform.ts';

const params = z.object({
  path: z
    .string()
    .min(1)
    .describe('what was deleted, relative to vars.files.root: a file, a directory (uploads/2025/10/) or a glob (uploads/*/10/*.mp3)'),
  backup: z
    .string()
    .default('latest')
    .refine((v) => v === 'latest' || /^\d{4}-\d{2}-\d{2}$/.test(v) || /^\d{8}T\d{9}Z-[0-9a-f]{6}$/.test(v), {
      message: 'expected "latest", a date YYYY-MM-DD or a backup id such as 20251017T020000000Z-1a2b3c',
    })
    .describe('"latest" (the newest backup holding the path), a date YYYY-MM-DD (the newest of that UTC day) or a backup id'),
  targetDir: z
    .string()
    .min(1)
    .optional()
    .describe('where to restore for inspection (a new or empty directory); default a new temp directory'),
  copyBack: z
    .boolean()
    .default(true)
    .describe('copy the restored files back into vars.files.root (--no-copy-back: only restore for inspection)'),
  overwrite: z
    .boolean()
    .default(false)
    .describe(
      'replace live files whose content differs from the backup (what they held is kept aside); by default they are left and reported',
    ),
  reason: z.string().default('accidental file deletion').describe('why, for the incident channel'),
});

const accidentalFileDeletion = defineRunbook({
  id: 'accidental-file-deletion',
  title: 'Restore accidentally deleted user files from a backup',
  description:
    'Finds the backups holding the lost path, restores that path only into a target directory, checks every SHA-256, copies the files back without overwriting newer ones, and checks the live files.',
  // The first plan's incident classification names "Individual file loss" as Severity 3 -
  // Medium (response within 4 hours, on-call engineer); the second plan lists accidental
  // deletion under category 3, data loss. A deletion of most user files is no longer
  // "individual": that is the complete-recovery runbook's Sev1.
  severity: 'sev3',
  category: 3,
  impact: 'The deleted files are missing for users until they are copied back; nothing else is stopped',
  rto: '1h',
  params,
  // The first plan's RTO breakdown; the restore into the target directory is the provisioning.
  phases: { detection: '15m', decision: '5m', provisioning: '15m', restoration: '20m', verification: '5m' },
  secrets: PLATFORM_SECRETS,
  steps: (step) => {
    const find = step({
      id: 'find-backups',
      title: 'List the backups holding the deleted path and choose one',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '10m',
      plan: (ctx) => [
        `list the file backups of ${filesRootOf(ctx)} in ${backupStoreUrl(ctx)} holding "${ctx.params.path}" (indexes only), with their dates`,
        `choose ${ctx.params.backup === 'latest' ? 'the newest' : /^\d{4}-/.test(ctx.params.backup) ? `the newest of ${ctx.params.backup} (UTC)` : `backup ${ctx.params.backup}`}, and compare its files with ${filesRootOf(ctx)} (missing, identical, changed since)`,
      ],
      run: async (ctx) => {
        const root = filesRootOf(ctx);
        return withBackups(ctx, async ({ catalog }) => {
          const holders = await findHolders(ctx, catalog, ctx.params.path);
          for (const h of holders)
            ctx.log.info(
              `backup ${h.id} (${h.tier} ${h.type}${h.snapshot ? ', snapshot' : ''}) from ${h.createdAt}, ${ageOf(h.createdAt)} ago: ${h.files} files, ${h.bytes} bytes under "${ctx.params.path}"`,
            );
          const chosen = chooseHolder(holders, ctx.params.backup, ctx.params.path);
          const entries = await selectedEntries(ctx, catalog, chosen.id, ctx.params.path);
          const live = await compareTree(root, entries, ctx.signal);
          ctx.log.info(
            `chose backup ${chosen.id} from ${chosen.createdAt}: of its ${entries.length - entries.filter((e) => e.type === 'directory').length} files under "${ctx.params.path}", ${live.missing.length} are missing from ${root}, ${live.identical.length} are there unchanged, ${live.different.length} have changed since`,
          );
          if (live.different.length > 0)
            ctx.log.warn(
              `changed since the backup (${ctx.params.overwrite ? 'will be replaced, old content kept aside' : 'will be left as they are: --overwrite to replace them'}): ${somePaths(live.different)}`,
            );
          if (live.otherType.length > 0)
            ctx.log.warn(`something else is at these paths now, they are left alone: ${somePaths(live.otherType)}`);
          if (live.missing.length === 0) ctx.log.info('nothing under the path is missing from the live tree');
          return {
            backupId: chosen.id,
            createdAt: chosen.createdAt,
            files: chosen.files,
            bytes: chosen.bytes,
            holders: holders.map((h) => ({ id: h.id, createdAt: h.createdAt, files: h.files })),
            missing: live.missing.length,
            identical: live.identical.length,
            different: live.different.length,
            otherType: live.otherType.length,
          };
        });
      },
    });

    const decide = step({
      id: 'decide',
      title: 'Decide to restore',
      phase: 'decision',
      gate: 'Restore the deleted files from this backup and copy them back?',
      run: (ctx) => {
        const found = ctx.output(find);
        return { backupId: found.backupId, reason: ctx.params.reason };
      },
    });

    const restore = step({
      id: 'restore-to-target',
      title: 'Restore the path from the backup into the target directory',
      phase: 'provisioning',
      idempotent: true,
      timeout: '30m',
      plan: (ctx) =>
        `restore only "${ctx.params.path}" of ${ctx.params.backup === 'latest' ? 'the chosen backup' : `backup ${ctx.params.backup}`} into ${ctx.params.targetDir ? resolve(ctx.params.targetDir) : `a new directory ${join(tmpdir(), 'drkit-files-XXXXXX')}`} (a new or empty directory; it is kept for inspection), every SHA-256 checked against the backup index`,
      run: async (ctx) => {
        const { backupId } = ctx.output(decide);
        const target = ctx.params.targetDir ? resolve(ctx.params.targetDir) : await mkdtemp(join(tmpdir(), 'drkit-files-'));
        return withBackups(ctx, async ({ catalog }) => {
          // A resumed run finds its own complete restore there: nothing to do again.
          const entries = await selectedEntries(ctx, catalog, backupId, ctx.params.path);
          const present = await readdir(target).catch(() => [] as string[]);
          if (present.length > 0) {
            const there = await compareTree(target, entries, ctx.signal);
            if (there.missing.length + there.different.length + there.otherType.length === 0) {
              ctx.log.info(`${target} already holds every file of the restore`);
              return { target, files: there.identical.length, bytes: 0, directories: 0 };
            }
          }
          const restored = await restoreFiles({
            catalog,
            keys: backupKeys(ctx),
            backup: backupId,
            target,
            paths: [ctx.params.path],
            signal: ctx.signal,
            onEvent: reportEvents(ctx),
          });
          ctx.log.info(`restored ${restored.files} files (${restored.bytes} bytes) and ${restored.directories} directories into ${target}`);
          return { target, files: restored.files, bytes: restored.bytes, directories: restored.directories };
        });
      },
    });

    const verifyRestored = step({
      id: 'verify-restored',
      title: 'Check every restored file against the SHA-256 the backup recorded',
      phase: 'provisioning',
      readOnly: true,
      idempotent: true,
      timeout: '15m',
      run: async (ctx) => {
        const { target } = ctx.output(restore);
        const { backupId } = ctx.output(decide);
        const entries = await withBackups(ctx, ({ catalog }) => selectedEntries(ctx, catalog, backupId, ctx.params.path));
        const bad: string[] = [];
        for (const entry of entries) {
          const why = await mismatchOf(target, entry, { signal: ctx.signal });
          if (why) bad.push(`${entry.path}: ${why}`);
        }
        if (bad.length > 0) throw new Error(`${bad.length} restored entries differ from backup ${backupId}: ${somePaths(bad)}`);
        const files = entries.filter((e) => e.type === 'file').length;
        ctx.log.info(`all ${files} restored files in ${target} have the SHA-256, size and mode recorded in backup ${backupId}`);
        return { verified: files };
      },
    });

    const copy = step({
      id: 'copy-back',
      title: 'Copy the restored files back into the live tree',
      phase: 'restoration',
      destructive: true,
      idempotent: true,
      timeout: '30m',
      plan: (ctx) =>
        ctx.params.copyBack
          ? [
              `copy the restored "${ctx.params.path}" into ${filesRootOf(ctx)}, each file through a temp file beside it and an atomic rename`,
              ctx.params.overwrite
                ? `files there with other content are replaced (--overwrite); what they held is kept in ${filesRootOf(ctx)}.drkit-replaced-<run id>`
                : 'files there with other content are left as they are and reported (--overwrite to replace them)',
              'missing directories are created with the backup’s mode and mtime',
            ]
          : 'nothing (--no-copy-back): the restored files stay in the target directory for inspection',
      run: async (ctx) => {
        const { target } = ctx.output(restore);
        ctx.output(verifyRestored);
        const { backupId } = ctx.output(decide);
        const root = filesRootOf(ctx);
        const aside = `${root}.drkit-replaced-${ctx.runId}`;
        if (!ctx.params.copyBack) {
          ctx.log.info(`--no-copy-back: the restored files are in ${target}`);
          return {
            copied: false,
            restored: 0,
            restoredSample: [] as string[],
            identical: 0,
            conflicts: [] as string[],
            replaced: 0,
            blocked: [] as string[],
            aside: null as string | null,
            bytes: 0,
          };
        }
        const entries = await withBackups(ctx, ({ catalog }) => selectedEntries(ctx, catalog, backupId, ctx.params.path));
        const result = await copyBack({
          from: target,
          root,
          entries,
          overwrite: ctx.params.overwrite,
          aside,
          signal: ctx.signal,
          onFile: (done, total, bytes) => ctx.progress({ done, total, unit: 'files', message: `${bytes} bytes` }),
        });
        ctx.log.info(
          `put back ${files(result.restored.length)} into ${root}` +
            (result.identical.length > 0 ? `; ${result.identical.length} were there unchanged` : '') +
            (result.replaced.length > 0 ? `; ${result.replaced.length} replaced, their content kept in ${aside}` : '') +
            (result.createdDirectories > 0 ? `; ${result.createdDirectories} directories created` : ''),
        );
        if (result.conflicts.length > 0)
          ctx.log.warn(
            `not overwritten, changed since the backup: ${files(result.conflicts.length)} (the backup's version is in ${target}; --overwrite replaces them): ${somePaths(result.conflicts, 10)}`,
          );
        if (result.blocked.length > 0)
          ctx.log.warn(
            `${result.blocked.length} paths are taken by something else (a directory, a file where the backup has a directory) and were left alone: ${somePaths(result.blocked, 10)}`,
          );
        return {
          copied: true,
          restored: result.restored.length,
          // The first paths, for the report; the journal need not carry thousands.
          restoredSample: result.restored.slice(0, 50),
          identical: result.identical.length,
          conflicts: result.conflicts,
          replaced: result.replaced.length,
          blocked: result.blocked,
          aside: result.replaced.length > 0 ? aside : null,
          bytes: result.bytes,
        };
      },
    });

    const verifyLive = step({
      id: 'verify-live',
      title: 'Verify the live files against the backup and report what was restored',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '15m',
      run: async (ctx) => {
        const copied = ctx.output(copy);
        const { target } = ctx.output(restore);
        const { backupId } = ctx.output(decide);
        const found = ctx.output(find);
        const root = filesRootOf(ctx);
        if (!copied.copied) {
          ctx.log.info(
            `nothing was copied back (--no-copy-back): the files of backup ${backupId} under "${ctx.params.path}" are in ${target}`,
          );
          return { verified: 0, restored: 0, restoredSample: [] as string[], conflicts: 0, target };
        }
        const left = new Set([...copied.conflicts, ...copied.blocked]);
        const entries = await withBackups(ctx, ({ catalog }) => selectedEntries(ctx, catalog, backupId, ctx.params.path));
        const bad: string[] = [];
        let verified = 0;
        const modes: string[] = [];
        for (const entry of entries) {
          if (entry.type === 'directory' || left.has(entry.path)) continue;
          // Files found unchanged were not written: a chmod since the backup is theirs to keep.
          const why = await mismatchOf(root, entry, { signal: ctx.signal, mode: false });
          if (why) bad.push(`${entry.path}: ${why}`);
          else {
            verified++;
            if (entry.type === 'file' && ((await lstat(join(root, entry.path))).mode & 0o7777) !== (entry.mode & 0o7777))
              modes.push(entry.path);
          }
        }
        if (bad.length > 0)
          throw new RunbookError(
            'RUNBOOK_VERIFY_FAILED',
            `${files(bad.length)} in the live tree differ from backup ${backupId} after the copy: ${somePaths(bad)}. The verified restore is in ${target}`,
          );
        if (modes.length > 0)
          ctx.log.warn(`same content as the backup but another mode (changed since, left as it is): ${somePaths(modes)}`);
        ctx.log.info(
          `restored "${ctx.params.path}" from backup ${backupId} (${found.createdAt}) into ${root}: ${files(copied.restored)} put back${copied.replaced > 0 ? `, ${files(copied.replaced)} replaced` : ''} (${copied.bytes} bytes written), ${files(verified)} in the live tree match the backup's SHA-256, size and mode` +
            (copied.conflicts.length > 0 ? `; not overwritten, changed since the backup: ${somePaths(copied.conflicts)}` : '') +
            (copied.aside ? `; replaced content kept in ${copied.aside}` : '') +
            `. The restored copy stays in ${target}: delete it when done`,
        );
        return { verified, restored: copied.restored, restoredSample: copied.restoredSample, conflicts: copied.conflicts.length, target };
      },
    });

    return [find, decide, restore, verifyRestored, copy, verifyLive];
  },
});

export default accidentalFileDeletion;

if (isMain(import.meta.url)) await runbookCli(accidentalFileDeletion);
