import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { generateKey } from '@drkit/crypto-stream';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../src/index.js';
import { memoryIo } from './io.js';

const KEY = generateKey();
const OTHER = generateKey();

interface Result {
  code: number;
  out: string;
  err: string;
}

async function drkit(argv: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  const io = memoryIo(env);
  const code = await main(argv, io);
  const result = { code, out: io.out(), err: io.err() };
  for (const secret of [KEY.toString('base64'), OTHER.toString('base64'), env.AWS_SECRET_ACCESS_KEY].filter(Boolean))
    expect(`${result.out}${result.err}`).not.toContain(secret as string);
  return result;
}

describe('drkit backup and prune on a local store', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let input: string;
  const content = Buffer.concat([Buffer.from('database_url: postgres://app@db/app\n'.repeat(2000)), randomBytes(3000)]);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drkit-cli-backup-'));
    env = { DRKIT_KEY: KEY.toString('base64'), DRKIT_STORE: pathToFileURL(join(dir, 'store')).href };
    input = join(dir, 'config.yaml');
    await writeFile(input, content);
    return () => rm(dir, { recursive: true, force: true });
  });

  it('put, list, get latest and verify round-trip a config file', async () => {
    const put = await drkit(['backup', 'put', '--in', input, '--kind', 'config', '--tier', 'daily'], env);
    expect(put.code, put.err).toBe(0);
    const id = put.out.trim();
    expect(id).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}$/);
    expect(put.err).toContain(`stored config backup ${id}`);

    const list = await drkit(['backup', 'list', '--json'], env);
    expect(list.code).toBe(0);
    const manifests = JSON.parse(list.out) as { id: string; kind: string; createdAt: string; plainSize: number }[];
    expect(manifests).toHaveLength(1);
    expect(manifests[0]).toMatchObject({ id, kind: 'config', plainSize: content.length });
    expect(Date.parse(manifests[0]?.createdAt as string)).not.toBeNaN();
    const table = await drkit(['backup', 'list'], env);
    expect(table.out).toMatch(new RegExp(`^ID +KIND +TIER +CREATED +SIZE +VERIFIED\\n${id} +config +daily `));

    const out = join(dir, 'restored.yaml');
    const get = await drkit(['backup', 'get', 'latest', '--kind', 'config', '--out', out], env);
    expect(get.code, get.err).toBe(0);
    expect((await readFile(out)).equals(content)).toBe(true);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect((await drkit(['backup', 'get', id, '--out', out], env)).code).toBe(3);

    const verify = await drkit(['backup', 'verify', 'latest', '--kind', 'config'], env);
    expect(verify.code, verify.err).toBe(0);
    expect(verify.out).toBe(`${id} ok\n`);
    const after = JSON.parse((await drkit(['backup', 'list', '--json'], env)).out) as { verification?: { status: string } }[];
    expect(after[0]?.verification?.status).toBe('passed');
  });

  it('verify fails on altered stored bytes, records it, and latest then skips that backup', async () => {
    const first = (await drkit(['backup', 'put', '--in', input, '--kind', 'config'], env)).out.trim();
    const second = (await drkit(['backup', 'put', '--in', input, '--kind', 'config'], env)).out.trim();
    const manifests = JSON.parse((await drkit(['backup', 'list', '--json'], env)).out) as { id: string; object: { key: string } }[];
    const key = manifests.find((m) => m.id === second)?.object.key as string;
    const path = join(dir, 'store', key);
    const bytes = await readFile(path);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 1;
    await writeFile(path, bytes);
    const verify = await drkit(['backup', 'verify', second], env);
    expect(verify.code).toBe(1);
    expect(verify.err).toMatch(/error STORE_INTEGRITY: backup .* failed verification/);
    const out = join(dir, 'restored');
    const get = await drkit(['backup', 'get', 'latest', '--kind', 'config', '--out', out], env);
    expect(get.code, get.err).toBe(0);
    expect(get.err).toContain(first);
    // Getting the altered one by id fails, and leaves no file.
    const bad = await drkit(['backup', 'get', second, '--out', join(dir, 'bad')], env);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/STORE_INTEGRITY/);
    await expect(stat(join(dir, 'bad'))).rejects.toThrow();
  });

  it('a wrong key fails verify without marking the backup failed', async () => {
    const id = (await drkit(['backup', 'put', '--in', input, '--kind', 'config'], env)).out.trim();
    const wrong = await drkit(['backup', 'verify', id], { ...env, DRKIT_KEY: OTHER.toString('base64') });
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/SEAL_(UNKNOWN|WRONG)_KEY/);
    const manifests = JSON.parse((await drkit(['backup', 'list', '--json'], env)).out) as { verification?: unknown }[];
    expect(manifests[0]?.verification).toBeUndefined();
  });

  it('bad input: unknown scheme, unknown id, missing kind, no store', async () => {
    const scheme = await drkit(['backup', 'list', '--store', 'ftp://backups/x'], env);
    expect(scheme.code).toBe(1);
    expect(scheme.err).toMatch(/^drkit: error STORE_SCHEME_UNSUPPORTED: .*ftp.*file:\/\/\/.*s3:\/\//);
    const creds = await drkit(['backup', 'list', '--store', 's3://AKIAEXAMPLE:topsecretvalue@bucket/x'], env);
    expect(creds.code).toBe(1);
    expect(creds.err).toMatch(/STORE_URL_INVALID/);
    expect(creds.err).not.toContain('topsecretvalue');
    const missing = await drkit(['backup', 'get', '20260101T000000000Z-abcdef', '--out', join(dir, 'x')], env);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/STORE_ARTIFACT_NOT_FOUND: no backup with id 20260101T000000000Z-abcdef/);
    expect((await drkit(['backup', 'get', 'latest', '--out', join(dir, 'x')], env)).code).toBe(2);
    const nostore = await drkit(['backup', 'list'], { DRKIT_KEY: KEY.toString('base64') });
    expect(nostore.code).toBe(2);
    expect(nostore.err).toMatch(/DRKIT_STORE/);
  });

  it('prune shows the plan, refuses without --yes, deletes with it', async () => {
    for (let i = 0; i < 3; i++) expect((await drkit(['backup', 'put', '--in', input, '--kind', 'config'], env)).code).toBe(0);
    const dry = await drkit(['prune', '--keep-last', '1', '--dry-run'], env);
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out.match(/^keep /gm)).toHaveLength(1);
    expect(dry.out.match(/^drop /gm)).toHaveLength(2);
    const refused = await drkit(['prune', '--keep-last', '1'], env);
    expect(refused.code).toBe(3);
    expect(refused.err).toMatch(/pass --yes/);
    expect(JSON.parse((await drkit(['backup', 'list', '--json'], env)).out)).toHaveLength(3);
    const done = await drkit(['prune', '--keep-last', '1', '--yes'], env);
    expect(done.code, done.err).toBe(0);
    expect(JSON.parse((await drkit(['backup', 'list', '--json'], env)).out)).toHaveLength(1);
    expect((await drkit(['prune'], env)).code).toBe(2);
    expect((await drkit(['prune', '--keep-daily', 'x'], env)).code).toBe(2);
  });
});

describe('drkit backup on S3', () => {
  let s3: S3Sandbox;
  let dir: string;
  beforeAll(async () => {
    s3 = await startS3();
    dir = await mkdtemp(join(tmpdir(), 'drkit-cli-s3-'));
  });
  afterAll(async () => {
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const url = () => `s3://${s3.buckets[0]}/cli?region=${s3.region}&endpoint=${s3.endpoint}`;

  it('puts and gets through s3rver', async () => {
    const env = { ...s3.env(), DRKIT_KEY: KEY.toString('base64'), DRKIT_STORE: url() };
    const input = join(dir, 'app.env');
    await writeFile(input, 'API_URL=https://example.com\n');
    const put = await drkit(['backup', 'put', '--in', input, '--kind', 'config'], env);
    expect(put.code, put.err).toBe(0);
    const out = join(dir, 'app.env.restored');
    expect((await drkit(['backup', 'get', put.out.trim(), '--out', out], env)).code).toBe(0);
    expect(await readFile(out, 'utf8')).toBe('API_URL=https://example.com\n');
  });

  it('bad credentials and a missing bucket are clear errors; the secret is never printed', async () => {
    const secret = 'wrong-secret-value-1234567890';
    const bad = await drkit(['backup', 'list'], { ...s3.env(), AWS_SECRET_ACCESS_KEY: secret, DRKIT_STORE: url() });
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/error STORE_ACCESS_DENIED/);
    const bucket = await drkit(['backup', 'list'], {
      ...s3.env(),
      DRKIT_STORE: `s3://no-such-bucket/x?region=${s3.region}&endpoint=${s3.endpoint}`,
    });
    expect(bucket.code).toBe(1);
    expect(bucket.err).toMatch(/error STORE_BUCKET_NOT_FOUND: .*no-such-bucket/);
  });
});
