/**
 * What a pipeline run tells Telemetry beyond its lifecycle events, set up once per run
 * and only when asked: the per-outcome (and per-node-state) events of `granularity:
 * rows`/`full`, read from the records the run already makes, and one span per
 * aggregation flush when spans are exported. Nothing here runs per row otherwise.
 */
import { Context, Effect, Exit, Option, type Tracer } from "effect"
import type { AuditRecord } from "../../services/records.js"
import type { Telemetry, TelemetryEvent } from "../../services/telemetry.js"
import type { FlushObserver } from "./aggregation.js"

type TelemetryService = Context.Tag.Service<Telemetry>

/** For `granularity: rows` or `full`: emits the row events of staged records; undefined otherwise. */
export const rowEvents = (
  telemetry: TelemetryService,
  runId: string
): ((records: ReadonlyArray<AuditRecord>) => Effect.Effect<void>) | undefined => {
  const granularity = telemetry.granularity ?? "lifecycle"
  if (granularity === "lifecycle") return undefined
  const full = granularity === "full"
  return (records) =>
    Effect.suspend(() => {
      const events: Array<TelemetryEvent> = []
      for (const r of records) {
        if (r._tag === "Outcome") {
          events.push({ _tag: "RowOutcome", runId, tokenId: r.token_id, outcome: r.outcome, sink: r.sink_name, at: r.recorded_at })
        } else if (full && r._tag === "NodeState" && r.status !== "open") {
          events.push({ _tag: "NodeStateDone", runId, stateId: r.state_id, status: r.status, durationMs: r.duration_ms, at: r.completed_at ?? r.started_at })
        } else if (full && r._tag === "NodeStateCompletion") {
          events.push({ _tag: "NodeStateDone", runId, stateId: r.state_id, status: r.status, durationMs: r.duration_ms, at: r.completed_at })
        }
      }
      return Effect.forEach(events, telemetry.emit, { discard: true })
    })
}

/**
 * With spans exported: one `runledger.aggregation.flush` span per flush, a child of
 * the run's span, timed on the run's clock. Undefined otherwise.
 */
export const flushSpans = (
  telemetry: TelemetryService,
  tracer: Tracer.Tracer,
  parent: Option.Option<Tracer.AnySpan>,
  clock: { readonly unsafeCurrentTimeNanos: () => bigint },
  runId: string
): FlushObserver | undefined => {
  if (telemetry.tracing !== true) return undefined
  return ({ batchId, size, step, trigger }) => {
    const span = tracer.span("runledger.aggregation.flush", parent, Context.empty(), [], clock.unsafeCurrentTimeNanos(), "internal")
    span.attribute("runledger.run_id", runId)
    span.attribute("runledger.node", step.name)
    span.attribute("runledger.node_id", step.nodeId)
    span.attribute("runledger.plugin", step.plugin)
    span.attribute("runledger.batch_id", batchId)
    span.attribute("runledger.trigger", trigger)
    span.attribute("runledger.batch_size", size)
    return (ok) => span.end(clock.unsafeCurrentTimeNanos(), ok ? Exit.void : Exit.die(new Error(`aggregation '${step.name}' failed`)))
  }
}
