import type { OpenKeys } from '@drkit/crypto-stream';
import type { Catalog, Manifest } from '@drkit/s3-store';
import type { Redis } from 'ioredis';
import {
  fingerprintOf,
  type LogicalFingerprint,
  REDIS_LOGICAL_KIND,
  REDIS_RDB_KIND,
  readRedisBackup,
  resolveRedisBackup,
} from './archive.js';
import { connectRedis, type RedisTarget, redisTarget } from './connection.js';
import { messageOf, RedisBackupError, signalOf, throwIfAborted } from './errors.js';
import { createRdbChecker } from './rdb.js';
import { bytesOf, type KeyRecord, readLines } from './records.js';
import { datasetDigest, keyspaceOf, redisCommandError } from './server.js';

/** One way a server differs from a backup. */
export interface KeyDifference {
  db: number;
  /** The key as the export writes it (text, or base64 for a binary key). */
  key: string;
  problem: 'missing' | 'type' | 'expiry';
  expected: string;
  actual: string;
}

/** The result of {@link verifyRedisRestore}. */
export interface RedisRestoreCheck {
  ok: boolean;
  backup: Manifest;
  /** Keys of the backup that should exist now (their expiry has not passed). */
  expected: number;
  /** Keys of the backup whose expiry has passed since: absent by design, counted. */
  expired: number;
  /** Keys found with the right type and the exact expiry. */
  matched: number;
  /** First 50 differences; `differenceCount` counts them all. */
  differences: KeyDifference[];
  differenceCount: number;
  /** Per database: keys the backup says should be there now, those found, and DBSIZE. */
  databases: Record<string, { expected: number; present: number; dbsize: number }>;
  /** Keys in the server that the backup does not have (DBSIZE beyond the matched keys). */
  extra: number;
  /**
   * DEBUG DIGEST against the one recorded at backup time: "equal", "different", or why it was
   * not compared ("not-recorded", "unavailable" when DEBUG is refused, "not-comparable" when
   * keys expired or extra keys exist, which changes the digest legitimately).
   */
  digest: 'equal' | 'different' | 'not-recorded' | 'unavailable' | 'not-comparable';
}

/** Options of {@link verifyRedisRestore}. */
export interface VerifyRestoreOptions {
  url: string | RedisTarget;
  catalog: Catalog;
  /** A logical backup: id, "latest", or its manifest. */
  backup: string | Manifest;
  keys: OpenKeys;
  /** Keys compared per round trip. @default 1000 */
  batch?: number;
  /** The clock that decides which expiries have passed. @default Date.now */
  now?: () => number;
  signal?: AbortSignal;
}

/**
 * Compares a server with a logical backup, key by key: every key of the backup exists with its
 * type and its exact expiry (to the millisecond), except those whose expiry has passed since
 * (counted, not failures); DBSIZE of each database matches; and DEBUG DIGEST equals the one
 * recorded at backup time when it can be compared. Read-only.
 * @throws RedisBackupError REDIS_BACKUP_*, REDIS_WRONG_KEY, connection codes
 */
export async function verifyRedisRestore(options: VerifyRestoreOptions): Promise<RedisRestoreCheck> {
  const target = typeof options.url === 'string' ? redisTarget(options.url) : options.url;
  const manifest =
    typeof options.backup === 'string' ? await resolveRedisBackup(options.catalog, options.backup, REDIS_LOGICAL_KIND) : options.backup;
  const fingerprint = fingerprintOf(manifest, REDIS_LOGICAL_KIND);
  const now = options.now ?? Date.now;
  const batch = options.batch ?? 1000;
  const client = await connectRedis(target, { name: 'drkit-verify' });
  const result: RedisRestoreCheck = {
    ok: false,
    backup: manifest,
    expected: 0,
    expired: 0,
    matched: 0,
    differences: [],
    differenceCount: 0,
    databases: {},
    extra: 0,
    digest: 'not-recorded',
  };
  try {
    let db = -1;
    let pending: KeyRecord[] = [];
    const differ = (d: KeyDifference) => {
      result.differenceCount++;
      if (result.differences.length < 50) result.differences.push(d);
    };
    const check = async () => {
      if (pending.length === 0) return;
      const records = pending;
      pending = [];
      const pipe = client.pipeline();
      for (const r of records) {
        const key = bytesOf(r, r.key);
        pipe.type(key);
        pipe.call('PEXPIRETIME', key);
      }
      const replies = (await pipe.exec()) ?? [];
      for (const [i, r] of records.entries()) {
        const [typeError, type] = replies[2 * i] ?? [];
        const [expiryError, at] = replies[2 * i + 1] ?? [];
        if (typeError || expiryError) throw typeError ?? expiryError;
        const expired = r.expireAt !== undefined && r.expireAt <= now();
        if (expired && type === 'none') {
          result.expired++;
          continue;
        }
        result.expected++;
        const entry = result.databases[String(r.db)] ?? { expected: 0, present: 0, dbsize: 0 };
        entry.expected++;
        if (type !== 'none') entry.present++;
        result.databases[String(r.db)] = entry;
        const expectedAt = String(r.expireAt ?? -1);
        if (type === 'none') differ({ db: r.db, key: r.key, problem: 'missing', expected: r.type, actual: 'none' });
        else if (type !== r.type) differ({ db: r.db, key: r.key, problem: 'type', expected: r.type, actual: String(type) });
        else if (String(at) !== expectedAt) differ({ db: r.db, key: r.key, problem: 'expiry', expected: expectedAt, actual: String(at) });
        else result.matched++;
      }
    };
    const seen: number[] = [];
    for await (const line of readLines(readRedisBackup(options.catalog, manifest, options.keys, signalOf(options)))) {
      if (line.kind !== 'key' || line.record.cont) continue;
      const record = line.record;
      if (record.db !== db) {
        await check();
        await countDb(client, db, result);
        throwIfAborted(options.signal, 'the verification');
        await client.select(record.db);
        db = record.db;
        seen.push(db);
      }
      pending.push(record);
      if (pending.length >= batch) await check();
    }
    await check();
    await countDb(client, db, result);
    // Databases the backup does not have must be empty for the server to equal it.
    for (const [name, value] of Object.entries(await keyspaceOf(client))) if (!seen.includes(Number(name))) result.extra += value.keys;
    if (fingerprint.digest === undefined) result.digest = 'not-recorded';
    else if (result.expired > 0 || result.extra > 0) result.digest = 'not-comparable';
    else {
      const digest = await datasetDigest(client);
      result.digest = digest === undefined ? 'unavailable' : digest === fingerprint.digest ? 'equal' : 'different';
    }
    result.ok = result.differenceCount === 0 && result.extra === 0 && result.digest !== 'different';
    return result;
  } catch (error) {
    throw error instanceof RedisBackupError ? error : redisCommandError(target, 'verifying the restore', error);
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

async function countDb(client: Redis, db: number, result: RedisRestoreCheck): Promise<void> {
  if (db < 0) return;
  const entry = result.databases[String(db)] ?? { expected: 0, present: 0, dbsize: 0 };
  entry.dbsize = await client.dbsize();
  result.databases[String(db)] = entry;
  // Every key of the backup that was found is in DBSIZE; the rest are keys it does not have.
  result.extra += Math.max(0, entry.dbsize - entry.present);
}

/** The result of {@link verifyRedisBackup}. */
export interface RedisBackupCheck {
  ok: boolean;
  backup: Manifest;
  /** Level reached: 1 stored bytes match the manifest; 2 decrypted and decoded completely. */
  level: 1 | 2;
  /** What level 2 found: keys and records of an export, or an RDB's version and checksum. */
  detail: string;
  /** The failure, when not ok. */
  error?: RedisBackupError;
}

/**
 * Verifies a Redis backup without a server. Level 1: the stored bytes' size and SHA-256 match
 * the manifest. Level 2: it decrypts (every chunk authenticated) and decodes completely — an
 * export parses line by line, ends with its trailer and holds the keys its manifest says; an
 * RDB has its header, end marker and a matching CRC64. Level 3 is a restore:
 * {@link verifyRedisRestore} after restoreRedis into a scratch server.
 */
export async function verifyRedisBackup(options: {
  catalog: Catalog;
  backup: string | Manifest;
  /** Needed for level 2 (decryption); level 1 reads only the stored bytes. */
  keys?: OpenKeys;
  /** @default 2 */
  level?: 1 | 2;
  /** Record the outcome in the manifest (a failed backup is then skipped by "latest"). @default true */
  record?: boolean;
  signal?: AbortSignal;
}): Promise<RedisBackupCheck> {
  const check = await checkBackup(options);
  if (options.record !== false)
    await options.catalog.recordVerification(check.backup, {
      status: check.ok ? 'passed' : 'failed',
      at: new Date().toISOString(),
      level: `L${check.level}`,
      detail: check.detail.slice(0, 900),
    });
  return check;
}

async function checkBackup(options: Parameters<typeof verifyRedisBackup>[0]): Promise<RedisBackupCheck> {
  const manifest = typeof options.backup === 'string' ? await resolveRedisBackup(options.catalog, options.backup) : options.backup;
  const level = options.level ?? 2;
  const fail = (reached: 1 | 2, error: unknown): RedisBackupCheck => ({
    ok: false,
    backup: manifest,
    level: reached,
    detail: messageOf(error),
    error: error instanceof RedisBackupError ? error : new RedisBackupError('REDIS_BACKUP_TAMPERED', messageOf(error), { cause: error }),
  });
  const stored = await options.catalog.verify(manifest, signalOf(options));
  if (!stored.ok)
    return fail(
      1,
      new RedisBackupError(
        'REDIS_BACKUP_TAMPERED',
        `backup ${manifest.id}: the stored object is ${stored.size} bytes with SHA-256 ${stored.sha256.slice(0, 16)}..., the manifest says ${stored.expected.size} bytes with ${stored.expected.sha256.slice(0, 16)}...: it was altered`,
      ),
    );
  if (level === 1) return { ok: true, backup: manifest, level: 1, detail: `${stored.size} stored bytes match the manifest` };
  if (!options.keys) throw new RedisBackupError('REDIS_OPTIONS_INVALID', 'level 2 decrypts the backup: give the keys that open it');
  try {
    const plain = readRedisBackup(options.catalog, manifest, options.keys, signalOf(options));
    if (manifest.kind === REDIS_RDB_KIND) {
      const fingerprint = fingerprintOf(manifest, REDIS_RDB_KIND);
      const checker = createRdbChecker();
      for await (const chunk of plain) checker.update(chunk);
      const check = checker.finish();
      if (check.bytes !== fingerprint.bytes)
        throw new RedisBackupError(
          'REDIS_BACKUP_TAMPERED',
          `backup ${manifest.id} holds an RDB of ${check.bytes} bytes, its manifest says ${fingerprint.bytes}`,
        );
      return {
        ok: true,
        backup: manifest,
        level: 2,
        detail: `RDB version ${check.rdbVersion}, ${check.bytes} bytes, checksum ${check.checksum}`,
      };
    }
    const fingerprint: LogicalFingerprint = fingerprintOf(manifest, REDIS_LOGICAL_KIND);
    let keys = 0;
    let trailer: { keys: number; records: number } | undefined;
    for await (const line of readLines(plain)) {
      if (line.kind === 'key' && !line.record.cont) keys++;
      if (line.kind === 'trailer') trailer = line.trailer;
    }
    if (!trailer) throw new RedisBackupError('REDIS_BACKUP_INVALID', `backup ${manifest.id} ends without its last line: it is incomplete`);
    if (trailer.keys !== keys || keys !== fingerprint.keys)
      throw new RedisBackupError(
        'REDIS_BACKUP_INVALID',
        `backup ${manifest.id} holds ${keys} keys, its last line says ${trailer.keys} and its manifest ${fingerprint.keys}`,
      );
    return { ok: true, backup: manifest, level: 2, detail: `${keys} keys in ${trailer.records} records decrypted and decoded` };
  } catch (error) {
    return fail(2, error);
  }
}
