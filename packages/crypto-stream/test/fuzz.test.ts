// Mutation fuzzing of sealed streams: every mutation of a valid stream must be rejected with a
// SealError of a known code (the expected one where the format makes it deterministic), never
// another exception, never a hang, never any output. Reproduce a failure with the seed printed
// in its assertion message: FUZZ_SEED=<seed> pnpm exec vitest run packages/crypto-stream/test/fuzz.test.ts
// (FUZZ_STATS_FILE=<path> writes the number of mutations per class there as JSON.)
import { readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// Reader limits that are not part of the package's public API.
import { MAX_KEY_ID_LENGTH, SCRYPT_LIMITS } from '../src/format.js';
import {
  type Compression,
  isSealError,
  Keyring,
  MAX_CHUNK_SIZE,
  type MasterKey,
  MIN_CHUNK_SIZE,
  masterKey,
  type OpenKeys,
  open,
  openBuffer,
  openToFile,
  type Passphrase,
  SEAL_ERROR_CODES,
  SealError,
  type SealErrorCode,
  sealBuffer,
} from '../src/index.js';
import {
  describeError,
  drain,
  type ExpectedCodes,
  inPieces,
  isKnownSealError,
  layoutOf,
  type Outcome,
  Prng,
  partAt,
  type SealedLayout,
  seedFrom,
  settle,
  withTempDir,
} from './helpers.js';

const SEED = seedFrom('FUZZ_SEED', 0x5ea1ed01);
const CHUNK = 64;
const TAG = 16;
/** An open that takes longer than this on a stream of a few KiB is a hang. */
const HANG_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Keys and corpus (keys come from the seed; stream ids, data keys and nonces are random, so a
// failure message carries the mutated stream itself).
// ---------------------------------------------------------------------------------------------

const keyRng = new Prng(SEED ^ 0x6b657973);
const keyA = masterKey(keyRng.bytes(32));
const keyB = masterKey(keyRng.bytes(32), 'clé-été-2025');
/** Another key under keyA's id: opens nothing of keyA's. */
const keyASameId = masterKey(keyRng.bytes(32), keyA.id);
const keyOtherId = masterKey(keyRng.bytes(32));
const ring = new Keyring([keyA, keyB]);
const PASSPHRASE: Passphrase = { passphrase: 'correct horse battery staple ✓', log2N: 10 };
const SECRETS = [keyA, keyB, keyASameId, keyOtherId].flatMap((k) => [k.key.toString('hex'), k.key.toString('base64')]);

interface Entry {
  name: string;
  plain: Buffer;
  compression: Compression;
  sealed: Buffer;
  /** The same plaintext sealed again with the same key: another stream id and data key. */
  sibling: Buffer;
  keys: OpenKeys;
  /** What it was sealed with. */
  sealKey: MasterKey | Passphrase;
  passphrase: boolean;
  layout: SealedLayout;
}

type Expect = ExpectedCodes | 'any';

/** Header mutations whose outcome depends on the random bytes the parser then misreads. */
const LOOSE_HEADER: ExpectedCodes = ['SEAL_HEADER_INVALID', 'SEAL_UNKNOWN_KEY', 'SEAL_WRONG_KEY', 'SEAL_KEY_MISSING', 'SEAL_TRUNCATED'];
/** Bytes after the final record: the final record then fails authentication. */
const EXTENDED: ExpectedCodes = ['SEAL_CHUNK_TAMPERED'];

const CLASSES = [
  'bit flip',
  'multi-bit flip',
  'truncation',
  'chunk swap',
  'chunk drop',
  'chunk duplicate',
  'cross-stream splice',
  'header field edit',
  'trailing bytes',
  'byte overwrite',
  'byte insertion',
  'byte deletion',
  'wrong key',
  'wrong passphrase',
] as const;
type MutationClass = (typeof CLASSES)[number];

interface Mutation {
  cls: MutationClass;
  entry: Entry;
  what: string;
  bytes: Buffer;
  expect: Expect;
  keys?: OpenKeys;
  /** Set on mutations built to cancel out (flip then flip back): they must be skipped. */
  identity?: true;
}

let corpus: Entry[] = [];

async function makeEntry(name: string, plain: Buffer, compression: Compression, key: MasterKey | Passphrase): Promise<Entry> {
  const options = { key, compression, chunkSize: CHUNK };
  const [sealed, sibling] = await Promise.all([sealBuffer(plain, options), sealBuffer(plain, options)]);
  const passphrase = 'passphrase' in key;
  return { name, plain, compression, sealed, sibling, keys: passphrase ? key : ring, sealKey: key, passphrase, layout: layoutOf(sealed) };
}

beforeAll(async () => {
  const rng = new Prng(SEED ^ 0x636f7270);
  const text = (n: number) => Buffer.from('the quick brown fox jumps over the lazy dog; '.repeat(Math.ceil(n / 45)).slice(0, n));
  const specs: [string, Buffer, Compression, MasterKey | Passphrase][] = [
    ...[0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 7 * CHUNK + 13, 1000].map((n): [string, Buffer, Compression, MasterKey] => [
      `none/${n}B`,
      rng.bytes(n),
      'none',
      keyA,
    ]),
    ['none/200B utf-8 key id', rng.bytes(200), 'none', keyB],
    ...(['gzip', 'zstd'] as const).flatMap((c): [string, Buffer, Compression, MasterKey][] => [
      [`${c}/0B`, Buffer.alloc(0), c, keyA],
      [`${c}/1B`, rng.bytes(1), c, keyB],
      [`${c}/600B text`, text(600), c, keyA],
      [`${c}/1500B random`, rng.bytes(1500), c, keyA],
    ]),
    ['passphrase none/150B', rng.bytes(150), 'none', PASSPHRASE],
  ];
  corpus = await Promise.all(specs.map(([name, plain, compression, key]) => makeEntry(name, plain, compression, key)));
});

// ---------------------------------------------------------------------------------------------
// Expected outcomes.
// ---------------------------------------------------------------------------------------------

function inRange(v: number, min: number, max: number): boolean {
  return v >= min && v <= max;
}

function decodesAsUtf8(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** The code for a stream whose only change lies within the header part (or record) that holds `at`. */
function expectedForChangeAt(entry: Entry, mutated: Buffer, at: number): Expect {
  const L = entry.layout;
  const part = partAt(L, at);
  const byte = mutated[at] ?? -1;
  switch (part) {
    case 'magic':
      return ['SEAL_NOT_SEALED'];
    case 'version':
      return ['SEAL_UNSUPPORTED_VERSION'];
    case 'aead':
      return ['SEAL_UNSUPPORTED_ALGORITHM'];
    case 'compression':
      return byte <= 2 ? ['SEAL_HEADER_TAMPERED'] : ['SEAL_UNSUPPORTED_ALGORITHM'];
    case 'reserved':
      return ['SEAL_HEADER_INVALID'];
    case 'chunkSize':
      return inRange(mutated.readUInt32BE(12), MIN_CHUNK_SIZE, MAX_CHUNK_SIZE) ? ['SEAL_HEADER_TAMPERED'] : ['SEAL_HEADER_INVALID'];
    case 'streamId':
    case 'wrapNonce':
    case 'wrappedKey':
    case 'scrypt.salt':
      return ['SEAL_WRONG_KEY'];
    case 'keyIdLength':
      return byte > MAX_KEY_ID_LENGTH ? ['SEAL_HEADER_INVALID'] : LOOSE_HEADER;
    case 'keyId':
      if (!decodesAsUtf8(mutated.subarray(L.keyId.start, L.keyId.end))) return ['SEAL_HEADER_INVALID'];
      // The key id is in the wrap's associated data: a passphrase stream fails the unwrap; a
      // keyring has no key of the new id.
      return entry.passphrase ? ['SEAL_WRONG_KEY'] : ['SEAL_UNKNOWN_KEY'];
    case 'keySource':
      return byte === 1 || byte === 2 ? LOOSE_HEADER : ['SEAL_HEADER_INVALID'];
    case 'scrypt.log2N':
      return inRange(byte, SCRYPT_LIMITS.minLog2N, SCRYPT_LIMITS.maxLog2N) ? ['SEAL_WRONG_KEY'] : ['SEAL_HEADER_INVALID'];
    case 'scrypt.r':
      return inRange(byte, 1, SCRYPT_LIMITS.maxR) ? ['SEAL_WRONG_KEY'] : ['SEAL_HEADER_INVALID'];
    case 'scrypt.p':
      return inRange(byte, 1, SCRYPT_LIMITS.maxP) ? ['SEAL_WRONG_KEY'] : ['SEAL_HEADER_INVALID'];
    case 'mac':
      return ['SEAL_HEADER_TAMPERED'];
    default:
      if (part.startsWith('chunk ')) return ['SEAL_CHUNK_TAMPERED'];
      throw new Error(`no expectation for a change in ${part}`);
  }
}

/** The code for the stream cut to `length` bytes. */
function expectedForTruncation(entry: Entry, length: number): ExpectedCodes {
  const { headerLength, recordSize } = entry.layout;
  if (length <= headerLength) return ['SEAL_TRUNCATED'];
  const fill = (length - headerLength) % recordSize;
  // A cut at a record boundary, or inside what would be the final record's tag, is a
  // truncation; a longer remainder is read as the final record and fails authentication.
  return fill < TAG ? ['SEAL_TRUNCATED'] : ['SEAL_CHUNK_TAMPERED'];
}

// ---------------------------------------------------------------------------------------------
// Mutation generators: each returns mutations of one entry, drawn from `rng`.
// ---------------------------------------------------------------------------------------------

function flipped(bytes: Buffer, at: number, bit: number): Buffer {
  const out = Buffer.from(bytes);
  out[at] = (out[at] ?? 0) ^ (1 << bit);
  return out;
}

function withBytes(bytes: Buffer, at: number, values: readonly number[]): Buffer {
  const out = Buffer.from(bytes);
  Buffer.from(values).copy(out, at);
  return out;
}

function recordsOf(entry: Entry, from: Buffer = entry.sealed): Buffer[] {
  return entry.layout.records.map((r) => from.subarray(r.start, r.end));
}

function rebuild(entry: Entry, records: readonly Buffer[]): Buffer {
  return Buffer.concat([entry.sealed.subarray(0, entry.layout.headerLength), ...records]);
}

/**
 * A stream rebuilt from a list of its records (and maybe copies of them): a strict prefix of the
 * original list ends at a record boundary (truncated); an extension carries bytes after the
 * final record; any other list puts a wrong record at the first position that differs.
 */
function recordMutation(cls: MutationClass, entry: Entry, what: string, records: readonly Buffer[]): Mutation {
  const original = recordsOf(entry);
  const same = (a: readonly Buffer[], b: readonly Buffer[]) => a.every((r, i) => b[i]?.equals(r) === true);
  let expect: ExpectedCodes = ['SEAL_CHUNK_TAMPERED'];
  if (records.length < original.length && same(records, original)) expect = ['SEAL_TRUNCATED'];
  else if (records.length > original.length && same(original, records)) expect = EXTENDED;
  return { cls, entry, what, bytes: rebuild(entry, records), expect };
}

/** Byte ranges a fuzzer should hit: anywhere, the header, and the tags. */
function pickPosition(entry: Entry, rng: Prng): number {
  const { headerLength, records } = entry.layout;
  switch (rng.int(3)) {
    case 0:
      return rng.int(entry.sealed.length);
    case 1:
      return rng.int(headerLength);
    default: {
      const record = rng.pick(records);
      return record.tag.start + rng.int(TAG);
    }
  }
}

const generators: Record<MutationClass, (entry: Entry, rng: Prng) => Mutation[]> = {
  'bit flip'(entry, rng) {
    const out: Mutation[] = [];
    const count = entry.passphrase ? 90 : 330;
    for (let i = 0; i < count; i++) {
      const at = pickPosition(entry, rng);
      const bit = rng.int(8);
      const bytes = flipped(entry.sealed, at, bit);
      out.push({
        cls: 'bit flip',
        entry,
        what: `flip bit ${bit} of byte ${at} (${partAt(entry.layout, at)})`,
        bytes,
        expect: expectedForChangeAt(entry, bytes, at),
      });
    }
    // A flip and the flip back is no mutation: it must be recognised and skipped.
    const at = rng.int(entry.sealed.length);
    out.push({
      cls: 'bit flip',
      entry,
      what: `flip bit 3 of byte ${at} and back`,
      bytes: flipped(flipped(entry.sealed, at, 3), at, 3),
      expect: 'any',
      identity: true,
    });
    return out;
  },

  'multi-bit flip'(entry, rng) {
    const out: Mutation[] = [];
    const count = entry.passphrase ? 15 : 60;
    for (let i = 0; i < count; i++) {
      let bytes = entry.sealed;
      const flips: string[] = [];
      const positions: number[] = [];
      const n = rng.range(2, 4);
      let last: [number, number] | undefined;
      for (let f = 0; f < n; f++) {
        // Now and then the previous flip again, so that the two cancel out.
        const [at, bit]: [number, number] = last && rng.int(4) === 0 ? last : [pickPosition(entry, rng), rng.int(8)];
        bytes = flipped(bytes, at, bit);
        positions.push(at);
        flips.push(`${at}.${bit}`);
        last = [at, bit];
      }
      const changed = positions.filter((at) => bytes[at] !== entry.sealed[at]);
      const inChunks = changed.length > 0 && changed.every((at) => at >= entry.layout.headerLength);
      out.push({
        cls: 'multi-bit flip',
        entry,
        what: `flip byte.bit ${flips.join(', ')}`,
        bytes,
        expect: inChunks ? ['SEAL_CHUNK_TAMPERED'] : 'any',
      });
    }
    return out;
  },

  truncation(entry) {
    const L = entry.layout;
    const length = entry.sealed.length;
    const cuts = new Map<number, string>();
    const cut = (n: number, label: string) => {
      if (n >= 0 && n < length && !cuts.has(n)) cuts.set(n, label);
    };
    cut(length - 1, 'drop the last byte');
    for (let k = 1; k <= TAG; k++) cut(length - k, `inside the final tag (${k} bytes cut)`);
    cut(0, 'empty');
    for (let n = 1; n < 8; n++) cut(n, 'inside the magic');
    for (let n = 8; n < L.headerLength; n++) {
      const part = partAt(L, n);
      if (partAt(L, n - 1) !== part || n % 7 === 0) cut(n, `inside the header, at ${part}`);
    }
    cut(L.headerLength, 'right after the header');
    for (const [i, r] of L.records.entries()) {
      for (const k of [1, TAG - 1, TAG, TAG + 1, (r.end - r.start) >> 1]) cut(r.start + k, `inside chunk ${i}`);
      cut(r.tag.start, `chunk ${i} without its tag`);
      cut(r.end - 1, `inside the tag of chunk ${i}`);
      if (!r.final) cut(r.end, `at the boundary after chunk ${i}`);
    }
    return [...cuts].map(([n, label]) => ({
      cls: 'truncation' as const,
      entry,
      what: `cut to ${n} of ${length} bytes: ${label}`,
      bytes: entry.sealed.subarray(0, n),
      expect: expectedForTruncation(entry, n),
    }));
  },

  'chunk swap'(entry, rng) {
    const records = recordsOf(entry);
    const pairs: [number, number][] = [];
    for (let i = 0; i + 1 < records.length; i++) pairs.push([i, i + 1]);
    const extra = Math.min(entry.passphrase ? 3 : 40, (records.length * (records.length - 1)) / 2);
    for (let n = 0; n < extra; n++) {
      const i = rng.int(records.length);
      const j = rng.int(records.length);
      if (i !== j) pairs.push([Math.min(i, j), Math.max(i, j)]);
    }
    return pairs.map(([i, j]) => {
      const swapped = [...records];
      [swapped[i], swapped[j]] = [records[j] as Buffer, records[i] as Buffer];
      return recordMutation('chunk swap', entry, `swap records ${i} and ${j} of ${records.length}`, swapped);
    });
  },

  'chunk drop'(entry, rng) {
    const records = recordsOf(entry);
    const out = records.map((_, i) =>
      recordMutation(
        'chunk drop',
        entry,
        `drop record ${i} of ${records.length}`,
        records.filter((__, j) => j !== i),
      ),
    );
    for (let n = 0; n < (records.length >= 3 && !entry.passphrase ? 8 : 0); n++) {
      const drop = new Set([rng.int(records.length), rng.int(records.length), rng.int(records.length)]);
      out.push(
        recordMutation(
          'chunk drop',
          entry,
          `drop records ${[...drop].join(', ')} of ${records.length}`,
          records.filter((__, j) => !drop.has(j)),
        ),
      );
    }
    return out;
  },

  'chunk duplicate'(entry, rng) {
    const records = recordsOf(entry);
    const out = records.flatMap((record, i) => [
      recordMutation('chunk duplicate', entry, `record ${i} of ${records.length} repeated`, [
        ...records.slice(0, i + 1),
        record,
        ...records.slice(i + 1),
      ]),
      recordMutation('chunk duplicate', entry, `record ${i} of ${records.length} also inserted first`, [record, ...records]),
    ]);
    for (let n = 0; n < (entry.passphrase ? 2 : 6); n++) {
      const i = rng.int(records.length);
      const at = rng.int(records.length + 1);
      out.push(
        recordMutation('chunk duplicate', entry, `record ${i} of ${records.length} copied to position ${at}`, [
          ...records.slice(0, at),
          records[i] as Buffer,
          ...records.slice(at),
        ]),
      );
    }
    return out;
  },

  'cross-stream splice'(entry, rng) {
    // The sibling has the same key, plaintext and layout, but its own data key.
    const mine = recordsOf(entry);
    const theirs = recordsOf(entry, entry.sibling);
    const out: Mutation[] = [
      {
        cls: 'cross-stream splice',
        entry,
        what: "this header with the sibling stream's records",
        bytes: rebuild(entry, theirs),
        expect: ['SEAL_CHUNK_TAMPERED'],
      },
      {
        cls: 'cross-stream splice',
        entry,
        what: "the sibling's header with this stream's records",
        bytes: Buffer.concat([entry.sibling.subarray(0, entry.layout.headerLength), ...mine]),
        expect: ['SEAL_CHUNK_TAMPERED'],
      },
    ];
    for (let n = 0; n < Math.min(mine.length, 4); n++) {
      const i = rng.int(mine.length);
      const spliced = [...mine];
      spliced[i] = theirs[i] as Buffer;
      out.push({
        cls: 'cross-stream splice',
        entry,
        what: `record ${i} from the sibling stream`,
        bytes: rebuild(entry, spliced),
        expect: ['SEAL_CHUNK_TAMPERED'],
      });
    }
    // The sibling's key block (wrap nonce and wrapped key) under this stream id: unwrap fails.
    const L = entry.layout;
    out.push({
      cls: 'cross-stream splice',
      entry,
      what: "the sibling's wrap nonce and wrapped key",
      bytes: withBytes(entry.sealed, L.wrapNonce.start, [...entry.sibling.subarray(L.wrapNonce.start, L.wrappedKey.end)]),
      expect: ['SEAL_WRONG_KEY'],
    });
    return out;
  },

  'header field edit'(entry) {
    const L = entry.layout;
    const s = entry.sealed;
    const out: Mutation[] = [];
    const edit = (what: string, at: number, values: readonly number[], expect?: Expect) => {
      const bytes = withBytes(s, at, values);
      out.push({
        cls: 'header field edit',
        entry,
        what: `${what} (byte ${at} := ${values.join(' ')})`,
        bytes,
        expect: expect ?? expectedForChangeAt(entry, bytes, at),
      });
    };
    for (const at of [0, 3, 7]) {
      edit(`magic byte ${at} zeroed`, at, [0]);
      edit(`magic byte ${at} case-flipped`, at, [(s[at] ?? 0) ^ 0x20]);
    }
    for (const v of [0, 2, 0x81, 255]) edit('version', L.version, [v]);
    for (const v of [0, 2, 255]) edit('AEAD id', L.aead, [v]);
    for (const v of [0, 1, 2, 3, 255]) edit('compression id', L.compression, [v]);
    for (const v of [1, 0x80, 255]) edit('reserved byte', L.reserved, [v]);
    for (const v of [0, 1, 63, 64, 65, 128, 4096, 1 << 20, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1, 0x7fffffff, 0xffffffff]) {
      const be = Buffer.alloc(4);
      be.writeUInt32BE(v);
      edit(`chunk size ${v}`, L.chunkSize.start, [...be]);
    }
    const idLength = L.keyId.end - L.keyId.start;
    for (const v of [0, 1, idLength - 1, idLength + 1, idLength + 19, 64, 65, 200, 255]) edit(`key id length ${v}`, L.keyIdLength, [v]);
    const idBytes = s.subarray(L.keyId.start, L.keyId.end);
    edit('key id first byte', L.keyId.start, [idBytes[0] === 0x78 ? 0x79 : 0x78]);
    edit('key id last byte', L.keyId.end - 1, [0x5a]);
    edit('key id byte 0xff', L.keyId.start + (idLength >> 1), [0xff]);
    edit('key id lone lead byte', L.keyId.start, [0xc3]);
    edit('key id NUL', L.keyId.start + 1, [0]);
    if (!entry.passphrase && idLength === keyOtherId.id.length)
      edit('key id of a key not in the ring', L.keyId.start, [...Buffer.from(keyOtherId.id)], ['SEAL_UNKNOWN_KEY']);
    for (const v of [0, 3, 4, 255]) edit(`key source ${v}`, L.keySource, [v]);
    edit('key source swapped', L.keySource, [entry.passphrase ? 1 : 2]);
    if (L.scrypt) {
      // In-range edits stay cheap (the stream has log2N 10, r 8, p 1): the reader runs scrypt
      // with them before the unwrap can fail.
      const { minLog2N, maxLog2N, maxR, maxP } = SCRYPT_LIMITS;
      for (const v of [0, minLog2N - 1, minLog2N + 1, maxLog2N + 1, 255]) edit(`scrypt log2N ${v}`, L.scrypt.log2N, [v]);
      for (const v of [0, 1, 4, maxR + 1, 255]) edit(`scrypt r ${v}`, L.scrypt.r, [v]);
      for (const v of [0, Math.min(2, maxP), maxP + 1, 255]) edit(`scrypt p ${v}`, L.scrypt.p, [v]);
      edit('scrypt salt', L.scrypt.salt.start, [(s[L.scrypt.salt.start] ?? 0) ^ 1]);
    }
    for (const [name, span] of [
      ['stream id', L.streamId],
      ['wrap nonce', L.wrapNonce],
      ['wrapped key', L.wrappedKey],
      ['header MAC', L.mac],
    ] as const) {
      edit(`${name} first byte`, span.start, [(s[span.start] ?? 0) ^ 0xff]);
      edit(`${name} last byte`, span.end - 1, [(s[span.end - 1] ?? 0) ^ 0x01]);
    }
    edit('header MAC zeroed', L.mac.start, new Array<number>(32).fill(0), ['SEAL_HEADER_TAMPERED']);
    return out;
  },

  'trailing bytes'(entry, rng) {
    const s = entry.sealed;
    const records = recordsOf(entry);
    const out: Mutation[] = [
      { cls: 'trailing bytes', entry, what: 'one random byte appended', bytes: Buffer.concat([s, rng.bytes(1)]), expect: EXTENDED },
      { cls: 'trailing bytes', entry, what: 'one zero byte appended', bytes: Buffer.concat([s, Buffer.alloc(1)]), expect: EXTENDED },
      { cls: 'trailing bytes', entry, what: '16 random bytes appended', bytes: Buffer.concat([s, rng.bytes(16)]), expect: EXTENDED },
      {
        cls: 'trailing bytes',
        entry,
        what: `${CHUNK + TAG} zero bytes appended`,
        bytes: Buffer.concat([s, Buffer.alloc(CHUNK + TAG)]),
        expect: EXTENDED,
      },
      { cls: 'trailing bytes', entry, what: 'the whole stream appended', bytes: Buffer.concat([s, s]), expect: EXTENDED },
    ];
    for (const [i, record] of records.entries())
      out.push({
        cls: 'trailing bytes',
        entry,
        what: `a copy of record ${i} of ${records.length} appended`,
        bytes: Buffer.concat([s, record]),
        expect: EXTENDED,
      });
    return out;
  },

  'byte overwrite'(entry, rng) {
    const out: Mutation[] = [];
    const count = entry.passphrase ? 10 : 40;
    for (let i = 0; i < count; i++) {
      const at = pickPosition(entry, rng);
      const n = Math.min(rng.range(1, 32), entry.sealed.length - at);
      const bytes = withBytes(entry.sealed, at, [...rng.bytes(n)]);
      const inChunks = at >= entry.layout.headerLength;
      out.push({
        cls: 'byte overwrite',
        entry,
        what: `${n} random bytes written at ${at} (${partAt(entry.layout, at)})`,
        bytes,
        expect: inChunks ? ['SEAL_CHUNK_TAMPERED'] : 'any',
      });
    }
    return out;
  },

  'byte insertion'(entry, rng) {
    const out: Mutation[] = [];
    const count = entry.passphrase ? 8 : 30;
    for (let i = 0; i < count; i++) {
      const at = rng.int(entry.sealed.length);
      const inserted = rng.int(3) === 0 ? Buffer.from([entry.sealed[at] ?? 0]) : rng.bytes(rng.range(1, 40));
      const bytes = Buffer.concat([entry.sealed.subarray(0, at), inserted, entry.sealed.subarray(at)]);
      out.push({
        cls: 'byte insertion',
        entry,
        what: `${inserted.length} bytes inserted at ${at} (${partAt(entry.layout, at)})`,
        bytes,
        expect: at >= entry.layout.headerLength ? EXTENDED : 'any',
      });
    }
    return out;
  },

  'byte deletion'(entry, rng) {
    const out: Mutation[] = [];
    const count = entry.passphrase ? 8 : 30;
    for (let i = 0; i < count; i++) {
      const at = rng.int(entry.sealed.length - 1);
      const n = Math.min(rng.range(1, 40), entry.sealed.length - 1 - at);
      const bytes = Buffer.concat([entry.sealed.subarray(0, at), entry.sealed.subarray(at + n)]);
      out.push({
        cls: 'byte deletion',
        entry,
        what: `${n} bytes deleted at ${at} (${partAt(entry.layout, at)})`,
        bytes,
        expect: at >= entry.layout.headerLength ? ['SEAL_CHUNK_TAMPERED', 'SEAL_TRUNCATED'] : 'any',
      });
    }
    return out;
  },

  'wrong key'(entry) {
    const base = { cls: 'wrong key' as const, entry, bytes: entry.sealed };
    if ('passphrase' in entry.sealKey)
      return [
        { ...base, what: 'a keyring for a passphrase stream', keys: ring, expect: ['SEAL_KEY_MISSING'] },
        { ...base, what: 'one key for a passphrase stream', keys: keyA, expect: ['SEAL_KEY_MISSING'] },
      ];
    const impostor = masterKey(keyASameId.key, entry.sealKey.id);
    return [
      { ...base, what: 'another key under the same id', keys: impostor, expect: ['SEAL_WRONG_KEY'] },
      {
        ...base,
        what: 'a keyring holding another key under the same id',
        keys: new Keyring([keyOtherId, impostor]),
        expect: ['SEAL_WRONG_KEY'],
      },
      { ...base, what: 'a key of another id', keys: keyOtherId, expect: ['SEAL_UNKNOWN_KEY'] },
      { ...base, what: 'a keyring without the id', keys: new Keyring([keyOtherId]), expect: ['SEAL_UNKNOWN_KEY'] },
      { ...base, what: 'an empty keyring', keys: new Keyring(), expect: ['SEAL_UNKNOWN_KEY'] },
      { ...base, what: 'a passphrase for a keyed stream', keys: PASSPHRASE, expect: ['SEAL_KEY_MISSING'] },
    ];
  },

  'wrong passphrase'(entry, rng) {
    if (!entry.passphrase) return [];
    const right = PASSPHRASE.passphrase;
    const wrong = [
      right.slice(0, -1),
      `${right} `,
      right.toUpperCase(),
      right.replace('horse', 'h0rse'),
      'x',
      ...Array.from({ length: 40 }, () => rng.bytes(rng.range(1, 24)).toString('base64')),
    ];
    return wrong
      .map(
        (passphrase): Mutation => ({
          cls: 'wrong passphrase' as const,
          entry,
          what: `passphrase ${JSON.stringify(passphrase)}`,
          bytes: entry.sealed,
          keys: { passphrase, log2N: 10 },
          expect: ['SEAL_WRONG_KEY'] as const,
        }),
      )
      .concat(
        // scrypt keys HMAC-SHA256 with the passphrase and HMAC zero-pads short keys, so a trailing
        // NUL would open the stream: passphrases with NUL, and empty ones, are refused outright.
        ['', `${right}\0`].map(
          (passphrase): Mutation => ({
            cls: 'wrong passphrase' as const,
            entry,
            what: `passphrase ${JSON.stringify(passphrase)}`,
            bytes: entry.sealed,
            keys: { passphrase, log2N: 10 },
            expect: ['SEAL_KEY_INVALID'] as const,
          }),
        ),
      );
  },
};

// ---------------------------------------------------------------------------------------------
// Running mutations.
// ---------------------------------------------------------------------------------------------

function classSeed(cls: MutationClass): number {
  return (SEED ^ Math.imul(CLASSES.indexOf(cls) + 1, 0x9e3779b1)) >>> 0;
}

/** The mutations of one class over the whole corpus, reproducible from the seed. */
function mutationsOf(cls: MutationClass): Mutation[] {
  const rng = new Prng(classSeed(cls));
  return corpus.flatMap((entry) => generators[cls](entry, rng));
}

/** Everything wrong with how `open` treated one mutation, or undefined when it was rejected as expected. */
function verdict(m: Mutation, outcome: Outcome<Buffer>): string | undefined {
  if (outcome.kind === 'hang') return `no result within ${HANG_MS} ms`;
  if (outcome.kind === 'ok') return `opened, yielding ${outcome.value.length} bytes of plaintext`;
  const error = outcome.error;
  if (!(error instanceof SealError) || !isSealError(error) || !(SEAL_ERROR_CODES as readonly string[]).includes(error.code))
    return `threw ${describeError(error)}`;
  if (m.expect !== 'any' && !m.expect.includes(error.code))
    return `threw ${error.code} (expected ${m.expect.join(' or ')}): ${error.message}`;
  if (SECRETS.some((secret) => error.message.includes(secret))) return `error message contains key material: ${error.message}`;
  return undefined;
}

function failureReport(cls: MutationClass, m: Mutation, problem: string): string {
  return [
    `[seed ${SEED} class "${cls}" (class seed ${classSeed(cls)}), corpus "${m.entry.name}"] ${m.what}: ${problem}`,
    `  stream (base64): ${m.bytes.toString('base64').slice(0, 6000)}`,
  ].join('\n');
}

interface ClassStats {
  run: number;
  skippedIdentical: number;
  byCode: Partial<Record<SealErrorCode, number>>;
}
const stats = new Map<MutationClass, ClassStats>();

async function runClass(cls: MutationClass): Promise<{ stats: ClassStats; failures: string[] }> {
  const mutations = mutationsOf(cls);
  const s: ClassStats = { run: 0, skippedIdentical: 0, byCode: {} };
  const failures: string[] = [];
  for (const m of mutations) {
    const unchanged = m.bytes.equals(m.entry.sealed) && m.keys === undefined;
    if (m.identity && !unchanged) failures.push(failureReport(cls, m, 'built to cancel out, but differs from the original'));
    if (unchanged) {
      // Not a mutation (a flip and its flip back, or a field set to the value it had).
      s.skippedIdentical++;
      continue;
    }
    const outcome = await settle(openBuffer(m.bytes, { keys: m.keys ?? m.entry.keys }), HANG_MS);
    s.run++;
    if (outcome.kind === 'error' && isSealError(outcome.error)) s.byCode[outcome.error.code] = (s.byCode[outcome.error.code] ?? 0) + 1;
    const problem = verdict(m, outcome);
    if (problem) failures.push(failureReport(cls, m, problem));
  }
  stats.set(cls, s);
  return { stats: s, failures };
}

/** Minimum mutations per class, so that every class stays well represented. */
const MINIMUM: Record<MutationClass, number> = {
  'bit flip': 5000,
  'multi-bit flip': 800,
  truncation: 1400,
  'chunk swap': 180,
  'chunk drop': 120,
  'chunk duplicate': 250,
  'cross-stream splice': 80,
  'header field edit': 900,
  'trailing bytes': 150,
  'byte overwrite': 600,
  'byte insertion': 450,
  'byte deletion': 450,
  'wrong key': 100,
  'wrong passphrase': 40,
};

describe(`sealed stream mutations (seed ${SEED})`, () => {
  it('starts from a corpus of valid streams that open to their plaintext', async () => {
    expect(corpus).toHaveLength(18);
    for (const entry of corpus) {
      expect(await openBuffer(entry.sealed, { keys: entry.keys }), entry.name).toEqual(entry.plain);
      expect(await openBuffer(entry.sibling, { keys: entry.keys }), entry.name).toEqual(entry.plain);
      const last = entry.layout.records.at(-1);
      expect(last && last.end - last.start, `${entry.name}: the final record holds fewer than chunkSize bytes`).toBeLessThan(CHUNK + TAG);
      expect(entry.layout.chunkBytes).toBe(CHUNK);
    }
    // Record counts that the boundary mutations rely on: 0 → 1 record, chunk-1 → 1, chunk → 2, chunk+1 → 2, 1000 → 16.
    const records = (name: string) => corpus.find((e) => e.name === name)?.layout.records.length;
    expect([records('none/0B'), records('none/63B'), records('none/64B'), records('none/65B'), records('none/1000B')]).toEqual([
      1, 1, 2, 2, 16,
    ]);
  });

  for (const cls of CLASSES) {
    it(`rejects every ${cls} with a SealError of the expected code`, async () => {
      const { stats: s, failures } = await runClass(cls);
      expect(failures.slice(0, 10), `${failures.length} of ${s.run} ${cls} mutations were mishandled (seed ${SEED})`).toEqual([]);
      expect(s.run, `${cls}: mutations run`).toBeGreaterThanOrEqual(MINIMUM[cls]);
      expect(Object.values(s.byCode).reduce((a, b) => a + b, 0)).toBe(s.run);
    });
  }

  it('skips mutations identical to the original, and runs at least 10,000 in all', async () => {
    // The generators add flip-then-flip-back cases and field edits to the value already there.
    const identities = mutationsOf('bit flip').filter((m) => m.identity);
    expect(identities.length).toBe(corpus.length);
    for (const m of identities) expect(m.bytes.equals(m.entry.sealed)).toBe(true);
    const ran = [...stats.values()];
    if (ran.length === CLASSES.length) {
      expect(stats.get('bit flip')?.skippedIdentical).toBeGreaterThanOrEqual(corpus.length);
      expect(stats.get('header field edit')?.skippedIdentical).toBeGreaterThan(0);
      expect(ran.reduce((sum, s) => sum + s.run, 0)).toBeGreaterThanOrEqual(10_000);
    }
  });

  afterAll(async () => {
    const file = process.env.FUZZ_STATS_FILE;
    if (file) await writeFile(file, `${JSON.stringify({ seed: SEED, classes: Object.fromEntries(stats) }, null, 2)}\n`);
  });
});

describe('openToFile on mutated streams', () => {
  // Regression: writeAtomically used to pipe into createWriteStream('', { fd: handle, autoClose:
  // false }), whose reference on the FileHandle made the final `handle.close()` wait forever, so
  // openToFile never settled on a VALID stream and left its temp file behind.
  it('openToFile of a valid stream settles, writes the plaintext and leaves no temp file', async () => {
    const good = corpus.find((e) => e.name === 'none/461B') as Entry;
    await withTempDir(async (dir) => {
      const target = join(dir, 'restored.bin');
      const outcome = await settle(openToFile(good.sealed, target, { keys: good.keys }), 2_000);
      expect(
        outcome.kind === 'error' ? describeError(outcome.error) : outcome.kind,
        `openToFile on a valid stream; files: ${(await readdir(dir)).join(', ')}`,
      ).toBe('ok');
      expect(await readdir(dir)).toEqual(['restored.bin']);
      expect(await readFile(target)).toEqual(good.plain);
    });
  });

  it('rejects ~200 mutations and leaves no file at all in the target directory', async () => {
    const rng = new Prng(SEED ^ 0x66696c65);
    const pool = CLASSES.flatMap((cls) => mutationsOf(cls)).filter((m) => !m.bytes.equals(m.entry.sealed) || m.keys !== undefined);
    const chosen = Array.from({ length: 200 }, () => rng.pick(pool));
    const failures: string[] = [];
    await withTempDir(async (dir) => {
      for (const [i, m] of chosen.entries()) {
        const target = join(dir, `restored-${i}.bin`);
        const outcome = await settle(
          openToFile(inPieces(m.bytes, 1 + (i % 97)), target, { keys: m.keys ?? m.entry.keys }).then(() => Buffer.alloc(0)),
          HANG_MS,
        );
        const problem = outcome.kind === 'ok' ? 'openToFile resolved' : verdict(m, outcome);
        const left = await readdir(dir);
        if (problem) failures.push(failureReport(m.cls, m, `openToFile: ${problem}`));
        if (left.length > 0) {
          failures.push(failureReport(m.cls, m, `openToFile left files behind: ${left.join(', ')}`));
          await Promise.all(left.map((name) => unlink(join(dir, name))));
        }
      }
      // A temp file can appear after the rejection (an open still pending): look again later.
      await sleep(50);
      const late = await readdir(dir);
      if (late.length > 0) failures.push(`[seed ${SEED}] files appeared after openToFile had rejected: ${late.join(', ')}`);
    });
    expect(new Set(chosen.map((m) => m.cls)).size, 'the sample covers most classes').toBeGreaterThanOrEqual(8);
    expect(failures.slice(0, 10), `${failures.length} of ${chosen.length} mutations mishandled by openToFile`).toEqual([]);
  });

  // Fails (most runs) until src/files.ts is fixed: writeAtomically creates the temp file with
  // createWriteStream(temp, { flags: 'wx' }), whose open is asynchronous; when the source fails
  // before that open completes, the catch block's rm(temp) runs first and the file is created
  // afterwards, then left behind. Fix: create the file before the pipeline starts, or wait for
  // the stream's 'close' before rm (see the report).
  it('a rejected openToFile leaves no temp file, not even a moment later (regression: the temp file was created after its removal)', async () => {
    const entry = corpus.find((e) => e.name === 'gzip/600B text') as Entry;
    const badMagic = withBytes(entry.sealed, 0, [0]);
    const badTag = flipped(entry.sealed, entry.sealed.length - 1, 0);
    await withTempDir(async (dir) => {
      let rejected = 0;
      for (let i = 0; i < 400; i++) {
        const input = inPieces(i % 2 === 0 ? badMagic : badTag, 1 + (i % 13));
        await openToFile(input, join(dir, `out-${i}.bin`), { keys: entry.keys }).catch(() => rejected++);
      }
      await sleep(50);
      expect(rejected).toBe(400);
      expect(await readdir(dir), 'files left by 400 rejected openToFile calls').toEqual([]);
    });
  });
});

describe('no plaintext is released before its chunk authenticates', () => {
  const CHUNKS = 10;
  let plain: Buffer;
  let sealed: Buffer;
  let layout: SealedLayout;

  beforeAll(async () => {
    plain = new Prng(SEED ^ 0x706c6169).bytes(CHUNKS * CHUNK + 20);
    sealed = await sealBuffer(plain, { key: keyA, compression: 'none', chunkSize: CHUNK });
    layout = layoutOf(sealed);
  });

  it('yields exactly the chunks before a tampered chunk k, never bytes of chunk k', async () => {
    expect(layout.records).toHaveLength(CHUNKS + 1);
    const failures: string[] = [];
    for (const [k, record] of layout.records.entries()) {
      for (const [where, at] of [
        ['first body byte', record.body.start],
        ['last body byte', record.body.end - 1],
        ['tag', record.tag.start + 7],
      ] as const) {
        if (at < record.body.start || at >= record.end) continue; // the body of an empty final chunk
        const tampered = flipped(sealed, at, 5);
        for (const pieceSize of [0, 1, 7, CHUNK + TAG, CHUNK + TAG + 1, 1000]) {
          const source = pieceSize === 0 ? tampered : inPieces(tampered, pieceSize);
          const progress: number[] = [];
          const result = await drain(open(source, { keys: ring, onProgress: (p) => progress.push(p.chunks) }));
          const released = Buffer.concat(result.pieces);
          const label = `chunk ${k} tampered at its ${where}, input in pieces of ${pieceSize || 'the whole stream'} bytes`;
          if (!isSealError(result.error, 'SEAL_CHUNK_TAMPERED')) failures.push(`${label}: ended with ${describeError(result.error)}`);
          if (!released.equals(plain.subarray(0, k * CHUNK)))
            failures.push(`${label}: released ${released.length} bytes, expected exactly the ${k * CHUNK} bytes of chunks 0..${k - 1}`);
          if (progress.some((chunks) => chunks > k))
            failures.push(`${label}: progress reported ${Math.max(...progress)} authenticated chunks`);
        }
      }
    }
    expect(failures.slice(0, 10), `${failures.length} failures`).toEqual([]);
  });

  it('releases nothing of a cut final chunk either', async () => {
    for (const cut of [1, TAG - 1, TAG, TAG + 5]) {
      const result = await drain(open(inPieces(sealed.subarray(0, sealed.length - cut), 13), { keys: ring }));
      expect(isKnownSealError(result.error), describeError(result.error)).toBe(true);
      expect(Buffer.concat(result.pieces)).toEqual(plain.subarray(0, CHUNKS * CHUNK));
    }
  });
});
