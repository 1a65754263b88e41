import { PassThrough, Readable } from 'node:stream';
import { type CliIo, main } from '../src/index.js';

/** In-memory streams for running `main()` in-process; read `out()` and `err()` afterwards. */
export function memoryIo(env: NodeJS.ProcessEnv = {}, isTTY = false): CliIo & { out(): string; err(): string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  stderr.on('data', (c: Buffer) => {
    err += c.toString();
  });
  return { stdout, stderr, stdin: Readable.from([]), env, isTTY, out: () => out, err: () => err };
}

/** What one in-process run of drkit printed and returned. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs `main()` in-process, with the environment `env()` gives at call time, and fails the test
 * if anything it printed contains one of `secrets()` (passwords, key material).
 */
export function cliRunner(
  env: () => NodeJS.ProcessEnv,
  secrets: () => readonly string[],
  expectNone: (printed: string, secret: string) => void,
): {
  drkit(argv: string[], extraEnv?: NodeJS.ProcessEnv): Promise<CliResult>;
  /** Runs drkit "at a terminal" whose operator types `answer`. */
  drkitAtTerminal(argv: string[], answer: string): Promise<CliResult>;
} {
  const checked = (result: CliResult) => {
    for (const secret of secrets()) expectNone(`${result.out}${result.err}`, secret);
    return result;
  };
  return {
    async drkit(argv, extraEnv = {}) {
      const io = memoryIo({ ...env(), ...extraEnv });
      const code = await main(argv, io);
      return checked({ code, out: io.out(), err: io.err() });
    },
    async drkitAtTerminal(argv, answer) {
      const io = memoryIo(env(), true);
      const code = await main(argv, { ...io, stdin: Readable.from([answer]) });
      return checked({ code, out: io.out(), err: io.err() });
    },
  };
}
