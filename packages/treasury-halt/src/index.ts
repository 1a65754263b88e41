export {
  AUDIT_TABLE,
  type AuditAction,
  type AuditEvent,
  type AuditInput,
  listAudit,
  migrateAudit,
  type Queryable,
  recordAudit,
} from './audit.js';
export { HALT_ERROR_CODES, HaltError, type HaltErrorCode, isHaltError } from './errors.js';
export { createHaltGuard, type HaltGuard, type HaltGuardEvents, type HaltGuardOptions, type OrderTicket } from './guard.js';
export {
  DEFAULT_REDIS_TIMEOUT_MS,
  type EngageResult,
  engageHalt,
  type HaltDeps,
  haltStatus,
  listWorkers,
  type ReleaseResult,
  releaseHalt,
} from './halt.js';
export { DEFAULT_PREFIX, type HaltKeys, type HaltState, haltKeys, type WorkerHeartbeat } from './keys.js';
export { assertHalted, type VerifyResult, verifyHalted, type WorkerVerdict } from './verify.js';
export * from './wallet/index.js';
