// The monthly DR drill end to end: a fresh backup of the platform drilled into scratch servers
// passes every item of the plan's checklist with evidence and leaves the drilled platform as
// it was; a deliberately broken backup fails the drill, naming the items and the backup; and
// `pnpm drill` (scripts/drill.ts) passes on its own sandbox.

import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runNode, startPlatform, type TestPlatform } from '../support/platform.ts';

/** The first plan's test checklist, in its order (without "Documentation updated", a task for people). */
const CHECKLIST = [
  'Backup creation successful',
  'Backup encryption verified',
  'Backup uploaded to S3',
  'PostgreSQL restore successful',
  'Redis restore successful',
  'File restore successful',
  'Application starts successfully',
  'All services healthy',
  'Data integrity verified',
  'Performance acceptable',
];

interface DrillSummary {
  checklist: { items: { id: string; title: string; passed: boolean; evidence: string }[] };
  rto: { phases: { name: string; budgetMs: number; actualMs: number; over: boolean }[]; total: { actualMs: number } } | null;
}

let platform: TestPlatform;
let config: string;
let scratchDir: string;

beforeAll(async () => {
  platform = await startPlatform();
  scratchDir = join(platform.dir, 'scratch');
  mkdirSync(scratchDir, { recursive: true });
  config = platform.writeConfig((sandbox) => {
    (sandbox.vars as Record<string, unknown>).drill = {
      scratchDir,
      app: {
        start:
          'DATABASE_URL="$DRKIT_SCRATCH_DATABASE_URL" REDIS_URL="$DRKIT_SCRATCH_REDIS_URL" UPLOADS_DIR="$DRKIT_SCRATCH_FILES_DIR" DEMO_PORT="$DRKIT_SCRATCH_PORT" DEMO_PID_FILE="$DRKIT_SCRATCH_PID_FILE" setsid node --import tsx examples/demo-app/src/server.ts >> "$DRKIT_SCRATCH_LOG_FILE" 2>&1 < /dev/null &',
        cwd: REPO,
        healthPath: '/health',
        statusPath: '/api/status',
        migrate: `cd '${REPO}' && DATABASE_URL="$DRKIT_SCRATCH_DATABASE_URL" node --import tsx examples/demo-app/src/migrate.ts`,
      },
    };
  }, 'drill.config.json');
}, 120_000);

afterAll(() => platform?.stop());

const readSummary = (report: string): DrillSummary => JSON.parse(readFileSync(report.replace(/\.md$/, '.json'), 'utf8'));
const slackTexts = () => platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
const users = () => platform.sql(async (c) => Number((await c.query<{ n: string }>('SELECT COUNT(*)::text AS n FROM users')).rows[0]?.n));

describe('dr-drill', () => {
  it('a drill of a fresh backup passes every checklist item with evidence and leaves the drilled platform as it was', async () => {
    const usersBefore = await users();
    const uploadsBefore = readdirSync(platform.uploadsDir, { recursive: true }).length;
    platform.slack.requests.length = 0;
    const report = join(platform.dir, 'reports', 'drill-ok.md');
    const outcome = await platform.runbook('dr-drill', ['--yes', '--report', report], { config });
    expect(outcome.code, outcome.stdout + outcome.stderr).toBe(0);

    const summary = readSummary(report);
    expect(summary.checklist.items.map((i) => i.title)).toEqual(CHECKLIST);
    for (const item of summary.checklist.items) {
      expect(item.passed, `${item.title}: ${item.evidence}`).toBe(true);
      expect(item.evidence.length, item.title).toBeGreaterThan(20);
    }
    const evidence = Object.fromEntries(summary.checklist.items.map((i) => [i.id, i.evidence]));
    expect(evidence['encryption-verified']).toMatch(/a random key was refused by each \(SEAL_/);
    expect(evidence['uploaded-to-s3']).toMatch(/S3 drkit \(us-east-1\).*S3 drkit \(us-west-2\)/);
    expect(evidence['data-integrity']).toMatch(/postgres: \d+ tables, \d+ rows/);
    expect(summary.rto?.phases.map((p) => p.name)).toEqual(['provisioning', 'restoration', 'startup', 'verification']);
    expect(summary.rto?.phases.every((p) => p.actualMs > 0 && !p.over)).toBe(true);

    const markdown = readFileSync(report, 'utf8');
    expect(markdown).toContain('**Result: PASSED**, 10 of 10 checklist items passed.');
    for (const title of CHECKLIST) expect(markdown).toContain(`| ✅ | ${title} |`);
    expect(markdown).toContain('## Recovery time');
    expect(markdown).toContain('## Appendix: the rebuild’s report');
    expect(outcome.stdout + outcome.stderr).toContain('every checklist item passed (10)');

    // The drilled platform is untouched, and the scratch servers are gone.
    expect(await users()).toBe(usersBefore);
    expect(readdirSync(platform.uploadsDir, { recursive: true }).length).toBe(uploadsBefore);
    expect((await fetch(`${platform.app.url}/health`)).status).toBe(200);
    expect(readdirSync(scratchDir)).toEqual([]);
    // The drill's backups are in the store, verified; its messages say it is a drill.
    const manual = await platform.withCatalog((catalog) => catalog.list({ tier: 'manual' }));
    expect(new Set(manual.map((m) => m.kind))).toEqual(
      new Set(['postgres', 'postgres-globals', 'redis-rdb', 'redis-logical', 'files', 'secrets']),
    );
    expect(manual.filter((m) => m.kind !== 'postgres-globals').every((m) => m.verification?.status === 'passed')).toBe(true);
    await expect.poll(() => slackTexts().some((t) => t.includes('[DRILL]') && t.includes('RESOLVED')), { timeout: 10_000 }).toBe(true);
    expect(slackTexts().every((t) => t.includes('[DRILL]'))).toBe(true);
  }, 240_000);

  it('a deliberately broken backup fails the drill: exit 1, the failing items name the backup, the report says FAILED', async () => {
    const set = await platform.backupAll();
    const broken = set.postgres.manifest;
    // One byte flipped in the sealed dump, in both regions (a put through the mirrored store).
    await platform.withCatalog(async (catalog) => {
      const parts: Buffer[] = [];
      for await (const part of await catalog.store.get(broken.object.key)) parts.push(part as Buffer);
      const bytes = Buffer.concat(parts);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = (bytes[at] ?? 0) ^ 0x01;
      await catalog.store.put(broken.object.key, bytes);
    });
    platform.slack.requests.length = 0;
    const report = join(platform.dir, 'reports', 'drill-broken.md');
    const outcome = await platform.runbook('dr-drill', ['--yes', '--use-existing', '--report', report], { config });
    expect(outcome.code, outcome.stdout + outcome.stderr).toBe(1);

    const items = new Map(readSummary(report).checklist.items.map((i) => [i.id, i]));
    expect(items.get('backup-created')?.passed).toBe(true);
    const encryption = items.get('encryption-verified');
    expect(encryption?.passed).toBe(false);
    expect(encryption?.evidence).toMatch(new RegExp(`postgres ${broken.id}: (STORE_INTEGRITY|SEAL_[A-Z_]+)`));
    const restore = items.get('postgres-restored');
    expect(restore?.passed).toBe(false);
    expect(restore?.evidence).toContain(broken.id);
    // The intact parts of the set still restore: the drill grades each item on its own.
    expect(items.get('files-restored')?.passed).toBe(true);
    expect(items.get('redis-restored')?.passed).toBe(true);

    const markdown = readFileSync(report, 'utf8');
    expect(markdown).toMatch(/\*\*Result: FAILED\*\*, \d of 10 checklist items passed\./);
    expect(markdown).toContain('| ❌ | Backup encryption verified |');
    expect(markdown).toMatch(/## Issues found\n\n- \*\*Backup encryption verified\*\*/);
    expect(outcome.stdout + outcome.stderr).toMatch(/the DR drill failed \d+ of 10 checklist items: Backup encryption verified/);
    await expect.poll(() => slackTexts().some((t) => t.includes('[DRILL]') && t.includes('FAILED')), { timeout: 10_000 }).toBe(true);
    expect(readdirSync(scratchDir)).toEqual([]);
  }, 240_000);

  it('--against the environment itself rebuilds it from the fresh backup and grades the rebuild the same way', async () => {
    const usersBefore = await users();
    const report = join(platform.dir, 'reports', 'drill-self.md');
    const outcome = await platform.runbook('dr-drill', ['--yes', '--against', 'sandbox', '--report', report], { config });
    expect(outcome.code, outcome.stdout + outcome.stderr).toBe(0);
    const items = readSummary(report).checklist.items;
    expect(items.filter((i) => !i.passed)).toEqual([]);
    expect(items.find((i) => i.id === 'postgres-restored')?.evidence).toMatch(/into sandbox, backup \d{8}T/);
    // The platform itself was rebuilt: the damaged-aside copy of its database is kept, its data is back, its app answers.
    const databases = await platform.sql(async (c) =>
      (await c.query<{ datname: string }>('SELECT datname FROM pg_database')).rows.map((r) => r.datname),
    );
    expect(databases.some((d) => d.startsWith(`${platform.database}_damaged_`))).toBe(true);
    expect(await users()).toBe(usersBefore);
    expect((await fetch(`${platform.app.url}/health`)).status).toBe(200);
    expect(readdirSync(scratchDir)).toEqual([]);
  }, 240_000);

  it('--against another environment is refused before anything is touched', async () => {
    const outcome = await platform.runbook('dr-drill', ['--yes', '--against', 'staging'], { config });
    expect(outcome.code).toBe(1);
    expect(outcome.stdout + outcome.stderr).toMatch(
      /--against staging: a drill rebuilds either scratch servers or the environment it runs against/,
    );
  }, 120_000);
});

describe('pnpm drill', () => {
  it('runs the drill on its own sandbox and passes every checklist item', async () => {
    const reports = join(platform.dir, 'pnpm-drill-reports');
    const before = readdirSync(tmpdir()).filter((d) => d.startsWith('drkit-pnpm-drill-') || d.startsWith('drkit-drill-'));
    const outcome = await runNode(['--import', 'tsx', join(REPO, 'scripts', 'drill.ts')], { DRKIT_DRILL_REPORT_DIR: reports });
    expect(outcome.code, outcome.stdout.slice(-3000) + outcome.stderr).toBe(0);
    expect(outcome.stdout).toContain('10 of 10 checklist items passed');
    expect(outcome.stdout).toMatch(/result: DRILL PASSED in \d+\.\ds/);
    for (const title of CHECKLIST) expect(outcome.stdout).toMatch(new RegExp(`\\[x\\] ${title}`));
    expect(outcome.stdout).toMatch(/total \(RTO\)\s+1h 00m 00s/);
    const written = readdirSync(reports).filter((f) => f.endsWith('.md'));
    expect(written).toHaveLength(1);
    expect(readFileSync(join(reports, written[0] ?? ''), 'utf8')).toContain('**Result: PASSED**');
    const after = readdirSync(tmpdir()).filter((d) => d.startsWith('drkit-pnpm-drill-') || d.startsWith('drkit-drill-'));
    expect(after.filter((d) => !before.includes(d))).toEqual([]);
    expect(existsSync(join(reports, written[0] ?? ''))).toBe(true);
  }, 240_000);
});
