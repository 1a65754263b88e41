import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SealError } from './errors.js';
import { KEY_LENGTH, MAX_KEY_ID_LENGTH, SCRYPT_LIMITS } from './format.js';

/** Length of every key: master keys and data keys are AES-256 keys. */
export const KEY_LENGTH_BYTES = KEY_LENGTH;

/** A 32-byte master key and the id written into headers (never the key itself). */
export interface MasterKey {
  readonly id: string;
  readonly key: Buffer;
}

/** A passphrase, stretched by scrypt with a fresh salt for every stream. */
export interface Passphrase {
  readonly passphrase: string;
  /** Written into headers. @default "passphrase" */
  readonly id?: string;
  /** scrypt cost as log2(N), 10 to 18. @default 16 (64 MiB, about 0.2 s) */
  readonly log2N?: number;
  /** 1 to 8. @default 8 */
  readonly r?: number;
  /** 1 to 2. @default 1 */
  readonly p?: number;
}

/** Generates a new random 32-byte key. */
export function generateKey(): Buffer {
  return randomBytes(KEY_LENGTH);
}

/**
 * A short id derived from the key (first 8 bytes of a domain-separated SHA-256, in hex):
 * stable for the same key, and reveals nothing usable about it.
 */
export function keyIdOf(key: Buffer): string {
  return `k${createHash('sha256').update('drkit key id v1\0').update(key).digest('hex').slice(0, 16)}`;
}

/**
 * Parses a 32-byte key written as base64 (44 characters) or hex (64 characters). The error
 * never repeats the text it was given.
 * @param from where the text came from, for the error message (e.g. "DRKIT_KEY")
 * @throws SealError SEAL_KEY_INVALID
 */
export function parseKey(text: string, from = 'the key'): Buffer {
  const trimmed = text.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) key = Buffer.from(trimmed, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed))
    key = Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64');
  if (!key || key.length !== KEY_LENGTH)
    throw new SealError(
      'SEAL_KEY_INVALID',
      `${from} is not a 32-byte key in base64 (44 characters) or hex (64 characters); generate one with 'drkit key generate'`,
    );
  return key;
}

function looksLikeKey(text: string): boolean {
  try {
    parseKey(text);
    return true;
  } catch {
    return false;
  }
}

/** Builds a {@link MasterKey} from raw bytes, with the derived id unless one is given. */
export function masterKey(key: Buffer, id?: string): MasterKey {
  if (key.length !== KEY_LENGTH) throw new SealError('SEAL_KEY_INVALID', `a key must be ${KEY_LENGTH} bytes, not ${key.length}`);
  const keyId = id ?? keyIdOf(key);
  checkKeyId(keyId);
  return { id: keyId, key: Buffer.from(key) };
}

/**
 * Checks a key id: 1 to 64 bytes of well-formed UTF-8 (a lone surrogate would be written as
 * U+FFFD and never match again).
 * @throws SealError SEAL_KEY_INVALID
 */
export function checkKeyId(id: string): void {
  const length = Buffer.byteLength(id);
  if (length === 0 || length > MAX_KEY_ID_LENGTH || !id.isWellFormed())
    throw new SealError('SEAL_KEY_INVALID', `a key id must be 1 to ${MAX_KEY_ID_LENGTH} bytes of well-formed Unicode`);
}

/**
 * Keys by id: new streams are sealed with the current (newest) key, and streams sealed with
 * any key still in the ring can be opened. Rotation adds a new current key and keeps the old
 * ones for reading until every artifact has been re-wrapped.
 */
export class Keyring {
  readonly #keys = new Map<string, MasterKey>();
  #current: MasterKey | undefined;

  /** Builds a keyring; the last key given is the current one. */
  constructor(keys: readonly MasterKey[] = []) {
    for (const key of keys) this.add(key);
  }

  /** Adds a key and makes it the current one for sealing. */
  add(key: MasterKey): this {
    const existing = this.#keys.get(key.id);
    if (existing && !existing.key.equals(key.key))
      throw new SealError('SEAL_KEY_INVALID', `two different keys share the id '${key.id}'; give each key its own id`);
    this.#keys.set(key.id, key);
    this.#current = key;
    return this;
  }

  /** The key new streams are sealed with. @throws SealError SEAL_KEY_MISSING when empty */
  get current(): MasterKey {
    if (!this.#current)
      throw new SealError('SEAL_KEY_MISSING', 'the keyring is empty; set DRKIT_KEY, pass --key-file, or set DRKIT_PASSPHRASE');
    return this.#current;
  }

  /** The key of this id, or undefined. */
  get(id: string): MasterKey | undefined {
    return this.#keys.get(id);
  }

  /** Ids of every key, oldest first. */
  get ids(): string[] {
    return [...this.#keys.keys()];
  }

  get size(): number {
    return this.#keys.size;
  }

  // Key material must never reach logs: printing a keyring shows ids only.
  toJSON(): { ids: string[]; current: string | undefined } {
    return { ids: this.ids, current: this.#current?.id };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Keyring(${this.ids.join(', ')})`;
  }
}

/**
 * Parses a key file: one key per line, as `<key>` or `<id> <key>` (base64 or hex); blank lines
 * and lines starting with # are ignored; the last key is the current one.
 * @throws SealError SEAL_KEY_INVALID naming the line, never its content
 */
export function parseKeyFile(text: string, from = 'the key file'): Keyring {
  const ring = new Keyring();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const parts = line.split(/\s+/);
    if (parts.length > 2) throw new SealError('SEAL_KEY_INVALID', `${from}, line ${index + 1}: expected '<key>' or '<id> <key>'`);
    const [first = '', second] = parts;
    const key = parseKey(second ?? first, `${from}, line ${index + 1}`);
    // Ids are written into every header: one that is itself a key would publish it.
    if (second !== undefined && looksLikeKey(first))
      throw new SealError(
        'SEAL_KEY_INVALID',
        `${from}, line ${index + 1}: the id looks like a key; an id is a short name, the key comes second`,
      );
    ring.add(masterKey(key, second === undefined ? undefined : first));
  });
  if (ring.size === 0) throw new SealError('SEAL_KEY_MISSING', `${from} holds no key`);
  return ring;
}

/** Where keys come from, in the order {@link loadKeys} looks. */
export interface KeySources {
  /** A key file path (e.g. from --key-file). */
  keyFile?: string | undefined;
  /** Environment to read DRKIT_KEY, DRKIT_KEY_FILE, DRKIT_OLD_KEYS and DRKIT_PASSPHRASE from. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Loads the keys to seal and open with: `keyFile`, else `DRKIT_KEY_FILE`, else `DRKIT_KEY`
 * (with older keys for reading in `DRKIT_OLD_KEYS`, comma-separated), else `DRKIT_PASSPHRASE`.
 * @throws SealError SEAL_KEY_MISSING when none is set, SEAL_KEY_INVALID when one is malformed
 */
export async function loadKeys(sources: KeySources = {}): Promise<Keyring | Passphrase> {
  const env = sources.env ?? process.env;
  const file = sources.keyFile ?? env.DRKIT_KEY_FILE;
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (cause) {
      throw new SealError('SEAL_KEY_MISSING', `cannot read the key file ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, {
        cause,
      });
    }
    return parseKeyFile(text, `key file ${file}`);
  }
  if (env.DRKIT_KEY) {
    const ring = new Keyring();
    for (const [i, old] of (env.DRKIT_OLD_KEYS ?? '')
      .split(',')
      .filter((s) => s.trim())
      .entries()) {
      ring.add(masterKey(parseKey(old, `DRKIT_OLD_KEYS entry ${i + 1}`)));
    }
    return ring.add(masterKey(parseKey(env.DRKIT_KEY, 'DRKIT_KEY')));
  }
  if (env.DRKIT_PASSPHRASE) return { passphrase: env.DRKIT_PASSPHRASE };
  throw new SealError('SEAL_KEY_MISSING', 'no key given: set DRKIT_KEY (base64 or hex), pass --key-file, or set DRKIT_PASSPHRASE');
}

/**
 * Checks a passphrase: not empty, and no NUL (scrypt zero-pads it, so "pw" and "pw\0" would
 * be the same key).
 * @throws SealError SEAL_KEY_INVALID
 */
export function checkPassphrase(passphrase: string): void {
  if (passphrase.length === 0) throw new SealError('SEAL_KEY_INVALID', 'the passphrase is empty');
  if (passphrase.includes('\0')) throw new SealError('SEAL_KEY_INVALID', 'the passphrase contains a NUL character');
}

/** Checks passphrase options against the limits a reader accepts. */
export function scryptParams(p: Passphrase): { log2N: number; r: number; p: number } {
  const params = { log2N: p.log2N ?? 16, r: p.r ?? 8, p: p.p ?? 1 };
  if (
    params.log2N < SCRYPT_LIMITS.minLog2N ||
    params.log2N > SCRYPT_LIMITS.maxLog2N ||
    params.r < 1 ||
    params.r > SCRYPT_LIMITS.maxR ||
    params.p < 1 ||
    params.p > SCRYPT_LIMITS.maxP
  )
    throw new SealError(
      'SEAL_INVALID_OPTIONS',
      `scrypt parameters out of range (log2N ${SCRYPT_LIMITS.minLog2N}-${SCRYPT_LIMITS.maxLog2N}, r 1-${SCRYPT_LIMITS.maxR}, p 1-${SCRYPT_LIMITS.maxP})`,
    );
  checkPassphrase(p.passphrase);
  if (p.id !== undefined) checkKeyId(p.id);
  return params;
}
