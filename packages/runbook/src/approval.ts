import { userInfo } from 'node:os';

/** What a step asks before it runs: shown to the person (or policy) deciding. */
export interface ApprovalRequest {
  runId: string;
  runbook: string;
  environment: string;
  /** The environment is marked production in the config. */
  production: boolean;
  step: string;
  title: string;
  /** The gate's question, or for a destructive step "Run this destructive step?". */
  question: string;
  destructive: boolean;
  /** The step's declared effects, with the outputs of earlier steps filled in. */
  effects: string[];
}

/** The answer, recorded in the journal and the report. */
export interface ApprovalDecision {
  approved: boolean;
  /** Who decided, e.g. "alice" or "--yes (ci@runner-3)". */
  by: string;
  /** How: "tty", "--yes", "auto" (the harness), or an integration's name. */
  how: string;
}

/** Decides approval requests; the CLI asks on the terminal, CI passes --yes, tests auto-approve. */
export type Approver = (request: ApprovalRequest, signal: AbortSignal) => Promise<ApprovalDecision>;

/** The name of whoever runs this process, for the journal. */
export function operatorName(env: NodeJS.ProcessEnv = process.env): string {
  try {
    return env.DRKIT_OPERATOR || userInfo().username;
  } catch {
    return env.USER || env.LOGNAME || 'unknown';
  }
}

/** Approves everything, recording that --yes did. */
export function approveAll(how = '--yes', env: NodeJS.ProcessEnv = process.env): Approver {
  const by = operatorName(env);
  return async () => ({ approved: true, by, how });
}
