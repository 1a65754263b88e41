// Security Breach Response (second plan, Procedure 4): Contain — block all external access
// and trigger the emergency shutdown; Assess — audit and access logs; Eradicate — rotate every
// credential, redeploy a known-good version; Recover — restore from the pre-breach backup,
// validate data integrity, re-enable services gradually. The operator's own commands (the
// ingress block, the secret rotation, the redeploy, the log collection) are hooks of the
// config; the emergency shutdown is treasury-halt's kill switch; the restores are the other
// runbooks (database-corruption, redis-data-loss, accidental-file-deletion), run as child runs
// with backups chosen by the breach time: the newest of each kind captured entirely before the
// intruder got in. The halt outlives the restores (the pre-breach Redis has no halt in it; the
// pre-breach database none of its audit records) and stays engaged at the end: releasing it is
// a separate two-person decision.
//
//   tsx runbooks/security-breach.ts --env production --breach-time 2026-03-01T02:10:00Z --known-good v1.8.2 --plan
//   tsx runbooks/security-breach.ts --env production --breach-time 2026-03-01T02:10:00Z --known-good v1.8.2

import { join } from 'node:path';
import { listFiles } from '@drkit/file-archive';
import { compareFingerprints, fingerprintOf, type PgFingerprint, pgTarget, takeFingerprint, withClient } from '@drkit/postgres-backup';
import { defineRunbook, isMain, runbookCli, waitHealthy } from '@drkit/runbook';
import { engageHalt, haltStatus, migrateAudit, verifyHalted } from '@drkit/treasury-halt';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import accidentalFileDeletion from './accidental-file-deletion.ts';
import databaseCorruption from './database-corruption.ts';
import { readStatus } from './lib/app.ts';
import {
  type AuditRecord,
  auditRecordsSince,
  breachDate,
  type ChosenBackup,
  carryOverAudit,
  chosenOf,
  extrasOf,
  filesOf,
  holdHaltWhile,
  newestBefore,
  newestDamaged,
  putBackHalt,
  restoreKinds,
  saveHalt,
  setAside,
  writeEvidence,
} from './lib/breach.ts';
import { compareTree, filesRootOf, somePaths } from './lib/files.ts';
import {
  ageOf,
  backupKeys,
  backupStoreUrl,
  databaseName,
  databaseUrl,
  describeHook,
  PLATFORM_SECRETS,
  platformOf,
  redisUrl,
  required,
  runHook,
  withBackups,
} from './lib/platform.ts';
import { actorOf, describeHalt, haltPrefix, releaseInstructions, runDirOf, withTreasury, workerReports } from './lib/treasury.ts';
import redisDataLoss from './redis-data-loss.ts';

/** How long the trading workers have to acknowledge the halt before the run names them. */
const ACK_TIMEOUT_MS = 30_000;
/** Tables that legitimately differ from a pre-breach backup after the restore: the audit log carried over. */
const CARRIED_SCHEMAS = ['drkit_treasury.'];

const params = z.object({
  breachTime: z
    .string()
    .refine((v) => /^\d{4}-\d{2}-\d{2}T/.test(v) && !Number.isNaN(Date.parse(v)), 'an ISO 8601 time such as 2026-03-01T02:10:00Z')
    .refine((v) => Date.parse(v) <= Date.now(), 'a time in the past: when the intruder got in')
    .describe('when the intruder got in (ISO 8601): the restore uses the newest backups captured entirely before it'),
  knownGood: z.string().trim().min(1).describe('the known-good version to redeploy, passed to vars.hooks.redeploy as $DRKIT_KNOWN_GOOD'),
  skipRestore: z.boolean().default(false).describe('do not restore anything: the assessment showed the intruder touched no data'),
  reason: z.string().trim().min(1).default('security breach').describe('for the incident channel, the halt and the audit log'),
  actor: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe('who engages the halt, for the audit log (default: the operator running this, $DRKIT_OPERATOR or the login name)'),
});

type Params = z.output<typeof params>;

const breachEnv = (p: Params) => ({ DRKIT_BREACH_TIME: breachDate(p.breachTime).toISOString() });
const haltReason = (p: Params) => `${p.reason}: intruder in since ${breachDate(p.breachTime).toISOString()}`;
const skipped = { skipped: true as const };

const securityBreach = defineRunbook({
  id: 'security-breach',
  title: 'Security breach: contain, assess, eradicate, recover from the pre-breach backups',
  description:
    'Blocks ingress and halts trading, collects the evidence, rotates every secret and redeploys a known-good version, restores the newest backups taken before the breach (database, Redis, files), validates them, re-enables the services one by one and reopens ingress. Trading stays halted.',
  severity: 'sev1',
  category: 4,
  impact: 'All external access is blocked and trading is halted; data written since the last pre-breach backup is set aside',
  // The service plan's RTO for the full API: the run ends with the services back and ingress
  // open. Trading stays halted; its own RTO (4 hours) runs until two people release it.
  rto: '1h',
  params,
  // Procedure 4's four stages; containment first and fast, the restore the long part.
  phases: { contain: '5m', assess: '10m', eradicate: '15m', recover: '25m', verification: '5m' },
  secrets: PLATFORM_SECRETS,
  steps: (step) => {
    const block = step({
      id: 'block-ingress',
      title: 'Contain: block all external access',
      phase: 'contain',
      destructive: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => `${describeHook(ctx, 'blockIngress')} (with $DRKIT_BREACH_TIME=${breachDate(ctx.params.breachTime).toISOString()})`,
      run: async (ctx) => {
        const result = await runHook(ctx, 'blockIngress', breachEnv(ctx.params));
        if (!result.ran)
          ctx.log.warn('external access is NOT blocked by this run: block it by hand now (firewall, load balancer, ingress)');
        return { ran: result.ran };
      },
    });

    const halt = step({
      id: 'engage-halt',
      title: 'Contain: trigger the emergency shutdown (trading halt)',
      phase: 'contain',
      destructive: true,
      idempotent: true,
      timeout: '3m',
      plan: (ctx) => [
        `engage the trading halt in ${describeHalt(ctx)} with reason "${haltReason(ctx.params)}": every trading worker refuses orders`,
        `wait up to ${ACK_TIMEOUT_MS / 1000}s for every registered worker to acknowledge it (the ones that do not are named)`,
      ],
      run: async (ctx) =>
        withTreasury(ctx, async (open) => {
          const actor = actorOf(ctx.params.actor);
          await migrateAudit(open.db);
          const engaged = await engageHalt({ redis: open.redis, db: open.db, prefix: open.prefix, reason: haltReason(ctx.params), actor });
          ctx.log.info(
            `trading ${engaged.created ? 'HALTED' : 'was already halted'}: epoch ${engaged.epoch} (audit record ${engaged.auditId})`,
          );
          const verified = await verifyHalted({ redis: open.redis, db: open.db, prefix: open.prefix, actor, timeoutMs: ACK_TIMEOUT_MS });
          // Containment goes on: the halt is in force and every guard fails closed; the laggards are for people to chase.
          if (!verified.halted)
            ctx.log.error(
              `NOT every trading worker acknowledged the halt: ${verified.pending.map((p) => `${p.id} (${p.reason ?? '?'})`).join('; ')}. Stop them by other means now.`,
            );
          else ctx.log.info(`${verified.workers.length} trading worker(s) acknowledged epoch ${verified.epoch}`);
          return {
            epoch: engaged.epoch,
            created: engaged.created,
            actor,
            acknowledged: verified.halted,
            workers: workerReports(verified.workers),
          };
        }),
    });

    const logs = step({
      id: 'collect-logs',
      title: 'Assess: collect the audit and access logs since the breach',
      phase: 'assess',
      idempotent: true,
      timeout: '10m',
      plan: (ctx) => [
        `read the treasury halt audit log since ${breachDate(ctx.params.breachTime).toISOString()} from ${required(ctx, 'postgres').url}`,
        `${describeHook(ctx, 'collectLogs')} (with $DRKIT_SINCE=${breachDate(ctx.params.breachTime).toISOString()})`,
        `write both to ${join(runDirOf(ctx), 'breach-evidence.md')}, beside the run's report`,
      ],
      run: async (ctx) => {
        ctx.output(halt);
        const since = breachDate(ctx.params.breachTime);
        const audit = await withTreasury(ctx, (open) => auditRecordsSince(open.db, since));
        const hook = await runHook(ctx, 'collectLogs', { DRKIT_SINCE: since.toISOString() });
        const path = join(runDirOf(ctx), 'breach-evidence.md');
        await writeEvidence(path, {
          runId: ctx.runId,
          environment: ctx.environment,
          breachTime: since.toISOString(),
          collectedAt: new Date().toISOString(),
          audit,
          hook: { ran: hook.ran, command: platformOf(ctx).hooks.collectLogs ?? null, output: hook.stdout },
        });
        ctx.log.info(
          `${audit.length} halt audit record(s) since the breach; ${hook.ran ? `${hook.stdout.length} bytes of logs` : 'no logs collected (no hook)'}; evidence in ${path}`,
        );
        // The journal keeps the evidence too (bounded: the file has all of it).
        return { path, audit: audit.slice(-200), logs: hook.stdout.slice(-16_000), hookRan: hook.ran };
      },
    });

    const assess = step({
      id: 'assess-damage',
      title: 'Assess: compare the database with the newest pre-breach backup',
      phase: 'assess',
      readOnly: true,
      idempotent: true,
      timeout: '10m',
      plan: (ctx) =>
        `find the newest postgres backup captured before ${breachDate(ctx.params.breachTime).toISOString()} in ${backupStoreUrl(ctx)} and compare the row counts of ${databaseName(ctx)} with it`,
      run: async (ctx) => {
        const before = breachDate(ctx.params.breachTime);
        const found = await withBackups(ctx, ({ catalog, store }) => newestBefore(catalog, store, 'postgres', before));
        if (!found.chosen) {
          ctx.log.warn(
            `no postgres backup was captured before ${before.toISOString()}: what the intruder changed cannot be measured against one`,
          );
          return { backupId: null as string | null, changed: [] as string[] };
        }
        const recorded = fingerprintOf(found.chosen);
        const current: PgFingerprint = await withClient(pgTarget(databaseUrl(ctx)), (client) =>
          takeFingerprint(client, { signal: ctx.signal }),
        );
        const changed = compareFingerprints(
          { tables: recorded.tables, sequences: {}, objects: recorded.objects },
          { ...current, sequences: {} },
        )
          .filter((d) => !CARRIED_SCHEMAS.some((s) => d.name.startsWith(s)))
          .map((d) => `${d.kind} ${d.name}: ${d.expected} → ${d.actual}`);
        ctx.log.info(`pre-breach backup ${found.chosen.id} (${found.chosen.createdAt}, ${ageOf(found.chosen.createdAt)} old)`);
        if (changed.length === 0) ctx.log.info('the database has the row and object counts of the pre-breach backup');
        else
          ctx.log.warn(
            `changed since the pre-breach backup: ${changed.slice(0, 20).join('; ')}${changed.length > 20 ? ` and ${changed.length - 20} more` : ''}`,
          );
        if (ctx.params.skipRestore && changed.length > 0)
          ctx.log.warn('--skip-restore is given although the database differs from the pre-breach backup: nothing will be restored');
        return { backupId: found.chosen.id, changed };
      },
    });

    const rotate = step({
      id: 'rotate-secrets',
      title: 'Eradicate: rotate every credential',
      phase: 'eradicate',
      destructive: true,
      timeout: '10m',
      plan: (ctx) => describeHook(ctx, 'rotateSecrets'),
      run: async (ctx) => {
        ctx.output(logs);
        const result = await runHook(ctx, 'rotateSecrets', breachEnv(ctx.params));
        if (!result.ran)
          ctx.log.warn(
            'NO credential was rotated by this run: rotate API keys, database passwords, JWT secrets and cloud keys by hand now',
          );
        return { ran: result.ran };
      },
    });

    const redeploy = step({
      id: 'redeploy',
      title: 'Eradicate: redeploy the known-good version',
      phase: 'eradicate',
      destructive: true,
      timeout: '15m',
      plan: (ctx) => `${describeHook(ctx, 'redeploy')} (with $DRKIT_KNOWN_GOOD=${ctx.params.knownGood})`,
      run: async (ctx) => {
        ctx.output(rotate);
        const result = await runHook(ctx, 'redeploy', { ...breachEnv(ctx.params), DRKIT_KNOWN_GOOD: ctx.params.knownGood });
        if (!result.ran) ctx.log.warn(`version ${ctx.params.knownGood} was NOT redeployed by this run: redeploy it by hand now`);
        return { ran: result.ran, version: ctx.params.knownGood };
      },
    });

    const choose = step({
      id: 'choose-backups',
      title: 'Recover: choose the newest backups captured before the breach',
      phase: 'recover',
      readOnly: true,
      idempotent: true,
      timeout: '10m',
      plan: (ctx) =>
        ctx.params.skipRestore
          ? 'nothing (--skip-restore)'
          : `in ${backupStoreUrl(ctx)}, the newest ${restoreKinds(ctx)
              .map((k) => k.kind)
              .join(
                ', ',
              )} backup created and completed before ${breachDate(ctx.params.breachTime).toISOString()} (snapshots and failed ones passed over); refuse if a kind has none`,
      run: async (ctx) => {
        if (ctx.params.skipRestore) return { skipped: true, backups: {} as Record<string, ChosenBackup> };
        const before = breachDate(ctx.params.breachTime);
        const root = platformOf(ctx).files ? filesRootOf(ctx) : '';
        const found = await withBackups(ctx, async ({ catalog, store }) => {
          const out: Record<string, ChosenBackup> = {};
          const missing: string[] = [];
          for (const { kind, what } of restoreKinds(ctx)) {
            const result = await newestBefore(catalog, store, kind, before, kind === 'files' ? filesOf(root) : undefined);
            for (const s of result.skipped.slice(0, 5)) ctx.log.info(`${kind} backup ${s.id} passed over: ${s.why}`);
            if (!result.chosen) {
              missing.push(
                `${what} (${kind}): ${result.oldest ? `the oldest backup, ${result.oldest.id}, was created ${result.oldest.createdAt}` : 'there is no backup at all'}`,
              );
              continue;
            }
            out[kind] = chosenOf(result.chosen);
            ctx.log.info(
              `${kind}: backup ${result.chosen.id}, created ${result.chosen.createdAt} (${ageOf(result.chosen.createdAt)} old), before the breach`,
            );
          }
          if (missing.length > 0)
            throw new Error(
              `no backup captured before the breach time ${before.toISOString()} for ${missing.join('; ')}. Nothing was restored. ` +
                'Restore from an older store or an offline copy by hand, or run again with --skip-restore if the assessment shows the intruder touched no data.',
            );
          return out;
        });
        return { skipped: false, backups: found };
      },
    });

    const restoreRedis = step({
      id: 'restore-redis',
      title: 'Recover: restore Redis from its pre-breach backup, keeping the halt',
      phase: 'recover',
      destructive: true,
      timeout: '45m',
      plan: (ctx) => {
        if (ctx.params.skipRestore || !platformOf(ctx).redis) return 'nothing (--skip-restore, or no vars.redis)';
        const kind = restoreKinds(ctx).find((k) => k.kind.startsWith('redis'))?.kind;
        return [
          `save the halt's keys (${haltPrefix(ctx)}state, epoch, workers) of ${required(ctx, 'redis').url}`,
          `run runbook redis-data-loss as a child run: --backup <the pre-breach ${kind} backup, chosen at choose-backups> --mode ${kind === 'redis-rdb' ? 'rdb' : 'logical --flush'} (it keeps the current data as a snapshot first)`,
          "meanwhile, put the halt's keys back the moment Redis answers on the pre-breach dataset (which has no halt in it); afterwards, whatever the child run's outcome, put them back once more and engage the halt again (audited). Its epoch never goes back",
        ];
      },
      run: async (ctx) => {
        const chosen = ctx.output(choose);
        if (chosen.skipped) return skipped;
        const backup = chosen.backups['redis-rdb'] ?? chosen.backups['redis-logical'];
        if (backup === undefined) return skipped;
        const engaged = ctx.output(halt);
        const saved = await withTreasury(ctx, (open) => saveHalt(open.redis, open.prefix));
        let child: { runId: string } | undefined;
        let failure: unknown;
        try {
          const held = await holdHaltWhile(
            redisUrl(ctx),
            haltPrefix(ctx),
            saved,
            () =>
              ctx.runRunbook(redisDataLoss, {
                backup: backup.id,
                mode: backup.kind === 'redis-rdb' ? 'rdb' : 'logical',
                flush: backup.kind !== 'redis-rdb',
                reason: `${ctx.params.reason}: restore of the pre-breach backup (run ${ctx.runId})`,
              }),
            (message) => ctx.log.warn(message),
          );
          child = held.result;
        } catch (error) {
          failure = error;
        }
        // Whatever happened, the halt is put back once more and engaged (audited), on a new
        // connection: the restore restarted Redis under the old one.
        const again = await withTreasury(ctx, async (open) => {
          await waitRedis(open.redis, ctx.signal);
          await putBackHalt(open.redis, open.prefix, saved);
          return engageHalt({
            redis: open.redis,
            db: open.db,
            prefix: open.prefix,
            actor: engaged.actor,
            reason: `re-asserted after restoring Redis from backup ${backup.id}: ${haltReason(ctx.params)}`,
          });
        });
        ctx.log.info(`the halt is in force after the Redis restore: epoch ${again.epoch}${again.created ? ' (engaged again)' : ''}`);
        if (failure !== undefined) throw failure;
        return { skipped: false as const, backupId: backup.id, childRun: child?.runId ?? null, epoch: again.epoch };
      },
    });

    const restorePg = step({
      id: 'restore-postgres',
      title: 'Recover: restore the database from its pre-breach backup, keeping the audit log',
      phase: 'recover',
      destructive: true,
      timeout: '60m',
      plan: (ctx) => {
        if (ctx.params.skipRestore || !platformOf(ctx).postgres) return 'nothing (--skip-restore, or no vars.postgres)';
        return [
          'run runbook database-corruption as a child run: --backup <the pre-breach postgres backup, chosen at choose-backups> (it stops the application, dumps the current state, restores beside the database, verifies, swaps, keeps the breached database as <db>_damaged_<time>, restarts the application)',
          `append to the restored ${databaseName(ctx)}'s halt audit log the records written since the backup (they keep their ids and times)`,
        ];
      },
      run: async (ctx) => {
        const chosen = ctx.output(choose);
        ctx.output(restoreRedis);
        if (chosen.skipped) return skipped;
        const backup = chosen.backups.postgres;
        if (backup === undefined) return skipped;
        // Everything the restore would take away from the audit log, read before it does (and
        // on connections closed before it: the swap terminates the database's sessions).
        const since = new Date(Date.parse(backup.createdAt) - 24 * 3_600_000);
        const records: AuditRecord[] = await withTreasury(ctx, (open) => auditRecordsSince(open.db, since));
        const child = await ctx.runRunbook(databaseCorruption, {
          backup: backup.id,
          reason: `${ctx.params.reason}: restore of the pre-breach backup (run ${ctx.runId})`,
        });
        const { carried, damaged } = await withTreasury(ctx, async (open) => ({
          carried: await carryOverAudit(open.db, records, backup.id),
          damaged: await newestDamaged(open.db, databaseName(ctx)),
        }));
        ctx.log.info(
          `database restored from pre-breach backup ${backup.id}; ${carried.carried} halt audit record(s) carried over` +
            (damaged
              ? `; the breached database is kept as ${damaged}: rows written between the backup and the breach are there to be reconciled (trades have an RPO of 0)`
              : ''),
        );
        return { skipped: false as const, backupId: backup.id, childRun: child.runId, carried: carried.carried, damaged };
      },
    });

    const restoreFiles = step({
      id: 'restore-files',
      title: 'Recover: restore the user files from their pre-breach backup and set aside what the intruder added',
      phase: 'recover',
      destructive: true,
      timeout: '60m',
      plan: (ctx) => {
        if (ctx.params.skipRestore || !platformOf(ctx).files) return 'nothing (--skip-restore, or no vars.files)';
        return [
          `run runbook accidental-file-deletion as a child run: --path '**' --backup <the pre-breach files backup, chosen at choose-backups> --overwrite --target-dir ${join(runDirOf(ctx), 'files-pre-breach')} (the tree restored and verified there, then missing files put back and changed ones replaced, their content kept aside)`,
          `move the files under ${filesRootOf(ctx)} that the backup does not have to ${filesRootOf(ctx)}.drkit-breach-<run id> (kept as evidence)`,
        ];
      },
      run: async (ctx) => {
        const chosen = ctx.output(choose);
        ctx.output(restorePg);
        if (chosen.skipped) return skipped;
        const backup = chosen.backups.files;
        if (backup === undefined) return skipped;
        const child = await ctx.runRunbook(accidentalFileDeletion, {
          path: '**',
          backup: backup.id,
          overwrite: true,
          // The verified copy of the pre-breach tree stays with this run, beside the evidence.
          targetDir: join(runDirOf(ctx), 'files-pre-breach'),
          reason: `${ctx.params.reason}: restore of the pre-breach backup (run ${ctx.runId})`,
        });
        const root = filesRootOf(ctx);
        const entries = await withBackups(
          ctx,
          async ({ catalog }) => (await listFiles({ catalog, keys: backupKeys(ctx), backup: backup.id, signal: ctx.signal })).entries,
        );
        const extras = await extrasOf(root, entries);
        const aside = `${root}.drkit-breach-${ctx.runId}`;
        await setAside(root, extras, aside);
        if (extras.length > 0)
          ctx.log.warn(`${extras.length} file(s) the pre-breach backup does not have were moved to ${aside}: ${somePaths(extras, 10)}`);
        else ctx.log.info('no file was added to the tree since the pre-breach backup');
        return {
          skipped: false as const,
          backupId: backup.id,
          childRun: child.runId,
          setAside: extras,
          aside: extras.length > 0 ? aside : null,
        };
      },
    });

    const validate = step({
      id: 'validate-integrity',
      title: 'Recover: validate data integrity against the pre-breach backups',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '15m',
      plan: (ctx) => [
        `compare the row counts of ${databaseName(ctx)} with the pre-breach backup's fingerprint (the carried-over audit log excepted)`,
        ...(platformOf(ctx).files
          ? [
              `compare every file under ${filesRootOf(ctx)} with the pre-breach backup's index (SHA-256), and look for files it does not have`,
            ]
          : []),
        `check the halt is still engaged in ${describeHalt(ctx)}`,
      ],
      run: async (ctx) => {
        const chosen = ctx.output(choose);
        ctx.output(restoreFiles);
        const problems: string[] = [];
        const notes: string[] = [];
        if (!chosen.skipped) {
          await withBackups(ctx, async ({ catalog }) => {
            const pgBackup = chosen.backups.postgres;
            if (pgBackup !== undefined) {
              const recorded = fingerprintOf(await catalog.get(pgBackup.id, 'postgres'));
              const current = await withClient(pgTarget(databaseUrl(ctx)), (client) => takeFingerprint(client, { signal: ctx.signal }));
              for (const [table, rows] of Object.entries(recorded.tables)) {
                if (CARRIED_SCHEMAS.some((s) => table.startsWith(s))) continue;
                const now = current.tables[table];
                if (now === undefined) problems.push(`table ${table} is missing`);
                else if (now < rows) problems.push(`table ${table} has ${now} rows, the pre-breach backup ${rows}`);
                else if (now > rows)
                  notes.push(`table ${table} has ${now - rows} row(s) more than the pre-breach backup: written since the restore`);
              }
              const extra = Object.keys(current.tables).filter(
                (t) => recorded.tables[t] === undefined && !CARRIED_SCHEMAS.some((s) => t.startsWith(s)),
              );
              if (extra.length > 0) problems.push(`table(s) the pre-breach backup does not have: ${extra.join(', ')}`);
              if (problems.length === 0)
                ctx.log.info(
                  `${Object.keys(recorded.tables).length} tables of ${databaseName(ctx)} match pre-breach backup ${pgBackup.id}`,
                );
            }
            const filesBackup = chosen.backups.files;
            if (filesBackup !== undefined) {
              const root = filesRootOf(ctx);
              const { entries } = await listFiles({ catalog, keys: backupKeys(ctx), backup: filesBackup.id, signal: ctx.signal });
              const tree = await compareTree(root, entries, ctx.signal);
              const extras = await extrasOf(root, entries);
              if (tree.missing.length > 0) problems.push(`${tree.missing.length} file(s) missing: ${somePaths(tree.missing)}`);
              if (tree.different.length + tree.otherType.length > 0)
                problems.push(
                  `${tree.different.length + tree.otherType.length} file(s) differ from the backup: ${somePaths([...tree.different, ...tree.otherType])}`,
                );
              if (extras.length > 0) problems.push(`${extras.length} file(s) the backup does not have: ${somePaths(extras)}`);
              if (problems.length === 0)
                ctx.log.info(`all ${tree.identical.length} files under ${root} match pre-breach backup ${filesBackup.id} (SHA-256)`);
            }
          });
        }
        const engaged = ctx.output(halt);
        const state = await withTreasury(ctx, (open) => haltStatus({ redis: open.redis, prefix: open.prefix }));
        if (!state.halted || state.epoch < engaged.epoch)
          problems.push(
            `the trading halt is NOT engaged (epoch ${state.epoch}, halted ${state.halted}): engage it again now (drkit halt engage)`,
          );
        for (const n of notes) ctx.log.info(n);
        if (problems.length > 0) throw new Error(`integrity validation failed: ${problems.join('; ')}`);
        return { ok: true, notes, haltEpoch: state.epoch };
      },
    });

    const reenable = step({
      id: 'reenable-services',
      title: 'Recover: re-enable the services one by one, with a health check after each',
      phase: 'verification',
      idempotent: true,
      timeout: '15m',
      plan: (ctx) => {
        const { services, health } = required(ctx, 'app');
        return [
          ...services.flatMap((name) => [
            `${name}: start it if it is not running: ${ctx.service(name).describe('start')}`,
            `${name}: then ${ctx.config.health[name] ? `wait for health check ${name}: ${ctx.health(name).describe()}` : 'check that it runs'}, before the next service`,
          ]),
          `then wait for the application's health check ${health}: ${ctx.health(health).describe()}`,
        ];
      },
      run: async (ctx) => {
        ctx.output(validate);
        const { services, health } = required(ctx, 'app');
        const enabled: { name: string; detail: string }[] = [];
        // In order, each one healthy before the next: a service that fails is found before it carries the others down.
        for (const name of services) {
          const service = ctx.service(name);
          await service.start({ signal: ctx.signal });
          const status = await service.status({ signal: ctx.signal });
          if (status.state === 'stopped') throw new Error(`${name} does not run after its start: ${status.detail}`);
          const detail = ctx.config.health[name]
            ? (await waitHealthy(ctx.health(name), { timeoutMs: 120_000, signal: ctx.signal, log: ctx.log, clock: ctx.clock })).detail
            : `${status.state}: ${status.detail}`;
          ctx.log.info(`${name} is enabled: ${detail}`);
          enabled.push({ name, detail });
        }
        const result = await waitHealthy(ctx.health(health), { timeoutMs: 120_000, signal: ctx.signal, log: ctx.log, clock: ctx.clock });
        const status = await readStatus(ctx);
        if (status !== null) ctx.log.info(`status: ${JSON.stringify(status)}`);
        return { enabled, health: result.detail };
      },
    });

    const unblock = step({
      id: 'unblock-ingress',
      title: 'Recover: reopen external access',
      phase: 'verification',
      gate: 'The services are back on the pre-breach data and secrets are rotated. Reopen external access (trading stays halted)?',
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => describeHook(ctx, 'unblockIngress'),
      run: async (ctx) => {
        ctx.output(reenable);
        const result = await runHook(ctx, 'unblockIngress', breachEnv(ctx.params));
        if (!result.ran)
          ctx.log.warn('external access was not reopened by this run: lift the block by hand once the services are verified');
        return { ran: result.ran };
      },
    });

    const keep = step({
      id: 'keep-halt',
      title: 'Keep the trading halt engaged (release is a separate two-person decision)',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '3m',
      plan: (ctx) =>
        `verify every trading worker acknowledges the halt in ${describeHalt(ctx)}; it is NOT released: that needs two people (drkit halt release)`,
      run: async (ctx) => {
        const engaged = ctx.output(halt);
        ctx.output(unblock);
        return withTreasury(ctx, async (open) => {
          const result = await verifyHalted({
            redis: open.redis,
            db: open.db,
            prefix: open.prefix,
            actor: engaged.actor,
            timeoutMs: ACK_TIMEOUT_MS,
          });
          if (!result.halted) {
            const state = await haltStatus({ redis: open.redis, prefix: open.prefix });
            throw new Error(
              state.halted
                ? `the halt (epoch ${result.epoch}) is not acknowledged by ${result.pending.map((p) => `${p.id} (${p.reason ?? '?'})`).join('; ')}: stop those workers by other means; the halt stays engaged`
                : `the trading halt is NOT engaged (epoch ${state.epoch}): engage it again now (drkit halt engage)`,
            );
          }
          ctx.log.info(releaseInstructions(ctx, result.epoch));
          return { epoch: result.epoch, workers: workerReports(result.workers) };
        });
      },
    });

    return [block, halt, logs, assess, rotate, redeploy, choose, restoreRedis, restorePg, restoreFiles, validate, reenable, unblock, keep];
  },
});

/** Waits until Redis answers again (a restore restarts it), for at most a minute. */
async function waitRedis(redis: Redis, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await redis.ping()) === 'PONG') return;
    } catch (error) {
      if (Date.now() > deadline)
        throw new Error(`Redis does not answer after the restore: ${error instanceof Error ? error.message : String(error)}`);
    }
    signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export default securityBreach;

if (isMain(import.meta.url)) await runbookCli(securityBreach);
