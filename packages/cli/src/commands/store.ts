// The store a command works on, from --store or DRKIT_STORE. Its own module, importing only the
// store drivers: wal-push loads it once per WAL segment.
import { openStore, type Store, type StoreEvent } from '@drkit/s3-store/stores';
import type { CliIo } from '../command.js';
import { UsageError } from '../errors.js';

/** What a store reports (retries, fall-backs to a replica), as one line for people. */
function describeEvent(event: StoreEvent): string {
  switch (event.type) {
    case 'retry':
      return `retrying ${event.operation} (attempt ${event.attempt}, in ${event.delayMs} ms): ${event.reason}`;
    case 'replica-fallback':
      return `${event.operation} ${event.key}: ${event.failed} failed, served by ${event.servedBy} (${event.reason})`;
    case 'replica-failed':
      return `${event.operation} ${event.key}: copy at ${event.replica} failed: ${event.reason}`;
    case 'multipart-aborted':
      return `upload of ${event.key} aborted (${event.reason}); no partial object was left`;
  }
}

/**
 * The store named by --store or DRKIT_STORE. S3 credentials and region come from the
 * command's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * AWS_REGION, AWS_ENDPOINT_URL_S3), else the SDK's default chain (profiles, instance roles).
 */
export function commandStore(url: string | undefined, io: CliIo, s3Options: { partSize?: number } = {}): Store {
  const value = url ?? io.env.DRKIT_STORE;
  if (value === undefined || value.trim() === '')
    throw new UsageError(
      'no store: pass --store URL or set DRKIT_STORE (file:///var/backups/drkit or s3://bucket/prefix?region=us-east-1)',
    );
  const env = io.env;
  const credentials =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? {
          accessKeyId: env.AWS_ACCESS_KEY_ID,
          secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
          ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
        }
      : undefined;
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  return openStore(value, {
    s3: { ...(credentials ? { credentials } : {}), ...(region ? { region } : {}), ...(endpoint ? { endpoint } : {}), ...s3Options },
    onEvent: (event) => io.stderr.write(`drkit: ${describeEvent(event)}\n`),
  });
}
