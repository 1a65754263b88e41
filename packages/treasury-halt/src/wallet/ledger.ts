// A reference WalletRecovery over a PostgreSQL ledger, for tests and examples. The checks run
// in SQL on `numeric`: amounts travel as decimal text and are never parsed into floats.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { type Queryable, recordAudit } from '../audit.js';
import { HaltError, messageOf } from '../errors.js';
import { buildRecoveryReport } from './report.js';
import type { AuditedTransaction, IntegrityCheck, RecoveryReport, TransactionAudit, WalletIntegrity, WalletRecovery } from './types.js';

/** The schema {@link migrateLedger} and {@link createLedgerWallet} use unless told otherwise. */
export const DEFAULT_LEDGER_SCHEMA = 'drkit_treasury_demo';

/** How many transactions a recovery report audits unless told otherwise, as in the DR plan. */
export const DEFAULT_AUDIT_LAST = 100;

/** The most transactions one audit may examine: the audit reads the whole window into memory. */
export const MAX_AUDIT_LAST = 10_000;

const SCHEMA_NAME = /^[a-z_][a-z0-9_]*$/;
const DECIMAL = /^(?:0|[1-9]\d*)(?:\.\d+)?$/;
// Longer identifiers are silently truncated by PostgreSQL, so two names could meet in one schema.
const MAX_IDENTIFIER = 63;
// Distinct from the audit migration's lock: both may run at once.
const LEDGER_MIGRATION_LOCK = 7_204_318_552;

function invalid(message: string): HaltError {
  return new HaltError('HALT_INVALID_INPUT', message);
}

function storageError(what: string, error: unknown): HaltError {
  if (error instanceof HaltError) return error;
  return new HaltError('HALT_AUDIT_IO', `${what} failed in PostgreSQL: ${messageOf(error)}`, { cause: error });
}

/** The schema name, checked, ready to be interpolated (it cannot be a query parameter). */
function schemaIdentifier(schema: string | undefined): string {
  const name = schema ?? DEFAULT_LEDGER_SCHEMA;
  if (typeof name !== 'string' || !SCHEMA_NAME.test(name) || name.length > MAX_IDENTIFIER)
    throw invalid(`invalid ledger schema name ${JSON.stringify(name)}: use lower-case letters, digits and _ (at most 63)`);
  return `"${name}"`;
}

function nonEmpty(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${what} must be a non-empty string`);
  return value;
}

function positiveDecimal(value: unknown, what: string): string {
  if (typeof value !== 'string' || !DECIMAL.test(value) || !/[1-9]/.test(value))
    throw invalid(`${what} must be a positive decimal written as text (e.g. "1000.50"), got ${JSON.stringify(value)}`);
  return value;
}

/** @throws HaltError HALT_INVALID_INPUT unless `last` is an integer in 1..{@link MAX_AUDIT_LAST} */
function checkLast(last: unknown): number {
  if (typeof last !== 'number' || !Number.isInteger(last) || last < 1 || last > MAX_AUDIT_LAST)
    throw invalid(`last must be an integer from 1 to ${MAX_AUDIT_LAST}, got ${String(last)}`);
  return last;
}

/**
 * Creates the demo ledger (`wallets` and `ledger`) in `schema` (default
 * {@link DEFAULT_LEDGER_SCHEMA}). Idempotent; concurrent callers serialise on an advisory lock.
 * @throws HaltError HALT_INVALID_INPUT for a bad schema name, HALT_AUDIT_IO when PostgreSQL fails
 */
export async function migrateLedger(db: Queryable, options: { schema?: string } = {}): Promise<void> {
  const s = schemaIdentifier(options.schema);
  // One simple-protocol query is one implicit transaction, so the xact lock covers every statement
  // even through a Pool that would hand separate queries to separate connections.
  const sql = `
    SELECT pg_advisory_xact_lock(${LEDGER_MIGRATION_LOCK});
    CREATE SCHEMA IF NOT EXISTS ${s};
    CREATE TABLE IF NOT EXISTS ${s}.wallets (
      address text PRIMARY KEY,
      balance numeric NOT NULL,
      key_fingerprint text NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ${s}.ledger (
      id bigserial PRIMARY KEY,
      hash text UNIQUE NOT NULL,
      prev_hash text,
      wallet text NOT NULL REFERENCES ${s}.wallets (address),
      counterparty text NOT NULL,
      direction text NOT NULL CHECK (direction IN ('in', 'out')),
      amount numeric NOT NULL CHECK (amount > 0),
      block bigint NOT NULL CHECK (block >= 0),
      at timestamptz NOT NULL,
      balance_after numeric NOT NULL
    );
    CREATE INDEX IF NOT EXISTS ledger_wallet_id ON ${s}.ledger (wallet, id);
    CREATE INDEX IF NOT EXISTS ledger_block_id ON ${s}.ledger (block DESC, id DESC);`;
  try {
    await db.query(sql);
  } catch (error) {
    throw storageError(`migrating the ledger schema ${s}`, error);
  }
}

/** A wallet to register with {@link addLedgerWallet}. Its balance starts at 0 and moves only with entries. */
export interface LedgerWalletInput {
  address: string;
  /** The fingerprint of the wallet's signing key, as the key store reports it. */
  keyFingerprint: string;
}

/**
 * Registers a wallet in the demo ledger.
 * @throws HaltError HALT_INVALID_INPUT when the address is taken, HALT_AUDIT_IO when PostgreSQL fails
 */
export async function addLedgerWallet(db: Queryable, wallet: LedgerWalletInput, options: { schema?: string } = {}): Promise<void> {
  const s = schemaIdentifier(options.schema);
  const address = nonEmpty(wallet.address, 'the wallet address');
  const fingerprint = nonEmpty(wallet.keyFingerprint, 'the key fingerprint');
  try {
    const { rowCount } = await db.query(
      `INSERT INTO ${s}.wallets (address, balance, key_fingerprint) VALUES ($1, 0, $2) ON CONFLICT (address) DO NOTHING`,
      [address, fingerprint],
    );
    if (rowCount !== 1) throw invalid(`wallet ${address} is already in the ledger`);
  } catch (error) {
    throw storageError(`adding wallet ${address}`, error);
  }
}

/** One transaction to append with {@link appendLedgerEntries}. */
export interface LedgerEntryInput {
  wallet: string;
  counterparty: string;
  direction: 'in' | 'out';
  /** Positive decimal as text. */
  amount: string;
  block: number;
  at: Date;
  /** The on-chain transaction hash; derived from the entry and its predecessor when absent. */
  hash?: string;
}

/** An entry as appended: its id, its link to the previous entry of its wallet and the balance after it. */
export interface LedgerEntry extends Required<LedgerEntryInput> {
  /** The bigserial id, as text: it may exceed what a JavaScript number holds exactly. */
  id: string;
  prevHash: string | null;
  balanceAfter: string;
}

function checkEntry(entry: LedgerEntryInput, i: number): LedgerEntryInput {
  const where = `entry ${i}`;
  nonEmpty(entry.wallet, `${where}: wallet`);
  nonEmpty(entry.counterparty, `${where}: counterparty`);
  if (entry.direction !== 'in' && entry.direction !== 'out') throw invalid(`${where}: direction must be "in" or "out"`);
  positiveDecimal(entry.amount, `${where}: amount`);
  if (!Number.isSafeInteger(entry.block) || entry.block < 0) throw invalid(`${where}: block must be a non-negative integer`);
  if (!(entry.at instanceof Date) || Number.isNaN(entry.at.getTime())) throw invalid(`${where}: at must be a valid Date`);
  if (entry.hash !== undefined) nonEmpty(entry.hash, `${where}: hash`);
  return entry;
}

/** A stand-in for the chain's transaction hash: stable, and different for every position in a wallet's history. */
function deriveHash(entry: LedgerEntryInput, prevHash: string | null): string {
  const fields = [prevHash ?? '', entry.wallet, entry.counterparty, entry.direction, entry.amount, entry.block, entry.at.toISOString()];
  return `0x${createHash('sha256').update(JSON.stringify(fields)).digest('hex')}`;
}

/**
 * Appends transactions to the demo ledger in one transaction: each entry is linked to the
 * previous one of its wallet, its balance_after is computed in SQL and the wallet balance
 * follows. Needs a Pool or a Client (not just a query function): the wallets stay locked
 * until the entries are committed, so concurrent appends cannot fork a wallet's chain.
 * @throws HaltError HALT_INVALID_INPUT for an invalid entry, an unknown wallet, a duplicate hash
 *   or an overdraft (nothing is appended then); HALT_AUDIT_IO when PostgreSQL fails
 */
export async function appendLedgerEntries(
  db: pg.Pool | pg.Client | pg.PoolClient,
  entries: readonly LedgerEntryInput[],
  options: { schema?: string } = {},
): Promise<LedgerEntry[]> {
  const s = schemaIdentifier(options.schema);
  if (!Array.isArray(entries)) throw invalid('entries must be an array');
  entries.forEach(checkEntry);
  if (entries.length === 0) return [];
  const isPool = typeof (db as pg.Pool).totalCount === 'number';
  let client: pg.Client | pg.PoolClient;
  try {
    client = isPool ? await (db as pg.Pool).connect() : (db as pg.Client | pg.PoolClient);
  } catch (error) {
    throw storageError('connecting to append ledger entries', error);
  }
  const wallets = [...new Set(entries.map((e) => e.wallet))].sort();
  try {
    await client.query('BEGIN');
    try {
      // Sorted, so two appenders lock in the same order and cannot deadlock.
      const locked = await client.query<{ address: string }>(
        `SELECT address FROM ${s}.wallets WHERE address = ANY($1::text[]) ORDER BY address FOR UPDATE`,
        [wallets],
      );
      const known = new Set(locked.rows.map((r) => r.address));
      const unknown = wallets.filter((w) => !known.has(w));
      if (unknown.length > 0) throw invalid(`unknown wallet(s): ${unknown.join(', ')} (add them with addLedgerWallet first)`);
      const heads = await client.query<{ wallet: string; hash: string }>(
        `SELECT DISTINCT ON (wallet) wallet, hash FROM ${s}.ledger WHERE wallet = ANY($1::text[]) ORDER BY wallet, id DESC`,
        [wallets],
      );
      const head = new Map(heads.rows.map((r) => [r.wallet, r.hash]));
      const appended: LedgerEntry[] = [];
      for (const entry of entries) {
        const prevHash = head.get(entry.wallet) ?? null;
        const hash = entry.hash ?? deriveHash(entry, prevHash);
        // The balance moves in the same statement as the insert; the WHERE refuses an overdraft.
        const { rows } = await client.query<{ id: string; balance_after: string }>(
          `WITH moved AS (
             UPDATE ${s}.wallets
                SET balance = balance + CASE WHEN $4 = 'in' THEN $5::numeric ELSE -$5::numeric END
              WHERE address = $2 AND balance + CASE WHEN $4 = 'in' THEN $5::numeric ELSE -$5::numeric END >= 0
              RETURNING balance
           )
           INSERT INTO ${s}.ledger (hash, prev_hash, wallet, counterparty, direction, amount, block, at, balance_after)
           SELECT $1, $6, $2, $3, $4, $5::numeric, $7, $8, moved.balance FROM moved
           RETURNING id::text, balance_after::text`,
          [hash, entry.wallet, entry.counterparty, entry.direction, entry.amount, prevHash, entry.block, entry.at],
        );
        const row = rows[0];
        if (!row) throw invalid(`overdraft: wallet ${entry.wallet} cannot send ${entry.amount} (tx ${hash})`);
        head.set(entry.wallet, hash);
        appended.push({
          id: row.id,
          hash,
          prevHash,
          wallet: entry.wallet,
          counterparty: entry.counterparty,
          direction: entry.direction,
          amount: entry.amount,
          block: entry.block,
          at: entry.at,
          balanceAfter: row.balance_after,
        });
      }
      await client.query('COMMIT');
      return appended;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if ((error as { code?: unknown }).code === '23505') throw invalid(`a transaction hash is already in the ledger: ${messageOf(error)}`);
      throw error;
    }
  } catch (error) {
    throw storageError('appending ledger entries', error);
  } finally {
    if (isPool) (client as pg.PoolClient).release();
  }
}

/** Options of {@link createLedgerWallet}. */
export interface LedgerWalletOptions {
  /** Where the ledger lives (see {@link migrateLedger}); also where audit events are recorded (migrated with `migrateAudit`). */
  db: Queryable;
  /** @default "drkit_treasury_demo" */
  schema?: string;
  /**
   * The key fingerprint of every wallet after the keys were secured or rotated. When given, it
   * is the inventory: a different fingerprint means the key was changed, a wallet outside it
   * was added, and a wallet missing from the ledger fails as well.
   */
  expectedKeyFingerprints?: Record<string, string>;
  /** When given, a transaction with any other counterparty is flagged `unknown-counterparty`. */
  allowedCounterparties?: string[];
  /** Decimal text; a transaction of at least this amount is flagged `large-amount`. */
  largeAmount?: string;
  /**
   * When given, `count` or more outgoing transactions of one wallet to one counterparty within
   * `blocks` consecutive blocks are flagged `duplicate-counterparty-burst` (a drain, a replay).
   */
  burst?: { count: number; blocks: number };
  /** Who runs the procedure, for the audit log. @default "wallet-recovery" */
  actor?: string;
}

interface IntegrityRow {
  address: string;
  balance: string;
  key_fingerprint: string;
  entries: number;
  total: string;
  balanced: boolean;
  last_id: string | null;
  last_hash: string | null;
  last_balance_after: string | null;
  running_id: string | null;
  running_hash: string | null;
  running_balance_after: string | null;
  running_sum: string | null;
  running_bad: number | null;
  chain_id: string | null;
  chain_hash: string | null;
  chain_prev_hash: string | null;
  chain_expected_prev: string | null;
  chain_bad: number | null;
  chain_prev_known: boolean;
}

interface AuditRow {
  hash: string;
  wallet: string;
  counterparty: string;
  direction: 'in' | 'out';
  amount: string;
  block: string;
  at: Date;
  prev_hash: string | null;
  expected_prev: string | null;
  balance_after: string;
  running: string;
  large: boolean;
  balance_mismatch: boolean;
  chain_break: boolean;
  max_earlier_block: string | null;
  out_of_order: boolean;
  burst_n: number;
}

const SIGNED = `CASE WHEN direction = 'in' THEN amount ELSE -amount END`;

function integritySql(s: string): string {
  // One statement, so every check reads the same snapshot of the ledger.
  return `
    WITH entries AS (
      SELECT wallet, id, hash, prev_hash, balance_after,
             sum(${SIGNED}) OVER w AS running,
             lag(hash) OVER w AS expected_prev
        FROM ${s}.ledger
      WINDOW w AS (PARTITION BY wallet ORDER BY id)
    ),
    totals AS (
      SELECT wallet, count(*) AS entries, sum(${SIGNED}) AS total FROM ${s}.ledger GROUP BY wallet
    ),
    latest AS (
      SELECT DISTINCT ON (wallet) wallet, id, hash, balance_after FROM ${s}.ledger ORDER BY wallet, id DESC
    ),
    bad_running AS (
      SELECT DISTINCT ON (wallet) wallet, id, hash, balance_after, running, count(*) OVER (PARTITION BY wallet) AS n
        FROM entries WHERE balance_after IS DISTINCT FROM running ORDER BY wallet, id
    ),
    bad_chain AS (
      SELECT DISTINCT ON (wallet) wallet, id, hash, prev_hash, expected_prev, count(*) OVER (PARTITION BY wallet) AS n
        FROM entries WHERE prev_hash IS DISTINCT FROM expected_prev ORDER BY wallet, id
    )
    SELECT w.address, w.balance::text AS balance, w.key_fingerprint,
           coalesce(t.entries, 0)::int AS entries, coalesce(t.total, 0)::text AS total,
           w.balance = coalesce(t.total, 0) AS balanced,
           l.id::text AS last_id, l.hash AS last_hash, l.balance_after::text AS last_balance_after,
           r.id::text AS running_id, r.hash AS running_hash, r.balance_after::text AS running_balance_after,
           r.running::text AS running_sum, r.n::int AS running_bad,
           c.id::text AS chain_id, c.hash AS chain_hash, c.prev_hash AS chain_prev_hash,
           c.expected_prev AS chain_expected_prev, c.n::int AS chain_bad,
           coalesce(EXISTS (SELECT 1 FROM ${s}.ledger x WHERE x.hash = c.prev_hash), false) AS chain_prev_known
      FROM ${s}.wallets w
      LEFT JOIN totals t ON t.wallet = w.address
      LEFT JOIN latest l ON l.wallet = w.address
      LEFT JOIN bad_running r ON r.wallet = w.address
      LEFT JOIN bad_chain c ON c.wallet = w.address
     ORDER BY w.address`;
}

function auditSql(s: string): string {
  // The history-wide flags (running balance, chain, block order) are computed over every entry,
  // then the newest $1 are kept: a tampered entry is judged against its whole wallet history.
  return `
    WITH entries AS (
      SELECT id, hash, prev_hash, wallet, counterparty, direction, amount, block, at, balance_after,
             sum(${SIGNED}) OVER w AS running,
             lag(hash) OVER w AS expected_prev,
             max(block) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS max_earlier_block,
             count(*) OVER (PARTITION BY wallet, counterparty, direction ORDER BY block
                            RANGE BETWEEN $3::bigint PRECEDING AND CURRENT ROW) AS burst_n
        FROM ${s}.ledger
      WINDOW w AS (PARTITION BY wallet ORDER BY id)
    )
    SELECT hash, wallet, counterparty, direction, amount::text AS amount, block::text AS block, at,
           prev_hash, expected_prev, balance_after::text AS balance_after, running::text AS running,
           coalesce(amount >= $2::numeric, false) AS large,
           balance_after IS DISTINCT FROM running AS balance_mismatch,
           prev_hash IS DISTINCT FROM expected_prev AS chain_break,
           max_earlier_block::text AS max_earlier_block,
           coalesce(block < max_earlier_block, false) AS out_of_order,
           burst_n::int AS burst_n
      FROM entries
     ORDER BY block DESC, id DESC
     LIMIT $1`;
}

function entryName(id: string | null, hash: string | null): string {
  return `entry #${id ?? '?'} (tx ${hash ?? '?'})`;
}

function walletChecks(row: IntegrityRow, expected: Record<string, string> | undefined): IntegrityCheck[] {
  const w = row.address;
  const checks: IntegrityCheck[] = [];

  let balanceDetail: string;
  if (row.balanced) balanceDetail = `balance ${row.balance} equals the sum of its ${row.entries} ledger entries`;
  else {
    balanceDetail = `wallet ${w}: balance ${row.balance} but its ${row.entries} ledger entries sum to ${row.total}`;
    if (row.running_id !== null) balanceDetail += `; first bad entry: ${entryName(row.running_id, row.running_hash)}`;
    else if (row.last_id !== null)
      balanceDetail += `; the entries are consistent up to the last, ${entryName(row.last_id, row.last_hash)} with balance_after ${row.last_balance_after}: the wallet balance was changed or a later entry is missing`;
    else balanceDetail += ': the wallet has no entries';
  }
  checks.push({ name: 'balance', ok: row.balanced, detail: balanceDetail });

  checks.push(
    row.running_id === null
      ? { name: 'running-balance', ok: true, detail: `every balance_after matches the running sum of ${row.entries} entries` }
      : {
          name: 'running-balance',
          ok: false,
          detail: `wallet ${w}: ${entryName(row.running_id, row.running_hash)} has balance_after ${row.running_balance_after} but the entries up to it sum to ${row.running_sum} (${row.running_bad} entries disagree from there on)`,
        },
  );

  if (row.chain_id === null)
    checks.push({ name: 'hash-chain', ok: true, detail: `${row.entries} entries, each linked to the previous one` });
  else {
    const at = `wallet ${w}: ${entryName(row.chain_id, row.chain_hash)}`;
    let detail =
      row.chain_expected_prev === null
        ? `${at} is the first entry of the wallet but has prev_hash ${row.chain_prev_hash}`
        : row.chain_prev_hash === null
          ? `${at} has no prev_hash but the entry before it is tx ${row.chain_expected_prev}`
          : `${at} has prev_hash ${row.chain_prev_hash} but the entry before it is tx ${row.chain_expected_prev}`;
    if (row.chain_prev_hash !== null && !row.chain_prev_known) detail += `; tx ${row.chain_prev_hash} is not in the ledger (deleted?)`;
    checks.push({ name: 'hash-chain', ok: false, detail: `${detail} (${row.chain_bad} break(s))` });
  }

  if (expected !== undefined) {
    const want = Object.hasOwn(expected, w) ? expected[w] : undefined;
    if (want === undefined)
      checks.push({
        name: 'key-fingerprint',
        ok: false,
        detail: `wallet ${w} is not among the expected wallets (key fingerprint ${row.key_fingerprint}): it was added since the keys were secured`,
      });
    else if (want !== row.key_fingerprint)
      checks.push({
        name: 'key-fingerprint',
        ok: false,
        detail: `wallet ${w}: key fingerprint ${row.key_fingerprint}, expected ${want}: the key was changed`,
      });
    else checks.push({ name: 'key-fingerprint', ok: true, detail: `key fingerprint ${want} as expected` });
  }
  return checks;
}

function anomaliesOf(
  row: AuditRow,
  allowed: ReadonlySet<string> | undefined,
  largeAmount: string | undefined,
  burst: { count: number; blocks: number } | undefined,
): { flag: string; detail: string }[] {
  const found: { flag: string; detail: string }[] = [];
  if (allowed !== undefined && !allowed.has(row.counterparty))
    found.push({
      flag: 'unknown-counterparty',
      detail: `counterparty ${row.counterparty} of wallet ${row.wallet} is not an allowed counterparty`,
    });
  if (row.large) found.push({ flag: 'large-amount', detail: `amount ${row.amount} is at least the large-amount threshold ${largeAmount}` });
  if (row.balance_mismatch)
    found.push({
      flag: 'balance-mismatch',
      detail: `wallet ${row.wallet}: balance_after ${row.balance_after} but the entries up to it sum to ${row.running}`,
    });
  if (row.chain_break)
    found.push({
      flag: 'chain-break',
      detail: `wallet ${row.wallet}: prev_hash ${row.prev_hash ?? '(none)'} but the entry before it is tx ${row.expected_prev ?? '(none)'}`,
    });
  if (row.out_of_order)
    found.push({
      flag: 'block-out-of-order',
      detail: `wallet ${row.wallet}: block ${row.block} recorded after an entry in block ${row.max_earlier_block}`,
    });
  if (burst !== undefined && row.direction === 'out' && row.burst_n >= burst.count)
    found.push({
      flag: 'duplicate-counterparty-burst',
      detail: `wallet ${row.wallet}: ${row.burst_n} outgoing transactions to ${row.counterparty} within ${burst.blocks} block(s) up to block ${row.block}`,
    });
  return found;
}

function checkHalt(halt: RecoveryReport['halt']): RecoveryReport['halt'] {
  if (halt === undefined) return undefined;
  if (typeof halt !== 'object' || halt === null || typeof halt.halted !== 'boolean')
    throw invalid('halt must be { halted: boolean, epoch: number, reason?, actor? } (e.g. from haltStatus)');
  if (!Number.isSafeInteger(halt.epoch) || halt.epoch < 0) throw invalid('halt.epoch must be a non-negative integer');
  // Copied field by field: a HaltState carries more (scope, since) than the report promises.
  const copy: NonNullable<RecoveryReport['halt']> = { halted: halt.halted, epoch: halt.epoch };
  if (typeof halt.reason === 'string') copy.reason = halt.reason;
  if (typeof halt.actor === 'string') copy.actor = halt.actor;
  return copy;
}

/** At most this many names go into one audit record: the record is a pointer, the report is the document. */
const AUDIT_DETAIL_LIMIT = 50;

/**
 * A {@link WalletRecovery} over the demo ledger of {@link migrateLedger}. Every run of a method
 * is recorded in the audit log ('wallet-integrity', 'wallet-audit', 'wallet-report'): a recovery
 * step that leaves no trace cannot be reviewed.
 * @throws HaltError HALT_INVALID_INPUT for invalid options (checked here, before any query)
 */
export function createLedgerWallet(options: LedgerWalletOptions): WalletRecovery {
  if (typeof options?.db?.query !== 'function') throw invalid('db must be a pg Pool or Client');
  const { db } = options;
  const s = schemaIdentifier(options.schema);
  const scope = `ledger:${options.schema ?? DEFAULT_LEDGER_SCHEMA}`;
  const actor = nonEmpty(options.actor ?? 'wallet-recovery', 'actor').trim();
  const expected = options.expectedKeyFingerprints;
  if (expected !== undefined) {
    if (typeof expected !== 'object' || expected === null) throw invalid('expectedKeyFingerprints must map addresses to fingerprints');
    for (const [address, fingerprint] of Object.entries(expected)) nonEmpty(fingerprint, `the expected key fingerprint of ${address}`);
  }
  let allowed: ReadonlySet<string> | undefined;
  if (options.allowedCounterparties !== undefined) {
    if (!Array.isArray(options.allowedCounterparties)) throw invalid('allowedCounterparties must be an array of addresses');
    allowed = new Set(options.allowedCounterparties.map((c, i) => nonEmpty(c, `allowedCounterparties[${i}]`)));
  }
  const largeAmount = options.largeAmount === undefined ? undefined : positiveDecimal(options.largeAmount, 'largeAmount');
  const burst = options.burst;
  if (
    burst !== undefined &&
    (!Number.isSafeInteger(burst.count) || burst.count < 2 || !Number.isSafeInteger(burst.blocks) || burst.blocks < 1)
  )
    throw invalid('burst must be { count: integer >= 2, blocks: integer >= 1 }');

  async function verifyWalletIntegrity(opts: { signal?: AbortSignal } = {}): Promise<WalletIntegrity> {
    opts.signal?.throwIfAborted();
    let rows: IntegrityRow[];
    try {
      rows = (await db.query<IntegrityRow>(integritySql(s))).rows;
    } catch (error) {
      throw storageError('reading the ledger to verify wallet integrity', error);
    }
    opts.signal?.throwIfAborted();
    const wallets: WalletIntegrity['wallets'] = rows.map((row) => {
      const checks = walletChecks(row, expected);
      return { address: row.address, ok: checks.every((c) => c.ok), checks };
    });
    const present = new Set(rows.map((r) => r.address));
    for (const [address, fingerprint] of Object.entries(expected ?? {})) {
      if (present.has(address)) continue;
      wallets.push({
        address,
        ok: false,
        checks: [
          { name: 'present', ok: false, detail: `wallet ${address} (key fingerprint ${fingerprint}) is expected but not in the ledger` },
        ],
      });
    }
    wallets.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const integrity: WalletIntegrity = { ok: wallets.every((w) => w.ok), checkedAt: new Date(), wallets };
    const failed = wallets.filter((w) => !w.ok);
    await recordAudit(db, {
      action: 'wallet-integrity',
      actor,
      scope,
      reason: integrity.ok
        ? `integrity verified for ${wallets.length} wallet(s)`
        : `integrity failed for ${failed.length} of ${wallets.length} wallet(s)`,
      detail: {
        ok: integrity.ok,
        wallets: wallets.length,
        failed: failed
          .slice(0, AUDIT_DETAIL_LIMIT)
          .map((w) => ({ address: w.address, checks: w.checks.filter((c) => !c.ok).map((c) => c.name) })),
      },
    });
    return integrity;
  }

  async function auditTransactions(opts: { last: number; signal?: AbortSignal }): Promise<TransactionAudit> {
    const last = checkLast(opts?.last);
    opts.signal?.throwIfAborted();
    let rows: AuditRow[];
    try {
      rows = (await db.query<AuditRow>(auditSql(s), [last, largeAmount ?? null, (burst?.blocks ?? 1) - 1])).rows;
    } catch (error) {
      throw storageError('reading the ledger to audit transactions', error);
    }
    opts.signal?.throwIfAborted();
    const transactions: AuditedTransaction[] = [];
    const anomalies: TransactionAudit['anomalies'] = [];
    for (const row of rows) {
      const found = anomaliesOf(row, allowed, largeAmount, burst);
      for (const a of found) anomalies.push({ hash: row.hash, ...a });
      transactions.push({
        hash: row.hash,
        wallet: row.wallet,
        counterparty: row.counterparty,
        direction: row.direction,
        amount: row.amount,
        block: Number(row.block),
        at: row.at,
        flags: found.map((a) => a.flag),
      });
    }
    const audit: TransactionAudit = { ok: anomalies.length === 0, last, examined: transactions.length, transactions, anomalies };
    const flagged = transactions.filter((t) => t.flags.length > 0);
    await recordAudit(db, {
      action: 'wallet-audit',
      actor,
      scope,
      reason: audit.ok
        ? `no anomalies in the last ${audit.examined} transaction(s)`
        : `${flagged.length} of the last ${audit.examined} transaction(s) flagged`,
      detail: {
        ok: audit.ok,
        last,
        examined: audit.examined,
        anomalies: anomalies.length,
        flagged: flagged.slice(0, AUDIT_DETAIL_LIMIT).map((t) => ({ hash: t.hash, flags: t.flags })),
      },
    });
    return audit;
  }

  async function recoveryReport(opts: { last?: number; halt?: RecoveryReport['halt'] } = {}): Promise<RecoveryReport> {
    // Checked before anything runs, so a bad call leaves no half-done trail in the audit log.
    const last = checkLast(opts.last ?? DEFAULT_AUDIT_LAST);
    const halt = checkHalt(opts.halt);
    const integrity = await verifyWalletIntegrity();
    const audit = await auditTransactions({ last });
    const report = buildRecoveryReport(halt === undefined ? { integrity, audit } : { integrity, audit, halt });
    await recordAudit(db, {
      action: 'wallet-report',
      actor,
      scope,
      reason: `conclusion: ${report.conclusion}`,
      ...(halt === undefined ? {} : { epoch: halt.epoch }),
      detail: {
        conclusion: report.conclusion,
        integrityOk: integrity.ok,
        examined: audit.examined,
        anomalies: audit.anomalies.length,
        nextSteps: report.nextSteps.slice(0, AUDIT_DETAIL_LIMIT),
      },
    });
    return report;
  }

  return { verifyWalletIntegrity, auditTransactions, recoveryReport };
}
