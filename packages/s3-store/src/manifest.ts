import { randomBytes } from 'node:crypto';
import { StoreError } from './errors.js';

/** The `schema` value of every manifest this version writes. */
export const MANIFEST_SCHEMA = 'drkit.manifest/1';

/** Kinds drkit's own packages write; other kinds are allowed (lower-case, digits, dashes). */
export const KNOWN_KINDS = [
  'postgres',
  'postgres-base',
  'postgres-wal',
  'redis-rdb',
  'redis-logical',
  'files',
  'secrets',
  'config',
] as const;

/** Backup tiers of the plans' schedule (hourly incrementals, daily, weekly, monthly) plus manual. */
export const TIERS = ['hourly', 'daily', 'weekly', 'monthly', 'manual'] as const;
export type Tier = (typeof TIERS)[number];

/** Artifact ids: UTC time to the millisecond, then 6 random hex digits. They sort by time. */
export const ARTIFACT_ID_PATTERN = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;
const KIND_PATTERN = /^[a-z][a-z0-9-]{0,39}$/;

/** A validated manifest (see docs/ARCHITECTURE.md, "Artifacts"). */
export interface Manifest {
  /** Always {@link MANIFEST_SCHEMA}. */
  schema: typeof MANIFEST_SCHEMA;
  /** See {@link ARTIFACT_ID_PATTERN}. */
  id: string;
  /** One of {@link KNOWN_KINDS}, or another lower-case name. */
  kind: string;
  tier: Tier;
  /** An incremental holds the changes since its `parent`; a full one stands alone. */
  type: 'full' | 'incremental';
  /** The artifact an incremental builds on. */
  parent?: string | undefined;
  /** ISO UTC datetime, like `2026-11-22T02:00:00.000Z`. */
  createdAt: string;
  /** ISO UTC datetime. */
  completedAt: string;
  /** What was backed up, without credentials: "postgres://app@db-1:5432/app". */
  source: { description: string; host?: string | undefined; environment?: string | undefined };
  /** The program that made the artifact. */
  tool: { name: string; version: string };
  /** The server the data came from (e.g. PostgreSQL 15.8), when there is one. */
  server?: { name: string; version: string } | undefined;
  /** The stored object: what `store.get(key)` returns, byte for byte. */
  object: { key: string; size: number; sha256: string };
  /** Bytes before compression and encryption, when known. */
  plainSize?: number | undefined;
  compression: 'none' | 'gzip' | 'zstd';
  /** How the object is sealed: drkit's sealed stream format and the key id (never the key). */
  encryption: { format: 'drkit-sealed/1'; algorithm: 'aes-256-gcm'; keyId: string } | { format: 'none' };
  /** What a restore must reproduce: row counts and sequence values, key counts, file hashes. */
  fingerprint?: Record<string, unknown> | undefined;
  /** The last verification of this artifact (a restore test, or a hash check). */
  verification?: { status: 'passed' | 'failed'; at: string; level: string; detail?: string | undefined } | undefined;
  /** Free-form tags, such as `snapshot: "true"` (see `Catalog.latest`). */
  labels?: Record<string, string> | undefined;
}

// The validator below replaced a zod schema, whose import cost ~20 MB of memory in every
// backup process. It keeps that schema's rules, issue order and messages (zod's English
// ones where the schema had none), so error messages and stored manifests did not change.

/**
 * One problem in a manifest. A `fatal` one (a wrong type or value, as opposed to a failed
 * length or format check, or an unknown key) means the value is too broken for the rules
 * that span several fields: zod skipped those then, and so does this.
 */
interface Issue {
  path: string;
  message: string;
  fatal: boolean;
}

/** Checks `value` found at `path`, pushing its problems; returns what to keep of it. */
type Check = ((value: unknown, path: string, issues: Issue[]) => unknown) & { optional?: true };

const at = (path: string, key: string) => (path === '' ? key : `${path}.${key}`);

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  isObject(value) && [Object.prototype, null].includes(Object.getPrototypeOf(value));

/** How zod names the type of a value it did not expect: `received array`, `received NaN`, `received Date`. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'object' && Object.getPrototypeOf(value) !== Object.prototype) {
    const ctor = (value as { constructor?: unknown }).constructor;
    if (typeof ctor === 'function' && ctor.name) return ctor.name;
  }
  return typeof value;
}

/** Pushes the issue of a value that is not of the `expected` type at all. */
function wrongType(issues: Issue[], path: string, expected: string, value: unknown): undefined {
  issues.push({ path, message: `Invalid input: expected ${expected}, received ${typeName(value)}`, fatal: true });
  return undefined;
}

/** `check`, or nothing when the value is absent (an absent key stays absent from the result). */
function optional(check: Check): Check {
  const optionalCheck: Check = (value, path, issues) => (value === undefined ? undefined : check(value, path, issues));
  optionalCheck.optional = true;
  return optionalCheck;
}

/** A string checked in order for length, `pattern` (reported as `message`), then `refine`. */
function str(rules: {
  min?: number;
  max?: number;
  pattern?: RegExp;
  message?: string;
  refine?: { test: (value: string) => boolean; message: string };
}): Check {
  return (value, path, issues) => {
    if (typeof value !== 'string') return wrongType(issues, path, 'string', value);
    const fail = (message: string) => issues.push({ path, message, fatal: false });
    if (rules.min !== undefined && value.length < rules.min) fail(`Too small: expected string to have >=${rules.min} characters`);
    if (rules.max !== undefined && value.length > rules.max) fail(`Too big: expected string to have <=${rules.max} characters`);
    if (rules.pattern && !rules.pattern.test(value)) fail(rules.message ?? `Invalid string: must match pattern ${rules.pattern}`);
    if (rules.refine && !rules.refine.test(value)) fail(rules.refine.message);
    return value;
  };
}

/** A non-negative integer that is exact as a double. */
const count: Check = (value, path, issues) => {
  if (typeof value !== 'number' || !Number.isFinite(value)) return wrongType(issues, path, 'number', value);
  if (!Number.isInteger(value)) return wrongType(issues, path, 'int', value);
  if (value > Number.MAX_SAFE_INTEGER)
    issues.push({ path, message: `Too big: expected int to be <=${Number.MAX_SAFE_INTEGER}`, fatal: false });
  if (value < Number.MIN_SAFE_INTEGER)
    issues.push({ path, message: `Too small: expected int to be >=${Number.MIN_SAFE_INTEGER}`, fatal: false });
  if (value < 0) issues.push({ path, message: 'Too small: expected number to be >=0', fatal: false });
  return value;
};

/** One of `options`: an enum, or a literal when there is a single option. */
function oneOf(options: readonly string[]): Check {
  return (value, path, issues) => {
    if (options.includes(value as string)) return value;
    const expected = options.map((option) => `"${option}"`);
    const message =
      expected.length === 1 ? `Invalid input: expected ${expected[0]}` : `Invalid option: expected one of ${expected.join('|')}`;
    issues.push({ path, message, fatal: true });
    return undefined;
  };
}

/**
 * An object with the keys of `shape`, returned with those keys alone, in `shape`'s order.
 * `strict` objects refuse other keys, named after the fields' own problems; the others drop them.
 */
function object(shape: Record<string, Check>, mode: 'strict' | 'strip' = 'strict'): Check {
  return (value, path, issues) => {
    if (!isObject(value)) return wrongType(issues, path, 'object', value);
    const result: Record<string, unknown> = {};
    for (const [key, check] of Object.entries(shape)) {
      const present = key in value;
      if (!present && check.optional) continue;
      const checked = check(value[key], at(path, key), issues);
      if (present) result[key] = checked;
    }
    const unknown = mode === 'strict' ? Object.keys(value).filter((key) => !Object.hasOwn(shape, key)) : [];
    if (unknown.length > 0) {
      const keys = unknown.map((key) => `"${key}"`).join(', ');
      issues.push({ path, message: `Unrecognized key${unknown.length > 1 ? 's' : ''}: ${keys}`, fatal: false });
    }
    return result;
  };
}

/** A plain object of any keys that pass `key`, each value checked by `entry`. */
function record(key: Check, entry: Check): Check {
  return (value, path, issues) => {
    if (!isPlainObject(value)) return wrongType(issues, path, 'record', value);
    const result: Record<string, unknown> = {};
    for (const [name, item] of Object.entries(value)) {
      // Assigning it would set the result's prototype instead of adding a key.
      if (name === '__proto__') continue;
      const keyIssues: Issue[] = [];
      key(name, at(path, name), keyIssues);
      if (keyIssues.length > 0) {
        issues.push({ path: at(path, name), message: 'Invalid key in record', fatal: true });
        continue;
      }
      result[name] = entry(item, at(path, name), issues);
    }
    return result;
  };
}

/**
 * The first of `options` that `value` passes. Otherwise, when a single option failed on details
 * only (lengths, formats, unknown keys), that option's problems, as they are the useful ones.
 */
function union(...options: Check[]): Check {
  return (value, path, issues) => {
    const attempts = options.map((check) => {
      const own: Issue[] = [];
      return { result: check(value, path, own), issues: own };
    });
    const passed = attempts.find((attempt) => attempt.issues.length === 0);
    if (passed) return passed.result;
    const close = attempts.filter((attempt) => !attempt.issues.some((issue) => issue.fatal));
    if (close.length === 1 && close[0]) {
      issues.push(...close[0].issues);
      return close[0].result;
    }
    issues.push({ path, message: 'Invalid input', fatal: true });
    return undefined;
  };
}

// A URL with a password in it: `scheme://user:secret@host`. Manifests never carry those.
const CREDENTIAL_URL = /[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:[^/\s@]+@/i;

const safeText = str({
  max: 1000,
  refine: {
    test: (value) => !CREDENTIAL_URL.test(value),
    message: 'contains a URL with a password; describe the source without credentials',
  },
});

// Exactly `YYYY-MM-DDTHH:MM:SS[.fraction]Z`: no offset, and seconds are required.
const ISO_UTC = /^(\d{4})-(\d{2})-(\d{2})T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?Z$/;

/** Whether `text` is an ISO UTC datetime that exists in the (proleptic Gregorian) calendar. */
function isIsoUtc(text: string): boolean {
  const m = ISO_UTC.exec(text);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return days !== undefined && day >= 1 && day <= days;
}

const isoDate: Check = (value, path, issues) => {
  if (typeof value !== 'string') return wrongType(issues, path, 'string', value);
  if (!isIsoUtc(value)) issues.push({ path, message: 'Invalid ISO datetime', fatal: false });
  return value;
};

const shortText = str({ min: 1, max: 100 });
const anything: Check = (value) => value;

const checkFields = object({
  schema: oneOf([MANIFEST_SCHEMA]),
  id: str({ pattern: ARTIFACT_ID_PATTERN, message: 'must look like 20261122T020000000Z-1a2b3c' }),
  kind: str({ pattern: KIND_PATTERN, message: 'lower-case letters, digits and dashes, starting with a letter' }),
  tier: oneOf(TIERS),
  type: oneOf(['full', 'incremental']),
  parent: optional(str({ pattern: ARTIFACT_ID_PATTERN })),
  createdAt: isoDate,
  completedAt: isoDate,
  source: object({ description: safeText, host: optional(safeText), environment: optional(safeText) }),
  tool: object({ name: shortText, version: shortText }),
  server: optional(object({ name: shortText, version: shortText })),
  object: object({
    key: str({ min: 1, max: 1024 }),
    size: count,
    sha256: str({ pattern: /^[0-9a-f]{64}$/, message: 'lower-case hex SHA-256' }),
  }),
  plainSize: optional(count),
  compression: oneOf(['none', 'gzip', 'zstd']),
  encryption: union(
    object({ format: oneOf(['drkit-sealed/1']), algorithm: oneOf(['aes-256-gcm']), keyId: str({ min: 1, max: 200 }) }),
    object({ format: oneOf(['none']) }),
  ),
  fingerprint: optional(record(anything, anything)),
  verification: optional(
    object({ status: oneOf(['passed', 'failed']), at: isoDate, level: shortText, detail: optional(safeText) }, 'strip'),
  ),
  labels: optional(record(str({ max: 100 }), safeText)),
});

/** A new time-sortable artifact id for `at`. */
export function newArtifactId(at: Date = new Date()): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace('.', '');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

/** The time an artifact id was made at. */
export function artifactIdTime(id: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z/.exec(id);
  if (!m) throw new StoreError('STORE_MANIFEST_INVALID', `"${id}" is not an artifact id (like 20261122T020000000Z-1a2b3c)`);
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
}

/** Checks that `kind` is a valid artifact kind. @throws StoreError STORE_OPTIONS_INVALID */
export function checkKind(kind: string): string {
  if (!KIND_PATTERN.test(kind))
    throw new StoreError(
      'STORE_OPTIONS_INVALID',
      `"${kind.slice(0, 60)}" is not a valid artifact kind: use lower-case letters, digits and dashes (e.g. ${KNOWN_KINDS.slice(0, 4).join(', ')})`,
    );
  return kind;
}

/**
 * Validates `value` as a manifest.
 * @throws StoreError STORE_MANIFEST_INVALID naming every bad field
 */
export function parseManifest(value: unknown, where = 'manifest'): Manifest {
  const issues: Issue[] = [];
  const manifest = checkFields(value, '', issues) as Manifest;
  if (!issues.some((issue) => issue.fatal) && (manifest.type === 'incremental') !== (manifest.parent !== undefined))
    issues.push({ path: 'parent', message: 'an incremental artifact names its parent, and only an incremental does', fatal: false });
  if (issues.length === 0) return manifest;
  const fields = issues.map((issue) => `${issue.path || '(root)'}: ${issue.message}`).join('; ');
  throw new StoreError('STORE_MANIFEST_INVALID', `${where} is not a valid drkit manifest (${fields})`);
}

/**
 * Removes credentials from a URL-like source description: `postgres://app:secret@db/app`
 * becomes `postgres://app@db/app`. Use it on anything that goes into a manifest.
 */
export function redactCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^/\s@]+@/gi, '$1@');
}
