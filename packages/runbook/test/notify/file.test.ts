import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { isRunbookError } from '../../src/errors.js';
import { createFileNotifier } from '../../src/notify/file.js';
import { renderInitial, renderResolution } from '../../src/notify/templates.js';

const START = Date.UTC(2026, 0, 1, 9);
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drkit-notify-test-'));
  dirs.push(dir);
  return dir;
}

const info = {
  product: 'Acme',
  severity: 'sev2' as const,
  title: 'Restore files',
  environment: 'staging',
  runId: 'run-3',
  impact: 'Uploads missing',
  status: 'Restoring',
  startedAt: START,
  now: START,
};

describe('createFileNotifier', () => {
  it('appends one JSON line per notification, creating the directory', async () => {
    const path = join(await tempDir(), 'nested', 'notifications.jsonl');
    const file = createFileNotifier({ path });
    expect(file).toMatchObject({ name: 'file', type: 'file' });
    await Promise.all([file.send(renderInitial(info)), file.send(renderResolution({ ...info, now: START + 5 * 60_000 }))]);
    const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    const [first, second] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(first).toMatchObject({
      kind: 'initial',
      severity: 'sev2',
      runId: 'run-3',
      time: '2026-01-01T09:00:00.000Z',
      runbook: 'Restore files',
    });
    expect(second).toMatchObject({ kind: 'resolution', time: '2026-01-01T09:05:00.000Z' });
    expect(second?.text).toContain('Duration: 5 minutes');
  });

  it('writes a readable block to a stream', async () => {
    const stream = new PassThrough();
    let out = '';
    stream.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    const n = renderInitial(info);
    await createFileNotifier({ name: 'stdout', stream }).send(n);
    expect(out).toBe(`── 2026-01-01T09:00:00.000Z · initial ──\n${n.text}\n\n`);
  });

  it('fails with RUNBOOK_NOTIFY_FAILED when it cannot write', async () => {
    const dir = await tempDir();
    const blocker = join(dir, 'not-a-dir');
    await writeFile(blocker, 'x');
    const file = createFileNotifier({ name: 'timeline', path: join(blocker, 'n.jsonl') });
    const error = await file.send(renderInitial(info)).catch((e: unknown) => e);
    expect(isRunbookError(error, 'RUNBOOK_NOTIFY_FAILED')).toBe(true);
    expect((error as Error).message).toMatch(/file notifier "timeline" could not append the initial notification .*\((ENOTDIR|EEXIST)\)/);

    const stream = new PassThrough();
    stream.destroy();
    const broken = await createFileNotifier({ stream })
      .send(renderInitial(info))
      .catch((e: unknown) => e);
    expect(isRunbookError(broken, 'RUNBOOK_NOTIFY_FAILED')).toBe(true);
  });

  it('keeps going after a failed write, in order', async () => {
    const written: string[] = [];
    let calls = 0;
    const flaky = {
      write(chunk: string, callback: (error?: Error | null) => void) {
        calls += 1;
        if (calls === 1) callback(new Error('EPIPE'));
        else {
          written.push(chunk);
          callback();
        }
        return true;
      },
    } as unknown as NodeJS.WritableStream;
    const file = createFileNotifier({ stream: flaky });
    const results = await Promise.allSettled([
      file.send(renderInitial(info)),
      file.send(renderResolution({ ...info, now: START + 60_000 })),
      file.send(renderInitial({ ...info, status: 'Again' })),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled']);
    expect(written.map((w) => w.split('\n')[0])).toEqual([
      '── 2026-01-01T09:01:00.000Z · resolution ──',
      '── 2026-01-01T09:00:00.000Z · initial ──',
    ]);
  });
});
