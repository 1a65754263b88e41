import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, constants, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type HaltState, haltStatus, isHaltError } from '@drkit/treasury-halt';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { z } from 'zod';
import { shortMessage, UnavailableError, withDeadline } from './deadline.ts';
import type { HaltGuardKeeper } from './halt.ts';
import { countFiles, isInsideRoot, resolveUploadPath, UploadPathError, UploadTooLargeError, writeFileAtomic } from './uploads.ts';

/** What the request handler works with; the server owns (and closes) all of it. */
export interface DemoAppDeps {
  pool: pg.Pool;
  /** Fails fast while Redis is away (no offline queue). */
  redis: Redis;
  halt: HaltGuardKeeper;
  uploadsDir: string;
  version: string;
  /** treasury-halt's key prefix; its default when absent. */
  haltPrefix?: string;
}

/** Each health check's deadline: a probe that hangs is a failed probe. */
const CHECK_DEADLINE_MS = 2000;
/** How long /api/status may take, all of its counts together. */
const STATUS_DEADLINE_MS = 5000;
const MAX_JSON_BYTES = 1024 * 1024;
const MAX_UPLOAD_BYTES = 64 * 1024 * 1024;
const UPLOADS_PREFIX = '/api/uploads/';

/** An answer other than 2xx, decided by a route. */
class HttpError extends Error {
  readonly status: number;
  readonly body: Record<string, unknown>;

  constructor(status: number, body: Record<string, unknown>) {
    super(String(body.error ?? status));
    this.status = status;
    this.body = body;
  }
}

const badRequest = (error: string) => new HttpError(400, { error });
const notFound = () => new HttpError(404, { error: 'not found' });

const positiveId = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
// numeric(20,8): at most 12 digits before the point and 8 after.
const decimal = z
  .union([z.number().positive().finite(), z.string().regex(/^\d{1,12}(\.\d{1,8})?$/, 'a decimal with at most 12.8 digits')])
  .transform((value) => String(value))
  .refine((value) => Number(value) > 0, 'must be greater than 0');

const userInput = z.object({ email: z.email().max(320), name: z.string().trim().min(1).max(200) });
const sessionInput = z.object({
  userId: positiveId,
  ttlSeconds: z
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 3600),
});
const tradeInput = z.object({
  userId: positiveId,
  symbol: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,31}$/, 'a ticker such as BTC-USD'),
  side: z.enum(['buy', 'sell']),
  qty: decimal,
  price: decimal,
});

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw badRequest(issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'invalid input');
}

function pgCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The connection went away under the query (server restarted, connection terminated). */
function isConnectionLost(error: unknown): boolean {
  const code = pgCode(error);
  if (code !== undefined && (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03')) return true;
  if (code === 'ECONNRESET' || code === 'EPIPE') return true;
  const message = error instanceof Error ? error.message : '';
  // Not "terminated due to connection timeout": that one never had a connection, and a retry only doubles the wait.
  return /Connection terminated unexpectedly|is not queryable/i.test(message);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BYTES) throw new HttpError(413, { error: `the body is larger than ${MAX_JSON_BYTES} bytes` });
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw badRequest('the body is not valid JSON');
  }
}

/**
 * The demo app's routes as one `http` request listener. Every failure of a dependency is
 * answered (503), never thrown out of the listener: recovery drills stop PostgreSQL and
 * Redis underneath the running app.
 */
export function createRequestHandler(deps: DemoAppDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { pool, redis, uploadsDir } = deps;
  const haltDeps = { redis, ...(deps.haltPrefix !== undefined ? { prefix: deps.haltPrefix } : {}) };

  const query = async <R extends pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
    options: { readOnly?: boolean } = {},
  ): Promise<pg.QueryResult<R>> => {
    try {
      try {
        return await pool.query<R>(text, values);
      } catch (error) {
        // After a database restart the pool still holds connections that the server has
        // closed; the first query on each fails. A read is safe to try once more on a fresh one.
        if (!options.readOnly || !isConnectionLost(error)) throw error;
        return await pool.query<R>(text, values);
      }
    } catch (error) {
      const code = pgCode(error);
      // Data exceptions (22) and constraint violations (23) are the request's fault, not the database's.
      if (code?.startsWith('22') || code?.startsWith('23')) throw error;
      throw new UnavailableError('postgres', error);
    }
  };

  const kv = async <T>(work: () => Promise<T>): Promise<T> => {
    // Without an offline queue a command fails at once anyway; the status makes a clearer message.
    if (redis.status !== 'ready') throw new UnavailableError('redis', new Error(`the connection is ${redis.status}`));
    try {
      return await work();
    } catch (error) {
      throw new UnavailableError('redis', error);
    }
  };

  const countSessions = async (): Promise<number> => {
    let cursor = '0';
    let count = 0;
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', 'session:*', 'COUNT', 1000);
      cursor = next;
      count += keys.length;
    } while (cursor !== '0');
    return count;
  };

  const health = async (res: ServerResponse) => {
    const check = async (what: string, probe: () => Promise<unknown>): Promise<string> => {
      try {
        await withDeadline(what, CHECK_DEADLINE_MS, probe());
        return 'ok';
      } catch (error) {
        // The check's name says which dependency; its value is what went wrong.
        return shortMessage(error instanceof UnavailableError ? error.cause : error, 160);
      }
    };
    const [postgres, redisCheck, uploads] = await Promise.all([
      check('postgres', () => query('SELECT 1', [], { readOnly: true })),
      check('redis', async () => {
        if (redis.status !== 'ready') throw new Error(`the connection is ${redis.status}`);
        const pong = await redis.ping();
        if (pong !== 'PONG') throw new Error(`PING answered ${pong}`);
      }),
      check('uploads', async () => {
        const info = await stat(uploadsDir);
        if (!info.isDirectory()) throw new Error(`${uploadsDir} is not a directory`);
        await access(uploadsDir, constants.W_OK | constants.X_OK);
      }),
    ]);
    const checks = { postgres, redis: redisCheck, uploads };
    const ok = Object.values(checks).every((value) => value === 'ok');
    send(res, ok ? 200 : 503, { status: ok ? 'ok' : 'unhealthy', checks });
  };

  const status = async (res: ServerResponse) => {
    const counts = query<{ users: string; trades: string }>(
      'SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM trades) AS trades',
      [],
      { readOnly: true },
    );
    const sessions = kv(countSessions);
    const halt = kv(() => haltStatus(haltDeps));
    const uploads = countFiles(uploadsDir).catch((error: unknown) => {
      throw new UnavailableError('uploads', error);
    });
    let results: [pg.QueryResult<{ users: string; trades: string }>, number, HaltState, number];
    try {
      results = await withDeadline('status', STATUS_DEADLINE_MS, Promise.all([counts, sessions, halt, uploads]));
    } catch (error) {
      send(res, 503, { status: 'unavailable', error: error instanceof UnavailableError ? error.message : shortMessage(error) });
      return;
    }
    const [db, sessionCount, haltState, files] = results;
    const row = db.rows[0];
    send(res, 200, {
      status: 'ok',
      version: deps.version,
      users: Number(row?.users ?? 0),
      trades: Number(row?.trades ?? 0),
      sessions: sessionCount,
      uploads: files,
      trading: haltState.halted ? 'halted' : 'allowed',
      haltEpoch: haltState.epoch,
    });
  };

  const createUser = async (req: IncomingMessage, res: ServerResponse) => {
    const input = parse(userInput, await readJson(req));
    try {
      const { rows } = await query<{ id: string }>('INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id', [
        input.email,
        input.name,
      ]);
      send(res, 201, { id: Number(rows[0]?.id) });
    } catch (error) {
      if (pgCode(error) === '23505') throw new HttpError(409, { error: `a user with email ${input.email} exists` });
      throw error;
    }
  };

  const getUser = async (res: ServerResponse, id: string) => {
    const { rows } = await query<{ id: string; email: string; name: string; created_at: Date }>(
      'SELECT id, email, name, created_at FROM users WHERE id = $1',
      [id],
      { readOnly: true },
    );
    const user = rows[0];
    if (!user) throw notFound();
    send(res, 200, { id: Number(user.id), email: user.email, name: user.name, createdAt: user.created_at.toISOString() });
  };

  const createSession = async (req: IncomingMessage, res: ServerResponse) => {
    const input = parse(sessionInput, await readJson(req));
    const token = randomBytes(16).toString('hex');
    const key = `session:${token}`;
    const results = await kv(() =>
      redis
        .multi()
        .hset(key, { userId: String(input.userId), createdAt: new Date().toISOString() })
        .expire(key, input.ttlSeconds)
        .exec(),
    );
    const failed = results?.find(([error]) => error !== null);
    if (!results || failed) throw new UnavailableError('redis', failed?.[0] ?? new Error('the transaction was discarded'));
    send(res, 201, { token });
  };

  const getSession = async (res: ServerResponse, token: string) => {
    const key = `session:${token}`;
    const [hash, ttl] = await kv(() => Promise.all([redis.hgetall(key), redis.pttl(key)]));
    if (hash.userId === undefined) throw notFound();
    send(res, 200, { userId: Number(hash.userId), ttlMs: ttl });
  };

  const uploadPath = (rawPath: string): { relative: string; full: string } => {
    let relative: string;
    try {
      relative = decodeURIComponent(rawPath.slice(UPLOADS_PREFIX.length));
    } catch {
      throw badRequest('the path is not valid percent-encoding');
    }
    try {
      return { relative, full: resolveUploadPath(uploadsDir, relative) };
    } catch (error) {
      if (error instanceof UploadPathError) throw badRequest(error.message);
      throw error;
    }
  };

  const putUpload = async (req: IncomingMessage, res: ServerResponse, rawPath: string) => {
    const { relative, full } = uploadPath(rawPath);
    try {
      const written = await writeFileAtomic(full, req as AsyncIterable<Buffer>, { maxBytes: MAX_UPLOAD_BYTES, root: uploadsDir });
      send(res, 201, { path: relative, ...written });
    } catch (error) {
      if (error instanceof UploadPathError) throw badRequest(error.message);
      if (error instanceof UploadTooLargeError) throw new HttpError(413, { error: error.message });
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST')
        throw new HttpError(409, { error: `${relative} clashes with an existing file or directory (${code})` });
      throw new UnavailableError('uploads', error);
    }
  };

  const getUpload = async (res: ServerResponse, rawPath: string) => {
    const { full } = uploadPath(rawPath);
    let size: number;
    try {
      const info = await stat(full);
      if (!info.isFile() || !(await isInsideRoot(uploadsDir, full))) throw notFound();
      size = info.size;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (error instanceof HttpError || code === 'ENOENT' || code === 'ENOTDIR') throw notFound();
      throw new UnavailableError('uploads', error);
    }
    await new Promise<void>((resolve) => {
      const stream = createReadStream(full);
      stream.once('open', () => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
        stream.pipe(res);
      });
      stream.once('error', (error) => {
        if (res.headersSent) res.destroy(error);
        else send(res, 503, { error: new UnavailableError('uploads', error).message });
        resolve();
      });
      stream.once('close', () => resolve());
    });
  };

  const createTrade = async (req: IncomingMessage, res: ServerResponse) => {
    const input = parse(tradeInput, await readJson(req));
    const guard = deps.halt.current();
    // Fail-closed, like the guard itself: no guard yet means the halt state is unknown.
    if (!guard) throw new HttpError(503, { error: 'trading refused: the halt state is unknown (no connection to Redis yet)' });
    let id: number;
    try {
      const ticket = await guard.prepare();
      id = await guard.trackOrder(ticket, async () => {
        const { rows } = await query<{ id: string }>(
          'INSERT INTO trades (user_id, symbol, side, qty, price) VALUES ($1, $2, $3, $4, $5) RETURNING id',
          [input.userId, input.symbol, input.side, input.qty, input.price],
        );
        return Number(rows[0]?.id);
      });
    } catch (error) {
      if (isHaltError(error, 'HALT_ACTIVE')) throw new HttpError(423, { error: 'trading halted', epoch: Number(error.details.epoch) });
      if (isHaltError(error, 'HALT_STALE_EPOCH'))
        throw new HttpError(409, {
          error: 'the halt state changed while the order was prepared; send it again',
          epoch: error.details.epoch,
        });
      if (isHaltError(error, 'HALT_STATE_UNKNOWN')) throw new HttpError(503, { error: shortMessage(error) });
      if (pgCode(error) === '23503') throw badRequest(`unknown user ${input.userId}`);
      throw error;
    }
    send(res, 201, { id });
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    // The raw path, not a normalised URL: "/api/uploads/../x" must reach the traversal check.
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    if (rawPath.startsWith(UPLOADS_PREFIX)) {
      if (method === 'PUT') return putUpload(req, res, rawPath);
      if (method === 'GET') return getUpload(res, rawPath);
      throw notFound();
    }
    if (method === 'GET' && rawPath === '/health') return health(res);
    if (method === 'GET' && rawPath === '/api/status') return status(res);
    if (method === 'POST' && rawPath === '/api/users') return createUser(req, res);
    if (method === 'POST' && rawPath === '/api/sessions') return createSession(req, res);
    if (method === 'POST' && rawPath === '/api/trades') return createTrade(req, res);
    if (method === 'GET') {
      const user = /^\/api\/users\/([1-9]\d{0,17})$/.exec(rawPath);
      if (user?.[1]) return getUser(res, user[1]);
      const session = /^\/api\/sessions\/([0-9a-f]{32})$/.exec(rawPath);
      if (session?.[1]) return getSession(res, session[1]);
    }
    throw notFound();
  };

  return (req, res) => {
    req.on('error', () => {
      // A client that went away mid-body: the route's read fails and nothing is answered.
    });
    route(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) {
        // The rest of an oversized body is not worth reading: the connection ends with the answer.
        if (error.status === 413 && !res.headersSent) res.setHeader('connection', 'close');
        send(res, error.status, error.body);
      } else if (error instanceof UnavailableError) send(res, 503, { error: error.message });
      else if (pgCode(error)?.startsWith('22') || pgCode(error)?.startsWith('23')) send(res, 400, { error: shortMessage(error) });
      else send(res, 500, { error: shortMessage(error) });
    });
  };
}
