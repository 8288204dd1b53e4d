/**
 * The pipeline's sinks during a run: each is opened as a scoped resource, linked to
 * where its `on_write_failure` sends the rows it cannot write, and its queued rows are
 * committed at durability points (see sink-commit.ts) — written and flushed first, and
 * only then are the held node states and outcomes appended to the trail.
 */
import { Effect, type Scope } from "effect"
import type { SinkStep } from "../build.js"
import type { SinkQueue } from "./processor.js"
import { commitSink, type Diversion, type OpenedSink, type SinkContext } from "./sink-commit.js"
import { PipelineRunError } from "./types.js"

export { commitSink, commitSinks, type Diversion, type OpenedSink, type SinkContext } from "./sink-commit.js"

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
