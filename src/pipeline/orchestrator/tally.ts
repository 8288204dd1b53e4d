/**
 * The mutable counterpart of AggregationFlushResult for the hot path: each unit of
 * work counts its outcomes in a Tally and turns it into an immutable
 * AggregationFlushResult, and the run sums those.
 */
import type { Outcome } from "../../services/records.js"
import { setField } from "../plugins/protocol.js"
import { AggregationFlushResult } from "./types.js"

export class Tally {
  private readonly n: Record<string, number> = {}
  private readonly routed: Record<string, number> = {}
  private counted = 0

  /** Nothing counted yet (draining it would add nothing to the run's totals). */
  isEmpty(): boolean {
    return this.counted === 0
  }

  add(outcome: Outcome, sinkName: string | undefined): void {
    this.counted++
    this.n[outcome] = (this.n[outcome] ?? 0) + 1
    if (outcome === "ROUTED" && sinkName !== undefined) {
      // Sink names are user text: `constructor` or `__proto__` must count like any other.
      setField(this.routed, sinkName, (Object.hasOwn(this.routed, sinkName) ? this.routed[sinkName]! : 0) + 1)
    }
  }

  addFailedCoalesce(): void {
    this.counted++
    this.n.COALESCE_FAILED = (this.n.COALESCE_FAILED ?? 0) + 1
  }

  toResult(): AggregationFlushResult {
    const n = this.n
    return AggregationFlushResult.make({
      succeeded: n.COMPLETED ?? 0,
      failed: n.FAILED ?? 0,
      routed: n.ROUTED ?? 0,
      quarantined: n.QUARANTINED ?? 0,
      diverted: n.DIVERTED ?? 0,
      coalesced: n.COALESCED ?? 0,
      coalesceFailed: n.COALESCE_FAILED ?? 0,
      forked: n.FORKED ?? 0,
      expanded: n.EXPANDED ?? 0,
      buffered: n.BUFFERED ?? 0,
      routedDestinations: { ...this.routed }
    })
  }
}
