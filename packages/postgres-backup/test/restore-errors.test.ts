import { describe, expect, it } from 'vitest';
import { classifyRestoreError, parseRestoreErrors } from '../src/restore-errors.js';

// pg_restore 15's stderr with --verbose, as it prints it (the owner role missing, a table that
// already exists, then a multi-line statement).
const STDERR = `pg_restore: connecting to database for restore
pg_restore: creating EXTENSION "pg_trgm"
pg_restore: creating FUNCTION "public.f()"
pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 216; 1255 16388 FUNCTION f() app
pg_restore: error: could not execute query: ERROR:  role "app" does not exist
Command was: ALTER FUNCTION public.f() OWNER TO app;

pg_restore: creating TABLE "public.t"
pg_restore: from TOC entry 215; 1259 16385 TABLE t app
pg_restore: error: could not execute query: ERROR:  relation "t" already exists
Command was: CREATE TABLE public.t (
    a integer
);


pg_restore: error: could not execute query: ERROR:  role "app" does not exist
Command was: ALTER TABLE public.t OWNER TO app;

pg_restore: processing data for table "public.t"
pg_restore: warning: errors ignored on restore: 3`.split('\n');

describe('parseRestoreErrors', () => {
  it('turns stderr into one entry per error, with its TOC entry and statement', () => {
    const { errors, ignoredCount } = parseRestoreErrors(STDERR);
    expect(ignoredCount).toBe(3);
    expect(errors).toEqual([
      {
        class: 'missing-role',
        message: 'role "app" does not exist',
        tocEntry: '216; 1255 16388 FUNCTION f() app',
        command: 'ALTER FUNCTION public.f() OWNER TO app;',
      },
      {
        class: 'already-exists',
        message: 'relation "t" already exists',
        tocEntry: '215; 1259 16385 TABLE t app',
        command: 'CREATE TABLE public.t (\n    a integer\n);',
      },
      {
        class: 'missing-role',
        message: 'role "app" does not exist',
        tocEntry: '215; 1259 16385 TABLE t app',
        command: 'ALTER TABLE public.t OWNER TO app;',
      },
    ]);
  });

  it('finds nothing in a clean run', () => {
    expect(parseRestoreErrors(['pg_restore: connecting to database for restore', 'pg_restore: creating TABLE "public.t"'])).toEqual({
      errors: [],
    });
  });

  it('keeps DETAIL and HINT lines with the message, and cuts long statements', () => {
    const { errors } = parseRestoreErrors([
      'pg_restore: error: could not execute query: ERROR:  permission denied to create extension "plperlu"',
      'HINT:  Must be superuser to create this extension.',
      `Command was: ${'x'.repeat(800)}`,
    ]);
    expect(errors[0]?.class).toBe('permission-denied');
    expect(errors[0]?.message).toBe('permission denied to create extension "plperlu" HINT:  Must be superuser to create this extension.');
    expect(errors[0]?.command?.length).toBe(503);
  });
});

describe('classifyRestoreError', () => {
  it.each([
    ['role "x" does not exist', 'missing-role'],
    [
      'could not open extension control file "/usr/share/postgresql/15/extension/postgis.control": No such file or directory',
      'missing-extension',
    ],
    ['extension "postgis" is not available', 'missing-extension'],
    ['schema "app" already exists', 'already-exists'],
    ['must be owner of extension plpgsql', 'permission-denied'],
    ['relation "public.t" does not exist', 'missing-object'],
    ['invalid input syntax for type integer: "x"', 'other'],
  ])('%s -> %s', (message, expected) => {
    expect(classifyRestoreError(message)).toBe(expected);
  });
});
