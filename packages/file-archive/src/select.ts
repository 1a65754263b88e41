import { FilesError } from './errors.js';

/** A compiled set of path selectors (see {@link compileSelectors}). */
export interface Selectors {
  readonly patterns: readonly string[];
  /** True when `path` or one of its ancestor directories matches a selector. */
  matches(path: string): boolean;
}

/**
 * Compiles path selectors, relative to the backed-up directory: a path (`uploads/2025/10/`
 * selects that directory and everything under it, `config/app.yaml` one file) or a glob
 * (`*` and `?` within one name, `**` across directories, `[abc]` a class), e.g.
 * `uploads/*\/10/` or `**\/*.mp3`. A selector matching a directory selects its whole subtree.
 * @throws FilesError FILES_OPTIONS_INVALID for an empty selector or one that climbs out (`..`)
 */
export function compileSelectors(patterns: readonly string[]): Selectors {
  const compiled = patterns.map((raw) => {
    const pattern = raw
      .replace(/^(\.\/)+/, '')
      .replace(/^\/+/, '')
      .replace(/\/+$/, '');
    if (pattern === '' || pattern === '.')
      throw new FilesError(
        'FILES_OPTIONS_INVALID',
        `path selector "${raw}" is empty: name a path or glob inside the backup, e.g. uploads/2025/10/`,
      );
    if (pattern.split('/').includes('..'))
      throw new FilesError(
        'FILES_OPTIONS_INVALID',
        `path selector "${raw}" climbs out with "..": selectors are relative to the backed-up directory`,
      );
    if (!/[*?[]/.test(pattern)) return { literal: pattern };
    return { regex: new RegExp(`^${globToRegex(pattern)}(?:/.*)?$`, 'su') };
  });
  return {
    patterns,
    matches(path: string): boolean {
      for (const c of compiled) {
        if ('literal' in c) {
          if (path === c.literal || path.startsWith(`${c.literal}/`)) return true;
        } else if (c.regex.test(path)) return true;
      }
      return false;
    },
  };
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === '*') {
      if (glob[i + 1] === '*') {
        // "**/" matches zero or more directories; a trailing "**" anything below.
        if (glob[i + 2] === '/') {
          out += '(?:.*/)?';
          i += 2;
        } else {
          out += '.*';
          i += 1;
        }
      } else out += '[^/]*';
    } else if (ch === '?') out += '[^/]';
    else if (ch === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end === -1) out += '\\[';
      else {
        const body = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        out += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else out += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return out;
}
