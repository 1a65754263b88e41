// The backup-on-demand service as a process:
//
//   DATABASE_URL=postgres://app@db:5432/app PGPASSWORD=... DRKIT_STORE=s3://bucket/backups?region=us-east-1 \
//   DRKIT_KEY=... ADMIN_TOKEN=... PORT=8080 node examples/backup-on-demand/src/server.ts
//
// Configured by environment only (README.md). Logs one JSON line per event on stdout, never a
// secret; a configuration error is one line on stderr and exit 1. SIGTERM or SIGINT aborts a
// backup in progress (nothing is recorded for it) and exits 0.
import { createBackupService, ServiceConfigError, serviceOptionsFromEnv } from './app.ts';

const line = (entry: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...entry })}\n`);

let options: Awaited<ReturnType<typeof serviceOptionsFromEnv>>;
try {
  options = await serviceOptionsFromEnv(process.env);
} catch (error) {
  process.stderr.write(`backup-on-demand: ${error instanceof ServiceConfigError ? error.message : 'cannot read the configuration'}\n`);
  process.exit(1);
}

let service: Awaited<ReturnType<typeof createBackupService>>;
try {
  service = await createBackupService({ ...options, log: line });
} catch (error) {
  // Start-up errors (port taken, bad URL) come from node and the packages, whose messages carry no credentials.
  process.stderr.write(`backup-on-demand: cannot start: ${(error as Error).message}\n`);
  process.exit(1);
}

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  // A stop must be dependable: gone within 10 s whatever hangs.
  setTimeout(() => process.exit(0), 10_000).unref();
  service.close().then(
    () => process.exit(0),
    () => process.exit(0),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
