import type pg from 'pg';
import { connect, connectionError, type PgTarget, pgTarget, redactUrl, sqlState } from './connection.js';
import { isPgBackupError, messageOf, PgBackupError } from './errors.js';

/** Options of {@link checkPostgresConnections}. */
export interface ConnectionCheckOptions {
  /** Queries running longer than this are reported. @default 60_000 */
  longRunningMs?: number;
  /** Connections in use at or above this fraction of the usable limit are a warning. @default 0.8 */
  warnAt?: number;
  /** Connections in use at or above this fraction of the usable limit are critical. @default 0.95 */
  criticalAt?: number;
  /**
   * How long to wait for the connection, and then for each query of the check: a server that
   * accepts connections but never answers is reported down instead of hanging the check.
   * @default 5000
   */
  connectTimeoutMs?: number;
}

/** Connection slots of the server and who holds them. */
export interface PgConnectionUsage {
  /** Client backends connected to any database, this check's own connection included. */
  used: number;
  /** `max_connections`. */
  max: number;
  /** `superuser_reserved_connections`. */
  reservedForSuperuser: number;
  /**
   * Slots an ordinary role can take: `max` minus the superuser reserve (and, on PostgreSQL 16
   * and later, minus `reserved_connections` as well).
   */
  usable: number;
  /** `used / usable`; above 1 when superusers are using their reserve. */
  fraction: number;
  /** Client backends by `state`; sessions whose state is hidden from this role count as "unknown". */
  byState: Record<string, number>;
  /** Client backends by database. */
  byDatabase: Record<string, number>;
}

/** A query that has been running longer than {@link ConnectionCheckOptions.longRunningMs}. */
export interface PgLongRunningQuery {
  pid: number;
  database: string;
  user: string;
  /** `active`, `idle in transaction`, ... */
  state: string;
  /** Since the query started. */
  durationMs: number;
  /** Its first 200 characters, whitespace collapsed and password literals masked. */
  query: string;
  /** `wait_event_type:wait_event` when the backend is waiting on something. */
  waitEvent?: string;
}

/** A query waiting for a lock that other backends hold. */
export interface PgBlockedQuery {
  pid: number;
  user: string;
  database: string;
  /** How long it has waited for the lock (since the query started on PostgreSQL 13 and older). */
  durationMs: number;
  /** Its first 200 characters, whitespace collapsed and password literals masked. */
  query: string;
  /** The pids holding (or queued ahead for) the lock it waits for; 0 is a prepared transaction. */
  blockedBy: number[];
}

/** What {@link checkPostgresConnections} found. */
export interface PgConnectionReport {
  /** The target's description: the URL without its password. */
  target: string;
  /**
   * `down`: not ready. `critical`: connections at or above `criticalAt`, a query blocked longer
   * than `longRunningMs`, or the check could not read the server's activity. `warning`:
   * connections at or above `warnAt`, or any long-running or blocked query. Else `ok`.
   */
  status: 'ok' | 'warning' | 'critical' | 'down';
  /** Connected, and `SELECT 1` answered. */
  ready: boolean;
  /** From the start of the connection to the answer to `SELECT 1`. */
  readyInMs?: number;
  /** `SHOW server_version`. */
  serverVersion?: string;
  /** `pg_is_in_recovery()`: true on a standby. */
  inRecovery?: boolean;
  connections?: PgConnectionUsage;
  /** Longest first; this check's own query is never listed. */
  longRunning: PgLongRunningQuery[];
  /** Longest wait first. */
  blocked: PgBlockedQuery[];
  /**
   * Human-readable findings, each one line, saying what to do (e.g. "412 of 480 usable
   * connections in use (86%): look for a connection leak or raise max_connections"). Empty when
   * there is nothing to do.
   */
  findings: string[];
  /** Set when status is 'down': a PgBackupError's code and message (never the password). */
  error?: { code: string; message: string };
}

const QUERY_CHARS = 200;

interface ServerRow {
  server_version: string;
  version_num: number;
  in_recovery: boolean;
  max_connections: number;
  superuser_reserved: number;
  reserved: number | null;
  own_pid: number;
}

interface ActivityRow {
  pid: number;
  datid: number | null;
  usesysid: number | null;
  database: string | null;
  user: string | null;
  state: string | null;
  backend_type: string | null;
  query: string | null;
  query_ms: number | null;
  wait_event_type: string | null;
  wait_event: string | null;
  blocked_by: number[] | null;
  waited_ms: number | null;
}

// One snapshot of pg_stat_activity for everything, so the counts, the long-running and the
// blocked lists agree with each other. Other backend types are read too: an autovacuum worker
// can be the one holding a lock, and the findings should name it.
// pg_blocking_pids takes the lock manager's locks on every call, which hurts a server already in
// trouble, so only backends that are waiting for a heavyweight lock are asked.
const activitySql = (versionNum: number) => `
SELECT a.pid, a.datid::int AS datid, a.usesysid::int AS usesysid, a.datname AS database, a.usename AS user, a.state, a.backend_type, a.query,
  (extract(epoch FROM now() - a.query_start) * 1000)::float8 AS query_ms,
  a.wait_event_type, a.wait_event,
  CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END AS blocked_by,
  ${
    // pg_locks.waitstart (PostgreSQL 14) says how long the lock has been awaited; older servers
    // only know when the statement started, which is an upper bound.
    versionNum >= 140000
      ? `CASE WHEN a.wait_event_type = 'Lock' THEN (extract(epoch FROM now() - (SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)) * 1000)::float8 END`
      : 'NULL::float8'
  } AS waited_ms
FROM pg_stat_activity a`;

const SERVER_SQL = `
SELECT current_setting('server_version') AS server_version,
  current_setting('server_version_num')::int AS version_num,
  pg_is_in_recovery() AS in_recovery,
  current_setting('max_connections')::int AS max_connections,
  current_setting('superuser_reserved_connections')::int AS superuser_reserved,
  current_setting('reserved_connections', true)::int AS reserved,
  pg_backend_pid() AS own_pid`;

/**
 * Checks a PostgreSQL server the way an SRE would when connections fail: is it ready, how many
 * of its connection slots are taken (and by which state and database), which queries run too
 * long, and which wait for a lock and behind whom. Reads only `pg_stat_activity`, `pg_locks` and
 * settings; changes nothing. Run it as a superuser or a member of `pg_monitor` to see the
 * queries of other roles.
 *
 * An unreachable server, refused credentials or a missing database do not throw: the report
 * says `down` with the error's code and message, which never contain the password.
 * @throws PgBackupError PG_OPTIONS_INVALID for bad options, PG_URL_INVALID for a malformed URL
 */
export async function checkPostgresConnections(url: string | PgTarget, options: ConnectionCheckOptions = {}): Promise<PgConnectionReport> {
  const settings = validOptions(options);
  const target = typeof url === 'string' ? pgTarget(url) : url;
  const report: PgConnectionReport = {
    target: target.description,
    status: 'down',
    ready: false,
    longRunning: [],
    blocked: [],
    findings: [],
  };

  const started = performance.now();
  let client: pg.Client;
  try {
    client = await connect(target, { connectTimeoutMs: settings.connectTimeoutMs, applicationName: 'drkit health check' });
  } catch (error) {
    return down(report, target, error);
  }
  try {
    try {
      await query(client, 'SELECT 1', settings.connectTimeoutMs);
    } catch (error) {
      return down(report, target, error, 'SELECT 1');
    }
    report.ready = true;
    report.readyInMs = Math.round(performance.now() - started);

    try {
      await inspect(client, report, settings);
    } catch (error) {
      // The server answered SELECT 1, so it is not down; but a check that cannot say how the
      // connections stand must not look healthy either.
      report.status = 'critical';
      report.findings.push(
        `connected, but reading the server's activity failed (${oneLine(redactUrl(messageOf(error)))}): check the server log and retry`,
      );
      return report;
    }
    report.status = statusOf(report, settings);
    return report;
  } finally {
    // end() does not wait for a hung query: it drops the socket, which is what a timeout needs.
    await client.end().catch(() => {});
  }
}

interface Settings {
  longRunningMs: number;
  warnAt: number;
  criticalAt: number;
  connectTimeoutMs: number;
}

function validOptions(options: ConnectionCheckOptions): Settings {
  const s: Settings = {
    longRunningMs: options.longRunningMs ?? 60_000,
    warnAt: options.warnAt ?? 0.8,
    criticalAt: options.criticalAt ?? 0.95,
    connectTimeoutMs: options.connectTimeoutMs ?? 5000,
  };
  const invalid = (message: string) => new PgBackupError('PG_OPTIONS_INVALID', message);
  if (typeof s.longRunningMs !== 'number' || !Number.isFinite(s.longRunningMs) || s.longRunningMs < 0)
    throw invalid(`longRunningMs must be a number of milliseconds, 0 or more (got ${String(options.longRunningMs)})`);
  // pg reads a timeout of 0 as "wait forever", which is what this option exists to prevent.
  if (typeof s.connectTimeoutMs !== 'number' || !Number.isFinite(s.connectTimeoutMs) || s.connectTimeoutMs <= 0)
    throw invalid(`connectTimeoutMs must be a number of milliseconds above 0 (got ${String(options.connectTimeoutMs)})`);
  for (const name of ['warnAt', 'criticalAt'] as const) {
    const value = s[name];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1)
      throw invalid(`${name} must be a fraction between 0 and 1, e.g. 0.8 for 80% (got ${String(options[name])})`);
  }
  if (s.warnAt > s.criticalAt) throw invalid(`warnAt (${s.warnAt}) must not be above criticalAt (${s.criticalAt})`);
  return s;
}

async function query<R extends pg.QueryResultRow>(client: pg.Client, text: string, timeoutMs: number): Promise<R[]> {
  // query_timeout is pg's client-side timer: a statement_timeout would need a server that still
  // answers, and the servers this check is run against may not.
  const result = await client.query<R>({ text, query_timeout: timeoutMs } as pg.QueryConfig);
  return result.rows;
}

function down(report: PgConnectionReport, target: PgTarget, error: unknown, step?: string): PgConnectionReport {
  const failure = isPgBackupError(error)
    ? error
    : step !== undefined && /timeout/i.test(messageOf(error))
      ? new PgBackupError(
          'PG_UNREACHABLE',
          `PostgreSQL at ${target.host}:${target.port} accepted the connection but did not answer ${step}: the server may be overloaded or stuck; check its log and load`,
          { cause: error },
        )
      : connectionError(target, error);
  report.status = 'down';
  report.ready = false;
  report.error = { code: failure.code, message: redactUrl(failure.message) };
  report.findings.push(downFinding(failure));
  return report;
}

function downFinding(failure: PgBackupError): string {
  const cause = failure.cause;
  const state = sqlState(cause);
  const serverSaid = oneLine(redactUrl(messageOf(cause ?? failure)));
  // connectionError files these under PG_UNREACHABLE, but they are the very problems this check
  // is for, and the remedy is not "is the server running".
  if (state === '53300')
    return `the server refuses new connections (${serverSaid}): connect as a superuser (it keeps reserved slots) to see who holds them, end leaked idle sessions, or raise the limit`;
  if (state === '57P03')
    return `the server is not accepting connections yet (${serverSaid}): it is starting up, shutting down or replaying WAL; watch its log and retry`;
  return failure.message;
}

async function inspect(client: pg.Client, report: PgConnectionReport, settings: Settings): Promise<void> {
  const [server] = await query<ServerRow>(client, SERVER_SQL, settings.connectTimeoutMs);
  if (!server) throw new Error('the server settings query returned no row');
  report.serverVersion = server.server_version;
  report.inRecovery = server.in_recovery;
  const rows = await query<ActivityRow>(client, activitySql(server.version_num), settings.connectTimeoutMs);

  const clients = rows.filter(isClient);
  const byState: Record<string, number> = {};
  const byDatabase: Record<string, number> = {};
  for (const r of clients) {
    const state = r.state ?? 'unknown';
    byState[state] = (byState[state] ?? 0) + 1;
    const database = r.database ?? 'unknown';
    byDatabase[database] = (byDatabase[database] ?? 0) + 1;
  }
  const usable = Math.max(1, server.max_connections - server.superuser_reserved - (server.reserved ?? 0));
  const connections: PgConnectionUsage = {
    used: clients.length,
    max: server.max_connections,
    reservedForSuperuser: server.superuser_reserved,
    usable,
    fraction: clients.length / usable,
    byState,
    byDatabase,
  };
  report.connections = connections;

  const others = clients.filter((r) => r.pid !== server.own_pid);
  report.longRunning = others
    .filter((r) => r.state !== null && r.state !== 'idle' && r.query_ms !== null && r.query_ms > settings.longRunningMs)
    .map((r) => ({
      pid: r.pid,
      database: r.database ?? 'unknown',
      user: r.user ?? 'unknown',
      state: r.state ?? 'unknown',
      durationMs: Math.round(r.query_ms ?? 0),
      query: queryText(r.query),
      ...(r.wait_event_type && r.wait_event ? { waitEvent: `${r.wait_event_type}:${r.wait_event}` } : {}),
    }))
    .sort((a, b) => b.durationMs - a.durationMs);
  report.blocked = others
    .filter((r) => (r.blocked_by?.length ?? 0) > 0)
    .map((r) => ({
      pid: r.pid,
      user: r.user ?? 'unknown',
      database: r.database ?? 'unknown',
      durationMs: Math.round(r.waited_ms ?? r.query_ms ?? 0),
      query: queryText(r.query),
      blockedBy: [...(r.blocked_by ?? [])].sort((a, b) => a - b),
    }))
    .sort((a, b) => b.durationMs - a.durationMs);

  findings(report, connections, rows, settings);
}

function findings(report: PgConnectionReport, c: PgConnectionUsage, rows: ActivityRow[], settings: Settings): void {
  const out = report.findings;
  if (c.fraction >= settings.warnAt) {
    const states = Object.entries(c.byState)
      .sort((a, b) => b[1] - a[1])
      .map(([state, n]) => `${n} ${state}`)
      .join(', ');
    const idle = (c.byState.idle ?? 0) + (c.byState['idle in transaction'] ?? 0);
    // Mostly idle sessions point at pools sized too large or leaking, not at load.
    const advice =
      idle >= c.used / 2
        ? 'most are idle: look for a connection leak or oversized pools (or put PgBouncer in front), or raise max_connections'
        : 'look for a connection leak or a load spike, or raise max_connections';
    const level = c.fraction >= settings.criticalAt ? 'critical' : 'warning';
    out.push(`${c.used} of ${c.usable} usable connections in use (${Math.round(c.fraction * 100)}%, ${level}; ${states}): ${advice}`);
  }

  const blockedPids = new Set(report.blocked.map((b) => b.pid));
  if (report.blocked.length > 0) {
    const byPid = new Map(rows.map((r) => [r.pid, r]));
    const blockedBy = new Map(report.blocked.map((b) => [b.pid, b.blockedBy]));
    // Killing a waiter frees nothing: the findings name the sessions at the head of each chain.
    const roots = new Map<number, number[]>();
    for (const b of report.blocked) {
      for (const root of headsOf(b.pid, blockedBy)) roots.set(root, [...(roots.get(root) ?? []), b.pid]);
    }
    for (const [root, waiters] of roots) {
      const longest = Math.max(...report.blocked.filter((b) => waiters.includes(b.pid)).map((b) => b.durationMs));
      out.push(
        `${waiters.length} ${waiters.length === 1 ? 'query' : 'queries'} waiting for a lock (up to ${duration(longest)}) behind ${describeBlocker(root, byPid.get(root))}`,
      );
    }
  }

  const longRunning = report.longRunning.filter((q) => !blockedPids.has(q.pid));
  if (longRunning.length > 0) {
    const [top] = longRunning;
    if (top) {
      const more =
        longRunning.length > 1 ? `${longRunning.length} queries running longer than ${duration(settings.longRunningMs)}; longest: ` : '';
      const remedy = top.state.startsWith('idle in transaction')
        ? `the application left a transaction open, holding its locks and holding back vacuum: end it with SELECT pg_terminate_backend(${top.pid})`
        : `if it should not run that long, SELECT pg_cancel_backend(${top.pid})`;
      out.push(
        `${more}pid ${top.pid} (${top.user}@${top.database}, ${top.state}) for ${duration(top.durationMs)}: ${top.query}: ${remedy}`,
      );
    }
  }

  if (report.inRecovery)
    out.push('the server is a standby (in recovery) and refuses writes: if it should be the primary, the failover has not promoted it');

  const hidden = rows.filter((r) => r.backend_type === null && isClient(r)).length;
  if (hidden > 0)
    out.push(
      `${hidden} ${hidden === 1 ? 'session belongs' : 'sessions belong'} to other roles, which hides ${hidden === 1 ? 'its' : 'their'} state and query (and makes the counts approximate): run the check as a superuser or a member of pg_monitor`,
    );
}

/**
 * A client connection. pg_stat_activity hides the backend type, with the state and the query,
 * of other roles' sessions from a role lacking pg_read_all_stats; such a row that belongs to a
 * database and a role is most likely a client, so it is counted rather than missed (a parallel
 * or replication worker may be counted too, which the findings then say).
 */
function isClient(r: ActivityRow): boolean {
  return r.backend_type === 'client backend' || (r.backend_type === null && r.datid !== null && r.usesysid !== null);
}

/** The sessions at the head of the wait chains `pid` is in (a deadlock cycle has no head: then its direct blockers). */
function headsOf(pid: number, blockedBy: Map<number, number[]>): number[] {
  const heads = new Set<number>();
  const seen = new Set<number>([pid]);
  const queue = [...(blockedBy.get(pid) ?? [])];
  while (queue.length > 0) {
    const next = queue.shift() as number;
    if (seen.has(next)) continue;
    seen.add(next);
    const above = blockedBy.get(next);
    if (above && above.length > 0) queue.push(...above);
    else heads.add(next);
  }
  return heads.size > 0 ? [...heads] : [...(blockedBy.get(pid) ?? [])];
}

function describeBlocker(pid: number, row: ActivityRow | undefined): string {
  if (pid === 0) return 'a prepared transaction: find it in pg_prepared_xacts and COMMIT PREPARED or ROLLBACK PREPARED it';
  if (!row) return `pid ${pid}, which has since ended: check again`;
  const who =
    row.backend_type === 'client backend' ? `${row.user ?? 'unknown'}@${row.database ?? 'unknown'}` : (row.backend_type ?? 'unknown');
  const state = row.state ?? 'state hidden';
  const since = row.query_ms !== null ? ` for ${duration(Math.round(row.query_ms))}` : '';
  const what = row.query ? `: ${queryText(row.query)}` : '';
  return `pid ${pid} (${who}, ${state}${since}${what}): if that transaction is stuck, end it with SELECT pg_terminate_backend(${pid})`;
}

function queryText(query: string | null): string {
  if (query === null) return '';
  // A statement that sets a password carries it in clear in pg_stat_activity; reports are pasted
  // into tickets and chats.
  const masked = redactUrl(query).replace(/\b(password\s+)'(?:[^']|'')*'/gi, "$1'***'");
  return [...masked.replace(/\s+/g, ' ').trim()].slice(0, QUERY_CHARS).join('');
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 ? `${m} min` : `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`;
}

function statusOf(report: PgConnectionReport, settings: Settings): PgConnectionReport['status'] {
  if (!report.ready) return 'down';
  const fraction = report.connections?.fraction ?? 0;
  if (fraction >= settings.criticalAt || report.blocked.some((b) => b.durationMs > settings.longRunningMs)) return 'critical';
  if (fraction >= settings.warnAt || report.longRunning.length > 0 || report.blocked.length > 0) return 'warning';
  return 'ok';
}
