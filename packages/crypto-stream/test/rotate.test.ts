import { describe, expect, it } from 'vitest';
import { type Compression, inspectSealed, Keyring, openBuffer, type Passphrase, rewrap, sealBuffer } from '../src/index.js';
import {
  collect,
  drain,
  expectedHeaderLength,
  expectSealError,
  fileStream,
  randomData,
  SMALL_CHUNK,
  settle,
  TAG,
  testKey,
  textData,
  tinyPieces,
} from './unit-helpers.js';

const oldKey = testKey(31);
const newKey = testKey(32);
const passphrase: Passphrase = { passphrase: 'rotate me', log2N: 10 };
const plain = textData(SMALL_CHUNK * 20 + 9);

async function sealedWith(key: Parameters<typeof sealBuffer>[1]['key'], compression: Compression = 'zstd', data = plain): Promise<Buffer> {
  return sealBuffer(data, { key, compression, chunkSize: SMALL_CHUNK });
}

describe('rewrap', () => {
  it.each(['none', 'gzip', 'zstd'] as const)('%s: opens with the new key only, to the same plaintext', async (compression) => {
    const original = await sealedWith(oldKey, compression);
    const rotated = await collect(rewrap(original, oldKey, newKey));
    expect((await openBuffer(rotated, { keys: newKey })).equals(plain)).toBe(true);
    const error = await expectSealError(openBuffer(rotated, { keys: oldKey }), 'SEAL_UNKNOWN_KEY');
    expect(error.message).toContain(newKey.id);
    const info = await inspectSealed(rotated);
    expect(info).toEqual({ ...(await inspectSealed(original)), keyId: newKey.id });
  });

  it('changes only the header: every chunk byte after it is identical', async () => {
    const original = await sealedWith(oldKey, 'none');
    const rotated = await collect(rewrap(original, oldKey, newKey));
    const oldHeader = (await inspectSealed(original)).headerLength;
    const newHeader = (await inspectSealed(rotated)).headerLength;
    expect(oldHeader).toBe(expectedHeaderLength(oldKey.id, 'raw'));
    expect(newHeader).toBe(expectedHeaderLength(newKey.id, 'raw'));
    expect(rotated.length - newHeader).toBe(original.length - oldHeader);
    expect(rotated.subarray(newHeader).equals(original.subarray(oldHeader))).toBe(true);
    // The stream id is kept (the chunk keys derive from it); the wrapped key and MAC are new.
    expect(rotated.subarray(16, 32).equals(original.subarray(16, 32))).toBe(true);
    expect(rotated.subarray(newHeader - 92, newHeader).equals(original.subarray(oldHeader - 92, oldHeader))).toBe(false);
  });

  it('to a key with a longer id: the header grows, the chunks are unchanged', async () => {
    const named = testKey(33, 'prod-2026-q1-rotation');
    const original = await sealedWith(oldKey);
    const rotated = await collect(rewrap(original, oldKey, named));
    const newHeader = expectedHeaderLength(named.id, 'raw');
    expect((await inspectSealed(rotated)).headerLength).toBe(newHeader);
    expect(rotated.subarray(newHeader).equals(original.subarray(expectedHeaderLength(oldKey.id, 'raw')))).toBe(true);
    expect((await openBuffer(rotated, { keys: named })).equals(plain)).toBe(true);
  });

  it('a keyring with both keys opens the stream before and after; the keyring as target uses its current key', async () => {
    const ring = new Keyring([oldKey, newKey]);
    const original = await sealedWith(oldKey);
    const rotated = await collect(rewrap(original, ring, ring));
    expect((await inspectSealed(rotated)).keyId).toBe(newKey.id);
    expect((await openBuffer(original, { keys: ring })).equals(plain)).toBe(true);
    expect((await openBuffer(rotated, { keys: ring })).equals(plain)).toBe(true);
    await expectSealError(openBuffer(rotated, { keys: oldKey }), 'SEAL_UNKNOWN_KEY');
  });

  it('from a passphrase to a key', async () => {
    const original = await sealedWith(passphrase);
    const rotated = await collect(rewrap(original, passphrase, newKey));
    expect(await inspectSealed(rotated)).toMatchObject({ keyId: newKey.id, keySource: 'raw' });
    expect((await openBuffer(rotated, { keys: newKey })).equals(plain)).toBe(true);
    await expectSealError(openBuffer(rotated, { keys: passphrase }), 'SEAL_KEY_MISSING');
    const headerBefore = expectedHeaderLength('passphrase', 'scrypt');
    expect(rotated.subarray(expectedHeaderLength(newKey.id, 'raw')).equals(original.subarray(headerBefore))).toBe(true);
  });

  it('from a key to a passphrase', async () => {
    const original = await sealedWith(oldKey);
    const rotated = await collect(rewrap(original, oldKey, { ...passphrase, id: 'vault' }));
    expect(await inspectSealed(rotated)).toMatchObject({ keyId: 'vault', keySource: 'scrypt' });
    expect((await openBuffer(rotated, { keys: { passphrase: 'rotate me' } })).equals(plain)).toBe(true);
    await expectSealError(openBuffer(rotated, { keys: oldKey }), 'SEAL_KEY_MISSING');
    await expectSealError(openBuffer(rotated, { keys: { passphrase: 'other' } }), 'SEAL_WRONG_KEY');
  });

  it('from one passphrase to another (fresh salt)', async () => {
    const original = await sealedWith(passphrase);
    const rotated = await collect(rewrap(original, passphrase, { passphrase: 'second', log2N: 11 }));
    expect((await openBuffer(rotated, { keys: { passphrase: 'second' } })).equals(plain)).toBe(true);
    await expectSealError(openBuffer(rotated, { keys: passphrase }), 'SEAL_WRONG_KEY');
  });

  it('reads its input in tiny pieces and from a file stream', async () => {
    const original = await sealedWith(oldKey, 'gzip', randomData(5000));
    const fromPieces = await collect(rewrap(tinyPieces(original, [1, 3]), oldKey, newKey));
    const fromFile = await collect(rewrap(await fileStream(original, 100), oldKey, newKey));
    const header = expectedHeaderLength(newKey.id, 'raw');
    expect(fromPieces.subarray(header).equals(fromFile.subarray(header))).toBe(true);
    expect((await openBuffer(fromPieces, { keys: newKey })).equals(await openBuffer(original, { keys: oldKey }))).toBe(true);
  });

  it('rewrapping twice (old -> new -> old) opens with the old key again', async () => {
    const original = await sealedWith(oldKey);
    const back = await collect(rewrap(rewrap(original, oldKey, newKey), newKey, oldKey));
    expect(back.length).toBe(original.length);
    expect((await openBuffer(back, { keys: oldKey })).equals(plain)).toBe(true);
  });

  it('a wrong old key with another id is SEAL_UNKNOWN_KEY before anything is yielded', async () => {
    const original = await sealedWith(oldKey);
    await expectSealError(rewrap(original, newKey, testKey(34)).next(), 'SEAL_UNKNOWN_KEY');
  });

  it('a wrong old key under the right id is SEAL_WRONG_KEY before anything is yielded', async () => {
    const original = await sealedWith(oldKey);
    await expectSealError(rewrap(original, testKey(35, oldKey.id), newKey).next(), 'SEAL_WRONG_KEY');
  });

  it('a wrong passphrase is SEAL_WRONG_KEY before anything is yielded', async () => {
    const original = await sealedWith(passphrase);
    await expectSealError(rewrap(original, { passphrase: 'nope' }, newKey).next(), 'SEAL_WRONG_KEY');
  });

  it('a tampered header is SEAL_HEADER_TAMPERED before anything is yielded', async () => {
    const original = await sealedWith(oldKey, 'none');
    const headerLength = expectedHeaderLength(oldKey.id, 'raw');
    for (const at of [15, headerLength - 1]) {
      const tampered = Buffer.from(original);
      tampered[at] = (tampered[at] ?? 0) ^ 0x01;
      await expectSealError(rewrap(tampered, oldKey, newKey).next(), 'SEAL_HEADER_TAMPERED');
    }
  });

  it('a compression id changed to another valid one is SEAL_HEADER_TAMPERED', async () => {
    const original = await sealedWith(oldKey, 'none');
    const tampered = Buffer.from(original);
    tampered[10] = 2;
    await expectSealError(rewrap(tampered, oldKey, newKey).next(), 'SEAL_HEADER_TAMPERED');
  });

  it('not a sealed stream, or a cut header, fails like open', async () => {
    await expectSealError(rewrap(Buffer.from('plain text, not sealed'), oldKey, newKey).next(), 'SEAL_NOT_SEALED');
    const original = await sealedWith(oldKey);
    await expectSealError(rewrap(original.subarray(0, 100), oldKey, newKey).next(), 'SEAL_TRUNCATED');
  });

  it('passes tampered chunks through unchanged: the damage is found when the result is opened', async () => {
    const original = await sealedWith(oldKey, 'none');
    const headerLength = expectedHeaderLength(oldKey.id, 'raw');
    const tampered = Buffer.from(original);
    const at = headerLength + 3 * (SMALL_CHUNK + TAG) + 5;
    tampered[at] = (tampered[at] ?? 0) ^ 0x01;
    const rotated = await collect(rewrap(tampered, oldKey, newKey));
    await expectSealError(openBuffer(rotated, { keys: newKey }), 'SEAL_CHUNK_TAMPERED');
  });

  it('a failed rewrap closes its file stream input', async () => {
    // Regression: rewrap() did not call iterator.return() when openHeader() threw.
    const original = await sealedWith(oldKey, 'none', randomData(SMALL_CHUNK * 2000));
    const input = await fileStream(original, 1024);
    await expectSealError(drain(rewrap(input, testKey(36, oldKey.id), newKey)), 'SEAL_WRONG_KEY');
    await settle();
    const destroyed = input.destroyed;
    input.destroy();
    expect(destroyed).toBe(true);
  });

  it('a consumer that stops a rewrap early closes its file stream input', async () => {
    const original = await sealedWith(oldKey, 'none', randomData(SMALL_CHUNK * 2000));
    const input = await fileStream(original, 1024);
    for await (const _ of rewrap(input, oldKey, newKey)) break;
    await settle();
    const destroyed = input.destroyed;
    input.destroy();
    expect(destroyed).toBe(true);
  });
});
