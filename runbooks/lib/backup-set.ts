// The plans' backup set: PostgreSQL (full, with its roles and tablespaces), Redis (the RDB
// snapshot and the logical export with TTLs), the user files (incremental), the configuration
// files and the double-sealed secrets. The backup runbook takes it on a schedule, the drill
// takes one before it restores, and verify-backups checks that the newest one of every kind
// is complete, opens, and is younger than its RPO. What a set holds is derived from the
// environment's `vars` here, once, so the three agree.

import { type OpenKeys, open } from '@drkit/crypto-stream';
import { POSTGRES_BASE_KIND } from '@drkit/postgres-backup';
import type { BaseContext } from '@drkit/runbook';
import { type Catalog, type Manifest, readStored } from '@drkit/s3-store';
import { type BackupComponent, type Platform, platformOf } from './platform.ts';
import { SECRETS_KIND } from './secrets.ts';

/** The catalog kind of configuration-file backups. */
export const CONFIG_KIND = 'config';

/** The first plan's RPO, for every kind the environment does not give its own. */
export const DEFAULT_RPO = '24h';

/** A tier a backup run can take. */
export type BackupTier = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'manual';

/**
 * The components a backup of `tier` takes: the tier's own list, else `vars.backup.components`,
 * else every component the environment configures (a component without its section, e.g. no
 * `vars.redis`, is not part of the set).
 */
export function componentsOf(platform: Platform, tier: BackupTier): BackupComponent[] {
  const configured: BackupComponent[] = [];
  if (platform.postgres) configured.push('postgres');
  if (platform.redis) configured.push('redis');
  if (platform.files) configured.push('files');
  if (platform.backup.configFiles.length > 0) configured.push('config');
  if (platform.envFile !== undefined) configured.push('secrets');
  return platform.backup.tiers[tier]?.components ?? platform.backup.components ?? configured;
}

/** The catalog kinds a component stores, in the order they are taken. */
export function kindsOfComponent(platform: Platform, component: BackupComponent): string[] {
  switch (component) {
    case 'postgres':
      return ['postgres'];
    case 'postgres-base':
      return [POSTGRES_BASE_KIND];
    case 'redis':
      return platform.backup.redisMode === 'both'
        ? ['redis-rdb', 'redis-logical']
        : [platform.backup.redisMode === 'rdb' ? 'redis-rdb' : 'redis-logical'];
    case 'files':
      return ['files'];
    case 'config':
      return [CONFIG_KIND];
    case 'secrets':
      return [SECRETS_KIND];
  }
}

/** The component a catalog kind belongs to (companions such as postgres-globals to their component). */
export function componentOfKind(kind: string): BackupComponent {
  if (kind === POSTGRES_BASE_KIND) return 'postgres-base';
  if (kind.startsWith('postgres')) return 'postgres';
  if (kind.startsWith('redis')) return 'redis';
  return kind === CONFIG_KIND ? 'config' : kind === SECRETS_KIND ? 'secrets' : 'files';
}

/** Every catalog kind a complete set of the environment holds (the daily tier's components). */
export function expectedKinds(ctx: BaseContext<unknown>, tier: BackupTier = 'daily'): string[] {
  const platform = platformOf(ctx);
  return componentsOf(platform, tier).flatMap((c) => kindsOfComponent(platform, c));
}

/** Milliseconds of an RPO text ("90m", "1h", "7d"). */
export function rpoMs(text: string): number {
  const match = /^(\d+)(m|h|d)$/.exec(text);
  if (!match) throw new Error(`"${text}" is not an RPO: use minutes, hours or days, e.g. "1h"`);
  return Number(match[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'm' | 'h' | 'd'];
}

/** The RPO of a kind: `vars.backup.rpo[kind]`, else 24 hours. */
export function rpoOf(platform: Platform, kind: string): string {
  return platform.backup.rpo[kind] ?? DEFAULT_RPO;
}

/** What {@link verifyArtifact} found. */
export interface ArtifactCheck {
  id: string;
  kind: string;
  ok: boolean;
  /** Stored bytes read and hashed. */
  storedBytes: number;
  /** Plaintext bytes after every chunk authenticated (0 when the read failed before). */
  plainBytes: number;
  /** What was checked, or what failed (an error code first). */
  detail: string;
}

/**
 * Reads an artifact back and checks it end to end: the stored bytes against the manifest's
 * size and SHA-256, then every sealed chunk authenticated and decrypted with `keys` (which
 * proves the backup is encrypted, with a key the operators hold), and the plaintext size
 * against the manifest. Never throws for a bad artifact: the finding is in the result. With
 * `record`, the outcome goes into the manifest, so "latest" skips a backup that failed.
 */
export async function verifyArtifact(
  catalog: Catalog,
  manifest: Manifest,
  keys: OpenKeys,
  options: { record?: boolean; signal?: AbortSignal } = {},
): Promise<ArtifactCheck> {
  let storedBytes = 0;
  let plainBytes = 0;
  let ok = false;
  let detail: string;
  if (manifest.encryption.format === 'none')
    return {
      id: manifest.id,
      kind: manifest.kind,
      ok: false,
      storedBytes,
      plainBytes,
      detail: 'not encrypted: the manifest says format "none"',
    };
  const keyId = manifest.encryption.keyId;
  try {
    const stored = readStored(catalog, manifest, {
      ...(options.signal ? { signal: options.signal } : {}),
      onBytes: (n) => {
        storedBytes += n;
      },
    });
    let chunks = 0;
    for await (const piece of open(stored, {
      keys,
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (p) => {
        chunks = p.chunks;
      },
    }))
      plainBytes += (piece as Buffer).length;
    if (manifest.plainSize !== undefined && manifest.plainSize !== plainBytes)
      detail = `STORE_INTEGRITY: decrypted to ${plainBytes} bytes, the manifest recorded ${manifest.plainSize}`;
    else {
      ok = true;
      detail = `${storedBytes} stored bytes match the manifest's SHA-256; ${chunks} AES-256-GCM chunks authenticated (key ${keyId}); ${plainBytes} bytes`;
    }
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    detail = `${typeof code === 'string' ? `${code}: ` : ''}${error instanceof Error ? error.message : String(error)}`;
  }
  // A failure of the reader (its key, its access, an abort) says nothing about the artifact:
  // recording it would make "latest" skip a good backup because one host had the wrong key.
  const readerFault =
    !ok &&
    /^(SEAL_UNKNOWN_KEY|SEAL_WRONG_KEY|SEAL_KEY_|SEAL_ABORTED|STORE_UNAVAILABLE|STORE_ACCESS_DENIED|STORE_BUCKET_NOT_FOUND|STORE_ABORTED|STORE_IO)/.test(
      detail,
    );
  if (options.record === true && !readerFault)
    await catalog
      .recordVerification(manifest, {
        status: ok ? 'passed' : 'failed',
        at: new Date().toISOString(),
        level: 'authenticated-read',
        detail,
      })
      .catch(() => {});
  return { id: manifest.id, kind: manifest.kind, ok, storedBytes, plainBytes, detail };
}
