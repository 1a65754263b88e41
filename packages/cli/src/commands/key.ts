import { generateKey, keyIdOf } from '@drkit/crypto-stream';
import { defineCommand } from '../command.js';
import { EXIT } from '../errors.js';

/** `drkit key generate`: a new random key on stdout, its id on stderr. */
export const keyGenerateCommand = defineCommand({
  path: ['key', 'generate'],
  summary: 'print a new random 32-byte key (base64) on stdout and its key id on stderr',
  options: {
    hex: { type: 'boolean', description: 'print the key in hex (64 characters) instead of base64 (44 characters)' },
  },
  details: `
stdout holds the key and nothing else, so it can be captured directly:

  (umask 077; drkit key generate > drkit.key)     # a key file for --key-file / DRKIT_KEY_FILE
  export DRKIT_KEY="$(drkit key generate)"        # or the environment

drkit keeps no copy: store the key in your secret manager now. Without it, nothing sealed with
it can be opened. The key id (stderr) is written into sealed headers and is safe to log.`,
  run({ options, io }) {
    const key = generateKey();
    try {
      io.stdout.write(`${key.toString(options.hex ? 'hex' : 'base64')}\n`);
      io.stderr.write(`key id: ${keyIdOf(key)}\n`);
    } finally {
      key.fill(0);
    }
    return EXIT.OK;
  },
});
