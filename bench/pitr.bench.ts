// Continuous WAL archiving for point-in-time recovery: what `drkit wal-push` costs PostgreSQL
// per segment, and the recovery point objective (RPO) a steadily written server gets with it.
//
// "wal-push ..." cases: the time PostgreSQL's archiver waits for one segment, i.e. starting the
// archive_command process and waiting for it to exit. The drkit side spawns
// `node packages/cli/dist/bin.js wal-push --store URL --key-file K --system-id ID <segment>`
// (Node's start-up included: that is the point); the peers are spawned through /bin/sh -c, as
// PostgreSQL runs archive_command: the PostgreSQL docs' `test ! -f DIR/%f && cp %p DIR/%f`
// for a file:// store (no fsync: a crash can lose or tear the copy; drkit fsyncs the object
// and its directory), and for S3 (a sandbox s3rver) a plain signed PUT by curl (--aws-sigv4,
// unsigned payload) and, when the aws CLI is installed, `aws s3 cp`. The segments are real:
// 16 MiB segments of a pgbench TPC-B load (full_page_writes on, taken from pg_wal in setup),
// one per round (both sides of a round push the same one), and a segment switched after a
// few inserts (what archive_timeout produces on a quiet server: the rest is zeros). Before
// every run, prepare() deletes the object the run will write, so each push is a new one (no
// idempotency shortcut). The drkit side runs without the harness's NODE_COMPILE_CACHE: the CLI
// enables Node's compile cache itself, in its default place, as it would under PostgreSQL.
//
// "RPO under steady load" case: two sandbox PostgreSQL servers (kept from setup; fsync off)
// with archive_mode=on, archive_timeout=10 and archive_command = drkit wal-push (file:// store)
// or the docs' cp, each wrapped in a timing script. A run writes single-row commits from one
// client at a steady rate for a fixed period and samples, every 250 ms, the data at risk:
// the commits not yet covered by the archive (see rpoRun), reported as metrics.
//
// Environment: DRKIT_BENCH_PITR_SECONDS (load period per RPO run, default 30),
// DRKIT_BENCH_PITR_RATE (commits per second, default 100). `pnpm bench pitr` takes about
// 6.5 minutes, most of it the RPO case (2 sides x 6 rounds x the load period);
// `DRKIT_BENCH_PITR_SECONDS=12 pnpm bench pitr --warmup 0` is a quick check (about 2.5 min).
import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { generateKey } from '@drkit/crypto-stream';
import { type PostgresSandbox, type S3Sandbox, startPostgres, startS3 } from '@drkit/sandbox';
import pg from 'pg';
import { type BenchCase, defineBench, type SideResult } from './lib/define.ts';
import { run } from './lib/exec.ts';

const MiB = 1024 * 1024;
/** wal_segment_size of the sandbox servers (initdb's default; checked in setup). */
const SEGMENT_BYTES = 16 * MiB;
/** Full segments taken from the pgbench load: one per round, reused round-robin. */
const FULL_SEGMENTS = 5;
const BUCKET = 'bench';
const ARCHIVE_TIMEOUT_S = 10;
const SAMPLE_MS = 250;

function positiveInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

const LOAD_SECONDS = positiveInt('DRKIT_BENCH_PITR_SECONDS', 30);
const RATE = positiveInt('DRKIT_BENCH_PITR_RATE', 100);

/** The aws CLI on PATH, if any (a cheap lookup: it decides whether the aws case exists). */
const AWS_ON_PATH = (process.env.PATH ?? '').split(delimiter).some((dir) => {
  try {
    accessSync(join(dir, 'aws'), constants.X_OK);
    return dir !== '';
  } catch {
    return false;
  }
});

/** One of the two archiving servers of the RPO case. */
interface RpoServer {
  connection: { host: string; port: number; user: string; password: string; database: string };
  /** The timing wrapper's log: one line per archive_command run, "start_ns end_ns exit_code file". */
  log: string;
}

interface Ctx {
  /** Temp dir (mode 0755: the servers' account reads the key and scripts in it). */
  dir: string;
  node: string;
  /** packages/cli/dist/bin.js */
  bin: string;
  /** One base64 32-byte key, mode 0644. */
  keyFile: string;
  /** System identifier of the cluster the segments come from. */
  systemId: string;
  /** The full segments, each `<dir>/segments/<i>/<WAL name>`. */
  full: string[];
  /** The switched, mostly-empty segment. */
  empty: string;
  /** prepare() writes here the index (in `full`) of the segment the next run pushes. */
  next: string;
  /** file:// stores of the per-segment cases. */
  drkitStore: string;
  cpStore: string;
  s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
  /** The aws CLI's own executable (a pyenv shim resolved), or null. */
  aws: string | null;
  rpo: { drkit: RpoServer; peer: RpoServer; seconds: number; rate: number };
}

// Servers live in the parent (setup, prepare and teardown run there): their stop() cannot
// travel to the children in ctx.
let servers: { gen?: PostgresSandbox; s3?: S3Sandbox; drkit?: PostgresSandbox; peer?: PostgresSandbox } = {};

const walNameOf = (path: string) => path.slice(path.lastIndexOf('/') + 1);
const quote = (text: string) => {
  if (text.includes("'")) throw new Error(`path ${text} has a quote: it cannot go into the archive_command scripts`);
  return `'${text}'`;
};

/** This process's environment without the harness's compile cache (see the header). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_COMPILE_CACHE;
  return env;
}

const s3Env = (ctx: Ctx) => ({
  AWS_ACCESS_KEY_ID: ctx.s3.accessKeyId,
  AWS_SECRET_ACCESS_KEY: ctx.s3.secretAccessKey,
  AWS_REGION: ctx.s3.region,
  AWS_DEFAULT_REGION: ctx.s3.region,
});

/** The full segment this round pushes (both sides of a round push the same one). */
const fullSegment = (ctx: Ctx) => ctx.full[Number(readFileSync(ctx.next, 'utf8'))] as string;

const walPush = (ctx: Ctx, store: string, segment: string, env: NodeJS.ProcessEnv) =>
  run(ctx.node, [ctx.bin, 'wal-push', '--store', store, '--key-file', ctx.keyFile, '--system-id', ctx.systemId, segment], env);

/** The PostgreSQL docs' archive_command, through /bin/sh -c as PostgreSQL runs it. */
const docsCp = (segment: string, dir: string) =>
  run('/bin/sh', ['-c', 'test ! -f "$2/$3" && cp "$1" "$2/$3"', 'sh', segment, dir, walNameOf(segment)], cleanEnv());

const s3Url = (ctx: Ctx) => `s3://${BUCKET}/drkit?region=${ctx.s3.region}&endpoint=${ctx.s3.endpoint}`;

/** Deletes the S3 objects the next run of either side writes (in the parent, untimed). */
async function deleteS3(ctx: Ctx, keys: string[]): Promise<void> {
  // Imported here, not at the top: the children that time runs never need the SDK.
  const { DeleteObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint: ctx.s3.endpoint,
    region: ctx.s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: ctx.s3.accessKeyId, secretAccessKey: ctx.s3.secretAccessKey },
  });
  try {
    for (const key of keys) await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  } finally {
    client.destroy();
  }
}

/** prepare() of the full-segment cases: pick the round's segment and delete what it will write. */
async function pickFull(ctx: Ctx, round: number, s3Peer?: string): Promise<string> {
  const index = round % ctx.full.length;
  await writeFile(ctx.next, String(index));
  const name = walNameOf(ctx.full[index] as string);
  await rm(join(ctx.drkitStore, 'wal', ctx.systemId, name), { force: true });
  await rm(join(ctx.cpStore, name), { force: true });
  if (s3Peer !== undefined) await deleteS3(ctx, [`drkit/wal/${ctx.systemId}/${name}`, `${s3Peer}/${name}`]);
  return name;
}

const fileCases: BenchCase<Ctx>[] = [
  {
    name: 'wal-push per segment: full 16 MiB (file://)',
    drkit: (ctx) => walPush(ctx, `file://${ctx.drkitStore}`, fullSegment(ctx), cleanEnv()),
    peer: { name: 'test ! -f DIR/%f && cp %p DIR/%f', run: (ctx) => docsCp(fullSegment(ctx), ctx.cpStore) },
    prepare: async (ctx, next) => {
      await pickFull(ctx, next.round);
    },
    bytes: SEGMENT_BYTES,
  },
  {
    name: 'wal-push per segment: switched, mostly empty (file://)',
    drkit: (ctx) => walPush(ctx, `file://${ctx.drkitStore}`, ctx.empty, cleanEnv()),
    peer: { name: 'test ! -f DIR/%f && cp %p DIR/%f', run: (ctx) => docsCp(ctx.empty, ctx.cpStore) },
    prepare: async (ctx) => {
      const name = walNameOf(ctx.empty);
      await rm(join(ctx.drkitStore, 'wal', ctx.systemId, name), { force: true });
      await rm(join(ctx.cpStore, name), { force: true });
    },
    bytes: SEGMENT_BYTES,
  },
];

const s3Cases: BenchCase<Ctx>[] = [
  {
    name: 'wal-push per segment: full 16 MiB (s3:// sandbox s3rver)',
    drkit: (ctx) => walPush(ctx, s3Url(ctx), fullSegment(ctx), cleanEnv(s3Env(ctx))),
    peer: {
      name: 'curl --aws-sigv4 -T %p (one PUT, unsigned payload)',
      run: (ctx) => {
        const segment = fullSegment(ctx);
        return run(
          '/bin/sh',
          [
            '-c',
            'curl -sS --fail --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" ' +
              '-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null -T "$1" "$2"',
            'sh',
            segment,
            `${ctx.s3.endpoint}/${BUCKET}/curl/${walNameOf(segment)}`,
          ],
          cleanEnv(s3Env(ctx)),
        );
      },
    },
    prepare: async (ctx, next) => {
      await pickFull(ctx, next.round, 'curl');
    },
    bytes: SEGMENT_BYTES,
  },
];

if (AWS_ON_PATH)
  s3Cases.push({
    name: 'wal-push per segment: full 16 MiB (s3://) vs aws s3 cp',
    drkit: (ctx) => walPush(ctx, s3Url(ctx), fullSegment(ctx), cleanEnv(s3Env(ctx))),
    peer: {
      name: 'aws s3 cp %p s3://bucket/prefix/%f (aws-cli)',
      run: (ctx) => {
        if (ctx.aws === null) throw new Error('the aws CLI was on PATH at import but setup could not resolve it');
        const segment = fullSegment(ctx);
        return run(
          '/bin/sh',
          [
            '-c',
            '"$1" --endpoint-url "$2" s3 cp --only-show-errors "$3" "$4"',
            'sh',
            ctx.aws,
            ctx.s3.endpoint,
            segment,
            `s3://${BUCKET}/aws/${walNameOf(segment)}`,
          ],
          cleanEnv(s3Env(ctx)),
        );
      },
    },
    prepare: async (ctx, next) => {
      await pickFull(ctx, next.round, 'aws');
    },
    bytes: SEGMENT_BYTES,
  });

/** "X/Y" (pg_lsn as text) as a byte position. Exact below 2^53 bytes (8 PiB of WAL). */
function parseLsn(text: string): number {
  const match = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(text);
  if (!match) throw new Error(`not an LSN: ${text}`);
  return Number.parseInt(match[1] as string, 16) * 2 ** 32 + Number.parseInt(match[2] as string, 16);
}

/**
 * The LSN just past segment `name` (a 24-hex-digit WAL file name: timeline, log, segment), or
 * undefined for other archived files (.history, .backup, .partial).
 */
function segmentEnd(name: string | null): number | undefined {
  const match = /^[0-9A-F]{8}([0-9A-F]{8})([0-9A-F]{8})$/i.exec(name ?? '');
  if (!match) return undefined;
  const perLog = 2 ** 32 / SEGMENT_BYTES;
  const segno = Number.parseInt(match[1] as string, 16) * perLog + Number.parseInt(match[2] as string, 16);
  return (segno + 1) * SEGMENT_BYTES;
}

/** Nearest-rank percentile of a non-empty list. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

const rounded = (value: number, decimals: number) => Math.round(value * 10 ** decimals) / 10 ** decimals;

/**
 * One RPO run on `server`: one client commits single-row INSERTs at `rate` per second for
 * `seconds`; after each commit it reads pg_current_wal_insert_lsn(), which is at or past the
 * end of the commit record (one writer, so at most a few bytes past it), and keeps (time the
 * commit returned, that LSN). Every 250 ms a second connection reads
 * pg_stat_archiver.last_archived_wal: every commit at or before the end of that segment
 * ((segno + 1) x 16 MiB) is in the archive (the archiver archives segments in order), and
 * RPO(t) = t - the commit time of the oldest commit beyond it, 0 if there is none: how much
 * committed work losing the server at t would lose. A commit whose LSN is not read yet counts
 * as not archived (it is at most a few ms old). t is taken when the sample's answer arrives
 * (it can only overstate the RPO, by the query's latency).
 *
 * The archive_command time per segment is what the timing wrapper around it logged (see
 * archiveScript): from just before the shell starts the command to just after it exits, for
 * the segments whose archiving started during the load period.
 */
async function rpoRun(server: RpoServer, seconds: number, rate: number): Promise<SideResult> {
  const writer = new pg.Client(server.connection);
  const sampler = new pg.Client(server.connection);
  await writer.connect();
  await sampler.connect();
  try {
    const counts = async () =>
      (
        await sampler.query<{ archived: string; failed: string }>(
          'SELECT archived_count AS archived, failed_count AS failed FROM pg_stat_archiver',
        )
      ).rows[0] as { archived: string; failed: string };
    const before = await counts();
    const payload = 'x'.repeat(100);
    const commits: { at: number; lsn?: number }[] = [];
    const startNs = BigInt(Date.now()) * 1_000_000n;
    const t0 = performance.now();
    const endAt = t0 + seconds * 1000;

    const write = async () => {
      const interval = 1000 / rate;
      let next = t0;
      while (performance.now() < endAt) {
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        await writer.query('INSERT INTO load (payload) VALUES ($1)', [payload]);
        const commit: { at: number; lsn?: number } = { at: performance.now() };
        commits.push(commit);
        const { rows } = await writer.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
        commit.lsn = parseLsn(rows[0]?.lsn as string);
        // Steady pace; after a stall, catch up by at most one interval's worth at once.
        next = Math.max(next + interval, performance.now() - interval);
      }
    };

    const rpos: number[] = [];
    const sample = async () => {
      let first = 0;
      let archivedEnd = 0;
      for (let tick = t0 + SAMPLE_MS; tick <= endAt; tick += SAMPLE_MS) {
        const wait = tick - performance.now();
        if (wait > 0) await sleep(wait);
        const { rows } = await sampler.query<{ wal: string | null }>('SELECT last_archived_wal AS wal FROM pg_stat_archiver');
        const t = performance.now();
        archivedEnd = Math.max(archivedEnd, segmentEnd(rows[0]?.wal ?? null) ?? 0);
        for (let c = commits[first]; c?.lsn !== undefined && c.lsn <= archivedEnd; c = commits[first]) first++;
        const oldest = commits[first];
        rpos.push(oldest === undefined ? 0 : (t - oldest.at) / 1000);
      }
    };

    await Promise.all([write(), sample()]);
    const loadSeconds = (performance.now() - t0) / 1000;
    const endNs = BigInt(Date.now()) * 1_000_000n;
    const after = await counts();

    const runsOfCommand = readFileSync(server.log, 'utf8')
      .split('\n')
      .map((line) => line.trim().split(' '))
      .filter((f) => f.length === 4 && BigInt(f[0] as string) >= startNs && BigInt(f[0] as string) <= endNs)
      .map(([start, end, code]) => ({ ms: Number(BigInt(end as string) - BigInt(start as string)) / 1e6, ok: code === '0' }));
    const pushed = runsOfCommand.filter((r) => r.ok).map((r) => r.ms);
    if (rpos.length === 0) throw new Error('no RPO samples: the load period is shorter than one sample');
    if (seconds >= 2 * ARCHIVE_TIMEOUT_S && Number(after.archived) === Number(before.archived))
      throw new Error(
        `nothing was archived in ${seconds} s with archive_timeout=${ARCHIVE_TIMEOUT_S}: is archive_command failing? see ${server.log}.err`,
      );
    return {
      metrics: {
        rpo_max_s: rounded(Math.max(...rpos), 3),
        rpo_p95_s: rounded(percentile(rpos, 95), 3),
        rpo_median_s: rounded(percentile(rpos, 50), 3),
        segments_archived: Number(after.archived) - Number(before.archived),
        archive_failures: Number(after.failed) - Number(before.failed),
        ...(pushed.length === 0
          ? {}
          : { archive_cmd_median_ms: rounded(percentile(pushed, 50), 1), archive_cmd_max_ms: rounded(Math.max(...pushed), 1) }),
        commits_per_s: rounded(commits.length / loadSeconds, 1),
      },
    };
  } finally {
    await writer.end().catch(() => {});
    await sampler.end().catch(() => {});
  }
}

const rpoCase: BenchCase<Ctx> = {
  name: `RPO under steady load (archive_timeout=${ARCHIVE_TIMEOUT_S}s, ${RATE} commits/s, ${LOAD_SECONDS} s)`,
  drkit: (ctx) => rpoRun(ctx.rpo.drkit, ctx.rpo.seconds, ctx.rpo.rate),
  peer: { name: 'archive_command = test ! -f DIR/%f && cp %p DIR/%f', run: (ctx) => rpoRun(ctx.rpo.peer, ctx.rpo.seconds, ctx.rpo.rate) },
};

/**
 * The archive_command of an RPO server: a /bin/sh script that times the real command and
 * appends "start_ns end_ns exit_code %f" to `log` (its stderr to `log`.err). The two `date`
 * runs bracket the command, so the logged time is the command's own (from the shell starting
 * it to its exit); the wrapper's own start-up (about 1 ms per date and sh) is outside it but
 * adds the same to both sides.
 */
function archiveScript(command: string, log: string): string {
  return [
    '#!/bin/sh',
    '# archive_command wrapper of bench/pitr.bench.ts: $1 = %p, $2 = %f',
    'start=$(date +%s%N)',
    `${command} 2>>${quote(`${log}.err`)}`,
    'code=$?',
    'end=$(date +%s%N)',
    `echo "$start $end $code $2" >>${quote(log)}`,
    'exit $code',
    '',
  ].join('\n');
}

async function query<T extends pg.QueryResultRow>(server: PostgresSandbox, sql: string): Promise<T[]> {
  const client = new pg.Client(server.connection());
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Makes the segments of the per-segment cases on a throwaway server, then stops it. */
async function makeSegments(dir: string): Promise<{ full: string[]; empty: string; systemId: string }> {
  // full_page_writes on (the sandbox turns it off): production WAL after a checkpoint is
  // mostly full-page images. wal_keep_size keeps the finished segments in pg_wal to copy.
  const gen = await startPostgres({ settings: { full_page_writes: true, wal_keep_size: '2GB', max_wal_size: '2GB' } });
  servers.gen = gen;
  const [size] = await query<{ size: string }>(gen, "SELECT setting AS size FROM pg_settings WHERE name = 'wal_segment_size'");
  if (Number(size?.size) !== SEGMENT_BYTES) throw new Error(`wal_segment_size is ${size?.size}, expected ${SEGMENT_BYTES}`);
  const pgbench = join(gen.binDir, 'pgbench');
  await run(pgbench, ['-i', '-q', '-s', '10', '--init-steps=dtGvp', '-d', gen.url()]);
  await query(gen, 'CHECKPOINT');
  const current = async () =>
    ((await query<{ wal: string }>(gen, 'SELECT pg_walfile_name(pg_current_wal_insert_lsn()) AS wal'))[0] as { wal: string }).wal;
  const start = await current();
  const plus = (name: string, n: number) => (BigInt(`0x${name}`) + BigInt(n)).toString(16).toUpperCase().padStart(24, '0');
  // The load writes until FULL_SEGMENTS whole segments after the start one are finished.
  while ((await current()) <= plus(start, FULL_SEGMENTS)) await run(pgbench, ['-c', '2', '-T', '2', '-d', gen.url()]);
  // Written out to the end of the current segment: every earlier one is complete on disk.
  await query(gen, 'SELECT pg_switch_wal()');
  const names = (await readdir(join(gen.dataDir, 'pg_wal')))
    .filter((f) => /^[0-9A-F]{24}$/.test(f) && f > start && f <= plus(start, FULL_SEGMENTS))
    .sort();
  if (names.length !== FULL_SEGMENTS)
    throw new Error(`expected ${FULL_SEGMENTS} finished segments after ${start}, found ${names.join(', ')}`);
  const copy = async (name: string, slot: string) => {
    const to = join(dir, 'segments', slot);
    await mkdir(to, { recursive: true });
    await copyFile(join(gen.dataDir, 'pg_wal', name), join(to, name));
    await chmod(join(to, name), 0o644);
    return join(to, name);
  };
  const full: string[] = [];
  for (const [i, name] of names.entries()) full.push(await copy(name, String(i)));
  // A quiet server's segment: a few inserts, then the switch archive_timeout would make.
  await query(gen, 'CREATE TABLE quiet (n int); INSERT INTO quiet SELECT generate_series(1, 20)');
  const [switched] = await query<{ wal: string }>(gen, 'SELECT pg_walfile_name(pg_switch_wal()) AS wal');
  const empty = await copy(switched?.wal as string, 'empty');
  const [sys] = await query<{ id: string }>(gen, 'SELECT system_identifier::text AS id FROM pg_control_system()');
  delete servers.gen;
  await gen.stop();
  return { full, empty, systemId: sys?.id as string };
}

/** Starts an RPO server whose archive_command is `command` ($1 = %p, $2 = %f) under the timing wrapper. */
async function archivingServer(dir: string, side: 'drkit' | 'peer', command: string): Promise<{ server: PostgresSandbox; rpo: RpoServer }> {
  const log = join(dir, `rpo-${side}.log`);
  const script = join(dir, `rpo-${side}.sh`);
  await writeFile(script, archiveScript(command, log), { mode: 0o755 });
  for (const file of [log, `${log}.err`]) {
    await writeFile(file, '');
    await chmod(file, 0o666); // the server's account appends to them
  }
  const server = await startPostgres({
    settings: {
      wal_level: 'replica',
      archive_mode: 'on',
      archive_timeout: ARCHIVE_TIMEOUT_S,
      archive_command: `/bin/sh ${quote(script)} "%p" "%f"`,
    },
  });
  servers[side] = server;
  // PostgreSQL 15's checkpointer, which enforces archive_timeout, starts during recovery, and
  // its first sleep then lasts checkpoint_timeout (5 min): until something wakes it, a freshly
  // started server ignores archive_timeout (observed here: no switch in 25-40 s of load). A
  // CHECKPOINT wakes it; from then on it wakes at least every archive_timeout.
  await query(server, 'CHECKPOINT');
  await query(
    server,
    'CREATE TABLE load (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text NOT NULL)',
  );
  // Archive what setup wrote, so the first run starts from an archive that is up to date (and
  // a broken archive_command fails here, with the server's log).
  const [switched] = await query<{ wal: string }>(server, 'SELECT pg_walfile_name(pg_switch_wal()) AS wal');
  for (let i = 0; ; i++) {
    const [status] = await query<{ last: string | null }>(server, 'SELECT last_archived_wal AS last FROM pg_stat_archiver');
    if (status?.last && status.last >= (switched?.wal as string)) break;
    if (i === 300)
      throw new Error(
        `the ${side} server did not archive ${switched?.wal} within 30 s: ${readFileSync(`${log}.err`, 'utf8').slice(-2000)}\n${server.readLog(2000)}`,
      );
    await sleep(100);
  }
  return { server, rpo: { connection: server.connection(), log } };
}

async function stopAll(): Promise<void> {
  const running = servers;
  servers = {};
  await Promise.allSettled([running.gen?.stop(), running.s3?.stop(), running.drkit?.stop(), running.peer?.stop()]);
}

/** The aws CLI's real executable: a pyenv shim (a bash script) would add its own start-up. */
async function findAws(): Promise<string | null> {
  if (!AWS_ON_PATH) return null;
  const which = (command: string, args: string[]) =>
    new Promise<string>((resolve) => {
      const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
      });
      child.on('error', () => resolve(''));
      child.on('close', (code) => resolve(code === 0 ? out.trim() : ''));
    });
  const onPath = await which('sh', ['-c', 'command -v aws']);
  if (onPath.includes('/.pyenv/shims/')) return (await which('pyenv', ['which', 'aws'])) || onPath;
  return onPath || null;
}

export default defineBench<Ctx>({
  name: 'pitr',
  description:
    'WAL archiving on 2 cores shared by PostgreSQL 15, s3rver, the tools and Node. wal-push cases: wall time of one archive_command run per 16 MiB segment, process start-up included ' +
    "(drkit: node bin.js wal-push --system-id ID: zstd -1 + AES-256-GCM, fsync of object and dir; peers through /bin/sh -c: the docs' test/cp without fsync, " +
    'curl PUT with SigV4 and unsigned payload, aws s3 cp); segments of a pgbench load (full_page_writes on) and one switched after a few inserts; the object is deleted before each run. ' +
    `RPO case: per side a sandbox PostgreSQL (fsync off) with archive_mode=on, archive_timeout=${ARCHIVE_TIMEOUT_S}s and that archive_command under a timing wrapper, ` +
    `${RATE} single-row commits/s from one client for ${LOAD_SECONDS} s, RPO sampled every ${SAMPLE_MS} ms (time since the oldest commit past the last archived segment); ` +
    'peak RSS is the bench worker, not the archive command',
  async setup() {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-bench-pitr-'));
    try {
      await chmod(dir, 0o755);
      const keyFile = join(dir, 'wal.key');
      await writeFile(keyFile, `${generateKey().toString('base64')}\n`, { mode: 0o644 });
      const segments = await makeSegments(dir);
      const drkitStore = join(dir, 'drkit-store');
      const cpStore = join(dir, 'cp-store');
      await mkdir(drkitStore);
      await mkdir(cpStore);
      const next = join(dir, 'next-segment');
      await writeFile(next, '0');

      const s3 = await startS3({ buckets: [BUCKET] });
      servers.s3 = s3;

      const node = process.execPath;
      const bin = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));
      const rpoStores = { drkit: join(dir, 'rpo-drkit-store'), peer: join(dir, 'rpo-cp-store') };
      for (const store of Object.values(rpoStores)) {
        await mkdir(store);
        await chmod(store, 0o777); // the server's account writes the archive
      }
      // As PostgreSQL runs it: in the data directory, the system id read from the segment.
      const drkit = await archivingServer(
        dir,
        'drkit',
        `${quote(node)} ${quote(bin)} wal-push --store ${quote(`file://${rpoStores.drkit}`)} --key-file ${quote(keyFile)} "$1"`,
      );
      const peer = await archivingServer(dir, 'peer', `test ! -f ${quote(rpoStores.peer)}/"$2" && cp "$1" ${quote(rpoStores.peer)}/"$2"`);
      return {
        dir,
        node,
        bin,
        keyFile,
        ...segments,
        next,
        drkitStore,
        cpStore,
        s3: { endpoint: s3.endpoint, region: s3.region, ...s3.credentials },
        aws: await findAws(),
        rpo: { drkit: drkit.rpo, peer: peer.rpo, seconds: LOAD_SECONDS, rate: RATE },
      };
    } catch (error) {
      await stopAll();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  },
  async teardown(ctx) {
    try {
      await stopAll();
    } finally {
      await rm(ctx.dir, { recursive: true, force: true });
    }
  },
  cases: [...fileCases, ...s3Cases, rpoCase],
});
