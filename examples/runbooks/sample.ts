// A small runbook that uses every part of the engine, on a file instead of a database so that
// it runs anywhere: it "recovers" a marker file. Run it:
//
//   tsx examples/runbooks/sample.ts --marker /tmp/marker --plan
//   DRKIT_CANARY_SECRET=... tsx examples/runbooks/sample.ts --marker /tmp/marker --dry-run
//   DRKIT_CANARY_SECRET=... tsx examples/runbooks/sample.ts --marker /tmp/marker --yes
//
// Every step appends its id to `<marker>.steps` so that tests can prove no step ran twice
// across a crash and a resume.

import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { defineRunbook, isMain, runbookCli } from '@drkit/runbook';
import { z } from 'zod';

const params = z.object({
  marker: z.string().min(1).describe('the file this runbook restores (written by the destructive step)'),
  content: z.string().default('restored').describe('what the marker file should contain'),
  app: z.string().optional().describe('a service of the config to stop before and start after the write'),
  healthCheck: z.string().optional().describe('a health check of the config to wait for at the end'),
});

type Params = z.output<typeof params>;

/** Records that a step ran, so a test can count runs per step. */
function ran(p: Params, id: string): void {
  mkdirSync(dirname(p.marker), { recursive: true });
  appendFileSync(`${p.marker}.steps`, `${id}\n`);
}

/** A child runbook: checks that the marker's directory is writable. */
export const checkDirectory = defineRunbook({
  id: 'sample-check-directory',
  title: 'Check that a directory is writable',
  severity: 'sev3',
  category: 1,
  rto: '5m',
  params: z.object({ dir: z.string() }),
  phases: { verification: '5m' },
  steps: (step) => [
    step({
      id: 'writable',
      title: 'Directory exists and is writable',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      run: (ctx) => {
        const stat = statSync(ctx.params.dir);
        if (!stat.isDirectory()) throw new Error(`${ctx.params.dir} is not a directory`);
        return { dir: ctx.params.dir };
      },
    }),
  ],
});

const sample = defineRunbook({
  id: 'sample',
  title: 'Sample recovery of a marker file',
  description: 'Restores a marker file the way a real runbook restores a database: check, decide, stage, swap, verify.',
  severity: 'sev3',
  category: 3,
  impact: 'The marker file is missing or wrong',
  rto: '1h',
  params,
  // The first plan's RTO breakdown.
  phases: { detection: '15m', decision: '5m', provisioning: '15m', restoration: '20m', verification: '5m' },
  secrets: { canary: { env: 'DRKIT_CANARY_SECRET', description: 'proves that secrets never reach a record' } },
  steps: (step) => {
    const inspect = step({
      id: 'inspect',
      title: 'Inspect the marker file',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      run: (ctx) => {
        ran(ctx.params, 'inspect');
        const exists = existsSync(ctx.params.marker);
        const previous = exists ? readFileSync(ctx.params.marker, 'utf8') : null;
        ctx.log.info(exists ? `the marker exists (${previous?.length} bytes)` : 'the marker is missing');
        return { exists, previous };
      },
    });
    const directory = step({
      id: 'check-directory',
      title: 'Check the target directory (child runbook)',
      phase: 'detection',
      readOnly: true,
      idempotent: true,
      run: async (ctx) => {
        ran(ctx.params, 'check-directory');
        const child = await ctx.runRunbook(checkDirectory, { dir: dirname(ctx.params.marker) });
        return { child: child.runId };
      },
    });
    const decide = step({
      id: 'decide',
      title: 'Decide to restore',
      phase: 'decision',
      gate: 'Restore the marker file now?',
      run: (ctx) => {
        ran(ctx.params, 'decide');
        const seen = ctx.output(inspect);
        return { reason: seen.exists ? 'the marker content is wrong' : 'the marker is missing' };
      },
    });
    const stopApp = step({
      id: 'stop-app',
      title: 'Stop the application',
      phase: 'provisioning',
      idempotent: true,
      plan: (ctx) => (ctx.params.app ? ctx.service(ctx.params.app).describe('stop') : 'no --app given: nothing to stop'),
      run: async (ctx) => {
        ran(ctx.params, 'stop-app');
        if (!ctx.params.app) return { stopped: false };
        await ctx.service(ctx.params.app).stop({ signal: ctx.signal });
        return { stopped: true };
      },
    });
    const stage = step({
      id: 'stage',
      title: 'Write the new content to a staging file',
      phase: 'provisioning',
      idempotent: true,
      timeout: '1m',
      retry: { attempts: 3, backoff: '1s' },
      plan: (ctx) => `write ${ctx.params.content.length} bytes to ${ctx.params.marker}.staging`,
      run: (ctx) => {
        ran(ctx.params, 'stage');
        const staging = `${ctx.params.marker}.staging`;
        mkdirSync(dirname(staging), { recursive: true });
        writeFileSync(staging, ctx.params.content);
        ctx.progress({ done: ctx.params.content.length, total: ctx.params.content.length, unit: 'bytes' });
        return { staging };
      },
      verify: (_ctx, out) => readFileSync(out.staging, 'utf8').length > 0 || 'the staging file is empty',
    });
    const canary = step({
      id: 'use-canary',
      title: 'Use the canary secret in a command',
      phase: 'restoration',
      idempotent: true,
      plan: () => 'run a shell command with the canary secret in its environment',
      run: async (ctx) => {
        ran(ctx.params, 'use-canary');
        const secret = ctx.secret('canary');
        // The secret goes to the command through its environment and is logged, on purpose:
        // every record of the run must show it redacted.
        ctx.log.info(`using the canary ${secret}`);
        const result = await ctx.shell.sh('test -n "$CANARY" && printf %s "$CANARY" | wc -c', {
          env: { CANARY: secret },
        });
        return { length: Number(result.stdout.trim()) };
      },
    });
    const write = step({
      id: 'write-marker',
      title: 'Replace the marker file',
      phase: 'restoration',
      destructive: true,
      plan: (ctx) => [
        `replace ${ctx.params.marker} with ${ctx.output(stage).staging} (atomic rename)`,
        `the current marker content is kept in ${ctx.params.marker}.previous`,
      ],
      run: (ctx) => {
        ran(ctx.params, 'write-marker');
        const { staging } = ctx.output(stage);
        const seen = ctx.output(inspect);
        if (seen.exists) writeFileSync(`${ctx.params.marker}.previous`, seen.previous ?? '');
        renameSync(staging, ctx.params.marker);
        return { written: ctx.params.content.length };
      },
      undo: (ctx) => {
        const previous = `${ctx.params.marker}.previous`;
        if (existsSync(previous)) renameSync(previous, ctx.params.marker);
        else rmSync(ctx.params.marker, { force: true });
      },
    });
    const startApp = step({
      id: 'start-app',
      title: 'Start the application',
      phase: 'verification',
      idempotent: true,
      plan: (ctx) => (ctx.params.app ? ctx.service(ctx.params.app).describe('start') : 'no --app given: nothing to start'),
      run: async (ctx) => {
        ran(ctx.params, 'start-app');
        if (!ctx.params.app) return { started: false };
        await ctx.service(ctx.params.app).start({ signal: ctx.signal });
        return { started: true };
      },
    });
    const verifyMarker = step({
      id: 'verify-marker',
      title: 'Verify the marker content',
      phase: 'verification',
      readOnly: true,
      idempotent: true,
      run: async (ctx) => {
        // Reading the write's output ties this check to it: a dry run, which does not write,
        // says the check cannot be made rather than failing it or pretending it passed.
        const { written } = ctx.output(write);
        ran(ctx.params, 'verify-marker');
        const content = existsSync(ctx.params.marker) ? readFileSync(ctx.params.marker, 'utf8') : null;
        if (content?.length !== written || content !== ctx.params.content)
          throw new Error(`${ctx.params.marker} contains ${JSON.stringify(content)}, expected ${JSON.stringify(ctx.params.content)}`);
        if (ctx.params.healthCheck) {
          const check = await ctx.health(ctx.params.healthCheck).check({ signal: ctx.signal });
          if (!check.ok) throw new Error(`health check ${ctx.params.healthCheck}: ${check.detail}`);
        }
        return { ok: true };
      },
    });
    const cleanup = step({
      id: 'cleanup',
      title: 'Remove the previous copy if it is empty',
      phase: 'verification',
      critical: false,
      idempotent: true,
      plan: (ctx) => `remove ${ctx.params.marker}.previous if it is empty`,
      run: (ctx) => {
        ran(ctx.params, 'cleanup');
        const previous = `${ctx.params.marker}.previous`;
        if (existsSync(previous) && statSync(previous).size === 0) rmSync(previous);
        return { done: true };
      },
    });
    return [inspect, directory, decide, stopApp, stage, canary, write, startApp, verifyMarker, cleanup];
  },
});

export default sample;

if (isMain(import.meta.url)) await runbookCli(sample);
