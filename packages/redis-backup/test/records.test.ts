import { randomBytes } from 'node:crypto';
import { type RedisSandbox, startRedis } from '@drkit/sandbox';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisTarget } from '../src/connection.js';
import { isRedisBackupError } from '../src/errors.js';
import { importRedis } from '../src/import.js';
import {
  EXPORT_FORMAT,
  type ExportLine,
  exactFields,
  type KeyRecord,
  type LineBatch,
  parseLine,
  readLineBatches,
  readLines,
} from '../src/records.js';
import { Base64Arg, RespBatch } from '../src/resp.js';
import { errorOf } from './support/errors.js';

// The exact restore reads RESTORE's arguments in place from the export's bytes (LineBatch.exact,
// RespBatch.restoreFrom) instead of through JSON.parse: these tests hold that path to the
// JSON one — same records, same refusals, same bytes on the wire — and check that a failing
// key is still named, with its database, when nothing of it was kept.

const HEADER = JSON.stringify({
  format: EXPORT_FORMAT,
  encoding: 'exact',
  redisVersion: '7.0.15',
  startedAt: '2026-11-22T00:00:00.000Z',
  expiry: 'pexpiretime',
});
const trailer = (keys: number) =>
  JSON.stringify({ end: true, keys, records: keys, databases: {}, expires: {}, finishedAt: '2026-11-22T00:00:01.000Z' });

/** An exact record's line, field for field as the export writes it. */
function exactLine(r: { db: number; key: string; type: string; b64?: boolean; expireAt?: number; dump: string }): string {
  return `{"db":${r.db},"key":${JSON.stringify(r.key)},"type":"${r.type}"${r.b64 ? ',"b64":true' : ''}${r.expireAt !== undefined ? `,"expireAt":${r.expireAt}` : ''},"dump":"${r.dump}"}`;
}

/** The bytes of an export, cut into pieces at the given sizes (in turn). */
async function* pieces(text: string, sizes: number[]): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text, 'utf8');
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length] as number;
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

async function batchesOf(source: AsyncIterable<LineBatch>): Promise<LineBatch[]> {
  const out: LineBatch[] = [];
  for await (const batch of source) out.push(batch);
  return out;
}

async function collect(source: AsyncIterable<ExportLine>): Promise<ExportLine[]> {
  const out: ExportLine[] = [];
  for await (const line of source) out.push(line);
  return out;
}

/** Every kind of key text the export can write, and the payload-like base64 of 0–300 bytes. */
function sampleRecords(): { db: number; key: string; type: string; b64?: boolean; expireAt?: number; dump: string }[] {
  const keys = [
    'plain',
    'with space',
    'ünïcødé ✓ 鍵',
    'emoji 😀',
    'quote " inside',
    'back\\slash',
    'tab\there',
    'newline\nin key',
    'nul\u0000byte',
    '',
    'x'.repeat(600),
  ];
  const records: ReturnType<typeof sampleRecords> = [];
  let n = 0;
  for (const key of keys)
    for (const type of ['string', 'hash', 'list', 'set', 'zset', 'stream'])
      records.push({
        db: n % 16,
        key,
        type,
        ...(n % 3 === 0 ? { expireAt: 1_700_000_000_000 + n } : {}),
        dump: randomBytes(n++ % 301).toString('base64'),
      });
  // Binary keys travel as base64.
  for (let i = 0; i < 20; i++)
    records.push({
      db: i,
      key: randomBytes(1 + i).toString('base64'),
      type: 'string',
      b64: true,
      expireAt: 2 ** 52 + i,
      dump: randomBytes(40 + i).toString('base64'),
    });
  return records;
}

describe('LineBatch: exact records read in place', () => {
  it('gives the same records as JSON.parse for every kind of key, type, expiry and payload, however the bytes are cut', async () => {
    const records = sampleRecords();
    const lines = [HEADER, ...records.map(exactLine), trailer(records.length)];
    const text = `${lines.join('\n')}\n`;
    const expected = lines.map((line, i) => parseLine(line, i + 1));
    for (const sizes of [[text.length], [1], [7, 3, 1000], [4096], [65_536, 13]]) {
      const got = await collect(readLines(pieces(text, sizes)));
      expect(got).toEqual(expected);
    }
    // The in-place path really was taken for the lines without escapes (and only for those).
    let inPlace = 0;
    const fields = exactFields();
    for await (const batch of readLineBatches(pieces(text, [text.length])))
      for (let i = 0; i < batch.length; i++) if (batch.exact(i, fields)) inPlace++;
    const escaped = records.filter((r) => JSON.stringify(r.key).includes('\\')).length;
    expect(escaped).toBeGreaterThan(0);
    expect(inPlace).toBe(records.length - escaped);
  });

  it('reads the fields where they are: key bytes, base64 flag, expiry (0 when none), payload text', async () => {
    const line = exactLine({ db: 12, key: 'ünï', type: 'zset', expireAt: 1_234_567_890_123, dump: 'AAEC' });
    const plainLine = exactLine({ db: 0, key: 'k', type: 'list', b64: true, dump: 'QUJD' });
    const data = Buffer.from(`${HEADER}\n${line}\n${plainLine}\n`);
    const [batch] = await batchesOf(readLineBatches(pieces(data.toString(), [data.length])));
    const fields = exactFields();
    expect((batch as LineBatch).exact(0, fields)).toBe(false); // the header
    expect((batch as LineBatch).exact(1, fields)).toBe(true);
    expect(fields).toMatchObject({ db: 12, b64: false, expireAt: 1_234_567_890_123 });
    expect(data.toString('utf8', fields.keyStart, fields.keyEnd)).toBe('ünï');
    expect(data.toString('latin1', fields.dumpStart, fields.dumpEnd)).toBe('AAEC');
    expect((batch as LineBatch).exact(2, fields)).toBe(true);
    expect(fields).toMatchObject({ db: 0, b64: true, expireAt: 0 });
  });

  it('leaves every line that is not in the export’s own form to JSON.parse, which decides as before', async () => {
    const good = exactLine({ db: 1, key: 'k', type: 'string', dump: 'QUJD' });
    // inPlace: the line is still read in place (its payload is checked where it is decoded,
    // see "refuses text that is not padded base64"); parsed one by one it is not JSON.
    const cases: { line: string; error?: RegExp; record?: Partial<KeyRecord>; inPlace?: true }[] = [
      // Valid JSON in another form: parsed, same record.
      { line: '{"key":"k","db":1,"type":"string","dump":"QUJD"}', record: { db: 1, key: 'k', dump: 'QUJD' } },
      { line: '{ "db": 1, "key": "k", "type": "string", "dump": "QUJD" }', record: { db: 1, key: 'k' } },
      { line: '{"db":1,"key":"k","type":"string","dump":"QUJD","extra":1}', record: { db: 1, key: 'k' } },
      // Not JSON, or not a valid record: refused with the line's number.
      { line: good.replace('"key":"k"', '"key":"k\u0001"'), error: /line 2 .*not JSON/ },
      { line: good.replace('QUJD', 'QU\u0007D'), error: /line 2 .*not JSON/, inPlace: true },
      { line: good.replace('"db":1', '"db":01'), error: /line 2 .*not JSON/ },
      { line: good.replace('"type":"string"', '"type":"module"'), error: /line 2 .*unknown type/ },
      { line: good.replace('"dump"', '"expireAt":0,"dump"'), error: /line 2 .*bad expireAt/ },
      { line: good.replace('"dump"', '"expireAt":99999999999999999,"dump"'), error: /line 2 .*bad expireAt/ },
      { line: good.replace('}', ''), error: /line 2 .*not JSON/ },
    ];
    for (const c of cases) {
      const text = `${HEADER}\n${c.line}\n${trailer(1)}\n`;
      const fields = exactFields();
      const [batch] = await batchesOf(readLineBatches(pieces(text, [text.length])));
      expect((batch as LineBatch).exact(1, fields), c.line).toBe(c.inPlace === true);
      if (c.error) {
        const error = await errorOf(collect(readLines(pieces(text, [5]))));
        expect(error.code, c.line).toBe('REDIS_BACKUP_INVALID');
        expect(error.message, c.line).toMatch(c.error);
      } else {
        const lines = await collect(readLines(pieces(text, [5])));
        expect(lines[1], c.line).toEqual(parseLine(c.line, 2));
        expect((lines[1] as { record: KeyRecord }).record, c.line).toMatchObject(c.record as object);
      }
    }
  });

  it('refuses an export whose last line was cut, whatever the pieces', async () => {
    const text = `${HEADER}\n${exactLine({ db: 0, key: 'k', type: 'string', dump: 'QUJD' })}`;
    for (const sizes of [[text.length], [3]]) {
      const error = await errorOf(batchesOf(readLineBatches(pieces(text, sizes))));
      expect(error.message).toMatch(/line 2 .*the last line has no newline: the export was cut/);
    }
  });
});

describe('RespBatch.restoreFrom', () => {
  const encodeBoth = (key: string, b64: boolean, expireAt: number, dump: string, replace: boolean) => {
    // Neither a key here nor base64 holds "<", "|" or ">".
    const line = Buffer.from(`<${key}|${dump}>`, 'utf8');
    const keyEnd = line.indexOf('|');
    const inPlace = new RespBatch(16);
    inPlace.restoreFrom(line, { start: 1, end: keyEnd, base64: b64 }, expireAt, { start: keyEnd + 1, end: line.length - 1 }, replace);
    const built = new RespBatch(16);
    const args = ['RESTORE', b64 ? new Base64Arg(key) : key, expireAt, new Base64Arg(dump), 'ABSTTL', ...(replace ? ['REPLACE'] : [])];
    built.command(args);
    const text = new RespBatch(16);
    text.restore(key, b64, expireAt, dump, replace);
    return { inPlace: inPlace.take(), built: built.take(), text: text.take() };
  };

  it('writes the same bytes as the command built from strings, for text and base64 keys, with and without REPLACE', () => {
    for (const [key, b64] of [
      ['plain', false],
      ['ünïcødé ✓', false],
      [randomBytes(33).toString('base64'), true],
    ] as const)
      for (const size of [0, 1, 2, 3, 250, 70_000])
        for (const replace of [false, true]) {
          const dump = randomBytes(size).toString('base64');
          const { inPlace, built, text } = encodeBoth(key, b64, size * 1000, dump, replace);
          expect(inPlace.equals(built)).toBe(true);
          expect(text.equals(built)).toBe(true);
        }
  });

  it('refuses text that is not padded base64, and leaves nothing of the command in the batch', () => {
    const batch = new RespBatch(64);
    batch.command(['PING']);
    const before = Buffer.from(batch.take());
    for (const bad of ['QUJ', 'QU$D', 'Q=JD', 'QUJD=', '\u0001UJD']) {
      const line = Buffer.from(`k${bad}`, 'latin1');
      let error: unknown;
      try {
        batch.restoreFrom(line, { start: 0, end: 1, base64: false }, 0, { start: 1, end: line.length }, true);
      } catch (e) {
        error = e;
      }
      expect(isRedisBackupError(error) && error.code, bad).toBe('REDIS_BACKUP_INVALID');
      expect(batch.count).toBe(1);
      expect(batch.take().equals(before)).toBe(true);
    }
  });
});

describe('importRedis of in-place records against a real server', () => {
  let server: RedisSandbox;
  let check: Redis;

  beforeAll(async () => {
    server = await startRedis();
    check = new Redis(server.url(), { maxRetriesPerRequest: 0 });
  });
  afterAll(async () => {
    check?.disconnect();
    await server?.stop();
  });

  /** An export of `keys` string keys per database, as the exact export writes it, with real DUMP payloads. */
  async function exportOf(perDb: Record<number, string[]>): Promise<string> {
    await check.flushall();
    const lines = [HEADER];
    let n = 0;
    for (const [db, keys] of Object.entries(perDb)) {
      for (const key of keys) {
        await check.set('tmp', `value of ${key}`);
        const dump = (await check.dumpBuffer('tmp')) as Buffer;
        const binary = !Buffer.from(key, 'latin1').equals(Buffer.from(Buffer.from(key, 'latin1').toString('utf8'), 'utf8'));
        lines.push(
          exactLine({
            db: Number(db),
            key: binary ? Buffer.from(key, 'latin1').toString('base64') : key,
            type: 'string',
            ...(binary ? { b64: true } : {}),
            dump: dump.toString('base64'),
          }),
        );
        n++;
      }
    }
    await check.flushall();
    lines.push(trailer(n));
    return `${lines.join('\n')}\n`;
  }

  const keysIn = (db: number, count: number, prefix: string) => Array.from({ length: count }, (_, i) => `${prefix}${db}-${i}`);

  it('names the key and the database of a failing RESTORE from the batch it was sent in', async () => {
    // Several batches (batch 7). A database switch starts a new batch with SELECT, in the
    // database of the batch before: k5-1 and k9-0 fail in such batches, where only the SELECT
    // sent with them says which database they are in. A binary key exists in db 5 as well.
    const binaryKey = '\u00ff\u00fe-bin';
    const existing = async () => {
      await check.select(5);
      await check.set(Buffer.from(binaryKey, 'latin1'), 'already here');
      await check.set('m5-2', 'already here too');
      await check.set('k5-1', 'already here too');
      await check.select(9);
      await check.set('k9-0', 'already here too');
      await check.select(0);
    };
    const text = await exportOf({
      0: keysIn(0, 10, 'k'),
      5: [...keysIn(5, 9, 'k'), binaryKey, ...keysIn(5, 4, 'm')],
      9: keysIn(9, 3, 'k'),
    });
    await existing();

    const error = await errorOf(importRedis(redisTarget(server.url()), readLineBatches(pieces(text, [300])), { policy: 'fail', batch: 7 }));
    expect(error.code).toBe('REDIS_KEYS_EXIST');
    expect(error.message).toMatch(/^1 key\(s\) of the backup already exist in .* \(k5-1\)/);

    // skip: the existing keys are counted as skipped, in the right database.
    await check.flushall();
    await existing();
    const result = await importRedis(redisTarget(server.url()), readLineBatches(pieces(text, [300])), { policy: 'skip', batch: 7 });
    expect(result).toMatchObject({ restored: 23, skipped: 4, databases: { 0: 10, 5: 11, 9: 2 } });
    await check.select(5);
    expect(await check.get('m5-2')).toBe('already here too');
    expect(await check.get('k5-8')).toBe('value of k5-8');
    await check.select(0);

    // fail, with only the binary key there: it is named as the export names it (base64).
    await check.flushall();
    await check.select(5);
    await check.set(Buffer.from(binaryKey, 'latin1'), 'already here');
    await check.select(0);
    const binary = await errorOf(
      importRedis(redisTarget(server.url()), readLineBatches(pieces(text, [300])), { policy: 'fail', batch: 7 }),
    );
    expect(binary.message).toMatch(new RegExp(`\\(${Buffer.from(binaryKey, 'latin1').toString('base64').replace(/[+/]/g, '\\$&')}\\)`));
  });

  it('reports a payload the server cannot read with the key and database it belongs to', async () => {
    const text = await exportOf({ 2: keysIn(2, 5, 'k'), 4: keysIn(4, 5, 'k') });
    const lines = text.split('\n');
    // Line 9 is db 4's third key: its payload, still base64, no longer matches its checksum.
    const damaged = lines[8] as string;
    expect(damaged).toContain('"key":"k4-2"');
    const dump = /"dump":"([^"]+)"/.exec(damaged)?.[1] as string;
    const bytes = Buffer.from(dump, 'base64');
    bytes[2] = (bytes[2] as number) ^ 0xff;
    lines[8] = damaged.replace(dump, bytes.toString('base64'));
    const error = await errorOf(
      importRedis(redisTarget(server.url()), readLineBatches(pieces(lines.join('\n'), [64])), { policy: 'replace', batch: 4 }),
    );
    expect(error.code).toBe('REDIS_RDB_VERSION_TOO_NEW');
    expect(error.message).toContain('key k4-2');
  });

  it('names the key and database of any other failed write (REDIS_RESTORE_FAILED)', async () => {
    const text = await exportOf({ 0: keysIn(0, 3, 'k'), 7: keysIn(7, 3, 'k') });
    // Without db 0: the first key is in db 7, which only the SELECT sent with it says.
    const onlyDb7 = text.replace(/\n\{"db":0,[^\n]*/g, '');
    // A server that refuses every write (no replica to write to): each RESTORE fails.
    await check.config('SET', 'min-replicas-to-write', '1');
    try {
      for (const [export_, first] of [
        [text, 'k0-0 \\(db 0\\)'],
        [onlyDb7, 'k7-0 \\(db 7\\)'],
      ] as const) {
        const error = await errorOf(
          importRedis(redisTarget(server.url()), readLineBatches(pieces(export_, [50])), { policy: 'replace', batch: 3 }),
        );
        expect(error.code).toBe('REDIS_RESTORE_FAILED');
        expect(error.message).toMatch(new RegExp(`^writing key ${first} to .* failed: NOREPLICAS`));
      }
    } finally {
      await check.config('SET', 'min-replicas-to-write', '0');
    }
  });

  it('takes lines one by one as well as in pieces, with the same result', async () => {
    const text = await exportOf({ 0: keysIn(0, 30, 'k'), 1: keysIn(1, 30, 'k') });
    const one = await importRedis(redisTarget(server.url()), readLines(pieces(text, [100])), { policy: 'replace', batch: 8 });
    const digestOne = await check.call('DEBUG', 'DIGEST');
    await check.flushall();
    const many = await importRedis(redisTarget(server.url()), readLineBatches(pieces(text, [100])), { policy: 'replace', batch: 8 });
    expect(many).toEqual(one);
    expect(await check.call('DEBUG', 'DIGEST')).toBe(digestOne);
    expect(one.restored).toBe(60);
  });
});
