// Treasury Emergency (second plan, Procedure 3): 3.1 Emergency Shutdown — trigger the
// emergency shutdown with a reason, verify trading halted, secure the wallet keys; 3.2 Wallet
// Recovery — verify wallet integrity, audit the last 100 on-chain transactions, generate a
// recovery report. The shutdown is treasury-halt's kill switch: a fenced halt in the app's
// Redis that every trading worker's guard obeys, audited in PostgreSQL. Unlike "read the
// treasury bot's logs", "trading halted" here means every registered worker has acknowledged
// the halt's epoch with no order in flight; a worker that has not is named and the run fails
// with the halt still engaged (fail safe). The run never releases the halt: that is a
// separate two-person decision (`drkit halt release --actor A --approver B`).
//
//   tsx runbooks/treasury-emergency.ts --env production --reason "hot wallet key leaked" --plan
//   tsx runbooks/treasury-emergency.ts --env production --reason "hot wallet key leaked"

import { join } from 'node:path';
import { fingerprintOf } from '@drkit/postgres-backup';
import { defineRunbook, isMain, parseDuration, runbookCli } from '@drkit/runbook';
import {
  AUDIT_TABLE,
  engageHalt,
  haltStatus,
  migrateAudit,
  type Queryable,
  recordAudit,
  recoveryReportJson,
  verifyHalted,
} from '@drkit/treasury-halt';
import { z } from 'zod';
import { describeHook, PLATFORM_SECRETS, platformOf, required, runHook, withBackups } from './lib/platform.ts';
import {
  actorOf,
  auditJson,
  auditTableExists,
  checkDecimal,
  describeHalt,
  haltJson,
  haltPrefix,
  integrityJson,
  readHalt,
  recoveryReportOf,
  releaseInstructions,
  renderTreasuryReport,
  runDirOf,
  walletOf,
  withTreasury,
  workerReports,
  writeTreasuryReport,
} from './lib/treasury.ts';

/** Longest acknowledgement wait: the verify step's own timeout must stay above it. */
const MAX_VERIFY_MS = 4 * 60_000;

const params = z.object({
  reason: z.string().trim().min(1).describe('why trading is halted: recorded in the halt state, the audit log and the report'),
  actor: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe('who engages the halt, for the audit log (default: the operator running this, $DRKIT_OPERATOR or the login name)'),
  scope: z.string().trim().min(1).default('all').describe('what is halted: "all", or e.g. "exchange:binance"'),
  verifyTimeout: z
    .string()
    .default('30s')
    .refine((v) => {
      try {
        const ms = parseDuration(v);
        return ms > 0 && ms <= MAX_VERIFY_MS;
      } catch {
        return false;
      }
    }, 'a duration from 1s to 4m, e.g. "30s"')
    .describe('how long every registered trading worker has to acknowledge the halt'),
  last: z.number().int().min(1).max(10_000).default(100).describe('how many of the newest transactions to audit (the plan: 100)'),
  walletSource: z
    .enum(['trades', 'ledger'])
    .default('trades')
    .describe(
      'where the wallet data comes from: "trades" (the application\'s trades table, see --trades-table) or "ledger" (treasury-halt\'s ledger schema, see --ledger-schema)',
    ),
  tradesTable: z
    .string()
    .default('trades')
    .refine(
      (t) => /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/.test(t),
      'a table name: lower-case letters, digits and _ (optionally schema.table)',
    )
    .describe('the trades table (wallet source "trades")'),
  accountsTable: z.string().default('users').describe('the table the trades\' user_id refers to (wallet source "trades")'),
  ledgerSchema: z.string().default('drkit_treasury_demo').describe('the ledger schema (wallet source "ledger")'),
  largeAmount: z
    .string()
    .optional()
    .refine((v) => v === undefined || /^(?:0|[1-9]\d*)(?:\.\d+)?$/.test(v), 'a positive decimal such as "50000"')
    .describe("flag transactions of at least this amount (a trade's quantity × price)"),
  report: z
    .string()
    .min(1)
    .optional()
    .describe("where the recovery report goes, Markdown (its JSON form beside it); default wallet-recovery.md in the run's directory"),
});

type Params = z.output<typeof params>;

function walletSourceText(p: Params): string {
  return p.walletSource === 'ledger'
    ? `treasury-halt's ledger (schema ${p.ledgerSchema}: wallets, ledger)`
    : `the trades table ${p.tradesTable} (accounts in ${p.accountsTable})`;
}

const treasuryEmergency = defineRunbook({
  id: 'treasury-emergency',
  title: 'Treasury emergency: halt trading, secure the keys, verify the wallets',
  description:
    'Engages the trading kill switch with a reason, verifies that every trading worker acknowledged it, secures the wallet keys, verifies wallet integrity, audits the latest transactions and writes the recovery report. The halt stays engaged.',
  severity: 'sev1',
  // A treasury emergency is a threat to funds (a leaked key, a drain): its steps — secure the
  // keys, audit the transactions — are a security breach's containment, and the plan's
  // Category 4 response (immediate, critical) is the one it needs.
  category: 4,
  impact: 'Trading is halted: every order is refused until two people release the halt',
  // The second plan's RTO table: Treasury Operations, 4 hours.
  rto: '4h',
  params,
  // 3.1 must be fast (every minute of trading is exposure); 3.2 is the long part.
  phases: { detection: '15m', shutdown: '15m', 'wallet-recovery': '3h', report: '30m' },
  secrets: PLATFORM_SECRETS,
  steps: (step) => {
    const status = step({
      id: 'status',
      title: 'Read the halt state and the registered trading workers',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '2m',
      plan: (ctx) => `read the halt state and the trading workers' heartbeats from ${describeHalt(ctx)}`,
      run: async (ctx) =>
        withTreasury(ctx, async (open) => {
          const { state, workers } = await readHalt(open);
          const audited = await auditTableExists(open.db);
          ctx.log.info(
            state.halted
              ? `trading is ALREADY halted (epoch ${state.epoch}, by ${state.actor ?? '?'}: ${state.reason ?? '?'}); this run joins that halt`
              : `trading is allowed (epoch ${state.epoch}); ${workers.length} trading worker(s) registered: ${workers.map((w) => w.id).join(', ') || 'none'}`,
          );
          if (!audited) ctx.log.info('the halt audit log does not exist yet: the shutdown creates it');
          return { state: haltJson(state), workers, auditTable: audited };
        }),
    });

    const engage = step({
      id: 'engage-halt',
      title: 'Trigger the emergency shutdown: engage the trading halt',
      phase: 'shutdown',
      destructive: true,
      // Engaging twice keeps the one halt and its epoch: safe to run again on resume.
      idempotent: true,
      timeout: '2m',
      plan: (ctx) => [
        `engage the halt in Redis ${required(ctx, 'redis').url} (keys ${haltPrefix(ctx)}*) with reason "${ctx.params.reason}", actor ${ctx.params.actor ?? '<the operator>'}, scope ${ctx.params.scope}: every trading worker refuses orders from then on`,
        `record it in the audit log ${AUDIT_TABLE} of ${required(ctx, 'postgres').url} (created if missing)`,
      ],
      run: async (ctx) =>
        withTreasury(ctx, async (open) => {
          const actor = actorOf(ctx.params.actor);
          await migrateAudit(open.db);
          const result = await engageHalt({
            redis: open.redis,
            db: open.db,
            prefix: open.prefix,
            reason: ctx.params.reason,
            actor,
            scope: ctx.params.scope,
          });
          ctx.log.info(
            result.created
              ? `trading HALTED: epoch ${result.epoch}, reason "${ctx.params.reason}", by ${actor} (audit record ${result.auditId})`
              : `trading was already halted (epoch ${result.epoch}): this request is recorded (audit record ${result.auditId})`,
          );
          return { ...result, actor };
        }),
    });

    const verify = step({
      id: 'verify-halted',
      title: 'Verify trading halted: every registered worker acknowledged the halt',
      phase: 'shutdown',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) =>
        `wait up to ${ctx.params.verifyTimeout} until every trading worker registered under ${haltPrefix(ctx)}workers has acknowledged the halt's epoch with no order in flight`,
      run: async (ctx) => {
        const engaged = ctx.output(engage);
        return withTreasury(ctx, async (open) => {
          const result = await verifyHalted({
            redis: open.redis,
            db: open.db,
            prefix: open.prefix,
            actor: engaged.actor,
            timeoutMs: parseDuration(ctx.params.verifyTimeout),
          });
          const workers = workerReports(result.workers);
          if (!result.halted) {
            const state = await haltStatus({ redis: open.redis, prefix: open.prefix });
            const laggards = result.pending.map((p) => `${p.id} (${p.reason ?? 'not acknowledged'})`).join('; ');
            throw new Error(
              state.halted
                ? `trading is NOT verifiably halted: the halt (epoch ${result.epoch}) is not acknowledged by ${laggards} after ${ctx.params.verifyTimeout}. ` +
                    'The halt STAYS ENGAGED (fail safe): stop those workers by other means (kill the process, revoke its exchange keys), then resume this run (--resume latest). ' +
                    `A worker that is gone for good stays registered until removed: redis-cli SREM ${open.prefix}workers <id>, once its process is known dead. ` +
                    'This run stopped before securing the wallet keys: secure them now if the emergency calls for it.'
                : `the halt is not engaged any more (epoch ${state.epoch}, ${state.actor ?? '?'}: ${state.reason ?? '?'}): someone released it during the emergency. Engage it again (resume this run) and find out who.`,
            );
          }
          ctx.log.info(
            workers.length === 0
              ? `the halt (epoch ${result.epoch}) is in force; no trading worker is registered to acknowledge it`
              : `all ${workers.length} trading worker(s) acknowledged epoch ${result.epoch} in ${result.elapsedMs} ms: ${workers.map((w) => w.id).join(', ')}`,
          );
          return { epoch: result.epoch, workers, elapsedMs: result.elapsedMs };
        });
      },
    });

    const keys = step({
      id: 'secure-keys',
      title: 'Secure the wallet keys',
      phase: 'shutdown',
      destructive: true,
      timeout: '10m',
      plan: (ctx) => `${describeHook(ctx, 'secureKeys')} (with $DRKIT_HALT_EPOCH and $DRKIT_REASON)`,
      run: async (ctx) => {
        const { epoch } = ctx.output(verify);
        const hook = platformOf(ctx).hooks.secureKeys ?? null;
        const result = await runHook(ctx, 'secureKeys', { DRKIT_HALT_EPOCH: String(epoch), DRKIT_REASON: ctx.params.reason });
        if (!result.ran)
          ctx.log.warn(
            'securing the wallet keys is MANUAL here: move them to cold storage now, and say who did it in the incident channel',
          );
        else ctx.log.info('the secureKeys hook ran');
        return { ran: result.ran, hook, output: result.stdout.slice(-4000) };
      },
    });

    const integrity = step({
      id: 'verify-wallets',
      title: 'Verify wallet integrity',
      phase: 'wallet-recovery',
      readOnly: true,
      idempotent: true,
      timeout: '30m',
      plan: (ctx) => {
        const p = ctx.params;
        return p.walletSource === 'ledger'
          ? `check every wallet of ${walletSourceText(p)}: balance against its ledger, running balances, the hash chain of entries`
          : `check ${walletSourceText(p)}: every trade's account exists, positive quantities and prices, no future dates, the id sequence ahead of every id, and no fewer trades than the latest postgres backup recorded`;
      },
      run: async (ctx) => {
        const p = ctx.params;
        if (p.largeAmount !== undefined) checkDecimal(p.largeAmount, '--large-amount');
        // Trades are never deleted (RPO 0): the latest backup's row count is a floor.
        let expected: { rows: number; backupId: string; createdAt: string } | undefined;
        if (p.walletSource === 'trades') {
          try {
            const manifest = await withBackups(ctx, ({ catalog }) => catalog.latest('postgres'));
            const rows = manifest
              ? Object.entries(fingerprintOf(manifest).tables).find(
                  ([name]) => name === `public.${p.tradesTable}` || name === p.tradesTable,
                )?.[1]
              : undefined;
            if (manifest && rows !== undefined) expected = { rows, backupId: manifest.id, createdAt: manifest.createdAt };
          } catch (error) {
            ctx.log.warn(
              `the backups cannot be read, so deleted trades cannot be detected: ${error instanceof Error ? error.message : String(error)}`,
            );
          }
        }
        return withTreasury(ctx, async (open) => {
          const wallet = walletOf(ctx, open.db, { ...p, actor: actorOf(p.actor) }, expected);
          const result = await wallet.verifyWalletIntegrity({ signal: ctx.signal });
          for (const w of result.wallets)
            for (const c of w.checks)
              (c.ok ? ctx.log.info : ctx.log.error)(`${w.address} ${c.name}: ${c.ok ? 'ok' : 'FAILED'}: ${c.detail}`);
          // A failed check does not stop the procedure here: the report must still be written. The run fails at the end.
          return integrityJson(result);
        });
      },
    });

    const audit = step({
      id: 'audit-transactions',
      title: 'Audit the latest transactions',
      phase: 'wallet-recovery',
      readOnly: true,
      idempotent: true,
      timeout: '30m',
      plan: (ctx) =>
        `read the newest ${ctx.params.last} transactions of ${walletSourceText(ctx.params)} and flag unknown accounts, ${ctx.params.largeAmount !== undefined ? `amounts of ${ctx.params.largeAmount} or more, ` : ''}missing entries and out-of-order ones`,
      run: async (ctx) =>
        withTreasury(ctx, async (open) => {
          const p = ctx.params;
          const wallet = walletOf(ctx, open.db, { ...p, actor: actorOf(p.actor) });
          const result = await wallet.auditTransactions({ last: p.last, signal: ctx.signal });
          ctx.log.info(`${result.examined} of the last ${result.last} transactions examined; ${result.anomalies.length} anomalies`);
          for (const a of result.anomalies.slice(0, 20)) ctx.log.warn(`${a.hash}: ${a.flag}: ${a.detail}`);
          return auditJson(result);
        }),
    });

    const report = step({
      id: 'write-report',
      title: 'Generate the recovery report',
      phase: 'report',
      idempotent: true,
      timeout: '5m',
      plan: (ctx) =>
        `write the recovery report (halt epoch, workers, keys, wallet integrity, audited transactions, next steps) to ${ctx.params.report ?? join(runDirOf(ctx), 'wallet-recovery.md')}, its JSON form beside it, and record it in the audit log`,
      run: async (ctx) => {
        const engaged = ctx.output(engage);
        const verified = ctx.output(verify);
        const secured = ctx.output(keys);
        const path = ctx.params.report ?? join(runDirOf(ctx), 'wallet-recovery.md');
        return withTreasury(ctx, async (open) => {
          const state = await haltStatus({ redis: open.redis, prefix: open.prefix });
          const wallet = recoveryReportOf(ctx.output(integrity), ctx.output(audit), {
            halted: state.halted,
            epoch: state.epoch,
            ...(state.reason !== undefined ? { reason: state.reason } : {}),
            ...(state.actor !== undefined ? { actor: state.actor } : {}),
          });
          const release = releaseInstructions(ctx, state.epoch);
          const input = {
            runId: ctx.runId,
            environment: ctx.environment,
            reason: ctx.params.reason,
            actor: engaged.actor,
            engaged: { epoch: engaged.epoch, created: engaged.created, auditId: engaged.auditId },
            halt: state,
            workers: verified.workers,
            keys: { ran: secured.ran, hook: secured.hook },
            source: walletSourceText(ctx.params),
            release,
          };
          const written = await writeTreasuryReport(path, renderTreasuryReport(input, wallet), {
            ...recoveryReportJson(wallet),
            treasury: { ...input, halt: haltJson(state) },
          });
          await recordReport(open.db, engaged.actor, state.epoch, wallet.conclusion, written.markdown);
          ctx.log.info(`recovery report (${wallet.conclusion}): ${written.markdown}`);
          return { path: written.markdown, json: written.json, conclusion: wallet.conclusion, epoch: state.epoch };
        });
      },
    });

    const hold = step({
      id: 'keep-halt',
      title: 'Keep the halt engaged (release is a separate two-person decision)',
      phase: 'report',
      readOnly: true,
      idempotent: true,
      timeout: '2m',
      plan: (ctx) =>
        `check that the halt is still engaged in ${describeHalt(ctx)}; it is NOT released: that needs two people (drkit halt release)`,
      run: async (ctx) => {
        const written = ctx.output(report);
        const integrityOk = ctx.output(integrity).ok;
        return withTreasury(ctx, async (open) => {
          const state = await haltStatus({ redis: open.redis, prefix: open.prefix });
          if (!state.halted)
            throw new Error(
              `the halt is NOT engaged any more (epoch ${state.epoch}, ${state.actor ?? '?'}: ${state.reason ?? '?'}): it was released during the procedure. Engage it again now.`,
            );
          ctx.log.info(releaseInstructions(ctx, state.epoch));
          if (!integrityOk)
            throw new Error(
              `wallet integrity FAILED (see ${written.path}): keep trading halted, restore the ledger and the keys, then run this procedure again until the report is clean`,
            );
          if (written.conclusion !== 'clean')
            ctx.log.warn(`the recovery report found anomalies: investigate each flagged transaction in ${written.path}`);
          return { halted: true, epoch: state.epoch, report: written.path, conclusion: written.conclusion };
        });
      },
    });

    return [status, engage, verify, keys, integrity, audit, report, hold];
  },
});

/** The report is an action of the procedure: it goes into the audit log with where it is. */
async function recordReport(db: Queryable, actor: string, epoch: number, conclusion: string, path: string): Promise<void> {
  await recordAudit(db, { action: 'wallet-report', actor, epoch, reason: `conclusion: ${conclusion}`, detail: { conclusion, path } });
}

export default treasuryEmergency;

if (isMain(import.meta.url)) await runbookCli(treasuryEmergency);
