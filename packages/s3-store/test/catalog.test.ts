import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type ArtifactInput,
  type Catalog,
  type CatalogEvent,
  createCatalog,
  createFsStore,
  createS3Store,
  isStoreError,
  newArtifactId,
  parseManifest,
  type Store,
} from '../src/index.js';
import { codeOf } from './contract.js';
import { VALID_MANIFEST } from './valid-manifest.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/put-child.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../..', import.meta.url));

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

const base = (body: Buffer, extra: Partial<ArtifactInput> = {}): ArtifactInput => ({
  kind: 'config',
  tier: 'daily',
  source: { description: 'app config /etc/app', host: 'web-1' },
  tool: { name: 'drkit', version: '0.1.0' },
  compression: 'zstd',
  encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: 'k1' },
  body,
  ...extra,
});

describe('catalog on a local store', () => {
  let root: string;
  let store: Store;
  let catalog: Catalog;
  let events: CatalogEvent[];
  let clock: Date;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'drkit-catalog-'));
    store = createFsStore(root);
    events = [];
    clock = new Date('2026-11-22T02:00:00.000Z');
    catalog = createCatalog(store, { onEvent: (e) => events.push(e), now: () => clock });
    return () => rm(root, { recursive: true, force: true });
  });

  it('takes an id made beforehand (its time is createdAt), and refuses a malformed or taken one', async () => {
    const id = newArtifactId(new Date('2026-11-21T03:00:00.000Z'));
    const manifest = await catalog.put(base(randomBytes(10), { id }));
    expect(manifest).toMatchObject({ id, createdAt: '2026-11-21T03:00:00.000Z' });
    await expect(catalog.put(base(randomBytes(10), { id }))).rejects.toMatchObject({ code: 'STORE_OPTIONS_INVALID' });
    await expect(catalog.put(base(randomBytes(10), { id: 'latest' }))).rejects.toMatchObject({ code: 'STORE_OPTIONS_INVALID' });
    expect(await catalog.list()).toEqual([manifest]);
  });

  it('stores the object, then a manifest describing exactly those bytes', async () => {
    const body = randomBytes(5000);
    const manifest = await catalog.put(base(body, { plainSize: 9000, fingerprint: { rows: { users: 3 } } }));
    expect(manifest).toMatchObject({
      schema: 'drkit.manifest/1',
      kind: 'config',
      tier: 'daily',
      type: 'full',
      createdAt: '2026-11-22T02:00:00.000Z',
      plainSize: 9000,
      object: { size: 5000, key: `artifacts/config/${manifest.id}.sealed` },
    });
    expect(manifest.id).toMatch(/^20261122T020000000Z-[0-9a-f]{6}$/);
    expect((await bytesOf(await catalog.open(manifest))).equals(body)).toBe(true);
    expect(await catalog.list()).toEqual([manifest]);
    expect(await catalog.get(manifest.id)).toEqual(manifest);
    expect(await catalog.get(manifest.id, 'config')).toEqual(manifest);
    expect(await catalog.latest('config')).toEqual(manifest);
    // The object was stored before the manifest was written.
    const order = events.map((e) => e.type);
    expect(order.indexOf('artifact-stored')).toBeLessThan(order.indexOf('manifest-written'));
  });

  it('writes no manifest and keeps no object when the artifact is refused before its manifest', async () => {
    const error = await catalog
      .put(
        base(randomBytes(1000), {
          beforeManifest: async () => {
            throw new Error('restore test failed');
          },
        }),
      )
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('restore test failed');
    expect(await catalog.list()).toEqual([]);
    const report = await catalog.orphans({ graceMs: 0 });
    expect(report.objects).toEqual([]);
    expect(await catalog.latest('config')).toBeUndefined();
  });

  it('the fs store reads back what it writes as it goes, so the catalog does not read the object a second time', async () => {
    let gets = 0;
    const counting: Store = {
      ...store,
      get: (key, options) => {
        gets++;
        return store.get(key, options);
      },
    };
    const sealed = createCatalog(counting, { now: () => clock });
    // A source that reuses one buffer, as sealed and chunked streams do: large pieces and small.
    const reused = Buffer.alloc(200 * 1024);
    const sizes = [200 * 1024, 16, 70_000, 16, 3, 200 * 1024, 999];
    const expected: Buffer[] = [];
    const body = (async function* () {
      for (const [i, size] of sizes.entries()) {
        reused.fill(i + 1);
        expected.push(Buffer.from(reused.subarray(0, size)));
        yield reused.subarray(0, size);
      }
    })();
    const manifest = await sealed.put({ ...base(Buffer.alloc(0)), body });
    expect(gets).toBe(0);
    const all = Buffer.concat(expected);
    expect(manifest.object).toMatchObject({ size: all.length, sha256: createHash('sha256').update(all).digest('hex') });
    expect((await bytesOf(await store.get(manifest.object.key))).equals(all)).toBe(true);
    // A store that does not say it read back gets the catalog's own read-back.
    const plain: Store = { ...counting, put: async (...args) => ({ ...(await store.put(...args)), readBack: false }) };
    await createCatalog(plain, { now: () => clock }).put(base(randomBytes(3 * 1024 * 1024 + 5)));
    expect(gets).toBe(1);
  });

  it('bytes that read back differently from what was written fail the put, and leave nothing behind', async () => {
    const body = (async function* () {
      yield Buffer.alloc(1000, 1);
      // Before the second piece, something else scribbles over the first in the temp file.
      const dir = join(root, 'artifacts', 'config');
      const temp = (await readdir(dir)).find((name) => name.startsWith('.drkit-tmp-')) as string;
      const handle = await open(join(dir, temp), 'r+');
      await handle.write(Buffer.from('X'), 0, 1, 10);
      await handle.close();
      yield Buffer.alloc(100_000, 2);
    })();
    const error = await catalog.put({ ...base(Buffer.alloc(0)), body }).catch((e: unknown) => e);
    expect(isStoreError(error) && error.code).toBe('STORE_INTEGRITY');
    expect((error as Error).message).toMatch(/reads back differently from the bytes written at offset 10;/);
    expect(await catalog.list()).toEqual([]);
    expect(await readdir(join(root, 'artifacts', 'config'))).toEqual([]);
  });

  it('a failed source leaves nothing listed and no orphan', async () => {
    const body = (async function* () {
      yield randomBytes(1000);
      throw new Error('pg_dump exited with 1');
    })();
    expect(isStoreError(await catalog.put({ ...base(Buffer.alloc(0)), body }).catch((e: unknown) => e))).toBe(true);
    expect(await catalog.list()).toEqual([]);
    expect((await catalog.orphans({ graceMs: 0 })).objects).toEqual([]);
  });

  it('fields computed while streaming are merged into the manifest', async () => {
    const manifest = await catalog.put(
      base(randomBytes(10), { beforeManifest: async () => ({ plainSize: 42, fingerprint: { keys: 7 } }) }),
    );
    expect(manifest.plainSize).toBe(42);
    expect(manifest.fingerprint).toEqual({ keys: 7 });
  });

  it('lists by kind, tier and date, oldest first', async () => {
    const made = [];
    for (const [day, kind, tier] of [
      ['2026-11-01', 'postgres', 'monthly'],
      ['2026-11-20', 'postgres', 'daily'],
      ['2026-11-21', 'redis-rdb', 'daily'],
      ['2026-11-22', 'postgres', 'weekly'],
    ] as const) {
      clock = new Date(`${day}T02:00:00.000Z`);
      made.push(await catalog.put(base(randomBytes(10), { kind, tier })));
    }
    const ids = (ms: { id: string }[]) => ms.map((m) => m.id);
    expect(ids(await catalog.list())).toEqual(ids(made));
    expect(ids(await catalog.list({ kind: 'postgres' }))).toEqual(ids([made[0], made[1], made[3]] as { id: string }[]));
    expect(ids(await catalog.list({ tier: 'daily' }))).toEqual(ids([made[1], made[2]] as { id: string }[]));
    expect(ids(await catalog.list({ since: new Date('2026-11-20T00:00:00Z'), until: new Date('2026-11-22T00:00:00Z') }))).toEqual(
      ids([made[1], made[2]] as { id: string }[]),
    );
    expect((await catalog.latest('postgres'))?.id).toBe(made[3]?.id);
    expect((await catalog.latest('postgres', { tier: 'daily' }))?.id).toBe(made[1]?.id);
    expect(await catalog.latest('files')).toBeUndefined();

    // A snapshot of a damaged state, taken before a recovery, is never "the latest backup".
    clock = new Date('2026-11-23T02:00:00.000Z');
    const snapshot = await catalog.put(base(randomBytes(10), { kind: 'postgres', labels: { snapshot: 'true' } }));
    expect((await catalog.latest('postgres'))?.id).toBe(made[3]?.id);
    expect((await catalog.resolve('latest', 'postgres')).id).toBe(made[3]?.id);
    expect((await catalog.latest('postgres', { includeSnapshots: true }))?.id).toBe(snapshot.id);
  });

  it('latest skips a backup whose verification failed, and one whose object is gone', async () => {
    clock = new Date('2026-11-20T02:00:00.000Z');
    const oldest = await catalog.put(base(randomBytes(10)));
    clock = new Date('2026-11-21T02:00:00.000Z');
    const middle = await catalog.put(base(randomBytes(10)));
    clock = new Date('2026-11-22T02:00:00.000Z');
    const newest = await catalog.put(base(randomBytes(10)));
    await catalog.recordVerification(newest, { status: 'failed', at: clock.toISOString(), level: 'restore', detail: 'row count 0' });
    expect((await catalog.latest('config'))?.id).toBe(middle.id);
    await store.delete(middle.object.key);
    expect((await catalog.latest('config'))?.id).toBe(oldest.id);
    expect(events.some((e) => e.type === 'object-missing' && e.id === middle.id)).toBe(true);
    expect((await catalog.resolve('latest', 'config')).id).toBe(oldest.id);
  });

  it('resolve and get fail with clear codes', async () => {
    expect(await codeOf(catalog.resolve('latest'))).toBe('STORE_OPTIONS_INVALID');
    expect(await codeOf(catalog.resolve('latest', 'postgres'))).toBe('STORE_ARTIFACT_NOT_FOUND');
    expect(await codeOf(catalog.get('20260101T000000000Z-abcdef'))).toBe('STORE_ARTIFACT_NOT_FOUND');
    expect(await codeOf(catalog.get('20260101T000000000Z-abcdef', 'postgres'))).toBe('STORE_ARTIFACT_NOT_FOUND');
    expect(await codeOf(catalog.list({ kind: '../etc' }))).toBe('STORE_OPTIONS_INVALID');
  });

  it('verify compares the stored bytes with the manifest', async () => {
    const manifest = await catalog.put(base(randomBytes(4096)));
    expect(await catalog.verify(manifest)).toMatchObject({ ok: true, size: 4096, sha256: manifest.object.sha256 });
    const tampered = randomBytes(4096);
    await writeFile(join(root, manifest.object.key), tampered);
    const check = await catalog.verify(manifest);
    expect(check.ok).toBe(false);
    expect(check.sha256).not.toBe(manifest.object.sha256);
    await store.delete(manifest.object.key);
    expect(await codeOf(catalog.verify(manifest))).toBe('STORE_ARTIFACT_INCOMPLETE');
  });

  it('reports orphans, skips invalid manifests, and cleans only old orphans', async () => {
    const good = await catalog.put(base(randomBytes(10)));
    await store.put('artifacts/config/20261122T010000000Z-000000.sealed', randomBytes(100));
    await store.put('manifests/config/20261122T010000000Z-111111.json', Buffer.from('{"schema":"drkit.manifest/1"'));
    expect(await catalog.list()).toEqual([good]);
    expect(events.some((e) => e.type === 'manifest-invalid')).toBe(true);
    // Orphan ages come from the files' real modification times.
    clock = new Date(Date.now() + 1000);
    const young = await catalog.orphans();
    expect(young.objects).toEqual([]);
    expect(young.young.map((o) => o.key)).toEqual(['artifacts/config/20261122T010000000Z-000000.sealed']);
    expect(young.invalid.map((i) => i.key)).toEqual(['manifests/config/20261122T010000000Z-111111.json']);
    expect(await catalog.cleanOrphans()).toEqual([]);
    const dry = await catalog.cleanOrphans({ graceMs: 0, dryRun: true });
    expect(dry).toEqual(['artifacts/config/20261122T010000000Z-000000.sealed']);
    expect(await store.head(dry[0] as string)).toBeDefined();
    expect(await catalog.cleanOrphans({ graceMs: 0 })).toEqual(dry);
    expect(await store.head(dry[0] as string)).toBeUndefined();
    expect(await store.head(good.object.key)).toBeDefined();
    await store.delete(good.object.key);
    expect((await catalog.orphans({ graceMs: 0 })).broken.map((m) => m.id)).toEqual([good.id]);
  });

  it('prune applies a retention policy, with a dry run first', async () => {
    const made = [];
    for (let day = 1; day <= 5; day++) {
      clock = new Date(`2026-11-0${day}T02:00:00.000Z`);
      made.push(await catalog.put(base(randomBytes(10))));
    }
    const dry = await catalog.prune({ keepLast: 2 }, { dryRun: true });
    expect(dry.plan.drop.map((d) => d.id).sort()).toEqual(made.slice(0, 3).map((m) => m.id));
    expect(dry.deleted).toEqual([]);
    expect(await catalog.list()).toHaveLength(5);
    const real = await catalog.prune({ keepLast: 2 });
    expect(real.deleted.sort()).toEqual(made.slice(0, 3).map((m) => m.id));
    expect((await catalog.list()).map((m) => m.id)).toEqual(made.slice(3).map((m) => m.id));
    expect(await catalog.orphans({ graceMs: 0 })).toMatchObject({ objects: [], broken: [] });
  });

  it('an incremental must name an existing parent', async () => {
    expect(await codeOf(catalog.put(base(randomBytes(10), { type: 'incremental', parent: '20260101T000000000Z-abcdef' })))).toBe(
      'STORE_ARTIFACT_NOT_FOUND',
    );
    const full = await catalog.put(base(randomBytes(10)));
    const inc = await catalog.put(base(randomBytes(10), { parent: full.id }));
    expect(inc).toMatchObject({ type: 'incremental', parent: full.id });
  });
});

describe('manifest schema', () => {
  const valid = VALID_MANIFEST;

  it('accepts a complete manifest', () => {
    expect(parseManifest(valid)).toEqual(valid);
  });

  it('refuses bad fields, naming each', () => {
    const bad = (patch: object) => {
      try {
        parseManifest({ ...valid, ...patch });
      } catch (error) {
        expect(isStoreError(error, 'STORE_MANIFEST_INVALID')).toBe(true);
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(bad({ source: { description: 'postgres://app:hunter2@db-1/app' } })).toMatch(/source\.description: .*without credentials/);
    expect(bad({ source: { description: 'postgres://app:hunter2@db-1/app' } })).not.toContain('hunter2');
    expect(bad({ object: { ...valid.object, sha256: 'xyz' } })).toMatch(/object\.sha256/);
    expect(bad({ type: 'incremental' })).toMatch(/parent/);
    expect(bad({ id: 'latest' })).toMatch(/^.*id: /);
    expect(bad({ tier: 'yearly' })).toMatch(/tier/);
    expect(bad({ extra: 1 })).toMatch(/extra|unrecognized/i);
    expect(bad({ encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: 'k1', key: 'secret' } })).toMatch(/encryption/);
  });
});

/** Runs the put fixture against `url`, kills it with SIGKILL once `killAt` bytes went through. */
async function killMidPut(url: string, size: number, killAt: number, env: Record<string, string> = {}): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, url, String(size)], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let seen = 0;
  for await (const line of createInterface({ input: child.stdout })) {
    const message = JSON.parse(line) as { progress?: number; done?: boolean };
    if (message.done) throw new Error('the put finished before it could be killed');
    seen = message.progress ?? 0;
    if (seen >= killAt) {
      child.kill('SIGKILL');
      break;
    }
  }
  const code = await exited;
  if (seen < killAt) throw new Error(`the put child exited (${code}) before ${killAt} bytes: ${stderr.slice(-2000)}`);
  return seen;
}

describe('kill -9 in the middle of a 200 MB put', () => {
  const SIZE = 200 * 1024 * 1024;
  let s3: S3Sandbox;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it('on fs: nothing is listed as a backup, and no object is visible', async () => {
    const root = await mkdtemp(join(tmpdir(), 'drkit-kill-fs-'));
    try {
      const killedAt = await killMidPut(root, SIZE, SIZE / 2);
      expect(killedAt).toBeGreaterThanOrEqual(SIZE / 2);
      const catalog = createCatalog(createFsStore(root));
      expect(await catalog.list()).toEqual([]);
      expect(await catalog.latest('postgres')).toBeUndefined();
      const report = await catalog.orphans({ graceMs: 0 });
      expect(report.objects).toEqual([]);
      // The partial bytes exist only as the put's temp file, which no listing shows.
      const leftovers = await readdir(join(root, 'artifacts', 'postgres'));
      expect(leftovers.every((name) => name.startsWith('.drkit-tmp-'))).toBe(true);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('on S3: nothing is listed as a backup, and no object is visible', async () => {
    const prefix = `kill-${randomBytes(3).toString('hex')}`;
    const url = `s3://${s3.buckets[0]}/${prefix}?region=${s3.region}&endpoint=${s3.endpoint}`;
    const killedAt = await killMidPut(url, SIZE, SIZE / 2, s3.env());
    expect(killedAt).toBeGreaterThanOrEqual(SIZE / 2);
    const store = createS3Store({ bucket: s3.buckets[0] as string, prefix: `${prefix}/`, ...s3.clientConfig() });
    try {
      const catalog = createCatalog(store);
      expect(await catalog.list()).toEqual([]);
      expect(await catalog.latest('postgres')).toBeUndefined();
      const report = await catalog.orphans({ graceMs: 0 });
      expect(report).toMatchObject({ objects: [], broken: [], invalid: [] });
    } finally {
      await store.close();
    }
  });
});
