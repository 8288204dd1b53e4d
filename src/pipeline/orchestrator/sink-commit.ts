/**
 * Committing sinks at a durability point: each sink writes its queued rows and flushes
 * them, and only then are the held node states and outcomes appended to the trail.
 *
 * A sink with `on_write_failure` writes in divert mode: the rows it cannot write (see
 * `SinkWriteOptions`) come back from its write. With `discard` they end DIVERTED at
 * once. With a failsink they are enriched — `__diversion_reason`, `__diverted_from`,
 * `__diversion_timestamp` — and the failsinks commit after every other sink: each
 * writes its own queued rows and the rows diverted to it in one batch, in the order
 * the rows reached their sinks (so its file does not depend on where durability points
 * fall, and a resumed run writes it in the same order), and flushes. A row diverted
 * there ends DIVERTED with a failed node state at the sink that could not write it, a
 * routing event along that sink's `on_write_failure` edge and a completed node state
 * at the failsink. Everything is durable before its records reach the trail, so the
 * checkpoint taken after the commit covers the failsink's rows like any sink's.
 */
import { type Clock, Effect, type Exit } from "effect"
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { type EdgeId, newStateId, type RunId } from "../../core/ids.js"
import type { RecorderError, RecorderService } from "../../services/recorder.js"
import type { AuditRecord, NodeStateRecord } from "../../services/records.js"
import type { SinkStep } from "../build.js"
import { PluginRunError, type Row, type SinkCommitted, type SinkInstance, setField } from "../plugins/protocol.js"
import { crashPoint } from "../crash-points.js"
import type { HeldOutcome, SinkQueue } from "./processor.js"
import { Tally } from "./tally.js"
import type { TrailBuffer } from "./trail-buffer.js"
import { AggregationFlushResult } from "./types.js"

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

/** A row a sink could not write, on its way to the failsink. */
interface Diverted {
  readonly from: OpenedSink
  readonly held: HeldOutcome
  readonly reason: string
  /** The row as the failsink receives it. */
  readonly row: Row
  readonly edgeId: EdgeId
  /** When the sink left it out (its `__diversion_timestamp`). */
  readonly at: string
}

/** What became of one held row in a commit. */
type Fate =
  | { readonly _tag: "Written" }
  /** Not written anywhere: `message` says why (the state's error), `context` is the FAILED outcome's. */
  | { readonly _tag: "Failed"; readonly message: string; readonly reason?: string; readonly context: string }
  | { readonly _tag: "Discarded"; readonly reason: string }
  | {
    readonly _tag: "Diverted"
    readonly reason: string
    readonly failsink: OpenedSink
    readonly edgeId: EdgeId
    readonly row: Row
    readonly at: string
  }

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

const failedContext = (sink: string, reason: string, extra: Record<string, string> = {}) => canonicalJsonUnsafe({ sink, reason, ...extra })

/** Writes `rows` to `opened` (in divert mode when it has `on_write_failure`) and flushes them. */
const writeAndFlush = (opened: OpenedSink, rows: ReadonlyArray<Row>) =>
  Effect.either(
    Effect.zipLeft(
      opened.instance.write(rows, opened.diversion === undefined ? undefined : { divert: true }),
      Effect.suspend(() => {
        crashPoint("sink_write")
        return opened.instance.flush
      })
    ).pipe(
      Effect.withSpan("runledger.sink.write", {
        attributes: { "runledger.sink": opened.step.name, "runledger.plugin": opened.instance.plugin, "runledger.rows": rows.length }
      })
    )
  )

/** The audit records of one held row and its fate, counted in `tally`. */
const recordFate = (
  ctx: SinkContext,
  sink: string,
  h: HeldOutcome,
  fate: Fate,
  times: { readonly doneAt: string; readonly nowNanos: bigint; readonly failsinkStarted: bigint },
  records: Array<AuditRecord>,
  tally: Tally
): void => {
  const state = h.state
  state.duration_ms = Number(times.nowNanos - h.queuedAt) / 1e6
  state.completed_at = times.doneAt
  switch (fate._tag) {
    case "Written": {
      state.status = "completed"
      state.output_hash = state.input_hash
      records.push(state, h.outcome)
      tally.add(h.outcome.outcome, h.outcome.sink_name ?? undefined)
      return
    }
    case "Failed": {
      state.status = "failed"
      state.error_json = canonicalJsonUnsafe(fate.reason === undefined ? { message: fate.message } : { message: fate.reason, diversion_failed: fate.message })
      records.push(state, ctx.trail.outcome(h.outcome.token_id, "FAILED", { context_json: fate.context }))
      tally.add("FAILED", undefined)
      return
    }
    case "Discarded":
    case "Diverted": {
      // The row did not reach this sink: its state here fails, with the reason.
      const destination = fate._tag === "Discarded" ? "discard" : fate.failsink.step.name
      state.status = "failed"
      state.error_json = canonicalJsonUnsafe({ message: fate.reason, diverted_to: destination })
      records.push(state)
      if (fate._tag === "Diverted") {
        records.push({
          _tag: "RoutingEvent",
          event_id: `evt_${state.state_id.slice(3)}`,
          state_id: state.state_id,
          edge_id: fate.edgeId,
          routing_group_id: `grp_${state.state_id.slice(3)}`,
          ordinal: 0,
          mode: "divert",
          reason_json: canonicalJsonUnsafe({ on_write_failure: destination, error: fate.reason }),
          created_at: fate.at
        })
        const hash = ctx.trail.hashRow(fate.row)
        const at: NodeStateRecord = {
          _tag: "NodeState",
          state_id: newStateId(),
          token_id: state.token_id,
          run_id: state.run_id,
          node_id: fate.failsink.step.nodeId,
          step_index: state.step_index,
          attempt: 1,
          status: "completed",
          input_hash: hash,
          output_hash: hash,
          duration_ms: Number(times.nowNanos - times.failsinkStarted) / 1e6,
          error_json: null,
          started_at: fate.at,
          completed_at: times.doneAt
        }
        records.push(at)
      }
      const sinkName = fate._tag === "Diverted" ? destination : null
      records.push(
        ctx.trail.outcome(h.outcome.token_id, "DIVERTED", {
          sink_name: sinkName,
          error_hash: sha256Hex(fate.reason),
          context_json: canonicalJsonUnsafe({ reason: "write_failure", sink, destination, error: fate.reason })
        })
      )
      tally.add("DIVERTED", sinkName ?? undefined)
    }
  }
}

const nowOf = (ctx: SinkContext) => new Date(ctx.clock.unsafeCurrentTimeMillis()).toISOString()

/**
 * Commits the queue of a sink that is no failsink. Rows for its failsink are added to
 * `pending` (recorded when the failsink commits); everything else is recorded here.
 */
const commitOwn = (ctx: SinkContext, opened: OpenedSink, pending: Map<OpenedSink, Array<Diverted>>) =>
  Effect.gen(function*() {
    const { diversion, instance, queue } = opened
    if (queue.held.length === 0) return { result: AggregationFlushResult.empty, error: undefined }
    const rows = queue.rows
    const held = queue.held
    queue.rows = []
    queue.held = []
    const written = yield* writeAndFlush(opened, rows)
    const refused = written._tag === "Right" ? leftOut(written.right, rows.length) : new Map<number, string>()
    let error: PluginRunError | undefined = written._tag === "Left" ? written.left : undefined
    if (error === undefined && refused.size > 0 && diversion === undefined) {
      // A sink that leaves rows out unasked: those rows are not written anywhere.
      const [index, reason] = refused.entries().next().value!
      error = new PluginRunError({
        plugin: instance.plugin,
        message: `sink '${queue.name}' (${instance.plugin}) could not write ${refused.size} row(s) and has no on_write_failure; the first (input row ${index}): ${reason}`
      })
    }
    const divertedAt = nowOf(ctx)
    const times = { doneAt: divertedAt, nowNanos: ctx.clock.unsafeCurrentTimeNanos(), failsinkStarted: 0n }
    const tally = new Tally()
    const records: Array<AuditRecord> = []
    held.forEach((h, i) => {
      const reason = refused.get(i)
      let fate: Fate
      if (written._tag === "Left") fate = { _tag: "Failed", message: written.left.message, context: failedContext(queue.name, "sink_write_failed") }
      else if (reason === undefined) fate = { _tag: "Written" }
      else if (diversion === undefined) fate = { _tag: "Failed", message: error!.message, reason, context: failedContext(queue.name, "sink_write_refused") }
      else if (diversion._tag === "Discard") fate = { _tag: "Discarded", reason }
      else {
        const list = pending.get(diversion.sink) ?? []
        list.push({ from: opened, held: h, reason, row: enrich(rows[i]!, reason, queue.name, divertedAt), edgeId: diversion.edgeId, at: divertedAt })
        pending.set(diversion.sink, list)
        return
      }
      recordFate(ctx, queue.name, h, fate, times, records, tally)
    })
    yield* ctx.append(records)
    const result = tally.toResult()
    ctx.count(result)
    return { result, error }
  })

/**
 * Commits a failsink: its own queued rows (when `own`) and the rows diverted to it, in
 * the order they reached their sinks, as one write. Its own rows it cannot write go to
 * its own `on_write_failure` (discard); a diverted row it cannot write ends FAILED and
 * fails the run (a failsink does not divert again).
 */
const commitFailsink = (ctx: SinkContext, failsink: OpenedSink, diverted: ReadonlyArray<Diverted>, own: boolean) =>
  Effect.gen(function*() {
    const { queue } = failsink
    type Entry = { readonly row: Row; readonly held: HeldOutcome; readonly from: Diverted | undefined }
    const entries: Array<Entry> = []
    if (own) {
      queue.rows.forEach((row, i) => entries.push({ row, held: queue.held[i]!, from: undefined }))
      queue.rows = []
      queue.held = []
    }
    for (const d of diverted) entries.push({ row: d.row, held: d.held, from: d })
    if (entries.length === 0) return { result: AggregationFlushResult.empty, error: undefined }
    // Stable: rows queued at the same instant keep their order (own rows, then by sink).
    entries.sort((a, b) => (a.held.queuedAt < b.held.queuedAt ? -1 : a.held.queuedAt > b.held.queuedAt ? 1 : 0))
    const failsinkStarted = ctx.clock.unsafeCurrentTimeNanos()
    const written = yield* writeAndFlush(failsink, entries.map((e) => e.row))
    const refused = written._tag === "Right" ? leftOut(written.right, entries.length) : new Map<number, string>()
    const name = queue.name
    let error: PluginRunError | undefined
    if (written._tag === "Left") {
      error = diverted.length === 0 ? written.left : new PluginRunError({
        plugin: written.left.plugin,
        message: `${written.left.message} (while writing ${diverted.length} row(s) diverted to failsink '${name}')`,
        cause: written.left
      })
    } else {
      const first = entries.findIndex((e, i) => refused.has(i) && (e.from !== undefined || failsink.diversion?._tag !== "Discard"))
      if (first >= 0) {
        const count = entries.filter((e, i) => refused.has(i) && (e.from !== undefined || failsink.diversion?._tag !== "Discard")).length
        error = new PluginRunError({
          plugin: failsink.instance.plugin,
          message: `failsink '${name}' (${failsink.instance.plugin}) could not write ${count} row(s) diverted to it, the first because: ${refused.get(first)}`
        })
      }
    }
    const times = { doneAt: nowOf(ctx), nowNanos: ctx.clock.unsafeCurrentTimeNanos(), failsinkStarted }
    const tally = new Tally()
    const records: Array<AuditRecord> = []
    entries.forEach((e, i) => {
      const reason = refused.get(i)
      const sink = e.from?.from.queue.name ?? name
      let fate: Fate
      if (e.from === undefined) {
        // One of the failsink's own rows.
        if (written._tag === "Left") fate = { _tag: "Failed", message: written.left.message, context: failedContext(name, "sink_write_failed") }
        else if (reason === undefined) fate = { _tag: "Written" }
        else if (failsink.diversion?._tag === "Discard") fate = { _tag: "Discarded", reason }
        else fate = { _tag: "Failed", message: error!.message, reason, context: failedContext(name, "sink_write_refused") }
      } else if (written._tag === "Left" || reason !== undefined) {
        fate = { _tag: "Failed", message: error!.message, reason: e.from.reason, context: failedContext(sink, "failsink_write_failed", { failsink: name }) }
      } else {
        fate = { _tag: "Diverted", reason: e.from.reason, failsink, edgeId: e.from.edgeId, row: e.row, at: e.from.at }
      }
      recordFate(ctx, sink, e.held, fate, times, records, tally)
    })
    yield* ctx.append(records)
    const result = tally.toResult()
    ctx.count(result)
    return { result, error }
  })

/**
 * Commits `sinks` (one durability point, or one sink as it closes): every sink that is
 * no failsink first, then the failsinks with the rows diverted to them — also a
 * failsink not in `sinks`, when rows were diverted to it; its own queue then waits for
 * its own commit. A sink whose write fails does not stop the others; the commit fails
 * with the first failure once all are recorded. Uninterruptible: rows taken from a
 * queue are written and their outcomes recorded, or failed — never lost.
 */
export const commitSinks = (
  ctx: SinkContext,
  sinks: ReadonlyArray<OpenedSink>
): Effect.Effect<AggregationFlushResult, RecorderError | PluginRunError> =>
  Effect.uninterruptible(Effect.gen(function*() {
    const pending = new Map<OpenedSink, Array<Diverted>>()
    const results: Array<AggregationFlushResult> = []
    let failure: PluginRunError | undefined
    for (const o of sinks) {
      if (o.isFailsink) continue
      const { error, result } = yield* commitOwn(ctx, o, pending)
      results.push(result)
      failure ??= error
    }
    const failsinks = [...sinks.filter((o) => o.isFailsink), ...Array.from(pending.keys()).filter((f) => !sinks.includes(f))]
    for (const f of failsinks) {
      const { error, result } = yield* commitFailsink(ctx, f, pending.get(f) ?? [], sinks.includes(f))
      results.push(result)
      failure ??= error
    }
    if (failure !== undefined) return yield* Effect.fail(failure)
    return AggregationFlushResult.combineAll(results)
  }))

/** Commits one sink (see `commitSinks`). */
export const commitSink = (ctx: SinkContext, opened: OpenedSink) => commitSinks(ctx, [opened])
