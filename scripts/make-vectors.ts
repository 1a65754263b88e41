// Generates the sealed-stream test vectors in packages/crypto-stream/test/vectors/ from
// docs/FORMAT.md, with node:crypto and node:zlib only: nothing here imports the library, so the
// vectors check the library against the specification rather than against itself.
//
//   pnpm exec tsx scripts/make-vectors.ts           write the vectors (deterministic)
//   pnpm exec tsx scripts/make-vectors.ts --check   exit 1 if the files on disk differ
//
// Every "random" value of a real stream (stream id, data key, wrap nonce, scrypt salt) is
// derived here from the vector's name, so the output is the same on every run. The gzip and zstd
// bytes come from the zlib bundled with Node; a Node with another zlib may compress differently,
// which changes those vectors' bytes but not what they test.
import { createCipheriv, createHash, createHmac, hkdfSync, scryptSync } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import zlib from 'node:zlib';

type Compression = 'none' | 'gzip' | 'zstd';
type Check = 'open' | 'inspect';

/** What `inspectSealed` reports for the header, or the error it throws. */
type Inspect =
  | {
      version: number;
      keyId: string;
      keySource: 'raw' | 'scrypt';
      compression: Compression;
      chunkSize: number;
      headerLength: number;
    }
  | { error: string };

/** One vector file. Field meanings: packages/crypto-stream/test/vectors/README.md. */
interface Vector {
  name: string;
  description: string;
  masterKeyHex?: string;
  keyId: string;
  passphrase?: string;
  scrypt?: { log2N: number; r: number; p: number; saltHex: string };
  chunkSize: number;
  compression: Compression;
  plaintextHex?: string;
  plaintextUtf8?: string;
  sealedHex: string;
  expectedError?: string;
  inspect: Inspect;
  intermediate?: Record<string, string>;
  secrets?: { masterKeyHex: string; keyId: string; json: Record<string, string> };
  rewrap?: { fromMasterKeyHex: string; fromKeyId: string; originalSealedHex: string };
  knownIssue?: { checks: Check[]; note: string };
}

const OUT_DIR = new URL('../packages/crypto-stream/test/vectors/', import.meta.url);

// ---- the format, from docs/FORMAT.md -------------------------------------------------------

const MAGIC = Buffer.from('DRKSEAL\0', 'latin1');
const COMPRESSION_IDS: Record<Compression, number> = { none: 0, gzip: 1, zstd: 2 };
const TAG = 16;

const sha256 = (...parts: (string | Buffer)[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};
const hkdf = (ikm: Buffer, salt: Buffer, info: string): Buffer => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
const u8 = (n: number): Buffer => Buffer.from([n]);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** Deterministic stand-in for a random value of the stream `name`. */
const fixed = (name: string, what: string, length: number): Buffer => sha256(`drkit-seal test vector/${name}/${what}`).subarray(0, length);

type MasterSpec =
  | { kind: 'raw'; key: Buffer; keyId: string }
  | { kind: 'scrypt'; passphrase: string; keyId: string; log2N: number; r: number; p: number; salt: Buffer };

function masterOf(m: MasterSpec): Buffer {
  if (m.kind === 'raw') return m.key;
  return scryptSync(m.passphrase.normalize('NFC'), m.salt, 32, {
    N: 2 ** m.log2N,
    r: m.r,
    p: m.p,
    maxmem: 256 * 1024 * 1024,
  });
}

function keySourceBytes(m: MasterSpec): Buffer {
  if (m.kind === 'raw') return u8(1);
  return Buffer.concat([u8(2), u8(m.log2N), u8(m.r), u8(m.p), m.salt]);
}

function aesGcm(key: Buffer, nonce: Buffer, plain: Buffer, aad?: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
  if (aad) cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

function chunkNonce(index: number, final: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(index), 3);
  nonce[11] = final ? 1 : 0;
  return nonce;
}

/** Splits the (compressed) content into chunk bodies; the last one holds 0..chunkSize-1 bytes. */
function split(content: Buffer, chunkSize: number): Buffer[] {
  const bodies: Buffer[] = [];
  let at = 0;
  while (content.length - at >= chunkSize) {
    bodies.push(content.subarray(at, at + chunkSize));
    at += chunkSize;
  }
  bodies.push(content.subarray(at));
  return bodies;
}

function compress(compression: Compression, plain: Buffer): Buffer {
  if (compression === 'gzip') return zlib.gzipSync(plain, { level: 6 });
  if (compression === 'zstd') return zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } });
  return plain;
}

interface Built {
  sealed: Buffer;
  header: Buffer;
  records: Buffer[];
  intermediate: Record<string, string>;
}

interface StreamSpec {
  name: string;
  master: MasterSpec;
  compression: Compression;
  chunkSize: number;
  plaintext: Buffer;
  /** Content to chunk instead of the compressed plaintext (for faulty-writer vectors). */
  content?: Buffer;
  /** Chunk bodies and final flags instead of the ones the format prescribes. */
  chunks?: (content: Buffer) => { body: Buffer; final: boolean }[];
  /** Stream id and data key instead of the ones derived from `name` (rewrap, splicing). */
  streamId?: Buffer;
  dataKey?: Buffer;
}

function build(s: StreamSpec): Built {
  const streamId = s.streamId ?? fixed(s.name, 'stream id', 16);
  const dataKey = s.dataKey ?? fixed(s.name, 'data key', 32);
  const wrapNonce = fixed(s.name, 'wrap nonce', 12);
  const master = masterOf(s.master);
  const keyId = Buffer.from(s.master.keyId, 'utf8');
  if (keyId.length > 64) throw new Error(`key id of ${s.name} is too long`);

  const fixedPart = Buffer.concat([MAGIC, u8(1), u8(1), u8(COMPRESSION_IDS[s.compression]), u8(0), u32(s.chunkSize)]);
  const wrapAad = Buffer.concat([streamId, u8(keyId.length), keyId, keySourceBytes(s.master)]);
  const wrapKey = hkdf(master, streamId, 'drkit-seal/v1/wrap');
  const wrapped = aesGcm(wrapKey, wrapNonce, dataKey, wrapAad);
  const beforeMac = Buffer.concat([fixedPart, wrapAad, wrapNonce, wrapped]);
  const macKey = hkdf(dataKey, streamId, 'drkit-seal/v1/header-mac');
  const mac = createHmac('sha256', macKey).update(beforeMac).digest();
  const header = Buffer.concat([beforeMac, mac]);

  const chunkKey = hkdf(dataKey, streamId, 'drkit-seal/v1/chunk');
  const content = s.content ?? compress(s.compression, s.plaintext);
  const plan = s.chunks ? s.chunks(content) : split(content, s.chunkSize).map((body, i, all) => ({ body, final: i === all.length - 1 }));
  const records = plan.map(({ body, final }, index) => aesGcm(chunkKey, chunkNonce(index, final), body));

  const intermediate: Record<string, string> = {
    streamIdHex: streamId.toString('hex'),
    dataKeyHex: dataKey.toString('hex'),
    wrapNonceHex: wrapNonce.toString('hex'),
  };
  if (s.master.kind === 'scrypt') intermediate.scryptMasterKeyHex = master.toString('hex');
  Object.assign(intermediate, {
    wrapKeyHex: wrapKey.toString('hex'),
    wrapAadHex: wrapAad.toString('hex'),
    macKeyHex: macKey.toString('hex'),
    chunkKeyHex: chunkKey.toString('hex'),
    headerHex: header.toString('hex'),
    contentHex: content.toString('hex'),
  });
  return { sealed: Buffer.concat([header, ...records]), header, records, intermediate };
}

// ---- fixed inputs --------------------------------------------------------------------------

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const OTHER_KEY = Buffer.from('1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100', 'hex');
const RAW: MasterSpec = { kind: 'raw', key: KEY, keyId: 'k-test' };
/** "é" written as e + U+0301 (NFD): a reader must NFC-normalise it to U+00E9 before scrypt. */
const PASSPHRASE = 'correct horse battery staple \u00e9t\u00e9 / e\u0301te\u0301';
const scryptMaster = (name: string, passphrase = PASSPHRASE): MasterSpec => ({
  kind: 'scrypt',
  passphrase,
  keyId: 'passphrase',
  log2N: 10,
  r: 8,
  p: 1,
  salt: fixed(name, 'scrypt salt', 16),
});

const bytes = (n: number, step = 1): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * step) & 0xff));
/** Text that compresses, but not to nothing: several chunks of 64 bytes after gzip or zstd. */
const LOG_TEXT = Array.from(
  { length: 40 },
  (_, i) => `2025-01-${String((i % 28) + 1).padStart(2, '0')} backup ${i} ok sha256=${sha256(`row ${i}`).toString('hex').slice(0, 24)}\n`,
).join('');

const vectors: Vector[] = [];

function keyFields(m: MasterSpec): Pick<Vector, 'masterKeyHex' | 'keyId' | 'passphrase' | 'scrypt'> {
  if (m.kind === 'raw') return { masterKeyHex: m.key.toString('hex'), keyId: m.keyId };
  return { passphrase: m.passphrase, keyId: m.keyId, scrypt: { log2N: m.log2N, r: m.r, p: m.p, saltHex: m.salt.toString('hex') } };
}

function plainFields(plain: Buffer, utf8: boolean): Pick<Vector, 'plaintextHex' | 'plaintextUtf8'> {
  return utf8 ? { plaintextUtf8: plain.toString('utf8') } : { plaintextHex: plain.toString('hex') };
}

function inspectOf(s: StreamSpec, header: Buffer): Inspect {
  return {
    version: 1,
    keyId: s.master.keyId,
    keySource: s.master.kind,
    compression: s.compression,
    chunkSize: s.chunkSize,
    headerLength: header.length,
  };
}

function positive(s: StreamSpec, description: string, extra: Partial<Vector> = {}): Built {
  const built = build(s);
  vectors.push({
    name: s.name,
    description,
    ...keyFields(s.master),
    chunkSize: s.chunkSize,
    compression: s.compression,
    ...plainFields(s.plaintext, extra.plaintextUtf8 !== undefined),
    sealedHex: built.sealed.toString('hex'),
    inspect: inspectOf(s, built.header),
    intermediate: built.intermediate,
    ...extra,
  });
  return built;
}

interface NegativeSpec {
  name: string;
  description: string;
  expectedError: string;
  base: StreamSpec;
  /** Edits the sealed bytes of `base`. */
  edit?: (b: Built) => Buffer;
  /** The key the reader is given, when not the one that sealed. */
  reader?: MasterSpec;
  /** What inspectSealed reports: the base's header, an edited one, or an error code. */
  inspect?: Partial<Exclude<Inspect, { error: string }>> | { error: string };
  knownIssue?: Vector['knownIssue'];
}

function negative(n: NegativeSpec): void {
  const built = build(n.base);
  const sealed = n.edit ? n.edit(built) : built.sealed;
  const base = inspectOf(n.base, built.header);
  const inspect: Inspect = n.inspect && 'error' in n.inspect ? { error: n.inspect.error as string } : { ...base, ...n.inspect };
  vectors.push({
    name: n.name,
    description: n.description,
    ...keyFields(n.reader ?? n.base.master),
    chunkSize: n.base.chunkSize,
    compression: n.base.compression,
    plaintextHex: n.base.plaintext.toString('hex'),
    sealedHex: sealed.toString('hex'),
    expectedError: n.expectedError,
    inspect,
    ...(n.knownIssue ? { knownIssue: n.knownIssue } : {}),
  });
}

/** Copy of `b` with byte `at` replaced (or XORed with `xor`). */
function patch(b: Buffer, at: number, value: { set: number } | { xor: number }): Buffer {
  const out = Buffer.from(b);
  const old = out[at];
  if (old === undefined) throw new Error(`patch offset ${at} is outside ${out.length} bytes`);
  out[at] = 'set' in value ? value.set : old ^ value.xor;
  return out;
}

// ---- positive vectors ----------------------------------------------------------------------

positive(
  { name: 'ok-empty', master: RAW, compression: 'none', chunkSize: 64, plaintext: Buffer.alloc(0) },
  'Empty plaintext: the header and one final chunk with no ciphertext (just its 16-byte tag).',
  { plaintextUtf8: '' },
);
positive(
  { name: 'ok-one-byte', master: RAW, compression: 'none', chunkSize: 64, plaintext: Buffer.from([0x2a]) },
  'One byte: a single final chunk of 1 + 16 bytes.',
);
positive(
  { name: 'ok-exactly-one-chunk', master: RAW, compression: 'none', chunkSize: 64, plaintext: bytes(64) },
  'Exactly chunkSize bytes: one full non-final chunk (index 0) followed by an empty final chunk (index 1).',
);
positive(
  { name: 'ok-multi-chunk', master: RAW, compression: 'none', chunkSize: 64, plaintext: bytes(200, 7) },
  '200 bytes with chunkSize 64: three full chunks (indexes 0-2, not final) and a final chunk of 8 bytes (index 3).',
);
const utf8Text = (text: string) => ({ plaintextUtf8: text });
positive(
  { name: 'ok-gzip', master: RAW, compression: 'gzip', chunkSize: 64, plaintext: Buffer.from(LOG_TEXT) },
  'gzip (compression id 1): the plaintext is gzipped (one RFC 1952 member), then the gzip bytes are chunked; chunkSize counts gzip bytes.',
  utf8Text(LOG_TEXT),
);
positive(
  { name: 'ok-zstd', master: RAW, compression: 'zstd', chunkSize: 64, plaintext: Buffer.from(LOG_TEXT) },
  'zstd (compression id 2): the plaintext is compressed to one RFC 8878 frame, then the frame is chunked.',
  utf8Text(LOG_TEXT),
);
{
  const first = LOG_TEXT.slice(0, 1000);
  const second = LOG_TEXT.slice(1000);
  const content = Buffer.concat([compress('zstd', Buffer.from(first)), compress('zstd', Buffer.from(second))]);
  positive(
    { name: 'ok-zstd-two-frames', master: RAW, compression: 'zstd', chunkSize: 64, plaintext: Buffer.from(LOG_TEXT), content },
    "zstd content made of two frames (Node's streaming compressor itself ends with an extra empty frame when fed in pieces): the plaintext is the concatenation of both frames.",
    utf8Text(LOG_TEXT),
  );
}
{
  const name = 'ok-passphrase';
  positive(
    { name, master: scryptMaster(name), compression: 'none', chunkSize: 64, plaintext: Buffer.from('sealed with a passphrase') },
    'Key source 2 (scrypt, log2N 10, r 8, p 1). The passphrase is given in NFD (e + U+0301) and in NFC (U+00E9): both must become NFC before scrypt.',
    utf8Text('sealed with a passphrase'),
  );
}
positive(
  {
    name: 'ok-utf8-key-id',
    master: { kind: 'raw', key: KEY, keyId: 'clé-2025/备份' },
    compression: 'none',
    chunkSize: 4096,
    plaintext: Buffer.from('a key id is length-prefixed UTF-8: its length counts bytes, not characters'),
  },
  'A non-ASCII key id: the length byte counts UTF-8 bytes (16 here for 11 characters).',
  utf8Text('a key id is length-prefixed UTF-8: its length counts bytes, not characters'),
);
positive(
  {
    name: 'ok-key-id-leading-bom',
    master: { kind: 'raw', key: KEY, keyId: '\ufeffk-bom' },
    compression: 'none',
    chunkSize: 64,
    plaintext: Buffer.from('the key id starts with U+FEFF'),
  },
  'A key id whose first character is U+FEFF (bytes ef bb bf): the key id is exactly its bytes; a reader must not strip a byte order mark.',
  { plaintextUtf8: 'the key id starts with U+FEFF' },
);
{
  const keyId = `k${sha256('drkit key id v1\0', KEY).toString('hex').slice(0, 16)}`;
  const text = 'default settings: zstd, 1 MiB chunks, key id derived from the key\n'.repeat(20);
  positive(
    {
      name: 'ok-default-settings',
      master: { kind: 'raw', key: KEY, keyId },
      compression: 'zstd',
      chunkSize: 1024 * 1024,
      plaintext: Buffer.from(text),
    },
    'The defaults of the library: zstd, chunkSize 1048576, and the derived key id "k" + hex(SHA-256("drkit key id v1\\0" || key))[0..16].',
    utf8Text(text),
  );
}
{
  const secretsKey = Buffer.from('5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2', 'hex');
  const json = { API_TOKEN: 't0p-s3cret', DATABASE_URL: 'postgres://app:pw@db:5432/app' };
  const inner = build({
    name: 'ok-secrets-double-sealed/inner',
    master: { kind: 'raw', key: secretsKey, keyId: 'secrets' },
    compression: 'none',
    chunkSize: 65536,
    plaintext: Buffer.from(JSON.stringify(json), 'utf8'),
  });
  positive(
    {
      name: 'ok-secrets-double-sealed',
      master: { kind: 'raw', key: OTHER_KEY, keyId: 'backup' },
      compression: 'none',
      chunkSize: 65536,
      plaintext: inner.sealed,
    },
    'Double-sealed secrets: the outer stream (backup key) holds an inner sealed stream (secrets key) that holds the JSON object; both use compression none and chunkSize 65536.',
    { secrets: { masterKeyHex: secretsKey.toString('hex'), keyId: 'secrets', json } },
  );
}
{
  const name = 'ok-rewrapped';
  const plaintext = Buffer.from(
    'rotation rewrites the header only; these chunks are byte-for-byte the ones sealed under k-old\n'.repeat(2),
  );
  const streamId = fixed(name, 'stream id', 16);
  const dataKey = fixed(name, 'data key', 32);
  const original = build({
    name: `${name}/original`,
    master: { kind: 'raw', key: OTHER_KEY, keyId: 'k-old' },
    compression: 'none',
    chunkSize: 64,
    plaintext,
    streamId,
    dataKey,
  });
  positive(
    { name, master: { kind: 'raw', key: KEY, keyId: 'k-new' }, compression: 'none', chunkSize: 64, plaintext, streamId, dataKey },
    'A stream sealed under k-old, then rewrapped to k-new: same stream id and data key, new wrap nonce, wrapped key and MAC; the chunks are unchanged.',
    {
      plaintextUtf8: plaintext.toString('utf8'),
      rewrap: { fromMasterKeyHex: OTHER_KEY.toString('hex'), fromKeyId: 'k-old', originalSealedHex: original.sealed.toString('hex') },
    },
  );
}

// ---- negative vectors ----------------------------------------------------------------------

const base = (name: string, extra: Partial<StreamSpec> = {}): StreamSpec => ({
  name,
  master: RAW,
  compression: 'none',
  chunkSize: 64,
  plaintext: bytes(200, 7),
  ...extra,
});
/** Offset of the first chunk record (raw key source, key id "k-test"). */
const headerLength = (b: Built) => b.header.length;

negative({
  name: 'bad-magic',
  description: 'The first byte of the magic is changed.',
  expectedError: 'SEAL_NOT_SEALED',
  base: base('bad-magic'),
  edit: (b) => patch(b.sealed, 0, { set: 0x58 }),
  inspect: { error: 'SEAL_NOT_SEALED' },
});
negative({
  name: 'bad-empty-input',
  description: 'Zero bytes.',
  expectedError: 'SEAL_TRUNCATED',
  base: base('bad-empty-input'),
  edit: () => Buffer.alloc(0),
  inspect: { error: 'SEAL_TRUNCATED' },
});
negative({
  name: 'bad-unknown-version',
  description: 'Version byte 2 (this reader knows version 1 only).',
  expectedError: 'SEAL_UNSUPPORTED_VERSION',
  base: base('bad-unknown-version'),
  edit: (b) => patch(b.sealed, 8, { set: 2 }),
  inspect: { error: 'SEAL_UNSUPPORTED_VERSION' },
});
negative({
  name: 'bad-unknown-aead',
  description: 'AEAD id 2 (only 1, AES-256-GCM, exists).',
  expectedError: 'SEAL_UNSUPPORTED_ALGORITHM',
  base: base('bad-unknown-aead'),
  edit: (b) => patch(b.sealed, 9, { set: 2 }),
  inspect: { error: 'SEAL_UNSUPPORTED_ALGORITHM' },
});
negative({
  name: 'bad-unknown-compression',
  description: 'Compression id 3 (only 0, 1 and 2 exist).',
  expectedError: 'SEAL_UNSUPPORTED_ALGORITHM',
  base: base('bad-unknown-compression'),
  edit: (b) => patch(b.sealed, 10, { set: 3 }),
  inspect: { error: 'SEAL_UNSUPPORTED_ALGORITHM' },
});
negative({
  name: 'bad-reserved-byte',
  description: 'The reserved byte at offset 11 is 1.',
  expectedError: 'SEAL_HEADER_INVALID',
  base: base('bad-reserved-byte'),
  edit: (b) => patch(b.sealed, 11, { set: 1 }),
  inspect: { error: 'SEAL_HEADER_INVALID' },
});
negative({
  name: 'bad-chunk-size-out-of-range',
  description: 'Chunk size 63, below the minimum of 64: rejected before any key is used.',
  expectedError: 'SEAL_HEADER_INVALID',
  base: base('bad-chunk-size-out-of-range'),
  edit: (b) => patch(b.sealed, 15, { set: 63 }),
  inspect: { error: 'SEAL_HEADER_INVALID' },
});
negative({
  name: 'bad-header-chunk-size-edited',
  description: 'Chunk size edited from 64 to 128 (in range): the data key unwraps, the header MAC does not match.',
  expectedError: 'SEAL_HEADER_TAMPERED',
  base: base('bad-header-chunk-size-edited'),
  edit: (b) => patch(b.sealed, 15, { set: 128 }),
  inspect: { chunkSize: 128 },
});
negative({
  name: 'bad-header-compression-edited',
  description: 'Compression id edited from 0 (none) to 1 (gzip): the header MAC does not match.',
  expectedError: 'SEAL_HEADER_TAMPERED',
  base: base('bad-header-compression-edited'),
  edit: (b) => patch(b.sealed, 10, { set: 1 }),
  inspect: { compression: 'gzip' },
});
negative({
  name: 'bad-header-mac-edited',
  description: 'The last byte of the header MAC is flipped.',
  expectedError: 'SEAL_HEADER_TAMPERED',
  base: base('bad-header-mac-edited'),
  edit: (b) => patch(b.sealed, headerLength(b) - 1, { xor: 0x01 }),
});
negative({
  name: 'bad-key-id-too-long',
  description: 'Key id length byte 65 (at most 64).',
  expectedError: 'SEAL_HEADER_INVALID',
  base: base('bad-key-id-too-long'),
  edit: (b) => patch(b.sealed, 32, { set: 65 }),
  inspect: { error: 'SEAL_HEADER_INVALID' },
});
negative({
  name: 'bad-key-id-not-utf8',
  description: 'The key id bytes are not valid UTF-8 (0xff).',
  expectedError: 'SEAL_HEADER_INVALID',
  base: base('bad-key-id-not-utf8'),
  edit: (b) => patch(b.sealed, 33, { set: 0xff }),
  inspect: { error: 'SEAL_HEADER_INVALID' },
});
negative({
  name: 'bad-key-source-unknown',
  description: 'Key source 3 (only 1, raw, and 2, scrypt, exist).',
  expectedError: 'SEAL_HEADER_INVALID',
  base: base('bad-key-source-unknown'),
  edit: (b) => patch(b.sealed, 33 + 'k-test'.length, { set: 3 }),
  inspect: { error: 'SEAL_HEADER_INVALID' },
});
{
  const name = 'bad-scrypt-cost-out-of-range';
  negative({
    name,
    description: 'scrypt log2N 21, above the reader bound of 20: rejected before scrypt runs.',
    expectedError: 'SEAL_HEADER_INVALID',
    base: base(name, { master: scryptMaster(name) }),
    edit: (b) => patch(b.sealed, 33 + 'passphrase'.length + 1, { set: 21 }),
    inspect: { error: 'SEAL_HEADER_INVALID' },
  });
}
negative({
  name: 'bad-unknown-key-id',
  description: 'The reader holds only a key with another id ("k-other"): no key to try.',
  expectedError: 'SEAL_UNKNOWN_KEY',
  base: base('bad-unknown-key-id'),
  reader: { kind: 'raw', key: KEY, keyId: 'k-other' },
});
negative({
  name: 'bad-wrong-key',
  description: 'The reader holds a different key under the same id: the data key does not unwrap.',
  expectedError: 'SEAL_WRONG_KEY',
  base: base('bad-wrong-key'),
  reader: { kind: 'raw', key: OTHER_KEY, keyId: 'k-test' },
});
{
  const name = 'bad-wrong-passphrase';
  negative({
    name,
    description: 'The passphrase is wrong (NFC and NFD spellings differ only in form, so this uses other words).',
    expectedError: 'SEAL_WRONG_KEY',
    base: base(name, { master: scryptMaster(name) }),
    reader: scryptMaster(name, 'incorrect horse battery staple'),
  });
}
{
  const name = 'bad-passphrase-stream-raw-key';
  negative({
    name,
    description: 'A passphrase stream (key source 2) given a raw key: the reader has no passphrase.',
    expectedError: 'SEAL_KEY_MISSING',
    base: base(name, { master: scryptMaster(name) }),
    reader: { kind: 'raw', key: KEY, keyId: 'passphrase' },
  });
}
{
  const name = 'bad-raw-stream-passphrase';
  negative({
    name,
    description: 'A raw-key stream (key source 1) given only a passphrase.',
    expectedError: 'SEAL_KEY_MISSING',
    base: base(name),
    reader: scryptMaster(name),
  });
}
negative({
  name: 'bad-wrapped-key-edited',
  description: 'One bit of the wrapped data key is flipped: the wrap tag fails, which looks like a wrong key.',
  expectedError: 'SEAL_WRONG_KEY',
  base: base('bad-wrapped-key-edited'),
  edit: (b) => patch(b.sealed, headerLength(b) - 32 - 48, { xor: 0x80 }),
});
negative({
  name: 'bad-stream-id-edited',
  description: 'The stream id is edited: it salts the wrap key and is in the wrap AAD, so the data key does not unwrap.',
  expectedError: 'SEAL_WRONG_KEY',
  base: base('bad-stream-id-edited'),
  edit: (b) => patch(b.sealed, 16, { xor: 0x01 }),
});
negative({
  name: 'bad-truncated-inside-header',
  description: 'The input ends 10 bytes before the end of the header.',
  expectedError: 'SEAL_TRUNCATED',
  base: base('bad-truncated-inside-header'),
  edit: (b) => b.sealed.subarray(0, headerLength(b) - 10),
  inspect: { error: 'SEAL_TRUNCATED' },
});
negative({
  name: 'bad-truncated-after-header',
  description: 'The header only, with no chunk at all.',
  expectedError: 'SEAL_TRUNCATED',
  base: base('bad-truncated-after-header'),
  edit: (b) => b.header,
});
negative({
  name: 'bad-truncated-at-chunk-boundary',
  description: 'Cut after the second of three full chunks: every remaining record authenticates, but no final chunk was seen.',
  expectedError: 'SEAL_TRUNCATED',
  base: base('bad-truncated-at-chunk-boundary'),
  edit: (b) => b.sealed.subarray(0, headerLength(b) + 2 * (64 + 16)),
});
negative({
  name: 'bad-truncated-final-empty-chunk',
  description: 'Exactly one chunk of plaintext with its empty final chunk removed: ends on a full record.',
  expectedError: 'SEAL_TRUNCATED',
  base: base('bad-truncated-final-empty-chunk', { plaintext: bytes(64) }),
  edit: (b) => b.sealed.subarray(0, b.sealed.length - 16),
});
negative({
  name: 'bad-truncated-inside-tag',
  description: 'The final record is cut to 15 bytes: shorter than a tag.',
  expectedError: 'SEAL_TRUNCATED',
  base: base('bad-truncated-inside-tag'),
  edit: (b) => b.sealed.subarray(0, headerLength(b) + 3 * (64 + 16) + 15),
});
negative({
  name: 'bad-truncated-inside-chunk',
  description: 'Cut 40 bytes into the third full record: the 40 bytes are taken as a final record and fail authentication.',
  expectedError: 'SEAL_CHUNK_TAMPERED',
  base: base('bad-truncated-inside-chunk'),
  edit: (b) => b.sealed.subarray(0, headerLength(b) + 2 * (64 + 16) + 40),
});
negative({
  name: 'bad-flipped-tag-bit',
  description: 'One bit of the tag of chunk 1 is flipped.',
  expectedError: 'SEAL_CHUNK_TAMPERED',
  base: base('bad-flipped-tag-bit'),
  edit: (b) => patch(b.sealed, headerLength(b) + 2 * (64 + 16) - 1, { xor: 0x01 }),
});
negative({
  name: 'bad-flipped-ciphertext-bit',
  description: 'One bit of the ciphertext of chunk 0 is flipped.',
  expectedError: 'SEAL_CHUNK_TAMPERED',
  base: base('bad-flipped-ciphertext-bit'),
  edit: (b) => patch(b.sealed, headerLength(b) + 5, { xor: 0x04 }),
});
negative({
  name: 'bad-reordered-chunks',
  description: 'Chunks 0 and 1 swapped: each is authenticated under the nonce of its position.',
  expectedError: 'SEAL_CHUNK_TAMPERED',
  base: base('bad-reordered-chunks'),
  edit: (b) => {
    const [c0, c1, ...rest] = b.records;
    if (!c0 || !c1) throw new Error('bad-reordered-chunks needs two chunks');
    return Buffer.concat([b.header, c1, c0, ...rest]);
  },
});
{
  const other = build(base('bad-spliced-chunk/other'));
  negative({
    name: 'bad-spliced-chunk',
    description: 'Chunk 1 replaced by chunk 1 of another stream sealed with the same master key: other data key, so it fails.',
    expectedError: 'SEAL_CHUNK_TAMPERED',
    base: base('bad-spliced-chunk'),
    edit: (b) => Buffer.concat([b.header, ...b.records.map((r, i) => (i === 1 ? (other.records[1] ?? r) : r))]),
  });
}
negative({
  name: 'bad-trailing-data',
  description: 'One byte appended after the final chunk: the final record is then 1 byte longer and fails authentication.',
  expectedError: 'SEAL_CHUNK_TAMPERED',
  base: base('bad-trailing-data'),
  edit: (b) => Buffer.concat([b.sealed, Buffer.from([0])]),
});
negative({
  name: 'bad-full-size-final-chunk',
  description:
    'Faulty writer: 64 bytes sealed as a single full-size chunk flagged final, without the empty final chunk. A full-size record is never final.',
  expectedError: 'SEAL_CHUNK_TAMPERED',
  base: base('bad-full-size-final-chunk', { plaintext: bytes(64), chunks: (content) => [{ body: content, final: true }] }),
});
negative({
  name: 'bad-short-chunk-not-final',
  description: 'Faulty writer: the last (short) chunk is sealed with final flag 0.',
  expectedError: 'SEAL_CHUNK_TAMPERED',
  base: base('bad-short-chunk-not-final', {
    chunks: (content) => split(content, 64).map((body) => ({ body, final: false })),
  }),
});
negative({
  name: 'bad-gzip-content',
  description: 'Faulty writer: compression gzip, every chunk authentic, but the content is not gzip.',
  expectedError: 'SEAL_DECOMPRESS_FAILED',
  base: base('bad-gzip-content', { compression: 'gzip', plaintext: Buffer.from('not gzip'), content: Buffer.from('not gzip') }),
});
negative({
  name: 'bad-zstd-content',
  description: 'Faulty writer: compression zstd, every chunk authentic, but the content is not a zstd frame.',
  expectedError: 'SEAL_DECOMPRESS_FAILED',
  base: base('bad-zstd-content', { compression: 'zstd', plaintext: Buffer.from('not zstd'), content: Buffer.from('not zstd') }),
});
negative({
  name: 'bad-gzip-empty-content',
  description:
    'Faulty writer: compression gzip with empty content (one empty final chunk); gzip of an empty plaintext is a 20-byte member, never nothing.',
  expectedError: 'SEAL_DECOMPRESS_FAILED',
  base: base('bad-gzip-empty-content', { compression: 'gzip', plaintext: Buffer.alloc(0), content: Buffer.alloc(0) }),
});
negative({
  name: 'bad-zstd-empty-content',
  description: 'Faulty writer: compression zstd with empty content (one empty final chunk): no frame at all.',
  expectedError: 'SEAL_DECOMPRESS_FAILED',
  base: base('bad-zstd-empty-content', { compression: 'zstd', plaintext: Buffer.alloc(0), content: Buffer.alloc(0) }),
});
{
  const plain = Buffer.from('zstd frame followed by bytes that are not a frame');
  negative({
    name: 'bad-zstd-trailing-bytes',
    description:
      'Faulty writer: compression zstd, every chunk authentic, the content is one valid frame followed by 4 bytes that are no frame.',
    expectedError: 'SEAL_DECOMPRESS_FAILED',
    base: base('bad-zstd-trailing-bytes', {
      compression: 'zstd',
      plaintext: plain,
      content: Buffer.concat([compress('zstd', plain), Buffer.from('junk')]),
    }),
  });
}
negative({
  name: 'bad-gzip-trailing-bytes',
  description:
    'Faulty writer: compression gzip, every chunk authentic, the content is one valid gzip member followed by 4 bytes that are no member.',
  expectedError: 'SEAL_DECOMPRESS_FAILED',
  base: base('bad-gzip-trailing-bytes', {
    compression: 'gzip',
    plaintext: Buffer.from('gzip member followed by junk'),
    content: Buffer.concat([compress('gzip', Buffer.from('gzip member followed by junk')), Buffer.from('junk')]),
  }),
});

// ---- output --------------------------------------------------------------------------------

const files = new Map(vectors.map((v) => [`${v.name}.json`, `${JSON.stringify(v, null, 2)}\n`]));
if (files.size !== vectors.length) throw new Error('two vectors share a name');

if (process.argv.includes('--check')) {
  const stale = [...files].filter(([file, text]) => {
    const path = new URL(file, OUT_DIR);
    return !existsSync(path) || readFileSync(path, 'utf8') !== text;
  });
  const extra = existsSync(OUT_DIR) ? readdirSync(OUT_DIR).filter((f) => f.endsWith('.json') && !files.has(f)) : [];
  if (stale.length > 0 || extra.length > 0) {
    process.stderr.write(
      `test vectors are out of date (run pnpm exec tsx scripts/make-vectors.ts):\n${[...stale.map(([f]) => `  differs: ${f}`), ...extra.map((f) => `  extra: ${f}`)].join('\n')}\n`,
    );
    process.exit(1);
  }
  process.stdout.write(`${files.size} test vectors are up to date\n`);
} else {
  mkdirSync(OUT_DIR, { recursive: true });
  for (const file of readdirSync(OUT_DIR)) if (file.endsWith('.json') && !files.has(file)) rmSync(new URL(file, OUT_DIR));
  for (const [file, text] of files) writeFileSync(new URL(file, OUT_DIR), text);
  process.stdout.write(`wrote ${files.size} test vectors to ${OUT_DIR.pathname}\n`);
}
