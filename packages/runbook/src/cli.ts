import { realpathSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Approver } from './approval.js';
import { operatorName } from './approval.js';
import { loadConfig } from './config/load.js';
import { EXIT_CODES, type Runbook } from './definition.js';
import { codeOf, messageOf } from './errors.js';
import { createEventRenderer, renderPlan } from './render.js';
import { type RunOptions, run } from './run.js';

/** The streams and environment a runbook's command line runs with; injectable for tests. */
export interface RunbookIo {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  env: NodeJS.ProcessEnv;
  /** Whether a person is at the terminal: only then are confirmations asked. */
  isTTY: boolean;
}

const FLAGS: Record<string, { value: boolean; help: string }> = {
  env: { value: true, help: 'the environment of drkit.config.* to run against' },
  plan: { value: false, help: 'print every step, phase, budget, gate and effect; run nothing' },
  'dry-run': { value: false, help: 'run the read-only checks and say what the other steps would do' },
  yes: { value: false, help: 'approve every destructive step and gate (CI, drills)' },
  resume: { value: true, help: 'continue run ID (or "latest") after its last completed step' },
  from: { value: true, help: 'start at this step (experts)' },
  only: { value: true, help: 'run only this step (experts)' },
  config: { value: true, help: 'the config file (default: drkit.config.* here, or $DRKIT_CONFIG)' },
  'runs-dir': { value: true, help: 'where journals and reports go (default .drkit/runs)' },
  json: { value: false, help: 'print events as JSON lines instead of text' },
  drill: { value: false, help: 'mark notifications and the report as a DR drill' },
  help: { value: false, help: 'show this help' },
};

const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

interface ParamInfo {
  type: string;
  optional: boolean;
  description?: string;
}

/** What the command line can know of a param from its zod schema (zod 4 internals, read defensively). */
function paramInfo(runbook: Runbook): Map<string, ParamInfo> {
  const out = new Map<string, ParamInfo>();
  const shape = (runbook.definition.params as unknown as { shape?: Record<string, unknown> }).shape;
  for (const [key, schema] of Object.entries(shape ?? {})) {
    let current = schema as { _zod?: { def?: { type?: string; innerType?: unknown } }; description?: string };
    let optional = false;
    const description = current.description;
    for (let i = 0; i < 5; i++) {
      const def = current._zod?.def;
      if (def?.type === 'optional' || def?.type === 'default' || def?.type === 'nullable' || def?.type === 'prefault') {
        optional = true;
        current = def.innerType as typeof current;
      } else break;
    }
    out.set(key, { type: current._zod?.def?.type ?? 'unknown', optional, ...(description ? { description } : {}) });
  }
  return out;
}

/** Usage text of a runbook's command line. */
export function renderHelp(runbook: Runbook, script = 'runbook.ts'): string {
  const params = paramInfo(runbook);
  const lines = [
    `${runbook.title}`,
    '',
    `usage: tsx ${script} --env NAME [--plan | --dry-run] [--yes] [params]`,
    '',
    'params:',
    ...[...params].map(
      ([key, info]) =>
        `  --${kebab(key)}${info.type === 'boolean' ? '' : ' VALUE'}${info.optional ? '' : ' (required)'}${info.description ? `  ${info.description}` : ''}`,
    ),
    '',
    'flags:',
    ...Object.entries(FLAGS).map(([flag, spec]) => `  --${flag}${spec.value ? ' VALUE' : ''}  ${spec.help}`),
    '',
    `exit codes: 0 succeeded, ${EXIT_CODES.failed} failed, ${EXIT_CODES.usage} bad command line/params/config, ${EXIT_CODES.refused} refused (no confirmation, locked, declined), ${EXIT_CODES.aborted} interrupted`,
  ];
  return `${lines.join('\n')}\n`;
}

class UsageError extends Error {}

/** Splits argv into the engine's flags and the runbook's params. */
export function parseRunbookArgs(
  runbook: Runbook,
  argv: readonly string[],
): { flags: Record<string, string | boolean>; params: Record<string, unknown> } {
  const params = paramInfo(runbook);
  const flags: Record<string, string | boolean> = {};
  const values: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}": params are given as --name value`);
    let name = arg.slice(2);
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const flag = FLAGS[name];
    const key = camel(name);
    const negated = name.startsWith('no-') ? params.get(camel(name.slice(3))) : undefined;
    const take = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`--${name} needs a value`);
      i++;
      return next;
    };
    if (flag) flags[name] = flag.value ? take() : true;
    else if (params.get(key)?.type === 'boolean') values[key] = inline === undefined ? true : inline !== 'false';
    else if (negated?.type === 'boolean') values[camel(name.slice(3))] = false;
    else if (params.has(key)) {
      const raw = take();
      const type = params.get(key)?.type;
      values[key] = type === 'number' || type === 'int' ? (Number.isNaN(Number(raw)) ? raw : Number(raw)) : raw;
    } else
      throw new UsageError(
        `unknown flag --${name}; the params of ${runbook.id} are ${[...params.keys()].map((k) => `--${kebab(k)}`).join(', ') || '(none)'} (see --help)`,
      );
  }
  if (flags.plan && flags['dry-run']) throw new UsageError('--plan and --dry-run exclude each other');
  if (flags.only && flags.from) throw new UsageError('--only and --from exclude each other');
  return { flags, params: values };
}

/** Asks on the terminal; for a production environment the operator types its name. */
export function terminalApprover(io: RunbookIo): Approver {
  return async (request, signal) => {
    const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: io.isTTY });
    try {
      const lines = [
        '',
        `${request.destructive ? 'DESTRUCTIVE STEP' : 'APPROVAL NEEDED'}: ${request.title} (${request.step})`,
        ...request.effects.map((e) => `  - ${e}`),
        request.question,
      ];
      io.stderr.write(`${lines.join('\n')}\n`);
      const expected = request.production ? request.environment : 'yes';
      const answer = await rl.question(`Type "${expected}" to go ahead, anything else to stop: `, { signal });
      return { approved: answer.trim() === expected, by: operatorName(io.env), how: 'tty' };
    } finally {
      rl.close();
    }
  };
}

/**
 * Runs a runbook from the command line and returns the exit code: parses the flags and
 * params, renders events for a person (or as JSON lines with --json), asks confirmations on
 * a terminal, and stops cleanly on Ctrl-C (a second Ctrl-C is the caller's to handle).
 */
export async function runbookMain(
  runbook: Runbook,
  argv: readonly string[],
  io: RunbookIo,
  options: { signal?: AbortSignal; script?: string; extra?: Partial<RunOptions> } = {},
): Promise<number> {
  let parsed: ReturnType<typeof parseRunbookArgs>;
  try {
    parsed = parseRunbookArgs(runbook, argv);
  } catch (error) {
    io.stderr.write(`${runbook.id}: ${messageOf(error)}\n`);
    return EXIT_CODES.usage;
  }
  const { flags, params } = parsed;
  if (flags.help) {
    io.stdout.write(renderHelp(runbook, options.script));
    return 0;
  }
  const json = flags.json === true;
  const render = createEventRenderer();
  const mode = flags.plan ? 'plan' : flags['dry-run'] ? 'dry-run' : 'execute';
  try {
    const config = typeof flags.config === 'string' ? await loadConfig({ file: flags.config, env: io.env }) : undefined;
    const result = await run(runbook, {
      params,
      mode,
      env: io.env,
      yes: flags.yes === true,
      ...(io.isTTY && flags.yes !== true ? { approve: terminalApprover(io) } : {}),
      ...(config ? { config } : {}),
      ...(typeof flags.env === 'string' ? { environment: flags.env } : {}),
      ...(typeof flags.resume === 'string' ? { resume: flags.resume } : {}),
      ...(typeof flags.from === 'string' ? { from: flags.from } : {}),
      ...(typeof flags.only === 'string' ? { only: flags.only } : {}),
      ...(typeof flags['runs-dir'] === 'string' ? { runsDir: flags['runs-dir'] } : {}),
      ...(flags.drill ? { drill: true } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (event) => {
        if (json) io.stdout.write(`${JSON.stringify(event)}\n`);
        else if (event.kind === 'plan') io.stdout.write(renderPlan(event));
        else {
          const line = render(event);
          if (line !== undefined) io.stderr.write(`${line}\n`);
        }
      },
      ...options.extra,
    });
    return result.exitCode;
  } catch (error) {
    const code = codeOf(error);
    io.stderr.write(`${runbook.id}: ${code ? `${code}: ` : ''}${messageOf(error)}\n`);
    if (code === 'RUNBOOK_REFUSED' || code === 'RUNBOOK_LOCKED') return EXIT_CODES.refused;
    if (code === 'RUNBOOK_ABORTED') return EXIT_CODES.aborted;
    if (
      code === 'RUNBOOK_PARAMS_INVALID' ||
      code === 'RUNBOOK_CONFIG_INVALID' ||
      code === 'RUNBOOK_CONFIG_NOT_FOUND' ||
      code === 'RUNBOOK_RESUME_INVALID' ||
      code === 'RUNBOOK_SECRET_MISSING' ||
      code === 'RUNBOOK_DEFINITION_INVALID'
    )
      return EXIT_CODES.usage;
    return EXIT_CODES.failed;
  }
}

/** True when the module at `url` is the script node was started with (`tsx runbooks/x.ts`). */
export function isMain(url: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(url));
  } catch {
    return false;
  }
}

/**
 * The entry point of a runbook file: `if (isMain(import.meta.url)) await runbookCli(runbook)`.
 * Runs it with the process's argv and streams, sets the exit code, and turns the first
 * SIGINT/SIGTERM into an orderly stop (the current step is aborted, the journal and report
 * are written); a second one exits at once.
 */
export async function runbookCli(runbook: Runbook, script = process.argv[1]): Promise<void> {
  const controller = new AbortController();
  let stops = 0;
  const stop = (signal: NodeJS.Signals) => {
    stops++;
    if (stops > 1) process.exit(EXIT_CODES.aborted);
    process.stderr.write(`\n${signal}: stopping after the current step is aborted (again to quit at once)\n`);
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    process.exitCode = await runbookMain(
      runbook,
      process.argv.slice(2),
      {
        stdout: process.stdout,
        stderr: process.stderr,
        stdin: process.stdin,
        env: process.env,
        isTTY: Boolean(process.stdin.isTTY && process.stderr.isTTY),
      },
      { signal: controller.signal, ...(script ? { script } : {}) },
    );
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
