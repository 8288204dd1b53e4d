import { assert, describe, it } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { Chunk, Effect, Either, Stream } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { canonicalJsonUnsafe, sha256Hex } from "../../src/core/canonical.js"
import type { NodeId, RunId } from "../../src/core/ids.js"
import { type ExportRecord, exportRecords, RECORD_TYPES } from "../../src/landscape/exporter.js"
import { flattenRecord, writeCsvExport } from "../../src/pipeline/orchestrator/export-csv.js"
import { Recorder } from "../../src/services/recorder.js"
import { MemoryLandscape } from "../support/landscape.js"
import * as Trail from "../support/trail.js"
import { tempDir } from "../support/pipeline.js"

const SRC = "source_csv_1" as NodeId
const GATE = "gate_big_1" as NodeId
const AGG = "agg_stats_1" as NodeId
const SINK = "sink_out_1" as NodeId

/**
 * A finished run touching every exported table: rows with gate states and routing
 * events, a fork with parents, a batch with members and an output, an artifact and
 * both kinds of error. `rows` rows; a second run next to it must never leak in.
 */
const makeRun = (rows: number) =>
  Effect.gen(function*() {
    const rec = yield* Recorder
    const runId = yield* rec.beginRun({ settings: { source: { plugin: "csv" }, n: rows } })
    const nodes = [[SRC, "source"], [GATE, "gate"], [AGG, "aggregation"], [SINK, "sink"]] as const
    for (const [i, [nodeId, nodeType]] of nodes.entries()) {
      yield* Trail.registerNode({ runId, nodeId, pluginName: nodeType, nodeType, name: nodeId, config: { i, nested: { a: [1, 2] } }, sequence: i })
    }
    const toGate = yield* Trail.registerEdge({ runId, fromNodeId: SRC, toNodeId: GATE, label: "continue", mode: "move" })
    const toSink = yield* Trail.registerEdge({ runId, fromNodeId: GATE, toNodeId: SINK, label: "true", mode: "move" })
    const batchId = yield* Trail.createBatch({ runId, aggregationNodeId: AGG })
    for (let i = 0; i < rows; i++) {
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: i, data: { id: i, name: `r${i}`, tags: ["x"] } })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      const s0 = yield* Trail.beginNodeState({ runId, tokenId, nodeId: GATE, stepIndex: 1, input: { id: i } })
      yield* Trail.completeNodeState({ stateId: s0, status: "completed", output: { id: i }, durationMs: 0.25 })
      yield* Trail.recordRoutingEvent({ stateId: s0, edgeId: i % 2 === 0 ? toSink : toGate, mode: "move", reason: { result: i % 2 === 0 } })
      if (i % 3 === 0) {
        // A fork: two children with the parent recorded.
        yield* Trail.recordOutcome({ runId, tokenId, outcome: "FORKED" })
        for (const branch of ["a", "b"]) {
          const child = yield* Trail.createToken({ runId, rowId, parents: [tokenId], forkGroupId: `grp_${i}`, branchName: branch })
          yield* Trail.recordOutcome({ runId, tokenId: child, outcome: "COMPLETED", sinkName: "out" })
        }
      } else if (i % 3 === 1) {
        yield* Trail.addBatchMember({ batchId, tokenId, ordinal: i })
        yield* Trail.recordOutcome({ runId, tokenId, outcome: "CONSUMED_IN_BATCH", batchId })
      } else {
        yield* Trail.recordTransformError({ runId, tokenId, nodeId: GATE, stateId: s0, row: { id: i }, details: { reason: "bad" }, destination: "discard" })
        yield* Trail.recordOutcome({ runId, tokenId, outcome: "FAILED" })
      }
    }
    const outRow = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: rows, data: { batch: true } })
    const outToken = yield* Trail.createToken({ runId, rowId: outRow })
    yield* Trail.addBatchOutput({ batchId, tokenId: outToken, ordinal: 0 })
    yield* Trail.recordOutcome({ runId, tokenId: outToken, outcome: "COMPLETED", sinkName: "out" })
    yield* Trail.updateBatch({ batchId, status: "completed", triggerType: "end_of_source" })
    yield* Trail.recordValidationError({ runId, nodeId: SRC, row: { id: "x" }, error: "id: expected int", schemaMode: "fixed", destination: "discard" })
    yield* rec.recordArtifact({ runId, sinkNodeId: SINK, sinkName: "out", artifactType: "file", pathOrUri: "out.csv", contentHash: "h", sizeBytes: 1 })
    yield* rec.completeRun(runId, { status: "completed", result: { rows_processed: rows + 1 } })
    return runId
  })

const collect = (runId: RunId, options: { rowPageSize?: number; pageSize?: number } = {}) =>
  Effect.map(Stream.runCollect(exportRecords(runId, options)), (c) => Chunk.toReadonlyArray(c) as ReadonlyArray<ExportRecord>)

describe("exporter", () => {
  it.scoped("streams every table of the run in the documented order, numbered by seq", () =>
    Effect.gen(function*() {
      const runId = yield* makeRun(7)
      yield* makeRun(3) // another run in the same Landscape
      const records = yield* collect(runId)
      assert.deepStrictEqual(records.map((r) => r.seq), records.map((_, i) => i))
      const types = records.map((r) => r.record_type)
      assert.strictEqual(types[0], "run")
      for (const type of RECORD_TYPES.filter((t) => t !== "call" && t !== "operation")) assert.include(types, type)
      // Every record names this run where its table has a run id.
      for (const r of records) if ("run_id" in r) assert.strictEqual(r.run_id, runId)
      // Sections: run, nodes, edges, then rows, then batches, artifacts, errors.
      const section = (t: string) =>
        ["run", "node", "edge"].includes(t)
          ? ["run", "node", "edge"].indexOf(t)
          : ["row", "token", "token_parent", "node_state", "routing_event", "token_outcome"].includes(t)
          ? 3
          : 4 + ["batch", "batch_member", "batch_output", "artifact", "validation_error", "transform_error"].indexOf(t)
      for (let i = 1; i < types.length; i++) assert.isAtLeast(section(types[i]!), section(types[i - 1]!), `${types[i - 1]} → ${types[i]}`)
      // Within the row section, each row comes first, then its records in table order.
      const perRow = ["row", "token", "token_parent", "node_state", "routing_event", "token_outcome"]
      let rowId: unknown
      let last = 0
      for (const r of records) {
        if (r.record_type === "row") {
          rowId = r.row_id
          last = 0
          continue
        }
        const slot = perRow.indexOf(r.record_type)
        if (slot < 0) continue
        assert.isAtLeast(slot, last)
        last = slot
        if (r.record_type === "token") assert.strictEqual(r.row_id, rowId)
      }
      assert.deepStrictEqual(
        records.filter((r) => r.record_type === "row").map((r) => r.row_index),
        [0, 1, 2, 3, 4, 5, 6, 7]
      )
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("emits *_json columns parsed; their canonical JSON gives back the stored hash", () =>
    Effect.gen(function*() {
      const runId = yield* makeRun(2)
      const records = yield* collect(runId)
      const row = records.find((r) => r.record_type === "row")!
      assert.deepStrictEqual(row.source_data_json, { id: 0, name: "r0", tags: ["x"] })
      assert.strictEqual(sha256Hex(canonicalJsonUnsafe(row.source_data_json)), row.source_data_hash)
      const node = records.find((r) => r.record_type === "node")!
      assert.strictEqual(sha256Hex(canonicalJsonUnsafe(node.config_json)), node.config_hash)
      const run = records[0]!
      assert.strictEqual(sha256Hex(canonicalJsonUnsafe(run.settings_json)), run.config_hash)
      // Column names are exactly the table's, after record_type and seq.
      assert.deepStrictEqual(Object.keys(row), [
        "record_type", "seq", "row_id", "run_id", "source_node_id", "row_index", "source_data_hash", "source_data_json", "created_at"
      ])
      for (const r of records) assert.doesNotThrow(() => canonicalJsonUnsafe(r))
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("keyset paging gives the same records whatever the page size", () =>
    Effect.gen(function*() {
      const runId = yield* makeRun(25)
      const big = yield* collect(runId)
      const small = yield* collect(runId, { rowPageSize: 4, pageSize: 1 })
      const tiny = yield* collect(runId, { rowPageSize: 1, pageSize: 2 })
      assert.deepStrictEqual(small, big)
      assert.deepStrictEqual(tiny, big)
      assert.strictEqual(big.filter((r) => r.record_type === "batch_member").length, 8)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("fails with a clear error for an unknown run", () =>
    Effect.gen(function*() {
      const r = yield* Effect.either(collect("run_missing" as RunId))
      assert.isTrue(Either.isLeft(r))
      assert.include(Either.getLeft(r).pipe((o) => (o._tag === "Some" ? o.value.message : "")), "no run with id run_missing")
    }).pipe(Effect.provide(MemoryLandscape())))
})

describe("CSV export", () => {
  it("flattens nested objects with dotted keys and keeps arrays as JSON", () => {
    const flat = flattenRecord({ record_type: "row", seq: 3, data: { a: 1, b: { c: "x", d: [1, 2] }, e: {} }, n: null, t: true })
    assert.deepStrictEqual({ ...flat }, {
      record_type: "row",
      seq: "3",
      "data.a": "1",
      "data.b.c": "x",
      "data.b.d": "[1,2]",
      "data.e": "{}",
      n: null,
      t: "true"
    })
  })

  it("refuses a key collision instead of overwriting", () => {
    assert.throws(() => flattenRecord({ record_type: "row", seq: 1, data: { "a.b": 1, a: { b: 2 } } }), /two values map to the column 'data.a.b'/)
  })

  it.scoped("writes one file per record type with a stable header", () =>
    Effect.gen(function*() {
      const runId = yield* makeRun(4)
      const dir = tempDir()
      const { count, files } = yield* writeCsvExport(dir, exportRecords(runId), false)
      assert.strictEqual(files.length, RECORD_TYPES.length)
      assert.deepStrictEqual(readdirSync(dir).sort(), RECORD_TYPES.map((t) => `${t}.csv`).sort())
      const records = yield* collect(runId)
      assert.strictEqual(count, records.length)
      const rowCsv = readFileSync(join(dir, "row.csv"), "utf8")
      const header = rowCsv.split(/\r?\n/)[0]!.split(",")
      assert.deepStrictEqual(header, [
        "record_type", "seq", "row_id", "run_id", "source_node_id", "row_index", "source_data_hash",
        "source_data_json", "source_data_json.id", "source_data_json.name", "source_data_json.tags", "source_data_json.batch", "created_at"
      ])
      const rows = parse(rowCsv, { columns: true }) as Array<Record<string, string>>
      assert.strictEqual(rows.length, 5)
      assert.strictEqual(rows[0]!["source_data_json.tags"], "[\"x\"]")
      assert.strictEqual(rows[4]!["source_data_json.batch"], "true")
      // A type with no records still gets its table's columns.
      assert.strictEqual(
        readFileSync(join(dir, "call.csv"), "utf8").trim(),
        "record_type,seq,call_id,state_id,operation_id,call_index,call_type,status,request_hash,response_hash,error_json,latency_ms,created_at,run_id,node_id,provider,model,response_model,http_status,attempt,error_class,usage_json,verify_json"
      )
    }).pipe(Effect.provide(MemoryLandscape())))
})
