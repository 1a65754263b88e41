import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeServiceDir, removeServiceDir, startService } from './process.js';
import { withPortRetry } from './retry.js';
import { helperScript } from './script.js';

/** The credentials s3rver accepts; requests signed with any others are refused. */
export const S3_SANDBOX_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** Options of {@link startS3}. */
export interface S3SandboxOptions {
  /** Buckets to create. @default ["drkit"] */
  buckets?: string[];
  /** The region this instance stands for (s3rver ignores it; clients need one). @default "us-east-1" */
  region?: string;
  /** Preferred TCP port. @default a free port chosen by the server */
  port?: number;
  /** @default 15000 */
  startTimeoutMs?: number;
}

/** A running sandbox S3 server and the settings an S3 client needs. */
export interface S3Sandbox {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly port: number;
  readonly region: string;
  readonly buckets: readonly string[];
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** s3rver serves buckets as path segments, not virtual hosts. */
  readonly forcePathStyle: true;
  /** Settings in the shape of S3Client's constructor options. */
  clientConfig(): {
    endpoint: string;
    region: string;
    forcePathStyle: true;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** AWS_* environment variables for this server (AWS_ENDPOINT_URL_S3 and credentials). */
  env(): Record<string, string>;
  /** The directory where s3rver keeps objects. */
  readonly dataDir: string;
  /** The instance's temp dir, removed by `stop()`. */
  readonly dir: string;
  readonly pid: number;
  readLog(bytes?: number): string;
  /** Stops the server and removes its data. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a real S3 API server (s3rver over HTTP) in a child process, on a random port, with
 * the given buckets. Start two to stand for two regions.
 * @throws SandboxError SANDBOX_START_FAILED, SANDBOX_START_TIMEOUT, SANDBOX_PORT_UNAVAILABLE
 */
export async function startS3(options: S3SandboxOptions = {}): Promise<S3Sandbox> {
  const buckets = options.buckets ?? ['drkit'];
  const region = options.region ?? 'us-east-1';
  const script = helperScript('s3-server');
  const dir = makeServiceDir('s3');
  const dataDir = join(dir, 'data');
  try {
    // Port 0 lets the server bind any free port itself, so no clash is possible; a preferred
    // port that is taken falls back to that.
    const { port, service } = await withPortRetry('s3rver', options.port ?? 0, async (requested, attempt) => {
      const logFile = join(dir, `s3-${attempt}.log`);
      const service = await startService({
        kind: 's3',
        command: process.execPath,
        args: [...script.execArgv, script.path, dataDir, buckets.join(','), String(attempt === 0 ? requested : 0)],
        dir,
        logFile,
        ready: /"ready":true/,
        stopSignal: 'SIGTERM',
        timeoutMs: options.startTimeoutMs ?? 15_000,
      });
      const line =
        readFileSync(logFile, 'utf8')
          .split('\n')
          .find((l) => l.includes('"ready":true')) ?? '{}';
      return { port: Number((JSON.parse(line) as { port?: number }).port), service };
    });
    const endpoint = `http://127.0.0.1:${port}`;
    const credentials = { ...S3_SANDBOX_CREDENTIALS };
    return {
      endpoint,
      port,
      region,
      buckets,
      credentials,
      forcePathStyle: true,
      clientConfig: () => ({ endpoint, region, forcePathStyle: true, credentials: { ...credentials } }),
      env: () => ({
        AWS_ENDPOINT_URL_S3: endpoint,
        AWS_REGION: region,
        AWS_ACCESS_KEY_ID: credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      }),
      dataDir,
      dir,
      pid: service.pid,
      readLog: service.readLog,
      stop: service.stop,
    };
  } catch (error) {
    await removeServiceDir(dir);
    throw error;
  }
}
