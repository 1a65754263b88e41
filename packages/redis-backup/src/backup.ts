import { type Compression, seal, sealingKeyId } from '@drkit/crypto-stream';
import type { Catalog, Manifest, Tier } from '@drkit/s3-store';
import { type LogicalFingerprint, type RdbFingerprint, REDIS_LOGICAL_KIND, REDIS_RDB_KIND, type SealKeys } from './archive.js';
import { type RedisTarget, redisTarget } from './connection.js';
import { isRedisBackupError, RedisBackupError, signalOf, throwIfAborted } from './errors.js';
import { emitter, type RedisBackupEventListener, throttle } from './events.js';
import { type ExportOptions, exportRedis } from './export.js';
import { createRdbChecker, maxRdbVersionFor } from './rdb.js';
import type { ExportEncoding } from './records.js';
import { openRdbStream, replicationSettings } from './replication.js';
import { openResp, type RespConnection } from './resp.js';
import { datasetDigest, keyspaceOf, serverVersion } from './server.js';

/** What to back up: the RDB file, a logical export, or both (the plan's "RDB snapshot + JSON export"). */
export type BackupMode = 'rdb' | 'logical' | 'both';

/** Options of {@link backupRedis}. */
export interface BackupRedisOptions {
  /** `redis://[user:password@]host:6379`, `rediss://` or `unix:///path.sock`, or a parsed target. */
  url: string | RedisTarget;
  catalog: Catalog;
  keys: SealKeys;
  /** @default "both" */
  mode?: BackupMode;
  /** The logical export's encoding. @default "exact" */
  encoding?: ExportEncoding;
  /** Compression inside the sealed stream. @default logical: zstd; RDB: none (its strings are already LZF-compressed) */
  compression?: { logical?: Compression; rdb?: Compression };
  /**
   * Level of that compression: zstd 1–19, gzip 1–9. @default logical zstd: 1
   * ({@link DEFAULT_LOGICAL_ZSTD_LEVEL}); otherwise the compression's own default (zstd 3, gzip 6)
   */
  compressLevel?: { logical?: number; rdb?: number };
  /** Record DEBUG DIGEST with a logical export (it blocks the server for about 1 s per million keys). @default "auto": up to 100,000 keys */
  digest?: boolean | 'auto';
  /** Tuning of the logical export (batch, windows, scripting). */
  export?: Pick<ExportOptions, 'batch' | 'windowElements' | 'windowBytes' | 'scripting'>;
  tier?: Tier;
  environment?: string;
  labels?: Record<string, string>;
  /** No byte from the server for this long during an RDB pull → REDIS_TIMEOUT. @default 60000 */
  rdbTimeoutMs?: number;
  signal?: AbortSignal;
  onEvent?: RedisBackupEventListener;
}

/** What {@link backupRedis} stored. */
export interface RedisBackup {
  rdb?: Manifest;
  logical?: Manifest;
  /** Why an RDB was asked for but a logical export was made instead (SYNC refused). */
  fallback?: string;
  warnings: string[];
}

const DIGEST_AUTO_MAX_KEYS = 100_000;

/**
 * zstd level of the logical export unless the caller picks one. An exact export is mostly
 * base64 of DUMP payloads, which the RDB encoding has already made compact: on a million-key
 * dataset (386 MB of lines) level 3 stored 5% less than level 1 for 2.2 times the CPU (2.2 s
 * against 1.0 s), on a machine where that CPU is taken from the server being exported.
 */
export const DEFAULT_LOGICAL_ZSTD_LEVEL = 1;

/** The level to seal with, checked before anything is connected; undefined: the compression's default. */
function levelOf(compression: Compression, level: number | undefined, which: 'logical' | 'rdb'): number | undefined {
  if (!['none', 'gzip', 'zstd'].includes(compression))
    throw new RedisBackupError(
      'REDIS_OPTIONS_INVALID',
      `compression.${which} must be none, gzip or zstd, got ${JSON.stringify(compression)}`,
    );
  if (compression === 'none') {
    if (level !== undefined)
      throw new RedisBackupError('REDIS_OPTIONS_INVALID', `compressLevel.${which} was given, but the ${which} backup is not compressed`);
    return undefined;
  }
  const max = compression === 'zstd' ? 19 : 9;
  if (level !== undefined && !(Number.isInteger(level) && level >= 1 && level <= max))
    throw new RedisBackupError(
      'REDIS_OPTIONS_INVALID',
      `compressLevel.${which} for ${compression} must be an integer from 1 to ${max}, got ${level}`,
    );
  return level ?? (which === 'logical' && compression === 'zstd' ? DEFAULT_LOGICAL_ZSTD_LEVEL : undefined);
}

/**
 * Backs up a Redis server into a catalog: an RDB pulled over the replication protocol (one
 * instant of the whole dataset, exactly as the server saves it), and/or a logical export of
 * every database with absolute expiries. Both are sealed (AES-256-GCM) on the way, checked
 * (the RDB's own CRC64, the export's last line) and recorded manifest-last. When the server
 * refuses SYNC (managed services), an RDB backup falls back to the logical export and says so.
 * @throws RedisBackupError (connection codes), REDIS_PROTOCOL_ERROR, REDIS_RDB_INVALID, REDIS_TIMEOUT, REDIS_ABORTED, REDIS_OPTIONS_INVALID
 */
export async function backupRedis(options: BackupRedisOptions): Promise<RedisBackup> {
  const target = typeof options.url === 'string' ? redisTarget(options.url) : options.url;
  const mode = options.mode ?? 'both';
  if (!['rdb', 'logical', 'both'].includes(mode))
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `mode must be rdb, logical or both, got ${JSON.stringify(mode)}`);
  // Checked before anything is connected.
  const levels = {
    logical: levelOf(options.compression?.logical ?? 'zstd', options.compressLevel?.logical, 'logical'),
    rdb: levelOf(options.compression?.rdb ?? 'none', options.compressLevel?.rdb, 'rdb'),
  };
  const emit = emitter(options.onEvent);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    emit({ type: 'warning', message });
  };
  throwIfAborted(options.signal, 'the backup');
  emit({ type: 'step', step: 'connect', message: `connecting to ${target.description}` });
  // The package's own connection, not ioredis: a backup then never loads a general client.
  const client = await openResp(target, { name: 'drkit-backup' });
  try {
    const version = await serverVersion(client);
    const common = {
      tier: options.tier ?? 'manual',
      source: {
        description: target.description,
        host: target.path ?? target.host,
        ...(options.environment ? { environment: options.environment } : {}),
      },
      tool: { name: 'drkit', version: DRKIT_VERSION },
      server: { name: 'Redis', version },
      encryption: { format: 'drkit-sealed/1' as const, algorithm: 'aes-256-gcm' as const, keyId: sealingKeyId(options.keys) },
      ...signalOf(options),
    };
    const result: RedisBackup = { warnings };
    let logical = mode !== 'rdb';
    if (mode !== 'logical') {
      try {
        result.rdb = await backupRdb(options, target, client, version, common, levels.rdb, emit, warn);
      } catch (error) {
        if (!isRedisBackupError(error, 'REDIS_SYNC_REFUSED')) throw error;
        result.fallback = error.message;
        warn(
          `no RDB backup: ${target.description} refused SYNC (${String(error.details.reply ?? error.message)}); a logical export is made instead`,
        );
        logical = true;
      }
    }
    if (logical) result.logical = await backupLogical(options, target, client, version, common, levels.logical, emit, warn, result.rdb);
    return result;
  } catch (error) {
    if (options.signal?.aborted && !isRedisBackupError(error, 'REDIS_ABORTED'))
      throw new RedisBackupError('REDIS_ABORTED', `the backup of ${target.description} was aborted; no backup was recorded`, {
        cause: error,
      });
    // The store reports a failed source as its own I/O error: the Redis failure is the news.
    throw ownCause(error) ?? error;
  } finally {
    await client.close();
  }
}

/** The first RedisBackupError in an error's cause chain (a store wraps its source's failure). */
function ownCause(error: unknown): RedisBackupError | undefined {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++)
    if (e instanceof RedisBackupError) return e;
  return undefined;
}

/** The drkit version recorded in manifests. */
export const DRKIT_VERSION = '0.1.0';

type Common = Omit<Parameters<Catalog['put']>[0], 'kind' | 'compression' | 'body'>;
type Emit = ReturnType<typeof emitter>;

async function backupRdb(
  options: BackupRedisOptions,
  target: RedisTarget,
  client: RespConnection,
  version: string,
  common: Common,
  /** The compression level to seal with (see levelOf). */
  level: number | undefined,
  emit: Emit,
  warn: (m: string) => void,
): Promise<Manifest> {
  const settings = await replicationSettings(client);
  if (settings.warning) warn(settings.warning);
  const keyspace = await keyspaceOf(client);
  emit({ type: 'step', step: 'sync', message: `asking ${target.description} for its RDB (SYNC over the replication protocol)` });
  let waited = false;
  const stream = await openRdbStream(target, {
    ...signalOf(options),
    ...(options.rdbTimeoutMs !== undefined ? { timeoutMs: options.rdbTimeoutMs } : {}),
    onWaiting: () => {
      if (!waited)
        emit({ type: 'step', step: 'sync-wait', message: 'the server is preparing the RDB (fork, or repl-diskless-sync-delay)' });
      waited = true;
    },
  });
  emit({
    type: 'step',
    step: 'rdb',
    message: `receiving the RDB (${stream.framing === 'length' ? `${stream.size} bytes` : 'diskless, size unknown until the end'})`,
  });
  const checker = createRdbChecker();
  const due = throttle();
  let bytes = 0;
  async function* checked(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of stream.chunks) {
        checker.update(chunk);
        bytes += chunk.length;
        if (due()) emit({ type: 'progress', operation: 'rdb', bytes, ...(stream.size !== undefined ? { total: stream.size } : {}) });
        yield chunk;
      }
    } finally {
      stream.close();
    }
  }
  const compression = options.compression?.rdb ?? 'none';
  let fingerprint: RdbFingerprint | undefined;
  const manifest = await options.catalog.put({
    ...common,
    kind: REDIS_RDB_KIND,
    compression,
    body: seal(checked(), { key: options.keys, compression, ...(level !== undefined ? { level } : {}), ...signalOf(options) }),
    beforeManifest: async () => {
      const check = checker.finish();
      fingerprint = {
        redisVersion: version,
        rdbVersion: check.rdbVersion,
        framing: stream.framing,
        checksum: check.checksum,
        bytes: check.bytes,
        keyspace,
      };
      return { plainSize: check.bytes, fingerprint: fingerprint as unknown as Record<string, unknown>, labels: { ...options.labels } };
    },
  });
  emit({ type: 'progress', operation: 'rdb', bytes });
  emit({
    type: 'step',
    step: 'stored',
    message: `stored RDB backup ${manifest.id}: ${bytes} bytes, RDB version ${fingerprint?.rdbVersion}, checksum ${fingerprint?.checksum}`,
  });
  return manifest;
}

async function backupLogical(
  options: BackupRedisOptions,
  target: RedisTarget,
  client: RespConnection,
  version: string,
  common: Common,
  /** The compression level to seal with (see levelOf). */
  level: number | undefined,
  emit: Emit,
  warn: (m: string) => void,
  rdb: Manifest | undefined,
): Promise<Manifest> {
  const encoding = options.encoding ?? 'exact';
  const keyspace = await keyspaceOf(client);
  const total = Object.values(keyspace).reduce((n, db) => n + db.keys, 0);
  const wantDigest = options.digest === 'auto' || options.digest === undefined ? total <= DIGEST_AUTO_MAX_KEYS : options.digest;
  const before = wantDigest ? await datasetDigest(client) : undefined;
  emit({ type: 'step', step: 'export', message: `exporting ${total} keys of ${Object.keys(keyspace).length} database(s) (${encoding})` });
  const due = throttle();
  let done = 0;
  let lastDb = -1;
  const exported = exportRedis(target, {
    encoding,
    ...options.export,
    ...signalOf(options),
    onWarning: warn,
    onProgress: ({ db, keys }) => {
      if (db !== lastDb) {
        if (lastDb >= 0) done += keyspace[String(lastDb)]?.keys ?? 0;
        lastDb = db;
      }
      if (due()) emit({ type: 'progress', operation: 'export', keys: done + keys, total, db });
    },
  });
  const compression = options.compression?.logical ?? 'zstd';
  let plainSize = 0;
  let fingerprint: LogicalFingerprint | undefined;
  const manifest = await options.catalog.put({
    ...common,
    kind: REDIS_LOGICAL_KIND,
    compression,
    body: seal(exported.chunks, {
      key: options.keys,
      compression,
      ...(level !== undefined ? { level } : {}),
      ...signalOf(options),
      onProgress: (p) => {
        plainSize = p.plainBytes;
      },
    }),
    beforeManifest: async () => {
      const { header, trailer } = exported.summary();
      const after = before === undefined ? undefined : await datasetDigest(client);
      if (before !== undefined && after !== before)
        warn('the data changed while it was exported: no DEBUG DIGEST is recorded (verification compares keys, types and expiries)');
      const rdbVersion = encoding === 'exact' ? maxRdbVersionFor(version) : undefined;
      fingerprint = {
        encoding,
        redisVersion: version,
        ...(rdbVersion !== undefined ? { rdbVersion } : {}),
        expiry: header.expiry,
        keys: trailer.keys,
        databases: trailer.databases,
        expires: trailer.expires,
        startedAt: header.startedAt,
        finishedAt: trailer.finishedAt,
        ...(before !== undefined && before === after ? { digest: before } : {}),
      };
      return {
        plainSize,
        fingerprint: fingerprint as unknown as Record<string, unknown>,
        labels: { encoding, ...(rdb ? { rdb: rdb.id } : {}), ...options.labels },
      };
    },
  });
  emit({ type: 'progress', operation: 'export', keys: fingerprint?.keys ?? 0, total });
  emit({
    type: 'step',
    step: 'stored',
    message: `stored logical backup ${manifest.id}: ${fingerprint?.keys} keys, ${plainSize} bytes exported, ${manifest.object.size} stored`,
  });
  return manifest;
}
