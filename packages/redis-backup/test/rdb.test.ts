import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RedisSandbox, startRedis } from '@drkit/sandbox';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { isRedisBackupError, type RedisBackupError } from '../src/errors.js';
import { crc64, createCrc64, createRdbChecker, maxRdbVersionFor, rdbVersionOf } from '../src/rdb.js';

/** Bit by bit, straight from the definition (test-local: the tests must not lean on the code under test). */
function referenceCrc64(data: Uint8Array): bigint {
  const poly = 0x95ac9329ac4bc9b5n; // 0xad93d23594c935a9 reflected
  let crc = 0n;
  for (const byte of data) {
    crc ^= BigInt(byte);
    for (let bit = 0; bit < 8; bit++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
  }
  return crc;
}

/** A well-formed RDB: header, body, EOF opcode, then the CRC64 (or zeros) little-endian. */
function rdbFile(version: number, body: Buffer, checksum: 'crc' | 'zeros' | 'none' = 'crc'): Buffer {
  const head = Buffer.concat([Buffer.from(`REDIS${String(version).padStart(4, '0')}`, 'latin1'), body, Buffer.from([0xff])]);
  if (checksum === 'none') return head;
  const sum = Buffer.alloc(8);
  if (checksum === 'crc') sum.writeBigUInt64LE(referenceCrc64(head));
  return Buffer.concat([head, sum]);
}

/** Feeds `data` to a fresh checker in chunks of the given sizes (cycled). */
function check(data: Buffer, sizes: number[] = [data.length || 1]) {
  const checker = createRdbChecker();
  let offset = 0;
  for (let i = 0; offset < data.length; i++) {
    const size = sizes[i % sizes.length] as number;
    checker.update(data.subarray(offset, offset + size));
    offset += size;
  }
  return checker.finish();
}

function errorOf(fn: () => unknown): RedisBackupError {
  try {
    fn();
  } catch (error) {
    if (!isRedisBackupError(error)) throw new Error(`expected a RedisBackupError, got ${String(error)}`, { cause: error });
    return error;
  }
  throw new Error('expected a RedisBackupError, but nothing was thrown');
}

describe('crc64', () => {
  it('is the CRC64 of Redis: the check value of "123456789" is 0xe9c6d914c4b8d9ca', () => {
    expect(crc64(Buffer.from('123456789'))).toBe(0xe9c6d914c4b8d9can);
    expect(crc64(Buffer.alloc(0))).toBe(0n);
  });

  it('matches the bitwise definition for every length and however the data is split', () => {
    for (const length of [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099]) {
      const data = randomBytes(length);
      const expected = referenceCrc64(data);
      expect(crc64(data)).toBe(expected);
      const crc = createCrc64();
      for (let offset = 0, step = 1; offset < length; offset += step, step = (step * 3 + 1) % 23)
        crc.update(data.subarray(offset, offset + step));
      expect(crc.digest()).toBe(expected);
      const { lo, hi } = crc.halves();
      expect((BigInt(hi) << 32n) | BigInt(lo)).toBe(expected);
    }
  });
});

describe('rdbVersionOf', () => {
  it('reads the version from "REDIS" and four digits', () => {
    expect(rdbVersionOf(Buffer.from('REDIS0010'))).toBe(10);
    expect(rdbVersionOf(Buffer.from('REDIS0006\xfa\x09redis-ver', 'latin1'))).toBe(6);
  });

  it('refuses anything else with REDIS_RDB_INVALID, quoting what it found', () => {
    for (const header of ['REDIS001', 'redis0010', 'REDISabcd', 'REDIS 010', 'PGDMP\x01\x0e\x00\x04', '', 'REDIS0000']) {
      const error = errorOf(() => rdbVersionOf(Buffer.from(header, 'latin1')));
      expect(error.code).toBe('REDIS_RDB_INVALID');
    }
    expect(errorOf(() => rdbVersionOf(Buffer.from('PGDMP\x01\x0e\x00\x04', 'latin1'))).message).toContain('"PGDMP\\x01\\x0e\\x00\\x04"');
    expect(errorOf(() => rdbVersionOf(Buffer.alloc(0))).message).toContain('empty');
  });
});

describe('maxRdbVersionFor', () => {
  it('knows the RDB version each Redis release writes and loads', () => {
    const table: Record<string, number> = {
      '2.6.17': 6,
      '2.8.24': 6,
      '3.0.7': 6,
      '3.2.12': 7,
      '4.0.14': 8,
      '5.0.14': 9,
      '6.0.20': 9,
      '6.2.14': 9,
      '7.0.15': 10,
      '7.2.4': 11,
      '7.4.1': 12,
      '8.0.2': 12,
      '8.2.1': 12,
      '8.4.0': 12,
      '8.6.0': 13,
      'v7.0.0': 10,
      '7.2-rc1': 11,
      '9.0.0': 13,
    };
    for (const [version, rdb] of Object.entries(table)) expect([version, maxRdbVersionFor(version)]).toEqual([version, rdb]);
  });

  it('says nothing about what it cannot parse or predates 2.6', () => {
    for (const version of ['', 'unknown', 'seven', '7', '2.4.18', '1.2.6']) expect(maxRdbVersionFor(version)).toBeUndefined();
  });
});

describe('createRdbChecker', () => {
  const body = Buffer.concat([
    Buffer.from('\xfa\x09redis-ver\x067.0.15\xfe\x00\xfb\x01\x00\x00\x03key\x05value', 'latin1'),
    randomBytes(5000),
  ]);
  const good = rdbFile(10, body);

  it('accepts a well-formed file fed whole, byte by byte, or in uneven chunks', () => {
    const expected = { bytes: good.length, rdbVersion: 10, checksum: 'ok' };
    expect(check(good)).toEqual(expected);
    expect(check(good, [1])).toEqual(expected);
    expect(check(good, [3, 8, 7, 1, 100, 9, 2])).toEqual(expected);
    // Chunks that end inside the last 8 bytes: the checksum is held back across calls.
    expect(check(good, [good.length - 5, 2, 3])).toEqual(expected);
  });

  it('detects a flipped byte in the header area, the body or the stored checksum', () => {
    for (const at of [12, 2000, good.length - 10, good.length - 3]) {
      const damaged = Buffer.from(good);
      damaged[at] = (damaged[at] as number) ^ 0x10;
      const error = errorOf(() => check(damaged, [777]));
      expect(error.code).toBe('REDIS_RDB_INVALID');
      expect(error.message).toMatch(/corrupt: its CRC64 is 0x[0-9a-f]{16} but it stores 0x[0-9a-f]{16}/);
    }
  });

  it('detects a truncated file', () => {
    for (const keep of [good.length - 1, good.length - 8, good.length - 9, 2048, 20, 12]) {
      const error = errorOf(() => check(good.subarray(0, keep), [500]));
      expect(error.code).toBe('REDIS_RDB_INVALID');
      expect(error.message).toMatch(/truncated|corrupt/);
    }
    expect(errorOf(() => check(good.subarray(0, 5))).message).toMatch(/shorter than the RDB header/);
    expect(errorOf(() => check(Buffer.alloc(0))).message).toMatch(/empty/);
  });

  it('requires the EOF opcode 0xFF just before the checksum, even when the CRC matches', () => {
    const head = Buffer.from(good.subarray(0, good.length - 8));
    head[head.length - 1] = 0xfe;
    const sum = Buffer.alloc(8);
    sum.writeBigUInt64LE(referenceCrc64(head));
    const error = errorOf(() => check(Buffer.concat([head, sum])));
    expect(error.code).toBe('REDIS_RDB_INVALID');
    expect(error.message).toContain('not the end-of-file opcode 0xFF');
  });

  it('accepts an all-zero checksum as "disabled" (rdbchecksum no), but still checks the EOF opcode', () => {
    expect(check(rdbFile(10, body, 'zeros'), [1000])).toEqual({ bytes: good.length, rdbVersion: 10, checksum: 'disabled' });
    const noEof = rdbFile(10, body, 'zeros');
    noEof[noEof.length - 9] = 0x00;
    expect(errorOf(() => check(noEof)).message).toContain('end-of-file opcode');
  });

  it('treats RDB versions before 5 as having no checksum, but needing the final 0xFF', () => {
    const old = rdbFile(4, Buffer.from('\xfe\x00\x00\x01a\x01b', 'latin1'), 'none');
    expect(check(old, [2])).toEqual({ bytes: old.length, rdbVersion: 4, checksum: 'disabled' });
    expect(errorOf(() => check(old.subarray(0, old.length - 1))).code).toBe('REDIS_RDB_INVALID');
  });

  it('rejects a wrong header as soon as it has seen 9 bytes', () => {
    const checker = createRdbChecker();
    checker.update(Buffer.from('PGD'));
    expect(errorOf(() => checker.update(Buffer.from('MP\x01\x0e\x00\x04', 'latin1'))).code).toBe('REDIS_RDB_INVALID');
  });
});

describe('createRdbChecker on files written by redis-server', () => {
  const servers: RedisSandbox[] = [];

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  /** What SAVE writes on a server with `config` (rdbchecksum cannot change at runtime). */
  async function savedRdb(config: Record<string, string>): Promise<{ file: Buffer; version: string }> {
    const server = await startRedis({ persistence: 'rdb', config });
    servers.push(server);
    const client = new Redis({ host: server.host, port: server.port, lazyConnect: true, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    try {
      await client.connect();
      for (let i = 0; i < 300; i++) await client.set(`k:${i}`, randomBytes(i * 7));
      await client.hset('h', { a: '1', b: randomBytes(64) });
      await client.zadd('z', 1.5, 'one', 2, 'two');
      await client.save();
    } finally {
      client.disconnect();
    }
    return { file: await readFile(join(server.dataDir, server.dbFilename)), version: server.version };
  }

  it('accepts what SAVE writes: "ok" with rdbchecksum yes, "disabled" with rdbchecksum no', async () => {
    const withSum = await savedRdb({ rdbchecksum: 'yes' });
    const rdbVersion = maxRdbVersionFor(withSum.version);
    expect(check(withSum.file, [4096])).toEqual({ bytes: withSum.file.length, rdbVersion, checksum: 'ok' });
    // The trailer is what Redis computed: it agrees with the reference definition as well.
    const { file } = withSum;
    expect(file.readBigUInt64LE(file.length - 8)).toBe(referenceCrc64(file.subarray(0, file.length - 8)));

    const without = await savedRdb({ rdbchecksum: 'no' });
    expect(without.file.readBigUInt64LE(without.file.length - 8)).toBe(0n);
    expect(check(without.file, [4096])).toEqual({ bytes: without.file.length, rdbVersion, checksum: 'disabled' });
  });
});
