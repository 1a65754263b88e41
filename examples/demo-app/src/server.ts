// The demo app: "the platform" that the recovery runbooks stop, start, corrupt and restore.
//
//   DATABASE_URL=... REDIS_URL=... UPLOADS_DIR=... node --import tsx examples/demo-app/src/server.ts
//
// Configured by environment only (see README.md). Prints one line once listening,
// {"listening":true,"port":N,"pid":P}, and nothing else but a fatal start-up error on stderr.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, resolve } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import pg from 'pg';
import { createRequestHandler } from './app.ts';
import { shortMessage, withDeadline } from './deadline.ts';
import { keepHaltGuard } from './halt.ts';

function fatal(message: string): never {
  process.stderr.write(`demo-app: ${message}\n`);
  process.exit(1);
}

/** A setting from the environment; empty counts as unset. */
function setting(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value.trim() === '' ? undefined : value;
}

function required(name: string): string {
  return setting(name) ?? fatal(`${name} is required`);
}

const databaseUrl = required('DATABASE_URL');
const redisUrl = required('REDIS_URL');
const uploadsDir = resolve(required('UPLOADS_DIR'));
const portSetting = setting('DEMO_PORT') ?? '0';
const port = Number(portSetting);
if (!/^\d+$/.test(portSetting) || port > 65_535) fatal(`DEMO_PORT must be a port number (0 for any free port), not "${portSetting}"`);
const host = setting('DEMO_HOST') ?? '127.0.0.1';
const pidFileSetting = setting('DEMO_PID_FILE');
const pidFile = pidFileSetting === undefined ? undefined : resolve(pidFileSetting);
const workerId = setting('DEMO_WORKER_ID') ?? `demo-app-${process.pid}`;
const haltPrefix = setting('DEMO_HALT_PREFIX');
const version = setting('DEMO_VERSION') ?? '1.0.0';

try {
  mkdirSync(uploadsDir, { recursive: true });
} catch (error) {
  fatal(`cannot create UPLOADS_DIR ${uploadsDir}: ${shortMessage(error)}`);
}

// pg takes the password from PGPASSWORD when the URL has none. Short timeouts: while the
// database is down, a request must fail in about 2 s, not hang.
const pool = new pg.Pool({
  connectionString: databaseUrl,
  max: 10,
  connectionTimeoutMillis: 2000,
  idleTimeoutMillis: 10_000,
  query_timeout: 5000,
  application_name: 'drkit-demo-app',
});
pool.on('error', () => {
  // An idle connection lost (the database stopped or restarted): the pool drops it and
  // connects again on the next request. Without a listener this would crash the process.
});

const redisOptions: RedisOptions = {
  maxRetriesPerRequest: 1,
  connectTimeout: 2000,
  commandTimeout: 2000,
  // Keeps trying for as long as the app runs, at most once a second, so it is back soon after Redis is.
  retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
};
// No offline queue: while Redis is down a command fails at once and the request gets a 503.
const redis = new Redis(redisUrl, { ...redisOptions, enableOfflineQueue: false });
redis.on('error', () => {
  // Connection errors are answered as 503s while ioredis reconnects.
});

const halt = keepHaltGuard({ redisUrl, redisOptions, workerId, ...(haltPrefix !== undefined ? { prefix: haltPrefix } : {}) });

const server = createServer(
  createRequestHandler({ pool, redis, halt, uploadsDir, version, ...(haltPrefix !== undefined ? { haltPrefix } : {}) }),
);

function writePidFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${process.pid}\n`);
  // Atomic: a controller polling the file never reads half a pid.
  renameSync(temp, path);
}

function removePidFile(): void {
  if (pidFile === undefined) return;
  try {
    // Only our own: a second instance may have written its pid there since.
    if (readFileSync(pidFile, 'utf8').trim() === String(process.pid)) rmSync(pidFile, { force: true });
  } catch {
    // already gone
  }
}

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Whatever hangs below, the process is gone in a few seconds: a stop must be dependable.
  setTimeout(() => {
    removePidFile();
    process.exit(0);
  }, 4000).unref();
  const closed = new Promise<void>((done) => server.close(() => done()));
  server.closeIdleConnections();
  const lingering = setTimeout(() => server.closeAllConnections(), 1500);
  await closed;
  clearTimeout(lingering);
  await Promise.allSettled([
    halt.close(),
    withDeadline('closing the pool', 1500, pool.end()),
    withDeadline('closing Redis', 1000, redis.quit()).catch(() => redis.disconnect()),
  ]);
  removePidFile();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());

server.on('error', (error) => fatal(`cannot listen on ${host}:${port}: ${shortMessage(error)}`));
server.listen(port, host, () => {
  const address = server.address();
  const actual = typeof address === 'object' && address !== null ? address.port : port;
  if (pidFile !== undefined) {
    try {
      writePidFile(pidFile);
    } catch (error) {
      fatal(`cannot write DEMO_PID_FILE ${pidFile}: ${shortMessage(error)}`);
    }
  }
  process.stdout.write(`${JSON.stringify({ listening: true, port: actual, pid: process.pid })}\n`);
});
