import { fileURLToPath } from 'node:url';
import { StoreError } from './errors.js';
import { createFsStore } from './fs-store.js';
import { createMirroredStore } from './mirror.js';
import { createS3Store, type S3StoreOptions } from './s3.js';
import type { Store, StoreEventListener } from './store.js';

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  onEvent?: StoreEventListener;
  /** Extra S3 settings for every s3:// URL (e.g. injected credentials in tests). */
  s3?: Partial<S3StoreOptions>;
}

const SCHEMES = ['file:', 's3:'] as const;
const STORAGE_CLASSES = [
  'STANDARD',
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'GLACIER',
  'GLACIER_IR',
  'DEEP_ARCHIVE',
  'REDUCED_REDUNDANCY',
];
const S3_PARAMS = new Set(['region', 'endpoint', 'sse', 'kmsKeyId', 'storageClass', 'forcePathStyle', 'partSize']);

/** Splits a list of store URLs: "s3://a?region=us-east-1,s3://b?region=us-west-2". */
export function splitStoreUrls(value: string): string[] {
  return value
    .split(/\s*,\s*(?=[a-z][a-z0-9+.-]*:\/\/)|\s+(?=[a-z][a-z0-9+.-]*:\/\/)/i)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `url` with any password replaced, for messages. */
function shown(url: string): string {
  return url.replace(/(\/\/[^/@]*):[^/@]*@/, '$1:***@').slice(0, 300);
}

function invalid(url: string, why: string): StoreError {
  return new StoreError('STORE_URL_INVALID', `store URL ${shown(url)} is invalid: ${why}`);
}

/**
 * Parses one store URL into the options of its driver:
 * - `file:///var/backups/drkit` (or a plain absolute path);
 * - `s3://bucket/prefix?region=us-east-1&endpoint=http://127.0.0.1:9000&sse=AES256&storageClass=STANDARD_IA`.
 * Credentials never go in the URL: S3 takes them from the standard AWS chain (environment,
 * shared profile, instance role).
 * @throws StoreError STORE_URL_INVALID, STORE_SCHEME_UNSUPPORTED
 */
export function parseStoreUrl(url: string): { kind: 'fs'; root: string } | { kind: 's3'; options: S3StoreOptions } {
  if (url.startsWith('/')) return { kind: 'fs', root: url };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(url, 'it is not a URL; use file:///path/to/dir or s3://bucket/prefix?region=REGION');
  }
  if (!(SCHEMES as readonly string[]).includes(parsed.protocol))
    throw new StoreError(
      'STORE_SCHEME_UNSUPPORTED',
      `store URL scheme "${parsed.protocol.replace(/:$/, '')}" is not supported; use file:///path/to/dir or s3://bucket/prefix?region=REGION`,
    );
  if (parsed.username !== '' || parsed.password !== '')
    throw invalid(
      url,
      'it contains credentials; remove them and use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (credentials in URLs end up in shell history and logs)',
    );
  if (parsed.protocol === 'file:') {
    if (parsed.host !== '' && parsed.host !== 'localhost') throw invalid(url, 'a file:// URL names a local directory: file:///path');
    if (parsed.search !== '') throw invalid(url, 'file:// URLs take no parameters');
    return { kind: 'fs', root: fileURLToPath(parsed) };
  }
  const bucket = parsed.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw invalid(url, `"${bucket}" is not a valid bucket name (3-63 lower-case letters, digits, dots and dashes)`);
  for (const name of parsed.searchParams.keys())
    if (!S3_PARAMS.has(name)) throw invalid(url, `unknown parameter "${name}" (known: ${[...S3_PARAMS].join(', ')})`);
  const prefix = decodeURIComponent(parsed.pathname.replace(/^\/+/, ''));
  const options: S3StoreOptions = { bucket, ...(prefix === '' ? {} : { prefix }) };
  const param = (name: string) => parsed.searchParams.get(name) ?? undefined;
  const region = param('region');
  if (region !== undefined) {
    if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) throw invalid(url, `"${region}" is not an AWS region name (like us-east-1)`);
    options.region = region;
  }
  const endpoint = param('endpoint');
  if (endpoint !== undefined) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(endpoint)) throw invalid(url, `endpoint "${endpoint}" must be http(s)://host[:port]`);
    options.endpoint = endpoint;
  }
  const sse = param('sse');
  if (sse !== undefined) {
    if (sse !== 'AES256' && sse !== 'aws:kms') throw invalid(url, `sse must be AES256 or aws:kms, not "${sse}"`);
    options.sse = sse;
  }
  const kmsKeyId = param('kmsKeyId');
  if (kmsKeyId !== undefined) options.kmsKeyId = kmsKeyId;
  const storageClass = param('storageClass');
  if (storageClass !== undefined) {
    if (!STORAGE_CLASSES.includes(storageClass)) throw invalid(url, `storageClass must be one of ${STORAGE_CLASSES.join(', ')}`);
    options.storageClass = storageClass as NonNullable<S3StoreOptions['storageClass']>;
  }
  const forcePathStyle = param('forcePathStyle');
  if (forcePathStyle !== undefined) {
    if (forcePathStyle !== 'true' && forcePathStyle !== 'false') throw invalid(url, 'forcePathStyle must be true or false');
    options.forcePathStyle = forcePathStyle === 'true';
  }
  const partSize = param('partSize');
  if (partSize !== undefined) {
    const mib = Number(partSize);
    if (!Number.isInteger(mib) || mib < 5 || mib > 5120) throw invalid(url, 'partSize is in MiB, from 5 to 5120');
    options.partSize = mib * 1024 * 1024;
  }
  return { kind: 's3', options };
}

/**
 * Opens the store a URL names. Several URLs (comma- or space-separated, or an array) make a
 * mirrored store: the first is the primary, the others replicas, and a put needs every copy.
 * @throws StoreError STORE_URL_INVALID, STORE_SCHEME_UNSUPPORTED
 */
export function openStore(url: string | string[], options: OpenStoreOptions = {}): Store {
  const urls = Array.isArray(url) ? url : splitStoreUrls(url);
  if (urls.length === 0)
    throw new StoreError(
      'STORE_URL_INVALID',
      'no store given: pass --store URL or set DRKIT_STORE (file:///var/backups/drkit or s3://bucket/prefix?region=us-east-1)',
    );
  const stores = urls.map((one) => {
    const parsed = parseStoreUrl(one);
    if (parsed.kind === 'fs') return createFsStore(parsed.root);
    return createS3Store({ ...parsed.options, ...options.s3, ...(options.onEvent ? { onEvent: options.onEvent } : {}) });
  });
  if (stores.length === 1) return stores[0] as Store;
  return createMirroredStore({
    primary: stores[0] as Store,
    replicas: stores.slice(1),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
  });
}
