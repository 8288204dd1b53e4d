/**
 * The export-store port: what an audit export reads from the Landscape (a run, its
 * trail as records, the columns of every record type) and the little it writes back
 * once the run is over (the export's artifacts and the run's export columns).
 *
 * The export programs (pipeline/orchestrator/export.ts) depend on this port only; the
 * Landscape implements it (`SqlExportStoreLive`, part of `SqliteLandscape`). The
 * vocabulary of an export — its record types, its records and its error — lives here
 * so both sides can share it.
 */
import { Context, Data } from "effect"
import type { Effect, Stream } from "effect"
import type { NodeId, RunId } from "../core/ids.js"
import type { RecorderError } from "./recorder.js"
import type { RunStatus } from "./records.js"

export class ExportError extends Data.TaggedError("ExportError")<{
  readonly reason: "Database" | "CorruptTrail" | "Incomplete" | "Write" | "Sink" | "Settings"
  readonly message: string
  readonly cause?: unknown
}> {}

const RECORD_TYPE_LIST = [
  "run",
  "node",
  "edge",
  "row",
  "token",
  "token_parent",
  "node_state",
  "routing_event",
  "token_outcome",
  "batch",
  "batch_member",
  "batch_output",
  "artifact",
  "validation_error",
  "transform_error",
  "operation",
  "call"
] as const

/** The kind of an exported record: one per table of the trail. */
export type RecordType = (typeof RECORD_TYPE_LIST)[number]

/** Record types of a pipeline run's export, in export order. */
export const RECORD_TYPES: ReadonlyArray<RecordType> = RECORD_TYPE_LIST

const LOOP_RECORD_TYPE_LIST = ["loop_run", "loop_issue", "stage_result", "command_result"] as const

/**
 * The record types every loop run's export has, in export order. A loop export also
 * holds a record type per further table of loop data (see landscape/loop-export.ts).
 */
export type LoopRecordType = (typeof LOOP_RECORD_TYPE_LIST)[number]
export const LOOP_RECORD_TYPES: ReadonlyArray<LoopRecordType> = LOOP_RECORD_TYPE_LIST

/** Which table a run lives in: `runs` (a pipeline) or `loop_runs` (an issue loop). */
export type RunKind = "pipeline" | "loop"

/** One exported record: `{record_type, seq, ...columns}` (plus `signature` when signed). */
export type ExportRecord = { readonly record_type: string; readonly seq: number } & { readonly [column: string]: unknown }

/** A run as an export needs it. */
export interface ExportRun {
  readonly runId: RunId
  readonly kind: RunKind
  readonly status: RunStatus
}

/** What an export reads beyond the trail's rows. */
export interface ExportRecordsOptions {
  /** Loop runs: inline each command's whole log file (`log_file_text`); by default only its SHA-256 and size. */
  readonly includeLogs?: boolean
  /**
   * Pipeline runs: inline each call's request and reply body (`request_payload`,
   * `response_payload`, the text whose SHA-256 is the call's hash) from the payload store
   * in `payloadDir` (default: the run's `payload_store.base_path`); a body no longer
   * there is `null` with `payload_note` saying so.
   */
  readonly includePayloads?: boolean
  readonly payloadDir?: string
}

/** An export output registered as an artifact of its run. */
export interface ExportArtifact {
  readonly runId: RunId
  readonly sinkNodeId: NodeId
  readonly sinkName: string
  readonly artifactType: string
  readonly pathOrUri: string
  readonly contentHash: string
  readonly sizeBytes: number
}

/** A change to a run's export columns; a column left out (or null) keeps its value, except `export_error`. */
export interface ExportStatusUpdate {
  readonly export_status: "pending" | "completed" | "failed"
  readonly export_error?: string | null
  readonly export_format?: string | null
  readonly export_sink?: string | null
  readonly exported_at?: string | null
}

export interface ExportStoreService {
  /**
   * `latest` → the most recently started run, pipeline or loop; otherwise the run with
   * that id in `runs` or `loop_runs` (a `MissingRun` RecorderError when there is none).
   * Audit writes still buffered reach the database first, so the export sees them.
   */
  readonly findRun: (idOrLatest: string) => Effect.Effect<ExportRun, RecorderError>
  /** The run's trail in export order (a pipeline's or a loop's), each record numbered by `seq`. */
  readonly records: (runId: RunId, options?: ExportRecordsOptions) => Stream.Stream<ExportRecord, ExportError>
  /**
   * The record types of a run of this kind, in export order, each with its columns in
   * table order (the headers of empty CSV files).
   */
  readonly columns: (kind: RunKind) => Effect.Effect<ReadonlyMap<string, ReadonlyArray<string>>, ExportError>
  /** Registers an export output as an artifact of its (finished) pipeline run. */
  readonly recordArtifact: (artifact: ExportArtifact) => Effect.Effect<void, ExportError>
  /** Records where the run's export stands (pipeline and loop runs alike). */
  readonly setExportStatus: (runId: RunId, update: ExportStatusUpdate) => Effect.Effect<void, RecorderError>
}

export class ExportStore extends Context.Tag("runledger/ExportStore")<ExportStore, ExportStoreService>() {}
