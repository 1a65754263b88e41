// Child process that runs one s3rver instance: a real S3 API over HTTP, backed by a dir.
// Started by startS3(); a separate process so that the client under test shares no event
// loop with the server and a "region" can be stopped like a real outage.
//
// s3rver checks that the access key exists but not the SigV4 signature, so a wrong secret
// would pass. This server verifies the signature itself (header and presigned forms)
// before handing the request to s3rver, so bad credentials fail here as they do on AWS.
// Runs as a standalone script: no relative imports, erasable types only.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import S3rver from 's3rver';

const [dir, bucketList, port, accessKeyId = 'S3RVER', secretAccessKey = 'S3RVER'] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: s3-server <dir> <bucket,bucket> [port] [accessKeyId] [secretAccessKey]\n');
  process.exit(2);
}
const buckets = (bucketList ?? '').split(',').filter(Boolean);

function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

interface Parsed {
  credential: string;
  signedHeaders: string;
  signature: string;
  amzDate: string;
  payloadHash: string;
  query: [string, string][];
}

function parseRequest(req: IncomingMessage, rawQuery: string): Parsed | undefined {
  const query = rawQuery
    ? rawQuery.split('&').map((pair): [string, string] => {
        const i = pair.indexOf('=');
        const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'));
        return i < 0 ? [decode(pair), ''] : [decode(pair.slice(0, i)), decode(pair.slice(i + 1))];
      })
    : [];
  const auth = req.headers.authorization;
  if (auth?.startsWith('AWS4-HMAC-SHA256 ')) {
    const fields = Object.fromEntries(
      auth
        .slice('AWS4-HMAC-SHA256 '.length)
        .split(',')
        .map((part) => part.trim().split('=') as [string, string]),
    );
    return {
      credential: fields.Credential ?? '',
      signedHeaders: fields.SignedHeaders ?? '',
      signature: fields.Signature ?? '',
      amzDate: String(req.headers['x-amz-date'] ?? ''),
      payloadHash: String(req.headers['x-amz-content-sha256'] ?? 'UNSIGNED-PAYLOAD'),
      query,
    };
  }
  const get = (name: string) => query.find(([k]) => k === name)?.[1];
  if (get('X-Amz-Algorithm') === 'AWS4-HMAC-SHA256') {
    return {
      credential: get('X-Amz-Credential') ?? '',
      signedHeaders: get('X-Amz-SignedHeaders') ?? '',
      signature: get('X-Amz-Signature') ?? '',
      amzDate: get('X-Amz-Date') ?? '',
      payloadHash: 'UNSIGNED-PAYLOAD',
      query: query.filter(([k]) => k !== 'X-Amz-Signature'),
    };
  }
  return undefined;
}

/** Undefined when the request is correctly signed (or unsigned: s3rver judges those), else the S3 error code. */
function checkSignature(req: IncomingMessage): string | undefined {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const parsed = parseRequest(req, q < 0 ? '' : url.slice(q + 1));
  if (!parsed) return undefined;
  const [keyId, date, region, service, terminator] = parsed.credential.split('/');
  if (keyId !== accessKeyId) return 'InvalidAccessKeyId';
  if (!date || !region || !service || terminator !== 'aws4_request') return 'AuthorizationQueryParametersError';
  const canonicalQuery = parsed.query
    .map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const names = parsed.signedHeaders.split(';');
  const canonicalHeaders = names
    .map((name) => {
      const value = req.headers[name];
      const text = Array.isArray(value) ? value.join(',') : (value ?? '');
      return `${name}:${text.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  const canonicalRequest = [req.method, path, canonicalQuery, canonicalHeaders, parsed.signedHeaders, parsed.payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', parsed.amzDate, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), service), 'aws4_request');
  const expected = hmac(key, stringToSign);
  const provided = Buffer.from(parsed.signature, 'hex');
  return provided.length === expected.length && timingSafeEqual(provided, expected) ? undefined : 'SignatureDoesNotMatch';
}

const s3rver = new S3rver({
  directory: dir,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
const handle = s3rver.callback();

/**
 * s3rver 3.7.1 deletes an object and then removes the directories its key left empty. That
 * races a PUT under the same prefix, which creates the directory and then opens its file: the
 * open fails with ENOENT on an error event nobody listens to, and the whole server dies (a lock
 * race, where contenders write and delete entries under one prefix, hits it under load).
 * Real S3 has no directories, so deleting only the object's files is the faithful behaviour;
 * listings are built from object files and never show an empty directory.
 */
const store = (
  s3rver as unknown as {
    store: {
      getResourcePath(bucket: string, key: string, resource: string): string;
      putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
    };
  }
).store;
// Beside the data dir (in the same temp dir, so on the same file system): s3rver would list a
// directory inside it as a bucket.
const staging = join(dirname(dir as string), 'staging');
Object.assign(store, {
  /**
   * s3rver 3.7.1 answers a PUT once the body has passed its hashing stream, before the file is
   * written (a Buffer body: before a byte is), so a HEAD right after the PUT can find an empty
   * object (seen under load as "S3 holds 0 bytes after 805 were uploaded"). As on S3, the
   * object is complete before the PUT is answered: written beside the bucket, then renamed.
   */
  async putObject(object: {
    bucket: string;
    key: string;
    content: Buffer | Readable;
    metadata: unknown;
  }): Promise<{ size: number; md5: string }> {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(dirname(objectPath), { recursive: true });
    await mkdir(staging, { recursive: true });
    const temp = join(staging, randomBytes(8).toString('hex'));
    const md5 = createHash('md5');
    let size = 0;
    try {
      await pipeline(
        Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content,
        new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            md5.update(chunk);
            size += chunk.length;
            callback(null, chunk);
          },
        }),
        createWriteStream(temp),
      );
      await rename(temp, objectPath);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  },
  async deleteObject(bucket: string, key: string): Promise<void> {
    await Promise.all(
      ['object', 'object.md5', 'metadata.json'].map((resource) =>
        unlink(store.getResourcePath(bucket, key, resource)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
        }),
      ),
    );
  },
});

function xmlError(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`);
}

/**
 * AbortMultipartUpload (DELETE /bucket/key?uploadId=ID), which s3rver 3.7.1 answers with 405:
 * as on S3, the upload's stored parts are deleted and the upload id stops existing. Without it
 * a test could not tell a driver that aborts its failed uploads from one that leaks them.
 */
async function abortMultipartUpload(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const bucket = decodeURIComponent(url.pathname.split('/')[1] ?? '');
  const uploadId = url.searchParams.get('uploadId') ?? '';
  req.resume();
  if (!buckets.includes(bucket)) return xmlError(res, 404, 'NoSuchBucket', 'The specified bucket does not exist');
  // s3rver keeps an upload's parts in <dir>/<bucket>/._S3rver_uploads/<uploadId>/.
  const parts = join(dir as string, bucket, '._S3rver_uploads', uploadId);
  const exists = /^[A-Za-z0-9._-]+$/.test(uploadId) && (await stat(parts).catch(() => undefined))?.isDirectory();
  if (!exists) return xmlError(res, 404, 'NoSuchUpload', 'The specified multipart upload does not exist.');
  await rm(parts, { recursive: true, force: true });
  res.writeHead(204).end();
}

const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  const failure = checkSignature(req);
  if (!failure) {
    if (req.method === 'DELETE' && /[?&]uploadId=/.test(req.url ?? '')) {
      abortMultipartUpload(req, res).catch((error: unknown) => xmlError(res, 500, 'InternalError', String(error)));
      return;
    }
    handle(req, res);
    return;
  }
  req.resume();
  const message =
    failure === 'InvalidAccessKeyId'
      ? 'The AWS Access Key Id you provided does not exist in our records.'
      : 'The request signature we calculated does not match the signature you provided. Check your key and signing method.';
  res.writeHead(403, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${failure}</Code><Message>${message}</Message></Error>`);
});

await s3rver.configureBuckets();
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(port ?? 0), '127.0.0.1', resolve);
});
const address = server.address();
process.stdout.write(`${JSON.stringify({ ready: true, port: typeof address === 'object' && address ? address.port : 0 })}\n`);

const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
