import { migrateAudit } from '@drkit/treasury-halt';
import type pg from 'pg';

/** One schema change, applied once and recorded in `demo_migrations`. */
interface Migration {
  name: string;
  sql: string;
}

// IF NOT EXISTS everywhere: a database restored from a dump taken mid-migration, or made by
// hand, must not make the migration hook fail on tables that are already right.
const MIGRATIONS: readonly Migration[] = [
  {
    name: '001_users',
    sql: `CREATE TABLE IF NOT EXISTS users (
            id bigserial PRIMARY KEY,
            email text UNIQUE NOT NULL,
            name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
          )`,
  },
  {
    name: '002_trades',
    sql: `CREATE TABLE IF NOT EXISTS trades (
            id bigserial PRIMARY KEY,
            user_id bigint NOT NULL REFERENCES users(id),
            symbol text NOT NULL,
            side text NOT NULL CHECK (side IN ('buy', 'sell')),
            qty numeric(20,8) NOT NULL,
            price numeric(20,8) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE INDEX IF NOT EXISTS trades_user_id ON trades (user_id)`,
  },
];

/** The name reported when treasury-halt's audit schema was created or upgraded. */
const AUDIT_MIGRATION = 'treasury-halt-audit';

/** A fixed advisory lock key: two migration hooks at once wait for each other instead of racing. */
const MIGRATION_LOCK = 7_204_318_601;

function isPool(client: pg.ClientBase | pg.Pool): client is pg.Pool {
  return typeof (client as pg.Pool).totalCount === 'number';
}

/**
 * Brings the demo app's schema up to date: `users`, `trades` and treasury-halt's audit table.
 * Idempotent and safe to run from several processes at once. Returns the names of the
 * migrations applied by this call (empty when there was nothing to do).
 */
export async function migrate(client: pg.ClientBase | pg.Pool): Promise<string[]> {
  // An advisory lock belongs to a session, so a pool must lend one connection for the whole run.
  const conn = isPool(client) ? await client.connect() : client;
  const applied: string[] = [];
  try {
    await conn.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await conn.query('CREATE TABLE IF NOT EXISTS demo_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
      const { rows } = await conn.query<{ name: string }>('SELECT name FROM demo_migrations');
      const done = new Set(rows.map((row) => row.name));
      for (const migration of MIGRATIONS) {
        if (done.has(migration.name)) continue;
        await conn.query('BEGIN');
        try {
          await conn.query(migration.sql);
          await conn.query('INSERT INTO demo_migrations (name) VALUES ($1)', [migration.name]);
          await conn.query('COMMIT');
        } catch (error) {
          await conn.query('ROLLBACK').catch(() => {});
          throw error;
        }
        applied.push(migration.name);
      }
      // migrateAudit treats anything without a pool's counters as a client it may use as is.
      const audit = await migrateAudit(conn as pg.Client);
      if (audit.applied > 0) applied.push(AUDIT_MIGRATION);
    } finally {
      await conn.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
    }
  } finally {
    if (conn !== client) (conn as pg.PoolClient).release();
  }
  return applied;
}
