// Uploading a 1 GiB file to S3 (a sandbox s3rver on this machine): drkit's S3 store (a
// multipart upload of 8 MiB parts, 4 in parallel, hashing SHA-256 on the way) vs one plain
// PutObject of the same file streamed by the AWS SDK. Both go through the same server, so
// the numbers say what the store costs on top of the SDK, not what S3 would do.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createS3Store } from '@drkit/s3-store';
import { type S3Sandbox, startS3 } from '@drkit/sandbox';
import { defineBench } from './lib/define.ts';

const MiB = 1024 * 1024;
const SIZE = 1024 * MiB;
const POOL = 64 * MiB;
const BLOCK = 64 * 1024;
const BUCKET = 'bench';

interface Ctx {
  dir: string;
  /** The 1 GiB input. */
  file: string;
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

// The server lives in the parent (setup and teardown run there): its stop() cannot travel to
// the children in ctx.
let server: S3Sandbox | undefined;

/** 64 KiB of JSON lines, like a table export: the compressible half of the input. */
function jsonBlock(seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < BLOCK; i++) {
    const n = seed * 1000 + i;
    const line = `{"id":${n},"user":"user-${n % 9973}","email":"u${n % 9973}@example.com","active":${n % 3 !== 0},"balance":${((n * 7919) % 1000003) / 100}}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, BLOCK);
}

async function writeInput(path: string): Promise<void> {
  const blocks: Buffer[] = [];
  for (let b = 0; b < POOL / BLOCK; b++) blocks.push(b % 2 === 0 ? randomBytes(BLOCK) : jsonBlock(b));
  const pool = Buffer.concat(blocks);
  await pipeline(
    (function* () {
      for (let at = 0; at < SIZE; at += pool.length) yield pool.subarray(0, Math.min(pool.length, SIZE - at));
    })(),
    createWriteStream(path),
  );
}

const credentials = (ctx: Ctx) => ({ accessKeyId: ctx.accessKeyId, secretAccessKey: ctx.secretAccessKey });

export default defineBench<Ctx>({
  name: 'store',
  description:
    'a 1 GiB file (half random, half JSON) uploaded to a local s3rver: createS3Store().put() (multipart, 8 MiB parts x 4 in parallel, SHA-256 + CRC32 per part + SigV4 payload hash over http) ' +
    'vs one PutObject streamed by the AWS SDK (no checksum: s3rver cannot decode aws-chunked bodies; unsigned payload); both sides share the server and the 2 cores; MB = 10^6 B',
  async setup() {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-bench-store-'));
    try {
      const file = join(dir, 'input-1GiB');
      await writeInput(file);
      server = await startS3({ buckets: [BUCKET] });
      return { dir, file, endpoint: server.endpoint, region: server.region, ...server.credentials };
    } catch (error) {
      await server?.stop();
      server = undefined;
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  },
  async teardown(ctx) {
    const running = server;
    server = undefined;
    try {
      await rm(ctx.dir, { recursive: true, force: true });
    } finally {
      await running?.stop();
    }
  },
  cases: [
    {
      name: '1 GiB upload',
      bytes: SIZE,
      drkit: async (ctx) => {
        const store = createS3Store({ bucket: BUCKET, endpoint: ctx.endpoint, region: ctx.region, credentials: credentials(ctx) });
        try {
          const result = await store.put('bench/drkit.bin', createReadStream(ctx.file), { size: SIZE });
          if (result.size !== SIZE) throw new Error(`stored ${result.size} bytes, not ${SIZE}`);
        } finally {
          await store.close();
        }
      },
      peer: {
        name: 'SDK PutObject (stream)',
        run: async (ctx) => {
          const client = new S3Client({
            endpoint: ctx.endpoint,
            region: ctx.region,
            forcePathStyle: true,
            credentials: credentials(ctx),
            requestChecksumCalculation: 'WHEN_REQUIRED',
          });
          try {
            await client.send(
              new PutObjectCommand({ Bucket: BUCKET, Key: 'bench/peer.bin', Body: createReadStream(ctx.file), ContentLength: SIZE }),
            );
          } finally {
            client.destroy();
          }
        },
      },
    },
  ],
});
