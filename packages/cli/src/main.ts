import { parseArgs } from 'node:util';
import type { CliIo, Command } from './command.js';
import { EXIT, UsageError } from './errors.js';
import { renderCommandHelp, renderGroupHelp, renderRootHelp } from './help.js';
import { VERSION } from './version.js';

function write(stream: CliIo['stdout'], text: string): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** The command whose path is the longest prefix of `words`, and the words left after it. */
function route(commands: readonly Command[], words: string[]): { command: Command; rest: string[] } | undefined {
  let best: Command | undefined;
  for (const command of commands) {
    const matches = command.path.every((word, i) => words[i] === word);
    if (matches && command.path.length > (best?.path.length ?? 0)) best = command;
  }
  return best ? { command: best, rest: words.slice(best.path.length) } : undefined;
}

function describeParseError(error: unknown, command: Command): string {
  const where = `drkit ${command.path.join(' ')}`;
  const message = error instanceof Error ? error.message : String(error);
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag '${unknown[1]}' for '${where}' (see '${where} --help')`;
  const missing = /Option '([^']+?)(?: <value>)?' argument missing/.exec(message);
  if (missing) return `flag '${missing[1]}' needs a value (see '${where} --help')`;
  return `${message.replace(/\.$/, '')} (see '${where} --help')`;
}

/** `drkit help <command words>`: the help of that command, or of that group of commands. */
function help(commands: readonly Command[], words: string[], io: CliIo): number {
  const routed = route(commands, words);
  if (routed && routed.rest.length === 0) {
    write(io.stdout, renderCommandHelp(routed.command));
    return EXIT.OK;
  }
  const group = commands.filter((c) => c.path[0] === words[0]);
  if (!routed && words.length === 1 && group.length > 0) {
    write(io.stdout, renderGroupHelp(words[0] as string, group));
    return EXIT.OK;
  }
  write(io.stderr, `drkit: unknown command '${words.join(' ')}' (see 'drkit --help')`);
  return EXIT.USAGE;
}

/** Options for {@link main}. */
export interface MainOptions {
  /** The commands to route to. @default every built-in command */
  commands?: readonly Command[];
  /** Aborted when the process is asked to stop. */
  signal?: AbortSignal;
}

/**
 * Runs the `drkit` command line on `argv` (without node and script) and returns the exit
 * code. Never calls `process.exit`, so it can run in-process in tests and other tools.
 */
export async function main(argv: readonly string[], io: CliIo, options: MainOptions = {}): Promise<number> {
  // Loaded on demand: a command given its own list (wal-push, once per WAL segment) starts
  // without loading every package.
  const commands = options.commands ?? (await import('./commands/index.js')).allCommands;
  const signal = options.signal ?? new AbortController().signal;
  const words = [...argv];
  const first = words[0];
  if (first === 'help' && words.length > 1) return help(commands, words.slice(1), io);
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    write(io.stdout, renderRootHelp(commands, VERSION));
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (first === '--version' || first === '-V') {
    write(io.stdout, VERSION);
    return EXIT.OK;
  }
  const routed = route(commands, words);
  if (!routed) {
    const group = commands.filter((c) => c.path[0] === first);
    if (group.length > 0) {
      const rest = words.slice(1);
      if (rest.length === 0 || rest[0] === '--help' || rest[0] === '-h') {
        write(rest.length === 0 ? io.stderr : io.stdout, renderGroupHelp(first, group));
        return rest.length === 0 ? EXIT.USAGE : EXIT.OK;
      }
      write(io.stderr, `drkit: unknown command 'drkit ${first} ${rest[0]}' (see 'drkit ${first} --help')`);
      return EXIT.USAGE;
    }
    const hint = first.startsWith('-') ? `unknown flag '${first}'` : `unknown command '${first}'`;
    write(io.stderr, `drkit: ${hint} (see 'drkit --help')`);
    return EXIT.USAGE;
  }
  const { command, rest } = routed;
  if (rest.includes('--help') || rest.includes('-h')) {
    write(io.stdout, renderCommandHelp(command));
    return EXIT.OK;
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: rest,
      options: Object.fromEntries(
        Object.entries(command.options).map(([name, spec]) => [
          name,
          { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
    const { min, max } = command.positionals ?? { min: 0, max: 0 };
    const where = `drkit ${command.path.join(' ')}`;
    if (parsed.positionals.length < min)
      throw new UsageError(`'${where}' needs ${command.args ?? `${min} argument(s)`} (see '${where} --help')`);
    if (parsed.positionals.length > max)
      throw new UsageError(`unexpected argument '${parsed.positionals[max]}' for '${where}' (see '${where} --help')`);
  } catch (error) {
    write(io.stderr, `drkit: ${error instanceof UsageError ? error.message : describeParseError(error, command)}`);
    return EXIT.USAGE;
  }
  try {
    const code = await command.run({ options: parsed.values as never, positionals: parsed.positionals, io, signal });
    return code ?? EXIT.OK;
  } catch (error) {
    if (error instanceof UsageError) {
      write(io.stderr, `drkit: ${error.message}`);
      return EXIT.USAGE;
    }
    if (signal.aborted) {
      write(io.stderr, 'drkit: interrupted');
      return EXIT.ABORTED;
    }
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : String(error);
    write(io.stderr, typeof code === 'string' ? `drkit: error ${code}: ${message}` : `drkit: error: ${message}`);
    return EXIT.FAILED;
  }
}
