import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { isStoreError, StoreError, throwIfAborted } from './errors.js';
import {
  ARTIFACT_ID_PATTERN,
  artifactIdTime,
  checkKind,
  MANIFEST_SCHEMA,
  type Manifest,
  newArtifactId,
  parseManifest,
  type Tier,
} from './manifest.js';
import { reclaimer } from './reclaim.js';
import { planRetention, type RetentionPlan, type RetentionPolicy } from './retention.js';
import type { ByteSource, ObjectInfo, Store } from './store.js';

/** Where the catalog keeps objects and manifests inside a store. */
export const ARTIFACTS_PREFIX = 'artifacts/';
export const MANIFESTS_PREFIX = 'manifests/';

/** Something the catalog reports that is not an error. */
export type CatalogEvent =
  | { type: 'artifact-stored'; id: string; kind: string; key: string; size: number }
  | { type: 'manifest-written'; id: string; kind: string }
  | { type: 'manifest-invalid'; key: string; reason: string }
  | { type: 'object-missing'; id: string; kind: string; key: string; reason: string }
  | { type: 'artifact-deleted'; id: string; kind: string };

/** Options of {@link createCatalog}. */
export interface CatalogOptions {
  onEvent?: (event: CatalogEvent) => void;
  /** The clock, for tests of retention and orphan grace periods. @default () => new Date() */
  now?: () => Date;
}

/** What {@link Catalog.put} needs besides the bytes. */
export interface ArtifactInput {
  kind: string;
  /** @default "manual" */
  tier?: Tier;
  /** @default "full" */
  type?: 'full' | 'incremental';
  parent?: string;
  source: Manifest['source'];
  tool: Manifest['tool'];
  server?: Manifest['server'];
  compression: Manifest['compression'];
  encryption: Manifest['encryption'];
  plainSize?: number;
  fingerprint?: Record<string, unknown>;
  labels?: Record<string, string>;
  /** The sealed bytes. */
  body: ByteSource;
  /** Stored size, when known in advance (lets S3 choose its part size). */
  size?: number;
  /**
   * Read the object back and hash it before writing the manifest, so a manifest only ever
   * describes bytes that were read from the store. A store whose put already read everything
   * back (the fs store: {@link PutResult.readBack}) is not read a second time. @default true
   */
  readBack?: boolean;
  /**
   * Called after the object is stored and checked, before the manifest is written: throw to
   * refuse the artifact (its object is deleted), or return fields computed from the stream
   * (plain size, fingerprint, key id known only once sealing is done).
   */
  beforeManifest?: (stored: { key: string; size: number; sha256: string }) => Promise<Partial<ArtifactInput> | undefined>;
  createdAt?: Date;
  /**
   * The artifact's id, made beforehand with newArtifactId, for content that must name its own
   * artifact (a file backup's index does). Its time is the artifact's createdAt.
   * @default a new id for createdAt
   */
  id?: string;
  signal?: AbortSignal;
  onProgress?: (bytes: number) => void;
}

/** Filters of {@link Catalog.list}. */
export interface ListFilter {
  kind?: string;
  tier?: Tier;
  /** Only artifacts created at or after this. */
  since?: Date;
  /** Only artifacts created before this. */
  until?: Date;
  /**
   * `latest` only: also consider snapshots (artifacts labelled `snapshot: "true"`, taken of a
   * possibly damaged state before a recovery). @default false: "latest" means the latest backup
   */
  includeSnapshots?: boolean;
}

/** The result of {@link Catalog.verify}. */
export interface StoredCheck {
  id: string;
  ok: boolean;
  /** Bytes read. */
  size: number;
  sha256: string;
  expected: { size: number; sha256: string };
}

/** Objects with no manifest, and manifests with no object. */
export interface OrphanReport {
  /** Objects under artifacts/ that no manifest names (older than the grace period). */
  objects: ObjectInfo[];
  /** Objects too young to judge: a backup may be writing them right now. */
  young: ObjectInfo[];
  /** Manifests whose object is missing or has another size. */
  broken: Manifest[];
  /** Manifest files that do not parse. */
  invalid: { key: string; reason: string }[];
}

/** The result of {@link Catalog.prune}. */
export interface PruneResult {
  plan: RetentionPlan;
  /** Ids deleted (none on a dry run). */
  deleted: string[];
  dryRun: boolean;
}

/** Artifacts in a store: objects plus manifests, written manifest-last. */
export interface Catalog {
  readonly store: Store;
  /** Stores an artifact: the object, a check of it, then its manifest. */
  put(input: ArtifactInput): Promise<Manifest>;
  /** Every valid manifest matching `filter`, oldest first. */
  list(filter?: ListFilter): Promise<Manifest[]>;
  /** One artifact's manifest. @throws StoreError STORE_ARTIFACT_NOT_FOUND */
  get(id: string, kind?: string): Promise<Manifest>;
  /**
   * The newest complete artifact of `kind` whose verification did not fail and whose object
   * is present with its recorded size, snapshots left out (see {@link ListFilter.includeSnapshots});
   * undefined when there is none.
   */
  latest(kind: string, filter?: Omit<ListFilter, 'kind'>): Promise<Manifest | undefined>;
  /** `latest` when `ref` is "latest", else `get`. @throws StoreError STORE_ARTIFACT_NOT_FOUND */
  resolve(ref: string, kind?: string): Promise<Manifest>;
  /** The stored (sealed) bytes of an artifact. */
  open(manifest: Manifest, options?: { signal?: AbortSignal }): Promise<Readable>;
  /** Reads the stored bytes and compares size and SHA-256 with the manifest. */
  verify(manifest: Manifest, options?: { signal?: AbortSignal; onProgress?: (bytes: number) => void }): Promise<StoredCheck>;
  /** Records the outcome of a verification (e.g. a restore test) in the manifest. */
  recordVerification(manifest: Manifest, verification: NonNullable<Manifest['verification']>): Promise<Manifest>;
  /** Deletes an artifact: manifest first (so it stops being a backup at once), then object. */
  delete(manifest: Manifest): Promise<void>;
  /** Objects without manifests and manifests without objects. */
  orphans(options?: { graceMs?: number }): Promise<OrphanReport>;
  /** Deletes the orphan objects of {@link orphans} (never young ones). Returns their keys. */
  cleanOrphans(options?: { graceMs?: number; dryRun?: boolean }): Promise<string[]>;
  /** Applies a retention policy: plans with planRetention, then deletes what it drops. */
  prune(policy: RetentionPolicy, options?: { dryRun?: boolean; kind?: string }): Promise<PruneResult>;
}

/** Objects younger than this are not called orphans: a put may still be writing them. */
export const DEFAULT_ORPHAN_GRACE_MS = 6 * 60 * 60 * 1000;

const manifestKey = (kind: string, id: string) => `${MANIFESTS_PREFIX}${kind}/${id}.json`;
const objectKey = (kind: string, id: string) => `${ARTIFACTS_PREFIX}${kind}/${id}.sealed`;

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/**
 * The catalog of artifacts in `store`. Layout: `artifacts/<kind>/<id>.sealed` for objects and
 * `manifests/<kind>/<id>.json` for manifests. A manifest is written only after its object is
 * complete and checked, so an interrupted backup leaves at most an orphan object, which
 * `list` and `latest` never show.
 */
export function createCatalog(store: Store, options: CatalogOptions = {}): Catalog {
  const emit = options.onEvent ?? (() => {});
  const now = options.now ?? (() => new Date());

  const readManifest = async (key: string): Promise<Manifest | undefined> => {
    try {
      const bytes = await readAll(await store.get(key));
      return parseManifest(JSON.parse(bytes.toString('utf8')), key);
    } catch (error) {
      if (isStoreError(error, 'STORE_NOT_FOUND')) return undefined;
      if (isStoreError(error, 'STORE_MANIFEST_INVALID') || error instanceof SyntaxError) {
        emit({ type: 'manifest-invalid', key, reason: (error as Error).message });
        return undefined;
      }
      throw error;
    }
  };

  const writeManifest = async (manifest: Manifest): Promise<Manifest> => {
    const valid = parseManifest(manifest);
    await store.put(manifestKey(valid.kind, valid.id), Buffer.from(`${JSON.stringify(valid, null, 2)}\n`));
    emit({ type: 'manifest-written', id: valid.id, kind: valid.kind });
    return valid;
  };

  const hashStored = async (key: string, signal?: AbortSignal, onProgress?: (bytes: number) => void) => {
    const hash = createHash('sha256');
    let size = 0;
    // Reading back a large object must not pile up dead chunk buffers (see reclaim.ts).
    const reclaim = reclaimer(true);
    for await (const part of await store.get(key, signal ? { signal } : {})) {
      hash.update(part as Buffer);
      size += (part as Buffer).length;
      reclaim((part as Buffer).length);
      onProgress?.(size);
    }
    return { size, sha256: hash.digest('hex') };
  };

  const put = async (input: ArtifactInput): Promise<Manifest> => {
    const kind = checkKind(input.kind);
    if (input.id !== undefined && !ARTIFACT_ID_PATTERN.test(input.id))
      throw new StoreError('STORE_OPTIONS_INVALID', `"${input.id.slice(0, 60)}" is not an artifact id (make one with newArtifactId)`);
    const createdAt = input.id !== undefined ? artifactIdTime(input.id) : (input.createdAt ?? now());
    const id = input.id ?? newArtifactId(createdAt);
    const key = objectKey(kind, id);
    if (input.id !== undefined && (await store.head(manifestKey(kind, id))))
      throw new StoreError('STORE_OPTIONS_INVALID', `there is already a ${kind} artifact ${id}: make a new id for each artifact`);
    if (input.parent !== undefined) await get(input.parent, kind);
    throwIfAborted(input.signal, `storing a ${kind} backup`);
    const stored = await store.put(key, input.body, {
      ...(input.size === undefined ? {} : { size: input.size }),
      ...(input.signal ? { signal: input.signal } : {}),
      ...(input.onProgress ? { onProgress: input.onProgress } : {}),
    });
    emit({ type: 'artifact-stored', id, kind, key, size: stored.size });
    let extra: Partial<ArtifactInput> | undefined;
    try {
      if ((input.readBack ?? true) && stored.readBack !== true) {
        const back = await hashStored(key, input.signal);
        if (back.size !== stored.size || back.sha256 !== stored.sha256)
          throw new StoreError(
            'STORE_INTEGRITY',
            `${key} reads back as ${back.size} bytes with sha256 ${back.sha256}, not the ${stored.size} bytes with sha256 ${stored.sha256} that were written; the store is corrupting data, check it before trusting any backup in it`,
          );
      } else {
        const info = await store.head(key);
        if (info?.size !== stored.size)
          throw new StoreError('STORE_INTEGRITY', `${key} is ${info?.size ?? 'missing'} bytes after a put of ${stored.size}`);
      }
      extra = (await input.beforeManifest?.({ key, size: stored.size, sha256: stored.sha256 })) ?? undefined;
      const merged = { ...input, ...extra };
      const manifest: Manifest = {
        schema: MANIFEST_SCHEMA,
        id,
        kind,
        tier: merged.tier ?? 'manual',
        type: merged.type ?? (merged.parent === undefined ? 'full' : 'incremental'),
        ...(merged.parent === undefined ? {} : { parent: merged.parent }),
        createdAt: createdAt.toISOString(),
        completedAt: now().toISOString(),
        source: merged.source,
        tool: merged.tool,
        ...(merged.server ? { server: merged.server } : {}),
        object: { key, size: stored.size, sha256: stored.sha256 },
        ...(merged.plainSize === undefined ? {} : { plainSize: merged.plainSize }),
        compression: merged.compression,
        encryption: merged.encryption,
        ...(merged.fingerprint ? { fingerprint: merged.fingerprint } : {}),
        ...(merged.labels ? { labels: merged.labels } : {}),
      };
      throwIfAborted(input.signal, `storing a ${kind} backup`);
      return await writeManifest(manifest);
    } catch (error) {
      // No manifest was written: the object is not a backup. Remove it now rather than leave
      // an orphan (if this fails too, `orphans` finds it later).
      await store.delete(key).catch(() => {});
      throw error;
    }
  };

  const list = async (filter: ListFilter = {}): Promise<Manifest[]> => {
    const prefix = filter.kind === undefined ? MANIFESTS_PREFIX : `${MANIFESTS_PREFIX}${checkKind(filter.kind)}/`;
    const manifests: Manifest[] = [];
    for await (const info of store.list(prefix)) {
      if (!info.key.endsWith('.json')) continue;
      const manifest = await readManifest(info.key);
      if (!manifest) continue;
      if (manifestKey(manifest.kind, manifest.id) !== info.key) {
        emit({ type: 'manifest-invalid', key: info.key, reason: `it describes ${manifest.kind} ${manifest.id}, which belongs elsewhere` });
        continue;
      }
      if (filter.tier !== undefined && manifest.tier !== filter.tier) continue;
      const created = Date.parse(manifest.createdAt);
      if (filter.since && created < filter.since.getTime()) continue;
      if (filter.until && created >= filter.until.getTime()) continue;
      manifests.push(manifest);
    }
    return manifests.sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : a.createdAt < b.createdAt ? -1 : 1));
  };

  const notFound = (id: string, kind?: string) =>
    new StoreError(
      'STORE_ARTIFACT_NOT_FOUND',
      `no ${kind ?? ''}${kind ? ' ' : ''}backup with id ${id} in ${store.url}; run \`drkit backup list${kind ? ` --kind ${kind}` : ''}\` to see what there is`,
    );

  const get = async (id: string, kind?: string): Promise<Manifest> => {
    if (kind !== undefined) {
      const manifest = await readManifest(manifestKey(checkKind(kind), id));
      if (!manifest) throw notFound(id, kind);
      return manifest;
    }
    for await (const info of store.list(MANIFESTS_PREFIX)) {
      if (info.key.endsWith(`/${id}.json`)) {
        const manifest = await readManifest(info.key);
        if (manifest) return manifest;
      }
    }
    throw notFound(id);
  };

  const latest = async (kind: string, filter: Omit<ListFilter, 'kind'> = {}): Promise<Manifest | undefined> => {
    const all = await list({ ...filter, kind });
    for (const manifest of all.reverse()) {
      if (manifest.verification?.status === 'failed') continue;
      if (manifest.labels?.snapshot === 'true' && !filter.includeSnapshots) continue;
      const info = await store.head(manifest.object.key);
      if (info?.size !== manifest.object.size) {
        emit({
          type: 'object-missing',
          id: manifest.id,
          kind,
          key: manifest.object.key,
          reason: info ? `it has ${info.size} bytes, the manifest says ${manifest.object.size}` : 'it is gone',
        });
        continue;
      }
      return manifest;
    }
    return undefined;
  };

  const resolve = async (ref: string, kind?: string): Promise<Manifest> => {
    if (ref !== 'latest') return get(ref, kind);
    if (kind === undefined)
      throw new StoreError('STORE_OPTIONS_INVALID', '"latest" needs a kind (e.g. --kind postgres): the latest of what?');
    const found = await latest(kind);
    if (!found)
      throw new StoreError(
        'STORE_ARTIFACT_NOT_FOUND',
        `no complete ${kind} backup in ${store.url} (none, or every one failed verification or lost its object); take a backup first`,
      );
    return found;
  };

  const verify = async (
    manifest: Manifest,
    verifyOptions: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
  ): Promise<StoredCheck> => {
    let got: { size: number; sha256: string };
    try {
      got = await hashStored(manifest.object.key, verifyOptions.signal, verifyOptions.onProgress);
    } catch (error) {
      if (isStoreError(error, 'STORE_NOT_FOUND'))
        throw new StoreError(
          'STORE_ARTIFACT_INCOMPLETE',
          `backup ${manifest.id} has a manifest but its object ${manifest.object.key} is gone; it cannot be restored, use another backup`,
          { cause: error },
        );
      throw error;
    }
    return {
      id: manifest.id,
      ok: got.size === manifest.object.size && got.sha256 === manifest.object.sha256,
      ...got,
      expected: { size: manifest.object.size, sha256: manifest.object.sha256 },
    };
  };

  const remove = async (manifest: Manifest): Promise<void> => {
    await store.delete(manifestKey(manifest.kind, manifest.id));
    await store.delete(manifest.object.key);
    emit({ type: 'artifact-deleted', id: manifest.id, kind: manifest.kind });
  };

  const orphans = async (orphanOptions: { graceMs?: number } = {}): Promise<OrphanReport> => {
    const grace = orphanOptions.graceMs ?? DEFAULT_ORPHAN_GRACE_MS;
    const invalid: OrphanReport['invalid'] = [];
    const manifests: Manifest[] = [];
    for await (const info of store.list(MANIFESTS_PREFIX)) {
      try {
        const bytes = await readAll(await store.get(info.key));
        manifests.push(parseManifest(JSON.parse(bytes.toString('utf8')), info.key));
      } catch (error) {
        if (isStoreError(error, 'STORE_NOT_FOUND')) continue;
        if (!(error instanceof SyntaxError) && !isStoreError(error, 'STORE_MANIFEST_INVALID')) throw error;
        invalid.push({ key: info.key, reason: (error as Error).message });
      }
    }
    const named = new Map(manifests.map((m) => [m.object.key, m]));
    const objects: ObjectInfo[] = [];
    const young: ObjectInfo[] = [];
    const sizes = new Map<string, number>();
    const cutoff = now().getTime() - grace;
    for await (const info of store.list(ARTIFACTS_PREFIX)) {
      sizes.set(info.key, info.size);
      if (named.has(info.key)) continue;
      (info.modifiedAt.getTime() > cutoff ? young : objects).push(info);
    }
    const broken = manifests.filter((m) => sizes.get(m.object.key) !== m.object.size);
    return { objects, young, broken, invalid };
  };

  const cleanOrphans = async (cleanOptions: { graceMs?: number; dryRun?: boolean } = {}): Promise<string[]> => {
    const report = await orphans(cleanOptions.graceMs === undefined ? {} : { graceMs: cleanOptions.graceMs });
    const keys = report.objects.map((o) => o.key);
    if (!cleanOptions.dryRun) for (const key of keys) await store.delete(key);
    return keys;
  };

  const prune = async (policy: RetentionPolicy, pruneOptions: { dryRun?: boolean; kind?: string } = {}): Promise<PruneResult> => {
    const manifests = await list(pruneOptions.kind === undefined ? {} : { kind: pruneOptions.kind });
    const items = manifests.map((m) => ({
      id: m.id,
      kind: m.kind,
      createdAt: m.createdAt,
      type: m.type,
      ...(m.parent === undefined ? {} : { parent: m.parent }),
      ...(m.verification ? { verification: { status: m.verification.status } } : {}),
    }));
    const plan = planRetention(items, policy, now());
    const dryRun = pruneOptions.dryRun ?? false;
    const deleted: string[] = [];
    if (!dryRun) {
      const byId = new Map(manifests.map((m) => [m.id, m]));
      for (const decision of plan.drop) {
        const manifest = byId.get(decision.id);
        if (!manifest) continue;
        await remove(manifest);
        deleted.push(manifest.id);
      }
    }
    return { plan, deleted, dryRun };
  };

  return {
    store,
    put,
    list,
    get,
    latest,
    resolve,
    open: (manifest, openOptions = {}) => store.get(manifest.object.key, openOptions.signal ? { signal: openOptions.signal } : {}),
    verify,
    recordVerification: (manifest, verification) => writeManifest({ ...manifest, verification }),
    delete: remove,
    orphans,
    cleanOrphans,
    prune,
  };
}
