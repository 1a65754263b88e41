export { type AppliedBucketSettings, applyBucketSettings, type BucketSettings, LIFECYCLE_RULE_ID } from './bucket.js';
export {
  ARTIFACTS_PREFIX,
  type ArtifactInput,
  type Catalog,
  type CatalogEvent,
  type CatalogOptions,
  createCatalog,
  DEFAULT_ORPHAN_GRACE_MS,
  type ListFilter,
  MANIFESTS_PREFIX,
  type OrphanReport,
  type PruneResult,
  type StoredCheck,
} from './catalog.js';
export { isStoreError, STORE_ERROR_CODES, StoreError, type StoreErrorCode } from './errors.js';
export { acquireFsLock, FS_LOCK_DIR, readFsLock } from './fs-lock.js';
export { createFsStore, type FsStoreOptions } from './fs-store.js';
export {
  ARTIFACT_ID_PATTERN,
  artifactIdTime,
  KNOWN_KINDS,
  MANIFEST_SCHEMA,
  type Manifest,
  newArtifactId,
  parseManifest,
  redactCredentials,
  TIERS,
  type Tier,
} from './manifest.js';
export { createMirroredStore, type MirroredStore, type MirroredStoreOptions } from './mirror.js';
export * from './retention.js';
export { createS3Store, partSizeFor, type S3StoreInternals, type S3StoreOptions, s3StoreInternals } from './s3.js';
export {
  acquireS3Lock,
  probeS3ConditionalWrites,
  readS3Lock,
  type S3ConditionalSupport,
  type S3Lease,
  type S3LockMode,
  type S3LockOptions,
  type S3LockTarget,
} from './s3-lock.js';
export {
  type ByteRange,
  type ByteSource,
  type GetOptions,
  type Lease,
  type ListOptions,
  type LockInfo,
  type LockOptions,
  MAX_KEY_BYTES,
  normalizeKey,
  normalizePrefix,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  type Store,
  type StoreEvent,
  type StoreEventListener,
} from './store.js';
export { readStored, type StoredBytes } from './stored.js';
export { type OpenStoreOptions, openStore, parseStoreUrl, splitStoreUrls } from './url.js';
