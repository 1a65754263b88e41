export { type ApprovalDecision, type ApprovalRequest, type Approver, approveAll, operatorName } from './approval.js';
export { isMain, parseRunbookArgs, type RunbookIo, renderHelp, runbookCli, runbookMain, terminalApprover } from './cli.js';
export { type Clock, realClock, type TimerHandle, type VirtualClock, virtualClock } from './clock.js';
export * from './config/index.js';
export {
  type BaseContext,
  type ChildRun,
  type ChildRunOptions,
  type Duration,
  defineRunbook,
  type Effects,
  EXIT_CODES,
  type PlanContext,
  type Progress,
  type RetryPolicy,
  type Runbook,
  type RunbookDefinition,
  type RunMode,
  type RunStatus,
  type RunSummary,
  type SecretDeclaration,
  type StepContext,
  type StepDefinition,
  type StepFactory,
  type StepHandle,
  step,
} from './definition.js';
export { codeOf, isRunbookError, messageOf, RUNBOOK_ERROR_CODES, RunbookError, type RunbookErrorCode } from './errors.js';
export type { PlannedPhase, PlannedStep, RunEvent, RunEventListener } from './events.js';
export {
  type CrashPoint,
  type RecordingNotifier,
  recordingNotifier,
  type TestRun,
  type TestRunOptions,
  testRunbook,
} from './harness.js';
export * from './health/index.js';
export { type JournalRecord, type JournalState, journalPath, journalState, latestRun, readJournal } from './journal.js';
export { createLogger, type LogEntry, type Logger, type LogLevel, silentLogger } from './log.js';
export { notifiersFromConfig } from './notifications.js';
export * from './notify/index.js';
export { REDACTED, Redactor } from './redact.js';
export { createEventRenderer, renderPlan } from './render.js';
export { buildReport, formatElapsed, type RunReport, renderMarkdown } from './report.js';
export { type RunOptions, type RunResult, run, type StepRecord } from './run.js';
export * from './services/index.js';
export { type CommandResult, createShell, type ExecOptions, formatCommand, type Shell } from './shell.js';
