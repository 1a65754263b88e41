// The S3 driver against a real S3 API (s3rver from @drkit/sandbox, SigV4 verified), most tests
// through a fault-injecting proxy that records every request, so retries, aborts and the
// headers the driver sends can be checked. The Store contract itself runs in contract.test.ts.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isStoreError, type StoreError } from '../src/errors.js';
import { createS3Store, MIN_PART_SIZE, partSizeFor, type S3StoreOptions, s3StoreInternals, UNKNOWN_SIZE_PART_SIZE } from '../src/s3.js';
import type { Store, StoreEvent } from '../src/store.js';
import { parseStoreUrl } from '../src/url.js';
import { type FaultProxy, type RecordedRequest, startFaultProxy } from './fault-proxy.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const BUCKET = 'drkit';
const SILENT = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

let s3: S3Sandbox;
let proxy: FaultProxy;
/** Talks to s3rver directly (not through the proxy), to check what the store did. */
let raw: S3Client;
const opened: Store[] = [];

beforeAll(async () => {
  s3 = await startS3({ buckets: [BUCKET] });
  proxy = await startFaultProxy(s3.endpoint);
  // s3rver stores a streamed body's aws-chunked framing as the object: no checksum trailers.
  raw = new S3Client({ ...s3.clientConfig(), requestChecksumCalculation: 'WHEN_REQUIRED', logger: SILENT });
});

afterAll(async () => {
  raw?.destroy();
  await proxy?.close();
  await s3?.stop();
});

beforeEach(() => proxy.reset());

afterEach(async () => {
  await Promise.all(opened.splice(0).map((store) => store.close()));
});

/** A store under a fresh prefix, through the proxy, with fast retries; events go to `events`. */
function open(extra: Partial<S3StoreOptions> = {}, events?: StoreEvent[]): Store {
  const store = createS3Store({
    bucket: BUCKET,
    prefix: `t-${randomBytes(4).toString('hex')}/`,
    ...s3.clientConfig(),
    endpoint: proxy.endpoint,
    retryBaseDelayMs: 5,
    ...(events ? { onEvent: (event) => events.push(event) } : {}),
    ...extra,
  });
  opened.push(store);
  return store;
}

const prefixOf = (store: Store) => s3StoreInternals(store)?.prefix ?? '';
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function keysOf(store: Store, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
}

/** The StoreError `promise` rejects with; fails the test if it resolves or throws something else. */
async function failureOf(promise: Promise<unknown>): Promise<StoreError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isStoreError(error)) throw new Error(`expected a StoreError, got ${error === undefined ? 'success' : inspect(error)}`);
  return error;
}

/** `count` chunks of `size` random bytes, with a hook before each. */
async function* chunks(count: number, size: number, before?: (index: number) => void): AsyncGenerator<Buffer> {
  for (let i = 0; i < count; i++) {
    before?.(i);
    yield randomBytes(size);
  }
}

const requestsOf = (operation: string) => proxy.requests.filter((r) => r.operation === operation);
const answeredParts = () => requestsOf('UploadPart').filter((r) => r.status === 200 && r.endedAt !== undefined).length;

/** Waits until `condition` holds (at most 20 s). */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!condition()) throw new Error('timed out waiting for a condition');
}
const retriesOf = (events: StoreEvent[]) => events.filter((e): e is Extract<StoreEvent, { type: 'retry' }> => e.type === 'retry');
const abortsOf = (events: StoreEvent[]) =>
  events.filter((e): e is Extract<StoreEvent, { type: 'multipart-aborted' }> => e.type === 'multipart-aborted');

/**
 * The parts s3rver stored for an unfinished multipart upload (a part file with its .md5 beside
 * it: one whose request was cut is not stored), with their modification times.
 */
async function partsOnDisk(uploadId: string): Promise<{ part: number; mtimeMs: number }[]> {
  const dir = join(s3.dataDir, BUCKET, '._S3rver_uploads', uploadId);
  const names = await readdir(dir).catch(() => [] as string[]);
  const parts = names.filter((n) => /^\d+$/.test(n) && names.includes(`${n}.md5`));
  return Promise.all(parts.map(async (n) => ({ part: Number(n), mtimeMs: (await stat(join(dir, n))).mtimeMs })));
}

/**
 * What every failed multipart put must show: no object, no completion, and one upload whose
 * abort was requested after every part request the server answered, with no part stored after.
 */
async function expectAbandoned(store: Store, key: string, events: StoreEvent[]): Promise<{ uploadId: string; abort: RecordedRequest }> {
  expect(await store.head(key)).toBeUndefined();
  expect(await keysOf(store)).toEqual([]);
  expect(requestsOf('CompleteMultipartUpload')).toEqual([]);
  const [event, ...more] = abortsOf(events);
  expect(more).toEqual([]);
  expect(event?.key).toBe(key);
  const uploadId = event?.uploadId ?? '';
  const parts = requestsOf('UploadPart');
  expect(parts.every((p) => p.query.uploadId === uploadId)).toBe(true);
  const aborts = requestsOf('AbortMultipartUpload');
  expect(aborts).toHaveLength(1);
  const abort = aborts[0] as RecordedRequest;
  expect(abort.query.uploadId).toBe(uploadId);
  expect(abort.path).toBe(`/${BUCKET}/${prefixOf(store)}${key}`);
  // Part uploads in flight are let finish (not cancelled): each was answered before the abort.
  for (const part of parts) {
    expect(part.status).toBeDefined();
    expect(part.endedAt ?? Number.POSITIVE_INFINITY).toBeLessThanOrEqual(abort.arrivedAt);
  }
  // The sandbox implements AbortMultipartUpload as S3 does: the upload's parts are deleted.
  expect(abort.status).toBe(204);
  expect(await partsOnDisk(uploadId)).toEqual([]);
  expect(existsSync(join(s3.dataDir, BUCKET, '._S3rver_uploads', uploadId))).toBe(false);
  return { uploadId, abort };
}

/** Part numbers the server answered 200 to. */
const storedParts = () =>
  requestsOf('UploadPart')
    .filter((r) => r.status === 200)
    .map((r) => Number(r.query.partNumber));

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('partSizeFor', () => {
  it('fits 5 TiB (and 5 TB) in at most 10,000 parts of at most 5 GiB', () => {
    for (const size of [5 * TiB, 5e12]) {
      const part = partSizeFor(size);
      expect(Math.ceil(size / part)).toBeLessThanOrEqual(10_000);
      expect(part).toBeLessThanOrEqual(5 * GiB);
      expect(part % MiB).toBe(0);
    }
    expect(partSizeFor(5 * TiB)).toBe(525 * MiB);
  });

  it('never goes below 8 MiB, and uses 16 MiB when the size is unknown', () => {
    expect(MIN_PART_SIZE).toBe(8 * MiB);
    for (const size of [0, 1, 5 * MiB, 8 * MiB, 10_000 * 8 * MiB]) expect(partSizeFor(size)).toBe(8 * MiB);
    expect(partSizeFor(10_000 * 8 * MiB + 1)).toBe(9 * MiB);
    expect(partSizeFor()).toBe(UNKNOWN_SIZE_PART_SIZE);
    expect(UNKNOWN_SIZE_PART_SIZE).toBe(16 * MiB);
  });

  it('grows monotonically with the size and always fits it', () => {
    let previous = 0;
    for (let size = 0; size <= 48 * TiB; size += 37 * GiB + 12_345) {
      const part = partSizeFor(size);
      expect(part).toBeGreaterThanOrEqual(previous);
      expect(part * 10_000).toBeGreaterThanOrEqual(size);
      previous = part;
    }
  });

  it('refuses sizes beyond 10,000 parts of 5 GiB, and non-sizes', () => {
    expect(() => partSizeFor(10_000 * 5 * GiB + 1)).toThrow(expect.objectContaining({ code: 'STORE_TOO_LARGE' }));
    expect(() => partSizeFor(-1)).toThrow(expect.objectContaining({ code: 'STORE_OPTIONS_INVALID' }));
    expect(() => partSizeFor(1.5)).toThrow(expect.objectContaining({ code: 'STORE_OPTIONS_INVALID' }));
  });
});

describe('createS3Store options', () => {
  it('refuses invalid options with STORE_OPTIONS_INVALID', () => {
    const base = { bucket: BUCKET, ...s3.clientConfig() };
    for (const bad of [
      { partSize: MiB },
      { partSize: 6 * GiB },
      { queueSize: 0 },
      { maxAttempts: 0 },
      { sse: 'bogus' as 'AES256' },
      { sse: 'AES256' as const, kmsKeyId: 'alias/x' },
      { endpoint: 'ftp://host' },
      { endpoint: 'http://user:pass@host:9000' },
      { storageClass: 'fast' as 'STANDARD' },
      { bucket: '' },
      { bucket: 'a/b' },
    ]) {
      let error: unknown;
      try {
        createS3Store({ ...base, ...bad });
      } catch (e) {
        error = e;
      }
      expect(isStoreError(error, 'STORE_OPTIONS_INVALID'), JSON.stringify(bad)).toBe(true);
    }
    expect(() => createS3Store({ ...base, prefix: '../x' })).toThrow(expect.objectContaining({ code: 'STORE_KEY_INVALID' }));
  });

  it('names the bucket, prefix, region and endpoint in its URL, which parses back to the same store', () => {
    const store = open({ prefix: 'backups/prod', region: 'eu-west-1' });
    expect(store.url).toBe(`s3://${BUCKET}/backups/prod/?region=eu-west-1&endpoint=${proxy.endpoint}`);
    expect(store.url).not.toContain('S3RVER');
    const parsed = parseStoreUrl(store.url);
    expect(parsed).toEqual({
      kind: 's3',
      options: { bucket: BUCKET, prefix: 'backups/prod/', region: 'eu-west-1', endpoint: proxy.endpoint },
    });
    const aws = createS3Store({ bucket: 'my-backups', region: 'us-west-2', credentials: s3.credentials });
    opened.push(aws);
    expect(aws.url).toBe('s3://my-backups?region=us-west-2');
  });

  it('takes the region from AWS_REGION, then AWS_DEFAULT_REGION, else us-east-1', () => {
    vi.stubEnv('AWS_REGION', undefined);
    vi.stubEnv('AWS_DEFAULT_REGION', undefined);
    try {
      expect(open({ region: undefined as unknown as string }).url).toContain('region=us-east-1');
      vi.stubEnv('AWS_DEFAULT_REGION', 'ap-south-1');
      expect(createS3Store({ bucket: BUCKET, endpoint: proxy.endpoint }).url).toContain('region=ap-south-1');
      vi.stubEnv('AWS_REGION', 'eu-central-1');
      expect(createS3Store({ bucket: BUCKET, endpoint: proxy.endpoint }).url).toContain('region=eu-central-1');
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('exposes its client, bucket and prefix for the lock, and leaves an injected client open on close', async () => {
    const client = new S3Client({ ...s3.clientConfig(), logger: SILENT });
    try {
      const store = createS3Store({ bucket: BUCKET, prefix: 'injected', endpoint: s3.endpoint, client });
      expect(s3StoreInternals(store)).toMatchObject({ client, bucket: BUCKET, prefix: 'injected/' });
      await store.put('x', Buffer.from('through the injected client'));
      await store.close();
      // Still usable: the store did not destroy it.
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'injected/x' }));
      expect(head.ContentLength).toBe(27);
      expect(await failureOf(store.head('x'))).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      client.destroy();
    }
    expect(s3StoreInternals({} as Store)).toBeUndefined();
  });
});

describe('put, get, head, list, delete', () => {
  it('round-trips an object under the prefix', async () => {
    const store = open();
    const body = randomBytes(100_000);
    const result = await store.put('/dir/one.bin', body);
    expect(result).toMatchObject({ key: 'dir/one.bin', size: body.length, sha256: sha(body) });
    expect(result.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect((await bytesOf(await store.get('dir/one.bin'))).equals(body)).toBe(true);
    const info = await store.head('dir/one.bin');
    expect(info).toMatchObject({ key: 'dir/one.bin', size: body.length, etag: result.etag, storageClass: 'STANDARD' });
    expect(info?.modifiedAt.getTime()).toBeGreaterThan(Date.now() - 60_000);
    await store.put('dir/two.bin', Buffer.from('two'));
    await store.put('other', Buffer.from('3'));
    expect(await keysOf(store)).toEqual(['dir/one.bin', 'dir/two.bin', 'other']);
    expect(await keysOf(store, 'dir/')).toEqual(['dir/one.bin', 'dir/two.bin']);
    const listed = [];
    for await (const item of store.list('dir/t')) listed.push(item);
    expect(listed).toEqual([expect.objectContaining({ key: 'dir/two.bin', size: 3, etag: expect.any(String) })]);
    // The object really is under the prefix.
    const rawHead = await raw.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefixOf(store)}dir/one.bin` }));
    expect(rawHead.ContentLength).toBe(body.length);
    await store.delete('dir/one.bin');
    await store.delete('dir/one.bin');
    expect(await store.head('dir/one.bin')).toBeUndefined();
    expect(await failureOf(store.get('dir/one.bin'))).toMatchObject({ code: 'STORE_NOT_FOUND' });
    expect(await keysOf(store)).toEqual(['dir/two.bin', 'other']);
  });

  it('reads byte ranges, end inclusive', async () => {
    const store = open();
    const body = randomBytes(3 * MiB + 5);
    await store.put('r', body);
    expect((await bytesOf(await store.get('r', { range: { start: 10, end: 19 } }))).equals(body.subarray(10, 20))).toBe(true);
    expect((await bytesOf(await store.get('r', { range: { start: 2 * MiB } }))).equals(body.subarray(2 * MiB))).toBe(true);
    expect((await bytesOf(await store.get('r', { range: { start: 0, end: 0 } }))).equals(body.subarray(0, 1))).toBe(true);
    expect(requestsOf('GetObject').map((r) => r.headers.range)).toEqual(['bytes=10-19', `bytes=${2 * MiB}-`, 'bytes=0-0']);
    expect(await failureOf(store.get('r', { range: { start: body.length } }))).toMatchObject({ code: 'STORE_OPTIONS_INVALID' });
    expect(await failureOf(store.get('r', { range: { start: -1 } }))).toMatchObject({ code: 'STORE_OPTIONS_INVALID' });
    await store.put('empty', Buffer.alloc(0));
    expect((await bytesOf(await store.get('empty', { range: { start: 0 } }))).length).toBe(0);
  });

  it('streams a 40 MiB body as a multipart upload of 8 MiB parts, and its SHA-256 matches', async () => {
    const store = open({ partSize: 8 * MiB });
    const hash = createHash('sha256');
    const source = Readable.from(chunks(40, MiB), { objectMode: false }).on('data', (chunk: Buffer) => hash.update(chunk));
    const progress: number[] = [];
    const result = await store.put('big.bin', source, { size: 40 * MiB, onProgress: (n) => progress.push(n) });
    const expected = hash.digest('hex');
    expect(result).toMatchObject({ key: 'big.bin', size: 40 * MiB, sha256: expected });
    expect(progress.at(-1)).toBe(40 * MiB);
    expect(requestsOf('CreateMultipartUpload')).toHaveLength(1);
    expect(requestsOf('UploadPart').map((r) => [Number(r.query.partNumber), Number(r.headers['content-length'])])).toEqual(
      expect.arrayContaining([1, 2, 3, 4, 5].map((n) => [n, 8 * MiB])),
    );
    expect(requestsOf('UploadPart')).toHaveLength(5);
    expect(requestsOf('CompleteMultipartUpload')).toHaveLength(1);
    expect(sha(await bytesOf(await store.get('big.bin')))).toBe(expected);
    expect((await store.head('big.bin'))?.size).toBe(40 * MiB);
  });

  it('a body of exactly one part is one PutObject; one byte more makes two parts', async () => {
    const store = open({ partSize: 5 * MiB });
    const one = randomBytes(5 * MiB);
    await store.put('one', Readable.from(chunks(5, MiB), { objectMode: false }));
    expect(requestsOf('PutObject')).toHaveLength(1);
    expect(requestsOf('CreateMultipartUpload')).toEqual([]);
    proxy.reset();
    const two = Buffer.concat([one, Buffer.from([42])]);
    expect((await store.put('two', two)).sha256).toBe(sha(two));
    expect(requestsOf('PutObject')).toEqual([]);
    const sizes = requestsOf('UploadPart').map((r) => [Number(r.query.partNumber), Number(r.headers['content-length'])]);
    expect(sizes.sort(([a], [b]) => (a ?? 0) - (b ?? 0))).toEqual([
      [1, 5 * MiB],
      [2, 1],
    ]);
    expect((await bytesOf(await store.get('two'))).equals(two)).toBe(true);
  });

  it('never has more than queueSize part uploads in flight', async () => {
    const store = open({ partSize: 5 * MiB, queueSize: 2 });
    const body = randomBytes(31 * MiB);
    await store.put('queued', body);
    const parts = requestsOf('UploadPart');
    expect(parts).toHaveLength(7);
    const overlap = Math.max(...parts.map((p) => parts.filter((q) => q.arrivedAt <= p.arrivedAt && (q.endedAt ?? 0) > p.arrivedAt).length));
    expect(overlap).toBeLessThanOrEqual(2);
    expect(sha(await bytesOf(await store.get('queued')))).toBe(sha(body));
  });

  it('never lists the store objects of its own (locks, temp files)', async () => {
    const store = open();
    const prefix = prefixOf(store);
    for (const key of ['.drkit-locks/nightly.json', 'a/.drkit-tmp-1', 'a/b', 'c'])
      await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + key, Body: 'x' }));
    expect(await keysOf(store)).toEqual(['a/b', 'c']);
    // (Paging past 1,000 keys cannot be exercised: s3rver's continuation tokens use DES, which
    // the OpenSSL 3 of Node 24 refuses, so it answers 500 to any truncated listing.)
  });

  it('refuses an announced size beyond S3 at once, before any request', async () => {
    const store = open();
    expect(await failureOf(store.put('huge', Buffer.from('x'), { size: 60 * TiB }))).toMatchObject({ code: 'STORE_TOO_LARGE' });
    const small = open({ partSize: 5 * MiB });
    expect(await failureOf(small.put('huge', Buffer.from('x'), { size: 60 * GiB }))).toMatchObject({ code: 'STORE_TOO_LARGE' });
    expect(proxy.requests).toEqual([]);
  });

  it('close() destroys its own client: the store cannot be used afterwards', async () => {
    const store = open();
    await store.put('x', Buffer.from('x'));
    await store.close();
    expect(await failureOf(store.put('y', Buffer.from('y')))).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await store.close();
  });
});

describe('a failed or aborted put leaves nothing', () => {
  it('a source that fails midway through a multipart upload: no object, the upload is aborted', async () => {
    const events: StoreEvent[] = [];
    const store = open({ partSize: 8 * MiB }, events);
    const source = (async function* () {
      yield* chunks(20, MiB);
      // Dies once two parts are stored: a failure in the middle of the upload.
      await until(() => answeredParts() >= 2);
      throw new Error('pg_dump died');
    })();
    const error = await failureOf(store.put('db.dump', source, { size: 64 * MiB }));
    expect(error.code).toBe('STORE_IO');
    expect(error.message).toContain('pg_dump died');
    await expectAbandoned(store, 'db.dump', events);
    expect(abortsOf(events)[0]?.reason).toContain('pg_dump died');
    // Two whole parts were stored before the source died (and deleted by the abort).
    expect(storedParts().sort()).toEqual([1, 2]);
  });

  it('an AbortSignal midway through a multipart upload: STORE_ABORTED, reading stops, no object', async () => {
    const events: StoreEvent[] = [];
    const store = open({ partSize: 8 * MiB }, events);
    const controller = new AbortController();
    // Part 2's answer is kept back, so that it is surely on its way when the abort comes.
    const release = proxy.holdNext(1, { match: (r) => r.operation === 'UploadPart' && r.query.partNumber === '2' });
    let read = 0;
    const source = (async function* () {
      for (; read < 400; read++) {
        if (read === 30) {
          // Ctrl-C while a part is on its way: it must be let finish, not cut.
          await until(() => answeredParts() >= 1 && requestsOf('UploadPart').some((r) => r.query.partNumber === '2'));
          controller.abort(new Error('operator pressed ctrl-c'));
          setTimeout(release, 200);
        }
        yield randomBytes(MiB);
      }
    })();
    const error = await failureOf(store.put('aborted.bin', source, { signal: controller.signal }));
    expect(error.code).toBe('STORE_ABORTED');
    expect(read).toBeLessThanOrEqual(31);
    await expectAbandoned(store, 'aborted.bin', events);
    expect(storedParts().length).toBeGreaterThanOrEqual(2);
    expect(requestsOf('UploadPart').length).toBeLessThanOrEqual(4);
    expect(abortsOf(events)[0]?.reason).toMatch(/aborted/);
  });

  it('an abort while the source is silent settles the put at once', async () => {
    const events: StoreEvent[] = [];
    const store = open({ partSize: 5 * MiB }, events);
    const controller = new AbortController();
    const source = (async function* () {
      yield randomBytes(6 * MiB);
      // A dump that hangs after its first part.
      await new Promise(() => {});
    })();
    const put = store.put('hung.bin', source, { signal: controller.signal });
    await until(() => answeredParts() >= 1);
    const started = performance.now();
    controller.abort();
    expect((await failureOf(put)).code).toBe('STORE_ABORTED');
    expect(performance.now() - started).toBeLessThan(3_000);
    await expectAbandoned(store, 'hung.bin', events);
  });

  it('an already aborted signal fails before any request', async () => {
    const store = open();
    const controller = new AbortController();
    controller.abort();
    expect((await failureOf(store.put('x', Buffer.from('x'), { signal: controller.signal }))).code).toBe('STORE_ABORTED');
    expect((await failureOf(store.get('x', { signal: controller.signal }))).code).toBe('STORE_ABORTED');
    expect(proxy.requests).toEqual([]);
  });

  it('a size other than announced fails with STORE_INTEGRITY before the object is sent', async () => {
    const store = open();
    expect((await failureOf(store.put('short', Buffer.alloc(1000), { size: 1001 }))).code).toBe('STORE_INTEGRITY');
    expect((await failureOf(store.put('long', chunks(3, 1000), { size: 2999 }))).code).toBe('STORE_INTEGRITY');
    expect(proxy.requests.filter((r) => r.method !== 'HEAD' && r.method !== 'GET')).toEqual([]);
    expect(await keysOf(store)).toEqual([]);
  });

  it('a SHA-256 other than announced fails a multipart put with STORE_INTEGRITY: no object, upload aborted', async () => {
    const events: StoreEvent[] = [];
    const store = open({ partSize: 5 * MiB }, events);
    const error = await failureOf(store.put('bad-sha', chunks(12, MiB), { sha256: sha(Buffer.from('something else')) }));
    expect(error.code).toBe('STORE_INTEGRITY');
    await expectAbandoned(store, 'bad-sha', events);
  });

  it('an object S3 stored with another size than was sent is deleted, and the put fails with STORE_INTEGRITY', async () => {
    const store = open();
    // A server that lost a byte: its HEAD after the put reports one byte less.
    proxy.rewriteNext(1, { 'content-length': '999' }, { match: (r) => r.method === 'HEAD' });
    const error = await failureOf(store.put('lossy', Buffer.alloc(1000, 7)));
    expect(error.code).toBe('STORE_INTEGRITY');
    expect(error.message).toMatch(/999 bytes after 1000/);
    expect(requestsOf('DeleteObject')).toHaveLength(1);
    expect(await store.head('lossy')).toBeUndefined();
  });
});

describe('retries', () => {
  it('a multipart put survives 503 SlowDown answers and reset connections, reporting each retry', async () => {
    const events: StoreEvent[] = [];
    const store = open({ partSize: 5 * MiB }, events);
    const isPart = (r: RecordedRequest) => r.operation === 'UploadPart';
    proxy.failNext(2, { status: 503, code: 'SlowDown', match: isPart });
    proxy.resetNext(2, { match: isPart });
    proxy.resetNext(1, { match: (r) => r.operation === 'CreateMultipartUpload' });
    const body = randomBytes(18 * MiB);
    const result = await store.put('retried.bin', body);
    expect(result.sha256).toBe(sha(body));
    expect(sha(await bytesOf(await store.get('retried.bin')))).toBe(sha(body));
    const retries = retriesOf(events);
    expect(retries.filter((e) => e.operation === 'UploadPart' && /SlowDown \(HTTP 503\)/.test(e.reason))).toHaveLength(2);
    expect(retries.filter((e) => e.operation === 'UploadPart' && /ECONNRESET|EPIPE|socket hang up/.test(e.reason))).toHaveLength(2);
    expect(retries.filter((e) => e.operation === 'CreateMultipartUpload')).toHaveLength(1);
    for (const event of retries) {
      expect(event).toMatchObject({ store: store.url, attempt: expect.any(Number) });
      expect(event.attempt).toBeGreaterThanOrEqual(2);
      expect(event.delayMs).toBeGreaterThanOrEqual(0);
    }
    expect(proxy.requests.filter((r) => r.fault === 'fail' && r.status === 503)).toHaveLength(2);
    expect(abortsOf(events)).toEqual([]);
  });

  it('a get survives a 500, a reset connection, and a connection cut mid-body (resumed from the next byte)', async () => {
    const events: StoreEvent[] = [];
    const store = open({}, events);
    const body = randomBytes(4 * MiB);
    const { etag } = await store.put('read-me', body);
    const isGet = (r: RecordedRequest) => r.operation === 'GetObject';
    proxy.failNext(1, { status: 500, code: 'InternalError', match: isGet });
    proxy.resetNext(1, { match: isGet });
    proxy.cutNext(1, MiB, { match: isGet });
    expect((await bytesOf(await store.get('read-me'))).equals(body)).toBe(true);
    const gets = requestsOf('GetObject');
    expect(gets.map((r) => r.fault)).toEqual(['fail', 'reset', 'cut', undefined]);
    const resumed = gets[3] as RecordedRequest;
    const from = Number(/^bytes=(\d+)-$/.exec(String(resumed.headers.range))?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(MiB);
    expect(resumed.headers['if-match']).toBe(etag);
    const reasons = retriesOf(events).map((e) => `${e.operation}: ${e.reason}`);
    expect(reasons).toEqual([
      expect.stringMatching(/^GetObject: InternalError \(HTTP 500\)/),
      expect.stringMatching(/^GetObject: (ECONNRESET|socket hang up)/),
      expect.stringMatching(/^GetObject: .* after \d+ bytes; resuming$/),
    ]);
  });

  it('a ranged get resumes within its range', async () => {
    const store = open();
    const body = randomBytes(3 * MiB);
    await store.put('ranged', body);
    proxy.cutNext(1, 256 * 1024, { match: (r) => r.operation === 'GetObject' });
    const got = await bytesOf(await store.get('ranged', { range: { start: 1000, end: 2 * MiB } }));
    expect(got.equals(body.subarray(1000, 2 * MiB + 1))).toBe(true);
    const resumed = requestsOf('GetObject')[1];
    expect(String(resumed?.headers.range)).toMatch(new RegExp(`^bytes=\\d+-${2 * MiB}$`));
  });

  it('a get whose connection keeps breaking before any byte fails with STORE_UNAVAILABLE after maxAttempts', async () => {
    const events: StoreEvent[] = [];
    const store = open({ maxAttempts: 3 }, events);
    await store.put('flaky', randomBytes(MiB));
    proxy.cutNext(10, 0, { match: (r) => r.operation === 'GetObject' });
    const error = await failureOf(bytesOf(await store.get('flaky')));
    expect(error.code).toBe('STORE_UNAVAILABLE');
    expect(requestsOf('GetObject')).toHaveLength(3);
    expect(retriesOf(events).map((e) => [e.operation, e.attempt])).toEqual([
      ['GetObject', 2],
      ['GetObject', 3],
    ]);
  });

  it('fails with STORE_UNAVAILABLE, naming the endpoint, once maxAttempts are used up', async () => {
    const events: StoreEvent[] = [];
    const store = open({ maxAttempts: 3 }, events);
    proxy.failNext(100, { status: 503, code: 'SlowDown' });
    const error = await failureOf(store.get('x'));
    expect(error.code).toBe('STORE_UNAVAILABLE');
    expect(error.message).toContain(proxy.endpoint);
    expect(error.message).toMatch(/SlowDown \(HTTP 503\).*after 3 attempts/);
    expect(requestsOf('GetObject')).toHaveLength(3);
    expect(retriesOf(events).map((e) => e.attempt)).toEqual([2, 3]);
    // A HEAD answer has no body to name the error: the status does.
    const headError = await failureOf(store.head('x'));
    expect(headError).toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringMatching(/HTTP 503.*after 3 attempts/) });
  });

  it('a multipart put whose parts keep failing fails with STORE_UNAVAILABLE and leaves nothing', async () => {
    const events: StoreEvent[] = [];
    const store = open({ partSize: 5 * MiB, maxAttempts: 2 }, events);
    proxy.failNext(1000, { status: 503, code: 'ServiceUnavailable', match: (r) => r.operation === 'UploadPart' });
    const error = await failureOf(store.put('doomed', chunks(100, MiB)));
    expect(error.code).toBe('STORE_UNAVAILABLE');
    // The first part that failed for good stopped the upload: the other 90 MiB were not sent.
    expect(requestsOf('UploadPart').length).toBeLessThanOrEqual(2 * 5);
    await expectAbandoned(store, 'doomed', events);
  });
});

describe('configuration errors', () => {
  const secret = `wrong-secret-${randomBytes(8).toString('hex')}`;
  const accessKeyId = `AKIAWRONG${randomBytes(6).toString('hex').toUpperCase()}`;

  /** The error, with everything a log could show of it: message, stack, JSON and util.inspect (causes included). */
  const exposed = (error: StoreError) =>
    [error.message, error.stack ?? '', JSON.stringify(error), inspect(error, { depth: 10 })].join('\n');

  it('a wrong secret key: STORE_ACCESS_DENIED for every operation, and the secret appears nowhere', async () => {
    const store = open({ credentials: { accessKeyId: s3.credentials.accessKeyId, secretAccessKey: secret } });
    for (const operation of [
      () => store.head('x'),
      () => store.get('x'),
      () => store.put('x', Buffer.from('x')),
      () => keysOf(store),
      () => store.delete('x'),
    ]) {
      const error = await failureOf(operation());
      expect(error.code).toBe('STORE_ACCESS_DENIED');
      expect(error.message).toMatch(/SignatureDoesNotMatch \(HTTP 403\)|\(HTTP 403\)/);
      expect(error.message).toMatch(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
      expect(exposed(error)).not.toContain(secret);
    }
    // Refusals are not retried.
    expect(proxy.requests.length).toBe(5);
  });

  it('an unknown access key: STORE_ACCESS_DENIED, and neither key appears', async () => {
    const store = open({ credentials: { accessKeyId, secretAccessKey: secret } });
    const error = await failureOf(store.put('x', Buffer.from('x')));
    expect(error.code).toBe('STORE_ACCESS_DENIED');
    expect(error.message).toMatch(/InvalidAccessKeyId/);
    expect(exposed(error)).not.toContain(accessKeyId);
    expect(exposed(error)).not.toContain(secret);
  });

  it('no credentials anywhere: STORE_ACCESS_DENIED saying where to put them', async () => {
    for (const name of [
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'AWS_SESSION_TOKEN',
      'AWS_PROFILE',
      'AWS_WEB_IDENTITY_TOKEN_FILE',
      'AWS_ROLE_ARN',
    ])
      vi.stubEnv(name, undefined);
    for (const name of ['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_CREDENTIALS_FULL_URI']) vi.stubEnv(name, undefined);
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', join(s3.dir, 'no-credentials'));
    vi.stubEnv('AWS_CONFIG_FILE', join(s3.dir, 'no-config'));
    vi.stubEnv('AWS_EC2_METADATA_DISABLED', 'true');
    try {
      const store = open({ credentials: undefined as never });
      const error = await failureOf(store.head('x'));
      expect(error.code).toBe('STORE_ACCESS_DENIED');
      expect(error.message).toMatch(/no AWS credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
      expect(proxy.requests).toEqual([]);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('credentials, region and endpoint from the environment (the standard chain) work', async () => {
    for (const [name, value] of Object.entries(s3.env())) vi.stubEnv(name, value);
    try {
      const store = createS3Store({ bucket: BUCKET, prefix: `env-${randomBytes(3).toString('hex')}` });
      opened.push(store);
      // AWS_ENDPOINT_URL_S3 and AWS_REGION came from the environment too.
      expect(store.url).toBe(`s3://${BUCKET}/${prefixOf(store)}?region=${s3.region}&endpoint=${s3.endpoint}`);
      await store.put('from-env', Buffer.from('ok'));
      expect((await bytesOf(await store.get('from-env'))).toString()).toBe('ok');
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('a missing bucket: STORE_BUCKET_NOT_FOUND naming it, for every operation', async () => {
    const store = open({ bucket: 'no-such-bucket' });
    for (const operation of [
      () => store.head('x'),
      () => store.get('x'),
      () => store.put('x', Buffer.from('x')),
      () => keysOf(store),
      () => store.delete('x'),
    ]) {
      const error = await failureOf(operation());
      expect(error.code).toBe('STORE_BUCKET_NOT_FOUND');
      expect(error.message).toMatch(/bucket "no-such-bucket" does not exist .*create it/);
    }
  });

  it('nothing listening: STORE_UNAVAILABLE naming the endpoint, after a quick retry', async () => {
    const events: StoreEvent[] = [];
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const store = open({ endpoint, maxAttempts: 2 }, events);
    const started = performance.now();
    const error = await failureOf(store.put('x', Buffer.from('x')));
    expect(error.code).toBe('STORE_UNAVAILABLE');
    expect(error.message).toContain(endpoint);
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(retriesOf(events)).toEqual([
      expect.objectContaining({ operation: 'PutObject', attempt: 2, reason: expect.stringMatching(/ECONNREFUSED/) }),
    ]);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe('what the driver sends', () => {
  it('SSE-KMS and the storage class on PutObject and CreateMultipartUpload (s3rver keeps the class, not the encryption)', async () => {
    const store = open({ sse: 'aws:kms', kmsKeyId: 'alias/drkit-test', storageClass: 'STANDARD_IA', partSize: 5 * MiB });
    await store.put('small', Buffer.from('small'));
    await store.put('large', chunks(11, MiB));
    const expected = {
      'x-amz-server-side-encryption': 'aws:kms',
      'x-amz-server-side-encryption-aws-kms-key-id': 'alias/drkit-test',
      'x-amz-storage-class': 'STANDARD_IA',
    };
    expect(requestsOf('PutObject')[0]?.headers).toMatchObject(expected);
    expect(requestsOf('CreateMultipartUpload')[0]?.headers).toMatchObject(expected);
    for (const part of requestsOf('UploadPart')) {
      expect(part.headers['x-amz-server-side-encryption']).toBeUndefined();
      expect(part.headers['x-amz-storage-class']).toBeUndefined();
    }
    expect((await store.head('small'))?.storageClass).toBe('STANDARD_IA');
    expect((await store.head('large'))?.storageClass).toBe('STANDARD_IA');
  });

  it('SSE-S3 (AES256) and GLACIER', async () => {
    const store = open({ sse: 'AES256', storageClass: 'GLACIER' });
    await store.put('cold', Buffer.from('cold'));
    expect(requestsOf('PutObject')[0]?.headers).toMatchObject({
      'x-amz-server-side-encryption': 'AES256',
      'x-amz-storage-class': 'GLACIER',
    });
    expect(requestsOf('PutObject')[0]?.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBeUndefined();
    expect((await store.head('cold'))?.storageClass).toBe('GLACIER');
  });

  it('an announced SHA-256 as x-amz-meta-sha256, and a CRC32 checksum header (not an aws-chunked body) on every upload', async () => {
    const store = open({ partSize: 5 * MiB });
    const small = Buffer.from('checked');
    await store.put('meta', small, { sha256: sha(small).toUpperCase() });
    const head = await raw.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefixOf(store)}meta` }));
    expect(head.Metadata).toEqual({ sha256: sha(small) });
    await store.put('parts', chunks(7, MiB));
    const uploads = [...requestsOf('PutObject'), ...requestsOf('UploadPart')];
    expect(uploads).toHaveLength(3);
    for (const upload of uploads) {
      expect(upload.headers['x-amz-checksum-crc32']).toMatch(/^[A-Za-z0-9+/]{6}==$/);
      expect(upload.headers['x-amz-content-sha256']).toMatch(/^[0-9a-f]{64}$/);
      expect(upload.headers['content-encoding']).toBeUndefined();
    }
    // Without an announced SHA-256 there is nothing to store up front.
    expect((await raw.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefixOf(store)}parts` }))).Metadata).toEqual({});
  });

  it('a get aborted mid-stream fails with STORE_ABORTED', async () => {
    const store = open();
    await store.put('stream', randomBytes(8 * MiB));
    const controller = new AbortController();
    const stream = await store.get('stream', { signal: controller.signal });
    const error = await (async () => {
      for await (const _ of stream) controller.abort();
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isStoreError(error, 'STORE_ABORTED')).toBe(true);
    expect(stream.destroyed).toBe(true);
  });
});
