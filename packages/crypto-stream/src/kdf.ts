import { createCipheriv, createDecipheriv, createHmac, hkdfSync, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { SealError } from './errors.js';
import { type EncodedHeader, HEADER_MAC_LENGTH, type Header, KEY_LENGTH, TAG_LENGTH } from './format.js';
import { checkPassphrase, type Keyring, type MasterKey, type Passphrase } from './keys.js';

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number, options: object) => Promise<Buffer>;

function hkdf(key: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, info, KEY_LENGTH));
}

/** The keys a stream uses, all derived from its random data key. */
export interface StreamKeys {
  chunkKey: Buffer;
  macKey: Buffer;
}

/** Derives the chunk and header-MAC keys from a stream's data key (HKDF-SHA256, salt = stream id). */
export function streamKeys(dataKey: Buffer, streamId: Buffer): StreamKeys {
  return { chunkKey: hkdf(dataKey, streamId, 'drkit-seal/v1/chunk'), macKey: hkdf(dataKey, streamId, 'drkit-seal/v1/header-mac') };
}

/** The key-encryption key: HKDF-SHA256 of the master key, salt = stream id. */
function wrapKeyOf(master: Buffer, streamId: Buffer): Buffer {
  return hkdf(master, streamId, 'drkit-seal/v1/wrap');
}

/** Stretches a passphrase with the header's scrypt parameters. */
export async function passphraseKey(passphrase: string, source: { log2N: number; r: number; p: number; salt: Buffer }): Promise<Buffer> {
  const N = 2 ** source.log2N;
  return scryptAsync(passphrase.normalize('NFC'), source.salt, KEY_LENGTH, {
    N,
    r: source.r,
    p: source.p,
    maxmem: 128 * N * source.r * source.p + 1024 * 1024,
  });
}

/** AES-256-GCM encryption of the data key under the wrap key, with the key block as AAD. */
export function wrapDataKey(master: Buffer, streamId: Buffer, nonce: Buffer, aad: Buffer, dataKey: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', wrapKeyOf(master, streamId), nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(dataKey), cipher.final(), cipher.getAuthTag()]);
}

/** Reverses {@link wrapDataKey}; undefined when the master key does not open it. */
export function unwrapDataKey(master: Buffer, streamId: Buffer, nonce: Buffer, aad: Buffer, wrapped: Buffer): Buffer | undefined {
  const decipher = createDecipheriv('aes-256-gcm', wrapKeyOf(master, streamId), nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(wrapped.subarray(KEY_LENGTH));
  const key = decipher.update(wrapped.subarray(0, KEY_LENGTH));
  try {
    decipher.final();
    return key;
  } catch {
    return undefined;
  }
}

/** HMAC-SHA256 of the header bytes before the MAC. */
export function headerMac(macKey: Buffer, encoded: EncodedHeader): Buffer {
  return createHmac('sha256', macKey).update(encoded.bytes.subarray(0, encoded.macOffset)).digest();
}

/** What opens streams: a keyring, one key, or a passphrase. */
export type OpenKeys = Keyring | MasterKey | Passphrase;

/**
 * The key id a stream sealed with `keys` records (and a manifest names): the keyring's current
 * key, the key's id, or the passphrase's id. Never key material.
 */
export function sealingKeyId(keys: OpenKeys): string {
  if ('current' in keys) return keys.current.id;
  if (isPassphrase(keys)) return keys.id ?? 'passphrase';
  return keys.id;
}

function isPassphrase(keys: OpenKeys): keys is Passphrase {
  return typeof (keys as Passphrase).passphrase === 'string';
}

/**
 * Finds the master key for a header and unwraps the stream's data key, then checks the
 * header MAC. Distinguishes an unknown key id, a wrong key, and a header altered after sealing.
 * @throws SealError SEAL_UNKNOWN_KEY, SEAL_WRONG_KEY, SEAL_KEY_MISSING, SEAL_HEADER_TAMPERED
 */
export async function openHeader(header: Header, encoded: EncodedHeader, keys: OpenKeys): Promise<StreamKeys & { dataKey: Buffer }> {
  let master: Buffer;
  if (header.keySource.kind === 'scrypt') {
    if (!isPassphrase(keys))
      throw new SealError(
        'SEAL_KEY_MISSING',
        'this stream was sealed with a passphrase; set DRKIT_PASSPHRASE (or pass a passphrase) to open it',
      );
    checkPassphrase(keys.passphrase);
    master = await passphraseKey(keys.passphrase, header.keySource);
  } else {
    if (isPassphrase(keys))
      throw new SealError(
        'SEAL_KEY_MISSING',
        `this stream was sealed with the key '${header.keyId}', not a passphrase; set DRKIT_KEY or pass --key-file`,
      );
    const found = 'get' in keys ? keys.get(header.keyId) : keys.id === header.keyId ? keys : undefined;
    if (!found) {
      const have = 'get' in keys ? keys.ids : [keys.id];
      throw new SealError(
        'SEAL_UNKNOWN_KEY',
        `this stream was sealed with the key '${header.keyId}', which is not among the keys given (${have.join(', ') || 'none'}); add that key (old keys stay readable through DRKIT_OLD_KEYS or a key file)`,
      );
    }
    master = found.key;
  }
  const dataKey = unwrapDataKey(master, header.streamId, header.wrapNonce, encoded.wrapAad, header.wrappedKey);
  if (!dataKey)
    throw new SealError(
      'SEAL_WRONG_KEY',
      header.keySource.kind === 'scrypt'
        ? 'the passphrase does not open this stream (wrong passphrase, or the key block is damaged)'
        : `the key given as '${header.keyId}' does not open this stream (wrong key for that id, or the key block is damaged)`,
    );
  const keysOut = streamKeys(dataKey, header.streamId);
  const expected = headerMac(keysOut.macKey, encoded);
  if (header.mac.length !== HEADER_MAC_LENGTH || !timingSafeEqual(expected, header.mac))
    throw new SealError(
      'SEAL_HEADER_TAMPERED',
      'the header was altered after sealing (MAC mismatch); do not trust this artifact, use another backup',
    );
  return { ...keysOut, dataKey };
}
