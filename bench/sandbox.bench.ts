// pg_dump -Fc of a 200k-row table: output streamed through Node (as drkit's streaming path
// will do; a stand-in until the postgres-backup package exists) vs pg_dump writing the file
// itself. Both run the same pg_dump binary against the same sandbox server.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import { defineBench } from './lib/define.ts';
import { run } from './lib/exec.ts';

interface Ctx {
  /** postgres:// URL of the database holding table t. */
  url: string;
  binDir: string;
  /** Temp dir for the dumps, made in setup and removed in teardown. */
  dir: string;
}

// The sandbox lives in the parent (setup and teardown run there); its stop() cannot travel
// to the children in ctx. It is also stopped if the parent exits without teardown.
let pg: PostgresSandbox | undefined;

/** pg_dump -Fc to stdout, piped through a Node stream into `file`. */
async function dumpThroughNode(ctx: Ctx, file: string): Promise<void> {
  const child = spawn(join(ctx.binDir, 'pg_dump'), ['-Fc', '-d', ctx.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`pg_dump ${signal ? `was killed by ${signal}` : `exited with code ${code}`}: ${stderr.trim()}`));
    });
  });
  await Promise.all([pipeline(child.stdout, createWriteStream(file)), exited]);
}

export default defineBench<Ctx>({
  name: 'sandbox',
  description: 'pg_dump against a sandbox PostgreSQL: streamed through Node vs written by pg_dump',
  async setup() {
    const server = await startPostgres();
    pg = server;
    try {
      await run(join(server.binDir, 'psql'), [
        '-X',
        '-q',
        '-v',
        'ON_ERROR_STOP=1',
        '-d',
        server.url(),
        '-c',
        'create table t as select g, md5(g::text) from generate_series(1,200000) g',
      ]);
      const dir = await mkdtemp(join(tmpdir(), 'drkit-bench-sandbox-'));
      return { url: server.url(), binDir: server.binDir, dir };
    } catch (error) {
      pg = undefined;
      await server.stop();
      throw error;
    }
  },
  async teardown(ctx) {
    const server = pg;
    pg = undefined;
    try {
      await rm(ctx.dir, { recursive: true, force: true });
    } finally {
      await server?.stop();
    }
  },
  cases: [
    {
      name: 'pg_dump -Fc of a 200k-row table',
      drkit: (ctx) => dumpThroughNode(ctx, join(ctx.dir, 'drkit.dump')),
      peer: {
        name: 'pg_dump -f',
        run: (ctx) => run(join(ctx.binDir, 'pg_dump'), ['-Fc', '-f', join(ctx.dir, 'peer.dump'), '-d', ctx.url]),
      },
    },
  ],
});
