/** Where the kill switch keeps its state in Redis; one prefix per trading system. */
export interface HaltKeys {
  /** Hash: halted, epoch, reason, actor, scope, since. */
  state: string;
  /** The fencing counter: every engage and release increments it. */
  epoch: string;
  /** Pub/sub channel: every change of state, as JSON. */
  channel: string;
  /** Set of registered worker ids. */
  workers: string;
  /** Prefix of each worker's heartbeat key (expires when the worker stops beating). */
  worker: (id: string) => string;
}

/** The default key prefix. */
export const DEFAULT_PREFIX = 'drkit:halt:';

/** The keys under `prefix`. */
export function haltKeys(prefix = DEFAULT_PREFIX): HaltKeys {
  return {
    state: `${prefix}state`,
    epoch: `${prefix}epoch`,
    channel: `${prefix}events`,
    workers: `${prefix}workers`,
    worker: (id) => `${prefix}worker:${id}`,
  };
}

/** The halt state as every part of the system sees it. */
export interface HaltState {
  halted: boolean;
  /** The fencing epoch: an order prepared under another epoch is refused. 0 before the first halt. */
  epoch: number;
  reason?: string;
  actor?: string;
  /** What is halted, e.g. "all" or "exchange:binance". */
  scope?: string;
  /** When the current state began (ms since the epoch). */
  since?: number;
}

/** What a worker reports in its heartbeat. */
export interface WorkerHeartbeat {
  id: string;
  /** The epoch the worker has seen and acts on. */
  epoch: number;
  /** Whether the worker considers trading halted. */
  halted: boolean;
  /** Orders the worker has started and not finished. */
  inFlight: number;
  /** When the heartbeat was written (ms since the epoch, the worker's clock). */
  at: number;
  pid?: number;
  host?: string;
}

/** Parses the state hash; a missing hash is "not halted, epoch 0". */
export function parseState(hash: Record<string, string>, epoch: string | null): HaltState {
  const state: HaltState = { halted: hash.halted === '1', epoch: Number(hash.epoch ?? epoch ?? 0) };
  if (hash.reason) state.reason = hash.reason;
  if (hash.actor) state.actor = hash.actor;
  if (hash.scope) state.scope = hash.scope;
  if (hash.since) state.since = Number(hash.since);
  return state;
}
