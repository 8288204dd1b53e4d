/**
 * Running a pipeline: register the graph, open the sinks as scoped resources, stream
 * the source through the processor, make sink writes durable in batches, and finalize
 * the run — completed, failed or interrupted — with a complete trail in every case.
 */
import { type Chunk, Deferred, Effect, Exit, Queue, Stream } from "effect"
import { CanonicalError, canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { type EdgeId, newEdgeId, type RunId } from "../../core/ids.js"
import type { AuditRecord } from "../../services/records.js"
import { Recorder, type RecorderError } from "../../services/recorder.js"
import { Telemetry } from "../../services/telemetry.js"
import type { PipelinePlan, SinkStep } from "../build.js"
import type { PluginRunError, SinkInstance, SourceItem } from "../plugins/protocol.js"
import { Processor, ProcessingCrash, type SinkQueue, type StepResult, Tally } from "./processor.js"
import { AggregationFlushResult, PipelineRunError, type PipelineRunStatus, type RunResult, toRunResult } from "./types.js"

export interface RunPipelineOptions {
  /** Rows waiting for sinks that trigger a durability point (write, fsync, record). */
  readonly durabilityRows?: number
  /** Clock time between durability points while rows keep coming. */
  readonly durabilityIntervalMs?: number
  /** Clock time between progress events. */
  readonly progressIntervalMs?: number
  /** Runs after the run is finalized; its status is recorded as export_status (see export.ts). */
  readonly afterRun?: (runId: RunId, status: PipelineRunStatus) => Effect.Effect<RunResult["export_status"], never, Recorder | Telemetry>
}

interface OpenedSink {
  readonly step: SinkStep
  readonly instance: SinkInstance
  readonly queue: SinkQueue
}

const message = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)

/**
 * Runs `plan`. Succeeds with the RunResult of a completed run; fails with a
 * PipelineRunError (carrying the recorded result) when the run failed. When
 * interrupted, the run is recorded `interrupted` and the effect is interrupted.
 */
export const runPipeline = (plan: PipelinePlan, options: RunPipelineOptions = {}) =>
  Effect.gen(function*() {
    const recorder = yield* Recorder
    const telemetry = yield* Telemetry
    const clock = yield* Effect.clock
    const durabilityRows = options.durabilityRows ?? plan.settings.checkpoint?.every_n_rows ?? 2_000
    const durabilityMs = options.durabilityIntervalMs ?? 1_000
    const progressMs = options.progressIntervalMs ?? 1_000

    const runId = yield* recorder.beginRun({ settings: plan.settings, sourceSchema: plan.source.instance.schema })
    const startedMs = clock.unsafeCurrentTimeMillis()
    yield* telemetry.emit({ _tag: "RunStarted", runId, kind: "pipeline", at: new Date(startedMs).toISOString() })

    // The graph, registered before any row.
    const edgeIds = new Map<string, EdgeId>()
    const graphRecords: Array<AuditRecord> = []
    for (const n of plan.graph.nodes) {
      const configJson = canonicalJsonUnsafe(n.config)
      graphRecords.push({
        _tag: "Node",
        run_id: runId,
        node_id: n.nodeId,
        plugin_name: n.plugin,
        node_type: n.nodeType,
        name: n.name,
        config_hash: sha256Hex(configJson),
        config_json: configJson,
        sequence: n.sequence
      })
    }
    for (const e of plan.graph.edges) {
      const edgeId = newEdgeId()
      edgeIds.set(`${e.from}|${e.label}`, edgeId)
      graphRecords.push({ _tag: "Edge", edge_id: edgeId, run_id: runId, from_node_id: e.from, to_node_id: e.to, label: e.label, mode: e.mode })
    }
    yield* recorder.append(graphRecords)
    yield* recorder.flush

    // Timeouts of aggregations and coalesces fire on the Clock, idle source or not:
    // one fiber per aggregation/coalesce sleeps until the deadline it was handed.
    type Wake = { readonly deadlineMs: number; readonly fire: () => boolean }
    const timerQueues = new Map<string, Queue.Queue<Wake>>()
    for (const step of plan.chain) if (step.kind === "aggregation") timerQueues.set(step.nodeId, yield* Queue.unbounded<Wake>())
    for (const c of plan.coalesces) timerQueues.set(c.nodeId, yield* Queue.unbounded<Wake>())
    const proc: Processor = new Processor(plan, runId, clock, edgeIds, {
      aggregation: (step, generation, deadlineMs) =>
        timerQueues.get(step.nodeId)!.unsafeOffer({ deadlineMs, fire: () => proc.aggregations.flushIfDue(step, generation) }),
      coalesce: (step, rowId, generation, deadlineMs) =>
        timerQueues.get(step.nodeId)!.unsafeOffer({ deadlineMs, fire: () => proc.coalesces.resolveIfDue(step, rowId, generation) })
    })
    /** Row processing and timer flushes never interleave. */
    const lock = yield* Effect.makeSemaphore(1)
    const fatal = yield* Deferred.make<never, PipelineRunError | RecorderError | PluginRunError>()
    let total = AggregationFlushResult.empty
    const sinkProblems: Array<string> = []
    let crashMessage: string | undefined

    const appendDrained = Effect.suspend(() => {
      const { records, result } = proc.drain()
      total = AggregationFlushResult.combine(total, result)
      return records.length === 0 ? Effect.void : recorder.append(records)
    })

    /**
     * Writes a sink's queued rows, makes them durable, then records their states and
     * outcomes. A failed write turns its rows' outcomes into FAILED.
     */
    const commitSink = (opened: OpenedSink): Effect.Effect<AggregationFlushResult, RecorderError | PluginRunError> =>
      // Uninterruptible: rows taken from the queue are written and their outcomes recorded, or failed — never lost.
      Effect.uninterruptible(Effect.gen(function*() {
        const { queue, instance } = opened
        if (queue.held.length === 0) return AggregationFlushResult.empty
        const rows = queue.rows
        const held = queue.held
        queue.rows = []
        queue.held = []
        const written = yield* Effect.either(Effect.zipRight(instance.write(rows), instance.flush))
        const tally = new Tally()
        const records: Array<AuditRecord> = []
        const doneAt = new Date(clock.unsafeCurrentTimeMillis()).toISOString()
        const nowNanos = clock.unsafeCurrentTimeNanos()
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
            records.push(state, proc.outcome(h.outcome.token_id, "FAILED", { context_json: canonicalJsonUnsafe({ sink: queue.name, reason: "sink_write_failed" }) }))
            tally.add("FAILED", undefined)
          }
        }
        yield* recorder.append(records)
        const result = tally.toResult()
        total = AggregationFlushResult.combine(total, result)
        if (written._tag === "Left") return yield* Effect.fail(written.left)
        return result
      }))

    const openSink = (step: SinkStep) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const instance = yield* step.create().pipe(
            Effect.mapError((e) => new PipelineRunError({ runId, message: `sink '${step.name}': ${e.message}` }))
          )
          yield* instance.onStart.pipe(Effect.mapError((e) => new PipelineRunError({ runId, message: e.message, cause: e })))
          return { step, instance, queue: proc.sinkQueues.get(step.name)! } satisfies OpenedSink
        }),
        // Release: flush → on_complete → close, exactly once, on success, failure and interruption.
        (opened) =>
          Effect.gen(function*() {
            const problem = (what: string) => (e: unknown) =>
              Effect.sync(() => {
                sinkProblems.push(`sink '${opened.step.name}' ${what}: ${message(e)}`)
              })
            yield* commitSink(opened).pipe(Effect.catchAll(problem("write")))
            yield* opened.instance.onComplete.pipe(Effect.catchAll(problem("on_complete")))
            yield* opened.instance.close
            const artifact = yield* opened.instance.artifact.pipe(
              Effect.catchAll((e) => Effect.as(problem("artifact")(e), undefined))
            )
            if (artifact !== undefined) {
              yield* recorder.recordArtifact({
                runId,
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

    let lastDurableMs = startedMs
    let lastProgressMs = startedMs
    let checkpointSeq = 0

    const durabilityDue = () =>
      proc.pendingRows() >= durabilityRows || clock.unsafeCurrentTimeMillis() - lastDurableMs >= durabilityMs

    const durabilityPoint = (opened: ReadonlyArray<OpenedSink>) =>
      Effect.gen(function*() {
        yield* appendDrained
        for (const o of opened) yield* commitSink(o)
        if (plan.settings.checkpoint?.enabled === true) {
          yield* recorder.recordCheckpoint({
            runId,
            sequenceNumber: checkpointSeq++,
            topologyHash: plan.graph.topologyHash,
            sinkState: { rows_processed: proc.rowsProcessed }
          })
        }
        yield* recorder.flush
        lastDurableMs = clock.unsafeCurrentTimeMillis()
      })

    const processing = Effect.gen(function*() {
      // Sinks that rows can reach, opened in settings order (released in reverse).
      const reachable = new Set(plan.graph.edges.map((e) => e.to))
      const opened: Array<OpenedSink> = []
      for (const step of plan.sinks.values()) {
        if (reachable.has(step.nodeId)) opened.push(yield* openSink(step))
      }

      /** Runs synchronous processor work; a crash fails its tokens and becomes a PipelineRunError. */
      const guarded = (work: () => void) =>
        Effect.suspend(() => {
          try {
            work()
            return appendDrained
          } catch (e) {
            // A value that cannot be hashed (a lone surrogate in JSON input) stops the run like a crash.
            const crash = e instanceof ProcessingCrash
              ? e
              : e instanceof CanonicalError
              ? new ProcessingCrash(`a row could not be hashed for the audit trail: ${e.message}`, "hashing", -1, e)
              : undefined
            if (crash === undefined) throw e
            proc.failInFlight(`run stopped: ${crash.message}`)
            return Effect.zipRight(appendDrained, Effect.fail(new PipelineRunError({ runId, message: crash.message, cause: crash.cause })))
          }
        })

      for (const queue of timerQueues.values()) {
        yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
          const wake = yield* Queue.take(queue)
          const wait = wake.deadlineMs - clock.unsafeCurrentTimeMillis()
          if (wait > 0) yield* Effect.sleep(wait)
          yield* lock.withPermits(1)(Effect.gen(function*() {
            yield* guarded(() => {
              if (wake.fire()) proc.runToCompletion()
            })
            // Rows a timer flush sent to sinks follow the same durability policy as rows
            // from the source: they do not wait for the source to wake up.
            if (proc.pendingRows() > 0 && durabilityDue()) yield* durabilityPoint(opened)
          }))
        }).pipe(Effect.catchAll((e) => Deferred.fail(fatal, e)))))
      }

      const processChunk = (items: Chunk.Chunk<SourceItem>) =>
        lock.withPermits(1)(Effect.gen(function*() {
          for (const item of items) {
            const step: { r: StepResult } = { r: { _tag: "Done" } }
            yield* guarded(() => {
              proc.startItem(item)
              step.r = proc.run()
            })
            while (step.r._tag === "Sleep") {
              yield* Effect.sleep(step.r.millis)
              yield* guarded(() => {
                step.r = proc.run()
              })
            }
          }
          const now = clock.unsafeCurrentTimeMillis()
          if (durabilityDue()) yield* durabilityPoint(opened)
          if (now - lastProgressMs >= progressMs) {
            lastProgressMs = now
            yield* telemetry.emit({ _tag: "Progress", runId, rows: proc.rowsProcessed, elapsedMs: now - startedMs })
          }
        }))

      const consume = plan.source.instance.read.pipe(
        Stream.mapError((e) => new PipelineRunError({ runId, message: `source '${plan.source.plugin}': ${e.message}`, cause: e })),
        Stream.runForEachChunk(processChunk)
      )
      yield* Effect.raceFirst(consume, Deferred.await(fatal))
      yield* lock.withPermits(1)(guarded(() => proc.endOfSource()))
      yield* durabilityPoint(opened)
      // A timer that crashed after the source ended still fails the run.
      if (yield* Deferred.isDone(fatal)) return yield* Deferred.await(fatal)
    })

    let recorded: RunResult | undefined
    const finalize = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.gen(function*() {
        // Tokens still in flight (a crash, an interruption mid-row) end FAILED.
        if (proc.hasInFlight()) proc.failInFlight(Exit.isInterrupted(exit) ? "run interrupted" : "run stopped")
        yield* appendDrained
        let status: PipelineRunStatus
        if (Exit.isSuccess(exit)) status = sinkProblems.length === 0 ? "completed" : "failed"
        else if (Exit.isInterrupted(exit)) status = "interrupted"
        else status = "failed"
        if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
          const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
          crashMessage = failure === undefined ? String(exit.cause) : message(failure)
        }
        const errorMessage = [crashMessage, ...sinkProblems].filter((m): m is string => m !== undefined).join("; ")
        const result = toRunResult(runId, status, proc.rowsProcessed, total, null)
        yield* recorder.completeRun(runId, errorMessage === "" ? { status, result } : { status, errorMessage, result })
        recorded = result
        yield* telemetry.emit({ _tag: "RunFinished", runId, status, at: new Date(clock.unsafeCurrentTimeMillis()).toISOString() })
      }).pipe(
        Effect.catchAll((e) =>
          Effect.sync(() => {
            crashMessage = `${crashMessage ?? ""}${crashMessage === undefined ? "" : "; "}finalizing the run failed: ${message(e)}`
          })
        )
      )

    const outcome = yield* Effect.scoped(processing).pipe(Effect.onExit(finalize), Effect.either)
    if (outcome._tag === "Left" || recorded === undefined || recorded.status !== "completed") {
      const cause = outcome._tag === "Left" ? outcome.left : undefined
      const text = [crashMessage, ...sinkProblems].filter((m) => m !== undefined).join("; ")
      return yield* Effect.fail(
        new PipelineRunError({
          runId,
          message: text === "" ? (cause === undefined ? "the run did not complete" : message(cause)) : text,
          ...(recorded === undefined ? {} : { result: recorded }),
          ...(cause === undefined ? {} : { cause })
        })
      )
    }
    if (options.afterRun !== undefined) {
      const exportStatus = yield* options.afterRun(runId, recorded.status)
      recorded = { ...recorded, export_status: exportStatus }
    }
    return recorded
  }).pipe(Effect.withSpan("runPipeline"))
