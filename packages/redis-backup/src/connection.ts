import { createRequire } from 'node:module';
import type { Redis, RedisOptions } from 'ioredis';
import { messageOf, RedisBackupError } from './errors.js';

/**
 * Where a Redis server is, parsed from a URL. The password is kept off every enumerable field
 * (and out of JSON): printing or serialising a target never shows it.
 */
export interface RedisTarget {
  /** `redis://app@cache-1:6379/0`: the URL without its password, for messages and manifests. */
  readonly description: string;
  readonly host: string;
  readonly port: number;
  /** A unix socket path instead of host and port. */
  readonly path?: string;
  readonly tls: boolean;
  readonly username?: string;
  readonly password?: string;
  /** The database the URL names (0 by default); exports and restores cover every database. */
  readonly db: number;
}

/**
 * Parses `redis://[user[:password]@]host[:port][/db]`, `rediss://` (TLS) or
 * `unix:///path/to/redis.sock[?db=N&password=secret]`.
 * @throws RedisBackupError REDIS_URL_INVALID, with a message that never repeats the password
 */
export function redisTarget(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    throw new RedisBackupError(
      'REDIS_URL_INVALID',
      'the Redis URL does not parse: use redis://[user:password@]host:6379/0, rediss:// for TLS, or unix:///path/to/redis.sock',
    );
  }
  const scheme = parsed.protocol.replace(/:$/, '').toLowerCase();
  if (!['redis', 'rediss', 'unix'].includes(scheme))
    throw new RedisBackupError(
      'REDIS_URL_INVALID',
      `the Redis URL has scheme "${scheme}:": use redis://, rediss:// (TLS) or unix:// (a socket path)`,
    );
  const decode = (text: string) => {
    try {
      return decodeURIComponent(text);
    } catch {
      return text;
    }
  };
  const username = parsed.username ? decode(parsed.username) : undefined;
  const password = parsed.password ? decode(parsed.password) : (parsed.searchParams.get('password') ?? undefined);
  const dbText = scheme === 'unix' ? (parsed.searchParams.get('db') ?? '0') : parsed.pathname.replace(/^\//, '') || '0';
  const db = Number(dbText);
  if (!Number.isSafeInteger(db) || db < 0 || !/^\d+$/.test(dbText))
    throw new RedisBackupError(
      'REDIS_URL_INVALID',
      `the Redis URL names database "${dbText.slice(0, 20)}": it must be a number (0-15 on a default server)`,
    );
  const user = username ? `${encodeURIComponent(username)}@` : '';
  let target: Omit<RedisTarget, 'password'>;
  if (scheme === 'unix') {
    const path = decode(parsed.pathname);
    if (!path || path === '/')
      throw new RedisBackupError('REDIS_URL_INVALID', 'the unix:// Redis URL has no socket path: unix:///var/run/redis/redis.sock');
    target = {
      description: `unix://${user}${path}${db ? `?db=${db}` : ''}`,
      host: 'localhost',
      port: 0,
      path,
      tls: false,
      db,
      ...(username ? { username } : {}),
    };
  } else {
    const host = parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    const port = parsed.port ? Number(parsed.port) : 6379;
    const shownHost = host.includes(':') ? `[${host}]` : host;
    target = {
      description: `${scheme}://${user}${shownHost}:${port}/${db}`,
      host,
      port,
      tls: scheme === 'rediss',
      db,
      ...(username ? { username } : {}),
    };
  }
  return withPassword(target, password);
}

/** `target` with another password, kept off its enumerable fields. */
export function withPassword(target: Omit<RedisTarget, 'password'>, password: string | undefined): RedisTarget {
  const { password: _drop, ...rest } = target as RedisTarget;
  const out = { ...rest };
  if (password !== undefined) Object.defineProperty(out, 'password', { value: password, enumerable: false });
  return out as RedisTarget;
}

/** `target` pointing at database `db`. */
export function withDb(target: RedisTarget, db: number): RedisTarget {
  const description = target.path
    ? target.description.replace(/\?db=\d+$/, '') + (db ? `?db=${db}` : '')
    : target.description.replace(/\/\d+$/, `/${db}`);
  return withPassword({ ...target, db, description }, target.password);
}

/** Options of {@link connectRedis}. */
export interface ConnectOptions {
  /** @default the target's db */
  db?: number;
  /** @default 10000 */
  connectTimeoutMs?: number;
  /** Replies as Buffers are asked for per command; this names the client in CLIENT LIST. */
  name?: string;
}

let ioredis: typeof import('ioredis') | undefined;

/**
 * ioredis, loaded on first use: it costs ~25 MB of resident memory, which backups (on the
 * package's own RESP connection) never need.
 */
function loadIoredis(): typeof import('ioredis') {
  ioredis ??= createRequire(import.meta.url)('ioredis') as typeof import('ioredis');
  return ioredis;
}

/** ioredis options for `target`: no reconnects and no offline queue, so failures surface at once. */
export function clientOptions(target: RedisTarget, options: ConnectOptions = {}): RedisOptions {
  return {
    ...(target.path ? { path: target.path } : { host: target.host, port: target.port }),
    ...(target.username ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.tls ? { tls: { servername: target.host } } : {}),
    db: options.db ?? target.db,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableReadyCheck: true,
    autoResubscribe: false,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    connectionName: options.name ?? 'drkit',
  };
}

/**
 * Connects to `target` and checks it answers. A client that is left open is the caller's to
 * `quit()`; its errors are routed to the failing command, never to an unhandled event.
 * @throws RedisBackupError REDIS_CONNECTION_REFUSED, REDIS_UNREACHABLE, REDIS_AUTH_FAILED, REDIS_PERMISSION_DENIED
 */
export async function connectRedis(target: RedisTarget, options: ConnectOptions = {}): Promise<Redis> {
  const client = new (loadIoredis().Redis)(clientOptions(target, options));
  let lastError: unknown;
  client.on('error', (error) => {
    lastError = error;
  });
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch (error) {
    client.disconnect();
    throw connectionError(target, lastError ?? error);
  }
}

/** Runs `fn` with a connected client, and closes it afterwards. */
export async function withRedis<T>(target: RedisTarget, fn: (client: Redis) => Promise<T>, options: ConnectOptions = {}): Promise<T> {
  const client = await connectRedis(target, options);
  try {
    return await fn(client);
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

/** Maps a failure to reach or log in to a server to this package's errors. */
export function connectionError(target: RedisTarget, error: unknown): unknown {
  if (error instanceof RedisBackupError) return error;
  const text = messageOf(error);
  const code = (error as { code?: string } | undefined)?.code ?? '';
  const where = target.description;
  if (code === 'ECONNREFUSED' || /ECONNREFUSED/.test(text))
    return new RedisBackupError(
      'REDIS_CONNECTION_REFUSED',
      `${where} refused the connection: is redis-server running and listening there?`,
      { cause: error },
    );
  if (/WRONGPASS|NOAUTH|invalid password|invalid username-password/i.test(text))
    return new RedisBackupError(
      'REDIS_AUTH_FAILED',
      `${where} rejected the credentials (${/NOAUTH/.test(text) ? 'a password is required' : 'wrong user name or password'}): check the password in the URL or REDIS_URL`,
      { cause: error },
    );
  if (/NOPERM/.test(text))
    return new RedisBackupError(
      'REDIS_PERMISSION_DENIED',
      `${where}: the user may not run a command drkit needs (${firstLine(text)}): grant it in the server's ACL`,
      { cause: error },
    );
  if (
    ['ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'ENOENT', 'EPIPE'].includes(code) ||
    /connect ETIMEDOUT|timed? ?out/i.test(text)
  )
    return new RedisBackupError(
      'REDIS_UNREACHABLE',
      `${where} could not be reached (${code || firstLine(text)}): check the host, port and network`,
      { cause: error },
    );
  return new RedisBackupError('REDIS_UNREACHABLE', `${where}: ${firstLine(text)}`, { cause: error });
}

/** The first line of a message, cut to a sane length. */
export function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').slice(0, 300);
}

/** `text` with every `redis://user:password@` reduced to `redis://user@`. */
export function redactRedisUrl(text: string): string {
  return text.replace(/\b(rediss?|unix):\/\/([^/\s:@]*):[^/\s@]+@/gi, '$1://$2@');
}
