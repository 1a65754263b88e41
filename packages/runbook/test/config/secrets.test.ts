import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeSecretRef, isSecretRef, parseConfig, resolveSecret, type SecretRef } from '../../src/config/index.js';
import { isRunbookError, type RunbookErrorCode } from '../../src/errors.js';
import { REDACTED, Redactor } from '../../src/redact.js';

function thrown(fn: () => unknown, code: RunbookErrorCode): Error {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(isRunbookError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as Error;
}

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-secrets-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('resolveSecret', () => {
  it('reads an environment variable as set', () => {
    expect(resolveSecret({ env: 'PG_PASSWORD' }, { env: { PG_PASSWORD: ' s3cret-value ' } })).toBe(' s3cret-value ');
  });

  it('reads process.env by default', () => {
    process.env.DRKIT_TEST_SECRET_X = 'from-process-env';
    try {
      expect(resolveSecret({ env: 'DRKIT_TEST_SECRET_X' })).toBe('from-process-env');
    } finally {
      delete process.env.DRKIT_TEST_SECRET_X;
    }
  });

  it('reads a file, trimmed', async () => {
    const file = join(dir, 'key');
    await writeFile(file, 'file-secret-value\n');
    expect(resolveSecret({ file })).toBe('file-secret-value');
  });

  it('registers the value with the redactor', () => {
    const redactor = new Redactor();
    resolveSecret({ env: 'TOKEN' }, { env: { TOKEN: 'tok-123456' }, redactor });
    expect(redactor.text('auth tok-123456 sent')).toBe(`auth ${REDACTED} sent`);
  });

  it('names an unset or empty variable, with what needs it', () => {
    const unset = thrown(() => resolveSecret({ env: 'PG_PASSWORD' }, { env: {}, name: 'secret "db"' }), 'RUNBOOK_SECRET_MISSING');
    expect(unset.message).toBe('secret "db" (environment variable PG_PASSWORD) is not set: export it before running drkit');
    const empty = thrown(() => resolveSecret({ env: 'PG_PASSWORD' }, { env: { PG_PASSWORD: '  ' } }), 'RUNBOOK_SECRET_MISSING');
    expect(empty.message).toBe('environment variable PG_PASSWORD is empty: set it to the secret before running drkit');
  });

  it('names a missing, empty or unreadable file, never its contents', async () => {
    const missing = join(dir, 'nope');
    expect(thrown(() => resolveSecret({ file: missing }), 'RUNBOOK_SECRET_MISSING').message).toBe(`file ${missing} does not exist`);

    const empty = join(dir, 'empty');
    await writeFile(empty, '\n\n');
    expect(thrown(() => resolveSecret({ file: empty }), 'RUNBOOK_SECRET_MISSING').message).toBe(
      `file ${empty} is empty: write the secret into it`,
    );

    expect(thrown(() => resolveSecret({ file: dir }), 'RUNBOOK_SECRET_MISSING').message).toBe(`file ${dir} is a directory, not a file`);

    // root reads every file, so the permission case only exists for other users.
    if (process.getuid?.() !== 0) {
      const locked = join(dir, 'locked');
      await writeFile(locked, 'locked-secret-value');
      await chmod(locked, 0o000);
      const error = thrown(() => resolveSecret({ file: locked }), 'RUNBOOK_SECRET_MISSING');
      expect(error.message).toBe(`file ${locked} cannot be read (permission denied)`);
    }
  });

  it('refuses a value too short to redact', () => {
    const error = thrown(() => resolveSecret({ env: 'PIN' }, { env: { PIN: 'abc' }, redactor: new Redactor() }), 'RUNBOOK_SECRET_MISSING');
    expect(error.message).toContain('environment variable PIN holds fewer than 4 characters');
    expect(error.message).not.toContain('abc');
  });

  it('refuses what is not a reference, without quoting it', () => {
    const error = thrown(() => resolveSecret('hunter2-literal' as unknown as SecretRef), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).not.toContain('hunter2');
  });
});

describe('secret references in the config', () => {
  it('refuses a literal secret without echoing it', () => {
    const secret = 'xoxb-live-token-123456';
    const error = thrown(
      () =>
        parseConfig({
          environments: {
            prod: {
              secrets: { db: secret },
              notify: { slack: { type: 'slack', webhookUrl: `https://hooks.slack.com/services/${secret}` } },
            },
          },
        }),
      'RUNBOOK_CONFIG_INVALID',
    );
    expect(error.message).not.toContain(secret);
    expect(error.message).toContain(
      'environments.prod.secrets.db: a secret cannot be written in the config: put the value in an environment variable and reference it with { env: "NAME" }',
    );
    expect(error.message).toContain('environments.prod.notify.slack.webhookUrl: a secret cannot be written in the config');
  });

  it('checks the shape of a reference', () => {
    const error = thrown(
      () =>
        parseConfig({
          environments: {
            prod: {
              keys: {
                both: { env: 'A', file: '/b' },
                neither: {},
                named: { env: '1BAD' },
                extra: { env: 'A', value: 'p4ssw0rd' },
                number: 1234,
              },
            },
          },
        }),
      'RUNBOOK_CONFIG_INVALID',
    );
    expect(error.message.split('\n').slice(1)).toEqual([
      '  - environments.prod.keys.both: give either env or file, not both',
      '  - environments.prod.keys.neither: expected a secret reference { env: "NAME" } or { file: "/path" }',
      '  - environments.prod.keys.named.env: expected the name of an environment variable (letters, digits and _, not starting with a digit)',
      "  - environments.prod.keys.extra.value: unknown field 'value' — a secret reference has only env or file (secret values never go in the config)",
      '  - environments.prod.keys.number: expected a secret reference { env: "NAME" } or { file: "/path" }, got a number',
    ]);
    expect(error.message).not.toContain('p4ssw0rd');
    expect(error.message).not.toContain('1234');
  });

  it('describes and recognises references', () => {
    expect(describeSecretRef({ env: 'A_B' })).toBe('environment variable A_B');
    expect(describeSecretRef({ file: '/etc/k' })).toBe('file /etc/k');
    expect(isSecretRef({ env: 'A_B' })).toBe(true);
    expect(isSecretRef({ file: '/etc/k' })).toBe(true);
    expect(isSecretRef('A_B')).toBe(false);
    expect(isSecretRef({ env: 'A', file: 'b' })).toBe(false);
  });
});
