import { spawn } from 'node:child_process';

/**
 * Runs a command to completion with stdout discarded (in `env` when given, else this
 * process's environment); rejects with its stderr if it fails.
 */
export function run(command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env } : {}) });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}: ${stderr.trim()}`));
    });
  });
}

/** Runs a bash pipeline with "$1", "$2"... bound to args, under `set -euo pipefail`. */
export function sh(script: string, ...args: string[]): Promise<void> {
  return run('bash', ['-c', `set -euo pipefail; ${script}`, 'bench', ...args]);
}
