/**
 * Running a pipeline: register the graph, open the sinks as scoped resources, stream
 * the source through the processor, make sink writes durable in batches, and finalize
 * the run — completed, failed or interrupted — with a complete trail in every case.
 */
import { Chunk, Deferred, Effect, Exit, Fiber, Option, Queue, Stream } from "effect"
import { CanonicalError, canonicalJsonUnsafe } from "../../core/canonical.js"
import { type EdgeId, newCheckpointId, newId, type RunId } from "../../core/ids.js"
import { stateJson } from "../../core/state-json.js"
import { Recorder, RecorderError } from "../../services/recorder.js"
import type { AuditRecord, CallRecord, OperationRecord } from "../../services/records.js"
import { Telemetry } from "../../services/telemetry.js"
import type { PipelinePlan } from "../build.js"
import { crashPoint } from "../crash-points.js"
import type { PluginRunError, SinkCommitted, SourceItem, SourcePosition } from "../plugins/protocol.js"
import { CHECKPOINT_STATE_VERSION, type CheckpointState, type SourceFileState } from "./checkpoint-state.js"
import { graphRecords } from "./graph-records.js"
import { type ParkedCall, Processor, type SinkQueue, type StepResult } from "./processor.js"
import { CallStore, DEFAULT_PAYLOAD_BASE_PATH } from "../../services/call-store.js"
import { redactSecrets } from "../secrets.js"
import { type CallOutcome, type ExternalCalls, hasExternalCalls, makeExternalCalls, replayIndexOf, type VerificationSummary } from "./external-calls.js"
import { commitSinks, type OpenedSink, openSinks, type SinkContext } from "./sinks.js"
import { fingerprintSource } from "./source-file.js"
import { flushSpans, rowEvents } from "./telemetry-hooks.js"
import { ProcessingCrash } from "./tokens.js"
import { AggregationFlushResult, PipelineRunError, type PipelineRunStatus, type RunResult, toRunResult } from "./types.js"

export interface RunPipelineOptions {
  /** Rows waiting for sinks that trigger a durability point (write, fsync, record). */
  readonly durabilityRows?: number
  /** Clock time between durability points while rows keep coming. */
  readonly durabilityIntervalMs?: number
  /** Clock time between progress events. */
  readonly progressIntervalMs?: number
  /**
   * `false` runs without checkpoints whatever the settings say (records reach the
   * Landscape as they are made, and the run cannot be resumed).
   */
  readonly checkpoints?: boolean
  /** Continue a run from its last checkpoint instead of starting one (see resume.ts). */
  readonly resume?: ResumeFrom
  /** Runs after the run is finalized; its status is recorded as export_status (see export.ts). */
  readonly afterRun?: (runId: RunId, status: PipelineRunStatus) => Effect.Effect<RunResult["export_status"], never, Recorder | Telemetry>
}

/** Where a resumed attempt starts: the run, its next attempt, and the checkpoint's state. */
export interface ResumeFrom {
  readonly runId: RunId
  readonly attempt: number
  /** Sequence number of the first checkpoint this attempt writes. */
  readonly nextSequence: number
  readonly state: CheckpointState
  /** The run's edges as recorded: `from|label` → edge id. */
  readonly edgeIds: ReadonlyMap<string, EdgeId>
}

/** Records staged for the next checkpoint beyond which a durability point is due (memory bound). */
const MAX_STAGED_RECORDS = 20_000
/** Rows waiting for sinks beyond which an aggregation_only run makes them durable anyway. */
const AGGREGATION_ONLY_MAX_ROWS = 50_000

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
    const policy = plan.checkpoint
    // With checkpoints, nothing reaches the Landscape between two of them: a crash leaves
    // exactly the trail of the last checkpoint, which a resume continues from.
    const strict = policy.enabled && options.checkpoints !== false
    const durabilityRows = options.durabilityRows ?? (policy.frequency === "aggregation_only" ? AGGREGATION_ONLY_MAX_ROWS : policy.interval)
    const durabilityMs = options.durabilityIntervalMs ?? (policy.frequency === "aggregation_only" ? Number.POSITIVE_INFINITY : 1_000)
    const progressMs = options.progressIntervalMs ?? 1_000
    const resume = options.resume

    // Only a checkpointed run can be resumed, so only it needs the input's fingerprint.
    const sourceFile: SourceFileState | null = resume !== undefined
      ? resume.state.source.file
      : strict
      ? yield* fingerprintSource(plan.settings)
      : null
    const runId = resume !== undefined
      ? resume.runId
      : yield* recorder.beginRun({ settings: redactSecrets(plan.settings), sourceSchema: plan.source.instance.schema })
    const attempt = resume?.attempt ?? 1
    const startedMs = clock.unsafeCurrentTimeMillis()
    yield* Effect.annotateCurrentSpan({ "runledger.run_id": runId, "runledger.attempt": attempt })
    yield* telemetry.emit({ _tag: "RunStarted", runId, kind: "pipeline", at: new Date(startedMs).toISOString() })

    // The graph, registered before any row (a resumed run has it already).
    const graph = graphRecords(plan, runId)
    const edgeIds = resume?.edgeIds ?? graph.edgeIds
    if (resume === undefined) {
      yield* recorder.append(graph.records)
      yield* recorder.flush
    }
    const nodeHashes: Record<string, string> = {}
    for (const r of graph.records) if (r._tag === "Node") nodeHashes[r.node_id] = r.config_hash

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
    proc.aggregations.flushObserver = flushSpans(telemetry, yield* Effect.tracer, yield* Effect.option(Effect.currentSpan), clock, runId)
    /** Row processing and timer flushes never interleave. */
    const lock = yield* Effect.makeSemaphore(1)
    const fatal = yield* Deferred.make<never, PipelineRunError | RecorderError | PluginRunError>()
    let total = AggregationFlushResult.empty
    const sinkProblems: Array<string> = []
    let crashMessage: string | undefined

    if (resume !== undefined) {
      const s = resume.state
      proc.rowsProcessed = s.rowsProcessed
      total = AggregationFlushResult.make(s.totals as Partial<AggregationFlushResult>)
      proc.aggregations.restore(s.aggregations)
      proc.coalesces.restore(s.coalesces)
    }
    /** What the last checkpoint covers: the RunResult of a run that stops now and is resumed later. */
    let checkpointed = { rows: proc.rowsProcessed, total }
    /** Where the source stands after the last fully processed item, when it says. */
    let sourcePosition: SourcePosition | null = resume?.state.source.position ?? null
    let aggregationFlushesSeen = proc.aggregations.flushes
    /** The Landscape could not be written: stop without writing more to the sinks. */
    let landscapeFailed = false

    let staged: Array<AuditRecord> = []
    const stageRecords = (records: ReadonlyArray<AuditRecord>): Effect.Effect<void, RecorderError> => {
      if (!strict) return recorder.append(records)
      for (const r of records) staged.push(r)
      return Effect.void
    }
    // granularity rows/full: the row events of what is staged (nothing extra otherwise).
    const tellRows = rowEvents(telemetry, runId)
    const stage = tellRows === undefined
      ? stageRecords
      : (records: ReadonlyArray<AuditRecord>) => Effect.zipRight(tellRows(records), stageRecords(records))

    const appendDrained = Effect.suspend(() => {
      const { records, result } = proc.trail.drain()
      if (result !== undefined) total = AggregationFlushResult.combine(total, result)
      return records.length === 0 ? Effect.void : stage(records)
    })

    const interruptedCleanly = (exit: Exit.Exit<unknown, unknown>) => strict && (Exit.isInterrupted(exit) || landscapeFailed)
    const sinks: SinkContext = {
      runId,
      recorder,
      append: stage,
      commitOnClose: (exit) => !interruptedCleanly(exit),
      edgeIds,
      ...(resume === undefined ? {} : {
        resumeState: (name: string): SinkCommitted => resume.state.sinks[name] ?? { rows: 0, bytes: 0 }
      }),
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
    let checkpointSeq = resume?.nextSequence ?? 0

    /** `byClock: false`: only the row/record counts (the pooled path does not stop its calls for the clock). */
    const durabilityDue = (byClock = true) =>
      proc.pendingRows() >= durabilityRows ||
      (byClock && clock.unsafeCurrentTimeMillis() - lastDurableMs >= durabilityMs) ||
      (strict && staged.length >= MAX_STAGED_RECORDS) ||
      (strict && policy.aggregationBoundaries && proc.aggregations.flushes !== aggregationFlushesSeen)

    const checkpointRecord = (opened: ReadonlyArray<OpenedSink>) =>
      Effect.gen(function*() {
        const committed: Record<string, SinkCommitted> = {}
        for (const o of opened) if (o.instance.committed !== undefined) committed[o.step.name] = yield* o.instance.committed
        const state: CheckpointState = {
          version: CHECKPOINT_STATE_VERSION,
          attempt,
          source: { items: proc.rowsProcessed, position: sourcePosition, file: sourceFile },
          sinks: committed,
          aggregations: proc.aggregations.snapshot(),
          coalesces: proc.coalesces.snapshot(),
          totals: { ...total },
          rowsProcessed: proc.rowsProcessed,
          topologyHash: plan.graph.topologyHash,
          nodes: nodeHashes
        }
        const json = yield* Effect.try({
          try: () => stateJson(state),
          catch: (e) => new PipelineRunError({ runId, message: `the checkpoint cannot hold the run's state: ${message(e)}`, cause: e })
        })
        const record: AuditRecord = {
          _tag: "Checkpoint",
          checkpoint_id: newCheckpointId(),
          run_id: runId,
          token_id: null,
          node_id: null,
          sequence_number: checkpointSeq++,
          aggregation_state_json: null,
          sink_state_json: canonicalJsonUnsafe(committed),
          topology_hash: plan.graph.topologyHash,
          created_at: proc.trail.nowIso(),
          state_json: json,
          attempt
        }
        return record
      })

    const durabilityPoint = (opened: ReadonlyArray<OpenedSink>) =>
      Effect.gen(function*() {
        yield* appendDrained
        yield* commitSinks(sinks, opened)
        if (strict) {
          crashPoint("sink_flushed")
          staged.push(yield* checkpointRecord(opened))
          const batch = staged
          staged = []
          // One append, one flush: the rows' records and the checkpoint commit together.
          yield* Effect.zipRight(recorder.append(batch), recorder.flush).pipe(
            Effect.tapError(() =>
              Effect.sync(() => {
                landscapeFailed = true
              })
            )
          )
          checkpointed = { rows: proc.rowsProcessed, total }
          aggregationFlushesSeen = proc.aggregations.flushes
          crashPoint("checkpoint")
        } else {
          yield* recorder.flush
        }
        lastDurableMs = clock.unsafeCurrentTimeMillis()
      }).pipe(Effect.withSpan("runledger.commit", { attributes: { "runledger.run_id": runId, "runledger.checkpoint": strict } }))

    let externalCalls: ExternalCalls | undefined
    /**
     * With checkpoints, the calls an interruption aborted are kept apart: the node states
     * they belong to are past the last checkpoint, so they never reach the trail, and the
     * calls are recorded against an operation of their node instead (see finalize).
     */
    const abortedCalls: Array<CallRecord> = []

    const processing = Effect.gen(function*() {
      externalCalls = yield* openExternalCalls(plan, runId, (records) => {
        for (const r of records) {
          if (strict && r._tag === "Call") abortedCalls.push(r)
          else proc.trail.records.push(r)
        }
      })
      // Sinks that rows can reach, opened in settings order, failsinks first (released in reverse).
      const reachable = new Set(plan.graph.edges.map((e) => e.to))
      const opened = yield* openSinks(
        sinks,
        Array.from(plan.sinks.values()).filter((step) => reachable.has(step.nodeId)),
        (name) => proc.sinkQueues.get(name)!
      )
      if (resume !== undefined) crashPoint("resume_cut")
      // Checkpoint 0, before any row: a run that dies before its first durability point
      // is resumable too (from the start, its sinks cut back to what they held before).
      if (strict && resume === undefined) yield* durabilityPoint(opened)

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

      // Rows that reached the sinks while the source waits (a pipe, a file still being
      // written) become durable on the clock too, not only when the next row comes.
      if (Number.isFinite(durabilityMs)) {
        yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
          yield* Effect.sleep(durabilityMs)
          yield* lock.withPermits(1)(Effect.suspend(() =>
            !proc.midItem() && (proc.pendingRows() > 0 || staged.length > 0) &&
              clock.unsafeCurrentTimeMillis() - lastDurableMs >= durabilityMs
              ? durabilityPoint(opened)
              : Effect.void
          ))
        })).pipe(Effect.catchAll((e) => Deferred.fail(fatal, e))))
      }

      // Ctrl-C with checkpoints: when no row is part-way, one last checkpoint keeps the
      // work done since the previous one (runs before the sinks close).
      yield* Effect.addFinalizer((exit) =>
        strict && Exit.isInterrupted(exit) && !landscapeFailed
          ? lock.withPermits(1)(Effect.suspend(() => (proc.midItem() ? Effect.void : durabilityPoint(opened)))).pipe(
            Effect.catchAll((e) =>
              Effect.sync(() => {
                sinkProblems.push(`the last checkpoint failed: ${message(e)}`)
              })
            )
          )
          : Effect.void
      )

      /**
       * A chunk of source items runs synchronously, as many items per Effect step as
       * can go without a wait: the loop leaves the synchronous part only for a retry's
       * sleep or a durability point, so the hot path costs one Effect boundary per
       * chunk, not per row.
       */
      const processChunk = (chunk: Chunk.Chunk<SourceItem>) =>
        lock.withPermits(1)(Effect.gen(function*() {
          const items = Chunk.toReadonlyArray(chunk)
          const step: { r: StepResult; durable: boolean; item: SourceItem | undefined } = { r: { _tag: "Done" }, durable: false, item: undefined }
          /** After an item is done: where the source stands, the crash hook, whether a durability point is due. */
          const itemDone = (item: SourceItem): boolean => {
            if (item.position !== undefined) sourcePosition = item.position
            crashPoint("row")
            return durabilityDue()
          }
          let next = 0
          while (next < items.length) {
            step.durable = false
            step.item = undefined
            yield* guarded(() => {
              while (next < items.length) {
                const item = items[next++]!
                proc.startItem(item)
                step.r = proc.run()
                if (step.r._tag === "Sleep") {
                  step.item = item
                  return
                }
                if (itemDone(item)) {
                  step.durable = true
                  return
                }
              }
            })
            if (step.item !== undefined) {
              while (step.r._tag === "Sleep") {
                yield* Effect.sleep(step.r.millis)
                yield* guarded(() => {
                  step.r = proc.run()
                })
              }
              step.durable = itemDone(step.item)
            }
            if (step.durable) yield* durabilityPoint(opened)
          }
          const now = clock.unsafeCurrentTimeMillis()
          if (now - lastProgressMs >= progressMs) {
            lastProgressMs = now
            yield* telemetry.emit({ _tag: "Progress", runId, rows: proc.rowsProcessed, elapsedMs: now - startedMs })
          }
        }))

      /** Runs processor work to its end, sleeping on the Clock for retry waits. */
      const drive = (work: () => StepResult) =>
        Effect.gen(function*() {
          const step: { r: StepResult } = { r: { _tag: "Done" } }
          yield* guarded(() => {
            step.r = work()
          })
          while (step.r._tag === "Sleep") {
            yield* Effect.sleep(step.r.millis)
            yield* guarded(() => {
              step.r = proc.run()
            })
          }
        })

      /**
       * The pooled path, for pipelines with external transforms: source items run up to
       * their external call, each call starts as soon as its token parks (the clients'
       * pools bound how many are in flight), and tokens resume strictly in the order
       * they parked while later calls are still running. Each sink's queue is put back
       * in source order (a reorder buffer) before anything is written, and a durability
       * point waits until every call started so far has been resumed.
       */
      const processChunkPooled = (calls: ExternalCalls, items: Chunk.Chunk<SourceItem>) =>
        lock.withPermits(1)(Effect.gen(function*() {
          const pending: Array<{ readonly parked: ParkedCall; readonly fiber: Fiber.RuntimeFiber<CallOutcome, PipelineRunError> }> = []
          const launched = new Set<ParkedCall>()
          // Calls beyond the pools wait here, not inside the client: a call interrupted before it started is no call.
          const slots = yield* Effect.makeSemaphore(calls.concurrency)
          let lastPosition: SourcePosition | undefined
          const launch = Effect.gen(function*() {
            for (const p of proc.parked) {
              if (launched.has(p)) continue
              launched.add(p)
              pending.push({ parked: p, fiber: yield* Effect.fork(slots.withPermits(1)(calls.resolve(p))) })
            }
          })
          const resumeHead = Effect.gen(function*() {
            const head = pending.shift()!
            const outcome = yield* Fiber.join(head.fiber)
            launched.delete(head.parked)
            const at = proc.parked.indexOf(head.parked)
            if (at >= 0) proc.parked.splice(at, 1)
            yield* drive(() => proc.resume(head.parked, outcome.result, outcome.records))
            yield* launch
          })
          const drain = Effect.gen(function*() {
            while (pending.length > 0) yield* resumeHead
            for (const queue of proc.sinkQueues.values()) inSourceOrder(queue)
            if (lastPosition !== undefined) sourcePosition = lastPosition
          })
          yield* Effect.gen(function*() {
            for (const item of items) {
              yield* drive(() => {
                proc.startItem(item)
                return proc.run()
              })
              if (item.position !== undefined) lastPosition = item.position
              yield* launch
              while (pending.length > calls.window) yield* resumeHead
              crashPoint("row")
              if (durabilityDue(false)) {
                yield* drain
                yield* durabilityPoint(opened)
              }
            }
            yield* drain
          }).pipe(Effect.onError(() => Effect.forEach(pending, (p) => Fiber.interrupt(p.fiber), { discard: true })))
          if (durabilityDue()) yield* durabilityPoint(opened)
          const now = clock.unsafeCurrentTimeMillis()
          if (now - lastProgressMs >= progressMs) {
            lastProgressMs = now
            yield* telemetry.emit({ _tag: "Progress", runId, rows: proc.rowsProcessed, elapsedMs: now - startedMs })
          }
        }))

      const source = plan.source.instance
      const position = resume?.state.source.position
      // A resume seeks to where the last covered row ended when the source says where
      // that is; otherwise it reads the covered rows again and skips them.
      const read = resume === undefined
        ? source.read
        : source.readFrom !== undefined && position !== null && position !== undefined && resume.state.source.items > 0
        ? source.readFrom({ items: resume.state.source.items, position })
        : Stream.drop(source.read, resume.state.source.items)
      const consume = read.pipe(
        Stream.mapError((e) => new PipelineRunError({ runId, message: `source '${plan.source.plugin}': ${e.message}`, cause: e })),
        Stream.runForEachChunk((items) => externalCalls === undefined ? processChunk(items) : processChunkPooled(externalCalls, items))
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
        if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
          const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
          crashMessage = failure === undefined ? String(exit.cause) : message(failure)
          if (failure instanceof RecorderError && strict) landscapeFailed = true
        }
        let status: PipelineRunStatus
        let result: RunResult
        let reason: string | undefined
        if (interruptedCleanly(exit)) {
          // Resumable: the trail stays exactly as the last checkpoint left it, and the
          // run's counts are the checkpoint's. Work since then is redone by `resume`.
          staged = []
          proc.trail.drain()
          status = "interrupted"
          if (!landscapeFailed && abortedCalls.length > 0) yield* recorder.append(abortedCallRecords(runId, abortedCalls, proc.trail.nowIso()))
          if (landscapeFailed) {
            reason = "landscape_write_failed"
            crashMessage = `the Landscape could not be written (${crashMessage ?? "unknown cause"}); the run can be resumed from its last checkpoint once that is fixed`
          }
          result = toRunResult(runId, status, checkpointed.rows, checkpointed.total, null)
        } else {
          // Tokens still in flight (a crash, an interruption mid-row) end FAILED.
          if (proc.hasInFlight()) proc.failInFlight(Exit.isInterrupted(exit) ? "run interrupted" : "run stopped")
          for (const c of abortedCalls) proc.trail.records.push(c)
          yield* appendDrained
          if (staged.length > 0) {
            const batch = staged
            staged = []
            yield* recorder.append(batch)
          }
          if (Exit.isSuccess(exit)) status = sinkProblems.length === 0 ? "completed" : "failed"
          else if (Exit.isInterrupted(exit)) status = "interrupted"
          else status = "failed"
          result = toRunResult(runId, status, proc.rowsProcessed, total, null)
        }
        const errorMessage = [crashMessage, ...sinkProblems].filter((m): m is string => m !== undefined).join("; ")
        yield* recorder.completeRun(runId, {
          status,
          result,
          ...(errorMessage === "" ? {} : { errorMessage }),
          ...(reason === undefined ? {} : { reason })
        })
        recorded = result
        const endedMs = clock.unsafeCurrentTimeMillis()
        yield* telemetry.emit({
          _tag: "RunFinished",
          runId,
          status,
          at: new Date(endedMs).toISOString(),
          durationMs: endedMs - startedMs,
          result: { ...result }
        })
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
    const verification: VerificationSummary | undefined = externalCalls?.verification()
    if (verification !== undefined) recorded = { ...recorded, verification }
    if (options.afterRun !== undefined) {
      const exportStatus = yield* options.afterRun(runId, recorded.status)
      recorded = { ...recorded, export_status: exportStatus }
    }
    return recorded
  }).pipe(Effect.withSpan("runledger.run", { attributes: { "runledger.kind": "pipeline" } }))

/** Puts a sink's queued rows back in source order (stable: a row's own outputs keep theirs). */
const inSourceOrder = (queue: SinkQueue): void => {
  const held = queue.held
  let sorted = true
  for (let i = 1; i < held.length && sorted; i++) if (held[i]!.order < held[i - 1]!.order) sorted = false
  if (sorted) return
  const idx = held.map((_, i) => i).sort((a, b) => held[a]!.order - held[b]!.order || a - b)
  queue.rows = idx.map((i) => queue.rows[i]!)
  queue.held = idx.map((i) => held[i]!)
}

/**
 * The external calls of a run with `llm`/`http` transforms (undefined without any): the
 * clients, the payload store of the call bodies, and for replay/verify the recorded
 * run's calls.
 */
const openExternalCalls = (
  plan: PipelinePlan,
  runId: RunId,
  onInterrupted: (records: ReadonlyArray<AuditRecord>) => void
) =>
  Effect.gen(function*() {
    if (!hasExternalCalls(plan)) return undefined
    const mode = plan.settings.run_mode ?? "live"
    const replayFrom = plan.settings.replay_from
    const callStore = yield* Effect.serviceOption(CallStore)
    if (Option.isNone(callStore)) {
      return yield* Effect.fail(
        new PipelineRunError({ runId, message: "the pipeline makes external calls, and the Landscape layer provides no CallStore for their payloads" })
      )
    }
    let replay = undefined
    if (mode !== "live" && replayFrom !== undefined) {
      const rows = yield* callStore.value.recordedCalls(replayFrom).pipe(
        Effect.mapError((message) => new PipelineRunError({ runId, message: `replay_from: ${message}` }))
      )
      replay = replayIndexOf(rows)
    }
    const store = callStore.value.blobs(plan.settings.payload_store?.base_path ?? DEFAULT_PAYLOAD_BASE_PATH)
    return yield* makeExternalCalls(plan, { runId, mode, replayFrom, replay, store, onInterrupted })
  })

/**
 * The calls an interruption aborted under checkpoints, as the trail keeps them: one
 * failed `interrupted_calls` operation per node, and each call (every attempt, the last
 * one `interrupted`) linked to it instead of to a node state. The rows they were made
 * for are past the last checkpoint, so `resume` makes these calls again; the trail
 * still shows that they were made.
 */
const abortedCallRecords = (runId: RunId, calls: ReadonlyArray<CallRecord>, now: string): Array<AuditRecord> => {
  const operations = new Map<string, OperationRecord>()
  const linked: Array<CallRecord> = []
  for (const call of calls) {
    const nodeId = call.node_id ?? "unknown"
    let operation = operations.get(nodeId)
    if (operation === undefined) {
      operation = {
        _tag: "Operation",
        operation_id: newId("operation"),
        run_id: runId,
        node_id: nodeId,
        operation_type: "interrupted_calls",
        status: "failed",
        started_at: call.created_at,
        completed_at: now,
        duration_ms: null,
        error_message: "the run was interrupted while these calls were in flight; their rows were after the last checkpoint, and resume makes the calls again"
      }
      operations.set(nodeId, operation)
    } else if (call.created_at < operation.started_at) {
      operation = { ...operation, started_at: call.created_at }
      operations.set(nodeId, operation)
    }
    linked.push({ ...call, state_id: null, operation_id: operation.operation_id })
  }
  return [...operations.values(), ...linked]
}
