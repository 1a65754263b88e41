// Turns what the AWS SDK throws into StoreErrors with a stable code and a message that says what
// to do. The SDK's own error objects are never kept as a cause: a SignatureDoesNotMatch from AWS
// carries the access key id (and the string to sign) as fields, so only a scrubbed copy of the
// name, message and HTTP status goes along.
import { StoreError, type StoreErrorCode } from './errors.js';

/** What an S3 failure happened to, for the message. */
export interface S3ErrorContext {
  /** e.g. "put backups/x.bin" */
  what: string;
  bucket: string;
  /** Where requests went: the endpoint, or the AWS regional host. */
  endpoint: string;
  /** Strings that must never appear in a message (credentials given to the store). */
  secrets?: readonly string[];
}

/** The fields of an SDK error this module reads. */
interface SdkErrorLike {
  name?: string;
  message?: string;
  code?: string;
  Code?: string;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number; attempts?: number; requestId?: string };
}

const ACCESS_DENIED = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'AccountProblem',
  'AllAccessDisabled',
  'InvalidSecurity',
  'UnrecognizedClientException',
  'CredentialsProviderError',
  'KMS.AccessDeniedException',
]);

const THROTTLING = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestThrottled',
]);

/** Node and SDK errors of a connection that failed or broke: worth retrying. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

function fieldsOf(error: unknown): SdkErrorLike {
  return typeof error === 'object' && error !== null ? (error as SdkErrorLike) : { message: String(error) };
}

/** The S3 error code (NoSuchKey, SlowDown, ...) or Node error code (ECONNRESET, ...), if any. */
export function errorCodeOf(error: unknown): string | undefined {
  const e = fieldsOf(error);
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  if (typeof e.Code === 'string' && e.Code !== '') return e.Code;
  if (e.name !== undefined && e.name !== 'Error' && e.name !== 'TypeError' && e.name !== 'S3ServiceException') return e.name;
  // The SDK wraps some connection errors; their Node code sits on the cause.
  if (e.cause !== undefined && e.cause !== error) return errorCodeOf(e.cause);
  return undefined;
}

/** The HTTP status of an S3 error response, if there was one. */
export function httpStatusOf(error: unknown): number | undefined {
  return fieldsOf(error).$metadata?.httpStatusCode;
}

/** True for an aborted request (our own AbortSignal, not a network failure). */
export function isAbortError(error: unknown): boolean {
  const e = fieldsOf(error);
  return e.name === 'AbortError' || e.code === 'ABORT_ERR';
}

/**
 * True for failures that a later attempt may not see: connection refused or reset, timeouts,
 * 5xx and throttling. Used for the get stream's resumption (the SDK classifies request errors
 * itself).
 */
export function isTransientError(error: unknown): boolean {
  if (isAbortError(error)) return false;
  const code = errorCodeOf(error);
  const status = httpStatusOf(error);
  if (code !== undefined && (NETWORK_CODES.has(code) || THROTTLING.has(code) || code === 'TimeoutError' || code === 'RequestTimeout'))
    return true;
  if (status !== undefined && (status === 429 || status === 500 || status === 502 || status === 503 || status === 504)) return true;
  const message = fieldsOf(error).message ?? '';
  return /socket hang up|^aborted$|premature close/i.test(message);
}

/** Replaces every secret in `text` with `***`. */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('***');
  return out;
}

/**
 * A short description of an SDK or network error, e.g. `SlowDown (HTTP 503)` or
 * `ECONNRESET: socket hang up`; never the error's other fields.
 */
export function describeS3Error(error: unknown, secrets: readonly string[] = []): string {
  const e = fieldsOf(error);
  const code = errorCodeOf(error);
  const status = httpStatusOf(error);
  const message = (e.message ?? '').split('\n')[0]?.slice(0, 300) ?? '';
  // A HEAD response has no body, so the SDK cannot name the error: the status says it all.
  const named = code !== undefined && code !== 'Unknown' && code !== 'UnknownError' ? code : undefined;
  const parts = status !== undefined && named === undefined ? [`HTTP ${status}`] : [named ?? e.name ?? 'Error'];
  if (status !== undefined && named !== undefined) parts.push(`(HTTP ${status})`);
  // S3's messages for a code are fixed sentences that repeat the code; Node's carry the address.
  if (message !== '' && message !== code && !/^Unknown(Error)?$/.test(message)) parts.push(`- ${message}`);
  return redact(parts.join(' '), secrets);
}

/** A plain copy of an SDK error that keeps what helps diagnosis and nothing that could hold a credential. */
function scrubbedCause(error: unknown, secrets: readonly string[]): Error {
  const e = fieldsOf(error);
  const copy = new Error(describeS3Error(error, secrets));
  copy.name = redact(e.name ?? 'Error', secrets);
  const code = errorCodeOf(error);
  Object.assign(copy, {
    ...(code === undefined ? {} : { code: redact(code, secrets) }),
    ...(e.$metadata?.httpStatusCode === undefined ? {} : { statusCode: e.$metadata.httpStatusCode }),
    ...(e.$metadata?.requestId === undefined ? {} : { requestId: e.$metadata.requestId }),
    ...(e.$metadata?.attempts === undefined ? {} : { attempts: e.$metadata.attempts }),
  });
  return copy;
}

function attemptsText(error: unknown): string {
  const attempts = fieldsOf(error).$metadata?.attempts;
  return attempts !== undefined && attempts > 1 ? ` after ${attempts} attempts` : '';
}

/**
 * Maps an SDK (or network) error to a StoreError:
 * - NoSuchBucket: STORE_BUCKET_NOT_FOUND;
 * - AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch, any 403, missing credentials:
 *   STORE_ACCESS_DENIED;
 * - NoSuchKey, NotFound, 404: STORE_NOT_FOUND;
 * - refused or broken connections, timeouts, 5xx, throttling (after the SDK's retries):
 *   STORE_UNAVAILABLE;
 * - InvalidRange: STORE_OPTIONS_INVALID; EntityTooLarge: STORE_TOO_LARGE; NotImplemented:
 *   STORE_UNSUPPORTED; an aborted request: STORE_ABORTED; anything else: STORE_IO.
 * A StoreError passes through unchanged.
 */
export function toStoreError(error: unknown, context: S3ErrorContext): StoreError {
  if (error instanceof StoreError) return error;
  const secrets = context.secrets ?? [];
  const code = errorCodeOf(error);
  const status = httpStatusOf(error);
  const described = describeS3Error(error, secrets);
  const { what, bucket, endpoint } = context;
  const make = (storeCode: StoreErrorCode, message: string) =>
    new StoreError(storeCode, redact(message, secrets), { cause: scrubbedCause(error, secrets) });

  if (isAbortError(error)) return make('STORE_ABORTED', `${what} was aborted`);
  if (code === 'NoSuchBucket')
    return make(
      'STORE_BUCKET_NOT_FOUND',
      `${what}: bucket "${bucket}" does not exist at ${endpoint}; create it (aws s3 mb s3://${bucket}) or fix the bucket name, region or endpoint of the store URL`,
    );
  if (code === 'CredentialsProviderError' || (code !== undefined && /Credentials?ProviderError|CredentialsError/.test(code)))
    return make(
      'STORE_ACCESS_DENIED',
      `${what}: no AWS credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared credentials file, or run with an instance role`,
    );
  if ((code !== undefined && ACCESS_DENIED.has(code)) || status === 401 || status === 403)
    return make(
      'STORE_ACCESS_DENIED',
      `${what}: access to bucket "${bucket}" at ${endpoint} was denied (${described}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and its shared credentials file) and that the bucket policy allows this${
        // A HEAD answer names no error, and S3 answers 403 for a missing key to credentials
        // that may not list the bucket.
        described.startsWith('HTTP ') ? ' (a missing object also answers 403 without s3:ListBucket)' : ''
      }`,
    );
  if (code === 'NoSuchKey' || code === 'NotFound' || status === 404)
    return make('STORE_NOT_FOUND', `${what}: no such object in s3://${bucket}`);
  if (code === 'InvalidRange' || status === 416)
    return make('STORE_OPTIONS_INVALID', `${what}: the range is not satisfiable (${described})`);
  if (code === 'EntityTooLarge') return make('STORE_TOO_LARGE', `${what}: the object is too large for S3 (${described})`);
  if (code === 'InvalidObjectState')
    return make(
      'STORE_UNSUPPORTED',
      `${what}: the object is archived (GLACIER or DEEP_ARCHIVE) and must be restored before it can be read (aws s3api restore-object)`,
    );
  if (code === 'NotImplemented' || status === 501)
    return make('STORE_UNSUPPORTED', `${what}: the S3 server at ${endpoint} does not implement this request (${described})`);
  if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || code === 'IllegalLocationConstraintException')
    return make(
      'STORE_OPTIONS_INVALID',
      `${what}: bucket "${bucket}" is in another region (${described}); set the region of the store URL`,
    );
  if (
    code === 'InvalidStorageClass' ||
    code === 'InvalidArgument' ||
    code === 'InvalidEncryptionAlgorithmError' ||
    code === 'KMS.NotFoundException'
  )
    return make(
      'STORE_OPTIONS_INVALID',
      `${what}: S3 refused the request's settings (${described}); check the storage class and encryption options`,
    );
  if (isTransientError(error) || (status !== undefined && status >= 500) || (code !== undefined && THROTTLING.has(code)))
    return make(
      'STORE_UNAVAILABLE',
      `${what}: S3 at ${endpoint} is unavailable (${described})${attemptsText(error)}; check that it is running and reachable, then try again`,
    );
  return make('STORE_IO', `${what}: S3 request failed (${described})${attemptsText(error)}`);
}
