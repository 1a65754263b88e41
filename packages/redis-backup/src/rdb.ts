import { RedisBackupError } from './errors.js';

/** "REDIS" followed by four ASCII digits: every RDB file starts with these 9 bytes. */
export const RDB_HEADER_SIZE = 9;

/** The opcode that ends the key space of an RDB; the 8-byte checksum follows it. */
export const RDB_OPCODE_EOF = 0xff;

/** RDB versions from this one on end with a CRC64 (Redis 2.6 introduced both). */
const FIRST_VERSION_WITH_CHECKSUM = 5;

const MAGIC = Buffer.from('REDIS', 'ascii');

/**
 * The RDB format version in the first 9 bytes of an RDB file ("REDIS0010" → 10).
 * @throws RedisBackupError REDIS_RDB_INVALID when `header` does not start with "REDIS" and four digits
 */
export function rdbVersionOf(header: Uint8Array): number {
  const bytes = Buffer.from(header.buffer, header.byteOffset, Math.min(header.length, RDB_HEADER_SIZE));
  const digits = bytes.subarray(MAGIC.length).toString('latin1');
  if (bytes.length < RDB_HEADER_SIZE || !bytes.subarray(0, MAGIC.length).equals(MAGIC) || !/^\d{4}$/.test(digits)) {
    throw new RedisBackupError(
      'REDIS_RDB_INVALID',
      `this is not an RDB file: it must start with "REDIS" and a 4-digit version, but starts with ${describeBytes(bytes)}`,
    );
  }
  const version = Number(digits);
  if (version < 1) throw new RedisBackupError('REDIS_RDB_INVALID', `this RDB file claims format version ${digits}, which no Redis writes`);
  return version;
}

/** A short printable rendering of the first bytes of something that should have been an RDB. */
function describeBytes(bytes: Buffer): string {
  if (bytes.length === 0) return 'nothing (it is empty)';
  return `"${bytes.toString('latin1').replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;
}

/**
 * [major, minor, RDB version]: the first Redis release of each RDB format, newest first. Each
 * number is RDB_VERSION (REDIS_RDB_VERSION before 3.2) in src/rdb.h of that release of
 * redis/redis; the same mapping is kept in redis/librdb (src/lib/redisVer.h):
 * - 2.6 → 6, also 2.8 and 3.0 (REDIS_RDB_VERSION 6 in all three);
 * - 3.2 → 7 (quicklist encoding);
 * - 4.0 → 8 (module types, LFU/LRU info);
 * - 5.0 → 9 (streams), also 6.0 and 6.2;
 * - 7.0 → 10 (listpack encodings);
 * - 7.2 → 11 (listpack sets);
 * - 7.4 → 12 (hash field expiry), also 8.0, 8.2 and 8.4;
 * - 8.6 → 13 (per redis/librdb's table).
 */
const RDB_VERSION_BY_RELEASE: readonly (readonly [number, number, number])[] = [
  [8, 6, 13],
  [7, 4, 12],
  [7, 2, 11],
  [7, 0, 10],
  [5, 0, 9],
  [4, 0, 8],
  [3, 2, 7],
  [2, 6, 6],
];

/**
 * The highest RDB format version a Redis server of `redisVersion` ("7.0.15", "v7.2", "8.0-rc1")
 * can load, so a restore can refuse an RDB the server would reject only after a restart.
 * Releases newer than the newest known get the newest known version: they load at least that,
 * and refusing too much is safer than handing a server a file it cannot read.
 * @returns undefined when the version does not parse or predates Redis 2.6
 */
export function maxRdbVersionFor(redisVersion: string): number | undefined {
  const match = /^\s*v?(\d+)\.(\d+)/i.exec(redisVersion);
  if (!match) return undefined;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  for (const [releaseMajor, releaseMinor, rdb] of RDB_VERSION_BY_RELEASE) {
    if (major > releaseMajor || (major === releaseMajor && minor >= releaseMinor)) return rdb;
  }
  return undefined;
}

// CRC64 of Redis (src/crc64.c): the Jones polynomial 0xad93d23594c935a9, reflected input and
// output, initial value 0, no final XOR. JS has no fast 64-bit integers, so each 64-bit value
// is kept as two 32-bit halves, and eight tables let the loop consume 8 bytes per step
// ("slicing-by-8") instead of one.
const POLY_LO = 0xac4bc9b5; // the reflected polynomial 0x95ac9329ac4bc9b5, low half
const POLY_HI = 0x95ac9329; // and high half
const TABLE_LO = new Uint32Array(8 * 256);
const TABLE_HI = new Uint32Array(8 * 256);

for (let n = 0; n < 256; n++) {
  let lo = n;
  let hi = 0;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = (lo >>> 1) | ((hi & 1) << 31);
    hi >>>= 1;
    if (carry) {
      lo ^= POLY_LO;
      hi ^= POLY_HI;
    }
  }
  TABLE_LO[n] = lo;
  TABLE_HI[n] = hi;
}
// Table k advances a byte through k more zero bytes, so 8 bytes can be folded at once.
for (let k = 1; k < 8; k++) {
  for (let n = 0; n < 256; n++) {
    const prevLo = TABLE_LO[(k - 1) * 256 + n] as number;
    const prevHi = TABLE_HI[(k - 1) * 256 + n] as number;
    const index = prevLo & 0xff;
    TABLE_LO[k * 256 + n] = ((prevLo >>> 8) | (prevHi << 24)) ^ (TABLE_LO[index] as number);
    TABLE_HI[k * 256 + n] = (prevHi >>> 8) ^ (TABLE_HI[index] as number);
  }
}

/** An incremental CRC64 (as Redis computes it for RDB files and DUMP payloads). */
export interface Crc64 {
  update(data: Uint8Array): void;
  /** The CRC of everything given so far. */
  digest(): bigint;
  /** The same, as its low and high 32-bit halves (unsigned): no BigInt needed to compare. */
  halves(): { lo: number; hi: number };
}

/** Starts an incremental {@link Crc64}. */
export function createCrc64(): Crc64 {
  let lo = 0;
  let hi = 0;
  const T = TABLE_LO;
  const H = TABLE_HI;
  return {
    update(data) {
      let i = 0;
      const end8 = data.length - (data.length % 8);
      // The `as number` casts are safe: every index is within [0, 2048) or within the data.
      while (i < end8) {
        const a =
          lo ^ ((data[i] as number) | ((data[i + 1] as number) << 8) | ((data[i + 2] as number) << 16) | ((data[i + 3] as number) << 24));
        const b =
          hi ^
          ((data[i + 4] as number) | ((data[i + 5] as number) << 8) | ((data[i + 6] as number) << 16) | ((data[i + 7] as number) << 24));
        const i7 = 1792 + (a & 0xff);
        const i6 = 1536 + ((a >>> 8) & 0xff);
        const i5 = 1280 + ((a >>> 16) & 0xff);
        const i4 = 1024 + (a >>> 24);
        const i3 = 768 + (b & 0xff);
        const i2 = 512 + ((b >>> 8) & 0xff);
        const i1 = 256 + ((b >>> 16) & 0xff);
        const i0 = b >>> 24;
        lo =
          (T[i7] as number) ^
          (T[i6] as number) ^
          (T[i5] as number) ^
          (T[i4] as number) ^
          (T[i3] as number) ^
          (T[i2] as number) ^
          (T[i1] as number) ^
          (T[i0] as number);
        hi =
          (H[i7] as number) ^
          (H[i6] as number) ^
          (H[i5] as number) ^
          (H[i4] as number) ^
          (H[i3] as number) ^
          (H[i2] as number) ^
          (H[i1] as number) ^
          (H[i0] as number);
        i += 8;
      }
      for (; i < data.length; i++) {
        const index = (lo ^ (data[i] as number)) & 0xff;
        lo = ((lo >>> 8) | (hi << 24)) ^ (T[index] as number);
        hi = (hi >>> 8) ^ (H[index] as number);
      }
    },
    digest() {
      return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    },
    halves() {
      return { lo: lo >>> 0, hi: hi >>> 0 };
    },
  };
}

/** The CRC64 of `data`, as Redis computes it (the check value of "123456789" is 0xe9c6d914c4b8d9ca). */
export function crc64(data: Uint8Array): bigint {
  const crc = createCrc64();
  crc.update(data);
  return crc.digest();
}

/** What {@link createRdbChecker} found in a complete RDB. */
export interface RdbCheck {
  bytes: number;
  rdbVersion: number;
  /** 'disabled' when the server saved without a checksum (`rdbchecksum no`, or RDB < 5). */
  checksum: 'ok' | 'disabled';
}

/** Validates an RDB file fed in chunks, without holding more than a few bytes of it. */
export interface RdbChecker {
  /** @throws RedisBackupError REDIS_RDB_INVALID as soon as the header is wrong */
  update(chunk: Uint8Array): void;
  /** @throws RedisBackupError REDIS_RDB_INVALID when the file is truncated, lacks its end marker, or its checksum does not match */
  finish(): RdbCheck;
}

/**
 * A streaming check of an RDB file: the header, the end-of-file opcode, and the CRC64 Redis
 * stores in the last 8 bytes. Feed every byte to `update`, then call `finish`.
 */
export function createRdbChecker(): RdbChecker {
  const crc = createCrc64();
  const header = Buffer.alloc(RDB_HEADER_SIZE);
  let headerBytes = 0;
  let rdbVersion = 0;
  let bytes = 0;
  // The last 8 bytes seen: they may be the checksum, which the CRC must not cover.
  let tail = Buffer.alloc(0);
  // The last byte handed to the CRC: at the end, the byte just before the checksum.
  let lastCovered = -1;
  let finished = false;

  const cover = (data: Uint8Array) => {
    if (data.length === 0) return;
    crc.update(data);
    lastCovered = data[data.length - 1] as number;
  };

  return {
    update(chunk) {
      if (finished) throw new Error('createRdbChecker: update() after finish()');
      if (chunk.length === 0) return;
      bytes += chunk.length;
      if (headerBytes < RDB_HEADER_SIZE) {
        const take = Math.min(RDB_HEADER_SIZE - headerBytes, chunk.length);
        header.set(chunk.subarray(0, take), headerBytes);
        headerBytes += take;
        if (headerBytes === RDB_HEADER_SIZE) rdbVersion = rdbVersionOf(header);
      }
      if (chunk.length >= 8) {
        cover(tail);
        cover(chunk.subarray(0, chunk.length - 8));
        // A copy, so the checker does not keep the caller's whole chunk alive.
        tail = Buffer.from(chunk.subarray(chunk.length - 8));
      } else {
        const joined = Buffer.concat([tail, chunk]);
        const keep = Math.min(8, joined.length);
        cover(joined.subarray(0, joined.length - keep));
        tail = joined.subarray(joined.length - keep);
      }
    },
    finish() {
      finished = true;
      if (headerBytes < RDB_HEADER_SIZE) {
        if (headerBytes === 0) throw new RedisBackupError('REDIS_RDB_INVALID', 'the RDB file is empty');
        // A start that could still become "REDIS" + 4 digits was cut short; anything else is not an RDB.
        if (/^R(E(D(I(S\d{0,3})?)?)?)?$/.test(header.subarray(0, headerBytes).toString('latin1')))
          throw truncated(bytes, rdbVersion, 'it is shorter than the RDB header');
        rdbVersionOf(header.subarray(0, headerBytes));
      }
      if (rdbVersion < FIRST_VERSION_WITH_CHECKSUM) {
        // Before RDB 5 the file simply ends with the EOF opcode.
        if (bytes < RDB_HEADER_SIZE + 1 || tail[tail.length - 1] !== RDB_OPCODE_EOF)
          throw truncated(bytes, rdbVersion, 'its last byte is not the RDB end-of-file opcode 0xFF');
        return { bytes, rdbVersion, checksum: 'disabled' };
      }
      if (bytes < RDB_HEADER_SIZE + 1 + 8)
        throw truncated(bytes, rdbVersion, 'it is too short to hold the end-of-file opcode and checksum');
      if (lastCovered !== RDB_OPCODE_EOF)
        throw truncated(bytes, rdbVersion, 'the byte before its 8-byte checksum is not the end-of-file opcode 0xFF');
      const storedLo = tail.readUInt32LE(0);
      const storedHi = tail.readUInt32LE(4);
      // Servers with `rdbchecksum no` write zeros instead of a checksum.
      if (storedLo === 0 && storedHi === 0) return { bytes, rdbVersion, checksum: 'disabled' };
      const computed = crc.halves();
      if (computed.lo !== storedLo || computed.hi !== storedHi) {
        throw new RedisBackupError(
          'REDIS_RDB_INVALID',
          `the RDB file (${bytes} bytes, version ${rdbVersion}) is corrupt: its CRC64 is ${hex64(computed.hi, computed.lo)} but it stores ${hex64(storedHi, storedLo)}`,
          { details: { bytes, rdbVersion } },
        );
      }
      return { bytes, rdbVersion, checksum: 'ok' };
    },
  };
}

function truncated(bytes: number, rdbVersion: number, why: string): RedisBackupError {
  return new RedisBackupError('REDIS_RDB_INVALID', `the RDB file (${bytes} bytes, version ${rdbVersion}) is truncated or damaged: ${why}`, {
    details: { bytes, rdbVersion },
  });
}

function hex64(hi: number, lo: number): string {
  return `0x${hi.toString(16).padStart(8, '0')}${lo.toString(16).padStart(8, '0')}`;
}
