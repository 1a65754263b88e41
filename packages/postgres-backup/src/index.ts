/** The key id a manifest records for the sealing keys (from crypto-stream). */
export { sealingKeyId } from '@drkit/crypto-stream';
export {
  fingerprintOf,
  POSTGRES_GLOBALS_KIND,
  POSTGRES_KIND,
  type PostgresFingerprintRecord,
  readBackup,
  resolveBackup,
  type StoredBytes,
} from './archive.js';
export {
  type BackupPostgresOptions,
  backupPostgres,
  DRKIT_VERSION,
  type PostgresBackup,
  type SealKeys,
  type ServerInfo,
} from './backup.js';
export { type BaseBackup, type BaseBackupOptions, type BaseBackupRecord, backupBase, POSTGRES_BASE_KIND } from './base-backup.js';
export { type ConnectOptions, connect, libpqEnv, type PgTarget, pgTarget, redactUrl, withClient, withDatabase } from './connection.js';
export { isPgBackupError, PG_ERROR_CODES, PgBackupError, type PgErrorCode } from './errors.js';
export type { PgBackupEvent, PgBackupEventListener } from './events.js';
export {
  applyDatabasePropertiesSql,
  compareFingerprints,
  type DatabaseProperties,
  describeDifferences,
  type FingerprintDifference,
  type FingerprintFailure,
  type PgFingerprint,
  readDatabaseProperties,
  takeFingerprint,
} from './fingerprint.js';
export * from './health.js';
export {
  osAccount,
  type PointInTimeRecovery,
  type RecoveryTarget,
  type RestorePointInTimeOptions,
  restorePointInTime,
} from './pitr.js';
export { type PostgresRestore, type RestorePostgresOptions, restorePostgres } from './restore.js';
export {
  classifyRestoreError,
  parseRestoreErrors,
  RESTORE_ERROR_CLASSES,
  type RestoreErrorClass,
  type RestoreErrorEntry,
} from './restore-errors.js';
export { type PostgresSnapshot, type SnapshotOptions, snapshotCurrentState } from './snapshot.js';
export { findTool, type PgTool, type ToolInfo, type ToolOptions } from './tools.js';
export {
  describeVerification,
  type PostgresVerification,
  type VerifyCheck,
  type VerifyLevel,
  type VerifyPostgresOptions,
  verifyPostgresBackup,
} from './verify.js';
export {
  controlSystemId,
  WAL_PREFIX,
  type WalFetchOptions,
  type WalPushOptions,
  type WalPushResult,
  walFetch,
  walKey,
  walPush,
} from './wal.js';
export {
  type BaseBackupEntry,
  type BaseCoverage,
  listBaseBackups,
  listWal,
  pruneWal,
  type VerifyWalArchiveOptions,
  verifyWalArchive,
  type WalArchiveEntry,
  type WalArchiveReport,
  type WalPruneResult,
  walSystems,
} from './wal-archive.js';
export {
  DEFAULT_WAL_SEGMENT_SIZE,
  formatLsn,
  parseLsn,
  parseTimelineHistory,
  parseWalName,
  segmentName,
  segmentNumber,
  type TimelineSwitch,
  type WalFileKind,
  type WalName,
} from './wal-names.js';
