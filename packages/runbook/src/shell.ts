import { execa } from 'execa';
import { RunbookError } from './errors.js';
import { type Logger, silentLogger } from './log.js';
import { Redactor } from './redact.js';

/** The outcome of a command that exited 0 (or any code, with `reject: false`). */
export interface CommandResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Options of one {@link Shell.exec} call. */
export interface ExecOptions {
  /** Added to the shell's environment (values here may be secrets: they are never logged). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Written to the command's stdin. */
  input?: string | Uint8Array;
  /** Killed (SIGTERM, then SIGKILL after 5 s) after this long. */
  timeoutMs?: number;
  /** When false, a non-zero exit resolves instead of throwing. @default true */
  reject?: boolean;
  /** Cancels this command (in addition to the shell's signal). */
  signal?: AbortSignal;
}

/**
 * Runs commands for a step. Each command line is logged with the run's secrets redacted;
 * the run's AbortSignal (a step timeout, Ctrl-C) kills the child; a failure is one
 * RUNBOOK_COMMAND_FAILED naming the command (redacted) and the end of its stderr.
 */
export interface Shell {
  /** Runs `file` with `args` (no shell: arguments are passed as they are). */
  exec(file: string, args?: readonly string[], options?: ExecOptions): Promise<CommandResult>;
  /** Runs a command line through `/bin/sh -c` (for pipelines and redirections). */
  sh(script: string, options?: ExecOptions): Promise<CommandResult>;
}

/** Options of {@link createShell}. */
export interface ShellOptions {
  log?: Logger;
  redactor?: Redactor;
  /** Kills every running command when aborted. */
  signal?: AbortSignal;
  /** The base environment. @default process.env */
  env?: Record<string, string | undefined>;
  cwd?: string;
}

const QUOTE_SAFE = /^[A-Za-z0-9_./:=@%+,-]+$/;

/** A command line as a person would type it, for logs and messages. */
export function formatCommand(file: string, args: readonly string[]): string {
  const quote = (s: string) => (s !== '' && QUOTE_SAFE.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return [file, ...args].map(quote).join(' ');
}

function tail(text: string, max = 2000): string {
  const trimmed = text.trim();
  return trimmed.length <= max ? trimmed : `…${trimmed.slice(-max)}`;
}

/** A {@link Shell} that logs through `log` and redacts with `redactor`. */
export function createShell(options: ShellOptions = {}): Shell {
  const log = options.log ?? silentLogger;
  const redactor = options.redactor ?? new Redactor();

  const run = async (file: string, args: readonly string[], shown: string, opts: ExecOptions = {}) => {
    const signals = [options.signal, opts.signal].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    const command = redactor.text(shown);
    const started = Date.now();
    log.info(`$ ${command}`, { command });
    if (signal?.aborted)
      throw new RunbookError('RUNBOOK_ABORTED', `not running \`${command}\`: the step was aborted`, {
        cause: signal.reason,
      });
    const result = await execa(file, [...args], {
      env: { ...(options.env ?? process.env), ...opts.env },
      extendEnv: false,
      ...((opts.cwd ?? options.cwd) ? { cwd: opts.cwd ?? options.cwd } : {}),
      ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
      ...(signal ? { cancelSignal: signal } : {}),
      ...(opts.timeoutMs !== undefined ? { timeout: opts.timeoutMs } : {}),
      forceKillAfterDelay: 5000,
      reject: false,
      stripFinalNewline: true,
    });
    const durationMs = Date.now() - started;
    const out: CommandResult = {
      command,
      exitCode: result.exitCode ?? -1,
      stdout: result.stdout,
      stderr: result.stderr,
      durationMs,
    };
    if (result.isCanceled || signal?.aborted)
      throw new RunbookError('RUNBOOK_ABORTED', `\`${command}\` was stopped: the step was aborted`, {
        cause: signal?.reason,
      });
    if (result.timedOut)
      throw new RunbookError('RUNBOOK_COMMAND_FAILED', `\`${command}\` did not finish within ${opts.timeoutMs} ms and was killed`);
    const failed = result.failed && (opts.reject ?? true);
    log[failed ? 'warn' : 'debug'](`exit ${out.exitCode} after ${durationMs} ms`, { command, exitCode: out.exitCode });
    if (failed) {
      const why =
        result.exitCode === undefined
          ? `could not be run (${redactor.text(result.shortMessage ?? 'unknown error')})`
          : `exited with code ${result.exitCode}`;
      const stderr = tail(redactor.text(result.stderr || result.stdout));
      throw new RunbookError(
        'RUNBOOK_COMMAND_FAILED',
        `\`${command}\` ${why}${stderr ? `: ${stderr}` : ''}. Run it by hand to see the whole output.`,
      );
    }
    return out;
  };

  return {
    exec: (file, args = [], opts) => run(file, args, formatCommand(file, args), opts),
    sh: (script, opts) => run('/bin/sh', ['-c', script], script, opts),
  };
}
