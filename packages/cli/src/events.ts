import type { CliIo } from './command.js';
import { scrub } from './secrets.js';

/** The events every backup package emits (its progress events differ). */
export type PackageEvent = { type: 'step'; step: string; message: string } | { type: 'warning'; message: string } | { type: 'progress' };

/** Megabytes for progress lines. */
export function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/**
 * Renders a backup package's events on stderr: every step, every warning, and progress at most
 * every `everyMs` (as `progress` formats it; undefined prints nothing). Secrets are scrubbed,
 * a line equal to the previous one is dropped, and `skipSteps` are steps the command
 * summarises itself.
 */
export function eventPrinter<E extends PackageEvent>(
  io: CliIo,
  secrets: readonly string[],
  progress: (event: Extract<E, { type: 'progress' }>) => string | undefined,
  options: { everyMs?: number; skipSteps?: readonly string[] } = {},
): { onEvent: (event: E) => void; warnings: Set<string> } {
  const everyMs = options.everyMs ?? 5000;
  let last = performance.now();
  let previous = '';
  const warnings = new Set<string>();
  const line = (text: string) => {
    const clean = scrub(text, secrets);
    // The same step announced twice in a row says nothing new.
    if (clean === previous) return;
    previous = clean;
    io.stderr.write(`drkit: ${clean}\n`);
  };
  const onEvent = (event: E) => {
    if (event.type === 'step') {
      const step = event as Extract<PackageEvent, { type: 'step' }>;
      if (!options.skipSteps?.includes(step.step)) line(step.message);
    } else if (event.type === 'warning') {
      const message = (event as Extract<PackageEvent, { type: 'warning' }>).message;
      warnings.add(message);
      line(`warning: ${message}`);
    } else {
      const now = performance.now();
      if (now - last < everyMs) return;
      last = now;
      const text = progress(event as Extract<E, { type: 'progress' }>);
      if (text !== undefined) line(text);
    }
  };
  return { onEvent, warnings };
}
