// The treasury side of the recovery runbooks (second plan, Procedure 3, and the containment of
// Procedure 4): connections to the halt state (the app's Redis, `vars.haltPrefix`) and its
// audit log (the app's PostgreSQL), engaging and verifying the halt, and the wallet data the
// wallet-recovery procedure checks. treasury-halt's WalletRecovery is implemented here over
// the application's `trades` table, the demo app's ledger (the package's own reference
// ledger, `createLedgerWallet`, is the other source). The halt is never released here:
// releasing it is a separate two-person decision (`drkit halt release`).

import { writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { BaseContext, StepContext } from '@drkit/runbook';
import { operatorName } from '@drkit/runbook';
import {
  AUDIT_TABLE,
  type AuditedTransaction,
  buildRecoveryReport,
  createLedgerWallet,
  DEFAULT_PREFIX,
  type HaltState,
  haltStatus,
  type IntegrityCheck,
  listWorkers,
  type Queryable,
  RECOVERY_REPORT_SCHEMA,
  type RecoveryReport,
  recordAudit,
  recoveryReportFromJson,
  recoveryReportJson,
  renderRecoveryReport,
  type TransactionAudit,
  type VerifyResult,
  type WalletIntegrity,
  type WalletRecovery,
} from '@drkit/treasury-halt';
import { Redis } from 'ioredis';
import pg from 'pg';
import { databaseUrl, platformOf, redisUrl, required } from './platform.ts';

/** treasury-halt's key prefix of this environment (`vars.haltPrefix`, else the package's default). */
export function haltPrefix(ctx: BaseContext<unknown>): string {
  return platformOf(ctx).haltPrefix ?? DEFAULT_PREFIX;
}

/** Where the halt lives, for plans and logs (the URLs carry no password: that is a secret). */
export function describeHalt(ctx: BaseContext<unknown>): string {
  return `Redis ${required(ctx, 'redis').url} (keys ${haltPrefix(ctx)}*), audit log ${AUDIT_TABLE} in ${required(ctx, 'postgres').url}`;
}

/** Who acts on the halt, for its audit log: the `--actor` given, else whoever runs the runbook. */
export function actorOf(actor: string | undefined): string {
  return actor?.trim() || operatorName();
}

/** The open connections of the kill switch. */
export interface TreasuryConnections {
  redis: Redis;
  db: pg.Pool;
  prefix: string;
}

/**
 * Runs `body` with the app's Redis and PostgreSQL open for treasury-halt, and closes them
 * whatever happens. Redis commands have treasury-halt's own deadlines; a Redis that is away
 * fails them instead of leaving the step waiting on a reconnect loop.
 */
export async function withTreasury<T>(ctx: StepContext<unknown>, body: (open: TreasuryConnections) => Promise<T>): Promise<T> {
  const redis = new Redis(redisUrl(ctx), {
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: (n) => (n > 50 ? null : Math.min(n * 100, 1000)),
  });
  let reported = false;
  redis.on('error', (error: Error) => {
    // ioredis reports every failed reconnect; one line says enough, the commands fail on their own.
    if (!reported) ctx.log.warn(`Redis: ${error.message}`);
    reported = true;
  });
  const db = new pg.Pool({
    connectionString: databaseUrl(ctx),
    max: 2,
    connectionTimeoutMillis: 10_000,
    application_name: 'drkit-treasury',
  });
  db.on('error', () => {
    // An idle connection that dies fails the next query, which reports it.
  });
  try {
    return await body({ redis, db, prefix: haltPrefix(ctx) });
  } finally {
    redis.disconnect();
    await db.end().catch(() => {});
  }
}

/** Whether the halt audit table exists yet (reading only: the engage step creates it). */
export async function auditTableExists(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(`SELECT to_regclass('${AUDIT_TABLE}') IS NOT NULL AS ok`);
  return rows[0]?.ok === true;
}

/** One trading worker as the runbooks report it. */
export interface WorkerReport {
  id: string;
  acknowledged: boolean;
  reason?: string;
  epochSeen?: number;
  halted?: boolean;
  inFlight?: number;
  lastHeartbeat?: string;
  host?: string;
  pid?: number;
}

/** The verdicts of verifyHalted (or a plain worker listing) as plain JSON for step outputs and reports. */
export function workerReports(verdicts: VerifyResult['workers']): WorkerReport[] {
  return verdicts.map((w) => {
    const out: WorkerReport = { id: w.id, acknowledged: w.acknowledged };
    if (w.reason !== undefined) out.reason = w.reason;
    if (w.heartbeat) {
      out.epochSeen = w.heartbeat.epoch;
      out.halted = w.heartbeat.halted;
      out.inFlight = w.heartbeat.inFlight;
      out.lastHeartbeat = new Date(w.heartbeat.at).toISOString();
      if (w.heartbeat.host !== undefined) out.host = w.heartbeat.host;
      if (w.heartbeat.pid !== undefined) out.pid = w.heartbeat.pid;
    }
    return out;
  });
}

/** The halt state and the registered workers, read without changing anything. */
export async function readHalt(
  open: TreasuryConnections,
): Promise<{ state: HaltState; workers: { id: string; lastHeartbeat: string | null }[] }> {
  const deps = { redis: open.redis, prefix: open.prefix };
  const state = await haltStatus(deps);
  const workers = (await listWorkers(deps)).map((w) => ({
    id: w.id,
    lastHeartbeat: w.heartbeat ? new Date(w.heartbeat.at).toISOString() : null,
  }));
  return { state, workers };
}

/** A halt state as plain JSON (HaltState already is; `since` becomes a date people can read). */
export function haltJson(state: HaltState): HaltState & { sinceIso?: string } {
  return { ...state, ...(state.since !== undefined ? { sinceIso: new Date(state.since).toISOString() } : {}) };
}

/** What a release needs, said the same way in every log and report: the runbooks never release. */
export function releaseInstructions(ctx: BaseContext<unknown>, epoch: number): string {
  const prefix = haltPrefix(ctx) === DEFAULT_PREFIX ? '' : ` --prefix ${haltPrefix(ctx)}`;
  return (
    `The halt stays engaged (epoch ${epoch}). Releasing it is a separate two-person decision, taken once the recovery is complete and a wallet report is clean: ` +
    `drkit halt release --redis ${required(ctx, 'redis').url} --pg ${required(ctx, 'postgres').url}${prefix} --actor <you> --approver <someone else> --reason "<why it is safe>"`
  );
}

// ---------------------------------------------------------------------------------------------
// Wallet data

/** Where the wallet data comes from. */
export type WalletSource = 'trades' | 'ledger';

/** Options of {@link createTradesWallet}. */
export interface TradesWalletOptions {
  db: Queryable;
  /** The trades table (`schema.table` or `table`). @default "trades" */
  table?: string;
  /** The table the trades' `user_id` refers to. @default "users" */
  accountsTable?: string;
  /** Decimal text: a trade whose qty × price reaches it is flagged `large-amount`. */
  largeAmount?: string;
  /**
   * What the latest backup recorded of the table: trades are never deleted (the second plan's
   * RPO for trading transactions is 0), so fewer rows now than then is an integrity failure.
   */
  expected?: { rows: number; backupId: string; createdAt: string };
  /** Who runs the procedure, for the audit log. @default "wallet-recovery" */
  actor?: string;
  /** Record each check in the halt audit log (false in a dry run, which writes nothing). @default true */
  record?: boolean;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;
const DECIMAL = /^(?:0|[1-9]\d*)(?:\.\d+)?$/;
/** Clock skew between application servers that is not yet an anomaly. */
const SKEW = "interval '5 minutes'";

/** A table name (`table` or `schema.table`), checked and quoted: it cannot be a query parameter. */
export function quoteTable(name: string): string {
  const parts = name.split('.');
  if (parts.length > 2 || parts.some((p) => !IDENTIFIER.test(p) || p.length > 63))
    throw new Error(`invalid table name ${JSON.stringify(name)}: use lower-case letters, digits and _ (optionally schema.table)`);
  return parts.map((p) => `"${p}"`).join('.');
}

/** A positive decimal written as text, or an error naming the flag. */
export function checkDecimal(value: string, what: string): string {
  if (!DECIMAL.test(value) || !/[1-9]/.test(value))
    throw new Error(`${what} must be a positive decimal such as "50000" or "1000.5", got ${JSON.stringify(value)}`);
  return value;
}

interface TradesIntegrityRow {
  rows: number;
  max_id: string | null;
  orphans: number;
  first_orphan: string | null;
  invalid: number;
  first_invalid: string | null;
  future: number;
  first_future: string | null;
}

interface TradesAuditRow {
  id: string;
  user_id: string;
  symbol: string;
  side: string;
  qty: string;
  price: string;
  notional: string;
  created_at: Date;
  prev_id: string | null;
  missing: string | null;
  max_earlier_at: Date | null;
  orphan: boolean;
  large: boolean;
  invalid: boolean;
  out_of_order: boolean;
  future: boolean;
}

/**
 * A WalletRecovery over the application's trades table (the demo app's ledger: id, user_id,
 * symbol, side, qty, price, created_at). The table as a whole is the wallet checked for
 * integrity: every trade's account exists, quantities and prices are positive and sides
 * valid, no trade is dated in the future, the id sequence is ahead of every id (or the next
 * trade would collide), and no trade recorded by the latest backup is missing. The audit
 * reads the newest `last` trades (by id, which orders them as blocks order a chain; a trade's
 * id stands in for its block number and `trade #<id>` for its hash) and flags unknown
 * accounts, large amounts, invalid values, ids missing before a trade (deleted rows, or
 * rolled-back inserts), trades dated well before an earlier one, and trades in the future.
 */
export function createTradesWallet(options: TradesWalletOptions): WalletRecovery {
  const { db } = options;
  const tableName = options.table ?? 'trades';
  const table = quoteTable(tableName);
  const accounts = quoteTable(options.accountsTable ?? 'users');
  const largeAmount = options.largeAmount === undefined ? undefined : checkDecimal(options.largeAmount, 'largeAmount');
  const actor = options.actor ?? 'wallet-recovery';
  const scope = `table:${tableName}`;
  const record = async (input: Parameters<typeof recordAudit>[1]) => {
    if (options.record !== false) await recordAudit(db, input);
  };

  async function verifyWalletIntegrity(opts: { signal?: AbortSignal } = {}): Promise<WalletIntegrity> {
    opts.signal?.throwIfAborted();
    // One statement, so that every check reads the same snapshot.
    const { rows } = await db.query<TradesIntegrityRow>(`
      SELECT count(*)::int AS rows, max(t.id)::text AS max_id,
             count(*) FILTER (WHERE a.id IS NULL)::int AS orphans,
             min(t.id) FILTER (WHERE a.id IS NULL)::text AS first_orphan,
             count(*) FILTER (WHERE NOT (t.qty > 0 AND t.price > 0 AND t.side IN ('buy', 'sell')))::int AS invalid,
             min(t.id) FILTER (WHERE NOT (t.qty > 0 AND t.price > 0 AND t.side IN ('buy', 'sell')))::text AS first_invalid,
             count(*) FILTER (WHERE t.created_at > now() + ${SKEW})::int AS future,
             min(t.id) FILTER (WHERE t.created_at > now() + ${SKEW})::text AS first_future
        FROM ${table} t LEFT JOIN ${accounts} a ON a.id = t.user_id`);
    const row = rows[0] as TradesIntegrityRow;
    const checks: IntegrityCheck[] = [];
    checks.push(
      row.orphans === 0
        ? {
            name: 'accounts',
            ok: true,
            detail: `every one of the ${row.rows} trades belongs to an account in ${options.accountsTable ?? 'users'}`,
          }
        : {
            name: 'accounts',
            ok: false,
            detail: `${row.orphans} trade(s) belong to no account in ${options.accountsTable ?? 'users'}, the first is trade #${row.first_orphan}`,
          },
    );
    checks.push(
      row.invalid === 0
        ? { name: 'values', ok: true, detail: 'every trade has a positive quantity and price and a side of buy or sell' }
        : {
            name: 'values',
            ok: false,
            detail: `${row.invalid} trade(s) have a non-positive quantity or price or an unknown side, the first is trade #${row.first_invalid}`,
          },
    );
    checks.push(
      row.future === 0
        ? { name: 'timestamps', ok: true, detail: 'no trade is dated in the future' }
        : {
            name: 'timestamps',
            ok: false,
            detail: `${row.future} trade(s) are dated in the future, the first is trade #${row.first_future}`,
          },
    );
    const sequence = await db.query<{ seq: string | null }>('SELECT pg_get_serial_sequence($1, $2) AS seq', [table, 'id']);
    const seq = sequence.rows[0]?.seq ?? null;
    if (seq === null) checks.push({ name: 'sequence', ok: false, detail: `${tableName}.id has no sequence: new trades cannot get ids` });
    else {
      const state = await db.query<{ next: string; ok: boolean }>(
        `SELECT (CASE WHEN is_called THEN last_value + 1 ELSE last_value END)::text AS next,
                (CASE WHEN is_called THEN last_value + 1 ELSE last_value END) > coalesce($1::bigint, 0) AS ok
           FROM ${seq}`,
        [row.max_id],
      );
      const next = state.rows[0];
      checks.push(
        next?.ok
          ? { name: 'sequence', ok: true, detail: `the next trade id ${next.next} is above every id (max ${row.max_id ?? 'none'})` }
          : {
              name: 'sequence',
              ok: false,
              detail: `the next trade id ${next?.next ?? '?'} is not above the highest id ${row.max_id}: new trades would collide (setval the sequence)`,
            },
      );
    }
    if (options.expected !== undefined) {
      const { rows: recorded, backupId, createdAt } = options.expected;
      checks.push(
        row.rows >= recorded
          ? {
              name: 'history',
              ok: true,
              detail: `${row.rows} trades, at least the ${recorded} that backup ${backupId} (${createdAt}) recorded`,
            }
          : {
              name: 'history',
              ok: false,
              detail: `${row.rows} trades, but backup ${backupId} (${createdAt}) recorded ${recorded}: ${recorded - row.rows} trade(s) were deleted since (trades are never deleted, RPO 0)`,
            },
      );
    }
    const wallet = { address: tableName, ok: checks.every((c) => c.ok), checks };
    const integrity: WalletIntegrity = { ok: wallet.ok, checkedAt: new Date(), wallets: [wallet] };
    await record({
      action: 'wallet-integrity',
      actor,
      scope,
      reason: integrity.ok ? `integrity verified for ${tableName}` : `integrity failed for ${tableName}`,
      detail: {
        ok: integrity.ok,
        wallets: 1,
        failed: integrity.ok ? [] : [{ address: tableName, checks: checks.filter((c) => !c.ok).map((c) => c.name) }],
      },
    });
    return integrity;
  }

  async function auditTransactions(opts: { last: number; signal?: AbortSignal }): Promise<TransactionAudit> {
    const last = opts.last;
    if (!Number.isInteger(last) || last < 1 || last > 10_000) throw new Error(`last must be an integer from 1 to 10000, got ${last}`);
    opts.signal?.throwIfAborted();
    // The flags that depend on history (gaps, order) are computed over the whole table, then the newest are kept.
    const { rows } = await db.query<TradesAuditRow>(
      `WITH h AS (
         SELECT t.id, t.user_id, t.symbol, t.side, t.qty, t.price, t.created_at, a.id IS NULL AS orphan,
                lag(t.id) OVER (ORDER BY t.id) AS prev_id,
                max(t.created_at) OVER (ORDER BY t.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS max_earlier_at
           FROM ${table} t LEFT JOIN ${accounts} a ON a.id = t.user_id
       )
       SELECT t.id::text AS id, t.user_id::text AS user_id, t.symbol, t.side,
              trim_scale(t.qty)::text AS qty, trim_scale(t.price)::text AS price, trim_scale(t.qty * t.price)::text AS notional,
              t.created_at, t.prev_id::text AS prev_id, (t.id - t.prev_id - 1)::text AS missing, t.max_earlier_at, t.orphan,
              coalesce(t.qty * t.price >= $2::numeric, false) AS large,
              NOT (t.qty > 0 AND t.price > 0 AND t.side IN ('buy', 'sell')) AS invalid,
              coalesce(t.created_at < t.max_earlier_at - ${SKEW}, false) AS out_of_order,
              t.created_at > now() + ${SKEW} AS future
         FROM h t ORDER BY t.id DESC LIMIT $1`,
      [last, largeAmount ?? null],
    );
    const transactions: AuditedTransaction[] = [];
    const anomalies: TransactionAudit['anomalies'] = [];
    for (const row of rows) {
      const hash = `trade #${row.id}`;
      const found: { flag: string; detail: string }[] = [];
      if (row.orphan)
        found.push({ flag: 'unknown-counterparty', detail: `trade #${row.id} belongs to account ${row.user_id}, which does not exist` });
      if (row.large)
        found.push({
          flag: 'large-amount',
          detail: `${row.qty} ${row.symbol} at ${row.price} is ${row.notional}, at least ${largeAmount}`,
        });
      if (row.invalid) found.push({ flag: 'invalid-values', detail: `side ${row.side}, quantity ${row.qty}, price ${row.price}` });
      if (row.prev_id !== null && row.missing !== null && row.missing !== '0')
        found.push({
          flag: 'id-gap',
          detail: `${row.missing} trade id(s) missing between #${row.prev_id} and #${row.id}: deleted rows, or inserts that were rolled back`,
        });
      if (row.out_of_order)
        found.push({
          flag: 'block-out-of-order',
          detail: `trade #${row.id} is dated ${row.created_at.toISOString()}, well before an earlier trade (${row.max_earlier_at?.toISOString()})`,
        });
      if (row.future)
        found.push({ flag: 'future-time', detail: `trade #${row.id} is dated ${row.created_at.toISOString()}, in the future` });
      for (const a of found) anomalies.push({ hash, ...a });
      transactions.push({
        hash,
        wallet: `account ${row.user_id}`,
        counterparty: row.symbol,
        direction: row.side === 'sell' ? 'out' : 'in',
        amount: row.qty,
        block: Number(row.id),
        at: row.created_at,
        flags: found.map((a) => a.flag),
      });
    }
    const audit: TransactionAudit = { ok: anomalies.length === 0, last, examined: transactions.length, transactions, anomalies };
    const flagged = transactions.filter((t) => t.flags.length > 0);
    await record({
      action: 'wallet-audit',
      actor,
      scope,
      reason: audit.ok
        ? `no anomalies in the last ${audit.examined} trade(s)`
        : `${flagged.length} of the last ${audit.examined} trade(s) flagged`,
      detail: {
        ok: audit.ok,
        last,
        examined: audit.examined,
        anomalies: anomalies.length,
        flagged: flagged.slice(0, 50).map((t) => ({ hash: t.hash, flags: t.flags })),
      },
    });
    return audit;
  }

  async function recoveryReport(opts: { last?: number; halt?: RecoveryReport['halt'] } = {}): Promise<RecoveryReport> {
    const integrity = await verifyWalletIntegrity();
    const audit = await auditTransactions({ last: opts.last ?? 100 });
    const report = buildRecoveryReport(opts.halt === undefined ? { integrity, audit } : { integrity, audit, halt: opts.halt });
    await record({
      action: 'wallet-report',
      actor,
      scope,
      reason: `conclusion: ${report.conclusion}`,
      ...(opts.halt === undefined ? {} : { epoch: opts.halt.epoch }),
      detail: { conclusion: report.conclusion, integrityOk: integrity.ok, examined: audit.examined, anomalies: audit.anomalies.length },
    });
    return report;
  }

  return { verifyWalletIntegrity, auditTransactions, recoveryReport };
}

/**
 * A database handle for dry runs: every query goes through except the audit log's INSERTs,
 * which are answered as if written. treasury-halt's reference ledger records each check it
 * makes; a dry run must not write, but should still run the checks for real.
 */
export function withoutAuditWrites(db: Queryable): Queryable {
  const query = (text: unknown, values?: unknown) => {
    if (typeof text === 'string' && text.trimStart().startsWith(`INSERT INTO ${AUDIT_TABLE}`))
      return Promise.resolve({ rows: [{ id: '0' }], rowCount: 1, command: 'INSERT', oid: 0, fields: [] });
    return (db.query as (t: unknown, v?: unknown) => Promise<unknown>)(text, values);
  };
  return { query } as unknown as Queryable;
}

/** The wallet source of the params, over an open database. */
export function walletOf(
  ctx: StepContext<unknown>,
  db: Queryable,
  source: {
    walletSource: WalletSource;
    tradesTable: string;
    accountsTable: string;
    ledgerSchema: string;
    largeAmount?: string | undefined;
    actor: string;
  },
  expected?: TradesWalletOptions['expected'],
): WalletRecovery {
  const write = ctx.mode === 'execute';
  if (source.walletSource === 'ledger')
    return createLedgerWallet({
      db: write ? db : withoutAuditWrites(db),
      schema: source.ledgerSchema,
      actor: source.actor,
      ...(source.largeAmount !== undefined ? { largeAmount: source.largeAmount } : {}),
    });
  return createTradesWallet({
    db,
    table: source.tradesTable,
    accountsTable: source.accountsTable,
    actor: source.actor,
    record: write,
    ...(source.largeAmount !== undefined ? { largeAmount: source.largeAmount } : {}),
    ...(expected !== undefined ? { expected } : {}),
  });
}

// Step outputs are JSON: the wallet results travel through the journal in recoveryReportJson's
// form and come back through recoveryReportFromJson, which checks them field by field.

/** Wallet integrity as JSON for a step output. */
export type IntegrityJson = ReturnType<typeof recoveryReportJson>['integrity'];
/** A transaction audit as JSON for a step output. */
export type AuditJson = ReturnType<typeof recoveryReportJson>['audit'];

const EMPTY_AUDIT: TransactionAudit = { ok: true, last: 1, examined: 0, transactions: [], anomalies: [] };
const EMPTY_INTEGRITY: WalletIntegrity = { ok: true, checkedAt: new Date(0), wallets: [] };

/** {@link WalletIntegrity} as plain JSON. */
export function integrityJson(integrity: WalletIntegrity): IntegrityJson {
  return recoveryReportJson(buildRecoveryReport({ integrity, audit: EMPTY_AUDIT })).integrity;
}

/** {@link TransactionAudit} as plain JSON. */
export function auditJson(audit: TransactionAudit): AuditJson {
  return recoveryReportJson(buildRecoveryReport({ integrity: EMPTY_INTEGRITY, audit })).audit;
}

/** The recovery report from the JSON outputs of the integrity and audit steps and the halt state. */
export function recoveryReportOf(integrity: IntegrityJson, audit: AuditJson, halt: RecoveryReport['halt']): RecoveryReport {
  const parsed = recoveryReportFromJson({
    schema: RECOVERY_REPORT_SCHEMA,
    generatedAt: new Date().toISOString(),
    conclusion: 'clean',
    integrity,
    audit,
    nextSteps: [],
  });
  return buildRecoveryReport(
    halt === undefined ? { integrity: parsed.integrity, audit: parsed.audit } : { integrity: parsed.integrity, audit: parsed.audit, halt },
  );
}

/** What the treasury report says beyond the package's wallet report. */
export interface TreasuryReportInput {
  runId: string;
  environment: string;
  reason: string;
  actor: string;
  engaged: { epoch: number; created: boolean; auditId: number };
  halt: HaltState;
  workers: WorkerReport[];
  keys: { ran: boolean; hook: string | null };
  source: string;
  release: string;
}

const line = (text: string) => text.replace(/\r\n|\r|\n/g, ' ').replace(/[|`]/g, '\\$&');

/** The recovery report as Markdown: the halt and its workers, the keys, the release rule, then the wallet report. */
export function renderTreasuryReport(input: TreasuryReportInput, wallet: RecoveryReport): string {
  const lines = [
    '# Treasury emergency: recovery report',
    '',
    `Run ${input.runId} in ${input.environment}, by ${line(input.actor)}. Reason: ${line(input.reason)}.`,
    '',
    '## Emergency shutdown',
    '',
    `- Halt engaged: ${input.halt.halted ? 'yes' : 'NO'}, epoch ${input.halt.epoch} (${input.engaged.created ? 'engaged by this run' : 'already engaged: this run joined it'}; audit record ${input.engaged.auditId})`,
    `- Reason: ${line(input.halt.reason ?? input.reason)}`,
    `- Actor: ${line(input.halt.actor ?? input.actor)}`,
    `- Scope: ${line(input.halt.scope ?? 'all')}`,
    ...(input.halt.since !== undefined ? [`- Since: ${new Date(input.halt.since).toISOString()}`] : []),
    '',
    '### Trading workers',
    '',
  ];
  if (input.workers.length === 0) lines.push('No trading worker is registered.');
  else {
    lines.push('| Worker | Acknowledged | Epoch seen | In flight | Last heartbeat | Why not |', '| --- | --- | --- | --- | --- | --- |');
    for (const w of input.workers)
      lines.push(
        `| ${line(w.id)} | ${w.acknowledged ? 'yes' : 'NO'} | ${w.epochSeen ?? '-'} | ${w.inFlight ?? '-'} | ${w.lastHeartbeat ?? 'none'} | ${line(w.reason ?? '')} |`,
      );
  }
  lines.push(
    '',
    '## Wallet keys',
    '',
    input.keys.ran
      ? `Secured by the secureKeys hook: \`${line(input.keys.hook ?? '')}\`.`
      : 'No vars.hooks.secureKeys is configured: securing the keys (cold storage) is manual. Record who did it, and when, in the incident channel.',
    '',
    '## Release',
    '',
    line(input.release),
    '',
    `Wallet data: ${line(input.source)}.`,
    '',
  );
  // The package's report, one heading level down, so that it reads as a section of this one.
  lines.push(
    ...renderRecoveryReport(wallet)
      .split('\n')
      .map((l) => (l.startsWith('#') ? `#${l}` : l)),
  );
  return `${lines.join('\n')}\n`;
}

/** Writes the report (Markdown) and its JSON form beside it (`.json`), creating the directory. */
export async function writeTreasuryReport(path: string, markdown: string, json: unknown): Promise<{ markdown: string; json: string }> {
  const target = resolve(path);
  await mkdir(dirname(target), { recursive: true });
  const jsonPath = target.endsWith('.md') ? `${target.slice(0, -3)}.json` : `${target}.json`;
  writeFileSync(target, markdown, { mode: 0o600 });
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`, { mode: 0o600 });
  return { markdown: target, json: jsonPath };
}

/** The run's own directory (beside its journal and report.md), where the runbooks put their extra files. */
export function runDirOf(ctx: BaseContext<unknown>): string {
  return join(resolve(ctx.config.runsDir), ctx.runId);
}
