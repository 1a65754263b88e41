import { connectionError, firstLine, type RedisTarget } from './connection.js';
import { messageOf, RedisBackupError } from './errors.js';

/**
 * What the server queries need of a connection: one command, its reply (text as a string or
 * bytes). An ioredis client and this package's own RESP connection both fit; backups use the
 * latter, so that they never load a general client.
 */
export interface Commander {
  call(command: string, ...args: (string | Buffer | number)[]): Promise<unknown>;
}

/** `INFO <section>` as a map of its `name:value` lines. */
export async function info(client: Commander, section: string): Promise<Map<string, string>> {
  const text = String(await client.call('INFO', section));
  const map = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) map.set(line.slice(0, i), line.slice(i + 1));
  }
  return map;
}

/** The server's version, e.g. "7.0.15". */
export async function serverVersion(client: Commander): Promise<string> {
  return (await info(client, 'server')).get('redis_version') ?? 'unknown';
}

/** True when `version` ("7.0.15") is at least major.minor. */
export function versionAtLeast(version: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

/** Keys and keys with an expiry of every database that has keys (INFO keyspace). */
export type Keyspace = Record<string, { keys: number; expires: number }>;

/** Every non-empty database: `{ "0": { keys, expires } }`. */
export async function keyspaceOf(client: Commander): Promise<Keyspace> {
  const out: Keyspace = {};
  for (const [name, value] of await info(client, 'keyspace')) {
    const db = /^db(\d+)$/.exec(name)?.[1];
    if (db === undefined) continue;
    const fields = Object.fromEntries(value.split(',').map((kv) => kv.split('=') as [string, string]));
    const keys = Number(fields.keys ?? 0);
    if (keys > 0) out[db] = { keys, expires: Number(fields.expires ?? 0) };
  }
  return out;
}

/**
 * `DEBUG DIGEST` of the whole dataset (every database), or undefined when the server does not
 * allow DEBUG (enable-debug-command no, managed services, ACL).
 */
export async function datasetDigest(client: Commander): Promise<string | undefined> {
  try {
    return String(await client.call('DEBUG', 'DIGEST'));
  } catch {
    return undefined;
  }
}

/** Maps a failed command to this package's errors (connection failures keep their codes). */
export function redisCommandError(target: RedisTarget, what: string, error: unknown): RedisBackupError {
  if (error instanceof RedisBackupError) return error;
  const text = messageOf(error);
  if (/NOPERM/.test(text))
    return new RedisBackupError(
      'REDIS_PERMISSION_DENIED',
      `${target.description}: ${what} needs a command the user may not run (${firstLine(text)}): grant it in the server's ACL`,
      { cause: error },
    );
  if (/WRONGPASS|NOAUTH|ECONNREFUSED|ETIMEDOUT|ECONNRESET|Connection is closed|EPIPE/i.test(text)) {
    const mapped = connectionError(target, error);
    if (mapped instanceof RedisBackupError) return mapped;
  }
  return new RedisBackupError('REDIS_COMMAND_FAILED', `${target.description}: ${what} failed: ${firstLine(text)}`, { cause: error });
}
