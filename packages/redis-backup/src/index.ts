/**
 * @drkit/redis-backup: Redis backups — RDB snapshots pulled over the replication protocol,
 * exact (DUMP) and readable (NDJSON) logical exports with absolute expiries, restores with a
 * policy for existing keys, and verification. See the package README.
 */

/** The key id a manifest records for the sealing keys (from crypto-stream). */
export { sealingKeyId } from '@drkit/crypto-stream';
export {
  backupReadError,
  fingerprintOf,
  type LogicalFingerprint,
  type RdbFingerprint,
  REDIS_LOGICAL_KIND,
  REDIS_RDB_KIND,
  type RedisKind,
  readRedisBackup,
  resolveRedisBackup,
  type SealKeys,
} from './archive.js';
export {
  type BackupMode,
  type BackupRedisOptions,
  backupRedis,
  DEFAULT_LOGICAL_ZSTD_LEVEL,
  DRKIT_VERSION,
  type RedisBackup,
} from './backup.js';
export { type ConnectOptions, connectRedis, type RedisTarget, redactRedisUrl, redisTarget, withDb, withRedis } from './connection.js';
export { isRedisBackupError, REDIS_ERROR_CODES, RedisBackupError, type RedisErrorCode } from './errors.js';
export type { RedisBackupEvent, RedisBackupEventListener } from './events.js';
export { type ExportOptions, type ExportSummary, exportRedis, type RedisExport } from './export.js';
export { type ExistingKeyPolicy, type ImportOptions, type ImportResult, importRedis } from './import.js';
export { createRdbChecker, maxRdbVersionFor, type RdbCheck, rdbVersionOf } from './rdb.js';
export {
  EXPORT_FORMAT,
  type ExactFields,
  type ExportEncoding,
  type ExportHeader,
  type ExportLine,
  type ExportTrailer,
  exactFields,
  type KeyRecord,
  LineBatch,
  REDIS_TYPES,
  type RedisType,
  readLineBatches,
  readLines,
  type StreamGroup,
  type StreamMeta,
} from './records.js';
export { openRdbStream, type RdbStream, type ReplicationSettings, replicationSettings } from './replication.js';
export {
  type RdbRestoreResult,
  type RdbServer,
  type RedisRestoreResult,
  type RestoreRdbOptions,
  type RestoreRedisOptions,
  restoreRedis,
  restoreRedisRdb,
} from './restore.js';
export { type Commander, type Keyspace, keyspaceOf } from './server.js';
export {
  type KeyDifference,
  type RedisBackupCheck,
  type RedisRestoreCheck,
  type VerifyRestoreOptions,
  verifyRedisBackup,
  verifyRedisRestore,
} from './verify.js';
