import { Context, Data } from "effect"
import type { Effect } from "effect"
import type { NodeId, RunId } from "../core/ids.js"
import type { AuditRecord, Outcome, RunStatus } from "./records.js"

export class RecorderError extends Data.TaggedError("RecorderError")<{
  readonly reason:
    | "MissingRun"
    | "RunNotRunning"
    | "DuplicateTerminalOutcome"
    | "InvalidInput"
    | "ConstraintViolation"
    | "Database"
    | "NotALandscape"
    | "NewerSchema"
  readonly message: string
  readonly cause?: unknown
}> {}

export interface BeginRunInput {
  /** A caller-chosen id (resume uses the original); a fresh one otherwise. */
  readonly runId?: RunId
  /** The resolved settings; stored as canonical JSON, hashed into `config_hash`. */
  readonly settings: unknown
  readonly sourceSchema?: unknown
}

export interface RunView {
  readonly run_id: RunId
  readonly status: RunStatus
  readonly started_at: string
  readonly completed_at: string | null
  readonly config_hash: string
  readonly canonical_version: string
  readonly error_message: string | null
  /** Why the run has its status when the run itself could not say (`process_crash`). */
  readonly status_reason: string | null
  readonly export_status: "pending" | "completed" | "failed" | null
  readonly export_error: string | null
  readonly export_format: string | null
  readonly export_sink: string | null
  readonly exported_at: string | null
  /** The RunResult stored when the run ended (null while running). */
  readonly result: Record<string, unknown> | null
  /** Rows read from the source and terminal outcomes by kind, from the trail itself. */
  readonly counts: {
    readonly rows: number
    readonly outcomes: Readonly<Partial<Record<Outcome, number>>>
  }
}

/**
 * The audit-trail port. The engine builds the records of its nodes, edges, rows, tokens,
 * node states, routing events, outcomes, batches and errors itself and hands them over
 * with `append`; the port adds the run's own row and artifacts (the export status goes
 * through the ExportStore). Writes are buffered and reach the database in chunked inserts inside short
 * transactions: at `flush`, when the buffer is full, and when the run completes. A
 * failed audit write fails the run (the trail is the legal record).
 */
export interface RecorderService {
  /** Current time from effect's Clock as ISO-8601 UTC with milliseconds. */
  readonly now: Effect.Effect<string>
  readonly beginRun: (input: BeginRunInput) => Effect.Effect<RunId, RecorderError>
  /** Flushes, closes open node states as failed (unless completed), stores status and result. */
  readonly completeRun: (
    runId: RunId,
    end: {
      readonly status: Exclude<RunStatus, "running">
      readonly errorMessage?: string
      readonly result?: unknown
      /** Why the run has this status, when it is not plain (`landscape_write_failed`). */
      readonly reason?: string
    }
  ) => Effect.Effect<void, RecorderError>
  /** Appends prepared records (the hot path: one call per row or chunk). The recorder owns them from then on: do not change them. */
  readonly append: (records: ReadonlyArray<AuditRecord>) => Effect.Effect<void, RecorderError>
  /** Writes everything buffered, in one short transaction. A durability point. */
  readonly flush: Effect.Effect<void, RecorderError>

  readonly recordArtifact: (input: {
    readonly runId: RunId
    readonly sinkNodeId: NodeId
    readonly sinkName: string
    readonly artifactType: string
    readonly pathOrUri: string
    readonly contentHash: string
    readonly sizeBytes: number
  }) => Effect.Effect<void, RecorderError>

  readonly listRuns: Effect.Effect<ReadonlyArray<RunView>, RecorderError>
  readonly getRun: (runId: RunId) => Effect.Effect<RunView, RecorderError>
  /** `latest` → the most recently started run; otherwise checks that the id exists. */
  readonly resolveRunId: (idOrLatest: string) => Effect.Effect<RunId, RecorderError>
}

export class Recorder extends Context.Tag("runledger/Recorder")<Recorder, RecorderService>() {}
