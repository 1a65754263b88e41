// Complete System Failure (first plan, Recovery Procedures): total loss, rebuild from the
// latest backup set. The plan's steps — provision (15 min), restore PostgreSQL, Redis, files
// and secrets from S3 (20 min), start databases, run migrations, start the application
// (10 min), verify health, database, Redis and the API (5 min) — as one run. The backup set
// is read from the mirrored store, so when the primary region is down the replica region
// serves it (and the run says so). The database servers must be up before anything can be
// restored into them, so they start first; the application starts only after every restore
// is verified.
//
//   tsx runbooks/complete-system-failure.ts --env production --plan
//   tsx runbooks/complete-system-failure.ts --env staging --yes

import { existsSync } from 'node:fs';
import { parseKeyFile } from '@drkit/crypto-stream';
import { restoreFiles } from '@drkit/file-archive';
import { fingerprintOf as pgFingerprintOf, pgTarget, restorePostgres, withClient } from '@drkit/postgres-backup';
import {
  keyspaceOf,
  REDIS_RDB_KIND,
  fingerprintOf as redisFingerprintOf,
  redisTarget,
  restoreRedisRdb,
  withRedis,
} from '@drkit/redis-backup';
import { defineRunbook, isMain, runbookCli, waitHealthy } from '@drkit/runbook';
import type { Manifest } from '@drkit/s3-store';
import { z } from 'zod';
import { appServicesDescribe, readStatus, startApp, stopApp } from './lib/app.ts';
import {
  ageOf,
  backupKeys,
  backupStoreUrl,
  databaseName,
  databaseUrl,
  PLATFORM_SECRETS,
  platformOf,
  redisUrl,
  reportEvents,
  required,
  SECRETS_KEY_SECRET,
  withBackups,
} from './lib/platform.ts';
import { rdbServerOf } from './lib/redis.ts';
import { restoreSecrets, SECRETS_KIND } from './lib/secrets.ts';

const params = z.object({
  maxSpread: z
    .string()
    .regex(/^\d+h$/, 'hours, e.g. "26h"')
    .default('26h')
    .describe('the newest backups of the kinds must be at most this far apart to count as one set'),
  skipSecrets: z.boolean().default(false).describe('do not restore the secrets file (it is managed elsewhere)'),
});

const KINDS = ['postgres', REDIS_RDB_KIND, 'files', SECRETS_KIND] as const;

const completeSystemFailure = defineRunbook({
  id: 'complete-system-failure',
  title: 'Rebuild the platform from the latest complete backup set',
  description:
    'Fetches the latest backup set (falling back to the replica region), restores PostgreSQL, Redis, the user files and the secrets, starts the services in order and verifies them.',
  severity: 'sev1',
  category: 2,
  impact: 'The whole platform is down until the rebuild completes; data since the last backup set is lost',
  rto: '1h',
  params,
  // The procedure's own steps: provision 15 min, restore 20 min, start services 10 min, verify 5 min.
  phases: { provisioning: '15m', restoration: '20m', startup: '10m', verification: '5m' },
  secrets: {
    ...PLATFORM_SECRETS,
    secretsKey: SECRETS_KEY_SECRET,
  },
  steps: (step) => {
    const locate = step({
      id: 'locate-backup-set',
      title: 'Find the latest complete backup set',
      phase: 'provisioning',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) =>
        `find the newest complete ${KINDS.filter((k) => k !== SECRETS_KIND || !ctx.params.skipSecrets).join(', ')} backups in ${backupStoreUrl(ctx)} (a replica serves them if the primary is down), at most ${ctx.params.maxSpread} apart`,
      run: async (ctx) => {
        const kinds = KINDS.filter((k) => k !== SECRETS_KIND || !ctx.params.skipSecrets);
        const { set, fallbacks } = await withBackups(ctx, async ({ catalog, events }) => {
          const found: Record<string, Manifest> = {};
          for (const kind of kinds) {
            const latest = await catalog.latest(kind);
            if (latest === undefined)
              throw new Error(
                `the store holds no complete ${kind} backup: the set is incomplete, restore the parts by hand from an older set`,
              );
            found[kind] = latest;
          }
          return { set: found, fallbacks: events.filter((e) => e.type === 'replica-fallback').length };
        });
        const times = Object.values(set).map((m) => new Date(m.createdAt).getTime());
        const spreadH = (Math.max(...times) - Math.min(...times)) / 3_600_000;
        const maxH = Number(ctx.params.maxSpread.slice(0, -1));
        if (spreadH > maxH)
          throw new Error(
            `the newest backups are ${spreadH.toFixed(1)} h apart (more than ${ctx.params.maxSpread}): ${Object.entries(set)
              .map(([k, m]) => `${k} ${m.id}`)
              .join(', ')}; pick a set by hand or pass --max-spread`,
          );
        for (const [kind, manifest] of Object.entries(set)) ctx.log.info(`${kind}: ${manifest.id} (${ageOf(manifest.createdAt)} old)`);
        if (fallbacks > 0) ctx.log.warn(`the primary store failed: the backup set was read from the replica region (${fallbacks} reads)`);
        return {
          ids: Object.fromEntries(Object.entries(set).map(([k, m]) => [k, m.id])) as Record<string, string>,
          oldest: new Date(Math.min(...times)).toISOString(),
          fromReplica: fallbacks > 0,
        };
      },
    });

    const decide = step({
      id: 'decide',
      title: 'Decide to rebuild',
      phase: 'provisioning',
      gate: 'Rebuild the platform from this backup set (the current database, Redis data, files and .env are replaced)?',
      run: (ctx) => ({ ids: ctx.output(locate).ids }),
    });

    const stop = step({
      id: 'stop-app',
      title: 'Stop whatever is left of the application',
      phase: 'provisioning',
      destructive: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => appServicesDescribe(ctx, 'stop'),
      run: (ctx) => stopApp(ctx),
    });

    const databases = step({
      id: 'start-databases',
      title: 'Start the database servers',
      phase: 'provisioning',
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => {
        const p = platformOf(ctx);
        return [p.postgres?.service, p.redis?.service]
          .filter((s): s is string => s !== undefined)
          .map((name) => `start ${name}: ${ctx.service(name).describe('start')}`)
          .concat('wait until PostgreSQL and Redis answer');
      },
      run: async (ctx) => {
        const p = platformOf(ctx);
        const started: string[] = [];
        for (const name of [p.postgres?.service, p.redis?.service]) {
          if (name === undefined) continue;
          await ctx.service(name).start({ signal: ctx.signal });
          started.push(name);
        }
        // A server that started is not one that answers: both must, or nothing can be restored.
        const deadline = Date.now() + 120_000;
        for (;;) {
          try {
            await withClient(pgTarget(databaseUrl(ctx, 'postgres')), (c) => c.query('SELECT 1'));
            await withRedis(redisTarget(redisUrl(ctx)), (r) => r.ping());
            break;
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await ctx.sleep(1000);
          }
        }
        return { started };
      },
    });

    const postgres = step({
      id: 'restore-postgres',
      title: 'Restore PostgreSQL',
      phase: 'restoration',
      destructive: true,
      timeout: '45m',
      plan: (ctx) => [
        `restore the set's postgres backup into a new database beside ${databaseName(ctx)}, verify it against the backup's fingerprint`,
        `swap it in as ${databaseName(ctx)}; an existing ${databaseName(ctx)} is kept as ${databaseName(ctx)}_damaged_<time>`,
      ],
      run: async (ctx) => {
        const id = ctx.output(decide).ids.postgres as string;
        const result = await withBackups(ctx, ({ catalog }) =>
          restorePostgres({
            catalog,
            backup: id,
            target: databaseUrl(ctx),
            keys: backupKeys(ctx),
            keepDamaged: true,
            signal: ctx.signal,
            onEvent: reportEvents(ctx),
          }),
        );
        for (const warning of result.warnings) ctx.log.warn(warning);
        return { backupId: id, damaged: result.damaged ?? null };
      },
    });

    const redis = step({
      id: 'restore-redis',
      title: 'Restore Redis from the RDB snapshot',
      phase: 'restoration',
      destructive: true,
      timeout: '30m',
      plan: (ctx) => {
        const r = required(ctx, 'redis');
        return [
          `check the set's RDB against the server's version, then stop ${r.service ?? '(no vars.redis.service: cannot restart Redis)'}`,
          `put it in place as ${r.dataDir ?? "the server's dir"}/${r.dbFilename} (the previous file is kept beside it) and start Redis`,
        ];
      },
      run: async (ctx) => {
        const id = ctx.output(decide).ids[REDIS_RDB_KIND] as string;
        const server = rdbServerOf(ctx);
        const result = await withBackups(ctx, ({ catalog }) =>
          restoreRedisRdb({
            url: redisUrl(ctx),
            catalog,
            backup: id,
            keys: backupKeys(ctx),
            server,
            signal: ctx.signal,
            onEvent: reportEvents(ctx),
          }),
        );
        return { backupId: id, keyspace: result.keyspace ?? {}, previous: result.previous ?? null };
      },
    });

    const files = step({
      id: 'restore-files',
      title: 'Restore the user files',
      phase: 'restoration',
      destructive: true,
      timeout: '30m',
      plan: (ctx) => [
        `restore the set's files backup (the whole tree at that backup) into ${required(ctx, 'files').root} through a staging dir; every file's SHA-256 is checked`,
        `files the restore replaces are moved to ${required(ctx, 'files').root}.drkit-replaced-<time>, not deleted`,
      ],
      run: async (ctx) => {
        const id = ctx.output(decide).ids.files as string;
        const result = await withBackups(ctx, ({ catalog }) =>
          restoreFiles({
            catalog,
            keys: backupKeys(ctx),
            backup: id,
            target: required(ctx, 'files').root,
            existing: 'merge',
            signal: ctx.signal,
            onEvent: reportEvents(ctx),
          }),
        );
        return { backupId: id, files: result.files, bytes: result.bytes, replaced: result.replaced ?? null };
      },
    });

    const secrets = step({
      id: 'restore-secrets',
      title: 'Restore the secrets file (.env, mode 0600)',
      phase: 'restoration',
      destructive: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) =>
        ctx.params.skipSecrets
          ? 'skipped (--skip-secrets)'
          : `open the set's double-sealed secrets backup and write ${required(ctx, 'envFile')} with mode 0600 (atomically)`,
      run: async (ctx) => {
        if (ctx.params.skipSecrets) return { backupId: null, names: [] as string[] };
        const id = ctx.output(decide).ids[SECRETS_KIND] as string;
        const result = await withBackups(ctx, ({ catalog }) =>
          restoreSecrets({
            catalog,
            backup: id,
            keys: { backupKeys: backupKeys(ctx), secretsKeys: parseKeyFile(ctx.secret('secretsKey'), 'the secretsKey secret') },
            envFile: required(ctx, 'envFile'),
            signal: ctx.signal,
          }),
        );
        ctx.log.info(`wrote ${result.names.length} secrets (${result.names.join(', ')}) to ${required(ctx, 'envFile')}`);
        return { backupId: id, names: result.names };
      },
    });

    const migrate = step({
      id: 'migrate',
      title: 'Run the database migrations',
      phase: 'startup',
      idempotent: true,
      timeout: '10m',
      plan: (ctx) => {
        const hook = required(ctx, 'app').migrate;
        return hook === undefined ? 'no vars.app.migrate configured: nothing to run' : `run ${hook}`;
      },
      run: async (ctx) => {
        ctx.output(postgres);
        const hook = required(ctx, 'app').migrate;
        if (hook === undefined) return { ran: false, output: '' };
        const result = await ctx.shell.sh(hook);
        return { ran: true, output: result.stdout.trim().slice(-500) };
      },
    });

    const start = step({
      id: 'start-app',
      title: 'Start the application',
      phase: 'startup',
      idempotent: true,
      timeout: '10m',
      plan: (ctx) => appServicesDescribe(ctx, 'start'),
      run: (ctx) => startApp(ctx),
    });

    const verifyDatabase = step({
      id: 'verify-database',
      title: 'Verify database connectivity and content (SELECT COUNT(*) FROM users)',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      run: async (ctx) => {
        const { backupId } = ctx.output(postgres);
        const manifest = await withBackups(ctx, ({ catalog }) => catalog.get(backupId, 'postgres'));
        const table = required(ctx, 'postgres').countTable;
        const expected = Object.entries(pgFingerprintOf(manifest).tables).find(
          ([name]) => name === `public.${table}` || name === table,
        )?.[1];
        const users = await withClient(pgTarget(databaseUrl(ctx)), async (client) => {
          const result = await client.query<{ n: string }>(`SELECT COUNT(*)::text AS n FROM ${client.escapeIdentifier(table)}`);
          return Number(result.rows[0]?.n ?? -1);
        });
        // Migrations may add rows (seed data), never remove them.
        if (expected !== undefined && users < expected)
          throw new Error(`SELECT COUNT(*) FROM ${table} returned ${users}, but backup ${backupId} recorded ${expected}`);
        return { users, expected: expected ?? null };
      },
    });

    const verifyRedis = step({
      id: 'verify-redis',
      title: 'Verify Redis connectivity and DBSIZE',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      run: async (ctx) => {
        const { backupId } = ctx.output(redis);
        const manifest = await withBackups(ctx, ({ catalog }) => catalog.get(backupId, REDIS_RDB_KIND));
        const recorded = redisFingerprintOf(manifest, REDIS_RDB_KIND).keyspace;
        const { pong, keyspace } = await withRedis(redisTarget(redisUrl(ctx)), async (client) => ({
          pong: await client.ping(),
          keyspace: await keyspaceOf(client),
        }));
        // Keys with an expiry may have expired since the snapshot; nothing else may be missing.
        const problems = Object.entries(recorded)
          .filter(([db, want]) => (keyspace[db]?.keys ?? 0) < want.keys - want.expires)
          .map(([db, want]) => `db${db}: ${keyspace[db]?.keys ?? 0} keys, the backup holds ${want.keys}`);
        if (pong !== 'PONG' || problems.length > 0) throw new Error(`Redis answered ${pong}; ${problems.join('; ')}`);
        return { keyspace };
      },
    });

    const verifyApi = step({
      id: 'verify-api',
      title: 'Verify the health endpoint and the API status',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      run: async (ctx) => {
        ctx.output(start);
        const { health } = required(ctx, 'app');
        const result = await waitHealthy(ctx.health(health), { timeoutMs: 60_000, signal: ctx.signal, log: ctx.log, clock: ctx.clock });
        const status = await readStatus(ctx);
        const envFile = platformOf(ctx).envFile;
        return { health: result.detail, status, envFile: envFile !== undefined && existsSync(envFile) };
      },
    });

    return [locate, decide, stop, databases, postgres, redis, files, secrets, migrate, start, verifyDatabase, verifyRedis, verifyApi];
  },
});

export default completeSystemFailure;

if (isMain(import.meta.url)) await runbookCli(completeSystemFailure);
