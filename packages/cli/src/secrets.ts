import { redactUrl } from '@drkit/postgres-backup';
import { redactRedisUrl } from '@drkit/redis-backup';
import { UsageError } from './errors.js';

const MASK = '***';

/** The password of a connection URL (raw and decoded), and a `password=` query value: what must never be printed. */
export function urlSecrets(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const parsed = new URL(url.trim().replace(/^postgres(ql)?:/i, 'http:'));
    let decoded = parsed.password;
    try {
      decoded = decodeURIComponent(parsed.password);
    } catch {
      // not percent-encoded
    }
    return [parsed.password, decoded, parsed.searchParams.get('password') ?? ''].filter((s) => s.length >= 3);
  } catch {
    return [];
  }
}

/** `text` with the password of any postgres or Redis URL removed and every known secret masked. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = redactRedisUrl(redactUrl(text)).replace(/([?&]password=)[^&\s]*/gi, `$1${MASK}`);
  for (const secret of secrets)
    for (const form of new Set([secret, encodeURIComponent(secret)])) if (form) out = out.split(form).join(MASK);
  return out;
}

/**
 * Runs `body`; a failure leaves with its message scrubbed of `secrets`, and a failure that
 * `isUsage` recognises (an invalid URL or option of the library) becomes a usage error (exit 2).
 */
export async function guarded<T>(
  secrets: readonly string[],
  isUsage: (error: unknown) => error is Error & { code: string },
  body: () => Promise<T>,
): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (isUsage(error)) throw new UsageError(`${error.code}: ${scrub(error.message, secrets)}`);
    if (error instanceof Error) {
      const clean = scrub(error.message, secrets);
      if (clean !== error.message) {
        try {
          error.message = clean;
        } catch {
          throw new Error(clean);
        }
      }
    }
    throw error;
  }
}
