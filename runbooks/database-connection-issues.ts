// Database Connection Issues (second plan, Procedure 2.1): check the database with
// pg_isready, check the connection pool, reset the pool by restarting the application.
// Between the plan's check and its reset, this runbook says why connections fail: how many
// of the server's slots are taken and by whom (application, user, state), which sessions
// sit idle in a transaction, and which queries wait for a lock behind whom. It ends the
// sessions found only when asked (--terminate-blockers, --terminate-idle-in-transaction)
// and only those older than --older-than, then restarts the application so that its pool
// starts from fresh connections, and verifies with a fresh connection of its own.
//
//   tsx runbooks/database-connection-issues.ts --env production --plan
//   tsx runbooks/database-connection-issues.ts --env production                       # diagnose, reset the pool if needed
//   tsx runbooks/database-connection-issues.ts --env production --terminate-blockers --older-than 10m

import { checkPostgresConnections, pgTarget, withClient } from '@drkit/postgres-backup';
import { defineRunbook, isMain, parseDuration, RunbookError, runbookCli, type StepContext, waitHealthy } from '@drkit/runbook';
import { z } from 'zod';
import {
  type Blocker,
  describeSession,
  findPgIsready,
  formatAge,
  formatCounts,
  type Pressure,
  readSnapshot,
  type Session,
  type Termination,
  terminateSession,
} from './lib/connections.ts';
import { databaseName, databaseUrl, PLATFORM_SECRETS, platformOf, required } from './lib/platform.ts';
import { describeRecover, probeHealth, type RestartOutcome, recoverService } from './lib/service.ts';

const params = z.object({
  terminateBlockers: z
    .boolean()
    .default(false)
    .describe('end the sessions at the head of lock chains (pg_terminate_backend) whose transaction is older than --older-than'),
  terminateIdleInTransaction: z
    .boolean()
    .default(false)
    .describe('end the sessions idle in a transaction for longer than --older-than (their transaction is rolled back)'),
  olderThan: z
    .string()
    .default('5m')
    .refine((value) => {
      try {
        return parseDuration(value) > 0;
      } catch {
        return false;
      }
    }, '--older-than: expected a duration such as 30s, 5m or 1h')
    .describe('only sessions (and lock waits) older than this are ended (and count as still blocked at verification)'),
  restartApp: z
    .enum(['auto', 'always', 'never'])
    .default('auto')
    .describe(
      "reset the application's pool by restarting it: auto when its health check fails, sessions are ended or connections are above --max-usage",
    ),
  maxUsage: z
    .number()
    .int()
    .min(1)
    .max(100)
    .default(80)
    .describe('connections in use (percent of the usable slots) that count as pressure'),
  reason: z.string().default('database connection issues').describe('why, for the incident channel'),
});

type Params = z.output<typeof params>;

/** What the detection steps found, as the decision reads it. */
interface Findings {
  appHealth: { name: string; ok: boolean; detail: string } | null;
  pressure: Pressure;
  idleInTransaction: Session[];
  blockers: Blocker[];
}

/** What to do about the findings. */
interface Actions {
  terminate: { session: Session; why: string }[];
  /** Findings that could be acted on but are not, with the flag that would. */
  leftAlone: string[];
  restartApp: boolean;
  restartWhy: string;
}

/**
 * Decides what to end and whether to restart the application. Only sessions the detection
 * steps found, older than --older-than, and only with the flag that asks for it; a blocker
 * that is not a client session (pid 0 is a prepared transaction, or an autovacuum worker)
 * is never ended here: it is reported for a person to deal with.
 */
function decideActions(p: Params, found: Findings): Actions {
  const olderThanMs = parseDuration(p.olderThan);
  const terminate: Actions['terminate'] = [];
  const leftAlone: string[] = [];
  const seen = new Set<number>();
  for (const blocker of found.blockers) {
    const s = blocker.session;
    const behind = `${blocker.waiters.length} waiting ${blocker.waiters.length === 1 ? 'query' : 'queries'}`;
    if (s === null) {
      leftAlone.push(
        `pid ${blocker.pid} blocks ${behind} but is not a client session (pid 0 is a prepared transaction: see pg_prepared_xacts): deal with it by hand`,
      );
      continue;
    }
    const age = s.xactMs ?? s.stateMs ?? 0;
    if (age < olderThanMs) {
      leftAlone.push(`pid ${s.pid} blocks ${behind}, but its transaction is only ${formatAge(age)} old (--older-than ${p.olderThan})`);
      continue;
    }
    if (!p.terminateBlockers) {
      leftAlone.push(`pid ${s.pid} blocks ${behind}: not terminated (pass --terminate-blockers to end it)`);
      continue;
    }
    seen.add(s.pid);
    terminate.push({ session: s, why: `blocks ${behind}; transaction open ${formatAge(s.xactMs)}` });
  }
  const blockerPids = new Set(found.blockers.map((b) => b.pid));
  for (const s of found.idleInTransaction) {
    if (seen.has(s.pid)) continue;
    if (!p.terminateIdleInTransaction) {
      // A blocker idle in its transaction has been reported above, with the flag that ends it.
      if (blockerPids.has(s.pid)) continue;
      leftAlone.push(
        `pid ${s.pid} is idle in transaction for ${formatAge(s.stateMs)}: not terminated (pass --terminate-idle-in-transaction)`,
      );
      continue;
    }
    seen.add(s.pid);
    terminate.push({ session: s, why: `idle in transaction for ${formatAge(s.stateMs)}` });
  }

  const reasons = [
    ...(found.appHealth !== null && !found.appHealth.ok ? [`health check ${found.appHealth.name} fails (${found.appHealth.detail})`] : []),
    ...(terminate.length > 0
      ? [
          `${terminate.length} session(s) will be ended: the application's pool may hold connections that were among them or waited behind them`,
        ]
      : []),
    ...(found.pressure.percent >= p.maxUsage
      ? [`${found.pressure.percent}% of the usable connections are in use (--max-usage ${p.maxUsage})`]
      : []),
  ];
  const restartApp = p.restartApp === 'always' || (p.restartApp === 'auto' && reasons.length > 0);
  const restartWhy =
    p.restartApp === 'never'
      ? '--restart-app never'
      : p.restartApp === 'always'
        ? `--restart-app always${reasons.length > 0 ? `; ${reasons.join('; ')}` : ''}`
        : reasons.length > 0
          ? reasons.join('; ')
          : 'the application is healthy and connections are not under pressure';
  return { terminate, leftAlone, restartApp, restartWhy };
}

const databaseConnectionIssues = defineRunbook({
  id: 'database-connection-issues',
  title: 'Relieve database connection issues: readiness, pressure, lock chains, pool reset',
  description:
    'Checks PostgreSQL with pg_isready and SELECT 1, reports connection pressure and lock chains, ends the sessions found when asked, restarts the application to reset its pool, and verifies.',
  // The second plan files "database connection issues" under category 2 (service outage,
  // severity high): the application cannot reach its data, so it is down for its users.
  severity: 'sev2',
  category: 2,
  impact: 'The application cannot get database connections; sessions may be ended and the application restarted',
  // The plan's RTO table: the API (read-only) must be back within 15 minutes, and a
  // connection problem takes reads down too. The procedure is a check and a pool reset (no
  // restore), so it is held to that objective; past it, the database itself is the problem
  // and the database runbooks (1 hour) take over.
  rto: '15m',
  params,
  phases: { detection: '5m', decision: '2m', remediation: '5m', verification: '3m' },
  secrets: {
    ...PLATFORM_SECRETS,
    // Nothing here opens a backup: relieving connections must not wait for whoever holds the backup key.
    backupKey: { ...PLATFORM_SECRETS.backupKey, optional: true },
  },
  steps: (step) => {
    const readiness = step({
      id: 'readiness',
      title: "Check the database's readiness (pg_isready, connect + SELECT 1) and the application's health",
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      plan: (ctx) => {
        const target = pgTarget(required(ctx, 'postgres').url);
        const app = platformOf(ctx).app;
        return [
          `pg_isready -h ${target.host} -p ${target.port} -d ${target.database} -U ${target.user} -t 5 (beside psql, else on PATH)`,
          `connect to ${target.description} and run SELECT 1, 5 s deadline each`,
          app === undefined
            ? 'no vars.app: no application health check'
            : `probe health check ${app.health}: ${ctx.health(app.health).describe()}`,
        ];
      },
      run: async (ctx) => {
        const target = pgTarget(databaseUrl(ctx));
        const tool = await findPgIsready();
        let pgIsready: { path: string; exitCode: number; output: string } | null = null;
        if (tool === undefined) ctx.log.warn('pg_isready was not found (install postgresql-client): relying on connect + SELECT 1');
        else {
          const result = await ctx.shell.exec(
            tool,
            ['-h', target.host, '-p', String(target.port), '-d', target.database, '-U', target.user, '-t', '5'],
            { reject: false, timeoutMs: 15_000 },
          );
          const meaning = [
            'accepting connections',
            'rejecting connections (starting up or shutting down)',
            'no response',
            'no attempt (bad parameters)',
          ][result.exitCode];
          pgIsready = { path: tool, exitCode: result.exitCode, output: (result.stdout || result.stderr).trim() };
          const line = `pg_isready: exit ${result.exitCode}, ${meaning ?? 'unknown'}${pgIsready.output ? ` (${pgIsready.output})` : ''}`;
          if (result.exitCode === 0) ctx.log.info(line);
          else ctx.log.warn(line);
        }
        const check = await checkPostgresConnections(target, { connectTimeoutMs: 5000 });
        const app = platformOf(ctx).app;
        let appHealth: Findings['appHealth'] = null;
        if (app !== undefined) {
          const result = await probeHealth(ctx, ctx.health(app.health), 2);
          appHealth = { name: app.health, ok: result.ok, detail: result.detail };
          if (result.ok) ctx.log.info(`health check ${app.health} passes: ${result.detail}`);
          else ctx.log.warn(`health check ${app.health} FAILS: ${result.detail}`);
        }
        if (!check.ready) {
          // Not ready is not a connection-pool problem: nothing below can help.
          throw new RunbookError(
            'RUNBOOK_HEALTH_FAILED',
            `PostgreSQL at ${target.description} is not ready: ${check.findings.join('; ') || check.error?.message || 'no answer'}. ` +
              `This runbook relieves connections on a running server; a server that is down needs restarting${platformOf(ctx).postgres?.service ? ` (service ${platformOf(ctx).postgres?.service})` : ''} or the database runbooks.`,
          );
        }
        ctx.log.info(
          `PostgreSQL ${check.serverVersion} answered SELECT 1 in ${check.readyInMs} ms${check.inRecovery ? ' (it is a STANDBY: it refuses writes)' : ''}`,
        );
        return {
          pgIsready,
          readyInMs: check.readyInMs ?? null,
          serverVersion: check.serverVersion ?? null,
          inRecovery: check.inRecovery ?? false,
          appHealth,
        };
      },
    });

    const pressure = step({
      id: 'pressure',
      title: 'Check connection pressure: slots in use by state, application and user; idle transactions',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      plan: (ctx) =>
        `read pg_stat_activity on ${databaseName(ctx)}'s server: client connections against max_connections and superuser_reserved_connections, by state, application, user and database; sessions idle in transaction for more than ${ctx.params.olderThan}`,
      run: async (ctx) => {
        const olderThanMs = parseDuration(ctx.params.olderThan);
        const snapshot = await withClient(pgTarget(databaseUrl(ctx)), (client) => readSnapshot(client), {
          connectTimeoutMs: 5000,
          applicationName: 'drkit runbook',
        });
        const p = snapshot.pressure;
        const level = p.percent >= ctx.params.maxUsage ? 'warn' : 'info';
        ctx.log[level](
          `connections: ${p.used} in use of ${p.usable} usable (${p.percent}%); max_connections ${p.max}, superuser_reserved_connections ${p.superuserReserved}${p.reserved ? `, reserved_connections ${p.reserved}` : ''}`,
        );
        ctx.log.info(`by state: ${formatCounts(p.byState)}`);
        ctx.log.info(`by application: ${formatCounts(p.byApplication)}`);
        ctx.log.info(`by user: ${formatCounts(p.byUser)}`);
        ctx.log.info(`by database: ${formatCounts(p.byDatabase)}`);
        const idle = snapshot.sessions.filter((s) => s.state.startsWith('idle in transaction'));
        const old = idle.filter((s) => (s.stateMs ?? 0) >= olderThanMs).sort((a, b) => (b.stateMs ?? 0) - (a.stateMs ?? 0));
        if (old.length > 0) {
          ctx.log.warn(
            `${old.length} session(s) idle in transaction for more than ${ctx.params.olderThan} (they hold their locks and hold back vacuum):\n${old
              .slice(0, 20)
              .map(describeSession)
              .join('\n')}`,
          );
        } else
          ctx.log.info(`no session idle in transaction for more than ${ctx.params.olderThan} (${idle.length} idle in transaction in all)`);
        return { pressure: p, idleInTransaction: old, idleInTransactionAll: idle.length };
      },
    });

    const blocked = step({
      id: 'blocked',
      title: 'Find queries waiting for locks and the sessions at the head of each chain',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      timeout: '1m',
      plan: () =>
        'pg_blocking_pids() of every backend waiting for a lock, followed to the session at the head of each chain: its query, age and state',
      run: async (ctx) => {
        const snapshot = await withClient(pgTarget(databaseUrl(ctx)), (client) => readSnapshot(client), {
          connectTimeoutMs: 5000,
          applicationName: 'drkit runbook',
        });
        if (snapshot.blockers.length === 0) ctx.log.info('no query is waiting for a lock');
        for (const b of snapshot.blockers) {
          const head = b.session === null ? `pid ${b.pid} (not a client session)` : describeSession(b.session);
          ctx.log.warn(
            `BLOCKER ${head}\n  blocks ${b.waiters.length} ${b.waiters.length === 1 ? 'query' : 'queries'}:\n${b.waiters
              .slice(0, 10)
              .map((w) => `  - pid ${w.pid} (${w.user}, application "${w.application}") waiting ${formatAge(w.waitingMs)}: ${w.query}`)
              .join('\n')}`,
          );
        }
        return { blockers: snapshot.blockers, waiting: snapshot.waiters.length };
      },
    });

    const findingsOf = (ctx: { output: StepContext<Params>['output'] }): Findings => ({
      appHealth: ctx.output(readiness).appHealth,
      pressure: ctx.output(pressure).pressure,
      idleInTransaction: ctx.output(pressure).idleInTransaction,
      blockers: ctx.output(blocked).blockers,
    });

    const decide = step({
      id: 'decide',
      title: 'Decide which sessions to end and whether to reset the pool',
      phase: 'decision',
      gate: 'End the sessions listed (only those the --terminate-* flags allow) and restart the application to reset its connection pool?',
      plan: (ctx) => {
        const actions = decideActions(ctx.params, findingsOf(ctx));
        return [
          ...(actions.terminate.length === 0
            ? ['end no session']
            : actions.terminate.map((t) => `end ${describeSession(t.session)} — ${t.why}`)),
          ...actions.leftAlone.map((l) => `leave alone: ${l}`),
          actions.restartApp ? `restart the application: ${actions.restartWhy}` : `do not restart the application: ${actions.restartWhy}`,
        ];
      },
      run: (ctx) => {
        const actions = decideActions(ctx.params, findingsOf(ctx));
        for (const l of actions.leftAlone) ctx.log.warn(`left alone: ${l}`);
        ctx.log.info(
          `${actions.terminate.length} session(s) to end; ${actions.restartApp ? 'restart' : 'no restart of'} the application (${actions.restartWhy})`,
        );
        return { ...actions, reason: ctx.params.reason };
      },
    });

    const terminate = step({
      id: 'terminate',
      title: 'End the sessions found (pg_terminate_backend), each only if it is still the same session and transaction',
      phase: 'remediation',
      destructive: true,
      idempotent: true,
      timeout: '2m',
      plan: (ctx) => {
        let actions: Actions;
        try {
          actions = decideActions(ctx.params, findingsOf(ctx));
        } catch {
          // --plan: nothing has been found yet.
          const flags = [
            ...(ctx.params.terminateBlockers
              ? [`the sessions at the head of lock chains whose transaction is older than ${ctx.params.olderThan}`]
              : []),
            ...(ctx.params.terminateIdleInTransaction ? [`the sessions idle in transaction for more than ${ctx.params.olderThan}`] : []),
          ];
          return flags.length === 0
            ? 'nothing: neither --terminate-blockers nor --terminate-idle-in-transaction was given'
            : flags.map((f) => `SELECT pg_terminate_backend(pid) for ${f} (their open transactions are rolled back)`);
        }
        return actions.terminate.length === 0
          ? 'nothing to end'
          : actions.terminate.map(
              (t) => `SELECT pg_terminate_backend(${t.session.pid}): ${describeSession(t.session)} (its transaction is rolled back)`,
            );
      },
      run: async (ctx) => {
        const { terminate: chosen } = ctx.output(decide);
        if (chosen.length === 0) {
          ctx.log.info('no session to end');
          return { terminations: [] as Termination[] };
        }
        const terminations = await withClient(
          pgTarget(databaseUrl(ctx)),
          async (client) => {
            const out: Termination[] = [];
            for (const { session, why } of chosen) {
              // The journal keeps what is about to be rolled back: the record of what was lost.
              ctx.log.warn(`ending ${describeSession(session)} (${why})`);
              const result = await terminateSession(client, session, { sleep: (ms) => ctx.sleep(ms) });
              ctx.log.info(`pid ${result.pid}: ${result.detail}`);
              out.push(result);
            }
            return out;
          },
          { connectTimeoutMs: 5000, applicationName: 'drkit runbook' },
        );
        return { terminations };
      },
    });

    const restartApp = step({
      id: 'restart-app',
      title: 'Restart the application to reset its connection pool',
      phase: 'remediation',
      destructive: true,
      idempotent: true,
      timeout: '10m',
      plan: (ctx) => {
        const app = platformOf(ctx).app;
        if (app === undefined) return 'no vars.app: restart the application by hand if its pool holds dead connections';
        let why: string;
        try {
          const actions = decideActions(ctx.params, findingsOf(ctx));
          if (!actions.restartApp) return `nothing: ${actions.restartWhy}`;
          why = actions.restartWhy;
        } catch {
          if (ctx.params.restartApp === 'never') return 'nothing: --restart-app never';
          why = ctx.params.restartApp === 'always' ? '--restart-app always' : 'if the findings call for it (--restart-app auto)';
        }
        return [
          `restart ${app.services.join(', ')} in order (${why}):`,
          ...app.services.flatMap((name) => describeRecover(ctx, name)),
          `then wait until health check ${app.health} passes: ${ctx.health(app.health).describe()}`,
        ];
      },
      run: async (ctx) => {
        const actions = ctx.output(decide);
        ctx.output(terminate);
        const app = platformOf(ctx).app;
        if (!actions.restartApp) {
          ctx.log.info(`not restarting the application: ${actions.restartWhy}`);
          return { restarted: [] as RestartOutcome[] };
        }
        if (app === undefined) {
          ctx.log.warn('no vars.app: restart the application by hand if its pool holds dead connections');
          return { restarted: [] as RestartOutcome[] };
        }
        const restarted: RestartOutcome[] = [];
        for (const name of app.services) restarted.push(await recoverService(ctx, name));
        await waitHealthy(ctx.health(app.health), { timeoutMs: 120_000, clock: ctx.clock, signal: ctx.signal, log: ctx.log });
        return { restarted };
      },
    });

    const verify = step({
      id: 'verify',
      title: 'Verify: the application is healthy, a fresh connection works, pressure and lock waits are gone',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      timeout: '5m',
      plan: (ctx) => {
        const app = platformOf(ctx).app;
        return [
          ...(app === undefined ? [] : [`health check ${app.health} passes (up to 1 minute)`]),
          `a fresh connection to ${databaseName(ctx)} answers SELECT 1 within 5 s`,
          `connections in use below ${ctx.params.maxUsage}% of the usable slots; no query waiting for a lock for more than ${ctx.params.olderThan}; every session ended is gone`,
        ];
      },
      run: async (ctx) => {
        ctx.output(restartApp);
        const { terminations } = ctx.output(terminate);
        const olderThanMs = parseDuration(ctx.params.olderThan);
        const problems: string[] = [];
        const app = platformOf(ctx).app;
        let health: string | null = null;
        if (app !== undefined) {
          try {
            health = (await waitHealthy(ctx.health(app.health), { timeoutMs: 60_000, clock: ctx.clock, signal: ctx.signal, log: ctx.log }))
              .detail;
          } catch (error) {
            if (ctx.signal.aborted) throw error;
            problems.push(error instanceof Error ? error.message : String(error));
          }
        }
        const started = Date.now();
        const snapshot = await withClient(
          pgTarget(databaseUrl(ctx)),
          async (client) => {
            await client.query({ text: 'SELECT 1', query_timeout: 5000 } as never);
            return readSnapshot(client);
          },
          { connectTimeoutMs: 5000, applicationName: 'drkit runbook' },
        );
        const freshMs = Date.now() - started;
        const p = snapshot.pressure;
        ctx.log.info(
          `a fresh connection answered in ${freshMs} ms; connections: ${p.used} of ${p.usable} usable (${p.percent}%), by state: ${formatCounts(p.byState)}`,
        );
        if (p.percent >= ctx.params.maxUsage)
          problems.push(
            `${p.used} of ${p.usable} usable connections are still in use (${p.percent}% ≥ --max-usage ${ctx.params.maxUsage}); by application: ${formatCounts(p.byApplication)}`,
          );
        const stillWaiting = snapshot.blockers
          .map((b) => ({ ...b, waiters: b.waiters.filter((w) => w.waitingMs >= olderThanMs) }))
          .filter((b) => b.waiters.length > 0);
        for (const b of stillWaiting)
          problems.push(
            `${b.waiters.length} ${b.waiters.length === 1 ? 'query still waits' : 'queries still wait'} for a lock (up to ${formatAge(Math.max(...b.waiters.map((w) => w.waitingMs)))}) behind ${
              b.session === null ? `pid ${b.pid}` : describeSession(b.session)
            }${ctx.params.terminateBlockers ? '' : ': end it with --terminate-blockers'}`,
          );
        const livePids = new Set(snapshot.sessions.map((s) => s.pid));
        for (const t of terminations)
          if (t.outcome === 'terminated' && livePids.has(t.pid)) problems.push(`pid ${t.pid} was terminated but is still connected`);
        if (problems.length > 0) throw new RunbookError('RUNBOOK_VERIFY_FAILED', `not recovered: ${problems.join('; ')}`);
        ctx.log.info('recovered: the application is healthy, connections are below the threshold and no query waits on a lock');
        return { health, freshConnectionMs: freshMs, used: p.used, usable: p.usable, percent: p.percent };
      },
    });

    return [readiness, pressure, blocked, decide, terminate, restartApp, verify];
  },
});

export default databaseConnectionIssues;

if (isMain(import.meta.url)) await runbookCli(databaseConnectionIssues);
