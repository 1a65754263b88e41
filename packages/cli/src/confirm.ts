import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { CliIo } from './command.js';
import { scrub } from './secrets.js';

/**
 * Reads one line from `input` (without its line break); undefined when the input ends first.
 * Rejects when `signal` aborts.
 */
export async function readLine(input: Readable, signal?: AbortSignal): Promise<string | undefined> {
  const rl = createInterface({ input, terminal: false });
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<string | undefined>((resolve, reject) => {
      rl.once('line', (text) => resolve(text));
      rl.once('close', () => resolve(undefined));
      if (signal) {
        if (signal.aborted) reject(signal.reason);
        onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  } finally {
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    rl.close();
  }
}

/** Steps as an indented numbered list, one per line. */
export function numbered(lines: readonly string[]): string {
  return lines.map((l, i) => `  ${i + 1}. ${l}\n`).join('');
}

/** What {@link confirmDestructive} shows and asks. */
export interface Confirmation {
  io: CliIo;
  signal?: AbortSignal;
  /** Scrubbed from everything shown. */
  secrets: readonly string[];
  /** What is about to happen, e.g. "restoring postgres://app@db:5432/app". */
  action: string;
  /** The plan, step by step. */
  steps: readonly string[];
  /** The way out of a refusal, e.g. "Pass --yes to restore, or --dry-run to check the backup and see the plan." */
  hint: string;
  /** What the operator types, e.g. "the name of the database", and its value. */
  what: string;
  expected: string;
}

/**
 * The confirmation of a destructive operation (call it only without --yes). Without a
 * terminal it refuses at once, printing the plan and `hint`; at a terminal it prints the
 * plan and asks for `expected`. Returns true only when the operator typed it; on false the
 * refusal was printed and the caller exits with EXIT.REFUSED having changed nothing.
 */
export async function confirmDestructive(c: Confirmation): Promise<boolean> {
  const { io, secrets } = c;
  if (!io.isTTY) {
    io.stderr.write(scrub(`drkit: refused: ${c.action} would:\n${numbered(c.steps)}drkit: nothing was changed. ${c.hint}\n`, secrets));
    return false;
  }
  io.stderr.write(scrub(`drkit: ${c.action} will:\n${numbered(c.steps)}`, secrets));
  io.stderr.write(scrub(`Type ${c.what} (${c.expected}) to go ahead, anything else cancels: `, secrets));
  const answer = await readLine(io.stdin, c.signal);
  if (answer?.trim() !== c.expected) {
    io.stderr.write(scrub(`drkit: refused: the answer was not '${c.expected}'; nothing was changed\n`, secrets));
    return false;
  }
  return true;
}
