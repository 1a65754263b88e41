import { parseStoreUrl, splitStoreUrls } from '@drkit/s3-store';
import { z } from 'zod';
import { messageOf } from '../errors.js';
import { SEVERITY_ORDER } from '../notify/incident.js';
import { type DurationInput, durationProblem, parseDuration } from './duration.js';
import { type SecretRef, secretRefProblems } from './secrets.js';

// ---- building blocks ----

const text = z.string().min(1);
const positiveMs = z.int().positive();
const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const envVarName = z.string().regex(ENV_VAR_NAME, { error: 'expected the name of an environment variable (letters, digits and _)' });

/** What environment names look like: they are typed on command lines and end up in lock and run ids. */
export const ENVIRONMENT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * A duration in the config: `"15m"`, `"1h30m"`, or a number of milliseconds, parsed to
 * milliseconds. Zero is refused: every duration of the config is a budget or a cadence, and
 * a zero one would fire at once, forever.
 */
export const durationSchema = z.custom<DurationInput>().transform((value, ctx): number => {
  const problem = value === undefined ? 'missing required duration (e.g. "15m")' : durationProblem(value);
  if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  }
  const ms = parseDuration(value);
  if (ms <= 0) {
    ctx.addIssue({ code: 'custom', message: 'must be longer than 0' });
    return z.NEVER;
  }
  return ms;
});

/**
 * A {@link SecretRef}: `{ env: "NAME" }` or `{ file: "/path" }`. Hand-checked rather than a
 * zod union so that the message for a plain string can say what to do instead, without
 * quoting the string (it is most likely the secret itself).
 */
export const secretRefSchema = z.custom<SecretRef>().superRefine((value, ctx) => {
  for (const problem of secretRefProblems(value)) ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path });
});

/** One or more store URLs (comma-separated), each checked now so a typo fails the config, not a step an hour into a restore. */
export const storeUrlSchema = text.superRefine((value, ctx) => {
  const urls = splitStoreUrls(value);
  if (urls.length === 0)
    ctx.addIssue({ code: 'custom', message: 'expected a store URL such as file:///var/backups/drkit or s3://bucket/prefix' });
  for (const url of urls) {
    try {
      parseStoreUrl(url);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: messageOf(error) });
    }
  }
});

/**
 * A URL a health check connects to. A password in it would be printed wherever the check is
 * described, so it is refused in favour of `passwordEnv`; the URL itself is never quoted.
 */
function connectionUrl(protocols: readonly string[]) {
  const expected = `expected a ${protocols.map((p) => `${p}//`).join(' or ')} URL`;
  return text.superRefine((value, ctx) => {
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: expected });
      return;
    }
    if (!protocols.includes(parsed.protocol)) ctx.addIssue({ code: 'custom', message: expected });
    else if (parsed.password !== '')
      ctx.addIssue({
        code: 'custom',
        message: 'the URL contains a password: remove it and name the environment variable holding it in passwordEnv',
      });
  });
}

// ---- services (same shapes as the service controllers take) ----

const commandServiceSchema = z
  .strictObject({
    type: z.literal('command'),
    start: text,
    stop: text.exactOptional(),
    status: text.exactOptional(),
    restart: text.exactOptional(),
    logs: text.exactOptional(),
    cwd: text.exactOptional(),
    env: z.record(z.string(), z.string()).exactOptional(),
    pidFile: text.exactOptional(),
    startTimeoutMs: positiveMs.exactOptional(),
    stopTimeoutMs: positiveMs.exactOptional(),
  })
  .refine((c) => c.stop !== undefined || c.pidFile !== undefined, {
    message: 'give a stop command, or a pidFile whose process is then sent SIGTERM',
    path: ['stop'],
  });

const composeServiceSchema = z.strictObject({
  type: z.literal('compose'),
  service: text,
  file: text.exactOptional(),
  project: text.exactOptional(),
  cwd: text.exactOptional(),
});

const kubernetesServiceSchema = z.strictObject({
  type: z.literal('kubernetes'),
  kind: z.enum(['deployment', 'statefulset']).exactOptional(),
  name: text,
  namespace: text.exactOptional(),
  context: text.exactOptional(),
  replicas: z.int().min(1).exactOptional(),
  rolloutTimeoutMs: positiveMs.exactOptional(),
});

const systemdServiceSchema = z.strictObject({
  type: z.literal('systemd'),
  unit: text,
  user: z.boolean().exactOptional(),
  sudo: z.boolean().exactOptional(),
});

/** One entry of an environment's `services`: how to stop, start and inspect it, by `type`. */
export const serviceEntrySchema = z.discriminatedUnion('type', [
  commandServiceSchema,
  composeServiceSchema,
  kubernetesServiceSchema,
  systemdServiceSchema,
]);

// ---- health checks (same shapes as the health checks take) ----

const httpHealthSchema = z.strictObject({
  type: z.literal('http'),
  url: connectionUrl(['http:', 'https:']),
  expectStatus: z.int().min(100).max(599).exactOptional(),
  contains: text.exactOptional(),
  timeoutMs: positiveMs.exactOptional(),
});

const postgresHealthSchema = z
  .strictObject({
    type: z.literal('postgres'),
    url: connectionUrl(['postgres:', 'postgresql:']).exactOptional(),
    host: text.exactOptional(),
    port: z.int().min(1).max(65_535).exactOptional(),
    user: text.exactOptional(),
    database: text.exactOptional(),
    passwordEnv: envVarName.exactOptional(),
    query: text.exactOptional(),
    expect: z.union([z.string(), z.number()]).exactOptional(),
    timeoutMs: positiveMs.exactOptional(),
  })
  .refine((c) => c.url === undefined || [c.host, c.port, c.user, c.database].every((v) => v === undefined), {
    message: 'give either url or host/port/user/database, not both',
    path: ['url'],
  });

const redisHealthSchema = z.strictObject({
  type: z.literal('redis'),
  url: connectionUrl(['redis:', 'rediss:']),
  passwordEnv: envVarName.exactOptional(),
  timeoutMs: positiveMs.exactOptional(),
});

/** One entry of an environment's `health`: a check that a restored service really works, by `type`. */
export const healthEntrySchema = z.discriminatedUnion('type', [httpHealthSchema, postgresHealthSchema, redisHealthSchema]);

// ---- notification targets ----

const slackNotifierSchema = z.strictObject({
  type: z.literal('slack'),
  // An incoming-webhook URL is a credential: anyone holding it can post to the channel.
  webhookUrl: secretRefSchema,
  channel: text.exactOptional(),
  username: text.exactOptional(),
  mention: z.union([text, z.literal(false)]).exactOptional(),
  mentionOn: z.array(z.enum(SEVERITY_ORDER)).exactOptional(),
  blocks: z.boolean().exactOptional(),
});

const webhookNotifierSchema = z.strictObject({
  type: z.literal('webhook'),
  url: secretRefSchema,
  headers: z.record(z.string(), secretRefSchema).exactOptional(),
});

const fileNotifierSchema = z.strictObject({ type: z.literal('file'), path: text });

const stdoutNotifierSchema = z.strictObject({ type: z.literal('stdout') });

/** One entry of an environment's `notify`: where incident messages go, by `type`. */
export const notifierEntrySchema = z.discriminatedUnion('type', [
  slackNotifierSchema,
  webhookNotifierSchema,
  fileNotifierSchema,
  stdoutNotifierSchema,
]);

// ---- environments ----

/** The settings of one environment as written (also the shape of `defaults`). */
export const environmentConfigSchema = z.strictObject({
  description: z.string().exactOptional(),
  production: z.boolean().exactOptional(),
  product: text.exactOptional(),
  vars: z.record(z.string(), z.unknown()).exactOptional(),
  stores: z.record(z.string(), storeUrlSchema).exactOptional(),
  keys: z.record(z.string(), secretRefSchema).exactOptional(),
  secrets: z.record(z.string(), secretRefSchema).exactOptional(),
  services: z.record(z.string(), serviceEntrySchema).exactOptional(),
  health: z.record(z.string(), healthEntrySchema).exactOptional(),
  notify: z.record(z.string(), notifierEntrySchema).exactOptional(),
  rto: z
    .strictObject({
      total: durationSchema.exactOptional(),
      phases: z.record(z.string(), durationSchema).exactOptional(),
    })
    .exactOptional(),
  updateEvery: durationSchema.exactOptional(),
  lock: z.strictObject({ store: storeUrlSchema.exactOptional(), ttl: durationSchema.exactOptional() }).exactOptional(),
  runsDir: text.exactOptional(),
});

const environmentName = z.string().regex(ENVIRONMENT_NAME, {
  error: (issue) =>
    `environment name ${JSON.stringify(issue.input)} must be a lower-case letter followed by up to 31 lower-case letters, digits and dashes`,
});

/** A whole drkit config file: named environments, and defaults merged under each of them. */
export const drkitConfigSchema = z.strictObject({
  environments: z
    .record(environmentName, environmentConfigSchema)
    .refine((environments) => Object.keys(environments).length > 0, { error: 'define at least one environment' }),
  defaults: environmentConfigSchema.exactOptional(),
});

// ---- types ----

/** A whole config as its author writes it (durations as text allowed): the argument of `defineConfig`. */
export type DrkitConfigInput = z.input<typeof drkitConfigSchema>;
/** A validated config: durations in milliseconds, defaults not merged yet. */
export type DrkitConfig = z.output<typeof drkitConfigSchema>;
/** The settings of one environment as its author writes them. */
export type EnvironmentConfigInput = z.input<typeof environmentConfigSchema>;
/** The validated settings of one environment (or the defaults) before defaults are merged. */
export type EnvironmentSettings = z.output<typeof environmentConfigSchema>;
/** A validated entry of `services`, assignable to the service controllers' config. */
export type ServiceEntry = z.output<typeof serviceEntrySchema>;
/** A validated entry of `health`. */
export type HealthEntry = z.output<typeof healthEntrySchema>;
/** A validated entry of `notify`. */
export type NotifierEntry = z.output<typeof notifierEntrySchema>;

/** What an environment gets when neither it nor `defaults` says otherwise. */
export const ENVIRONMENT_DEFAULTS = {
  production: false,
  product: 'Service',
  updateEvery: 15 * 60_000,
  runsDir: '.drkit/runs',
} as const;

/**
 * The config of one environment as the engine uses it: validated, `defaults` merged under
 * it, built-in defaults filled in, durations in milliseconds. Every map is present (maybe
 * empty), so readers never check for a missing section.
 */
export interface EnvironmentConfig {
  /** The environment's name, e.g. "staging". */
  name: string;
  description?: string;
  /** Runs here need an explicit confirmation of the environment's name. */
  production: boolean;
  /** The product name shown in incident messages. @default "Service" */
  product: string;
  /** Free settings for runbooks. */
  vars: Record<string, unknown>;
  /** Store URL(s) by name; several comma-separated URLs make a mirrored store. */
  stores: Record<string, string>;
  /** Backup keys by reference. */
  keys: Record<string, SecretRef>;
  /** Named secrets a runbook reads with `ctx.secret(name)`. */
  secrets: Record<string, SecretRef>;
  services: Record<string, ServiceEntry>;
  health: Record<string, HealthEntry>;
  notify: Record<string, NotifierEntry>;
  /** Overrides of a runbook's RTO budgets, in milliseconds. */
  rto: { total?: number; phases: Record<string, number> };
  /** How often an active incident's notification is updated, in milliseconds. @default 15 minutes */
  updateEvery: number;
  /** Where run locks live (a store URL; the runs directory when absent) and how long one holds without renewal. */
  lock: { store?: string; ttl?: number };
  /** Where run journals are kept. @default ".drkit/runs" (absolute when loaded from a file: relative to it) */
  runsDir: string;
}

// ---- messages ----

/** Edits from `a` to `b`, a swap of neighbours counting as one: "strat" is one edit from "start". */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number) => d[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] as number[];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      row[j] = best;
    }
  }
  return at(a.length, b.length);
}

/**
 * The candidate `word` was most likely meant to be, or undefined when none is close: a
 * case-only difference, or an edit distance of at most a third of the word (at least 1, at
 * most 3), so "sevrity" finds "severity" but "foo" finds nothing. A tie finds nothing either.
 */
export function suggestClosest(word: string, candidates: Iterable<string>): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  let tied = false;
  for (const candidate of candidates) {
    if (candidate.toLowerCase() === lower) return candidate;
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
      tied = false;
    } else if (distance === bestDistance) tied = true;
  }
  // "sev4" is as close to sev1 as to sev2: naming one would be a guess, not a suggestion.
  const limit = Math.min(3, Math.max(1, Math.floor(word.length / 3)));
  return bestDistance <= limit && !tied ? best : undefined;
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'boolean') return 'true/false';
  if (typeof value === 'number') return Number.isInteger(value) ? 'a whole number' : 'a number';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'an object',
  record: 'an object of named entries',
  array: 'a list',
};

const quoteAll = (values: readonly unknown[]) => values.map((v) => JSON.stringify(v)).join(', ');

function oneOf(values: readonly unknown[], input: unknown): string {
  const expected = values.length === 1 ? `expected ${quoteAll(values)}` : `expected one of ${quoteAll(values)}`;
  if (input === undefined) return `missing required field: ${expected.replace(/^expected /, '')}`;
  // Only short strings are quoted back: these fields hold a kind or a mode, never a secret.
  if (typeof input !== 'string' || input.length > 40) return `${expected}, got ${kindOf(input)}`;
  const suggestion = suggestClosest(
    input,
    values.filter((v): v is string => typeof v === 'string'),
  );
  return `${expected}, got ${JSON.stringify(input)}${suggestion === undefined ? '' : ` — did you mean ${JSON.stringify(suggestion)}?`}`;
}

function unknownKeys(keys: readonly string[], known: readonly string[]): string {
  // One line per key; the formatter pairs line i with keys[i] to give each its own path.
  return keys
    .map((key) => {
      const suggestion = suggestClosest(key, known);
      if (suggestion !== undefined) return `unknown field '${key}' — did you mean '${suggestion}'?`;
      return known.length === 0
        ? `unknown field '${key}' (no fields are allowed here)`
        : `unknown field '${key}' (known fields: ${known.join(', ')})`;
    })
    .join('\n');
}

/**
 * The error map of config parsing: zod's issues reworded for the person editing the file. A
 * message quotes a value from the config only where that value cannot be a secret (enum
 * choices, durations, environment names).
 */
export const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type': {
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      return issue.input === undefined ? `missing required field (${expected})` : `expected ${expected}, got ${kindOf(issue.input)}`;
    }
    case 'invalid_value':
      return oneOf(issue.values, issue.input);
    case 'invalid_union': {
      const options = (issue as { options?: readonly unknown[] }).options;
      if (issue.discriminator !== undefined && options !== undefined) {
        const input = issue.input as Record<string, unknown> | undefined;
        return oneOf(options, typeof input === 'object' && input !== null ? input[issue.discriminator] : undefined);
      }
      const expected = new Set<string>();
      for (const branch of issue.errors)
        for (const inner of branch)
          if (inner.code === 'invalid_type' && inner.path.length === 0) expected.add(EXPECTED[inner.expected] ?? inner.expected);
          else if (inner.code === 'invalid_value' && inner.path.length === 0) expected.add(quoteAll(inner.values));
      if (expected.size > 0) return `expected ${[...expected].join(' or ')}, got ${kindOf(issue.input)}`;
      return undefined;
    }
    case 'unrecognized_keys': {
      const known = issue.inst instanceof z.ZodObject ? Object.keys(issue.inst.shape) : [];
      return unknownKeys(issue.keys, known);
    }
    case 'too_small':
      if (issue.origin === 'string' && Number(issue.minimum) === 1) return 'must not be empty';
      if (issue.origin === 'array') return `needs at least ${String(issue.minimum)} entries`;
      return `must be ${issue.inclusive === false ? 'more than' : 'at least'} ${String(issue.minimum)}`;
    case 'too_big':
      if (issue.origin === 'array') return `takes at most ${String(issue.maximum)} entries`;
      return `must be ${issue.inclusive === false ? 'less than' : 'at most'} ${String(issue.maximum)}`;
    default:
      return undefined;
  }
};

const PLAIN_KEY = /^[A-Za-z_$][\w$-]*$/;

/** A field path as the author would find it in the file: `environments.prod.services["my.api"].type`. */
export function formatConfigPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && PLAIN_KEY.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out === '' ? '(top level)' : out;
}

const MAX_LINES = 50;

/** One `path: message` line per problem (an issue with several unknown keys gives one line per key), at most 50. */
export function describeConfigIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const messages = issue.message.split('\n');
      issue.keys.forEach((key, i) => {
        const message = messages.length === issue.keys.length ? messages[i] : `unknown field '${key}'`;
        lines.push(`${formatConfigPath([...issue.path, key])}: ${message}`);
      });
    } else if (issue.code === 'invalid_key') {
      lines.push(`${formatConfigPath(issue.path)}: ${issue.issues.map((inner) => inner.message).join('; ')}`);
    } else {
      lines.push(`${formatConfigPath(issue.path)}: ${issue.message}`);
    }
  }
  if (lines.length <= MAX_LINES) return lines;
  return [...lines.slice(0, MAX_LINES), `… and ${lines.length - MAX_LINES} more`];
}
