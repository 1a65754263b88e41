// The "run database migrations" hook of the recovery runbooks:
//
//   DATABASE_URL=postgres://user@host:5432/app PGPASSWORD=... node --import tsx examples/demo-app/src/migrate.ts
//
// Prints one line, `migrated: <names>` or `migrated: nothing to do`, and exits 0; on failure,
// one line on stderr and exit 1.
import pg from 'pg';
import { shortMessage } from './deadline.ts';
import { migrate } from './schema.ts';

const name = 'DATABASE_URL';
const url = process.env[name];
if (!url) {
  process.stderr.write(`migrate failed: ${name} is required\n`);
  process.exit(1);
}

// pg takes the password from PGPASSWORD when the URL has none, which keeps it off command lines.
const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 10_000, application_name: 'drkit-demo-migrate' });
pool.on('error', () => {
  // A connection lost while idle fails the next query, which reports it.
});
try {
  const applied = await migrate(pool);
  process.stdout.write(`migrated: ${applied.length > 0 ? applied.join(', ') : 'nothing to do'}\n`);
} catch (error) {
  process.stderr.write(`migrate failed: ${shortMessage(error, 500)}\n`);
  process.exitCode = 1;
} finally {
  await pool.end().catch(() => {});
}
