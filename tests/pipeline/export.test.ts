import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Stream } from "effect"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { parse } from "csv-parse/sync"
import type { RunId } from "../../src/core/ids.js"
import { checkExportSigningKey, exportAfterRun, exportRun } from "../../src/pipeline/orchestrator/export.js"
import { runPipeline } from "../../src/pipeline/orchestrator/run.js"
import type { SourcePlugin } from "../../src/pipeline/plugins/protocol.js"
import { OBSERVED_SCHEMA } from "../../src/pipeline/plugins/schema.js"
import { Recorder } from "../../src/services/recorder.js"
import { verifyExport } from "../../src/landscape/verify.js"
import { hooksOf, instancesOf, lifecycleRows, lifecycleSink, resetLifecycle } from "../fixtures/sinks/lifecycle-sink.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import { planOf, query, tempDir, TestLandscape, writeFile } from "../support/pipeline.js"

const KEY = "test-signing-key"
const CSV = "id,name,amount\n1,a,10\n2,b,2000\n3,c,30\n4,d,4000\n5,e,50\n"
const FULL_LIFECYCLE = ["on_start", "write…", "flush", "on_complete", "close"]

/**
 * A pipeline sink's hooks: on_start first, then writes made durable by flushes at each
 * durability point, then flush → on_complete → close; each of on_start, on_complete
 * and close exactly once, and nothing after close.
 */
const assertPipelineLifecycle = (instance: string) => {
  const hooks = hooksOf(instance).join(",")
  assert.match(hooks, /^on_start(,write…|,flush)*,flush,on_complete,close$/, `${instance}: ${hooks}`)
}

const settings = (input: string, exportBlock: string, sinks: string) => `
source:
  plugin: csv
  options:
    path: ${input}
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int"]}
    on_validation_failure: discard
gates:
  - name: big
    condition: "row['amount'] > 1000"
    routes: {"true": high, "false": continue}
sinks:
  out: {plugin: lifecycle}
  high: {plugin: lifecycle}
${sinks}
default_sink: out
landscape:
  export:
${exportBlock}
`

/** Runs the plan with the export hook, as the run command does. */
const runWithExport = (yaml: string, env: Record<string, string> = { RUNLEDGER_SIGNING_KEY: KEY }) =>
  Effect.gen(function*() {
    resetLifecycle()
    const plan = yield* planOf(yaml, [lifecycleSink])
    const failures: Array<string> = []
    const afterRun = yield* exportAfterRun(plan, { env, onFailure: (m) => Effect.sync(() => void failures.push(m)) })
    const result = yield* runPipeline(plan, afterRun === undefined ? {} : { afterRun })
    const run = yield* (yield* Recorder).getRun(result.run_id)
    return { plan, result, run, failures }
  })

describe("export in a run", () => {
  it.scoped("uses a fresh export sink with its own full lifecycle, never a closed pipeline sink", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", CSV)
      const { failures, result, run } = yield* runWithExport(
        settings(input, "    enabled: true\n    sink: audit\n    format: json", "  audit: {plugin: lifecycle}")
      )
      assert.deepStrictEqual(failures, [])
      assert.strictEqual(result.status, "completed")
      assert.strictEqual(result.export_status, "completed")
      assert.strictEqual(run.export_status, "completed")
      assert.strictEqual(run.export_format, "json")
      assert.strictEqual(run.export_sink, "audit")
      assert.match(run.exported_at ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      // Each pipeline sink and the export sink: one instance each, hooks in order, each once.
      assert.strictEqual(instancesOf("audit").length, 1)
      assert.deepStrictEqual(hooksOf(instancesOf("audit")[0]!), FULL_LIFECYCLE)
      for (const i of [...instancesOf("out"), ...instancesOf("high")]) assertPipelineLifecycle(i)
      const exported = lifecycleRows.get(instancesOf("audit")[0]!)!
      assert.strictEqual(exported[0]!.record_type, "run")
      assert.deepStrictEqual(exported.map((r) => r.seq), exported.map((_, i) => i))
      assert.strictEqual(exported.filter((r) => r.record_type === "row").length, 5)
      assert.isFalse(exported.some((r) => r.record_type === "manifest"))
      const artifacts = yield* query<{ sink_name: string; artifact_type: string }>(
        `SELECT sink_name, artifact_type FROM artifacts WHERE artifact_type = 'audit_export'`
      )
      assert.deepStrictEqual(artifacts, [{ sink_name: "audit", artifact_type: "audit_export" }])
      yield* assertLandscapeInvariants(result.run_id)
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("exports through a new instance even when the export sink is also a pipeline sink", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", CSV)
      const { result } = yield* runWithExport(settings(input, "    enabled: true\n    sink: high\n    format: json", ""))
      assert.strictEqual(result.export_status, "completed")
      const [pipelineInstance, exportInstance] = instancesOf("high")
      assert.isDefined(exportInstance)
      assertPipelineLifecycle(pipelineInstance!)
      assert.deepStrictEqual(hooksOf(exportInstance!), FULL_LIFECYCLE)
      assert.strictEqual(lifecycleRows.get(pipelineInstance!)!.length, 2)
      assert.strictEqual(lifecycleRows.get(exportInstance!)![0]!.record_type, "run")
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("a failing export leaves the run completed and records export_status failed", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", CSV)
      const { failures, result, run } = yield* runWithExport(
        settings(input, "    enabled: true\n    sink: audit", "  audit: {plugin: lifecycle, options: {fail_on: write}}")
      )
      assert.strictEqual(result.status, "completed")
      assert.strictEqual(result.export_status, "failed")
      assert.strictEqual(run.status, "completed")
      assert.strictEqual(run.export_status, "failed")
      assert.match(run.export_error ?? "", /write failed on purpose/)
      assert.isNull(run.exported_at)
      assert.strictEqual(failures.length, 1)
      // Even after a failed write, the export sink is completed and closed exactly once.
      assert.deepStrictEqual(hooksOf(instancesOf("audit")[0]!), FULL_LIFECYCLE)
      yield* assertLandscapeInvariants(result.run_id)
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("a signed JSON export through the json sink verifies", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", CSV)
      const path = join(dir, "audit", "trail.json")
      const { result } = yield* runWithExport(
        settings(
          input,
          "    enabled: true\n    sink: audit\n    format: json\n    sign: true",
          `  audit: {plugin: json, options: {path: ${path}, schema: {mode: observed}}}`
        )
      )
      assert.strictEqual(result.export_status, "completed")
      const summary = yield* verifyExport(path, { signingKey: KEY })
      assert.strictEqual(summary.run_id, result.run_id)
      const records = JSON.parse(readFileSync(path, "utf8")) as Array<Record<string, unknown>>
      assert.strictEqual(records[records.length - 1]!.record_type, "manifest")
      assert.strictEqual(summary.record_count, records.length - 1)
      const [artifact] = yield* query<{ path_or_uri: string; size_bytes: number }>(
        `SELECT path_or_uri, size_bytes FROM artifacts WHERE artifact_type = 'audit_export'`
      )
      assert.strictEqual(artifact!.size_bytes, readFileSync(path).length)
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("format csv writes one file per record type next to the sink's path and registers each", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", CSV)
      const path = join(dir, "output", "audit_trail.json")
      const { result } = yield* runWithExport(
        settings(
          input,
          "    enabled: true\n    sink: audit\n    format: csv",
          `  audit: {plugin: json, options: {path: ${path}, schema: {mode: observed}}}`
        )
      )
      assert.strictEqual(result.export_status, "completed")
      const csvDir = join(dir, "output", "audit_trail")
      const files = readdirSync(csvDir).sort()
      assert.includeMembers(files, ["run.csv", "node.csv", "edge.csv", "row.csv", "token.csv", "node_state.csv", "token_outcome.csv"])
      assert.isFalse(files.some((f) => f.startsWith(".")), files.join(","))
      assert.isFalse(existsSync(path), "the CSV export opens no sink file")
      const rows = parse(readFileSync(join(csvDir, "row.csv"), "utf8"), { columns: true }) as Array<Record<string, string>>
      assert.strictEqual(rows.length, 5)
      assert.strictEqual(rows[0]!["source_data_json.name"], "a")
      const artifacts = yield* query<{ n: number }>(`SELECT COUNT(*) AS n FROM artifacts WHERE artifact_type = 'audit_export'`)
      assert.strictEqual(artifacts[0]!.n, files.length)
    }).pipe(Effect.provide(TestLandscape)))

  it.effect("the signing-key check fails fast when signing is on and no key is set", () =>
    Effect.gen(function*() {
      const input = writeFile(tempDir(), "in.csv", CSV)
      const plan = yield* planOf(
        settings(input, "    enabled: true\n    sink: audit\n    sign: true", "  audit: {plugin: lifecycle}"),
        [lifecycleSink]
      )
      const problem = checkExportSigningKey(plan, {})
      assert.isDefined(problem)
      assert.include(problem!.message, "landscape.export.sign")
      assert.include(problem!.message, "RUNLEDGER_SIGNING_KEY")
      assert.include(problem!.message, "ELSPETH_SIGNING_KEY")
      assert.isDefined(checkExportSigningKey(plan, { RUNLEDGER_SIGNING_KEY: "" }))
      assert.isUndefined(checkExportSigningKey(plan, { ELSPETH_SIGNING_KEY: "k" }))
      assert.isUndefined(checkExportSigningKey(plan, { RUNLEDGER_SIGNING_KEY: "k" }))
      const unsigned = yield* planOf(settings(input, "    enabled: true\n    sink: audit", "  audit: {plugin: lifecycle}"), [lifecycleSink])
      assert.isUndefined(checkExportSigningKey(unsigned, {}))
    }))
})

/** A source that never ends; tells `started` after `after` rows. */
const endlessSource = (started: Deferred.Deferred<void>, after: number): SourcePlugin => ({
  kind: "source",
  name: "endless",
  description: "test source that never ends",
  create: () =>
    Effect.succeed({
      plugin: "endless",
      onValidationFailure: "discard",
      schema: OBSERVED_SCHEMA,
      read: Stream.iterate(0, (n) => n + 1).pipe(
        Stream.tap((n) => (n === after ? Deferred.succeed(started, undefined) : Effect.void)),
        Stream.map((n) => ({ _tag: "Valid" as const, row: { n } })),
        Stream.rechunk(10),
        Stream.tap(() => Effect.yieldNow())
      )
    })
})

describe("exportRun", () => {
  it.scoped("exports and verifies an interrupted run", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const started = yield* Deferred.make<void>()
      const plan = yield* planOf(
        `
source: {plugin: endless}
sinks:
  out: {plugin: lifecycle}
default_sink: out
`,
        [lifecycleSink, endlessSource(started, 50)]
      )
      resetLifecycle()
      const fiber = yield* Effect.fork(runPipeline(plan, { durabilityRows: 20 }))
      yield* Deferred.await(started)
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      const [run] = yield* query<{ run_id: RunId; status: string }>(`SELECT run_id, status FROM runs`)
      assert.strictEqual(run!.status, "interrupted")
      yield* assertLandscapeInvariants(run!.run_id)
      assertPipelineLifecycle(instancesOf("out")[0]!)

      const path = join(dir, "interrupted.json")
      const summary = yield* exportRun({ run: "latest", format: "json", out: path, sign: true, signingKey: KEY })
      assert.strictEqual(summary.run_id, run!.run_id)
      assert.strictEqual(summary.run_status, "interrupted")
      const verified = yield* verifyExport(path, { signingKey: KEY })
      assert.strictEqual(verified.record_count, summary.record_count)
      const records = JSON.parse(readFileSync(path, "utf8")) as Array<Record<string, unknown>>
      assert.strictEqual(records[0]!.status, "interrupted")
      assert.isAtLeast(records.filter((r) => r.record_type === "row").length, 50)
      // Exporting is read-only on the Landscape.
      const [after] = yield* query<{ export_status: string | null }>(`SELECT export_status FROM runs`)
      assert.isNull(after!.export_status)
    }).pipe(Effect.provide(TestLandscape)))

  it.scoped("refuses --sign without a key before reading the run", () =>
    Effect.gen(function*() {
      const saved = { a: process.env.RUNLEDGER_SIGNING_KEY, b: process.env.ELSPETH_SIGNING_KEY }
      delete process.env.RUNLEDGER_SIGNING_KEY
      delete process.env.ELSPETH_SIGNING_KEY
      const r = yield* Effect.either(exportRun({ run: "nope", format: "json", out: join(tempDir(), "x.json"), sign: true }))
      if (saved.a !== undefined) process.env.RUNLEDGER_SIGNING_KEY = saved.a
      if (saved.b !== undefined) process.env.ELSPETH_SIGNING_KEY = saved.b
      assert.isTrue(Either.isLeft(r))
      assert.strictEqual(Either.getLeft(r).pipe((o) => o._tag === "Some" ? o.value._tag : ""), "SigningKeyMissing")
    }).pipe(Effect.provide(TestLandscape)))
})
