import { periodicFullCollector } from '@drkit/crypto-stream';
import type { RedisTarget } from './connection.js';
import { RedisBackupError, throwIfAborted } from './errors.js';
import {
  type ExactFields,
  type ExportHeader,
  type ExportLine,
  type ExportTrailer,
  exactFields,
  type KeyRecord,
  LineBatch,
  textOf,
} from './records.js';
import { Base64Arg, openResp, parseReplies, type RespArg, RespBatch, type RespConnection, RespError, type RespReply } from './resp.js';
import { redisCommandError } from './server.js';

/** What to do with a key that already exists in the target. */
export type ExistingKeyPolicy = 'fail' | 'replace' | 'skip';

/** Options of {@link importRedis}. */
export interface ImportOptions {
  /** @default "fail" */
  policy?: ExistingKeyPolicy;
  /** Keys per pipelined batch. @default 1000 */
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
 * Batches sent and not yet answered: the next batch is encoded while the server runs these.
 * Four rather than two keeps the server busy through the pauses of this side (measured on a
 * 200k-key exact restore: ~10% faster; each batch is ~350 KB).
 */
const IN_FLIGHT = 4;

/** The key a command writes, for messages about its reply. */
interface Owner {
  key: string;
  db: number;
}

/** A RESTORE written from an export line in place: its key and database are read back from the batch's bytes if its reply is an error. */
const IN_BATCH = 1;

/** A record's key as a command argument: its text, or its bytes when the export wrote base64. */
function keyArg(record: KeyRecord): RespArg {
  return record.b64 ? new Base64Arg(record.key) : record.key;
}

/** A record's string (member, field, value) as a command argument. */
function valueArg(record: KeyRecord, text: string): RespArg {
  return record.b64 ? new Base64Arg(text) : text;
}

/**
 * Writes an export's keys into a server: RESTORE … ABSTTL for exact records (so an expiry is
 * the very millisecond it was), typed writes for NDJSON records (and for the windowed large
 * keys of an exact export), stream state and consumer groups included. Pipelined over a
 * connection of its own, batch by batch, several batches in flight. `lines` may come one by
 * one ({@link readLines}) or a piece of the export at a time ({@link readLineBatches}: a
 * restore of millions of keys then awaits once per piece instead of once per key).
 * With policy "fail" a key that exists stops the import with REDIS_KEYS_EXIST (callers that
 * must not write anything then check first, as restoreRedis does).
 * @throws RedisBackupError REDIS_KEYS_EXIST, REDIS_RDB_VERSION_TOO_NEW, REDIS_RESTORE_FAILED, REDIS_BACKUP_INVALID, REDIS_ABORTED,
 * and the connection codes
 */
export async function importRedis(
  target: RedisTarget,
  lines: AsyncIterable<ExportLine | LineBatch>,
  options: ImportOptions = {},
): Promise<ImportResult> {
  const policy = options.policy ?? 'fail';
  if (!['fail', 'replace', 'skip'].includes(policy))
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `policy must be fail, replace or skip, got ${JSON.stringify(policy)}`);
  const batch = options.batch ?? 1000;
  if (!Number.isSafeInteger(batch) || batch < 1)
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `batch must be a positive integer, got ${batch}`);
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
  const noteExpired = (record: { key: string }) => {
    result.expired++;
    if (result.expiredSample.length < 20) result.expiredSample.push(record.key);
  };
  // The key's bytes: each window of a large key chooses text or base64 for itself.
  const recordId = (record: KeyRecord) => Buffer.from(record.key, record.b64 ? 'base64' : 'utf8').toString('latin1');

  // Parsed records and their strings outlive young collections; see exportRedis. Exact
  // records read in place make none: the collector runs only after typed records.
  const collect = periodicFullCollector();
  const conn: RespConnection = await openResp(target, { name: 'drkit-restore' });

  // The batch being built, and which key each of its commands belongs to (errors are
  // reported by key). Commands reach the server in the order they are added. Answered
  // batches are used again: a new 256 KB buffer per thousand keys only feeds the collector.
  const spare: RespBatch[] = [];
  let pipe = new RespBatch();
  let pipeDb = db;
  let owners: (Owner | typeof IN_BATCH | undefined)[] = [];
  const add = (owner: Owner | undefined, args: RespArg[]) => {
    pipe.command(args);
    owners.push(owner);
  };
  const send = () => {
    if (pipe.count === 0) return;
    const sent = { batch: pipe, owners, db: pipeDb };
    inFlight.push(
      conn.exec(pipe).then((replies) => {
        failOn(replies, sent);
        spare.push(sent.batch.reset());
      }),
    );
    pipe = spare.pop() ?? new RespBatch();
    pipeDb = db;
    owners = [];
  };
  /** Sends the batch; the next one is built while the server works on this one and the one before. */
  const sendAndWait = async () => {
    send();
    while (inFlight.length >= IN_FLIGHT) await inFlight.shift();
  };

  /** Queues the RESTORE of an exact record, or (policy "replace") the DEL of one whose expiry passed. */
  const restoreDump = (record: KeyRecord, dump: string) => {
    if (record.expireAt !== undefined && record.expireAt <= now()) {
      noteExpired(record);
      // RESTORE … REPLACE of an expired key deletes what is there; say the same without it.
      if (policy === 'replace') add(undefined, ['DEL', keyArg(record)]);
      return;
    }
    pipe.restore(record.key, record.b64 === true, record.expireAt ?? 0, dump, policy === 'replace');
    // The key and database alone: holding the record would keep its payload text alive until
    // the reply, long enough for every one of them to be copied into the old generation.
    owners.push({ key: record.key, db: record.db });
    countRestored(record);
  };

  /** Queues the RESTORE of an exact record read in place (see restoreDump). */
  const restoreInPlace = (data: Buffer, f: ExactFields) => {
    if (f.expireAt > 0 && f.expireAt <= now()) {
      const key = data.toString('utf8', f.keyStart, f.keyEnd);
      noteExpired({ key });
      if (policy === 'replace') add(undefined, ['DEL', f.b64 ? new Base64Arg(key) : key]);
      return;
    }
    pipe.restoreFrom(
      data,
      { start: f.keyStart, end: f.keyEnd, base64: f.b64 },
      f.expireAt,
      { start: f.dumpStart, end: f.dumpEnd },
      policy === 'replace',
    );
    owners.push(IN_BATCH);
    result.restored++;
    result.databases[String(f.db)] = (result.databases[String(f.db)] ?? 0) + 1;
  };

  async function flush(): Promise<void> {
    const todo = records;
    records = [];
    // Typed keys under "fail" or "skip": which of them exist decides what is written.
    const firsts = todo.filter((r) => !r.cont && r.dump === undefined);
    let exists = new Set<string>();
    if (policy !== 'replace' && firsts.length > 0) {
      // What is queued (a SELECT) must reach the server before the check.
      send();
      const check = new RespBatch();
      for (const r of firsts) check.command(['EXISTS', keyArg(r)]);
      const replies = await conn.exec(check);
      exists = new Set(firsts.filter((_, i) => Number(replies[i]) > 0).map(recordId));
      if (policy === 'fail' && exists.size > 0)
        throw keysExist(
          firsts.filter((r) => exists.has(recordId(r))).map((r) => r.key),
          target,
        );
    }
    for (const record of todo) {
      if (record.dump !== undefined) {
        restoreDump(record, record.dump);
        continue;
      }
      const id = recordId(record);
      if (!record.cont) {
        const expired = record.expireAt !== undefined && record.expireAt <= now();
        const skip = exists.has(id) && policy === 'skip';
        current = {
          id,
          db: record.db,
          write: !expired && !skip,
          entries: 0,
          ...(record.expireAt !== undefined ? { expireAt: record.expireAt } : {}),
        };
        if (expired) {
          noteExpired(record);
          if (policy === 'replace') add(undefined, ['DEL', keyArg(record)]);
        } else if (skip) result.skipped++;
        else {
          if (policy === 'replace') add(undefined, ['DEL', keyArg(record)]);
          countRestored(record);
        }
      } else if (!current || current.id !== id || current.db !== record.db) {
        throw new RedisBackupError('REDIS_BACKUP_INVALID', `the export continues key ${record.key} that it never started: it is damaged`);
      }
      if (!current?.write) continue;
      typedWrites(record, current, (args) => add(record, args));
      if (!record.more && current.expireAt !== undefined) add(record, ['PEXPIREAT', keyArg(record), current.expireAt]);
    }
    await sendAndWait();
  }

  /** Turns the error replies of a batch into the restore's outcome: counted, or thrown. */
  function failOn(replies: RespReply[], sent: { batch: RespBatch; owners: (Owner | typeof IN_BATCH | undefined)[]; db: number }): void {
    let commands: RespReply[] | undefined;
    for (let i = 0; i < replies.length; i++) {
      const error = replies[i];
      if (!(error instanceof RespError)) continue;
      let owner = sent.owners[i];
      if (owner === IN_BATCH) {
        commands ??= parseReplies(sent.batch.take(), sent.batch.count);
        owner = ownerInBatch(commands, i, sent.db);
      }
      if (BUSY.test(error.message)) {
        if (policy === 'fail') throw keysExist([owner?.key ?? '?'], target);
        result.skipped++;
        result.restored--;
        if (owner) result.databases[String(owner.db)] = (result.databases[String(owner.db)] ?? 1) - 1;
        continue;
      }
      if (PAYLOAD.test(error.message))
        throw new RedisBackupError(
          'REDIS_RDB_VERSION_TOO_NEW',
          `${target.description} cannot read the DUMP payload of key ${owner?.key} (${error.message}): the backup comes from a newer Redis (${header?.redisVersion}). Restore the NDJSON export instead, or into a server at least as new`,
          { cause: error },
        );
      throw new RedisBackupError(
        'REDIS_RESTORE_FAILED',
        `${owner ? `writing key ${owner.key} (db ${owner.db})` : 'a restore command'} to ${target.description} failed: ${error.message}`,
        { cause: error },
      );
    }
  }

  /** One parsed line; a promise only when it had to wait for the server. */
  const take = (line: ExportLine): Promise<void> | undefined => {
    if (line.kind === 'header') {
      header = line.header;
      return;
    }
    if (!header) throw new RedisBackupError('REDIS_BACKUP_INVALID', 'the export has no header line: it is not a drkit Redis export');
    if (line.kind === 'trailer') {
      trailer = line.trailer;
      return;
    }
    if (trailer) throw new RedisBackupError('REDIS_BACKUP_INVALID', 'the export has keys after its last line: it is damaged');
    const record = line.record;
    if (record.db !== db) return switchDb(record.db).then(() => take(line));
    // An exact record goes straight into the batch when no typed records wait before it
    // (they are checked for existing keys together, in flush); it then dies young.
    if (record.dump !== undefined && records.length === 0) {
      restoreDump(record, record.dump);
      return pipe.count < batch ? undefined : sendAndWait().then(batchDone);
    }
    records.push(record);
    return records.length < batch
      ? undefined
      : flush().then(() => {
          collect();
          batchDone();
        });
  };
  /** Everything queued for the previous database goes first, then SELECT. */
  const switchDb = async (next: number) => {
    await flush();
    throwIfAborted(options.signal, 'the restore');
    // Queued ahead of the next batch's commands: no need to wait for the batches in flight.
    add(undefined, ['SELECT', next]);
    db = next;
  };
  /** After each batch: a stop asked for is honoured, and progress reported. */
  const batchDone = () => {
    throwIfAborted(options.signal, 'the restore');
    options.onProgress?.({ keys: result.restored, db });
  };

  try {
    const fields = exactFields();
    for await (const item of lines) {
      if (!(item instanceof LineBatch)) {
        await take(item);
        continue;
      }
      const data = item.data;
      for (let i = 0; i < item.length; i++) {
        // An exact record in the export's own form is written from its bytes, building nothing.
        if (header && !trailer && records.length === 0 && item.exact(i, fields)) {
          if (fields.db !== db) await switchDb(fields.db);
          restoreInPlace(data, fields);
          if (pipe.count < batch) continue;
          await sendAndWait();
          batchDone();
          continue;
        }
        const waiting = take(item.line(i));
        if (waiting) await waiting;
      }
    }
    await flush();
    await Promise.all(inFlight.splice(0));
  } catch (error) {
    await Promise.allSettled(inFlight.splice(0));
    throw error instanceof RedisBackupError ? error : redisCommandError(target, 'restoring keys', error);
  } finally {
    await conn.close();
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
function typedWrites(record: KeyRecord, current: { entries: number }, add: (args: RespArg[]) => void): void {
  const key = keyArg(record);
  const b = (text: string) => valueArg(record, text);
  switch (record.type) {
    case 'string':
      add([record.cont ? 'APPEND' : 'SET', key, b(record.value ?? '')]);
      break;
    case 'hash':
      if (record.fields?.length) add(['HSET', key, ...record.fields.flatMap(([f, v]) => [b(f), b(v)])]);
      break;
    case 'list':
      if (record.items?.length) add(['RPUSH', key, ...record.items.map(b)]);
      break;
    case 'set':
      if (record.members?.length) add(['SADD', key, ...record.members.map(b)]);
      break;
    case 'zset':
      // Scores travel as the server printed them: ZADD parses "inf" and 17-digit values exactly.
      if (record.scores?.length) add(['ZADD', key, ...record.scores.flatMap(([m, s]) => [s, b(m)])]);
      break;
    case 'stream': {
      for (const [id, fields] of record.entries ?? []) {
        current.entries++;
        add(['XADD', key, id, ...fields.map(b)]);
      }
      if (record.more) break;
      const meta = record.stream;
      if (current.entries === 0) {
        // An empty stream still exists in Redis: create it without entries.
        add(['XGROUP', 'CREATE', key, 'drkit-restore', '0', 'MKSTREAM']);
        add(['XGROUP', 'DESTROY', key, 'drkit-restore']);
      }
      if (meta) add(['XSETID', key, meta.lastId, 'ENTRIESADDED', meta.entriesAdded, 'MAXDELETEDID', meta.maxDeletedId]);
      for (const group of record.groups ?? []) {
        const read = group.entriesRead === null ? [] : ['ENTRIESREAD', group.entriesRead];
        add(['XGROUP', 'CREATE', key, group.name, group.lastDeliveredId, ...read]);
        for (const consumer of group.consumers) add(['XGROUP', 'CREATECONSUMER', key, group.name, consumer]);
        for (const [id, consumer, idle, count] of group.pending)
          add(['XCLAIM', key, group.name, consumer, 0, id, 'IDLE', idle, 'RETRYCOUNT', count, 'FORCE', 'JUSTID']);
      }
      break;
    }
  }
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

/**
 * The key and database of command `index` of a batch, read back from its commands: the
 * database the batch started in, or the last SELECT before the command.
 */
function ownerInBatch(commands: RespReply[], index: number, startDb: number): Owner {
  let db = startDb;
  for (let i = 0; i < index; i++) {
    const args = commands[i] as Buffer[];
    if (args[0]?.toString('latin1').toUpperCase() === 'SELECT') db = Number(args[1]?.toString('latin1'));
  }
  const key = (commands[index] as Buffer[])[1] as Buffer;
  return { key: textOf([key]).binary ? key.toString('base64') : key.toString('utf8'), db };
}
