// The library against docs/FORMAT.md: every test vector (generated from the specification by
// scripts/make-vectors.ts) must open, or fail with its code, both in the library and in an
// independent decoder written from the specification; and what the library seals must decode
// with that decoder.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  type Compression,
  inspectSealed,
  type MasterKey,
  masterKey,
  type OpenKeys,
  openBuffer,
  openSecrets,
  type Passphrase,
  rewrap,
  sealBuffer,
  sealSecrets,
} from '../src/index.js';
import { decode, inspectHeader, parseHeader, ReferenceDecodeError, type ReferenceKeys } from './reference-decoder.js';

type Check = 'open' | 'inspect';

/** One vector file; see test/vectors/README.md. */
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
  inspect:
    | { version: number; keyId: string; keySource: 'raw' | 'scrypt'; compression: Compression; chunkSize: number; headerLength: number }
    | { error: string };
  intermediate?: Record<string, string>;
  secrets?: { masterKeyHex: string; keyId: string; json: Record<string, string> };
  rewrap?: { fromMasterKeyHex: string; fromKeyId: string; originalSealedHex: string };
  knownIssue?: { checks: Check[]; note: string };
}

const VECTOR_DIR = new URL('./vectors/', import.meta.url);
const vectors: Vector[] = readdirSync(VECTOR_DIR)
  .filter((file) => file.endsWith('.json'))
  .sort()
  .map((file) => JSON.parse(readFileSync(new URL(file, VECTOR_DIR), 'utf8')) as Vector);

const hex = (text: string): Buffer => Buffer.from(text, 'hex');
const plaintextOf = (v: Vector): Buffer =>
  v.plaintextUtf8 !== undefined ? Buffer.from(v.plaintextUtf8, 'utf8') : hex(v.plaintextHex ?? '');
const sealedOf = (v: Vector): Buffer => hex(v.sealedHex);

function libraryKeys(v: Vector): OpenKeys {
  if (v.passphrase !== undefined) return { passphrase: v.passphrase };
  return masterKey(hex(v.masterKeyHex ?? ''), v.keyId);
}

function referenceKeys(v: Vector): ReferenceKeys {
  if (v.passphrase !== undefined) return { passphrase: v.passphrase };
  return { keys: [{ id: v.keyId, key: hex(v.masterKeyHex ?? '') }] };
}

/** The key to seal a positive vector's plaintext again with the library. */
function sealKey(v: Vector): MasterKey | Passphrase {
  if (v.passphrase === undefined) return masterKey(hex(v.masterKeyHex ?? ''), v.keyId);
  const { log2N = 10, r = 8, p = 1 } = v.scrypt ?? {};
  return { passphrase: v.passphrase, id: v.keyId, log2N, r, p };
}

/** The error code the reference decoder throws, or undefined when it returns. */
function referenceCode(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    if (error instanceof ReferenceDecodeError) return error.code;
    throw error;
  }
}

/** `it`, or `it.fails` for a check the vector records as a known divergence of the library. */
const checkOf = (v: Vector, check: Check) => (v.knownIssue?.checks.includes(check) ? it.fails : it);

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

it('finds the vectors: positive and negative ones, with unique names', () => {
  expect(vectors.filter((v) => v.expectedError === undefined).length).toBeGreaterThanOrEqual(10);
  expect(vectors.filter((v) => v.expectedError !== undefined).length).toBeGreaterThanOrEqual(10);
  expect(new Set(vectors.map((v) => v.name)).size).toBe(vectors.length);
});

describe.each(vectors.map((v) => [v.name, v] as const))('vector %s', (_name, v) => {
  const sealed = sealedOf(v);

  if (v.expectedError === undefined) {
    checkOf(v, 'open')('(a) the library opens it to the plaintext', async () => {
      expect(await openBuffer(sealed, { keys: libraryKeys(v) })).toEqual(plaintextOf(v));
    });

    it('(b) the reference decoder opens it to the plaintext', () => {
      expect(decode(sealed, referenceKeys(v))).toEqual(plaintextOf(v));
    });

    it('(c) what the library seals from the plaintext, the reference decoder opens', async () => {
      const again = await sealBuffer(plaintextOf(v), { key: sealKey(v), compression: v.compression, chunkSize: v.chunkSize });
      expect(decode(again, referenceKeys(v))).toEqual(plaintextOf(v));
      expect(inspectHeader(again)).toMatchObject({ keyId: v.keyId, compression: v.compression, chunkSize: v.chunkSize });
    });

    it('has intermediate values consistent with the sealed bytes', () => {
      const header = hex(v.intermediate?.headerHex ?? '');
      expect(header.length).toBeGreaterThan(0);
      expect(sealed.subarray(0, header.length)).toEqual(header);
      const parsed = parseHeader(sealed);
      expect(parsed.streamId.toString('hex')).toBe(v.intermediate?.streamIdHex);
      expect(parsed.wrapNonce.toString('hex')).toBe(v.intermediate?.wrapNonceHex);
      expect(parsed.keyBlock.toString('hex')).toBe(v.intermediate?.wrapAadHex);
    });
  } else {
    const code = v.expectedError;
    checkOf(v, 'open')(`(a) the library fails with ${code}`, async () => {
      await expect(openBuffer(sealed, { keys: libraryKeys(v) })).rejects.toMatchObject({ name: 'SealError', code });
    });

    it(`(b) the reference decoder fails with ${code}`, () => {
      expect(referenceCode(() => decode(sealed, referenceKeys(v)))).toBe(code);
    });
  }

  checkOf(v, 'inspect')('(d) inspectSealed reports what the header says', async () => {
    const expected = v.inspect;
    if ('error' in expected) await expect(inspectSealed(sealed)).rejects.toMatchObject({ code: expected.error });
    else expect(await inspectSealed(sealed)).toEqual(expected);
  });

  it('(d) the reference decoder reads the same header', () => {
    const expected = v.inspect;
    if ('error' in expected) expect(referenceCode(() => inspectHeader(sealed))).toBe(expected.error);
    else expect(inspectHeader(sealed)).toEqual(expected);
  });

  if (v.expectedError === undefined && v.inspect && !('error' in v.inspect)) {
    it('(d) the vector describes the header it was sealed with', () => {
      expect(v.inspect).toMatchObject({ keyId: v.keyId, compression: v.compression, chunkSize: v.chunkSize });
    });
  }

  const secrets = v.secrets;
  if (secrets) {
    const secretsKey = masterKey(hex(secrets.masterKeyHex), secrets.keyId);
    const backupKey = masterKey(hex(v.masterKeyHex ?? ''), v.keyId);

    it('opens as double-sealed secrets, in the library and layer by layer in the reference decoder', async () => {
      expect(await openSecrets(sealed, { secretsKeys: secretsKey, backupKeys: backupKey })).toEqual(secrets.json);
      const inner = decode(sealed, referenceKeys(v));
      expect(inspectHeader(inner)).toMatchObject({ keyId: secrets.keyId, compression: 'none', chunkSize: 65536 });
      const json = decode(inner, { keys: [{ id: secrets.keyId, key: secretsKey.key }] });
      expect(JSON.parse(json.toString('utf8'))).toEqual(secrets.json);
    });

    it('sealSecrets writes two layers the reference decoder opens', async () => {
      const again = await sealSecrets(secrets.json, { secretsKey, backupKey });
      expect(inspectHeader(again)).toMatchObject({ keyId: v.keyId, compression: 'none', chunkSize: 65536 });
      const inner = decode(again, referenceKeys(v));
      expect(inspectHeader(inner)).toMatchObject({ keyId: secrets.keyId, compression: 'none', chunkSize: 65536 });
      expect(JSON.parse(decode(inner, { keys: [{ id: secrets.keyId, key: secretsKey.key }] }).toString('utf8'))).toEqual(secrets.json);
    });
  }

  const rotation = v.rewrap;
  if (rotation) {
    const from = masterKey(hex(rotation.fromMasterKeyHex), rotation.fromKeyId);
    const original = hex(rotation.originalSealedHex);

    it('is the original with a new header: same stream id, same records', () => {
      const before = parseHeader(original);
      const after = parseHeader(sealed);
      expect(after.streamId).toEqual(before.streamId);
      expect(sealed.subarray(after.length)).toEqual(original.subarray(before.length));
      expect(decode(original, { keys: [{ id: rotation.fromKeyId, key: from.key }] })).toEqual(plaintextOf(v));
    });

    it('the library rewraps the original into what the specification describes', async () => {
      const to = masterKey(hex(v.masterKeyHex ?? ''), v.keyId);
      const rewrapped = await collect(rewrap(original, from, to));
      const before = parseHeader(original);
      const after = parseHeader(rewrapped);
      expect(after.streamId).toEqual(before.streamId);
      expect(after.keyId).toBe(v.keyId);
      expect(after.wrapNonce).not.toEqual(before.wrapNonce);
      expect(rewrapped.subarray(after.length)).toEqual(original.subarray(before.length));
      expect(decode(rewrapped, referenceKeys(v))).toEqual(plaintextOf(v));
      expect(referenceCode(() => decode(rewrapped, { keys: [{ id: rotation.fromKeyId, key: from.key }] }))).toBe('SEAL_UNKNOWN_KEY');
    });
  }
});

describe('the library writes the layout of the specification', () => {
  const key = masterKey(Buffer.alloc(32, 0x5a), 'layout');
  const keys: ReferenceKeys = { keys: [{ id: 'layout', key: key.key }] };

  it.each([0, 1, 63, 64, 65, 127, 128, 129, 1000])('%i bytes, no compression, chunk size 64: length and records', async (size) => {
    const plain = Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + 7) & 0xff));
    const sealed = await sealBuffer(plain, { key, compression: 'none', chunkSize: 64 });
    const header = parseHeader(sealed);
    expect(header.length).toBe(126 + 'layout'.length);
    // §6.3: |header| + floor(L / C) · (C + 16) + (L mod C) + 16
    expect(sealed.length).toBe(header.length + Math.floor(size / 64) * 80 + (size % 64) + 16);
    expect(decode(sealed, keys)).toEqual(plain);
  });

  it.each(['gzip', 'zstd'] as const)('%s: compressed content spread over many chunks', async (compression) => {
    const plain = Buffer.from(Array.from({ length: 300 }, (_, i) => `line ${i} ${(i * 7919) % 1000}\n`).join(''));
    const sealed = await sealBuffer(plain, { key, compression, chunkSize: 64 });
    expect(sealed.length).toBeGreaterThan(parseHeader(sealed).length + 5 * 80);
    expect(decode(sealed, keys)).toEqual(plain);
  });

  it('a passphrase header carries scrypt parameters and a fresh salt', async () => {
    const passphrase: Passphrase = { passphrase: 'e\u0301t\u00e9', log2N: 10, r: 8, p: 1 };
    const a = parseHeader(await sealBuffer(Buffer.from('x'), { key: passphrase, compression: 'none', chunkSize: 64 }));
    const b = parseHeader(await sealBuffer(Buffer.from('x'), { key: passphrase, compression: 'none', chunkSize: 64 }));
    expect(a.keySource).toMatchObject({ kind: 'scrypt', log2N: 10, r: 8, p: 1 });
    expect(a.keyId).toBe('passphrase');
    expect(a.length).toBe(145 + 'passphrase'.length);
    if (a.keySource.kind !== 'scrypt' || b.keySource.kind !== 'scrypt') throw new Error('expected scrypt key sources');
    expect(a.keySource.salt).not.toEqual(b.keySource.salt);
    expect(a.streamId).not.toEqual(b.streamId);
  });
});
