import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DigestStream, digesting, digestOf, seal, sealBuffer } from '../src/index.js';
import { collect, randomData, split, testKey, tinyPieces } from './unit-helpers.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** A writable that keeps what it is given. */
function sink(): { stream: Writable; data: () => Buffer } {
  const parts: Buffer[] = [];
  return {
    stream: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        parts.push(chunk);
        callback();
      },
    }),
    data: () => Buffer.concat(parts),
  };
}

describe('DigestStream', () => {
  it('passes bytes through unchanged and reports their sha256 and count after finish', async () => {
    const data = randomData(300_000);
    const digest = new DigestStream();
    const out = sink();
    await pipeline(Readable.from(split(data, 7_777)), digest, out.stream);
    expect(out.data().equals(data)).toBe(true);
    expect(digest.digest()).toEqual({ sha256: sha256(data), bytes: data.length });
    expect(digest.bytes).toBe(data.length);
  });

  it('an empty stream digests to the sha256 of nothing', async () => {
    const digest = new DigestStream();
    await pipeline(Readable.from([]), digest, sink().stream);
    expect(digest.digest()).toEqual({ sha256: EMPTY_SHA256, bytes: 0 });
  });

  it('digest() before the stream finished throws; bytes counts as data flows', async () => {
    const digest = new DigestStream();
    expect(() => digest.digest()).toThrow(/before the stream finished/);
    const out = sink();
    digest.pipe(out.stream);
    digest.write(Buffer.from('abc'));
    digest.write(Buffer.from('defg'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(digest.bytes).toBe(7);
    expect(() => digest.digest()).toThrow();
    const finished = new Promise((resolve) => digest.on('finish', resolve));
    digest.end();
    await finished;
    expect(digest.digest()).toEqual({ sha256: sha256(Buffer.from('abcdefg')), bytes: 7 });
  });

  it('digests the stored bytes of a sealed stream on their way out', async () => {
    const key = testKey(61);
    const digest = new DigestStream();
    const out = sink();
    await pipeline(Readable.from(seal(randomData(50_000), { key, chunkSize: 1024 })), digest, out.stream);
    expect(digest.digest()).toEqual({ sha256: sha256(out.data()), bytes: out.data().length });
  });
});

describe('digesting', () => {
  it('hashes and counts as the wrapped iterable is consumed, passing every piece through', async () => {
    const data = randomData(100_000);
    const { stream, digest } = digesting(tinyPieces(data, [1000, 1, 333]));
    expect(() => digest()).toThrow(/before the stream was read to the end/);
    expect((await collect(stream)).equals(data)).toBe(true);
    expect(digest()).toEqual({ sha256: sha256(data), bytes: data.length });
  });

  it('digest() throws while the iterable is only partly read', async () => {
    const { stream, digest } = digesting(tinyPieces(randomData(100), [10]));
    await stream.next();
    await stream.next();
    expect(() => digest()).toThrow();
  });

  it('works as a pipeline source and for an empty input', async () => {
    const sealed = await sealBuffer(Buffer.from('x'), { key: testKey(62) });
    const { stream, digest } = digesting(Readable.from([sealed.subarray(0, 10), sealed.subarray(10)]));
    const out = sink();
    await pipeline(stream, out.stream);
    expect(digest()).toEqual({ sha256: sha256(sealed), bytes: sealed.length });

    const empty = digesting((async function* () {})());
    expect((await collect(empty.stream)).length).toBe(0);
    expect(empty.digest()).toEqual({ sha256: EMPTY_SHA256, bytes: 0 });
  });
});

describe('digestOf', () => {
  it('gives the sha256 and size of a whole source', async () => {
    const data = randomData(77_777);
    expect(await digestOf(tinyPieces(data, [4096, 3]))).toEqual({ sha256: sha256(data), bytes: data.length });
    expect(await digestOf(Readable.from(split(data, 1000)))).toEqual({ sha256: sha256(data), bytes: data.length });
  });

  it('of nothing is the empty sha256', async () => {
    expect(await digestOf((async function* () {})())).toEqual({ sha256: EMPTY_SHA256, bytes: 0 });
  });

  it('the three agree on the same bytes', async () => {
    const data = randomData(12_345);
    const viaStream = new DigestStream();
    await pipeline(Readable.from([data]), viaStream, sink().stream);
    const viaWrap = digesting(tinyPieces(data, [100]));
    await collect(viaWrap.stream);
    const viaOf = await digestOf(tinyPieces(data, [7]));
    expect(viaStream.digest()).toEqual(viaOf);
    expect(viaWrap.digest()).toEqual(viaOf);
  });
});
