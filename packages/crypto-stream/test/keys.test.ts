import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  generateKey,
  inspectSealed,
  Keyring,
  keyIdOf,
  loadKeys,
  type MasterKey,
  masterKey,
  openBuffer,
  type Passphrase,
  parseKey,
  parseKeyFile,
  SealError,
  sealBuffer,
} from '../src/index.js';
import { expectSealError, keyBytes, SMALL_CHUNK, tempDir, testKey } from './unit-helpers.js';

/** Every text form a key could leak in. */
function encodingsOf(key: Buffer): string[] {
  const hex = key.toString('hex');
  return [key.toString('base64'), key.toString('base64url'), hex, hex.toUpperCase(), key.toString('base64').slice(0, 20), hex.slice(0, 24)];
}

function expectNoKeyMaterial(text: string, keys: readonly Buffer[]): void {
  for (const key of keys) for (const form of encodingsOf(key)) expect(text).not.toContain(form);
}

/** The message and stack of a SealError thrown synchronously by `fn`. */
function syncError(fn: () => unknown, code: SealError['code']): SealError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(SealError);
  expect((caught as SealError).code).toBe(code);
  return caught as SealError;
}

// 0xfb bytes encode as '+/v7...' in base64 and '-_v7...' in base64url.
const SPECIAL = Buffer.alloc(32, 0xfb);

describe('parseKey', () => {
  const key = keyBytes(1);

  it.each([
    ['base64 with padding', key.toString('base64')],
    ['base64 without padding', key.toString('base64').replace(/=+$/, '')],
    ['hex, lower case', key.toString('hex')],
    ['hex, upper case', key.toString('hex').toUpperCase()],
    ['surrounded by whitespace', `  \t${key.toString('base64')}\r\n`],
    ['hex with a trailing newline', `${key.toString('hex')}\n`],
  ])('accepts %s', (_name, text) => {
    expect(parseKey(text).equals(key)).toBe(true);
  });

  it('accepts base64 and base64url with the characters where they differ', () => {
    const base64 = SPECIAL.toString('base64');
    const base64url = SPECIAL.toString('base64url');
    expect(base64).toMatch(/[+/]/);
    expect(base64url).toMatch(/[-_]/);
    expect(base64url).toHaveLength(43);
    expect(parseKey(base64).equals(SPECIAL)).toBe(true);
    expect(parseKey(base64.replace(/=$/, '')).equals(SPECIAL)).toBe(true);
    expect(parseKey(base64url).equals(SPECIAL)).toBe(true);
    expect(parseKey(`${base64url}=`).equals(SPECIAL)).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['whitespace', '   \n'],
    ['31 bytes in base64', keyBytes(2).subarray(0, 31).toString('base64')],
    ['33 bytes in base64', Buffer.concat([keyBytes(2), Buffer.from([1])]).toString('base64')],
    ['31 bytes in hex', keyBytes(2).subarray(0, 31).toString('hex')],
    ['33 bytes in hex', Buffer.concat([keyBytes(2), Buffer.from([1])]).toString('hex')],
    ['63 hex digits', keyBytes(2).toString('hex').slice(1)],
    ['hex with a 0x prefix', `0x${keyBytes(2).toString('hex')}`],
    ['hex with a non-hex digit', `${keyBytes(2).toString('hex').slice(0, 63)}g`],
    ['base64 with a space inside', `${keyBytes(2).toString('base64').slice(0, 20)} ${keyBytes(2).toString('base64').slice(20)}`],
    ['base64 with double padding', `${keyBytes(2).toString('base64').slice(0, 42)}==`],
    ['a passphrase', 'correct horse battery staple'],
    ['a key and a comment', `${keyBytes(2).toString('base64')} # prod`],
  ])('rejects %s with SEAL_KEY_INVALID', (_name, text) => {
    syncError(() => parseKey(text), 'SEAL_KEY_INVALID');
  });

  it('never repeats the text it was given, only where it came from', () => {
    const secret = keyBytes(3);
    for (const text of [
      'TOPSECRET-distinctive-input-4711',
      secret.toString('hex').slice(0, 63),
      `${secret.toString('base64').slice(0, 40)}!!!!`,
      `${secret.toString('hex')}00`,
    ]) {
      const error = syncError(() => parseKey(text, 'DRKIT_KEY'), 'SEAL_KEY_INVALID');
      expect(error.message.startsWith('DRKIT_KEY ')).toBe(true);
      for (const leak of [text, text.slice(0, 16), text.slice(-16)]) {
        expect(error.message).not.toContain(leak);
        expect(String(error.stack)).not.toContain(leak);
      }
    }
  });
});

describe('keyIdOf, generateKey and masterKey', () => {
  it('keyIdOf is stable, short, and differs between keys', () => {
    const a = keyBytes(1);
    const id = keyIdOf(a);
    expect(id).toMatch(/^k[0-9a-f]{16}$/);
    expect(keyIdOf(Buffer.from(a))).toBe(id);
    expect(keyIdOf(keyBytes(2))).not.toBe(id);
    expect(a.toString('hex')).not.toContain(id.slice(1));
  });

  it('keyIdOf is a pinned value (ids in existing headers must keep matching)', () => {
    // "k" and the first 8 bytes of sha256("drkit key id v1\0" || 32 zero bytes), in hex.
    expect(keyIdOf(Buffer.alloc(32))).toBe('kbc36415977f45206');
    expect(keyIdOf(Buffer.alloc(32, 1))).not.toBe('kbc36415977f45206');
  });

  it('generateKey makes distinct 32-byte keys', () => {
    const a = generateKey();
    const b = generateKey();
    expect(a).toHaveLength(32);
    expect(a.equals(b)).toBe(false);
  });

  it('masterKey derives the id, or takes the one given, and copies the key', () => {
    const bytes = Buffer.from(keyBytes(1));
    const derived = masterKey(bytes);
    expect(derived.id).toBe(keyIdOf(bytes));
    const named = masterKey(bytes, 'prod-2025');
    expect(named.id).toBe('prod-2025');
    bytes.fill(0);
    expect(derived.key.equals(keyBytes(1))).toBe(true);
    expect(named.key.equals(keyBytes(1))).toBe(true);
  });

  it.each([0, 16, 31, 33, 64])('masterKey rejects a %i-byte key', (n) => {
    syncError(() => masterKey(Buffer.alloc(n, 1)), 'SEAL_KEY_INVALID');
  });

  it.each([
    ['empty', ''],
    ['65 ASCII bytes', 'x'.repeat(65)],
    ['66 bytes of UTF-8 in 33 characters', 'é'.repeat(33)],
    ['a lone surrogate (not well-formed Unicode)', 'key-\ud800'],
  ])('masterKey rejects an id that is %s', (_name, id) => {
    syncError(() => masterKey(keyBytes(1), id), 'SEAL_KEY_INVALID');
  });

  it('masterKey accepts ids of 1 and 64 bytes', () => {
    expect(masterKey(keyBytes(1), 'a').id).toBe('a');
    expect(masterKey(keyBytes(1), 'é'.repeat(32)).id).toBe('é'.repeat(32));
    expect(masterKey(keyBytes(1), 'x'.repeat(64)).id).toHaveLength(64);
  });
});

describe('Keyring', () => {
  const a = testKey(1);
  const b = testKey(2);
  const c = testKey(3, 'named');

  it('the last key added is current; every key is found by id', () => {
    const ring = new Keyring([a, b]);
    expect(ring.current).toBe(b);
    expect(ring.size).toBe(2);
    expect(ring.ids).toEqual([a.id, b.id]);
    expect(ring.get(a.id)).toBe(a);
    expect(ring.get(b.id)).toBe(b);
    expect(ring.get('nope')).toBeUndefined();
    expect(ring.add(c)).toBe(ring);
    expect(ring.current).toBe(c);
    expect(ring.ids).toEqual([a.id, b.id, 'named']);
  });

  it('adding the same key again is harmless and makes it current', () => {
    const ring = new Keyring([a, b]);
    ring.add(masterKey(keyBytes(1)));
    expect(ring.size).toBe(2);
    expect(ring.current.id).toBe(a.id);
  });

  it('a different key under an existing id throws SEAL_KEY_INVALID and changes nothing', () => {
    const ring = new Keyring([c, a]);
    const error = syncError(() => ring.add(testKey(4, 'named')), 'SEAL_KEY_INVALID');
    expect(error.message).toContain("'named'");
    expectNoKeyMaterial(error.message, [keyBytes(3), keyBytes(4)]);
    expect(ring.current).toBe(a);
    expect(ring.get('named')).toBe(c);
    syncError(() => new Keyring([c, testKey(4, 'named')]), 'SEAL_KEY_INVALID');
  });

  it('an empty keyring has no current key (SEAL_KEY_MISSING)', () => {
    const ring = new Keyring();
    expect(ring.size).toBe(0);
    syncError(() => ring.current, 'SEAL_KEY_MISSING');
  });

  it('JSON.stringify and util.inspect show ids only, never key material', () => {
    const ring = new Keyring([a, b, c]);
    const material = [keyBytes(1), keyBytes(2), keyBytes(3)];
    const json = JSON.stringify(ring);
    expect(JSON.parse(json)).toEqual({ ids: [a.id, b.id, 'named'], current: 'named' });
    for (const text of [
      json,
      JSON.stringify({ config: { keys: ring } }),
      inspect(ring),
      inspect(ring, { showHidden: true, depth: Number.POSITIVE_INFINITY, getters: true }),
      inspect({ nested: { ring } }, { depth: 10 }),
      `${String(ring)} ${Object.keys(ring).join()} ${JSON.stringify(Object.entries(ring))}`,
    ]) {
      expectNoKeyMaterial(text, material);
    }
    expect(inspect(ring)).toContain(a.id);
    expect(JSON.stringify(new Keyring())).toBe('{"ids":[]}');
  });
});

describe('parseKeyFile', () => {
  it('refuses an id that is itself a key, so no key is ever written into headers as an id', () => {
    const a = generateKey().toString('base64');
    const b = generateKey().toString('hex');
    let caught: unknown;
    try {
      parseKeyFile(`# two keys on one line\n${a} ${b}\n`);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'SEAL_KEY_INVALID' });
    expect((caught as Error).message).toMatch(/line 2: the id looks like a key/);
    expect((caught as Error).message).not.toContain(a);
    expect((caught as Error).message).not.toContain(b);
  });

  const k1 = keyBytes(1);
  const k2 = keyBytes(2);
  const k3 = keyBytes(3);

  it('reads `<key>` and `<id> <key>` lines, skipping comments and blank lines; the last is current', () => {
    const ring = parseKeyFile(
      [
        '# drkit keys, oldest first',
        '',
        k1.toString('base64'),
        '   ',
        `  # indented comment ${k3.toString('hex')}`,
        `2024-q4\t${k2.toString('hex').toUpperCase()}`,
        `2025-q1   ${k3.toString('base64url')}  `,
        '',
      ].join('\n'),
    );
    expect(ring.ids).toEqual([keyIdOf(k1), '2024-q4', '2025-q1']);
    expect(ring.current.id).toBe('2025-q1');
    expect(ring.current.key.equals(k3)).toBe(true);
    expect(ring.get('2024-q4')?.key.equals(k2)).toBe(true);
  });

  it('accepts CRLF line endings', () => {
    const ring = parseKeyFile(`# keys\r\nold ${k1.toString('hex')}\r\nnew ${k2.toString('base64')}\r\n`);
    expect(ring.ids).toEqual(['old', 'new']);
    expect(ring.current.key.equals(k2)).toBe(true);
  });

  it('reports the number of a bad line, never its content', () => {
    const secretish = `${k2.toString('hex').slice(0, 60)}zz`;
    const error = syncError(
      () => parseKeyFile(['# header', k1.toString('base64'), '', `prod ${secretish}`].join('\n')),
      'SEAL_KEY_INVALID',
    );
    expect(error.message).toContain('line 4');
    expect(error.message).not.toContain(secretish);
    expect(error.message).not.toContain(secretish.slice(0, 16));
    expect(error.message).not.toContain('prod');
    expect(error.message).not.toContain(k1.toString('base64'));
  });

  it('a line of three words is SEAL_KEY_INVALID naming the line, without its content', () => {
    const error = syncError(
      () => parseKeyFile(`${k1.toString('hex')}\nid ${k2.toString('base64')} trailing-words`, 'keys.txt'),
      'SEAL_KEY_INVALID',
    );
    expect(error.message).toContain('keys.txt, line 2');
    expectNoKeyMaterial(error.message, [k1, k2]);
    expect(error.message).not.toContain('trailing-words');
  });

  it('two different keys under one id are SEAL_KEY_INVALID', () => {
    syncError(() => parseKeyFile(`prod ${k1.toString('hex')}\nprod ${k2.toString('hex')}`), 'SEAL_KEY_INVALID');
  });

  it('a file without keys is SEAL_KEY_MISSING', () => {
    syncError(() => parseKeyFile('# nothing here\n\n   \n'), 'SEAL_KEY_MISSING');
    syncError(() => parseKeyFile(''), 'SEAL_KEY_MISSING');
  });
});

describe('loadKeys', () => {
  const fileKey = keyBytes(11);
  const optionKey = keyBytes(12);
  const envKey = keyBytes(13);
  const oldKey1 = keyBytes(14);
  const oldKey2 = keyBytes(15);

  async function keyFiles(): Promise<{ option: string; env: string; dir: string }> {
    const dir = await tempDir();
    const option = join(dir, 'option.keys');
    const env = join(dir, 'env.keys');
    await writeFile(option, `# option file\nopt ${optionKey.toString('base64')}\n`);
    await writeFile(env, `envfile ${fileKey.toString('hex')}\n`);
    return { option, env, dir };
  }

  function asRing(keys: Keyring | Passphrase): Keyring {
    expect(keys).toBeInstanceOf(Keyring);
    return keys as Keyring;
  }

  it('the keyFile option beats DRKIT_KEY_FILE, DRKIT_KEY and DRKIT_PASSPHRASE', async () => {
    const files = await keyFiles();
    const ring = asRing(
      await loadKeys({
        keyFile: files.option,
        env: { DRKIT_KEY_FILE: files.env, DRKIT_KEY: envKey.toString('base64'), DRKIT_PASSPHRASE: 'pw' },
      }),
    );
    expect(ring.ids).toEqual(['opt']);
    expect(ring.current.key.equals(optionKey)).toBe(true);
  });

  it('DRKIT_KEY_FILE beats DRKIT_KEY and DRKIT_PASSPHRASE', async () => {
    const files = await keyFiles();
    const ring = asRing(
      await loadKeys({ env: { DRKIT_KEY_FILE: files.env, DRKIT_KEY: envKey.toString('base64'), DRKIT_PASSPHRASE: 'pw' } }),
    );
    expect(ring.ids).toEqual(['envfile']);
    expect(ring.current.key.equals(fileKey)).toBe(true);
  });

  it('an undefined keyFile option falls back to the environment', async () => {
    const files = await keyFiles();
    const ring = asRing(await loadKeys({ keyFile: undefined, env: { DRKIT_KEY_FILE: files.env } }));
    expect(ring.ids).toEqual(['envfile']);
  });

  it('DRKIT_KEY (current) with DRKIT_OLD_KEYS (readable) beats DRKIT_PASSPHRASE', async () => {
    const ring = asRing(
      await loadKeys({
        env: {
          DRKIT_KEY: `${envKey.toString('hex')}\n`,
          DRKIT_OLD_KEYS: ` ${oldKey1.toString('base64')} ,, ${oldKey2.toString('hex')},`,
          DRKIT_PASSPHRASE: 'pw',
        },
      }),
    );
    expect(ring.ids).toEqual([keyIdOf(oldKey1), keyIdOf(oldKey2), keyIdOf(envKey)]);
    expect(ring.current.key.equals(envKey)).toBe(true);
  });

  it('DRKIT_KEY alone is a keyring of one', async () => {
    const ring = asRing(await loadKeys({ env: { DRKIT_KEY: envKey.toString('base64') } }));
    expect(ring.ids).toEqual([keyIdOf(envKey)]);
  });

  it('DRKIT_PASSPHRASE is used last', async () => {
    expect(await loadKeys({ env: { DRKIT_PASSPHRASE: 'correct horse' } })).toEqual({ passphrase: 'correct horse' });
  });

  it('nothing set (or only empty values) is SEAL_KEY_MISSING', async () => {
    await expectSealError(loadKeys({ env: {} }), 'SEAL_KEY_MISSING');
    await expectSealError(
      loadKeys({ env: { DRKIT_KEY: '', DRKIT_KEY_FILE: '', DRKIT_PASSPHRASE: '', DRKIT_OLD_KEYS: 'x' } }),
      'SEAL_KEY_MISSING',
    );
  });

  it('an unreadable key file is SEAL_KEY_MISSING naming the path', async () => {
    const dir = await tempDir();
    const missing = join(dir, 'no-such.keys');
    const error = await expectSealError(loadKeys({ keyFile: missing, env: { DRKIT_KEY: envKey.toString('base64') } }), 'SEAL_KEY_MISSING');
    expect(error.message).toContain(missing);
    expect(error.message).toContain('ENOENT');
    const fromEnv = await expectSealError(loadKeys({ env: { DRKIT_KEY_FILE: missing } }), 'SEAL_KEY_MISSING');
    expect(fromEnv.message).toContain(missing);
    const aDir = join(dir, 'a-directory');
    await mkdir(aDir);
    expect((await expectSealError(loadKeys({ keyFile: aDir }), 'SEAL_KEY_MISSING')).message).toContain(aDir);
  });

  it('a malformed key file line is SEAL_KEY_INVALID naming the file and line, not the content', async () => {
    const dir = await tempDir();
    const path = join(dir, 'bad.keys');
    await writeFile(path, `${fileKey.toString('hex')}\nDISTINCTIVE-not-a-key-0042\n`);
    const error = await expectSealError(loadKeys({ keyFile: path }), 'SEAL_KEY_INVALID');
    expect(error.message).toContain(path);
    expect(error.message).toContain('line 2');
    expect(error.message).not.toContain('DISTINCTIVE');
  });

  it('a malformed DRKIT_KEY or DRKIT_OLD_KEYS entry is SEAL_KEY_INVALID naming the variable, not the value', async () => {
    const bad = 'DISTINCTIVE-secret-value-9876';
    const error = await expectSealError(loadKeys({ env: { DRKIT_KEY: bad } }), 'SEAL_KEY_INVALID');
    expect(error.message).toContain('DRKIT_KEY');
    expect(error.message).not.toContain(bad);
    const old = await expectSealError(
      loadKeys({ env: { DRKIT_KEY: envKey.toString('base64'), DRKIT_OLD_KEYS: `${oldKey1.toString('hex')},${bad}` } }),
      'SEAL_KEY_INVALID',
    );
    expect(old.message).toContain('DRKIT_OLD_KEYS entry 2');
    expect(old.message).not.toContain(bad);
    expectNoKeyMaterial(old.message, [envKey, oldKey1]);
  });

  describe('with no env given, process.env', () => {
    afterEach(() => {
      vi.unstubAllEnvs();
    });

    it('reads DRKIT_KEY from process.env', async () => {
      vi.stubEnv('DRKIT_KEY_FILE', undefined);
      vi.stubEnv('DRKIT_OLD_KEYS', undefined);
      vi.stubEnv('DRKIT_PASSPHRASE', undefined);
      vi.stubEnv('DRKIT_KEY', envKey.toString('hex'));
      expect(asRing(await loadKeys()).ids).toEqual([keyIdOf(envKey)]);
    });
  });
});

describe('opening with keyrings, keys and passphrases', () => {
  const oldKey = testKey(21);
  const newKey = testKey(22);
  const plain = Buffer.from('the same plaintext for every key');
  const pass = (passphrase: string, extra: Partial<Passphrase> = {}): Passphrase => ({ passphrase, log2N: 10, ...extra });

  it('a keyring of old and new keys opens streams sealed with either, and seals with the new one', async () => {
    const ring = new Keyring([oldKey, newKey]);
    const sealedOld = await sealBuffer(plain, { key: oldKey });
    const sealedNew = await sealBuffer(plain, { key: ring });
    expect((await inspectSealed(sealedNew)).keyId).toBe(newKey.id);
    expect((await openBuffer(sealedOld, { keys: ring })).equals(plain)).toBe(true);
    expect((await openBuffer(sealedNew, { keys: ring })).equals(plain)).toBe(true);
  });

  it('with only the new key, an old stream is SEAL_UNKNOWN_KEY naming its id', async () => {
    const sealedOld = await sealBuffer(plain, { key: oldKey });
    for (const keys of [new Keyring([newKey]), newKey]) {
      const error = await expectSealError(openBuffer(sealedOld, { keys }), 'SEAL_UNKNOWN_KEY');
      expect(error.message).toContain(oldKey.id);
      expect(error.message).toContain(newKey.id);
      expectNoKeyMaterial(error.message, [oldKey.key, newKey.key]);
    }
    expect((await expectSealError(openBuffer(sealedOld, { keys: new Keyring() }), 'SEAL_UNKNOWN_KEY')).message).toContain('none');
  });

  it('the same id with a different key is SEAL_WRONG_KEY', async () => {
    const sealed = await sealBuffer(plain, { key: testKey(23, 'prod') });
    const error = await expectSealError(openBuffer(sealed, { keys: new Keyring([testKey(24, 'prod')]) }), 'SEAL_WRONG_KEY');
    expect(error.message).toContain("'prod'");
    expectNoKeyMaterial(error.message, [keyBytes(23), keyBytes(24)]);
  });

  it('the same key under another id is SEAL_UNKNOWN_KEY (ids are matched, not keys tried)', async () => {
    const sealed = await sealBuffer(plain, { key: testKey(23, 'a') });
    await expectSealError(openBuffer(sealed, { keys: testKey(23, 'b') }), 'SEAL_UNKNOWN_KEY');
  });

  it('a passphrase stream opened with a key is SEAL_KEY_MISSING, and the reverse', async () => {
    const byPassphrase = await sealBuffer(plain, { key: pass('hunter2') });
    const byKey = await sealBuffer(plain, { key: newKey });
    await expectSealError(openBuffer(byPassphrase, { keys: newKey }), 'SEAL_KEY_MISSING');
    await expectSealError(openBuffer(byPassphrase, { keys: new Keyring([newKey]) }), 'SEAL_KEY_MISSING');
    await expectSealError(openBuffer(byKey, { keys: pass('hunter2') }), 'SEAL_KEY_MISSING');
  });

  it('a passphrase stream opens with the passphrase alone (the cost is read from the header)', async () => {
    const sealed = await sealBuffer(plain, { key: pass('hunter2', { id: 'ops-pass', r: 4, p: 2 }), chunkSize: SMALL_CHUNK });
    expect(await inspectSealed(sealed)).toMatchObject({ keyId: 'ops-pass', keySource: 'scrypt' });
    expect((await openBuffer(sealed, { keys: { passphrase: 'hunter2' } })).equals(plain)).toBe(true);
  });

  it('a wrong passphrase is SEAL_WRONG_KEY and the message does not contain either passphrase', async () => {
    const sealed = await sealBuffer(plain, { key: pass('hunter2-distinctive') });
    const error = await expectSealError(openBuffer(sealed, { keys: pass('hunter3-distinctive') }), 'SEAL_WRONG_KEY');
    expect(error.message).not.toContain('hunter');
  });

  it('passphrases are NFC-normalised (composed and decomposed é open the same stream)', async () => {
    const sealed = await sealBuffer(plain, { key: pass('caf\u00e9') });
    expect((await openBuffer(sealed, { keys: pass('cafe\u0301') })).equals(plain)).toBe(true);
  });

  it('every passphrase stream gets a fresh scrypt salt', async () => {
    const a = await sealBuffer(plain, { key: pass('same') });
    const b = await sealBuffer(plain, { key: pass('same') });
    const saltAt = 16 + 16 + 1 + 'passphrase'.length + 1 + 3;
    expect(a.subarray(saltAt, saltAt + 16).equals(b.subarray(saltAt, saltAt + 16))).toBe(false);
  });

  it.each<[string, Partial<Passphrase>]>([
    ['log2N 9', { log2N: 9 }],
    ['log2N 21', { log2N: 21 }],
    ['r 0', { r: 0 }],
    ['r 17', { r: 17 }],
    ['p 0', { p: 0 }],
    ['p 5', { p: 5 }],
  ])('scrypt %s is SEAL_INVALID_OPTIONS', async (_name, extra) => {
    await expectSealError(sealBuffer(plain, { key: pass('pw', extra) }), 'SEAL_INVALID_OPTIONS');
  });

  it('an empty passphrase is SEAL_KEY_INVALID', async () => {
    await expectSealError(sealBuffer(plain, { key: pass('') }), 'SEAL_KEY_INVALID');
  });

  it('a passphrase id that is empty, longer than 64 bytes or not well-formed is SEAL_KEY_INVALID', async () => {
    for (const id of ['', 'x'.repeat(65), 'bad\ud800id']) {
      await expectSealError(sealBuffer(plain, { key: pass('pw', { id }) }), 'SEAL_KEY_INVALID');
    }
  });

  it('a key file ring opens what a DRKIT_KEY ring sealed', async () => {
    const envRing = (await loadKeys({ env: { DRKIT_KEY: keyBytes(30).toString('base64') } })) as Keyring;
    const sealed = await sealBuffer(plain, { key: envRing });
    const fileRing = parseKeyFile(`${keyBytes(29).toString('hex')}\n${keyBytes(30).toString('hex')}\n`);
    expect((await openBuffer(sealed, { keys: fileRing })).equals(plain)).toBe(true);
  });

  it('the sealed header carries the key id, never the key', async () => {
    const keys: MasterKey[] = [oldKey, newKey];
    for (const key of keys) {
      const sealed = await sealBuffer(plain, { key, compression: 'none' });
      expect(sealed.includes(key.key)).toBe(false);
      expect(sealed.toString('latin1')).toContain(key.id);
    }
  });
});
