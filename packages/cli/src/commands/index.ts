import type { Command } from '../command.js';
import {
  backupGetCommand,
  backupListCommand,
  backupOrphansCommand,
  backupPutCommand,
  backupVerifyCommand,
  pruneCommand,
} from './backup.js';
import { doctorCommand } from './doctor.js';
import { backupFilesCommand, filesDiffCommand, filesListCommand, filesWhichCommand, restoreFilesCommand } from './files.js';
import { haltAuditCommand, haltEngageCommand, haltReleaseCommand, haltStatusCommand, haltVerifyCommand } from './halt.js';
import { keyGenerateCommand } from './key.js';
import { openCommand } from './open.js';
import { backupBaseCommand, restorePointInTimeCommand, walPruneCommand, walVerifyCommand } from './pitr.js';
import { backupPostgresCommand, restorePostgresCommand, verifyPostgresCommand } from './postgres.js';
import { backupRedisCommand, restoreRedisCommand, verifyRedisCommand } from './redis.js';
import { sealCommand } from './seal.js';
import { walFetchCommand, walPushCommand } from './wal.js';

/** Every built-in `drkit` command, in the order help lists them. */
export const allCommands: readonly Command[] = [
  doctorCommand,
  keyGenerateCommand,
  sealCommand,
  openCommand,
  backupPutCommand,
  backupGetCommand,
  backupListCommand,
  backupVerifyCommand,
  backupOrphansCommand,
  backupPostgresCommand,
  restorePostgresCommand,
  verifyPostgresCommand,
  backupRedisCommand,
  restoreRedisCommand,
  verifyRedisCommand,
  backupFilesCommand,
  restoreFilesCommand,
  filesListCommand,
  filesDiffCommand,
  filesWhichCommand,
  pruneCommand,
  haltEngageCommand,
  haltStatusCommand,
  haltVerifyCommand,
  haltReleaseCommand,
  haltAuditCommand,
  backupBaseCommand,
  restorePointInTimeCommand,
  walPushCommand,
  walFetchCommand,
  walVerifyCommand,
  walPruneCommand,
] as unknown as Command[];
