import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyDatabasePropertiesSql,
  compareFingerprints,
  describeDifferences,
  type FingerprintDifference,
  type PgFingerprint,
  readDatabaseProperties,
  readSequences,
  takeFingerprint,
} from '../src/fingerprint.js';
import {
  connectTo,
  createDatabase,
  databaseExists,
  dropDatabase,
  dumpPlain,
  listDatabases,
  loadSql,
  pgbenchInit,
  query,
} from './support/pg.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/every-type.sql', import.meta.url));
const DB = 'every_type';

// What every-type.sql holds (see the numbers in its header).
const TABLES: Record<string, number> = {
  'app."Line Items"': 1200,
  'app.attachments': 5,
  'app.events_2024_q1': 182,
  'app.events_2024_q2': 182,
  'app.events_2024_q3': 176,
  'app.memberships': 300,
  'app.orders': 600,
  'app.teams': 5,
  'public.measurements': 6,
  'public.users': 300,
};

// The state of every sequence: last_value, is_called and the increment (pg_sequence.seqincrement).
const SEQUENCES: PgFingerprint['sequences'] = {
  'app."Line Items_id_seq"': { lastValue: '1200', isCalled: true, increment: '1' },
  // START WITH 500 INCREMENT BY 5, five rows.
  'app.attachments_id_seq': { lastValue: '520', isCalled: true, increment: '5' },
  // Descending, never used.
  'app.countdown_seq': { lastValue: '0', isCalled: false, increment: '-1' },
  'app.events_id_seq': { lastValue: '540', isCalled: true, increment: '1' },
  'app.invoice_seq': { lastValue: '42', isCalled: true, increment: '1' },
  // START WITH 100000 INCREMENT BY 7, 600 orders: 100000 + 599 * 7.
  'app.order_number_seq': { lastValue: '104193', isCalled: true, increment: '7' },
  'app.orders_id_seq': { lastValue: '600', isCalled: true, increment: '1' },
  'app.teams_id_seq': { lastValue: '5', isCalled: true, increment: '1' },
  'public.measurements_id_seq': { lastValue: '6', isCalled: true, increment: '1' },
  // setval(..., 100, false)
  'public.ticket_seq': { lastValue: '100', isCalled: false, increment: '1' },
  'public.users_id_seq': { lastValue: '300', isCalled: true, increment: '1' },
};

const OBJECTS: Record<string, number> = {
  tables: 10,
  'partitioned tables': 1,
  views: 2,
  'materialized views': 1,
  sequences: 11,
  // users 6 (pkey, email, external_id, gin, partial, expression), measurements 1, teams 2,
  // memberships 2, orders 4, "Line Items" 2, attachments 1, events 8 (pkey and gin on the
  // parent, each cloned on 3 partitions), events_per_day 1.
  indexes: 27,
  // Domain checks 2, users 4, measurements 1, teams 2, memberships 4, orders 4, "Line Items" 3,
  // attachments 3, events 12 (pkey, FK and check on the parent, each repeated on 3 partitions).
  constraints: 35,
  // set_updated_at, slugify, app.order_total, app.next_invoice_number
  functions: 4,
  // users_set_updated_at, orders_set_updated_at (the FK triggers are internal)
  triggers: 2,
  enums: 2,
  domains: 2,
  extensions: 0,
};

let sandbox: PostgresSandbox;
const clients = new Set<pg.Client>();
let tempDir: string;

beforeAll(async () => {
  tempDir = mkdtempSync(join(tmpdir(), 'drkit-fingerprint-test-'));
  sandbox = await startPostgres();
  await createDatabase(sandbox, DB);
  await loadSql(sandbox, DB, FIXTURE);
});

afterAll(async () => {
  await Promise.all([...clients].map((c) => c.end().catch(() => {})));
  await sandbox?.stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

/** A client of this test file, ended by {@link close} or at teardown. */
async function client(database = DB): Promise<pg.Client> {
  const c = await connectTo(sandbox, database);
  clients.add(c);
  return c;
}

async function close(c: pg.Client): Promise<void> {
  clients.delete(c);
  await c.end().catch(() => {});
}

/** The fingerprint of `database` taken as a backup takes it: in a REPEATABLE READ READ ONLY transaction. */
async function fingerprintOf(database: string, options: { bestEffort?: boolean } = {}) {
  const c = await client(database);
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const fingerprint = await takeFingerprint(c, options);
    await c.query('COMMIT');
    return fingerprint;
  } finally {
    await close(c);
  }
}

/** A fresh copy of the fixture database (CREATE DATABASE ... TEMPLATE), for tests that change data. */
async function copyOfFixture(name: string): Promise<string> {
  await createDatabase(sandbox, name, { template: DB });
  return name;
}

describe('takeFingerprint', () => {
  it('counts the rows of every table and partition, reads every sequence and counts the objects of each kind', async () => {
    const fingerprint = await fingerprintOf(DB);
    expect(fingerprint).toEqual({ tables: TABLES, sequences: SEQUENCES, objects: OBJECTS, failures: [] });
    // The partitioned parent is no table of its own (its rows are its partitions').
    expect(Object.keys(fingerprint.tables)).not.toContain('app.events');
  });

  it('agrees with independent catalog queries and counts', async () => {
    const fingerprint = await fingerprintOf(DB);
    const [counts] = await query<Record<string, number>>(
      sandbox,
      DB,
      `WITH mine AS (SELECT oid FROM pg_namespace WHERE nspname IN ('public', 'app'))
       SELECT
         (SELECT count(*)::int FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace IN (SELECT oid FROM mine)) AS indexes,
         (SELECT count(*)::int FROM pg_constraint WHERE connamespace IN (SELECT oid FROM mine)) AS constraints,
         (SELECT count(*)::int FROM pg_proc WHERE pronamespace IN (SELECT oid FROM mine)) AS functions,
         (SELECT count(*)::int FROM information_schema.views WHERE table_schema IN ('public', 'app')) AS views,
         (SELECT count(*)::int FROM pg_matviews) AS "materialized views",
         (SELECT count(*)::int FROM pg_sequences) AS sequences,
         (SELECT count(DISTINCT (trigger_schema, trigger_name))::int FROM information_schema.triggers) AS triggers,
         (SELECT count(*)::int FROM pg_partitioned_table) AS "partitioned tables",
         (SELECT count(*)::int FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema IN ('public', 'app')) AS tables`,
    );
    // information_schema.tables lists the partitioned parent as a BASE TABLE too.
    expect({ ...counts, tables: (counts?.tables ?? 0) - 1 }).toEqual({
      indexes: OBJECTS.indexes,
      constraints: OBJECTS.constraints,
      functions: OBJECTS.functions,
      views: OBJECTS.views,
      'materialized views': OBJECTS['materialized views'],
      sequences: OBJECTS.sequences,
      triggers: OBJECTS.triggers,
      'partitioned tables': OBJECTS['partitioned tables'],
      tables: OBJECTS.tables,
    });
    const [rows] = await query<Record<string, string>>(
      sandbox,
      DB,
      `SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM app.events) AS events,
              (SELECT count(*) FROM ONLY app.events) AS events_only,
              (SELECT count(*) FROM app."Line Items") AS line_items`,
    );
    expect(rows).toEqual({ users: '300', events: '540', events_only: '0', line_items: '1200' });
    const partitions = ['app.events_2024_q1', 'app.events_2024_q2', 'app.events_2024_q3'];
    expect(partitions.reduce((sum, p) => sum + (fingerprint.tables[p] ?? 0), 0)).toBe(540);
  });

  it('sees only what the transaction snapshot sees: tables and rows committed by others later are left out', async () => {
    const db = await copyOfFixture('snapshot_consistency');
    const reader = await client(db);
    const writer = await client(db);
    try {
      await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      // The snapshot is taken by the first statement, as a backup exports it for pg_dump.
      const [exported] = (await reader.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows;
      expect(exported?.id).toMatch(/^[0-9A-F]+-[0-9A-F]+-\d+$/);

      await writer.query(
        `INSERT INTO public.users (email, display_name, external_id)
         SELECT format('late%s@example.com', i), 'Late ' || i, md5('late-' || i)::uuid FROM generate_series(1, 5) AS i`,
      );
      await writer.query(`INSERT INTO app.events (occurred_on, kind) VALUES ('2024-08-01', 'late'), ('2024-08-02', 'late')`);
      await writer.query(`DELETE FROM public.measurements WHERE label = 'pi'`);
      await writer.query('CREATE TABLE public.late_arrival (id int PRIMARY KEY)');
      await writer.query('INSERT INTO public.late_arrival VALUES (1), (2)');
      await writer.query('CREATE VIEW public.late_view AS SELECT 1 AS one');

      const during = await takeFingerprint(reader);
      expect(during.tables).toEqual(TABLES);
      expect(during.objects).toEqual(OBJECTS);
      await reader.query('COMMIT');

      const after = await fingerprintOf(db);
      expect(after.tables).toEqual({
        ...TABLES,
        'public.users': 305,
        'app.events_2024_q3': 178,
        'public.measurements': 5,
        'public.late_arrival': 2,
      });
      expect(after.objects).toEqual({ ...OBJECTS, tables: 11, views: 3, indexes: 28, constraints: 36 });
    } finally {
      await close(reader);
      await close(writer);
      await dropDatabase(sandbox, db);
    }
  });

  it('reads sequences as they are now, not as of the snapshot: PostgreSQL sequences are not transactional', async () => {
    // Documents a limit rather than a wish: nextval() by another session after the snapshot
    // shows in the fingerprint even though the rows it numbered do not. pg_dump reads
    // sequences the same way, at the moment it dumps them.
    const db = await copyOfFixture('snapshot_sequences');
    const reader = await client(db);
    const writer = await client(db);
    try {
      await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await reader.query('SELECT 1');
      await writer.query(`SELECT nextval('app.invoice_seq'), setval('public.ticket_seq', 7, true)`);
      const during = await takeFingerprint(reader);
      const live = {
        ...SEQUENCES,
        'app.invoice_seq': { lastValue: '43', isCalled: true, increment: '1' },
        'public.ticket_seq': { lastValue: '7', isCalled: true, increment: '1' },
      };
      expect(during.sequences).toEqual(live);
      expect(await readSequences(reader)).toEqual(live);
      await reader.query('COMMIT');
    } finally {
      await close(reader);
      await close(writer);
      await dropDatabase(sandbox, db);
    }
  });

  it('readSequences agrees with pg_sequences: last value, is_called and increment of every sequence', async () => {
    const c = await client();
    try {
      const sequences = await readSequences(c);
      expect(sequences).toEqual(SEQUENCES);
      // pg_sequences.last_value is NULL while is_called is false.
      const rows = await query<{ name: string; last_value: string | null; increment_by: string }>(
        sandbox,
        DB,
        `SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) AS name, last_value::text AS last_value,
                increment_by::text AS increment_by
         FROM pg_sequences ORDER BY 1`,
      );
      expect(rows.map((r) => r.name)).toEqual(Object.keys(SEQUENCES).sort());
      for (const r of rows) {
        const s = sequences[r.name];
        expect(s?.increment, r.name).toBe(r.increment_by);
        expect(s?.isCalled ? s.lastValue : null, r.name).toBe(r.last_value);
      }
    } finally {
      await close(c);
    }
  });

  it('uses the sequences a backup read before the snapshot: the dump is ahead of them, and its restore passes', async () => {
    // A backup reads the sequences first, then exports the snapshot pg_dump uses. A row
    // inserted in between is in the dump, and so is its sequence's advance: the restored
    // sequence is ahead of what was recorded, which is no difference.
    const db = await copyOfFixture('sequences_first');
    const restored = 'sequences_first_restored';
    const reader = await client(db);
    try {
      const before = await readSequences(reader);
      expect(before).toEqual(SEQUENCES);
      await query(sandbox, db, `INSERT INTO public.measurements (label, value) VALUES ('late', 1)`);
      await query(sandbox, db, `SELECT nextval('app.invoice_seq')`);

      await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const expected = await takeFingerprint(reader, { sequences: before });
      await reader.query('COMMIT');
      // The given sequences are used as they are, not read again.
      expect(expected.sequences).toBe(before);
      expect(expected.tables).toEqual({ ...TABLES, 'public.measurements': 7 });
      expect(expected.failures).toEqual([]);

      const file = join(tempDir, 'sequences-first.dump.sql');
      writeFileSync(file, await dumpPlain(sandbox, db));
      await createDatabase(sandbox, restored);
      await loadSql(sandbox, restored, file);
      const actual = await fingerprintOf(restored);
      expect(actual.sequences).toEqual({
        ...SEQUENCES,
        'app.invoice_seq': { lastValue: '43', isCalled: true, increment: '1' },
        'public.measurements_id_seq': { lastValue: '7', isCalled: true, increment: '1' },
      });
      expect(compareFingerprints(expected, actual)).toEqual([]);
    } finally {
      await close(reader);
      await dropDatabase(sandbox, restored);
      await dropDatabase(sandbox, db);
    }
  });

  it('counts only the own rows of an inheritance parent, as pg_dump copies them', async () => {
    const db = 'inheritance';
    await createDatabase(sandbox, db);
    const restored = 'inheritance_restored';
    try {
      await query(sandbox, db, 'CREATE TABLE public.parent (id int, note text)');
      await query(sandbox, db, 'CREATE TABLE public.child (extra int) INHERITS (public.parent)');
      await query(sandbox, db, `INSERT INTO public.parent (id, note) VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
      await query(sandbox, db, `INSERT INTO public.child (id, note, extra) VALUES (4, 'd', 40), (5, 'e', 50)`);
      // A plain SELECT on the parent sees the child's rows too.
      expect(await query(sandbox, db, 'SELECT count(*)::int AS n FROM public.parent')).toEqual([{ n: 5 }]);

      const fingerprint = await fingerprintOf(db);
      expect(fingerprint.tables).toEqual({ 'public.child': 2, 'public.parent': 3 });
      expect(fingerprint.objects).toMatchObject({ tables: 2, 'partitioned tables': 0 });
      const bestEffort = await fingerprintOf(db, { bestEffort: true });
      expect(bestEffort).toEqual(fingerprint);

      // Restored from pg_dump, each table has the same rows again.
      const file = join(tempDir, 'inheritance.dump.sql');
      writeFileSync(file, await dumpPlain(sandbox, db));
      await createDatabase(sandbox, restored);
      await loadSql(sandbox, restored, file);
      expect(compareFingerprints(fingerprint, await fingerprintOf(restored))).toEqual([]);
    } finally {
      await dropDatabase(sandbox, restored);
      await dropDatabase(sandbox, db);
    }
  });

  it('gives a faithful restore the same fingerprint: the fixture survives pg_dump and psql byte for byte', async () => {
    const restored = 'restored_plain';
    const source = await dumpPlain(sandbox, DB);
    expect(source).toContain('CREATE TABLE app."Line Items"');
    expect(source).not.toMatch(/^\\(un)?restrict /m);
    const file = join(tempDir, 'every-type.dump.sql');
    writeFileSync(file, source);
    await createDatabase(sandbox, restored);
    try {
      await loadSql(sandbox, restored, file);
      expect(await dumpPlain(sandbox, restored)).toBe(source);
      const [expected, actual] = await Promise.all([fingerprintOf(DB), fingerprintOf(restored)]);
      expect(compareFingerprints(expected, actual)).toEqual([]);
    } finally {
      await dropDatabase(sandbox, restored);
    }
    expect(await databaseExists(sandbox, restored)).toBe(false);
  });

  it('counts a pgbench database', async () => {
    const db = 'pgbench';
    await createDatabase(sandbox, db);
    try {
      await pgbenchInit(sandbox, db, 1);
      const fingerprint = await fingerprintOf(db);
      expect(fingerprint.tables).toEqual({
        'public.pgbench_accounts': 100_000,
        'public.pgbench_branches': 1,
        'public.pgbench_history': 0,
        'public.pgbench_tellers': 10,
      });
      expect(fingerprint.sequences).toEqual({});
      // Three primary keys; --foreign-keys adds five.
      expect(fingerprint.objects).toMatchObject({ tables: 4, indexes: 3, constraints: 8, functions: 0, triggers: 0 });
    } finally {
      await dropDatabase(sandbox, db);
    }
  });

  it('stops before counting when the signal has fired', async () => {
    const c = await client();
    try {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const controller = new AbortController();
      const reason = new Error('stop now');
      controller.abort(reason);
      await expect(takeFingerprint(c, { signal: controller.signal })).rejects.toBe(reason);
      await expect(readSequences(c, { signal: controller.signal })).rejects.toBe(reason);
      await expect(takeFingerprint(c, { signal: controller.signal, bestEffort: true })).rejects.toBe(reason);
      await c.query('ROLLBACK');
    } finally {
      await close(c);
    }
  });
});

describe('takeFingerprint with bestEffort', () => {
  it('on a healthy database: no failures and the same values as a strict fingerprint', async () => {
    const [strict, bestEffort] = await Promise.all([fingerprintOf(DB), fingerprintOf(DB, { bestEffort: true })]);
    expect(bestEffort.failures).toEqual([]);
    expect(bestEffort).toEqual(strict);
    expect(bestEffort.tables).toEqual(TABLES);
    expect(bestEffort.sequences).toEqual(SEQUENCES);
  });

  it('records a table and a sequence it cannot read and goes on with the rest', async () => {
    // Unreadable for a superuser too: another session holds ACCESS EXCLUSIVE locks (as a
    // migration does) on a table and a sequence, and the fingerprinting transaction has a
    // lock_timeout, so reading them fails with "canceling statement due to lock timeout".
    // The catalog queries that list them take no lock on them and succeed.
    const db = await copyOfFixture('best_effort_locked');
    const migration = await client(db);
    const reader = await client(db);
    try {
      await migration.query('BEGIN');
      await migration.query('LOCK TABLE app.attachments IN ACCESS EXCLUSIVE MODE');
      await migration.query('DROP SEQUENCE public.ticket_seq');

      await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await reader.query(`SET LOCAL lock_timeout = '250ms'`);
      const { 'app.attachments': _table, ...readableTables } = TABLES;
      const { 'public.ticket_seq': _sequence, ...readableSequences } = SEQUENCES;

      // readSequences on its own records into the array it is given.
      const failures = [{ object: 'earlier', error: 'kept' }];
      expect(await readSequences(reader, { bestEffort: true, failures })).toEqual(readableSequences);
      expect(failures).toEqual([
        { object: 'earlier', error: 'kept' },
        { object: 'public.ticket_seq', error: expect.stringMatching(/lock timeout/) },
      ]);

      // Sequences are read first.
      const fingerprint = await takeFingerprint(reader, { bestEffort: true });
      expect(fingerprint.failures).toEqual([
        { object: 'public.ticket_seq', error: expect.stringMatching(/lock timeout/) },
        { object: 'app.attachments', error: expect.stringMatching(/lock timeout/) },
      ]);
      expect(fingerprint.tables).toEqual(readableTables);
      expect(fingerprint.sequences).toEqual(readableSequences);
      expect(fingerprint.objects).toEqual(OBJECTS);

      // Each read ran in a savepoint: the transaction is still usable afterwards...
      expect((await reader.query('SELECT count(*)::int AS n FROM public.users')).rows).toEqual([{ n: 300 }]);
      // ...and given the sequences, only the table fails...
      const given = await takeFingerprint(reader, { bestEffort: true, sequences: readableSequences });
      expect(given.failures).toEqual([{ object: 'app.attachments', error: expect.stringMatching(/lock timeout/) }]);
      expect(given.tables).toEqual(readableTables);
      // ...and without bestEffort the same locks fail the whole fingerprint: the sequence...
      await reader.query('SAVEPOINT strict');
      await expect(readSequences(reader)).rejects.toThrow(/lock timeout/);
      await reader.query('ROLLBACK TO SAVEPOINT strict');
      await expect(takeFingerprint(reader)).rejects.toThrow(/lock timeout/);
      await reader.query('ROLLBACK TO SAVEPOINT strict');
      // ...and the table.
      await expect(takeFingerprint(reader, { sequences: readableSequences })).rejects.toThrow(/lock timeout/);
      await reader.query('ROLLBACK');
      await migration.query('ROLLBACK');
    } finally {
      await close(reader);
      await close(migration);
      await dropDatabase(sandbox, db);
    }
  });
});

describe('compareFingerprints', () => {
  it('finds no difference between a database and itself', async () => {
    const [a, b] = await Promise.all([fingerprintOf(DB), fingerprintOf(DB)]);
    expect(compareFingerprints(a, b)).toEqual([]);
  });

  it('reports a deleted row, a sequence set back and a dropped index, each exactly once', async () => {
    const db = await copyOfFixture('compare_changed');
    try {
      const expected = await fingerprintOf(DB);
      await query(sandbox, db, `DELETE FROM public.measurements WHERE label = 'pi'`);
      await query(sandbox, db, `SELECT setval('public.users_id_seq', 250, true)`);
      // Ahead of the backup (is_called turned on): not a difference.
      await query(sandbox, db, `SELECT setval('public.ticket_seq', 100, true)`);
      await query(sandbox, db, 'DROP INDEX public.users_lower_display_name');
      const actual = await fingerprintOf(db);
      expect(compareFingerprints(expected, actual)).toEqual([
        { kind: 'table', name: 'public.measurements', expected: '6 rows', actual: '5 rows' },
        { kind: 'sequence', name: 'public.users_id_seq', expected: 'next value >= 301', actual: 'next value 251' },
        { kind: 'object', name: 'indexes', expected: '27', actual: '26' },
      ]);
    } finally {
      await dropDatabase(sandbox, db);
    }
  });

  it('accepts sequences moved forward after the backup: ascending ones up, a descending one down', async () => {
    // The backup read its sequences before pg_dump started; nextval() in between puts the
    // dump (and so the restore) ahead of them, which is what a sound restore looks like.
    const db = await copyOfFixture('compare_forward');
    try {
      const expected = await fingerprintOf(DB);
      await query(
        sandbox,
        db,
        `SELECT nextval('public.users_id_seq'), nextval('app.attachments_id_seq'), nextval('app.order_number_seq'),
                nextval('app.countdown_seq'), nextval('app.countdown_seq'), setval('app.invoice_seq', 1000, false)`,
      );
      const actual = await fingerprintOf(db);
      expect(actual.sequences).toEqual({
        ...SEQUENCES,
        'public.users_id_seq': { lastValue: '301', isCalled: true, increment: '1' },
        'app.attachments_id_seq': { lastValue: '525', isCalled: true, increment: '5' },
        'app.order_number_seq': { lastValue: '104200', isCalled: true, increment: '7' },
        'app.countdown_seq': { lastValue: '-1', isCalled: true, increment: '-1' },
        'app.invoice_seq': { lastValue: '1000', isCalled: false, increment: '1' },
      });
      expect(compareFingerprints(expected, actual)).toEqual([]);
    } finally {
      await dropDatabase(sandbox, db);
    }
  });

  it('reports an ascending sequence set back, by its increment: its next value exactly as recorded is no difference', async () => {
    const db = await copyOfFixture('compare_backward');
    try {
      const expected = await fingerprintOf(DB);
      // INCREMENT BY 5, last value 520: the next value is 525.
      await query(sandbox, db, `SELECT setval('app.attachments_id_seq', 525, false)`);
      expect(compareFingerprints(expected, await fingerprintOf(db))).toEqual([]);
      await query(sandbox, db, `SELECT setval('app.attachments_id_seq', 524, false)`);
      expect(compareFingerprints(expected, await fingerprintOf(db))).toEqual([
        { kind: 'sequence', name: 'app.attachments_id_seq', expected: 'next value >= 525', actual: 'next value 524' },
      ]);
      await query(sandbox, db, `SELECT setval('app.attachments_id_seq', 510, true)`);
      expect(compareFingerprints(expected, await fingerprintOf(db))).toEqual([
        { kind: 'sequence', name: 'app.attachments_id_seq', expected: 'next value >= 525', actual: 'next value 515' },
      ]);
    } finally {
      await dropDatabase(sandbox, db);
    }
  });

  it('reports a descending sequence moved up (behind it), with <=', async () => {
    const db = await copyOfFixture('compare_descending');
    try {
      // Three values handed out: 0, -1, -2; the next is -3.
      await query(sandbox, db, `SELECT nextval('app.countdown_seq'), nextval('app.countdown_seq'), nextval('app.countdown_seq')`);
      const expected = await fingerprintOf(db);
      expect(expected.sequences['app.countdown_seq']).toEqual({ lastValue: '-2', isCalled: true, increment: '-1' });

      await query(sandbox, db, `SELECT setval('app.countdown_seq', -1, true)`);
      expect(compareFingerprints(expected, await fingerprintOf(db))).toEqual([
        { kind: 'sequence', name: 'app.countdown_seq', expected: 'next value <= -3', actual: 'next value -2' },
      ]);
      // Its next value exactly as recorded, then further down: no difference.
      await query(sandbox, db, `SELECT setval('app.countdown_seq', -3, false)`);
      expect(compareFingerprints(expected, await fingerprintOf(db))).toEqual([]);
      await query(sandbox, db, `SELECT setval('app.countdown_seq', -10, true)`);
      expect(compareFingerprints(expected, await fingerprintOf(db))).toEqual([]);
    } finally {
      await dropDatabase(sandbox, db);
    }
  });

  it('reports is_called turned off when that puts the next value behind, not when it is turned on', async () => {
    const db = await copyOfFixture('compare_is_called');
    try {
      const expected = await fingerprintOf(DB);
      // app.invoice_seq: 42 called (next 43) → 42 not called (next 42): behind.
      // public.ticket_seq: 100 not called (next 100) → 100 called (next 101): ahead.
      await query(sandbox, db, `SELECT setval('app.invoice_seq', 42, false), setval('public.ticket_seq', 100, true)`);
      expect(compareFingerprints(expected, await fingerprintOf(db))).toEqual([
        { kind: 'sequence', name: 'app.invoice_seq', expected: 'next value >= 43', actual: 'next value 42' },
      ]);
    } finally {
      await dropDatabase(sandbox, db);
    }
  });

  it('reports every table an ON DELETE CASCADE reached, partitions included', async () => {
    const db = await copyOfFixture('compare_cascade');
    try {
      const expected = await fingerprintOf(DB);
      // User 7 has 1 membership, orders 6 and 306 (4 line items between them) and events on
      // 2024-01-07 and 2024-02-06 (both in Q1); the attachments belong to orders 1 to 4.
      await query(sandbox, db, 'DELETE FROM public.users WHERE id = 7');
      const differences = compareFingerprints(expected, await fingerprintOf(db));
      expect(differences).toEqual([
        { kind: 'table', name: 'app."Line Items"', expected: '1200 rows', actual: '1196 rows' },
        { kind: 'table', name: 'app.events_2024_q1', expected: '182 rows', actual: '180 rows' },
        { kind: 'table', name: 'app.memberships', expected: '300 rows', actual: '299 rows' },
        { kind: 'table', name: 'app.orders', expected: '600 rows', actual: '598 rows' },
        { kind: 'table', name: 'public.users', expected: '300 rows', actual: '299 rows' },
      ]);
      expect(describeDifferences(differences, 2)).toBe(
        'table app."Line Items": expected 1200 rows, found 1196 rows; table app.events_2024_q1: expected 182 rows, found 180 rows; ... and 3 more',
      );
    } finally {
      await dropDatabase(sandbox, db);
    }
  });

  it('reports what only one side has as (missing), a sequence by its next value', () => {
    const expected: PgFingerprint = {
      tables: { 'public.a': 1, 'public.gone': 0 },
      sequences: {
        'public.s': { lastValue: '5', isCalled: true, increment: '5' },
        'public.down': { lastValue: '-3', isCalled: true, increment: '-1' },
      },
      objects: { indexes: 2 },
    };
    const actual: PgFingerprint = {
      tables: { 'public.a': 1, 'public.new': 3 },
      sequences: { 'public.t': { lastValue: '1', isCalled: false, increment: '1' } },
      objects: { indexes: 2, views: 1 },
    };
    expect(compareFingerprints(expected, actual)).toEqual([
      { kind: 'table', name: 'public.gone', expected: '0 rows', actual: '(missing)' },
      { kind: 'table', name: 'public.new', expected: '(missing)', actual: '3 rows' },
      { kind: 'sequence', name: 'public.down', expected: 'next value -4', actual: '(missing)' },
      { kind: 'sequence', name: 'public.s', expected: 'next value 10', actual: '(missing)' },
      { kind: 'sequence', name: 'public.t', expected: '(missing)', actual: 'next value 1' },
      { kind: 'object', name: 'views', expected: '(missing)', actual: '1' },
    ]);
  });

  it('compares sequences by next value: is_called and increment count, in bigint, and an unrecorded increment is 1', () => {
    const compare = (e: PgFingerprint['sequences'][string], a: PgFingerprint['sequences'][string]) =>
      compareFingerprints({ tables: {}, sequences: { s: e }, objects: {} }, { tables: {}, sequences: { s: a }, objects: {} });
    // is_called turned off: the next value drops by one increment.
    expect(compare({ lastValue: '1', isCalled: true, increment: '1' }, { lastValue: '1', isCalled: false, increment: '1' })).toEqual([
      { kind: 'sequence', name: 's', expected: 'next value >= 2', actual: 'next value 1' },
    ]);
    expect(compare({ lastValue: '1', isCalled: false, increment: '1' }, { lastValue: '1', isCalled: true, increment: '1' })).toEqual([]);
    // The same last value, but the restore's is_called puts it at 10, below 20.
    expect(compare({ lastValue: '10', isCalled: true, increment: '10' }, { lastValue: '10', isCalled: false, increment: '10' })).toEqual([
      { kind: 'sequence', name: 's', expected: 'next value >= 20', actual: 'next value 10' },
    ]);
    // Descending: is_called turned off leaves it one step higher, i.e. behind.
    expect(compare({ lastValue: '-5', isCalled: true, increment: '-2' }, { lastValue: '-5', isCalled: false, increment: '-2' })).toEqual([
      { kind: 'sequence', name: 's', expected: 'next value <= -7', actual: 'next value -5' },
    ]);
    expect(compare({ lastValue: '-5', isCalled: false, increment: '-2' }, { lastValue: '-5', isCalled: true, increment: '-2' })).toEqual(
      [],
    );
    // Beyond 2^53: no rounding through Number.
    expect(
      compare(
        { lastValue: '9007199254740993', isCalled: true, increment: '1' },
        { lastValue: '9007199254740993', isCalled: false, increment: '1' },
      ),
    ).toEqual([{ kind: 'sequence', name: 's', expected: 'next value >= 9007199254740994', actual: 'next value 9007199254740993' }]);
    expect(
      compare({ lastValue: '9223372036854775806', isCalled: true, increment: '1' }, { lastValue: '9223372036854775807', isCalled: false }),
    ).toEqual([]);
    // Fingerprints recorded without increments: 1.
    expect(compare({ lastValue: '5', isCalled: true }, { lastValue: '5', isCalled: false })).toEqual([
      { kind: 'sequence', name: 's', expected: 'next value >= 6', actual: 'next value 5' },
    ]);
  });
});

describe('describeDifferences', () => {
  const differences: FingerprintDifference[] = Array.from({ length: 12 }, (_, i) => ({
    kind: 'table',
    name: `public.t${i}`,
    expected: `${i} rows`,
    actual: `${i + 1} rows`,
  }));

  it('writes one line per difference, the first 10 by default, then how many more', () => {
    const text = describeDifferences(differences);
    const parts = text.split('; ');
    expect(parts).toHaveLength(11);
    expect(parts[0]).toBe('table public.t0: expected 0 rows, found 1 rows');
    expect(parts[9]).toBe('table public.t9: expected 9 rows, found 10 rows');
    expect(parts[10]).toBe('... and 2 more');
  });

  it('truncates after max, and says nothing more when all fit', () => {
    expect(describeDifferences(differences, 1)).toBe('table public.t0: expected 0 rows, found 1 rows; ... and 11 more');
    expect(describeDifferences(differences.slice(0, 3), 3)).not.toContain('more');
    expect(describeDifferences(differences, 12).split('; ')).toHaveLength(12);
    expect(describeDifferences([])).toBe('');
    expect(describeDifferences([{ kind: 'object', name: 'indexes', expected: '27', actual: '26' }])).toBe(
      'object indexes: expected 27, found 26',
    );
  });
});

describe('readDatabaseProperties and applyDatabasePropertiesSql', () => {
  /** Reads `source`, applies its properties to a new empty `target`, and returns both readings. */
  async function roundTrip(source: string, target: string) {
    const admin = await client('postgres');
    try {
      const recorded = await readDatabaseProperties(admin, source);
      if (!recorded) throw new Error(`database ${source} not found`);
      await createDatabase(sandbox, target);
      const statements = applyDatabasePropertiesSql(target, recorded);
      for (const statement of statements) await admin.query(statement);
      return { recorded, applied: await readDatabaseProperties(admin, target), statements };
    } finally {
      await close(admin);
    }
  }

  async function cleanup(...names: string[]): Promise<void> {
    for (const name of names) await dropDatabase(sandbox, name);
  }

  it('carries settings, the connection limit, the comment and a non-default ACL to another database', async () => {
    await createDatabase(sandbox, 'props_source');
    try {
      const user = `"${sandbox.user.replaceAll('"', '""')}"`;
      for (const sql of [
        `ALTER DATABASE props_source SET work_mem = '8MB'`,
        `ALTER DATABASE props_source SET statement_timeout = '5min'`,
        `ALTER DATABASE props_source SET drkit.tenant = 'acme, inc.'`,
        'ALTER DATABASE props_source CONNECTION LIMIT 25',
        `COMMENT ON DATABASE props_source IS 'Ledger — production, it''s important'`,
        'REVOKE CONNECT ON DATABASE props_source FROM PUBLIC',
        `GRANT CONNECT ON DATABASE props_source TO ${user}`,
      ])
        await query(sandbox, 'postgres', sql);

      const { recorded, applied, statements } = await roundTrip('props_source', 'props_target');
      expect(recorded).toEqual({
        owner: sandbox.user,
        encoding: 'UTF8',
        collate: 'C',
        ctype: 'C',
        connectionLimit: 25,
        defaultAcl: false,
        settings: ['work_mem=8MB', 'statement_timeout=5min', 'drkit.tenant=acme, inc.'],
        // The owner's own privileges are left out; PUBLIC keeps TEMPORARY.
        grants: [{ grantee: 'PUBLIC', privilege: 'TEMPORARY' }],
        comment: "Ledger — production, it's important",
      });
      expect(statements).toContain('REVOKE ALL ON DATABASE "props_target" FROM PUBLIC');
      expect(applied).toEqual(recorded);
      expect(await listDatabases(sandbox)).toEqual(expect.arrayContaining(['props_source', 'props_target']));
    } finally {
      await cleanup('props_source', 'props_target');
    }
  });

  it('carries a search_path of two schemas', async () => {
    await createDatabase(sandbox, 'path_source');
    try {
      await query(sandbox, 'postgres', 'ALTER DATABASE path_source SET search_path = app, public');
      const { recorded, applied, statements } = await roundTrip('path_source', 'path_target');
      expect(recorded?.settings).toEqual(['search_path=app, public']);
      // One literal per element, as pg_dump writes list settings.
      expect(statements).toEqual([`ALTER DATABASE "path_target" SET "search_path" TO 'app', 'public'`]);
      expect(applied?.settings).toEqual(recorded.settings);
      // A session in the copy gets both schemas.
      expect(await query(sandbox, 'path_target', 'SHOW search_path')).toEqual([{ search_path: 'app, public' }]);
    } finally {
      await cleanup('path_source', 'path_target');
    }
  });

  it('carries list elements that need quoting: "$user", a space, a comma, a double quote', async () => {
    await createDatabase(sandbox, 'quoted_path_source');
    try {
      await query(
        sandbox,
        'postgres',
        `ALTER DATABASE quoted_path_source SET search_path = "$user", "My Schema", "a,b", "say ""hi""", public`,
      );
      const { recorded, applied, statements } = await roundTrip('quoted_path_source', 'quoted_path_target');
      expect(recorded?.settings).toEqual(['search_path="$user", "My Schema", "a,b", "say ""hi""", public']);
      expect(statements).toEqual([
        `ALTER DATABASE "quoted_path_target" SET "search_path" TO '$user', 'My Schema', 'a,b', 'say "hi"', 'public'`,
      ]);
      expect(applied?.settings).toEqual(recorded.settings);
    } finally {
      await cleanup('quoted_path_source', 'quoted_path_target');
    }
  });

  it('leaves a default ACL alone: no REVOKE, and the copy still has the default ACL', async () => {
    await createDatabase(sandbox, 'acl_source');
    try {
      await query(sandbox, 'postgres', `COMMENT ON DATABASE acl_source IS 'plain'`);
      const { recorded, applied, statements } = await roundTrip('acl_source', 'acl_target');
      expect(recorded).toMatchObject({ defaultAcl: true, grants: [], connectionLimit: -1, settings: [], comment: 'plain' });
      expect(statements).toEqual([`COMMENT ON DATABASE "acl_target" IS 'plain'`]);
      expect(applied).toEqual(recorded);
    } finally {
      await cleanup('acl_source', 'acl_target');
    }
    expect(await listDatabases(sandbox)).not.toContain('acl_target');
  });

  it('returns undefined for a database that does not exist', async () => {
    const admin = await client('postgres');
    try {
      expect(await readDatabaseProperties(admin, 'no_such_database')).toBeUndefined();
    } finally {
      await close(admin);
    }
  });
});
