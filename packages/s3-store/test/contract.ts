// The Store contract: one suite that every driver (fs, S3, mirrored) must pass.
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isStoreError, type Store, type StoreErrorCode } from '../src/index.js';

/** A store under test and how to dispose of it. */
export interface ContractSubject {
  store: Store;
  cleanup(): Promise<void>;
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function keysOf(store: Store, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
}

/** Resolves to the StoreError code `promise` rejects with (fails the test if it resolves). */
export async function codeOf(promise: Promise<unknown>): Promise<StoreErrorCode | string> {
  try {
    await promise;
  } catch (error) {
    if (isStoreError(error)) return error.code;
    return `not a StoreError: ${String(error)}`;
  }
  return 'resolved';
}

/** Yields `parts` then fails, like a dump process that dies half-way. */
async function* failingAfter(parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const part of parts) yield part;
  throw new Error('the dump died');
}

/** Yields `count` chunks of `size`, aborting `controller` after `abortAfter` of them. */
async function* abortingAfter(controller: AbortController, size: number, count: number, abortAfter: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < count; i++) {
    if (i === abortAfter) controller.abort(new Error('operator pressed ctrl-c'));
    yield randomBytes(size);
  }
}

/** Registers the contract suite for one driver. */
export function storeContract(name: string, open: () => Promise<ContractSubject>): void {
  describe(`Store contract: ${name}`, () => {
    let subject: ContractSubject;
    let store: Store;
    beforeAll(async () => {
      subject = await open();
      store = subject.store;
    });
    afterAll(async () => {
      await subject?.cleanup();
    });

    it('puts and gets bytes back, reporting size and SHA-256', async () => {
      const body = randomBytes(100_000);
      const result = await store.put('rt/one.bin', body);
      expect(result).toMatchObject({ key: 'rt/one.bin', size: body.length, sha256: sha(body) });
      expect((await bytesOf(await store.get('rt/one.bin'))).equals(body)).toBe(true);
      const info = await store.head('rt/one.bin');
      expect(info?.size).toBe(body.length);
      expect(info?.key).toBe('rt/one.bin');
      expect(info?.modifiedAt).toBeInstanceOf(Date);
    });

    it('stores an empty object and a streamed multi-MiB one', async () => {
      expect((await store.put('rt/empty', Buffer.alloc(0))).size).toBe(0);
      expect((await bytesOf(await store.get('rt/empty'))).length).toBe(0);
      const parts = Array.from({ length: 12 }, () => randomBytes(512 * 1024 + 7));
      const all = Buffer.concat(parts);
      const result = await store.put(
        'rt/streamed',
        (async function* () {
          yield* parts;
        })(),
        { size: all.length },
      );
      expect(result.sha256).toBe(sha(all));
      expect(sha(await bytesOf(await store.get('rt/streamed')))).toBe(sha(all));
    });

    it('reports progress as bytes are accepted', async () => {
      const seen: number[] = [];
      const parts = [randomBytes(1000), randomBytes(2000)];
      await store.put(
        'rt/progress',
        (async function* () {
          yield* parts;
        })(),
        { onProgress: (n) => seen.push(n) },
      );
      expect(seen.at(-1)).toBe(3000);
      expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    });

    it('replaces an object atomically on a second put', async () => {
      await store.put('rt/replace', Buffer.from('first'));
      await store.put('rt/replace', Buffer.from('second version'));
      expect((await bytesOf(await store.get('rt/replace'))).toString()).toBe('second version');
    });

    it('a missing key: head is undefined, get fails with STORE_NOT_FOUND, delete succeeds', async () => {
      expect(await store.head('nope/missing')).toBeUndefined();
      expect(await codeOf(store.get('nope/missing'))).toBe('STORE_NOT_FOUND');
      await expect(store.delete('nope/missing')).resolves.toBeUndefined();
    });

    it('reads byte ranges (end inclusive, clamped to the size)', async () => {
      const body = Buffer.from('0123456789abcdef');
      await store.put('range/x', body);
      expect((await bytesOf(await store.get('range/x', { range: { start: 2, end: 5 } }))).toString()).toBe('2345');
      expect((await bytesOf(await store.get('range/x', { range: { start: 10 } }))).toString()).toBe('abcdef');
      expect((await bytesOf(await store.get('range/x', { range: { start: 14, end: 100 } }))).toString()).toBe('ef');
      expect(await codeOf(store.get('range/x', { range: { start: 16 } }))).toBe('STORE_OPTIONS_INVALID');
      expect(await codeOf(store.get('range/x', { range: { start: 5, end: 2 } }))).toBe('STORE_OPTIONS_INVALID');
    });

    it('lists by prefix, in UTF-8 byte order, across levels', async () => {
      for (const key of ['ls/b', 'ls/a/2', 'ls/a/10', 'ls/ab', 'ls/Z', 'ls/é', 'lsx/other']) await store.put(key, Buffer.from(key));
      expect(await keysOf(store, 'ls/')).toEqual(['ls/Z', 'ls/a/10', 'ls/a/2', 'ls/ab', 'ls/b', 'ls/é']);
      expect(await keysOf(store, 'ls/a')).toEqual(['ls/a/10', 'ls/a/2', 'ls/ab']);
      expect(await keysOf(store, 'ls/a/')).toEqual(['ls/a/10', 'ls/a/2']);
      expect(await keysOf(store, 'ls/none/')).toEqual([]);
      const sizes = [];
      for await (const info of store.list('ls/b')) sizes.push(info.size);
      expect(sizes).toEqual([4]);
    });

    it('deletes objects, idempotently', async () => {
      await store.put('del/x', Buffer.from('x'));
      await store.delete('del/x');
      await store.delete('del/x');
      expect(await store.head('del/x')).toBeUndefined();
      expect(await keysOf(store, 'del/')).toEqual([]);
    });

    it('refuses keys that could escape the store or collide with its own files', async () => {
      for (const key of [
        '../etc/passwd',
        'a/../../b',
        'a//b',
        'a/./b',
        '',
        'dir/',
        'a\\b',
        'x\u0000y',
        '.drkit-locks/x',
        'a/.drkit-tmp-1',
      ]) {
        expect(await codeOf(store.put(key, Buffer.from('x'))), key).toBe('STORE_KEY_INVALID');
        expect(await codeOf(store.get(key)), key).toBe('STORE_KEY_INVALID');
      }
      expect(await codeOf(store.put('k'.repeat(1025), Buffer.from('x')))).toBe('STORE_KEY_INVALID');
      // A leading slash is the same key without it.
      await store.put('/lead/x', Buffer.from('x'));
      expect(await store.head('lead/x')).toBeDefined();
    });

    it('a source that fails half-way stores nothing and keeps the previous object', async () => {
      await store.put('fail/keep', Buffer.from('previous good backup'));
      const error = await store.put('fail/keep', failingAfter([randomBytes(300_000), randomBytes(300_000)])).catch((e: unknown) => e);
      expect(isStoreError(error)).toBe(true);
      expect(String((error as Error).message)).toMatch(/the dump died/);
      expect((await bytesOf(await store.get('fail/keep'))).toString()).toBe('previous good backup');
      await store.put('fail/new', failingAfter([randomBytes(1000)])).catch(() => {});
      expect(await store.head('fail/new')).toBeUndefined();
      expect(await keysOf(store, 'fail/')).toEqual(['fail/keep']);
    });

    it('an aborted put fails with STORE_ABORTED and stores nothing', async () => {
      const controller = new AbortController();
      const code = await codeOf(store.put('abort/x', abortingAfter(controller, 256 * 1024, 40, 8), { signal: controller.signal }));
      expect(code).toBe('STORE_ABORTED');
      expect(await store.head('abort/x')).toBeUndefined();
      expect(await keysOf(store, 'abort/')).toEqual([]);
      const already = new AbortController();
      already.abort();
      expect(await codeOf(store.put('abort/y', Buffer.from('x'), { signal: already.signal }))).toBe('STORE_ABORTED');
    });

    it('a size or SHA-256 other than announced fails with STORE_INTEGRITY and stores nothing', async () => {
      expect(await codeOf(store.put('integrity/a', Buffer.from('12345'), { size: 6 }))).toBe('STORE_INTEGRITY');
      expect(await codeOf(store.put('integrity/b', Buffer.from('12345'), { sha256: sha(Buffer.from('54321')) }))).toBe('STORE_INTEGRITY');
      await store.put('integrity/c', Buffer.from('12345'), { size: 5, sha256: sha(Buffer.from('12345')) });
      expect(await keysOf(store, 'integrity/')).toEqual(['integrity/c']);
    });

    it('handles concurrent puts to different keys', async () => {
      const bodies = Array.from({ length: 8 }, () => randomBytes(50_000));
      await Promise.all(bodies.map((b, i) => store.put(`conc/${i}`, b)));
      for (const [i, b] of bodies.entries()) expect(sha(await bytesOf(await store.get(`conc/${i}`)))).toBe(sha(b));
    });

    it('a lease lock refuses a second holder until released', async () => {
      const lease = await store.lock('contract-run', { owner: 'first-run' });
      try {
        const refused = await store.lock('contract-run', { owner: 'second-run' }).catch((e: unknown) => e);
        expect(isStoreError(refused, 'STORE_LOCKED')).toBe(true);
        expect((refused as Error).message).toContain('first-run');
        expect((await store.lockInfo('contract-run'))?.owner).toBe('first-run');
      } finally {
        await lease.release();
      }
      expect(await store.lockInfo('contract-run')).toBeUndefined();
      const again = await store.lock('contract-run', { owner: 'second-run' });
      await again.release();
      // Locks are not objects.
      expect((await keysOf(store, '')).some((k) => k.includes('contract-run'))).toBe(false);
    });
  });
}
