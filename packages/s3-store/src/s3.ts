// The S3 driver of the Store contract. A put streams the body into part buffers (one PutObject
// when it fits in one part, a multipart upload above that) while the bytes are counted and
// hashed on the way in; nothing is visible under the key until S3 completes the upload, and any
// failure or abort leaves no object and aborts the multipart upload. See createS3Store.
//
// Multipart uploads are driven here rather than by @aws-sdk/lib-storage's Upload: Upload
// allocates every byte twice (the chunks, then each part concatenated from them), which cost
// ~200 MB of RSS and a fifth of the CPU in GC for a 1 GiB put; its abort rejects before the
// requests in flight have settled; and after a failed part it keeps reading the body and
// uploading the remaining parts before it reports the failure.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  CompletedPart,
  GetObjectCommandOutput,
  HeadObjectCommandOutput,
  ListObjectsV2CommandOutput,
  S3Client,
  S3ClientConfig,
  StorageClass,
} from '@aws-sdk/client-s3';
import { abortedError, StoreError, throwIfAborted } from './errors.js';
import { reclaimer } from './reclaim.js';
import { describeS3Error, errorCodeOf, httpStatusOf, isAbortError, isTransientError, redact, toStoreError } from './s3-errors.js';
import { acquireS3Lock, readS3Lock } from './s3-lock.js';
import { s3sdk } from './sdk.js';
import {
  type ByteSource,
  checkPutResult,
  chunksOf,
  type GetOptions,
  type Lease,
  type ListOptions,
  type LockInfo,
  type LockOptions,
  MAX_KEY_BYTES,
  normalizeKey,
  normalizePrefix,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  RESERVED_PREFIX,
  type Store,
  type StoreEvent,
  type StoreEventListener,
  sourceError,
} from './store.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** S3's limit on the parts of one multipart upload. */
export const MAX_PARTS = 10_000;
/** S3's smallest part (every part but the last). */
export const S3_MIN_PART_SIZE = 5 * MiB;
/** S3's largest part. */
export const S3_MAX_PART_SIZE = 5 * GiB;
/**
 * The smallest part drkit uses (S3 allows 5 MiB): 8 MiB makes a third fewer requests than 5
 * and keeps a put's part buffers at (3 + 1) x 8 = 32 MiB; objects up to 78.1 GiB use it.
 */
export const MIN_PART_SIZE = 8 * MiB;
/**
 * The part size of a put whose size is not announced (a database dump piped in). It caps such
 * a put at 16 MiB x 10,000 = 156.25 GiB (167.7 GB); larger backups must announce their size
 * (`PutOptions.size`) or set `partSize`. A part size allowing S3's 5 TiB maximum (525 MiB)
 * would buffer over 2 GiB with the default 4 parallel parts, for every put; 16 MiB keeps the
 * part buffers of one put at about (3 + 1) x 16 = 64 MiB.
 */
export const UNKNOWN_SIZE_PART_SIZE = 16 * MiB;
/**
 * What the parts in flight of one put may take when the caller did not choose `queueSize`:
 * fewer parts go in parallel when parts are large (huge announced sizes), so a 1 TiB put
 * does not buffer 4 x 105 MiB.
 */
const AUTO_QUEUE_BUDGET = 64 * MiB;
const DEFAULT_QUEUE_SIZE = 3;
const DEFAULT_MAX_ATTEMPTS = 5;
const DEFAULT_RETRY_BASE_DELAY_MS = 100;
/** Throttling (SlowDown, 503) backs off this many times longer than other failures. */
const THROTTLING_DELAY_FACTOR = 5;
const MAX_RETRY_DELAY_MS = 20_000;
/** A refused connect (a dead host) fails after this; it is retried like any network error. */
const CONNECT_TIMEOUT_MS = 10_000;
/** A socket that moves no byte for this long is broken: the request fails and is retried. */
const SOCKET_IDLE_TIMEOUT_MS = 120_000;
/** Cleanup requests after a failed put get this long, retries included. */
const CLEANUP_TIMEOUT_MS = 30_000;
const LOCKS_PREFIX = `${RESERVED_PREFIX}locks/`;

/** Options of {@link createS3Store}. */
export interface S3StoreOptions {
  bucket: string;
  /** Every key lives under this prefix (a trailing `/` is added). @default "" */
  prefix?: string;
  /** @default AWS_REGION, else AWS_DEFAULT_REGION, else "us-east-1" */
  region?: string;
  /**
   * An S3-compatible server (MinIO, s3rver, ...), `http(s)://host[:port]`.
   * @default AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS S3 of the region
   */
  endpoint?: string;
  /** Buckets as path segments instead of host names. @default true with an endpoint, else false */
  forcePathStyle?: boolean;
  /**
   * Static credentials or a provider. @default the SDK's standard chain: AWS_ACCESS_KEY_ID and
   * AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared files, SSO, web identity, instance roles.
   * Never logged or put in an error message.
   */
  credentials?: S3ClientConfig['credentials'];
  /** Server-side encryption of stored objects. */
  sse?: 'AES256' | 'aws:kms';
  /** The KMS key of `sse: 'aws:kms'` (implies it). @default the bucket's or AWS's managed key */
  kmsKeyId?: string;
  /** Storage class of stored objects, e.g. STANDARD_IA or GLACIER. @default the bucket's (STANDARD) */
  storageClass?: StorageClass;
  /**
   * Bytes per part of a multipart upload, 5 MiB to 5 GiB.
   * @default {@link partSizeFor}(the put's announced size)
   */
  partSize?: number;
  /**
   * Parts uploaded in parallel. A put holds (queueSize + 1) x partSize bytes of part buffers.
   * @default 3 (fewer when the automatic part size exceeds 21 MiB: at most 64 MiB in flight). Measured
   * on a 1 GiB put to s3rver: 3 keeps the worker's peak RSS at 141 MB where 4 reached 150 MB,
   * with no loss of throughput.
   */
  queueSize?: number;
  /** Attempts per request (1 = no retry). Ignored with an injected `client`. @default 5 */
  maxAttempts?: number;
  /**
   * Base of the exponential backoff with full jitter: retry n waits a random time up to
   * base x 2^(n-1) (x5 when throttled), at most 20 s. Ignored with an injected `client`.
   * @default 100
   */
  retryBaseDelayMs?: number;
  /**
   * Run a young-generation collection every 4 MiB of a put's body, so that the body's dead
   * chunk buffers do not pile up (a 1 GiB put peaks ~50 MB lower; see `reclaimer`). @default true
   */
  reclaimMemory?: boolean;
  /** Receives `retry` and `multipart-aborted` events. */
  onEvent?: StoreEventListener;
  /**
   * A client to use instead of one made from the options above; `close()` leaves it open, and
   * its own retry settings apply.
   */
  client?: S3Client;
}

/** What the S3 lease lock (and other S3-level code) needs of a store. */
export interface S3StoreInternals {
  client: S3Client;
  bucket: string;
  /** The key prefix of every object of the store: "" or ends with "/". */
  prefix: string;
  url: string;
  /** Sends an event to the store's listener (listener failures are ignored). */
  emit: (event: StoreEvent) => void;
  /** Maps an SDK error of an operation (`what`, e.g. "lock backups") to a StoreError. */
  toStoreError: (error: unknown, what: string) => StoreError;
}

const internals = new WeakMap<Store, S3StoreInternals>();

/** The client, bucket and prefix behind a store made by {@link createS3Store}, else undefined. */
export function s3StoreInternals(store: Store): S3StoreInternals | undefined {
  return internals.get(store);
}

function invalidOption(message: string): StoreError {
  return new StoreError('STORE_OPTIONS_INVALID', `invalid S3 store options: ${message}`);
}

/**
 * The part size of a put of `expectedSize` bytes: at least {@link MIN_PART_SIZE} (8 MiB), and
 * large enough (in whole MiB) that the object fits in S3's 10,000 parts; 5 TiB gets 525 MiB.
 * Without a size, {@link UNKNOWN_SIZE_PART_SIZE} (16 MiB), which caps the put at 156.25 GiB.
 * @throws StoreError STORE_TOO_LARGE beyond 10,000 parts of 5 GiB; STORE_OPTIONS_INVALID for a
 *   size that is not a whole number of bytes
 */
export function partSizeFor(expectedSize?: number): number {
  if (expectedSize === undefined) return UNKNOWN_SIZE_PART_SIZE;
  if (!Number.isSafeInteger(expectedSize) || expectedSize < 0)
    throw new StoreError('STORE_OPTIONS_INVALID', `a size must be a whole number of bytes, not ${expectedSize}`);
  const needed = Math.ceil(Math.ceil(expectedSize / MAX_PARTS) / MiB) * MiB;
  const size = Math.max(MIN_PART_SIZE, needed);
  if (size > S3_MAX_PART_SIZE)
    throw new StoreError(
      'STORE_TOO_LARGE',
      `${expectedSize} bytes do not fit in S3's ${MAX_PARTS} parts of at most 5 GiB; split the backup into several objects`,
    );
  return size;
}

function checkInteger(value: number | undefined, name: string, min: number, max: number): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < min || value > max))
    throw invalidOption(`${name} must be a whole number from ${min} to ${max}, not ${value}`);
}

/** `http(s)://host[:port]` without credentials or a trailing slash. */
function normalizeEndpoint(endpoint: string): string {
  let parsed: URL;
  try {
    parsed = new URL(endpoint);
  } catch {
    throw invalidOption(`endpoint "${endpoint.slice(0, 200)}" is not a URL (http(s)://host[:port])`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw invalidOption(`endpoint must be http(s)://host[:port], not ${parsed.protocol}`);
  if (parsed.username !== '' || parsed.password !== '')
    throw invalidOption('the endpoint contains credentials; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE instead');
  return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/+$/, '')}`;
}

/** Credential values known to the store, to keep out of messages. */
function secretsOf(credentials: S3ClientConfig['credentials']): string[] {
  const values: unknown[] = [process.env.AWS_ACCESS_KEY_ID, process.env.AWS_SECRET_ACCESS_KEY, process.env.AWS_SESSION_TOKEN];
  if (credentials !== undefined && typeof credentials === 'object') {
    const c = credentials as { accessKeyId?: unknown; secretAccessKey?: unknown; sessionToken?: unknown };
    values.push(c.accessKeyId, c.secretAccessKey, c.sessionToken);
  }
  return values.filter((v): v is string => typeof v === 'string' && v.length >= 4);
}

type RetryStrategyV2 = Extract<NonNullable<S3ClientConfig['retryStrategy']>, { acquireInitialRetryToken: unknown }>;
type RetryToken = Awaited<ReturnType<RetryStrategyV2['acquireInitialRetryToken']>>;
type RetryErrorInfo = Parameters<RetryStrategyV2['refreshRetryTokenForRetry']>[1];

/** Full-jitter exponential backoff: a random wait up to base x 2^retry, capped. */
function backoffDelay(baseMs: number, retry: number): number {
  return Math.floor(Math.random() * Math.min(MAX_RETRY_DELAY_MS, baseMs * 2 ** retry));
}

/**
 * The SDK's retry decision (its classification of throttling and transient errors: 5xx,
 * 429, SlowDown, ECONNRESET, ECONNREFUSED, EPIPE, timeouts), with our attempt count and
 * backoff and without the standard strategy's shared retry quota: a backup that meets a bad
 * minute of S3 keeps retrying each request up to maxAttempts. Request bodies are Buffers (one
 * per part), so every request, part uploads included, can be retried.
 */
class BackoffRetryStrategy implements RetryStrategyV2 {
  readonly mode = 'standard';
  readonly #maxAttempts: number;
  readonly #baseMs: number;

  constructor(maxAttempts: number, baseMs: number) {
    this.#maxAttempts = maxAttempts;
    this.#baseMs = baseMs;
  }

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return { getRetryCount: () => 0, getRetryDelay: () => 0 };
  }

  async refreshRetryTokenForRetry(token: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const retries = token.getRetryCount();
    const retryable =
      !isAbortError(info.error) && (info.errorType === 'TRANSIENT' || info.errorType === 'THROTTLING' || isTransientError(info.error));
    if (!retryable || retries + 1 >= this.#maxAttempts) throw new Error('no retry');
    const base = info.errorType === 'THROTTLING' ? this.#baseMs * THROTTLING_DELAY_FACTOR : this.#baseMs;
    let delay = backoffDelay(base, retries);
    if (info.retryAfterHint instanceof Date)
      delay = Math.max(delay, Math.min(MAX_RETRY_DELAY_MS, info.retryAfterHint.getTime() - Date.now()));
    return { getRetryCount: () => retries + 1, getRetryDelay: () => delay };
  }

  recordSuccess(): void {}
}

const SILENT_LOGGER = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/** A command of any operation, as far as attaching a middleware goes. */
interface Instrumentable {
  middlewareStack: {
    add(
      middleware: (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => (args: unknown) => Promise<unknown>,
      options: { step: 'finalizeRequest'; priority: 'low'; name: string },
    ): void;
  };
}

/** Bytes of body copied into parts between two young-generation collections. */

/**
 * An async iterator as a byte stream whose destroy() takes effect at once: a stream made by
 * Readable.from waits for a pending next() before it reports its error, so a get aborted
 * while the server sends nothing would hang.
 */
function readableOf(iterator: AsyncIterator<Buffer>): Readable {
  let pulling = false;
  const stream: Readable = new Readable({
    read() {
      if (pulling) return;
      pulling = true;
      void (async () => {
        try {
          for (;;) {
            const next = await iterator.next();
            if (stream.destroyed) return;
            if (next.done) {
              stream.push(null);
              return;
            }
            if (!stream.push(next.value)) return;
          }
        } catch (error) {
          stream.destroy(error as Error);
        } finally {
          pulling = false;
        }
      })();
    },
    destroy(error, callback) {
      iterator.return?.(undefined)?.catch(() => {});
      callback(error);
    },
  });
  return stream;
}

/**
 * A store in an S3 bucket (or any S3-compatible server), under an optional key prefix.
 *
 * - put: copies the body into part buffers of {@link partSizeFor} its announced size: one
 *   PutObject when it fits in one part, else a multipart upload with `queueSize` parts in
 *   flight. A put holds (queueSize + 1) x partSize of part buffers whatever its size: 32 MiB
 *   with a known size up to 78 GiB, 64 MiB with an unknown one (which is capped at 156 GiB).
 *   SHA-256 and size are computed as the bytes pass; a size or SHA-256 other than announced
 *   fails the put before S3 completes it, and the size S3 then holds is checked. Every request
 *   body carries a CRC32 checksum header (S3 verifies it; s3rver ignores it), and an announced
 *   SHA-256 is stored as `x-amz-meta-sha256`. A failure or abort stops reading the body at
 *   once, lets the part uploads in flight finish (a part completing after the abort would
 *   survive it on AWS), aborts the multipart upload and reports a `multipart-aborted` event:
 *   no object, and no billed parts, are left.
 * - get: a ranged GetObject; a connection that breaks mid-body is resumed from the next byte
 *   (If-Match the same ETag) with backoff, up to maxAttempts times without progress.
 * - list: ListObjectsV2 pages, in S3's (UTF-8 byte) key order, keys relative to the prefix;
 *   the store's own objects (`.drkit-locks/`, ...) are never listed.
 * - Every request is retried with exponential backoff and full jitter on 5xx, throttling and
 *   broken connections (part uploads included: their bodies are buffers), and each retry is
 *   reported as a `retry` event.
 * - Errors are StoreErrors whose messages never contain credentials.
 *
 * Locks are lease locks under `.drkit-locks/` (see s3-lock.ts and docs/LOCKS.md).
 * @throws StoreError STORE_OPTIONS_INVALID for invalid options
 */
export function createS3Store(options: S3StoreOptions): Store {
  const { bucket } = options;
  if (typeof bucket !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket))
    throw invalidOption(`bucket ${JSON.stringify(String(bucket).slice(0, 100))} is not a bucket name`);
  let prefix = normalizePrefix(options.prefix ?? '');
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  if (!/^[a-z0-9-]{1,64}$/.test(region)) throw invalidOption(`region "${region.slice(0, 100)}" is not a region name (like us-east-1)`);
  const rawEndpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  const endpoint = rawEndpoint === undefined || rawEndpoint === '' ? undefined : normalizeEndpoint(rawEndpoint);
  const forcePathStyle = options.forcePathStyle ?? endpoint !== undefined;
  checkInteger(options.partSize, 'partSize', S3_MIN_PART_SIZE, S3_MAX_PART_SIZE);
  checkInteger(options.queueSize, 'queueSize', 1, 64);
  checkInteger(options.maxAttempts, 'maxAttempts', 1, 50);
  checkInteger(options.retryBaseDelayMs, 'retryBaseDelayMs', 0, 60_000);
  if (options.sse !== undefined && options.sse !== 'AES256' && options.sse !== 'aws:kms')
    throw invalidOption(`sse must be AES256 or aws:kms, not ${String(options.sse)}`);
  if (options.kmsKeyId !== undefined && options.sse === 'AES256') throw invalidOption('kmsKeyId needs sse "aws:kms", not "AES256"');
  const sse = options.kmsKeyId !== undefined ? 'aws:kms' : options.sse;
  if (options.storageClass !== undefined && !/^[A-Z_]{1,64}$/.test(options.storageClass))
    throw invalidOption(`storageClass "${String(options.storageClass).slice(0, 100)}" is not an S3 storage class (like STANDARD_IA)`);
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const retryBaseMs = options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS;
  const secrets = secretsOf(options.credentials);

  const ownClient = options.client === undefined;
  const client =
    options.client ??
    new (s3sdk().S3Client)({
      region,
      ...(endpoint === undefined ? {} : { endpoint }),
      forcePathStyle,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      maxAttempts,
      retryStrategy: new BackoffRetryStrategy(maxAttempts, retryBaseMs),
      followRegionRedirects: true,
      // The SDK writes warnings to the console unless it has a logger; libraries never do.
      logger: SILENT_LOGGER,
      requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: SOCKET_IDLE_TIMEOUT_MS, logger: SILENT_LOGGER },
    });

  const endpointShown = endpoint ?? `https://s3.${region}.amazonaws.com`;
  const url = `s3://${bucket}${prefix === '' ? '' : `/${prefix.split('/').map(encodeURIComponent).join('/')}`}?region=${encodeURIComponent(region)}${
    endpoint === undefined ? '' : `&endpoint=${endpoint}`
  }`;
  const mapError = (error: unknown, what: string) => toStoreError(error, { what, bucket, endpoint: endpointShown, secrets });
  const emit = (event: StoreEvent) => {
    if (!options.onEvent) return;
    try {
      options.onEvent(event);
    } catch {
      // A listener that throws must not fail the operation it is told about.
    }
  };

  // Every request carries this middleware inside the retry loop: each attempt after the first
  // is a retry, reported with the wait since the previous attempt failed.
  const instrumented = new WeakSet<object>();
  const instrument = <C extends object>(command: C): C => {
    if (instrumented.has(command)) return command;
    instrumented.add(command);
    (command as unknown as Instrumentable).middlewareStack.add(
      (next, context) => {
        let attempt = 0;
        let failedAt = 0;
        let lastError: unknown;
        return async (args) => {
          attempt += 1;
          if (attempt > 1)
            emit({
              type: 'retry',
              store: url,
              operation: (context.commandName ?? 'request').replace(/Command$/, ''),
              attempt,
              delayMs: Date.now() - failedAt,
              reason: describeS3Error(lastError, secrets),
            });
          try {
            return await next(args);
          } catch (error) {
            lastError = error;
            failedAt = Date.now();
            throw error;
          }
        };
      },
      { step: 'finalizeRequest', priority: 'low', name: 'drkitRetryEvents' },
    );
    return command;
  };
  const requestOptions = (signal: AbortSignal | undefined) => (signal === undefined ? {} : { abortSignal: signal });

  let closed = false;
  const ensureOpen = () => {
    if (closed) throw new StoreError('STORE_UNAVAILABLE', `${url} was closed`);
  };
  const objectKey = (key: string) => {
    const full = prefix + key;
    if (Buffer.byteLength(full) > MAX_KEY_BYTES)
      throw new StoreError(
        'STORE_KEY_INVALID',
        `key ${JSON.stringify(key.slice(0, 200))} is longer than ${MAX_KEY_BYTES} bytes with the prefix ${prefix}`,
      );
    return full;
  };

  let bucketSeen = false;
  /** HeadObject of a missing bucket is a bare 404, like a missing key: ask the bucket once. */
  const checkBucket = async (what: string): Promise<void> => {
    if (bucketSeen) return;
    try {
      await client.send(instrument(new (s3sdk().HeadBucketCommand)({ Bucket: bucket })));
      bucketSeen = true;
    } catch (error) {
      const status = httpStatusOf(error);
      if (status === 404 || errorCodeOf(error) === 'NoSuchBucket')
        throw mapError({ name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } }, what);
      // 403: allowed to read objects but not to list the bucket; the key is what is missing.
      if (status === 403) return;
      throw mapError(error, what);
    }
  };

  const headObject = async (key: string, what: string, signal?: AbortSignal): Promise<HeadObjectCommandOutput | undefined> => {
    try {
      const out = await client.send(instrument(new (s3sdk().HeadObjectCommand)({ Bucket: bucket, Key: key })), requestOptions(signal));
      bucketSeen = true;
      return out;
    } catch (error) {
      const code = errorCodeOf(error);
      if (httpStatusOf(error) === 404 && code !== 'NoSuchBucket') {
        await checkBucket(what);
        return undefined;
      }
      throw mapError(error, what);
    }
  };

  /**
   * Abandons a multipart upload after a failed put: its parts must not stay (they are billed).
   * True when S3 no longer knew the upload (it was completed after all).
   */
  const abandonUpload = async (key: string, shownKey: string, uploadId: string, reason: string): Promise<boolean> => {
    let outcome = '';
    try {
      await client.send(
        instrument(new (s3sdk().AbortMultipartUploadCommand)({ Bucket: bucket, Key: key, UploadId: uploadId })),
        requestOptions(AbortSignal.timeout(CLEANUP_TIMEOUT_MS)),
      );
    } catch (error) {
      if (errorCodeOf(error) === 'NoSuchUpload') return true;
      outcome = `; AbortMultipartUpload failed (${describeS3Error(error, secrets)}), so its parts stay until a lifecycle rule (AbortIncompleteMultipartUpload) removes them`;
    }
    emit({ type: 'multipart-aborted', store: url, key: shownKey, uploadId, reason: `${reason}${outcome}` });
    return false;
  };

  const put = async (key: string, body: ByteSource, putOptions: PutOptions = {}): Promise<PutResult> => {
    ensureOpen();
    const normal = normalizeKey(key);
    const fullKey = objectKey(normal);
    const what = `put ${normal}`;
    const { signal, size: announced } = putOptions;
    throwIfAborted(signal, what);
    if (announced !== undefined && (!Number.isSafeInteger(announced) || announced < 0))
      throw new StoreError('STORE_OPTIONS_INVALID', `${what}: size must be a whole number of bytes, not ${announced}`);
    if (putOptions.sha256 !== undefined && !/^[0-9a-f]{64}$/i.test(putOptions.sha256))
      throw new StoreError('STORE_OPTIONS_INVALID', `${what}: sha256 must be 64 hex digits`);
    const knownSize = announced ?? (body instanceof Uint8Array ? body.byteLength : undefined);
    const partSize = options.partSize ?? partSizeFor(knownSize);
    const queueSize = options.queueSize ?? Math.max(1, Math.min(DEFAULT_QUEUE_SIZE, Math.floor(AUTO_QUEUE_BUDGET / partSize)));
    const maxBytes = partSize * MAX_PARTS;
    const tooLarge = (bytes: number) =>
      new StoreError(
        'STORE_TOO_LARGE',
        `${what}: ${bytes} bytes exceed ${MAX_PARTS} parts of ${partSize / MiB} MiB; announce the size (PutOptions.size) so the part size fits it, or set partSize`,
      );
    if (knownSize !== undefined && knownSize > maxBytes) throw tooLarge(knownSize);
    const objectParams = {
      Bucket: bucket,
      Key: fullKey,
      ContentType: 'application/octet-stream',
      ...(putOptions.sha256 === undefined ? {} : { Metadata: { sha256: putOptions.sha256.toLowerCase() } }),
      ...(sse === undefined ? {} : { ServerSideEncryption: sse }),
      ...(options.kmsKeyId === undefined ? {} : { SSEKMSKeyId: options.kmsKeyId }),
      ...(options.storageClass === undefined ? {} : { StorageClass: options.storageClass }),
    };

    // The first failure wins: it stops reading the body, cancels the single PutObject or the
    // completion if one is in flight, and is what the put throws; later failures are its
    // consequences. Part uploads in flight are let finish, and the multipart upload is aborted
    // only then: AWS keeps a part whose request completes after AbortMultipartUpload.
    const controller = new AbortController();
    let failure: unknown;
    // The one wait of the put that a failure must interrupt (the source's next chunk, a free
    // request slot). Not a Promise.race against one long-lived promise: each race would leave
    // a reaction on it holding its result, i.e. every chunk of the body.
    let interrupt: ((error: unknown) => void) | undefined;
    const unlessFailed = <T>(promise: Promise<T>): Promise<T> => {
      if (failure !== undefined) {
        // The failure may have come from inside `promise` itself (a source that fails or
        // aborts as it is asked for its next chunk): it is settled and reported already.
        promise.catch(() => {});
        return Promise.reject(failure);
      }
      return new Promise<T>((resolve, reject) => {
        interrupt = reject;
        promise.then(
          (value) => {
            interrupt = undefined;
            resolve(value);
          },
          (error: unknown) => {
            interrupt = undefined;
            reject(error);
          },
        );
      });
    };
    const fail = (error: unknown) => {
      if (failure !== undefined) return;
      failure = error;
      controller.abort(error);
      interrupt?.(error);
      if (body instanceof Readable) body.destroy();
    };
    const onAbort = () => fail(abortedError(signal, what));

    const hash = createHash('sha256');
    const reclaim = reclaimer(options.reclaimMemory ?? true);
    let bytes = 0;
    let sha256 = '';
    const source = (async function* (): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of chunksOf(body)) {
          if (failure !== undefined) throw failure;
          bytes += chunk.length;
          if (announced !== undefined && bytes > announced)
            throw new StoreError(
              'STORE_INTEGRITY',
              `${what}: more than the announced ${announced} bytes arrived; nothing was stored, run the backup again`,
            );
          if (bytes > maxBytes) throw tooLarge(bytes);
          hash.update(chunk);
          putOptions.onProgress?.(bytes);
          yield chunk;
        }
        sha256 = hash.digest('hex');
        checkPutResult(normal, bytes, sha256, putOptions);
      } catch (error) {
        if (failure !== undefined) throw failure;
        const reported = error instanceof StoreError ? error : signal?.aborted ? abortedError(signal, what) : sourceError(normal, error);
        fail(reported);
        throw reported;
      }
    })();

    // Part buffers are allocated once per put and reused: every byte is copied once, from the
    // source's chunk into its part, and at most queueSize parts are in flight while one fills.
    // (lib-storage's Upload concatenates each part anew from the chunks, so a put allocated
    // every byte twice; the garbage cost a fifth of the CPU in GC and ~200 MB of RSS per put.)
    const pool: Buffer[] = [];
    const inflight = new Set<Promise<void>>();
    const parts: CompletedPart[] = [];
    let uploadId: string | undefined;
    let nextPart = 1;
    let completeSent = false;

    const uploadPart = (buffer: Buffer, length: number) => {
      const number = nextPart++;
      const task: Promise<void> = (async () => {
        try {
          const out = await client.send(
            instrument(
              new (s3sdk().UploadPartCommand)({
                Bucket: bucket,
                Key: fullKey,
                UploadId: uploadId,
                PartNumber: number,
                Body: buffer.subarray(0, length),
                ContentLength: length,
                ChecksumAlgorithm: 'CRC32',
              }),
            ),
          );
          if (out.ETag === undefined) throw new StoreError('STORE_IO', `${what}: S3 answered part ${number} without an ETag`);
          parts.push({
            PartNumber: number,
            ETag: out.ETag,
            ...(out.ChecksumCRC32 === undefined ? {} : { ChecksumCRC32: out.ChecksumCRC32 }),
          });
        } catch (error) {
          fail(error);
        }
      })().finally(() => {
        pool.push(buffer);
        inflight.delete(task);
      });
      inflight.add(task);
    };

    /** Uploads a part once a request slot is free, creating the multipart upload first. */
    const dispatch = async (buffer: Buffer, length: number) => {
      while (inflight.size >= queueSize) await unlessFailed(Promise.race(inflight));
      if (failure !== undefined) throw failure;
      if (uploadId === undefined) {
        // Let finish even on abort: its id is what the abort needs.
        const created = await client.send(
          instrument(new (s3sdk().CreateMultipartUploadCommand)({ ...objectParams, ChecksumAlgorithm: 'CRC32' })),
        );
        uploadId = created.UploadId;
        if (uploadId === undefined) throw new StoreError('STORE_IO', `${what}: S3 did not return an upload id`);
        if (failure !== undefined) throw failure;
      }
      uploadPart(buffer, length);
    };

    // A full part is sent once the next byte shows it is not the last (the last may be the
    // only one: then a single PutObject does). Until the first part fills, chunks are only
    // collected, so that a small put costs no part buffer.
    let head: Buffer[] = [];
    let headLength = 0;
    let pooled = false;
    let current: Buffer | undefined;
    let filled = 0;
    let full: Buffer | undefined;
    const absorb = async (chunk: Buffer) => {
      for (let offset = 0; offset < chunk.length; ) {
        if (full !== undefined) {
          const ready = full;
          full = undefined;
          await dispatch(ready, partSize);
        }
        current ??= pool.pop() ?? Buffer.allocUnsafeSlow(partSize);
        const copied = chunk.copy(current, filled, offset);
        filled += copied;
        offset += copied;
        if (filled === partSize) {
          full = current;
          current = undefined;
          filled = 0;
        }
      }
    };

    const transfer = async (): Promise<string | undefined> => {
      const chunks = source[Symbol.asyncIterator]();
      for (;;) {
        const next = await unlessFailed(chunks.next());
        if (next.done) break;
        reclaim(next.value.length);
        if (pooled) await absorb(next.value);
        else {
          head.push(next.value);
          headLength += next.value.length;
          if (headLength > partSize) {
            pooled = true;
            const collected = head;
            head = [];
            for (const chunk of collected) await absorb(chunk);
          }
        }
      }
      if (!pooled) {
        const single = head.length === 1 ? (head[0] as Buffer) : Buffer.concat(head, headLength);
        const out = await client.send(
          instrument(
            new (s3sdk().PutObjectCommand)({ ...objectParams, Body: single, ContentLength: single.length, ChecksumAlgorithm: 'CRC32' }),
          ),
          { abortSignal: controller.signal },
        );
        return out.ETag;
      }
      if (full !== undefined) await dispatch(full, partSize);
      else if (current !== undefined && filled > 0) await dispatch(current, filled);
      await Promise.all(inflight);
      if (failure !== undefined) throw failure;
      parts.sort((x, y) => (x.PartNumber ?? 0) - (y.PartNumber ?? 0));
      completeSent = true;
      const out = await client.send(
        instrument(
          new (s3sdk().CompleteMultipartUploadCommand)({
            Bucket: bucket,
            Key: fullKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
          }),
        ),
        { abortSignal: controller.signal },
      );
      return out.ETag;
    };

    let completed = false;
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      let etag: string | undefined;
      try {
        etag = await transfer();
        completed = true;
      } catch (error) {
        fail(error);
      }
      if (failure === undefined) {
        // S3 checked each request's checksum; this checks that the object S3 now holds is the
        // size we sent (an S3-compatible server that dropped bytes), unless another writer
        // replaced it meanwhile (another ETag).
        const stored = await headObject(fullKey, what, controller.signal).catch((error: unknown) => {
          fail(error);
          return undefined;
        });
        if (failure === undefined && (stored === undefined || (stored.ETag === etag && stored.ContentLength !== bytes)))
          fail(
            new StoreError(
              'STORE_INTEGRITY',
              `${what}: S3 holds ${stored?.ContentLength ?? 'no'} bytes after ${bytes} were uploaded; the object was removed, run the backup again`,
            ),
          );
        if (failure === undefined) return { key: normal, size: bytes, sha256, ...(etag === undefined ? {} : { etag }) };
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }

    // Stop reading (a source waiting for data cannot be interrupted: it is not awaited), and
    // let the part uploads in flight finish before the upload is aborted.
    source.return(undefined).catch(() => {});
    await Promise.all(inflight);
    const error =
      signal?.aborted && !(failure instanceof StoreError && failure.code !== 'STORE_ABORTED') ? abortedError(signal, what) : failure;
    const reason = redact(error instanceof Error ? error.message : String(error), secrets);
    // A completion whose answer was lost (cancelled, or a broken connection) may have happened:
    // S3 then no longer knows the upload.
    if (uploadId !== undefined && !completed && (await abandonUpload(fullKey, normal, uploadId, reason)) && completeSent) completed = true;
    if (completed) {
      // Completed, then failed (its check, or an abort that came too late): a failed put
      // leaves nothing under the key.
      await client
        .send(
          instrument(new (s3sdk().DeleteObjectCommand)({ Bucket: bucket, Key: fullKey })),
          requestOptions(AbortSignal.timeout(CLEANUP_TIMEOUT_MS)),
        )
        .catch(() => {});
    }
    throw error instanceof StoreError ? error : mapError(error, what);
  };

  const head = async (key: string): Promise<ObjectInfo | undefined> => {
    ensureOpen();
    const normal = normalizeKey(key);
    const out = await headObject(objectKey(normal), `head ${normal}`);
    if (out === undefined) return undefined;
    return {
      key: normal,
      size: out.ContentLength ?? 0,
      modifiedAt: out.LastModified ?? new Date(0),
      ...(out.ETag === undefined ? {} : { etag: out.ETag }),
      // S3 leaves the header out for STANDARD.
      storageClass: out.StorageClass ?? 'STANDARD',
    };
  };

  const get = async (key: string, getOptions: GetOptions = {}): Promise<Readable> => {
    ensureOpen();
    const normal = normalizeKey(key);
    const fullKey = objectKey(normal);
    const what = `get ${normal}`;
    const { signal, range } = getOptions;
    throwIfAborted(signal, what);
    if (
      range !== undefined &&
      (!Number.isSafeInteger(range.start) ||
        range.start < 0 ||
        (range.end !== undefined && (!Number.isSafeInteger(range.end) || range.end < range.start)))
    )
      throw new StoreError(
        'STORE_OPTIONS_INVALID',
        `${what}: invalid range ${JSON.stringify(range)} (start >= 0, end >= start, inclusive)`,
      );
    const start = range?.start ?? 0;
    const end = range?.end;
    const request = (from: number, etag?: string) =>
      client.send(
        instrument(
          new (s3sdk().GetObjectCommand)({
            Bucket: bucket,
            Key: fullKey,
            // No header for the whole object: a range on an empty object is unsatisfiable.
            ...(from === 0 && end === undefined ? {} : { Range: `bytes=${from}-${end ?? ''}` }),
            ...(etag === undefined ? {} : { IfMatch: etag }),
          }),
        ),
        requestOptions(signal),
      );

    let first: GetObjectCommandOutput;
    try {
      first = await request(start);
      bucketSeen = true;
    } catch (error) {
      if (signal?.aborted) throw abortedError(signal, what);
      if (errorCodeOf(error) === 'InvalidRange' || httpStatusOf(error) === 416) {
        const size = (error as { ActualObjectSize?: unknown }).ActualObjectSize;
        // Only an empty object cannot serve byte 0.
        if (start === 0) return Readable.from([], { objectMode: false });
        throw new StoreError('STORE_OPTIONS_INVALID', `${what}: range starts at byte ${start} but the object has ${size ?? 'fewer'} bytes`);
      }
      throw mapError(error, what);
    }

    // Bytes wanted: the range's length, else the whole response. A server that ignores or
    // widens a range (s3rver serves bytes=0-0 whole) must not hand out extra bytes.
    const etag = first.ETag;
    const length = end === undefined ? first.ContentLength : Math.min(end - start + 1, first.ContentLength ?? Number.POSITIVE_INFINITY);
    const bodyFrom = (out: GetObjectCommandOutput, from: number): Readable => {
      const served = /^bytes (\d+)-/.exec(out.ContentRange ?? '')?.[1];
      const ranged = from !== 0 || end !== undefined;
      if (ranged && (served === undefined ? from !== 0 : Number(served) !== from)) {
        (out.Body as Readable | undefined)?.destroy();
        throw new StoreError(
          'STORE_UNSUPPORTED',
          `${what}: the S3 server at ${endpointShown} answered a request for bytes ${from}- with ${out.ContentRange ?? 'the whole object'}`,
        );
      }
      return out.Body as Readable;
    };
    const firstBody = bodyFrom(first, start);
    const resuming = async function* (): AsyncGenerator<Buffer> {
      let current = firstBody;
      let received = 0;
      let failures = 0;
      for (;;) {
        let error: unknown;
        try {
          for await (const data of current) {
            let chunk = data as Buffer;
            if (length !== undefined && received + chunk.length > length) chunk = chunk.subarray(0, length - received);
            received += chunk.length;
            failures = 0;
            if (chunk.length > 0) yield chunk;
            if (length !== undefined && received >= length) return;
          }
          if (length === undefined || received >= length) return;
          error = Object.assign(new Error(`the response ended after ${received} of ${length} bytes`), {
            code: 'ERR_STREAM_PREMATURE_CLOSE',
          });
        } catch (caught) {
          error = caught;
        }
        if (signal?.aborted) throw abortedError(signal, what);
        if (error instanceof StoreError) throw error;
        if (/checksum mismatch/i.test(error instanceof Error ? error.message : ''))
          throw new StoreError(
            'STORE_INTEGRITY',
            `${what}: the bytes S3 sent do not match the object's checksum (${describeS3Error(error, secrets)})`,
          );
        failures += 1;
        if (!isTransientError(error) || failures >= maxAttempts) throw mapError(error, what);
        const delay = backoffDelay(retryBaseMs, failures - 1);
        emit({
          type: 'retry',
          store: url,
          operation: 'GetObject',
          attempt: failures + 1,
          delayMs: delay,
          reason: `${describeS3Error(error, secrets)} after ${received} bytes; resuming`,
        });
        let next: GetObjectCommandOutput;
        try {
          await sleep(delay, undefined, signal === undefined ? {} : { signal });
          next = await request(start + received, etag);
        } catch (caught) {
          if (signal?.aborted) throw abortedError(signal, what);
          if (errorCodeOf(caught) === 'PreconditionFailed' || httpStatusOf(caught) === 412)
            throw new StoreError('STORE_INTEGRITY', `${what}: the object was replaced while it was being read; read it again`);
          throw mapError(caught, what);
        }
        current = bodyFrom(next, start + received);
      }
    };
    const stream = readableOf(resuming());
    if (signal !== undefined) {
      const onAbort = () => stream.destroy(abortedError(signal, what));
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  };

  async function* list(listPrefix: string, listOptions: ListOptions = {}): AsyncGenerator<ObjectInfo> {
    ensureOpen();
    const normal = normalizePrefix(listPrefix);
    const what = `list ${normal === '' ? '(all)' : normal}`;
    const { signal } = listOptions;
    let token: string | undefined;
    do {
      throwIfAborted(signal, what);
      let page: ListObjectsV2CommandOutput;
      try {
        page = await client.send(
          instrument(
            new (s3sdk().ListObjectsV2Command)({
              Bucket: bucket,
              Prefix: prefix + normal,
              ...(token === undefined ? {} : { ContinuationToken: token }),
            }),
          ),
          requestOptions(signal),
        );
        bucketSeen = true;
      } catch (error) {
        if (signal?.aborted) throw abortedError(signal, what);
        throw mapError(error, what);
      }
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined || !item.Key.startsWith(prefix)) continue;
        const key = item.Key.slice(prefix.length);
        // Folder markers of consoles and the store's own objects (locks) are not objects.
        if (key === '' || key.endsWith('/') || key.startsWith(LOCKS_PREFIX) || key.split('/').some((s) => s.startsWith(RESERVED_PREFIX)))
          continue;
        yield {
          key,
          size: item.Size ?? 0,
          modifiedAt: item.LastModified ?? new Date(0),
          ...(item.ETag === undefined ? {} : { etag: item.ETag }),
          storageClass: item.StorageClass ?? 'STANDARD',
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  const remove = async (key: string): Promise<void> => {
    ensureOpen();
    const normal = normalizeKey(key);
    try {
      await client.send(instrument(new (s3sdk().DeleteObjectCommand)({ Bucket: bucket, Key: objectKey(normal) })));
    } catch (error) {
      if (errorCodeOf(error) === 'NoSuchKey') return;
      throw mapError(error, `delete ${normal}`);
    }
  };

  const store: Store = {
    url,
    put,
    get,
    head,
    list,
    delete: remove,
    lock: (name: string, lockOptions?: LockOptions): Promise<Lease> => acquireS3Lock({ client, bucket, prefix }, name, lockOptions),
    lockInfo: (name: string): Promise<LockInfo | undefined> => readS3Lock({ client, bucket, prefix }, name),
    close: async () => {
      if (closed) return;
      closed = true;
      if (ownClient) client.destroy();
    },
  };
  internals.set(store, { client, bucket, prefix, url, emit, toStoreError: mapError });
  return store;
}
