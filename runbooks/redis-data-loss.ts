// Redis Data Loss (first plan, Recovery Procedures): stop Redis, restore the RDB backup with
// --flush, start Redis, verify with DBSIZE. The RDB replaces the whole dataset, so "--flush" is
// what an RDB restore does anyway. The plan's "or not" is --mode logical: the JSON export is
// restored into the running server (RESTORE ... ABSTTL, no restart), after emptying it with
// --flush or merging with an existing-key policy. Unlike the plan's literal commands, what
// Redis holds now is kept as a snapshot first, the backup is decrypted and checked before the
// server is stopped, the previous dump file is kept, and the verification goes beyond DBSIZE:
// every key's type and expiry is compared with the backup's export, so sessions come back
// with their TTLs instead of as keys that never expire.
//
//   tsx runbooks/redis-data-loss.ts --env staging --plan
//   tsx runbooks/redis-data-loss.ts --env production --backup latest
//   tsx runbooks/redis-data-loss.ts --env production --mode logical --flush

import { fingerprintOf, REDIS_LOGICAL_KIND, REDIS_RDB_KIND, restoreRedis, restoreRedisRdb, verifyRedisBackup } from '@drkit/redis-backup';
import { defineRunbook, isMain, RunbookError, runbookCli } from '@drkit/runbook';
import { z } from 'zod';
import { appServicesDescribe, startApp, stopApp, verifyApp } from './lib/app.ts';
import { ageOf, backupKeys, backupStoreUrl, PLATFORM_SECRETS, required, withBackups } from './lib/platform.ts';
import {
  checkRestoredRedis,
  describeKeyspace,
  policyOf,
  rdbServerOf,
  readKeyspace,
  recordedKeyspace,
  redisEvents,
  redisTargetOf,
  resolveRestoreSet,
  snapshotRedis,
  totalKeys,
} from './lib/redis.ts';

const params = z.object({
  backup: z
    .string()
    .default('latest')
    .describe('the backup to restore: an id (of the RDB or of the export of the same run), or "latest" (the newest complete one)'),
  mode: z
    .enum(['rdb', 'logical'])
    .default('rdb')
    .describe('rdb: stop Redis, put the RDB in place, start it (the plan); logical: restore the export into the running server'),
  flush: z
    .boolean()
    .default(false)
    .describe(
      'logical: FLUSHALL before writing (after the backup authenticated and a snapshot was kept); rdb: implied, the file replaces everything',
    ),
  policy: z
    .enum(['fail', 'skip', 'replace'])
    .optional()
    .describe(
      'logical: keys of the backup that exist in the server stop the restore (fail, the default), are left alone (skip, the default with --flush) or overwritten (replace)',
    ),
  stopApp: z
    .boolean()
    .default(false)
    .describe('stop the application during the restore (the plan does not; writes it makes meanwhile are lost)'),
  skipSnapshot: z.boolean().default(false).describe('do not keep the current state of Redis as a snapshot first'),
  reason: z.string().default('redis data loss').describe('why, for the incident channel and the snapshot label'),
});

const redisDataLoss = defineRunbook({
  id: 'redis-data-loss',
  title: 'Restore lost or corrupted Redis data from its backup',
  description:
    'Keeps what Redis holds now, restores the RDB backup (Redis restarted) or the logical export (no restart), and checks DBSIZE per database and every key’s type and expiry against the backup.',
  // The first plan puts sessions, cache and real-time data in Redis: losing them logs every
  // user out and empties the caches, "service degradation affecting >50% users", which its
  // incident classification calls Severity 2 - High. The second plan's categories list it as
  // data loss (category 3); its response is immediate, whatever the severity.
  severity: 'sev2',
  category: 3,
  impact: 'Sessions and cached data are gone: users are logged out, and Redis restarts during an RDB restore',
  rto: '1h',
  params,
  // The first plan's RTO breakdown. The second plan estimates a Redis cold start at 2 minutes:
  // the restoration budget is generous for a cache and mostly covers downloading the backup.
  phases: { detection: '15m', decision: '5m', provisioning: '15m', restoration: '20m', verification: '5m' },
  secrets: PLATFORM_SECRETS,
  steps: (step) => {
    const assess = step({
      id: 'assess',
      title: 'Assess Redis and find the backup to restore',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => [
        `read INFO keyspace (DBSIZE per database) of ${required(ctx, 'redis').url}, or note that it does not answer`,
        `resolve ${ctx.params.mode === 'rdb' ? 'RDB' : 'logical'} backup "${ctx.params.backup}" in ${backupStoreUrl(ctx)}, with its recorded keyspace and age`,
      ],
      run: async (ctx) => {
        const redis = required(ctx, 'redis');
        if (ctx.params.mode === 'rdb' && redis.service === undefined)
          throw new RunbookError(
            'RUNBOOK_CONFIG_INVALID',
            `an RDB restore stops and starts Redis, and environment "${ctx.environment}" has no vars.redis.service naming its service: add it, or restore the export into the running server with --mode logical`,
          );
        // The RDB is put in place from this machine: a Redis in a Kubernetes pod has its dump
        // file on a volume the runner does not see, and would start on its own old data.
        if (ctx.params.mode === 'rdb' && redis.service !== undefined && ctx.config.services[redis.service]?.type === 'kubernetes')
          throw new RunbookError(
            'RUNBOOK_CONFIG_INVALID',
            `Redis runs as Kubernetes service "${redis.service}": its dump file (${redis.dataDir ?? 'dir'}) is inside the pod's volume, which an RDB restore from here cannot reach. Restore the export into the running server with --mode logical`,
          );
        const current = await readKeyspace(ctx);
        if (current.up) ctx.log.info(`Redis now: ${describeKeyspace(current.keyspace)}`);
        else ctx.log.warn(`Redis does not answer: ${current.error}`);
        const set = await withBackups(ctx, ({ catalog }) => resolveRestoreSet(catalog, ctx.params.backup, ctx.params.mode));
        const recorded = recordedKeyspace(set.restore);
        const age = ageOf(set.restore.createdAt);
        ctx.log.info(
          `backup ${set.restore.id} (${set.restore.kind}) from ${set.restore.createdAt}, ${age} old: ${describeKeyspace(recorded)}` +
            (set.logical && set.logical.id !== set.restore.id ? `; keys will be checked against its export ${set.logical.id}` : ''),
        );
        if (Date.now() - new Date(set.restore.createdAt).getTime() > 24 * 3_600_000)
          ctx.log.warn(`the backup is older than the plan's RPO of 24 hours: everything written since ${set.restore.createdAt} is lost`);
        if (ctx.params.mode === 'logical' && !ctx.params.flush && current.total > 0)
          ctx.log.info(
            `Redis has ${current.total} keys and --flush is not given: existing keys of the backup are handled by policy ${policyOf(ctx.params)}`,
          );
        return {
          backupId: set.restore.id,
          kind: set.restore.kind,
          createdAt: set.restore.createdAt,
          age,
          logicalId: set.logical?.id ?? null,
          recorded,
          recordedKeys: totalKeys(recorded),
          serverUp: current.up,
          current: current.keyspace,
          currentKeys: current.total,
          currentError: current.error ?? null,
        };
      },
    });

    const check = step({
      id: 'check-backup',
      title: 'Check the backup can be restored before anything is touched',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '15m',
      plan: (ctx) =>
        ctx.params.mode === 'rdb'
          ? 'decrypt the RDB backup to its end without writing it anywhere: every chunk authenticated, header, end marker and CRC64'
          : `read the export to its end (every chunk authenticated) and count the keys that exist in Redis (policy ${policyOf(ctx.params)}${ctx.params.flush ? ', --flush' : ''})`,
      run: async (ctx) => {
        const found = ctx.output(assess);
        return withBackups(ctx, async ({ catalog }) => {
          // An RDB, or an export for a server that is down: decrypt it to its end, write nothing.
          if (found.kind === REDIS_RDB_KIND || !found.serverUp) {
            if (!found.serverUp) ctx.log.warn('Redis does not answer: the export is restored once it is started');
            const verified = await verifyRedisBackup({
              catalog,
              backup: found.backupId,
              keys: backupKeys(ctx),
              level: 2,
              record: false,
              signal: ctx.signal,
            });
            if (!verified.ok) throw verified.error ?? new Error(`backup ${found.backupId} failed its check: ${verified.detail}`);
            ctx.log.info(`backup ${found.backupId}: ${verified.detail}`);
            return { detail: verified.detail, existing: 0, plan: [] as string[] };
          }
          const rehearsal = await restoreRedis({
            url: redisTargetOf(ctx),
            catalog,
            backup: found.backupId,
            keys: backupKeys(ctx),
            policy: policyOf(ctx.params),
            flush: ctx.params.flush,
            dryRun: true,
            signal: ctx.signal,
            onEvent: redisEvents(ctx),
          });
          for (const line of rehearsal.plan) ctx.log.info(line);
          // Policy "fail" with keys present would refuse after the gate: say so before it.
          if (rehearsal.plan.some((line) => line.startsWith('would refuse')))
            throw new RunbookError(
              'RUNBOOK_STEP_FAILED',
              `${rehearsal.existing} key(s) of backup ${found.backupId} exist in Redis: choose --flush (empty it first, a snapshot is kept), --policy replace or --policy skip`,
            );
          return {
            detail: `export of ${fingerprintOf(rehearsal.backup, REDIS_LOGICAL_KIND).keys} keys authenticated`,
            existing: rehearsal.existing,
            plan: rehearsal.plan,
          };
        });
      },
    });

    const decide = step({
      id: 'decide',
      title: 'Decide to restore',
      phase: 'decision',
      gate: 'Restore Redis from the backup (the current data is kept as a snapshot)?',
      run: (ctx) => {
        const found = ctx.output(assess);
        ctx.output(check);
        return { backupId: found.backupId, reason: ctx.params.reason };
      },
    });

    const stop = step({
      id: 'stop-app',
      title: 'Stop the application (--stop-app)',
      phase: 'provisioning',
      destructive: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) =>
        ctx.params.stopApp
          ? appServicesDescribe(ctx, 'stop')
          : 'nothing: the application keeps running (--stop-app to stop it); what it writes to Redis during the restore is lost',
      run: async (ctx) => (ctx.params.stopApp ? stopApp(ctx) : { stopped: [] as string[] }),
    });

    const snapshot = step({
      id: 'snapshot-current',
      title: 'Keep what Redis holds now as a snapshot',
      phase: 'provisioning',
      idempotent: true,
      timeout: '30m',
      plan: (ctx) =>
        ctx.params.skipSnapshot
          ? 'skipped (--skip-snapshot): the current state of Redis is not kept'
          : `pull an RDB of Redis as it is now into ${backupStoreUrl(ctx)} as a manual backup labelled snapshot (never picked as "latest"); skipped when Redis is down or empty`,
      run: async (ctx) => {
        ctx.output(stop);
        if (ctx.params.skipSnapshot) return { snapshotId: null as string | null, keys: 0 };
        const reason = `before restoring Redis backup ${ctx.output(decide).backupId}: ${ctx.params.reason}`;
        const snap = await withBackups(ctx, ({ catalog }) => snapshotRedis(ctx, catalog, reason));
        return { snapshotId: snap?.id ?? null, keys: snap?.keys ?? 0 };
      },
    });

    const restore = step({
      id: 'restore',
      title: 'Restore the backup into Redis',
      phase: 'restoration',
      destructive: true,
      timeout: '45m',
      plan: (ctx) => {
        const redis = required(ctx, 'redis');
        const which = ctx.params.backup === 'latest' ? 'latest (resolved at the assess step)' : ctx.params.backup;
        if (ctx.params.mode === 'rdb') {
          const service = redis.service ?? '(vars.redis.service is not configured: the assess step fails)';
          const dataDir = redis.dataDir ?? "(Redis's CONFIG GET dir)";
          if (redis.service !== undefined && ctx.config.services[redis.service]?.type === 'kubernetes')
            return `nothing: the assess step refuses an RDB restore into Redis in Kubernetes (service ${redis.service}; its dump file is in the pod's volume): use --mode logical`;
          return [
            `decrypt and check RDB backup ${which} into a temp file in ${dataDir}`,
            `stop Redis: service ${service}${redis.service ? `: ${ctx.service(redis.service).describe('stop')}` : ''}`,
            `keep ${dataDir}/${redis.dbFilename} as ${redis.dbFilename}.drkit-before-<time> and put the backup in its place (it replaces every database: --flush is implied)`,
            `start Redis: ${redis.service ? ctx.service(redis.service).describe('start') : service}, and wait until it has loaded the data`,
            'if Redis does not come back on the backup, its previous file is put back and it is started again',
          ];
        }
        return [
          ...(redis.service ? [`if Redis does not answer, start it: ${ctx.service(redis.service).describe('start')}`] : []),
          ctx.params.flush
            ? `FLUSHALL ${redis.url} (every database) once the export authenticated, then RESTORE every key of export ${which} with its absolute expiry (keys the application writes meanwhile: policy ${policyOf(ctx.params)})`
            : `RESTORE every key of export ${which} into ${redis.url} with its absolute expiry; keys that exist: policy ${policyOf(ctx.params)}`,
        ];
      },
      run: async (ctx) => {
        const { backupId } = ctx.output(decide);
        const { snapshotId } = ctx.output(snapshot);
        const redis = required(ctx, 'redis');
        // Both restores read the running server first (its version, dir, existing keys): a
        // Redis that is down is started on whatever it has, then replaced.
        const now = await readKeyspace(ctx);
        if (!now.up) {
          if (redis.service === undefined)
            throw new RunbookError(
              'RUNBOOK_STEP_FAILED',
              `Redis does not answer (${now.error}) and no vars.redis.service can start it: start it, then resume`,
            );
          ctx.log.warn(`Redis does not answer (${now.error}): starting it first`);
          await ctx.service(redis.service).start({ signal: ctx.signal });
        }
        return withBackups(ctx, async ({ catalog }) => {
          if (ctx.params.mode === 'rdb') {
            const result = await restoreRedisRdb({
              url: redisTargetOf(ctx),
              catalog,
              backup: backupId,
              keys: backupKeys(ctx),
              server: rdbServerOf(ctx),
              signal: ctx.signal,
              onEvent: redisEvents(ctx),
            });
            ctx.log.info(`Redis restarted on RDB backup ${backupId}: ${describeKeyspace(result.keyspace ?? {})}`);
            if (result.previous) ctx.log.info(`its previous dump file is kept as ${result.previous}`);
            return {
              mode: 'rdb' as const,
              backupId,
              previous: result.previous ?? null,
              snapshotId,
              restored: totalKeys(result.keyspace ?? {}),
              expired: 0,
            };
          }
          const result = await restoreRedis({
            url: redisTargetOf(ctx),
            catalog,
            backup: backupId,
            keys: backupKeys(ctx),
            policy: policyOf(ctx.params),
            flush: ctx.params.flush,
            // One snapshot is enough: the package keeps its own only when this run could not.
            snapshot: snapshotId === null && !ctx.params.skipSnapshot,
            // The verify step compares every key, for both modes alike.
            verify: false,
            signal: ctx.signal,
            onEvent: redisEvents(ctx),
          });
          const counts = result.imported;
          ctx.log.info(
            `restored ${counts?.restored ?? 0} keys of export ${backupId}${result.flushed ? ' after FLUSHALL' : ''}` +
              (counts && counts.skipped > 0 ? `; ${counts.skipped} existing keys left alone` : '') +
              (counts && counts.expired > 0 ? `; ${counts.expired} had expired` : ''),
          );
          return {
            mode: 'logical' as const,
            backupId,
            previous: null,
            snapshotId: snapshotId ?? result.snapshot?.id ?? null,
            restored: counts?.restored ?? 0,
            expired: counts?.expired ?? 0,
          };
        });
      },
    });

    const verify = step({
      id: 'verify-restore',
      title: 'Verify DBSIZE per database and every key’s type and expiry against the backup',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '15m',
      run: async (ctx) => {
        const restored = ctx.output(restore);
        const found = ctx.output(assess);
        const result = await withBackups(ctx, async ({ catalog }) => {
          const set = await resolveRestoreSet(catalog, restored.backupId, ctx.params.mode);
          return checkRestoredRedis(ctx, catalog, {
            mode: ctx.params.mode,
            restored: set.restore,
            logical: set.logical,
            skipped: ctx.params.mode === 'logical' && policyOf(ctx.params) === 'skip',
          });
        });
        for (const note of result.notes) ctx.log.info(note);
        const sizes = Object.entries(result.databases)
          .map(
            ([db, d]) => `db${db} DBSIZE ${d.dbsize} (backup ${d.recorded}${d.expected !== d.recorded ? `, ${d.expected} unexpired` : ''})`,
          )
          .join(', ');
        if (!result.ok)
          throw new Error(
            `Redis differs from backup ${found.backupId}: ${result.failures.slice(0, 5).join('; ')}${result.failures.length > 5 ? `; and ${result.failures.length - 5} more` : ''}` +
              (restored.snapshotId ? `. The state before the restore is snapshot ${restored.snapshotId}` : ''),
          );
        ctx.log.info(
          `${sizes}; ${result.comparedWith ? `${result.matched} keys with their type and exact expiry, as in export ${result.comparedWith}` : 'keys not compared (no export)'}`,
        );
        return {
          databases: result.databases,
          matched: result.matched,
          expired: result.expired,
          extra: result.extra,
          digest: result.digest,
          comparedWith: result.comparedWith,
        };
      },
    });

    const start = step({
      id: 'start-app',
      title: 'Start the application again (if it was stopped)',
      phase: 'verification',
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => (ctx.params.stopApp ? appServicesDescribe(ctx, 'start') : 'nothing: the application was not stopped (--stop-app)'),
      run: async (ctx) => {
        const { stopped } = ctx.output(stop);
        if (stopped.length === 0) return { started: [] as string[], health: 'not stopped' };
        return startApp(ctx);
      },
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

    return [assess, check, decide, stop, snapshot, restore, verify, start, health];
  },
});

export default redisDataLoss;

if (isMain(import.meta.url)) await runbookCli(redisDataLoss);
