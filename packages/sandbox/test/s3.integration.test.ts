import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { startS3 } from '../src/index.js';
import { leftovers } from './helpers.js';

describe('startS3', () => {
  it('serves a real round trip through the AWS SDK over HTTP, then stop() leaves nothing', async () => {
    const server = await startS3({ buckets: ['backups', 'other'] });
    const s3 = new S3Client(server.clientConfig());
    try {
      const body = Buffer.from('sealed bytes \u0000\u00ff', 'utf8');
      await s3.send(new PutObjectCommand({ Bucket: 'backups', Key: 'pg/2026/one.bin', Body: body }));
      const got = await s3.send(new GetObjectCommand({ Bucket: 'backups', Key: 'pg/2026/one.bin' }));
      expect(Buffer.from((await got.Body?.transformToByteArray()) ?? [])).toEqual(body);
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'backups', Prefix: 'pg/' }));
      expect(listed.Contents?.map((o) => o.Key)).toEqual(['pg/2026/one.bin']);
      const other = await s3.send(new ListObjectsV2Command({ Bucket: 'other' }));
      expect(other.KeyCount).toBe(0);
    } finally {
      s3.destroy();
      await server.stop();
    }
    expect(await leftovers(server.dir)).toEqual({ processes: [], dirExists: false });
  });

  it('refuses requests signed with other credentials', async () => {
    const server = await startS3();
    const s3 = new S3Client({ ...server.clientConfig(), credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'wrong' } });
    try {
      await expect(s3.send(new ListObjectsV2Command({ Bucket: 'drkit' }))).rejects.toMatchObject({ name: 'SignatureDoesNotMatch' });
    } finally {
      s3.destroy();
      await server.stop();
    }
  });

  it('runs two independent instances standing for two regions; stopping one leaves the other serving', async () => {
    const [east, west] = await Promise.all([startS3({ region: 'us-east-1' }), startS3({ region: 'us-west-2' })]);
    const a = new S3Client({ ...east.clientConfig(), maxAttempts: 1 });
    const b = new S3Client(west.clientConfig());
    try {
      expect(east.port).not.toBe(west.port);
      await a.send(new PutObjectCommand({ Bucket: 'drkit', Key: 'only-east', Body: 'x' }));
      const westList = await b.send(new ListObjectsV2Command({ Bucket: 'drkit' }));
      expect(westList.KeyCount).toBe(0);
      await east.stop();
      await expect(a.send(new ListObjectsV2Command({ Bucket: 'drkit' }))).rejects.toThrow(/ECONNREFUSED|connect/);
      await b.send(new PutObjectCommand({ Bucket: 'drkit', Key: 'still-up', Body: 'y' }));
      expect((await b.send(new ListObjectsV2Command({ Bucket: 'drkit' }))).KeyCount).toBe(1);
    } finally {
      a.destroy();
      b.destroy();
      await Promise.all([east.stop(), west.stop()]);
    }
  });

  it('survives PUTs and DELETEs racing under one prefix (deleting the last key must not break a PUT beside it)', async () => {
    const server = await startS3();
    // One attempt: a server that dies or fails a request must show here, not be retried away.
    const s3 = new S3Client({ ...server.clientConfig(), maxAttempts: 1 });
    try {
      for (let round = 0; round < 60; round++) {
        const prefix = `locks/race-${round % 3}/`;
        await s3.send(new PutObjectCommand({ Bucket: 'drkit', Key: `${prefix}old`, Body: 'o' }));
        await Promise.all([
          s3.send(new DeleteObjectCommand({ Bucket: 'drkit', Key: `${prefix}old` })),
          ...Array.from({ length: 6 }, (_, i) => s3.send(new PutObjectCommand({ Bucket: 'drkit', Key: `${prefix}n${i}`, Body: `${i}` }))),
        ]);
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'drkit', Prefix: prefix }));
        expect(listed.Contents?.map((o) => o.Key)).toEqual(Array.from({ length: 6 }, (_, i) => `${prefix}n${i}`));
        await Promise.all(
          Array.from({ length: 6 }, (_, i) => s3.send(new DeleteObjectCommand({ Bucket: 'drkit', Key: `${prefix}n${i}` }))),
        );
      }
    } finally {
      s3.destroy();
      await server.stop();
    }
  });

  it('answers a PUT only once the object is whole: a HEAD right after it sees every byte', async () => {
    const server = await startS3();
    const s3 = new S3Client({ ...server.clientConfig(), maxAttempts: 1 });
    try {
      const sizes = [1, 805, 64 * 1024, 1024 * 1024];
      const wrong: string[] = [];
      for (let round = 0; round < 25; round++)
        await Promise.all(
          sizes.map(async (size, i) => {
            const key = `heads/${round}/${i}`;
            await s3.send(new PutObjectCommand({ Bucket: 'drkit', Key: key, Body: Buffer.alloc(size, i + 1) }));
            const head = await s3.send(new HeadObjectCommand({ Bucket: 'drkit', Key: key }));
            if (head.ContentLength !== size) wrong.push(`${key}: ${head.ContentLength} of ${size}`);
          }),
        );
      expect(wrong).toEqual([]);
    } finally {
      s3.destroy();
      await server.stop();
    }
  });
});
