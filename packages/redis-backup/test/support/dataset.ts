import { Redis } from 'ioredis';

/** A client for tests: errors go to the failing command, never to an unhandled event. */
export function client(url: string): Redis {
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  return redis;
}

/** Absolute expiries used by the dataset: far enough ahead not to pass during a test, with odd milliseconds. */
export const FAR = () => Date.now() + 3_600_000 + 123;

/**
 * Fills a server with every type and the awkward cases: binary keys and values, integers,
 * big and small encodings, inf and 17-digit zset scores, streams with consumer groups,
 * pending entries, deleted entries and an empty stream, TTLs with odd milliseconds, and keys
 * in databases 0, 3 and 15. Returns the number of keys per database.
 */
export async function fillDataset(url: string): Promise<Record<string, number>> {
  const r = client(url);
  try {
    const bin = (...bytes: number[]) => Buffer.from(bytes);
    await r.select(0);
    const p = r.pipeline();
    // strings
    p.set('str:text', 'hello wörld ✓');
    p.set('str:int', '12345');
    p.set('str:empty', '');
    p.set(bin(0xff, 0x00, 0xfe, 0x0a), bin(0x00, 0x01, 0xc3, 0x28, 0xff, 0x0a, 0x0d));
    p.set('str:big', `${'x'.repeat(100_000)}end`);
    p.set('str:ttl', 'soon');
    p.pexpireat('str:ttl', FAR());
    // hashes: a small listpack and a big hashtable, one with binary fields
    p.hset('hash:small', 'a', '1', 'b', 'two', 'c', '');
    for (let i = 0; i < 300; i++) p.hset('hash:big', `field-${i}`, `value-${i}`.repeat((i % 5) + 1));
    p.hset('hash:bin', bin(0x80, 0x81), bin(0x00, 0xff), 'text', bin(0xfe));
    p.pexpireat('hash:big', FAR() + 7);
    // lists
    p.rpush('list:small', 'a', 'b', 'a', '');
    for (let i = 0; i < 50; i++) p.rpush('list:big', ...Array.from({ length: 20 }, (_, j) => `item-${i}-${j}`));
    p.rpush('list:bin', bin(0xff), bin(0x00), 'x');
    // sets: intset, listpack, hashtable
    p.sadd('set:int', 1, 2, 3, 1000000, -5);
    p.sadd('set:small', 'a', 'b', 'c');
    for (let i = 0; i < 600; i++) p.sadd('set:big', `member-${i}`);
    p.sadd('set:bin', bin(0xc3, 0x28), bin(0x00), 'plain');
    p.pexpireat('set:small', FAR() + 11);
    // zsets: inf, -inf, 17 significant digits, tiny and huge scores
    p.zadd(
      'zset:edge',
      'inf',
      'plus-inf',
      '-inf',
      'minus-inf',
      '0.1',
      'tenth',
      String(1 / 3),
      'third',
      '1e308',
      'huge',
      '5e-324',
      'tiny',
      '-0',
      'minus-zero',
      '123456789.12345679',
      'seventeen',
    );
    for (let i = 0; i < 400; i++) p.zadd('zset:big', String(i * Math.PI), `m-${i}`);
    p.zadd('zset:bin', '1.5', bin(0xff, 0xfe));
    p.pexpireat('zset:edge', FAR() + 13);
    await p.exec();
    // streams: entries, deletions, groups, consumers, pending entries
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await r.xadd('stream:events', '*', 'n', String(i), 'payload', `p-${i}`)) as string);
    await r.call('XADD', 'stream:events', '*', 'bin', bin(0xff, 0x00));
    await r.xdel('stream:events', ids[3] as string, ids[29] as string);
    await r.xgroup('CREATE', 'stream:events', 'workers', '0');
    await r.xgroup('CREATE', 'stream:events', 'audit', '$');
    await r.call('XGROUP', 'CREATECONSUMER', 'stream:events', 'workers', 'idle-consumer');
    await r.xreadgroup('GROUP', 'workers', 'alice', 'COUNT', 5, 'STREAMS', 'stream:events', '>');
    await r.xreadgroup('GROUP', 'workers', 'bob', 'COUNT', 3, 'STREAMS', 'stream:events', '>');
    await r.xack('stream:events', 'workers', ids[0] as string);
    await r.xadd('stream:empty', '5-1', 'x', '1');
    await r.xdel('stream:empty', '5-1');
    await r.xgroup('CREATE', 'stream:grouped', 'g', '$', 'MKSTREAM');
    await r.pexpireat('stream:events', FAR() + 17);
    await r.select(3);
    await r.set('db3:a', 'a');
    await r.set('db3:ttl', 'b', 'PX', 7_200_000);
    await r.hset('db3:h', 'f', 'v');
    await r.select(15);
    await r.set(bin(0x00), bin(0x00));
    await r.sadd('db15:s', 'x');
    await r.pexpireat('db15:s', FAR() + 19);
    const out: Record<string, number> = {};
    for (const db of [0, 3, 15]) {
      await r.select(db);
      out[String(db)] = await r.dbsize();
    }
    return out;
  } finally {
    r.disconnect();
  }
}

/** Every key of every database with its type and PEXPIRETIME, keyed by db and hex key. */
export async function keyStates(url: string, dbs: number[]): Promise<Map<string, string>> {
  const r = client(url);
  try {
    const out = new Map<string, string>();
    for (const db of dbs) {
      await r.select(db);
      const keys = ((await r.keysBuffer('*')) as Buffer[]).sort(Buffer.compare);
      for (const key of keys) {
        const type = await r.type(key);
        const at = await r.call('PEXPIRETIME', key);
        out.set(`${db}/${key.toString('hex')}`, `${type} ${at}`);
      }
    }
    return out;
  } finally {
    r.disconnect();
  }
}

/** DEBUG DIGEST of the whole server. */
export async function digest(url: string): Promise<string> {
  const r = client(url);
  try {
    return String(await r.call('DEBUG', 'DIGEST'));
  } finally {
    r.disconnect();
  }
}

/** XINFO STREAM FULL of a stream, without what a restore cannot keep (seen times, idle times). */
export async function streamState(url: string, key: string): Promise<unknown> {
  const r = client(url);
  try {
    const full = (await r.call('XINFO', 'STREAM', key, 'FULL')) as unknown[];
    return JSON.parse(JSON.stringify(full), (_k, v) => v);
  } finally {
    r.disconnect();
  }
}
