import * as FileSystem from "@effect/platform/FileSystem"
import { Context, Deferred, Effect, Layer, Queue, Schema } from "effect"

/**
 * Domain events of a run, for operators (dashboards, logs); the Landscape stays the
 * record. Telemetry never fails a run: a failed write is dropped.
 */
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
/** One sink of a finished pipeline run: its terminal outcomes and the files it wrote. */
export const SinkSummary = Schema.TaggedStruct("SinkSummary", {
  runId: Schema.String,
  sink: Schema.String,
  tokens: Schema.Number,
  outcomes: Schema.Record({ key: Schema.String, value: Schema.Number }),
  artifacts: Schema.Array(Schema.Struct({ path: Schema.String, bytes: Schema.Number, hash: Schema.String }))
})
/** One node of a finished pipeline run: its node states by status and their summed duration. */
export const NodeSummary = Schema.TaggedStruct("NodeSummary", {
  runId: Schema.String,
  nodeId: Schema.String,
  node: Schema.String,
  nodeType: Schema.String,
  plugin: Schema.String,
  states: Schema.Record({ key: Schema.String, value: Schema.Number }),
  durationMs: Schema.Number
})
/** With `granularity: rows` (or `full`): one token reached an outcome. */
export const RowOutcome = Schema.TaggedStruct("RowOutcome", {
  runId: Schema.String,
  tokenId: Schema.String,
  outcome: Schema.String,
  sink: Schema.NullOr(Schema.String),
  at: Schema.String
})
/** With `granularity: full`: one node state of a token ended. */
export const NodeStateDone = Schema.TaggedStruct("NodeStateDone", {
  runId: Schema.String,
  stateId: Schema.String,
  status: Schema.String,
  durationMs: Schema.NullOr(Schema.Number),
  at: Schema.String
})
export const RunFinished = Schema.TaggedStruct("RunFinished", {
  runId: Schema.String,
  status: Schema.String,
  at: Schema.String,
  /** Milliseconds from RunStarted to the end of the run (pipelines). */
  durationMs: Schema.optional(Schema.Number),
  /** The run's RunResult (pipelines), as `run --json` prints it. */
  result: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
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

export const TelemetryEvent = Schema.Union(
  RunStarted,
  Progress,
  PhaseDone,
  SinkSummary,
  NodeSummary,
  RowOutcome,
  NodeStateDone,
  RunFinished,
  TriggerEvent,
  Warning
)
export type TelemetryEvent = typeof TelemetryEvent.Type

/** How much a run reports: `lifecycle` (the default), `rows` (+ one event per outcome), `full` (+ node states). */
export type Granularity = "lifecycle" | "rows" | "full"

export class Telemetry extends Context.Tag("runledger/Telemetry")<Telemetry, {
  readonly emit: (event: TelemetryEvent) => Effect.Effect<void>
  /**
   * What the run should report beyond its lifecycle events; absent means
   * `lifecycle`. The orchestrator looks at records only when this asks for rows.
   */
  readonly granularity?: Granularity
  /**
   * Spans are exported (OpenTelemetry): the orchestrator then also times each
   * aggregation flush as a span of its own.
   */
  readonly tracing?: boolean
}>() {}

/** Default for library use: events go nowhere. */
export const TelemetryNoop: Layer.Layer<Telemetry> = Layer.succeed(Telemetry, { emit: () => Effect.void })

const describe = (event: TelemetryEvent): string | undefined => {
  switch (event._tag) {
    case "TriggerEvent":
      return event.line
    case "Warning":
      return `warning: ${event.message}`
    default:
      return undefined
  }
}

/** Colour and cursor control only on a terminal, and never with NO_COLOR set. */
export const ansiAllowed = (stream: { readonly isTTY?: boolean }, env: Readonly<Record<string, string | undefined>> = process.env) =>
  stream.isTTY === true && (env["NO_COLOR"] ?? "") === "" && env["TERM"] !== "dumb"

/**
 * Human-readable lines on stderr. On a terminal, progress events redraw one status
 * line (rows, rows/s, elapsed); elsewhere (a pipe, a file, NO_COLOR, TERM=dumb) they
 * are not printed at all, so stderr holds no escape sequences.
 */
export const TelemetryConsole: Layer.Layer<Telemetry> = Layer.sync(Telemetry, () => {
  const tty = ansiAllowed(process.stderr)
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

const END = Symbol("end of telemetry")

/**
 * Encoded events written in order by one background fiber, so that emitting never
 * waits on the disk. When the scope closes (a finished, failed or interrupted run)
 * the writer is not interrupted: it is told to stop after the last queued event,
 * and the scope waits until everything queued is written, then `close` runs.
 */
const orderedWriter = (
  write: (text: string) => Effect.Effect<void>,
  close: Effect.Effect<void>,
  format?: (event: TelemetryEvent) => string
) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<string | typeof END>()
    const done = yield* Deferred.make<void>()
    const encode = Schema.encodeSync(TelemetryEvent)
    const loop: Effect.Effect<void> = Effect.gen(function*() {
      while (true) {
        const batch = yield* Queue.takeBetween(queue, 1, Number.POSITIVE_INFINITY)
        const lines: Array<string> = []
        let last = false
        for (const item of batch) {
          if (item === END) last = true
          else lines.push(item)
        }
        if (lines.length > 0) yield* write(lines.join("\n") + "\n")
        if (last) return
      }
    })
    // A daemon: the scope's own interruption of forked fibers must not cut a write short.
    yield* Effect.forkDaemon(Effect.ensuring(loop, Deferred.succeed(done, undefined)))
    yield* Effect.addFinalizer(() =>
      Queue.offer(queue, END).pipe(Effect.zipRight(Deferred.await(done)), Effect.zipRight(close), Effect.uninterruptible)
    )
    return (event: TelemetryEvent) =>
      Effect.sync(() => {
        queue.unsafeOffer(format === undefined ? JSON.stringify(encode(event)) : format(event))
      }).pipe(Effect.catchAllDefect(() => Effect.void))
  })

/**
 * One JSON object per line, appended to `path` (created when missing). Every event
 * emitted before the layer's scope closes is in the file, in emission order, and the
 * file is synced and closed when the scope closes — after a completed, failed or
 * interrupted (Ctrl-C) run alike.
 */
export const TelemetryJsonl = (path: string): Layer.Layer<Telemetry, never, FileSystem.FileSystem> =>
  Layer.scoped(
    Telemetry,
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      // Opened for the scope: closed by the scope after the writer's finalizer (LIFO).
      const file = yield* fs.open(path, { flag: "a" }).pipe(Effect.option)
      if (file._tag === "None") {
        process.stderr.write(`warning: telemetry: cannot open ${path}; events are not written\n`)
        return { emit: () => Effect.void }
      }
      const bytes = new TextEncoder()
      const emit = yield* orderedWriter(
        (text) => file.value.writeAll(bytes.encode(text)).pipe(Effect.ignore),
        file.value.sync.pipe(Effect.ignore)
      )
      return { emit }
    })
  )

/** `RunFinished run_id=run_… status=completed …`: an event as one line of text. */
export const eventText = (event: TelemetryEvent): string => {
  const { _tag, ...fields } = Schema.encodeSync(TelemetryEvent)(event) as { _tag: string } & Record<string, unknown>
  const parts = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
  return [`[telemetry] ${_tag}`, ...parts].join(" ")
}

/**
 * ELSPETH's console exporter: every event as one line on stderr (or stdout) — a JSON
 * object (`json`), or `[telemetry] Tag key=value …` (`pretty`).
 */
export const TelemetryStream = (stream: NodeJS.WritableStream, format: "json" | "pretty" = "json"): Layer.Layer<Telemetry> =>
  Layer.scoped(
    Telemetry,
    Effect.map(
      orderedWriter(
        (text) => Effect.sync(() => void stream.write(text)),
        Effect.void,
        format === "json" ? undefined : eventText
      ),
      (emit) => ({ emit })
    )
  )

const GRANULARITY_ORDER: ReadonlyArray<Granularity> = ["lifecycle", "rows", "full"]

/** Sends every event to each of `layers` (e.g. the console and a JSONL file), in order. */
export const TelemetryTee = <E, R>(...layers: ReadonlyArray<Layer.Layer<Telemetry, E, R>>): Layer.Layer<Telemetry, E, R> =>
  Layer.scoped(
    Telemetry,
    Effect.gen(function*() {
      const services = yield* Effect.forEach(layers, (layer) =>
        Effect.map(Layer.build(layer), (context) => Context.get(context, Telemetry)))
      const granularity = services.reduce<Granularity>((g, s) => {
        const other = s.granularity ?? "lifecycle"
        return GRANULARITY_ORDER.indexOf(other) > GRANULARITY_ORDER.indexOf(g) ? other : g
      }, "lifecycle")
      return {
        emit: (event: TelemetryEvent) => Effect.forEach(services, (s) => s.emit(event), { discard: true }),
        granularity,
        tracing: services.some((s) => s.tracing === true)
      }
    })
  )

/**
 * `layer`, with `before` run on every event first: the events it returns are emitted
 * ahead of the event itself (the per-sink and per-node summaries ahead of RunFinished).
 */
export const TelemetryEnriched = <E, R, R2>(
  layer: Layer.Layer<Telemetry, E, R>,
  before: (event: TelemetryEvent) => Effect.Effect<ReadonlyArray<TelemetryEvent>, never, R2>
): Layer.Layer<Telemetry, E, R | R2> =>
  Layer.scoped(
    Telemetry,
    Effect.gen(function*() {
      const inner = Context.get(yield* Layer.build(layer), Telemetry)
      const context = yield* Effect.context<R2>()
      return {
        ...inner,
        emit: (event: TelemetryEvent) =>
          before(event).pipe(
            Effect.provide(context),
            Effect.flatMap((extra) => Effect.forEach(extra, inner.emit, { discard: true })),
            Effect.zipRight(inner.emit(event))
          )
      }
    })
  )
