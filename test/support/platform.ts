// A whole platform of the plans on this machine, for the runbooks' end-to-end tests: real
// PostgreSQL (the app database), a redis-server run as a daemon by a `command` service
// controller (so a runbook can stop and start it as it would a systemd unit), two S3 servers
// standing for the primary and replica regions, the demo app with its uploads dir and .env,
// a Slack stand-in that records what it receives, and a drkit config whose `sandbox`
// environment points at all of it. Runbooks run as their own processes, the way people run
// them: `node --import tsx runbooks/<name>.ts --env sandbox --config <file> ...`.

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { generateKey, type Keyring, parseKeyFile } from '@drkit/crypto-stream';
import { backupFiles, type FilesBackup } from '@drkit/file-archive';
import { backupPostgres, type PostgresBackup } from '@drkit/postgres-backup';
import { backupRedis, type RedisBackup } from '@drkit/redis-backup';
import { createCommandController, createShell, type ServiceController, silentLogger } from '@drkit/runbook';
import { type Catalog, createCatalog, type Manifest, openStore } from '@drkit/s3-store';
import { getFreePort, type PostgresSandbox, type S3Sandbox, startPostgres, startS3 } from '@drkit/sandbox';
import pg from 'pg';
import { demoAppService, seedDemo } from '../../examples/demo-app/src/index.ts';
import { type HttpRecorder, startHttpRecorder } from '../../packages/runbook/test/support/http-recorder.ts';
import { startRedisDaemon } from '../../runbooks/lib/scratch.ts';
import { backupSecrets } from '../../runbooks/lib/secrets.ts';

/** The repository root. */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** What a runbook process did. */
export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The backups {@link TestPlatform.backupAll} took: the "latest set" a recovery restores. */
export interface BackupSet {
  postgres: PostgresBackup;
  redis: RedisBackup;
  files: FilesBackup;
  secrets: Manifest;
}

/** Options of {@link startPlatform}. */
export interface PlatformOptions {
  /** Start the demo app (through its service controller) once the data is seeded. @default true */
  app?: boolean;
  /** Seed the app's data. @default true */
  seed?: boolean;
  /** Extra `vars` merged into the sandbox environment. */
  vars?: Record<string, unknown>;
  /** Extra environment settings (notify, rto, ...) merged into the sandbox environment. */
  environment?: Record<string, unknown>;
}

/** A running platform; `stop()` ends every process and removes every file. */
export interface TestPlatform {
  dir: string;
  pg: PostgresSandbox;
  /** The app database's URL, with its password. */
  databaseUrl: string;
  /** The app database's name. */
  database: string;
  redis: { port: number; url: string; dataDir: string; controller: ServiceController };
  east: S3Sandbox;
  west: S3Sandbox;
  /** The mirrored store URL of the backups (east primary, west replica). */
  storeUrl: string;
  uploadsDir: string;
  envFile: string;
  app: { port: number; url: string; controller: ServiceController };
  /** The backup key (base64) and the separate secrets key. */
  keys: { backup: string; secrets: string; backupRing: Keyring; secretsRing: Keyring };
  slack: HttpRecorder;
  configPath: string;
  runsDir: string;
  /** The file notifier's timeline (one JSON line per message). */
  timeline: string;
  /** The environment a runbook process gets: credentials, keys, the Slack URL. */
  env: Record<string, string>;
  /** The config as written, to derive variants from. */
  config: { environments: { sandbox: Record<string, unknown> } };
  /** Writes a variant of the config (e.g. another store URL) and returns its path. */
  writeConfig(edit: (sandbox: Record<string, unknown>) => void, name?: string): string;
  /** Runs `fn` with the backups' catalog open. */
  withCatalog<T>(fn: (catalog: Catalog) => Promise<T>): Promise<T>;
  /** Backs up PostgreSQL, Redis (RDB and logical), the uploads and the secrets, as the backup runbook does. */
  backupAll(tier?: 'daily' | 'manual'): Promise<BackupSet>;
  /** Runs `runbooks/<name>.ts` in its own process against the sandbox environment. */
  runbook(name: string, args?: string[], options?: { env?: Record<string, string>; input?: string; config?: string }): Promise<Outcome>;
  /** A fresh connection to the app database (end it when done). */
  sql<T>(fn: (client: pg.Client) => Promise<T>, database?: string): Promise<T>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();

/** Runs node with `args` from the repo root and collects its output. */
export function runNode(args: string[], env: Record<string, string>, input?: string): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.stdin.end(input ?? '');
    child.on('error', reject);
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** Kills whatever a pid file names, and waits until it is gone. */
async function killPidFile(pidFile: string): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(50);
  }
}

/** Starts the whole platform. */
export async function startPlatform(options: PlatformOptions = {}): Promise<TestPlatform> {
  const dir = mkdtempSync(join(tmpdir(), 'drkit-platform-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const stop = async () => {
    for (const child of children) child.kill('SIGKILL');
    for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => {});
  };
  try {
    const [pgServer, east, west, slack] = await Promise.all([
      startPostgres(),
      startS3({ region: 'us-east-1' }),
      startS3({ region: 'us-west-2' }),
      startHttpRecorder(),
    ]);
    cleanups.push(
      () => pgServer.stop(),
      () => east.stop(),
      () => west.stop(),
      () => slack.close(),
    );
    const database = 'app';
    const admin = new pg.Client(pgServer.connection());
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    const databaseUrl = pgServer.url(database);
    const publicDbUrl = `postgres://${encodeURIComponent(pgServer.user)}@${pgServer.host}:${pgServer.port}/${database}`;

    // redis-server as a daemon with a pid file: what a runbook stops and starts.
    const redisDaemon = await startRedisDaemon(join(dir, 'redis'));
    cleanups.push(() => killPidFile(redisDaemon.pidFile));
    const { port: redisPort, url: redisUrl, dataDir: redisData, service: redisService, controller: redisController } = redisDaemon;

    const uploadsDir = join(dir, 'srv', 'uploads');
    const envFile = join(dir, 'srv', '.env');
    mkdirSync(uploadsDir, { recursive: true });
    writeFileSync(
      envFile,
      `API_KEY="${randomBytes(8).toString('hex')}"\nJWT_SECRET="${randomBytes(16).toString('hex')}"\nDATABASE_URL="${publicDbUrl}"\n`,
      {
        mode: 0o600,
      },
    );

    const appPort = await getFreePort();
    const appDir = join(dir, 'app');
    mkdirSync(appDir, { recursive: true });
    const appService = demoAppService({
      dir: appDir,
      port: appPort,
      databaseUrl,
      redisUrl,
      uploadsDir,
    });
    const appController = createCommandController('app', appService, { shell: createShell(), log: silentLogger });
    cleanups.push(() => killPidFile(appService.pidFile));

    if (options.seed !== false) await seedDemo({ databaseUrl, redisUrl, uploadsDir });
    if (options.app !== false) await appController.start();

    const keyText = generateKey().toString('base64');
    const secretsKeyText = generateKey().toString('base64');
    const backupRing = parseKeyFile(keyText);
    const secretsRing = parseKeyFile(secretsKeyText);
    const storeUrl = `s3://drkit/backups?region=us-east-1&endpoint=${east.endpoint},s3://drkit/backups?region=us-west-2&endpoint=${west.endpoint}`;
    const runsDir = join(dir, 'runs');
    const timeline = join(dir, 'timeline.jsonl');

    const sandbox: Record<string, unknown> = {
      description: 'the platform of the end-to-end tests',
      product: 'Jarvis',
      stores: { backups: storeUrl },
      services: { app: appService, redis: redisService },
      health: {
        app: { type: 'http', url: `http://127.0.0.1:${appPort}/health`, expectStatus: 200, timeoutMs: 3000 },
        db: { type: 'postgres', url: publicDbUrl, passwordEnv: 'PGPASSWORD', query: 'SELECT 1' },
        cache: { type: 'redis', url: redisUrl },
      },
      notify: {
        chat: { type: 'slack', webhookUrl: { env: 'SLACK_WEBHOOK_URL' } },
        timeline: { type: 'file', path: timeline },
      },
      vars: {
        backups: 'backups',
        postgres: { url: publicDbUrl },
        redis: { url: redisUrl, service: 'redis', dataDir: redisData, dbFilename: 'dump.rdb' },
        files: { root: uploadsDir },
        app: { services: ['app'], health: 'app', statusUrl: `http://127.0.0.1:${appPort}/api/status` },
        envFile,
        ...options.vars,
      },
      runsDir,
      ...options.environment,
    };
    const config = { environments: { sandbox } };
    const writeConfig = (edit: (s: Record<string, unknown>) => void, name = 'drkit.config.json') => {
      const copy = structuredClone(config);
      edit(copy.environments.sandbox);
      const path = join(dir, name);
      writeFileSync(path, JSON.stringify(copy, null, 2));
      return path;
    };
    const configPath = writeConfig(() => {});

    // Each store URL names its endpoint; a global endpoint variable would send both regions to one server.
    const { AWS_ENDPOINT_URL_S3: _endpoint, ...awsEnv } = east.env();
    const env: Record<string, string> = {
      ...awsEnv,
      DRKIT_KEY: keyText,
      DRKIT_SECRETS_KEY: secretsKeyText,
      PGPASSWORD: pgServer.password,
      SLACK_WEBHOOK_URL: `${slack.url}/hooks/incident`,
      DRKIT_OPERATOR: 'e2e-test',
    };

    const withCatalog = async <T>(fn: (catalog: Catalog) => Promise<T>): Promise<T> => {
      const store = openStore(storeUrl, { s3: { credentials: east.credentials } });
      try {
        return await fn(createCatalog(store));
      } finally {
        await store.close();
      }
    };

    const platform: TestPlatform = {
      dir,
      pg: pgServer,
      databaseUrl,
      database,
      redis: { port: redisPort, url: redisUrl, dataDir: redisData, controller: redisController },
      east,
      west,
      storeUrl,
      uploadsDir,
      envFile,
      app: { port: appPort, url: `http://127.0.0.1:${appPort}`, controller: appController },
      keys: { backup: keyText, secrets: secretsKeyText, backupRing, secretsRing },
      slack,
      configPath,
      runsDir,
      timeline,
      env,
      config,
      writeConfig,
      withCatalog,
      backupAll: (tier = 'daily') =>
        withCatalog(async (catalog) => ({
          postgres: await backupPostgres({ url: databaseUrl, catalog, keys: backupRing, tier }),
          redis: await backupRedis({ url: redisUrl, catalog, keys: backupRing, tier, mode: 'both' }),
          files: await backupFiles({ dir: uploadsDir, catalog, keys: backupRing, tier }),
          secrets: await backupSecrets({
            catalog,
            secrets: { envFile },
            keys: { secretsKey: secretsRing, backupKey: backupRing },
            tier,
          }),
        })),
      runbook: (name, args = [], runOptions = {}) =>
        runNode(
          [
            '--import',
            'tsx',
            join(REPO, 'runbooks', `${name}.ts`),
            '--env',
            'sandbox',
            '--config',
            runOptions.config ?? configPath,
            ...args,
          ],
          { ...env, ...runOptions.env },
          runOptions.input,
        ),
      sql: async (fn, db = database) => {
        const client = new pg.Client(pgServer.connection(db));
        await client.connect();
        try {
          return await fn(client);
        } finally {
          await client.end();
        }
      },
      stop,
    };
    return platform;
  } catch (error) {
    await stop();
    throw error;
  }
}
