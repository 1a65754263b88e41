// Database Corruption (first plan, Recovery Procedures; second plan, Procedure 2.2 Database
// Restore): stop the application, keep the corrupted state, restore the latest backup, verify
// `SELECT COUNT(*) FROM users`, restart, verify health. Unlike the plan's literal commands,
// the corrupted database is never dropped before its replacement is verified: the backup is
// restored into a shadow database, checked against the backup's fingerprint, and only then
// swapped in; the corrupted one is kept under another name for forensics.
//
//   tsx runbooks/database-corruption.ts --env staging --plan
//   tsx runbooks/database-corruption.ts --env production --backup latest

import {
  fingerprintOf,
  type PgFingerprint,
  pgTarget,
  restorePostgres,
  snapshotCurrentState,
  takeFingerprint,
  withClient,
} from '@drkit/postgres-backup';
import { defineRunbook, isMain, runbookCli } from '@drkit/runbook';
import { z } from 'zod';
import { appServicesDescribe, startApp, stopApp, verifyApp } from './lib/app.ts';
import {
  ageOf,
  backupKeys,
  backupStoreUrl,
  databaseName,
  databaseUrl,
  PLATFORM_SECRETS,
  platformOf,
  reportEvents,
  required,
  withBackups,
} from './lib/platform.ts';

const params = z.object({
  backup: z.string().default('latest').describe('the backup to restore: an id, or "latest" (the newest complete, verified one)'),
  reason: z.string().default('database corruption').describe('why, for the incident channel and the snapshot label'),
  skipSnapshot: z.boolean().default(false).describe('do not keep a dump of the corrupted state first (only when it cannot be read at all)'),
});

const databaseCorruption = defineRunbook({
  id: 'database-corruption',
  title: 'Recover a corrupted PostgreSQL database from its latest backup',
  description:
    'Stops the application, keeps the corrupted state, restores the backup beside the database, verifies it against the backup fingerprint, swaps it in, restarts and verifies.',
  severity: 'sev2',
  category: 3,
  impact: 'The application is stopped while the database is restored; writes since the backup are lost',
  rto: '1h',
  params,
  // The first plan's RTO breakdown (the infrastructure stays: provisioning is the shadow restore).
  phases: { detection: '15m', decision: '5m', provisioning: '15m', restoration: '20m', verification: '5m' },
  secrets: PLATFORM_SECRETS,
  steps: (step) => {
    const assess = step({
      id: 'assess',
      title: 'Assess the database and find the backup to restore',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) =>
        `read ${databaseName(ctx)}'s row counts (as far as they can be read) and resolve backup "${ctx.params.backup}" in ${backupStoreUrl(ctx)}`,
      run: async (ctx) => {
        const url = databaseUrl(ctx);
        let current: { users: number | null; error?: string } = { users: null };
        try {
          current = await withClient(pgTarget(url), async (client) => {
            const table = required(ctx, 'postgres').countTable;
            const result = await client.query<{ n: string }>(`SELECT COUNT(*)::text AS n FROM ${client.escapeIdentifier(table)}`);
            return { users: Number(result.rows[0]?.n ?? 0) };
          });
        } catch (error) {
          // Corruption often means the count fails: that is a finding, not a reason to stop.
          current = { users: null, error: error instanceof Error ? error.message : String(error) };
          ctx.log.warn(`the database cannot be counted: ${current.error}`);
        }
        const backup = await withBackups(ctx, ({ catalog }) => catalog.resolve(ctx.params.backup, 'postgres'));
        const recorded = fingerprintOf(backup);
        const table = required(ctx, 'postgres').countTable;
        const expectedUsers = Object.entries(recorded.tables).find(([name]) => name === `public.${table}` || name === table)?.[1];
        ctx.log.info(
          `backup ${backup.id} from ${backup.createdAt} (${ageOf(backup.createdAt)} old): ${expectedUsers ?? '?'} rows in ${table}; the database has ${current.users ?? 'an unreadable number of'} rows`,
        );
        return {
          backupId: backup.id,
          backupCreatedAt: backup.createdAt,
          expectedUsers: expectedUsers ?? null,
          currentUsers: current.users,
          currentError: current.error ?? null,
        };
      },
    });

    const decide = step({
      id: 'decide',
      title: 'Decide to restore',
      phase: 'decision',
      gate: 'Stop the application and restore the database from the backup?',
      run: (ctx) => {
        const found = ctx.output(assess);
        return { backupId: found.backupId, reason: ctx.params.reason };
      },
    });

    const stop = step({
      id: 'stop-app',
      title: 'Stop the application',
      phase: 'provisioning',
      destructive: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => appServicesDescribe(ctx, 'stop'),
      run: (ctx) => stopApp(ctx),
    });

    const snapshot = step({
      id: 'snapshot-corrupted',
      title: 'Keep a dump of the current (corrupted) state',
      phase: 'provisioning',
      idempotent: true,
      timeout: '30m',
      plan: (ctx) =>
        ctx.params.skipSnapshot
          ? 'skipped (--skip-snapshot): no dump of the corrupted state is kept'
          : `pg_dump ${databaseName(ctx)} as it is now, sealed, into ${backupStoreUrl(ctx)} as a manual snapshot (tables that cannot be read are left out and named)`,
      run: async (ctx) => {
        if (ctx.params.skipSnapshot) return { snapshotId: null, complete: false, excluded: [] as string[] };
        const snap = await withBackups(ctx, ({ catalog }) =>
          snapshotCurrentState({
            url: databaseUrl(ctx),
            catalog,
            keys: backupKeys(ctx),
            reason: `before restoring backup ${ctx.output(decide).backupId}: ${ctx.params.reason}`,
            environment: ctx.environment,
            signal: ctx.signal,
            onEvent: reportEvents(ctx),
          }),
        );
        if (!snap.complete) ctx.log.warn(`the snapshot is partial: ${snap.failures.map((f) => `${f.object}: ${f.error}`).join('; ')}`);
        return { snapshotId: snap.manifest?.id ?? null, complete: snap.complete, excluded: snap.excludedTableData };
      },
    });

    const restore = step({
      id: 'restore-and-swap',
      title: 'Restore the backup into a shadow database, verify it, swap it in',
      phase: 'restoration',
      destructive: true,
      timeout: '45m',
      plan: (ctx) => [
        `restore backup ${ctx.params.backup === 'latest' ? 'latest (resolved at the assess step)' : ctx.params.backup} into a new database beside ${databaseName(ctx)}`,
        'compare its row counts, sequences and schema objects with the fingerprint recorded in the backup',
        `rename ${databaseName(ctx)} to ${databaseName(ctx)}_damaged_<time> (kept, never dropped) and the verified restore to ${databaseName(ctx)}`,
      ],
      run: async (ctx) => {
        const { backupId } = ctx.output(decide);
        const result = await withBackups(ctx, ({ catalog }) =>
          restorePostgres({
            catalog,
            backup: backupId,
            target: databaseUrl(ctx),
            keys: backupKeys(ctx),
            keepDamaged: true,
            ...(platformOf(ctx).postgres?.maintenanceDatabase !== undefined
              ? { maintenanceDatabase: platformOf(ctx).postgres?.maintenanceDatabase as string }
              : {}),
            signal: ctx.signal,
            onEvent: reportEvents(ctx),
          }),
        );
        for (const warning of result.warnings) ctx.log.warn(warning);
        return { backupId: result.backup.id, damaged: result.damaged ?? null, plan: result.plan, durationMs: result.durationMs };
      },
    });

    const verify = step({
      id: 'verify-restore',
      title: 'Verify the restored database (SELECT COUNT(*) FROM users, and the whole fingerprint)',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '10m',
      run: async (ctx) => {
        const { backupId } = ctx.output(restore);
        const manifest = await withBackups(ctx, ({ catalog }) => catalog.get(backupId, 'postgres'));
        const recorded = fingerprintOf(manifest);
        const table = required(ctx, 'postgres').countTable;
        const { users, fingerprint } = await withClient(pgTarget(databaseUrl(ctx)), async (client) => {
          const count = await client.query<{ n: string }>(`SELECT COUNT(*)::text AS n FROM ${client.escapeIdentifier(table)}`);
          const taken: PgFingerprint = await takeFingerprint(client, { signal: ctx.signal });
          return { users: Number(count.rows[0]?.n ?? -1), fingerprint: taken };
        });
        const expected = Object.entries(recorded.tables).find(([name]) => name === `public.${table}` || name === table)?.[1];
        if (expected !== undefined && users !== expected)
          throw new Error(`SELECT COUNT(*) FROM ${table} returned ${users}, but backup ${backupId} recorded ${expected}`);
        const mismatched = Object.entries(recorded.tables).filter(([name, rows]) => fingerprint.tables[name] !== rows);
        if (mismatched.length > 0)
          throw new Error(
            `row counts differ from backup ${backupId}: ${mismatched
              .slice(0, 5)
              .map(([name, rows]) => `${name} expected ${rows}, found ${fingerprint.tables[name] ?? 'missing'}`)
              .join('; ')}`,
          );
        ctx.log.info(
          `SELECT COUNT(*) FROM ${table} = ${users}, as recorded in backup ${backupId}; ${Object.keys(recorded.tables).length} tables match`,
        );
        return { users, tables: Object.keys(recorded.tables).length };
      },
    });

    const start = step({
      id: 'start-app',
      title: 'Restart the application',
      phase: 'verification',
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => appServicesDescribe(ctx, 'start'),
      run: (ctx) => startApp(ctx),
    });

    const health = step({
      id: 'verify-health',
      title: 'Verify the application is healthy',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      run: async (ctx) => {
        ctx.output(start);
        return verifyApp(ctx);
      },
    });

    return [assess, decide, stop, snapshot, restore, verify, start, health];
  },
});

export default databaseCorruption;

if (isMain(import.meta.url)) await runbookCli(databaseCorruption);
