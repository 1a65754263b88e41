// `@drkit/s3-store/stores`: the store drivers and URLs alone, without the catalog, retention
// and locks, for short-lived commands such as a WAL archive_command that PostgreSQL starts
// once per segment.
export { isStoreError, STORE_ERROR_CODES, StoreError, type StoreErrorCode } from './errors.js';
export type { ByteSource, GetOptions, ObjectInfo, PutOptions, PutResult, Store, StoreEvent, StoreEventListener } from './store.js';
export { type OpenStoreOptions, openStore, parseStoreUrl, splitStoreUrls } from './url.js';
