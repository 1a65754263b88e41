import { readFileSync } from 'node:fs';
import { SandboxError } from './errors.js';

/** A system account a server runs as. */
export interface RunAs {
  name: string;
  uid: number;
  gid: number;
}

function lookup(name: string): RunAs | undefined {
  const passwd = readFileSync('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

/**
 * The unprivileged account PostgreSQL runs as when this process is root (postgres refuses
 * root): the `user` option, `DRKIT_SANDBOX_USER`, else `postgres`, else `nobody`.
 * Returns undefined when not root: the server then runs as the current user.
 */
export function unprivilegedUser(requested?: string): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const wanted = requested ?? process.env.DRKIT_SANDBOX_USER;
  if (wanted) {
    const found = lookup(wanted);
    if (!found)
      throw new SandboxError(
        'SANDBOX_USER_MISSING',
        `the account '${wanted}' to run PostgreSQL as does not exist; create it (useradd --system ${wanted}) or name another`,
      );
    return found;
  }
  const found = lookup('postgres') ?? lookup('nobody');
  if (!found)
    throw new SandboxError(
      'SANDBOX_USER_MISSING',
      'running as root, and neither a postgres nor a nobody account exists to run PostgreSQL as; set DRKIT_SANDBOX_USER to an unprivileged account',
    );
  return found;
}
