/**
 * runledger inside your own Effect program: load and build a pipeline, run it with
 * your own timeout and retry policy, then ask the Landscape about the run — all as one
 * Effect, with the layers provided once at the edge.
 *
 * The test suite typechecks and runs it (tests/e2e/library.test.ts).
 */
import { Duration, Effect, Layer } from "effect"
import {
  buildPipeline,
  loadPipelineSettings,
  Recorder,
  runPipeline,
  SqliteLandscape,
  TelemetryNoop
} from "../../src/index.js"

/** Runs the pipeline at `settingsPath` and returns its result with the run's trail counts. */
export const runAndSummarize = (settingsPath: string) =>
  Effect.gen(function*() {
    const loaded = yield* loadPipelineSettings(settingsPath)
    const plan = yield* buildPipeline(loaded)
    // Your own policies compose with runledger's program like any other Effect: a
    // timeout interrupts the run, which is then recorded `interrupted`.
    const result = yield* runPipeline(plan).pipe(Effect.timeout(Duration.minutes(10)))
    const recorder = yield* Recorder
    const run = yield* recorder.getRun(result.run_id)
    return { result, trail: run.counts }
  })

/** The edge: an in-memory Landscape by default, a file when `db` is given. */
export const main = (settingsPath: string, db = ":memory:") =>
  runAndSummarize(settingsPath).pipe(
    Effect.provide(Layer.merge(SqliteLandscape(db), TelemetryNoop)),
    Effect.scoped
  )
