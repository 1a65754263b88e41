// Scheduled backup (first plan, Backup Strategy and Backup Storage; second plan, Backup
// Strategy): the backup set — PostgreSQL (full, with its roles and tablespaces), Redis (RDB
// snapshot and logical export with TTLs), the user files (incremental; full on the weekly and
// monthly tiers), the configuration files and the double-sealed secrets — taken into the
// backups store (local disk and S3 with a replica region: a mirrored store URL), every
// artifact verified on every copy after upload, then the retention policy applied (7 daily,
// 4 weekly, 12 monthly by default). The tiers and their schedules are `vars.backup.tiers`:
// the scheduler runs `--tier <name>` at each tier's time, or `--tier auto` once a day. The
// second plan's hourly incrementals are one more tier in that config.
//
// A routine job: silent when it works, one failure message when it does not.
//
//   tsx runbooks/backup.ts --env production --plan
//   tsx runbooks/backup.ts --env production --yes                   # the tier of today (auto)
//   tsx runbooks/backup.ts --env production --tier hourly --yes
//   tsx runbooks/backup.ts --env staging --tier manual --components postgres --no-prune --yes

import { POSTGRES_BASE_KIND, pruneWal } from '@drkit/postgres-backup';
import { type BaseContext, defineRunbook, isMain, RunbookError, runbookCli, type StepContext } from '@drkit/runbook';
import { describePolicy, type Manifest, planRetention, type RetentionItem, type RetentionPolicy, splitStoreUrls } from '@drkit/s3-store';
import { z } from 'zod';
import { type BackupTier, componentsOf, kindsOfComponent } from './lib/backup-set.ts';
import {
  BACKUP_COMPONENTS,
  type BackupComponent,
  backupStoreUrl,
  databaseName,
  PLATFORM_SECRETS,
  type Platform,
  platformOf,
  required,
  SECRETS_KEY_SECRET,
  withBackups,
} from './lib/platform.ts';
import { backupComponent, fullFilesOf, type TakenArtifact, tierFor, verifyUploaded } from './lib/take-backup.ts';

const TIERS = ['auto', 'hourly', 'daily', 'weekly', 'monthly', 'manual'] as const;

/** The components of a `--components` list, or the names that are not components. */
function parseComponents(text: string): { ok: BackupComponent[]; bad: string[] } {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const known = new Set<string>(BACKUP_COMPONENTS);
  return {
    ok: BACKUP_COMPONENTS.filter((c) => names.includes(c)),
    bad: names.filter((n) => !known.has(n)),
  };
}

const params = z.object({
  tier: z
    .enum(TIERS)
    .default('auto')
    .describe('the tier to take: auto (monthly on the 1st, weekly on Sunday, else daily), hourly, daily, weekly, monthly or manual'),
  components: z
    .string()
    .refine((text) => parseComponents(text).bad.length === 0 && parseComponents(text).ok.length > 0, {
      message: `a comma-separated list of ${BACKUP_COMPONENTS.join(', ')}`,
    })
    .optional()
    .describe(`what to back up, comma-separated (${BACKUP_COMPONENTS.join(', ')}); default: the tier's components`),
  full: z.boolean().default(false).describe('take full file backups even on a tier whose file backups are incremental'),
  prune: z
    .boolean()
    .default(true)
    .describe('apply the retention policy once the new backups are verified (--no-prune: delete nothing this time)'),
  skipPrune: z.boolean().default(false).describe('the same as --no-prune, for callers that pass params from code (the drill)'),
});

type Params = z.output<typeof params>;

/** What this run takes, from its params, the environment's vars.backup and (for auto) today's date. */
interface RunSet {
  tier: BackupTier;
  requested: (typeof TIERS)[number];
  schedule: string | null;
  components: BackupComponent[];
  fullFiles: boolean;
  prune: boolean;
}

function runSetOf(platform: Platform, p: Params, now = new Date()): RunSet {
  const tier = p.tier === 'auto' ? tierFor(now, platform.backup.retention.timeZone) : p.tier;
  return {
    tier,
    requested: p.tier,
    schedule: platform.backup.tiers[tier]?.schedule ?? null,
    components: p.components !== undefined ? parseComponents(p.components).ok : componentsOf(platform, tier),
    fullFiles: p.full || fullFilesOf(platform, tier),
    prune: p.prune && !p.skipPrune,
  };
}

/** The catalog kinds a run of these components stores (the dump's globals companion included). */
function kindsOf(platform: Platform, components: readonly BackupComponent[]): string[] {
  return components.flatMap((c) => (c === 'postgres' ? ['postgres', 'postgres-globals'] : kindsOfComponent(platform, c)));
}

/** `vars.backup.retention` as s3-store's policy (zod leaves absent rules as undefined keys). */
function policyOf(platform: Platform): RetentionPolicy {
  const defined = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const { incremental, ...main } = platform.backup.retention;
  return { ...defined(main), ...(incremental !== undefined ? { incremental: defined(incremental) } : {}) } as RetentionPolicy;
}

/** Why a component cannot be part of the set in this environment, or undefined when it can. */
function missingConfig(platform: Platform, component: BackupComponent): string | undefined {
  switch (component) {
    case 'postgres':
    case 'postgres-base':
      return platform.postgres ? undefined : 'vars.postgres is not configured';
    case 'redis':
      return platform.redis ? undefined : 'vars.redis is not configured';
    case 'files':
      return platform.files ? undefined : 'vars.files.root is not configured';
    case 'config':
      return platform.backup.configFiles.length > 0 ? undefined : 'vars.backup.configFiles is empty';
    case 'secrets':
      return platform.envFile !== undefined ? undefined : 'vars.envFile is not configured';
  }
}

/** Retention items of manifests: what planRetention decides on. */
function itemOf(m: Manifest): RetentionItem {
  return {
    id: m.id,
    kind: m.kind,
    createdAt: m.createdAt,
    type: m.type,
    ...(m.parent !== undefined ? { parent: m.parent } : {}),
    ...(m.verification ? { verification: { status: m.verification.status } } : {}),
  };
}

/**
 * Snapshots of a damaged state (label snapshot: "true", taken by the recovery runbooks before
 * they change anything) are evidence, not backups: retention would otherwise count one as the
 * newest backup of its day and drop that day's real backup in its favour.
 */
const isSnapshot = (m: Manifest) => m.labels?.snapshot === 'true';

/** Why component steps failed, per run, so that verify-uploads can quote them (a resumed run points to the report instead). */
const componentFailures = new Map<string, Map<BackupComponent, string>>();

function messageOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' && !message.startsWith(code) ? `${code}: ${message}` : message;
}

/** One component step's output. */
interface ComponentOutput {
  component: BackupComponent;
  skipped: boolean;
  artifacts: TakenArtifact[];
  warnings: string[];
}

const backup = defineRunbook({
  id: 'backup',
  title: 'Scheduled backup',
  description:
    'Takes the backup set (PostgreSQL with globals, Redis RDB and export, user files, configuration files, secrets) into the backups store, verifies every artifact on every copy, then applies the retention policy.',
  severity: 'sev2',
  // A backup that fails is the second plan's "Backup failure": Category 3, data loss.
  category: 3,
  impact: 'None while it runs; when it fails, the newest backup grows older than the RPO (24 hours)',
  rto: '1h',
  params,
  // Backing up, then checking, then retention: a failed check never reaches the deletions.
  phases: { backup: '45m', verification: '10m', retention: '5m' },
  notify: 'failures',
  secrets: {
    ...PLATFORM_SECRETS,
    // Optional: a set without the secrets component needs no secrets key.
    secretsKey: { ...SECRETS_KEY_SECRET, optional: true },
  },
  steps: (step) => {
    const planSet = step({
      id: 'plan-set',
      title: 'Decide the tier and the components of this backup',
      phase: 'backup',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      plan: (ctx) => {
        const platform = platformOf(ctx);
        const set = runSetOf(platform, ctx.params);
        return [
          `tier ${set.tier}${set.requested === 'auto' ? ' (--tier auto: monthly on the 1st, weekly on Sunday, else daily; decided again when the run starts)' : ''}, scheduled ${set.schedule ?? 'nowhere (no vars.backup.tiers entry: a run by hand)'}`,
          `components: ${set.components.join(', ')} (catalog kinds ${kindsOf(platform, set.components).join(', ')}); file backups ${set.fullFiles ? 'full' : 'incremental'}`,
          `store copies (every one required): ${splitStoreUrls(backupStoreUrl(ctx)).join(' + ')}`,
          `retention: ${describePolicy(policyOf(platform))}${set.prune ? '' : ' (not applied this time: --no-prune)'}`,
        ];
      },
      run: (ctx) => {
        const platform = platformOf(ctx);
        const set = runSetOf(platform, ctx.params);
        const missing = set.components
          .map((c) => [c, missingConfig(platform, c)] as const)
          .filter((entry): entry is readonly [BackupComponent, string] => entry[1] !== undefined);
        if (missing.length > 0)
          throw new RunbookError(
            'RUNBOOK_CONFIG_INVALID',
            `environment "${ctx.environment}" cannot back up ${missing.map(([c, why]) => `${c} (${why})`).join(', ')}: configure it, or leave it out with --components or vars.backup.components`,
          );
        const copies = splitStoreUrls(backupStoreUrl(ctx));
        const retention = describePolicy(policyOf(platform));
        ctx.log.info(
          `${set.tier} backup${set.requested === 'auto' ? ' (auto)' : ''} of ${set.components.join(', ')} into ${copies.length} ${copies.length === 1 ? 'copy' : 'copies'}: ${copies.join(' + ')}`,
        );
        ctx.log.info(`retention: ${retention}${set.prune ? '' : ' (not applied: --no-prune)'}`);
        return { ...set, kinds: kindsOf(platform, set.components), copies, retention };
      },
    });

    // Each component is its own non-critical step, so that a failing one (the database is
    // down) does not stop the others from being taken: tonight's Redis and files backups are
    // worth having even without tonight's dump. The run still fails: verify-uploads fails when
    // a component of the set produced nothing, which also keeps the prune from running.
    const componentStep = (
      component: BackupComponent,
      title: string,
      timeout: string,
      describe: (ctx: BaseContext<Params>, set: RunSet) => string,
    ) =>
      step({
        id: `backup-${component}`,
        title,
        phase: 'backup',
        critical: false,
        timeout,
        plan: (ctx) => {
          const platform = platformOf(ctx);
          const set = runSetOf(platform, ctx.params);
          if (!set.components.includes(component)) {
            const why = missingConfig(platform, component);
            return `skipped: ${component} is not part of this ${set.tier} backup${why !== undefined ? ` (${why})` : ''}`;
          }
          return `${describe(ctx, set)}, into ${backupStoreUrl(ctx)} as ${set.tier} backups (${kindsOf(platform, [component]).join(', ')}); adds, deletes nothing`;
        },
        run: async (ctx): Promise<ComponentOutput> => {
          const set = ctx.output(planSet);
          if (!set.components.includes(component)) {
            ctx.log.info(`${component} is not part of this ${set.tier} backup: skipped`);
            return { component, skipped: true, artifacts: [], warnings: [] };
          }
          try {
            const taken = await backupComponent(ctx, component, {
              tier: set.tier,
              ...(component === 'files' ? { full: set.fullFiles } : {}),
            });
            return { component, skipped: false, ...taken };
          } catch (error) {
            const failures = componentFailures.get(ctx.runId) ?? new Map<BackupComponent, string>();
            failures.set(component, messageOf(error));
            componentFailures.set(ctx.runId, failures);
            throw error;
          }
        },
      });

    const postgres = componentStep(
      'postgres',
      'Back up PostgreSQL (full dump with roles and tablespaces)',
      '40m',
      (ctx) =>
        `pg_dump ${databaseName(ctx)} (custom format, gzip level 9) and pg_dumpall --globals-only (roles, tablespaces), streamed sealed (AES-256-GCM)`,
    );
    const base = componentStep(
      'postgres-base',
      'Take a base backup for point-in-time recovery',
      '60m',
      (ctx) =>
        `pg_basebackup of the cluster of ${databaseName(ctx)} (tar, WAL included, fast checkpoint), sealed (AES-256-GCM); with the server archiving its WAL (drkit wal-push) it is where a point-in-time recovery starts`,
    );
    const redis = componentStep('redis', 'Back up Redis (RDB snapshot and logical export with TTLs)', '20m', (ctx) => {
      const mode = platformOf(ctx).backup.redisMode;
      const what = {
        both: 'the RDB snapshot (over the replication protocol) and the logical export with TTLs',
        rdb: 'the RDB snapshot',
        logical: 'the logical export with TTLs',
      }[mode];
      return `${what} of ${required(ctx, 'redis').url}, sealed (AES-256-GCM)`;
    });
    const files = componentStep('files', 'Back up the user files', '40m', (ctx, set) => {
      const platform = platformOf(ctx);
      const exclude = platform.backup.filesExclude;
      return `${set.fullFiles ? 'a full' : 'an incremental (full when there is no earlier backup of the directory, or its chain is 30 long)'} tar archive (gzip) of ${required(ctx, 'files').root}${exclude.length > 0 ? ` without ${exclude.join(', ')}` : ''}, sealed (AES-256-GCM)`;
    });
    const config = componentStep(
      'config',
      'Back up the configuration files',
      '5m',
      (ctx) => `one tar (gzip) of the configuration files ${platformOf(ctx).backup.configFiles.join(', ')}, sealed (AES-256-GCM)`,
    );
    const secrets = componentStep(
      'secrets',
      'Back up the secrets (double-sealed)',
      '5m',
      (ctx) =>
        `the secrets of ${required(ctx, 'envFile')} as JSON, sealed twice (the secrets key DRKIT_SECRETS_KEY inside, the backup key outside); their names are recorded, never their values`,
    );
    const components = [postgres, base, redis, files, config, secrets] as const;

    const verify = step({
      id: 'verify-uploads',
      title: 'Verify every new artifact on every copy of the store, and that every component was taken',
      phase: 'verification',
      idempotent: true,
      timeout: '10m',
      plan: (ctx) => [
        `for each artifact this run stored: its manifest and SHA-256 on every copy (${splitStoreUrls(backupStoreUrl(ctx)).join(' + ')}), then every chunk authenticated and decrypted from the primary`,
        'record the outcome in each manifest; fail the run (and skip the prune) when a component produced nothing or any check fails',
      ],
      run: async (ctx) => {
        const set = ctx.output(planSet);
        const taken: TakenArtifact[] = [];
        const failed: string[] = [];
        const warnings: string[] = [];
        for (const handle of components) {
          let output: ComponentOutput;
          try {
            output = ctx.output(handle);
          } catch {
            const component = handle.id.replace(/^backup-/, '') as BackupComponent;
            if (!set.components.includes(component)) continue;
            const why =
              componentFailures.get(ctx.runId)?.get(component) ?? `step ${handle.id} did not complete (see its failure in the report)`;
            failed.push(`${component}: ${why}`);
            continue;
          }
          taken.push(...output.artifacts);
          warnings.push(...output.warnings.map((w) => `${output.component}: ${w}`));
        }
        componentFailures.delete(ctx.runId);
        const checks = await verifyUploaded(ctx, taken);
        const bad = checks.filter((c) => !c.ok);
        const findings = bad.map((c) => {
          const copies = c.copies.filter((copy) => !copy.ok).map((copy) => `copy ${copy.url}: ${copy.detail}`);
          return `${c.kind} ${c.id}: ${[...(c.decrypt.ok ? [] : [`decrypt: ${c.decrypt.detail}`]), ...copies].join('; ')}`;
        });
        if (failed.length > 0 || bad.length > 0)
          throw new Error(
            [
              failed.length > 0 ? `${failed.length} component${failed.length === 1 ? '' : 's'} not backed up: ${failed.join(' | ')}` : '',
              bad.length > 0 ? `${bad.length} of ${checks.length} artifacts failed verification: ${findings.join(' | ')}` : '',
              'Nothing was pruned: older backups stay until a run succeeds',
            ]
              .filter((s) => s !== '')
              .join('. '),
          );
        ctx.log.info(`${checks.length} artifacts verified on ${set.copies.length} ${set.copies.length === 1 ? 'copy' : 'copies'} each`);
        const kinds = [...new Set(taken.map((a) => a.kind))];
        return { artifacts: taken, kinds, warnings };
      },
    });

    // The kinds whose retention this run applies, and how it decides: the catalog's backups
    // of each kind (snapshots left out). A dry run adds the backup this run would have made,
    // so that its list is the one a real run would delete.
    const decide = async (ctx: StepContext<Params>, kinds: readonly string[], hypothetical: boolean) => {
      const platform = platformOf(ctx);
      const policy = policyOf(platform);
      const set = ctx.output(planSet);
      const now = new Date();
      return withBackups(ctx, async ({ catalog }) => {
        const perKind: {
          kind: string;
          manifests: Manifest[];
          keep: number;
          drop: { id: string; createdAt: string; reasons: string[] }[];
          warnings: string[];
        }[] = [];
        for (const kind of kinds) {
          const manifests = (await catalog.list({ kind })).filter((m) => !isSnapshot(m));
          const items = manifests.map(itemOf);
          if (hypothetical) {
            const usable = manifests.filter((m) => m.verification?.status !== 'failed').at(-1);
            const incremental = kind === 'files' && !set.fullFiles && usable !== undefined;
            items.push({
              id: 'this-run',
              kind,
              createdAt: now.toISOString(),
              type: incremental ? 'incremental' : 'full',
              ...(incremental ? { parent: usable.id } : {}),
              verification: { status: 'passed' },
            });
          }
          const plan = planRetention(items, policy, now);
          perKind.push({
            kind,
            manifests,
            keep: plan.keep.length,
            drop: plan.drop.map((d) => ({ id: d.id, createdAt: d.createdAt, reasons: d.reasons })),
            warnings: plan.warnings,
          });
        }
        return perKind;
      });
    };

    const planPrune = step({
      id: 'plan-retention',
      title: 'Work out which backups the retention policy no longer keeps',
      phase: 'retention',
      readOnly: true,
      idempotent: true,
      timeout: '2m',
      plan: (ctx) => {
        const platform = platformOf(ctx);
        const set = runSetOf(platform, ctx.params);
        if (!set.prune) return 'skipped (--no-prune)';
        return `list the ${kindsOf(platform, set.components).join(', ')} backups in ${backupStoreUrl(ctx)} and apply "${describePolicy(policyOf(platform))}" to them (read only)`;
      },
      run: async (ctx) => {
        const set = ctx.output(planSet);
        if (!set.prune) {
          ctx.log.info('--no-prune: every old backup is kept this time');
          return { prune: false, kinds: [] as string[], drop: [] as { id: string; kind: string; createdAt: string }[] };
        }
        const dry = ctx.mode === 'dry-run';
        // Only kinds this run has just taken and verified: a kind whose backup failed keeps all its old ones.
        const kinds = dry ? set.kinds : ctx.output(verify).kinds;
        const perKind = await decide(ctx, kinds, dry);
        const drop: { id: string; kind: string; createdAt: string }[] = [];
        for (const k of perKind) {
          for (const w of k.warnings) ctx.log.warn(`${k.kind}: ${w}`);
          // The whole list is in the step's output (journal and report); the log names the first few.
          const named = k.drop.slice(0, 12).map((d) => `${d.id} (${d.reasons.join(', ')})`);
          if (k.drop.length > named.length) named.push(`and ${k.drop.length - named.length} more`);
          ctx.log.info(
            `${k.kind}: ${dry ? 'would keep' : 'keep'} ${k.keep}, ${dry ? 'would delete' : 'delete'} ${k.drop.length}${named.length > 0 ? `: ${named.join(', ')}` : ''}`,
          );
          for (const d of k.drop) drop.push({ id: d.id, kind: k.kind, createdAt: d.createdAt });
        }
        if (dry)
          ctx.log.info(`a run now would delete ${drop.length} backups (counting the ones it would take; if they fail, nothing is deleted)`);
        return { prune: true, kinds: [...kinds], drop };
      },
    });

    const prune = step({
      id: 'prune',
      title: 'Delete the backups the retention policy no longer keeps',
      phase: 'retention',
      destructive: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => {
        const platform = platformOf(ctx);
        const set = runSetOf(platform, ctx.params);
        if (!set.prune) return 'skipped (--no-prune): no backup is deleted';
        const lines = [
          `delete from every copy of ${backupStoreUrl(ctx)} the ${kindsOf(platform, set.components).join(', ')} backups that "${describePolicy(policyOf(platform))}" no longer keeps (manifest first, then object)`,
          'never deleted: the last verified backup of each kind, any backup a kept incremental builds on, snapshots of a damaged state, and kinds this run did not take and verify',
          ...(set.components.includes('postgres-base')
            ? ['then the archived WAL older than the oldest kept base backup (nothing a kept base backup needs)']
            : []),
        ];
        try {
          const planned = ctx.output(planPrune);
          lines.push(
            planned.drop.length === 0
              ? 'nothing to delete'
              : `${planned.drop.length} backups: ${planned.drop.map((d) => `${d.kind} ${d.id}`).join(', ')}`,
          );
        } catch {
          lines.push('(which ones: the list of step plan-retention)');
        }
        return lines;
      },
      run: async (ctx) => {
        const planned = ctx.output(planPrune);
        if (!planned.prune) return { deleted: [] as string[], kept: 0, walDeleted: 0 };
        let walDeleted = 0;
        // Decided again now, and only what both decisions drop goes: the confirmation showed
        // the earlier list, and nothing that has become needed since may be deleted.
        const approved = new Set(planned.drop.map((d) => d.id));
        const perKind = await decide(ctx, planned.kinds, false);
        const deleted: string[] = [];
        let kept = 0;
        await withBackups(ctx, async ({ catalog }) => {
          for (const k of perKind) {
            const byId = new Map(k.manifests.map((m) => [m.id, m]));
            let gone = 0;
            for (const d of k.drop) {
              const manifest = byId.get(d.id);
              if (manifest === undefined || !approved.has(d.id)) continue;
              await catalog.delete(manifest);
              deleted.push(d.id);
              gone++;
            }
            kept += k.manifests.length - gone;
            ctx.log.info(`${k.kind}: kept ${k.manifests.length - gone}, deleted ${gone}`);
          }
          // The WAL archive follows the base backups: what no kept base backup needs goes.
          if (planned.kinds.includes(POSTGRES_BASE_KIND))
            for (const r of await pruneWal({ catalog })) {
              walDeleted += r.deleted.length;
              ctx.log.info(
                `WAL of cluster ${r.systemId}: ${r.reason ?? `deleted ${r.deleted.length} files before ${r.keepFrom}, kept ${r.kept}`}`,
              );
            }
        });
        ctx.log.info(`retention applied: ${deleted.length} backups deleted, ${kept} kept`);
        return { deleted, kept, walDeleted };
      },
    });

    return [planSet, ...components, verify, planPrune, prune];
  },
});

export default backup;

if (isMain(import.meta.url)) await runbookCli(backup);
