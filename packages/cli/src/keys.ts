import { type Keyring, loadKeys, type Passphrase } from '@drkit/crypto-stream';

/** What `drkit seal` seals with and `drkit open` opens with. */
export type CommandKeys = Keyring | Passphrase;

/** Help text of the --key-file flag. */
export const KEY_FILE_HELP = 'key file: one key per line (base64 or hex, optionally "<id> <key>"); the last one seals';

/** Where keys come from, for the details of `--help`. */
export const KEY_SOURCES_HELP = [
  'Keys, the first one set wins: --key-file, DRKIT_KEY_FILE, DRKIT_KEY (a 32-byte key in base64 or',
  'hex; older keys that may still open streams in DRKIT_OLD_KEYS, comma-separated), DRKIT_PASSPHRASE',
  "(stretched by scrypt). Make a key with 'drkit key generate'.",
].join('\n');

/**
 * Loads the keys of a command from `--key-file`, else the environment (DRKIT_KEY_FILE, DRKIT_KEY
 * with DRKIT_OLD_KEYS, DRKIT_PASSPHRASE).
 * @throws SealError SEAL_KEY_MISSING / SEAL_KEY_INVALID, whose messages never hold key material
 */
export function loadCommandKeys(keyFile: string | undefined, env: NodeJS.ProcessEnv): Promise<CommandKeys> {
  return loadKeys({ keyFile, env });
}

/** The key id a manifest records for the keys a command seals with. */
export { sealingKeyId } from '@drkit/crypto-stream';
