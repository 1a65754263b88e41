// Point-in-Time Recovery (second plan, Procedure 2.3): recover PostgreSQL to a moment — just
// before a bad migration, a mass delete, an attacker's writes — into a new server beside the
// current one, as the plan's `restore-db-instance-to-point-in-time` makes a new "-recovery"
// instance. From the newest base backup that finished before the moment, the archived WAL
// (`drkit wal-push`) is replayed up to it, the server promotes onto a new timeline, and is
// checked. The current database is never touched: switching the application over is a
// separate, deliberate step, described in the report.
//
//   tsx runbooks/point-in-time-recovery.ts --env production --to 2026-11-22T10:00:00Z --plan
//   tsx runbooks/point-in-time-recovery.ts --env production --to 2026-11-22T10:00:00Z
//   tsx runbooks/point-in-time-recovery.ts --env staging --latest --yes

import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeArchive, parseRecoveryTarget, walFetchCommand } from '@drkit/cli';
import {
  listBaseBackups,
  osAccount,
  parseLsn,
  pgTarget,
  type RecoveryTarget,
  restorePointInTime,
  verifyWalArchive,
  withClient,
} from '@drkit/postgres-backup';
import { defineRunbook, isMain, RunbookError, runbookCli } from '@drkit/runbook';
import { z } from 'zod';
import {
  backupKeys,
  backupStoreUrl,
  databaseName,
  databaseUrl,
  PLATFORM_SECRETS,
  reportEvents,
  required,
  withBackups,
} from './lib/platform.ts';

const params = z.object({
  to: z.string().optional().describe('recover to just before this moment: ISO 8601 with its zone, e.g. 2026-11-22T10:00:00Z'),
  lsn: z.string().optional().describe('recover to this WAL position instead (e.g. 0/3000028)'),
  latest: z.boolean().default(false).describe('replay everything the archive holds'),
  into: z.string().optional().describe('the new data directory (default: vars.postgres.pitr.dir/pitr-<time>)'),
  base: z.string().optional().describe('the base backup to start from (default: the newest that finished before the target)'),
  reason: z.string().default('point-in-time recovery').describe('why, for the incident channel'),
});

type Params = z.output<typeof params>;

/** The target the parameters name; a wrong combination is a config error naming the fix. */
function targetOf(p: Params): RecoveryTarget {
  try {
    return parseRecoveryTarget({ to: p.to, lsn: p.lsn, latest: p.latest });
  } catch (error) {
    throw new RunbookError('RUNBOOK_PARAMS_INVALID', `${(error as Error).message.replace(/--(to|lsn|latest)/g, '--$1')}`);
  }
}

function describeTarget(target: RecoveryTarget): string {
  if (target === 'latest') return 'the end of the WAL archive';
  return 'time' in target ? `just before ${target.time.toISOString()}` : `WAL position ${target.lsn}`;
}

function pitrConfig(ctx: Parameters<typeof required>[0]) {
  const pitr = required(ctx, 'postgres').pitr;
  if (!pitr)
    throw new RunbookError(
      'RUNBOOK_CONFIG_INVALID',
      `environment "${ctx.environment}" has no vars.postgres.pitr: add { dir: "/var/lib/postgresql/recovery" } (where recovered clusters get their data directories)`,
    );
  return pitr;
}

const pointInTimeRecovery = defineRunbook({
  id: 'point-in-time-recovery',
  title: 'Recover PostgreSQL to a point in time, into a new server',
  description:
    'Checks the WAL archive reaches the target, then restores the newest base backup before it into a new data directory, replays the archived WAL to the target, promotes and verifies the recovered server. The current database is not touched.',
  severity: 'sev2',
  category: 3,
  impact: 'None on the running database: the recovered server is new; the application is switched to it only by a later decision',
  // The second plan's RTO for the full API: a recovery that takes the database back.
  rto: '1h',
  params,
  phases: { detection: '10m', decision: '5m', restoration: '35m', verification: '10m' },
  secrets: PLATFORM_SECRETS,
  steps: (step) => {
    const assess = step({
      id: 'assess',
      title: 'Check the WAL archive reaches the target, and pick the base backup',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '10m',
      plan: (ctx) =>
        `read the base backups and the WAL archive in ${backupStoreUrl(ctx)}: check the WAL is continuous from each base backup and that the window covers ${describeTarget(targetOf(ctx.params))}`,
      run: async (ctx) => {
        const target = targetOf(ctx.params);
        const keys = backupKeys(ctx);
        const { reports, bases } = await withBackups(ctx, async ({ catalog }) => ({
          reports: await verifyWalArchive({ catalog, keys, signal: ctx.signal }),
          bases: await listBaseBackups(catalog),
        }));
        for (const report of reports) for (const line of describeArchive(report)) ctx.log.info(line);
        if (bases.length === 0)
          throw new RunbookError(
            'RUNBOOK_STEP_FAILED',
            `there is no base backup in ${backupStoreUrl(ctx)}: point-in-time recovery needs one (drkit backup postgres-base) and the server archiving its WAL (archive_command = 'drkit wal-push %p')`,
          );
        const fits = bases.filter((b) =>
          ctx.params.base !== undefined
            ? b.manifest.id === ctx.params.base
            : target === 'latest'
              ? true
              : 'time' in target
                ? new Date(b.base.stoppedAt) <= target.time
                : parseLsn(b.base.stopLsn) <= parseLsn(target.lsn),
        );
        const chosen = fits.at(-1);
        const report = reports.find((r) => r.systemId === chosen?.base.systemId);
        const coverage = report?.bases.find((b) => b.id === chosen?.manifest.id);
        const window = report?.windows.map((w) => `${w.from.toISOString()} to ${w.to.toISOString()}`).join(', ') ?? 'none';
        if (!chosen || !coverage)
          throw new RunbookError(
            'RUNBOOK_STEP_FAILED',
            `no base backup can reach ${describeTarget(target)}${ctx.params.base ? ` (base backup ${ctx.params.base} is not there)` : ''}; the recovery window is ${window}`,
          );
        if (typeof target === 'object' && 'time' in target && target.time > coverage.to)
          throw new RunbookError(
            'RUNBOOK_STEP_FAILED',
            `the archive reaches only ${coverage.to.toISOString()} from base backup ${chosen.manifest.id}${coverage.gap ? ` (segment ${coverage.gap} is missing)` : ''}: choose a time in ${window}, or --latest`,
          );
        if (coverage.gap)
          ctx.log.warn(
            `WAL segment ${coverage.gap} is missing: recovery from ${chosen.manifest.id} can reach at most ${coverage.to.toISOString()}`,
          );
        ctx.log.info(
          `base backup ${chosen.manifest.id} (finished ${chosen.base.stoppedAt}) recovers from ${coverage.from.toISOString()} to ${coverage.to.toISOString()}`,
        );
        return {
          target: describeTarget(target),
          baseId: chosen.manifest.id,
          systemId: chosen.base.systemId,
          window,
          archiveOk: report?.ok ?? false,
        };
      },
    });

    const decide = step({
      id: 'decide',
      title: 'Decide to recover',
      phase: 'decision',
      gate: 'Recover PostgreSQL into a new server at the chosen point? (the current database is not touched)',
      run: (ctx) => {
        const found = ctx.output(assess);
        const pitr = pitrConfig(ctx);
        const into = ctx.params.into ?? join(pitr.dir, `pitr-${new Date().toISOString().replace(/[-:.]/g, '')}`);
        return { ...found, into, reason: ctx.params.reason };
      },
    });

    const recover = step({
      id: 'recover',
      title: 'Restore the base backup and replay the WAL archive to the target',
      phase: 'restoration',
      timeout: '35m',
      plan: (ctx) => {
        const pitr = pitrConfig(ctx);
        return `extract the newest base backup before the target from ${backupStoreUrl(ctx)} into a new directory under ${pitr.dir} (never over an existing one), replay the archived WAL to ${describeTarget(targetOf(ctx.params))}, promote, and leave the recovered server running on 127.0.0.1:${pitr.port ?? '<free port>'}${pitr.osUser ? ` as ${pitr.osUser}` : ''}`;
      },
      run: async (ctx) => {
        const { into, baseId, systemId } = ctx.output(decide);
        const pitr = pitrConfig(ctx);
        const store = backupStoreUrl(ctx);
        const login = new URL(databaseUrl(ctx));
        // restore_command runs inside the recovered server: it reads the keys from a private
        // file beside the data directory, removed as soon as recovery is over.
        const keyDir = `${into}.keys`;
        await mkdir(keyDir, { recursive: true, mode: 0o700 });
        const keyFile = join(keyDir, 'backup.key');
        await writeFile(keyFile, ctx.secret('backupKey'), { mode: 0o600 });
        const owner = osAccount(pitr.osUser);
        if (owner) {
          await chown(keyDir, owner.uid, owner.gid);
          await chown(keyFile, owner.uid, owner.gid);
        }
        try {
          const fetch = walFetchCommand(store, keyFile, process.env);
          const recovered = await withBackups(ctx, ({ catalog }) =>
            restorePointInTime({
              catalog,
              keys: backupKeys(ctx),
              target: targetOf(ctx.params),
              into,
              restoreCommand: fetch.command,
              env: fetch.env,
              base: baseId,
              systemId,
              login: {
                user: decodeURIComponent(login.username || 'postgres'),
                ...(login.password ? { password: decodeURIComponent(login.password) } : {}),
                database: databaseName(ctx),
              },
              keepRunning: true,
              signal: ctx.signal,
              onEvent: reportEvents(ctx),
              ...(pitr.port ? { port: pitr.port } : {}),
              ...(pitr.osUser ? { osUser: pitr.osUser } : {}),
            }),
          );
          ctx.log.info(
            `recovered into ${recovered.dataDir}: ${recovered.stoppedAt.reason ?? `the end of the archive (redo done at ${recovered.stoppedAt.redoDoneAt ?? '?'})`}; ${recovered.walRestored} WAL files replayed; timeline ${recovered.timeline}; running on 127.0.0.1:${recovered.port}`,
          );
          return {
            dataDir: recovered.dataDir,
            port: recovered.port,
            timeline: recovered.timeline,
            stoppedAt: recovered.stoppedAt.reason ?? 'end of archive',
            lastTransactionAt: recovered.stoppedAt.lastTransactionAt?.toISOString() ?? null,
            walRestored: recovered.walRestored,
            baseId: recovered.base.id,
          };
        } finally {
          await rm(keyDir, { recursive: true, force: true });
        }
      },
    });

    const verify = step({
      id: 'verify',
      title: 'Verify the recovered server (SELECT COUNT(*) FROM users, writable, new timeline)',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '10m',
      run: async (ctx) => {
        const { port, timeline } = ctx.output(recover);
        const url = new URL(databaseUrl(ctx));
        url.hostname = '127.0.0.1';
        url.port = String(port);
        const table = required(ctx, 'postgres').countTable;
        const checked = await withClient(pgTarget(url.toString()), async (client) => {
          const count = await client.query<{ n: string }>(`SELECT COUNT(*)::text AS n FROM ${client.escapeIdentifier(table)}`);
          const state = await client.query<{ recovering: boolean }>('SELECT pg_is_in_recovery() AS recovering');
          return { rows: Number(count.rows[0]?.n ?? -1), recovering: state.rows[0]?.recovering ?? true };
        });
        if (checked.recovering) throw new RunbookError('RUNBOOK_STEP_FAILED', 'the recovered server is still in recovery');
        ctx.log.info(`recovered server: SELECT COUNT(*) FROM ${table} = ${checked.rows}, out of recovery, timeline ${timeline}`);
        return { [table]: checked.rows, timeline };
      },
    });

    const handover = step({
      id: 'handover',
      title: 'Say how to switch the application to the recovered server',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      run: (ctx) => {
        const { dataDir, port } = ctx.output(recover);
        const current = required(ctx, 'postgres').url;
        const next = [
          `the recovered cluster runs from ${dataDir} on 127.0.0.1:${port}; the current database (${new URL(current).host}) is unchanged`,
          'to make it the primary: stop the application, point its DATABASE_URL at the recovered server (or move the data directory into place), restart and verify (database-corruption and service-recovery describe those steps)',
          "then turn WAL archiving on for it (archive_mode = on, archive_command = 'drkit wal-push %p') and take a base backup at once: its new timeline has none yet",
        ];
        for (const line of next) ctx.log.info(line);
        return { next };
      },
    });

    return [assess, decide, recover, verify, handover];
  },
});

export default pointInTimeRecovery;

if (isMain(import.meta.url)) await runbookCli(pointInTimeRecovery);
