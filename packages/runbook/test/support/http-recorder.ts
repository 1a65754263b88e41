// A real HTTP server on 127.0.0.1 that records every request and answers as told: how the
// notifiers' bodies, retries, timeouts and error messages are tested without mocking fetch.
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** One request as the server saw it. */
export interface RecordedRequest {
  method: string;
  /** Path and query, as sent: `/services/T0/B0/xyz?x=1`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The body as received. */
  raw: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  body: unknown;
  /** The status answered; undefined while the request hangs. */
  status?: number;
}

/** How to answer one request. A number is a status with a short text body. */
export type Reply =
  | number
  | 'hang'
  | { status: number; body?: string | ((request: RecordedRequest) => string); headers?: Record<string, string> };

/** A running recorder. */
export interface HttpRecorder {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** Every request so far, in arrival order (recorded once its body has arrived). */
  readonly requests: RecordedRequest[];
  /** Answers the next requests with these replies, in order; afterwards {@link HttpRecorder.fallback}. */
  reply(...replies: Reply[]): void;
  /** The answer once the queued replies are used up. @default 200 */
  fallback: Reply;
  /** Stops the server, cutting hanging requests. */
  close(): Promise<void>;
}

function answer(res: ServerResponse, reply: Exclude<Reply, 'hang'>, request: RecordedRequest): void {
  const spec = typeof reply === 'number' ? { status: reply } : reply;
  const body = typeof spec.body === 'function' ? spec.body(request) : (spec.body ?? (spec.status < 300 ? 'ok' : `status ${spec.status}`));
  request.status = spec.status;
  res.writeHead(spec.status, { 'content-type': 'text/plain', ...spec.headers });
  res.end(body);
}

/** Starts a recorder on a random port. */
export async function startHttpRecorder(): Promise<HttpRecorder> {
  const requests: RecordedRequest[] = [];
  const queue: Reply[] = [];
  const sockets = new Set<Socket>();
  const recorder = { fallback: 200 as Reply };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = undefined;
      }
      const request: RecordedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers, raw, body };
      requests.push(request);
      const reply = queue.length > 0 ? (queue.shift() as Reply) : recorder.fallback;
      if (reply === 'hang') return;
      answer(res, reply, request);
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return Object.assign(recorder, {
    url: `http://127.0.0.1:${port}`,
    requests,
    reply(...replies: Reply[]) {
      queue.push(...replies);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
