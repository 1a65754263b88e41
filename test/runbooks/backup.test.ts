// backup.ts against a real platform: PostgreSQL, Redis, the uploads, a few configuration
// files and the .env backed up by the runbook as its own process into the two-region S3
// mirror (and a local disk + two regions store), each object then read back here from each
// region with the S3 SDK, not through the runbook's code. Retention is checked against
// s3-store's planRetention run here on the same items; a failing component, a dry run and a
// copy altered in one region are checked for what they must not do.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { open } from '@drkit/crypto-stream';
import { defineRunbook, run } from '@drkit/runbook';
import {
  type Catalog,
  createCatalog,
  type Manifest,
  openStore,
  planRetention,
  type RetentionItem,
  readStored,
  type Store,
} from '@drkit/s3-store';
import type { S3Sandbox } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type TakenArtifact, tierFor, type UploadCheck, verifyUploaded } from '../../runbooks/lib/take-backup.ts';
import { startPlatform, type TestPlatform } from '../support/platform.ts';

const POLICY = { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 };
const SET_KINDS = ['config', 'files', 'postgres', 'postgres-globals', 'redis-logical', 'redis-rdb', 'secrets'];

let platform: TestPlatform;
let configDir: string;
let configFiles: Record<string, string>;
/** The artifacts of the first daily run, by kind. */
let firstDaily: Record<string, Manifest>;

/** A catalog of one region only (prefix `backups` unless told), for independent reads. */
function regionCatalog(s3: S3Sandbox, prefix = 'backups'): { store: Store; catalog: Catalog } {
  const store = openStore(`s3://drkit/${prefix}?region=${s3.region}&endpoint=${s3.endpoint}`, { s3: { credentials: s3.credentials } });
  return { store, catalog: createCatalog(store) };
}

async function withRegion<T>(s3: S3Sandbox, fn: (catalog: Catalog, store: Store) => Promise<T>, prefix = 'backups'): Promise<T> {
  const { store, catalog } = regionCatalog(s3, prefix);
  try {
    return await fn(catalog, store);
  } finally {
    await store.close();
  }
}

/** Every manifest in the east region, by id. */
async function listed(prefix = 'backups'): Promise<Map<string, Manifest>> {
  return withRegion(platform.east, async (catalog) => new Map((await catalog.list()).map((m) => [m.id, m])), prefix);
}

/** The SHA-256 and size of an object, read with the S3 SDK from one region; undefined when it is not there. */
async function objectIn(s3: S3Sandbox, key: string): Promise<{ size: number; sha256: string } | undefined> {
  const client = new S3Client(s3.clientConfig());
  try {
    const got = await client.send(new GetObjectCommand({ Bucket: 'drkit', Key: key }));
    const bytes = Buffer.from(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    return { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
    throw error;
  } finally {
    client.destroy();
  }
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

function texts(): string[] {
  return platform.slack.requests.map((r) => (r.body as { text?: string }).text ?? '');
}

/**
 * Checks that a successful routine run told nobody anything. The one message tolerated is the
 * engine's own approval notice for the destructive prune step: packages/runbook's run.ts posts
 * "NEEDS APPROVAL" for every destructive step even when --yes has already approved it (the
 * run never waits), and for routine jobs too. The runbook sends nothing of its own.
 */
function expectSilence(): void {
  expect(texts()).toEqual([]);
}

/** Stores a fake artifact dated `at` (retention reads manifests only; nothing opens these). */
async function seed(catalog: Catalog, kind: string, at: Date, labels?: Record<string, string>): Promise<Manifest> {
  return catalog.put({
    kind,
    tier: 'daily',
    ...(labels ? { labels } : {}),
    createdAt: at,
    source: { description: 'seeded by backup.test.ts' },
    tool: { name: 'drkit', version: '0.1.0' },
    compression: 'none',
    encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: 'seed' },
    body: Buffer.from(`${kind} ${at.toISOString()}`),
  });
}

const daysAgo = (n: number, hour = 2) => {
  const d = new Date();
  d.setUTCHours(hour, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() - n);
  return d;
};

beforeAll(async () => {
  configDir = mkdtempSync(join(tmpdir(), 'drkit-backup-config-'));
  mkdirSync(join(configDir, 'k8s'), { recursive: true });
  configFiles = {
    [join(configDir, 'nginx.conf')]: 'server { listen 80; location / { proxy_pass http://api; } }\n',
    [join(configDir, 'k8s', 'deployment.yaml')]: 'apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: jarvis-api }\n',
    [join(configDir, 'k8s', `${'long-name-'.repeat(12)}.yaml`)]: 'kind: ConfigMap\n',
  };
  for (const [path, text] of Object.entries(configFiles)) writeFileSync(path, text);
  platform = await startPlatform({
    vars: { backup: { configFiles: [join(configDir, 'nginx.conf'), join(configDir, 'k8s')] } },
  });
}, 120_000);

afterAll(async () => {
  await platform?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
}, 60_000);

describe('tierFor (--tier auto)', () => {
  it('is monthly on the 1st, weekly on Sunday, daily otherwise, in the given time zone', () => {
    expect(tierFor(new Date('2026-02-01T02:00:00Z'))).toBe('monthly'); // a Sunday and the 1st: the 1st wins
    expect(tierFor(new Date('2026-02-08T03:00:00Z'))).toBe('weekly');
    expect(tierFor(new Date('2026-02-10T02:00:00Z'))).toBe('daily');
    // Saturday 23:30 in UTC is Sunday 08:30 in Tokyo.
    expect(tierFor(new Date('2026-02-07T23:30:00Z'))).toBe('daily');
    expect(tierFor(new Date('2026-02-07T23:30:00Z'), 'Asia/Tokyo')).toBe('weekly');
    // The 1st in UTC is still the 31st in New York; the 31st in UTC is the 1st in Berlin.
    expect(tierFor(new Date('2026-03-01T03:00:00Z'), 'America/New_York')).toBe('daily');
    expect(tierFor(new Date('2026-01-31T23:30:00Z'), 'Europe/Berlin')).toBe('monthly');
  });
});

describe('backup runbook', () => {
  it('a daily run stores the whole set, verified, in both regions, and tells nobody', async () => {
    const runsBefore = runDirs();
    const outcome = await platform.runbook('backup', ['--tier', 'daily', '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);

    const manifests = [...(await listed()).values()];
    expect(manifests.map((m) => m.kind).sort()).toEqual(SET_KINDS);
    firstDaily = Object.fromEntries(manifests.map((m) => [m.kind, m]));
    for (const m of manifests) {
      expect(m.tier, m.kind).toBe('daily');
      expect(m.verification?.status, `${m.kind}: ${m.verification?.detail}`).toBe('passed');
      expect(m.verification?.level).toBe('authenticated-read');
      expect(m.encryption.format).toBe('drkit-sealed/1');
      // The same bytes in each region, read with the S3 SDK.
      for (const region of [platform.east, platform.west])
        expect(await objectIn(region, `backups/${m.object.key}`), `${m.kind} in ${region.region}`).toEqual({
          size: m.object.size,
          sha256: m.object.sha256,
        });
      // And the replica has the manifest too, with the verification recorded.
      const replica = await withRegion(platform.west, (catalog) => catalog.get(m.id, m.kind));
      expect(replica.verification?.status).toBe('passed');
    }
    expect(firstDaily.files?.type).toBe('full');
    expect(firstDaily.postgres?.compression).toBe('gzip');

    // What was dumped is the database as it is: its users count.
    const users = await platform.sql(async (c) =>
      Number((await c.query<{ n: string }>('SELECT COUNT(*)::text AS n FROM users')).rows[0]?.n),
    );
    const tables = ((firstDaily.postgres as Manifest).fingerprint as { tables: Record<string, number> }).tables;
    expect(tables['public.users'] ?? tables.users).toBe(users);

    // The configuration files come back out of the sealed tar, byte for byte, with GNU tar.
    const sealed = await withRegion(platform.west, async (catalog) => {
      const parts: Buffer[] = [];
      for await (const part of readStored(catalog, firstDaily.config as Manifest)) parts.push(part);
      return Buffer.concat(parts);
    });
    const plain: Buffer[] = [];
    for await (const part of open(sealed, { keys: platform.keys.backupRing })) plain.push(part as Buffer);
    const out = mkdtempSync(join(tmpdir(), 'drkit-backup-untar-'));
    try {
      writeFileSync(join(out, 'config.tar'), Buffer.concat(plain));
      execFileSync('tar', ['-xf', join(out, 'config.tar'), '-C', out]);
      for (const [path, text] of Object.entries(configFiles)) expect(readFileSync(join(out, path), 'utf8')).toBe(text);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }

    // A routine job that worked tells nobody; its report is there.
    expectSilence();
    const runDir = runDirs().find((d) => !runsBefore.includes(d));
    expect(runDir).toBeDefined();
    expect(readFileSync(join(platform.runsDir, runDir as string, 'report.md'), 'utf8')).toMatch(/verify-uploads/);
  }, 180_000);

  it('a second daily run backs up the files incrementally on the first', async () => {
    writeFileSync(join(platform.uploadsDir, 'uploads', '2025', '10', 'new-track.mp3'), Buffer.alloc(4096, 7));
    const before = await listed();
    const outcome = await platform.runbook('backup', ['--tier', 'daily', '--yes', '--no-prune']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    const added = [...(await listed()).values()].filter((m) => !before.has(m.id));
    expect(added.map((m) => m.kind).sort()).toEqual(SET_KINDS);
    const files = added.find((m) => m.kind === 'files') as Manifest;
    expect(files.type).toBe('incremental');
    expect(files.parent).toBe(firstDaily.files?.id);
    expect((files.fingerprint as { changes: { added: number } }).changes.added).toBe(1);
    expect(added.find((m) => m.kind === 'postgres')?.type).toBe('full');
    // --no-prune: everything from before is still there.
    const after = await listed();
    for (const id of before.keys()) expect(after.has(id)).toBe(true);
    expectSilence();
  }, 180_000);

  it('a weekly run takes a full files backup, and the prune deletes exactly what 7 daily / 4 weekly / 12 monthly drops', async () => {
    // Old backups: every day of the last 12, a Sunday for 10 weeks, the 1st for 16 months.
    const dates = new Map<number, Date>();
    for (let d = 1; d <= 12; d++) dates.set(daysAgo(d).getTime(), daysAgo(d));
    for (let w = 2; w <= 10; w++) {
      const sunday = daysAgo(w * 7);
      sunday.setUTCDate(sunday.getUTCDate() - sunday.getUTCDay());
      dates.set(sunday.getTime(), sunday);
    }
    for (let m = 1; m <= 16; m++) {
      const first = daysAgo(0, 4);
      first.setUTCDate(1);
      first.setUTCMonth(first.getUTCMonth() - m);
      dates.set(first.getTime(), first);
    }
    const past = [...dates.values()].filter((d) => d.getTime() < daysAgo(0, 0).getTime());
    await platform.withCatalog((catalog) =>
      Promise.all(['postgres', 'secrets'].flatMap((kind) => past.map((at) => seed(catalog, kind, at)))),
    );
    // A recovery runbook's snapshot of a damaged database, the newest of its day: evidence, not a backup.
    const snapshot = await platform.withCatalog((catalog) => seed(catalog, 'postgres', daysAgo(2, 3), { snapshot: 'true' }));
    const before = await listed();
    const runsBefore = runDirs();

    const outcome = await platform.runbook('backup', ['--tier', 'weekly', '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    const after = await listed();
    const added = [...after.values()].filter((m) => !before.has(m.id));
    expect(added.map((m) => m.kind).sort()).toEqual(SET_KINDS);
    const files = added.find((m) => m.kind === 'files') as Manifest;
    expect(files.type).toBe('full');
    expect(files.tier).toBe('weekly');

    // The policy, applied here to the same backups: what it drops is what is gone, nothing else.
    const items: RetentionItem[] = [...before.values(), ...added]
      .filter((m) => m.labels?.snapshot !== 'true')
      .map((m) => ({
        id: m.id,
        kind: m.kind,
        createdAt: m.createdAt,
        type: m.type,
        ...(m.parent !== undefined ? { parent: m.parent } : {}),
        ...(m.verification ? { verification: { status: m.verification.status } } : {}),
      }));
    const expected = planRetention(items, POLICY, new Date());
    const deleted = [...before.keys()].filter((id) => !after.has(id)).sort();
    expect(deleted).toEqual(expected.drop.map((d) => d.id).sort());
    // It did delete: old dailies beyond the 7th day and today's earlier runs; it kept the monthlies.
    expect(deleted.length).toBeGreaterThan(10);
    expect(deleted).toContain(firstDaily.postgres?.id);
    const monthly = (monthsAgo: number) => {
      const at = daysAgo(0, 4);
      at.setUTCDate(1);
      at.setUTCMonth(at.getUTCMonth() - monthsAgo);
      return [...before.values()].find((m) => m.kind === 'postgres' && m.createdAt === at.toISOString()) as Manifest;
    };
    // Months 1 to 11 back are the 12 monthlies with this one; 12 months back and older go.
    expect(after.has(monthly(5).id)).toBe(true);
    expect(after.has(monthly(11).id)).toBe(true);
    expect(after.has(monthly(12).id)).toBe(false);
    expect(after.has(monthly(16).id)).toBe(false);
    for (const m of added) expect(after.has(m.id)).toBe(true);
    // The snapshot is neither deleted nor counted in place of that day's backup.
    expect(after.has(snapshot.id)).toBe(true);
    const sameDay = [...before.values()].find((m) => m.kind === 'postgres' && m.createdAt === daysAgo(2).toISOString());
    expect(sameDay && after.has(sameDay.id)).toBe(true);
    // Deleted from both regions.
    const gone = before.get(firstDaily.postgres?.id as string) as Manifest;
    expect(await objectIn(platform.east, `backups/${gone.object.key}`)).toBeUndefined();
    expect(await objectIn(platform.west, `backups/${gone.object.key}`)).toBeUndefined();
    const runDir = runDirs().find((d) => !runsBefore.includes(d)) as string;
    expect(readFileSync(join(platform.runsDir, runDir, 'report.md'), 'utf8')).toMatch(/prune/);
    expectSilence();
  }, 180_000);

  it('when components fail, the others are still taken, nothing is pruned, and one failure message goes out (exit 1)', async () => {
    // Backups the policy would drop: earlier ones of a day that has a later one, of kinds
    // this run does take (config) and does not (postgres).
    const droppable = await platform.withCatalog(async (catalog) => [
      await seed(catalog, 'config', daysAgo(3, 0)),
      await seed(catalog, 'config', daysAgo(3, 1)),
      await seed(catalog, 'postgres', daysAgo(3, 1)),
    ]);
    // A config backup every day for 9 days: enough days that no rule keeps the oldest for lack of periods.
    await platform.withCatalog((catalog) => Promise.all([1, 2, 3, 4, 5, 6, 7, 8, 9].map((d) => seed(catalog, 'config', daysAgo(d, 2)))));
    const before = await listed();
    const wouldDrop = planRetention(
      [...before.values()].map((m) => ({
        id: m.id,
        kind: m.kind,
        createdAt: m.createdAt,
        type: m.type,
        ...(m.parent ? { parent: m.parent } : {}),
      })),
      POLICY,
      new Date(),
    ).drop.map((d) => d.id);
    for (const m of droppable) expect(wouldDrop).toContain(m.id);

    const url = new URL(platform.databaseUrl);
    const badConfig = platform.writeConfig((sandbox) => {
      (sandbox.vars as { postgres: { url: string } }).postgres = {
        url: `postgres://${url.username}@${url.hostname}:${url.port}/no_such_database`,
      };
      // The inner key of the secrets backup is read from a variable nobody set.
      sandbox.secrets = { secretsKey: { env: 'DRKIT_TEST_UNSET_SECRETS_KEY' } };
    }, 'bad-postgres.json');
    platform.slack.requests.length = 0;
    // The database is not there, and the inner key of the secrets backup is not set.
    const outcome = await platform.runbook('backup', ['--tier', 'daily', '--yes'], { config: badConfig });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(1);
    expect(outcome.stdout + outcome.stderr).toMatch(/no_such_database/);

    const after = await listed();
    const added = [...after.values()].filter((m) => !before.has(m.id));
    expect(added.map((m) => m.kind).sort()).toEqual(['config', 'files', 'redis-logical', 'redis-rdb']);
    for (const m of added) expect(m.verification?.status).toBe('passed');
    // Nothing was pruned: every backup from before is still there.
    for (const id of before.keys()) expect(after.has(id), id).toBe(true);

    const sent = texts();
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatch(/SCHEDULED BACKUP FAILED - Sev2/);
    expect(sent[0]).toMatch(/2 components not backed up: postgres: PG_DATABASE_MISSING/);
    expect(sent[0]).toMatch(/secrets: .*DRKIT_SECRETS_KEY/);
    expect(sent[0]).toMatch(/Nothing was pruned/);
  }, 180_000);

  it('--dry-run takes nothing, deletes nothing, and lists what a run would delete', async () => {
    const before = await listed();
    const runsBefore = runDirs();
    platform.slack.requests.length = 0;
    const outcome = await platform.runbook('backup', ['--tier', 'daily', '--dry-run']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    const after = await listed();
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [id, m] of after) expect(m).toEqual(before.get(id));
    // The droppable backups of the previous test are named as what a run would delete.
    const wouldDrop = [...before.values()].filter(
      (m) => m.kind === 'config' && m.source.description.startsWith('seeded') && m.createdAt === daysAgo(3, 0).toISOString(),
    );
    expect(wouldDrop).toHaveLength(1);
    expect(outcome.stdout + outcome.stderr).toContain((wouldDrop[0] as Manifest).id);
    expect(texts()).toEqual([]);
    const runDir = runDirs().find((d) => !runsBefore.includes(d));
    expect(runDir).toBeDefined();
  }, 180_000);

  it('stores on local disk and both S3 regions (three copies), each verified', async () => {
    const local = join(platform.dir, 'local-backups');
    const three = [
      `file://${local}`,
      `s3://drkit/three?region=us-east-1&endpoint=${platform.east.endpoint}`,
      `s3://drkit/three?region=us-west-2&endpoint=${platform.west.endpoint}`,
    ].join(',');
    const config = platform.writeConfig((sandbox) => {
      sandbox.stores = { backups: three };
    }, 'three-copies.json');
    platform.slack.requests.length = 0;
    const outcome = await platform.runbook('backup', ['--tier', 'daily', '--yes'], { config });
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    const manifests = await withRegion(platform.west, (catalog) => catalog.list(), 'three');
    expect(manifests.map((m) => m.kind).sort()).toEqual(SET_KINDS);
    for (const m of manifests) {
      expect(m.verification?.status).toBe('passed');
      const onDisk = readFileSync(join(local, m.object.key));
      expect(createHash('sha256').update(onDisk).digest('hex')).toBe(m.object.sha256);
      expect(JSON.parse(readFileSync(join(local, 'manifests', m.kind, `${m.id}.json`), 'utf8')).verification.status).toBe('passed');
      for (const region of [platform.east, platform.west])
        expect(await objectIn(region, `three/${m.object.key}`)).toEqual({ size: m.object.size, sha256: m.object.sha256 });
    }
    expectSilence();
  }, 180_000);

  it("the second plan's hourly tier is configuration: --tier hourly plans its own components, incremental files and retention", async () => {
    const hourly = platform.writeConfig((sandbox) => {
      (sandbox.vars as { backup: Record<string, unknown> }).backup = {
        tiers: {
          hourly: { schedule: '30 * * * *', components: ['postgres', 'redis', 'files'] },
          daily: { schedule: '0 2 * * *' },
        },
        retention: { keepHourly: 24, keepDaily: 30, incremental: { keepWithin: '7d' } },
      };
    }, 'hourly.json');
    const outcome = await platform.runbook('backup', ['--tier', 'hourly', '--plan'], { config: hourly });
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(outcome.stdout).toContain('tier hourly, scheduled 30 * * * *');
    expect(outcome.stdout).toContain('components: postgres, redis, files (');
    expect(outcome.stdout).toContain('file backups incremental');
    expect(outcome.stdout).toContain('retention: 24 hourly, 30 daily; incrementals: all within 7d');
    expect(outcome.stdout).toMatch(/backup-secrets: .*\n\s+- skipped: secrets is not part of this hourly backup/);
  }, 60_000);

  it('verifyUploaded reports a byte flipped in one region for that copy only', async () => {
    const target = [...(await listed()).values()].filter((m) => m.kind === 'config').at(-1) as Manifest;
    const good = [...(await listed()).values()].filter((m) => m.kind === 'redis-rdb').at(-1) as Manifest;
    await withRegion(platform.west, async (_catalog, store) => {
      const parts: Buffer[] = [];
      for await (const part of await store.get(target.object.key)) parts.push(part as Buffer);
      const bytes = Buffer.concat(parts);
      bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0xff;
      await store.put(target.object.key, bytes);
    });

    const asTaken = (m: Manifest): TakenArtifact => ({
      component: m.kind === 'config' ? 'config' : 'redis',
      kind: m.kind,
      id: m.id,
      createdAt: m.createdAt,
      tier: m.tier,
      type: m.type,
      size: m.object.size,
    });
    let checks: UploadCheck[] = [];
    const probe = defineRunbook({
      id: 'verify-probe',
      title: 'verifyUploaded on a tampered copy',
      severity: 'sev3',
      category: 3,
      rto: '10m',
      notify: 'failures',
      params: z.object({}),
      phases: { verification: '10m' },
      secrets: { backupKey: { env: 'DRKIT_KEY' } },
      steps: (step) => [
        step({
          id: 'verify',
          title: 'verify',
          phase: 'verification',
          readOnly: true,
          run: async (ctx) => {
            checks = await verifyUploaded(ctx, [asTaken(target), asTaken(good)]);
            return null;
          },
        }),
      ],
    });
    // The S3 clients of the library read credentials from the process environment, as in production.
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = platform.east.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = platform.east.credentials.secretAccessKey;
    const runs = mkdtempSync(join(tmpdir(), 'drkit-verify-probe-'));
    try {
      const result = await run(probe, {
        config: platform.config,
        environment: 'sandbox',
        env: platform.env,
        runsDir: join(runs, 'runs'),
        yes: true,
      });
      expect(result.status).toBe('succeeded');
    } finally {
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      else process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
      rmSync(runs, { recursive: true, force: true });
    }

    const [tampered, intact] = checks;
    expect(tampered?.ok).toBe(false);
    expect(tampered?.copies.map((c) => c.ok)).toEqual([true, false]);
    expect(tampered?.copies[1]?.url).toContain('region=us-west-2');
    expect(tampered?.copies[1]?.detail).toMatch(/STORE_INTEGRITY/);
    // The primary's bytes still authenticate: the damage is the replica's alone.
    expect(tampered?.decrypt.ok).toBe(true);
    expect(intact?.ok).toBe(true);
    expect(intact?.copies.every((c) => c.ok)).toBe(true);
    // The failure is recorded, so "latest" and retention do not count the artifact.
    const recorded = await withRegion(platform.east, (catalog) => catalog.get(target.id, target.kind));
    expect(recorded.verification?.status).toBe('failed');
    expect(recorded.verification?.detail).toMatch(/us-west-2/);
  }, 120_000);
});

describe('the base backup component (point-in-time recovery)', () => {
  it('--components postgres-base takes a pg_basebackup, verified on every copy, with its WAL positions in the manifest', async () => {
    const outcome = await platform.runbook('backup', ['--tier', 'manual', '--components', 'postgres-base', '--no-prune', '--yes']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    const bases = await platform.withCatalog((catalog) => catalog.list({ kind: 'postgres-base' }));
    expect(bases).toHaveLength(1);
    const base = bases[0] as Manifest;
    expect(base.verification?.status, base.verification?.detail).toBe('passed');
    const record = base.fingerprint as { startLsn: string; stopLsn: string; systemId: string; timeline: number };
    expect(record.startLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(record.timeline).toBe(1);
    // The cluster's own system identifier, as the server reports it.
    const systemId = await platform.sql(
      async (c) => (await c.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0]?.id,
    );
    expect(record.systemId).toBe(systemId);
    for (const region of [platform.east, platform.west])
      expect(await objectIn(region, `backups/${base.object.key}`)).toEqual({ size: base.object.size, sha256: base.object.sha256 });
  }, 180_000);
});
