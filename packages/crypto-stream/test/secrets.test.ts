import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  formatEnv,
  inspectSealed,
  Keyring,
  masterKey,
  openBuffer,
  openSecrets,
  type Passphrase,
  type Secrets,
  sealBuffer,
  sealSecrets,
  writeEnvFile as writeEnvFileRaw,
} from '../src/index.js';
import { expectSealError, keyBytes, tempDir, testKey, within } from './unit-helpers.js';

/** writeEnvFile, failing after 2 s instead of hanging the file (see the writeAtomically tests in files.test.ts). */
const writeEnvFile = (...args: Parameters<typeof writeEnvFileRaw>) => within(writeEnvFileRaw(...args), 2000, 'writeEnvFile');

const secretsKey = testKey(41);
const backupKey = testKey(42);
const keys = { secretsKey, backupKey };
const openKeys = { secretsKeys: secretsKey, backupKeys: backupKey };

const SECRETS: Secrets = {
  DATABASE_URL: 'postgres://app:s3cr3t-P4ss@db.internal:5432/app?sslmode=require',
  UNICODE: 'héllo wörld ✓ 日本語 😀',
  QUOTES: `it's "quoted" and 'single'`,
  NEWLINES: '-----BEGIN KEY-----\nline two\r\nline three\n',
  BACKSLASHES: 'C:\\path\\to\\file \\n not a newline',
  EMPTY: '',
  _UNDERSCORE_1: 'dollar $HOME and `backticks` and #hash = equals',
};

/** Undoes formatEnv's escaping of one value (the inverse of what the docs promise). */
function unescapeEnvValue(quoted: string): string {
  expect(quoted.startsWith('"') && quoted.endsWith('"')).toBe(true);
  return quoted.slice(1, -1).replace(/\\(.)/g, (_m, c: string) => ({ n: '\n', r: '\r', '"': '"', '\\': '\\' })[c] ?? `\\${c}`);
}

/** Parses formatEnv output back into secrets. */
function parseEnvText(text: string): Secrets {
  expect(text.endsWith('\n')).toBe(true);
  const out: Secrets = {};
  for (const line of text.slice(0, -1).split('\n')) {
    const eq = line.indexOf('=');
    out[line.slice(0, eq)] = unescapeEnvValue(line.slice(eq + 1));
  }
  return out;
}

describe('sealSecrets and openSecrets', () => {
  it('round-trip unicode, quotes, newlines, backslashes and empty values', async () => {
    const sealed = await sealSecrets(SECRETS, keys);
    expect(await openSecrets(sealed, openKeys)).toEqual(SECRETS);
  });

  it('round-trip an empty set of secrets', async () => {
    expect(await openSecrets(await sealSecrets({}, keys), openKeys)).toEqual({});
  });

  it('open with keyrings holding old and new keys of each layer', async () => {
    const sealed = await sealSecrets(SECRETS, keys);
    const opened = await openSecrets(sealed, {
      secretsKeys: new Keyring([secretsKey, testKey(43)]),
      backupKeys: new Keyring([backupKey, testKey(44)]),
    });
    expect(opened).toEqual(SECRETS);
  });

  it('work with passphrases for either layer', async () => {
    const secretsPass: Passphrase = { passphrase: 'inner pass', log2N: 10 };
    const sealed = await sealSecrets(SECRETS, { secretsKey: secretsPass, backupKey });
    expect(await openSecrets(sealed, { secretsKeys: { passphrase: 'inner pass' }, backupKeys: backupKey })).toEqual(SECRETS);
    const sealed2 = await sealSecrets(SECRETS, { secretsKey, backupKey: { passphrase: 'outer pass', log2N: 10 } });
    expect(await openSecrets(sealed2, { secretsKeys: secretsKey, backupKeys: { passphrase: 'outer pass' } })).toEqual(SECRETS);
  });

  it('the outer layer is a sealed stream under the backup key holding a sealed stream under the secrets key', async () => {
    const sealed = await sealSecrets(SECRETS, keys);
    expect(sealed.subarray(0, 8).toString('latin1')).toBe('DRKSEAL\0');
    expect((await inspectSealed(sealed)).keyId).toBe(backupKey.id);
    const inner = await openBuffer(sealed, { keys: backupKey });
    expect(inner.subarray(0, 8).toString('latin1')).toBe('DRKSEAL\0');
    expect(await inspectSealed(inner)).toMatchObject({ keyId: secretsKey.id, compression: 'none' });
    for (const layer of [sealed, inner]) {
      const text = layer.toString('latin1');
      for (const [name, value] of Object.entries(SECRETS)) {
        expect(text).not.toContain(name);
        if (value.length >= 4) {
          expect(layer.includes(Buffer.from(value, 'utf8'))).toBe(false);
          expect(layer.includes(Buffer.from(value.slice(0, 8), 'utf8'))).toBe(false);
        }
      }
      expect(text).not.toContain('s3cr3t');
    }
  });

  it('two seals of the same secrets differ', async () => {
    const a = await sealSecrets(SECRETS, keys);
    const b = await sealSecrets(SECRETS, keys);
    expect(a.equals(b)).toBe(false);
  });

  it('the same key for both layers is SEAL_INVALID_OPTIONS (also under another id or in a keyring)', async () => {
    await expectSealError(sealSecrets(SECRETS, { secretsKey, backupKey: secretsKey }), 'SEAL_INVALID_OPTIONS');
    await expectSealError(sealSecrets(SECRETS, { secretsKey, backupKey: masterKey(keyBytes(41), 'other-id') }), 'SEAL_INVALID_OPTIONS');
    await expectSealError(
      sealSecrets(SECRETS, { secretsKey: new Keyring([backupKey, secretsKey]), backupKey: secretsKey }),
      'SEAL_INVALID_OPTIONS',
    );
  });

  it('the same passphrase for both layers is SEAL_INVALID_OPTIONS', async () => {
    // Otherwise whoever holds the backup passphrase could open the secrets too.
    const same: Passphrase = { passphrase: 'one passphrase for all', log2N: 10 };
    await expectSealError(sealSecrets(SECRETS, { secretsKey: same, backupKey: { ...same } }), 'SEAL_INVALID_OPTIONS');
  });

  it('passphrases equal after NFC normalisation count as the same; different ones are fine', async () => {
    await expectSealError(
      sealSecrets(SECRETS, { secretsKey: { passphrase: 'caf\u00e9', log2N: 10 }, backupKey: { passphrase: 'cafe\u0301', log2N: 10 } }),
      'SEAL_INVALID_OPTIONS',
    );
    const sealed = await sealSecrets(SECRETS, {
      secretsKey: { passphrase: 'inner', log2N: 10 },
      backupKey: { passphrase: 'outer', log2N: 10 },
    });
    expect(await openSecrets(sealed, { secretsKeys: { passphrase: 'inner' }, backupKeys: { passphrase: 'outer' } })).toEqual(SECRETS);
    await expectSealError(
      openSecrets(sealed, { secretsKeys: { passphrase: 'outer' }, backupKeys: { passphrase: 'outer' } }),
      'SEAL_WRONG_KEY',
    );
  });

  it('a wrong backup key fails in the outer layer, keeping the code', async () => {
    const sealed = await sealSecrets(SECRETS, keys);
    const wrongId = await expectSealError(openSecrets(sealed, { secretsKeys: secretsKey, backupKeys: testKey(45) }), 'SEAL_UNKNOWN_KEY');
    expect(wrongId.message).toMatch(/^outer \(backup key\) layer: /);
    const wrongKey = await expectSealError(
      openSecrets(sealed, { secretsKeys: secretsKey, backupKeys: testKey(45, backupKey.id) }),
      'SEAL_WRONG_KEY',
    );
    expect(wrongKey.message).toContain('outer');
    expect(wrongKey.message).not.toContain('inner');
    expect((wrongKey.cause as Error).message).not.toContain('outer');
  });

  it('a wrong secrets key fails in the inner layer, keeping the code', async () => {
    const sealed = await sealSecrets(SECRETS, keys);
    const error = await expectSealError(
      openSecrets(sealed, { secretsKeys: testKey(46, secretsKey.id), backupKeys: backupKey }),
      'SEAL_WRONG_KEY',
    );
    expect(error.message).toMatch(/^inner \(secrets key\) layer: /);
    // The backup key alone cannot open the inner layer.
    const swapped = await expectSealError(openSecrets(sealed, { secretsKeys: backupKey, backupKeys: backupKey }), 'SEAL_UNKNOWN_KEY');
    expect(swapped.message).toContain('inner');
  });

  it('a tampered or truncated artifact fails in the outer layer', async () => {
    const sealed = await sealSecrets(SECRETS, keys);
    const tampered = Buffer.from(sealed);
    tampered[sealed.length - 20] = (tampered[sealed.length - 20] ?? 0) ^ 1;
    expect((await expectSealError(openSecrets(tampered, openKeys), 'SEAL_CHUNK_TAMPERED')).message).toContain('outer');
    expect((await expectSealError(openSecrets(sealed.subarray(0, sealed.length - 1), openKeys), 'SEAL_CHUNK_TAMPERED')).message).toContain(
      'outer',
    );
  });

  it('an inner layer that is not a JSON object of strings is SEAL_SECRETS_INVALID', async () => {
    for (const json of ['not json {', '[]', 'null', '"text"', '{"A":1}', '{"bad-name":"x"}']) {
      const inner = await sealBuffer(Buffer.from(json), { key: secretsKey, compression: 'none' });
      const outer = await sealBuffer(inner, { key: backupKey, compression: 'none' });
      await expectSealError(openSecrets(outer, openKeys), 'SEAL_SECRETS_INVALID');
    }
  });

  it.each([
    ['a name starting with a digit', { '1ABC': 'x' }],
    ['a name with a dash', { 'MY-VAR': 'x' }],
    ['a name with a space', { 'MY VAR': 'x' }],
    ['an empty name', { '': 'x' }],
    ['a non-ASCII name', { ÄPFEL: 'x' }],
    ['a name with "="', { 'A=B': 'x' }],
  ])('%s is SEAL_SECRETS_INVALID', async (_name, secrets: Secrets) => {
    await expectSealError(sealSecrets(secrets, keys), 'SEAL_SECRETS_INVALID');
    expect(() => formatEnv(secrets)).toThrow(expect.objectContaining({ code: 'SEAL_SECRETS_INVALID' }));
  });

  it.each([
    ['a number value', { A: 1 }],
    ['a null value', { A: null }],
    ['an object value', { A: { nested: 'x' } }],
    ['an array instead of an object', ['A']],
    ['null instead of an object', null],
    ['a string instead of an object', 'A=1'],
  ])('%s is SEAL_SECRETS_INVALID, and the message does not contain values', async (_name, secrets) => {
    const error = await expectSealError(sealSecrets(secrets as unknown as Secrets, keys), 'SEAL_SECRETS_INVALID');
    expect(error.message).not.toContain('nested');
  });
});

describe('formatEnv', () => {
  it('writes NAME="value" lines, escaping backslashes, quotes, newlines and carriage returns', () => {
    expect(
      formatEnv({
        PLAIN: 'abc',
        QUOTE: 'say "hi"',
        BACKSLASH: 'a\\b',
        NEWLINE: 'a\nb',
        CRLF: 'a\r\nb',
        BOTH: '\\"',
        EMPTY: '',
        SPACES: '  padded  ',
      }),
    ).toBe(
      [
        'PLAIN="abc"',
        'QUOTE="say \\"hi\\""',
        'BACKSLASH="a\\\\b"',
        'NEWLINE="a\\nb"',
        'CRLF="a\\r\\nb"',
        'BOTH="\\\\\\""',
        'EMPTY=""',
        'SPACES="  padded  "',
        '',
      ].join('\n'),
    );
  });

  it('an escaped backslash before n is not read back as a newline', () => {
    expect(formatEnv({ A: '\\n' })).toBe('A="\\\\n"\n');
    expect(parseEnvText(formatEnv({ A: '\\n' }))).toEqual({ A: '\\n' });
  });

  it('keeps every value on one line and reads back exactly', () => {
    const text = formatEnv(SECRETS);
    expect(text.split('\n')).toHaveLength(Object.keys(SECRETS).length + 1);
    expect(text).not.toContain('\r');
    expect(parseEnvText(text)).toEqual(SECRETS);
  });

  it('an empty set is a single newline', () => {
    expect(formatEnv({})).toBe('\n');
  });
});

// writeEnvFile() hands writeAtomically() a Buffer: these also guard the writeAtomically
// regressions of files.test.ts (Buffer sources, settling after a successful write).
describe('writeEnvFile', () => {
  async function leftovers(dir: string, expected: string[]): Promise<void> {
    expect((await readdir(dir)).sort()).toEqual(expected.sort());
  }

  it('creates the file with mode 0600 and the formatted content', async () => {
    const dir = await tempDir();
    const path = join(dir, 'app.env');
    await writeEnvFile(path, SECRETS);
    expect(await readFile(path, 'utf8')).toBe(formatEnv(SECRETS));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await leftovers(dir, ['app.env']);
  });

  it('atomically replaces an existing file (new inode, mode 0600 even if the old one was 0644)', async () => {
    const dir = await tempDir();
    const path = join(dir, 'app.env');
    await writeFile(path, 'OLD="value"\n', { mode: 0o644 });
    const before = await stat(path);
    await writeEnvFile(path, { NEW: 'value' });
    const after = await stat(path);
    expect(await readFile(path, 'utf8')).toBe('NEW="value"\n');
    expect(after.mode & 0o777).toBe(0o600);
    expect(after.ino).not.toBe(before.ino);
    await leftovers(dir, ['app.env']);
  });

  it('invalid secrets leave no file and no temp file', async () => {
    const dir = await tempDir();
    const path = join(dir, 'app.env');
    await writeFile(path, 'KEEP="me"\n');
    await expectSealError(writeEnvFile(path, { 'BAD-NAME': 'x' }), 'SEAL_SECRETS_INVALID');
    expect(await readFile(path, 'utf8')).toBe('KEEP="me"\n');
    await leftovers(dir, ['app.env']);
  });

  it('a missing directory rejects and creates nothing', async () => {
    const dir = await tempDir();
    await expect(writeEnvFile(join(dir, 'missing', 'app.env'), { A: 'b' })).rejects.toMatchObject({ code: 'ENOENT' });
    await leftovers(dir, []);
  });
});
