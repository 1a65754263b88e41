import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCatalog, createFsStore, createMirroredStore, createS3Store, type Store, StoreError, type StoreEvent } from '../src/index.js';
import { codeOf } from './contract.js';

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A store on a sandbox server that gives up fast once the server is gone. */
const on = (s3: S3Sandbox, prefix: string): Store =>
  createS3Store({ bucket: s3.buckets[0] as string, prefix, ...s3.clientConfig(), maxAttempts: 2, retryBaseDelayMs: 10 });

describe('a mirror over two regions, one of them stopped mid-test', () => {
  let east: S3Sandbox;
  let west: S3Sandbox;
  beforeAll(async () => {
    [east, west] = await Promise.all([startS3({ region: 'us-east-1' }), startS3({ region: 'us-west-2' })]);
  });
  afterAll(async () => {
    await Promise.all([east?.stop(), west?.stop()]);
  });

  it('keeps serving reads from the replica when the primary region stops, and says so', async () => {
    const events: StoreEvent[] = [];
    const mirror = createMirroredStore({ primary: on(east, 'm1/'), replicas: [on(west, 'm1/')], onEvent: (e) => events.push(e) });
    const catalog = createCatalog(mirror);
    const bodies = [randomBytes(300_000), randomBytes(5 * 1024 * 1024 + 3)];
    const stored = [];
    for (const body of bodies)
      stored.push(
        await catalog.put({
          kind: 'postgres',
          tier: 'daily',
          source: { description: 'db-1' },
          tool: { name: 'test', version: '1' },
          compression: 'none',
          encryption: { format: 'none' },
          body,
        }),
      );
    // Both regions hold every object and manifest.
    for (const manifest of stored) {
      expect((await on(east, 'm1/').head(manifest.object.key))?.size).toBe(manifest.object.size);
      expect((await on(west, 'm1/').head(manifest.object.key))?.size).toBe(manifest.object.size);
    }
    expect(events).toEqual([]);

    await east.stop();

    expect((await catalog.list()).map((m) => m.id)).toEqual(stored.map((m) => m.id));
    const latest = await catalog.latest('postgres');
    expect(latest?.id).toBe(stored[1]?.id);
    expect(sha(await bytesOf(await catalog.open(latest as (typeof stored)[number])))).toBe(sha(bodies[1] as Buffer));
    expect((await catalog.verify(stored[0] as (typeof stored)[number])).ok).toBe(true);
    const range = await bytesOf(await mirror.get(stored[0]?.object.key as string, { range: { start: 10, end: 19 } }));
    expect(range.equals((bodies[0] as Buffer).subarray(10, 20))).toBe(true);
    const fallbacks = events.filter((e) => e.type === 'replica-fallback');
    expect(fallbacks.length).toBeGreaterThan(0);
    for (const e of fallbacks) {
      expect(e).toMatchObject({ servedBy: expect.stringContaining('s3://'), failed: expect.stringContaining('s3://') });
      expect((e as { reason: string }).reason).toMatch(/STORE_UNAVAILABLE/);
    }

    // A put needing both copies fails, and leaves nothing on the region that is up.
    expect(await codeOf(mirror.put('late/x', randomBytes(1000)))).toBe('STORE_MIRROR_DEGRADED');
    expect(await on(west, 'm1/').head('late/x')).toBeUndefined();
    await mirror.close();
  });

  it('a put that may land on one copy succeeds with the other down, and repair fills it in later', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-mirror-'));
    try {
      const events: StoreEvent[] = [];
      // The primary here is the local disk; the replica is the us-west-2 server, stopped and
      // replaced by a fresh one to stand for a region coming back empty.
      const local = createFsStore(dir);
      const down = on(west, 'm2/');
      await west.stop();
      const mirror = createMirroredStore({ primary: local, replicas: [down], requiredCopies: 1, onEvent: (e) => events.push(e) });
      const body = randomBytes(100_000);
      expect((await mirror.put('a/b', body)).sha256).toBe(sha(body));
      expect(events.some((e) => e.type === 'replica-failed' && e.key === 'a/b')).toBe(true);
      expect((await bytesOf(await mirror.get('a/b'))).equals(body)).toBe(true);

      west = await startS3({ region: 'us-west-2' });
      const back = on(west, 'm2/');
      const repaired = createMirroredStore({ primary: local, replicas: [back] });
      expect((await repaired.repair('')).copied).toEqual([`${back.url} a/b`]);
      expect((await bytesOf(await back.get('a/b'))).equals(body)).toBe(true);
      expect((await repaired.repair('')).copied).toEqual([]);
      await repaired.close();
      await mirror.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a requiredCopies it cannot meet', () => {
    const store = createFsStore(tmpdir());
    expect(() => createMirroredStore({ primary: store, replicas: [], requiredCopies: 2 })).toThrow(/requiredCopies/);
  });

  it('after the primary answers unavailable, reads go to the replica first for a while, then try the primary again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-mirror-'));
    try {
      const replica = createFsStore(dir);
      await replica.put('k/1', Buffer.from('one'));
      await replica.put('k/2', Buffer.from('two'));
      // A primary whose region is down: every call costs (the real one waits out its retries).
      let primaryCalls = 0;
      const dead = createFsStore(join(dir, 'unused'));
      const primary: Store = {
        ...dead,
        url: 's3://dead/region',
        get: async () => {
          primaryCalls++;
          throw new StoreError('STORE_UNAVAILABLE', 'S3 at the dead region is unavailable after 5 attempts');
        },
        head: async () => {
          primaryCalls++;
          throw new StoreError('STORE_UNAVAILABLE', 'S3 at the dead region is unavailable after 5 attempts');
        },
      };
      let clock = 1_000_000;
      const events: StoreEvent[] = [];
      const mirror = createMirroredStore({
        primary,
        replicas: [replica],
        unavailableForMs: 60_000,
        now: () => clock,
        onEvent: (e) => events.push(e),
      });
      expect((await bytesOf(await mirror.get('k/1'))).toString()).toBe('one');
      expect(primaryCalls).toBe(1);
      for (let i = 0; i < 5; i++) expect((await bytesOf(await mirror.get('k/2'))).toString()).toBe('two');
      expect((await mirror.head('k/1'))?.size).toBe(3);
      expect(primaryCalls).toBe(1);
      // Every read says it was served by the replica, and why.
      expect(events).toHaveLength(7);
      expect(events.at(-1)).toMatchObject({
        type: 'replica-fallback',
        failed: 's3://dead/region',
        reason: expect.stringMatching(/STORE_UNAVAILABLE within the last 60 s/),
      });
      // An object only the (benched) primary could hold is still asked of it, last.
      expect(await codeOf(mirror.get('k/missing'))).toBe('STORE_UNAVAILABLE');
      expect(primaryCalls).toBe(2);
      // Once the window has passed, the primary is asked first again.
      clock += 61_000;
      await bytesOf(await mirror.get('k/1'));
      expect(primaryCalls).toBe(3);
      await mirror.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
