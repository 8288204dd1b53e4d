/**
 * Conservation over random pipelines under the TestClock: random triggers and output
 * modes, 0–2 aggregations, an optional route gate, an optional fork with a random
 * coalesce policy and merge, 0–40 rows arriving in random chunks with random gaps.
 *
 * After each run: the Landscape invariants (one terminal outcome per token, no open
 * node state, RunResult = trail), plus what they do not cover: rows_buffered,
 * rows_coalesce_failed and routed_destinations against the trail, token lineage
 * (every derived token has parents whose outcome says why), batch bookkeeping, and
 * every source row and every durable outcome accounted for in the trail and the sinks.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, TestClock } from "effect"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import type { RunPipelineOptions } from "../../src/pipeline/orchestrator/run.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import { finish, jsonSinkYaml, makeQueueSource, QUIET, readJsonSink, startRun, TestLandscape, trail } from "../support/queue-source.js"

const dir = mkdtempSync(join(tmpdir(), "rl-conservation-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let runs = 0

// ---------------------------------------------------------------------------
// Random pipelines

interface Trigger {
  readonly count?: number
  readonly timeout?: number
  readonly condition?: number
}

interface Aggregation {
  readonly plugin: "batch_stats" | "batch_replicate"
  readonly mode: "transform" | "passthrough"
  readonly trigger: Trigger
  readonly copies: number
}

interface Fork {
  readonly policy: "require_all" | "quorum" | "best_effort" | "first"
  readonly quorum: number
  readonly merge: "union" | "nested" | "select"
  readonly select: "a" | "b"
  readonly timeout: number | undefined
  /** Branch `b` comes from a second gate, for even rows only (odd rows leave a group pending). */
  readonly split: boolean
}

interface Scenario {
  readonly aggregations: ReadonlyArray<Aggregation>
  readonly route: boolean
  readonly fork: Fork | undefined
  readonly chunks: ReadonlyArray<{ readonly gap: number; readonly rows: ReadonlyArray<number> }>
  readonly tail: number
  readonly durable: boolean
}

const arbTrigger: fc.Arbitrary<Trigger> = fc
  .record(
    {
      count: fc.integer({ min: 1, max: 4 }),
      timeout: fc.constantFrom(0.5, 1, 2.5, 4),
      condition: fc.integer({ min: 1, max: 4 })
    },
    { requiredKeys: [] }
  )
  .filter((t) => t.count !== undefined || t.timeout !== undefined || t.condition !== undefined)

const arbAggregation: fc.Arbitrary<Aggregation> = fc.oneof(
  fc.record({ plugin: fc.constant("batch_stats" as const), mode: fc.constant("transform" as const), trigger: arbTrigger, copies: fc.constant(1) }),
  fc.record({
    plugin: fc.constant("batch_replicate" as const),
    mode: fc.constantFrom("transform" as const, "passthrough" as const),
    trigger: arbTrigger,
    copies: fc.integer({ min: 1, max: 3 })
  })
)

const arbFork: fc.Arbitrary<Fork> = fc
  .record({
    policy: fc.constantFrom("require_all" as const, "quorum" as const, "best_effort" as const, "first" as const),
    quorum: fc.integer({ min: 1, max: 2 }),
    merge: fc.constantFrom("union" as const, "nested" as const, "select" as const),
    select: fc.constantFrom("a" as const, "b" as const),
    timeout: fc.option(fc.constantFrom(1, 3), { nil: undefined }),
    split: fc.boolean()
  })
  .map((f) => (f.policy === "best_effort" && f.timeout === undefined ? { ...f, timeout: 2 } : f))

const arbScenario: fc.Arbitrary<Scenario> = fc.record({
  aggregations: fc.array(arbAggregation, { maxLength: 2 }),
  route: fc.boolean(),
  fork: fc.option(arbFork, { nil: undefined }),
  chunks: fc.array(
    fc.record({ gap: fc.constantFrom(0, 250, 1_000, 2_500, 5_000), rows: fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 1, maxLength: 4 }) }),
    { maxLength: 14 }
  ).map((chunks) => {
    // At most 40 rows.
    let left = 40
    return chunks.map((c) => {
      const rows = c.rows.slice(0, left)
      left -= rows.length
      return { ...c, rows }
    }).filter((c) => c.rows.length > 0)
  }),
  tail: fc.constantFrom(0, 1_000, 6_000),
  durable: fc.boolean()
})

const sinkNames = ["out", "high", "s1", "s2"] as const

const yamlOf = (s: Scenario, paths: Record<string, string>): string => {
  const lines: Array<string> = ["source: {plugin: test_queue}"]
  if (s.aggregations.length > 0) {
    lines.push("aggregations:")
    let producesStats = false
    s.aggregations.forEach((a, i) => {
      const t = a.trigger
      const trigger = [
        t.count === undefined ? undefined : `count: ${t.count}`,
        t.timeout === undefined ? undefined : `timeout_seconds: ${t.timeout}`,
        t.condition === undefined ? undefined : `condition: "row['batch_count'] >= ${t.condition}"`
      ].filter((x) => x !== undefined).join(", ")
      lines.push(`  - name: agg${i}`, `    plugin: ${a.plugin}`, `    trigger: {${trigger}}`, `    output_mode: ${a.mode}`)
      if (a.plugin === "batch_stats") {
        lines.push(`    options: {schema: {mode: observed}, value_field: ${producesStats ? "count" : "v"}}`)
        producesStats = true
      } else {
        // Passthrough needs one output per input: no copies field, default 1.
        const copies = a.mode === "passthrough" ? 1 : a.copies
        lines.push(`    options: {schema: {mode: observed}, copies_field: no_such_field, default_copies: ${copies}}`)
      }
    })
  }
  const gates: Array<string> = []
  if (s.route) {
    gates.push(`  - name: route`, `    condition: "row.get('v', 0) > 7"`, `    routes: {"true": high, "false": continue}`)
  }
  const f = s.fork
  if (f !== undefined) {
    gates.push(
      `  - name: split`,
      `    condition: "row.get('v', 0) >= 0"`,
      `    routes: {"true": fork, "false": continue}`,
      `    fork_to: ${f.split ? "[a, s1]" : "[a, b, s2]"}`
    )
    if (f.split) {
      gates.push(
        `  - name: split2`,
        `    condition: "row.get('id', 0) % 2 == 0"`,
        `    routes: {"true": fork, "false": continue}`,
        `    fork_to: [b, s2]`
      )
    }
  }
  if (gates.length > 0) lines.push("gates:", ...gates)
  if (f !== undefined) {
    lines.push("coalesce:", "  - name: join", "    branches: [a, b]", `    policy: ${f.policy}`, `    merge: ${f.merge}`)
    if (f.policy === "quorum") lines.push(`    quorum_count: ${f.quorum}`)
    if (f.merge === "select") lines.push(`    select_branch: ${f.select}`)
    if (f.timeout !== undefined) lines.push(`    timeout_seconds: ${f.timeout}`)
  }
  const used = new Set<string>(["out"])
  if (s.route) used.add("high")
  if (f !== undefined) {
    used.add("s2")
    if (f.split) used.add("s1")
  }
  lines.push("sinks:")
  for (const name of sinkNames) if (used.has(name)) lines.push(jsonSinkYaml(name, paths[name]!).trimEnd())
  lines.push("default_sink: out")
  return lines.join("\n") + "\n"
}

// ---------------------------------------------------------------------------
// Checks beyond the invariants helper

const COALESCE_FAILURES = ["incomplete_branches", "quorum_not_met", "select_branch_missing"]

const checkTrail = (runId: string, result: Record<string, unknown>, rowsOffered: number, paths: Record<string, string>) =>
  Effect.gen(function*() {
    yield* assertLandscapeInvariants(runId)
    const q = <A extends object>(text: string) => trail((sql) => sql.unsafe<A>(text, [runId]))

    // Every source row is in the trail, with a root token.
    assert.strictEqual(result.rows_processed, rowsOffered)
    const [rows] = yield* q<{ n: number }>(`SELECT COUNT(*) AS n FROM rows WHERE run_id = ?`)
    assert.strictEqual(rows!.n, rowsOffered)

    // RunResult fields the helper does not compare.
    const [buffered] = yield* q<{ n: number }>(`SELECT COUNT(*) AS n FROM token_outcomes WHERE run_id = ? AND outcome = 'BUFFERED'`)
    assert.strictEqual(result.rows_buffered, buffered!.n, "rows_buffered")
    const failedGroups = yield* q<{ row_id: string; context_json: string }>(
      `SELECT DISTINCT t.row_id, o.context_json FROM token_outcomes o JOIN tokens t ON t.token_id = o.token_id
       WHERE o.run_id = ? AND o.outcome = 'FAILED' AND o.context_json IS NOT NULL`
    )
    const groups = new Set(
      failedGroups
        .filter((g) => COALESCE_FAILURES.includes(String((JSON.parse(g.context_json) as { reason?: unknown }).reason)))
        .map((g) => String((JSON.parse(g.context_json) as { group?: unknown }).group ?? g.row_id))
    )
    assert.strictEqual(result.rows_coalesce_failed, groups.size, "rows_coalesce_failed: one per failed group")
    const routed = yield* q<{ sink_name: string; n: number }>(
      `SELECT sink_name, COUNT(*) AS n FROM token_outcomes WHERE run_id = ? AND outcome = 'ROUTED' GROUP BY sink_name ORDER BY sink_name`
    )
    assert.deepStrictEqual(result.routed_destinations, Object.fromEntries(routed.map((r) => [r.sink_name, r.n])))

    // Lineage: a derived token's parents ended in an outcome that creates children.
    const badParents = yield* q<{ token_id: string; outcome: string }>(
      `SELECT p.token_id, po.outcome FROM token_parents p
       JOIN tokens t ON t.token_id = p.token_id AND t.run_id = ?
       JOIN token_outcomes po ON po.token_id = p.parent_token_id AND po.is_terminal = 1
       WHERE po.outcome NOT IN ('FORKED', 'EXPANDED', 'CONSUMED_IN_BATCH', 'COALESCED')`
    )
    assert.deepStrictEqual(badParents, [], "parents that did not fork, expand, batch or coalesce")
    const childless = yield* q<{ token_id: string; outcome: string }>(
      `SELECT o.token_id, o.outcome FROM token_outcomes o WHERE o.run_id = ? AND o.is_terminal = 1
       AND o.outcome IN ('FORKED', 'EXPANDED', 'COALESCED')
       AND NOT EXISTS (SELECT 1 FROM token_parents p WHERE p.parent_token_id = o.token_id)`
    )
    assert.deepStrictEqual(childless, [], "FORKED/EXPANDED/COALESCED tokens without children")

    // Batches: all resolved; every member's outcome names its batch.
    const openBatches = yield* q<{ batch_id: string; status: string }>(
      `SELECT batch_id, status FROM batches WHERE run_id = ? AND status <> 'completed'`
    )
    assert.deepStrictEqual(openBatches, [])
    const strayMembers = yield* q<{ token_id: string }>(
      `SELECT m.token_id FROM batch_members m JOIN batches b ON b.batch_id = m.batch_id AND b.run_id = ?
       WHERE NOT EXISTS (SELECT 1 FROM token_outcomes o WHERE o.token_id = m.token_id AND o.batch_id = m.batch_id
         AND o.outcome IN ('CONSUMED_IN_BATCH', 'EXPANDED', 'BUFFERED'))`
    )
    assert.deepStrictEqual(strayMembers, [])
    // Only passthrough carries a token on (BUFFERED) into a later batch: memberships ≤ 1 + BUFFERED.
    const doubleMembers = yield* q<{ token_id: string }>(
      `SELECT m.token_id FROM batch_members m JOIN batches b ON b.batch_id = m.batch_id AND b.run_id = ?
       GROUP BY m.token_id HAVING COUNT(*) > 1 + (SELECT COUNT(*) FROM token_outcomes o
         WHERE o.token_id = m.token_id AND o.outcome = 'BUFFERED')`
    )
    assert.deepStrictEqual(doubleMembers, [], "a token in two batches without passing through the first")

    // Durable outcomes are in the sink files, sink by sink.
    const bySink = yield* q<{ sink_name: string; n: number }>(
      `SELECT sink_name, COUNT(*) AS n FROM token_outcomes WHERE run_id = ? AND outcome IN ('COMPLETED', 'ROUTED') GROUP BY sink_name`
    )
    const recorded = Object.fromEntries(bySink.map((r) => [r.sink_name, r.n]))
    for (const name of sinkNames) assert.strictEqual(readJsonSink(paths[name]!).length, recorded[name] ?? 0, `rows in sink ${name}`)
  })

// ---------------------------------------------------------------------------

describe("conservation over random pipelines", () => {
  it.effect.prop(
    "every row and token is accounted for; the RunResult equals the trail",
    [arbScenario],
    ([scenario]) =>
      Effect.provide(
        Effect.gen(function*() {
          const n = runs++
          const paths = Object.fromEntries(sinkNames.map((s) => [s, join(dir, `${n}-${s}.json`)]))
          const source = yield* makeQueueSource
          const options: RunPipelineOptions = scenario.durable ? { durabilityRows: 3, durabilityIntervalMs: 2_000 } : QUIET
          const run = yield* startRun(yamlOf(scenario, paths), source, options)
          yield* run.settle
          let id = 0
          for (const chunk of scenario.chunks) {
            yield* TestClock.adjust(chunk.gap)
            yield* source.offerAll(chunk.rows.map((v) => ({ id: id++, v })))
            if (scenario.durable) yield* run.settle // sink writes mid-run are real I/O
          }
          yield* run.advance(scenario.tail)
          const exit = yield* finish(run)
          if (Exit.isFailure(exit)) return assert.fail(`the run failed: ${String(exit.cause)}\n${yamlOf(scenario, paths)}`)
          assert.strictEqual(exit.value.status, "completed")
          yield* checkTrail(exit.value.run_id, exit.value as unknown as Record<string, unknown>, id, paths)
        }),
        TestLandscape()
      ),
    { fastCheck: { numRuns: 30 } }
  )
})
