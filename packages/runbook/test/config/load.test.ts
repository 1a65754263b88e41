import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CONFIG_FILE_NAMES, type LoadedConfig, loadConfig } from '../../src/config/index.js';
import { isRunbookError, type RunbookErrorCode } from '../../src/errors.js';

const fixtures = fileURLToPath(new URL('../fixtures/config/', import.meta.url));

/** The error `promise` rejects with, checked to be a RunbookError of `code`. */
async function rejection(promise: Promise<unknown>, code: RunbookErrorCode): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRunbookError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as Error;
}

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drkit-config-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadConfig: formats', () => {
  const formats = [
    ['ts', 'drkit.config.ts'],
    ['json', 'drkit.config.json'],
    ['yaml', 'drkit.config.yaml'],
  ] as const;

  const loaded = new Map<string, LoadedConfig>();

  it.each(formats)('loads the %s fixture', async (format, name) => {
    const cwd = join(fixtures, format);
    const config = await loadConfig({ cwd, env: {} });
    loaded.set(format, config);
    expect(config.file).toBe(join(cwd, name));
    expect(config.environments).toEqual(['staging', 'production']);

    const staging = config.environment('staging');
    expect(staging).toMatchObject({
      name: 'staging',
      description: 'the staging cluster',
      production: false,
      product: 'Acme Shop',
      updateEvery: 10 * 60_000,
      stores: { primary: 'file:///var/backups/drkit' },
      secrets: { db: { env: 'STAGING_PG_PASSWORD' } },
      // Paths drkit reads or writes itself are relative to the config file, not to the cwd.
      keys: { primary: { file: join(cwd, 'keys/primary.key') } },
      runsDir: join(cwd, 'runs'),
      notify: { console: { type: 'stdout' }, slack: { type: 'slack', webhookUrl: { env: 'SLACK_WEBHOOK_URL' }, channel: '#incidents' } },
      rto: { total: 4 * 3_600_000, phases: { detection: 15 * 60_000, restore: 90 * 60_000 } },
    });
    // Paths handed to tools stay as written.
    expect(staging.services.api).toEqual({ type: 'compose', service: 'api', file: 'compose.yaml' });
    expect(staging.health.db).toMatchObject({ type: 'postgres', port: 5432, expect: 1 });

    const production = config.environment('production');
    expect(production).toMatchObject({
      production: true,
      product: 'Acme Shop',
      lock: { store: 's3://acme-backups/locks?region=us-east-1', ttl: 30_000 },
      vars: { region: 'us-east-1', shards: 4 },
      runsDir: join(cwd, '.drkit/runs'),
      services: { api: { type: 'kubernetes', name: 'api', namespace: 'shop', replicas: 3, rolloutTimeoutMs: 600_000 } },
    });
  });

  it('gives the same environments from every format', async () => {
    const normalise = (config: LoadedConfig, format: string) =>
      JSON.parse(JSON.stringify(config.environments.map((name) => config.environment(name))).replaceAll(join(fixtures, format), '<dir>'));
    const results = await Promise.all(
      formats.map(async ([format]) => normalise(await loadConfig({ cwd: join(fixtures, format) }), format)),
    );
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it('loads a .yml, .mjs and .mts file', async () => {
    for (const [name, body] of [
      ['drkit.config.yml', 'environments:\n  dev: { product: Yml }\n'],
      ['drkit.config.mjs', "export default { environments: { dev: { product: 'Mjs' } } };\n"],
      ['drkit.config.mts', "const product: string = 'Mts';\nexport default { environments: { dev: { product } } };\n"],
    ] as const) {
      const sub = join(dir, name.replaceAll('.', '-'));
      await mkdir(sub);
      await writeFile(join(sub, name), body);
      const config = await loadConfig({ cwd: sub });
      expect(config.environment('dev').product).toBe(name === 'drkit.config.yml' ? 'Yml' : name.endsWith('.mjs') ? 'Mjs' : 'Mts');
    }
  });

  it('imports a changed module config anew', async () => {
    const file = join(dir, 'drkit.config.mjs');
    await writeFile(file, "export default { environments: { dev: { product: 'One' } } };\n");
    expect((await loadConfig({ cwd: dir })).environment('dev').product).toBe('One');
    await writeFile(file, "export default { environments: { dev: { product: 'Two' } } };\n");
    // The mtime decides; make sure it moved even on a coarse-grained file system.
    const later = new Date(Date.now() + 5_000);
    await utimes(file, later, later);
    expect((await loadConfig({ cwd: dir })).environment('dev').product).toBe('Two');
  });
});

describe('loadConfig: finding the file', () => {
  it('fails when two config files are present, naming both', async () => {
    await writeFile(join(dir, 'drkit.config.ts'), 'export default { environments: { dev: {} } };\n');
    await writeFile(join(dir, 'drkit.config.yaml'), 'environments: { dev: {} }\n');
    const error = await rejection(loadConfig({ cwd: dir }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toContain('drkit.config.ts and drkit.config.yaml');
    expect(error.message).toContain('keep only one');
  });

  it('fails with NOT_FOUND when there is none, saying what it looked for and how to create one', async () => {
    const error = await rejection(loadConfig({ cwd: dir, env: {} }), 'RUNBOOK_CONFIG_NOT_FOUND');
    for (const name of CONFIG_FILE_NAMES) expect(error.message).toContain(name);
    expect(error.message).toContain(dir);
    expect(error.message).toContain('export default defineConfig(');
  });

  it('uses `file` over the files in cwd, relative to cwd', async () => {
    await writeFile(join(dir, 'drkit.config.yaml'), 'environments: { dev: { product: Found } }\n');
    await writeFile(join(dir, 'other.json'), '{ "environments": { "dev": { "product": "Given" } } }');
    const config = await loadConfig({ cwd: dir, file: 'other.json' });
    expect(config.file).toBe(join(dir, 'other.json'));
    expect(config.environment('dev').product).toBe('Given');
  });

  it('uses DRKIT_CONFIG when no file is given', async () => {
    await writeFile(join(dir, 'drkit.config.yaml'), 'environments: { dev: { product: Found } }\n');
    await writeFile(join(dir, 'ops.yaml'), 'environments: { dev: { product: FromEnv } }\n');
    const config = await loadConfig({ cwd: dir, env: { DRKIT_CONFIG: join(dir, 'ops.yaml') } });
    expect(config.environment('dev').product).toBe('FromEnv');
    // `file` (the command line) wins over the environment.
    const explicit = await loadConfig({ cwd: dir, file: 'drkit.config.yaml', env: { DRKIT_CONFIG: 'ops.yaml' } });
    expect(explicit.environment('dev').product).toBe('Found');
  });

  it('fails with NOT_FOUND for a given file that does not exist, saying where the name came from', async () => {
    const error = await rejection(loadConfig({ cwd: dir, env: { DRKIT_CONFIG: 'missing.yaml' } }), 'RUNBOOK_CONFIG_NOT_FOUND');
    expect(error.message).toBe('config file missing.yaml (from DRKIT_CONFIG) does not exist');
  });

  it('refuses a file of an unsupported format', async () => {
    await writeFile(join(dir, 'drkit.toml'), '');
    const error = await rejection(loadConfig({ cwd: dir, file: 'drkit.toml' }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toContain('unsupported extension');
  });
});

describe('loadConfig: bad files', () => {
  it('names the file, line and column of a JSON syntax error', async () => {
    await writeFile(join(dir, 'drkit.config.json'), '{\n  "environments": {\n    "dev" {}\n  }\n}\n');
    const error = await rejection(loadConfig({ cwd: dir }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toMatch(/^drkit\.config\.json is not valid JSON \(line 3, column 11\): /);
  });

  it('names the file and line of a YAML syntax error', async () => {
    await writeFile(join(dir, 'drkit.config.yaml'), 'environments:\n  dev: {}\n  dev: {}\n');
    const error = await rejection(loadConfig({ cwd: dir }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toMatch(/^drkit\.config\.yaml is not valid YAML:\n {2}- line 3, column 3: Map keys must be unique/);
  });

  it('reports validation problems under the file name', async () => {
    await writeFile(join(dir, 'drkit.config.yaml'), 'environments:\n  staging:\n    rto:\n      phases:\n        detection: 15 minutes\n');
    const error = await rejection(loadConfig({ cwd: dir }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toBe(
      'drkit.config.yaml is not valid:\n  - environments.staging.rto.phases.detection: "15 minutes" is not a duration (use e.g. "15m", "1h30m", "90s" or "500ms")',
    );
  });

  it('explains a module config without a default export', async () => {
    await writeFile(join(dir, 'drkit.config.mjs'), 'export const config = {};\n');
    const error = await rejection(loadConfig({ cwd: dir }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toContain('drkit.config.mjs has no default export');
  });

  it('wraps a module config that throws while loading', async () => {
    await writeFile(join(dir, 'drkit.config.mjs'), "throw new Error('boom');\n");
    const error = await rejection(loadConfig({ cwd: dir }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toBe('drkit.config.mjs could not be loaded: boom');
  });

  it('calls an empty file invalid, not missing', async () => {
    await writeFile(join(dir, 'drkit.config.yaml'), '# nothing yet\n');
    const error = await rejection(loadConfig({ cwd: dir }), 'RUNBOOK_CONFIG_INVALID');
    expect(error.message).toBe('drkit.config.yaml is not valid:\n  - (top level): expected an object, got null');
  });
});
