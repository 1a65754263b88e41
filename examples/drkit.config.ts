// An example config: the environments the runbooks in runbooks/ run against, `--env production`,
// `--env staging` or `--env sandbox`. Copy it to your repository's root as drkit.config.ts (or
// pass `--config examples/drkit.config.ts`). The `vars` section is what the recovery runbooks
// read about the platform (runbooks/lib/platform.ts has its schema; runbooks/README.md explains
// each field). Secrets are never written here: only the variables (or files) that hold them.
//
//   production  Kubernetes (the second plan's deployments), RDS-style PostgreSQL, backups in
//               S3 us-east-1 with a us-west-2 replica, Slack #incidents and the status page.
//   staging     Docker Compose on one host (the first plan's layout), backups on local disk
//               and S3.
//   sandbox     this machine: the services `pnpm drill` or a developer starts locally, found
//               through DRKIT_SANDBOX_* variables (defaults are the usual local ports).

import { fileURLToPath } from 'node:url';
import { defineConfig } from '@drkit/runbook';

// The repository, where the demo app of the sandbox environment lives (and tsx resolves).
const repo = fileURLToPath(new URL('..', import.meta.url));

const sandbox = {
  pg: process.env.DRKIT_SANDBOX_PG ?? 'postgres://postgres@127.0.0.1:5432/app',
  redis: process.env.DRKIT_SANDBOX_REDIS ?? 'redis://127.0.0.1:6379/0',
  app: process.env.DRKIT_SANDBOX_APP ?? 'http://127.0.0.1:4000',
  dir: process.env.DRKIT_SANDBOX_DIR ?? '/tmp/drkit-sandbox',
  store: process.env.DRKIT_SANDBOX_STORE ?? 'file:///tmp/drkit-sandbox/backups',
};

export default defineConfig({
  defaults: {
    product: 'Jarvis',
    // The plans: status page updates every 15 minutes during incidents.
    updateEvery: '15m',
  },
  environments: {
    production: {
      description: 'the production cluster (Kubernetes, us-east-1)',
      production: true,
      // The first plan's backup storage: local disk, then S3 us-east-1 with its us-west-2 replica
      // (a mirrored store: a backup completes when every copy is written and verified).
      stores: {
        backups:
          'file:///var/backups/jarvis,s3://jarvis-backups/backups?region=us-east-1&sse=AES256,s3://jarvis-backups-replica/backups?region=us-west-2&sse=AES256',
      },
      secrets: { backupKey: { file: '/etc/drkit/backup.keys' }, secretsKey: { file: '/etc/drkit/secrets.key' } },
      services: {
        api: { type: 'kubernetes', name: 'jarvis-api', namespace: 'jarvis', replicas: 2 },
        bot: { type: 'kubernetes', name: 'jarvis-telegram-bot', namespace: 'jarvis', replicas: 1 },
        treasury: { type: 'kubernetes', name: 'jarvis-treasury-bot', namespace: 'jarvis', replicas: 1 },
        redis: { type: 'kubernetes', kind: 'statefulset', name: 'redis', namespace: 'jarvis' },
      },
      health: {
        api: { type: 'http', url: 'https://api.jarvis.local/health', expectStatus: 200 },
        db: {
          type: 'postgres',
          host: 'jarvis-prod-postgres.internal',
          user: 'jarvis_user',
          database: 'jarvis_db',
          passwordEnv: 'PGPASSWORD',
        },
        cache: { type: 'redis', url: 'redis://redis.jarvis.svc:6379/0', passwordEnv: 'REDISCLI_AUTH' },
      },
      notify: {
        incidents: { type: 'slack', webhookUrl: { env: 'SLACK_WEBHOOK_URL' }, channel: '#jarvis-incidents' },
        statusPage: { type: 'webhook', url: { env: 'STATUS_PAGE_WEBHOOK_URL' } },
        timeline: { type: 'file', path: '/var/log/drkit/incidents.jsonl' },
      },
      lock: { store: 's3://jarvis-backups/locks?region=us-east-1' },
      vars: {
        backups: 'backups',
        postgres: {
          url: 'postgres://jarvis_user@jarvis-prod-postgres.internal:5432/jarvis_db',
          // Point-in-time recoveries make a new server here (the plan's "-recovery" instance).
          pitr: { dir: '/var/lib/postgresql/recovery', osUser: 'postgres', port: 5433 },
        },
        redis: { url: 'redis://redis.jarvis.svc:6379/0', service: 'redis', dataDir: '/data', dbFilename: 'dump.rdb' },
        files: { root: '/var/lib/jarvis/uploads' },
        app: {
          services: ['api', 'bot', 'treasury'],
          health: 'api',
          statusUrl: 'https://api.jarvis.local/api/status',
          migrate: 'kubectl -n jarvis exec deploy/jarvis-api -- npm run db:migrate',
        },
        envFile: '/etc/jarvis/.env',
        // The backup runbook's tiers and retention, and the RPO verify-backups holds them to:
        // the first plan's daily/weekly/monthly tiers plus the second plan's hourly one, whose
        // RPO table gives user data 1 hour. Trading transactions' RPO 0 needs synchronous
        // replication; the daily base backup plus the WAL archive (archive_command = drkit
        // wal-push) give point-in-time recovery (docs/PITR.md).
        backup: {
          components: ['postgres', 'postgres-base', 'redis', 'files', 'config', 'secrets'],
          configFiles: ['/etc/jarvis/docker-compose.yml', '/etc/jarvis/nginx.conf'],
          tiers: {
            hourly: { schedule: '0 * * * *', components: ['postgres', 'redis', 'files'] },
            daily: { schedule: '0 2 * * *' },
            weekly: { schedule: '0 3 * * 0', fullFiles: true },
            monthly: { schedule: '0 4 1 * *', fullFiles: true },
          },
          retention: { keepHourly: 168, keepDaily: 30, keepWeekly: 4, keepMonthly: 12 },
          rpo: {
            postgres: '1h',
            'postgres-base': '24h',
            'redis-rdb': '1h',
            'redis-logical': '1h',
            files: '1h',
            config: '24h',
            secrets: '24h',
          },
          metricsFile: '/var/lib/node_exporter/textfile/drkit.prom',
        },
        // The monthly drill rebuilds production's backups into scratch servers on the drill host
        // and starts the application from its checkout there (the drill sets DRKIT_SCRATCH_*).
        drill: {
          app: {
            start:
              'DATABASE_URL="$DRKIT_SCRATCH_DATABASE_URL" REDIS_URL="$DRKIT_SCRATCH_REDIS_URL" UPLOADS_DIR="$DRKIT_SCRATCH_FILES_DIR" PORT="$DRKIT_SCRATCH_PORT" PID_FILE="$DRKIT_SCRATCH_PID_FILE" setsid node dist/server.js >> "$DRKIT_SCRATCH_LOG_FILE" 2>&1 < /dev/null &',
            cwd: '/opt/jarvis',
            healthPath: '/health',
            statusPath: '/api/status',
            migrate: 'cd /opt/jarvis && DATABASE_URL="$DRKIT_SCRATCH_DATABASE_URL" npm run db:migrate',
          },
        },
        hooks: {
          blockIngress: 'kubectl apply -f k8s/emergency/block-ingress.yaml',
          unblockIngress: 'kubectl delete -f k8s/emergency/block-ingress.yaml',
          secureKeys: './scripts/treasury/secure-keys.sh',
          rotateSecrets: './scripts/rotate_all_secrets.sh',
          redeploy: 'helm upgrade jarvis ./helm/jarvis --set image.tag="$DRKIT_KNOWN_GOOD"',
          collectLogs: 'kubectl -n jarvis logs -l app=jarvis-api --since-time="$DRKIT_SINCE" --tail=-1',
        },
      },
    },
    staging: {
      description: 'staging: Docker Compose on one host, as in the first plan',
      stores: { backups: 'file:///var/backups/jarvis,s3://jarvis-staging-backups/backups?region=us-east-1' },
      services: {
        api: { type: 'compose', service: 'api', file: '/srv/jarvis/docker-compose.yml' },
        postgres: { type: 'compose', service: 'postgres', file: '/srv/jarvis/docker-compose.yml' },
        redis: { type: 'compose', service: 'redis', file: '/srv/jarvis/docker-compose.yml' },
      },
      health: {
        api: { type: 'http', url: 'http://localhost:4000/health', expectStatus: 200 },
        db: { type: 'postgres', host: 'localhost', user: 'jarvis_user', database: 'jarvis_db', passwordEnv: 'PGPASSWORD' },
        cache: { type: 'redis', url: 'redis://localhost:6379/0' },
      },
      notify: { incidents: { type: 'slack', webhookUrl: { env: 'SLACK_WEBHOOK_URL' }, channel: '#incidents' } },
      vars: {
        postgres: { url: 'postgres://jarvis_user@localhost:5432/jarvis_db', service: 'postgres', pitr: { dir: '/srv/jarvis/recovery' } },
        redis: { url: 'redis://localhost:6379/0', service: 'redis', dataDir: '/srv/jarvis/redis-data' },
        files: { root: '/srv/jarvis/uploads' },
        app: {
          services: ['api'],
          health: 'api',
          statusUrl: 'http://localhost:4000/api/status',
          migrate: 'docker compose -f /srv/jarvis/docker-compose.yml run --rm api npm run db:migrate',
        },
        envFile: '/srv/jarvis/.env',
      },
    },
    sandbox: {
      description: 'services on this machine (DRKIT_SANDBOX_* variables say where)',
      stores: { backups: sandbox.store },
      services: {
        app: {
          type: 'command',
          start: `DATABASE_URL='${sandbox.pg}' REDIS_URL='${sandbox.redis}' UPLOADS_DIR='${sandbox.dir}/uploads' DEMO_PORT='${new URL(sandbox.app).port}' DEMO_PID_FILE='${sandbox.dir}/demo-app.pid' node --import tsx examples/demo-app/src/server.ts > '${sandbox.dir}/demo-app.log' 2>&1 &`,
          cwd: repo,
          pidFile: `${sandbox.dir}/demo-app.pid`,
          logs: `tail -n "\${DRKIT_LOG_LINES:-100}" '${sandbox.dir}/demo-app.log'`,
        },
      },
      health: {
        app: { type: 'http', url: `${sandbox.app}/health`, expectStatus: 200 },
        cache: { type: 'redis', url: sandbox.redis },
      },
      notify: { console: { type: 'stdout' }, timeline: { type: 'file', path: `${sandbox.dir}/incidents.jsonl` } },
      vars: {
        postgres: { url: sandbox.pg, pitr: { dir: `${sandbox.dir}/recovery` } },
        redis: { url: sandbox.redis },
        files: { root: `${sandbox.dir}/uploads` },
        app: {
          services: ['app'],
          health: 'app',
          statusUrl: `${sandbox.app}/api/status`,
          migrate: `cd '${repo}' && DATABASE_URL='${sandbox.pg}' node --import tsx examples/demo-app/src/migrate.ts`,
        },
        envFile: `${sandbox.dir}/.env`,
        // The DR drill rebuilds into scratch servers it starts itself; this is how the demo app
        // starts against them (the drill sets the DRKIT_SCRATCH_* variables).
        drill: {
          app: {
            start:
              'DATABASE_URL="$DRKIT_SCRATCH_DATABASE_URL" REDIS_URL="$DRKIT_SCRATCH_REDIS_URL" UPLOADS_DIR="$DRKIT_SCRATCH_FILES_DIR" DEMO_PORT="$DRKIT_SCRATCH_PORT" DEMO_PID_FILE="$DRKIT_SCRATCH_PID_FILE" setsid node --import tsx examples/demo-app/src/server.ts >> "$DRKIT_SCRATCH_LOG_FILE" 2>&1 < /dev/null &',
            cwd: repo,
            healthPath: '/health',
            statusPath: '/api/status',
            migrate: `cd '${repo}' && DATABASE_URL="$DRKIT_SCRATCH_DATABASE_URL" node --import tsx examples/demo-app/src/migrate.ts`,
          },
        },
      },
    },
  },
});
