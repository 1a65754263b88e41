import { randomBytes } from 'node:crypto';
import { z } from 'zod';
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
// A URL with a password in it: `scheme://user:secret@host`. Manifests never carry those.
const CREDENTIAL_URL = /[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:[^/\s@]+@/i;

const noCredentials = (value: string) => !CREDENTIAL_URL.test(value);
const safeText = z
  .string()
  .max(1000)
  .refine(noCredentials, { message: 'contains a URL with a password; describe the source without credentials' });

const isoDate = z.iso.datetime({ offset: false });

/** The zod schema of a manifest (see docs/ARCHITECTURE.md, "Artifacts"). */
export const manifestSchema = z
  .strictObject({
    schema: z.literal(MANIFEST_SCHEMA),
    id: z.string().regex(ARTIFACT_ID_PATTERN, 'must look like 20261122T020000000Z-1a2b3c'),
    kind: z.string().regex(KIND_PATTERN, 'lower-case letters, digits and dashes, starting with a letter'),
    tier: z.enum(TIERS),
    type: z.enum(['full', 'incremental']),
    /** The artifact an incremental builds on. */
    parent: z.string().regex(ARTIFACT_ID_PATTERN).optional(),
    createdAt: isoDate,
    completedAt: isoDate,
    /** What was backed up, without credentials: "postgres://app@db-1:5432/app". */
    source: z.strictObject({ description: safeText, host: safeText.optional(), environment: safeText.optional() }),
    tool: z.strictObject({ name: z.string().min(1).max(100), version: z.string().min(1).max(100) }),
    /** The server the data came from (e.g. PostgreSQL 15.8), when there is one. */
    server: z.strictObject({ name: z.string().min(1).max(100), version: z.string().min(1).max(100) }).optional(),
    /** The stored object: what `store.get(key)` returns, byte for byte. */
    object: z.strictObject({
      key: z.string().min(1).max(1024),
      size: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/, 'lower-case hex SHA-256'),
    }),
    /** Bytes before compression and encryption, when known. */
    plainSize: z.number().int().nonnegative().optional(),
    compression: z.enum(['none', 'gzip', 'zstd']),
    /** How the object is sealed: drkit's sealed stream format and the key id (never the key). */
    encryption: z.union([
      z.strictObject({ format: z.literal('drkit-sealed/1'), algorithm: z.literal('aes-256-gcm'), keyId: z.string().min(1).max(200) }),
      z.strictObject({ format: z.literal('none') }),
    ]),
    /** What a restore must reproduce: row counts and sequence values, key counts, file hashes. */
    fingerprint: z.record(z.string(), z.unknown()).optional(),
    /** The last verification of this artifact (a restore test, or a hash check). */
    verification: z
      .object({
        status: z.enum(['passed', 'failed']),
        at: isoDate,
        level: z.string().min(1).max(100),
        detail: safeText.optional(),
      })
      .optional(),
    labels: z.record(z.string().max(100), safeText).optional(),
  })
  .refine((m) => (m.type === 'incremental') === (m.parent !== undefined), {
    message: 'an incremental artifact names its parent, and only an incremental does',
    path: ['parent'],
  });

/** A validated manifest. */
export type Manifest = z.infer<typeof manifestSchema>;

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
  const parsed = manifestSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const fields = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ');
  throw new StoreError('STORE_MANIFEST_INVALID', `${where} is not a valid drkit manifest (${fields})`);
}

/**
 * Removes credentials from a URL-like source description: `postgres://app:secret@db/app`
 * becomes `postgres://app@db/app`. Use it on anything that goes into a manifest.
 */
export function redactCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^/\s@]+@/gi, '$1@');
}
