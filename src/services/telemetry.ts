import * as FileSystem from "@effect/platform/FileSystem"
import { Context, Effect, Fiber, Layer, Queue, Schema } from "effect"

/** Domain events. Telemetry never fails a run: a failed write is dropped. */
export const RunStarted = Schema.TaggedStruct("RunStarted", {
  runId: Schema.String,
  kind: Schema.Literal("pipeline", "loop"),
  at: Schema.String
})
export const Progress = Schema.TaggedStruct("Progress", {
  runId: Schema.String,
  rows: Schema.Number,
  elapsedMs: Schema.Number
})
export const PhaseDone = Schema.TaggedStruct("PhaseDone", {
  runId: Schema.String,
  phase: Schema.String,
  durationMs: Schema.Number
})
export const RunFinished = Schema.TaggedStruct("RunFinished", {
  runId: Schema.String,
  status: Schema.String,
  at: Schema.String
})
/** Loop trigger lines, e.g. `[trigger] session_end started: issue_id=X`. */
export const TriggerEvent = Schema.TaggedStruct("TriggerEvent", {
  runId: Schema.String,
  line: Schema.String,
  at: Schema.String
})
export const Warning = Schema.TaggedStruct("Warning", {
  message: Schema.String
})

export const TelemetryEvent = Schema.Union(RunStarted, Progress, PhaseDone, RunFinished, TriggerEvent, Warning)
export type TelemetryEvent = typeof TelemetryEvent.Type

export class Telemetry extends Context.Tag("runledger/Telemetry")<Telemetry, {
  readonly emit: (event: TelemetryEvent) => Effect.Effect<void>
}>() {}

/** Default for library use: events go nowhere. */
export const TelemetryNoop: Layer.Layer<Telemetry> = Layer.succeed(Telemetry, { emit: () => Effect.void })

const describe = (event: TelemetryEvent): string | undefined => {
  switch (event._tag) {
    case "TriggerEvent":
      return event.line
    case "Warning":
      return `warning: ${event.message}`
    case "RunStarted":
    case "RunFinished":
    case "PhaseDone":
      return undefined
    case "Progress":
      return undefined
  }
}

/**
 * Human-readable lines on stderr. On a TTY, progress events redraw one status line
 * (rows, rows/s, elapsed); elsewhere they are not printed at all.
 */
export const TelemetryConsole: Layer.Layer<Telemetry> = Layer.sync(Telemetry, () => {
  const tty = process.stderr.isTTY === true
  let progressShown = false
  const clearProgress = () => {
    if (progressShown) {
      process.stderr.write("\r\x1b[2K")
      progressShown = false
    }
  }
  return {
    emit: (event) =>
      Effect.sync(() => {
        if (event._tag === "Progress") {
          if (!tty) return
          const seconds = event.elapsedMs / 1000
          const rate = seconds > 0 ? Math.round(event.rows / seconds) : 0
          process.stderr.write(`\r\x1b[2K${event.rows} rows  ${rate} rows/s  ${seconds.toFixed(1)}s`)
          progressShown = true
          return
        }
        const line = describe(event)
        if (line === undefined) return
        clearProgress()
        process.stderr.write(line + "\n")
      })
  }
})

/**
 * One JSON object per line, appended to `path`. Writes go through a queue drained by
 * a background fiber so that emitting never waits on the disk; the scope drains it.
 */
export const TelemetryJsonl = (path: string): Layer.Layer<Telemetry, never, FileSystem.FileSystem> =>
  Layer.scoped(
    Telemetry,
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const queue = yield* Queue.unbounded<string>()
      const encode = Schema.encodeSync(TelemetryEvent)
      const append = (lines: Iterable<string>) => {
        const all = Array.from(lines)
        return all.length === 0
          ? Effect.void
          : fs.writeFileString(path, all.join("\n") + "\n", { flag: "a" }).pipe(Effect.ignore)
      }
      const writeBatch = Effect.zipWith(Queue.take(queue), Queue.takeAll(queue), (first, rest) => [first, ...rest])
        .pipe(Effect.flatMap(append))
      const writer = yield* Effect.forkScoped(Effect.forever(writeBatch))
      // Whatever the writer had not taken yet is written when the scope closes.
      yield* Effect.addFinalizer(() =>
        Fiber.interrupt(writer).pipe(Effect.zipRight(Queue.takeAll(queue)), Effect.flatMap(append))
      )
      return {
        emit: (event: TelemetryEvent) =>
          Effect.sync(() => JSON.stringify(encode(event))).pipe(
            Effect.flatMap((line) => Queue.offer(queue, line)),
            Effect.asVoid,
            Effect.catchAllDefect(() => Effect.void)
          )
      }
    })
  )

/** Sends every event to each of `layers` (e.g. the console and a JSONL file). */
export const TelemetryTee = <E, R>(...layers: ReadonlyArray<Layer.Layer<Telemetry, E, R>>): Layer.Layer<Telemetry, E, R> =>
  Layer.scoped(
    Telemetry,
    Effect.gen(function*() {
      const services = yield* Effect.forEach(layers, (layer) =>
        Effect.map(Layer.build(layer), (context) => Context.get(context, Telemetry)))
      return { emit: (event: TelemetryEvent) => Effect.forEach(services, (s) => s.emit(event), { discard: true }) }
    })
  )
