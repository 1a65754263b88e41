export {
  createHealthCheck,
  type HealthCheck,
  type HealthCheckConfig,
  type HealthCheckDeps,
  type HealthCheckOptions,
  type HealthResult,
  type HttpHealthConfig,
  type PostgresHealthConfig,
  type RedisHealthConfig,
  redactUrl,
  type WaitHealthyOptions,
  waitHealthy,
} from './check.js';
export { createHttpCheck } from './http.js';
export { createPostgresCheck } from './postgres.js';
export { createRedisCheck } from './redis.js';
