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
  /** `schema.sequence` → its state: `last_value` (as text: sequences are bigint) and `is_called`. */
  sequences: Record<string, { lastValue: string; isCalled: boolean }>;
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

const RELATIONS = (relkind: string) => `
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, format('%I.%I', n.nspname, c.relname) AS ref
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = '${relkind}' AND ${USER_NAMESPACE} AND ${notExtensionMember('pg_class', 'c.oid')}
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
 */
export async function takeFingerprint(
  client: pg.Client,
  options: { bestEffort?: boolean; signal?: AbortSignal } = {},
): Promise<PgFingerprint & { failures: FingerprintFailure[] }> {
  const failures: FingerprintFailure[] = [];
  const tables = (await client.query<{ name: string; ref: string }>(RELATIONS('r'))).rows;
  const sequences = (await client.query<{ name: string; ref: string }>(RELATIONS('S'))).rows;
  const objects: Record<string, number> = {};
  for (const row of (await client.query<{ kind: string; n: number }>(OBJECT_COUNTS)).rows) objects[row.kind] = row.n;

  const fingerprint: PgFingerprint & { failures: FingerprintFailure[] } = { tables: {}, sequences: {}, objects, failures };
  if (!options.bestEffort) {
    // One statement per batch: the counts run back to back inside the server.
    for (const batch of chunks(tables, 200)) {
      if (options.signal?.aborted) throw options.signal.reason;
      const sql = batch.map((t) => `SELECT ${literal(t.name)} AS name, count(*)::text AS n FROM ${t.ref}`).join(' UNION ALL ');
      for (const row of (await client.query<{ name: string; n: string }>(sql)).rows) fingerprint.tables[row.name] = Number(row.n);
    }
    for (const batch of chunks(sequences, 200)) {
      const sql = batch
        .map((s) => `SELECT ${literal(s.name)} AS name, last_value::text AS last_value, is_called FROM ${s.ref}`)
        .join(' UNION ALL ');
      for (const row of (await client.query<{ name: string; last_value: string; is_called: boolean }>(sql)).rows)
        fingerprint.sequences[row.name] = { lastValue: row.last_value, isCalled: row.is_called };
    }
    return fingerprint;
  }
  for (const t of tables) {
    const row = await guarded(client, failures, t.name, `SELECT count(*)::text AS n FROM ${t.ref}`);
    if (row) fingerprint.tables[t.name] = Number(row.n);
  }
  for (const s of sequences) {
    const row = await guarded(client, failures, s.name, `SELECT last_value::text AS last_value, is_called FROM ${s.ref}`);
    if (row) fingerprint.sequences[s.name] = { lastValue: String(row.last_value), isCalled: Boolean(row.is_called) };
  }
  return fingerprint;
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

/** Every difference between the fingerprint a backup recorded and that of a restored database. */
export function compareFingerprints(expected: PgFingerprint, actual: PgFingerprint): FingerprintDifference[] {
  const out: FingerprintDifference[] = [];
  const missing = '(missing)';
  for (const name of union(expected.tables, actual.tables)) {
    const e = expected.tables[name];
    const a = actual.tables[name];
    if (e !== a)
      out.push({ kind: 'table', name, expected: e === undefined ? missing : `${e} rows`, actual: a === undefined ? missing : `${a} rows` });
  }
  const seq = (s: { lastValue: string; isCalled: boolean } | undefined) =>
    s === undefined ? missing : `${s.lastValue}${s.isCalled ? '' : ' (not called)'}`;
  for (const name of union(expected.sequences, actual.sequences)) {
    const e = seq(expected.sequences[name]);
    const a = seq(actual.sequences[name]);
    if (e !== a) out.push({ kind: 'sequence', name, expected: e, actual: a });
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
    out.push(`ALTER DATABASE ${db} SET ${ident(setting.slice(0, at))} = ${literal(setting.slice(at + 1))}`);
  }
  if (!properties.defaultAcl) {
    out.push(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
    for (const g of properties.grants)
      out.push(`GRANT ${g.privilege} ON DATABASE ${db} TO ${g.grantee === 'PUBLIC' ? 'PUBLIC' : ident(g.grantee)}`);
  }
  if (properties.comment !== undefined) out.push(`COMMENT ON DATABASE ${db} IS ${literal(properties.comment)}`);
  return out;
}
