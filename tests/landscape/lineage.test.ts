/**
 * `explain` against runs made by the real engine: small temp inputs, an in-memory
 * Landscape per test.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { narrate } from "../../src/cli/explain.js"
import { canonicalJsonUnsafe, sha256Hex } from "../../src/core/canonical.js"
import { explain, type Lineage, type LineageQuery, type LineageToken } from "../../src/landscape/lineage.js"
import { buildPipeline } from "../../src/pipeline/build.js"
import { runPipeline } from "../../src/pipeline/orchestrator/run.js"
import { parseSettings } from "../../src/pipeline/settings.js"
import { TelemetryNoop } from "../../src/services/telemetry.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import { MemoryLandscape } from "../support/landscape.js"

const dir = mkdtempSync(join(tmpdir(), "rl-lineage-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const file = (name: string, text: string): string => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

const sink = (name: string, plugin: "csv" | "json" = "json") =>
  `  ${name}:
    plugin: ${plugin}
    options:
      path: ${JSON.stringify(join(dir, "out", `${name}-${Math.random().toString(36).slice(2)}.${plugin}`))}
      schema:
        mode: observed
`

/** Runs the pipeline of `yaml` to completion and checks the trail's invariants. */
const runYaml = (yaml: string) =>
  Effect.gen(function*() {
    const plan = yield* buildPipeline(yield* parseSettings("settings.yaml", yaml, {}))
    const result = yield* runPipeline(plan)
    assert.strictEqual(result.status, "completed")
    yield* assertLandscapeInvariants(result.run_id)
    return result
  })

/** A fresh in-memory Landscape per test. */
const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.provide(Layer.merge(MemoryLandscape(), TelemetryNoop)))

const lineageOf = explain

const flip = (query: LineageQuery) => Effect.flip(explain(query))

const allTokens = (tokens: ReadonlyArray<LineageToken>): Array<LineageToken> =>
  tokens.flatMap((t) => [t, ...allTokens(t.children)])

const stepNames = (l: Lineage) => l.steps.map((s) => `${s.node.node_type}:${s.node.name}:${s.status}`)

// ---------------------------------------------------------------------------

const gateInput = file(
  "amounts.csv",
  "id,name,amount\n1,Alice,500\n2,Bob,1500\n3,Mallory,lots\n"
)

const gateSettings = `
source:
  plugin: csv
  options:
    path: ${JSON.stringify(gateInput)}
    schema:
      mode: fixed
      fields: ["id: int", "name: str", "amount: int"]
    on_validation_failure: quarantine
gates:
  - name: amount_threshold
    condition: "row['amount'] > 1000"
    routes:
      "true": high_values
      "false": continue
sinks:
${sink("output", "csv")}${sink("high_values", "csv")}${sink("quarantine")}
default_sink: output
`

describe("explain: a gate, a completed row and a quarantined row", () => {
  it.live("a routed row: the gate's condition, result and destination, then the sink", () =>
    provide(Effect.gen(function*() {
      const run = yield* runYaml(gateSettings)
      const l = yield* lineageOf({ runId: run.run_id, row: "1" })

      assert.deepStrictEqual(l.run.run_id, run.run_id)
      assert.strictEqual(l.run.status, "completed")
      assert.strictEqual(l.row.row_index, 1)
      assert.deepStrictEqual(l.row.data, { id: 2, name: "Bob", amount: 1500 })
      assert.strictEqual(l.row.hash, sha256Hex(canonicalJsonUnsafe(l.row.data)))
      assert.strictEqual(l.row.source.node_type, "source")
      assert.strictEqual(l.tokens.length, 1)
      assert.deepStrictEqual(l.path, [l.token_id])

      assert.deepStrictEqual(stepNames(l), ["gate:amount_threshold:completed", "sink:high_values:completed"])
      const [gate, write] = l.steps
      assert.strictEqual(gate!.input_hash, l.row.hash)
      assert.isNumber(gate!.duration_ms)
      assert.strictEqual(write!.step_index > gate!.step_index, true)
      assert.strictEqual(gate!.routing.length, 1)
      const route = gate!.routing[0]!
      assert.strictEqual(route.edge_label, "true")
      assert.strictEqual(route.destination, "high_values")
      assert.strictEqual(route.destination_type, "sink")
      assert.strictEqual(route.mode, "move")
      assert.deepStrictEqual(route.reason, { condition: "row['amount'] > 1000", result: "true", destination: "high_values" })

      assert.strictEqual(l.outcome?.outcome, "ROUTED")
      assert.strictEqual(l.outcome?.is_terminal, true)
      assert.strictEqual(l.sink?.name, "high_values")
      assert.strictEqual(l.sink?.plugin, "csv")
      assert.strictEqual(l.sink?.artifacts.length, 1)
      assert.deepStrictEqual(l.transform_errors, [])
      assert.deepStrictEqual(l.validation_errors, [])

      // The same lineage by row id, by token id, through `latest`, and with the matching sink.
      const byId = yield* lineageOf({ runId: "latest", row: l.row.row_id })
      const byToken = yield* lineageOf({ runId: run.run_id, token: l.token_id })
      const bySink = yield* lineageOf({ runId: run.run_id, row: "1", sink: "high_values" })
      assert.deepStrictEqual(byId, l)
      assert.deepStrictEqual(byToken, l)
      assert.deepStrictEqual(bySink, l)

      assert.include(narrate(l), "gate 'amount_threshold': row['amount'] > 1000 → 'true' → sink high_values")
    })))

  it.live("a completed row: 'false' → continue, then the default sink", () =>
    provide(Effect.gen(function*() {
      const run = yield* runYaml(gateSettings)
      const l = yield* lineageOf({ runId: run.run_id, row: "0" })
      assert.deepStrictEqual(l.row.data, { id: 1, name: "Alice", amount: 500 })
      assert.deepStrictEqual(stepNames(l), ["gate:amount_threshold:completed", "sink:output:completed"])
      const route = l.steps[0]!.routing[0]!
      assert.strictEqual(route.edge_label, "false")
      assert.deepStrictEqual(route.reason, { condition: "row['amount'] > 1000", result: "false", destination: "continue" })
      assert.strictEqual(l.outcome?.outcome, "COMPLETED")
      assert.strictEqual(l.sink?.name, "output")
    })))

  it.live("a quarantined row: the validation error and the quarantine sink, no pipeline steps", () =>
    provide(Effect.gen(function*() {
      const run = yield* runYaml(gateSettings)
      const l = yield* lineageOf({ runId: run.run_id, row: "2" })
      assert.deepStrictEqual(l.row.data, { id: "3", name: "Mallory", amount: "lots" })
      assert.strictEqual(l.validation_errors.length, 1)
      const v = l.validation_errors[0]!
      assert.strictEqual(v.node, "source")
      assert.strictEqual(v.destination, "quarantine")
      assert.strictEqual(v.schema_mode, "fixed")
      assert.match(v.error, /amount/)
      assert.strictEqual(v.row_hash, l.row.hash)
      assert.deepStrictEqual(stepNames(l), ["sink:quarantine:completed"])
      assert.strictEqual(l.outcome?.outcome, "QUARANTINED")
      assert.deepStrictEqual(l.outcome?.context, { reason: "validation_failed" })
      assert.strictEqual(l.sink?.name, "quarantine")
    })))

  it.live("typed errors: unknown run, row (with the valid range), token, and a sink the row did not reach", () =>
    provide(Effect.gen(function*() {
      const run = yield* runYaml(gateSettings)

      const noRun = yield* flip({ runId: "run_nope", row: "0" })
      assert.strictEqual(noRun._tag, "LineageRunNotFound")

      const noRow = yield* flip({ runId: run.run_id, row: "3" })
      assert.strictEqual(noRow._tag, "LineageRowNotFound")
      if (noRow._tag === "LineageRowNotFound") {
        assert.strictEqual(noRow.rowCount, 3)
        assert.strictEqual(noRow.row, "3")
      }
      assert.include(noRow.message, "row index 3")
      assert.include(noRow.message, "0…2")

      const noRowId = yield* flip({ runId: run.run_id, row: "row_missing" })
      assert.strictEqual(noRowId._tag, "LineageRowNotFound")
      assert.include(noRowId.message, "row_missing")

      const noToken = yield* flip({ runId: run.run_id, token: "tok_missing" })
      assert.strictEqual(noToken._tag, "LineageTokenNotFound")
      assert.include(noToken.message, "tok_missing")

      const wrongSink = yield* flip({ runId: run.run_id, row: "1", sink: "output" })
      assert.strictEqual(wrongSink._tag, "LineageTokenNotFound")
      assert.include(wrongSink.message, "high_values")

      const row0 = yield* lineageOf({ runId: run.run_id, row: "0" })
      const mismatch = yield* flip({ runId: run.run_id, row: "1", token: row0.token_id })
      assert.strictEqual(mismatch._tag, "LineageTokenNotFound")

      const empty = yield* flip({ runId: run.run_id })
      assert.strictEqual(empty._tag, "InvalidLineageQuery")
    })))
})

// ---------------------------------------------------------------------------

const ordersInput = file(
  "orders.json",
  JSON.stringify([
    { order_id: 1, items: [{ sku: "A1", qty: 2 }] },
    { order_id: 2, items: [{ sku: "B2", qty: 1 }, { sku: "C3", qty: 5 }, { sku: "D4", qty: 2 }] }
  ])
)

const explodeSettings = `
source:
  plugin: json
  options:
    path: ${JSON.stringify(ordersInput)}
    schema:
      mode: fixed
      fields: ["order_id: int", "items: any"]
    on_validation_failure: discard
transforms:
  - plugin: json_explode
    name: explode_items
    options:
      array_field: items
      output_field: item
      include_index: true
      schema:
        mode: observed
gates:
  - name: bulk_check
    condition: "row['item']['qty'] > 2"
    routes:
      "true": bulk
      "false": continue
sinks:
${sink("output")}${sink("bulk")}
default_sink: output
`

describe("explain: an exploded row", () => {
  it.live("several children reached outcomes: ambiguous without --sink, narrowed by sink or token", () =>
    provide(Effect.gen(function*() {
      const run = yield* runYaml(explodeSettings)

      const ambiguous = yield* flip({ runId: run.run_id, row: "1" })
      assert.strictEqual(ambiguous._tag, "AmbiguousLineage")
      if (ambiguous._tag !== "AmbiguousLineage") return
      assert.strictEqual(ambiguous.rowIndex, 1)
      assert.strictEqual(ambiguous.candidates.length, 3)
      assert.deepStrictEqual(
        ambiguous.candidates.map((c) => `${c.outcome}:${c.sink_name}`).sort(),
        ["COMPLETED:output", "COMPLETED:output", "ROUTED:bulk"]
      )
      for (const c of ambiguous.candidates) assert.include(ambiguous.message, c.token_id)

      // --sink bulk: the one child routed there.
      const bulk = yield* lineageOf({ runId: run.run_id, row: "1", sink: "bulk" })
      assert.strictEqual(bulk.outcome?.outcome, "ROUTED")
      assert.strictEqual(bulk.sink?.name, "bulk")
      assert.strictEqual(bulk.path.length, 2)
      assert.strictEqual(bulk.path[1], bulk.token_id)
      assert.deepStrictEqual(stepNames(bulk), [
        "transform:explode_items:completed",
        "gate:bulk_check:completed",
        "sink:bulk:completed"
      ])
      // The explode ran on the parent token, the rest on the child.
      assert.strictEqual(bulk.steps[0]!.token_id, bulk.path[0])
      assert.strictEqual(bulk.steps[1]!.token_id, bulk.token_id)
      assert.strictEqual(bulk.steps[0]!.input_hash, bulk.row.hash)
      assert.deepStrictEqual(bulk.steps[1]!.routing[0]!.reason, {
        condition: "row['item']['qty'] > 2",
        result: "true",
        destination: "bulk"
      })

      // The tree: one EXPANDED root with three children sharing its expand group.
      assert.strictEqual(bulk.tokens.length, 1)
      const root = bulk.tokens[0]!
      assert.strictEqual(root.outcome?.outcome, "EXPANDED")
      assert.strictEqual(root.children.length, 3)
      const group = root.children[0]!.expand_group_id
      assert.isNotNull(group)
      for (const child of root.children) {
        assert.deepStrictEqual(child.parent_token_ids, [root.token_id])
        assert.strictEqual(child.expand_group_id, group)
      }
      assert.strictEqual(allTokens(bulk.tokens).length, 4)

      // --sink output still leaves two candidates.
      const stillAmbiguous = yield* flip({ runId: run.run_id, row: "1", sink: "output" })
      assert.strictEqual(stillAmbiguous._tag, "AmbiguousLineage")
      if (stillAmbiguous._tag === "AmbiguousLineage") assert.strictEqual(stillAmbiguous.candidates.length, 2)

      // A token picks exactly one; the path runs from the source through the parent.
      const pick = ambiguous.candidates.find((c) => c.sink_name === "output")!
      const byToken = yield* lineageOf({ runId: run.run_id, token: pick.token_id })
      assert.strictEqual(byToken.token_id, pick.token_id)
      assert.deepStrictEqual(byToken.path, [root.token_id, pick.token_id])
      assert.strictEqual(byToken.outcome?.outcome, "COMPLETED")
      assert.strictEqual(byToken.steps.at(-1)!.node.name, "output")

      // The parent itself can be explained too: it ends EXPANDED, without a sink.
      const parent = yield* lineageOf({ runId: run.run_id, token: root.token_id })
      assert.strictEqual(parent.outcome?.outcome, "EXPANDED")
      assert.isNull(parent.sink)
      assert.deepStrictEqual(stepNames(parent), ["transform:explode_items:completed"])

      const story = narrate(byToken).split("\n")
      assert.include(story, `  ${root.token_id}  EXPANDED`)
      assert.strictEqual(story.filter((line) => /^ {2}(├─|└─) tok_/.test(line)).length, 3)
      assert.isTrue(story.some((line) => line.includes(pick.token_id) && line.endsWith("← explained")))
      assert.include(story, `  token ${pick.token_id}`)

      // A row with a single child needs no selection.
      const single = yield* lineageOf({ runId: run.run_id, row: "0" })
      assert.strictEqual(single.path.length, 2)
      assert.strictEqual(single.outcome?.outcome, "COMPLETED")
    })))
})

// ---------------------------------------------------------------------------

const notesInput = file("notes.csv", "id,text\n1,hello world\n2,the secret plan\n")

const onErrorSettings = `
source:
  plugin: csv
  options:
    path: ${JSON.stringify(notesInput)}
    schema:
      mode: observed
    on_validation_failure: discard
transforms:
  - plugin: keyword_filter
    name: screen
    options:
      fields: text
      blocked_patterns: ["secret"]
      on_error: flagged
      schema:
        mode: observed
sinks:
${sink("output")}${sink("flagged")}
default_sink: output
`

describe("explain: a transform error routed via on_error", () => {
  it.live("the failed step, the recorded error and the diverted route", () =>
    provide(Effect.gen(function*() {
      const run = yield* runYaml(onErrorSettings)
      const l = yield* lineageOf({ runId: run.run_id, row: "1" })

      assert.deepStrictEqual(stepNames(l), ["transform:screen:failed", "sink:flagged:completed"])
      const failed = l.steps[0]!
      assert.isNull(failed.output_hash)
      assert.strictEqual((failed.error as { reason?: string }).reason, "blocked_content")
      assert.strictEqual(failed.routing.length, 1)
      const route = failed.routing[0]!
      assert.strictEqual(route.edge_label, "on_error")
      assert.strictEqual(route.mode, "divert")
      assert.strictEqual(route.destination, "flagged")
      assert.strictEqual((route.reason as { on_error?: string }).on_error, "flagged")
      assert.strictEqual((route.reason as { error?: { field?: string } }).error?.field, "text")

      assert.strictEqual(l.transform_errors.length, 1)
      const te = l.transform_errors[0]!
      assert.strictEqual(te.node, "screen")
      assert.strictEqual(te.state_id, failed.state_id)
      assert.strictEqual(te.destination, "flagged")
      assert.strictEqual((te.details as { matched_pattern?: string }).matched_pattern, "secret")

      assert.strictEqual(l.outcome?.outcome, "ROUTED")
      assert.strictEqual(l.sink?.name, "flagged")

      const story = narrate(l)
      assert.include(story, "transform 'screen' (keyword_filter)  failed")
      assert.include(story, `error: {"field":"text","match_context":"the secret plan","matched_pattern":"secret","reason":"blocked_content"}`)
      assert.include(story, "transform 'screen' error → on_error → sink flagged (divert)")
      assert.include(story, "outcome ROUTED → sink flagged")

      const clean = yield* lineageOf({ runId: run.run_id, row: "0" })
      assert.deepStrictEqual(stepNames(clean), ["transform:screen:completed", "sink:output:completed"])
      assert.deepStrictEqual(clean.transform_errors, [])
    })))
})
