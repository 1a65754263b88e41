/** A complete, valid manifest, for the tests of manifest validation to break one field at a time. */
export const VALID_MANIFEST_ID = '20261122T020000000Z-1a2b3c';

export const VALID_MANIFEST = {
  schema: 'drkit.manifest/1',
  id: VALID_MANIFEST_ID,
  kind: 'postgres',
  tier: 'daily',
  type: 'full',
  createdAt: '2026-11-22T02:00:00.000Z',
  completedAt: '2026-11-22T02:03:00.000Z',
  source: { description: 'postgres://app@db-1:5432/app' },
  tool: { name: 'drkit', version: '0.1.0' },
  object: { key: `artifacts/postgres/${VALID_MANIFEST_ID}.sealed`, size: 10, sha256: 'a'.repeat(64) },
  compression: 'gzip',
  encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: 'k1' },
};
