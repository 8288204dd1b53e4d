/**
 * The issue loop engine: config, lifecycle, supervisor, stages, coordinator. Its audit
 * trail goes through the LoopRecorder port (services/loop-recorder.ts).
 */
export { makeRunAbort, RunAbort, RunAbortLive, type RunAbortService } from "./abort.js"
export {
  formatLoopConfigError,
  GLOBAL_VALIDATION_MIGRATION_ERROR,
  type LoopConfig,
  LoopConfigError,
  loadLoopConfig,
  parseLoopConfig
} from "./config.js"
export { LoopResumeError, runLoop, type RunLoopOptions } from "./coordinator.js"
export type { IntegrationOutcome } from "./integration.js"
export { CommandFixer } from "./fixer.js"
export { type Issue, IssueSourceError } from "./issues.js"
export * as Lifecycle from "./lifecycle.js"
export { type IssueReport, type LoopRunResult, type RunIntegration } from "./report.js"
export type { CommandResult, ReviewOutcome, RunEndResult, SessionEndResult } from "./results.js"
export { fireOnMet, runRunEnd } from "./run-end.js"
export { runSessionEnd } from "./session-end.js"
export { killProcessGroup, supervise, SupervisorError, type SuperviseResult, type SuperviseSpec } from "./supervisor.js"
export { ProcessWatchdog, ProcessWatchdogLive, type ProcessWatchdogService } from "./watchdog.js"
export { WorkspaceError } from "./workspace.js"
export { listLoopRuns, listLoopStages, LoopRecorder, LoopRecordError } from "../services/loop-recorder.js"
export type { LoopRunSummary } from "../services/loop-records.js"
