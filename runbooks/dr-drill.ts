// The monthly DR drill (first plan, Testing Schedule: "First Saturday of each month; full
// backup + restore cycle; deliverable: test report"; second plan, DR Drill Checklist). It
// takes a full backup of the environment, proves the backup is encrypted and on every copy
// of the store (local disk, S3 and its replica region), rebuilds the platform from it with
// the complete-system-failure runbook — into throwaway servers on this machine (`--against
// scratch`, the default) or into the environment itself (`--against <env>`, e.g. staging) —
// checks the services and the data independently of that runbook, and grades the plan's test
// checklist item by item, each with its evidence. The checklist, the RTO table (each phase of
// the rebuild against its budget) and the recovery's own report go into a Markdown test
// report. The run fails (exit 1) unless every item passed.
//
//   tsx runbooks/dr-drill.ts --env staging --plan
//   tsx runbooks/dr-drill.ts --env production --yes                 # restore into scratch servers
//   tsx runbooks/dr-drill.ts --env staging --against staging --yes  # rebuild staging itself

import { type Dirent, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { generateKey, open, parseKeyFile } from '@drkit/crypto-stream';
import { fingerprintOf as filesFingerprintOf } from '@drkit/file-archive';
import {
  compareFingerprints,
  describeDifferences,
  fingerprintOf as pgFingerprintOf,
  pgTarget,
  takeFingerprint,
  withClient,
} from '@drkit/postgres-backup';
import { keyspaceOf, fingerprintOf as redisFingerprintOf, redisTarget, withRedis } from '@drkit/redis-backup';
import { type ChildRun, defineRunbook, formatElapsed, isMain, run, runbookCli, type StepContext } from '@drkit/runbook';
import { type Manifest, readStored, splitStoreUrls } from '@drkit/s3-store';
import { z } from 'zod';
import completeSystemFailure from './complete-system-failure.ts';
import { componentOfKind, componentsOf, expectedKinds } from './lib/backup-set.ts';
import { type Checklist, type ChecklistItem, gradeChecklist, renderDrillReport, rtoTable } from './lib/drill.ts';
import {
  ageOf,
  backupStoreUrl,
  databaseName,
  databaseUrl,
  PLATFORM_SECRETS,
  platformOf,
  redisUrl,
  required,
  SECRETS_KEY_SECRET,
  withBackups,
} from './lib/platform.ts';
import { type Scratch, startScratch } from './lib/scratch.ts';
import { backupComponent, type TakenArtifact, takenOf, type UploadCheck, verifyUploaded } from './lib/take-backup.ts';

const params = z.object({
  against: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,31}$/, 'scratch, or the name of this environment')
    .default('scratch')
    .describe('where to rebuild: "scratch" (throwaway servers on this machine) or this environment itself (e.g. staging)'),
  useExisting: z.boolean().default(false).describe('drill the newest backups already in the store instead of taking a new set'),
  report: z.string().optional().describe('where the Markdown test report goes (default: the runs dir, dr-drill-<env>-<time>.md)'),
});

type Params = z.output<typeof params>;
type Ctx = StepContext<Params>;

/** Errors of the graded steps, kept so the checklist can quote them (a failed step has no output). */
const stepErrors = new Map<string, string>();
/** The scratch servers of this process's run, stopped by the teardown step or on exit. */
let scratch: Scratch | undefined;

/** Runs a graded step's body; its error is remembered for the checklist before it fails the step. */
async function graded<T>(id: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    stepErrors.set(id, error instanceof Error ? error.message : String(error));
    throw error;
  }
}

const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;
const errorText = (error: unknown) =>
  `${typeof (error as { code?: unknown }).code === 'string' ? `${(error as { code: string }).code}: ` : ''}${error instanceof Error ? error.message : String(error)}`;

/** The target's database, Redis and application, for the independent checks. */
interface Target {
  name: string;
  databaseUrl: string;
  redisUrl: string;
  filesRoot: string;
  healthUrl?: string;
  statusUrl?: string;
}

/** The scratch environment as a drkit environment config: what complete-system-failure rebuilds. */
function scratchEnvironment(ctx: Ctx, s: Scratch): Record<string, unknown> {
  const p = platformOf(ctx);
  const app = p.drill?.app;
  const pg = s.postgres;
  const database = databaseName(ctx);
  const publicUrl = `postgres://${encodeURIComponent(pg.user)}@${pg.host}:${pg.port}/${encodeURIComponent(database)}`;
  const scratchEnv: Record<string, string> = {
    DRKIT_SCRATCH_DATABASE_URL: pg.url(database),
    DRKIT_SCRATCH_REDIS_URL: s.redis.url,
    DRKIT_SCRATCH_FILES_DIR: s.filesDir,
    DRKIT_SCRATCH_ENV_FILE: s.envFile,
    DRKIT_SCRATCH_PORT: String(s.app.port),
    DRKIT_SCRATCH_PID_FILE: s.app.pidFile,
    DRKIT_SCRATCH_LOG_FILE: s.app.log,
    DRKIT_SCRATCH_DIR: s.dir,
  };
  const exports = Object.entries(scratchEnv)
    .map(([k, v]) => `${k}='${v.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  // Without vars.drill.app nothing can start the application: the rebuild's start and API
  // checks then fail, and the checklist says what to configure.
  const appService = app
    ? {
        type: 'command',
        start: app.start,
        pidFile: s.app.pidFile,
        env: { ...app.env, ...scratchEnv },
        ...(app.cwd !== undefined ? { cwd: resolve(app.cwd) } : {}),
        logs: `tail -n "\${DRKIT_LOG_LINES:-100}" '${s.app.log}' 2>/dev/null || true`,
        startTimeoutMs: 60_000,
      }
    : { type: 'command', start: 'echo "no vars.drill.app is configured: nothing starts the application" >&2; exit 1', stop: 'true' };
  const secrets = Object.fromEntries(
    Object.entries(ctx.config.secrets ?? {}).filter(([name]) => name !== 'databasePassword' && name !== 'redisPassword'),
  );
  return {
    description: `DR drill scratch servers for ${ctx.environment}`,
    product: ctx.config.product,
    stores: { backups: backupStoreUrl(ctx) },
    secrets,
    services: { redis: s.redis.service, app: appService },
    health: {
      app: { type: 'http', url: `http://127.0.0.1:${s.app.port}${app?.healthPath ?? '/health'}`, expectStatus: 200, timeoutMs: 3000 },
    },
    vars: {
      backups: 'backups',
      postgres: { url: publicUrl, countTable: required(ctx, 'postgres').countTable },
      redis: { url: s.redis.url, service: 'redis', dataDir: s.redis.dataDir, dbFilename: 'dump.rdb' },
      files: { root: s.filesDir },
      app: {
        services: ['app'],
        health: 'app',
        ...(app?.statusPath !== undefined ? { statusUrl: `http://127.0.0.1:${s.app.port}${app.statusPath}` } : {}),
        ...(app?.migrate !== undefined ? { migrate: `export ${exports}; ${app.migrate}` } : {}),
      },
      envFile: s.envFile,
    },
    runsDir: join(s.dir, 'runs'),
  };
}

const drDrill = defineRunbook({
  id: 'dr-drill',
  title: 'Monthly DR drill',
  description:
    'Takes a full backup, verifies its encryption and every copy, rebuilds the platform from it into scratch servers (or a staging environment), validates services and data, and writes the test report with the checklist and the RTO table.',
  severity: 'sev3',
  category: 2,
  impact: 'None: a drill. With --against <env> that environment is rebuilt from its backups',
  drill: true,
  // The first plan: "Duration: 2 hours".
  rto: '2h',
  params,
  phases: { preparation: '10m', backup: '30m', recovery: '1h', validation: '15m', reporting: '5m' },
  secrets: {
    ...PLATFORM_SECRETS,
    secretsKey: SECRETS_KEY_SECRET,
  },
  steps: (step) => {
    const prepare = step({
      id: 'prepare',
      title: 'Document the start, the scope and the target',
      phase: 'preparation',
      readOnly: true,
      idempotent: true,
      plan: (ctx) => [
        `drill ${ctx.environment}'s backups in ${backupStoreUrl(ctx)}`,
        ctx.params.against === 'scratch'
          ? 'rebuild into throwaway PostgreSQL and Redis servers on this machine, with the application as vars.drill.app starts it'
          : `rebuild ${ctx.params.against} itself with complete-system-failure`,
      ],
      run: (ctx) => {
        if (ctx.params.against !== 'scratch' && ctx.params.against !== ctx.environment)
          throw new Error(
            `--against ${ctx.params.against}: a drill rebuilds either scratch servers or the environment it runs against (--env ${ctx.environment}); to drill one environment's backups on another, run with --env ${ctx.params.against} and point its stores.backups at the other's store`,
          );
        const copies = splitStoreUrls(backupStoreUrl(ctx));
        const p = platformOf(ctx);
        if (ctx.params.against === 'scratch' && p.drill?.app === undefined)
          ctx.log.warn('no vars.drill.app: the application cannot be started on the scratch servers, so its checklist items will fail');
        ctx.log.info(`store copies: ${copies.join(' | ')}`);
        return { startedAt: new Date().toISOString(), copies, target: ctx.params.against };
      },
    });

    const backup = step({
      id: 'backup',
      title: 'Take a full backup set',
      phase: 'backup',
      critical: false,
      timeout: '30m',
      plan: (ctx) =>
        ctx.params.useExisting
          ? `use the newest existing ${expectedKinds(ctx).join(', ')} backups`
          : `back up ${componentsOf(platformOf(ctx), 'manual').join(', ')} (tier manual, full file backup) into ${backupStoreUrl(ctx)}`,
      run: (ctx) =>
        graded('backup', async () => {
          const started = Date.now();
          if (ctx.params.useExisting) {
            const artifacts = await withBackups(ctx, async ({ catalog }) => {
              const found: TakenArtifact[] = [];
              for (const kind of expectedKinds(ctx)) {
                const m = await catalog.latest(kind);
                if (m === undefined) throw new Error(`the store holds no complete ${kind} backup`);
                found.push(takenOf(componentOfKind(kind), m));
              }
              return found;
            });
            for (const a of artifacts) ctx.log.info(`${a.kind}: ${a.id} (${ageOf(a.createdAt)} old)`);
            return { taken: false, artifacts, failures: [] as string[], ms: Date.now() - started };
          }
          const artifacts: TakenArtifact[] = [];
          const failures: string[] = [];
          // Every component is attempted: one that fails is a finding, not a reason to skip the others.
          for (const component of componentsOf(platformOf(ctx), 'manual')) {
            try {
              const taken = await backupComponent(ctx, component, { tier: 'manual', full: true });
              artifacts.push(...taken.artifacts);
              for (const w of taken.warnings) ctx.log.warn(`${component}: ${w}`);
            } catch (error) {
              failures.push(`${component}: ${errorText(error)}`);
              ctx.log.error(`${component} backup failed: ${errorText(error)}`);
            }
          }
          if (failures.length > 0) throw new Error(`backup failed: ${failures.join('; ')}`);
          return { taken: true, artifacts, failures, ms: Date.now() - started };
        }),
    });

    const verifyBackup = step({
      id: 'verify-backup',
      title: 'Verify the encryption and every stored copy',
      phase: 'backup',
      readOnly: true,
      critical: false,
      timeout: '30m',
      plan: (ctx) =>
        `read every artifact back from each copy of ${backupStoreUrl(ctx)}, authenticate every chunk with the backup key, and check that a random key is refused`,
      run: (ctx) =>
        graded('verify-backup', async () => {
          const { artifacts } = ctx.output(backup);
          const checks: UploadCheck[] = await verifyUploaded(ctx, artifacts);
          // Encryption is proven both ways: the operators' key opens every chunk, another key opens nothing.
          const stranger = parseKeyFile(generateKey().toString('base64'));
          const refusals = await withBackups(ctx, async ({ catalog }) => {
            const out: { id: string; kind: string; refused: boolean; code: string }[] = [];
            for (const a of artifacts) {
              const manifest = await catalog.get(a.id, a.kind);
              const abort = new AbortController();
              try {
                for await (const _ of open(readStored(catalog, manifest, { signal: abort.signal }), { keys: stranger })) break;
                out.push({ id: a.id, kind: a.kind, refused: false, code: 'opened with a random key' });
              } catch (error) {
                const code = (error as { code?: unknown }).code;
                out.push({
                  id: a.id,
                  kind: a.kind,
                  refused: typeof code === 'string' && code.startsWith('SEAL_'),
                  code: String(code ?? error),
                });
              } finally {
                abort.abort();
              }
            }
            return out;
          });
          return { checks, refusals };
        }),
    });

    const restore = step({
      id: 'restore',
      title: 'Rebuild the platform from the backup set (complete-system-failure)',
      phase: 'recovery',
      destructive: true,
      critical: false,
      timeout: '1h',
      plan: (ctx) =>
        ctx.params.against === 'scratch'
          ? [
              'start throwaway PostgreSQL and redis-server on this machine (removed at the end)',
              'run complete-system-failure against them: restore PostgreSQL, Redis (RDB), the files and the secrets, migrate, start the app, verify; the drilled environment is not touched',
            ]
          : [
              `run complete-system-failure against ${ctx.environment}: its database, Redis data, files and .env are REPLACED by the backup set`,
            ],
      run: (ctx) =>
        graded('restore', async () => {
          const skipSecrets = !componentsOf(platformOf(ctx), 'manual').includes('secrets');
          let child: ChildRun;
          let target: Target;
          let reportFile: string | undefined;
          if (ctx.params.against === 'scratch') {
            const user = decodeURIComponent(new URL(required(ctx, 'postgres').url).username) || undefined;
            const p = platformOf(ctx);
            scratch = await startScratch({
              ...(p.drill?.scratchDir !== undefined ? { parent: p.drill.scratchDir } : {}),
              ...(user !== undefined ? { postgresUser: user } : {}),
            });
            const s = scratch;
            ctx.log.info(
              `scratch servers: PostgreSQL ${s.postgres.version} on :${s.postgres.port}, redis-server on :${s.redis.port}, in ${s.dir}`,
            );
            const result = await run(completeSystemFailure, {
              environment: 'scratch',
              config: { environments: { scratch: scratchEnvironment(ctx, s) } },
              params: { skipSecrets },
              yes: true,
              drill: true,
              // The scratch servers' own credentials: the drilled environment's never reach them.
              env: { ...withoutServerSecrets(process.env), PGPASSWORD: s.postgres.password },
              clock: ctx.clock,
              signal: ctx.signal,
              onEvent: (event) => {
                if (event.kind === 'log') ctx.log[event.entry.level](`  ${event.entry.message}`);
                else if (event.kind === 'step-start') ctx.log.info(`  ▸ ${event.step}`);
                else if (event.kind === 'progress') ctx.progress(event.progress);
              },
            });
            // A run's result is a child run's result, and more.
            child = result;
            reportFile = result.files?.markdown;
            const app = p.drill?.app;
            target = {
              name: 'scratch',
              databaseUrl: s.postgres.url(databaseName(ctx)),
              redisUrl: s.redis.url,
              filesRoot: s.filesDir,
              ...(app ? { healthUrl: `http://127.0.0.1:${s.app.port}${app.healthPath}` } : {}),
              ...(app?.statusPath !== undefined ? { statusUrl: `http://127.0.0.1:${s.app.port}${app.statusPath}` } : {}),
            };
          } else {
            child = await ctx.runRunbook(completeSystemFailure, { skipSecrets }, { onFailure: 'return' });
            const p = platformOf(ctx);
            const health = p.app ? ctx.config.health?.[p.app.health] : undefined;
            target = {
              name: ctx.environment,
              databaseUrl: databaseUrl(ctx),
              redisUrl: redisUrl(ctx),
              filesRoot: required(ctx, 'files').root,
              ...(health?.type === 'http' ? { healthUrl: health.url } : {}),
              ...(p.app?.statusUrl !== undefined ? { statusUrl: p.app.statusUrl } : {}),
            };
          }
          const recoveryReport = reportFile !== undefined ? readFileSync(reportFile, 'utf8') : undefined;
          if (child.status !== 'succeeded')
            ctx.log.error(`complete-system-failure ended ${child.status}: ${child.error?.message ?? 'no error recorded'}`);
          return {
            runId: child.runId,
            status: child.status,
            error: child.error ?? null,
            steps: child.steps.map((s) => ({
              id: s.id,
              status: s.status,
              durationMs: s.durationMs ?? 0,
              ...(s.message !== undefined ? { message: s.message } : {}),
            })),
            // Which backups the rebuild picked as "latest": they must be the ones drilled.
            restored: ((child.outputs['locate-backup-set'] as { ids?: Record<string, string> } | undefined)?.ids ?? null) as Record<
              string,
              string
            > | null,
            rto: child.report ? rtoTable(child.report) : null,
            recoveryReport: recoveryReport ?? null,
            target,
          };
        }),
    });

    const validate = step({
      id: 'validate',
      title: 'Check the services and the data, independently of the rebuild',
      phase: 'validation',
      readOnly: true,
      critical: false,
      timeout: '15m',
      plan: () =>
        'query the rebuilt PostgreSQL (row counts and sequences against the backup fingerprint), Redis (keys against the backup) and the files (count and bytes), and call the health and status endpoints',
      run: (ctx) =>
        graded('validate', async () => {
          const { target } = ctx.output(restore);
          const { artifacts } = ctx.output(backup);
          const manifests = await withBackups(ctx, async ({ catalog }) => {
            const out: Record<string, Manifest> = {};
            for (const a of artifacts) out[a.kind] = await catalog.get(a.id, a.kind);
            return out;
          });
          const services: { name: string; ok: boolean; evidence: string }[] = [];
          const integrity: { name: string; ok: boolean; evidence: string }[] = [];
          const probe = async (name: string, fn: () => Promise<string>) => {
            try {
              services.push({ name, ok: true, evidence: await fn() });
            } catch (error) {
              services.push({ name, ok: false, evidence: errorText(error) });
            }
          };
          await probe('postgres', () =>
            withClient(pgTarget(target.databaseUrl), async (c) => {
              const r = await c.query<{ v: string }>('SELECT version() AS v');
              return `answers (${(r.rows[0]?.v ?? '').split(' ').slice(0, 2).join(' ')})`;
            }),
          );
          await probe('redis', () => withRedis(redisTarget(target.redisUrl), async (r) => `PING ${await r.ping()}`));
          if (target.healthUrl !== undefined) {
            const healthUrl = target.healthUrl;
            await probe('app health', async () => {
              const res = await fetch(healthUrl, { signal: AbortSignal.timeout(5000) });
              if (res.status !== 200) throw new Error(`${healthUrl} answered ${res.status}`);
              return `${healthUrl} 200`;
            });
          } else services.push({ name: 'app health', ok: false, evidence: 'no health endpoint: configure vars.drill.app' });
          if (target.statusUrl !== undefined) {
            const statusUrl = target.statusUrl;
            await probe('app status', async () => {
              const res = await fetch(statusUrl, { signal: AbortSignal.timeout(5000) });
              if (res.status !== 200) throw new Error(`${statusUrl} answered ${res.status}`);
              return `${statusUrl} 200 ${(await res.text()).slice(0, 120)}`;
            });
          }

          const pgManifest = manifests.postgres;
          if (pgManifest) {
            try {
              const expected = pgFingerprintOf(pgManifest);
              const actual = await withClient(pgTarget(target.databaseUrl), (c) => takeFingerprint(c));
              // The rebuild's migrations may add seed rows; a restore may never lose any.
              const differences = compareFingerprints(expected, actual).filter(
                (d) => !(d.kind === 'table' && /^\d+$/.test(d.actual) && /^\d+$/.test(d.expected) && Number(d.actual) > Number(d.expected)),
              );
              const tables = Object.keys(expected.tables).length;
              const rows = Object.values(expected.tables).reduce((a, b) => a + (b ?? 0), 0);
              integrity.push(
                differences.length === 0
                  ? {
                      name: 'postgres',
                      ok: true,
                      evidence: `${tables} tables, ${rows} rows and ${Object.keys(expected.sequences).length} sequences match backup ${pgManifest.id}`,
                    }
                  : { name: 'postgres', ok: false, evidence: describeDifferences(differences) },
              );
            } catch (error) {
              integrity.push({ name: 'postgres', ok: false, evidence: errorText(error) });
            }
          }
          const rdb = manifests['redis-rdb'] ?? manifests['redis-logical'];
          if (rdb) {
            try {
              const recorded = redisFingerprintOf(rdb, rdb.kind as 'redis-rdb').keyspace;
              const live = await withRedis(redisTarget(target.redisUrl), (r) => keyspaceOf(r));
              const problems = Object.entries(recorded)
                .filter(([db, want]) => (live[db]?.keys ?? 0) < want.keys - want.expires)
                .map(([db, want]) => `db${db}: ${live[db]?.keys ?? 0} keys, the backup holds ${want.keys}`);
              const keys = Object.values(recorded).reduce((a, b) => a + b.keys, 0);
              const expires = Object.values(recorded).reduce((a, b) => a + b.expires, 0);
              const liveKeys = Object.values(live).reduce((a, b) => a + b.keys, 0);
              integrity.push(
                problems.length === 0
                  ? { name: 'redis', ok: true, evidence: `${liveKeys} keys back of ${keys} (${expires} with a TTL may expire)` }
                  : { name: 'redis', ok: false, evidence: problems.join('; ') },
              );
            } catch (error) {
              integrity.push({ name: 'redis', ok: false, evidence: errorText(error) });
            }
          }
          const files = manifests.files;
          if (files) {
            const want = filesFingerprintOf(files);
            const got = countTree(target.filesRoot);
            integrity.push(
              got.files >= want.files && got.bytes >= want.bytes
                ? {
                    name: 'files',
                    ok: true,
                    evidence: `${got.files} files, ${mb(got.bytes)} (backup: ${want.files} files, ${mb(want.bytes)}; every SHA-256 checked by the restore)`,
                  }
                : {
                    name: 'files',
                    ok: false,
                    evidence: `${got.files} files, ${got.bytes} bytes; the backup holds ${want.files} files, ${want.bytes} bytes`,
                  },
            );
          }
          for (const s of services) ctx.log[s.ok ? 'info' : 'error'](`${s.name}: ${s.evidence}`);
          for (const i of integrity) ctx.log[i.ok ? 'info' : 'error'](`${i.name} data: ${i.evidence}`);
          return { services, integrity };
        }),
    });

    const report = step({
      id: 'report',
      title: 'Grade the checklist and write the test report',
      phase: 'reporting',
      idempotent: true,
      plan: (ctx) => `grade the plan's test checklist and write ${reportPath(ctx)} (and its .json beside it)`,
      run: (ctx) => {
        const value = <T>(id: string, get: () => T): T | { error: string } => {
          try {
            return get();
          } catch {
            return { error: stepErrors.get(id) ?? `step ${id} did not run` };
          }
        };
        const checklist: Checklist = gradeChecklist({
          backup: value('backup', () => ctx.output(backup)),
          verify: value('verify-backup', () => ctx.output(verifyBackup)),
          restore: value('restore', () => ctx.output(restore)),
          validate: value('validate', () => ctx.output(validate)),
        });
        const file = reportPath(ctx);
        const restored = value('restore', () => ctx.output(restore));
        const markdown = renderDrillReport({
          environment: ctx.environment,
          target: ctx.params.against,
          runId: ctx.runId,
          startedAt: ctx.output(prepare).startedAt,
          finishedAt: new Date().toISOString(),
          checklist,
          copies: ctx.output(prepare).copies,
          recovery: 'steps' in restored ? restored : null,
        });
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, markdown);
        const rto = 'steps' in restored ? restored.rto : null;
        const summary = {
          schema: 'drkit.dr-drill/1',
          runId: ctx.runId,
          environment: ctx.environment,
          target: ctx.params.against,
          checklist,
          rto,
        };
        writeFileSync(`${file.replace(/\.md$/, '')}.json`, `${JSON.stringify(summary, null, 2)}\n`);
        for (const item of checklist.items)
          ctx.log[item.passed ? 'info' : 'error'](`[${item.passed ? 'x' : ' '}] ${item.title}: ${item.evidence}`);
        ctx.log.info(`test report: ${file}`);
        return { checklist, file };
      },
    });

    const teardown = step({
      id: 'teardown',
      title: 'Remove the scratch servers',
      phase: 'reporting',
      idempotent: true,
      plan: (ctx) =>
        ctx.params.against === 'scratch'
          ? 'stop the scratch PostgreSQL, redis-server and application; delete their data'
          : 'nothing: the target stays rebuilt',
      run: async () => {
        const s = scratch;
        scratch = undefined;
        if (s === undefined) return { stopped: false };
        // The app the rebuild started is stopped by its pid file before the servers go.
        await s.stop();
        return { stopped: true };
      },
    });

    const verdict = step({
      id: 'verdict',
      title: 'Pass only when every checklist item passed',
      phase: 'reporting',
      readOnly: true,
      run: (ctx) => {
        const { checklist, file } = ctx.output(report);
        const failed = checklist.items.filter((i: ChecklistItem) => !i.passed);
        if (failed.length > 0)
          throw new Error(
            `the DR drill failed ${failed.length} of ${checklist.items.length} checklist items: ${failed.map((i) => `${i.title} (${i.evidence})`).join('; ')}. Test report: ${file}`,
          );
        ctx.log.info(`every checklist item passed (${checklist.items.length}); rebuild took ${formatElapsed(checklist.recoveryMs ?? 0)}`);
        return { passed: checklist.items.length };
      },
    });

    return [prepare, backup, verifyBackup, restore, validate, report, teardown, verdict];
  },
});

/** The environment without the drilled servers' passwords. */
function withoutServerSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { PGPASSWORD: _pg, REDISCLI_AUTH: _redis, ...rest } = env;
  return rest;
}

/** Files and bytes under a directory (regular files; links are not followed). */
function countTree(root: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (dir: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.isFile()) {
        files++;
        bytes += lstatSync(path).size;
      }
    }
  };
  walk(root);
  return { files, bytes };
}

/** Where the test report goes: --report, else the runs dir. */
function reportPath(ctx: { params: Params; environment: string; config: { runsDir?: string }; runId: string }): string {
  if (ctx.params.report !== undefined) return resolve(ctx.params.report);
  return resolve(ctx.config.runsDir ?? join('.drkit', 'runs'), `dr-drill-${ctx.environment}-${ctx.runId}.md`);
}

export default drDrill;

if (isMain(import.meta.url)) await runbookCli(drDrill);
