/**
 * Orchestrator types. A leaf module: it imports nothing from the other orchestrator
 * modules, so they can all import from it without cycles.
 */
import { Data } from "effect"
import type { RunId } from "../../core/ids.js"

export type PipelineRunStatus = "completed" | "failed" | "interrupted"

/** What `run --json` prints (CONTRACTS.md). */
export interface RunResult {
  readonly run_id: RunId
  readonly status: PipelineRunStatus
  readonly rows_processed: number
  readonly rows_succeeded: number
  readonly rows_failed: number
  readonly rows_routed: number
  readonly rows_quarantined: number
  /** Rows a sink could not write and its `on_write_failure` diverted (DIVERTED). */
  readonly rows_diverted: number
  readonly rows_forked: number
  readonly rows_coalesced: number
  readonly rows_coalesce_failed: number
  readonly rows_expanded: number
  readonly rows_buffered: number
  readonly routed_destinations: Readonly<Record<string, number>>
  readonly export_status: "pending" | "completed" | "failed" | null
  /** `run_mode: verify`: how the live calls compared with the recorded run's. */
  readonly verification?: VerificationSummary
}

/** `run_mode: verify`: how the live calls compare with the recorded run's (in the RunResult). */
export interface VerificationSummary {
  readonly replay_from: string
  /** Calls made (one per row and external transform). */
  readonly calls: number
  readonly responses_matched: number
  readonly responses_differed: number
  readonly decisions_matched: number
  readonly decisions_differed: number
  /** Requests the recorded run never made. */
  readonly unmatched: number
}

/**
 * Counts of what a unit of work did to tokens: one row, one aggregation flush, one
 * durability point. An immutable value with `combine` (associative, commutative,
 * `empty` as identity); the run's result is the sum of all of them, so no counter is
 * kept by hand anywhere else.
 */
export class AggregationFlushResult extends Data.Class<{
  readonly succeeded: number
  readonly failed: number
  readonly routed: number
  readonly quarantined: number
  readonly diverted: number
  readonly coalesced: number
  readonly coalesceFailed: number
  readonly forked: number
  readonly expanded: number
  readonly buffered: number
  readonly routedDestinations: Readonly<Record<string, number>>
}> {
  static readonly empty: AggregationFlushResult = new AggregationFlushResult({
    succeeded: 0,
    failed: 0,
    routed: 0,
    quarantined: 0,
    diverted: 0,
    coalesced: 0,
    coalesceFailed: 0,
    forked: 0,
    expanded: 0,
    buffered: 0,
    routedDestinations: {}
  })

  static make(fields: Partial<AggregationFlushResult>): AggregationFlushResult {
    return new AggregationFlushResult({ ...AggregationFlushResult.empty, ...fields })
  }

  static combine(a: AggregationFlushResult, b: AggregationFlushResult): AggregationFlushResult {
    // Sink names are user text: own properties only, so `constructor`/`__proto__` count too.
    const routedDestinations: Record<string, number> = {}
    for (const side of [a.routedDestinations, b.routedDestinations]) {
      for (const [sink, n] of Object.entries(side)) {
        const before = Object.hasOwn(routedDestinations, sink) ? routedDestinations[sink]! : 0
        Object.defineProperty(routedDestinations, sink, { value: before + n, enumerable: true, writable: true, configurable: true })
      }
    }
    return new AggregationFlushResult({
      succeeded: a.succeeded + b.succeeded,
      failed: a.failed + b.failed,
      routed: a.routed + b.routed,
      quarantined: a.quarantined + b.quarantined,
      diverted: a.diverted + b.diverted,
      coalesced: a.coalesced + b.coalesced,
      coalesceFailed: a.coalesceFailed + b.coalesceFailed,
      forked: a.forked + b.forked,
      expanded: a.expanded + b.expanded,
      buffered: a.buffered + b.buffered,
      routedDestinations
    })
  }

  static combineAll(results: Iterable<AggregationFlushResult>): AggregationFlushResult {
    let acc = AggregationFlushResult.empty
    for (const r of results) acc = AggregationFlushResult.combine(acc, r)
    return acc
  }
}

/** Builds the RunResult from the run's summed counts. */
export const toRunResult = (
  runId: RunId,
  status: PipelineRunStatus,
  rowsProcessed: number,
  counts: AggregationFlushResult,
  exportStatus: RunResult["export_status"]
): RunResult => ({
  run_id: runId,
  status,
  rows_processed: rowsProcessed,
  rows_succeeded: counts.succeeded,
  rows_failed: counts.failed,
  rows_routed: counts.routed,
  rows_quarantined: counts.quarantined,
  rows_diverted: counts.diverted,
  rows_forked: counts.forked,
  rows_coalesced: counts.coalesced,
  rows_coalesce_failed: counts.coalesceFailed,
  rows_expanded: counts.expanded,
  rows_buffered: counts.buffered,
  routed_destinations: Object.fromEntries(
    Object.entries(counts.routedDestinations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  ),
  export_status: exportStatus
})

/** A route, `on_error` or quarantine destination that names no sink. Raised before any row is read. */
export class RouteValidationError extends Data.TaggedError("RouteValidationError")<{
  /** Key path in the settings, e.g. `gates[0].routes.true`. */
  readonly key: string
  readonly message: string
}> {}

/** The run stopped: a plugin crashed, a gate could not evaluate, the audit trail failed. */
export class PipelineRunError extends Data.TaggedError("PipelineRunError")<{
  readonly runId: RunId
  readonly message: string
  /** The run's result as recorded (status `failed`), when the run got far enough to have one. */
  readonly result?: RunResult
  readonly cause?: unknown
}> {}
