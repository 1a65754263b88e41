// The contract of the DR plan's wallet procedure: "verify wallet integrity, audit the last 100
// on-chain transactions, write a recovery report". An application implements WalletRecovery
// over wherever its wallets live (a node, a custody API, a ledger database); the report and
// its rendering are shared.

/** One check of one wallet. */
export interface IntegrityCheck {
  /** A stable name, e.g. "balance", "running-balance", "hash-chain", "key-fingerprint". */
  name: string;
  ok: boolean;
  /** What was compared; on failure, the wallet and the first bad entry. */
  detail: string;
}

/** The outcome of {@link WalletRecovery.verifyWalletIntegrity}. */
export interface WalletIntegrity {
  /** True only when every check of every wallet passed. */
  ok: boolean;
  checkedAt: Date;
  wallets: { address: string; ok: boolean; checks: IntegrityCheck[] }[];
}

/** The anomaly flags the reference implementation raises; other implementations may add their own. */
export type KnownTransactionFlag =
  | 'unknown-counterparty'
  | 'large-amount'
  | 'balance-mismatch'
  | 'chain-break'
  | 'block-out-of-order'
  | 'duplicate-counterparty-burst';

/** One transaction as the audit saw it. */
export interface AuditedTransaction {
  hash: string;
  wallet: string;
  counterparty: string;
  direction: 'in' | 'out';
  /** Decimal as text, exactly as stored: money is never a float. */
  amount: string;
  block: number;
  at: Date;
  /** The anomalies of this transaction (see {@link KnownTransactionFlag}); empty when clean. */
  flags: string[];
}

/** The outcome of {@link WalletRecovery.auditTransactions}. */
export interface TransactionAudit {
  /** True when no transaction has an anomaly. */
  ok: boolean;
  /** How many transactions were asked for. */
  last: number;
  /** How many were examined: fewer than `last` when the history is shorter. */
  examined: number;
  /** Newest first. */
  transactions: AuditedTransaction[];
  /** One entry per flag per transaction, with what was seen. */
  anomalies: { hash: string; flag: string; detail: string }[];
}

/** The recovery report: both results, the halt state when known, a conclusion and what to do next. */
export interface RecoveryReport {
  generatedAt: Date;
  integrity: WalletIntegrity;
  audit: TransactionAudit;
  /** The halt state when the report was written (e.g. from `haltStatus`), when the caller knows it. */
  halt?: { halted: boolean; epoch: number; reason?: string; actor?: string };
  /** An integrity failure outranks anomalies: a ledger that cannot be trusted makes its audit moot. */
  conclusion: 'clean' | 'anomalies-found' | 'integrity-failed';
  /** Concrete actions, most urgent first. */
  nextSteps: string[];
}

/** What an application implements over its wallets for the wallet recovery procedure. */
export interface WalletRecovery {
  /** Checks every wallet (balances, history, keys). Never throws for a failed check: reports it. */
  verifyWalletIntegrity(options?: { signal?: AbortSignal }): Promise<WalletIntegrity>;
  /**
   * Audits the newest `last` transactions across wallets.
   * @throws HaltError HALT_INVALID_INPUT when `last` is not an integer in 1..10000
   */
  auditTransactions(options: { last: number; signal?: AbortSignal }): Promise<TransactionAudit>;
  /** Runs both and concludes. `last` defaults to 100, as in the DR plan. */
  recoveryReport(options?: { last?: number; halt?: RecoveryReport['halt'] }): Promise<RecoveryReport>;
}
