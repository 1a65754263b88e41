import { isRedisBackupError, type RedisBackupError } from '../../src/errors.js';

/** The RedisBackupError a promise rejects with; anything else (or no rejection) fails the test. */
export async function errorOf(promise: Promise<unknown>): Promise<RedisBackupError> {
  try {
    await promise;
  } catch (error) {
    if (isRedisBackupError(error)) return error;
    throw error;
  }
  throw new Error('expected a RedisBackupError');
}
