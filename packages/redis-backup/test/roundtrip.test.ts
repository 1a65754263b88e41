import { type RedisSandbox, startRedis } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis, redisTarget } from '../src/connection.js';
import { type ExportOptions, exportRedis } from '../src/export.js';
import { importRedis } from '../src/import.js';
import { readLines } from '../src/records.js';
import { digest, fillDataset, keyStates } from './support/dataset.js';

let source: RedisSandbox;
let counts: Record<string, number>;
const DBS = [0, 3, 15];

beforeAll(async () => {
  source = await startRedis();
  counts = await fillDataset(source.url());
});
afterAll(async () => {
  await source?.stop();
});

async function roundTrip(options: ExportOptions) {
  const target = await startRedis();
  try {
    const exported = exportRedis(redisTarget(source.url()), options);
    const result = await importRedis(redisTarget(target.url()), readLines(exported.chunks));
    return { result, summary: exported.summary(), digest: await digest(target.url()), states: await keyStates(target.url(), DBS) };
  } finally {
    await target.stop();
  }
}

describe.each([
  ['exact', { encoding: 'exact' }],
  ['ndjson', { encoding: 'ndjson' }],
  ['exact, small windows', { encoding: 'exact', windowElements: 7, windowBytes: 16 }],
  ['ndjson, small windows', { encoding: 'ndjson', windowElements: 7, windowBytes: 16 }],
  ['ndjson, pipelined (no script)', { encoding: 'ndjson', scripting: 'off' }],
  ['exact, PTTL expiries', { encoding: 'exact', expiryCommand: 'pttl' }],
] as [string, ExportOptions][])('round trip: %s', (_name, options) => {
  it('restores every key: DEBUG DIGEST equal, type and expiry of every key equal to the millisecond', async () => {
    const before = await digest(source.url());
    const states = await keyStates(source.url(), DBS);
    const { result, summary, digest: after, states: restored } = await roundTrip(options);
    expect(summary.trailer.databases).toEqual(counts);
    expect(result.restored).toBe(Object.values(counts).reduce((a, b) => a + b, 0));
    expect(result.expired).toBe(0);
    expect(after).toBe(before);
    if (options.expiryCommand === 'pttl') {
      // PTTL plus the time read before it can only err early, by the milliseconds between them.
      expect([...restored.keys()]).toEqual([...states.keys()]);
      for (const [key, state] of states) {
        const [type, at] = state.split(' ');
        const [rType, rAt] = (restored.get(key) as string).split(' ');
        expect(rType).toBe(type);
        expect(Number(at) - Number(rAt)).toBeGreaterThanOrEqual(0);
        expect(Number(at) - Number(rAt)).toBeLessThanOrEqual(2);
      }
    } else expect(restored).toEqual(states);
  });
});

describe('the server forgets the export script midway', () => {
  it('runs the batch by the script text after a SCRIPT FLUSH, loads it again, and loses nothing', async () => {
    const before = await digest(source.url());
    const states = await keyStates(source.url(), DBS);
    const flusher = await connectRedis(redisTarget(source.url()));
    await flusher.call('CONFIG', 'RESETSTAT');
    // Once the first batch is in: the batches sent after it name a script the server no longer has.
    let flushed: Promise<unknown> | undefined;
    const {
      result,
      digest: after,
      states: restored,
    } = await roundTrip({
      encoding: 'exact',
      batch: 2,
      onProgress: () => {
        flushed ??= flusher.call('SCRIPT', 'FLUSH');
      },
    });
    await flushed;
    expect(result.restored).toBe(Object.values(counts).reduce((a, b) => a + b, 0));
    expect(after).toBe(before);
    expect(restored).toEqual(states);
    const stats = String(await flusher.call('INFO', 'commandstats'));
    flusher.disconnect();
    // Some batches ran by the script's text, and the next ones loaded it again.
    expect(Number(/cmdstat_eval:calls=(\d+)/.exec(stats)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(Number(/cmdstat_script\|load:calls=(\d+)/.exec(stats)?.[1] ?? 0)).toBeGreaterThan(1);
  });
});
