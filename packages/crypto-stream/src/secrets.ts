import { SealError } from './errors.js';
import { writeAtomically } from './files.js';
import type { OpenKeys } from './kdf.js';
import { openBuffer } from './open.js';
import { type SealOptions, sealBuffer } from './seal.js';

/** Secrets as environment variables: name to value. */
export type Secrets = Record<string, string>;

/** The two independent keys of double-sealed secrets. */
export interface SecretsSealKeys {
  /** Seals the secrets themselves (the inner layer): held by whoever may read secrets. */
  secretsKey: SealOptions['key'];
  /** Seals the inner artifact like any backup (the outer layer). */
  backupKey: SealOptions['key'];
}

/** Keys to open double-sealed secrets. */
export interface SecretsOpenKeys {
  secretsKeys: OpenKeys;
  backupKeys: OpenKeys;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function validate(secrets: unknown): Secrets {
  if (typeof secrets !== 'object' || secrets === null || Array.isArray(secrets))
    throw new SealError('SEAL_SECRETS_INVALID', 'secrets must be an object of NAME: "value" strings');
  for (const [name, value] of Object.entries(secrets)) {
    if (!NAME.test(name)) throw new SealError('SEAL_SECRETS_INVALID', `secret name '${name}' is not a valid environment variable name`);
    if (typeof value !== 'string') throw new SealError('SEAL_SECRETS_INVALID', `secret '${name}' must be a string`);
  }
  return secrets as Secrets;
}

// What identifies a key for the "two different keys" check: the raw key, or the passphrase.
function keyMaterialOf(key: SealOptions['key']): Buffer {
  if ('passphrase' in key) return Buffer.from(`passphrase\0${key.passphrase.normalize('NFC')}`);
  return 'current' in key ? key.current.key : key.key;
}

/**
 * Double-seals secrets: the JSON is sealed with the secrets key (inner layer), and that
 * artifact is sealed again with the backup key (outer layer). Both layers authenticate;
 * the keys must differ, so holding the backup key alone reveals nothing.
 * @throws SealError SEAL_SECRETS_INVALID, SEAL_INVALID_OPTIONS (same key twice)
 */
export async function sealSecrets(secrets: Secrets, keys: SecretsSealKeys): Promise<Buffer> {
  const valid = validate(secrets);
  if (keyMaterialOf(keys.secretsKey).equals(keyMaterialOf(keys.backupKey)))
    throw new SealError('SEAL_INVALID_OPTIONS', 'the secrets key and the backup key must be different keys; generate a second key');
  const json = Buffer.from(JSON.stringify(valid), 'utf8');
  try {
    const sealedInner = await sealBuffer(json, { key: keys.secretsKey, compression: 'none', chunkSize: 64 * 1024 });
    return await sealBuffer(sealedInner, { key: keys.backupKey, compression: 'none', chunkSize: 64 * 1024 });
  } finally {
    json.fill(0);
  }
}

/**
 * Opens double-sealed secrets: the outer layer with the backup keys, then the inner layer
 * with the secrets keys.
 * @throws SealError from either layer (its message says which), SEAL_SECRETS_INVALID
 */
export async function openSecrets(sealed: Uint8Array, keys: SecretsOpenKeys): Promise<Secrets> {
  const inner = await openBuffer(sealed, { keys: keys.backupKeys }).catch((error: unknown) => {
    throw relayer(error, 'outer (backup key) layer');
  });
  const json = await openBuffer(inner, { keys: keys.secretsKeys }).catch((error: unknown) => {
    throw relayer(error, 'inner (secrets key) layer');
  });
  try {
    return validate(JSON.parse(json.toString('utf8')));
  } catch (error) {
    if (error instanceof SealError) throw error;
    throw new SealError('SEAL_SECRETS_INVALID', 'the opened secrets are not a JSON object', { cause: error });
  } finally {
    json.fill(0);
  }
}

function relayer(error: unknown, layer: string): unknown {
  if (!(error instanceof SealError)) return error;
  return new SealError(error.code, `${layer}: ${error.message}`, { cause: error });
}

/** Formats secrets as a `.env` file: NAME="value", with quotes, backslashes and newlines escaped. */
export function formatEnv(secrets: Secrets): string {
  return Object.entries(validate(secrets))
    .map(([name, value]) => `${name}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r')}"`)
    .join('\n')
    .concat('\n');
}

/** Writes secrets as a `.env` file with mode 0600, atomically (temp file, fsync, rename). */
export async function writeEnvFile(path: string, secrets: Secrets): Promise<void> {
  await writeAtomically(path, Buffer.from(formatEnv(secrets), 'utf8'), { mode: 0o600 });
}
