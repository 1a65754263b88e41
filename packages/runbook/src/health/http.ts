import { performance } from 'node:perf_hooks';
import { RunbookError } from '../errors.js';
import { connectionFailure, type HealthCheck, type HealthCheckDeps, type HttpHealthConfig, redactUrl, scrub } from './check.js';

const DEFAULT_TIMEOUT_MS = 5000;
// Enough for any health page; a check must not buffer a huge body by mistake.
const MAX_BODY_BYTES = 1 << 20;

async function readCapped(body: ReadableStream<Uint8Array> | null): Promise<string> {
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size >= MAX_BODY_BYTES) {
      await reader.cancel();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

function snippet(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= 120 ? line : `${line.slice(0, 120)}…`;
}

/** A {@link HealthCheck} for {@link HttpHealthConfig}. */
export function createHttpCheck(name: string, config: HttpHealthConfig, _deps: HealthCheckDeps = {}): HealthCheck {
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // fetch refuses URLs with credentials, so they travel as a basic-auth header instead.
  const parsed = new URL(config.url);
  const username = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  const headers: Record<string, string> = {};
  if (username !== '' || password !== '') headers.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  parsed.username = '';
  parsed.password = '';
  const target = parsed.toString();
  const shown = redactUrl(config.url);
  const expected = config.expectStatus === undefined ? '2xx' : String(config.expectStatus);
  const clean = (text: string) => scrub(text, [password]);

  return {
    name,
    type: 'http',
    describe: () =>
      `GET ${shown} (expect ${expected}${config.contains !== undefined ? `, a body containing ${JSON.stringify(config.contains)}` : ''})`,
    async check(options) {
      const caller = options?.signal;
      if (caller?.aborted) throw new RunbookError('RUNBOOK_ABORTED', `health check "${name}" was aborted`, { cause: caller.reason });
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = caller ? AbortSignal.any([caller, timeout]) : timeout;
      const started = performance.now();
      const result = (ok: boolean, detail: string) => ({ ok, detail: clean(detail), latencyMs: Math.round(performance.now() - started) });
      try {
        const response = await fetch(target, { headers, signal, cache: 'no-store' });
        const statusOk = config.expectStatus === undefined ? response.ok : response.status === config.expectStatus;
        const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
        if (!statusOk) {
          const body = snippet(await readCapped(response.body).catch(() => ''));
          return result(false, `${status}, expected ${expected}${body ? `: ${body}` : ''}`);
        }
        if (config.contains === undefined) {
          await response.body?.cancel();
          return result(true, status);
        }
        const body = await readCapped(response.body);
        if (!body.includes(config.contains))
          return result(
            false,
            `${status}, but the body does not contain ${JSON.stringify(config.contains)}: ${snippet(body) || '(empty)'}`,
          );
        return result(true, `${status}, body contains ${JSON.stringify(config.contains)}`);
      } catch (error) {
        if (caller?.aborted) throw new RunbookError('RUNBOOK_ABORTED', `health check "${name}" was aborted`, { cause: caller.reason });
        if (timeout.aborted) return result(false, `no answer within ${timeoutMs} ms`);
        const cause = (error as { cause?: unknown }).cause;
        return result(false, connectionFailure(cause ?? error));
      }
    },
  };
}
