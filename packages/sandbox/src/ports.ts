import { createServer } from 'node:net';

/**
 * Asks the kernel for a free TCP port on 127.0.0.1. Another process can take it before the
 * server binds it, so callers must retry on "address in use" (see `startWithPortRetry`).
 */
export function getFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** True when the failure text of a server that did not start says its port was taken. */
export function isAddressInUse(text: string): boolean {
  return /address already in use|EADDRINUSE|could not bind|could not create (any )?tcp\/ip sockets|Could not create server TCP listening socket/i.test(
    text,
  );
}
