import { createHash } from 'node:crypto';
import type { Catalog } from './catalog.js';
import { StoreError } from './errors.js';
import type { Manifest } from './manifest.js';

/** What {@link readStored} saw of an artifact's stored bytes, complete once the iteration ended. */
export interface StoredBytes {
  size: number;
  sha256: string;
}

/**
 * The stored bytes of an artifact, hashed on the way: a size or SHA-256 that differs from the
 * manifest fails the iteration at its end (STORE_INTEGRITY), before a consumer that buffers
 * nothing can commit to what it read. Callers that decrypt chain crypto-stream's `open` on it.
 * @throws StoreError STORE_INTEGRITY, STORE_ARTIFACT_NOT_FOUND, and the store's read errors
 */
export async function* readStored(
  catalog: Catalog,
  manifest: Manifest,
  options: { signal?: AbortSignal; onBytes?: (n: number) => void; stored?: StoredBytes } = {},
): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let size = 0;
  const stream = await catalog.open(manifest, options.signal ? { signal: options.signal } : {});
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
    options.onBytes?.(chunk.length);
    yield chunk;
  }
  const sha256 = hash.digest('hex');
  if (options.stored) Object.assign(options.stored, { size, sha256 });
  if (size !== manifest.object.size || sha256 !== manifest.object.sha256)
    throw new StoreError(
      'STORE_INTEGRITY',
      `artifact ${manifest.id}: the stored object is ${size} bytes with SHA-256 ${sha256.slice(0, 16)}..., the manifest says ${manifest.object.size} bytes with ${manifest.object.sha256.slice(0, 16)}...: it was altered. Use another backup`,
    );
}
