// A backup service an application can run beside itself: `POST /admin/backups` takes a
// PostgreSQL backup now (before a risky migration, say) with @drkit/postgres-backup, sealed
// with the same keys and stored in the same catalog as the scheduled backups, so every
// runbook (database-corruption, dr-drill, ...) can restore it by id.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isSealError, loadKeys } from '@drkit/crypto-stream';
import { backupPostgres, isPgBackupError, POSTGRES_KIND, pgTarget, redactUrl, type SealKeys } from '@drkit/postgres-backup';
import { type Catalog, createCatalog, isStoreError, type Manifest, openStore, type Store, TIERS, type Tier } from '@drkit/s3-store';

/** The route of both endpoints. */
export const BACKUPS_PATH = '/admin/backups';
/** How many backups `GET /admin/backups` returns, newest first. */
export const LIST_LIMIT = 20;
/** Shorter tokens are refused at start-up: the token guards a database dump. */
export const MIN_TOKEN_LENGTH = 16;

/** One structured log line. Never holds a secret: URLs are described without their password. */
export interface BackupServiceLogEntry {
  event: 'listening' | 'backup-started' | 'backup-finished' | 'backup-failed' | 'unauthorized' | 'closing';
  [field: string]: unknown;
}

/** What {@link createBackupService} needs. */
export interface BackupServiceOptions {
  /** The database to back up, `postgres://user:password@host:5432/db`. */
  databaseUrl: string;
  /** Where backups go: a store URL (`s3://bucket/prefix?region=us-east-1`, `file:///var/backups/drkit`) or an opened store. */
  store: string | Store;
  /** The keys backups are sealed with (the current key of a keyring seals). */
  keys: SealKeys;
  /** The bearer token of `Authorization: Bearer <token>`; at least {@link MIN_TOKEN_LENGTH} characters. */
  adminToken: string;
  /** 0 (the default) for any free port. */
  port?: number;
  /** @default 127.0.0.1: admin endpoints listen on loopback unless told otherwise */
  host?: string;
  /** The tier recorded in the manifests; retention treats `manual` backups apart from the schedule's. @default manual */
  tier?: Tier;
  /** Recorded in the manifests (e.g. "production"). */
  environment?: string;
  /** Where pg_dump lives, when not found on its own (see @drkit/postgres-backup). */
  binDir?: string;
  /** Receives one entry per event; the default drops them. */
  log?: (entry: BackupServiceLogEntry) => void;
}

/** A running service. */
export interface BackupService {
  /** e.g. `http://127.0.0.1:41234` */
  url: string;
  port: number;
  /** Stops accepting, aborts a backup in progress (nothing is recorded for it) and resolves once closed. */
  close(): Promise<void>;
}

/** The answer of `POST /admin/backups`. */
export interface BackupCreated {
  id: string;
  kind: string;
  tier: string;
  /** Bytes stored (sealed). */
  size: number;
  createdAt: string;
  completedAt: string;
  /** Rows per table, counted in the snapshot the dump was taken from. */
  tables: Record<string, number>;
  /** The companion roles/tablespaces artifact, when one was stored. */
  globals?: string;
  warnings: string[];
}

/** One backup of `GET /admin/backups`. */
export interface BackupListed {
  id: string;
  tier: string;
  size: number;
  createdAt: string;
  completedAt: string;
  keyId?: string;
  verification?: { status: string; at: string; level: string };
}

/** A setting that is missing or wrong; {@link serviceOptionsFromEnv} lists them all in one message. */
export class ServiceConfigError extends Error {
  override readonly name = 'ServiceConfigError';
}

/** An HTTP answer other than 2xx, with the body `{ error: { code, message } }`. */
class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/**
 * Reads the service's settings from the environment: DATABASE_URL (its password may come from
 * PGPASSWORD instead), DRKIT_STORE, DRKIT_KEY (or DRKIT_KEY_FILE / DRKIT_PASSPHRASE, as every
 * drkit tool), ADMIN_TOKEN, PORT, HOST, DRKIT_TIER, DRKIT_ENVIRONMENT, PG_BIN.
 * @throws ServiceConfigError naming every missing or malformed variable, never a value
 */
export async function serviceOptionsFromEnv(env: NodeJS.ProcessEnv): Promise<BackupServiceOptions> {
  const problems: string[] = [];
  const setting = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const required = (name: string, what: string) => {
    const value = setting(name);
    if (value === undefined) problems.push(`${name} is required (${what})`);
    return value ?? '';
  };

  let databaseUrl = required('DATABASE_URL', 'postgres://user@host:5432/db');
  if (databaseUrl !== '') {
    try {
      const url = new URL(databaseUrl);
      if (!/^postgres(ql)?:$/.test(url.protocol)) throw new Error('not postgres');
      const password = setting('PGPASSWORD');
      // pg_dump receives the password through its environment, from the URL only: PGPASSWORD joins it here.
      if (password !== undefined && url.password === '') url.password = encodeURIComponent(password);
      databaseUrl = url.toString();
      pgTarget(databaseUrl);
    } catch {
      problems.push('DATABASE_URL must look like postgres://user@host:5432/db');
    }
  }
  const store = required('DRKIT_STORE', 's3://bucket/prefix?region=us-east-1 or file:///var/backups/drkit');
  const adminToken = required('ADMIN_TOKEN', `a random bearer token of at least ${MIN_TOKEN_LENGTH} characters`);
  if (adminToken !== '' && adminToken.length < MIN_TOKEN_LENGTH)
    problems.push(`ADMIN_TOKEN is too short: use at least ${MIN_TOKEN_LENGTH} random characters (openssl rand -hex 32)`);

  let keys: SealKeys | undefined;
  if (setting('DRKIT_KEY') === undefined && setting('DRKIT_KEY_FILE') === undefined && setting('DRKIT_PASSPHRASE') === undefined)
    problems.push('DRKIT_KEY is required (the backup key, base64 or hex: `drkit key generate`), or DRKIT_KEY_FILE');
  else {
    try {
      keys = await loadKeys({ env });
    } catch (error) {
      // crypto-stream's messages name the variable and never its content.
      problems.push(isSealError(error) ? error.message : 'the backup key cannot be loaded');
    }
  }

  const portText = setting('PORT') ?? '0';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65_535) problems.push(`PORT must be a port number (0 for any free port), not "${portText}"`);
  const tier = setting('DRKIT_TIER') ?? 'manual';
  if (!(TIERS as readonly string[]).includes(tier)) problems.push(`DRKIT_TIER must be one of ${TIERS.join(', ')}`);

  if (problems.length > 0 || keys === undefined) throw new ServiceConfigError(problems.join('; '));
  const host = setting('HOST');
  const environment = setting('DRKIT_ENVIRONMENT');
  const binDir = setting('PG_BIN');
  return {
    databaseUrl,
    store,
    keys,
    adminToken,
    port,
    tier: tier as Tier,
    ...(host !== undefined ? { host } : {}),
    ...(environment !== undefined ? { environment } : {}),
    ...(binDir !== undefined ? { binDir } : {}),
  };
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Whether the request carries the bearer token. Both sides are hashed first, so the
 * comparison takes the same time whatever the length or the first wrong character.
 */
function authorized(request: IncomingMessage, expected: Buffer): boolean {
  const header = request.headers.authorization ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return timingSafeEqual(digest(match?.[1] ?? ''), expected) && match !== null;
}

/** The HTTP status for a package error: unreachable is 503, any other dependency failure 502. */
function statusOf(code: string): number {
  if (code === 'PG_UNREACHABLE' || code === 'STORE_UNAVAILABLE') return 503;
  // Aborted only when the service is closing: the client should retry on the next instance.
  if (code === 'PG_ABORTED' || code === 'STORE_ABORTED') return 503;
  return 502;
}

function listed(manifest: Manifest): BackupListed {
  return {
    id: manifest.id,
    tier: manifest.tier,
    size: manifest.object.size,
    createdAt: manifest.createdAt,
    completedAt: manifest.completedAt,
    ...(manifest.encryption.format === 'drkit-sealed/1' ? { keyId: manifest.encryption.keyId } : {}),
    ...(manifest.verification
      ? { verification: { status: manifest.verification.status, at: manifest.verification.at, level: manifest.verification.level } }
      : {}),
  };
}

/**
 * Starts the service: `POST /admin/backups` (one backup at a time; 201 with the backup once
 * it is stored and its manifest written, 409 while another runs) and `GET /admin/backups`
 * (the newest {@link LIST_LIMIT} PostgreSQL backups). Both need the bearer token.
 * @throws ServiceConfigError for a short token or a malformed database URL, before listening
 */
export async function createBackupService(options: BackupServiceOptions): Promise<BackupService> {
  if (options.adminToken.length < MIN_TOKEN_LENGTH)
    throw new ServiceConfigError(`the admin token is too short: use at least ${MIN_TOKEN_LENGTH} random characters`);
  // Parsed once up front: a bad URL is a start-up error, not a 502 on the first request.
  const target = pgTarget(options.databaseUrl);
  const catalog: Catalog = createCatalog(typeof options.store === 'string' ? openStore(options.store) : options.store);
  const token = digest(options.adminToken);
  const log = options.log ?? (() => {});
  const tier = options.tier ?? 'manual';
  let password = '';
  try {
    password = new URL(options.databaseUrl).password;
  } catch {
    // A URL pg accepts but WHATWG URL does not: nothing to scrub beyond redactUrl.
  }
  const secrets = [options.adminToken, password, password ? decodeURIComponent(password) : ''].filter((s) => s.length >= 4);
  // Package messages carry no credentials; this is the belt to their braces.
  const scrub = (text: string) => secrets.reduce((out, secret) => out.split(secret).join('***'), redactUrl(text));

  let running: { startedAt: string; abort: AbortController; done: Promise<unknown> } | undefined;

  async function takeBackup(): Promise<BackupCreated> {
    const abort = new AbortController();
    const startedAt = new Date().toISOString();
    const work = backupPostgres({
      url: target,
      catalog,
      keys: options.keys,
      tier,
      labels: { trigger: 'backup-on-demand' },
      signal: abort.signal,
      ...(options.environment !== undefined ? { environment: options.environment } : {}),
      ...(options.binDir !== undefined ? { binDir: options.binDir } : {}),
    });
    running = { startedAt, abort, done: work.catch(() => {}) };
    log({ event: 'backup-started', database: target.description, tier });
    const started = performance.now();
    try {
      const { manifest, globals, fingerprint, warnings } = await work;
      log({ event: 'backup-finished', id: manifest.id, size: manifest.object.size, ms: Math.round(performance.now() - started) });
      return {
        id: manifest.id,
        kind: manifest.kind,
        tier: manifest.tier,
        size: manifest.object.size,
        createdAt: manifest.createdAt,
        completedAt: manifest.completedAt,
        tables: fingerprint.tables,
        ...(globals ? { globals: globals.id } : {}),
        warnings: warnings.map(scrub),
      };
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      log({ event: 'backup-failed', code: typeof code === 'string' ? code : 'INTERNAL', message: scrub(String((error as Error).message)) });
      throw error;
    } finally {
      running = undefined;
    }
  }

  async function route(request: IncomingMessage): Promise<{ status: number; body: unknown }> {
    const path = new URL(request.url ?? '/', 'http://service').pathname.replace(/\/+$/, '');
    if (path !== BACKUPS_PATH)
      throw new HttpError(404, 'NOT_FOUND', `no route ${path || '/'}; the routes are GET and POST ${BACKUPS_PATH}`);
    if (request.method !== 'GET' && request.method !== 'POST')
      throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${BACKUPS_PATH} takes GET and POST`, { allow: 'GET, POST' });
    if (!authorized(request, token)) {
      log({ event: 'unauthorized', method: request.method, remote: request.socket.remoteAddress });
      throw new HttpError(401, 'UNAUTHORIZED', 'send Authorization: Bearer <ADMIN_TOKEN>', { 'www-authenticate': 'Bearer realm="drkit"' });
    }
    if (request.method === 'GET') {
      const all = await catalog.list({ kind: POSTGRES_KIND });
      return { status: 200, body: { backups: all.reverse().slice(0, LIST_LIMIT).map(listed) } };
    }
    // Checked and claimed with no await in between: two requests cannot both get past here.
    if (running)
      throw new HttpError(
        409,
        'BACKUP_IN_PROGRESS',
        `a backup started at ${running.startedAt} is still running; try again once it is done`,
        {
          'retry-after': '30',
        },
      );
    return { status: 201, body: await takeBackup() };
  }

  function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
    response.end(text);
  }

  const server: Server = createServer((request, response) => {
    // No request body is read: drain it so the connection can be reused.
    request.resume();
    route(request).then(
      ({ status, body }) => send(response, status, body),
      (error: unknown) => {
        if (error instanceof HttpError)
          return send(response, error.status, { error: { code: error.code, message: error.message } }, error.headers);
        if (isPgBackupError(error) || isStoreError(error) || isSealError(error))
          return send(response, statusOf(error.code), { error: { code: error.code, message: scrub(error.message) } });
        // Unknown failures are not described to the client: their text was not written for it.
        return send(response, 500, { error: { code: 'INTERNAL', message: 'the backup failed; see the service log' } });
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  log({ event: 'listening', port: address.port });

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    async close() {
      log({ event: 'closing', backupRunning: running !== undefined });
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // An aborted backup records nothing: the object is removed before any manifest exists.
      if (running) {
        running.abort.abort();
        await running.done;
      }
      server.closeAllConnections();
      await closed;
    },
  };
}
