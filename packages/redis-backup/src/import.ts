import type { ChainableCommander, Redis } from 'ioredis';
import type { RedisTarget } from './connection.js';
import { RedisBackupError, throwIfAborted } from './errors.js';
import { bytesOf, type ExportHeader, type ExportLine, type ExportTrailer, type KeyRecord } from './records.js';
import { redisCommandError } from './server.js';

/** What to do with a key that already exists in the target. */
export type ExistingKeyPolicy = 'fail' | 'replace' | 'skip';

/** Options of {@link importRedis}. */
export interface ImportOptions {
  /** @default "fail" */
  policy?: ExistingKeyPolicy;
  /** Commands per pipeline. @default 1000 */
  batch?: number;
  signal?: AbortSignal;
  /** The clock that decides which expiries have passed. @default Date.now */
  now?: () => number;
  onProgress?: (progress: { keys: number; db: number }) => void;
}

/** What {@link importRedis} did. */
export interface ImportResult {
  header: ExportHeader;
  trailer: ExportTrailer;
  /** Keys written. */
  restored: number;
  /** Keys left as they were because they existed (policy "skip"). */
  skipped: number;
  /** Keys not written because their expiry passed before the restore reached them. */
  expired: number;
  /** Up to 20 of the expired keys (as text, or base64 for binary keys), for a report. */
  expiredSample: string[];
  /** Database → keys written to it. */
  databases: Record<string, number>;
}

const BUSY = /BUSYKEY/;
const PAYLOAD = /DUMP payload version or checksum are wrong|Bad data format/i;

/**
 * Writes an export's keys into a server: RESTORE … ABSTTL for exact records (so an expiry is
 * the very millisecond it was), typed writes for NDJSON records (and for the windowed large
 * keys of an exact export), stream state and consumer groups included. Pipelined.
 * With policy "fail" a key that exists stops the import with REDIS_KEYS_EXIST (callers that
 * must not write anything then check first, as restoreRedis does).
 * @throws RedisBackupError REDIS_KEYS_EXIST, REDIS_RDB_VERSION_TOO_NEW, REDIS_RESTORE_FAILED, REDIS_BACKUP_INVALID, REDIS_ABORTED
 */
export async function importRedis(
  client: Redis,
  target: RedisTarget,
  lines: AsyncIterable<ExportLine>,
  options: ImportOptions = {},
): Promise<ImportResult> {
  const policy = options.policy ?? 'fail';
  if (!['fail', 'replace', 'skip'].includes(policy))
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `policy must be fail, replace or skip, got ${JSON.stringify(policy)}`);
  const batch = options.batch ?? 1000;
  const now = options.now ?? Date.now;
  let header: ExportHeader | undefined;
  let trailer: ExportTrailer | undefined;
  const result = { restored: 0, skipped: 0, expired: 0, expiredSample: [] as string[], databases: {} as Record<string, number> };

  let db = -1;
  let records: KeyRecord[] = [];
  // The key whose records are being written, across batches (a large key spans many).
  let current: { id: string; db: number; write: boolean; expireAt?: number; entries: number } | undefined;
  const inFlight: Promise<void>[] = [];

  const countRestored = (record: KeyRecord) => {
    result.restored++;
    result.databases[String(record.db)] = (result.databases[String(record.db)] ?? 0) + 1;
  };
  const noteExpired = (record: KeyRecord) => {
    result.expired++;
    if (result.expiredSample.length < 20) result.expiredSample.push(record.key);
  };

  async function flush(): Promise<void> {
    if (records.length === 0) return;
    const todo = records;
    records = [];
    // Typed keys under "fail" or "skip": which of them exist decides what is written.
    const firsts = todo.filter((r) => !r.cont && r.dump === undefined);
    let exists = new Set<string>();
    if (policy !== 'replace' && firsts.length > 0) {
      const check = client.pipeline();
      for (const r of firsts) check.exists(bytesOf(r, r.key));
      const replies = await exec(check);
      exists = new Set(firsts.filter((_, i) => Number(replies[i]?.[1]) > 0).map((r) => r.key));
      if (policy === 'fail' && exists.size > 0) throw keysExist([...exists], target);
    }
    const pipe = client.pipeline();
    // Which command replies belong to which record: errors are reported by key.
    const owners: (KeyRecord | undefined)[] = [];
    const add = (record: KeyRecord | undefined, build: (p: ChainableCommander) => void) => {
      build(pipe);
      owners.push(record);
    };
    for (const record of todo) {
      const key = bytesOf(record, record.key);
      if (record.dump !== undefined) {
        if (record.expireAt !== undefined && record.expireAt <= now()) {
          noteExpired(record);
          // RESTORE … REPLACE of an expired key deletes what is there; say the same without it.
          if (policy === 'replace') add(undefined, (p) => p.del(key));
          continue;
        }
        const args: (string | Buffer | number)[] = [key, record.expireAt ?? 0, Buffer.from(record.dump, 'base64'), 'ABSTTL'];
        if (policy === 'replace') args.push('REPLACE');
        add(record, (p) => p.call('RESTORE', ...args));
        countRestored(record);
        continue;
      }
      if (!record.cont) {
        const expired = record.expireAt !== undefined && record.expireAt <= now();
        const skip = exists.has(record.key) && policy === 'skip';
        current = {
          id: key.toString('hex'),
          db: record.db,
          write: !expired && !skip,
          entries: 0,
          ...(record.expireAt !== undefined ? { expireAt: record.expireAt } : {}),
        };
        if (expired) {
          noteExpired(record);
          if (policy === 'replace') add(undefined, (p) => p.del(key));
        } else if (skip) result.skipped++;
        else {
          if (policy === 'replace') add(undefined, (p) => p.del(key));
          countRestored(record);
        }
      } else if (!current || current.id !== key.toString('hex') || current.db !== record.db) {
        throw new RedisBackupError('REDIS_BACKUP_INVALID', `the export continues key ${record.key} that it never started: it is damaged`);
      }
      if (!current?.write) continue;
      typedWrites(record, key, current, (build) => add(record, build));
      if (!record.more && current.expireAt !== undefined) {
        const at = current.expireAt;
        add(record, (p) => p.pexpireat(key, at));
      }
    }
    inFlight.push(
      exec(pipe).then((replies) => {
        replies.forEach(([error], i) => {
          if (!error) return;
          const owner = owners[i];
          if (BUSY.test(error.message)) {
            if (policy === 'fail') throw keysExist([owner?.key ?? '?'], target);
            result.skipped++;
            result.restored--;
            if (owner) result.databases[String(owner.db)] = (result.databases[String(owner.db)] ?? 1) - 1;
            return;
          }
          if (PAYLOAD.test(error.message))
            throw new RedisBackupError(
              'REDIS_RDB_VERSION_TOO_NEW',
              `${target.description} cannot read the DUMP payload of key ${owner?.key} (${error.message}): the backup comes from a newer Redis (${header?.redisVersion}). Restore the NDJSON export instead, or into a server at least as new`,
              { cause: error },
            );
          throw new RedisBackupError(
            'REDIS_RESTORE_FAILED',
            `writing key ${owner?.key ?? '?'} (db ${owner?.db ?? db}) to ${target.description} failed: ${error.message}`,
            {
              cause: error,
            },
          );
        });
      }),
    );
    // Two pipelines in flight: the next batch is built while the server works on this one.
    if (inFlight.length >= 2) await inFlight.shift();
  }

  try {
    for await (const line of lines) {
      if (line.kind === 'header') {
        header = line.header;
        continue;
      }
      if (!header) throw new RedisBackupError('REDIS_BACKUP_INVALID', 'the export has no header line: it is not a drkit Redis export');
      if (line.kind === 'trailer') {
        trailer = line.trailer;
        continue;
      }
      if (trailer) throw new RedisBackupError('REDIS_BACKUP_INVALID', 'the export has keys after its last line: it is damaged');
      const record = line.record;
      if (record.db !== db) {
        await flush();
        await Promise.all(inFlight.splice(0));
        throwIfAborted(options.signal, 'the restore');
        await client.select(record.db);
        db = record.db;
      }
      records.push(record);
      if (records.length >= batch) {
        await flush();
        throwIfAborted(options.signal, 'the restore');
        options.onProgress?.({ keys: result.restored, db });
      }
    }
    await flush();
    await Promise.all(inFlight.splice(0));
  } catch (error) {
    await Promise.allSettled(inFlight.splice(0));
    throw error instanceof RedisBackupError ? error : redisCommandError(target, 'restoring keys', error);
  }
  if (!header || !trailer)
    throw new RedisBackupError(
      'REDIS_BACKUP_INVALID',
      'the export ends without its last line: it was cut. Nothing after the last complete batch was written; use another backup',
    );
  options.onProgress?.({ keys: result.restored, db });
  return { header, trailer, ...result };
}

/** The commands that recreate one typed record. */
function typedWrites(
  record: KeyRecord,
  key: Buffer,
  current: { entries: number },
  add: (build: (p: ChainableCommander) => void) => void,
): void {
  const b = (text: string) => bytesOf(record, text);
  switch (record.type) {
    case 'string':
      add((p) => (record.cont ? p.append(key, b(record.value ?? '')) : p.set(key, b(record.value ?? ''))));
      break;
    case 'hash':
      if (record.fields?.length) add((p) => p.hset(key, ...(record.fields ?? []).flatMap(([f, v]) => [b(f), b(v)])));
      break;
    case 'list':
      if (record.items?.length) add((p) => p.rpush(key, ...(record.items ?? []).map(b)));
      break;
    case 'set':
      if (record.members?.length) add((p) => p.sadd(key, ...(record.members ?? []).map(b)));
      break;
    case 'zset':
      // Scores travel as the server printed them: ZADD parses "inf" and 17-digit values exactly.
      if (record.scores?.length) add((p) => p.call('ZADD', key, ...(record.scores ?? []).flatMap(([m, s]) => [s, b(m)])));
      break;
    case 'stream': {
      for (const [id, fields] of record.entries ?? []) {
        current.entries++;
        add((p) => p.call('XADD', key, id, ...fields.map(b)));
      }
      if (record.more) break;
      const meta = record.stream;
      if (current.entries === 0) {
        // An empty stream still exists in Redis: create it without entries.
        add((p) => p.call('XGROUP', 'CREATE', key, 'drkit-restore', '0', 'MKSTREAM'));
        add((p) => p.call('XGROUP', 'DESTROY', key, 'drkit-restore'));
      }
      if (meta) add((p) => p.call('XSETID', key, meta.lastId, 'ENTRIESADDED', meta.entriesAdded, 'MAXDELETEDID', meta.maxDeletedId));
      for (const group of record.groups ?? []) {
        const read = group.entriesRead === null ? [] : ['ENTRIESREAD', group.entriesRead];
        add((p) => p.call('XGROUP', 'CREATE', key, group.name, group.lastDeliveredId, ...read));
        for (const consumer of group.consumers) add((p) => p.call('XGROUP', 'CREATECONSUMER', key, group.name, consumer));
        for (const [id, consumer, idle, count] of group.pending)
          add((p) => p.call('XCLAIM', key, group.name, consumer, 0, id, 'IDLE', idle, 'RETRYCOUNT', count, 'FORCE', 'JUSTID'));
      }
      break;
    }
  }
}

async function exec(pipe: ChainableCommander): Promise<[Error | null, unknown][]> {
  const replies = await pipe.exec();
  if (!replies) throw new Error('the pipeline was not executed');
  return replies;
}

/** REDIS_KEYS_EXIST naming some of the keys. */
export function keysExist(keys: string[], target: RedisTarget, total = keys.length): RedisBackupError {
  const shown = keys.slice(0, 10).join(', ');
  return new RedisBackupError(
    'REDIS_KEYS_EXIST',
    `${total} key(s) of the backup already exist in ${target.description} (${shown}${total > 10 ? ', ...' : ''}): nothing was written. Choose --policy replace or skip, or --flush to empty the server first`,
    { details: { keys: keys.slice(0, 100), total } },
  );
}
