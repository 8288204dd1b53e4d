/**
 * Running a pipeline: register the graph, open the sinks as scoped resources, stream
 * the source through the processor, make sink writes durable in batches, and finalize
 * the run — completed, failed or interrupted — with a complete trail in every case.
 */
import { type Chunk, Deferred, Effect, Exit, Queue, Stream } from "effect"
import { CanonicalError } from "../../core/canonical.js"
import type { RunId } from "../../core/ids.js"
import { Recorder, type RecorderError } from "../../services/recorder.js"
import { Telemetry } from "../../services/telemetry.js"
import type { PipelinePlan } from "../build.js"
import type { PluginRunError, SourceItem } from "../plugins/protocol.js"
import { graphRecords } from "./graph-records.js"
import { Processor, type StepResult } from "./processor.js"
import { commitSink, type OpenedSink, openSink, type SinkContext } from "./sinks.js"
import { ProcessingCrash } from "./tokens.js"
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
    const graph = graphRecords(plan, runId)
    yield* recorder.append(graph.records)
    yield* recorder.flush

    // Timeouts of aggregations and coalesces fire on the Clock, idle source or not:
    // one fiber per aggregation/coalesce sleeps until the deadline it was handed.
    type Wake = { readonly deadlineMs: number; readonly fire: () => boolean }
    const timerQueues = new Map<string, Queue.Queue<Wake>>()
    for (const step of plan.chain) if (step.kind === "aggregation") timerQueues.set(step.nodeId, yield* Queue.unbounded<Wake>())
    for (const c of plan.coalesces) timerQueues.set(c.nodeId, yield* Queue.unbounded<Wake>())
    const proc: Processor = new Processor(plan, runId, clock, graph.edgeIds, {
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
      const { records, result } = proc.trail.drain()
      total = AggregationFlushResult.combine(total, result)
      return records.length === 0 ? Effect.void : recorder.append(records)
    })

    const sinks: SinkContext = {
      runId,
      recorder,
      clock,
      trail: proc.trail,
      count: (result) => {
        total = AggregationFlushResult.combine(total, result)
      },
      problem: (text) => {
        sinkProblems.push(text)
      }
    }

    let lastDurableMs = startedMs
    let lastProgressMs = startedMs
    let checkpointSeq = 0

    const durabilityDue = () =>
      proc.pendingRows() >= durabilityRows || clock.unsafeCurrentTimeMillis() - lastDurableMs >= durabilityMs

    const durabilityPoint = (opened: ReadonlyArray<OpenedSink>) =>
      Effect.gen(function*() {
        yield* appendDrained
        for (const o of opened) yield* commitSink(sinks, o)
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
        if (reachable.has(step.nodeId)) opened.push(yield* openSink(sinks, step, proc.sinkQueues.get(step.name)!))
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
