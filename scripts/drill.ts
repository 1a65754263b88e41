// `pnpm drill`: the monthly DR drill, on this machine. It starts the platform of the plans on
// real servers — PostgreSQL, Redis, a local backup dir and two S3 regions (us-east-1 and its
// us-west-2 replica) — seeds it with the demo app's data (users, uploaded files, sessions with
// TTLs, a trading ledger), and runs runbooks/dr-drill.ts against the example config's sandbox
// environment: a full backup, its encryption and copies verified, the platform rebuilt into
// scratch servers by complete-system-failure, services and data checked, the plan's test
// checklist graded with evidence. It prints the checklist and the RTO table, keeps the test
// report under .drkit/drill/ (or $DRKIT_DRILL_REPORT_DIR), removes every server and exits non-zero unless every item passed.

import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { generateKey } from '@drkit/crypto-stream';
import { createEventRenderer, formatElapsed, loadConfig, run } from '@drkit/runbook';
import { startPostgres, startRedis, startS3 } from '@drkit/sandbox';
import pg from 'pg';
import { seedDemo } from '../examples/demo-app/src/index.ts';
import drDrill from '../runbooks/dr-drill.ts';
import type { Checklist, RtoTable } from '../runbooks/lib/drill.ts';

const repo = resolve(import.meta.dirname, '..');
const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;
const say = (text: string) => process.stdout.write(`${text}\n`);
const note = (text: string) => say(`  [${elapsed().padStart(6)}] ${text}`);

say("drkit DR drill: the first plan's monthly drill (full backup + restore cycle) on sandbox servers\n");
const dir = mkdtempSync(join(tmpdir(), 'drkit-pnpm-drill-'));
const stops: (() => Promise<void>)[] = [];
let exitCode = 1;
try {
  const [postgres, redis, east, west] = await Promise.all([
    startPostgres(),
    startRedis(),
    startS3({ region: 'us-east-1' }),
    startS3({ region: 'us-west-2' }),
  ]);
  stops.push(
    () => postgres.stop(),
    () => redis.stop(),
    () => east.stop(),
    () => west.stop(),
  );
  note(
    `started PostgreSQL ${postgres.version} on :${postgres.port}, redis ${redis.version} on :${redis.port}, S3 us-east-1 at ${east.endpoint} and us-west-2 at ${west.endpoint}`,
  );

  const admin = new pg.Client(postgres.connection());
  await admin.connect();
  await admin.query('CREATE DATABASE app');
  await admin.end();
  const uploads = join(dir, 'uploads');
  mkdirSync(uploads, { recursive: true });
  const seeded = await seedDemo({
    databaseUrl: postgres.url('app'),
    redisUrl: redis.url(),
    uploadsDir: uploads,
    users: 2000,
    sessions: 500,
    files: 150,
    trades: 5000,
  });
  writeFileSync(
    join(dir, '.env'),
    `API_KEY="${randomBytes(16).toString('hex')}"\nJWT_SECRET="${randomBytes(32).toString('hex')}"\nDATABASE_URL="postgres://${postgres.user}@127.0.0.1:${postgres.port}/app"\n`,
    { mode: 0o600 },
  );
  note(`seeded the demo platform: ${JSON.stringify(seeded)}`);

  // The example config's sandbox environment reads where everything is from these variables.
  const { AWS_ENDPOINT_URL_S3: _oneEndpoint, ...aws } = east.env();
  Object.assign(process.env, aws, {
    DRKIT_SANDBOX_PG: `postgres://${encodeURIComponent(postgres.user)}@127.0.0.1:${postgres.port}/app`,
    DRKIT_SANDBOX_REDIS: redis.url(),
    DRKIT_SANDBOX_DIR: dir,
    DRKIT_SANDBOX_APP: 'http://127.0.0.1:1',
    // Local disk, then S3 in two regions: the first plan's backup storage.
    DRKIT_SANDBOX_STORE: [
      `file://${join(dir, 'backups')}`,
      `s3://drkit/backups?region=us-east-1&endpoint=${east.endpoint}`,
      `s3://drkit/backups?region=us-west-2&endpoint=${west.endpoint}`,
    ].join(','),
    PGPASSWORD: postgres.password,
    DRKIT_KEY: generateKey().toString('base64'),
    DRKIT_SECRETS_KEY: generateKey().toString('base64'),
  });
  const config = await loadConfig({ cwd: repo, file: join(repo, 'examples', 'drkit.config.ts') });
  const reportDir = resolve(process.env.DRKIT_DRILL_REPORT_DIR ?? join(repo, '.drkit', 'drill'));
  const report = join(reportDir, `dr-drill-sandbox-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.md`);
  say('');
  const render = createEventRenderer();
  const result = await run(drDrill, {
    config,
    environment: 'sandbox',
    params: { report },
    yes: true,
    cwd: repo,
    runsDir: join(dir, 'runs'),
    onEvent: (event) => {
      const line = render(event);
      if (line !== undefined) say(`  ${line}`);
    },
  });
  exitCode = result.exitCode;

  say('');
  let summary: { checklist: Checklist; rto: RtoTable | null } | undefined;
  try {
    summary = JSON.parse(readFileSync(report.replace(/\.md$/, '.json'), 'utf8'));
  } catch {
    say(`the drill wrote no test report (${result.status}${result.error ? `: ${result.error.message}` : ''})`);
  }
  if (summary) {
    say('Test checklist');
    for (const item of summary.checklist.items) say(`  ${item.passed ? '[x]' : '[ ]'} ${item.title.padEnd(32)} ${item.evidence}`);
    if (summary.rto) {
      say('\nRecovery time (complete-system-failure into scratch servers)');
      say(`  ${'phase'.padEnd(14)} ${'budget'.padStart(8)} ${'actual'.padStart(9)}  within`);
      for (const p of summary.rto.phases)
        say(
          `  ${p.name.padEnd(14)} ${formatElapsed(p.budgetMs).padStart(8)} ${formatElapsed(p.actualMs).padStart(9)}  ${p.over ? 'NO' : 'yes'}`,
        );
      const t = summary.rto.total;
      say(
        `  ${'total (RTO)'.padEnd(14)} ${formatElapsed(t.budgetMs).padStart(8)} ${formatElapsed(t.actualMs).padStart(9)}  ${t.over ? 'NO' : 'yes'}`,
      );
    }
    const passed = summary.checklist.items.filter((i) => i.passed).length;
    say(`\n${passed} of ${summary.checklist.items.length} checklist items passed; test report: ${relative(process.cwd(), report)}`);
  }
} catch (error) {
  process.stderr.write(`drkit drill: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  exitCode = 1;
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
say(`result: ${exitCode === 0 ? 'DRILL PASSED' : 'DRILL FAILED'} in ${elapsed()}`);
process.exitCode = exitCode;
