#!/usr/bin/env node
import module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from './main.js';

// PostgreSQL starts wal-push and wal-fetch once per WAL segment: cache compiled code, and
// load only those two commands (not every package) for them. The cache is per account: the
// server's account cannot write into one that root created first.
module.enableCompileCache?.(join(tmpdir(), `drkit-compile-cache-${process.getuid?.() ?? 'user'}`));
const argv = process.argv.slice(2);
const wal = argv[0] === 'wal-push' || argv[0] === 'wal-fetch' ? await import('./commands/wal.js') : undefined;

const controller = new AbortController();
// First signal: ask the running command to stop cleanly; a second one ends the process.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    controller.abort(new Error(`received ${signal}`));
    process.once(signal, () => process.exit(130));
  });
}

process.exitCode = await main(
  argv,
  {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    isTTY: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  },
  { signal: controller.signal, ...(wal ? { commands: [wal.walPushCommand, wal.walFetchCommand] } : {}) },
);
