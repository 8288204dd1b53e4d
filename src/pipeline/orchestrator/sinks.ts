/**
 * The pipeline's sinks during a run: each is opened as a scoped resource, linked to
 * where its `on_write_failure` sends the rows it cannot write, and its queued rows are
 * committed at durability points (see sink-commit.ts) — written and flushed first, and
 * only then are the held node states and outcomes appended to the trail.
 */
import { type Clock, Effect, type Exit, type Scope } from "effect"
import type { EdgeId, RunId } from "../../core/ids.js"
import type { RecorderError, RecorderService } from "../../services/recorder.js"
import type { AuditRecord } from "../../services/records.js"
import type { SinkStep } from "../build.js"
import type { SinkCommitted, SinkInstance } from "../plugins/protocol.js"
import type { SinkQueue } from "./processor.js"
import { commitSink } from "./sink-commit.js"
import type { TrailBuffer } from "./trail-buffer.js"
import { type AggregationFlushResult, PipelineRunError } from "./types.js"

export { commitSink, commitSinks } from "./sink-commit.js"

/** Where an open sink sends the rows it cannot write. */
export type Diversion =
  | { readonly _tag: "Discard" }
  | { readonly _tag: "Failsink"; readonly sink: OpenedSink; readonly edgeId: EdgeId }

export interface OpenedSink {
  readonly step: SinkStep
  readonly instance: SinkInstance
  readonly queue: SinkQueue
  /** From `on_write_failure`; undefined without it (a row the sink cannot write fails the run). */
  readonly diversion: Diversion | undefined
  /** Another sink's `on_write_failure` names this one: it commits after the others. */
  readonly isFailsink: boolean
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
  /** The run's edges as registered: `from|label` → edge id (the `on_write_failure` edges among them). */
  readonly edgeIds: ReadonlyMap<string, EdgeId>
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
 * Opens `step` (create, then on_start) for the rows of `queue`. Release: the last
 * commit, on_complete, close and the artifact record — exactly once, on success,
 * failure and interruption; what goes wrong there is told to `ctx.problem`.
 */
export const openSink = (ctx: SinkContext, step: SinkStep, queue: SinkQueue, diversion?: Diversion, isFailsink = false) =>
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
      return { step, instance, queue, diversion, isFailsink } satisfies OpenedSink
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

/**
 * Opens `steps` (in settings order, failsinks first) and links each sink to where its
 * `on_write_failure` sends rows. A failsink opens before the sinks that divert into it,
 * so it is released after them: their last commit, when they close, can still write to it.
 * Returns the sinks in the order they were opened, which is the order commits take.
 */
export const openSinks = (
  ctx: SinkContext,
  steps: ReadonlyArray<SinkStep>,
  queueOf: (name: string) => SinkQueue
): Effect.Effect<ReadonlyArray<OpenedSink>, PipelineRunError, Scope.Scope> =>
  Effect.gen(function*() {
    const failsinkOf = (s: SinkStep) => (s.onWriteFailure === undefined || s.onWriteFailure === "discard" ? undefined : s.onWriteFailure)
    const targets = new Set(steps.flatMap((s) => failsinkOf(s) ?? []))
    const ordered = [...steps.filter((s) => targets.has(s.name)), ...steps.filter((s) => !targets.has(s.name))]
    const opened = new Map<string, OpenedSink>()
    for (const step of ordered) {
      let diversion: Diversion | undefined
      if (step.onWriteFailure === "discard") diversion = { _tag: "Discard" }
      const target = failsinkOf(step)
      if (target !== undefined) {
        const sink = opened.get(target)
        const edgeId = ctx.edgeIds.get(`${step.nodeId}|on_write_failure`)
        if (sink === undefined || edgeId === undefined) {
          return yield* Effect.fail(
            new PipelineRunError({
              runId: ctx.runId,
              message: `sink '${step.name}': its failsink '${target}' is not part of the run's graph (no on_write_failure edge was registered)`
            })
          )
        }
        diversion = { _tag: "Failsink", sink, edgeId }
      }
      opened.set(step.name, yield* openSink(ctx, step, queueOf(step.name), diversion, targets.has(step.name)))
    }
    return ordered.map((s) => opened.get(s.name)!)
  })
