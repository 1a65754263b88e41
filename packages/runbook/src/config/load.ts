import { readFile, stat } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseDocument } from 'yaml';
import { messageOf, RunbookError } from '../errors.js';
import {
  configErrorMap,
  type DrkitConfig,
  type DrkitConfigInput,
  describeConfigIssues,
  drkitConfigSchema,
  ENVIRONMENT_DEFAULTS,
  type EnvironmentConfig,
  type EnvironmentSettings,
  type NotifierEntry,
  suggestClosest,
} from './schema.js';
import type { SecretRef } from './secrets.js';

/** The names a config file may have, in the order they are looked for. */
export const CONFIG_FILE_NAMES = [
  'drkit.config.ts',
  'drkit.config.mts',
  'drkit.config.js',
  'drkit.config.mjs',
  'drkit.config.json',
  'drkit.config.yaml',
  'drkit.config.yml',
] as const;

const MODULE_EXTENSIONS = new Set(['.ts', '.mts', '.js', '.mjs']);
const EXTENSIONS = [...MODULE_EXTENSIONS, '.json', '.yaml', '.yml'];

/**
 * Gives a `drkit.config.ts` its types: `export default defineConfig({ environments: { … } })`.
 * It returns its argument unchanged; validation happens when the config is loaded.
 */
export function defineConfig(config: DrkitConfigInput): DrkitConfigInput {
  return config;
}

/** A validated config, ready to hand out the settings of each environment. */
export interface LoadedConfig {
  /** The absolute path of the config file, or the `source` given to {@link parseConfig}. */
  file: string;
  /** The environment names, in the order the config lists them. */
  environments: string[];
  /** The validated config as written (durations in milliseconds, defaults not merged). */
  config: DrkitConfig;
  /**
   * The settings of one environment, with `defaults` and the built-in defaults merged in.
   * @throws RunbookError RUNBOOK_CONFIG_INVALID for an unknown name, listing the known ones.
   */
  environment(name: string): EnvironmentConfig;
}

/** Options of {@link parseConfig}. */
export interface ParseConfigOptions {
  /**
   * Relative paths drkit itself reads or writes (runsDir, `{ file }` secret references, the
   * file notifier's path) are resolved against this directory; others (service `cwd`,
   * compose files) go to the tools as written. Unset, every path stays as written.
   */
  baseDir?: string;
  /** What {@link LoadedConfig.file} says, when it should differ from `source`. */
  file?: string;
}

/**
 * Validates a config given as a value (what a config file's default export or parsed
 * contents are). `source` names it in messages.
 * @throws RunbookError RUNBOOK_CONFIG_INVALID listing every problem, one line each, with the
 *   full path of the field: `environments.prod.services.api.type: expected one of …`.
 */
export function parseConfig(raw: unknown, source = 'config', options: ParseConfigOptions = {}): LoadedConfig {
  const result = drkitConfigSchema.safeParse(raw, { error: configErrorMap });
  if (!result.success) {
    const lines = describeConfigIssues(result.error.issues);
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `${source} is not valid:\n${lines.map((line) => `  - ${line}`).join('\n')}`);
  }
  const config = result.data;
  const base = options.baseDir;
  const defaults = base === undefined ? config.defaults : config.defaults && resolvePaths(config.defaults, base);
  const environments = Object.keys(config.environments);
  return {
    file: options.file ?? source,
    environments,
    config,
    environment(name) {
      const settings = Object.hasOwn(config.environments, name) ? config.environments[name] : undefined;
      if (settings === undefined) {
        const suggestion = suggestClosest(name, environments);
        throw new RunbookError(
          'RUNBOOK_CONFIG_INVALID',
          `environment ${JSON.stringify(name)} is not defined in ${source}${suggestion === undefined ? '' : ` (did you mean ${JSON.stringify(suggestion)}?)`}; known environments: ${environments.join(', ')}`,
        );
      }
      if (base === undefined) return mergeEnvironment(name, settings, defaults);
      const merged = mergeEnvironment(name, resolvePaths(settings, base), defaults);
      // The built-in ".drkit/runs" too belongs next to the config, wherever drkit is started.
      return { ...merged, runsDir: resolve(base, merged.runsDir) };
    },
  };
}

/**
 * An environment's settings over the defaults, over the built-in defaults. Maps (services,
 * stores, vars, rto.phases…) merge by name, so `defaults` can declare the notifiers and an
 * environment add one; an entry itself is replaced whole, because half of a `compose`
 * service merged into a `command` one would be nonsense.
 */
function mergeEnvironment(name: string, env: EnvironmentSettings, defaults: EnvironmentSettings | undefined): EnvironmentConfig {
  const d = defaults ?? {};
  const description = env.description ?? d.description;
  const total = env.rto?.total ?? d.rto?.total;
  const lockStore = env.lock?.store ?? d.lock?.store;
  const lockTtl = env.lock?.ttl ?? d.lock?.ttl;
  return {
    name,
    ...(description === undefined ? {} : { description }),
    production: env.production ?? d.production ?? ENVIRONMENT_DEFAULTS.production,
    product: env.product ?? d.product ?? ENVIRONMENT_DEFAULTS.product,
    vars: { ...d.vars, ...env.vars },
    stores: { ...d.stores, ...env.stores },
    keys: { ...d.keys, ...env.keys },
    secrets: { ...d.secrets, ...env.secrets },
    services: { ...d.services, ...env.services },
    health: { ...d.health, ...env.health },
    notify: { ...d.notify, ...env.notify },
    rto: { ...(total === undefined ? {} : { total }), phases: { ...d.rto?.phases, ...env.rto?.phases } },
    updateEvery: env.updateEvery ?? d.updateEvery ?? ENVIRONMENT_DEFAULTS.updateEvery,
    lock: { ...(lockStore === undefined ? {} : { store: lockStore }), ...(lockTtl === undefined ? {} : { ttl: lockTtl }) },
    runsDir: env.runsDir ?? d.runsDir ?? ENVIRONMENT_DEFAULTS.runsDir,
  };
}

function resolveRef(ref: SecretRef, base: string): SecretRef {
  return 'file' in ref ? { file: resolve(base, ref.file) } : ref;
}

function resolveRefs(refs: Record<string, SecretRef> | undefined, base: string): Record<string, SecretRef> | undefined {
  return refs && Object.fromEntries(Object.entries(refs).map(([k, ref]) => [k, resolveRef(ref, base)]));
}

function resolveNotifier(entry: NotifierEntry, base: string): NotifierEntry {
  switch (entry.type) {
    case 'slack':
      return { ...entry, webhookUrl: resolveRef(entry.webhookUrl, base) };
    case 'webhook': {
      const headers = resolveRefs(entry.headers, base);
      return { ...entry, url: resolveRef(entry.url, base), ...(headers === undefined ? {} : { headers }) };
    }
    case 'file':
      return { ...entry, path: resolve(base, entry.path) };
    default:
      return entry;
  }
}

/**
 * `settings` with the paths drkit reads or writes itself made absolute against the config's
 * directory, so running drkit from a subdirectory finds the same journals and key files.
 */
function resolvePaths(settings: EnvironmentSettings, base: string): EnvironmentSettings {
  const out: EnvironmentSettings = { ...settings };
  if (settings.runsDir !== undefined) out.runsDir = resolve(base, settings.runsDir);
  const keys = resolveRefs(settings.keys, base);
  if (keys !== undefined) out.keys = keys;
  const secrets = resolveRefs(settings.secrets, base);
  if (secrets !== undefined) out.secrets = secrets;
  if (settings.notify !== undefined)
    out.notify = Object.fromEntries(Object.entries(settings.notify).map(([k, entry]) => [k, resolveNotifier(entry, base)]));
  return out;
}

// ---- files ----

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Where to look for a config file, and what a relative `file` is relative to. @default process.cwd() */
  cwd?: string;
  /** The config file to use (e.g. from --config), instead of looking for one. */
  file?: string;
  /** Where `DRKIT_CONFIG` is read. @default process.env */
  env?: NodeJS.ProcessEnv;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** `file` as the person running drkit would type it: relative to cwd when inside it. */
function shownPath(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}

const HOW_TO_CREATE = [
  'create drkit.config.ts, e.g.:',
  "  import { defineConfig } from '@drkit/runbook';",
  "  export default defineConfig({ environments: { staging: { stores: { primary: 'file:///var/backups/drkit' } } } });",
  'or point to a config file with --config or DRKIT_CONFIG',
].join('\n');

async function findConfigFile(cwd: string, options: LoadConfigOptions, env: NodeJS.ProcessEnv): Promise<string> {
  const explicit = options.file ?? (env.DRKIT_CONFIG === undefined || env.DRKIT_CONFIG === '' ? undefined : env.DRKIT_CONFIG);
  if (explicit !== undefined) {
    const file = resolve(cwd, explicit);
    const from = options.file === undefined ? ' (from DRKIT_CONFIG)' : '';
    if (!EXTENSIONS.includes(extname(file)))
      throw new RunbookError(
        'RUNBOOK_CONFIG_INVALID',
        `config file ${shownPath(file, cwd)}${from} has an unsupported extension; use one of ${EXTENSIONS.join(', ')}`,
      );
    if (!(await isFile(file)))
      throw new RunbookError('RUNBOOK_CONFIG_NOT_FOUND', `config file ${shownPath(file, cwd)}${from} does not exist`);
    return file;
  }
  const found: string[] = [];
  for (const name of CONFIG_FILE_NAMES) if (await isFile(join(cwd, name))) found.push(name);
  if (found.length > 1)
    throw new RunbookError(
      'RUNBOOK_CONFIG_INVALID',
      `found ${found.length} config files in ${cwd}: ${found.join(' and ')}; keep only one, or choose one with --config or DRKIT_CONFIG`,
    );
  const [name] = found;
  if (name === undefined)
    throw new RunbookError(
      'RUNBOOK_CONFIG_NOT_FOUND',
      `no drkit config file in ${cwd} (looked for ${CONFIG_FILE_NAMES.join(', ')}); ${HOW_TO_CREATE}`,
    );
  return join(cwd, name);
}

/** "line 3, column 6" of a character offset. */
function lineColumn(textValue: string, offset: number): string {
  const before = textValue.slice(0, offset).split('\n');
  return `line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}`;
}

function parseJson(textValue: string, shown: string): unknown {
  try {
    return JSON.parse(textValue);
  } catch (error) {
    const message = messageOf(error);
    // V8 says "… in JSON at position 16 (line 3 column 6)"; older engines only give the position.
    const where = /at position (\d+)(?: \(line (\d+) column (\d+)\))?/.exec(message);
    let location = '';
    if (where?.[2] !== undefined && where[3] !== undefined) location = ` (line ${where[2]}, column ${where[3]})`;
    else if (where?.[1] !== undefined) location = ` (${lineColumn(textValue, Number(where[1]))})`;
    const what = message.replace(/\s*in JSON at position.*$/s, '').replace(/^JSON\.parse: /, '');
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `${shown} is not valid JSON${location}: ${what}`, { cause: error });
  }
}

function parseYaml(textValue: string, shown: string): unknown {
  const doc = parseDocument(textValue);
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((error) => {
      const [head = '', ...frame] = error.message.split('\n');
      const what = head.replace(/ at line \d+, column \d+:?$/, '');
      const pos = error.linePos?.[0];
      const location = pos === undefined ? '' : `line ${pos.line}, column ${pos.col}: `;
      const snippet = frame.filter((line) => line.trim() !== '').map((line) => `      ${line}`);
      return [`  - ${location}${what}`, ...snippet].join('\n');
    });
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `${shown} is not valid YAML:\n${lines.join('\n')}`);
  }
  return doc.toJS();
}

async function importModule(file: string, shown: string): Promise<unknown> {
  let mod: Record<string, unknown>;
  try {
    // The mtime in the URL makes a changed file load anew in a long-lived process, instead of
    // the module cache handing back the old config.
    const { mtimeMs } = await stat(file);
    mod = (await import(`${pathToFileURL(file).href}?mtime=${Math.trunc(mtimeMs)}`)) as Record<string, unknown>;
  } catch (error) {
    throw new RunbookError('RUNBOOK_CONFIG_INVALID', `${shown} could not be loaded: ${messageOf(error)}`, { cause: error });
  }
  if (!('default' in mod) || mod.default === undefined)
    throw new RunbookError(
      'RUNBOOK_CONFIG_INVALID',
      `${shown} has no default export; end it with: export default defineConfig({ environments: { … } })`,
    );
  return await mod.default;
}

/** Reads a config file of any supported format into a plain value, not validated yet. */
async function readConfigFile(file: string, shown: string): Promise<unknown> {
  const extension = extname(file);
  if (MODULE_EXTENSIONS.has(extension)) return importModule(file, shown);
  let textValue: string;
  try {
    textValue = await readFile(file, 'utf8');
  } catch (error) {
    throw new RunbookError('RUNBOOK_CONFIG_NOT_FOUND', `${shown} cannot be read: ${messageOf(error)}`, { cause: error });
  }
  // Editors on Windows may save a byte-order mark, which JSON.parse rejects.
  if (textValue.startsWith('\uFEFF')) textValue = textValue.slice(1);
  return extension === '.json' ? parseJson(textValue, shown) : parseYaml(textValue, shown);
}

/**
 * Finds, reads and validates the drkit config: `file` if given, else `DRKIT_CONFIG`, else
 * the one `drkit.config.{ts,mts,js,mjs,json,yaml,yml}` in `cwd`. TypeScript and JavaScript
 * configs are imported (Node strips types natively) and their default export used.
 * @throws RunbookError RUNBOOK_CONFIG_NOT_FOUND when there is no config file;
 *   RUNBOOK_CONFIG_INVALID when there are several, or it does not parse, or does not validate.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const file = await findConfigFile(cwd, options, options.env ?? process.env);
  const shown = shownPath(file, cwd);
  const raw = await readConfigFile(file, shown);
  return parseConfig(raw, shown, { baseDir: dirname(file), file });
}
