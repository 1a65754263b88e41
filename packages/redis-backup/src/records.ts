import { isUtf8 } from 'node:buffer';
import { RedisBackupError } from './errors.js';

/**
 * The export format, "drkit-redis-export/1": newline-delimited JSON, sealed by crypto-stream.
 * Line 1 is an {@link ExportHeader}; then {@link KeyRecord}s, the records of one key
 * consecutive; the last line is an {@link ExportTrailer}. A file without its trailer is
 * incomplete and is refused. docs/REDIS-EXPORT.md describes every field.
 */
export const EXPORT_FORMAT = 'drkit-redis-export/1';

/** How key values are written: `exact` (DUMP payloads, restored by RESTORE) or `ndjson` (readable, typed). */
export type ExportEncoding = 'exact' | 'ndjson';

/** The Redis data types an export carries. */
export const REDIS_TYPES = ['string', 'hash', 'list', 'set', 'zset', 'stream'] as const;
export type RedisType = (typeof REDIS_TYPES)[number];

/** The first line of an export. */
export interface ExportHeader {
  format: typeof EXPORT_FORMAT;
  encoding: ExportEncoding;
  /** The source server's version, e.g. "7.0.15". */
  redisVersion: string;
  /** When the export started (ISO 8601). */
  startedAt: string;
  /** How absolute expiries were read: PEXPIRETIME (Redis >= 7, exact) or PTTL plus the server time captured with it. */
  expiry: 'pexpiretime' | 'pttl';
}

/** A stream's own state, beyond its entries. */
export interface StreamMeta {
  lastId: string;
  entriesAdded: number;
  maxDeletedId: string;
}

/** A consumer group of a stream, with its consumers and pending entries. */
export interface StreamGroup {
  name: string;
  lastDeliveredId: string;
  /** Entries read (Redis >= 7), or null when the server does not know it. */
  entriesRead: number | null;
  consumers: string[];
  /** Pending entries: [id, consumer, idle ms, delivery count]. */
  pending: [string, string, number, number][];
}

/**
 * One key, or one window of a large key. The first record of a key carries `expireAt`; a
 * record with `more` is followed by records with `cont` for the same key. With `b64`, the key
 * and every member, field and value are base64 (binary data); otherwise they are UTF-8 text.
 */
export interface KeyRecord {
  db: number;
  key: string;
  type: RedisType;
  b64?: true;
  /** Absolute expiry in Unix ms; absent when the key does not expire. */
  expireAt?: number;
  /** This record continues the previous one's key. */
  cont?: true;
  /** Another record of this key follows. */
  more?: true;
  /** exact: the DUMP payload, base64. */
  dump?: string;
  /** string: the value (a window of it, appended, in a `cont` record). */
  value?: string;
  /** hash: [field, value] pairs. */
  fields?: [string, string][];
  /** list: items in order. */
  items?: string[];
  /** set: members. */
  members?: string[];
  /** zset: [member, score] pairs; scores as Redis prints them (17 significant digits, inf, -inf). */
  scores?: [string, string][];
  /** stream: [id, [field, value, field, value, ...]] in id order. */
  entries?: [string, string[]][];
  /** stream, on the key's last record: its metadata and consumer groups. */
  stream?: StreamMeta;
  groups?: StreamGroup[];
}

/** The last line of an export: what it holds, so that a cut export is recognised. */
export interface ExportTrailer {
  end: true;
  /** Keys exported (each counted once, however many records it took). */
  keys: number;
  records: number;
  /** Database number → keys exported from it. */
  databases: Record<string, number>;
  /** Keys with an expiry, per database. */
  expires: Record<string, number>;
  /** When the export finished (ISO 8601). */
  finishedAt: string;
}

/** One parsed line of an export. */
export type ExportLine =
  | { kind: 'header'; header: ExportHeader }
  | { kind: 'key'; record: KeyRecord }
  | { kind: 'trailer'; trailer: ExportTrailer };

/** Text for JSON: UTF-8 text as is, anything else base64 (`binary` tells the caller which). */
export function textOf(buffers: readonly Buffer[]): { binary: boolean } {
  for (const b of buffers) if (!isUtf8(b)) return { binary: true };
  return { binary: false };
}

/** Decodes a record's string back to bytes. */
export function bytesOf(record: { b64?: true }, text: string): Buffer {
  return record.b64 ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
}

/** Encodes bytes for a record. */
export function encode(binary: boolean, value: Buffer): string {
  return binary ? value.toString('base64') : value.toString('utf8');
}

const badLine = (line: number, why: string) =>
  new RedisBackupError(
    'REDIS_BACKUP_INVALID',
    `line ${line} of the export is not a valid ${EXPORT_FORMAT} record (${why}): the export is damaged or not made by drkit`,
  );

/**
 * Parses one line of an export, checking what a restore relies on.
 * @throws RedisBackupError REDIS_BACKUP_INVALID
 */
export function parseLine(text: string, line: number): ExportLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badLine(line, 'not JSON');
  }
  if (typeof value !== 'object' || value === null) throw badLine(line, 'not an object');
  const v = value as Record<string, unknown>;
  if (line === 1) {
    if (v.format !== EXPORT_FORMAT) throw badLine(line, `format is ${JSON.stringify(v.format)}`);
    if (v.encoding !== 'exact' && v.encoding !== 'ndjson') throw badLine(line, 'unknown encoding');
    return { kind: 'header', header: v as unknown as ExportHeader };
  }
  if (v.end === true) {
    if (typeof v.keys !== 'number' || typeof v.databases !== 'object') throw badLine(line, 'trailer without counts');
    return { kind: 'trailer', trailer: v as unknown as ExportTrailer };
  }
  if (typeof v.db !== 'number' || !Number.isInteger(v.db) || v.db < 0) throw badLine(line, 'no database number');
  if (typeof v.key !== 'string') throw badLine(line, 'no key');
  if (!REDIS_TYPES.includes(v.type as RedisType)) throw badLine(line, `unknown type ${JSON.stringify(v.type)}`);
  if (v.expireAt !== undefined && (typeof v.expireAt !== 'number' || !Number.isSafeInteger(v.expireAt) || v.expireAt <= 0))
    throw badLine(line, 'bad expireAt');
  return { kind: 'key', record: v as unknown as KeyRecord };
}

/**
 * Splits a byte stream into lines (without the newline), parsing each: the reader of exports.
 * Memory holds one partial line at a time.
 */
export async function* readLines(source: AsyncIterable<Buffer>): AsyncGenerator<ExportLine> {
  let rest: Buffer | undefined;
  let line = 0;
  for await (const chunk of source) {
    let data = rest ? Buffer.concat([rest, chunk]) : chunk;
    rest = undefined;
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl < 0) break;
      line++;
      yield parseLine(data.toString('utf8', start, nl), line);
      start = nl + 1;
    }
    if (start < data.length) rest = data.subarray(start);
    data = Buffer.alloc(0);
  }
  if (rest && rest.length > 0) throw badLine(line + 1, 'the last line has no newline: the export was cut');
}
