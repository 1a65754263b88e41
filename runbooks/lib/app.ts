// Stopping, starting and verifying the application (`vars.app`) the same way in every
// runbook: services stop in reverse order and start in order, a start is only done when
// the application's health check passes, and verification reads the status endpoint too.

import type { BaseContext, StepContext } from '@drkit/runbook';
import { waitHealthy } from '@drkit/runbook';
import { required } from './platform.ts';

/** A controller's multi-line description (commands, then what it waits for) as one effect line. */
export function oneLine(description: string): string {
  return description
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .join('; ');
}

/** What the plan shows for stopping or starting the application's services. */
export function appServicesDescribe(ctx: BaseContext<unknown>, action: 'stop' | 'start' | 'restart'): string[] {
  const { services, health } = required(ctx, 'app');
  const ordered = action === 'stop' ? [...services].reverse() : services;
  const lines = ordered.map((name) => `${action} ${name}: ${oneLine(ctx.service(name).describe(action))}`);
  if (action !== 'stop') lines.push(`wait until health check ${health} passes: ${ctx.health(health).describe()}`);
  return lines;
}

/** Stops the application's services in reverse order; each stop waits until it took effect. */
export async function stopApp(ctx: StepContext<unknown>): Promise<{ stopped: string[] }> {
  const { services } = required(ctx, 'app');
  const stopped: string[] = [];
  for (const name of [...services].reverse()) {
    await ctx.service(name).stop({ signal: ctx.signal });
    ctx.log.info(`${name} is stopped`);
    stopped.push(name);
  }
  return { stopped };
}

/** Starts the application's services in order, then waits for its health check. */
export async function startApp(ctx: StepContext<unknown>, timeoutMs = 120_000): Promise<{ started: string[]; health: string }> {
  const { services, health } = required(ctx, 'app');
  const started: string[] = [];
  for (const name of services) {
    await ctx.service(name).start({ signal: ctx.signal });
    started.push(name);
  }
  const result = await waitHealthy(ctx.health(health), { timeoutMs, signal: ctx.signal, log: ctx.log, clock: ctx.clock });
  return { started, health: result.detail };
}

/** The application's status endpoint (`vars.app.statusUrl`), parsed. */
export async function readStatus(ctx: StepContext<unknown>): Promise<Record<string, unknown> | null> {
  const { statusUrl } = required(ctx, 'app');
  if (statusUrl === undefined) return null;
  const response = await fetch(statusUrl, { signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(10_000)]) });
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) throw new Error(`${statusUrl} answered ${response.status}: ${JSON.stringify(body).slice(0, 200)}`);
  return body;
}

/** Checks the health check once and reads the status endpoint; throws with the reason when either fails. */
export async function verifyApp(ctx: StepContext<unknown>): Promise<{ health: string; status: Record<string, unknown> | null }> {
  const { health } = required(ctx, 'app');
  const result = await waitHealthy(ctx.health(health), { timeoutMs: 60_000, signal: ctx.signal, log: ctx.log, clock: ctx.clock });
  const status = await readStatus(ctx);
  if (status !== null) ctx.log.info(`status: ${JSON.stringify(status)}`);
  return { health: result.detail, status };
}
