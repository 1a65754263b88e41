import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
// By path: the repository root does not depend on @drkit/crypto-stream, so its name does not
// resolve from bench/ (add it to the root devDependencies to import it by name).
import { type Compression, masterKey, seal } from '@drkit/crypto-stream';
import { defineBench } from './lib/define.ts';
import { sh } from './lib/exec.ts';

const MiB = 1024 * 1024;
const BIG = 2048 * MiB;
const MID = 512 * MiB;
const POOL = 64 * MiB;
const BLOCK = 64 * 1024;
/** Read size of the input stream (fs default is 64 KiB; sealFile uses 1 MiB). */
const READ_SIZE = Number(process.env.DRKIT_BENCH_READ_MIB ?? 1) * MiB;
/** The peer's passphrase: openssl derives its key with PBKDF2 (10000 iterations, a few ms). */
const PASS = 'pass:drkit-bench-not-a-secret';

interface Ctx {
  dir: string;
  /** 2 GiB input (case 1). */
  big: string;
  /** 512 MiB input (cases 2 and 3). */
  mid: string;
  /** The drkit side's key, base64. */
  key: string;
}

/** 64 KiB of JSON lines with varying values, like a log or a table export. */
function jsonBlock(seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < BLOCK; i++) {
    const n = seed * 1000 + i;
    const line = `{"id":${n},"user":"user-${n % 9973}","email":"u${n % 9973}@example.com","active":${n % 3 !== 0},"balance":${((n * 7919) % 1000003) / 100},"tags":["t${n % 17}","t${n % 29}"],"updated_at":"2025-${String((n % 12) + 1).padStart(2, '0')}-${String((n % 28) + 1).padStart(2, '0')}T12:${String(n % 60).padStart(2, '0')}:00Z"}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, BLOCK);
}

function pool(): Buffer {
  const blocks: Buffer[] = [];
  for (let b = 0; b < POOL / BLOCK; b++) blocks.push(b % 2 === 0 ? randomBytes(BLOCK) : jsonBlock(b));
  return Buffer.concat(blocks);
}

async function writeRepeated(path: string, data: Buffer, size: number): Promise<void> {
  await pipeline(
    (function* () {
      for (let at = 0; at < size; at += data.length) yield data.subarray(0, Math.min(data.length, size - at));
    })(),
    createWriteStream(path),
  );
}

const OPENSSL = `openssl enc -aes-256-ctr -pbkdf2 -pass ${PASS}`;

/** drkit's side: seal the input file into `out` (a file in the temp dir, or /dev/null). */
async function drkitSeal(ctx: Ctx, input: string, out: string, compression: Compression, level?: number): Promise<void> {
  const key = masterKey(Buffer.from(ctx.key, 'base64'));
  await pipeline(
    seal(createReadStream(input, { highWaterMark: READ_SIZE }), { key, compression, ...(level === undefined ? {} : { level }) }),
    createWriteStream(out),
  );
}

const drkitOut = (ctx: Ctx) => join(ctx.dir, 'drkit.sealed');
const peerOut = (ctx: Ctx) => join(ctx.dir, 'peer.enc');

export default defineBench<Ctx>({
  name: 'crypto',
  description:
    'seal() in-process (1 MiB reads, AES-256-GCM, 1 MiB chunks) vs openssl enc -aes-256-ctr -pbkdf2 (alone or after zstd/gzip in a bash pipeline), both writing a file (or /dev/null); ' +
    'half random / half JSON input; MB = 10^6 B; CPU includes the peer pipeline processes; peer RSS is the worker only, not its tools',
  async setup() {
    const dir = await mkdtemp(join(tmpdir(), 'drkit-bench-crypto-'));
    try {
      const data = pool();
      const ctx: Ctx = { dir, big: join(dir, 'input-2GiB'), mid: join(dir, 'input-512MiB'), key: randomBytes(32).toString('base64') };
      await writeRepeated(ctx.mid, data, MID);
      await writeRepeated(ctx.big, data, BIG);
      return ctx;
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  },
  async teardown(ctx) {
    await rm(ctx.dir, { recursive: true, force: true });
  },
  cases: [
    {
      name: 'seal none, 2 GiB -> file',
      bytes: BIG,
      drkit: (ctx) => drkitSeal(ctx, ctx.big, drkitOut(ctx), 'none'),
      peer: { name: 'openssl enc aes-256-ctr', run: (ctx) => sh(`${OPENSSL} -in "$1" -out "$2"`, ctx.big, peerOut(ctx)) },
    },
    {
      // The same without the cost of writing 2 GiB into the page cache (which dominates the
      // file case on a small VM): the cipher and the stream pipeline alone.
      name: 'seal none, 2 GiB -> /dev/null',
      bytes: BIG,
      drkit: (ctx) => drkitSeal(ctx, ctx.big, '/dev/null', 'none'),
      peer: { name: 'openssl enc aes-256-ctr', run: (ctx) => sh(`${OPENSSL} -in "$1" -out /dev/null`, ctx.big) },
    },
    {
      name: 'zstd-3 + seal, 512 MiB -> file',
      bytes: MID,
      drkit: (ctx) => drkitSeal(ctx, ctx.mid, drkitOut(ctx), 'zstd', 3),
      peer: {
        name: 'zstd -3 | openssl enc',
        run: (ctx) => sh(`zstd -3 -q -c -- "$1" | ${OPENSSL} -out "$2"`, ctx.mid, peerOut(ctx)),
      },
    },
    {
      name: 'gzip-6 + seal, 512 MiB -> file',
      bytes: MID,
      drkit: (ctx) => drkitSeal(ctx, ctx.mid, drkitOut(ctx), 'gzip', 6),
      peer: {
        name: 'gzip -6 | openssl enc',
        run: (ctx) => sh(`gzip -6 -c -- "$1" | ${OPENSSL} -out "$2"`, ctx.mid, peerOut(ctx)),
      },
    },
  ],
});
