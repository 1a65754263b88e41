// The plans' fourth backup component: the application's secrets (API keys, database
// credentials, JWT secrets, cloud keys) as an encrypted JSON export, double AES-256-GCM.
// The artifact is crypto-stream's double seal (the secrets key inside, the backup key
// outside) stored like any other backup; a restore writes the `.env` file with mode 0600.

import { readFile } from 'node:fs/promises';
import { VERSION } from '@drkit/cli';
import { type OpenKeys, openSecrets, type SealOptions, type Secrets, sealingKeyId, sealSecrets, writeEnvFile } from '@drkit/crypto-stream';
import { type Catalog, type Manifest, readStored, type Tier } from '@drkit/s3-store';

/** The catalog kind of secrets backups. */
export const SECRETS_KIND = 'secrets';

/** Reads a `.env` file: NAME=value lines, values optionally quoted the way `formatEnv` writes them. */
export function parseEnvFile(text: string): Secrets {
  const secrets: Secrets = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    const [, name = '', value = ''] = match;
    secrets[name] =
      value.startsWith('"') && value.endsWith('"') && value.length >= 2
        ? value.slice(1, -1).replace(/\\(["\\nr])/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c))
        : value.startsWith("'") && value.endsWith("'") && value.length >= 2
          ? value.slice(1, -1)
          : value;
  }
  return secrets;
}

/** Options of {@link backupSecrets}. */
export interface BackupSecretsOptions {
  catalog: Catalog;
  /** The secrets, or the `.env` file to read them from. */
  secrets: Secrets | { envFile: string };
  /** The inner key (for whoever may read secrets) and the outer backup key; they must differ. */
  keys: { secretsKey: SealOptions['key']; backupKey: SealOptions['key'] };
  tier?: Tier;
  /** What was backed up, for the manifest (a path or a name, never a value). */
  source?: string;
  environment?: string;
}

/**
 * Double-seals the secrets and stores them as a `secrets` backup. The manifest (written last)
 * records the secrets' names, never a value.
 */
export async function backupSecrets(options: BackupSecretsOptions): Promise<Manifest> {
  const secrets = 'envFile' in options.secrets ? parseEnvFile(await readFile(options.secrets.envFile, 'utf8')) : options.secrets;
  const sealed = await sealSecrets(secrets, options.keys);
  return options.catalog.put({
    kind: SECRETS_KIND,
    tier: options.tier ?? 'manual',
    source: {
      description: options.source ?? ('envFile' in options.secrets ? options.secrets.envFile : 'secrets'),
      ...(options.environment !== undefined ? { environment: options.environment } : {}),
    },
    tool: { name: 'drkit', version: VERSION },
    compression: 'none',
    encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: sealingKeyId(options.keys.backupKey) },
    body: sealed,
    // The names are what an operator checks after a restore; the values stay sealed.
    fingerprint: { secrets: Object.keys(secrets).length, names: Object.keys(secrets).sort() },
  });
}

/** Options of {@link restoreSecrets}. */
export interface RestoreSecretsOptions {
  catalog: Catalog;
  /** A backup id or "latest". */
  backup: string;
  keys: { secretsKeys: OpenKeys; backupKeys: OpenKeys };
  /** Where the `.env` file goes (mode 0600, written atomically); omitted: nothing is written. */
  envFile?: string;
  signal?: AbortSignal;
}

/** Fetches a secrets backup, checks its stored bytes, opens both layers and writes the `.env` file. */
export async function restoreSecrets(options: RestoreSecretsOptions): Promise<{ manifest: Manifest; names: string[] }> {
  const manifest = await options.catalog.resolve(options.backup, SECRETS_KIND);
  const chunks: Buffer[] = [];
  for await (const chunk of readStored(options.catalog, manifest, options.signal ? { signal: options.signal } : {})) chunks.push(chunk);
  const secrets = await openSecrets(Buffer.concat(chunks), options.keys);
  if (options.envFile !== undefined) await writeEnvFile(options.envFile, secrets);
  return { manifest, names: Object.keys(secrets).sort() };
}
