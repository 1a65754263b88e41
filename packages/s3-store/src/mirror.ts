import { createHash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { abortedError, isStoreError, StoreError, throwIfAborted } from './errors.js';
import {
  type ByteSource,
  checkPutResult,
  chunksOf,
  type GetOptions,
  type ListOptions,
  normalizeKey,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  type Store,
  type StoreEventListener,
  sourceError,
} from './store.js';

/** Options of {@link createMirroredStore}. */
export interface MirroredStoreOptions {
  /** Written first and read first, e.g. the us-east-1 bucket. Locks live here. */
  primary: Store;
  /** Further copies, e.g. the us-west-2 bucket, in the order reads fall back to them. */
  replicas: Store[];
  /**
   * Copies that must be stored and verified for a put to succeed, the primary's included.
   * @default every store (primary + replicas)
   */
  requiredCopies?: number;
  /** Told about every fall-back and every failed replica. */
  onEvent?: StoreEventListener;
  /**
   * After a copy answers STORE_UNAVAILABLE (its region is down, after its own retries), reads
   * go to the other copies first for this long, so a restore of many objects does not wait
   * out the retries of a dead region on every read. The copy is still tried last. @default 60000
   */
  unavailableForMs?: number;
  /** The clock of that wait. @default Date.now */
  now?: () => number;
}

/** What {@link createMirroredStore} returns: a Store plus a repair of missing copies. */
export interface MirroredStore extends Store {
  readonly stores: readonly Store[];
  /**
   * Copies objects under `prefix` that the primary has and a replica lacks (or holds with
   * another size) to that replica: run after a region comes back. Returns the keys copied.
   */
  repair(prefix: string, options?: { signal?: AbortSignal }): Promise<{ copied: string[] }>;
}

const describe = (error: unknown) =>
  isStoreError(error) ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);

/** Errors that mean "this copy does not have it", as opposed to "this copy is broken". */
const missing = (error: unknown) => isStoreError(error, 'STORE_NOT_FOUND');

/**
 * One store over several copies (two regions, or a local disk and a bucket). A put streams
 * the bytes to every copy at once (the slowest sets the pace; memory stays one chunk per copy)
 * and succeeds when `requiredCopies` copies are stored and verified (size and SHA-256 equal to
 * what was sent); below that, the copies made are deleted and the put fails with
 * STORE_MIRROR_DEGRADED. Reads go to the primary and fall back to the replicas in order,
 * reporting every fall-back as a `replica-fallback` event. Deletes go to every copy.
 */
export function createMirroredStore(options: MirroredStoreOptions): MirroredStore {
  const stores = [options.primary, ...options.replicas];
  const required = options.requiredCopies ?? stores.length;
  if (!Number.isInteger(required) || required < 1 || required > stores.length)
    throw new StoreError(
      'STORE_OPTIONS_INVALID',
      `requiredCopies must be an integer from 1 to ${stores.length} (the number of stores), not ${required}`,
    );
  const emit = options.onEvent ?? (() => {});
  const url = `mirror:${stores.map((s) => s.url).join(',')}`;

  const put = async (key: string, body: ByteSource, putOptions: PutOptions = {}): Promise<PutResult> => {
    const normal = normalizeKey(key);
    const { signal } = putOptions;
    throwIfAborted(signal, `put ${normal}`);
    const inner = new AbortController();
    const onAbort = () => inner.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    // One pipe per copy; a copy that fails is cut loose and the others carry on.
    const pipes = stores.map(() => new PassThrough({ highWaterMark: 1024 * 1024 }));
    const failed = new Set<number>();
    const results = stores.map((store, i) =>
      store
        .put(normal, pipes[i] as PassThrough, {
          signal: inner.signal,
          ...(putOptions.size === undefined ? {} : { size: putOptions.size }),
        })
        .then(
          (result) => ({ ok: true as const, result }),
          (error: unknown) => {
            failed.add(i);
            // Unblock the feeder: nobody reads this pipe any more.
            pipes[i]?.resume();
            return { ok: false as const, error };
          },
        ),
    );
    const hash = createHash('sha256');
    let size = 0;
    let feedError: unknown;
    try {
      for await (const chunk of chunksOf(body)) {
        if (signal?.aborted) throw abortedError(signal, `put ${normal}`);
        hash.update(chunk);
        size += chunk.length;
        const waits: Promise<void>[] = [];
        for (const [i, pipe] of pipes.entries()) {
          if (failed.has(i)) continue;
          if (!pipe.write(chunk))
            waits.push(
              new Promise((resolve) => {
                const done = () => {
                  pipe.off('drain', done);
                  pipe.off('close', done);
                  resolve();
                };
                pipe.on('drain', done);
                pipe.on('close', done);
                // A copy that fails while we wait must not stall the others.
                void results[i]?.then(done);
              }),
            );
        }
        await Promise.all(waits);
        putOptions.onProgress?.(size);
      }
      throwIfAborted(signal, `put ${normal}`);
    } catch (error) {
      feedError = isStoreError(error) ? error : sourceError(normal, error);
      inner.abort(feedError);
      for (const pipe of pipes) pipe.destroy(feedError as Error);
    }
    if (feedError === undefined) for (const pipe of pipes) pipe.end();
    const settled = await Promise.all(results);
    signal?.removeEventListener('abort', onAbort);
    const sha256 = hash.digest('hex');

    const verified: { store: Store; result: PutResult }[] = [];
    const problems: string[] = [];
    await Promise.all(
      settled.map(async (outcome, i) => {
        const store = stores[i] as Store;
        if (!outcome.ok) {
          problems.push(`${store.url}: ${describe(outcome.error)}`);
          return;
        }
        // Verified means: the copy reports the bytes we sent, and it is there to read.
        const info = await store.head(normal).catch(() => undefined);
        if (outcome.result.sha256 !== sha256 || outcome.result.size !== size || info?.size !== size) {
          problems.push(`${store.url}: stored copy does not match what was sent (size ${info?.size ?? 'missing'} of ${size})`);
          await store.delete(normal).catch(() => {});
          return;
        }
        verified.push({ store, result: outcome.result });
      }),
    );
    for (const [i, outcome] of settled.entries())
      if (!outcome.ok && feedError === undefined)
        emit({
          type: 'replica-failed',
          store: url,
          operation: 'put',
          key: normal,
          replica: (stores[i] as Store).url,
          reason: describe(outcome.error),
        });

    const undo = () => Promise.all(verified.map(({ store }) => store.delete(normal).catch(() => {})));
    if (feedError !== undefined) {
      await undo();
      throw feedError;
    }
    try {
      checkPutResult(normal, size, sha256, putOptions);
    } catch (error) {
      await undo();
      throw error;
    }
    if (verified.length < required) {
      await undo();
      throw new StoreError(
        'STORE_MIRROR_DEGRADED',
        `put ${normal}: only ${verified.length} of the ${required} required copies were stored, so none were kept (${problems.join('; ')}); ` +
          'bring the failed location back or lower requiredCopies, then run the backup again',
      );
    }
    // Read back only if every kept copy was: a catalog reads the mirror back otherwise.
    return { key: normal, size, sha256, ...(verified.every(({ result }) => result.readBack === true) ? { readBack: true } : {}) };
  };

  const unavailableForMs = options.unavailableForMs ?? 60_000;
  const now = options.now ?? Date.now;
  /** When each copy last answered STORE_UNAVAILABLE. */
  const downSince = new Map<Store, number>();
  const isDown = (store: Store) => {
    const since = downSince.get(store);
    return since !== undefined && now() - since < unavailableForMs;
  };

  /**
   * Runs `read` on the primary, then on each replica in turn, reporting each fall-back. Copies
   * that were unavailable a moment ago go last, in their order.
   */
  const firstAnswer = async <T>(operation: string, key: string, read: (store: Store) => Promise<T>): Promise<T> => {
    const errors: unknown[] = [];
    const skipped = stores.filter(isDown);
    const ordered = [...stores.filter((s) => !isDown(s)), ...skipped];
    const failed: Store[] = [];
    const reasons = skipped.map(
      (s) => `${s.url}: STORE_UNAVAILABLE within the last ${Math.round(unavailableForMs / 1000)} s, so tried last`,
    );
    for (const store of ordered) {
      try {
        const value = await read(store);
        downSince.delete(store);
        if (store !== stores[0])
          emit({
            type: 'replica-fallback',
            store: url,
            operation,
            key,
            failed: stores
              .filter((s) => failed.includes(s) || (skipped.includes(s) && s !== store))
              .map((s) => s.url)
              .join(','),
            servedBy: store.url,
            reason: reasons.join('; '),
          });
        return value;
      } catch (error) {
        errors.push(error);
        failed.push(store);
        if (isStoreError(error, 'STORE_UNAVAILABLE')) downSince.set(store, now());
        reasons.push(`${store.url}: ${describe(error)}`);
      }
    }
    // Every copy lacks it: that is "not found". A copy that could not answer makes it an outage.
    throw errors.find((e) => !missing(e)) ?? errors[0];
  };

  const get = async (key: string, getOptions?: GetOptions): Promise<Readable> => {
    const normal = normalizeKey(key);
    return firstAnswer('get', normal, (store) => store.get(normal, getOptions));
  };

  const head = async (key: string): Promise<ObjectInfo | undefined> => {
    const normal = normalizeKey(key);
    return firstAnswer('head', normal, async (store) => {
      const info = await store.head(normal);
      if (!info) throw new StoreError('STORE_NOT_FOUND', `no object ${normal} in ${store.url}`);
      return info;
    }).catch((error: unknown) => {
      if (missing(error)) return undefined;
      throw error;
    });
  };

  async function* list(prefix: string, listOptions?: ListOptions): AsyncGenerator<ObjectInfo> {
    // A listing is gathered whole before it is yielded, so a copy failing half-way falls back
    // cleanly instead of yielding a mix.
    const all = await firstAnswer('list', prefix, async (store) => {
      const infos: ObjectInfo[] = [];
      for await (const info of store.list(prefix, listOptions)) infos.push(info);
      return infos;
    });
    yield* all;
  }

  const remove = async (key: string): Promise<void> => {
    const normal = normalizeKey(key);
    const outcomes = await Promise.allSettled(stores.map((store) => store.delete(normal)));
    const failures = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`${(stores[i] as Store).url}: ${describe(o.reason)}`] : []));
    if (failures.length > 0)
      throw new StoreError(
        'STORE_MIRROR_DEGRADED',
        `delete ${normal} did not reach every copy (${failures.join('; ')}); run it again when they are back (deleting is idempotent)`,
      );
  };

  const repair = async (prefix: string, repairOptions: { signal?: AbortSignal } = {}): Promise<{ copied: string[] }> => {
    const copied: string[] = [];
    const want = new Map<string, number>();
    for await (const info of options.primary.list(prefix, repairOptions)) want.set(info.key, info.size);
    for (const replica of options.replicas) {
      const have = new Map<string, number>();
      for await (const info of replica.list(prefix, repairOptions)) have.set(info.key, info.size);
      for (const [key, size] of want) {
        throwIfAborted(repairOptions.signal, 'repair');
        if (have.get(key) === size) continue;
        await replica.put(key, await options.primary.get(key), { size, ...(repairOptions.signal ? { signal: repairOptions.signal } : {}) });
        copied.push(`${replica.url} ${key}`);
      }
    }
    return { copied };
  };

  return {
    url,
    stores,
    put,
    get,
    head,
    list,
    delete: remove,
    repair,
    // Locks live on the primary only: two runs must agree on one place, and taking a lock on
    // a replica while the primary is down could let two runs in.
    lock: (name, lockOptions) => options.primary.lock(name, lockOptions),
    lockInfo: (name) => options.primary.lockInfo(name),
    close: async () => {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
}
