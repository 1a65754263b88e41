import { createReadStream, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type Compression,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_LEVELS,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  type SealOptions,
  type StreamProgress,
  seal,
  writeAtomically,
} from '@drkit/crypto-stream';
import { type CliIo, defineCommand } from '../command.js';
import { EXIT, UsageError } from '../errors.js';
import { KEY_FILE_HELP, KEY_SOURCES_HELP, loadCommandKeys, sealingKeyId } from '../keys.js';

// Helpers shared by `drkit seal` and `drkit open`.

/** Read size for input files: large reads keep the per-chunk overhead of the pipeline low. */
export const READ_SIZE = 1024 * 1024;

/** A failure of a command, printed by main() as `drkit: error <code>: <message>` (exit 1). */
export function commandError(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/** The value of a required path flag. @throws UsageError when it is missing or empty */
export function requiredPath(value: string | undefined, flag: string, command: string): string {
  if (value === undefined || value === '')
    throw new UsageError(
      `'drkit ${command}' needs ${flag} <FILE> ('-' for ${flag === '--in' ? 'stdin' : 'stdout'}) (see 'drkit ${command} --help')`,
    );
  return value;
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Checks that the input file exists and is a file; returns its stats (undefined for stdin). */
export async function checkInput(path: string): Promise<Stats | undefined> {
  if (path === '-') return undefined;
  const stats = await statOrUndefined(path);
  if (!stats) throw commandError('CLI_INPUT_MISSING', `the input file ${path} does not exist`);
  if (stats.isDirectory()) throw commandError('CLI_INPUT_INVALID', `the input ${path} is a directory; give a file`);
  return stats;
}

/**
 * Checks where the output goes. Returns a refusal message when the file exists and --force
 * was not given: a DR tool never overwrites silently.
 */
export async function checkOutput(path: string, input: Stats | undefined, force: boolean | undefined): Promise<string | undefined> {
  if (path === '-') return undefined;
  const existing = await statOrUndefined(path);
  if (!existing) {
    const parent = await statOrUndefined(dirname(path));
    if (!parent?.isDirectory()) throw commandError('CLI_OUTPUT_INVALID', `the directory of the output ${path} does not exist`);
    return undefined;
  }
  if (existing.isDirectory()) throw commandError('CLI_OUTPUT_INVALID', `the output ${path} is a directory; give a file path`);
  if (input && existing.dev === input.dev && existing.ino === input.ino)
    throw new UsageError(`--in and --out are the same file (${path}); write to another file`);
  if (!force) return `${path} already exists; nothing was written (pass --force to replace it)`;
  return undefined;
}

/**
 * Writes `source` to `path` atomically (temp file, fsync, rename; nothing left on failure).
 * Without `replace`, a file that appears at `path` meanwhile is never overwritten.
 */
export async function writeFileAtomically(
  path: string,
  source: AsyncIterable<Buffer>,
  options: { replace: boolean; signal: AbortSignal },
): Promise<void> {
  try {
    await writeAtomically(path, source, { mode: 0o600, exclusive: !options.replace, signal: options.signal });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      throw commandError('CLI_OUTPUT_EXISTS', `${path} appeared while writing; it was left as it is (pass --force to replace it)`, error);
    throw error;
  }
}

/** Whether a stream is a terminal (binary output must not go there). */
export function isTerminal(stream: Writable): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/** Writes `source` to the command's stdout (never ending it: process.stdout stays open). */
export async function toStdout(source: AsyncIterable<Buffer>, io: CliIo, signal: AbortSignal): Promise<void> {
  await pipeline(source, io.stdout, { signal, end: false });
}

/**
 * The input as a stream: stdin for '-', else the file with large reads. An abort destroys
 * stdin: a read waiting on a quiet pipe would otherwise keep the command from stopping.
 */
export function inputStream(path: string, io: CliIo, signal: AbortSignal): Readable {
  if (path !== '-') return createReadStream(path, { highWaterMark: READ_SIZE, signal });
  signal.addEventListener('abort', () => io.stdin.destroy(), { once: true });
  return io.stdin;
}

/** A path as shown in the summary. */
export function shown(path: string, side: 'in' | 'out'): string {
  return path === '-' ? (side === 'in' ? 'stdin' : 'stdout') : path;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function seconds(started: number): string {
  return `${((performance.now() - started) / 1000).toFixed(2)} s`;
}

const COMPRESSIONS = ['none', 'gzip', 'zstd'] as const satisfies readonly Compression[];
const LEVEL_RANGES: Record<Exclude<Compression, 'none'>, [number, number]> = { gzip: [1, 9], zstd: [1, 19] };

function parseCompression(value: string | undefined): Compression {
  if (value === undefined) return 'zstd';
  const found = COMPRESSIONS.find((c) => c === value);
  if (!found) throw new UsageError(`--compress must be one of ${COMPRESSIONS.join(', ')} (got '${value}')`);
  return found;
}

function parseLevel(value: string | undefined, compression: Compression): number | undefined {
  if (value === undefined) return undefined;
  if (compression === 'none') throw new UsageError('--level needs --compress gzip or zstd');
  const [min, max] = LEVEL_RANGES[compression];
  const level = Number(value);
  if (!/^\d+$/.test(value) || level < min || level > max)
    throw new UsageError(`--level for ${compression} must be an integer from ${min} to ${max} (got '${value}')`);
  return level;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 * 1024 };

function parseChunkSize(value: string | undefined): number {
  if (value === undefined) return DEFAULT_CHUNK_SIZE;
  const match = /^(\d+)\s*(?:([kKmM])(?:i?[bB])?)?$/.exec(value.trim());
  const size = match ? Number(match[1]) * (SIZE_UNITS[(match[2] ?? '').toLowerCase()] ?? Number.NaN) : Number.NaN;
  if (!Number.isSafeInteger(size) || size < MIN_CHUNK_SIZE || size > MAX_CHUNK_SIZE)
    throw new UsageError(
      `--chunk-size must be ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes (suffixes K and M are 1024 and 1048576) (got '${value}')`,
    );
  return size;
}

/** `drkit seal`: compress and encrypt a file into a sealed stream. */
export const sealCommand = defineCommand({
  path: ['seal'],
  summary: 'compress and encrypt a file (or stdin) into a sealed stream',
  options: {
    in: { type: 'string', value: 'FILE', description: "the file to seal; '-' reads stdin" },
    out: { type: 'string', value: 'FILE', description: "where the sealed stream goes; '-' writes stdout" },
    compress: { type: 'string', value: 'none|gzip|zstd', description: 'compression before sealing (default zstd)' },
    level: { type: 'string', value: 'N', description: 'compression level: gzip 1-9 (default 6), zstd 1-19 (default 3)' },
    'chunk-size': {
      type: 'string',
      value: 'BYTES',
      description: `bytes of compressed plaintext per sealed chunk, ${MIN_CHUNK_SIZE} to 64M (default 1M; K and M suffixes)`,
    },
    'key-file': { type: 'string', value: 'FILE', description: KEY_FILE_HELP },
    force: { type: 'boolean', description: 'replace --out if it already exists' },
  },
  details: `
The output file appears only when the whole input is sealed: it is written to a temp file in
the same directory, fsynced, and renamed into place (mode 0600). An existing --out is never
replaced without --force (exit 3). A one-line summary goes to stderr at the end.

${KEY_SOURCES_HELP}

Examples:
  drkit seal --in db.dump --out db.dump.sealed
  pg_dump -Fc mydb | drkit seal --in - --out mydb.dump.sealed --compress none`,
  async run({ options, io, signal }) {
    const inPath = requiredPath(options.in, '--in', 'seal');
    const outPath = requiredPath(options.out, '--out', 'seal');
    const compression = parseCompression(options.compress);
    const level = parseLevel(options.level, compression);
    const chunkSize = parseChunkSize(options['chunk-size']);
    if (outPath === '-' && isTerminal(io.stdout))
      throw new UsageError('refusing to write a sealed stream to a terminal; redirect stdout or give --out FILE');
    const input = await checkInput(inPath);
    const refusal = await checkOutput(outPath, input, options.force);
    if (refusal) {
      io.stderr.write(`drkit: refused: ${refusal}\n`);
      return EXIT.REFUSED;
    }
    const key = await loadCommandKeys(options['key-file'], io.env);

    let progress: StreamProgress = { plainBytes: 0, sealedBytes: 0, chunks: 0 };
    const sealOptions: SealOptions = {
      key,
      compression,
      chunkSize,
      signal,
      onProgress: (p) => {
        progress = p;
      },
      ...(level === undefined ? {} : { level }),
    };
    const started = performance.now();
    const sealed = seal(inputStream(inPath, io, signal), sealOptions);
    if (outPath === '-') await toStdout(sealed, io, signal);
    else await writeFileAtomically(outPath, sealed, { replace: options.force === true, signal });
    const how = compression === 'none' ? 'no compression' : `${compression}-${level ?? DEFAULT_LEVELS[compression]}`;
    io.stderr.write(
      `drkit: sealed ${shown(inPath, 'in')} -> ${shown(outPath, 'out')}: ${progress.plainBytes} bytes in, ${progress.sealedBytes} bytes out, ` +
        `${plural(progress.chunks, 'chunk')}, ${how}, key ${sealingKeyId(key)}, ${seconds(started)}\n`,
    );
    return EXIT.OK;
  },
});
