import { SandboxError } from './errors.js';
import { getFreePort, isAddressInUse } from './ports.js';
import { ServiceStartFailure } from './process.js';

/** How many ports a start tries before it gives up. */
export const PORT_ATTEMPTS = 5;

/**
 * Runs `attempt` on the preferred port (or a free one), and again on fresh free ports while
 * the server reports its port as taken: between choosing a port and binding it, another
 * process (a parallel test) can take it.
 */
export async function withPortRetry<T>(
  what: string,
  preferred: number | undefined,
  attempt: (port: number, n: number) => Promise<T>,
): Promise<T> {
  let lastLog = '';
  for (let n = 0; n < PORT_ATTEMPTS; n++) {
    const port = n === 0 && preferred !== undefined ? preferred : await getFreePort();
    try {
      return await attempt(port, n);
    } catch (error) {
      if (!(error instanceof ServiceStartFailure)) throw error;
      lastLog = error.log;
      if (!error.timedOut && isAddressInUse(error.log)) continue;
      throw new SandboxError(
        error.timedOut ? 'SANDBOX_START_TIMEOUT' : 'SANDBOX_START_FAILED',
        error.timedOut
          ? `${what} did not become ready in time; see the log below (is the machine overloaded?)`
          : `${what} exited during start-up; its log says why:\n${lastLog.trim().split('\n').slice(-8).join('\n')}`,
        { log: error.log },
      );
    }
  }
  throw new SandboxError(
    'SANDBOX_PORT_UNAVAILABLE',
    `${what} found its port taken ${PORT_ATTEMPTS} times in a row; free some ports on 127.0.0.1 and try again`,
    { log: lastLog },
  );
}
