/**
 * A run's export through its export sink (`landscape.export.format: json`): the
 * records go to a fresh instance of the sink's plugin, opened in a scope of its own —
 * never an instance the pipeline used.
 */
import { Chunk, Effect, Stream } from "effect"
import { ExportError } from "../../services/export-store.js"
import type { SinkStep } from "../build.js"
import type { ArtifactInfo, Row } from "../plugins/protocol.js"

/** Records handed to the export sink per `write`. */
const SINK_BATCH = 1_000

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)

/**
 * Streams `records` into a fresh instance of `step`, opened in its own scope:
 * on_start when acquired; flush → on_complete → close when the scope closes (on
 * success, failure and interruption alike). Returns the sink's artifact.
 */
export const writeThroughSink = <E, R>(
  step: SinkStep,
  records: Stream.Stream<{ readonly record_type: string }, E, R>
): Effect.Effect<ArtifactInfo | undefined, E | ExportError, R> =>
  Effect.gen(function*() {
    const problems: Array<string> = []
    let artifact: ArtifactInfo | undefined
    const sinkError = (what: string) => (e: unknown) =>
      new ExportError({ reason: "Sink", message: `export sink '${step.name}' ${what}: ${messageOf(e)}`, cause: e })
    const note = (what: string) => (e: unknown) => Effect.sync(() => void problems.push(sinkError(what)(e).message))

    const use = Effect.gen(function*() {
      const instance = yield* Effect.acquireRelease(
        Effect.gen(function*() {
          const created = yield* step.create().pipe(Effect.mapError(sinkError("cannot be created")))
          yield* created.onStart.pipe(
            Effect.mapError(sinkError("on_start")),
            Effect.tapError(() => created.close)
          )
          return created
        }),
        (opened) =>
          Effect.gen(function*() {
            yield* opened.flush.pipe(Effect.catchAll(note("flush")))
            yield* opened.onComplete.pipe(Effect.catchAll(note("on_complete")))
            yield* opened.close
            artifact = yield* opened.artifact.pipe(Effect.catchAll((e) => Effect.as(note("artifact")(e), undefined)))
          })
      )
      yield* records.pipe(
        Stream.rechunk(SINK_BATCH),
        Stream.runForEachChunk((chunk) =>
          instance.write(Chunk.toReadonlyArray(chunk) as unknown as ReadonlyArray<Row>).pipe(Effect.mapError(sinkError("write")))
        )
      )
    })
    yield* Effect.scoped(use)
    if (problems.length > 0) return yield* Effect.fail(new ExportError({ reason: "Sink", message: problems.join("; ") }))
    return artifact
  })
