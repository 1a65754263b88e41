// An HTTP proxy in front of a sandbox S3 server that can fail, reset or cut requests on
// command, and records every request it saw: how the S3 driver's retries, aborts and headers
// are tested against a real server. Requests are forwarded byte for byte with their Host
// header, so SigV4 signatures still verify behind it.
import { once } from 'node:events';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';

/** One request as the proxy saw it. */
export interface RecordedRequest {
  method: string;
  /** The path, without the query: `/bucket/key`. */
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The S3 operation it is, from the SDK's `x-id` query parameter or the method and query. */
  operation: string;
  /** Date.now() when the request arrived and when its response ended (or its connection broke). */
  arrivedAt: number;
  endedAt?: number;
  /** The status the client got; undefined when the connection was reset. */
  status?: number;
  /** The fault injected, if any. */
  fault?: 'fail' | 'reset' | 'cut' | 'rewrite' | 'hold';
}

/** Which requests a fault applies to. @default every request */
export type RequestMatcher = (request: RecordedRequest) => boolean;

type Rule =
  | { kind: 'fail'; remaining: number; match: RequestMatcher; status: number; code: string }
  | { kind: 'reset'; remaining: number; match: RequestMatcher }
  | { kind: 'cut'; remaining: number; match: RequestMatcher; afterBytes: number }
  | { kind: 'rewrite'; remaining: number; match: RequestMatcher; headers: Record<string, string> }
  | { kind: 'hold'; remaining: number; match: RequestMatcher; released: Promise<void> };

/** A running proxy. */
export interface FaultProxy {
  /** `http://127.0.0.1:PORT`: give it to the S3 client instead of the server's. */
  readonly endpoint: string;
  /** Every request so far, in arrival order. */
  readonly requests: RecordedRequest[];
  /** Answers the next `count` matching requests itself with `status` and an S3 error `code`. */
  failNext(count: number, options?: { status?: number; code?: string; match?: RequestMatcher }): void;
  /** Resets the connection (TCP RST) of the next `count` matching requests before answering. */
  resetNext(count: number, options?: { match?: RequestMatcher }): void;
  /** Forwards the next `count` matching requests, then resets the connection after `afterBytes` bytes of the response body. */
  cutNext(count: number, afterBytes: number, options?: { match?: RequestMatcher }): void;
  /** Replaces response headers of the next `count` matching requests. */
  rewriteNext(count: number, headers: Record<string, string>, options?: { match?: RequestMatcher }): void;
  /**
   * Forwards the next `count` matching requests but keeps their responses back until the
   * returned function is called: a request that is deterministically still in flight.
   */
  holdNext(count: number, options?: { match?: RequestMatcher }): () => void;
  /** Forgets the recorded requests and pending faults. */
  reset(): void;
  close(): Promise<void>;
}

/** What the AWS SDK's request is, from its `x-id` parameter (or the method and query). */
function operationOf(method: string, query: Record<string, string>): string {
  if (query['x-id']) return query['x-id'];
  if (method === 'HEAD') return 'HeadObject';
  if (method === 'POST' && 'uploads' in query) return 'CreateMultipartUpload';
  if (method === 'POST' && 'uploadId' in query) return 'CompleteMultipartUpload';
  if (method === 'GET' && query['list-type'] === '2') return 'ListObjectsV2';
  return `${method} ${Object.keys(query).join('&')}`;
}

/** Answers with an S3 error document. */
function s3Error(res: ServerResponse, status: number, code: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the fault proxy</Message><RequestId>fault-proxy</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Starts a proxy on a random port in front of `target` (`http://host:port`). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  let rules: Rule[] = [];
  const sockets = new Set<Socket>();

  const take = (record: RecordedRequest): Rule | undefined => {
    const rule = rules.find((r) => r.remaining > 0 && r.match(record));
    if (rule) rule.remaining -= 1;
    return rule;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, record: RecordedRequest, rule: Rule | undefined) => {
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: false },
      async (upstreamRes) => {
        if (rule?.kind === 'hold') await rule.released;
        const headers = { ...upstreamRes.headers, ...(rule?.kind === 'rewrite' ? rule.headers : {}) };
        res.writeHead(upstreamRes.statusCode ?? 502, headers);
        record.status = upstreamRes.statusCode ?? 502;
        if (rule?.kind === 'cut') {
          const cut = () => {
            record.endedAt = Date.now();
            // Let the bytes go out, then break the connection as a network failure would.
            setTimeout(() => {
              res.socket?.resetAndDestroy();
              upstreamRes.destroy();
            }, 20);
          };
          if (rule.afterBytes === 0) {
            res.flushHeaders();
            upstreamRes.pause();
            cut();
            return;
          }
          let sent = 0;
          upstreamRes.on('data', (chunk: Buffer) => {
            if (sent >= rule.afterBytes) return;
            const part = chunk.subarray(0, rule.afterBytes - sent);
            sent += part.length;
            res.write(part);
            if (sent >= rule.afterBytes) cut();
          });
          return;
        }
        upstreamRes.pipe(res);
        upstreamRes.on('end', () => {
          record.endedAt ??= Date.now();
        });
      },
    );
    out.on('error', () => {
      record.endedAt ??= Date.now();
      res.socket?.resetAndDestroy();
    });
    // A client that gives up mid-request: the server sees the connection break too.
    req.on('close', () => {
      if (!req.complete) out.destroy();
    });
    req.pipe(out);
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    const record: RecordedRequest = {
      method,
      path: url.pathname,
      query,
      headers: req.headers,
      operation: operationOf(method, query),
      arrivedAt: Date.now(),
    };
    requests.push(record);
    res.on('close', () => {
      record.endedAt ??= Date.now();
    });
    const rule = take(record);
    if (rule) record.fault = rule.kind;
    if (rule?.kind === 'reset') {
      record.endedAt = Date.now();
      req.socket.resetAndDestroy();
      return;
    }
    if (rule?.kind === 'fail') {
      // Read the whole body first: answering mid-upload would break the connection instead.
      req.resume();
      req.on('end', () => {
        record.status = rule.status;
        record.endedAt = Date.now();
        s3Error(res, rule.status, rule.code);
      });
      return;
    }
    forward(req, res, record, rule);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const all: RequestMatcher = () => true;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    failNext(count, options = {}) {
      rules.push({
        kind: 'fail',
        remaining: count,
        match: options.match ?? all,
        status: options.status ?? 503,
        code: options.code ?? 'SlowDown',
      });
    },
    resetNext(count, options = {}) {
      rules.push({ kind: 'reset', remaining: count, match: options.match ?? all });
    },
    cutNext(count, afterBytes, options = {}) {
      rules.push({ kind: 'cut', remaining: count, match: options.match ?? all, afterBytes });
    },
    rewriteNext(count, headers, options = {}) {
      rules.push({ kind: 'rewrite', remaining: count, match: options.match ?? all, headers });
    },
    holdNext(count, options = {}) {
      let release = () => {};
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      rules.push({ kind: 'hold', remaining: count, match: options.match ?? all, released });
      return release;
    },
    reset() {
      requests.length = 0;
      rules = [];
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
