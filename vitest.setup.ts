// Libraries never write to the console: they take a logger or emit typed events. Any test
// during which something calls console.* fails, naming the method and the first words.
import { afterEach, beforeEach } from 'vitest';

const METHODS = ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir', 'table'] as const;
type Method = (typeof METHODS)[number];

const originals = new Map<Method, (...args: unknown[]) => void>();
let calls: string[] = [];

beforeEach(() => {
  calls = [];
  for (const method of METHODS) {
    originals.set(method, console[method] as (...args: unknown[]) => void);
    console[method] = (...args: unknown[]) => {
      calls.push(
        `console.${method}(${args
          .map((a) => String(a))
          .join(' ')
          .slice(0, 200)})`,
      );
    };
  }
});

afterEach(() => {
  for (const [method, original] of originals) console[method] = original as never;
  if (calls.length > 0) {
    const seen = calls;
    calls = [];
    throw new Error(`the console was written to during this test (libraries must use a logger or events):\n${seen.join('\n')}`);
  }
});
