import type { Command } from './command.js';

function flagLabel(name: string, spec: Command['options'][string]): string {
  const short = spec.short ? `-${spec.short}, ` : '    ';
  const value = spec.type === 'string' ? ` <${spec.value ?? 'value'}>` : '';
  return `${short}--${name}${value}`;
}

function table(rows: [string, string][]): string {
  const width = Math.max(0, ...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join('\n');
}

/** Help for `drkit --help`: every command, one line each. */
export function renderRootHelp(commands: readonly Command[], version: string): string {
  const rows = commands.map((c): [string, string] => [[...c.path, c.args ?? ''].join(' ').trim(), c.summary]);
  return [
    `drkit ${version}: executable disaster-recovery runbooks and backup primitives`,
    '',
    'Usage: drkit <command> [flags]',
    '',
    'Commands:',
    rows.length ? table(rows) : '  (none)',
    '',
    'Flags:',
    table([
      ['-h, --help', 'show help (also after a command: drkit <command> --help)'],
      ['-V, --version', 'print the version'],
    ]),
    '',
    'Exit codes: 0 ok, 1 failed, 2 bad command line, 3 refused (needs confirmation or --yes), 130 interrupted.',
    '',
  ].join('\n');
}

/** Help for one command. */
export function renderCommandHelp(command: Command): string {
  const rows = Object.entries(command.options).map(([name, spec]): [string, string] => [flagLabel(name, spec), spec.description]);
  rows.push(['-h, --help', 'show this help']);
  return [
    `Usage: drkit ${[...command.path, command.args ?? ''].join(' ').trim()} [flags]`,
    '',
    command.summary,
    '',
    'Flags:',
    table(rows),
    ...(command.details ? ['', command.details.trim()] : []),
    '',
  ].join('\n');
}

/** Groups of commands that share a first word, for `drkit backup --help`. */
export function renderGroupHelp(word: string, commands: readonly Command[]): string {
  const rows = commands.map((c): [string, string] => [[...c.path, c.args ?? ''].join(' ').trim(), c.summary]);
  return [`Usage: drkit ${word} <command> [flags]`, '', 'Commands:', table(rows), ''].join('\n');
}
