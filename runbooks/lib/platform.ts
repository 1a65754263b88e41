// What the recovery runbooks need to know about the platform they recover, read from the
// environment's `vars` in drkit.config: where the database, Redis, the user files and the
// secrets file live, which services make up the application and in what order they start,
// and the hooks (shell commands) for the steps that are the operator's own (block ingress,
// rotate secrets, redeploy). Every runbook reads the same shape, so one config serves all.

import { type Keyring, parseKeyFile } from '@drkit/crypto-stream';
import type { BaseContext, SecretDeclaration, StepContext } from '@drkit/runbook';
import { RunbookError } from '@drkit/runbook';
import { type Catalog, createCatalog, openStore, type Store, type StoreEvent } from '@drkit/s3-store';
import { z } from 'zod';

const text = z.string().min(1);

/** `vars.postgres`: the application's database. */
const postgresSchema = z.strictObject({
  /** `postgres://user@host:5432/database`, without a password (that is the databasePassword secret). */
  url: text.refine((u) => /^postgres(ql)?:\/\//i.test(u), 'expected a postgres:// URL'),
  /** The service (of `services`) that runs the database server, for a complete restart. */
  service: text.optional(),
  /** Where restores go first before they are swapped in. @default "<database>_restore" (the package's own naming) */
  maintenanceDatabase: text.optional(),
  /** The table the plan counts after a restore (`SELECT COUNT(*) FROM users`). @default "users" */
  countTable: text.default('users'),
  /**
   * Point-in-time recovery: where recovered clusters get their new data directories
   * (`<dir>/pitr-<time>`), the OS account they run as when the runbook runs as root, and a
   * fixed port for them (default: a free one).
   */
  pitr: z.strictObject({ dir: text, osUser: text.optional(), port: z.number().int().min(1).max(65535).optional() }).optional(),
});

/** `vars.redis`: the application's Redis. */
const redisSchema = z.strictObject({
  /** `redis://host:6379/0`, without a password (that is the redisPassword secret). */
  url: text.refine((u) => /^rediss?:\/\//i.test(u), 'expected a redis:// URL'),
  /** The service (of `services`) that runs redis-server: an RDB restore stops and starts it. */
  service: text.optional(),
  /** redis-server's `dir`, where an RDB restore puts the file. */
  dataDir: text.optional(),
  /** redis-server's `dbfilename`. @default "dump.rdb" */
  dbFilename: text.default('dump.rdb'),
});

/** `vars.app`: the application itself. */
const appSchema = z.strictObject({
  /** Its services (of `services`), in the order they start; they stop in reverse. */
  services: z.array(text).min(1),
  /** The health check (of `health`) that says the application is up. */
  health: text,
  /** Its status endpoint (`/api/status`), checked after a full recovery. */
  statusUrl: text.optional(),
  /** The migrations hook: a shell command run after the databases are back and before the application starts. */
  migrate: text.optional(),
});

/** `vars.hooks`: the operator's own commands for steps drkit cannot do for every platform. */
const hooksSchema = z.strictObject({
  /** Blocks all external traffic (e.g. `kubectl apply -f k8s/emergency/block-ingress.yaml`). */
  blockIngress: text.optional(),
  /** Lifts that block. */
  unblockIngress: text.optional(),
  /** Moves the wallet keys to cold storage, or whatever securing them means here. */
  secureKeys: text.optional(),
  /** Rotates every credential (API keys, database passwords, JWT secrets, cloud keys). */
  rotateSecrets: text.optional(),
  /** Redeploys a known-good version; `$DRKIT_KNOWN_GOOD` carries the version. */
  redeploy: text.optional(),
  /** Prints the audit and access logs since `$DRKIT_SINCE` for the breach report. */
  collectLogs: text.optional(),
});

/** The parts of the backup set, as the first plan lists them. */
// postgres-base (a physical base backup for point-in-time recovery) is taken only when a tier or
// vars.backup.components names it: it is worth having only with the server archiving its WAL.
export const BACKUP_COMPONENTS = ['postgres', 'postgres-base', 'redis', 'files', 'config', 'secrets'] as const;
/** One part of the backup set. */
export type BackupComponent = (typeof BACKUP_COMPONENTS)[number];

/** "90m", "24h", "7d": how old the newest backup of a kind may be. */
const ageText = text.regex(/^\d+(m|h|d)$/, 'a whole number of minutes, hours or days, e.g. "1h", "24h", "7d"');

/** The retention rules of s3-store (restic forget semantics), checked by the store when it prunes. */
const retentionRules = {
  keepLast: z.number().int().nonnegative().optional(),
  keepHourly: z.number().int().nonnegative().optional(),
  keepDaily: z.number().int().nonnegative().optional(),
  keepWeekly: z.number().int().nonnegative().optional(),
  keepMonthly: z.number().int().nonnegative().optional(),
  keepYearly: z.number().int().nonnegative().optional(),
  keepWithin: text.optional(),
};

/** One backup tier: when it runs (documentation for --plan and the schedulers) and what it takes. */
const tierSchema = z.strictObject({
  /** Its cron schedule, e.g. "0 2 * * *"; the scheduler (cron, a Kubernetes CronJob) runs `--tier <name>` then. */
  schedule: text.optional(),
  /** The components this tier takes. @default every configured component */
  components: z.array(z.enum(BACKUP_COMPONENTS)).min(1).optional(),
  /** Every file backup of this tier is full (the plan's weekly and monthly "full backup"). @default false for daily and hourly */
  fullFiles: z.boolean().optional(),
});

/**
 * `vars.backup`: what the backup runbook takes, how it is kept and the RPO it is held to.
 * Every field has the first plan's value as its default.
 */
const backupSchema = z.strictObject({
  /** What a backup set holds. @default every component the environment configures (postgres, redis, files, config, secrets) */
  components: z.array(z.enum(BACKUP_COMPONENTS)).min(1).optional(),
  /** Redis: the RDB snapshot, the logical export (with TTLs), or both as the plan says. @default "both" */
  redisMode: z.enum(['rdb', 'logical', 'both']).default('both'),
  /** The configuration files of the "config" component (docker-compose.yml, nginx.conf, k8s manifests…). */
  configFiles: z.array(text).default([]),
  /** Paths or globs under files.root left out of the files backup (caches, temp files). */
  filesExclude: z.array(text).default([]),
  /**
   * The tiers and their schedules. @default the first plan: daily 02:00, weekly Sunday 03:00
   * (full), monthly the 1st 04:00 (full); the second plan's hourly tier is one more entry.
   */
  tiers: z.partialRecord(z.enum(['hourly', 'daily', 'weekly', 'monthly', 'manual']), tierSchema).default({
    daily: { schedule: '0 2 * * *' },
    weekly: { schedule: '0 3 * * 0', fullFiles: true },
    monthly: { schedule: '0 4 1 * *', fullFiles: true },
  }),
  /**
   * Which backups to keep (s3-store's retention rules, per kind; `incremental` for incrementals).
   * @default the first plan: 7 daily, 4 weekly, 12 monthly
   */
  retention: z
    .strictObject({ ...retentionRules, incremental: z.strictObject(retentionRules).optional(), timeZone: text.optional() })
    .default({ keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }),
  /**
   * The RPO of each kind of backup: verify-backups fails when the newest complete one is older.
   * @default 24h for every kind (the first plan's RPO); the second plan's table gives user data 1h
   */
  rpo: z.record(text, ageText).default({}),
  /** The Prometheus textfile (node_exporter's textfile collector) verify-backups writes, e.g. /var/lib/node_exporter/drkit.prom. */
  metricsFile: text.optional(),
});

/**
 * `vars.drill.app`: how the DR drill starts the application against the scratch services it
 * restored. The command runs in the background with DRKIT_SCRATCH_DATABASE_URL,
 * DRKIT_SCRATCH_REDIS_URL, DRKIT_SCRATCH_FILES_DIR, DRKIT_SCRATCH_ENV_FILE, DRKIT_SCRATCH_PORT,
 * DRKIT_SCRATCH_PID_FILE, DRKIT_SCRATCH_LOG_FILE and DRKIT_SCRATCH_DIR set; it maps them to the application's own
 * settings and writes the process id to $DRKIT_SCRATCH_PID_FILE (the drill stops it by that).
 */
const drillAppSchema = z.strictObject({
  /** e.g. `DATABASE_URL="$DRKIT_SCRATCH_DATABASE_URL" PORT="$DRKIT_SCRATCH_PORT" node dist/server.js &` */
  start: text,
  /** Where the command runs. @default the drill's working directory */
  cwd: text.optional(),
  /** More environment for the command. */
  env: z.record(z.string(), z.string()).default({}),
  /** The health endpoint's path on http://127.0.0.1:$DRKIT_SCRATCH_PORT. @default "/health" */
  healthPath: text.default('/health'),
  /** The status endpoint's path, checked after the rebuild. */
  statusPath: text.optional(),
  /** The migrations hook against the scratch database (the same DRKIT_SCRATCH_* variables are set). */
  migrate: text.optional(),
});

/** `vars.drill`: the monthly DR drill's scratch environment. */
const drillSchema = z.strictObject({
  app: drillAppSchema.optional(),
  /** Where the scratch servers keep their data. @default the system's temp dir */
  scratchDir: text.optional(),
});

/** The platform section of an environment's `vars`. */
export const platformSchema = z.strictObject({
  /** The store (of `stores`) holding the backups. @default "backups" */
  backups: text.default('backups'),
  postgres: postgresSchema.optional(),
  redis: redisSchema.optional(),
  /** `vars.files.root`: the user files (uploads, generated audio, profiles) that are backed up. */
  files: z.strictObject({ root: text }).optional(),
  app: appSchema.optional(),
  /** The application's secrets file (`.env`), written with mode 0600 by a full recovery. */
  envFile: text.optional(),
  /** treasury-halt's Redis key prefix. @default the package's default */
  haltPrefix: text.optional(),
  hooks: hooksSchema.default({}),
  /** What the backup runbook takes and keeps, and the RPO verify-backups holds it to. */
  backup: backupSchema.prefault({}),
  /** How the DR drill brings the application up on scratch servers. */
  drill: drillSchema.optional(),
});

/** The validated platform section. */
export type Platform = z.output<typeof platformSchema>;

/** The secrets every recovery runbook declares. */
export const PLATFORM_SECRETS = {
  backupKey: {
    env: 'DRKIT_KEY',
    description: 'the backup key (or key file text, one key per line, the last one seals) that opens the backups',
  },
  databasePassword: { env: 'PGPASSWORD', optional: true, description: "the database user's password" },
  redisPassword: { env: 'REDISCLI_AUTH', optional: true, description: "Redis's AUTH password" },
} as const satisfies Record<string, SecretDeclaration>;

/** The inner key of the double-sealed secrets backup: runbooks that take or restore secrets declare it. */
export const SECRETS_KEY_SECRET = {
  env: 'DRKIT_SECRETS_KEY',
  description: 'the inner key of the double-sealed secrets backup',
} as const satisfies SecretDeclaration;

/**
 * The platform section of the environment's `vars`, validated. Runs in --plan too (it only
 * reads the config). A bad section is RUNBOOK_CONFIG_INVALID naming every bad field.
 */
export function platformOf(ctx: BaseContext<unknown>): Platform {
  const parsed = platformSchema.safeParse(ctx.config.vars);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `vars.${issue.path.join('.')}: ${issue.message}`);
  throw new RunbookError(
    'RUNBOOK_CONFIG_INVALID',
    `environment "${ctx.environment}": ${problems.join('; ')} (see runbooks/README.md for the vars the runbooks read)`,
  );
}

/** A section the runbook cannot do without; the error names the config field to add. */
export function required<K extends 'postgres' | 'redis' | 'files' | 'app' | 'envFile'>(
  ctx: BaseContext<unknown>,
  key: K,
): NonNullable<Platform[K]> {
  const value = platformOf(ctx)[key];
  if (value === undefined)
    throw new RunbookError(
      'RUNBOOK_CONFIG_INVALID',
      `environment "${ctx.environment}" has no vars.${key}: runbook "${ctx.runbook.id}" needs it (see runbooks/README.md)`,
    );
  return value as NonNullable<Platform[K]>;
}

/** The database URL with the databasePassword secret in it (never logged: the secret is redacted). */
export function databaseUrl(ctx: StepContext<unknown>, database?: string): string {
  const url = new URL(required(ctx, 'postgres').url);
  const password = ctx.optionalSecret('databasePassword');
  if (password !== undefined && url.password === '') url.password = encodeURIComponent(password);
  if (database !== undefined) url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** The database's name, from its URL. */
export function databaseName(ctx: BaseContext<unknown>): string {
  return decodeURIComponent(new URL(required(ctx, 'postgres').url).pathname.slice(1)) || 'postgres';
}

/** The Redis URL with the redisPassword secret in it. */
export function redisUrl(ctx: StepContext<unknown>): string {
  const url = new URL(required(ctx, 'redis').url);
  const password = ctx.optionalSecret('redisPassword');
  if (password !== undefined && url.password === '') url.password = encodeURIComponent(password);
  return url.toString();
}

/** The store URL(s) of the backups, as the config names them (safe to print: URLs carry no credentials). */
export function backupStoreUrl(ctx: BaseContext<unknown>): string {
  const name = platformOf(ctx).backups;
  const url = ctx.config.stores[name];
  if (url === undefined)
    throw new RunbookError(
      'RUNBOOK_CONFIG_INVALID',
      `environment "${ctx.environment}" has no stores.${name}: add the store URL of the backups (file:///var/backups/drkit or s3://bucket/prefix?region=...)`,
    );
  return url;
}

/** The backup keys from the backupKey secret: one key, or key-file text (older keys first, the last one seals). */
export function backupKeys(ctx: StepContext<unknown>): Keyring {
  return parseKeyFile(ctx.secret('backupKey'), 'the backupKey secret');
}

/** Says what a store event means for a recovery: a replica serving a read is worth knowing. */
function logStoreEvent(ctx: StepContext<unknown>, event: StoreEvent): void {
  if (event.type === 'replica-fallback')
    ctx.log.warn(
      `store ${event.failed} failed (${event.reason}); ${event.operation} of ${event.key} served by the replica ${event.servedBy}`,
    );
  else if (event.type === 'replica-failed')
    ctx.log.warn(`replica ${event.replica} failed ${event.operation} of ${event.key}: ${event.reason}`);
  else if (event.type === 'retry')
    ctx.log.debug(`${event.operation} on ${event.store}: retry ${event.attempt} in ${event.delayMs} ms (${event.reason})`);
}

/** An open catalog of the backups; close it when done (S3 clients hold sockets). */
export interface OpenCatalog {
  catalog: Catalog;
  store: Store;
  /** Store events seen so far (a replica serving reads shows here). */
  events: StoreEvent[];
  close(): Promise<void>;
}

/** Opens the catalog of the backups named by `vars.backups`. */
export function openBackups(ctx: StepContext<unknown>): OpenCatalog {
  const events: StoreEvent[] = [];
  const store = openStore(backupStoreUrl(ctx), {
    onEvent: (event) => {
      events.push(event);
      logStoreEvent(ctx, event);
    },
  });
  return { catalog: createCatalog(store), store, events, close: () => store.close() };
}

/** Runs `body` with the backups' catalog open, and closes it whatever happens. */
export async function withBackups<T>(ctx: StepContext<unknown>, body: (open: OpenCatalog) => Promise<T>): Promise<T> {
  const open = openBackups(ctx);
  try {
    return await body(open);
  } finally {
    await open.close().catch(() => {});
  }
}

/** Runs a hook command of `vars.hooks`, with `env` added; its output is logged (redacted). */
export async function runHook(
  ctx: StepContext<unknown>,
  name: keyof Platform['hooks'],
  env: Record<string, string> = {},
): Promise<{ ran: boolean; stdout: string }> {
  const command = platformOf(ctx).hooks[name];
  if (command === undefined) {
    ctx.log.warn(`no vars.hooks.${name} is configured: do this by hand and record it in the incident channel`);
    return { ran: false, stdout: '' };
  }
  const result = await ctx.shell.sh(command, { env });
  return { ran: true, stdout: result.stdout };
}

/** What a hook would run, for --plan. */
export function describeHook(ctx: BaseContext<unknown>, name: keyof Platform['hooks']): string {
  const command = platformOf(ctx).hooks[name];
  return command === undefined ? `no vars.hooks.${name} configured: the operator does it by hand` : `run hook ${name}: ${command}`;
}

/** The events every backup package emits: step messages, warnings and progress in bytes or keys. */
type PackageEvent =
  | { type: 'step'; message: string }
  | { type: 'warning'; message: string }
  | { type: 'progress'; bytes?: number; keys?: number; total?: number; totalBytes?: number; item?: string }
  | { type: string };

/**
 * A listener for a package's events that reports them as the step's log and progress, so
 * the runbook's terminal output and journal show what a long restore is doing.
 */
export function reportEvents(ctx: StepContext<unknown>): (event: PackageEvent) => void {
  return (event) => {
    if (event.type === 'step' && 'message' in event) ctx.log.info(event.message);
    else if (event.type === 'warning' && 'message' in event) ctx.log.warn(event.message);
    else if (event.type === 'progress') {
      const p = event as Extract<PackageEvent, { bytes?: number }>;
      const total = p.total ?? p.totalBytes;
      const [done, unit] =
        typeof p.bytes === 'number' ? [p.bytes, 'bytes'] : typeof p.keys === 'number' ? [p.keys, 'keys'] : [undefined, ''];
      if (done === undefined) return;
      ctx.progress({
        done,
        ...(total !== undefined && unit === 'bytes' ? { total } : {}),
        unit,
        ...(p.item !== undefined ? { message: p.item } : {}),
      });
    }
  };
}

/** How old a backup is, for people: "3h 12m". */
export function ageOf(createdAt: string | Date, now = Date.now()): string {
  const minutes = Math.max(0, Math.round((now - new Date(createdAt).getTime()) / 60_000));
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours}h ${minutes % 60}m` : `${Math.floor(hours / 24)}d ${hours % 24}h`;
}
