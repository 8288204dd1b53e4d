/**
 * `resume`: continue a run that did not finish (a crash, a kill -9, Ctrl-C, a full
 * Landscape disk) from its last checkpoint, under the same run id.
 *
 * Before anything changes, the run is checked: it must be interrupted (not completed,
 * not failed), not owned by a live process, have a checkpoint, and the settings, the
 * topology, every node's configuration and the source file must be what the run was
 * started with. Then a new attempt is opened, whatever the crashed attempt left open is
 * closed in the trail, the sinks are cut back to the committed state of the checkpoint,
 * aggregation buffers and coalesce groups are restored, and the source continues after
 * the last row the checkpoint covers.
 */
import { Data, Effect, Stream } from "effect"
import { stat } from "node:fs/promises"
import { resolve } from "node:path"
import type { EdgeId, RunId } from "../core/ids.js"
import { parseStateJson } from "../core/state-json.js"
import { Recorder } from "../services/recorder.js"
import { type ResumeCandidate, ResumeStore } from "../services/resume-store.js"
import type { PipelinePlan } from "./build.js"
import { CHECKPOINT_STATE_VERSION, type CheckpointState } from "./orchestrator/checkpoint-state.js"
import { graphRecords } from "./orchestrator/graph-records.js"
import { type ResumeFrom, runPipeline, type RunPipelineOptions } from "./orchestrator/run.js"
import { fingerprintSource } from "./orchestrator/source-file.js"

/** The run cannot be resumed; the message says why and what to do instead (exit 2). */
export class ResumeRefused extends Data.TaggedError("ResumeRefused")<{
  readonly runId: string
  readonly message: string
}> {}

export interface SinkCut {
  readonly sink: string
  readonly path: string | null
  /** Bytes the file holds now (null: missing or not a file sink). */
  readonly current_bytes: number | null
  /** Bytes it is cut back to. */
  readonly committed_bytes: number
  readonly committed_rows: number
}

/** What a resume will do: `--dry-run` prints it, `resume` then does it. */
export interface ResumePreview {
  readonly run_id: RunId
  readonly status: string
  readonly status_reason: string | null
  readonly checkpoint: { readonly sequence: number; readonly created_at: string; readonly attempt: number | null }
  /** Source rows the checkpoint covers (not read again). */
  readonly rows_done: number
  /** Source rows after them (counted by reading the source; null when not asked for). */
  readonly rows_left: number | null
  readonly sinks: ReadonlyArray<SinkCut>
  readonly open_batches: number
  readonly buffered_tokens: number
  readonly pending_coalesce_tokens: number
  readonly attempts: ResumeCandidate["attempts"]
  readonly next_attempt: number
}

export interface PreparedResume {
  readonly preview: ResumePreview
  readonly candidate: ResumeCandidate
  readonly state: CheckpointState
}

const refuse = (runId: string, message: string) => Effect.fail(new ResumeRefused({ runId, message }))

/** Which recorded node differs from the plan's, in words. */
const nodeDifferences = (candidate: ResumeCandidate, plan: PipelinePlan, runId: RunId): Array<string> => {
  const now = new Map<string, { name: string; hash: string; type: string }>()
  for (const r of graphRecords(plan, runId).records) {
    if (r._tag === "Node") now.set(r.node_id, { name: r.name, hash: r.config_hash, type: r.node_type })
  }
  const out: Array<string> = []
  const recorded = new Map(candidate.nodes.map((n) => [n.node_id, n]))
  for (const n of candidate.nodes) {
    const current = now.get(n.node_id)
    if (current === undefined) {
      const renamed = Array.from(now.values()).find((c) => c.name === n.name && c.type === n.node_type)
      out.push(renamed === undefined ? `${n.node_type} '${n.name}' is gone` : `${n.node_type} '${n.name}' has a different configuration`)
    } else if (current.hash !== n.config_hash) out.push(`${n.node_type} '${n.name}' has a different configuration`)
  }
  for (const [id, c] of now) {
    if (!recorded.has(id) && !candidate.nodes.some((n) => n.name === c.name && n.node_type === c.type)) out.push(`${c.type} '${c.name}' is new`)
  }
  return out
}

const sinkPath = (plan: PipelinePlan, name: string): string | null => {
  const p = plan.settings.sinks[name]?.options?.path
  return typeof p === "string" ? resolve(p) : null
}

const fileSize = (path: string | null) =>
  Effect.promise(async () => {
    if (path === null) return null
    try {
      const s = await stat(path)
      return s.isFile() ? s.size : null
    } catch {
      return null
    }
  })

/** Checks that `idOrLatest` can be resumed with `plan`, and says what a resume will do. Changes nothing. */
export const prepareResume = (plan: PipelinePlan, idOrLatest: string, options: { readonly countRowsLeft?: boolean } = {}) =>
  Effect.gen(function*() {
    const recorder = yield* Recorder
    const store = yield* ResumeStore
    const runId = yield* recorder.resolveRunId(idOrLatest)
    const c = yield* store.candidate(runId)
    if (c.status === "completed") return yield* refuse(runId, `run ${runId} completed; there is nothing to resume`)
    if (c.live_owner !== null) {
      return yield* refuse(runId, `run ${runId} is still running in process ${c.live_owner.pid} on ${c.live_owner.host}; stop it first (Ctrl-C), then resume`)
    }
    if (c.status === "failed") {
      return yield* refuse(
        runId,
        `run ${runId} failed (${c.error_message ?? "no message"}); resume continues runs that were interrupted (a crash, a kill, Ctrl-C), not runs that failed — fix the cause and start a new run`
      )
    }
    if (c.checkpoint === null) {
      return yield* refuse(runId, `run ${runId} has no checkpoint (checkpoint.enabled was false, or it stopped before its first); start a new run instead`)
    }
    if (c.checkpoint.state_json === null) {
      return yield* refuse(runId, `the checkpoint of run ${runId} holds no resumable state (written by an older runledger); start a new run instead`)
    }
    const state = yield* Effect.try({
      try: () => parseStateJson(c.checkpoint!.state_json!) as CheckpointState,
      catch: (e) => new ResumeRefused({ runId, message: `the checkpoint of run ${runId} cannot be read: ${String((e as Error).message ?? e)}` })
    })
    if (state.version !== CHECKPOINT_STATE_VERSION) {
      return yield* refuse(runId, `the checkpoint of run ${runId} has state version ${state.version}; this runledger reads version ${CHECKPOINT_STATE_VERSION}`)
    }
    // The settings must describe the same pipeline, node for node.
    const differences = nodeDifferences(c, plan, runId)
    if (differences.length > 0 || c.checkpoint.topology_hash !== plan.graph.topologyHash) {
      const what = differences.length > 0 ? differences.join("; ") : "the nodes are the same but they are wired differently"
      return yield* refuse(runId, `${plan.file} does not describe the pipeline run ${runId} was started with: ${what}`)
    }
    // The same input, byte for byte.
    const recorded = state.source.file
    if (recorded === null) {
      return yield* refuse(runId, `the source of run ${runId} is not a regular file, so it cannot be checked for changes and the run cannot be resumed`)
    }
    const current = yield* fingerprintSource(plan.settings)
    if (current === null) return yield* refuse(runId, `the source file ${recorded.path} of run ${runId} is gone or is no longer a regular file`)
    if (current.path !== recorded.path) {
      return yield* refuse(runId, `the settings read ${current.path}, but run ${runId} read ${recorded.path}`)
    }
    if (current.size !== recorded.size || current.sha256 !== recorded.sha256) {
      return yield* refuse(
        runId,
        `the source file ${recorded.path} changed since run ${runId} started (${recorded.size} bytes, sha256 ${recorded.sha256.slice(0, 12)}… then; ${current.size} bytes, sha256 ${current.sha256.slice(0, 12)}… now)`
      )
    }
    const sinks: Array<SinkCut> = []
    for (const [name, committed] of Object.entries(state.sinks)) {
      const path = sinkPath(plan, name)
      sinks.push({
        sink: name,
        path,
        current_bytes: yield* fileSize(path),
        committed_bytes: committed.bytes,
        committed_rows: committed.rows
      })
    }
    const rowsLeft = options.countRowsLeft === false ? null : yield* Stream.runCount(
      Stream.drop(plan.source.instance.read, state.source.items)
    ).pipe(Effect.mapError((e) => new ResumeRefused({ runId, message: `the source cannot be read: ${e.message}` })))
    const preview: ResumePreview = {
      run_id: runId,
      status: c.status,
      status_reason: c.status_reason,
      checkpoint: { sequence: c.checkpoint.sequence_number, created_at: c.checkpoint.created_at, attempt: c.checkpoint.attempt },
      rows_done: state.source.items,
      rows_left: rowsLeft,
      sinks,
      open_batches: state.aggregations.length,
      buffered_tokens: state.aggregations.reduce((n, b) => n + b.members.length, 0),
      pending_coalesce_tokens: state.coalesces.reduce((n, g) => n + g.arrived.length, 0),
      attempts: c.attempts,
      next_attempt: c.attempts.reduce((n, a) => Math.max(n, a.attempt), 0) + 1
    }
    return { preview, candidate: c, state } satisfies PreparedResume
  })

/** Tokens the checkpoint restores (they stay open in the trail: the resumed attempt ends them). */
const restoredTokens = (state: CheckpointState): Set<string> => {
  const keep = new Set<string>()
  for (const b of state.aggregations) for (const t of b.members) keep.add(t.tokenId)
  for (const g of state.coalesces) for (const a of g.arrived) keep.add(a.token.tokenId)
  return keep
}

/**
 * Resumes a prepared run: opens the next attempt, closes what the crashed attempt left
 * open, and runs the pipeline from the checkpoint. Same result and errors as `runPipeline`.
 */
export const resumeRun = (plan: PipelinePlan, prepared: PreparedResume, options: Omit<RunPipelineOptions, "resume"> = {}) =>
  Effect.gen(function*() {
    const store = yield* ResumeStore
    const { candidate, state } = prepared
    const runId = candidate.run_id
    const checkpoint = candidate.checkpoint!
    const attempt: number = yield* store.beginAttempt(runId, checkpoint.sequence_number).pipe(
      Effect.catchIf(
        (e) => e.reason === "RunNotRunning",
        (e) => Effect.fail(new ResumeRefused({ runId, message: e.message }))
      )
    )
    const why = { reason: "abandoned_by_crash", detail: `not covered by checkpoint ${checkpoint.sequence_number}; redone by attempt ${attempt}` }
    yield* store.failExecutingBatches(runId, why.reason)
    yield* store.closeAbandonedTokens(runId, restoredTokens(state), why)
    const edgeIds = new Map<string, EdgeId>()
    for (const e of candidate.edges) edgeIds.set(`${e.from_node_id}|${e.label}`, e.edge_id as EdgeId)
    const resume: ResumeFrom = { runId, attempt, nextSequence: checkpoint.sequence_number + 1, state, edgeIds }
    return yield* runPipeline(plan, { ...options, resume })
  })
