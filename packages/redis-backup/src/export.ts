import { periodicFullCollector } from '@drkit/crypto-stream';
import type { Redis } from 'ioredis';
import { connectRedis, firstLine, type RedisTarget } from './connection.js';
import { messageOf, RedisBackupError, throwIfAborted } from './errors.js';
import {
  EXPORT_FORMAT,
  type ExportEncoding,
  type ExportHeader,
  type ExportTrailer,
  encode,
  type KeyRecord,
  type RedisType,
  type StreamGroup,
  type StreamMeta,
  textOf,
} from './records.js';
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
   * flat whatever a key holds. In an exact export such keys are written typed, like NDJSON.
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

// One pass per batch: type, absolute expiry and either the whole value or a "read it in
// windows" marker (1). Time in a script is frozen at its start, so PTTL + TIME is exact there.
const INSPECT = `
local mode, maxn, maxb, pxt = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
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
    elseif mode == 'exact' then v = redis.call('DUMP', k)
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
    const client = await connectRedis(target, { name: 'drkit-export' });
    try {
      const version = await serverVersion(client);
      const expiry = options.expiryCommand ?? (versionAtLeast(version, 7, 0) ? 'pexpiretime' : 'pttl');
      const header: ExportHeader = { format: EXPORT_FORMAT, encoding, redisVersion: version, startedAt: new Date().toISOString(), expiry };
      const trailer: ExportTrailer = { end: true, keys: 0, records: 0, databases: {}, expires: {}, finishedAt: '' };
      let out: string[] = [`${JSON.stringify(header)}\n`];
      let pending = out[0]?.length ?? 0;
      const write = (record: KeyRecord) => {
        const line = `${JSON.stringify(record)}\n`;
        out.push(line);
        pending += line.length;
        trailer.records++;
      };
      const take = () => {
        const buffer = Buffer.from(out.join(''), 'utf8');
        out = [];
        pending = 0;
        return buffer;
      };

      // Each batch leaves a few MB of reply buffers and line strings that outlive a young
      // collection, and V8 lets them pile up for a long while. A full collection of the
      // export's small heap now and then lowers the peak (measured: 188 -> 174 MB at 100k
      // keys, 276 -> 253 MB at 1M); it still grows with the key count.
      const collect = periodicFullCollector();
      const databases = options.databases ?? Object.keys(await keyspaceOf(client)).map(Number);
      let inspect = scriptInspector(client, encoding, windowElements, windowBytes, expiry);
      if (options.scripting === 'off') inspect = pipelineInspector(client, encoding, windowElements, windowBytes, expiry);
      let warned = false;
      const inspectKeys = async (keys: Buffer[]): Promise<Inspected[]> => {
        try {
          return await inspect(keys);
        } catch (error) {
          if (options.scripting === 'on' || !scriptRefused(error)) throw redisCommandError(target, 'reading keys', error);
          if (!warned)
            options.onWarning?.(
              `the server refused the export script (${firstLine(messageOf(error))}): reading keys with pipelined commands instead, about half as fast`,
            );
          warned = true;
          inspect = pipelineInspector(client, encoding, windowElements, windowBytes, expiry);
          return await inspect(keys);
        }
      };
      for (const db of databases.sort((a, b) => a - b)) {
        await client.select(db);
        let count = 0;
        let expires = 0;
        // One batch ahead: the server scans and reads batch n+1 while batch n is encoded here.
        const fetch = (cursor: string): Batch => {
          const scanned = (client.scanBuffer(cursor, 'COUNT', batch) as unknown as Promise<[Buffer, Buffer[]]>).then(([next, keys]) => ({
            next: next.toString(),
            found: keys.length === 0 ? Promise.resolve([]) : inspectKeys(keys),
          }));
          scanned.catch(() => {});
          return scanned.then((b) => {
            b.found.catch(() => {});
            return b;
          });
        };
        let current = await fetch('0');
        for (;;) {
          throwIfAborted(options.signal, 'the export');
          const ahead = current.next === '0' ? undefined : fetch(current.next);
          const found = await current.found;
          for (const item of found) {
            count++;
            if (item.expireAt >= 0) expires++;
            if (item.value === undefined) {
              for await (const record of windowed(client, db, item, windowElements, windowBytes)) {
                write(record);
                if (pending >= FLUSH_BYTES) yield take();
              }
            } else write(recordOf(db, item, encoding));
          }
          if (pending >= FLUSH_BYTES) yield take();
          collect();
          options.onProgress?.({ db, keys: count });
          if (!ahead) break;
          current = await ahead;
        }
        if (count > 0) {
          trailer.databases[String(db)] = count;
          trailer.expires[String(db)] = expires;
          trailer.keys += count;
        }
      }
      trailer.finishedAt = new Date().toISOString();
      out.push(`${JSON.stringify(trailer)}\n`);
      yield take();
      summary = { header, trailer };
    } catch (error) {
      throw error instanceof RedisBackupError ? error : redisCommandError(target, 'exporting', error);
    } finally {
      await client.quit().catch(() => client.disconnect());
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

/** A whole key as its one record. */
function recordOf(db: number, item: Inspected, encoding: ExportEncoding): KeyRecord {
  if (encoding === 'exact')
    return { ...keyHead(db, item, textOf([item.key]).binary, true), dump: (item.value as Buffer).toString('base64') };
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

type Inspector = (keys: Buffer[]) => Promise<Inspected[]>;

/** A SCAN step: the next cursor, and the inspection of its keys (running while the previous batch is encoded). */
type Batch = Promise<{ next: string; found: Promise<Inspected[]> }>;

function scriptInspector(client: Redis, encoding: ExportEncoding, maxn: number, maxb: number, expiry: 'pexpiretime' | 'pttl'): Inspector {
  let sha: string | undefined;
  const args = [encoding, String(maxn), String(maxb), expiry === 'pexpiretime' ? '1' : '0'];
  return async (keys) => {
    sha ??= (await client.script('LOAD', INSPECT)) as string;
    let reply: unknown[];
    try {
      reply = (await client.callBuffer('EVALSHA', sha, keys.length, ...keys, ...args)) as unknown[];
    } catch (error) {
      if (!/NOSCRIPT/.test(firstLine(messageOf(error)))) throw error;
      sha = (await client.script('LOAD', INSPECT)) as string;
      reply = (await client.callBuffer('EVALSHA', sha, keys.length, ...keys, ...args)) as unknown[];
    }
    const out: Inspected[] = [];
    for (let i = 0; i < keys.length; i++) {
      const type = String(reply[3 * i]);
      if (type === 'none') continue;
      const value = reply[3 * i + 2];
      out.push({
        key: keys[i] as Buffer,
        type: type as RedisType,
        expireAt: Number(reply[3 * i + 1]),
        value: typeof value === 'number' || value === null ? undefined : (value as Buffer | Buffer[]),
      });
    }
    return out;
  };
}

/** The same answers as the script, by pipelined commands: TYPE and expiry, sizes, then values. */
function pipelineInspector(client: Redis, encoding: ExportEncoding, maxn: number, maxb: number, expiry: 'pexpiretime' | 'pttl'): Inspector {
  const LENGTH: Record<string, string> = { string: 'STRLEN', hash: 'HLEN', list: 'LLEN', set: 'SCARD', zset: 'ZCARD' };
  return async (keys) => {
    const first = client.pipeline();
    if (expiry === 'pttl') first.call('TIME');
    for (const key of keys) {
      first.type(key);
      first.call(expiry === 'pexpiretime' ? 'PEXPIRETIME' : 'PTTL', key);
    }
    const r1 = check(await first.exec());
    let now = 0;
    if (expiry === 'pttl') {
      const time = r1.shift() as string[];
      now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
    }
    const found: Inspected[] = [];
    for (let i = 0; i < keys.length; i++) {
      const type = String(r1[2 * i]);
      if (type === 'none') continue;
      const e = Number(r1[2 * i + 1]);
      found.push({
        key: keys[i] as Buffer,
        type: type as RedisType,
        expireAt: expiry === 'pttl' && e >= 0 ? now + e : e,
        value: undefined,
      });
    }
    const sized = client.pipeline();
    const measured = found.filter((f) => f.type !== 'stream');
    for (const f of measured) sized.call(LENGTH[f.type] as string, f.key);
    const r2 = check(await sized.exec());
    const small = measured.filter((f, i) => Number(r2[i]) <= (f.type === 'string' ? maxb : maxn));
    const read = client.pipeline();
    for (const f of small) {
      if (encoding === 'exact') read.dumpBuffer(f.key);
      else if (f.type === 'string') read.getBuffer(f.key);
      else if (f.type === 'hash') read.callBuffer('HGETALL', f.key);
      else if (f.type === 'list') read.lrangeBuffer(f.key, 0, -1);
      else if (f.type === 'set') read.smembersBuffer(f.key);
      else read.zrangeBuffer(f.key, 0, -1, 'WITHSCORES');
    }
    const r3 = check(await read.exec());
    small.forEach((f, i) => {
      f.value = (r3[i] as Buffer | Buffer[] | null) ?? undefined;
    });
    // A key deleted between the passes has no value now: read it in windows (finds nothing).
    return found;
  };
}

function check(results: [Error | null, unknown][] | null): unknown[] {
  if (!results) throw new Error('the pipeline was not executed');
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}

/** The records of one large key (or a stream), window by window; the last has no `more`. */
async function* windowed(client: Redis, db: number, item: Inspected, maxn: number, maxb: number): AsyncGenerator<KeyRecord> {
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
        const part = (await client.getrangeBuffer(item.key, offset, offset + maxb - 1)) as Buffer;
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
        const items = (await client.lrangeBuffer(item.key, start, start + maxn - 1)) as Buffer[];
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
      const command = item.type === 'hash' ? 'hscanBuffer' : item.type === 'set' ? 'sscanBuffer' : 'zscanBuffer';
      let cursor = '0';
      let any = false;
      do {
        const [next, flat] = (await client[command](item.key, cursor, 'COUNT', maxn)) as unknown as [Buffer, Buffer[]];
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
        const entries = (await client.xrangeBuffer(item.key, start, '+', 'COUNT', maxn)) as unknown as [Buffer, Buffer[]][];
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

async function streamMeta(client: Redis, key: Buffer): Promise<StreamMeta> {
  const info = fieldsOf((await client.call('XINFO', 'STREAM', key)) as unknown[]);
  return {
    lastId: String(info.get('last-generated-id') ?? '0-0'),
    entriesAdded: Number(info.get('entries-added') ?? info.get('length') ?? 0),
    maxDeletedId: String(info.get('max-deleted-entry-id') ?? '0-0'),
  };
}

async function streamGroups(client: Redis, key: Buffer, window: number): Promise<StreamGroup[]> {
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
