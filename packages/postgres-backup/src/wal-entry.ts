// `@drkit/postgres-backup/wal`: WAL push and fetch alone, without the pg client and the rest of
// the package, for archive_command and restore_command, which PostgreSQL starts once per file.

export { isPgBackupError, PgBackupError } from './errors.js';
export * from './wal.js';
export { parseWalName, type WalName } from './wal-names.js';
