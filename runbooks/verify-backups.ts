// Validate backup integrity (second plan, Testing & Validation: `validate_backups.py`; first
// plan, Appendix: Backup Verification Commands, and the drill checklist's "Backup encryption
// verified"): the newest backup of every kind a complete set holds exists, is younger than
// its RPO, reads back with the SHA-256 its manifest recorded and decrypts, every chunk
// authenticated, with the operators' key. A routine check, run by a scheduler after the
// backups: it says nothing when all is well and sends one failure message when not, and it
// leaves Prometheus metrics (node_exporter's textfile collector) behind either way, so an
// alert fires even when the check itself stops running.
//
// RPOs come from `vars.backup.rpo` (kind → "90m", "1h", "24h", "7d"), default 24h, the first
// plan's RPO. The second plan's RPO table gives user data 1h (set `postgres: "1h"` and take
// hourly backups), bot conversations and logs 24h, analytics 7d. Its "trading transactions:
// 0 (no loss)" cannot be met by any backup schedule: it needs continuous WAL archiving
// (point-in-time recovery, the plan's 2.3), which is checked by the PITR tooling, not here.
//
//   tsx runbooks/verify-backups.ts --env production
//   tsx runbooks/verify-backups.ts --env production --kinds postgres,files --no-decrypt

import { describeArchive } from '@drkit/cli';
import { POSTGRES_BASE_KIND, verifyWalArchive } from '@drkit/postgres-backup';
import { type BaseContext, defineRunbook, isMain, RunbookError, runbookCli, type StepContext } from '@drkit/runbook';
import type { Catalog, Manifest } from '@drkit/s3-store';
import { z } from 'zod';
import { type BackupTier, componentsOf, expectedKinds, kindsOfComponent, rpoMs, rpoOf, verifyArtifact } from './lib/backup-set.ts';
import { formatBackupMetrics, writeTextfileAtomic } from './lib/metrics.ts';
import { ageOf, backupKeys, backupStoreUrl, PLATFORM_SECRETS, type Platform, platformOf, withBackups } from './lib/platform.ts';

const KIND_LIST = /^\s*[a-z][a-z0-9-]{0,39}(\s*,\s*[a-z][a-z0-9-]{0,39})*\s*$/;

const params = z.object({
  kinds: z
    .string()
    .regex(KIND_LIST, 'a comma-separated list of backup kinds, e.g. "postgres,files"')
    .optional()
    .describe('the kinds to check, comma-separated (default: every kind a complete set of the environment holds)'),
  decrypt: z
    .boolean()
    .default(true)
    .describe('read back and decrypt the newest backup of each kind (--no-decrypt: only check that it exists and is fresh)'),
  metricsFile: z.string().min(1).optional().describe('the Prometheus textfile to write (default: vars.backup.metricsFile)'),
  record: z
    .boolean()
    .default(true)
    .describe(
      'record each decrypt check in the backup\'s manifest, so "latest" restores skip a backup that failed (--no-record: read only)',
    ),
});

type Params = z.output<typeof params>;

/** The kinds this run checks: `--kinds`, else the environment's complete set. */
function kindsOf(ctx: BaseContext<Params>): string[] {
  if (ctx.params.kinds !== undefined) return [...new Set(ctx.params.kinds.split(',').map((k) => k.trim()))];
  return expectedKinds(ctx);
}

/** The metrics file: `--metrics-file`, else `vars.backup.metricsFile`. */
function metricsFileOf(ctx: BaseContext<Params>): string | undefined {
  return ctx.params.metricsFile ?? platformOf(ctx).backup.metricsFile;
}

/**
 * The most frequent configured tier that takes `kind`: what to run when it is stale, and
 * whose schedule to check.
 */
function tierFor(platform: Platform, kind: string): { tier: BackupTier; schedule: string | undefined } {
  for (const tier of ['hourly', 'daily', 'weekly', 'monthly'] as const) {
    const config = platform.backup.tiers[tier];
    if (config === undefined) continue;
    if (componentsOf(platform, tier).some((c) => kindsOfComponent(platform, c).includes(kind))) return { tier, schedule: config.schedule };
  }
  return { tier: 'daily', schedule: platform.backup.tiers.daily?.schedule };
}

/** How often each tier runs, at most: a tier slower than a kind's RPO can never meet it. */
const TIER_INTERVAL_MS: Record<BackupTier, number> = {
  hourly: 3_600_000,
  daily: 86_400_000,
  weekly: 7 * 86_400_000,
  monthly: 31 * 86_400_000,
  manual: Number.POSITIVE_INFINITY,
};

/** The command that takes a backup of `kind` now. */
function backupCommand(ctx: StepContext<Params>, kind: string): string {
  return `\`tsx runbooks/backup.ts --env ${ctx.environment} --tier ${tierFor(platformOf(ctx), kind).tier}\``;
}

/** What to do about a kind without a fresh backup: take one, then find why the schedule did not. */
function staleAdvice(ctx: StepContext<Params>, kind: string, rpo: string): string {
  const platform = platformOf(ctx);
  const { tier, schedule } = tierFor(platform, kind);
  const advice = `run ${backupCommand(ctx, kind)} now, then check the scheduler (cron, CronJob) that should run it${schedule !== undefined ? ` at "${schedule}"` : ''} and its last logs`;
  // No scheduler fix helps when the schedule itself is slower than the RPO.
  return TIER_INTERVAL_MS[tier] > rpoMs(rpo)
    ? `${advice}; note that a ${tier} schedule cannot meet a ${rpo} RPO: add a tier that runs at least that often (vars.backup.tiers)`
    : advice;
}

/** "12.3 MB". */
function bytesText(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 'B';
  for (const u of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = u;
  }
  return `${value.toFixed(1)} ${unit}`;
}

/** An error as one line, its code first (STORE_INTEGRITY, SEAL_CHUNK_TAMPERED…). */
const message = (error: unknown) => {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return `${typeof code === 'string' ? `${code}: ` : ''}${error instanceof Error ? error.message : String(error)}`;
};

/** One kind's newest usable backup, as the inventory found it. */
interface Newest {
  id: string;
  createdAt: string;
  tier: string;
  type: string;
  size: number;
  parent: string | null;
}

/** A newer backup that `latest` passed over, and why. */
interface Skipped {
  id: string;
  reason: string;
}

const verifyBackups = defineRunbook({
  id: 'verify-backups',
  title: 'Backup check',
  description:
    'Checks that the newest backup of every kind exists, is within its RPO, reads back intact and decrypts; writes Prometheus metrics; fails (one notification) when not.',
  severity: 'sev2',
  category: 3,
  impact:
    'None while it runs (it only reads the backups). A failure means the RPO is at risk: a restore now would lose more than the plan allows',
  rto: '15m',
  params,
  phases: { inventory: '5m', verification: '9m', reporting: '1m' },
  secrets: PLATFORM_SECRETS,
  notify: 'failures',
  steps: (step) => {
    const inventory = step({
      id: 'inventory',
      title: 'Find the newest complete backup of each kind',
      phase: 'inventory',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) =>
        `list the manifests of ${kindsOf(ctx).join(', ') || '(no kinds: the environment configures no backup component)'} in ${backupStoreUrl(ctx)} and take the newest complete, non-failed, non-snapshot backup of each`,
      run: async (ctx) => {
        const kinds = kindsOf(ctx);
        if (kinds.length === 0)
          throw new RunbookError(
            'RUNBOOK_CONFIG_INVALID',
            `environment "${ctx.environment}" configures no backup component (vars.postgres, vars.redis, vars.files, vars.backup.configFiles, vars.envFile): there is nothing to check`,
          );
        const checkedAt = ctx.clock.now();
        const rows = await withBackups(ctx, async ({ catalog }) => {
          const found: { kind: string; newest: Newest | null; skipped: Skipped[]; error: string | null }[] = [];
          for (const kind of kinds) {
            try {
              // Every manifest, to say which newer backups `latest` passed over (a failed
              // verification, a lost object): a silent fall-back to an older backup would hide it.
              const all = (await catalog.list({ kind })).filter((m) => m.labels?.snapshot !== 'true');
              const newest = await catalog.latest(kind);
              const after = newest === undefined ? all : all.slice(all.findIndex((m) => m.id === newest.id) + 1);
              const skipped = after.map((m) => ({
                id: m.id,
                reason:
                  m.verification?.status === 'failed'
                    ? `its verification failed on ${m.verification.at} (${m.verification.detail ?? m.verification.level})`
                    : 'its stored object is missing or has another size than its manifest records',
              }));
              found.push({
                kind,
                newest:
                  newest === undefined
                    ? null
                    : {
                        id: newest.id,
                        createdAt: newest.createdAt,
                        tier: newest.tier,
                        type: newest.type,
                        size: newest.object.size,
                        parent: newest.parent ?? null,
                      },
                skipped,
                error: null,
              });
            } catch (error) {
              // One kind's unreadable listing is that kind's finding; the others are still checked
              // and the metrics still written.
              found.push({ kind, newest: null, skipped: [], error: message(error) });
            }
          }
          return found;
        });
        for (const row of rows) {
          for (const s of row.skipped) ctx.log.warn(`${row.kind}: a newer backup ${s.id} is not usable: ${s.reason}`);
          if (row.error !== null) ctx.log.warn(`${row.kind}: the store could not be read: ${row.error}`);
          else if (row.newest === null) ctx.log.warn(`${row.kind}: no complete backup in ${backupStoreUrl(ctx)}`);
          else
            ctx.log.info(
              `${row.kind}: newest ${row.newest.id} (${row.newest.tier}, ${row.newest.type}, ${bytesText(row.newest.size)}), ${ageOf(row.newest.createdAt, checkedAt)} old`,
            );
        }
        return { checkedAt, kinds: rows };
      },
    });

    const freshness = step({
      id: 'freshness',
      title: "Compare each newest backup's age with its RPO",
      phase: 'inventory',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      plan: (ctx) => {
        const platform = platformOf(ctx);
        return `fail each kind whose newest backup is older than its RPO: ${kindsOf(ctx)
          .map((k) => `${k} ${rpoOf(platform, k)}`)
          .join(', ')} (vars.backup.rpo; default 24h)`;
      },
      run: (ctx) => {
        const { checkedAt, kinds } = ctx.output(inventory);
        const platform = platformOf(ctx);
        const results = kinds.map((row) => {
          const rpo = rpoOf(platform, row.kind);
          const ageMs = row.newest === null ? null : Math.max(0, checkedAt - Date.parse(row.newest.createdAt));
          const withinRpo = ageMs !== null && ageMs <= rpoMs(rpo);
          let finding: string | null = null;
          if (row.newest === null)
            finding =
              row.error !== null
                ? `the store could not be read (${row.error}): check the store and its credentials`
                : `no complete backup in ${backupStoreUrl(ctx)}${row.skipped.length > 0 ? ` (${row.skipped.length} unusable: ${row.skipped[0]?.reason})` : ''}: ${staleAdvice(ctx, row.kind, rpo)}`;
          else if (!withinRpo)
            finding = `the newest backup ${row.newest.id} is ${ageOf(row.newest.createdAt, checkedAt)} old, older than its RPO of ${rpo}: ${staleAdvice(ctx, row.kind, rpo)}`;
          if (row.newest !== null)
            ctx.log[withinRpo ? 'info' : 'warn'](
              `${row.kind}: ${row.newest.id}, ${ageOf(row.newest.createdAt, checkedAt)} old (RPO ${rpo}) ${withinRpo ? 'ok' : 'OLDER THAN ITS RPO'}`,
            );
          return { kind: row.kind, rpo, rpoSeconds: rpoMs(rpo) / 1000, ageMs, withinRpo, finding };
        });
        return { kinds: results };
      },
    });

    const decrypt = step({
      id: 'decrypt',
      title: 'Read back and decrypt the newest backup of each kind',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '1h',
      plan: (ctx) =>
        ctx.params.decrypt
          ? [
              `read the newest backup of each kind (and the parents an incremental needs) from ${backupStoreUrl(ctx)}: stored bytes against the manifest's size and SHA-256, every AES-256-GCM chunk authenticated and decrypted with the backupKey`,
              ctx.params.record
                ? 'record each outcome in the backup\'s manifest (a failed one is then skipped by "latest" restores); a dry run records nothing'
                : 'record nothing (--no-record)',
            ]
          : 'skipped (--no-decrypt): existence and age only',
      run: async (ctx) => {
        const { kinds } = ctx.output(inventory);
        type Check = {
          kind: string;
          id: string;
          ok: boolean;
          artifacts: number;
          plainBytes: number;
          storedBytes: number;
          detail: string;
          /** It failed for a reason of this host (key, store access), not of the backup. */
          ours: boolean;
          /** A failure was recorded in the manifest (restores now skip it). */
          recorded: boolean;
          keyId: string | null;
        };
        if (!ctx.params.decrypt) {
          ctx.log.info('decryption not checked (--no-decrypt)');
          return { checked: false, recorded: false, kinds: [] as Check[] };
        }
        // A rehearsal must not write: the outcome goes into manifests only when executing.
        const record = ctx.params.record && ctx.mode === 'execute';
        const keys = backupKeys(ctx);
        return withBackups(ctx, async ({ catalog }) => {
          // The chain of each kind first (an incremental restores only with its parents), so
          // progress can say how many bytes are left.
          const chains: Chain[] = [];
          for (const row of kinds) {
            if (row.newest === null) continue;
            chains.push(await chainOf(catalog, row.kind, row.newest.id));
          }
          const total = chains.reduce((sum, c) => sum + c.chain.reduce((s, m) => s + m.object.size, 0), 0);
          let done = 0;
          const checks: Check[] = [];
          for (const { kind, id, chain, broken } of chains) {
            let ok = broken === null;
            let detail = broken ?? '';
            let plainBytes = 0;
            let storedBytes = 0;
            let ours = false;
            let recorded = false;
            for (const manifest of chain) {
              const check = await verifyArtifact(catalog, manifest, keys, { record: false, signal: ctx.signal });
              done += manifest.object.size;
              ctx.progress({ done, total, unit: 'bytes', message: `${kind} ${manifest.id}` });
              plainBytes += check.plainBytes;
              storedBytes += check.storedBytes;
              ours = !check.ok && isOurFailure(check.detail);
              // A failure of this host (its key, its access to the store, a timeout) says nothing
              // about the backup: recording it would make every restore of "latest" skip a
              // good backup because one machine has the wrong key.
              if (record && !ours) recorded = (await recordOutcome(ctx, catalog, manifest, check.ok, check.detail)) || recorded;
              if (!check.ok) {
                ok = false;
                detail = manifest.id === id ? check.detail : `its parent ${manifest.id}: ${check.detail}`;
                break;
              }
              if (manifest.id === id && ok) detail = check.detail;
            }
            if (ok)
              ctx.log.info(
                `${kind}: ${id} decrypts (${bytesText(plainBytes)}${chain.length > 1 ? `, with its ${chain.length - 1} parent(s)` : ''})`,
              );
            else ctx.log.warn(`${kind}: ${id} DOES NOT DECRYPT: ${detail}`);
            const keyId = chain[0]?.encryption.format === 'drkit-sealed/1' ? chain[0].encryption.keyId : null;
            checks.push({ kind, id, ok, artifacts: chain.length, plainBytes, storedBytes, detail, ours, recorded, keyId });
          }
          return { checked: true, recorded: record, kinds: checks };
        });
      },
    });

    const metrics = step({
      id: 'metrics',
      title: 'Write the Prometheus metrics',
      phase: 'reporting',
      idempotent: true,
      timeout: '1m',
      plan: (ctx) => {
        const path = metricsFileOf(ctx);
        return path === undefined
          ? 'no metrics file is configured (vars.backup.metricsFile or --metrics-file): nothing is written'
          : `replace ${path} (temp file in the same directory, then rename) with drkit_backup_* gauges for ${kindsOf(ctx).join(', ')}, environment "${ctx.environment}"`;
      },
      run: async (ctx) => {
        const path = metricsFileOf(ctx);
        const { checkedAt, kinds } = ctx.output(inventory);
        const fresh = ctx.output(freshness).kinds;
        const decrypted = ctx.output(decrypt);
        const text = formatBackupMetrics({
          environment: ctx.environment,
          checkedAt,
          kinds: kinds.map((row) => {
            const f = fresh.find((x) => x.kind === row.kind);
            const d = decrypted.kinds.find((x) => x.kind === row.kind);
            return {
              kind: row.kind,
              newestAt: row.newest === null ? undefined : Date.parse(row.newest.createdAt),
              sizeBytes: row.newest?.size,
              rpoSeconds: f?.rpoSeconds ?? rpoMs(rpoOf(platformOf(ctx), row.kind)) / 1000,
              withinRpo: f?.withinRpo ?? false,
              // A kind with nothing to decrypt failed the check; one not checked has no sample.
              verified: decrypted.checked ? (d?.ok ?? false) : undefined,
            };
          }),
        });
        if (path === undefined) {
          ctx.log.info('no metrics file is configured (vars.backup.metricsFile): metrics not written');
          return { path: null, written: false, error: null };
        }
        try {
          await writeTextfileAtomic(path, text);
        } catch (error) {
          // Not thrown here: the verdict still reports the backups, and names this too.
          ctx.log.warn(`the metrics file ${path} could not be written: ${message(error)}`);
          return { path, written: false, error: message(error) };
        }
        ctx.log.info(`metrics written to ${path}`);
        return { path, written: true, error: null };
      },
    });

    // With base backups in the set, point-in-time recovery depends on the WAL archive too:
    // a gap in it silently shortens how far a recovery can go.
    const walArchive = step({
      id: 'wal-archive',
      title: 'Check the WAL archive is continuous from every base backup',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '10m',
      plan: (ctx) =>
        kindsOf(ctx).includes(POSTGRES_BASE_KIND)
          ? `list the archived WAL in ${backupStoreUrl(ctx)} and check it has no gap from each base backup on; report the recovery window`
          : 'skipped: no base backups in the set (vars.backup.components has no postgres-base)',
      run: async (ctx) => {
        const { kinds } = ctx.output(inventory);
        if (!kinds.some((k) => k.kind === POSTGRES_BASE_KIND)) return { checked: false, problems: [] as string[], windows: [] as string[] };
        const keys = backupKeys(ctx);
        const reports = await withBackups(ctx, ({ catalog }) => verifyWalArchive({ catalog, keys, signal: ctx.signal }));
        for (const report of reports) for (const line of describeArchive(report)) ctx.log[report.ok ? 'info' : 'warn'](line);
        return {
          checked: true,
          problems: reports.flatMap((r) => r.problems),
          windows: reports.flatMap((r) => r.windows.map((w) => `${w.from.toISOString()} to ${w.to.toISOString()}`)),
        };
      },
    });

    const verdict = step({
      id: 'verdict',
      title: 'Verdict: every kind present, within its RPO and decrypting',
      phase: 'reporting',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      plan: () =>
        'fail the run (exit 1, one failure notification) naming every kind that is missing, older than its RPO or does not decrypt',
      run: (ctx) => {
        const { checkedAt, kinds } = ctx.output(inventory);
        const fresh = ctx.output(freshness).kinds;
        const decrypted = ctx.output(decrypt);
        // A dry run describes the metrics step instead of running it: there is no output to read.
        const written = ctx.mode === 'execute' ? ctx.output(metrics) : null;
        const failures: string[] = [];
        for (const row of kinds) {
          const f = fresh.find((x) => x.kind === row.kind);
          const d = decrypted.kinds.find((x) => x.kind === row.kind);
          const problems: string[] = [];
          if (f?.finding) problems.push(f.finding);
          if (d !== undefined && !d.ok)
            problems.push(
              d.ours
                ? `the newest backup ${d.id} cannot be read from here (${d.detail}): check that the backupKey secret holds key ${d.keyId ?? '(none recorded)'} (older keys first in a key file) and the store credentials; the backup was not marked failed`
                : `the newest backup ${d.id} does not decrypt (${d.detail})${d.recorded ? '; it is recorded as failed, so restores skip it' : ''}: take a new backup now with ${backupCommand(ctx, row.kind)}, and find out what altered or lost it (bucket versioning, access logs) before trusting the older backups of the store`,
            );
          const state =
            row.newest === null
              ? 'MISSING'
              : `${row.newest.id}, ${ageOf(row.newest.createdAt, checkedAt)} old (RPO ${f?.rpo}) ${f?.withinRpo ? 'ok' : 'TOO OLD'}, ${
                  d === undefined ? 'decryption not checked' : d.ok ? `decrypts (${bytesText(d.plainBytes)})` : 'DOES NOT DECRYPT'
                }`;
          ctx.log[problems.length === 0 ? 'info' : 'warn'](`${row.kind}: ${state}`);
          if (problems.length > 0) failures.push(`${row.kind}: ${problems.join('; ')}`);
        }
        if (written?.error) failures.push(`metrics: ${written.path} could not be written (${written.error})`);
        for (const problem of ctx.output(walArchive).problems) failures.push(`WAL archive: ${problem}`);
        if (failures.length > 0)
          throw new Error(
            `${failures.length} of ${kinds.length + (written?.error ? 1 : 0)} checks failed in ${ctx.environment}: ${failures.join(' | ')}`,
          );
        ctx.log.info(`every kind is present, within its RPO${decrypted.checked ? ' and decrypts' : ''}`);
        return { ok: true, kinds: kinds.length };
      },
    });

    return [inventory, freshness, decrypt, walArchive, metrics, verdict];
  },
});

/**
 * Error codes that blame this host rather than the backup: a key the keyring lacks or that
 * does not match, a store this host cannot reach or is refused by, an abort or timeout.
 */
const OUR_FAILURES =
  /^(SEAL_UNKNOWN_KEY|SEAL_WRONG_KEY|SEAL_KEY_|SEAL_ABORTED|STORE_UNAVAILABLE|STORE_ACCESS_DENIED|STORE_BUCKET_NOT_FOUND|STORE_ABORTED|STORE_IO)/;

/** Whether a failed check's detail (its error code first) blames this host, not the backup. */
function isOurFailure(detail: string): boolean {
  return OUR_FAILURES.test(detail);
}

/** Records a check in the manifest; a manifest that cannot be written is logged, not fatal. */
async function recordOutcome(
  ctx: StepContext<Params>,
  catalog: Catalog,
  manifest: Manifest,
  ok: boolean,
  detail: string,
): Promise<boolean> {
  try {
    await catalog.recordVerification(manifest, {
      status: ok ? 'passed' : 'failed',
      at: new Date(ctx.clock.now()).toISOString(),
      level: 'authenticated-read',
      // The manifest schema caps texts at 1000 characters.
      detail: detail.length > 1000 ? `${detail.slice(0, 997)}...` : detail,
    });
    return !ok;
  } catch (error) {
    ctx.log.warn(`the outcome of ${manifest.kind} ${manifest.id} could not be recorded in its manifest: ${message(error)}`);
    return false;
  }
}

/** The newest backup of a kind and the parents it restores with, newest first. */
interface Chain {
  kind: string;
  id: string;
  chain: Manifest[];
  /** Why the chain cannot be restored whatever its artifacts hold (a parent gone), else null. */
  broken: string | null;
}

/**
 * The chain of backup `id`: itself, then its parents. A manifest that cannot be read breaks
 * the chain (an incremental without its parent cannot be restored): that is the finding.
 */
async function chainOf(catalog: Catalog, kind: string, id: string): Promise<Chain> {
  const chain: Manifest[] = [];
  let next: string | undefined = id;
  // The backup tools cap chains (file-archive at 30); the bound only guards against a cycle.
  for (let i = 0; next !== undefined && i < 1000; i++) {
    try {
      const manifest: Manifest = await catalog.get(next, kind);
      chain.push(manifest);
      next = manifest.parent;
    } catch (error) {
      return { kind, id, chain, broken: `${next === id ? 'its manifest' : `its parent ${next}`} cannot be read (${message(error)})` };
    }
  }
  return { kind, id, chain, broken: next === undefined ? null : 'its chain of parents does not end' };
}

export default verifyBackups;

if (isMain(import.meta.url)) await runbookCli(verifyBackups);
