import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { createFsStore, createMirroredStore, createS3Store, type Store } from '../src/index.js';
import { storeContract } from './contract.js';

/** An S3 store under a fresh prefix of a sandbox server's bucket. */
export function sandboxS3Store(s3: S3Sandbox, extra: { maxAttempts?: number } = {}): Store {
  return createS3Store({
    bucket: s3.buckets[0] as string,
    prefix: `contract-${randomBytes(4).toString('hex')}/`,
    ...s3.clientConfig(),
    ...extra,
  });
}

storeContract('fs', async () => {
  const root = await mkdtemp(join(tmpdir(), 'drkit-store-fs-'));
  return { store: createFsStore(root), cleanup: () => rm(root, { recursive: true, force: true }) };
});

storeContract('s3 (s3rver over HTTP)', async () => {
  const s3 = await startS3();
  const store = sandboxS3Store(s3);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await s3.stop();
    },
  };
});

storeContract('mirror (two s3rver regions)', async () => {
  const east = await startS3({ region: 'us-east-1' });
  const west = await startS3({ region: 'us-west-2' });
  const store = createMirroredStore({ primary: sandboxS3Store(east), replicas: [sandboxS3Store(west)] });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await Promise.all([east.stop(), west.stop()]);
    },
  };
});
