export {
  ArchiveSet,
  FILES_KIND,
  type FilesFingerprint,
  type FilesKeys,
  fingerprintOf,
  openArchive,
  readIndex,
  resolveFilesBackup,
} from './archive.js';
export { type BackupFilesOptions, backupFiles, DRKIT_VERSION, type FilesBackup } from './backup.js';
export { FILES_ERROR_CODES, FilesError, type FilesErrorCode, isFilesError } from './errors.js';
export type { FilesEvent, FilesEventListener } from './events.js';
export { type ArchiveCompression, DEFAULT_ARCHIVE_LEVELS } from './frames.js';
export {
  diffBackups,
  type FilesDiff,
  findBackupsHolding,
  type ListedEntry,
  type ListFilesOptions,
  listFiles,
  type PathVersion,
} from './list.js';
export { type FilesRestore, type RestoreFilesOptions, restoreFiles } from './restore.js';
export { compileSelectors, type Selectors } from './select.js';
export type { ArchiveRef, Changes, FilesIndex, IndexEntry } from './tree-index.js';
