// `drkit wal-push` and `drkit wal-fetch`: PostgreSQL's archive_command and restore_command.
// PostgreSQL starts one per WAL file, so this module loads only the WAL half of
// postgres-backup (no pg client), and bin.ts routes to it without loading the other commands.
import { isPgBackupError, walFetch, walPush } from '@drkit/postgres-backup/wal';
import { defineCommand } from '../command.js';
import { EXIT, UsageError } from '../errors.js';
import { KEY_FILE_HELP, loadCommandKeys } from '../keys.js';
import { commandStore } from './store.js';

/**
 * The exit code of a wal-fetch that failed for another reason than a file missing from the
 * archive (the store unreachable, a segment that does not authenticate). PostgreSQL reads any
 * exit code above 125 as fatal and stops recovery, instead of taking the failure for the end
 * of the archive and promoting early, without the WAL that could not be read.
 */
export const WAL_FETCH_FATAL = 200;

/** A part size above any common WAL segment size (16 MiB), so that each segment is one PutObject. */
const SINGLE_PUT_PART_SIZE = 64 * 1024 * 1024;

const walOptions = {
  store: {
    type: 'string',
    value: 'URL',
    description: 'the WAL archive: file:///var/backups/drkit or s3://bucket/prefix?region=... (default $DRKIT_STORE)',
  },
  'key-file': { type: 'string', value: 'FILE', description: KEY_FILE_HELP },
  'system-id': {
    type: 'string',
    value: 'ID',
    description: "the cluster's system identifier (default: read from the data directory, where PostgreSQL runs the command)",
  },
} as const;

function systemIdOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,20}$/.test(value))
    throw new UsageError(`--system-id must be the decimal system identifier (pg_controldata shows it), got '${value}'`);
  return value;
}

/** `drkit wal-push %p`: archive_command. */
export const walPushCommand = defineCommand({
  path: ['wal-push'],
  summary: 'archive one WAL file into the store (archive_command = drkit wal-push %p)',
  args: '<path>',
  positionals: { min: 1, max: 1 },
  options: {
    ...walOptions,
    level: { type: 'string', value: 'N', description: 'zstd level 1-19 (default 1: switched segments are mostly zeros)' },
    verbose: { type: 'boolean', description: 'say what was archived (PostgreSQL writes it to its log)' },
  },
  details: `In postgresql.conf (the command runs in the data directory, as the server's account):

  archive_mode = on
  archive_command = 'drkit wal-push --store s3://backups/wal?region=us-east-1 --key-file /etc/drkit/wal.key %p'
  archive_timeout = 60      # seconds: the longest a quiet server waits to archive (the RPO)

Exits 0 only once the sealed segment is stored; any failure exits 1 and PostgreSQL retries
the same file. A file already archived with the same content succeeds again (a retry after
a lost answer); a different file under the same name is refused, never overwritten.
Use a key file or DRKIT_KEY: a passphrase would cost an scrypt stretch per segment.`,
  async run({ options, positionals, io, signal }) {
    const level = options.level === undefined ? undefined : Number(options.level);
    if (level !== undefined && !(Number.isInteger(level) && level >= 1 && level <= 19))
      throw new UsageError(`--level must be a whole number from 1 to 19 (got '${options.level}')`);
    const keys = await loadCommandKeys(options['key-file'], io.env);
    const systemId = systemIdOption(options['system-id']);
    // One PutObject per segment, not a multipart upload of 8 MiB parts: a sealed segment is at
    // most 16 MiB (unless initdb --wal-segsize made it larger), and on S3 each extra request
    // costs the archiver time PostgreSQL waits for.
    const store = commandStore(options.store, io, { partSize: SINGLE_PUT_PART_SIZE });
    try {
      const result = await walPush(positionals[0] as string, {
        store,
        keys,
        signal,
        ...(systemId ? { systemId } : {}),
        ...(level ? { level } : {}),
      });
      if (options.verbose)
        io.stderr.write(
          `drkit: ${result.name} ${result.status === 'archived' ? `archived (${result.size} bytes, ${result.storedSize} stored)` : 'was already archived with the same content'}\n`,
        );
      return EXIT.OK;
    } finally {
      await store.close();
    }
  },
});

/** `drkit wal-fetch %f %p`: restore_command. */
export const walFetchCommand = defineCommand({
  path: ['wal-fetch'],
  summary: 'fetch one WAL file from the store (restore_command = drkit wal-fetch %f %p)',
  args: '<name> <path>',
  positionals: { min: 2, max: 2 },
  options: walOptions,
  details: `restore_command = 'drkit wal-fetch --store URL --key-file /etc/drkit/wal.key %f %p'

Writes the file atomically once every chunk has authenticated. Exits 1 when the archive has no
such file (that is how recovery finds the end of the archive), and ${WAL_FETCH_FATAL} on any other
failure (store unreachable, a segment that does not authenticate), which PostgreSQL treats as
fatal: recovery stops rather than end early without WAL it could not read.`,
  async run({ options, positionals, io, signal }) {
    const systemId = systemIdOption(options['system-id']);
    try {
      const keys = await loadCommandKeys(options['key-file'], io.env);
      const store = commandStore(options.store, io);
      try {
        await walFetch(positionals[0] as string, positionals[1] as string, { store, keys, signal, ...(systemId ? { systemId } : {}) });
      } finally {
        await store.close();
      }
      return EXIT.OK;
    } catch (error) {
      if (isPgBackupError(error, 'PG_WAL_MISSING')) {
        io.stderr.write(`drkit: ${error.message}\n`);
        return EXIT.FAILED;
      }
      if (error instanceof UsageError) throw error;
      const code = (error as { code?: unknown }).code;
      io.stderr.write(
        `drkit: error ${typeof code === 'string' ? `${code}: ` : ''}${error instanceof Error ? error.message : String(error)}; stopping recovery\n`,
      );
      return WAL_FETCH_FATAL;
    }
  },
});
