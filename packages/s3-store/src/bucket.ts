import type { LifecycleRule, S3Client } from '@aws-sdk/client-s3';
import { StoreError } from './errors.js';
import { s3sdk } from './sdk.js';

/** Options of {@link applyBucketSettings}; the defaults are the platform plan's. */
export interface BucketSettings {
  /** Keep every version of every object (an overwrite or delete can be undone). @default true */
  versioning?: boolean;
  /** Move objects to Glacier this many days after creation; 0 turns it off. @default 90 */
  glacierAfterDays?: number;
  /**
   * Abort multipart uploads left unfinished this long (a backup killed mid-upload leaves
   * parts that cost money and that no listing shows). @default 1
   */
  abortIncompleteUploadsAfterDays?: number;
  /** Only objects under this prefix (the store's). @default the whole bucket */
  prefix?: string;
}

/** What {@link applyBucketSettings} set and read back. */
export interface AppliedBucketSettings {
  versioning: 'Enabled' | 'Suspended' | 'Off';
  rules: LifecycleRule[];
}

/** The id of the lifecycle rule drkit owns; other rules in the bucket are kept as they are. */
export const LIFECYCLE_RULE_ID = 'drkit-backups';

function notImplemented(error: unknown): boolean {
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  // Servers without the bucket sub-resources misread them: s3rver takes `PUT /bucket?versioning`
  // for a bucket creation (BucketAlreadyExists) and `GET /bucket?versioning` for a listing.
  return (
    e?.name === 'NotImplemented' ||
    e?.name === 'BucketAlreadyExists' ||
    e?.name === 'BucketAlreadyOwnedByYou' ||
    e?.name === 'MethodNotAllowed' ||
    e?.$metadata?.httpStatusCode === 501
  );
}

function wrap(what: string, bucket: string, error: unknown): StoreError {
  if (notImplemented(error))
    return new StoreError(
      'STORE_UNSUPPORTED',
      `the S3 server of bucket ${bucket} does not implement ${what}; AWS S3 does — apply the settings there (or in your infrastructure code)`,
      { cause: error },
    );
  const name = (error as { name?: string })?.name ?? 'Error';
  if (name === 'NoSuchBucket')
    return new StoreError('STORE_BUCKET_NOT_FOUND', `bucket ${bucket} does not exist; create it first`, { cause: error });
  if (name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch')
    return new StoreError(
      'STORE_ACCESS_DENIED',
      `not allowed to change ${what} of bucket ${bucket} (${name}); check the credentials' permissions`,
      {
        cause: error,
      },
    );
  return new StoreError('STORE_UNAVAILABLE', `setting ${what} of bucket ${bucket} failed: ${name}`, { cause: error });
}

/**
 * Applies the plan's S3 settings to a bucket: versioning on, a lifecycle rule moving backups to
 * Glacier after 90 days, and one aborting incomplete multipart uploads after a day. Other
 * lifecycle rules of the bucket are kept; drkit's own rule is replaced. Reads the settings
 * back and returns them, so the caller sees what the bucket really has.
 * @throws StoreError STORE_UNSUPPORTED (a server without these APIs), STORE_BUCKET_NOT_FOUND,
 *   STORE_ACCESS_DENIED, STORE_OPTIONS_INVALID
 */
export async function applyBucketSettings(
  target: { client: S3Client; bucket: string },
  settings: BucketSettings = {},
): Promise<AppliedBucketSettings> {
  const { client, bucket } = target;
  const glacier = settings.glacierAfterDays ?? 90;
  const abortAfter = settings.abortIncompleteUploadsAfterDays ?? 1;
  for (const [field, value] of [
    ['glacierAfterDays', glacier],
    ['abortIncompleteUploadsAfterDays', abortAfter],
  ] as const)
    if (!Number.isInteger(value) || value < 0)
      throw new StoreError('STORE_OPTIONS_INVALID', `${field} must be a whole number of days >= 0, not ${value}`);

  if (settings.versioning ?? true) {
    try {
      await client.send(new (s3sdk().PutBucketVersioningCommand)({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    } catch (error) {
      throw wrap('versioning', bucket, error);
    }
  }

  let existing: LifecycleRule[] = [];
  try {
    existing = (await client.send(new (s3sdk().GetBucketLifecycleConfigurationCommand)({ Bucket: bucket }))).Rules ?? [];
  } catch (error) {
    // A bucket without lifecycle rules answers NoSuchLifecycleConfiguration.
    if ((error as { name?: string })?.name !== 'NoSuchLifecycleConfiguration') throw wrap('lifecycle rules', bucket, error);
  }
  const ours: LifecycleRule = {
    ID: LIFECYCLE_RULE_ID,
    Status: 'Enabled',
    Filter: { Prefix: settings.prefix ?? '' },
    ...(glacier > 0 ? { Transitions: [{ Days: glacier, StorageClass: 'GLACIER' }] } : {}),
    ...(abortAfter > 0 ? { AbortIncompleteMultipartUpload: { DaysAfterInitiation: abortAfter } } : {}),
  };
  const rules = [...existing.filter((r) => r.ID !== LIFECYCLE_RULE_ID), ...(glacier > 0 || abortAfter > 0 ? [ours] : [])];
  try {
    await client.send(new (s3sdk().PutBucketLifecycleConfigurationCommand)({ Bucket: bucket, LifecycleConfiguration: { Rules: rules } }));
    const versioning = await client.send(new (s3sdk().GetBucketVersioningCommand)({ Bucket: bucket }));
    const lifecycle = await client.send(new (s3sdk().GetBucketLifecycleConfigurationCommand)({ Bucket: bucket }));
    const applied: AppliedBucketSettings = { versioning: versioning.Status ?? 'Off', rules: lifecycle.Rules ?? [] };
    if ((settings.versioning ?? true) && applied.versioning !== 'Enabled')
      throw Object.assign(new Error('versioning did not stick'), { name: 'NotImplemented' });
    if (!applied.rules.some((r) => r.ID === LIFECYCLE_RULE_ID) && rules.length > 0)
      throw Object.assign(new Error('the lifecycle rule did not stick'), { name: 'NotImplemented' });
    return applied;
  } catch (error) {
    throw wrap('versioning and lifecycle rules', bucket, error);
  }
}
