export { type DurationInput, formatDurationShort, parseDuration } from './duration.js';
export {
  CONFIG_FILE_NAMES,
  defineConfig,
  type LoadConfigOptions,
  type LoadedConfig,
  loadConfig,
  type ParseConfigOptions,
  parseConfig,
} from './load.js';
export {
  type DrkitConfig,
  type DrkitConfigInput,
  drkitConfigSchema,
  durationSchema,
  ENVIRONMENT_DEFAULTS,
  ENVIRONMENT_NAME,
  type EnvironmentConfig,
  type EnvironmentConfigInput,
  type EnvironmentSettings,
  environmentConfigSchema,
  type HealthEntry,
  healthEntrySchema,
  type NotifierEntry,
  notifierEntrySchema,
  type ServiceEntry,
  secretRefSchema,
  serviceEntrySchema,
  storeUrlSchema,
} from './schema.js';
export { describeSecretRef, isSecretRef, type ResolveSecretOptions, resolveSecret, type SecretRef } from './secrets.js';
