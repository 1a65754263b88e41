import { createRequire } from 'node:module';
import type * as S3 from '@aws-sdk/client-s3';

let loaded: typeof S3 | undefined;

/**
 * The AWS SDK's S3 module, loaded on first use. Importing it costs about 36 MB of resident
 * memory and a few hundred milliseconds, which every `file://` backup, restore and CLI command
 * would pay for nothing if it were a static import.
 */
export function s3sdk(): typeof S3 {
  loaded ??= createRequire(import.meta.url)('@aws-sdk/client-s3') as typeof S3;
  return loaded;
}
