// Seeds the demo app's database, Redis and uploads directory, configured like the server:
//
//   DATABASE_URL=... REDIS_URL=... UPLOADS_DIR=... node --import tsx examples/demo-app/src/seed-cli.ts
//
// DEMO_SEED (default 1) and DEMO_SEED_USERS / _SESSIONS / _FILES / _TRADES change what is
// written. Prints one line, `seeded: {"users":50,...}`, and exits 0; on failure, one line on
// stderr and exit 1.
import { shortMessage } from './deadline.ts';
import { type SeedOptions, seedDemo } from './seed.ts';

function fail(message: string): never {
  process.stderr.write(`seed failed: ${message}\n`);
  process.exit(1);
}

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value.trim() === '') fail(`${name} is required`);
  return value;
}

function optionalCount(name: string): number | undefined {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) fail(`${name} must be a whole number >= 0, not "${value}"`);
  return n;
}

const options: SeedOptions = {
  databaseUrl: required('DATABASE_URL'),
  redisUrl: required('REDIS_URL'),
  uploadsDir: required('UPLOADS_DIR'),
};
const extra: [keyof SeedOptions, string][] = [
  ['seed', 'DEMO_SEED'],
  ['users', 'DEMO_SEED_USERS'],
  ['sessions', 'DEMO_SEED_SESSIONS'],
  ['files', 'DEMO_SEED_FILES'],
  ['trades', 'DEMO_SEED_TRADES'],
];
for (const [key, name] of extra) {
  const n = optionalCount(name);
  if (n !== undefined) Object.assign(options, { [key]: n });
}

try {
  const result = await seedDemo(options);
  process.stdout.write(`seeded: ${JSON.stringify(result)}\n`);
} catch (error) {
  fail(shortMessage(error, 500));
}
