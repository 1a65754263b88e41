import { describe, expect, it } from 'vitest';
import { isStoreError } from '../src/errors.js';
import { parseManifest } from '../src/manifest.js';
import { VALID_MANIFEST, VALID_MANIFEST_ID } from './valid-manifest.js';

// These pin what the zod schema accepted and reported, message for message, so that the
// hand-written validator that replaced it keeps the same contract.

const ID = VALID_MANIFEST_ID;
const CREDENTIALS = 'contains a URL with a password; describe the source without credentials';
const PARENT = 'an incremental artifact names its parent, and only an incremental does';

const valid = VALID_MANIFEST;

/** The field list of the STORE_MANIFEST_INVALID error `value` throws, or 'accepted'. */
function problems(value: unknown): string {
  try {
    parseManifest(value, 'm.json');
  } catch (error) {
    expect(isStoreError(error, 'STORE_MANIFEST_INVALID')).toBe(true);
    const match = /^m\.json is not a valid drkit manifest \((.*)\)$/s.exec((error as Error).message);
    expect(match).not.toBeNull();
    return match?.[1] ?? '';
  }
  return 'accepted';
}

const bad = (patch: object) => problems({ ...valid, ...patch });

describe('parseManifest', () => {
  it('returns only the known keys, leaving absent optional fields absent', () => {
    const parsed = parseManifest(valid);
    expect(parsed).toEqual(valid);
    expect(Object.keys(parsed)).toEqual(Object.keys(valid));
    expect(parsed).not.toBe(valid);
    expect(Object.keys(parseManifest({ ...valid, type: 'incremental', parent: ID, plainSize: 0 }))).toEqual([
      ...Object.keys(valid).slice(0, 5),
      'parent',
      ...Object.keys(valid).slice(5, 10),
      'plainSize',
      ...Object.keys(valid).slice(10),
    ]);
  });

  it('accepts every optional field', () => {
    const full = {
      ...valid,
      type: 'incremental',
      parent: ID,
      source: { description: 'redis://db-1:6379/0', host: 'db-1', environment: 'prod' },
      server: { name: 'PostgreSQL', version: '15.8' },
      plainSize: 123,
      encryption: { format: 'none' },
      fingerprint: { rows: { users: 3 }, list: [1, 2], empty: null },
      verification: { status: 'failed', at: '2026-11-22T03:00:00Z', level: 'restore', detail: 'row counts differ' },
      labels: { snapshot: 'true', '': '' },
    };
    expect(parseManifest(full)).toEqual(full);
  });

  it('reports several bad fields together, in schema order, unknown keys after the fields', () => {
    expect(
      bad({
        extra: 1,
        other: 2,
        id: 'latest',
        tier: 'yearly',
        object: { ...valid.object, size: -1, sha256: 'XYZ' },
        tool: { name: '', version: 'v'.repeat(101) },
      }),
    ).toBe(
      [
        'id: must look like 20261122T020000000Z-1a2b3c',
        'tier: Invalid option: expected one of "hourly"|"daily"|"weekly"|"monthly"|"manual"',
        'tool.name: Too small: expected string to have >=1 characters',
        'tool.version: Too big: expected string to have <=100 characters',
        'object.size: Too small: expected number to be >=0',
        'object.sha256: lower-case hex SHA-256',
        '(root): Unrecognized keys: "extra", "other"',
      ].join('; '),
    );
  });

  it('reports every missing field of an empty object', () => {
    expect(problems({})).toBe(
      [
        'schema: Invalid input: expected "drkit.manifest/1"',
        'id: Invalid input: expected string, received undefined',
        'kind: Invalid input: expected string, received undefined',
        'tier: Invalid option: expected one of "hourly"|"daily"|"weekly"|"monthly"|"manual"',
        'type: Invalid option: expected one of "full"|"incremental"',
        'createdAt: Invalid input: expected string, received undefined',
        'completedAt: Invalid input: expected string, received undefined',
        'source: Invalid input: expected object, received undefined',
        'tool: Invalid input: expected object, received undefined',
        'object: Invalid input: expected object, received undefined',
        'compression: Invalid option: expected one of "none"|"gzip"|"zstd"',
        'encryption: Invalid input',
      ].join('; '),
    );
  });

  it('names unknown keys at the root and inside nested objects', () => {
    expect(bad({ extra: 1 })).toBe('(root): Unrecognized key: "extra"');
    expect(bad({ object: { ...valid.object, bucket: 'b' }, source: { ...valid.source, password: 'x' } })).toBe(
      'source: Unrecognized key: "password"; object: Unrecognized key: "bucket"',
    );
    expect(bad({ server: { name: 'pg', version: '15', os: 'linux' } })).toBe('server: Unrecognized key: "os"');
  });

  it('accepts ISO UTC datetimes with or without a fraction of a second', () => {
    for (const at of ['2026-11-22T02:00:00Z', '2026-11-22T02:00:00.1Z', '2026-11-22T02:00:00.123456789Z', '2028-02-29T23:59:59Z']) {
      expect(bad({ createdAt: at })).toBe('accepted');
    }
  });

  it('refuses offsets, missing seconds and impossible calendar values', () => {
    for (const at of [
      '2026-11-22T02:00:00+01:00',
      '2026-11-22T02:00:00+00:00',
      '2026-11-22T02:00Z',
      '2026-11-22 02:00:00Z',
      '2026-11-22T02:00:00z',
      '2026-11-22T02:00:00',
      '2026-02-30T00:00:00Z',
      '2027-02-29T00:00:00Z',
      '2100-02-29T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-11-22T24:00:00Z',
      '2026-11-22T02:60:00Z',
      '2026-11-22T02:00:60Z',
      '2026-11-22T02:00:00.Z',
    ]) {
      expect(bad({ createdAt: at }), at).toBe('createdAt: Invalid ISO datetime');
    }
    expect(bad({ createdAt: 1_790_000_000_000, completedAt: new Date() })).toBe(
      'createdAt: Invalid input: expected string, received number; completedAt: Invalid input: expected string, received Date',
    );
  });

  it('refuses negative, fractional and non-finite sizes', () => {
    expect(bad({ object: { ...valid.object, size: -1 } })).toBe('object.size: Too small: expected number to be >=0');
    expect(bad({ object: { ...valid.object, size: 1.5 } })).toBe('object.size: Invalid input: expected int, received number');
    expect(bad({ object: { ...valid.object, size: -1.5 } })).toBe('object.size: Invalid input: expected int, received number');
    expect(bad({ object: { ...valid.object, size: '10' } })).toBe('object.size: Invalid input: expected number, received string');
    expect(bad({ object: { ...valid.object, size: Number.NaN }, plainSize: Number.POSITIVE_INFINITY })).toBe(
      'object.size: Invalid input: expected number, received NaN; plainSize: Invalid input: expected number, received Infinity',
    );
    expect(bad({ plainSize: 2 ** 53 })).toBe('plainSize: Too big: expected int to be <=9007199254740991');
    expect(bad({ plainSize: 0 })).toBe('accepted');
  });

  it('requires a parent for an incremental, and only for an incremental', () => {
    expect(bad({ type: 'incremental' })).toBe(`parent: ${PARENT}`);
    expect(bad({ parent: ID })).toBe(`parent: ${PARENT}`);
    expect(bad({ type: 'incremental', parent: ID })).toBe('accepted');
    expect(bad({ type: 'incremental', parent: 'latest' })).toBe(
      'parent: Invalid string: must match pattern /^\\d{8}T\\d{9}Z-[0-9a-f]{6}$/',
    );
    // Like zod's refine, the rule is checked after the fields, and only when no field has a
    // wrong type or value (format problems and unknown keys do not stop it).
    expect(bad({ type: 'incremental', id: 'x', extra: 1 })).toBe(
      `id: must look like 20261122T020000000Z-1a2b3c; (root): Unrecognized key: "extra"; parent: ${PARENT}`,
    );
    expect(bad({ type: 'incremental', tier: 'yearly' })).toBe(
      'tier: Invalid option: expected one of "hourly"|"daily"|"weekly"|"monthly"|"manual"',
    );
  });

  it('refuses URLs with passwords in text fields and labels, without repeating them', () => {
    const message = bad({
      source: { description: 'postgres://app:hunter2@db-1/app', host: 'db-1' },
      labels: { origin: 'redis://:s3cret@cache:6379', ok: 'https://example.com/a@b' },
    });
    expect(message).toBe(`source.description: ${CREDENTIALS}; labels.origin: ${CREDENTIALS}`);
    expect(message).not.toMatch(/hunter2|s3cret/);
    expect(bad({ source: { description: `postgres://a:b@h/${'x'.repeat(1000)}` } })).toBe(
      `source.description: Too big: expected string to have <=1000 characters; source.description: ${CREDENTIALS}`,
    );
    expect(bad({ verification: { status: 'passed', at: '2026-11-22T03:00:00Z', level: 'hash', detail: 'ftp://u:p@h/' } })).toBe(
      `verification.detail: ${CREDENTIALS}`,
    );
  });

  it('checks label keys and values', () => {
    expect(bad({ labels: { ['k'.repeat(101)]: 'v', n: 5, ['k'.repeat(100)]: 'v' } })).toBe(
      `labels.${'k'.repeat(101)}: Invalid key in record; labels.n: Invalid input: expected string, received number`,
    );
  });

  it('refuses arrays where objects are expected', () => {
    expect(bad({ source: [], tool: ['drkit', '0.1.0'], object: [], fingerprint: [], verification: [], labels: [] })).toBe(
      [
        'source: Invalid input: expected object, received array',
        'tool: Invalid input: expected object, received array',
        'object: Invalid input: expected object, received array',
        'fingerprint: Invalid input: expected record, received array',
        'verification: Invalid input: expected object, received array',
        'labels: Invalid input: expected record, received array',
      ].join('; '),
    );
  });

  it('refuses a root that is not an object', () => {
    expect(problems(null)).toBe('(root): Invalid input: expected object, received null');
    expect(problems([valid])).toBe('(root): Invalid input: expected object, received array');
    expect(problems('{}')).toBe('(root): Invalid input: expected object, received string');
    expect(problems(undefined)).toBe('(root): Invalid input: expected object, received undefined');
  });

  it('keeps verification open: unknown keys are accepted and dropped', () => {
    const verification = { status: 'passed', at: '2026-11-22T03:00:00.5Z', level: 'hash' };
    const parsed = parseManifest({ ...valid, verification: { ...verification, extra: 'x', by: { host: 'h' } } });
    expect(parsed.verification).toEqual(verification);
    expect(Object.keys(parsed.verification ?? {})).toEqual(['status', 'at', 'level']);
    expect(bad({ verification: { ...verification, status: 'ok', at: '2026-11-22' } })).toBe(
      'verification.status: Invalid option: expected one of "passed"|"failed"; verification.at: Invalid ISO datetime',
    );
  });

  it('checks the encryption as one of two strict shapes', () => {
    expect(bad({ encryption: { format: 'none', keyId: 'k1' } })).toBe('encryption: Unrecognized key: "keyId"');
    expect(bad({ encryption: { ...valid.encryption, key: 'secret' } })).toBe('encryption: Unrecognized key: "key"');
    expect(bad({ encryption: { ...valid.encryption, keyId: '' } })).toBe(
      'encryption.keyId: Too small: expected string to have >=1 characters',
    );
    expect(bad({ encryption: { format: 'drkit-sealed/1', algorithm: 'aes-128-cbc', keyId: 'k1' } })).toBe('encryption: Invalid input');
    expect(bad({ encryption: { ...valid.encryption, keyId: 7 } })).toBe('encryption: Invalid input');
    expect(bad({ encryption: 'none' })).toBe('encryption: Invalid input');
  });

  it('copies records without letting a __proto__ key through', () => {
    const parsed = parseManifest(
      JSON.parse(JSON.stringify({ ...valid, fingerprint: { a: 1 } }).replace('"a":1', '"a":1,"__proto__":{"x":1}')),
    );
    expect(Object.getPrototypeOf(parsed.fingerprint)).toBe(Object.prototype);
    expect(parsed.fingerprint).toEqual({ a: 1 });
  });
});
