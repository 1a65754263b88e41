import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Where a helper script of this package lives and how to run it with the current Node:
 * the compiled `.js` beside this module when built, or the `.ts` source when the package
 * runs from source (tests), which Node runs by stripping types.
 */
export function helperScript(name: 'reaper' | 's3-server'): { path: string; execArgv: string[] } {
  const js = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  if (existsSync(js)) return { path: js, execArgv: [] };
  const ts = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const stripsByDefault = major > 23 || (major === 23 && minor >= 6) || (major === 22 && minor >= 18);
  return { path: ts, execArgv: stripsByDefault ? ['--no-warnings'] : ['--experimental-strip-types', '--no-warnings'] };
}
