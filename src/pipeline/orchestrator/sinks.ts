/**
 * The pipeline's sinks during a run: each is opened as a scoped resource, and its
 * queued rows are committed at durability points — written and flushed first, and
 * only then are the held node states and outcomes appended to the trail.
 *
 * A sink with `on_write_failure` writes in divert mode: the rows it cannot write (see
 * `SinkWriteOptions`) come back from its write, and in the same commit they are
 * written to its failsink — with `__diversion_reason`, `__diverted_from` and
 * `__diversion_timestamp` added — and flushed there, or discarded. Each such row ends
 * DIVERTED: a failed node state at the sink, and with a failsink a routing event along
 * the sink's `on_write_failure` edge and a completed node state at the failsink.
 * Everything is durable before the records reach the trail, so a checkpoint taken
 * after the commit covers the failsink's rows like any sink's.
 */
import { type Clock, Effect, type Exit, type Scope } from "effect"
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { type EdgeId, newStateId, type RunId } from "../../core/ids.js"
import type { RecorderError, RecorderService } from "../../services/recorder.js"
import type { AuditRecord, NodeStateRecord } from "../../services/records.js"
import type { SinkStep } from "../build.js"
import { PluginRunError, type Row, type SinkCommitted, type SinkInstance, setField } from "../plugins/protocol.js"
import { crashPoint } from "../crash-points.js"
import type { SinkQueue } from "./processor.js"
import { Tally } from "./tally.js"
import type { TrailBuffer } from "./trail-buffer.js"
import { AggregationFlushResult, PipelineRunError } from "./types.js"

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

/** The row as the failsink receives it: the row, then why and from where it was diverted, and when. */
const enrich = (row: Row, reason: string, from: string, at: string): Row => {
  const out: Record<string, unknown> = { ...row }
  setField(out, "__diversion_reason", reason)
  setField(out, "__diverted_from", from)
  setField(out, "__diversion_timestamp", at)
  return out
}

/**
 * The rows a write left out, by batch index (the first reason of an index counts;
 * indexes outside the batch are ignored).
 */
const leftOut = (result: unknown, size: number): ReadonlyMap<number, string> => {
  const out = new Map<number, string>()
  const diverted = (result as { diverted?: unknown } | undefined)?.diverted
  if (!Array.isArray(diverted)) return out
  for (const d of diverted as ReadonlyArray<{ index?: unknown; reason?: unknown }>) {
    const i = d.index
    if (typeof i === "number" && Number.isInteger(i) && i >= 0 && i < size && !out.has(i)) out.set(i, String(d.reason))
  }
  return out
}

/** Writes `rows` and flushes them; the sink must write every row (a failsink does not divert again). */
const writeAll = (opened: OpenedSink, rows: ReadonlyArray<Row>) =>
  Effect.gen(function*() {
    const result = yield* opened.instance.write(rows)
    const refused = leftOut(result, rows.length)
    if (refused.size > 0) {
      const [index, reason] = refused.entries().next().value!
      return yield* Effect.fail(
        new PluginRunError({
          plugin: opened.instance.plugin,
          message: `sink '${opened.step.name}' (${opened.instance.plugin}) left out ${refused.size} row(s) it was asked to write in full, the first (input row ${index}) because: ${reason}`
        })
      )
    }
    crashPoint("sink_write")
    yield* opened.instance.flush
  })

/**
 * Writes a sink's queued rows, makes them durable, then records their states and
 * outcomes. A failed write turns its rows' outcomes into FAILED; rows the sink could
 * not write go to its `on_write_failure` (see the header).
 */
export const commitSink = (ctx: SinkContext, opened: OpenedSink): Effect.Effect<AggregationFlushResult, RecorderError | PluginRunError> =>
  // Uninterruptible: rows taken from the queue are written and their outcomes recorded, or failed — never lost.
  Effect.uninterruptible(Effect.gen(function*() {
    const { diversion, instance, queue } = opened
    if (queue.held.length === 0) return AggregationFlushResult.empty
    const rows = queue.rows
    const held = queue.held
    queue.rows = []
    queue.held = []
    const written = yield* Effect.either(
      Effect.zipLeft(
        instance.write(rows, diversion === undefined ? undefined : { divert: true }),
        Effect.suspend(() => {
          crashPoint("sink_write")
          return instance.flush
        })
      )
    )
    const diverted = written._tag === "Right" ? leftOut(written.right, rows.length) : new Map<number, string>()
    let failure: PluginRunError | undefined = written._tag === "Left" ? written.left : undefined
    if (failure === undefined && diverted.size > 0 && diversion === undefined) {
      // A sink that leaves rows out unasked: those rows are not written anywhere.
      const [index, reason] = diverted.entries().next().value!
      failure = new PluginRunError({
        plugin: instance.plugin,
        message: `sink '${queue.name}' (${instance.plugin}) could not write ${diverted.size} row(s) and has no on_write_failure; the first (input row ${index}): ${reason}`
      })
    }

    // Failsink mode: the diverted rows, enriched, are written and flushed to the failsink.
    const divertedAt = new Date(ctx.clock.unsafeCurrentTimeMillis()).toISOString()
    const failsink = diversion?._tag === "Failsink" && written._tag === "Right" && diverted.size > 0 ? diversion : undefined
    const enriched = new Map<number, Row>()
    let failsinkFailure: PluginRunError | undefined
    const failsinkStarted = ctx.clock.unsafeCurrentTimeNanos()
    if (failsink !== undefined) {
      for (const [i, reason] of diverted) enriched.set(i, enrich(rows[i]!, reason, queue.name, divertedAt))
      const out = yield* Effect.either(writeAll(failsink.sink, Array.from(enriched.values())))
      if (out._tag === "Left") {
        failsinkFailure = new PluginRunError({
          plugin: out.left.plugin,
          message: `sink '${queue.name}': diverting ${diverted.size} row(s) it could not write to its failsink '${failsink.sink.step.name}' failed: ${out.left.message}`,
          cause: out.left
        })
      }
    }

    const tally = new Tally()
    const records: Array<AuditRecord> = []
    const doneAt = new Date(ctx.clock.unsafeCurrentTimeMillis()).toISOString()
    const nowNanos = ctx.clock.unsafeCurrentTimeNanos()
    const destination = diversion === undefined ? undefined : diversion._tag === "Discard" ? "discard" : diversion.sink.step.name
    held.forEach((h, i) => {
      const state = h.state
      state.duration_ms = Number(nowNanos - h.queuedAt) / 1e6
      state.completed_at = doneAt
      const reason = diverted.get(i)
      if (written._tag === "Left" || (reason !== undefined && (destination === undefined || failsinkFailure !== undefined))) {
        // The write failed, or the row could not be written and could not be diverted either.
        state.status = "failed"
        const why = written._tag === "Left" ? written.left.message : failsinkFailure?.message ?? failure?.message ?? ""
        state.error_json = canonicalJsonUnsafe(reason === undefined ? { message: why } : { message: reason, diversion_failed: why })
        records.push(
          state,
          ctx.trail.outcome(h.outcome.token_id, "FAILED", {
            context_json: canonicalJsonUnsafe({
              sink: queue.name,
              reason: written._tag === "Left" ? "sink_write_failed" : destination === undefined ? "sink_write_refused" : "failsink_write_failed"
            })
          })
        )
        tally.add("FAILED", undefined)
        return
      }
      if (reason === undefined) {
        state.status = "completed"
        state.output_hash = state.input_hash
        records.push(state, h.outcome)
        tally.add(h.outcome.outcome, h.outcome.sink_name ?? undefined)
        return
      }
      // Diverted: the row did not reach this sink.
      state.status = "failed"
      state.error_json = canonicalJsonUnsafe({ message: reason, diverted_to: destination! })
      records.push(state)
      let sinkName: string | null = null
      if (failsink !== undefined) {
        const row = enriched.get(i)!
        sinkName = failsink.sink.step.name
        records.push({
          _tag: "RoutingEvent",
          event_id: `evt_${state.state_id.slice(3)}`,
          state_id: state.state_id,
          edge_id: failsink.edgeId,
          routing_group_id: `grp_${state.state_id.slice(3)}`,
          ordinal: 0,
          mode: "divert",
          reason_json: canonicalJsonUnsafe({ on_write_failure: sinkName, error: reason }),
          created_at: divertedAt
        })
        const hash = ctx.trail.hashRow(row)
        const at: NodeStateRecord = {
          _tag: "NodeState",
          state_id: newStateId(),
          token_id: state.token_id,
          run_id: state.run_id,
          node_id: failsink.sink.step.nodeId,
          step_index: state.step_index,
          attempt: 1,
          status: "completed",
          input_hash: hash,
          output_hash: hash,
          duration_ms: Number(nowNanos - failsinkStarted) / 1e6,
          error_json: null,
          started_at: divertedAt,
          completed_at: doneAt
        }
        records.push(at)
      }
      records.push(
        ctx.trail.outcome(h.outcome.token_id, "DIVERTED", {
          sink_name: sinkName,
          error_hash: sha256Hex(reason),
          context_json: canonicalJsonUnsafe({ reason: "write_failure", sink: queue.name, destination: destination!, error: reason })
        })
      )
      tally.add("DIVERTED", sinkName ?? undefined)
    })
    yield* ctx.append(records)
    const result = tally.toResult()
    ctx.count(result)
    const stop = failure ?? failsinkFailure
    if (stop !== undefined) return yield* Effect.fail(stop)
    return result
  }))

/**
 * Opens `step` (create, then on_start) for the rows of `queue`. Release: the last
 * commit, on_complete, close and the artifact record — exactly once, on success,
 * failure and interruption; what goes wrong there is told to `ctx.problem`.
 */
export const openSink = (ctx: SinkContext, step: SinkStep, queue: SinkQueue, diversion?: Diversion) =>
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
      return { step, instance, queue, diversion } satisfies OpenedSink
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
      opened.set(step.name, yield* openSink(ctx, step, queueOf(step.name), diversion))
    }
    return ordered.map((s) => opened.get(s.name)!)
  })
