export { compressor, DEFAULT_LEVELS, decompressor, zstdAvailable } from './compression.js';
export { type Digest, DigestStream, digesting, digestOf } from './digest.js';
export { isSealError, SEAL_ERROR_CODES, SealError, type SealErrorCode } from './errors.js';
export { type AtomicWriteOptions, openToFile, sealFile, writeAtomically } from './files.js';
export { type Compression, DEFAULT_CHUNK_SIZE, FORMAT_VERSION, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from './format.js';
export { type OpenKeys, sealingKeyId } from './kdf.js';
export {
  generateKey,
  Keyring,
  type KeySources,
  keyIdOf,
  loadKeys,
  type MasterKey,
  masterKey,
  type Passphrase,
  parseKey,
  parseKeyFile,
} from './keys.js';
export { createOpenStream, inspectSealed, type OpenOptions, open, openBuffer, type SealedInfo } from './open.js';
export { openRandomAccess, type RandomAccessOptions, type RangeFetch, type SealedRandomAccess, type SealedSpan } from './random.js';
export { periodicFullCollector, releaseBuffer } from './reclaim.js';
export { rewrap } from './rotate.js';
export { createSealStream, type SealOptions, type StreamProgress, seal, sealBuffer } from './seal.js';
export {
  formatEnv,
  openSecrets,
  type Secrets,
  type SecretsOpenKeys,
  type SecretsSealKeys,
  sealSecrets,
  writeEnvFile,
} from './secrets.js';
export { type ByteSource, bytesOf } from './source.js';
