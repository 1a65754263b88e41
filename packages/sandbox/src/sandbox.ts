import { type PostgresSandbox, type PostgresSandboxOptions, startPostgres } from './postgres.js';
import { type RedisSandbox, type RedisSandboxOptions, startRedis } from './redis.js';
import { type S3Sandbox, type S3SandboxOptions, startS3 } from './s3.js';

/** Options of {@link startSandbox}: each service's options, or `false` to leave it out. */
export interface SandboxOptions {
  postgres?: PostgresSandboxOptions | false;
  redis?: RedisSandboxOptions | false;
  s3?: S3SandboxOptions | false;
  /** A second S3 server standing for the replica region. @default false */
  s3Replica?: S3SandboxOptions | boolean;
}

type Started<Option, Service> = [Option] extends [false] ? undefined : Service;

/** The services {@link startSandbox} started, typed by the options given. */
export interface Sandbox<O extends SandboxOptions = SandboxOptions> {
  postgres: Started<O['postgres'], PostgresSandbox>;
  redis: Started<O['redis'], RedisSandbox>;
  s3: Started<O['s3'], S3Sandbox>;
  s3Replica: [O['s3Replica']] extends [true | S3SandboxOptions] ? S3Sandbox : S3Sandbox | undefined;
  /** Stops every service; resolves when all are down and their dirs removed. */
  stop(): Promise<void>;
}

type Stoppable = { stop(): Promise<void> };

/**
 * Starts PostgreSQL, redis-server and S3 in parallel. If any fails to start, the ones that
 * did are stopped before the error is thrown, so a failed start leaves nothing behind.
 */
export async function startSandbox<const O extends SandboxOptions = SandboxOptions>(options: O = {} as O): Promise<Sandbox<O>> {
  const replica = options.s3Replica;
  const starts = [
    options.postgres === false ? undefined : startPostgres(options.postgres),
    options.redis === false ? undefined : startRedis(options.redis),
    options.s3 === false ? undefined : startS3(options.s3),
    replica ? startS3({ region: 'us-west-2', ...(replica === true ? {} : replica) }) : undefined,
  ] as const;
  const results = await Promise.allSettled(starts.map((s) => s ?? Promise.resolve(undefined)));
  const started = results.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value as Stoppable] : []));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.map((s) => s.stop()));
    throw failed.reason;
  }
  // biome-ignore lint/suspicious/noExplicitAny: each slot's type is given by Sandbox<O>.
  const value = (i: number): any => (results[i] as PromiseFulfilledResult<unknown>).value;
  return {
    postgres: value(0),
    redis: value(1),
    s3: value(2),
    s3Replica: value(3),
    async stop() {
      const outcomes = await Promise.allSettled(started.map((s) => s.stop()));
      const error = outcomes.find((o) => o.status === 'rejected');
      if (error) throw error.reason;
    },
  };
}
