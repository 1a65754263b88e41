/** A dependency did not answer in time, or failed: the request is answered 503, the app lives on. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
  /** Which dependency: "postgres", "redis" or "uploads". */
  readonly dependency: string;

  constructor(dependency: string, cause: unknown) {
    super(`${dependency} unavailable: ${shortMessage(cause)}`, { cause });
    this.dependency = dependency;
  }
}

/** The first line of an error's message, short enough for a JSON field or a log line. */
export function shortMessage(error: unknown, max = 200): string {
  let text = error instanceof Error ? error.message : String(error);
  // AggregateError (ECONNREFUSED on both ::1 and 127.0.0.1) has an empty message of its own.
  if (!text && error instanceof AggregateError) text = error.errors.map((e) => shortMessage(e)).join('; ');
  const code = (error as { code?: unknown } | null)?.code;
  if (!text && typeof code === 'string') text = code;
  if (!text && error instanceof Error) text = error.name;
  const line = (text.split('\n')[0] ?? '').trim() || 'unknown error';
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

/**
 * Resolves or rejects with `work`, or rejects after `ms`. The work itself is not cancelled
 * (pg and ioredis have their own timeouts); this only keeps a caller from waiting on it.
 */
export async function withDeadline<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  work.catch(() => {});
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
