/**
 * Fork and coalesce: policies, merges, late siblings, fork to sinks, counts, and the
 * configuration errors refused before a row is read.
 *
 * With the core plugins every fork child is an identical copy, so the merge rules
 * (key order, nesting, selection) are checked on the Processor directly with branch
 * rows that differ; the policies and timeouts run through whole pipelines under the
 * TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { newRowId, newRunId, newTokenId } from "../../src/core/ids.js"
import type { OutcomeRecord } from "../../src/services/records.js"
import { buildPipeline, type CoalesceStep } from "../../src/pipeline/build.js"
import { Processor } from "../../src/pipeline/orchestrator/processor.js"
import type { Token } from "../../src/pipeline/orchestrator/tokens.js"
import { AggregationFlushResult, type RunResult } from "../../src/pipeline/orchestrator/types.js"
import type { Row } from "../../src/pipeline/plugins/protocol.js"
import { makeRegistry } from "../../src/pipeline/plugins/registry.js"
import { parseSettings, type SettingsError } from "../../src/pipeline/settings.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import {
  at,
  finish,
  jsonSinkYaml,
  makeQueueSource,
  readJsonSink,
  type StartedRun,
  startRun,
  TestLandscape,
  trail
} from "../support/queue-source.js"

const dir = mkdtempSync(join(tmpdir(), "rl-coalesce-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const outPath = (name: string) => join(dir, `${name}-${files++}.json`)

const withLandscape = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestLandscape())

// ---------------------------------------------------------------------------
// Merge rules on the Processor

const mergeSettings = (coalesce: string, branches = "[a, b, c]") => `
source: {plugin: "null"}
gates:
  - name: split
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: ${branches}
coalesce:
  - name: join
    branches: ${branches}
${coalesce}
sinks:
  out: {plugin: json, options: {path: ${JSON.stringify(join(dir, "unused.json"))}, schema: {mode: observed}}}
default_sink: out
`

/** A Processor over the plan of `settings`, and a way to make fork children arrive at the coalesce. */
const processorFor = (settings: string) =>
  Effect.gen(function*() {
    const plan = yield* buildPipeline(yield* parseSettings("settings.yaml", settings, {}))
    const proc = new Processor(plan, newRunId(), yield* Effect.clock, new Map())
    const step: CoalesceStep = plan.coalesces[0]!
    const rowId = newRowId()
    const tokens = new Map<string, Token>()
    const arrive = (branch: string, row: Row) => {
      const token: Token = { tokenId: newTokenId(), rowId, rowIndex: 0, row, next: step.afterStep, branch, attempt: 1 }
      tokens.set(branch, token)
      proc.coalesces.arrive(step, token)
    }
    /** Runs merged tokens to the sink queue; returns the merged rows and the outcome of each branch token. */
    const settle = () => {
      proc.runToCompletion()
      const outcomes = proc.trail.records.filter((r): r is OutcomeRecord => r._tag === "Outcome")
      const outcomeOf = (branch: string) =>
        outcomes.filter((o) => o.token_id === tokens.get(branch)?.tokenId).map((o) => o.outcome).join(",")
      return { merged: proc.sinkQueues.get("out")!.rows, outcomeOf, summary: proc.trail.drain().result ?? AggregationFlushResult.empty }
    }
    return { proc, step, arrive, settle }
  })

describe("merge rules", () => {
  it.effect("union: branches in `branches` order, keys in first-contributor order, later branches overwrite", () =>
    Effect.gen(function*() {
      const { arrive, settle } = yield* processorFor(mergeSettings("    merge: union"))
      // Arrival order c, a, b must not matter.
      arrive("c", { w: 4, y: 20 })
      arrive("a", { x: 1, y: 2 })
      arrive("b", { z: 3, x: 10 })
      const { merged, outcomeOf, summary } = settle()
      assert.strictEqual(merged.length, 1)
      assert.deepStrictEqual(Object.keys(merged[0]!), ["x", "y", "z", "w"])
      assert.deepStrictEqual(merged[0], { x: 10, y: 20, z: 3, w: 4 })
      for (const b of ["a", "b", "c"]) assert.strictEqual(outcomeOf(b), "COALESCED")
      assert.strictEqual(summary.coalesced, 3)
      assert.strictEqual(summary.coalesceFailed, 0)
    }))

  it.effect("union keeps a `__proto__` key as data", () =>
    Effect.gen(function*() {
      const { arrive, settle } = yield* processorFor(mergeSettings("    merge: union", "[a, b]"))
      arrive("a", JSON.parse(`{"__proto__": {"polluted": true}, "k": 1}`) as Row)
      arrive("b", { k: 2 })
      const { merged } = settle()
      assert.deepStrictEqual(Object.keys(merged[0]!), ["__proto__", "k"])
      assert.strictEqual(Object.getPrototypeOf(merged[0]), Object.prototype)
      assert.strictEqual(merged[0]!.k, 2)
    }))

  it.effect("nested: {branch: row} for the arrived branches, in `branches` order", () =>
    Effect.gen(function*() {
      const { arrive, settle } = yield* processorFor(mergeSettings("    merge: nested"))
      arrive("b", { v: "b" })
      arrive("c", { v: "c" })
      arrive("a", { v: "a" })
      const { merged } = settle()
      assert.deepStrictEqual(Object.keys(merged[0]!), ["a", "b", "c"])
      assert.deepStrictEqual(merged[0], { a: { v: "a" }, b: { v: "b" }, c: { v: "c" } })
    }))

  it.effect("nested under best_effort at the end: only the branches that arrived", () =>
    Effect.gen(function*() {
      const { proc, arrive, settle } = yield* processorFor(mergeSettings("    policy: best_effort\n    timeout_seconds: 5\n    merge: nested"))
      arrive("c", { v: "c" })
      arrive("a", { v: "a" })
      assert.strictEqual(settle().merged.length, 0, "best_effort waits for every branch")
      proc.coalesces.resolveAll()
      const { merged, outcomeOf } = settle()
      assert.deepStrictEqual(merged, [{ a: { v: "a" }, c: { v: "c" } }])
      assert.strictEqual(outcomeOf("a"), "COALESCED")
      assert.strictEqual(outcomeOf("c"), "COALESCED")
    }))

  it.effect("select: a copy of select_branch's row, whatever arrived first", () =>
    Effect.gen(function*() {
      const { arrive, settle } = yield* processorFor(mergeSettings("    merge: select\n    select_branch: b"))
      const bRow = { v: "b", nested: { deep: 1 } }
      arrive("a", { v: "a" })
      arrive("b", bRow)
      arrive("c", { v: "c" })
      const { merged } = settle()
      assert.deepStrictEqual(merged, [{ v: "b", nested: { deep: 1 } }])
      assert.notStrictEqual(merged[0], bRow)
      assert.notStrictEqual(merged[0]!.nested, bRow.nested, "a deep copy")
    }))

  it.effect("select with select_branch missing at merge time: the arrived siblings fail, and so does the late select_branch", () =>
    Effect.gen(function*() {
      const { arrive, settle } = yield* processorFor(mergeSettings("    policy: first\n    merge: select\n    select_branch: b"))
      arrive("a", { v: "a" })
      arrive("b", { v: "b" })
      arrive("c", { v: "c" })
      const { merged, outcomeOf, summary } = settle()
      assert.deepStrictEqual(merged, [], "the group failed at a's arrival; b is a late sibling, not a new group")
      assert.strictEqual(outcomeOf("a"), "FAILED")
      assert.strictEqual(outcomeOf("b"), "FAILED")
      assert.strictEqual(outcomeOf("c"), "FAILED")
      assert.strictEqual(summary.coalesceFailed, 1)
      assert.strictEqual(summary.coalesced, 0)
    }))

  it.effect("quorum with select_branch arriving after the quorum: one failed group, the late branch FAILED", () =>
    Effect.gen(function*() {
      const { proc, arrive, settle } = yield* processorFor(
        mergeSettings("    policy: quorum\n    quorum_count: 2\n    merge: select\n    select_branch: c")
      )
      arrive("a", { v: "a" })
      arrive("b", { v: "b" })
      arrive("c", { v: "c" })
      proc.coalesces.resolveAll()
      const { merged, outcomeOf, summary } = settle()
      assert.deepStrictEqual(merged, [])
      assert.deepStrictEqual(["a", "b", "c"].map(outcomeOf), ["FAILED", "FAILED", "FAILED"])
      assert.strictEqual(summary.coalesceFailed, 1)
      assert.strictEqual(proc.coalesces.pendingCount(), 0)
    }))
})

// ---------------------------------------------------------------------------
// Policies through whole pipelines

/**
 * Every row forks at `split` into branch `a` (to the coalesce) and `s1`; the `s1`
 * child of an even row forks again at `split2` into `b`, `c` (to the coalesce) and
 * `s2`. So even rows bring all three branches, odd rows only `a`.
 */
const policyYaml = (coalesce: string, out: string, s1: string, s2: string) => `
source: {plugin: test_queue}
gates:
  - name: split
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: [a, s1]
  - name: split2
    condition: "row['id'] % 2 == 0"
    routes: {"true": fork, "false": continue}
    fork_to: [b, c, s2]
coalesce:
  - name: join
    branches: [a, b, c]
${coalesce}
sinks:
${jsonSinkYaml("out", out)}${jsonSinkYaml("s1", s1)}${jsonSinkYaml("s2", s2)}default_sink: out
`

interface BranchOutcome {
  readonly id: number
  readonly branch: string | null
  readonly outcome: string
  readonly sink_name: string | null
  readonly recorded_at: string
}

/** Terminal outcomes of the run's branch tokens (and merged tokens, branch null). */
const branchOutcomes = (runId: string) =>
  trail((sql) =>
    sql<BranchOutcome>`
      SELECT json_extract(r.source_data_json, '$.id') AS id, t.branch_name AS branch, o.outcome, o.sink_name, o.recorded_at
      FROM token_outcomes o JOIN tokens t ON t.token_id = o.token_id JOIN rows r ON r.row_id = t.row_id
      WHERE o.run_id = ${runId} AND o.is_terminal = 1 AND (t.branch_name IN ('a', 'b', 'c') OR t.join_group_id IS NOT NULL)
      ORDER BY id, t.branch_name IS NULL, t.branch_name`
  ).pipe(Effect.map((rows) => rows.map((r) => `${r.id}:${r.branch ?? "merged"}:${r.outcome}`)))

const runIdOf = trail((sql) => sql<{ run_id: string }>`SELECT run_id FROM runs LIMIT 1`).pipe(Effect.map((r) => r[0]!.run_id))

const completed = (run: StartedRun) =>
  Effect.gen(function*() {
    const exit = yield* finish(run)
    if (Exit.isFailure(exit)) return assert.fail(`the run failed: ${String(exit.cause)}`)
    assert.strictEqual(exit.value.status, "completed")
    yield* assertLandscapeInvariants(exit.value.run_id)
    return exit.value
  })

/** Runs rows 0 (all three branches) and 1 (only `a`), row 1 left idle for `idleMs`. */
const policyRun = (coalesce: string, idleMs: number) =>
  Effect.gen(function*() {
    const out = outPath("out")
    const s1 = outPath("s1")
    const s2 = outPath("s2")
    const source = yield* makeQueueSource
    const run = yield* startRun(policyYaml(coalesce, out, s1, s2), source)
    yield* source.offer({ id: 0 })
    yield* source.offer({ id: 1 })
    yield* run.settle
    const runId = yield* runIdOf
    const early = yield* branchOutcomes(runId)
    yield* run.advance(idleMs)
    const idle = yield* branchOutcomes(runId)
    const result = yield* completed(run)
    const final = yield* branchOutcomes(runId)
    return { early, idle, final, result, out: readJsonSink(out), s1: readJsonSink(s1), s2: readJsonSink(s2) }
  })

const counts = (r: RunResult) => ({
  forked: r.rows_forked,
  coalesced: r.rows_coalesced,
  coalesce_failed: r.rows_coalesce_failed,
  succeeded: r.rows_succeeded,
  failed: r.rows_failed
})

describe("policies", () => {
  it.effect("require_all: merges when every branch arrived; an incomplete group fails at its timeout, on the clock", () =>
    withLandscape(Effect.gen(function*() {
      const r = yield* policyRun("    policy: require_all\n    timeout_seconds: 5", 4_999)
      // (A merged row is COMPLETED only once its sink write is durable: at the end here.)
      assert.deepStrictEqual(r.early, ["0:a:COALESCED", "0:b:COALESCED", "0:c:COALESCED"])
      assert.deepStrictEqual(r.idle, r.early, "row 1's group is still pending at 4.999 s")
      const runId = r.result.run_id
      assert.deepStrictEqual(r.final, [...r.early, "0:merged:COMPLETED", "1:a:FAILED"])
      const failedAt = yield* trail((sql) =>
        sql<{ recorded_at: string; context_json: string }>`SELECT o.recorded_at, o.context_json FROM token_outcomes o
          JOIN tokens t ON t.token_id = o.token_id WHERE o.run_id = ${runId} AND o.outcome = 'FAILED'`
      )
      assert.strictEqual(failedAt.length, 1)
      assert.include(failedAt[0]!.context_json, "incomplete_branches")
      assert.deepStrictEqual(r.out, [{ id: 0 }])
      assert.deepStrictEqual(r.s1, [{ id: 1 }])
      assert.deepStrictEqual(r.s2, [{ id: 0 }])
      assert.deepStrictEqual(counts(r.result), { forked: 3, coalesced: 3, coalesce_failed: 1, succeeded: 3, failed: 1 })
    })))

  it.effect("require_all: the timeout fires while the source is idle, at exactly timeout_seconds", () =>
    withLandscape(Effect.gen(function*() {
      const r = yield* policyRun("    policy: require_all\n    timeout_seconds: 5", 5_000)
      assert.deepStrictEqual(r.idle, [...r.early, "1:a:FAILED"])
      const [failed] = yield* trail((sql) =>
        sql<{ recorded_at: string }>`SELECT recorded_at FROM token_outcomes WHERE outcome = 'FAILED'`
      )
      assert.strictEqual(failed!.recorded_at, at(5_000))
    })))

  it.effect("require_all without a timeout: an incomplete group fails at the end of the source", () =>
    withLandscape(Effect.gen(function*() {
      const r = yield* policyRun("    policy: require_all", 60_000)
      assert.deepStrictEqual(r.idle, r.early)
      assert.deepStrictEqual(r.final, [...r.early, "0:merged:COMPLETED", "1:a:FAILED"])
      assert.strictEqual(r.result.rows_coalesce_failed, 1)
    })))

  it.effect("quorum: merges at the quorum, a later sibling is recorded FAILED, an unmet quorum fails at the timeout", () =>
    withLandscape(Effect.gen(function*() {
      const r = yield* policyRun("    policy: quorum\n    quorum_count: 2\n    timeout_seconds: 5", 5_000)
      assert.deepStrictEqual(r.early, ["0:a:COALESCED", "0:b:COALESCED", "0:c:FAILED"])
      assert.deepStrictEqual(r.idle, [...r.early, "1:a:FAILED"])
      assert.deepStrictEqual(r.final, [...r.early, "0:merged:COMPLETED", "1:a:FAILED"])
      const contexts = yield* trail((sql) =>
        sql<{ branch: string; context_json: string }>`SELECT t.branch_name AS branch, o.context_json FROM token_outcomes o
          JOIN tokens t ON t.token_id = o.token_id WHERE o.outcome = 'FAILED' ORDER BY t.branch_name, o.recorded_at`
      )
      assert.include(contexts.find((c) => c.context_json.includes("late_sibling"))?.branch ?? "", "c")
      assert.isTrue(contexts.some((c) => c.context_json.includes("quorum_not_met")))
      assert.deepStrictEqual(r.out, [{ id: 0 }])
      assert.deepStrictEqual(counts(r.result), { forked: 3, coalesced: 2, coalesce_failed: 1, succeeded: 3, failed: 2 })
    })))

  it.effect("best_effort: merges when all arrived, or what arrived at the timeout", () =>
    withLandscape(Effect.gen(function*() {
      const r = yield* policyRun("    policy: best_effort\n    timeout_seconds: 5\n    merge: nested", 5_000)
      assert.deepStrictEqual(r.early, ["0:a:COALESCED", "0:b:COALESCED", "0:c:COALESCED"])
      assert.deepStrictEqual(r.idle, [...r.early, "1:a:COALESCED"])
      assert.deepStrictEqual(r.final, [...r.early, "0:merged:COMPLETED", "1:a:COALESCED", "1:merged:COMPLETED"])
      assert.deepStrictEqual(r.out, [{ a: { id: 0 }, b: { id: 0 }, c: { id: 0 } }, { a: { id: 1 } }])
      assert.deepStrictEqual(counts(r.result), { forked: 3, coalesced: 4, coalesce_failed: 0, succeeded: 4, failed: 0 })
    })))

  it.effect("first: merges the first arrival; every later sibling is recorded FAILED, never dropped", () =>
    withLandscape(Effect.gen(function*() {
      const r = yield* policyRun("    policy: first", 1_000)
      assert.deepStrictEqual(r.early, ["0:a:COALESCED", "0:b:FAILED", "0:c:FAILED", "1:a:COALESCED"])
      assert.deepStrictEqual(r.final, [
        "0:a:COALESCED",
        "0:b:FAILED",
        "0:c:FAILED",
        "0:merged:COMPLETED",
        "1:a:COALESCED",
        "1:merged:COMPLETED"
      ])
      assert.deepStrictEqual(r.out, [{ id: 0 }, { id: 1 }])
      assert.deepStrictEqual(counts(r.result), { forked: 3, coalesced: 2, coalesce_failed: 0, succeeded: 4, failed: 2 })
    })))

  it.effect("first + select with select_branch not the first arrival: the group fails once; no merged row appears later", () =>
    withLandscape(Effect.gen(function*() {
      const r = yield* policyRun("    policy: first\n    merge: select\n    select_branch: b", 1_000)
      assert.deepStrictEqual(r.final, ["0:a:FAILED", "0:b:FAILED", "0:c:FAILED", "1:a:FAILED"])
      assert.deepStrictEqual(r.out, [])
      assert.deepStrictEqual(counts(r.result), { forked: 3, coalesced: 0, coalesce_failed: 2, succeeded: 2, failed: 4 })
    })))
})

describe("fork to sinks named like branches", () => {
  it.effect("each child completes to its branch's sink; a later gate may still route it elsewhere", () =>
    withLandscape(Effect.gen(function*() {
      const [out, s1, s2, other] = [outPath("out"), outPath("s1"), outPath("s2"), outPath("other")]
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
gates:
  - name: split
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: [s1, s2]
  - name: divert
    condition: "row['id'] == 1"
    routes: {"true": other, "false": continue}
sinks:
${jsonSinkYaml("out", out)}${jsonSinkYaml("s1", s1)}${jsonSinkYaml("s2", s2)}${jsonSinkYaml("other", other)}default_sink: out
`,
        source
      )
      yield* source.offerAll([{ id: 0 }, { id: 1 }, { id: 2, n: -1 }])
      const result = yield* completed(run)
      assert.deepStrictEqual(readJsonSink(s1), [{ id: 0 }, { id: 2, n: -1 }])
      assert.deepStrictEqual(readJsonSink(s2), [{ id: 0 }, { id: 2, n: -1 }])
      assert.deepStrictEqual(readJsonSink(other), [{ id: 1 }, { id: 1 }])
      assert.deepStrictEqual(readJsonSink(out), [])
      const branches = yield* trail((sql) =>
        sql<{ branch: string; outcome: string; sink: string | null; fork_group: string | null; parent_outcome: string }>`
          SELECT t.branch_name AS branch, o.outcome, o.sink_name AS sink, t.fork_group_id AS fork_group,
            (SELECT po.outcome FROM token_parents p JOIN token_outcomes po ON po.token_id = p.parent_token_id
             WHERE p.token_id = t.token_id) AS parent_outcome
          FROM tokens t JOIN token_outcomes o ON o.token_id = t.token_id
          WHERE t.branch_name IS NOT NULL ORDER BY o.recorded_at, t.token_id`
      )
      assert.strictEqual(branches.length, 6)
      assert.isTrue(branches.every((b) => b.parent_outcome === "FORKED" && b.fork_group !== null))
      assert.deepStrictEqual(
        branches.map((b) => `${b.branch}:${b.outcome}:${b.sink}`).sort(),
        ["s1:COMPLETED:s1", "s1:COMPLETED:s1", "s1:ROUTED:other", "s2:COMPLETED:s2", "s2:COMPLETED:s2", "s2:ROUTED:other"]
      )
      assert.strictEqual(result.rows_forked, 3)
      assert.strictEqual(result.rows_succeeded, 4)
      assert.strictEqual(result.rows_routed, 2)
      assert.deepStrictEqual(result.routed_destinations, { other: 2 })
      assert.strictEqual(result.rows_coalesced, 0)
    })))
})

// ---------------------------------------------------------------------------
// Configuration errors

const configError = (yaml: string) =>
  Effect.gen(function*() {
    const source = yield* makeQueueSource
    const loaded = yield* parseSettings("settings.yaml", yaml, {})
    const exit = yield* Effect.exit(buildPipeline(loaded, makeRegistry([source.plugin])))
    if (Exit.isSuccess(exit)) return assert.fail("the settings should be refused")
    return Option.getOrThrow(Cause.failureOption(exit.cause)) as SettingsError
  })

const configYaml = (gates: string, coalesce = "") => `
source: {plugin: test_queue}
gates:
${gates}${coalesce === "" ? "" : `coalesce:\n${coalesce}`}
sinks:
${jsonSinkYaml("out", join(dir, "cfg.json"))}${jsonSinkYaml("s1", join(dir, "cfg-s1.json"))}default_sink: out
`

const forkGate = (forkTo: string) => `  - name: split
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: ${forkTo}
`

describe("configuration errors", () => {
  const cases: ReadonlyArray<readonly [string, string, string, string]> = [
    [
      "fork_to without a fork route",
      configYaml(`  - name: split\n    condition: "row['id'] >= 0"\n    routes: {"true": out, "false": continue}\n    fork_to: [a, b]\n`),
      "gates[0].fork_to",
      "only allowed"
    ],
    [
      "a fork route without fork_to",
      configYaml(`  - name: split\n    condition: "row['id'] >= 0"\n    routes: {"true": fork, "false": continue}\n`),
      "gates[0].fork_to",
      "fork_to must list"
    ],
    ["a branch neither coalesced nor a sink", configYaml(forkGate("[s1, nowhere]")), "gates[0].fork_to[1]", "neither coalesced nor"],
    ["a duplicate branch", configYaml(forkGate("[s1, s1]")), "gates[0].fork_to[1]", "duplicate"],
    ["the reserved branch 'continue'", configYaml(forkGate("[s1, continue]")), "gates[0].fork_to[1]", "reserved"],
    [
      "a coalesce branch that no gate produces",
      configYaml(forkGate("[a, b]"), "  - name: join\n    branches: [a, z]\n"),
      "coalesce[0].branches[1]",
      "no gate forks"
    ],
    [
      "quorum_count greater than the branches",
      configYaml(forkGate("[a, b]"), "  - name: join\n    branches: [a, b]\n    policy: quorum\n    quorum_count: 3\n"),
      "coalesce[0].quorum_count",
      "exceeds"
    ],
    [
      "quorum without quorum_count",
      configYaml(forkGate("[a, b]"), "  - name: join\n    branches: [a, b]\n    policy: quorum\n"),
      "coalesce[0].quorum_count",
      "needs quorum_count"
    ],
    [
      "best_effort without a timeout",
      configYaml(forkGate("[a, b]"), "  - name: join\n    branches: [a, b]\n    policy: best_effort\n"),
      "coalesce[0].timeout_seconds",
      "best_effort"
    ],
    [
      "select without select_branch",
      configYaml(forkGate("[a, b]"), "  - name: join\n    branches: [a, b]\n    merge: select\n"),
      "coalesce[0].select_branch",
      "needs select_branch"
    ],
    [
      "select_branch that is not a branch",
      configYaml(forkGate("[a, b]"), "  - name: join\n    branches: [a, b]\n    merge: select\n    select_branch: z\n"),
      "coalesce[0].select_branch",
      "not one of the branches"
    ],
    [
      "a branch in two coalesces",
      configYaml(forkGate("[a, b, c]"), "  - name: j1\n    branches: [a, b]\n  - name: j2\n    branches: [b, c]\n"),
      "coalesce[1].branches[0]",
      "already coalesced"
    ],
    [
      "a coalesce with a single branch",
      configYaml(forkGate("[a, s1]"), "  - name: join\n    branches: [a]\n"),
      "coalesce[0].branches",
      "at least 2"
    ]
  ]
  for (const [name, yaml, key, text] of cases) {
    it.effect(`refused before any row: ${name}`, () =>
      Effect.gen(function*() {
        const error = yield* configError(yaml)
        assert.strictEqual(error._tag, "SettingsError")
        assert.strictEqual(error.key, key)
        assert.include(error.message, text)
      }))
  }

  it.effect("a valid fork/coalesce configuration builds (the cases above differ from it in one key each)", () =>
    Effect.gen(function*() {
      const source = yield* makeQueueSource
      const loaded = yield* parseSettings(
        "settings.yaml",
        configYaml(forkGate("[a, b, s1]"), "  - name: join\n    branches: [a, b]\n    policy: quorum\n    quorum_count: 2\n"),
        {}
      )
      const plan = yield* buildPipeline(loaded, makeRegistry([source.plugin]))
      assert.deepStrictEqual(plan.coalesces.map((c) => c.name), ["join"])
    }))
})

describe("several tokens of one source row forking into a coalesce", () => {
  /** Each row is copied twice; each copy forks `a` at `split` and, through `s1`, `b` at `split2`. */
  const yaml = (out: string, s1: string) => `
source: {plugin: test_queue}
aggregations:
  - name: rep
    plugin: batch_replicate
    trigger: {count: 1}
    options: {schema: {mode: observed}, default_copies: 2}
gates:
  - name: split
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: [a, s1]
  - name: split2
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: [b, s2]
coalesce:
  - name: join
    branches: [a, b]
    merge: nested
sinks:
${jsonSinkYaml("out", out)}${jsonSinkYaml("s1", s1)}${jsonSinkYaml("s2", s1 + ".s2.json")}default_sink: out
`

  it.effect("no fork child is ever dropped from the trail", () =>
    withLandscape(Effect.gen(function*() {
      const [out, s1] = [outPath("out"), outPath("s1")]
      const source = yield* makeQueueSource
      const run = yield* startRun(yaml(out, s1), source)
      yield* source.offer({ id: 0 })
      const result = yield* completed(run)
      const branches = yield* trail((sql) =>
        sql<{ n: number }>`SELECT COUNT(*) AS n FROM tokens t JOIN token_outcomes o ON o.token_id = t.token_id AND o.is_terminal = 1
          WHERE t.branch_name IN ('a', 'b')`
      )
      assert.strictEqual(branches[0]!.n, 4, "2 copies × 2 coalesced branches, each with a terminal outcome")
      assert.strictEqual(readJsonSink(s1 + ".s2.json").length, 2)
      assert.strictEqual(result.rows_forked, 4)
    })))

  it.effect("each copy's branches merge with each other", () =>
    withLandscape(Effect.gen(function*() {
      const [out, s1] = [outPath("out"), outPath("s1")]
      const source = yield* makeQueueSource
      const run = yield* startRun(yaml(out, s1), source)
      yield* source.offer({ id: 0 })
      const result = yield* completed(run)
      assert.deepStrictEqual(readJsonSink(out), [
        { a: { id: 0, copy_index: 0 }, b: { id: 0, copy_index: 0 } },
        { a: { id: 0, copy_index: 1 }, b: { id: 0, copy_index: 1 } }
      ])
      assert.strictEqual(result.rows_coalesced, 4)
      assert.strictEqual(result.rows_failed, 0)
    })))
})
