import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { generateKey } from '@drkit/crypto-stream';
import { isAlive, type RedisSandbox, startRedis } from '@drkit/sandbox';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisEventPrinter } from '../src/commands/redis.js';
import { EXIT } from '../src/index.js';
import { cliRunner, memoryIo } from './io.js';

interface Listed {
  id: string;
  kind: string;
  tier: string;
  object: { key: string };
  source: { description: string; environment?: string };
  labels?: Record<string, string>;
}

const KEY = generateKey();
const PASSWORD = 'S3cret-redis-pw-42';
const WRONG_PASSWORD = 'Wr0ngSecret-redis-77';
const APP_PASSWORD = 'app-S3cret-no-sync-9';
const ID = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;

let source: RedisSandbox;
const servers: RedisSandbox[] = [];
let dir: string;
let storeDir: string;
let keyFile: string;
/** REDIS_URL (the source, with its password), the store, the key file and PATH (for --stop-command). */
let env: NodeJS.ProcessEnv;
let sourceDigest: string;
let sourceKeys: number;

/** A client for the test: errors go to the failing command, never to an unhandled event. */
function client(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  return redis;
}

async function withClient<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = client(url);
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** DEBUG DIGEST: one hash of every database's keys, values and expiries. */
function digest(url: string): Promise<string> {
  return withClient(url, async (r) => String(await r.call('DEBUG', 'DIGEST')));
}

async function server(options: Parameters<typeof startRedis>[0] = {}): Promise<RedisSandbox> {
  const s = await startRedis(options);
  servers.push(s);
  return s;
}

/** An empty server, or one holding a key of the backup (with another value) and a key of its own. */
async function target(withKeys = false): Promise<RedisSandbox> {
  const s = await server();
  if (withKeys)
    await withClient(s.url(), async (r) => {
      await r.set('str:text', 'local value');
      await r.set('local:only', 'keep me?');
    });
  return s;
}

/** Every type, expiries with odd milliseconds, binary keys, and keys in databases 0 and 3. */
async function fill(url: string): Promise<number> {
  return withClient(url, async (r) => {
    const far = Date.now() + 3_600_000 + 123;
    await r.select(0);
    await r
      .pipeline()
      .set('str:text', 'hello wörld ✓')
      .set('str:int', '12345')
      .set('str:ttl', 'soon')
      .pexpireat('str:ttl', far)
      .set(Buffer.from([0xff, 0x00, 0xfe]), Buffer.from([0x00, 0xc3, 0x28]))
      .hset('hash:h', 'a', '1', 'b', 'two', 'c', '')
      .rpush('list:l', 'a', 'b', 'a', '')
      .sadd('set:s', 'x', 'y', 'z')
      .zadd('zset:z', 'inf', 'plus-inf', '0.1', 'tenth', String(1 / 3), 'third')
      .pexpireat('zset:z', far + 7)
      .exec();
    for (let i = 0; i < 10; i++) await r.xadd('stream:events', '*', 'n', String(i));
    await r.xgroup('CREATE', 'stream:events', 'workers', '0');
    await r.xreadgroup('GROUP', 'workers', 'alice', 'COUNT', 3, 'STREAMS', 'stream:events', '>');
    await r.select(3);
    await r.set('db3:a', 'a');
    await r.set('db3:ttl', 'b', 'PX', 7_200_000);
    let keys = await r.dbsize();
    await r.select(0);
    keys += await r.dbsize();
    return keys;
  });
}

// Neither a Redis password nor the key may ever be printed.
const { drkit, drkitAtTerminal } = cliRunner(
  () => env,
  () => [PASSWORD, WRONG_PASSWORD, APP_PASSWORD, KEY.toString('base64'), KEY.toString('hex')],
  (printed, secret) => expect(printed).not.toContain(secret),
);

async function list(store?: string): Promise<Listed[]> {
  const result = await drkit(['backup', 'list', '--json', ...(store ? ['--store', store] : [])]);
  expect(result.code, result.err).toBe(EXIT.OK);
  return JSON.parse(result.out) as Listed[];
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-cli-redis-'));
  storeDir = join(dir, 'store');
  keyFile = join(dir, 'drkit.key');
  await writeFile(keyFile, `${KEY.toString('base64')}\n`, { mode: 0o600 });
  source = await server({ password: PASSWORD, config: { 'repl-diskless-sync-delay': 0 } });
  sourceKeys = await fill(source.url());
  sourceDigest = await digest(source.url());
  env = {
    REDIS_URL: source.url(),
    DRKIT_STORE: pathToFileURL(storeDir).href,
    DRKIT_KEY_FILE: keyFile,
    PATH: process.env.PATH,
  };
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('drkit backup/restore/verify redis against real servers', () => {
  let rdbId = '';
  let logicalId = '';
  let restored: RedisSandbox;

  it('backup redis (both, from REDIS_URL) prints the RDB and the export ids; their manifests are in the store', async () => {
    const backup = await drkit(['backup', 'redis', '--tier', 'daily', '--env', 'test']);
    expect(backup.code, backup.err).toBe(EXIT.OK);
    const ids = backup.out.trim().split('\n');
    expect(ids).toHaveLength(2);
    [rdbId, logicalId] = ids as [string, string];
    expect(rdbId).toMatch(ID);
    expect(logicalId).toMatch(ID);
    const where = `redis://127.0.0.1:${source.port}/0`;
    expect(backup.err).toContain(`drkit: connecting to ${where}`);
    expect(backup.err).toMatch(
      new RegExp(
        `drkit: stored redis backup of ${where.replace(/\./g, '\\.')}: RDB ${rdbId} \\(\\d+ bytes, RDB version \\d+, \\d+ bytes stored\\); ` +
          `logical export ${logicalId} \\(${sourceKeys} keys, exact, \\d+ bytes stored, DEBUG DIGEST recorded\\), key k\\w+, [\\d.]+ s\\n`,
      ),
    );

    const manifests = await list();
    expect(manifests.find((m) => m.id === rdbId)).toMatchObject({ kind: 'redis-rdb', tier: 'daily', source: { environment: 'test' } });
    expect(manifests.find((m) => m.id === logicalId)).toMatchObject({
      kind: 'redis-logical',
      tier: 'daily',
      source: { description: where, environment: 'test' },
      labels: { encoding: 'exact', rdb: rdbId },
    });
    for (const m of manifests) expect(existsSync(join(storeDir, m.object.key))).toBe(true);
    expect(JSON.stringify(manifests)).not.toContain(PASSWORD);
  });

  it('--url works without REDIS_URL, and --mode logical --encoding ndjson stores one export', async () => {
    const result = await drkit(
      ['backup', 'redis', '--url', source.url(), '--mode', 'logical', '--encoding', 'ndjson', '--store', `${env.DRKIT_STORE}-ndjson`],
      {
        REDIS_URL: undefined,
      },
    );
    expect(result.code, result.err).toBe(EXIT.OK);
    expect(result.out).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}\n$/);
    expect(result.err).toMatch(/logical export \S+ \(\d+ keys, ndjson, /);
    expect((await list(`${env.DRKIT_STORE}-ndjson`)).map((m) => m.kind)).toEqual(['redis-logical']);
  });

  it('a server that refuses SYNC gets a logical export instead, with a warning that no RDB was stored', async () => {
    await withClient(source.url(), (r) => r.call('ACL', 'SETUSER', 'app', 'on', `>${APP_PASSWORD}`, '~*', '+@all', '-sync', '-psync'));
    const store = `${env.DRKIT_STORE}-fallback`;
    const url = `redis://app:${APP_PASSWORD}@127.0.0.1:${source.port}/0`;
    const result = await drkit(['backup', 'redis', '--url', url, '--mode', 'rdb', '--store', store]);
    expect(result.code, result.err).toBe(EXIT.OK);
    const id = result.out.trim();
    expect(id).toMatch(ID);
    expect(result.err).toMatch(
      /^drkit: warning: no RDB backup: redis:\/\/app@127\.0\.0\.1:\d+\/0 refused SYNC \(-NOPERM .*\); a logical export is made instead$/m,
    );
    expect(result.err).toContain(
      `drkit: warning: NO RDB BACKUP was made: redis://app@127.0.0.1:${source.port}/0 refused SYNC (see above); the logical export ${id} was stored instead\n`,
    );
    expect(result.err).toMatch(/: logical export \S+ \(\d+ keys, exact, .*\(\d+ warnings?, see above\)\n$/);
    expect((await list(store)).map((m) => m.kind)).toEqual(['redis-logical']);
  });

  it('a missing URL and bad flags are usage errors; a wrong password fails without printing it', async () => {
    const noUrl = await drkit(['backup', 'redis'], { REDIS_URL: undefined });
    expect(noUrl.code).toBe(EXIT.USAGE);
    expect(noUrl.err).toBe(
      'drkit: no Redis server to back up: pass --url URL or set REDIS_URL (redis://[user:password@]host:6379, rediss:// or unix:///path.sock)\n',
    );
    expect((await drkit(['restore', 'redis', 'latest'], { REDIS_URL: ' ' })).code).toBe(EXIT.USAGE);
    const badMode = await drkit(['backup', 'redis', '--mode', 'aof']);
    expect(badMode.code).toBe(EXIT.USAGE);
    expect(badMode.err).toBe("drkit: --mode must be rdb, logical or both (got 'aof')\n");
    expect((await drkit(['backup', 'redis', '--encoding', 'json'])).code).toBe(EXIT.USAGE);
    expect((await drkit(['backup', 'redis', '--tier', 'yearly'])).code).toBe(EXIT.USAGE);
    expect((await drkit(['restore', 'redis', 'latest', '--policy', 'merge'])).code).toBe(EXIT.USAGE);
    const badScheme = await drkit(['backup', 'redis', '--url', `http://:${WRONG_PASSWORD}@127.0.0.1:${source.port}`]);
    expect(badScheme.code).toBe(EXIT.USAGE);
    expect(badScheme.err).toMatch(/^drkit: --url: the Redis URL has scheme "http:"/);
    const badEnvUrl = await drkit(['backup', 'redis'], { REDIS_URL: `redis://:${WRONG_PASSWORD}@127.0.0.1:${source.port}/zero` });
    expect(badEnvUrl.code).toBe(EXIT.USAGE);
    expect(badEnvUrl.err).toMatch(/^drkit: REDIS_URL: the Redis URL names database "zero"/);

    const wrong = source.url().replace(`:${encodeURIComponent(PASSWORD)}@`, `:${WRONG_PASSWORD}@`);
    expect(wrong).toContain(WRONG_PASSWORD);
    const auth = await drkit(['backup', 'redis', '--url', wrong]);
    expect(auth.code).toBe(EXIT.FAILED);
    expect(auth.err).toMatch(
      new RegExp(
        `drkit: error REDIS_AUTH_FAILED: redis://127\\.0\\.0\\.1:${source.port}/0 rejected the credentials \\(wrong user name or password\\)`,
      ),
    );
    const restoreAuth = await drkit(['restore', 'redis', 'latest'], { REDIS_URL: wrong });
    expect(restoreAuth.code).toBe(EXIT.FAILED);
    expect(restoreAuth.err).toContain('REDIS_AUTH_FAILED');
  });

  it('restore latest into an empty server (REDIS_URL): counts, and the key-by-key verification passes with DEBUG DIGEST equal', async () => {
    restored = await target();
    const result = await drkit(['restore', 'redis', 'latest'], { REDIS_URL: restored.url() });
    expect(result.code, result.err).toBe(EXIT.OK);
    const where = `redis://127.0.0.1:${restored.port}/0`;
    expect(result.out).toMatch(
      new RegExp(
        `^restored backup ${logicalId} \\(.+\\) into ${where.replace(/\./g, '\\.')}: ${sourceKeys} keys restored, 0 skipped \\(they existed\\), 0 expired, [\\d.]+ s\\n`,
      ),
    );
    expect(result.out).not.toContain('snapshot');
    expect(result.out).toContain(
      `verification: ok: ${sourceKeys} of ${sourceKeys} keys of backup ${logicalId} match (type and exact expiry) in databases 0, 3\n`,
    );
    expect(result.out).toContain("DEBUG DIGEST equal to the source's");
    expect(result.err).toContain('drkit: comparing every key with the backup');
    expect(await digest(restored.url())).toBe(sourceDigest);
  });

  it('keys that exist: the default policy refuses naming --policy and --flush and writes nothing; --policy skip keeps them', async () => {
    const busy = await target(true);
    const before = await digest(busy.url());
    const refused = await drkit(['restore', 'redis', logicalId, '--url', busy.url()]);
    expect(refused.code).toBe(EXIT.FAILED);
    expect(refused.err).toMatch(
      /drkit: error REDIS_KEYS_EXIST: 1 key\(s\) of the backup already exist in redis:\/\/127\.0\.0\.1:\d+\/0 \(str:text\): nothing was written\. Choose --policy replace or skip, or --flush/,
    );
    expect(await digest(busy.url())).toBe(before);

    const dry = await drkit(['restore', 'redis', logicalId, '--url', busy.url(), '--dry-run']);
    expect(dry.code).toBe(EXIT.FAILED);
    expect(dry.out).toMatch(/^dry run: nothing was changed\./);
    expect(dry.out).toContain('would refuse: keys exist');
    expect(dry.err).toContain('the restore would be REFUSED: 1 key(s) of the backup already exist in');
    expect(await digest(busy.url())).toBe(before);

    const skip = await drkit(['restore', 'redis', logicalId, '--url', busy.url(), '--policy', 'skip']);
    expect(skip.code, skip.err).toBe(EXIT.OK);
    expect(skip.out).toContain(`${sourceKeys - 1} keys restored, 1 skipped (they existed)`);
    expect(skip.out).toContain('1 other key in the server that the backup does not have (expected: the server was not flushed)');
    expect(await withClient(busy.url(), (r) => r.mget('str:text', 'local:only'))).toEqual(['local value', 'keep me?']);
  });

  it('--dry-run reads the backup, prints the plan and changes nothing, even with --flush', async () => {
    const busy = await target(true);
    const before = await digest(busy.url());
    const backups = (await list()).length;
    const dry = await drkit(['restore', 'redis', 'latest', '--url', busy.url(), '--dry-run', '--flush']);
    expect(dry.code, dry.err).toBe(EXIT.OK);
    expect(dry.out).toMatch(
      new RegExp(`^dry run: nothing was changed\\. Restoring backup ${logicalId} into redis://127\\.0\\.0\\.1:\\d+/0 would:\\n`),
    );
    expect(dry.out).toMatch(/^ {2}\d\. .*snapshot/m);
    expect(dry.out).toMatch(/^ {2}\d\. FLUSHALL/m);
    expect(dry.err).toContain('the backup authenticated in full');
    expect(await digest(busy.url())).toBe(before);
    expect((await list()).length).toBe(backups);
  });

  it('--flush and --policy replace need --yes: refused at once without a terminal (exit 3), asked at a terminal', async () => {
    const busy = await target(true);
    const before = await digest(busy.url());
    const refused = await drkit(['restore', 'redis', 'latest', '--url', busy.url(), '--flush']);
    expect(refused.code).toBe(EXIT.REFUSED);
    expect(refused.out).toBe('');
    expect(refused.err).toMatch(/^drkit: refused: restoring redis:\/\/127\.0\.0\.1:\d+\/0 with --flush would:\n {2}1\. read backup /);
    expect(refused.err).toMatch(/^ {2}2\. save the keys .* as a snapshot backup in the store$/m);
    expect(refused.err).toMatch(/^ {2}3\. FLUSHALL: delete every key of every database of /m);
    expect(refused.err).toContain('drkit: nothing was changed. Pass --yes to restore, or --dry-run');
    const replace = await drkit(['restore', 'redis', 'latest', '--url', busy.url(), '--policy', 'replace', '--no-snapshot']);
    expect(replace.code).toBe(EXIT.REFUSED);
    expect(replace.err).toContain('take NO snapshot (--no-snapshot)');
    expect(replace.err).toContain('keys that exist are OVERWRITTEN');

    const declined = await drkitAtTerminal(['restore', 'redis', 'latest', '--url', busy.url(), '--flush'], 'yes\n');
    expect(declined.code).toBe(EXIT.REFUSED);
    expect(declined.err).toContain(`Type the server's address (127.0.0.1:${busy.port}) to go ahead`);
    expect(declined.err).toContain(`refused: the answer was not '127.0.0.1:${busy.port}'`);
    expect(await digest(busy.url())).toBe(before);

    const confirmed = await drkitAtTerminal(
      ['restore', 'redis', 'latest', '--url', busy.url(), '--policy', 'replace'],
      `127.0.0.1:${busy.port}\n`,
    );
    expect(confirmed.code, confirmed.err).toBe(EXIT.OK);
    expect(confirmed.out).toContain(`${sourceKeys} keys restored, 0 skipped`);
    expect(confirmed.out).toMatch(/^snapshot of the server before the restore: backup \d{8}T\d{9}Z-[0-9a-f]{6}$/m);
    expect(confirmed.out).toContain('1 other key in the server that the backup does not have (expected: the server was not flushed)');
    expect(await withClient(busy.url(), (r) => r.mget('str:text', 'local:only'))).toEqual(['hello wörld ✓', 'keep me?']);
  });

  it('--flush --yes: the server ends equal to the source; its old keys are kept as a snapshot that latest skips', async () => {
    const busy = await target(true);
    const result = await drkit(['restore', 'redis', 'latest', '--url', busy.url(), '--flush', '--yes']);
    expect(result.code, result.err).toBe(EXIT.OK);
    expect(result.out).toContain('the server was emptied first (FLUSHALL)');
    const snapshot = /^snapshot of the server before the restore: backup (\S+)$/m.exec(result.out)?.[1] as string;
    expect(snapshot).toMatch(ID);
    expect(result.out).toContain(`verification: ok: ${sourceKeys} of ${sourceKeys} keys`);
    expect(result.out).toContain("DEBUG DIGEST equal to the source's");
    expect(result.out).not.toContain('other key');
    expect(result.err).toMatch(/drkit: FLUSHALL on redis:\/\/127\.0\.0\.1:\d+\/0/);
    expect(await digest(busy.url())).toBe(sourceDigest);
    expect((await list()).find((m) => m.id === snapshot)?.labels?.snapshot).toBe('true');

    // latest still means the backup; the snapshot restores what was there, and is called out.
    const dry = await drkit(['restore', 'redis', 'latest', '--url', busy.url(), '--dry-run', '--flush']);
    expect(dry.out).toContain(`Restoring backup ${logicalId} into`);
    const back = await target();
    const undo = await drkit(['restore', 'redis', snapshot, '--url', back.url()]);
    expect(undo.code, undo.err).toBe(EXIT.OK);
    expect(undo.err).toContain(`drkit: warning: backup ${snapshot} is a SNAPSHOT of a server as it was before a restore`);
    expect(await withClient(back.url(), (r) => r.mget('str:text', 'local:only'))).toEqual(['local value', 'keep me?']);
  });

  it('verify redis: levels 1 and 2 pass; --url compares a server key by key and names what differs', async () => {
    const one = await drkit(['verify', 'redis', logicalId, '--level', '1'], { DRKIT_KEY_FILE: undefined });
    expect(one.code, one.err).toBe(EXIT.OK);
    expect(one.out).toMatch(/^ok {3}L1 stored bytes: \d+ stored bytes match the manifest\n$/);

    const two = await drkit(['verify', 'redis', logicalId]);
    expect(two.code, two.err).toBe(EXIT.OK);
    expect(two.out).toMatch(/^ok {3}L1 stored bytes: size and SHA-256 match the manifest\n/);
    expect(two.out).toMatch(new RegExp(`^ok {3}L2 decrypt and decode: ${sourceKeys} keys in \\d+ records decrypted and decoded$`, 'm'));
    expect(two.err).toContain(`drkit: verified redis backup ${logicalId} up to level 2: passed`);
    const rdb = await drkit(['verify', 'redis', rdbId, '--level', '2']);
    expect(rdb.code, rdb.err).toBe(EXIT.OK);
    expect(rdb.out).toMatch(/^ok {3}L2 decrypt and decode: RDB version \d+, \d+ bytes, checksum ok$/m);
    expect((await drkit(['verify', 'redis', logicalId, '--level', '3'])).code).toBe(EXIT.USAGE);

    const same = await drkit(['verify', 'redis', 'latest', '--url', restored.url()]);
    expect(same.code, same.err).toBe(EXIT.OK);
    expect(same.out).toContain(`verification: ok: ${sourceKeys} of ${sourceKeys} keys of backup ${logicalId} match`);
    expect(same.err).toMatch(/up to level 2 and redis:\/\/127\.0\.0\.1:\d+\/0 against it: passed/);
    const rdbUrl = await drkit(['verify', 'redis', rdbId, '--url', restored.url()]);
    expect(rdbUrl.code).toBe(EXIT.USAGE);
    expect(rdbUrl.err).toContain(`compare with ${logicalId}, the logical export made with it`);

    await withClient(restored.url(), async (r) => {
      await r.del('str:int');
      // In a database the backup does not have: redis-backup counts an extra key in a database
      // of the backup only beyond its missing keys (DBSIZE - expected).
      await r.select(5);
      await r.set('extra', '1');
    });
    const differs = await drkit(['verify', 'redis', logicalId, '--url', restored.url()]);
    expect(differs.code).toBe(EXIT.FAILED);
    expect(differs.out).toContain(`verification: FAILED: ${sourceKeys - 1} of ${sourceKeys} keys`);
    expect(differs.out).toContain('    db 0 str:int: missing (expected string, found none)');
    expect(differs.out).toContain('1 other key in the server that the backup does not have\n');
    expect(differs.err).toMatch(/drkit: error REDIS_VERIFY_FAILED: redis:\/\/127\.0\.0\.1:\d+\/0 differs from backup/);
  });

  it('a tampered stored object fails verification (exit 1), and a restore from it leaves the server untouched', async () => {
    const store = `${env.DRKIT_STORE}-tampered`;
    const backup = await drkit(['backup', 'redis', '--mode', 'logical', '--store', store]);
    expect(backup.code, backup.err).toBe(EXIT.OK);
    const id = backup.out.trim();
    const key = (await list(store)).find((m) => m.id === id)?.object.key as string;
    const path = join(`${storeDir}-tampered`, key);
    const bytes = await readFile(path);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = (bytes[at] as number) ^ 0x01;
    await writeFile(path, bytes);

    const two = await drkit(['verify', 'redis', id, '--level', '2', '--store', store]);
    expect(two.code).toBe(EXIT.FAILED);
    expect(two.out).toMatch(/^FAIL L1 stored bytes: /);
    expect(two.err).toMatch(new RegExp(`^drkit: error REDIS_BACKUP_TAMPERED: .*backup ${id} FAILED verification: do not restore it`, 'm'));

    const busy = await target(true);
    const before = await digest(busy.url());
    const restore = await drkit(['restore', 'redis', id, '--url', busy.url(), '--flush', '--yes', '--store', store]);
    expect(restore.code).toBe(EXIT.FAILED);
    expect(restore.err).toMatch(/drkit: error REDIS_BACKUP_TAMPERED: /);
    expect(await digest(busy.url())).toBe(before);
  });

  describe('RDB restore with --stop-command and --start-command', () => {
    let rdbTarget: RedisSandbox;
    let pidFile: string;
    let stop: string;
    let start: string;

    beforeAll(async () => {
      rdbTarget = await server();
      await withClient(rdbTarget.url(), async (r) => {
        await r.set('old', 'data');
        await r.save();
      });
      // The sandbox's own config, daemonized: the restarted server is not the sandbox's child.
      const conf = readdirSync(rdbTarget.dir)
        .filter((f) => /^redis-\d+\.conf$/.test(f))
        .sort()
        .at(-1) as string;
      pidFile = join(rdbTarget.dir, 'cli-restarted.pid');
      const cliPath = join(dirname(rdbTarget.serverPath), 'redis-cli');
      stop = `${existsSync(cliPath) ? cliPath : 'redis-cli'} -p ${rdbTarget.port} shutdown nosave`;
      start = `${rdbTarget.serverPath} ${join(rdbTarget.dir, conf)} --daemonize yes --pidfile ${pidFile} --logfile ${join(rdbTarget.dir, 'cli-restarted.log')}`;
    });

    afterAll(async () => {
      // The daemonized server is nobody's child: shut it down and wait until it is gone.
      if (!existsSync(pidFile)) return;
      const pid = Number((await readFile(pidFile, 'utf8')).trim());
      await withClient(rdbTarget.url(), (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => {});
      for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(50);
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    });

    it('refuses without --yes, needs both commands, and rejects logical-only flags', async () => {
      const pid = rdbTarget.pid;
      const refused = await drkit([
        'restore',
        'redis',
        'latest',
        '--rdb',
        '--url',
        rdbTarget.url(),
        '--stop-command',
        stop,
        '--start-command',
        start,
      ]);
      expect(refused.code).toBe(EXIT.REFUSED);
      expect(refused.err).toMatch(
        new RegExp(`^drkit: refused: restoring the RDB into redis://127\\.0\\.0\\.1:${rdbTarget.port}/0 would:\\n`),
      );
      expect(refused.err).toContain(`  1. decrypt and check RDB backup ${rdbId}`);
      expect(refused.err).toContain(`  2. STOP redis://127.0.0.1:${rdbTarget.port}/0: ${stop}`);
      expect(refused.err).toContain('Every write since the backup was taken is LOST');
      const noCommands = await drkit(['restore', 'redis', rdbId, '--url', rdbTarget.url(), '--yes']);
      expect(noCommands.code).toBe(EXIT.USAGE);
      expect(noCommands.err).toContain('give --stop-command CMD and --start-command CMD');
      const flush = await drkit(['restore', 'redis', rdbId, '--url', rdbTarget.url(), '--flush', '--yes']);
      expect(flush.code).toBe(EXIT.USAGE);
      expect(flush.err).toMatch(/^drkit: --flush: backup \S+ is an RDB/);
      const rdbFlags = await drkit(['restore', 'redis', logicalId, '--url', rdbTarget.url(), '--data-dir', '/tmp']);
      expect(rdbFlags.code).toBe(EXIT.USAGE);
      expect(rdbFlags.err).toContain('--data-dir: only for --rdb');

      const failing = await drkit([
        'restore',
        'redis',
        rdbId,
        '--url',
        rdbTarget.url(),
        '--yes',
        '--stop-command',
        'echo cannot stop it >&2; exit 3',
        '--start-command',
        start,
      ]);
      expect(failing.code).toBe(EXIT.FAILED);
      expect(failing.err).toMatch(
        /drkit: error REDIS_SERVICE_FAILED: could not stop redis:\/\/127\.0\.0\.1:\d+\/0: 'echo cannot stop it >&2; exit 3' exited with status 3: cannot stop it/,
      );
      expect(rdbTarget.pid).toBe(pid);
      expect(readdirSync(rdbTarget.dataDir).filter((f) => f.startsWith('.drkit-restore'))).toEqual([]);
      expect(await withClient(rdbTarget.url(), (r) => r.get('old'))).toBe('data');
    });

    it('--dry-run checks the RDB; --yes stops the server, places the RDB, starts it: it holds the source data', async () => {
      const dry = await drkit(['restore', 'redis', rdbId, '--url', rdbTarget.url(), '--dry-run']);
      expect(dry.code, dry.err).toBe(EXIT.OK);
      expect(dry.out).toMatch(new RegExp(`^dry run: nothing was changed\\. Restoring RDB backup ${rdbId} into `));
      expect(await withClient(rdbTarget.url(), (r) => r.get('old'))).toBe('data');

      const result = await drkit([
        'restore',
        'redis',
        'latest',
        '--rdb',
        '--url',
        rdbTarget.url(),
        '--yes',
        '--stop-command',
        stop,
        '--start-command',
        start,
      ]);
      expect(result.code, result.err).toBe(EXIT.OK);
      expect(result.out).toMatch(
        new RegExp(
          `^restored RDB backup ${rdbId} \\(.+\\) into redis://127\\.0\\.0\\.1:${rdbTarget.port}/0: the server runs on it with ${sourceKeys} keys`,
        ),
      );
      const previous = /^the previous dump file is kept as (\S+)$/m.exec(result.out)?.[1] as string;
      expect(existsSync(previous)).toBe(true);
      expect(result.err).toMatch(/drkit: stopping redis:\/\/127\.0\.0\.1:\d+\/0/);
      expect(result.err).toMatch(/drkit: starting redis:\/\/127\.0\.0\.1:\d+\/0 on the restored RDB/);
      expect(existsSync(pidFile)).toBe(true);
      expect(await digest(rdbTarget.url())).toBe(sourceDigest);
      expect(await withClient(rdbTarget.url(), (r) => r.get('old'))).toBeNull();
    });
  });
});

describe('redisEventPrinter', () => {
  it('prints steps and warnings, throttles progress (MB of an RDB, keys of an export), and scrubs secrets', () => {
    const io = memoryIo();
    const printer = redisEventPrinter(io, ['s3cret-pw'], { everyMs: 0, skipSteps: ['stored'] });
    printer.onEvent({ type: 'step', step: 'connect', message: 'connecting to redis://app:s3cret-pw@cache:6379/0' });
    printer.onEvent({ type: 'step', step: 'connect', message: 'connecting to redis://app:s3cret-pw@cache:6379/0' });
    printer.onEvent({ type: 'step', step: 'stored', message: 'stored backup x' });
    printer.onEvent({ type: 'progress', operation: 'rdb', bytes: 12_345_678, total: 20_000_000 });
    printer.onEvent({ type: 'progress', operation: 'export', keys: 1500, total: 4000, db: 3 });
    printer.onEvent({ type: 'warning', message: 'password s3cret-pw leaked?' });
    expect(io.err()).toBe(
      [
        'drkit: connecting to redis://app@cache:6379/0',
        'drkit: RDB: 12.3 MB of 20.0 MB',
        'drkit: export: 1500 of 4000 keys, db 3',
        'drkit: warning: password *** leaked?',
        '',
      ].join('\n'),
    );
    expect([...printer.warnings]).toEqual(['password s3cret-pw leaked?']);
    const slow = memoryIo();
    redisEventPrinter(slow, []).onEvent({ type: 'progress', operation: 'export', keys: 1 });
    expect(slow.err()).toBe('');
  });
});
