import type { Readable } from 'node:stream';
import { StoreError } from './errors.js';

/** Bytes to store: a Node stream, any async iterable of byte chunks, or one buffer. */
export type ByteSource = Readable | AsyncIterable<Uint8Array> | Uint8Array;

/** What a store knows of one object. */
export interface ObjectInfo {
  /** The object's key, normalised (see {@link normalizeKey}). */
  key: string;
  /** Stored bytes. */
  size: number;
  modifiedAt: Date;
  /** The backend's entity tag, when it has one (S3). */
  etag?: string;
  /** Storage class (S3), e.g. STANDARD or GLACIER. */
  storageClass?: string;
}

/** Options of {@link Store.put}. */
export interface PutOptions {
  /**
   * Expected size in bytes, when known. S3 uses it to choose a part size that fits 10,000
   * parts; a put that delivers a different size fails with STORE_INTEGRITY.
   */
  size?: number;
  /** Expected SHA-256 (hex) of the bytes; a mismatch fails the put and leaves no object. */
  sha256?: string;
  signal?: AbortSignal;
  /** Called as bytes are accepted, with the running total. */
  onProgress?: (bytes: number) => void;
}

/** What a completed put stored. */
export interface PutResult {
  key: string;
  size: number;
  /** SHA-256 (hex) of the bytes stored, computed while they streamed in. */
  sha256: string;
  etag?: string;
  /**
   * True when the store read every byte back from where it stored it and found the bytes that
   * were sent (the fs store does, as it writes): a catalog then skips its own read-back.
   */
  readBack?: boolean;
}

/** A byte range of an object; `end` is inclusive, as in HTTP. */
export interface ByteRange {
  start: number;
  end?: number;
}

/** Options of {@link Store.get}. */
export interface GetOptions {
  range?: ByteRange;
  signal?: AbortSignal;
}

/** Options of {@link Store.list}. */
export interface ListOptions {
  signal?: AbortSignal;
}

/** Something a store reports that is not an error: retries, fall-backs, degraded mirrors. */
export type StoreEvent =
  | { type: 'retry'; store: string; operation: string; attempt: number; delayMs: number; reason: string }
  | { type: 'replica-fallback'; store: string; operation: string; key: string; failed: string; servedBy: string; reason: string }
  | { type: 'replica-failed'; store: string; operation: string; key: string; replica: string; reason: string }
  | { type: 'multipart-aborted'; store: string; key: string; uploadId: string; reason: string };

/** Receives {@link StoreEvent}s; stores never write to the console. */
export type StoreEventListener = (event: StoreEvent) => void;

/** Options of {@link Store.lock}. */
export interface LockOptions {
  /** Who holds it, for the refusal message of a second run. @default "user@host pid N" */
  owner?: string;
  /** A holder that stops renewing is stale after this long. At most 60000. @default 30000 */
  ttlMs?: number;
  /** Renewal period. @default ttlMs / 3 */
  renewEveryMs?: number;
  /** How long to keep trying while another live holder has it. @default 0 (refuse at once) */
  waitMs?: number;
  signal?: AbortSignal;
}

/** What a lock records about its holder. */
export interface LockInfo {
  name: string;
  owner: string;
  /** Random id of one acquisition. */
  token: string;
  host: string;
  pid: number;
  acquiredAt: Date;
  /** When the holder last renewed plus the TTL: past it, the lock is stale. */
  expiresAt: Date;
}

/**
 * A held lock. It renews itself every `renewEveryMs` until released; if a renewal fails or
 * comes too late, `signal` aborts (with a STORE_LOCK_LOST reason) and the holder must stop.
 */
export interface Lease {
  readonly info: LockInfo;
  /** Aborted when the lease is lost. */
  readonly signal: AbortSignal;
  /** Renews now (the timer also does). @throws StoreError STORE_LOCK_LOST */
  renew(): Promise<void>;
  /** Stops renewing and removes the lock (only if it is still this lease's). Idempotent. */
  release(): Promise<void>;
}

/**
 * Where backups live. Every driver (fs, S3, mirrored) implements the same contract, checked
 * by one test suite:
 * - `put` is atomic: until it resolves, the key holds its previous object (or nothing);
 *   a failed or aborted put leaves nothing behind under the key.
 * - `get` and `head` of a missing key fail with / return STORE_NOT_FOUND / undefined.
 * - `list` yields every object under a prefix in key order.
 * - `delete` of a missing key succeeds.
 */
export interface Store {
  /** Where this store points, without credentials (for logs and manifests). */
  readonly url: string;
  /** Stores `body` under `key` atomically, and returns its size and SHA-256. */
  put(key: string, body: ByteSource, options?: PutOptions): Promise<PutResult>;
  /** Streams the object (or a range of it). @throws StoreError STORE_NOT_FOUND */
  get(key: string, options?: GetOptions): Promise<Readable>;
  /** The object's info, or undefined when there is none. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo>;
  /** Deletes the object; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Takes the named lease lock (a runbook refusing a second concurrent run).
   * @throws StoreError STORE_LOCKED naming the holder, while a live holder has it
   */
  lock(name: string, options?: LockOptions): Promise<Lease>;
  /** The named lock's current holder, stale or not; undefined when free. */
  lockInfo(name: string): Promise<LockInfo | undefined>;
  /** Releases connections and timers. The store cannot be used afterwards. */
  close(): Promise<void>;
}

/**
 * Names that start with this are the store's own (temp files, locks): keys may not use it,
 * and listings never show it.
 */
export const RESERVED_PREFIX = '.drkit-';

/** Longest key, in UTF-8 bytes (S3's limit). */
export const MAX_KEY_BYTES = 1024;

/**
 * Checks and normalises an object key: `/`-separated segments, no leading or repeated `/`,
 * no `.` or `..` segment, no backslash or control character, at most 1024 UTF-8 bytes.
 * The same key means the same object on every driver, and no key escapes a store's root.
 * @throws StoreError STORE_KEY_INVALID
 */
export function normalizeKey(key: string): string {
  const invalid = (why: string) => new StoreError('STORE_KEY_INVALID', `invalid object key ${JSON.stringify(key.slice(0, 200))}: ${why}`);
  if (typeof key !== 'string' || key.length === 0) throw invalid('it is empty');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f\\]/.test(key)) throw invalid('it contains a control character or a backslash');
  const segments = key.replace(/^\/+/, '').split('/');
  const last = segments.length - 1;
  for (const [i, segment] of segments.entries()) {
    if (segment === '.' || segment === '..') throw invalid('"." and ".." segments are not allowed (they could escape the store)');
    if (segment === '' && i !== last) throw invalid('it contains an empty segment ("//")');
    if (segment.startsWith(RESERVED_PREFIX)) throw invalid(`names starting with "${RESERVED_PREFIX}" are reserved for the store itself`);
  }
  if (segments[last] === '') throw invalid('it ends with "/" (that names a prefix, not an object)');
  const normal = segments.join('/');
  if (Buffer.byteLength(normal) > MAX_KEY_BYTES) throw invalid(`it is longer than ${MAX_KEY_BYTES} bytes`);
  return normal;
}

/**
 * Checks a list prefix: like a key, but it may be empty or end with `/`.
 * @throws StoreError STORE_KEY_INVALID
 */
export function normalizePrefix(prefix: string): string {
  if (prefix === '' || prefix === '/') return '';
  const trailing = prefix.endsWith('/');
  const normal = normalizeKey(trailing ? prefix.replace(/\/+$/, '') : prefix);
  return trailing ? `${normal}/` : normal;
}

/** The byte chunks of a {@link ByteSource}, as Buffers. */
export async function* chunksOf(body: ByteSource): AsyncGenerator<Buffer> {
  if (body instanceof Uint8Array) {
    yield Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    return;
  }
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
    if (typeof chunk === 'string') throw new TypeError('a store body must yield bytes, not strings');
    yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
}

/** The error of a put whose body failed (a dump that died): nothing was stored. */
export function sourceError(key: string, error: unknown): StoreError {
  const message = error instanceof Error ? error.message : String(error);
  return new StoreError('STORE_IO', `put ${key}: reading the data to store failed (${message}); nothing was stored`, { cause: error });
}

/**
 * Compares what a put received with what its caller announced.
 * @throws StoreError STORE_INTEGRITY
 */
export function checkPutResult(key: string, size: number, sha256: string, options: PutOptions): void {
  if (options.size !== undefined && options.size !== size)
    throw new StoreError(
      'STORE_INTEGRITY',
      `put ${key}: ${size} bytes arrived but ${options.size} were announced; nothing was stored, run the backup again`,
    );
  if (options.sha256 !== undefined && options.sha256.toLowerCase() !== sha256)
    throw new StoreError(
      'STORE_INTEGRITY',
      `put ${key}: the bytes hash to sha256 ${sha256}, not the expected ${options.sha256}; nothing was stored, run the backup again`,
    );
}
