import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Either, Fiber, Stream, TestClock } from "effect"
import { createHash } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { runPipeline } from "../../src/pipeline/orchestrator/run.js"
import { type SourcePlugin, type TransformPlugin, TransformResult } from "../../src/pipeline/plugins/protocol.js"
import { parseSchemaConfig } from "../../src/pipeline/plugins/schema.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import { planOf, query, runSettings, tempDir, TestLandscape, writeFile } from "../support/pipeline.js"

const sinks = (dir: string, names: ReadonlyArray<string>, plugin = "csv") =>
  names.map((n) => `  ${n}:\n    plugin: ${plugin}\n    options:\n      path: ${join(dir, `${n}.${plugin === "csv" ? "csv" : "jsonl"}`)}\n      schema: {mode: observed}\n`).join("")

const CSV = "id,name,amount\n1,a,10\n2,b,2000\n3,c,30\n4,d,4000\n5,e,50\n"

const gatePipeline = (dir: string, input: string, extra = "") => `
source:
  plugin: csv
  options:
    path: ${input}
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int"]}
    on_validation_failure: quarantine
${extra}
gates:
  - name: big
    condition: "row['amount'] > 1000"
    routes: {"true": high, "false": continue}
sinks:
${sinks(dir, ["out", "high"])}${sinks(dir, ["quarantine"], "json")}
default_sink: out
`

const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")

describe("pipeline engine", () => {
  it.scoped("routes rows, records every decision, and registers artifacts", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", CSV)
      const r = yield* runSettings(gatePipeline(dir, input))
      assert.isTrue(Either.isRight(r))
      const result = Either.getOrThrow(r)
      assert.deepInclude(result, { status: "completed", rows_processed: 5, rows_succeeded: 3, rows_routed: 2 })
      assert.deepStrictEqual(result.routed_destinations, { high: 2 })
      yield* assertLandscapeInvariants(result.run_id)
      assert.strictEqual(readFileSync(join(dir, "high.csv"), "utf8"), "id,name,amount\r\n2,b,2000\r\n4,d,4000\r\n")
      const events = yield* query<{ reason_json: string; label: string }>(
        `SELECT r.reason_json, e.label FROM routing_events r JOIN edges e ON e.edge_id = r.edge_id ORDER BY r.created_at, r.event_id`
      )
      assert.strictEqual(events.length, 5)
      assert.include(events.map((e) => e.label), "true")
      assert.deepStrictEqual(JSON.parse(events.find((e) => e.label === "true")!.reason_json), {
        condition: "row['amount'] > 1000",
        destination: "high",
        result: "true"
      })
      const artifacts = yield* query<{ sink_name: string; content_hash: string; size_bytes: number }>(
        `SELECT sink_name, content_hash, size_bytes FROM artifacts ORDER BY sink_name`
      )
      assert.deepStrictEqual(artifacts.map((a) => a.sink_name), ["high", "out"])
      assert.strictEqual(artifacts[0]!.content_hash, sha(join(dir, "high.csv")))
      const states = yield* query<{ n: number }>(`SELECT COUNT(*) AS n FROM node_states WHERE status = 'completed'`)
      assert.strictEqual(states[0]!.n, 10) // a gate state and a sink state per row
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("quarantines rows with wrong types, ragged rows and bad UTF-8, losing none", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const bad = Buffer.concat([
        Buffer.from("id,name,amount\n1,a,10\n2,b,notanumber\n3,c\n4,d,40,extra\n5,"),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(",50\n6,f,60\n")
      ])
      const input = writeFile(dir, "in.csv", bad)
      const result = Either.getOrThrow(yield* runSettings(gatePipeline(dir, input)))
      assert.deepInclude(result, { status: "completed", rows_processed: 6, rows_succeeded: 2, rows_quarantined: 4 })
      yield* assertLandscapeInvariants(result.run_id)
      const errors = yield* query<{ error: string; destination: string }>(`SELECT error, destination FROM validation_errors`)
      assert.strictEqual(errors.length, 4)
      assert.isTrue(errors.every((e) => e.destination === "quarantine"))
      const quarantined = readFileSync(join(dir, "quarantine.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      assert.strictEqual(quarantined.length, 4)
      assert.strictEqual(quarantined[0].amount, "notanumber")
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("discards invalid rows when on_validation_failure is discard, still recording them", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", "id,name,amount\n1,a,x\n2,b,20\n")
      const yaml = gatePipeline(dir, input).replace("on_validation_failure: quarantine", "on_validation_failure: discard")
        .replace(/  quarantine:\n[\s\S]*?schema: \{mode: observed\}\n/, "")
      const result = Either.getOrThrow(yield* runSettings(yaml))
      assert.deepInclude(result, { rows_processed: 2, rows_quarantined: 1, rows_succeeded: 1 })
      yield* assertLandscapeInvariants(result.run_id)
      const outcomes = yield* query<{ sink_name: string | null }>(`SELECT sink_name FROM token_outcomes WHERE outcome = 'QUARANTINED'`)
      assert.deepStrictEqual(outcomes, [{ sink_name: null }])
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("an empty input completes with no rows and creates no output files", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", "")
      const result = Either.getOrThrow(yield* runSettings(gatePipeline(dir, input)))
      assert.deepInclude(result, { status: "completed", rows_processed: 0 })
      assert.isFalse(existsSync(join(dir, "out.csv")))
      yield* assertLandscapeInvariants(result.run_id)
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("a missing input file is a settings error naming the key", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const r = yield* Effect.either(planOf(gatePipeline(dir, join(dir, "nope.csv"))))
      assert.isTrue(Either.isLeft(r))
      if (Either.isLeft(r)) {
        assert.strictEqual(r.left.key, "source.options.path")
        assert.include(r.left.message, "nope.csv")
      }
    }))

  it.scoped("quarantines a broken JSONL line and keeps reading", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.jsonl", `{"id": 1, "name": "a", "amount": 5}\n{"id": 2, "name": \n{"id": 3, "name": "c", "amount": 3000}\n`)
      const yaml = gatePipeline(dir, input).replace("plugin: csv\n  options:\n    path", "plugin: json\n  options:\n    path")
      const result = Either.getOrThrow(yield* runSettings(yaml))
      assert.deepInclude(result, { rows_processed: 3, rows_quarantined: 1, rows_succeeded: 1, rows_routed: 1 })
      yield* assertLandscapeInvariants(result.run_id)
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("a row the audit trail cannot hash canonically (a lone surrogate) is kept, recorded as text", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.jsonl", `{"id": 1, "name": "a", "amount": 5}\n{"id": 2, "name": "\\ud800", "amount": 6}\n`)
      const yaml = gatePipeline(dir, input).replace("plugin: csv\n  options:\n    path", "plugin: json\n  options:\n    path")
      const result = Either.getOrThrow(yield* runSettings(yaml))
      assert.deepInclude(result, { status: "completed", rows_processed: 2, rows_succeeded: 2 })
      yield* assertLandscapeInvariants(result.run_id)
      const rows = yield* query<{ source_data_json: string }>(`SELECT source_data_json FROM rows WHERE row_index = 1`)
      const recorded = JSON.parse(rows[0]!.source_data_json) as { __unhashable__: string; error: string }
      assert.include(recorded.__unhashable__, "\\ud800")
      assert.include(recorded.error, "surrogate")
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("routes transform errors to on_error, or discards them", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", "id,name,amount\n1,secret,10\n2,b,20\n3,secret,30\n")
      const filter = (onError: string) => `
transforms:
  - name: screen
    plugin: keyword_filter
    options:
      schema: {mode: observed}
      fields: name
      blocked_patterns: ["secret"]
      on_error: ${onError}
`
      const routed = Either.getOrThrow(yield* runSettings(gatePipeline(dir, input, filter("quarantine"))))
      assert.deepInclude(routed, { rows_routed: 2, rows_succeeded: 1 })
      assert.deepStrictEqual(routed.routed_destinations, { quarantine: 2 })
      yield* assertLandscapeInvariants(routed.run_id)
      const errors = yield* query<{ destination: string; error_details_json: string }>(
        `SELECT destination, error_details_json FROM transform_errors WHERE run_id = ?`, [routed.run_id]
      )
      assert.strictEqual(errors.length, 2)
      assert.include(errors[0]!.error_details_json, "blocked_content")

      const discarded = Either.getOrThrow(yield* runSettings(gatePipeline(dir, input, filter("discard"))))
      assert.deepInclude(discarded, { rows_quarantined: 2, rows_succeeded: 1, rows_routed: 0 })
      yield* assertLandscapeInvariants(discarded.run_id)
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("an error without on_error fails the run, keeping what was already written", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", "id,name,amount\n1,a,10\n2,b,20\n3,c,30\n4,secret,40\n5,e,50\n")
      const yaml = gatePipeline(dir, input, `
transforms:
  - name: screen
    plugin: keyword_filter
    options:
      schema: {mode: observed}
      fields: name
      blocked_patterns: ["secret"]
`)
      const r = yield* runSettings(yaml)
      assert.isTrue(Either.isLeft(r))
      if (Either.isRight(r)) return
      const error = r.left as { message: string; result?: { status: string; rows_succeeded: number; rows_failed: number }; runId: string }
      assert.include(error.message, "screen")
      assert.include(error.message, "row 3")
      assert.strictEqual(error.result?.status, "failed")
      assert.strictEqual(error.result?.rows_failed, 1)
      assert.strictEqual(error.result?.rows_succeeded, 3)
      yield* assertLandscapeInvariants(error.runId)
      // the rows that reached the sink before the failure are durable and parseable
      assert.strictEqual(readFileSync(join(dir, "out.csv"), "utf8"), "id,name,amount\r\n1,a,10\r\n2,b,20\r\n3,c,30\r\n")
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("a gate that cannot evaluate fails the run naming the gate and the row", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", "id,name,amount\n1,a,10\n2,b,20\n")
      const yaml = gatePipeline(dir, input).replace("row['amount'] > 1000", "row['missing'] > 1000")
      const r = yield* runSettings(yaml)
      assert.isTrue(Either.isLeft(r))
      if (Either.isLeft(r)) {
        assert.include(r.left.message, "gate 'big'")
        assert.include(r.left.message, "row 0")
        yield* assertLandscapeInvariants((r.left as { runId: string }).runId)
      }
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("an interrupted run is recorded interrupted with complete, parseable outputs", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const released = yield* Deferred.make<void>()
      const schema = yield* parseSchemaConfig("endless", { mode: "observed" })
      const endless: SourcePlugin = {
        kind: "source",
        name: "endless",
        description: "test: rows, then waits forever",
        create: () =>
          Effect.succeed({
            plugin: "endless",
            onValidationFailure: "discard",
            schema,
            read: Stream.concat(
              Stream.fromChunk(Chunk.fromIterable(Array.from({ length: 10 }, (_, i) => ({ _tag: "Valid" as const, row: { id: i, amount: i * 500 } })))),
              Stream.fromEffect(Effect.zipRight(Deferred.succeed(released, undefined), Effect.never))
            )
          })
      }
      const yaml = `
source: {plugin: endless}
gates:
  - name: big
    condition: "row['amount'] > 1000"
    routes: {"true": high, "false": continue}
sinks:
${sinks(dir, ["out", "high"], "json")}
default_sink: out
`
      const plan = yield* planOf(yaml, [endless])
      const fiber = yield* Effect.fork(runPipeline(plan))
      yield* Deferred.await(released)
      yield* Fiber.interrupt(fiber)
      const runs = yield* query<{ run_id: string; status: string }>(`SELECT run_id, status FROM runs`)
      assert.strictEqual(runs[0]!.status, "interrupted")
      yield* assertLandscapeInvariants(runs[0]!.run_id)
      const lines = readFileSync(join(dir, "out.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      const high = readFileSync(join(dir, "high.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      assert.strictEqual(lines.length + high.length, 10)
      const outcomes = yield* query<{ n: number }>(`SELECT COUNT(*) AS n FROM token_outcomes WHERE outcome IN ('COMPLETED','ROUTED')`)
      assert.strictEqual(outcomes[0]!.n, 10)
    }).pipe(Effect.provide(TestLandscape)))
})

describe("route validation (before any row is read)", () => {
  const dir = tempDir()
  const input = writeFile(dir, "in.csv", CSV)
  const errorOf = (yaml: string) =>
    Effect.runSync(Effect.either(planOf(yaml))).pipe((r) => (Either.isLeft(r) ? `${r.left.key}: ${r.left.message}` : "ok"))

  it("names the gate, the label and the available sinks", () => {
    assert.strictEqual(
      errorOf(gatePipeline(dir, input).replace('"true": high', '"true": hi_values')),
      "gates[0].routes.true: Gate 'big' can route to 'hi_values' (via route label 'true') but no sink named 'hi_values' exists. Available sinks: ['high', 'out', 'quarantine']"
    )
  })

  it("checks transform on_error sinks", () => {
    const yaml = gatePipeline(dir, input, `
transforms:
  - name: screen
    plugin: keyword_filter
    options: {schema: {mode: observed}, fields: name, blocked_patterns: ["x"], on_error: nowhere}
`)
    assert.strictEqual(
      errorOf(yaml),
      "transforms[0].options.on_error: Transform 'screen' has on_error='nowhere' but no sink named 'nowhere' exists. Available sinks: ['high', 'out', 'quarantine']. Use 'discard' to drop error rows without routing."
    )
  })

  it("checks the source quarantine destination", () => {
    assert.strictEqual(
      errorOf(gatePipeline(dir, input).replace("on_validation_failure: quarantine", "on_validation_failure: jail")),
      "source.options.on_validation_failure: Source 'csv' has on_validation_failure='jail' but no sink named 'jail' exists. Available sinks: ['high', 'out', 'quarantine']. Use 'discard' to drop invalid rows without routing."
    )
  })

  it("requires exactly true/false routes for a boolean condition, and reserves continue", () => {
    assert.match(errorOf(gatePipeline(dir, input).replace('"true": high, "false": continue', '"yes": high, "false": continue')), /^gates\[0\]\.routes: the condition is boolean/)
    assert.match(errorOf(gatePipeline(dir, input).replace('"false": continue', '"false": continue, "continue": high')), /^gates\[0\]\.routes\.continue: 'continue' is reserved/)
  })

  it("reports expression syntax errors with the column", () => {
    assert.match(errorOf(gatePipeline(dir, input).replace("row['amount'] > 1000", "row['amount'] >> 1000")), /^gates\[0\]\.condition: .*column 15/)
  })

  it("rejects a sink nothing routes to, and an unknown default sink", () => {
    const withOrphan = gatePipeline(dir, input).replace("default_sink: out", `${sinks(dir, ["orphan"])}default_sink: out`)
    assert.match(errorOf(withOrphan), /^sinks\.orphan: no route, on_error, on_validation_failure, fork branch or default_sink reaches this sink/)
    assert.match(errorOf(gatePipeline(dir, input).replace("default_sink: out", "default_sink: outt")), /^default_sink: no sink named 'outt' \(did you mean 'out'\?\)/)
  })
})

describe("retryable transform errors", () => {
  /** A transform that fails (retryably) for the first `failures` attempts of every row. */
  const flaky = (failures: number): TransformPlugin => ({
    kind: "transform",
    name: "flaky",
    description: "test: fails retryably, then succeeds",
    batchAware: false,
    create: () =>
      Effect.gen(function*() {
        const schema = yield* parseSchemaConfig("flaky", { mode: "observed" })
        const attempts = new Map<unknown, number>()
        return {
          _tag: "RowTransform" as const,
          plugin: "flaky",
          onError: "errors",
          inputSchema: schema,
          outputSchema: schema,
          process: (row) => {
            const n = (attempts.get(row.id) ?? 0) + 1
            attempts.set(row.id, n)
            return n <= failures
              ? TransformResult.error({ reason: "service_unavailable", attempt: n }, true)
              : TransformResult.success({ ...row, attempts: n })
          }
        }
      })
  })
  const yaml = (dir: string, input: string) => `
source:
  plugin: csv
  options: {path: ${input}, schema: {mode: observed}, on_validation_failure: discard}
transforms:
  - {plugin: flaky, name: call_service}
retry: {max_attempts: 3, initial_delay_seconds: 2, exponential_base: 3}
sinks:
${sinks(dir, ["out", "errors"], "json")}
default_sink: out
`

  it.effect("retries with backoff on the Clock, each attempt its own node state", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", "id\n1\n")
      const plan = yield* planOf(yaml(dir, input), [flaky(2)])
      const fiber = yield* Effect.fork(runPipeline(plan))
      // Backoff: 2 s after the first failure, 6 s after the second.
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
      yield* TestClock.adjust("2 seconds")
      yield* TestClock.adjust("6 seconds")
      const result = yield* Fiber.join(fiber)
      assert.strictEqual(result.rows_succeeded, 1)
      yield* assertLandscapeInvariants(result.run_id)
      const states = yield* query<{ attempt: number; status: string; started_at: string }>(
        `SELECT s.attempt, s.status, s.started_at FROM node_states s JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id
         WHERE n.name = 'call_service' ORDER BY s.attempt`
      )
      assert.deepStrictEqual(states.map((s) => [s.attempt, s.status]), [[1, "failed"], [2, "failed"], [3, "completed"]])
      assert.deepStrictEqual(
        states.map((s) => Date.parse(s.started_at) - Date.parse(states[0]!.started_at)),
        [0, 2_000, 8_000]
      )
      const errors = yield* query<{ n: number }>(`SELECT COUNT(*) AS n FROM transform_errors`)
      assert.strictEqual(errors[0]!.n, 2)
    }).pipe(Effect.provide(TestLandscape)))

  it.effect("routes to on_error once the attempts are used up", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", "id\n1\n2\n")
      const plan = yield* planOf(yaml(dir, input), [flaky(99)])
      const fiber = yield* Effect.fork(runPipeline(plan))
      for (let i = 0; i < 10; i++) {
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 20)))
        yield* TestClock.adjust("10 seconds")
      }
      const result = yield* Fiber.join(fiber)
      assert.deepInclude(result, { rows_routed: 2, rows_succeeded: 0 })
      assert.deepStrictEqual(result.routed_destinations, { errors: 2 })
      yield* assertLandscapeInvariants(result.run_id)
      const states = yield* query<{ n: number }>(`SELECT COUNT(*) AS n FROM node_states WHERE status = 'failed'`)
      assert.strictEqual(states[0]!.n, 6)
    }).pipe(Effect.provide(TestLandscape)))
})
