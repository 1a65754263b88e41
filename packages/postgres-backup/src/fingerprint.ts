import type pg from 'pg';
import { ident, literal } from './connection.js';
import { messageOf } from './errors.js';

/**
 * What a restore must reproduce, taken in the same snapshot as the dump: the exact row count of
 * every table, the value of every sequence, and how many objects of each kind exist.
 */
export interface PgFingerprint {
  /** `schema.table` (ordinary tables and partitions; identifiers quoted where needed) → rows. */
  tables: Record<string, number>;
  /** `schema.sequence` → its state: `last_value` (as text: sequences are bigint), `is_called` and its increment. */
  sequences: Record<string, { lastValue: string; isCalled: boolean; increment?: string }>;
  /** Counts of schema objects by kind: indexes, constraints, views, functions, triggers, ... */
  objects: Record<string, number>;
}

/** One way two fingerprints differ. */
export interface FingerprintDifference {
  kind: 'table' | 'sequence' | 'object';
  name: string;
  expected: string;
  actual: string;
}

// Objects that belong to the user: not the system catalogs, not temp schemas, not members of
// an extension (those come back with CREATE EXTENSION, not from the dump's own statements).
const USER_NAMESPACE = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'`;
const notExtensionMember = (classid: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${classid}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;

const OBJECT_COUNTS = `
SELECT 'tables' AS kind, count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
UNION ALL SELECT 'partitioned tables', count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'p' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
UNION ALL SELECT 'views', count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'v' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
UNION ALL SELECT 'materialized views', count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'm' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
UNION ALL SELECT 'sequences', count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'S' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
UNION ALL SELECT 'indexes', count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('i', 'I') AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
UNION ALL SELECT 'constraints', count(*)::int FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
  WHERE k.contype IN ('p', 'u', 'f', 'c', 'x', 't') AND ${USER_NAMESPACE}
UNION ALL SELECT 'functions', count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE ${USER_NAMESPACE} AND ${notExtensionMember('pg_proc', 'p.oid')}
UNION ALL SELECT 'triggers', count(*)::int FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE NOT t.tgisinternal AND ${USER_NAMESPACE}
UNION ALL SELECT 'enums', count(*)::int FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typtype = 'e' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_type', 't.oid')}
UNION ALL SELECT 'domains', count(*)::int FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typtype = 'd' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_type', 't.oid')}
UNION ALL SELECT 'extensions', count(*)::int FROM pg_extension WHERE extname <> 'plpgsql'
`;

const TABLES = `
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, format('%I.%I', n.nspname, c.relname) AS ref
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
ORDER BY 1`;

/** What a best-effort fingerprint could not read. */
export interface FingerprintFailure {
  object: string;
  error: string;
}

/**
 * Takes the fingerprint of the database `client` is connected to, in the client's current
 * transaction (callers open a REPEATABLE READ transaction on the dump's snapshot, so both see
 * the same data). With `bestEffort`, a table or sequence that cannot be read is recorded in
 * `failures` instead of failing the whole fingerprint (each read runs in a savepoint).
 * `sequences` are the values {@link readSequences} read earlier (before the dump started).
 */
export async function takeFingerprint(
  client: pg.Client,
  options: { bestEffort?: boolean; signal?: AbortSignal; sequences?: PgFingerprint['sequences'] } = {},
): Promise<PgFingerprint & { failures: FingerprintFailure[] }> {
  const failures: FingerprintFailure[] = [];
  const sequences = options.sequences ?? (await readSequences(client, { ...options, failures }));
  const tables = (await client.query<{ name: string; ref: string }>(TABLES)).rows;
  const objects: Record<string, number> = {};
  const fingerprint: PgFingerprint & { failures: FingerprintFailure[] } = { tables: {}, sequences, objects, failures };
  // The counts first: a backup starts pg_dump right after calling this, and the longest scans
  // are best begun while pg_dump is still reading the catalogs.
  // ONLY: an inheritance parent's own rows, as pg_dump copies them (partitions are leaves anyway).
  if (!options.bestEffort) {
    // One statement per batch: the counts run back to back inside the server.
    for (const batch of chunks(tables, 200)) {
      throwIfAborted(options.signal);
      const sql = batch.map((t) => `SELECT ${literal(t.name)} AS name, count(*)::text AS n FROM ONLY ${t.ref}`).join(' UNION ALL ');
      for (const row of (await client.query<{ name: string; n: string }>(sql)).rows) fingerprint.tables[row.name] = Number(row.n);
    }
  } else {
    for (const t of tables) {
      throwIfAborted(options.signal);
      const row = await guarded(client, failures, t.name, `SELECT count(*)::text AS n FROM ONLY ${t.ref}`);
      if (row) fingerprint.tables[t.name] = Number(row.n);
    }
  }
  for (const row of (await client.query<{ kind: string; n: number }>(OBJECT_COUNTS)).rows) objects[row.kind] = row.n;
  return fingerprint;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/**
 * Reads every sequence's state. Sequences are not transactional: a REPEATABLE READ snapshot
 * does not freeze them, and pg_dump reads them live too. So a backup reads them *before*
 * pg_dump starts: the dump then holds values at or past these, and a restore is checked for
 * "not behind" (see {@link compareFingerprints}) — a sequence behind its backup would hand out
 * ids that already exist.
 */
export async function readSequences(
  client: pg.Client,
  options: { bestEffort?: boolean; failures?: FingerprintFailure[]; signal?: AbortSignal } = {},
): Promise<PgFingerprint['sequences']> {
  const list = (
    await client.query<{ name: string; ref: string; increment: string }>(`
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, format('%I.%I', n.nspname, c.relname) AS ref,
       s.seqincrement::text AS increment
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
ORDER BY 1`)
  ).rows;
  const out: PgFingerprint['sequences'] = {};
  const increments = new Map(list.map((s) => [s.name, s.increment]));
  const put = (name: string, lastValue: string, isCalled: boolean) => {
    out[name] = { lastValue, isCalled, increment: increments.get(name) ?? '1' };
  };
  if (!options.bestEffort) {
    for (const batch of chunks(list, 200)) {
      throwIfAborted(options.signal);
      const sql = batch
        .map((s) => `SELECT ${literal(s.name)} AS name, last_value::text AS last_value, is_called FROM ${s.ref}`)
        .join(' UNION ALL ');
      for (const row of (await client.query<{ name: string; last_value: string; is_called: boolean }>(sql)).rows)
        put(row.name, row.last_value, row.is_called);
    }
    return out;
  }
  for (const s of list) {
    throwIfAborted(options.signal);
    const row = await guarded(client, options.failures ?? [], s.name, `SELECT last_value::text AS last_value, is_called FROM ${s.ref}`);
    if (row) put(s.name, String(row.last_value), Boolean(row.is_called));
  }
  return out;
}

async function guarded(
  client: pg.Client,
  failures: FingerprintFailure[],
  object: string,
  sql: string,
): Promise<Record<string, unknown> | undefined> {
  await client.query('SAVEPOINT drkit_fingerprint');
  try {
    const row = (await client.query<Record<string, unknown>>(sql)).rows[0];
    await client.query('RELEASE SAVEPOINT drkit_fingerprint');
    return row;
  } catch (error) {
    failures.push({ object, error: messageOf(error) });
    await client.query('ROLLBACK TO SAVEPOINT drkit_fingerprint');
    return undefined;
  }
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The value nextval() returns next. */
function nextValue(s: { lastValue: string; isCalled: boolean; increment?: string }): bigint {
  return s.isCalled ? BigInt(s.lastValue) + BigInt(s.increment ?? '1') : BigInt(s.lastValue);
}

/**
 * Every difference between the fingerprint a backup recorded and that of a restored database:
 * row counts and object counts must be equal; a sequence must not be behind the backup's.
 */
export function compareFingerprints(expected: PgFingerprint, actual: PgFingerprint): FingerprintDifference[] {
  const out: FingerprintDifference[] = [];
  const missing = '(missing)';
  for (const name of union(expected.tables, actual.tables)) {
    const e = expected.tables[name];
    const a = actual.tables[name];
    if (e !== a)
      out.push({ kind: 'table', name, expected: e === undefined ? missing : `${e} rows`, actual: a === undefined ? missing : `${a} rows` });
  }
  for (const name of union(expected.sequences, actual.sequences)) {
    const e = expected.sequences[name];
    const a = actual.sequences[name];
    if (e === undefined || a === undefined) {
      out.push({
        kind: 'sequence',
        name,
        expected: e ? `next value ${nextValue(e)}` : missing,
        actual: a ? `next value ${nextValue(a)}` : missing,
      });
      continue;
    }
    // Values read before the dump are a bound, not an exact value (see readSequences).
    const ascending = BigInt(e.increment ?? '1') > 0n;
    const behind = ascending ? nextValue(a) < nextValue(e) : nextValue(a) > nextValue(e);
    if (behind)
      out.push({
        kind: 'sequence',
        name,
        expected: `next value ${ascending ? '>=' : '<='} ${nextValue(e)}`,
        actual: `next value ${nextValue(a)}`,
      });
  }
  for (const name of union(expected.objects, actual.objects)) {
    const e = expected.objects[name];
    const a = actual.objects[name];
    if (e !== a) out.push({ kind: 'object', name, expected: String(e ?? missing), actual: String(a ?? missing) });
  }
  return out;
}

function union(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
}

/** One line per difference, the first `max` of them: for error messages and reports. */
export function describeDifferences(differences: FingerprintDifference[], max = 10): string {
  const lines = differences.slice(0, max).map((d) => `${d.kind} ${d.name}: expected ${d.expected}, found ${d.actual}`);
  if (differences.length > max) lines.push(`... and ${differences.length - max} more`);
  return lines.join('; ');
}

/**
 * Properties of the database itself, which a dump restored into another database does not
 * carry (pg_dump emits them only for `--create`): recorded at backup, applied to the shadow.
 */
export interface DatabaseProperties {
  owner: string;
  encoding: string;
  collate: string;
  ctype: string;
  connectionLimit: number;
  /** `ALTER DATABASE ... SET name = value` settings, as "name=value". */
  settings: string[];
  /** GRANTs on the database (none recorded while its ACL is the default): grantee ("PUBLIC" or a role) and privilege. */
  defaultAcl: boolean;
  grants: { grantee: string; privilege: string }[];
  comment?: string;
}

/** Reads the {@link DatabaseProperties} of `database`. */
export async function readDatabaseProperties(client: pg.Client, database: string): Promise<DatabaseProperties | undefined> {
  const row = (
    await client.query<{
      owner: string;
      encoding: string;
      collate: string;
      ctype: string;
      connlimit: number;
      default_acl: boolean;
      settings: string[] | null;
      comment: string | null;
    }>(
      `SELECT pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate,
              d.datctype AS ctype, d.datconnlimit AS connlimit, d.datacl IS NULL AS default_acl,
              (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0) AS settings,
              shobj_description(d.oid, 'pg_database') AS comment
       FROM pg_database d WHERE d.datname = $1`,
      [database],
    )
  ).rows[0];
  if (!row) return undefined;
  const grants = (
    await client.query<{ grantee: string; privilege: string }>(
      `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee, a.privilege_type AS privilege
       FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1 AND a.grantee <> d.datdba ORDER BY 1, 2`,
      [database],
    )
  ).rows;
  return {
    owner: row.owner,
    encoding: row.encoding,
    collate: row.collate,
    ctype: row.ctype,
    connectionLimit: row.connlimit,
    defaultAcl: row.default_acl,
    settings: row.settings ?? [],
    grants,
    ...(row.comment ? { comment: row.comment } : {}),
  };
}

/** SQL that gives `database` the recorded properties (after CREATE DATABASE made it). */
export function applyDatabasePropertiesSql(database: string, properties: DatabaseProperties): string[] {
  const db = ident(database);
  const out: string[] = [];
  if (properties.connectionLimit !== -1) out.push(`ALTER DATABASE ${db} CONNECTION LIMIT ${properties.connectionLimit}`);
  for (const setting of properties.settings) {
    const at = setting.indexOf('=');
    if (at <= 0) continue;
    const name = setting.slice(0, at);
    const value = setting.slice(at + 1);
    // List settings hold quoted elements: one literal per element, as pg_dump writes them.
    const values = LIST_SETTINGS.has(name.toLowerCase()) ? splitList(value).map(literal).join(', ') : literal(value);
    out.push(`ALTER DATABASE ${db} SET ${ident(name)} TO ${values}`);
  }
  if (!properties.defaultAcl) {
    out.push(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
    for (const g of properties.grants)
      out.push(`GRANT ${g.privilege} ON DATABASE ${db} TO ${g.grantee === 'PUBLIC' ? 'PUBLIC' : ident(g.grantee)}`);
  }
  if (properties.comment !== undefined) out.push(`COMMENT ON DATABASE ${db} IS ${literal(properties.comment)}`);
  return out;
}

const LIST_SETTINGS = new Set([
  'search_path',
  'temp_tablespaces',
  'session_preload_libraries',
  'local_preload_libraries',
  'shared_preload_libraries',
]);

/** Splits `app, "My Schema", public` into its elements, unquoting double-quoted ones. */
function splitList(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < value.length) {
    while (value[i] === ' ' || value[i] === ',') i++;
    if (i >= value.length) break;
    let element = '';
    if (value[i] === '"') {
      i++;
      while (i < value.length) {
        if (value[i] === '"' && value[i + 1] === '"') {
          element += '"';
          i += 2;
        } else if (value[i] === '"') {
          i++;
          break;
        } else element += value[i++];
      }
      while (i < value.length && value[i] !== ',') i++;
    } else {
      while (i < value.length && value[i] !== ',') element += value[i++];
      element = element.trim();
    }
    out.push(element);
  }
  return out;
}
