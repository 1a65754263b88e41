import { PassThrough, Readable } from 'node:stream';
import type { CliIo } from '../src/index.js';

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
