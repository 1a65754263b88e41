export { findPostgresBinDir, findRedisServer } from './binaries.js';
export { SANDBOX_ERROR_CODES, SandboxError, type SandboxErrorCode } from './errors.js';
export { findSandboxDirs, findSandboxProcesses, isAlive, type SandboxProcess } from './leaks.js';
export { getFreePort } from './ports.js';
export { type PostgresSandbox, type PostgresSandboxOptions, startPostgres } from './postgres.js';
export { SANDBOX_DIR_PREFIX } from './prefix.js';
export { type RedisPersistence, type RedisSandbox, type RedisSandboxOptions, startRedis } from './redis.js';
export { S3_SANDBOX_CREDENTIALS, type S3Sandbox, type S3SandboxOptions, startS3 } from './s3.js';
export { type Sandbox, type SandboxOptions, startSandbox } from './sandbox.js';
