#!/usr/bin/env node
import { main } from './main.js';

const controller = new AbortController();
// First signal: ask the running command to stop cleanly; a second one ends the process.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    controller.abort(new Error(`received ${signal}`));
    process.once(signal, () => process.exit(130));
  });
}

process.exitCode = await main(
  process.argv.slice(2),
  {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    isTTY: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  },
  { signal: controller.signal },
);
