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

/** Bytes of the fixed parts of an exact record, as `exactLine` in the export writes them. */
const DB_OPEN = Buffer.from('{"db":', 'latin1');
const KEY_OPEN = Buffer.from(',"key":"', 'latin1');
const TYPE_OPEN = Buffer.from(',"type":"', 'latin1');
const B64_FLAG = Buffer.from(',"b64":true', 'latin1');
const EXPIRE_OPEN = Buffer.from(',"expireAt":', 'latin1');
const DUMP_OPEN = Buffer.from(',"dump":"', 'latin1');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** True when `data` holds `part` at `at`. */
function holds(data: Buffer, at: number, part: Buffer): boolean {
  if (at + part.length > data.length) return false;
  for (let i = 0; i < part.length; i++) if (data[at + i] !== part[i]) return false;
  return true;
}

/** The decimal digits at `at` (no sign, no leading zero, at most 16): [value, end], or undefined. */
function digitsAt(data: Buffer, at: number): [number, number] | undefined {
  let end = at;
  let value = 0;
  while (end < data.length && end - at <= 16) {
    const c = data[end] as number;
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
    end++;
  }
  if (end === at || end - at > 16 || (data[at] === 0x30 && end - at > 1)) return undefined;
  return [value, end];
}

/**
 * Where the fields of an exact record lie in its line's bytes (see {@link LineBatch.exact}).
 * One object is filled again for every line: reading a record this way allocates nothing.
 */
export interface ExactFields {
  db: number;
  /** The key's bytes as the line holds them: UTF-8 text, or base64 with `b64`. */
  keyStart: number;
  keyEnd: number;
  b64: boolean;
  type: RedisType;
  /** Absolute expiry in Unix ms; 0 when the key does not expire. */
  expireAt: number;
  /** The DUMP payload's base64 text. */
  dumpStart: number;
  dumpEnd: number;
}

/** A fresh {@link ExactFields} to fill. */
export function exactFields(): ExactFields {
  return { db: 0, keyStart: 0, keyEnd: 0, b64: false, type: 'string', expireAt: 0, dumpStart: 0, dumpEnd: 0 };
}

/**
 * Reads an exact record straight from its bytes (`start` to `end`, a line holding no
 * backslash), without JSON.parse and without the line as a string: a restore reads millions
 * of them, and parsing them was an eighth of its CPU. Only the exact shape the export writes
 * is taken (fields in order, no escapes); for anything else it returns false and the line
 * goes through {@link parseLine}, which decides what it is. The dump text is not checked
 * here: its decoder refuses what is not base64.
 */
function scanExact(data: Buffer, start: number, end: number, into: ExactFields): boolean {
  if (!holds(data, start, DB_OPEN)) return false;
  const db = digitsAt(data, start + DB_OPEN.length);
  if (!db || !holds(data, db[1], KEY_OPEN)) return false;
  const keyStart = db[1] + KEY_OPEN.length;
  let at = keyStart;
  // JSON strings hold no raw control characters; a quote ends the key (no escapes here).
  for (; at < end; at++) {
    const c = data[at] as number;
    if (c === QUOTE) break;
    if (c < 0x20) return false;
  }
  if (at >= end || !holds(data, at + 1, TYPE_OPEN)) return false;
  const keyEnd = at;
  const typeStart = at + 1 + TYPE_OPEN.length;
  const typeEnd = data.indexOf(QUOTE, typeStart);
  const type = typeEnd < 0 || typeEnd >= end ? undefined : typeNameAt(data, typeStart, typeEnd);
  if (type === undefined) return false;
  at = typeEnd + 1;
  let b64 = false;
  if (holds(data, at, B64_FLAG)) {
    b64 = true;
    at += B64_FLAG.length;
  }
  let expireAt = 0;
  if (holds(data, at, EXPIRE_OPEN)) {
    const n = digitsAt(data, at + EXPIRE_OPEN.length);
    if (!n || n[0] <= 0 || !Number.isSafeInteger(n[0])) return false;
    expireAt = n[0];
    at = n[1];
  }
  if (!holds(data, at, DUMP_OPEN)) return false;
  const dumpStart = at + DUMP_OPEN.length;
  // The dump is the rest of the line but its closing `"}`.
  const dumpEnd = end - 2;
  if (dumpEnd < dumpStart || data[dumpEnd] !== QUOTE || data[end - 1] !== 0x7d || data.indexOf(QUOTE, dumpStart) !== dumpEnd) return false;
  into.db = db[0];
  into.keyStart = keyStart;
  into.keyEnd = keyEnd;
  into.b64 = b64;
  into.type = type;
  into.expireAt = expireAt;
  into.dumpStart = dumpStart;
  into.dumpEnd = dumpEnd;
  return true;
}

/** Type names as bytes, to check a record's type without making a string of it. */
const TYPE_BYTES = REDIS_TYPES.map((t) => Buffer.from(t, 'latin1'));

/** The type named by the bytes `start` to `end` (one of the shared constant strings), or undefined. */
function typeNameAt(data: Buffer, start: number, end: number): RedisType | undefined {
  for (let i = 0; i < TYPE_BYTES.length; i++) {
    const name = TYPE_BYTES[i] as Buffer;
    if (name.length === end - start && holds(data, start, name)) return REDIS_TYPES[i];
  }
  return undefined;
}

/**
 * Whole lines of an export, kept as the bytes they arrived in and parsed on demand: a
 * restore reads an exact record's fields in place ({@link exact}) and builds nothing for
 * it; everything else parses a line into an {@link ExportLine} ({@link line}).
 */
export class LineBatch {
  /** The bytes holding the lines. */
  readonly data: Buffer;
  /** Per line: start, end (before the newline), and 1 when the line holds no backslash. */
  readonly #bounds: number[];
  /** The number (from 1) of the first line in the export. */
  readonly #first: number;

  /** @internal built by {@link readLineBatches} */
  constructor(data: Buffer, bounds: number[], first: number) {
    this.data = data;
    this.#bounds = bounds;
    this.#first = first;
  }

  /** Lines in this batch. */
  get length(): number {
    return this.#bounds.length / 3;
  }

  /**
   * Fills `into` and returns true when line `i` is an exact record in the form the export
   * writes; false for any other line (header, trailer, NDJSON record, escaped text).
   */
  exact(i: number, into: ExactFields): boolean {
    const b = this.#bounds;
    return b[3 * i + 2] === 1 && this.#first + i > 1 && scanExact(this.data, b[3 * i] as number, b[3 * i + 1] as number, into);
  }

  /**
   * Line `i`, parsed.
   * @throws RedisBackupError REDIS_BACKUP_INVALID
   */
  line(i: number): ExportLine {
    const b = this.#bounds;
    const start = b[3 * i] as number;
    const end = b[3 * i + 1] as number;
    const fields = scratch;
    if (this.exact(i, fields)) {
      const data = this.data;
      // One property order for every record: one hidden class, as JSON.parse would give them.
      const record = { db: fields.db, key: data.toString('utf8', fields.keyStart, fields.keyEnd), type: fields.type } as KeyRecord;
      if (fields.b64) record.b64 = true;
      if (fields.expireAt > 0) record.expireAt = fields.expireAt;
      record.dump = data.toString('latin1', fields.dumpStart, fields.dumpEnd);
      // As JSON.parse would: text with a control character is not JSON (parseLine says so).
      if (BASE64_TEXT.test(record.dump)) return { kind: 'key', record };
    }
    return parseLine(this.data.toString('utf8', start, end), this.#first + i);
  }
}

const scratch = exactFields();
const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Splits a byte stream into lines and yields the whole lines of each piece of the stream
 * together, unparsed ({@link LineBatch}): the reader of exports for callers that go through
 * millions of lines (a restore), where one `await` and one object per line would cost more
 * than the line itself. Memory holds one piece and one partial line at a time.
 * @throws RedisBackupError REDIS_BACKUP_INVALID when the last line is cut
 */
export async function* readLineBatches(source: AsyncIterable<Buffer>): AsyncGenerator<LineBatch> {
  let rest: Buffer | undefined;
  let line = 0;
  for await (const chunk of source) {
    const data = rest ? Buffer.concat([rest, chunk]) : chunk;
    rest = undefined;
    const bounds: number[] = [];
    const first = line + 1;
    let start = 0;
    // Lines with a backslash (an escape) are left to JSON.parse: the next one is found once per piece.
    let backslash = data.indexOf(BACKSLASH);
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl < 0) break;
      line++;
      if (backslash >= 0 && backslash < start) backslash = data.indexOf(BACKSLASH, start);
      bounds.push(start, nl, backslash < 0 || backslash > nl ? 1 : 0);
      start = nl + 1;
    }
    if (start < data.length) rest = data.subarray(start);
    if (bounds.length > 0) yield new LineBatch(data, bounds, first);
  }
  if (rest && rest.length > 0) throw badLine(line + 1, 'the last line has no newline: the export was cut');
}

/**
 * Splits a byte stream into lines (without the newline), parsing each: the reader of exports.
 * Memory holds one piece of the stream at a time (see {@link readLineBatches}).
 * @throws RedisBackupError REDIS_BACKUP_INVALID
 */
export async function* readLines(source: AsyncIterable<Buffer>): AsyncGenerator<ExportLine> {
  for await (const batch of readLineBatches(source)) for (let i = 0; i < batch.length; i++) yield batch.line(i);
}
