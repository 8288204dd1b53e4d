/**
 * AggregationFlushResult: the run's counts are sums of these, so `combine` must be a
 * commutative monoid with `empty` as identity, and no counter may land in another's
 * field — neither in `combine`, nor in the Tally that builds them, nor in the RunResult.
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import type { RunId } from "../../src/core/ids.js"
import type { Outcome } from "../../src/services/records.js"
import { Tally } from "../../src/pipeline/orchestrator/tally.js"
import { AggregationFlushResult, toRunResult } from "../../src/pipeline/orchestrator/types.js"

const COUNTERS = [
  "succeeded",
  "failed",
  "routed",
  "quarantined",
  "coalesced",
  "coalesceFailed",
  "forked",
  "expanded",
  "buffered",
  "diverted"
] as const

/** A plain, key-order-independent view (Data.Class equality compares the destinations object by reference). */
const view = (r: AggregationFlushResult) => ({
  ...Object.fromEntries(COUNTERS.map((k) => [k, r[k]])),
  routedDestinations: Object.entries(r.routedDestinations).filter(([, n]) => n !== 0).sort(([a], [b]) => a.localeCompare(b))
})

const count = fc.nat({ max: 1_000_000 })
const arbResultOver = (sinkNames: fc.Arbitrary<string>): fc.Arbitrary<AggregationFlushResult> => fc
  .record({
    succeeded: count,
    failed: count,
    routed: count,
    quarantined: count,
    coalesced: count,
    coalesceFailed: count,
    forked: count,
    expanded: count,
    buffered: count,
    diverted: count,
    routedDestinations: fc.dictionary(sinkNames, count)
  })
  .map((fields) => {
    // Own keys even for `__proto__`, as the settings loader builds sink names.
    const dest: Record<string, number> = {}
    for (const [k, v] of Object.entries(fields.routedDestinations)) Object.defineProperty(dest, k, { value: v, enumerable: true, writable: true, configurable: true })
    return new AggregationFlushResult({ ...fields, routedDestinations: dest })
  })

const arbResult = arbResultOver(fc.constantFrom("out", "errors", "high", "low", "quarantine"))

const snapshot = (r: AggregationFlushResult) => JSON.stringify({ ...view(r), raw: Object.entries(r.routedDestinations) })

describe("AggregationFlushResult.combine", () => {
  it.prop("is associative", [arbResult, arbResult, arbResult], ([a, b, c]) => {
    const C = AggregationFlushResult.combine
    assert.deepStrictEqual(view(C(C(a, b), c)), view(C(a, C(b, c))))
  })

  it.prop("is commutative", [arbResult, arbResult], ([a, b]) => {
    assert.deepStrictEqual(view(AggregationFlushResult.combine(a, b)), view(AggregationFlushResult.combine(b, a)))
  })

  it.prop("has `empty` as identity on both sides, routedDestinations included", [arbResult], ([a]) => {
    const empty = AggregationFlushResult.empty
    const left = AggregationFlushResult.combine(empty, a)
    const right = AggregationFlushResult.combine(a, empty)
    assert.deepStrictEqual(view(left), view(a))
    assert.deepStrictEqual(view(right), view(a))
    assert.deepStrictEqual(Object.entries(left.routedDestinations), Object.entries(a.routedDestinations))
  })

  it.prop("never mutates its arguments, nor shares a destinations object with them", [arbResult, arbResult], ([a, b]) => {
    const [sa, sb, se] = [snapshot(a), snapshot(b), snapshot(AggregationFlushResult.empty)]
    const c = AggregationFlushResult.combine(a, b)
    assert.notStrictEqual(c.routedDestinations, a.routedDestinations)
    assert.notStrictEqual(c.routedDestinations, b.routedDestinations)
    ;(c.routedDestinations as Record<string, number>)["out"] = -1
    const e = AggregationFlushResult.combine(AggregationFlushResult.empty, a)
    ;(e.routedDestinations as Record<string, number>)["mutated"] = 1
    assert.strictEqual(snapshot(a), sa)
    assert.strictEqual(snapshot(b), sb)
    assert.strictEqual(snapshot(AggregationFlushResult.empty), se)
  })

  it.prop("sums every field, each into itself", [arbResult, arbResult], ([a, b]) => {
    const c = AggregationFlushResult.combine(a, b)
    for (const k of COUNTERS) assert.strictEqual(c[k], a[k] + b[k], k)
    const sinks = new Set([...Object.keys(a.routedDestinations), ...Object.keys(b.routedDestinations)])
    assert.deepStrictEqual(new Set(Object.keys(c.routedDestinations)), sinks)
    for (const s of sinks) {
      assert.strictEqual(c.routedDestinations[s], (a.routedDestinations[s] ?? 0) + (b.routedDestinations[s] ?? 0), s)
    }
  })

  it("sinks named like Object.prototype members are counted like any other", () => {
    const a = AggregationFlushResult.make({ routedDestinations: { constructor: 1 } })
    const b = AggregationFlushResult.make({ routedDestinations: JSON.parse(`{"__proto__": 2, "toString": 3}`) as Record<string, number> })
    const c = AggregationFlushResult.combine(AggregationFlushResult.combine(AggregationFlushResult.empty, a), b)
    assert.deepStrictEqual(Object.entries(c.routedDestinations), [["constructor", 1], ["__proto__", 2], ["toString", 3]])
    const tally = new Tally()
    tally.add("ROUTED", "constructor")
    assert.deepStrictEqual(tally.toResult().routedDestinations, { constructor: 1 })
  })

  it.prop("combineAll is the fold of combine from empty", [fc.array(arbResult, { maxLength: 6 })], ([rs]) => {
    const folded = rs.reduce(AggregationFlushResult.combine, AggregationFlushResult.empty)
    assert.deepStrictEqual(view(AggregationFlushResult.combineAll(rs)), view(folded))
  })
})

describe("field mapping (no swapped counters)", () => {
  // Distinct powers of two: any swap or double count changes some field.
  const distinct = new AggregationFlushResult({
    succeeded: 1,
    failed: 2,
    routed: 4,
    quarantined: 8,
    coalesced: 16,
    coalesceFailed: 32,
    forked: 64,
    expanded: 128,
    buffered: 256,
    diverted: 512,
    routedDestinations: { sink1: 1024 }
  })

  it("every field is readable by name with its own value", () => {
    assert.deepStrictEqual(
      COUNTERS.map((k) => distinct[k]),
      [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    )
    assert.deepStrictEqual(distinct.routedDestinations, { sink1: 1024 })
  })

  it("empty and make default to 0 and {}", () => {
    for (const k of COUNTERS) assert.strictEqual(AggregationFlushResult.empty[k], 0, k)
    assert.deepStrictEqual(AggregationFlushResult.empty.routedDestinations, {})
    const made = AggregationFlushResult.make({ failed: 3 })
    for (const k of COUNTERS) assert.strictEqual(made[k], k === "failed" ? 3 : 0, k)
    assert.deepStrictEqual(made.routedDestinations, {})
  })

  it("combine adds the seed plan's example field by field", () => {
    const a = AggregationFlushResult.make({ succeeded: 1, failed: 2, routed: 3, quarantined: 4, coalesced: 5, forked: 6, expanded: 7, buffered: 8, coalesceFailed: 9, routedDestinations: { sink1: 10 } })
    const b = AggregationFlushResult.make({ succeeded: 10, failed: 20, routed: 30, quarantined: 40, coalesced: 50, forked: 60, expanded: 70, buffered: 80, coalesceFailed: 90, routedDestinations: { sink1: 5, sink2: 15 } })
    const c = AggregationFlushResult.combine(a, b)
    assert.deepStrictEqual(
      [c.succeeded, c.failed, c.routed, c.quarantined, c.coalesced, c.forked, c.expanded, c.buffered, c.coalesceFailed],
      [11, 22, 33, 44, 55, 66, 77, 88, 99]
    )
    assert.deepStrictEqual(c.routedDestinations, { sink1: 15, sink2: 15 })
  })

  it("toRunResult puts each counter in its own RunResult field, destinations sorted", () => {
    const r = toRunResult("run_x" as RunId, "completed", 1024, AggregationFlushResult.combine(distinct, AggregationFlushResult.make({ routedDestinations: { a: 1 } })), null)
    assert.deepStrictEqual(r, {
      run_id: "run_x" as RunId,
      status: "completed",
      rows_processed: 1024,
      rows_succeeded: 1,
      rows_failed: 2,
      rows_routed: 4,
      rows_quarantined: 8,
      rows_diverted: 512,
      rows_coalesced: 16,
      rows_coalesce_failed: 32,
      rows_forked: 64,
      rows_expanded: 128,
      rows_buffered: 256,
      routed_destinations: { a: 1, sink1: 1024 },
      export_status: null
    })
    assert.deepStrictEqual(Object.keys(r.routed_destinations), ["a", "sink1"])
  })

  it("Tally maps each outcome to its own counter (CONSUMED_IN_BATCH counts nowhere)", () => {
    const tally = new Tally()
    const plan: ReadonlyArray<readonly [Outcome, number, string | undefined]> = [
      ["COMPLETED", 1, undefined],
      ["FAILED", 2, undefined],
      ["ROUTED", 3, "errors"],
      ["ROUTED", 1, "high"],
      ["QUARANTINED", 8, undefined],
      ["COALESCED", 16, undefined],
      ["FORKED", 64, undefined],
      ["EXPANDED", 128, undefined],
      ["BUFFERED", 256, undefined],
      ["DIVERTED", 512, "failed"],
      ["CONSUMED_IN_BATCH", 5, undefined]
    ]
    for (const [outcome, n, sink] of plan) for (let i = 0; i < n; i++) tally.add(outcome, sink)
    for (let i = 0; i < 32; i++) tally.addFailedCoalesce()
    const expected = new AggregationFlushResult({ ...distinct, routedDestinations: { errors: 3, high: 1 } })
    assert.deepStrictEqual(view(tally.toResult()), view(expected))
  })
})
