import type { Readable, Writable } from 'node:stream';

/** One flag of a command. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Shown in help. */
  description: string;
  /** Placeholder of the value in help, e.g. "FILE". */
  value?: string;
  multiple?: boolean;
}

/** The streams and environment a command runs with; injectable so commands test in-process. */
export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  env: NodeJS.ProcessEnv;
  /** Whether a person is at the terminal (confirmations are only asked then). */
  isTTY: boolean;
}

/** Parsed flag values, typed by the command's option specs. */
export type OptionValues<O extends Record<string, OptionSpec>> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean'
    ? O[K]['multiple'] extends true
      ? boolean[]
      : boolean
    : O[K]['multiple'] extends true
      ? string[]
      : string;
};

/** What a command's `run` receives. */
export interface CommandContext<O extends Record<string, OptionSpec>> {
  options: OptionValues<O>;
  positionals: string[];
  io: CliIo;
  /** Aborted on SIGINT/SIGTERM so long operations can stop cleanly. */
  signal: AbortSignal;
}

/** A `drkit` command: the words that name it, its flags and what it does. */
export interface Command<O extends Record<string, OptionSpec> = Record<string, OptionSpec>> {
  /** The words after `drkit`, e.g. `['backup', 'put']`. */
  path: readonly string[];
  summary: string;
  /** Positional arguments as shown in help, e.g. "<id|latest>". */
  args?: string;
  positionals?: { min: number; max: number };
  options: O;
  /** Longer help text printed after the flags. */
  details?: string;
  /** Returns the exit code (0 when nothing is returned). */
  run(context: CommandContext<O>): Promise<number | undefined> | number | undefined;
}

/** Declares a command with its option types inferred. */
export function defineCommand<const O extends Record<string, OptionSpec>>(command: Command<O>): Command<O> {
  return command;
}
