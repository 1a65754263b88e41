import type pg from 'pg';
import { HaltError, messageOf } from './errors.js';

/** Anything that runs queries: a pg Pool or Client. */
export type Queryable = Pick<pg.Pool, 'query'>;

/** The actions the audit log records. */
export type AuditAction =
  | 'engage-requested'
  | 'engaged'
  | 'engage-not-propagated'
  | 'release-requested'
  | 'released'
  | 'release-refused'
  | 'verified'
  | 'verify-failed'
  | 'wallet-integrity'
  | 'wallet-audit'
  | 'wallet-report';

/** One audit record. */
export interface AuditEvent {
  id: number;
  at: Date;
  action: AuditAction;
  actor: string;
  approver: string | null;
  reason: string | null;
  scope: string | null;
  epoch: number | null;
  detail: Record<string, unknown>;
}

/** The audit table, in its own schema so it never collides with the application's. */
export const AUDIT_TABLE = 'drkit_treasury.halt_audit';

// Each migration runs once, in order, under an advisory lock; applied versions are recorded.
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS drkit_treasury.halt_audit (
     id bigserial PRIMARY KEY,
     at timestamptz NOT NULL DEFAULT clock_timestamp(),
     action text NOT NULL,
     actor text NOT NULL,
     approver text,
     reason text,
     scope text,
     epoch bigint,
     detail jsonb NOT NULL DEFAULT '{}'::jsonb
   );
   CREATE INDEX IF NOT EXISTS halt_audit_at ON drkit_treasury.halt_audit (at DESC, id DESC);`,
  // The log is append-only: rows cannot be changed or removed, even by mistake.
  `CREATE OR REPLACE FUNCTION drkit_treasury.halt_audit_append_only() RETURNS trigger
     LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the halt audit log is append-only'; END $$;
   DROP TRIGGER IF EXISTS halt_audit_append_only ON drkit_treasury.halt_audit;
   CREATE TRIGGER halt_audit_append_only BEFORE UPDATE OR DELETE ON drkit_treasury.halt_audit
     FOR EACH ROW EXECUTE FUNCTION drkit_treasury.halt_audit_append_only();`,
];

/** An arbitrary, fixed advisory lock key: concurrent migrations wait for each other. */
const MIGRATION_LOCK = 7_204_318_551;

function auditError(what: string, error: unknown): HaltError {
  return new HaltError('HALT_AUDIT_IO', `${what} failed in PostgreSQL: ${messageOf(error)}`, { cause: error });
}

/**
 * Creates or upgrades the audit schema. Idempotent and safe to run from several processes at
 * once (they serialise on an advisory lock). Needs a Pool (or a Client held for the call).
 */
export async function migrateAudit(db: pg.Pool | pg.Client): Promise<{ applied: number }> {
  const client = 'connect' in db && typeof (db as pg.Pool).totalCount === 'number' ? await (db as pg.Pool).connect() : (db as pg.Client);
  const release = client !== db ? () => (client as pg.PoolClient).release() : () => {};
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query('CREATE SCHEMA IF NOT EXISTS drkit_treasury');
      await client.query(
        'CREATE TABLE IF NOT EXISTS drkit_treasury.migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      const { rows } = await client.query<{ version: number }>('SELECT version FROM drkit_treasury.migrations');
      const done = new Set(rows.map((r) => r.version));
      let applied = 0;
      for (const [i, sql] of MIGRATIONS.entries()) {
        if (done.has(i + 1)) continue;
        await client.query('BEGIN');
        try {
          await client.query(sql);
          await client.query('INSERT INTO drkit_treasury.migrations (version) VALUES ($1)', [i + 1]);
          await client.query('COMMIT');
          applied++;
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        }
      }
      return { applied };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } catch (error) {
    throw auditError('migrating the halt audit schema', error);
  } finally {
    release();
  }
}

/** What {@link recordAudit} writes. */
export interface AuditInput {
  action: AuditAction;
  actor: string;
  approver?: string;
  reason?: string;
  scope?: string;
  epoch?: number;
  detail?: Record<string, unknown>;
}

/** Appends one record and returns its id. */
export async function recordAudit(db: Queryable, input: AuditInput): Promise<number> {
  try {
    const { rows } = await db.query<{ id: string }>(
      `INSERT INTO ${AUDIT_TABLE} (action, actor, approver, reason, scope, epoch, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [
        input.action,
        input.actor,
        input.approver ?? null,
        input.reason ?? null,
        input.scope ?? null,
        input.epoch ?? null,
        JSON.stringify(input.detail ?? {}),
      ],
    );
    return Number(rows[0]?.id);
  } catch (error) {
    throw auditError(`recording "${input.action}"`, error);
  }
}

/** The audit events, newest first. */
export async function listAudit(db: Queryable, options: { limit?: number } = {}): Promise<AuditEvent[]> {
  try {
    const { rows } = await db.query<{
      id: string;
      at: Date;
      action: AuditAction;
      actor: string;
      approver: string | null;
      reason: string | null;
      scope: string | null;
      epoch: string | null;
      detail: Record<string, unknown>;
    }>(`SELECT * FROM ${AUDIT_TABLE} ORDER BY at DESC, id DESC LIMIT $1`, [options.limit ?? 1000]);
    return rows.map((r) => ({ ...r, id: Number(r.id), epoch: r.epoch === null ? null : Number(r.epoch) }));
  } catch (error) {
    throw auditError('reading the halt audit log', error);
  }
}
