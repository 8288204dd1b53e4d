/**
 * runledger as a library: programs (Effects) and layers. Importing this module has no
 * side effects; provide the layers you want at the edge of your own program.
 */

// Kernel
export { CANONICAL_VERSION, canonicalJson, CanonicalError, sha256Hex, stableHash } from "./core/canonical.js"
export {
  type CompiledExpression,
  evaluateExpression,
  ExpressionEvalError,
  ExpressionParseError,
  parseExpression,
  routeLabel
} from "./core/expression/index.js"
export type { BatchId, NodeId, RowId, RunId, StateId, TokenId } from "./core/ids.js"

// Services and layers
export { Fixer, FixerError, NoFixer } from "./services/fixer.js"
export { Recorder, RecorderError, type RecorderService, type RunView } from "./services/recorder.js"
export {
  type Granularity,
  Telemetry,
  TelemetryConsole,
  type TelemetryEvent,
  TelemetryJsonl,
  TelemetryNoop,
  TelemetryStream,
  TelemetryTee
} from "./services/telemetry.js"
export { LandscapeSql, LandscapeUrlError, resolveSqliteUrl, SqliteLandscape } from "./landscape/sqlite.js"
export { LoopRecorder, LoopRecordError, type LoopRecorderService } from "./services/loop-recorder.js"
export { LoopRecorderSql } from "./landscape/loop-recorder.js"
export type { AuditRecord, Outcome } from "./services/records.js"

// Pipelines
export { type LoadedSettings, loadPipelineSettings, parseSettings, type PipelineSettings, SettingsError } from "./pipeline/settings.js"
export { buildPipeline, type PipelinePlan, type Target } from "./pipeline/build.js"
export { type Migrated, migrateSettings } from "./pipeline/migrate.js"
export { type Connection, isExplicit } from "./pipeline/wiring.js"
export { runPipeline, type RunPipelineOptions } from "./pipeline/orchestrator/run.js"
export {
  AggregationFlushResult,
  PipelineRunError,
  RouteValidationError,
  type RunResult
} from "./pipeline/orchestrator/types.js"
export * from "./pipeline/plugins/protocol.js"
export { builtinPlugins, builtinRegistry, makeRegistry, type PluginRegistry } from "./pipeline/plugins/registry.js"

// Issue loops
export {
  CommandFixer,
  formatLoopConfigError,
  listLoopRuns,
  loadLoopConfig,
  type LoopConfig,
  LoopConfigError,
  LoopResumeError,
  type LoopRunResult,
  makeRunAbort,
  ProcessWatchdogLive,
  RunAbort,
  RunAbortLive,
  runLoop,
  type RunLoopOptions,
  runRunEnd,
  runSessionEnd,
  type SessionEndResult,
  supervise
} from "./loop/index.js"

// Lineage
export {
  AmbiguousLineage,
  explain,
  InvalidLineageQuery,
  type Lineage,
  type LineageCall,
  type LineageError,
  type LineagePayload,
  type LineageQuery,
  LineageRowNotFound,
  LineageRunNotFound,
  type LineageStep,
  type LineageToken,
  LineageTokenNotFound
} from "./landscape/lineage.js"

// Audit export and verification
export {
  checkExportSigningKey,
  exportAfterRun,
  type ExportFormat,
  exportRun,
  type ExportRunOptions,
  type ExportSummary
} from "./pipeline/orchestrator/export.js"
export { ExportVerificationError, type VerificationFailure, type VerificationSummary, verifyExport } from "./landscape/verify.js"
export { ExportError, type ExportRecord, exportRecords, RECORD_TYPES, type RecordType } from "./landscape/exporter.js"

// External calls: their payloads, recorded calls (replay/verify) and purge
export { type BlobStore, CallStore, type CallStoreService, type RecordedCallRow } from "./services/call-store.js"
export { CallStoreSql } from "./landscape/call-store.js"
export { purgePayloads, type PurgeOptions, type PurgeSummary } from "./landscape/purge.js"
export type { VerificationSummary as CallVerificationSummary } from "./pipeline/orchestrator/external-calls.js"
export {
  type Manifest,
  SIGNING_KEY_ENV,
  SIGNING_KEY_FALLBACK_ENV,
  SigningKeyMissing,
  signingKeyFromEnv,
  signRecords
} from "./services/signing.js"
