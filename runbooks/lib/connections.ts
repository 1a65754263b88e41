// Who holds PostgreSQL's connections and who blocks whom, read from one snapshot of
// pg_stat_activity, and ending the sessions found — only those, and only while they are
// still the same session in the same transaction (a pid is reused once its backend is gone,
// and a blocker that committed in the meantime no longer needs ending).

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findTool } from '@drkit/postgres-backup';
import type pg from 'pg';

/** One client session, as the runbook reports it. */
export interface Session {
  pid: number;
  user: string;
  database: string;
  /** `application_name`, or "(none)". */
  application: string;
  /** The client's address, or "local" for a unix socket. */
  client: string;
  /** `active`, `idle`, `idle in transaction`, ... ("unknown" when hidden from this role). */
  state: string;
  /** How long its transaction has been open, or null when it has none. */
  xactMs: number | null;
  /** How long it has been in its current state. */
  stateMs: number | null;
  /** `wait_event_type:wait_event`, when it waits. */
  waitEvent: string | null;
  /** Its current (or last) query, whitespace collapsed, at most 200 characters. */
  query: string;
  /**
   * Who this session is: its pid with its backend start and its transaction start, in
   * microseconds since the epoch. Terminating checks all three first.
   */
  identity: { backendStartUs: string; xactStartUs: string | null };
}

/** A query waiting for a lock. */
export interface Waiter {
  pid: number;
  user: string;
  application: string;
  /** How long it has waited for the lock (since its query started on PostgreSQL 13 and older). */
  waitingMs: number;
  query: string;
  /** The pids it waits for directly. */
  blockedBy: number[];
}

/** A session at the head of a lock chain: it holds what others wait for and waits for nothing itself. */
export interface Blocker {
  /** The session, or null for pid 0 (a prepared transaction) or a backend that is not a client. */
  session: Session | null;
  pid: number;
  /** Every query waiting behind it, directly or down the chain. */
  waiters: Waiter[];
}

/** Connection pressure: slots in use against the server's limits, and by whom. */
export interface Pressure {
  serverVersion: string;
  /** Client backends connected, this runbook's own connection included. */
  used: number;
  /** `max_connections`. */
  max: number;
  /** `superuser_reserved_connections`. */
  superuserReserved: number;
  /** `reserved_connections` (PostgreSQL 16 and later), else 0. */
  reserved: number;
  /** The slots an ordinary role can take: max minus both reserves. */
  usable: number;
  /** used / usable, in percent (rounded); above 100 when superusers use their reserve. */
  percent: number;
  byState: Record<string, number>;
  byApplication: Record<string, number>;
  byUser: Record<string, number>;
  byDatabase: Record<string, number>;
}

/** One snapshot of the server's sessions. */
export interface Snapshot {
  pressure: Pressure;
  /** Every client session but this runbook's own. */
  sessions: Session[];
  waiters: Waiter[];
  blockers: Blocker[];
}

interface Row {
  pid: number;
  user: string | null;
  database: string | null;
  application: string | null;
  client: string | null;
  state: string | null;
  backend_type: string | null;
  is_self: boolean;
  backend_start_us: string | null;
  xact_start_us: string | null;
  xact_ms: number | null;
  state_ms: number | null;
  query_ms: number | null;
  wait_event_type: string | null;
  wait_event: string | null;
  query: string | null;
  blocked_by: number[] | null;
  waited_ms: number | null;
}

const SETTINGS_SQL = `
SELECT current_setting('server_version') AS version,
  current_setting('server_version_num')::int AS version_num,
  current_setting('max_connections')::int AS max_connections,
  current_setting('superuser_reserved_connections')::int AS superuser_reserved,
  COALESCE(current_setting('reserved_connections', true), '0')::int AS reserved`;

// One read of pg_stat_activity for the counts, the idle transactions and the lock chains, so
// they agree with each other. pg_blocking_pids takes the lock manager's locks, which hurts a
// server already in trouble: only backends waiting for a heavyweight lock are asked.
const activitySql = (versionNum: number) => `
SELECT a.pid, a.usename AS user, a.datname AS database, NULLIF(a.application_name, '') AS application,
  COALESCE(host(a.client_addr), 'local') AS client, a.state, a.backend_type,
  a.pid = pg_backend_pid() AS is_self,
  (extract(epoch FROM a.backend_start) * 1000000)::bigint::text AS backend_start_us,
  (extract(epoch FROM a.xact_start) * 1000000)::bigint::text AS xact_start_us,
  (extract(epoch FROM now() - a.xact_start) * 1000)::float8 AS xact_ms,
  (extract(epoch FROM now() - a.state_change) * 1000)::float8 AS state_ms,
  (extract(epoch FROM now() - a.query_start) * 1000)::float8 AS query_ms,
  a.wait_event_type, a.wait_event, a.query,
  CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END AS blocked_by,
  ${
    versionNum >= 140000
      ? `CASE WHEN a.wait_event_type = 'Lock' THEN (extract(epoch FROM now() - (SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)) * 1000)::float8 END`
      : 'NULL::float8'
  } AS waited_ms
FROM pg_stat_activity a`;

/** A client connection; other roles' sessions show no backend type to a role without pg_read_all_stats, but they have a database. */
const isClient = (r: Row) => r.backend_type === 'client backend' || (r.backend_type === null && r.database !== null);

const oneLine = (text: string | null, max = 200) => {
  const line = (text ?? '').replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
};

const round = (ms: number | null) => (ms === null ? null : Math.max(0, Math.round(ms)));

function sessionOf(r: Row): Session {
  return {
    pid: r.pid,
    user: r.user ?? 'unknown',
    database: r.database ?? 'unknown',
    application: r.application ?? '(none)',
    client: r.client ?? 'local',
    state: r.state ?? 'unknown',
    xactMs: round(r.xact_ms),
    stateMs: round(r.state_ms),
    waitEvent: r.wait_event_type && r.wait_event ? `${r.wait_event_type}:${r.wait_event}` : null,
    query: oneLine(r.query),
    identity: { backendStartUs: r.backend_start_us ?? '', xactStartUs: r.xact_start_us },
  };
}

function count(into: Record<string, number>, key: string): void {
  into[key] = (into[key] ?? 0) + 1;
}

/** Reads one snapshot of the server's sessions: pressure, waiters and the heads of their lock chains. */
export async function readSnapshot(client: pg.Client, timeoutMs = 10_000): Promise<Snapshot> {
  const query = async <R extends pg.QueryResultRow>(text: string): Promise<R[]> =>
    (await client.query<R>({ text, query_timeout: timeoutMs } as pg.QueryConfig)).rows;
  const [settings] = await query<{
    version: string;
    version_num: number;
    max_connections: number;
    superuser_reserved: number;
    reserved: number;
  }>(SETTINGS_SQL);
  if (settings === undefined) throw new Error('the server settings query returned no row');
  const rows = await query<Row>(activitySql(settings.version_num));
  const clients = rows.filter(isClient);

  const usable = Math.max(1, settings.max_connections - settings.superuser_reserved - settings.reserved);
  const pressure: Pressure = {
    serverVersion: settings.version,
    used: clients.length,
    max: settings.max_connections,
    superuserReserved: settings.superuser_reserved,
    reserved: settings.reserved,
    usable,
    percent: Math.round((100 * clients.length) / usable),
    byState: {},
    byApplication: {},
    byUser: {},
    byDatabase: {},
  };
  for (const r of clients) {
    count(pressure.byState, r.state ?? 'unknown');
    count(pressure.byApplication, r.application ?? '(none)');
    count(pressure.byUser, r.user ?? 'unknown');
    count(pressure.byDatabase, r.database ?? 'unknown');
  }

  const others = rows.filter((r) => !r.is_self);
  const waiters: Waiter[] = others
    .filter((r) => (r.blocked_by?.length ?? 0) > 0)
    .map((r) => ({
      pid: r.pid,
      user: r.user ?? 'unknown',
      application: r.application ?? '(none)',
      waitingMs: round(r.waited_ms ?? r.query_ms) ?? 0,
      query: oneLine(r.query),
      blockedBy: [...(r.blocked_by ?? [])].sort((a, b) => a - b),
    }))
    .sort((a, b) => b.waitingMs - a.waitingMs);

  // Ending a waiter frees nothing: the heads of the chains are what holds everyone up.
  const blockedBy = new Map(waiters.map((w) => [w.pid, w.blockedBy]));
  const heads = new Map<number, Waiter[]>();
  for (const w of waiters) for (const head of headsOf(w.pid, blockedBy)) heads.set(head, [...(heads.get(head) ?? []), w]);
  const byPid = new Map(others.map((r) => [r.pid, r]));
  const blockers: Blocker[] = [...heads].map(([pid, behind]) => {
    const row = byPid.get(pid);
    return { pid, session: row !== undefined && isClient(row) ? sessionOf(row) : null, waiters: behind };
  });
  blockers.sort((a, b) => (b.session?.xactMs ?? 0) - (a.session?.xactMs ?? 0));

  return { pressure, sessions: others.filter(isClient).map(sessionOf), waiters, blockers };
}

/** The pids at the head of `pid`'s chains: those it waits for, transitively, that wait for nothing. */
function headsOf(pid: number, blockedBy: Map<number, number[]>): number[] {
  const heads = new Set<number>();
  const seen = new Set<number>([pid]);
  const queue = [...(blockedBy.get(pid) ?? [])];
  while (queue.length > 0) {
    const next = queue.shift() as number;
    if (seen.has(next)) continue;
    seen.add(next);
    const further = blockedBy.get(next);
    if (further === undefined || further.length === 0) heads.add(next);
    else queue.push(...further);
  }
  // A deadlock-like cycle has no head: the waiters it started from are what to report.
  return heads.size > 0 ? [...heads] : (blockedBy.get(pid) ?? []);
}

/** "1h 02m", "3m 05s", "12s", "850 ms". */
export function formatAge(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${ms} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** One line about a session, for logs and the approval. */
export function describeSession(s: Session): string {
  const age =
    s.state.startsWith('idle in transaction') && s.stateMs !== null
      ? `${s.state} for ${formatAge(s.stateMs)}, transaction open ${formatAge(s.xactMs)}`
      : `${s.state}${s.xactMs !== null ? `, transaction open ${formatAge(s.xactMs)}` : ''}`;
  return `pid ${s.pid} (${s.user}@${s.database}, application "${s.application}", from ${s.client}; ${age}): ${s.query || '(no query)'}`;
}

/** `{a: 3, b: 1}` as "a 3, b 1", largest first. */
export function formatCounts(counts: Record<string, number>, max = 10): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const shown = entries.slice(0, max).map(([k, n]) => `${k} ${n}`);
  if (entries.length > max) shown.push(`${entries.length - max} more`);
  return shown.join(', ') || '(none)';
}

/** What ending one session did. */
export interface Termination {
  pid: number;
  /** `terminated`: ended and gone; `gone`: it had ended by itself; `changed`: another session or transaction now, left alone. */
  outcome: 'terminated' | 'gone' | 'changed';
  detail: string;
}

/**
 * Ends one session with pg_terminate_backend — only if its pid still belongs to the same
 * backend in the same transaction as when it was found — and waits until it is gone.
 * The transaction it had open is rolled back: that is the point, and the caller has logged it.
 */
export async function terminateSession(
  client: pg.Client,
  session: Session,
  options: { timeoutMs?: number; sleep: (ms: number) => Promise<void> },
): Promise<Termination> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const current = await client.query<{ xact_start_us: string | null }>(
    `SELECT (extract(epoch FROM xact_start) * 1000000)::bigint::text AS xact_start_us
       FROM pg_stat_activity WHERE pid = $1 AND (extract(epoch FROM backend_start) * 1000000)::bigint::text = $2`,
    [session.pid, session.identity.backendStartUs],
  );
  const row = current.rows[0];
  if (row === undefined) return { pid: session.pid, outcome: 'gone', detail: 'the session had already ended' };
  if (row.xact_start_us !== session.identity.xactStartUs)
    return {
      pid: session.pid,
      outcome: 'changed',
      detail: 'the transaction found has ended (committed or rolled back) since: left alone',
    };
  const ended = await client.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [session.pid]);
  if (ended.rows[0]?.ok !== true) return { pid: session.pid, outcome: 'gone', detail: 'pg_terminate_backend found no such backend' };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const still = await client.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [session.pid]);
    if (still.rowCount === 0) return { pid: session.pid, outcome: 'terminated', detail: 'terminated; its transaction was rolled back' };
    if (Date.now() > deadline)
      throw new Error(
        `pid ${session.pid} was signalled but is still there after ${timeoutMs} ms: it may be stuck in I/O; check the server log and the host`,
      );
    await options.sleep(100);
  }
}

/**
 * Where pg_isready is: beside the psql that @drkit/postgres-backup finds (PG_BIN, the
 * server's major under /usr/lib/postgresql, then PATH), else on PATH. Undefined when neither.
 */
export async function findPgIsready(): Promise<string | undefined> {
  try {
    const psql = await findTool('psql');
    const beside = join(dirname(psql.path), 'pg_isready');
    return existsSync(beside) ? beside : undefined;
  } catch {
    return undefined;
  }
}
