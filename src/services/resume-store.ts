/**
 * The resume port: what `runledger resume` reads from and writes to the Landscape to
 * continue a run that did not finish — the run as it was recorded, its last
 * checkpoint, its attempts — and the few writes that open a new attempt and close
 * what the crashed one left open. `landscape/` implements it.
 */
import { Context } from "effect"
import type { Effect } from "effect"
import type { RunId } from "../core/ids.js"
import type { RecorderError } from "./recorder.js"
import type { RunStatus } from "./records.js"

export interface RunAttemptView {
  readonly attempt: number
  readonly kind: "started" | "resumed"
  readonly status: RunStatus
  readonly reason: string | null
  readonly started_at: string
  readonly ended_at: string | null
  readonly owner_pid: number | null
  readonly owner_host: string | null
  /** The checkpoint sequence number a resumed attempt started from. */
  readonly from_checkpoint: number | null
}

export interface CheckpointView {
  readonly sequence_number: number
  readonly attempt: number | null
  readonly created_at: string
  readonly topology_hash: string
  /** The engine's state at the checkpoint (typed state JSON; null for checkpoints of older versions). */
  readonly state_json: string | null
}

export interface ResumeCandidate {
  readonly run_id: RunId
  readonly status: RunStatus
  readonly status_reason: string | null
  readonly error_message: string | null
  readonly started_at: string
  readonly settings_json: string
  readonly source_schema_json: string | null
  /** The live process that owns the run, when there is one (then it must not be resumed). */
  readonly live_owner: { readonly pid: number; readonly host: string } | null
  readonly nodes: ReadonlyArray<{ readonly node_id: string; readonly name: string; readonly node_type: string; readonly config_hash: string }>
  readonly edges: ReadonlyArray<{ readonly edge_id: string; readonly from_node_id: string; readonly label: string }>
  readonly checkpoint: CheckpointView | null
  readonly attempts: ReadonlyArray<RunAttemptView>
  /** Rows of the run recorded in the trail (all of them covered by the checkpoint). */
  readonly rows_recorded: number
}

export interface ResumeStoreService {
  readonly candidate: (runId: RunId) => Effect.Effect<ResumeCandidate, RecorderError>
  /**
   * Opens attempt n+1 of the run, owned by this process, starting from checkpoint
   * `fromCheckpoint`: the run is `running` again. Fails when another live process owns
   * the run (checked inside the same transaction).
   */
  readonly beginAttempt: (runId: RunId, fromCheckpoint: number) => Effect.Effect<number, RecorderError>
  /**
   * Records a terminal FAILED outcome (context: `reason`, the crashed attempt) for every
   * token of the run that has none and is not in `keep` (tokens restored from the
   * checkpoint). Returns how many were closed.
   */
  readonly closeAbandonedTokens: (
    runId: RunId,
    keep: ReadonlySet<string>,
    context: Readonly<Record<string, unknown>>
  ) => Effect.Effect<number, RecorderError>
  /** Batches left `executing` by a crashed attempt become `failed`; returns their ids. */
  readonly failExecutingBatches: (runId: RunId, reason: string) => Effect.Effect<ReadonlyArray<string>, RecorderError>
  readonly attempts: (runId: RunId) => Effect.Effect<ReadonlyArray<RunAttemptView>, RecorderError>
}

export class ResumeStore extends Context.Tag("runledger/ResumeStore")<ResumeStore, ResumeStoreService>() {}
