/**
 * The pipeline's sinks during a run: each is opened as a scoped resource, and its
 * queued rows are committed at durability points — written and flushed first, and
 * only then are the held node states and outcomes appended to the trail.
 */
import { type Clock, Effect, type Exit } from "effect"
import { canonicalJsonUnsafe } from "../../core/canonical.js"
import type { RunId } from "../../core/ids.js"
import type { RecorderError, RecorderService } from "../../services/recorder.js"
import type { AuditRecord } from "../../services/records.js"
import type { SinkStep } from "../build.js"
import type { PluginRunError, SinkCommitted, SinkInstance } from "../plugins/protocol.js"
import { crashPoint } from "../crash-points.js"
import type { SinkQueue } from "./processor.js"
import { Tally } from "./tally.js"
import type { TrailBuffer } from "./trail-buffer.js"
import { AggregationFlushResult, PipelineRunError } from "./types.js"

export interface OpenedSink {
  readonly step: SinkStep
  readonly instance: SinkInstance
  readonly queue: SinkQueue
}

/** What committing and closing sinks needs from the run. */
export interface SinkContext {
  readonly runId: RunId
  readonly recorder: RecorderService
  /** Where a commit's records go: the recorder, or the records of the next checkpoint. */
  readonly append: (records: ReadonlyArray<AuditRecord>) => Effect.Effect<void, RecorderError>
  /**
   * Whether the rows still queued when the sinks close are written and recorded. With
   * checkpoints, an interrupted run leaves them for the resume instead: they were not
   * covered by a checkpoint, so writing them would put rows in the file that the
   * checkpoint does not know.
   */
  readonly commitOnClose: (exit: Exit.Exit<unknown, unknown>) => boolean
  /** The committed state to cut a sink back to before any row is written (resume). */
  readonly resumeState?: (sinkName: string) => SinkCommitted | undefined
  readonly clock: Clock.Clock
  /** Builds the FAILED outcomes of rows whose write failed. */
  readonly trail: TrailBuffer
  /** Adds a commit's counts to the run's total — also when the write failed. */
  readonly count: (result: AggregationFlushResult) => void
  /** A sink failed while closing: the run ends failed with this message. */
  readonly problem: (message: string) => void
}

const message = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)

/**
 * Writes a sink's queued rows, makes them durable, then records their states and
 * outcomes. A failed write turns its rows' outcomes into FAILED.
 */
export const commitSink = (ctx: SinkContext, opened: OpenedSink): Effect.Effect<AggregationFlushResult, RecorderError | PluginRunError> =>
  // Uninterruptible: rows taken from the queue are written and their outcomes recorded, or failed — never lost.
  Effect.uninterruptible(Effect.gen(function*() {
    const { instance, queue } = opened
    if (queue.held.length === 0) return AggregationFlushResult.empty
    const rows = queue.rows
    const held = queue.held
    queue.rows = []
    queue.held = []
    const written = yield* Effect.either(
      Effect.zipRight(
        instance.write(rows),
        Effect.suspend(() => {
          crashPoint("sink_write")
          return instance.flush
        })
      )
    )
    const tally = new Tally()
    const records: Array<AuditRecord> = []
    const doneAt = new Date(ctx.clock.unsafeCurrentTimeMillis()).toISOString()
    const nowNanos = ctx.clock.unsafeCurrentTimeNanos()
    for (const h of held) {
      const state = h.state
      state.duration_ms = Number(nowNanos - h.queuedAt) / 1e6
      state.completed_at = doneAt
      if (written._tag === "Right") {
        state.status = "completed"
        state.output_hash = state.input_hash
        records.push(state, h.outcome)
        tally.add(h.outcome.outcome, h.outcome.sink_name ?? undefined)
      } else {
        state.status = "failed"
        state.error_json = canonicalJsonUnsafe({ message: written.left.message })
        records.push(
          state,
          ctx.trail.outcome(h.outcome.token_id, "FAILED", { context_json: canonicalJsonUnsafe({ sink: queue.name, reason: "sink_write_failed" }) })
        )
        tally.add("FAILED", undefined)
      }
    }
    yield* ctx.append(records)
    const result = tally.toResult()
    ctx.count(result)
    if (written._tag === "Left") return yield* Effect.fail(written.left)
    return result
  }))

/**
 * Opens `step` (create, then on_start) for the rows of `queue`. Release: the last
 * commit, on_complete, close and the artifact record — exactly once, on success,
 * failure and interruption; what goes wrong there is told to `ctx.problem`.
 */
export const openSink = (ctx: SinkContext, step: SinkStep, queue: SinkQueue) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const instance = yield* step.create().pipe(
        Effect.mapError((e) => new PipelineRunError({ runId: ctx.runId, message: `sink '${step.name}': ${e.message}` }))
      )
      yield* instance.onStart.pipe(Effect.mapError((e) => new PipelineRunError({ runId: ctx.runId, message: e.message, cause: e })))
      const cutTo = ctx.resumeState?.(step.name)
      if (cutTo !== undefined) {
        if (instance.truncateTo === undefined) {
          return yield* Effect.fail(
            new PipelineRunError({ runId: ctx.runId, message: `sink '${step.name}' (${instance.plugin}) cannot be cut back to its committed state, so the run cannot be resumed` })
          )
        }
        yield* instance.truncateTo(cutTo).pipe(
          Effect.mapError((e) => new PipelineRunError({ runId: ctx.runId, message: `resuming: ${e.message}`, cause: e }))
        )
      }
      return { step, instance, queue } satisfies OpenedSink
    }),
    (opened, exit) =>
      Effect.gen(function*() {
        const problem = (what: string) => (e: unknown) =>
          Effect.sync(() => {
            ctx.problem(`sink '${opened.step.name}' ${what}: ${message(e)}`)
          })
        if (ctx.commitOnClose(exit)) yield* commitSink(ctx, opened).pipe(Effect.catchAll(problem("write")))
        else {
          opened.queue.rows = []
          opened.queue.held = []
        }
        yield* opened.instance.onComplete.pipe(Effect.catchAll(problem("on_complete")))
        yield* opened.instance.close
        const artifact = yield* opened.instance.artifact.pipe(
          Effect.catchAll((e) => Effect.as(problem("artifact")(e), undefined))
        )
        if (artifact !== undefined) {
          yield* ctx.recorder.recordArtifact({
            runId: ctx.runId,
            sinkNodeId: opened.step.nodeId,
            sinkName: opened.step.name,
            artifactType: opened.step.plugin.name === "database" ? "table" : "file",
            pathOrUri: artifact.pathOrUri,
            contentHash: artifact.contentHash,
            sizeBytes: artifact.sizeBytes
          }).pipe(Effect.catchAll(problem("artifact record")))
        }
      })
  )
