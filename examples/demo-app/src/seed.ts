import { Redis } from 'ioredis';
import pg from 'pg';
import { withDeadline } from './deadline.ts';
import { migrate } from './schema.ts';
import { resolveUploadPath, writeFileAtomic } from './uploads.ts';

/** Options of {@link seedDemo}. */
export interface SeedOptions {
  databaseUrl: string;
  redisUrl: string;
  uploadsDir: string;
  /** @default 50 */
  users?: number;
  /** Sessions with TTLs between 1 h and 24 h. @default 40 */
  sessions?: number;
  /** Files of 1 to 64 KiB. @default 30 */
  files?: number;
  /** @default 100 */
  trades?: number;
  /** Everything written follows from it. @default 1 */
  seed?: number;
}

/** What {@link seedDemo} wrote. */
export interface SeedResult {
  users: number;
  sessions: number;
  files: number;
  trades: number;
}

const FIRST = ['ada', 'alan', 'grace', 'edsger', 'barbara', 'donald', 'margaret', 'ken', 'radia', 'tim', 'frances', 'john'];
const LAST = ['lovelace', 'turing', 'hopper', 'dijkstra', 'liskov', 'knuth', 'hamilton', 'thompson', 'perlman', 'lee', 'allen', 'backus'];
const SYMBOLS: readonly [string, number][] = [
  ['BTC-USD', 67_000],
  ['ETH-USD', 3_200],
  ['SOL-USD', 150],
  ['ADA-USD', 0.45],
  ['DOT-USD', 6.5],
];
const FILE_DIRS: readonly [string, string][] = [
  ['uploads/2025/10', 'upload'],
  ['audio/generated', 'clip'],
  ['profiles', 'avatar'],
];
/** Seeded rows are dated from here on, so that two seeds with the same number are equal row for row. */
const BASE_TIME = Date.parse('2025-10-01T00:00:00Z');

/** mulberry32: small, fast, and the same sequence on every machine for a given seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function pick<T>(random: () => number, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function bytes(random: () => number, size: number): Buffer {
  const buffer = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) {
    const word = Math.floor(random() * 4_294_967_296);
    for (let j = 0; j < 4 && i + j < size; j++) buffer[i + j] = (word >>> (8 * j)) & 0xff;
  }
  return buffer;
}

function count(value: number | undefined, fallback: number, what: string): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < 0) throw new Error(`seedDemo: ${what} must be a whole number >= 0, not ${n}`);
  return n;
}

/**
 * Fills the demo app's database, Redis and uploads directory with deterministic content
 * derived from `seed`: users, sessions (hashes `session:<token>` with TTLs of 1 to 24 h),
 * files of 1 to 64 KiB under `uploads/2025/10/`, `audio/generated/` and `profiles/`, and
 * trades of those users. Runs {@link migrate} first, so a fresh database will do. Seeding
 * again with the same seed keeps the users, sessions and files as they are (same emails,
 * tokens and bytes) and appends the trades again.
 */
export async function seedDemo(options: SeedOptions): Promise<SeedResult> {
  const users = count(options.users, 50, 'users');
  const sessions = count(options.sessions, 40, 'sessions');
  const files = count(options.files, 30, 'files');
  const trades = count(options.trades, 100, 'trades');
  const seed = count(options.seed, 1, 'seed');
  if (users === 0 && (sessions > 0 || trades > 0)) throw new Error('seedDemo: sessions and trades belong to users: seed at least one user');
  const random = prng(seed);

  const db = new pg.Client({ connectionString: options.databaseUrl, connectionTimeoutMillis: 10_000, application_name: 'drkit-demo-seed' });
  db.on('error', () => {
    // A lost connection fails the query in progress, which reports it.
  });
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 5000, lazyConnect: true });
  redis.on('error', () => {
    // Reported by the command that fails.
  });
  try {
    await db.connect();
    await redis.connect();
    await migrate(db);

    const emails: string[] = [];
    const names: string[] = [];
    const created: string[] = [];
    for (let i = 0; i < users; i++) {
      const first = pick(random, FIRST);
      const last = pick(random, LAST);
      emails.push(`${first}.${last}.${i + 1}@seed${seed}.demo.example`);
      names.push(`${first[0]?.toUpperCase()}${first.slice(1)} ${last[0]?.toUpperCase()}${last.slice(1)}`);
      created.push(new Date(BASE_TIME + i * 3_600_000).toISOString());
    }
    await db.query(
      `INSERT INTO users (email, name, created_at)
       SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
       ON CONFLICT (email) DO NOTHING`,
      [emails, names, created],
    );
    const { rows } = await db.query<{ id: string; email: string }>('SELECT id, email FROM users WHERE email = ANY($1::text[])', [emails]);
    const idByEmail = new Map(rows.map((row) => [row.email, row.id]));
    const userIds = emails.map((email) => {
      const id = idByEmail.get(email);
      if (id === undefined) throw new Error(`seedDemo: user ${email} was not found after inserting it`);
      return id;
    });

    const tradeRows = {
      user: [] as string[],
      symbol: [] as string[],
      side: [] as string[],
      qty: [] as string[],
      price: [] as string[],
      at: [] as string[],
    };
    for (let i = 0; i < trades; i++) {
      const [symbol, base] = pick(random, SYMBOLS);
      tradeRows.user.push(pick(random, userIds));
      tradeRows.symbol.push(symbol);
      tradeRows.side.push(random() < 0.5 ? 'buy' : 'sell');
      tradeRows.qty.push((0.001 + random() * 10).toFixed(8));
      tradeRows.price.push((base * (0.9 + random() * 0.2)).toFixed(base < 10 ? 6 : 2));
      tradeRows.at.push(new Date(BASE_TIME + users * 3_600_000 + i * 60_000).toISOString());
    }
    if (trades > 0)
      await db.query(
        `INSERT INTO trades (user_id, symbol, side, qty, price, created_at)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::timestamptz[])`,
        [tradeRows.user, tradeRows.symbol, tradeRows.side, tradeRows.qty, tradeRows.price, tradeRows.at],
      );

    if (sessions > 0) {
      const batch = redis.multi();
      for (let i = 0; i < sessions; i++) {
        const token = bytes(random, 16).toString('hex');
        const ttlSeconds = 3600 + Math.floor(random() * (24 * 3600 - 3600 + 1));
        const key = `session:${token}`;
        batch.hset(key, { userId: pick(random, userIds), createdAt: new Date(BASE_TIME + i * 1000).toISOString() });
        batch.expire(key, ttlSeconds);
      }
      const results = await withDeadline('writing sessions', 10_000, batch.exec());
      const failed = results?.find(([error]) => error !== null);
      if (!results || failed)
        throw new Error(`seedDemo: writing sessions failed: ${failed?.[0]?.message ?? 'the transaction was discarded'}`);
    }

    for (let i = 0; i < files; i++) {
      const [dir, stem] = FILE_DIRS[i % FILE_DIRS.length] ?? ['profiles', 'avatar'];
      const size = 1024 + Math.floor(random() * (63 * 1024 + 1));
      const relative = `${dir}/${stem}-${String(i + 1).padStart(3, '0')}.bin`;
      await writeFileAtomic(resolveUploadPath(options.uploadsDir, relative), bytes(random, size));
    }

    return { users, sessions, files, trades };
  } finally {
    await db.end().catch(() => {});
    await withDeadline('closing Redis', 2000, redis.quit()).catch(() => redis.disconnect());
  }
}
