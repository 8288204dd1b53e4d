/**
 * `test_queue`: a source plugin whose rows come from an effect Queue the test controls.
 *
 * The test offers rows (or invalid items) while the pipeline runs in a forked fiber,
 * moves the TestClock between offers, and ends the source when it likes. Rows offered
 * together with `offerAll` reach the engine as one chunk. `end` lets every row offered
 * before it through and then ends the stream; `shutdown` ends it at once (rows not yet
 * taken are dropped, as Stream.fromQueue ends on shutdown).
 *
 * Below the plugin: helpers that fork a run, settle fibers and read the trail.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Fiber, Layer, Option, Queue, Schema, Stream, TestClock } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { buildPipeline, type PipelinePlan } from "../../src/pipeline/build.js"
import { runPipeline, type RunPipelineOptions } from "../../src/pipeline/orchestrator/run.js"
import type { PipelineRunError, RunResult } from "../../src/pipeline/orchestrator/types.js"
import { decodeOptions, Destination } from "../../src/pipeline/plugins/options.js"
import type { AnyPlugin, Row, SourceInstance, SourceItem, SourcePlugin } from "../../src/pipeline/plugins/protocol.js"
import { makeRegistry } from "../../src/pipeline/plugins/registry.js"
import { OBSERVED_SCHEMA, parseSchemaConfig } from "../../src/pipeline/plugins/schema.js"
import { parseSettings } from "../../src/pipeline/settings.js"
import { Recorder, type RecorderError } from "../../src/services/recorder.js"
import { TelemetryNoop } from "../../src/services/telemetry.js"
import { MemoryLandscape } from "./landscape.js"

export const QUEUE_SOURCE = "test_queue"

const END = Symbol("end-of-source")
type Entry = SourceItem | typeof END

const QueueSourceOptions = Schema.Struct({
  schema: Schema.optional(Schema.Unknown),
  on_validation_failure: Schema.optionalWith(Destination, { default: () => "discard" })
})

export interface QueueSource {
  /** Register it with `makeRegistry([source.plugin])`; settings use `plugin: test_queue`. */
  readonly plugin: SourcePlugin
  /** One valid row (its own chunk). */
  readonly offer: (row: Row) => Effect.Effect<void>
  /** Several valid rows, read as one chunk. */
  readonly offerAll: (rows: ReadonlyArray<Row>) => Effect.Effect<void>
  /** An item that failed validation (quarantined per `on_validation_failure`). */
  readonly offerInvalid: (raw: unknown, error: string) => Effect.Effect<void>
  /** Ends the source after everything offered so far. */
  readonly end: Effect.Effect<void>
  /** Shuts the queue down: the stream ends at once. */
  readonly shutdown: Effect.Effect<void>
  /** Items offered but not yet taken by the engine (negative while the engine waits for more). */
  readonly backlog: Effect.Effect<number>
}

export const makeQueueSource: Effect.Effect<QueueSource> = Effect.gen(function*() {
  const queue = yield* Queue.unbounded<Entry>()
  const read: Stream.Stream<SourceItem> = Stream.fromQueue(queue).pipe(
    Stream.takeWhile((e): e is SourceItem => e !== END),
    Stream.map((e) => e as SourceItem)
  )
  const plugin: SourcePlugin = {
    kind: "source",
    name: QUEUE_SOURCE,
    description: "Rows offered by a test through a Queue.",
    create: (rawOptions) =>
      Effect.gen(function*() {
        const options = yield* decodeOptions(QUEUE_SOURCE, QueueSourceOptions, rawOptions ?? {})
        const schema = options.schema === undefined ? OBSERVED_SCHEMA : yield* parseSchemaConfig(QUEUE_SOURCE, options.schema)
        const instance: SourceInstance = {
          plugin: QUEUE_SOURCE,
          onValidationFailure: options.on_validation_failure,
          schema,
          read
        }
        return instance
      })
  }
  return {
    plugin,
    offer: (row) => Effect.asVoid(Queue.offer(queue, { _tag: "Valid", row })),
    offerAll: (rows) => Effect.asVoid(Queue.offerAll(queue, rows.map((row): SourceItem => ({ _tag: "Valid", row })))),
    offerInvalid: (raw, error) => Effect.asVoid(Queue.offer(queue, { _tag: "Invalid", raw, error })),
    end: Effect.asVoid(Queue.offer(queue, END)),
    shutdown: Queue.shutdown(queue),
    backlog: Queue.size(queue)
  }
})

// ---------------------------------------------------------------------------
// Driving a run under the TestClock

/** A fresh in-memory Landscape (Recorder + SqlClient) and no telemetry. */
export const TestLandscape = () => Layer.merge(MemoryLandscape(), TelemetryNoop)

export interface StartedRun {
  readonly plan: PipelinePlan
  readonly fiber: Fiber.RuntimeFiber<RunResult, PipelineRunError | RecorderError>
  readonly source: QueueSource
  /**
   * Lets every fiber of the run go on until it waits (for rows, the clock, a lock)
   * without moving the clock: loops until the engine has taken every offered item (or
   * the run ended), with real macrotask turns so that file I/O can complete.
   */
  readonly settle: Effect.Effect<void>
  /**
   * Settles, then moves the clock by `millis`. TestClock.adjust wakes each sleeper due
   * on the way at its own instant and lets it run until it waits again, so timers fire
   * at exactly their deadlines. Settles again afterwards.
   */
  readonly advance: (millis: number) => Effect.Effect<void>
}

/**
 * Durability points only at the end of the run unless a test asks otherwise: a sink
 * write is real I/O, which the TestClock cannot wait for, so exact-timing tests keep
 * it out of the middle of the run. Without checkpoints, so that the trail shows every
 * record as soon as it is flushed (the tests read it mid-run); checkpointed runs are
 * tested in the resume tests.
 */
export const QUIET: RunPipelineOptions = { durabilityRows: 1e9, durabilityIntervalMs: 1e12, progressIntervalMs: 1e12, checkpoints: false }

/** A real macrotask turn, so that file I/O callbacks of sinks can run. */
const macrotask = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** Builds `yaml` (with the queue source and `extra` plugins registered) and forks the run. */
export const startRun = (
  yaml: string,
  source: QueueSource,
  options: RunPipelineOptions = QUIET,
  extra: ReadonlyArray<AnyPlugin> = []
) =>
  Effect.gen(function*() {
    const plan = yield* buildPipeline(yield* parseSettings("settings.yaml", yaml, {}), makeRegistry([source.plugin, ...extra]))
    const fiber = yield* Effect.fork(runPipeline(plan, options))
    const settle = Effect.gen(function*() {
      for (let i = 0; i < 200; i++) {
        yield* TestClock.adjust(0)
        yield* macrotask
        if (fiber.unsafePoll() !== null || (yield* source.backlog) <= 0) break
      }
      yield* TestClock.adjust(0)
      yield* macrotask
      yield* TestClock.adjust(0)
    })
    const advance = (millis: number) => Effect.zipRight(settle, Effect.zipRight(TestClock.adjust(millis), settle))
    return { plan, fiber, source, settle, advance } satisfies StartedRun
  })

/** Current TestClock time in ms. */
export const nowMs: Effect.Effect<number> = Effect.map(TestClock.currentTimeMillis, Number)

/** ISO timestamp of a TestClock instant (the clock starts at 0). */
export const at = (millis: number): string => new Date(millis).toISOString()

/** Runs `query` after making everything appended so far visible in the database. */
export const trail = <A>(query: (sql: SqlClient.SqlClient) => Effect.Effect<A, SqlError>) =>
  Effect.gen(function*() {
    const recorder = yield* Recorder
    yield* Effect.orDie(recorder.flush)
    const sql = yield* SqlClient.SqlClient
    return yield* Effect.orDie(query(sql))
  })

/**
 * Ends the source and waits for the run's exit, settling between polls. Fails the test
 * (instead of hanging) when the run does not finish.
 */
export const finish = (run: StartedRun) =>
  Effect.gen(function*() {
    yield* run.source.end
    for (let i = 0; i < 500; i++) {
      const exit = yield* Fiber.poll(run.fiber)
      if (Option.isSome(exit)) return exit.value
      yield* run.settle
    }
    return yield* Effect.dieMessage("the run did not finish after its source ended")
  })

/** Rows a json sink wrote to `path` ([] when the sink never opened its file). */
export const readJsonSink = (path: string): Array<Record<string, unknown>> =>
  existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as Array<Record<string, unknown>>) : []

/** YAML of a json sink writing to `path`. */
export const jsonSinkYaml = (name: string, path: string): string =>
  `  ${name}: {plugin: json, options: {path: ${JSON.stringify(path)}, schema: {mode: observed}}}\n`
