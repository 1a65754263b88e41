import { setTimeout as sleep } from 'node:timers/promises';
import { type Queryable, recordAudit } from './audit.js';
import { HaltError } from './errors.js';
import type { HaltDeps } from './halt.js';
import { haltStatus, listWorkers } from './halt.js';
import type { WorkerHeartbeat } from './keys.js';

/** One worker as verification sees it. */
export interface WorkerVerdict {
  id: string;
  acknowledged: boolean;
  /** Why not, when not: "no heartbeat", "has seen epoch 3 of 4", "orders in flight". */
  reason?: string;
  heartbeat?: WorkerHeartbeat;
}

/** The answer of {@link verifyHalted}. */
export interface VerifyResult {
  /** True only when a halt is engaged and every registered worker acknowledged its epoch. */
  halted: boolean;
  epoch: number;
  workers: WorkerVerdict[];
  /** The workers that have not acknowledged. */
  pending: WorkerVerdict[];
  /** How long it took to get there (or to give up). */
  elapsedMs: number;
}

function verdict(id: string, heartbeat: WorkerHeartbeat | undefined, epoch: number): WorkerVerdict {
  if (!heartbeat)
    return { id, acknowledged: false, reason: 'no heartbeat: stopped or cut off from Redis (its guard refuses orders, but check it)' };
  if (heartbeat.epoch < epoch || !heartbeat.halted)
    return { id, acknowledged: false, reason: `has seen epoch ${heartbeat.epoch}, not the halt's epoch ${epoch}`, heartbeat };
  if (heartbeat.inFlight > 0) return { id, acknowledged: false, reason: `${heartbeat.inFlight} order(s) still in flight`, heartbeat };
  return { id, acknowledged: true, heartbeat };
}

/**
 * Waits until every registered trading worker has acknowledged the current halt epoch with
 * no order in flight, or `timeoutMs` passes. Answers halted only then, and names the workers
 * that have not acknowledged. With `db`, the outcome is audited.
 */
export async function verifyHalted(
  options: Omit<HaltDeps, 'db'> & { timeoutMs?: number; pollMs?: number; db?: Queryable; actor?: string },
): Promise<VerifyResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const started = Date.now();
  for (;;) {
    const state = await haltStatus(options);
    const workers = (await listWorkers(options)).map((w) => verdict(w.id, w.heartbeat, state.epoch));
    const pending = workers.filter((w) => !w.acknowledged);
    const halted = state.halted && pending.length === 0;
    const elapsedMs = Date.now() - started;
    if (halted || elapsedMs >= timeoutMs || !state.halted) {
      const result: VerifyResult = { halted, epoch: state.epoch, workers, pending, elapsedMs };
      if (options.db)
        await recordAudit(options.db, {
          action: halted ? 'verified' : 'verify-failed',
          actor: options.actor ?? 'verify',
          epoch: state.epoch,
          detail: { workers: workers.length, pending: pending.map((p) => ({ id: p.id, reason: p.reason })) },
        });
      return result;
    }
    await sleep(options.pollMs ?? 100);
  }
}

/** {@link verifyHalted}, throwing HALT_NOT_ACKNOWLEDGED (naming the workers) when it does not hold. */
export async function assertHalted(options: Parameters<typeof verifyHalted>[0]): Promise<VerifyResult> {
  const result = await verifyHalted(options);
  if (!result.halted)
    throw new HaltError(
      'HALT_NOT_ACKNOWLEDGED',
      result.epoch === 0 || result.pending.length === 0
        ? 'no halt is engaged'
        : `the halt (epoch ${result.epoch}) is not acknowledged by: ${result.pending.map((p) => `${p.id} (${p.reason})`).join('; ')}`,
      { details: { pending: result.pending.map((p) => p.id), epoch: result.epoch } },
    );
  return result;
}
