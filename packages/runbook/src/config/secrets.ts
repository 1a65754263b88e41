import { readFileSync } from 'node:fs';
import { RunbookError } from '../errors.js';
import type { Redactor } from '../redact.js';

/**
 * Where a secret lives: an environment variable or a file (its contents, trimmed). The config
 * only ever holds the reference, never the value, so config files can be committed and
 * printed, and every value read is registered with the run's redactor.
 */
export type SecretRef = { env: string } | { file: string };

/** One problem with a would-be {@link SecretRef}, `path` relative to the reference. */
export interface SecretRefProblem {
  path: string[];
  message: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FORMS = '{ env: "NAME" } or { file: "/path" }';

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * What is wrong with `input` as a {@link SecretRef}, or an empty list. No message ever contains
 * a value from `input`: a string where a reference belongs is most likely the secret itself.
 */
export function secretRefProblems(input: unknown): SecretRefProblem[] {
  if (input === undefined) return [{ path: [], message: `required: a secret reference ${FORMS}` }];
  if (typeof input === 'string')
    return [
      {
        path: [],
        message: `a secret cannot be written in the config: put the value in an environment variable and reference it with { env: "NAME" } (or put it in a file and use { file: "/path" })`,
      },
    ];
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    return [{ path: [], message: `expected a secret reference ${FORMS}, got ${kindOf(input)}` }];
  const record = input as Record<string, unknown>;
  const problems: SecretRefProblem[] = [];
  for (const key of Object.keys(record)) {
    if (key === 'env' || key === 'file') continue;
    const hint = /^(value|secret|password|token|key)$/i.test(key) ? ' (secret values never go in the config)' : '';
    problems.push({ path: [key], message: `unknown field '${key}' — a secret reference has only env or file${hint}` });
  }
  const hasEnv = 'env' in record;
  const hasFile = 'file' in record;
  if (hasEnv && hasFile) problems.push({ path: [], message: 'give either env or file, not both' });
  else if (!hasEnv && !hasFile) problems.push({ path: [], message: `expected a secret reference ${FORMS}` });
  if (hasEnv && (typeof record.env !== 'string' || !ENV_NAME.test(record.env)))
    problems.push({
      path: ['env'],
      message: 'expected the name of an environment variable (letters, digits and _, not starting with a digit)',
    });
  if (hasFile && (typeof record.file !== 'string' || record.file.trim() === ''))
    problems.push({ path: ['file'], message: 'expected the path of a file holding the secret' });
  return problems;
}

/** True when `value` is a valid {@link SecretRef}. */
export function isSecretRef(value: unknown): value is SecretRef {
  return secretRefProblems(value).length === 0;
}

/** Where a reference points, for messages: `environment variable PG_PASSWORD` or `file /etc/drkit/key`. Never the value. */
export function describeSecretRef(ref: SecretRef): string {
  return 'env' in ref ? `environment variable ${ref.env}` : `file ${ref.file}`;
}

/** Options of {@link resolveSecret}. */
export interface ResolveSecretOptions {
  /** Where `{ env }` references are read; `process.env` unless given (tests pass their own). */
  env?: NodeJS.ProcessEnv;
  /** Receives the value, so that it is removed from every log, journal, report and message. */
  redactor?: Redactor;
  /** What the secret is for (`secret "db"`, `key "primary"`), to make the error say which setting needs it. */
  name?: string;
}

function missing(ref: SecretRef, name: string | undefined, why: string, cause?: unknown): RunbookError {
  const what = name === undefined ? describeSecretRef(ref) : `${name} (${describeSecretRef(ref)})`;
  return new RunbookError('RUNBOOK_SECRET_MISSING', `${what} ${why}`, cause === undefined ? undefined : { cause });
}

function readSecretFile(ref: { file: string }, name: string | undefined): string {
  try {
    return readFileSync(ref.file, 'utf8');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES' || code === 'EPERM'
          ? 'cannot be read (permission denied)'
          : code === 'EISDIR'
            ? 'is a directory, not a file'
            : `cannot be read (${typeof code === 'string' ? code : 'unknown error'})`;
    // The cause carries only Node's message, which names the path and never the contents.
    throw missing(ref, name, why, error);
  }
}

/**
 * The value a {@link SecretRef} points to: the environment variable as set, or the file's contents
 * trimmed (so a trailing newline from `echo > file` is not part of the secret).
 * @throws RunbookError RUNBOOK_SECRET_MISSING naming the variable or file (never a value) when
 *   it is unset, empty or unreadable, or too short to be redacted reliably.
 */
export function resolveSecret(ref: SecretRef, options: ResolveSecretOptions = {}): string {
  const problems = secretRefProblems(ref);
  if (problems.length > 0)
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `not a secret reference: ${problems.map((p) => p.message).join('; ')}`);
  let value: string;
  if ('env' in ref) {
    const raw = (options.env ?? process.env)[ref.env];
    if (raw === undefined) throw missing(ref, options.name, 'is not set: export it before running drkit');
    // Unlike a file's trailing newline, spaces in a variable were put there on purpose.
    value = raw;
    if (value.trim() === '') throw missing(ref, options.name, 'is empty: set it to the secret before running drkit');
  } else {
    value = readSecretFile(ref, options.name).trim();
    if (value === '') throw missing(ref, options.name, 'is empty: write the secret into it');
  }
  if (options.redactor !== undefined) {
    try {
      options.redactor.add(value);
    } catch {
      // A value this short would redact ordinary words everywhere, and cannot be a real secret.
      throw missing(ref, options.name, 'holds fewer than 4 characters: too short to be a secret that can be redacted from logs');
    }
  }
  return value;
}
