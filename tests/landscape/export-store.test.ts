import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Chunk, Effect, Exit, Stream, TestClock } from "effect"
import type { NodeId, RunId } from "../../src/core/ids.js"
import { ExportStore } from "../../src/services/export-store.js"
import { Recorder } from "../../src/services/recorder.js"
import { MemoryLandscape } from "../support/landscape.js"

const errorOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (failure === undefined) throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return failure
}

const exportColumns = (runId: RunId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ export_status: string | null; export_error: string | null; export_format: string | null; export_sink: string | null; exported_at: string | null }>`
      SELECT export_status, export_error, export_format, export_sink, exported_at FROM runs WHERE run_id = ${runId}`)

describe("SqlExportStore", () => {
  it.scoped("finds a run by id or as `latest`, and names what is missing", () =>
    Effect.gen(function*() {
      const store = yield* ExportStore
      const rec = yield* Recorder
      const none = errorOf(yield* Effect.exit(store.findRun("latest")))
      assert.strictEqual(none.reason, "MissingRun")
      assert.match(none.message, /no runs yet/)
      const first = yield* rec.beginRun({ settings: { n: 1 } })
      yield* TestClock.adjust("1 second")
      const second = yield* rec.beginRun({ settings: { n: 2 } })
      yield* rec.completeRun(first, { status: "failed", errorMessage: "boom" })
      assert.deepStrictEqual(yield* store.findRun("latest"), { runId: second, kind: "pipeline", status: "running" })
      assert.deepStrictEqual(yield* store.findRun(first), { runId: first, kind: "pipeline", status: "failed" })
      const missing = errorOf(yield* Effect.exit(store.findRun("run_nope")))
      assert.strictEqual(missing.reason, "MissingRun")
      assert.include(missing.message, "run_nope")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("finding a run writes what the Recorder still buffers, so the export sees it", () =>
    Effect.gen(function*() {
      const store = yield* ExportStore
      const rec = yield* Recorder
      const runId = yield* rec.beginRun({ settings: {} })
      yield* rec.append([{
        _tag: "Node",
        run_id: runId,
        node_id: "source_1" as NodeId,
        plugin_name: "csv",
        node_type: "source",
        name: "source",
        config_hash: "0".repeat(64),
        config_json: "{}",
        sequence: 0
      }])
      yield* store.findRun(runId)
      const records = Chunk.toReadonlyArray(yield* Stream.runCollect(store.records(runId)))
      assert.deepStrictEqual(records.map((r) => r.record_type), ["run", "node"])
      assert.deepStrictEqual(records.map((r) => r.seq), [0, 1])
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("records the export status, keeping format, sink and time once set", () =>
    Effect.gen(function*() {
      const store = yield* ExportStore
      const rec = yield* Recorder
      const runId = yield* rec.beginRun({ settings: {} })
      yield* rec.completeRun(runId, { status: "completed" })
      yield* store.setExportStatus(runId, { export_status: "pending", export_error: null, export_format: "csv", export_sink: "audit" })
      yield* store.setExportStatus(runId, { export_status: "completed", export_error: null, exported_at: "2024-01-01T00:00:00.000Z" })
      assert.deepStrictEqual((yield* exportColumns(runId))[0], {
        export_status: "completed",
        export_error: null,
        export_format: "csv",
        export_sink: "audit",
        exported_at: "2024-01-01T00:00:00.000Z"
      })
      yield* store.setExportStatus(runId, { export_status: "failed", export_error: "disk full" })
      const [after] = yield* exportColumns(runId)
      assert.strictEqual(after!.export_status, "failed")
      assert.strictEqual(after!.export_error, "disk full")
      assert.strictEqual(after!.export_format, "csv")
      const missing = errorOf(yield* Effect.exit(store.setExportStatus("run_nope" as RunId, { export_status: "failed" })))
      assert.strictEqual(missing.reason, "MissingRun")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("gives the columns of every record type and registers an export artifact", () =>
    Effect.gen(function*() {
      const store = yield* ExportStore
      const rec = yield* Recorder
      const columns = yield* store.columns("pipeline")
      assert.includeMembers([...columns.get("row")!], ["row_id", "run_id", "row_index", "source_data_json"])
      const runId = yield* rec.beginRun({ settings: {} })
      yield* rec.append([{
        _tag: "Node",
        run_id: runId,
        node_id: "sink_1" as NodeId,
        plugin_name: "json",
        node_type: "sink",
        name: "audit",
        config_hash: "0".repeat(64),
        config_json: "{}",
        sequence: 0
      }])
      yield* rec.completeRun(runId, { status: "completed" })
      yield* store.recordArtifact({
        runId,
        sinkNodeId: "sink_1" as NodeId,
        sinkName: "audit",
        artifactType: "audit_export",
        pathOrUri: "/x/audit.json",
        contentHash: "h",
        sizeBytes: 12
      })
      const artifacts = Chunk.toReadonlyArray(yield* Stream.runCollect(store.records(runId))).filter((r) => r.record_type === "artifact")
      assert.strictEqual(artifacts.length, 1)
      assert.strictEqual(artifacts[0]!.path_or_uri, "/x/audit.json")
      assert.strictEqual(artifacts[0]!.size_bytes, 12)
    }).pipe(Effect.provide(MemoryLandscape())))
})
