// verify-backups.ts against a real platform: real backups in two S3 regions, then the states
// a backup check exists to catch, made for real — a backup older than its RPO (taken through
// a catalog whose clock is three hours behind), a kind with no backup at all (its manifests
// deleted), an artifact altered in both regions — each checked by the runbook as its own
// process, and its verdict checked against our own reads of the store, the metrics file and
// the Slack stand-in.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey } from '@drkit/crypto-stream';
import { backupFiles } from '@drkit/file-archive';
import { backupPostgres } from '@drkit/postgres-backup';
import { backupRedis } from '@drkit/redis-backup';
import { type Catalog, createCatalog, type Manifest, openStore } from '@drkit/s3-store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupSecrets } from '../../runbooks/lib/secrets.ts';
import { type BackupSet, type Outcome, startPlatform, type TestPlatform } from '../support/platform.ts';

const KINDS = ['postgres', 'redis-rdb', 'redis-logical', 'files', 'secrets'];
const HOURS_BEHIND = 3;

let platform: TestPlatform;
let fresh: BackupSet;
/** A second store (prefix "aged") whose postgres backup was taken three hours ago. */
let agedUrl: string;
let metricsDir: string;

/** One sample of the exposition format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses Prometheus text strictly: HELP and TYPE before a family's samples, each family's
 * lines together, label values quoted, a final newline. Throws on anything else.
 */
function parseProm(text: string): Sample[] {
  expect(text.endsWith('\n')).toBe(true);
  const samples: Sample[] = [];
  const typed = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    const name = meta?.[2] ?? /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line)?.[1];
    if (name === undefined) throw new Error(`not a Prometheus line: ${line}`);
    if (name !== current) {
      if (current !== undefined) closed.add(current);
      if (closed.has(name)) throw new Error(`the lines of ${name} are not together`);
      current = name;
    }
    if (meta) {
      if (meta[1] === 'TYPE') {
        expect(meta[3]).toBe('gauge');
        typed.add(name);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\} (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample: ${line}`);
    if (!typed.has(name)) throw new Error(`${name} has a sample before its TYPE line`);
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1] as string] = m[2] as string;
    const value = Number(sample[3]);
    if (Number.isNaN(value)) throw new Error(`not a number: ${line}`);
    samples.push({ name, labels, value });
  }
  return samples;
}

/** The value of `name` for `kind`, or undefined when the file has no such sample. */
function sample(samples: Sample[], name: string, kind: string): number | undefined {
  return samples.find((s) => s.name === name && s.labels.kind === kind && s.labels.environment === 'sandbox')?.value;
}

function runDirs(): string[] {
  return existsSync(platform.runsDir) ? readdirSync(platform.runsDir) : [];
}

/** Runs the check and returns its outcome and the run directory it made. */
async function check(args: string[], config: string, env?: Record<string, string>): Promise<Outcome & { output: string; runDir: string }> {
  const before = runDirs();
  const outcome = await platform.runbook('verify-backups', args, { config, ...(env ? { env } : {}) });
  const created = runDirs().filter((d) => !before.includes(d));
  expect(created, `${outcome.stdout}\n${outcome.stderr}`).toHaveLength(1);
  return { ...outcome, output: `${outcome.stdout}\n${outcome.stderr}`, runDir: join(platform.runsDir, created[0] as string) };
}

/** A config with the default store or another one, and these `vars.backup` settings. */
function config(name: string, backup: Record<string, unknown>, storeUrl?: string): string {
  return platform.writeConfig((sandbox) => {
    (sandbox.vars as Record<string, unknown>).backup = backup;
    if (storeUrl !== undefined) sandbox.stores = { backups: storeUrl };
  }, `${name}.json`);
}

async function withStore<T>(url: string, fn: (catalog: Catalog) => Promise<T>, now?: () => Date): Promise<T> {
  const store = openStore(url, { s3: { credentials: platform.east.credentials } });
  try {
    return await fn(createCatalog(store, now ? { now } : {}));
  } finally {
    await store.close();
  }
}

const slackTexts = () => platform.slack.requests.map((r) => (r.body as { text?: string } | undefined)?.text ?? '');

beforeAll(async () => {
  platform = await startPlatform();
  fresh = await platform.backupAll();
  metricsDir = join(platform.dir, 'node_exporter');
  mkdirSync(metricsDir);
  // The same set again in another store, except that its postgres backup is three hours old:
  // the catalog's clock is behind, so its manifest is dated as a backup taken then would be.
  agedUrl = platform.storeUrl.replaceAll('drkit/backups?', 'drkit/aged?');
  const keys = platform.keys.backupRing;
  const behind = new Date(Date.now() - HOURS_BEHIND * 3_600_000);
  await withStore(
    agedUrl,
    (catalog) => backupPostgres({ url: platform.databaseUrl, catalog, keys, tier: 'daily' }),
    () => behind,
  );
  await withStore(agedUrl, async (catalog) => {
    await backupRedis({ url: platform.redis.url, catalog, keys, tier: 'daily', mode: 'both' });
    await backupFiles({ dir: platform.uploadsDir, catalog, keys, tier: 'daily' });
    await backupSecrets({
      catalog,
      secrets: { envFile: platform.envFile },
      keys: { secretsKey: platform.keys.secretsRing, backupKey: keys },
      tier: 'daily',
    });
  });
}, 120_000);

afterAll(async () => {
  await platform?.stop();
}, 60_000);

describe('verify-backups runbook', () => {
  it('--dry-run checks the fresh set (exit 0) but writes no metrics file and records nothing in the manifests', async () => {
    const metricsFile = join(metricsDir, 'dry.prom');
    const manifestsBefore = await platform.withCatalog((catalog) => catalog.list());
    platform.slack.requests.length = 0;
    const outcome = await check(['--dry-run'], config('dry', { metricsFile }));
    expect(outcome.code, outcome.output).toBe(0);
    for (const kind of KINDS) expect(outcome.output).toMatch(new RegExp(`${kind}: \\S+, \\d+m old \\(RPO 24h\\) ok, decrypts`));
    expect(existsSync(metricsFile)).toBe(false);
    expect(readdirSync(metricsDir)).toEqual([]);
    // Not one manifest changed: a rehearsal does not record its verifications.
    expect(await platform.withCatalog((catalog) => catalog.list())).toEqual(manifestsBefore);
    expect(platform.slack.requests).toEqual([]);
    expect(existsSync(join(outcome.runDir, 'dry-run.md'))).toBe(true);
  }, 180_000);

  it('passes on the fresh set as a scheduler runs it (no --yes), writes the metrics and sends nothing', async () => {
    const metricsFile = join(metricsDir, 'drkit.prom');
    platform.slack.requests.length = 0;
    const outcome = await check([], config('fresh', { metricsFile }));
    expect(outcome.code, outcome.output).toBe(0);
    for (const kind of KINDS) expect(outcome.output).toMatch(new RegExp(`${kind}: \\S+, \\d+m old \\(RPO 24h\\) ok, decrypts \\(`));

    const samples = parseProm(readFileSync(metricsFile, 'utf8'));
    const newest: Record<string, Manifest> = {
      postgres: fresh.postgres.manifest,
      'redis-rdb': fresh.redis.rdb as Manifest,
      'redis-logical': fresh.redis.logical as Manifest,
      files: fresh.files.manifest,
      secrets: fresh.secrets,
    };
    for (const kind of KINDS) {
      const manifest = newest[kind] as Manifest;
      expect(manifest, kind).toBeDefined();
      expect(sample(samples, 'drkit_backup_within_rpo', kind), kind).toBe(1);
      expect(sample(samples, 'drkit_backup_verified', kind), kind).toBe(1);
      expect(sample(samples, 'drkit_backup_rpo_seconds', kind), kind).toBe(86_400);
      expect(sample(samples, 'drkit_backup_newest_timestamp_seconds', kind), kind).toBe(Date.parse(manifest.createdAt) / 1000);
      expect(sample(samples, 'drkit_backup_newest_size_bytes', kind), kind).toBe(manifest.object.size);
      expect(sample(samples, 'drkit_backup_newest_age_seconds', kind), kind).toBeLessThan(600);
    }
    const checked = samples.find((s) => s.name === 'drkit_backup_check_timestamp_seconds')?.value ?? 0;
    expect(Math.abs(checked - Date.now() / 1000)).toBeLessThan(120);
    // Only the .prom file: the temp file was renamed, not left beside it.
    expect(readdirSync(metricsDir)).toEqual(['drkit.prom']);
    // The verifications are recorded in the manifests, as our own read of the store shows.
    for (const kind of KINDS) {
      const manifest = await platform.withCatalog((catalog) => catalog.get((newest[kind] as Manifest).id, kind));
      expect(manifest.verification?.status, kind).toBe('passed');
    }
    // A routine check that passes says nothing in the incident channel.
    expect(platform.slack.requests).toEqual([]);
    expect(readFileSync(join(outcome.runDir, 'report.md'), 'utf8')).toMatch(/succeeded/i);
  }, 180_000);

  it('--kinds, --no-decrypt and --metrics-file: checks only those kinds, reads no artifact, writes no verified sample', async () => {
    const metricsFile = join(metricsDir, 'override.prom');
    const before = await platform.withCatalog((catalog) => catalog.list());
    const outcome = await check(
      ['--kinds', 'postgres, files', '--no-decrypt', '--metrics-file', metricsFile],
      config('light', { metricsFile: join(metricsDir, 'unused.prom') }),
    );
    expect(outcome.code, outcome.output).toBe(0);
    expect(outcome.output).toMatch(/postgres: \S+, \d+m old \(RPO 24h\) ok, decryption not checked/);
    expect(outcome.output).not.toMatch(/redis-rdb:/);
    const samples = parseProm(readFileSync(metricsFile, 'utf8'));
    expect([...new Set(samples.flatMap((s) => (s.labels.kind ? [s.labels.kind] : [])))].sort()).toEqual(['files', 'postgres']);
    expect(samples.filter((s) => s.name === 'drkit_backup_verified')).toEqual([]);
    expect(existsSync(join(metricsDir, 'unused.prom'))).toBe(false);
    // Nothing was read back, so nothing was recorded.
    expect(await platform.withCatalog((catalog) => catalog.list())).toEqual(before);
  }, 180_000);

  it('refuses a malformed --kinds before touching the store (exit 2)', async () => {
    const outcome = await platform.runbook('verify-backups', ['--kinds', 'Postgres;rm -rf /']);
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(2);
    expect(`${outcome.stdout}\n${outcome.stderr}`).toMatch(/--kinds/);
  }, 180_000);

  it('fails (exit 1) when the newest postgres backup is older than its RPO, writes the metrics anyway and sends one failure', async () => {
    const metricsFile = join(metricsDir, 'stale.prom');
    platform.slack.requests.length = 0;
    const outcome = await check(['--yes'], config('stale', { metricsFile, rpo: { postgres: '1h' } }, agedUrl));
    expect(outcome.code, outcome.output).toBe(1);
    // The error names the kind, its age and its RPO, and says what to do.
    expect(outcome.output).toMatch(
      /postgres: the newest backup \S+ is 3h \d+m old, older than its RPO of 1h: run `tsx runbooks\/backup\.ts --env sandbox --tier daily`/,
    );
    expect(outcome.output).toMatch(/a daily schedule cannot meet a 1h RPO: add a tier/);
    expect(outcome.output).toMatch(/1 of 5 checks failed/);

    const postgres = await withStore(agedUrl, async (catalog) => (await catalog.latest('postgres')) as Manifest);
    expect(Date.now() - Date.parse(postgres.createdAt)).toBeGreaterThan((HOURS_BEHIND - 0.1) * 3_600_000);
    const samples = parseProm(readFileSync(metricsFile, 'utf8'));
    expect(sample(samples, 'drkit_backup_within_rpo', 'postgres')).toBe(0);
    expect(sample(samples, 'drkit_backup_rpo_seconds', 'postgres')).toBe(3600);
    expect(sample(samples, 'drkit_backup_newest_timestamp_seconds', 'postgres')).toBe(Date.parse(postgres.createdAt) / 1000);
    expect(sample(samples, 'drkit_backup_newest_age_seconds', 'postgres')).toBeGreaterThan((HOURS_BEHIND - 0.1) * 3600);
    // Stale is not broken: it still decrypts.
    expect(sample(samples, 'drkit_backup_verified', 'postgres')).toBe(1);
    for (const kind of KINDS.filter((k) => k !== 'postgres')) expect(sample(samples, 'drkit_backup_within_rpo', kind), kind).toBe(1);

    // One message, the routine job's failure, naming the check.
    await expect.poll(() => platform.slack.requests.length, { timeout: 10_000 }).toBeGreaterThan(0);
    const texts = slackTexts();
    expect(texts).toHaveLength(1);
    expect(texts[0]).toMatch(/JARVIS BACKUP CHECK FAILED - Sev2/);
    expect(texts[0]).toMatch(/postgres/);
    expect(readFileSync(join(outcome.runDir, 'report.md'), 'utf8')).toMatch(/verdict/);
  }, 180_000);

  it('fails (exit 1) naming a kind that has no backup at all; the others pass', async () => {
    // Every files backup of the aged store is gone from the catalog (manifests deleted).
    const removed = await withStore(agedUrl, async (catalog) => {
      const files = await catalog.list({ kind: 'files' });
      for (const m of files) await catalog.store.delete(`manifests/files/${m.id}.json`);
      return files.length;
    });
    expect(removed).toBeGreaterThan(0);
    expect(await withStore(agedUrl, (catalog) => catalog.latest('files'))).toBeUndefined();
    const metricsFile = join(metricsDir, 'missing.prom');
    platform.slack.requests.length = 0;
    const outcome = await check(['--yes'], config('missing', { metricsFile }, agedUrl));
    expect(outcome.code, outcome.output).toBe(1);
    expect(outcome.output).toMatch(/files: no complete backup in s3:\/\/drkit\/aged/);
    expect(outcome.output).toMatch(/1 of 5 checks failed/);
    expect(outcome.output).toMatch(/files: MISSING/);
    const samples = parseProm(readFileSync(metricsFile, 'utf8'));
    expect(sample(samples, 'drkit_backup_within_rpo', 'files')).toBe(0);
    expect(sample(samples, 'drkit_backup_newest_timestamp_seconds', 'files')).toBeUndefined();
    expect(sample(samples, 'drkit_backup_verified', 'files')).toBe(0);
    // With the default 24h RPO the three-hour-old postgres backup is fine.
    for (const kind of KINDS.filter((k) => k !== 'files')) expect(sample(samples, 'drkit_backup_within_rpo', kind), kind).toBe(1);
    await expect.poll(() => slackTexts().length, { timeout: 10_000 }).toBe(1);
    expect(slackTexts()[0]).toMatch(/BACKUP CHECK FAILED/);
  }, 180_000);

  it('with a key that does not open the backups: fails (exit 1) but does not mark the good backups as failed', async () => {
    const before = await platform.withCatalog((catalog) => catalog.list());
    platform.slack.requests.length = 0;
    const outcome = await check(['--yes'], config('wrong-key', {}), { DRKIT_KEY: generateKey().toString('base64') });
    expect(outcome.code, outcome.output).toBe(1);
    expect(outcome.output).toMatch(/5 of 5 checks failed/);
    expect(outcome.output).toMatch(/postgres: the newest backup \S+ cannot be read from here \(SEAL_[A-Z_]*KEY/);
    expect(outcome.output).toMatch(/the backup was not marked failed/);
    // Our own read of the store: every manifest as it was, so restores of "latest" still find them.
    expect(await platform.withCatalog((catalog) => catalog.list())).toEqual(before);
    for (const kind of KINDS) expect(await platform.withCatalog((catalog) => catalog.latest(kind)), kind).toBeDefined();
    await expect.poll(() => slackTexts().length, { timeout: 10_000 }).toBe(1);
  }, 180_000);

  it('fails (exit 1) when the newest postgres artifact was altered in both regions, and records it as failed', async () => {
    const manifest = fresh.postgres.manifest;
    // Flip one byte in the middle of the sealed object, in us-east-1 and us-west-2 alike (a
    // put through the mirrored store), so no replica can serve an intact copy.
    await platform.withCatalog(async (catalog) => {
      const parts: Buffer[] = [];
      for await (const part of await catalog.store.get(manifest.object.key)) parts.push(part as Buffer);
      const bytes = Buffer.concat(parts);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = (bytes[at] ?? 0) ^ 0x01;
      await catalog.store.put(manifest.object.key, bytes);
    });
    for (const region of platform.storeUrl.split(',')) {
      const digest = await withStore(region, async (catalog) => {
        const hash = createHash('sha256');
        for await (const part of await catalog.store.get(manifest.object.key)) hash.update(part as Buffer);
        return hash.digest('hex');
      });
      expect(digest, region).not.toBe(manifest.object.sha256);
    }
    const metricsFile = join(metricsDir, 'drkit.prom');
    platform.slack.requests.length = 0;
    const outcome = await check(['--yes'], config('tampered', { metricsFile }));
    expect(outcome.code, outcome.output).toBe(1);
    expect(outcome.output).toMatch(
      new RegExp(`postgres: the newest backup ${manifest.id} does not decrypt \\((SEAL_[A-Z_]+|STORE_INTEGRITY)`),
    );
    expect(outcome.output).toMatch(/1 of 5 checks failed/);
    const samples = parseProm(readFileSync(metricsFile, 'utf8'));
    expect(sample(samples, 'drkit_backup_verified', 'postgres')).toBe(0);
    expect(sample(samples, 'drkit_backup_within_rpo', 'postgres')).toBe(1);
    for (const kind of KINDS.filter((k) => k !== 'postgres')) expect(sample(samples, 'drkit_backup_verified', kind), kind).toBe(1);
    // Recorded in the manifest: restores asking for "latest" no longer pick it.
    const after = await platform.withCatalog((catalog) => catalog.get(manifest.id, 'postgres'));
    expect(after.verification?.status).toBe('failed');
    expect(await platform.withCatalog((catalog) => catalog.latest('postgres'))).toBeUndefined();
    await expect.poll(() => slackTexts().length, { timeout: 10_000 }).toBe(1);
    expect(slackTexts()[0]).toMatch(/BACKUP CHECK FAILED/);
  }, 180_000);
});
