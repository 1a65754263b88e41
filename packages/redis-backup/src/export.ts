import { periodicFullCollector, releaseBuffer } from '@drkit/crypto-stream';
import { firstLine, type RedisTarget } from './connection.js';
import { messageOf, RedisBackupError, throwIfAborted } from './errors.js';
import {
  EXPORT_FORMAT,
  type ExportEncoding,
  type ExportHeader,
  type ExportTrailer,
  encode,
  type KeyRecord,
  REDIS_TYPES,
  type RedisType,
  type StreamGroup,
  type StreamMeta,
  textOf,
} from './records.js';
import { openResp, parseReplies, type RespArg, RespBatch, type RespConnection, RespError, type RespReply } from './resp.js';
import { keyspaceOf, redisCommandError, serverVersion, versionAtLeast } from './server.js';

/** Options of {@link exportRedis}. */
export interface ExportOptions {
  /** @default "exact" */
  encoding?: ExportEncoding;
  /** Databases to export. @default every database that has keys (INFO keyspace) */
  databases?: number[];
  /** Keys per SCAN step, and per server round trip. @default 1000 */
  batch?: number;
  /**
   * Keys with more elements than this (or more bytes than `windowBytes`) are read in windows
   * of this many elements (HSCAN, SSCAN, ZSCAN, LRANGE, XRANGE), never whole, so memory stays
   * flat whatever a key holds. An exact export goes by size alone: a key whose MEMORY USAGE
   * is above `windowBytes` is written typed in windows, like NDJSON; any other is one DUMP.
   * @default 10000
   */
  windowElements?: number;
  /** Strings longer than this are read in windows of this many bytes (GETRANGE). @default 8 MiB */
  windowBytes?: number;
  /**
   * Inspect keys with one Lua script per batch (fast), or with pipelined commands (for servers
   * that refuse EVAL). @default "auto": the script, unless the server refuses it
   */
  scripting?: 'auto' | 'on' | 'off';
  /** Force PTTL (plus the server time) instead of PEXPIRETIME; for tests of old servers. */
  expiryCommand?: 'pexpiretime' | 'pttl';
  signal?: AbortSignal;
  /** Keys exported so far, about once per batch. */
  onProgress?: (progress: { db: number; keys: number }) => void;
  /** Something worth telling the operator (scripting refused, ...). */
  onWarning?: (message: string) => void;
}

/** What an export wrote, complete once its lines were consumed to the end. */
export interface ExportSummary {
  header: ExportHeader;
  trailer: ExportTrailer;
}

/** A running export: its bytes (NDJSON lines in chunks) and, at the end, what it held. */
export interface RedisExport {
  chunks: AsyncGenerator<Buffer>;
  /** @throws Error before `chunks` has been consumed to its end */
  summary(): ExportSummary;
}

// One pass per batch of an NDJSON export: type, absolute expiry and either the whole value or
// a "read it in windows" marker (1). Time in a script is frozen at its start, so PTTL + TIME is
// exact there.
const INSPECT = `
local maxn, maxb, pxt = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local now = 0
if not pxt then local t = redis.call('TIME'); now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local out = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local t = redis.call('TYPE', k).ok
  local e = -2
  local v = false
  if t ~= 'none' then
    if pxt then e = redis.call('PEXPIRETIME', k) else
      local p = redis.call('PTTL', k)
      if p >= 0 then e = now + p else e = p end
    end
    local large = false
    if t == 'string' then large = redis.call('STRLEN', k) > maxb
    elseif t == 'hash' then large = redis.call('HLEN', k) > maxn
    elseif t == 'list' then large = redis.call('LLEN', k) > maxn
    elseif t == 'set' then large = redis.call('SCARD', k) > maxn
    elseif t == 'zset' then large = redis.call('ZCARD', k) > maxn
    else large = true end
    if not large and t ~= 'string' then large = (redis.call('MEMORY', 'USAGE', k) or 0) > maxb end
    if large then v = 1
    elseif t == 'string' then v = redis.call('GET', k)
    elseif t == 'hash' then v = redis.call('HGETALL', k)
    elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
    elseif t == 'set' then v = redis.call('SMEMBERS', k)
    else v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES') end
  end
  out[#out + 1] = t
  out[#out + 1] = e
  out[#out + 1] = v
end
return out
`;

// One pass per batch of an exact export: absolute expiry (-2: the key is gone) and the DUMP
// payload, or {type} for a key above the size limit (read in windows). The type of a dumped
// key is its payload's first byte, so the script spends no TYPE or length call on it: the
// server's time per key is most of an export's cost (measured: ~35% less than INSPECT).
const INSPECT_EXACT = `
local maxb, pxt = tonumber(ARGV[1]), ARGV[2] == '1'
local now = 0
if not pxt then local t = redis.call('TIME'); now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local out = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local e
  if pxt then e = redis.call('PEXPIRETIME', k) else
    e = redis.call('PTTL', k)
    if e >= 0 then e = now + e end
  end
  local v = false
  if e ~= -2 then
    if (redis.call('MEMORY', 'USAGE', k) or 0) > maxb then v = { redis.call('TYPE', k).ok }
    else v = redis.call('DUMP', k) end
  end
  out[#out + 1] = e
  out[#out + 1] = v
end
return out
`;

/**
 * The type a DUMP payload holds, from its first byte (the RDB object type), or undefined for
 * one this package does not know (a module's type, or a type of a newer server).
 */
export function dumpType(payload: Buffer): RedisType | undefined {
  return RDB_OBJECT_TYPES[payload[0] ?? -1];
}

// RDB_TYPE_* of rdb.h: every encoding a server has used for the six core types, up to the
// hashes with field expiries of Redis 7.4.
const RDB_OBJECT_TYPES: Record<number, RedisType> = {
  0: 'string',
  1: 'list',
  2: 'set',
  3: 'zset',
  4: 'hash',
  5: 'zset',
  9: 'hash',
  10: 'list',
  11: 'set',
  12: 'zset',
  13: 'hash',
  14: 'list',
  15: 'stream',
  16: 'hash',
  17: 'zset',
  18: 'list',
  19: 'stream',
  20: 'set',
  21: 'stream',
  22: 'hash',
  23: 'hash',
  24: 'hash',
  25: 'hash',
};

/** One inspected key: its type, absolute expiry (-1 none) and value (or "windowed"). */
interface Inspected {
  key: Buffer;
  type: RedisType;
  expireAt: number;
  /** DUMP payload (exact), the value or flat element list (ndjson), or undefined: read in windows. */
  value: Buffer | Buffer[] | undefined;
}

const FLUSH_BYTES = 256 * 1024;

/**
 * UTF-8 text written straight into buffers of about `size` bytes. Joining the lines into one
 * string per chunk first made a 256 KB string each time, which V8 puts in its large-object
 * space and frees only in a full collection: ~20 MB of them piled up between two.
 */
class ChunkWriter {
  readonly #size: number;
  #chunk: Buffer;
  #at = 0;
  #full: Buffer[] = [];

  constructor(size: number) {
    this.#size = size;
    this.#chunk = Buffer.allocUnsafe(size);
  }

  /** Appends `text`, moving on to a new buffer when it might not fit (3 bytes a character at most). */
  write(text: string): void {
    const most = text.length * 3;
    if (this.#at + most > this.#chunk.length) {
      if (this.#at > 0) this.#full.push(this.#chunk.subarray(0, this.#at));
      this.#chunk = Buffer.allocUnsafe(Math.max(this.#size, most));
      this.#at = 0;
    }
    this.#at += this.#chunk.write(text, this.#at);
  }

  /** The buffers that are full, taken. */
  full(): Buffer[] {
    const full = this.#full;
    this.#full = [];
    return full;
  }

  /** Everything not yet taken, the last partial buffer included. */
  rest(): Buffer[] {
    if (this.#at > 0) this.#full.push(this.#chunk.subarray(0, this.#at));
    this.#at = 0;
    return this.full();
  }
}

/**
 * Exports every key of a server's databases as {@link EXPORT_FORMAT} lines, SCAN-based and
 * pipelined, with absolute expiries. Not a point-in-time snapshot: a key changed while the
 * export runs is seen as it was when its batch was read (use the RDB pull for one instant).
 * Keys that expire or are deleted between SCAN and their read are left out.
 * @throws RedisBackupError (connection codes), REDIS_PERMISSION_DENIED, REDIS_COMMAND_FAILED, REDIS_ABORTED
 */
export function exportRedis(target: RedisTarget, options: ExportOptions = {}): RedisExport {
  const encoding = options.encoding ?? 'exact';
  if (encoding !== 'exact' && encoding !== 'ndjson')
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `encoding must be "exact" or "ndjson", got ${JSON.stringify(encoding)}`);
  const batch = positive(options.batch ?? 1000, 'batch');
  const windowElements = positive(options.windowElements ?? 10_000, 'windowElements');
  const windowBytes = positive(options.windowBytes ?? 8 * 1024 * 1024, 'windowBytes');
  let summary: ExportSummary | undefined;

  async function* chunks(): AsyncGenerator<Buffer> {
    const client = await openResp(target, { name: 'drkit-export' });
    let scanner: RespConnection | undefined;
    try {
      const version = await serverVersion(client);
      const expiry = options.expiryCommand ?? (versionAtLeast(version, 7, 0) ? 'pexpiretime' : 'pttl');
      const header: ExportHeader = { format: EXPORT_FORMAT, encoding, redisVersion: version, startedAt: new Date().toISOString(), expiry };
      const trailer: ExportTrailer = { end: true, keys: 0, records: 0, databases: {}, expires: {}, finishedAt: '' };
      const lines = new ChunkWriter(FLUSH_BYTES);
      lines.write(`${JSON.stringify(header)}\n`);
      const push = (line: string) => {
        lines.write(line);
        trailer.records++;
      };

      // Each batch leaves line strings and socket reads that outlive a young collection, and
      // V8 lets them pile up for a long while: a full collection of the export's small heap
      // now and then keeps the peak down. Every 2 s, not the default 0.5 s, since the batches'
      // reply bytes are freed as they are done with: on a million keys that took 1-1.5 s of
      // CPU off the export (collections, and the scavenges of a young generation each one
      // shrank) for about 4 MB more peak memory.
      const collect = periodicFullCollector(2000);
      const databases = options.databases ?? Object.keys(await keyspaceOf(client)).map(Number);
      const how: InspectOptions = { encoding, maxn: windowElements, maxb: windowBytes, expiry };
      let inspect = scriptInspector(client, how);
      if (options.scripting === 'off') inspect = pipelineInspector(client, how);
      let warned = false;
      const inspectKeys: Inspector = (keys) => {
        const sent = inspect(keys);
        return {
          release: () => sent.release?.(),
          async read(again) {
            try {
              return await sent.read(again);
            } catch (error) {
              if (options.scripting === 'on' || !scriptRefused(error)) throw redisCommandError(target, 'reading keys', error);
              if (!warned)
                options.onWarning?.(
                  `the server refused the export script (${firstLine(messageOf(error))}): reading keys with pipelined commands instead, about half as fast`,
                );
              warned = true;
              inspect = pipelineInspector(client, how);
              return await inspect(again).read(again);
            }
          },
        };
      };
      scanner = await openResp(target, { name: 'drkit-export-scan' });
      for (const db of databases.sort((a, b) => a - b)) {
        await Promise.all([client.call('SELECT', db), scanner.call('SELECT', db)]);
        let count = 0;
        let expires = 0;
        for await (const found of scanned(scanner, batch, inspectKeys)) {
          throwIfAborted(options.signal, 'the export');
          for (const item of found) {
            count++;
            if (item.expireAt >= 0) expires++;
            if (item.value === undefined) {
              for await (const record of windowed(client, db, item, windowElements, windowBytes)) {
                push(`${JSON.stringify(record)}\n`);
                yield* lines.full();
              }
            } else push(encoding === 'exact' ? exactLine(db, item) : `${JSON.stringify(recordOf(db, item))}\n`);
          }
          yield* lines.full();
          collect();
          options.onProgress?.({ db, keys: count });
        }
        if (count > 0) {
          trailer.databases[String(db)] = count;
          trailer.expires[String(db)] = expires;
          trailer.keys += count;
        }
      }
      trailer.finishedAt = new Date().toISOString();
      lines.write(`${JSON.stringify(trailer)}\n`);
      yield* lines.rest();
      summary = { header, trailer };
    } catch (error) {
      throw error instanceof RedisBackupError ? error : redisCommandError(target, 'exporting', error);
    } finally {
      await Promise.all([client.close(), scanner?.close()]);
    }
  }

  return {
    chunks: chunks(),
    summary() {
      if (!summary) throw new Error('the export has not finished: consume its chunks to the end first');
      return summary;
    },
  };
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `${name} must be a positive integer, got ${n}`);
  return n;
}

/** EVAL refused: scripting disabled, not permitted, or the script needs a newer server. */
function scriptRefused(error: unknown): boolean {
  return /NOPERM|unknown command|ERR.*(script|EVAL|lua)|disabled/i.test(firstLine(messageOf(error)));
}

/** The fields every record of a key starts with; the expiry only on its first record. */
function keyHead(db: number, item: Inspected, binary: boolean, first: boolean): KeyRecord {
  return {
    db,
    key: encode(binary, item.key),
    type: item.type,
    ...(binary ? { b64: true as const } : {}),
    ...(first && item.expireAt >= 0 ? { expireAt: item.expireAt } : {}),
    ...(first ? {} : { cont: true as const }),
  };
}

/**
 * A whole key of an exact export as its one line: the same JSON as `JSON.stringify` of its
 * record, written out directly, because this runs once per key and the generic path (a record
 * object, then its serialisation) was a tenth of the export's time.
 */
function exactLine(db: number, item: Inspected): string {
  const binary = textOf([item.key]).binary;
  const key = JSON.stringify(encode(binary, item.key));
  const expiry = item.expireAt >= 0 ? `,"expireAt":${item.expireAt}` : '';
  return `{"db":${db},"key":${key},"type":"${item.type}"${binary ? ',"b64":true' : ''}${expiry},"dump":"${(item.value as Buffer).toString('base64')}"}\n`;
}

/** A whole key of an NDJSON export as its one record. */
function recordOf(db: number, item: Inspected): KeyRecord {
  const value = item.value as Buffer | Buffer[];
  const parts = Array.isArray(value) ? value : [value];
  const binary = textOf([item.key]).binary || textOf(parts).binary;
  const e = (b: Buffer) => encode(binary, b);
  const record = keyHead(db, item, binary, true);
  switch (item.type) {
    case 'string':
      record.value = e(value as Buffer);
      break;
    case 'hash':
      record.fields = pairs(parts, e);
      break;
    case 'list':
      record.items = parts.map(e);
      break;
    case 'set':
      record.members = parts.map(e);
      break;
    case 'zset':
      // Scores are ASCII as the server printed them (%.17g, inf): never re-encoded.
      record.scores = pairsOf(parts).map(([m, s]) => [e(m), s.toString('latin1')]);
      break;
    default:
      throw new Error(`unexpected whole ${item.type}`);
  }
  return record;
}

function pairsOf(flat: Buffer[]): [Buffer, Buffer][] {
  const out: [Buffer, Buffer][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as Buffer, flat[i + 1] as Buffer]);
  return out;
}

function pairs(flat: Buffer[], e: (b: Buffer) => string): [string, string][] {
  return pairsOf(flat).map(([a, b]) => [e(a), e(b)]);
}

/**
 * Sends the inspection of a batch of keys at once; `read` decodes its replies when the
 * batch's turn comes, given the same keys again.
 */
type Inspector = (keys: Buffer[]) => { read(keys: Buffer[]): Promise<Inspected[]>; release?(): void };

/** SCAN steps read ahead of the batch being encoded, each with its inspection already sent. */
const SCAN_AHEAD = 3;

/**
 * The inspected batches of the selected database, in SCAN order. SCAN runs on a connection of
 * its own, ahead of the batch being encoded here, and each batch's inspection is sent the
 * moment its keys arrive: the server always has the next inspections queued, instead of
 * waiting for this side to finish a batch before it learns which keys come next. What waits
 * in the queue is bytes (the SCAN reply, the inspection's replies), not parsed objects: see
 * {@link RespConnection.execRaw}.
 */
async function* scanned(scanner: RespConnection, count: number, inspect: Inspector): AsyncGenerator<Inspected[]> {
  const queue: { scan: Buffer; inspection: ReturnType<Inspector> | undefined }[] = [];
  let cursor: string | undefined = '0';
  let scanning: Promise<void> | undefined;
  let failure: { error: unknown } | undefined;
  const scanNext = (from: string) => {
    const step = new RespBatch(128);
    step.command(['SCAN', from, 'COUNT', count]);
    scanning = scanner.execRaw(step).then(
      (scan) => {
        const [next, keys] = scanReply(scan);
        queue.push({ scan, inspection: keys.length === 0 ? undefined : inspect(keys) });
        const text = next.toString('latin1');
        cursor = text === '0' ? undefined : text;
        scanning = undefined;
        if (cursor !== undefined && queue.length < SCAN_AHEAD) scanNext(cursor);
      },
      (error: unknown) => {
        failure = { error };
        scanning = undefined;
      },
    );
  };
  scanNext('0');
  for (;;) {
    while (queue.length === 0) {
      if (failure) throw failure.error;
      if (!scanning) return;
      await scanning;
    }
    const { scan, inspection } = queue.shift() as (typeof queue)[number];
    if (!scanning && !failure && cursor !== undefined) scanNext(cursor);
    yield inspection ? await inspection.read(scanReply(scan)[1]) : [];
    // Resumed: the consumer is done with the batch, whose values are views of these bytes.
    inspection?.release?.();
  }
}

/** The cursor and keys of a SCAN reply's bytes. */
function scanReply(bytes: Buffer): [Buffer, Buffer[]] {
  const reply = parseReplies(bytes, 1)[0];
  if (reply instanceof RespError) throw reply;
  return reply as [Buffer, Buffer[]];
}

/**
 * Runs a script by its SHA: `send` queues it at once and returns its reply's bytes; `reply`
 * turns them into the reply. When the server lacked the script (SCRIPT FLUSH, a restart, a
 * failover) it runs it again by its text, which cannot fail that way, and the next batch
 * loads it again.
 */
function scriptRunner(client: RespConnection, script: string) {
  let sha: Promise<string> | undefined;
  return {
    async send(keys: Buffer[], args: RespArg[]): Promise<Buffer> {
      sha ??= client.call('SCRIPT', 'LOAD', script).then(String);
      const batch = new RespBatch(32 * keys.length + 256);
      batch.command(['EVALSHA', await sha, keys.length, ...keys, ...args]);
      return client.execRaw(batch);
    },
    async reply(bytes: Buffer, keys: Buffer[], args: RespArg[]): Promise<RespReply[]> {
      let reply = parseReplies(bytes, 1)[0];
      if (reply instanceof RespError && /NOSCRIPT/.test(reply.message)) {
        sha = undefined;
        reply = await client.call('EVAL', script, keys.length, ...keys, ...args).catch((error: unknown) => {
          if (error instanceof RespError) return error;
          throw error;
        });
      }
      if (reply instanceof RespError) throw reply;
      return reply as RespReply[];
    },
  };
}

/** How keys are inspected: the encoding, the window limits (elements, bytes) and the expiry command. */
interface InspectOptions {
  encoding: ExportEncoding;
  maxn: number;
  maxb: number;
  expiry: 'pexpiretime' | 'pttl';
}

function scriptInspector(client: RespConnection, { encoding, maxn, maxb, expiry }: InspectOptions): Inspector {
  const pxt = expiry === 'pexpiretime' ? '1' : '0';
  const exact = encoding === 'exact';
  const runner = scriptRunner(client, exact ? INSPECT_EXACT : INSPECT);
  const args: RespArg[] = exact ? [maxb, pxt] : [maxn, maxb, pxt];
  const decode = exact ? (keys: Buffer[], reply: RespReply[]) => decodeExact(client, keys, reply) : decodeTyped;
  return (keys) => {
    const sent = runner.send(keys, args);
    // Read in turn; until then its failure must not count as unhandled.
    sent.catch(() => {});
    return {
      read: async (again) => decode(again, await runner.reply(await sent, again, args)),
      // The batch's reply bytes (hundreds of KB, its DUMP payloads are views of them) are
      // freed as soon as its lines are written rather than at whichever collection finds
      // them: between two full collections they were most of the export's peak memory.
      release: () => {
        sent.then(releaseBuffer, () => {});
      },
    };
  };
}

/** An exact inspection's replies: [expiry, DUMP payload or [type] or nil] per key. */
async function decodeExact(client: RespConnection, keys: Buffer[], reply: RespReply[]): Promise<Inspected[]> {
  const out: Inspected[] = [];
  const unknown: Inspected[] = [];
  for (let i = 0; i < keys.length; i++) {
    const value = reply[2 * i + 1];
    if (value === null || value === undefined) continue;
    const expireAt = Number(reply[2 * i]);
    const key = keys[i] as Buffer;
    if (Array.isArray(value)) {
      out.push({ key, type: knownType(String(value[0])), expireAt, value: undefined });
      continue;
    }
    const payload = value as Buffer;
    const type = dumpType(payload);
    const item: Inspected = { key, type: type ?? 'string', expireAt, value: payload };
    if (type === undefined) unknown.push(item);
    out.push(item);
  }
  if (unknown.length > 0) {
    // A payload type this package does not know: the server names it.
    const types = new RespBatch(1024);
    for (const item of unknown) types.command(['TYPE', item.key]);
    const names = await client.exec(types);
    unknown.forEach((item, i) => {
      item.type = knownType(String(names[i]));
    });
  }
  return out;
}

/** An NDJSON inspection's replies: [type, expiry, value or 1 (read in windows)] per key. */
function decodeTyped(keys: Buffer[], reply: RespReply[]): Inspected[] {
  const out: Inspected[] = [];
  for (let i = 0; i < keys.length; i++) {
    const type = String(reply[3 * i]);
    if (type === 'none') continue;
    const value = reply[3 * i + 2];
    out.push({
      key: keys[i] as Buffer,
      type: knownType(type),
      expireAt: Number(reply[3 * i + 1]),
      value: typeof value === 'number' || value === null ? undefined : (value as Buffer | Buffer[]),
    });
  }
  return out;
}

/**
 * `name` as one of the six types an export carries.
 * @throws RedisBackupError REDIS_COMMAND_FAILED for a module's type (ReJSON-RL, ...)
 */
function knownType(name: string): RedisType {
  if ((REDIS_TYPES as readonly string[]).includes(name)) return name as RedisType;
  throw new RedisBackupError(
    'REDIS_COMMAND_FAILED',
    `a key is of type "${name.slice(0, 40)}", which a logical export cannot carry (only string, hash, list, set, zset and stream): back this server up with --mode rdb`,
  );
}

/** The same answers as the script, by pipelined commands: TYPE and expiry, sizes, then values. */
function pipelineInspector(client: RespConnection, { encoding, maxn, maxb, expiry }: InspectOptions): Inspector {
  const LENGTH: Record<string, string> = { string: 'STRLEN', hash: 'HLEN', list: 'LLEN', set: 'SCARD', zset: 'ZCARD' };
  const READ: Record<string, RespArg[]> = { string: ['GET'], hash: ['HGETALL'], list: ['LRANGE'], set: ['SMEMBERS'], zset: ['ZRANGE'] };
  // Three round trips that depend on each other: sent when the batch's turn comes.
  return () => ({ read: (keys) => inspectPipelined(keys) });
  async function inspectPipelined(keys: Buffer[]): Promise<Inspected[]> {
    const first = new RespBatch();
    if (expiry === 'pttl') first.command(['TIME']);
    for (const key of keys) {
      first.command(['TYPE', key]);
      first.command([expiry === 'pexpiretime' ? 'PEXPIRETIME' : 'PTTL', key]);
    }
    const r1 = check(await client.exec(first));
    let now = 0;
    if (expiry === 'pttl') {
      const time = r1.shift() as Buffer[];
      now = Number(String(time[0])) * 1000 + Math.floor(Number(String(time[1])) / 1000);
    }
    const found: Inspected[] = [];
    for (let i = 0; i < keys.length; i++) {
      const type = String(r1[2 * i]);
      if (type === 'none') continue;
      const e = Number(r1[2 * i + 1]);
      found.push({
        key: keys[i] as Buffer,
        type: knownType(type),
        expireAt: expiry === 'pttl' && e >= 0 ? now + e : e,
        value: undefined,
      });
    }
    const measured = found.filter((f) => f.type !== 'stream');
    const sized = new RespBatch();
    for (const f of measured) sized.command([LENGTH[f.type] as string, f.key]);
    const r2 = check(await client.exec(sized));
    const small = measured.filter((f, i) => Number(r2[i]) <= (f.type === 'string' ? maxb : maxn));
    const read = new RespBatch();
    for (const f of small) {
      if (encoding === 'exact') read.command(['DUMP', f.key]);
      else if (f.type === 'list') read.command(['LRANGE', f.key, 0, -1]);
      else if (f.type === 'zset') read.command(['ZRANGE', f.key, 0, -1, 'WITHSCORES']);
      else read.command([...(READ[f.type] as RespArg[]), f.key]);
    }
    const r3 = check(await client.exec(read));
    small.forEach((f, i) => {
      f.value = (r3[i] as Buffer | Buffer[] | null) ?? undefined;
    });
    // A key deleted between the passes has no value now: read it in windows (finds nothing).
    return found;
  }
}

/** The replies of a batch, or its first error reply thrown. */
function check(replies: RespReply[]): RespReply[] {
  for (const reply of replies) if (reply instanceof RespError) throw reply;
  return replies;
}

/** The records of one large key (or a stream), window by window; the last has no `more`. */
async function* windowed(client: RespConnection, db: number, item: Inspected, maxn: number, maxb: number): AsyncGenerator<KeyRecord> {
  let previous: KeyRecord | undefined;
  let written = 0;
  // A window is held back until the next one arrives: only then is it known whether `more` follows.
  // Each window decides on base64 for itself, so text stays readable where it can.
  const emit = function* (build: (record: KeyRecord, e: (b: Buffer) => string) => void, parts: Buffer[]): Generator<KeyRecord> {
    const binary = textOf([item.key]).binary || textOf(parts).binary;
    const record = keyHead(db, item, binary, written === 0 && previous === undefined);
    build(record, (b) => encode(binary, b));
    if (previous) {
      written++;
      yield { ...previous, more: true };
    }
    previous = record;
  };

  switch (item.type) {
    case 'string': {
      for (let offset = 0; ; offset += maxb) {
        const part = (await client.call('GETRANGE', item.key, offset, offset + maxb - 1)) as Buffer;
        if (part.length === 0 && offset > 0) break;
        yield* emit(
          (r, e) => {
            r.value = e(part);
          },
          [part],
        );
        if (part.length < maxb) break;
      }
      break;
    }
    case 'list': {
      for (let start = 0; ; start += maxn) {
        const items = (await client.call('LRANGE', item.key, start, start + maxn - 1)) as Buffer[];
        if (items.length === 0 && start > 0) break;
        yield* emit((r, e) => {
          r.items = items.map(e);
        }, items);
        if (items.length < maxn) break;
      }
      break;
    }
    case 'hash':
    case 'set':
    case 'zset': {
      const command = item.type === 'hash' ? 'HSCAN' : item.type === 'set' ? 'SSCAN' : 'ZSCAN';
      let cursor = '0';
      let any = false;
      do {
        const [next, flat] = (await client.call(command, item.key, cursor, 'COUNT', maxn)) as [Buffer, Buffer[]];
        cursor = next.toString();
        if (flat.length === 0 && (cursor !== '0' || any)) continue;
        any = true;
        yield* emit(
          (r, e) => {
            if (item.type === 'hash') r.fields = pairs(flat, e);
            else if (item.type === 'set') r.members = flat.map(e);
            else r.scores = pairsOf(flat).map(([m, s]) => [e(m), s.toString('latin1')]);
          },
          item.type === 'zset' ? pairsOf(flat).map(([m]) => m) : flat,
        );
      } while (cursor !== '0');
      break;
    }
    case 'stream': {
      let start = '-';
      for (;;) {
        const entries = (await client.call('XRANGE', item.key, start, '+', 'COUNT', maxn)) as [Buffer, Buffer[]][];
        const flat = entries.flatMap(([, fv]) => fv);
        const ids = entries.map(([id]) => id.toString('latin1'));
        if (entries.length > 0 || start === '-')
          yield* emit((r, e) => {
            r.entries = entries.map(([, fv], i) => [ids[i] as string, fv.map(e)]);
          }, flat);
        if (entries.length < maxn) break;
        start = `(${ids.at(-1)}`;
      }
      // The stream's own state and its groups go on its last record.
      const meta = await streamMeta(client, item.key);
      const groups = await streamGroups(client, item.key, maxn);
      if (previous) {
        previous.stream = meta;
        if (groups.length > 0) previous.groups = groups;
      }
      break;
    }
  }
  if (previous) yield previous;
}

function fieldsOf(flat: unknown[]): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), flat[i + 1]);
  return map;
}

async function streamMeta(client: RespConnection, key: Buffer): Promise<StreamMeta> {
  const info = fieldsOf((await client.call('XINFO', 'STREAM', key)) as unknown[]);
  return {
    lastId: String(info.get('last-generated-id') ?? '0-0'),
    entriesAdded: Number(info.get('entries-added') ?? info.get('length') ?? 0),
    maxDeletedId: String(info.get('max-deleted-entry-id') ?? '0-0'),
  };
}

async function streamGroups(client: RespConnection, key: Buffer, window: number): Promise<StreamGroup[]> {
  const groups: StreamGroup[] = [];
  for (const raw of (await client.call('XINFO', 'GROUPS', key)) as unknown[][]) {
    const g = fieldsOf(raw);
    const name = String(g.get('name'));
    const consumers = ((await client.call('XINFO', 'CONSUMERS', key, name)) as unknown[][]).map((c) => String(fieldsOf(c).get('name')));
    const pending: StreamGroup['pending'] = [];
    let start = '-';
    for (;;) {
      const page = (await client.call('XPENDING', key, name, start, '+', window)) as [string, string, number, number][];
      for (const [id, consumer, idle, count] of page) pending.push([String(id), String(consumer), Number(idle), Number(count)]);
      if (page.length < window) break;
      start = `(${page.at(-1)?.[0]}`;
    }
    const entriesRead = g.get('entries-read');
    groups.push({
      name,
      lastDeliveredId: String(g.get('last-delivered-id')),
      entriesRead: entriesRead === null || entriesRead === undefined ? null : Number(entriesRead),
      consumers,
      pending,
    });
  }
  return groups;
}
