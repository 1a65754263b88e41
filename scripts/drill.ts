// `pnpm drill` until the DR drill runbook exists: a short, clearly labelled demo that starts
// the three sandbox services, writes and reads back data on each, and stops them.
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startSandbox } from '@drkit/sandbox';
import { Redis } from 'ioredis';
import pg from 'pg';

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(2)}s`;
const step = (text: string) => process.stdout.write(`  [${elapsed().padStart(6)}] ${text}\n`);

process.stdout.write(
  'drkit drill: DEMO ONLY. The monthly DR drill runbook is not built yet; this checks that the\n' +
    'sandbox can start real PostgreSQL, Redis and S3 servers, round-trip data on each, and stop them.\n\n',
);

const sandbox = await startSandbox();
step(
  `started PostgreSQL ${sandbox.postgres.version} on :${sandbox.postgres.port}, redis ${sandbox.redis.version} on :${sandbox.redis.port}, S3 at ${sandbox.s3.endpoint}`,
);
let failed = false;
try {
  const db = new pg.Client(sandbox.postgres.connection());
  await db.connect();
  await db.query('create table users (id serial primary key, email text not null unique)');
  await db.query("insert into users (email) select 'user' || g || '@example.com' from generate_series(1, 1000) g");
  const { rows } = await db.query<{ count: string }>('select count(*) from users');
  await db.end();
  step(`PostgreSQL: wrote 1000 users, read back ${rows[0]?.count}`);
  if (rows[0]?.count !== '1000') throw new Error('PostgreSQL read back the wrong row count');

  const redis = new Redis(sandbox.redis.url());
  await redis.set('session:alice', 'token', 'EX', 3600);
  const session = await redis.get('session:alice');
  const ttl = await redis.ttl('session:alice');
  redis.disconnect();
  step(`Redis: wrote a session with a 1 h TTL, read back '${session}' with ${ttl}s left`);
  if (session !== 'token' || ttl <= 0) throw new Error('Redis read back the wrong session');

  const s3 = new S3Client(sandbox.s3.clientConfig());
  const body = `drill ${new Date().toISOString()}`;
  await s3.send(new PutObjectCommand({ Bucket: 'drkit', Key: 'drill/hello.txt', Body: body }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'drkit', Key: 'drill/hello.txt' }));
  const text = await got.Body?.transformToString();
  s3.destroy();
  step(`S3: put and got back drill/hello.txt (${text?.length} bytes)`);
  if (text !== body) throw new Error('S3 read back different bytes');
} catch (error) {
  failed = true;
  process.stderr.write(`drill demo FAILED: ${(error as Error).message}\n`);
} finally {
  await sandbox.stop();
  step('stopped all services and removed their data');
}
process.stdout.write(failed ? '\nresult: FAILED\n' : '\nresult: sandbox demo passed\n');
process.exitCode = failed ? 1 : 0;
