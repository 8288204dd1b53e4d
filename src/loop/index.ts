/** The issue loop engine: config, lifecycle, supervisor, stages, coordinator, recording. */
export { installSigintHandler, makeRunAbort, RunAbort, RunAbortLive, type RunAbortService } from "./abort.js"
export {
  formatLoopConfigError,
  GLOBAL_VALIDATION_MIGRATION_ERROR,
  type LoopConfig,
  LoopConfigError,
  loadLoopConfig,
  parseLoopConfig
} from "./config.js"
export { type IssueReport, type LoopRunResult, runLoop } from "./coordinator.js"
export { CommandFixer } from "./fixer.js"
export { type Issue, IssueSourceError } from "./issues.js"
export * as Lifecycle from "./lifecycle.js"
export {
  listLoopRuns,
  listLoopStages,
  LoopRecorder,
  LoopRecorderSql,
  LoopRecordError,
  type LoopRunSummary
} from "./recording.js"
export type { CommandResult, ReviewOutcome, RunEndResult, SessionEndResult } from "./results.js"
export { fireOnMet, runRunEnd } from "./run-end.js"
export { runSessionEnd } from "./session-end.js"
export { killProcessGroup, supervise, SupervisorError, type SuperviseResult, type SuperviseSpec } from "./supervisor.js"
export { WorkspaceError } from "./workspace.js"
