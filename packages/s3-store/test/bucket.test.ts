import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyBucketSettings, LIFECYCLE_RULE_ID } from '../src/bucket.js';
import { codeOf } from './contract.js';

/**
 * Bucket versioning and lifecycle rules are AWS features that cannot run here (s3rver answers
 * NotImplemented). This server keeps the XML documents the SDK sends and returns them, and
 * records every request, so the test sees exactly what would reach AWS.
 */
async function bucketConfigServer(): Promise<{ endpoint: string; requests: string[]; docs: Map<string, string>; close(): Promise<void> }> {
  const docs = new Map<string, string>();
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const what = url.searchParams.has('versioning') ? 'versioning' : url.searchParams.has('lifecycle') ? 'lifecycle' : 'other';
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      requests.push(`${req.method} ${url.pathname.replace(/\/$/, '')} ${what}`);
      if (req.method === 'PUT') {
        docs.set(what, body);
        res.writeHead(200).end();
        return;
      }
      const doc = docs.get(what);
      // A bucket whose versioning was never set answers with an empty configuration.
      if (doc === undefined && what === 'versioning') {
        res.writeHead(200, { 'content-type': 'application/xml' }).end('<VersioningConfiguration/>');
        return;
      }
      if (doc === undefined) {
        const code = what === 'lifecycle' ? 'NoSuchLifecycleConfiguration' : 'NoSuchKey';
        res.writeHead(404, { 'content-type': 'application/xml' }).end(`<Error><Code>${code}</Code><Message>none</Message></Error>`);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/xml' }).end(doc);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    docs,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const client = (endpoint: string) =>
  new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'A', secretAccessKey: 'B' },
    maxAttempts: 1,
  });

describe('applyBucketSettings', () => {
  let s3: S3Sandbox;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it("sends the plan's settings (versioning, Glacier after 90 days, abort stale uploads) and reads them back", async () => {
    const server = await bucketConfigServer();
    const c = client(server.endpoint);
    try {
      const applied = await applyBucketSettings({ client: c, bucket: 'backups' }, { prefix: 'prod/' });
      expect(applied.versioning).toBe('Enabled');
      expect(applied.rules).toHaveLength(1);
      expect(applied.rules[0]).toMatchObject({
        ID: LIFECYCLE_RULE_ID,
        Status: 'Enabled',
        Filter: { Prefix: 'prod/' },
        Transitions: [{ Days: 90, StorageClass: 'GLACIER' }],
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
      });
      expect(server.docs.get('versioning')).toContain('<Status>Enabled</Status>');
      expect(server.requests).toContain('PUT /backups versioning');
      expect(server.requests).toContain('PUT /backups lifecycle');
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('keeps lifecycle rules it does not own and replaces its own', async () => {
    const server = await bucketConfigServer();
    const c = client(server.endpoint);
    try {
      server.docs.set(
        'lifecycle',
        '<LifecycleConfiguration><Rule><ID>logs-expiry</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>',
      );
      await applyBucketSettings({ client: c, bucket: 'backups' }, { glacierAfterDays: 30 });
      const applied = await applyBucketSettings({ client: c, bucket: 'backups' });
      expect(applied.rules.map((r) => r.ID)).toEqual(['logs-expiry', LIFECYCLE_RULE_ID]);
      expect(applied.rules[1]?.Transitions?.[0]?.Days).toBe(90);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('says plainly when the server does not implement the settings (s3rver)', async () => {
    const c = new S3Client({ ...s3.clientConfig(), maxAttempts: 1 });
    try {
      expect(await codeOf(applyBucketSettings({ client: c, bucket: s3.buckets[0] as string }))).toBe('STORE_UNSUPPORTED');
      expect(await codeOf(applyBucketSettings({ client: c, bucket: 'b' }, { glacierAfterDays: -1 }))).toBe('STORE_OPTIONS_INVALID');
    } finally {
      c.destroy();
    }
  });
});
