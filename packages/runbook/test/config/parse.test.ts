import { describe, expect, it } from 'vitest';
import { defineConfig, type EnvironmentConfig, parseConfig } from '../../src/config/index.js';
import { isRunbookError } from '../../src/errors.js';

/** The problem lines of the RUNBOOK_CONFIG_INVALID error `raw` gives, without the heading. */
function problems(raw: unknown, source?: string): string[] {
  try {
    parseConfig(raw, source);
  } catch (error) {
    expect(isRunbookError(error, 'RUNBOOK_CONFIG_INVALID'), String(error)).toBe(true);
    const [heading, ...lines] = (error as Error).message.split('\n');
    expect(heading).toBe(`${source ?? 'config'} is not valid:`);
    return lines.map((line) => line.replace(/^ {2}- /, ''));
  }
  throw new Error('the config was accepted');
}

describe('parseConfig: validation', () => {
  it('reports every problem at once, each on its own line with its path', () => {
    const lines = problems(
      {
        environments: {
          production: {
            services: { api: { type: 'docker', image: 'x' }, db: { type: 'command', strat: 'pg_ctl start', stop: 'pg_ctl stop' } },
            updateEvery: 'often',
            production: 'yes',
          },
          staging: { rto: { phases: { detection: '15 minutes' } } },
        },
      },
      'drkit.config.yaml',
    );
    expect(lines).toEqual([
      'environments.production.production: expected true or false, got a string',
      'environments.production.services.api.type: expected one of "command", "compose", "kubernetes", "systemd", got "docker"',
      'environments.production.services.db.start: missing required field (a string)',
      "environments.production.services.db.strat: unknown field 'strat' — did you mean 'start'?",
      'environments.production.updateEvery: "often" is not a duration (use e.g. "15m", "1h30m", "90s" or "500ms")',
      'environments.staging.rto.phases.detection: "15 minutes" is not a duration (use e.g. "15m", "1h30m", "90s" or "500ms")',
    ]);
  });

  it('suggests the closest known field for an unknown one, else lists the known fields', () => {
    expect(problems({ enviroments: {} })).toEqual([
      'environments: missing required field (an object of named entries)',
      "enviroments: unknown field 'enviroments' — did you mean 'environments'?",
    ]);
    expect(problems({ environments: { dev: { runsdir: 'x', lock: { tll: '1m', owner: 'me' } } } })).toEqual([
      "environments.dev.lock.tll: unknown field 'tll' — did you mean 'ttl'?",
      "environments.dev.lock.owner: unknown field 'owner' (known fields: store, ttl)",
      "environments.dev.runsdir: unknown field 'runsdir' — did you mean 'runsDir'?",
    ]);
  });

  it('suggests the closest type, and quotes keys that are not plain names', () => {
    expect(problems({ environments: { dev: { services: { 'my.api': { type: 'kubernetse', name: 'api' }, web: {} } } } })).toEqual([
      'environments.dev.services["my.api"].type: expected one of "command", "compose", "kubernetes", "systemd", got "kubernetse" — did you mean "kubernetes"?',
      'environments.dev.services.web.type: missing required field: one of "command", "compose", "kubernetes", "systemd"',
    ]);
  });

  it('checks environment names', () => {
    expect(problems({ environments: { Prod: {}, '1st': {}, ['a'.repeat(33)]: {} } })).toEqual([
      'environments.Prod: environment name "Prod" must be a lower-case letter followed by up to 31 lower-case letters, digits and dashes',
      'environments["1st"]: environment name "1st" must be a lower-case letter followed by up to 31 lower-case letters, digits and dashes',
      `environments.${'a'.repeat(33)}: environment name "${'a'.repeat(33)}" must be a lower-case letter followed by up to 31 lower-case letters, digits and dashes`,
    ]);
    expect(problems({ environments: {} })).toEqual(['environments: define at least one environment']);
    expect(problems([])).toEqual(['(top level): expected an object, got a list']);
  });

  it('checks the service, health and notifier shapes', () => {
    const lines = problems({
      environments: {
        dev: {
          services: {
            cmd: { type: 'command', start: 'run' },
            k8s: { type: 'kubernetes', name: 'api', kind: 'daemonset', replicas: 0 },
            unit: { type: 'systemd', unit: 'api.service', sudo: 'yes' },
          },
          health: {
            web: { type: 'http', url: 'ftp://example.com', expectStatus: 2000 },
            cache: { type: 'redis', url: 'redis://:pa55word@cache:6379' },
            db: { type: 'postgres', port: 70000, passwordEnv: 'has space' },
          },
          notify: {
            chat: { type: 'slack', webhookUrl: { env: 'SLACK_URL' }, mentionOn: ['sev9'] },
            file: { type: 'file' },
            out: { type: 'stdout', verbose: true },
          },
        },
      },
    });
    expect(lines).toEqual([
      'environments.dev.services.cmd.stop: give a stop command, or a pidFile whose process is then sent SIGTERM',
      'environments.dev.services.k8s.kind: expected one of "deployment", "statefulset", got "daemonset"',
      'environments.dev.services.k8s.replicas: must be at least 1',
      'environments.dev.services.unit.sudo: expected true or false, got a string',
      'environments.dev.health.web.url: expected a http:// or https:// URL',
      'environments.dev.health.web.expectStatus: must be at most 599',
      'environments.dev.health.cache.url: the URL contains a password: remove it and name the environment variable holding it in passwordEnv',
      'environments.dev.health.db.port: must be at most 65535',
      'environments.dev.health.db.passwordEnv: expected the name of an environment variable (letters, digits and _)',
      'environments.dev.notify.chat.mentionOn[0]: expected one of "sev1", "sev2", "sev3", got "sev9"',
      'environments.dev.notify.file.path: missing required field (a string)',
      "environments.dev.notify.out.verbose: unknown field 'verbose' (known fields: type)",
    ]);
    expect(lines.join('\n')).not.toContain('pa55word');
  });

  it('checks store URLs when the config is loaded', () => {
    expect(
      problems({ environments: { dev: { stores: { a: 's3://Bad_Bucket/x', b: 'ftp://host/x' }, lock: { store: 'relative/dir' } } } }),
    ).toEqual([
      'environments.dev.stores.a: store URL s3://Bad_Bucket/x is invalid: "Bad_Bucket" is not a valid bucket name (3-63 lower-case letters, digits, dots and dashes)',
      'environments.dev.stores.b: store URL scheme "ftp" is not supported; use file:///path/to/dir or s3://bucket/prefix?region=REGION',
      'environments.dev.lock.store: store URL relative/dir is invalid: it is not a URL; use file:///path/to/dir or s3://bucket/prefix?region=REGION',
    ]);
  });

  it('refuses zero durations', () => {
    expect(problems({ environments: { dev: { updateEvery: 0, rto: { total: '0s' } } } })).toEqual([
      'environments.dev.rto.total: must be longer than 0',
      'environments.dev.updateEvery: must be longer than 0',
    ]);
  });

  it('validates defaults like an environment', () => {
    expect(problems({ defaults: { updateEvery: 'soon' }, environments: { dev: {} } })).toEqual([
      'defaults.updateEvery: "soon" is not a duration (use e.g. "15m", "1h30m", "90s" or "500ms")',
    ]);
  });
});

describe('parseConfig: environments', () => {
  const config = parseConfig(
    defineConfig({
      defaults: {
        product: 'Acme',
        updateEvery: '5m',
        vars: { region: 'eu-west-1', tier: 'gold' },
        notify: { out: { type: 'stdout' }, chat: { type: 'slack', webhookUrl: { env: 'SLACK_URL' } } },
        services: { api: { type: 'compose', service: 'api' } },
        rto: { total: '4h', phases: { detection: '15m', restore: '2h' } },
        lock: { ttl: '1m' },
        runsDir: '/var/lib/drkit/runs',
      },
      environments: {
        staging: {},
        production: {
          production: true,
          description: 'the real thing',
          vars: { tier: 'platinum' },
          notify: { chat: { type: 'webhook', url: { env: 'HOOK_URL' } } },
          services: { worker: { type: 'systemd', unit: 'worker.service' } },
          rto: { phases: { restore: '1h' } },
          lock: { store: 'file:///var/locks/drkit' },
          updateEvery: 60_000,
        },
      },
    }),
  );

  it('fills in the built-in defaults', () => {
    const bare = parseConfig({ environments: { dev: {} } }).environment('dev');
    expect(bare).toEqual({
      name: 'dev',
      production: false,
      product: 'Service',
      vars: {},
      stores: {},
      keys: {},
      secrets: {},
      services: {},
      health: {},
      notify: {},
      rto: { phases: {} },
      updateEvery: 15 * 60_000,
      lock: {},
      runsDir: '.drkit/runs',
    } satisfies EnvironmentConfig);
  });

  it('merges defaults under an environment that sets nothing', () => {
    expect(config.environment('staging')).toMatchObject({
      name: 'staging',
      production: false,
      product: 'Acme',
      updateEvery: 300_000,
      vars: { region: 'eu-west-1', tier: 'gold' },
      rto: { total: 4 * 3_600_000, phases: { detection: 900_000, restore: 7_200_000 } },
      lock: { ttl: 60_000 },
      runsDir: '/var/lib/drkit/runs',
    });
  });

  it('merges maps by name, replacing whole entries and keeping the rest', () => {
    const production = config.environment('production');
    expect(production).toMatchObject({
      production: true,
      description: 'the real thing',
      product: 'Acme',
      updateEvery: 60_000,
      vars: { region: 'eu-west-1', tier: 'platinum' },
      rto: { total: 4 * 3_600_000, phases: { detection: 900_000, restore: 3_600_000 } },
      lock: { store: 'file:///var/locks/drkit', ttl: 60_000 },
    });
    expect(production.notify).toEqual({ out: { type: 'stdout' }, chat: { type: 'webhook', url: { env: 'HOOK_URL' } } });
    expect(production.services).toEqual({ api: { type: 'compose', service: 'api' }, worker: { type: 'systemd', unit: 'worker.service' } });
  });

  it('does not let one environment change what another gets', () => {
    const first = config.environment('staging');
    first.vars.region = 'changed';
    first.rto.phases.detection = 1;
    expect(config.environment('staging').vars.region).toBe('eu-west-1');
    expect(config.environment('staging').rto.phases.detection).toBe(900_000);
  });

  it('lists the environments and refuses an unknown one, naming the known ones', () => {
    expect(config.environments).toEqual(['staging', 'production']);
    let error: unknown;
    try {
      config.environment('prod');
    } catch (e) {
      error = e;
    }
    expect(isRunbookError(error, 'RUNBOOK_CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toBe('environment "prod" is not defined in config; known environments: staging, production');
    expect(() => config.environment('stagin')).toThrow('environment "stagin" is not defined in config (did you mean "staging"?); known');
    // Not fooled by what every object has.
    expect(() => config.environment('constructor')).toThrow('is not defined');
  });

  it('keeps relative paths as written without a base directory', () => {
    const dev = parseConfig({ environments: { dev: { keys: { k: { file: 'k.key' } }, runsDir: 'runs' } } }).environment('dev');
    expect(dev.keys.k).toEqual({ file: 'k.key' });
    expect(dev.runsDir).toBe('runs');
  });

  it('resolves the paths drkit uses against a base directory', () => {
    const dev = parseConfig(
      {
        defaults: { secrets: { shared: { file: 'shared.txt' } } },
        environments: {
          dev: {
            keys: { k: { file: 'k.key' }, e: { env: 'KEY' } },
            notify: {
              log: { type: 'file', path: 'incidents.jsonl' },
              hook: { type: 'webhook', url: { file: 'hook-url' }, headers: { authorization: { file: '/etc/abs' } } },
            },
            services: { api: { type: 'compose', service: 'api', file: 'compose.yaml' } },
          },
        },
      },
      'x',
      { baseDir: '/srv/app' },
    ).environment('dev');
    expect(dev.keys).toEqual({ k: { file: '/srv/app/k.key' }, e: { env: 'KEY' } });
    expect(dev.secrets).toEqual({ shared: { file: '/srv/app/shared.txt' } });
    expect(dev.notify).toEqual({
      log: { type: 'file', path: '/srv/app/incidents.jsonl' },
      hook: { type: 'webhook', url: { file: '/srv/app/hook-url' }, headers: { authorization: { file: '/etc/abs' } } },
    });
    expect(dev.services.api).toEqual({ type: 'compose', service: 'api', file: 'compose.yaml' });
    expect(dev.runsDir).toBe('/srv/app/.drkit/runs');
  });
});

describe('defineConfig', () => {
  it('returns its argument, and its type catches what validation would', () => {
    const config = defineConfig({
      environments: {
        dev: {
          updateEvery: '15m',
          rto: { total: 3_600_000 },
          // @ts-expect-error a secret is a reference, never the value
          secrets: { db: 'hunter2-literal' },
        },
      },
    });
    expect(config.environments.dev?.updateEvery).toBe('15m');
    // @ts-expect-error a misspelt field
    defineConfig({ environments: { dev: { runsdir: 'x' } } });
    // @ts-expect-error an unknown service type
    defineConfig({ environments: { dev: { services: { api: { type: 'docker', service: 'api' } } } } });
  });
});
