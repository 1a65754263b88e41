export {
  addLedgerWallet,
  appendLedgerEntries,
  createLedgerWallet,
  DEFAULT_AUDIT_LAST,
  DEFAULT_LEDGER_SCHEMA,
  type LedgerEntry,
  type LedgerEntryInput,
  type LedgerWalletInput,
  type LedgerWalletOptions,
  MAX_AUDIT_LAST,
  migrateLedger,
} from './ledger.js';
export {
  assertWalletIntegrity,
  buildRecoveryReport,
  RECOVERY_REPORT_SCHEMA,
  type RecoveryReportJson,
  recoveryReportFromJson,
  recoveryReportJson,
  renderRecoveryReport,
} from './report.js';
export type {
  AuditedTransaction,
  IntegrityCheck,
  KnownTransactionFlag,
  RecoveryReport,
  TransactionAudit,
  WalletIntegrity,
  WalletRecovery,
} from './types.js';
