/**
 * OpenTelemetry export over OTLP/HTTP (JSON), through @effect/opentelemetry: the
 * Effect spans of a run (`runledger.run`, `runledger.commit`, `runledger.sink.write`,
 * `runledger.aggregation.flush`, `runledger.export`, the loop's `runledger.loop.*`)
 * become one trace per run, and the run's events become metrics (rows, outcomes,
 * durations). Spans and metrics are flushed when the layer's scope closes — after a
 * completed, failed or interrupted run — before the process exits.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer, Metric, MetricBoundaries, Option } from "effect"
import type { OtlpRequest } from "./telemetry-settings.js"
import { type Granularity, Telemetry, type TelemetryEvent } from "./telemetry.js"

const durationBoundaries = MetricBoundaries.exponential({ start: 1, factor: 4, count: 12 })

export const metrics = {
  runs: Metric.counter("runledger.runs", { description: "Runs finished, by kind and status" }),
  rows: Metric.counter("runledger.rows", { description: "Source rows processed by finished pipeline runs" }),
  outcomes: Metric.counter("runledger.outcomes", { description: "Tokens that reached a terminal outcome, by outcome and sink" }),
  runDuration: Metric.histogram("runledger.run.duration_ms", durationBoundaries, "Wall time of a run in milliseconds"),
  nodeDuration: Metric.counter("runledger.node.duration_ms", { description: "Summed node-state time per node in milliseconds" }),
  nodeStates: Metric.counter("runledger.node.states", { description: "Node states by node and status" }),
  phaseDuration: Metric.histogram("runledger.phase.duration_ms", durationBoundaries, "Wall time of a phase (export) in milliseconds")
}

const add = (metric: Metric.Metric.Counter<number>, value: number, tags: Record<string, string>) =>
  Metric.incrementBy(Object.entries(tags).reduce((m, [k, v]) => Metric.tagged(m, k, v), metric), value)

const observe = (metric: Metric.Metric.Histogram<number>, value: number, tags: Record<string, string>) =>
  Metric.update(Object.entries(tags).reduce((m, [k, v]) => Metric.tagged(m, k, v), metric), value)

const RESULT_OUTCOMES: ReadonlyArray<readonly [string, string]> = [
  ["rows_succeeded", "succeeded"],
  ["rows_failed", "failed"],
  ["rows_routed", "routed"],
  ["rows_quarantined", "quarantined"]
]

/** The metrics of one event; lifecycle events also become events of the current span. */
const recordEvent = (event: TelemetryEvent): Effect.Effect<void> => {
  switch (event._tag) {
    case "RunStarted":
      return Effect.annotateCurrentSpan({ "runledger.run_id": event.runId, "runledger.kind": event.kind })
    case "RunFinished": {
      const result = event.result ?? {}
      const kind = typeof result["rows_processed"] === "number" ? "pipeline" : "loop"
      const rows = result["rows_processed"]
      const effects: Array<Effect.Effect<void>> = [
        add(metrics.runs, 1, { kind, status: event.status }),
        Effect.annotateCurrentSpan({ "runledger.status": event.status })
      ]
      if (typeof rows === "number") {
        effects.push(add(metrics.rows, rows, { status: event.status }))
        for (const [key, name] of RESULT_OUTCOMES) {
          const n = result[key]
          if (typeof n === "number") effects.push(Effect.annotateCurrentSpan(`runledger.rows.${name}`, n))
        }
        effects.push(Effect.annotateCurrentSpan("runledger.rows", rows))
      }
      if (event.durationMs !== undefined) effects.push(observe(metrics.runDuration, event.durationMs, { kind, status: event.status }))
      return Effect.all(effects, { discard: true })
    }
    case "SinkSummary":
      return Effect.forEach(Object.entries(event.outcomes), ([outcome, n]) => add(metrics.outcomes, n, { outcome, sink: event.sink }), {
        discard: true
      })
    case "NodeSummary":
      return Effect.zipRight(
        add(metrics.nodeDuration, event.durationMs, { node: event.node, node_type: event.nodeType }),
        Effect.forEach(Object.entries(event.states), ([status, n]) => add(metrics.nodeStates, n, { node: event.node, status }), { discard: true })
      )
    case "PhaseDone":
      return observe(metrics.phaseDuration, event.durationMs, { phase: event.phase })
    case "Progress":
      return Effect.flatMap(Effect.option(Effect.currentSpan), (span) =>
        Effect.sync(() => {
          if (Option.isSome(span)) span.value.event("runledger.progress", BigInt(Date.now()) * 1_000_000n, { rows: event.rows, elapsed_ms: event.elapsedMs })
        }))
    case "TriggerEvent":
      return Effect.flatMap(Effect.option(Effect.currentSpan), (span) =>
        Effect.sync(() => {
          if (Option.isSome(span)) span.value.event(event.line, BigInt(Date.parse(event.at)) * 1_000_000n)
        }))
    default:
      return Effect.void
  }
}

/**
 * Below `granularity: full`, only runledger's own spans are exported: the Landscape's
 * SQL statements (`sql.*` spans of @effect/sql) would be many per commit.
 */
const runledgerSpans = (inner: SpanProcessor, all: boolean): SpanProcessor =>
  all ? inner : {
    onStart: (span, context) => inner.onStart(span, context),
    onEnd: (span) => {
      if (!span.name.startsWith("sql.")) inner.onEnd(span)
    },
    forceFlush: () => inner.forceFlush(),
    shutdown: () => inner.shutdown()
  }

/**
 * The OTLP exporter: installs the tracer and the metric reader for the scope and
 * provides the Telemetry that records the events as metrics. `service` names the
 * resource (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are honoured as well).
 */
export const OtelTelemetry = (
  request: OtlpRequest,
  options: { readonly granularity: Granularity; readonly version?: string }
): Layer.Layer<Telemetry> => {
  const headers = { ...request.headers }
  const sdk = NodeSdk.layer(() => ({
    resource: {
      serviceName: process.env["OTEL_SERVICE_NAME"] ?? "runledger",
      ...(options.version === undefined ? {} : { serviceVersion: options.version })
    },
    spanProcessor: runledgerSpans(
      new BatchSpanProcessor(new OTLPTraceExporter({ url: `${request.endpoint}/v1/traces`, headers }), {
        maxQueueSize: 65_536,
        ...(request.batchSize === undefined ? {} : { maxExportBatchSize: request.batchSize })
      }),
      options.granularity === "full"
    ),
    metricReader: new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter({ url: `${request.endpoint}/v1/metrics`, headers }),
      exportIntervalMillis: 60_000
    }),
    shutdownTimeout: "5 seconds"
  }))
  const telemetry = Layer.succeed(Telemetry, {
    emit: (event) => recordEvent(event).pipe(Effect.catchAllDefect(() => Effect.void)),
    granularity: options.granularity,
    tracing: true
  })
  return Layer.merge(telemetry, Layer.discard(sdk))
}
