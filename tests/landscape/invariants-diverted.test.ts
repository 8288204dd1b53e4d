/**
 * The invariants of DIVERTED tokens (a sink's `on_write_failure`), checked by
 * tests/support/invariants.ts: a well-formed diverted trail passes, and each way of
 * breaking one is refused, naming what is wrong. Also: the Landscape schema accepts
 * DIVERTED, and a database migrated before it keeps its outcomes.
 */
import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cause, Effect, Exit, Layer } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { NodeId, RunId } from "../../src/core/ids.js"
import { LATEST_MIGRATION, migrations } from "../../src/landscape/sqlite.js"
import { SqliteLandscape } from "../../src/landscape/sqlite.js"
import { Recorder } from "../../src/services/recorder.js"
import { assertLandscapeInvariants, InvariantViolation } from "../support/invariants.js"
import { MemoryLandscape } from "../support/landscape.js"
import * as Trail from "../support/trail.js"

const SRC = "source_1" as NodeId
const OUT = "sink_out" as NodeId
const FAILED = "sink_failed" as NodeId

interface Shape {
  /** Discard mode: no failsink state, no routing event, no sink name. */
  readonly discard?: boolean
  /** The state at the primary sink completed instead of failing. */
  readonly primaryCompleted?: boolean
  /** Leave out the completed state at the failsink. */
  readonly noFailsinkState?: boolean
  /** Leave out the routing event along the on_write_failure edge. */
  readonly noRouting?: boolean
  /** Discard mode, yet the token has a completed state at a sink. */
  readonly discardedButWritten?: boolean
  /** Leave out the failsink's artifact. */
  readonly noArtifact?: boolean
  readonly result?: Record<string, number>
}

/** A finished run of one row that the sink `out` could not write, diverted as `shape` says. */
const runOf = (shape: Shape = {}) =>
  Effect.gen(function*() {
    const rec = yield* Recorder
    const runId = yield* rec.beginRun({ settings: {} })
    yield* Trail.registerNode({ runId, nodeId: SRC, pluginName: "json", nodeType: "source", name: "source", config: {}, sequence: 0 })
    yield* Trail.registerNode({ runId, nodeId: OUT, pluginName: "csv", nodeType: "sink", name: "out", config: {}, sequence: 1 })
    yield* Trail.registerNode({ runId, nodeId: FAILED, pluginName: "json", nodeType: "sink", name: "failed", config: {}, sequence: 2 })
    yield* Trail.registerEdge({ runId, fromNodeId: SRC, toNodeId: OUT, label: "continue", mode: "move" })
    const edgeId = yield* Trail.registerEdge({ runId, fromNodeId: OUT, toNodeId: FAILED, label: "on_write_failure", mode: "divert" })
    const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: { id: 1, extra: "x" } })
    const tokenId = yield* Trail.createToken({ runId, rowId })
    const primary = yield* Trail.beginNodeState({ runId, tokenId, nodeId: OUT, stepIndex: 1, input: { id: 1, extra: "x" } })
    yield* Trail.completeNodeState({
      stateId: primary,
      status: shape.primaryCompleted === true ? "completed" : "failed",
      error: { message: "dict contains fields not in fieldnames: 'extra'" },
      durationMs: 1
    })
    const discard = shape.discard === true || shape.discardedButWritten === true
    if (!discard && shape.noRouting !== true) yield* Trail.recordRoutingEvent({ stateId: primary, edgeId, mode: "divert", reason: { on_write_failure: "failed" } })
    if ((!discard && shape.noFailsinkState !== true) || shape.discardedButWritten === true) {
      const at = yield* Trail.beginNodeState({ runId, tokenId, nodeId: FAILED, stepIndex: 1, input: { id: 1 } })
      yield* Trail.completeNodeState({ stateId: at, status: "completed", durationMs: 1 })
    }
    yield* Trail.recordOutcome(discard ? { runId, tokenId, outcome: "DIVERTED" } : { runId, tokenId, outcome: "DIVERTED", sinkName: "failed" })
    if (!discard && shape.noArtifact !== true) {
      yield* rec.recordArtifact({ runId, sinkNodeId: FAILED, sinkName: "failed", artifactType: "file", pathOrUri: "failed.jsonl", contentHash: "h", sizeBytes: 1 })
    }
    yield* rec.completeRun(runId, { status: "completed", result: shape.result ?? { rows_processed: 1, rows_diverted: 1 } })
    return runId
  })

const violationOf = (runId: RunId) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(assertLandscapeInvariants(runId))
    if (Exit.isSuccess(exit)) return assert.fail("the invariants held for a broken trail")
    const error = Cause.squash(exit.cause)
    assert.instanceOf(error, InvariantViolation)
    return (error as InvariantViolation).message
  })

describe("invariants of DIVERTED tokens", () => {
  it.scoped("hold for a row diverted to a failsink and for a discarded one", () =>
    Effect.gen(function*() {
      yield* assertLandscapeInvariants(yield* runOf())
      yield* assertLandscapeInvariants(yield* runOf({ discard: true }))
    }).pipe(Effect.provide(MemoryLandscape())))

  const broken: ReadonlyArray<readonly [string, Shape, RegExp]> = [
    ["no failed state at the sink that could not write it", { primaryCompleted: true }, /DIVERTED tokens without a failed sink state/],
    ["no completed state at the failsink", { noFailsinkState: true }, /DIVERTED tokens without a completed state at their failsink/],
    ["no routing event to the failsink", { noRouting: true }, /without an on_write_failure routing event/],
    ["a discarded row that a sink wrote", { discardedButWritten: true }, /discarded DIVERTED tokens with a completed sink state/],
    ["a failsink with diverted rows but no artifact", { noArtifact: true }, /sinks with outcomes but no artifact/],
    ["a RunResult whose rows_diverted disagrees", { result: { rows_processed: 1, rows_diverted: 0 } }, /RunResult\.rows_diverted = 0 but the trail has 1 DIVERTED/]
  ]
  for (const [name, shape, message] of broken) {
    it.scoped(`refuses ${name}`, () =>
      Effect.gen(function*() {
        assert.match(yield* violationOf(yield* runOf(shape)), message)
      }).pipe(Effect.provide(MemoryLandscape())))
  }
})

describe("migration 0004", () => {
  it.scoped("the schema refuses an outcome it does not know and accepts DIVERTED", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // Since 0010 the outcomes are stored in ls_token_outcomes (token_outcomes is its view).
      const [table] = yield* sql<{ sql: string }>`SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ls_token_outcomes'`
      assert.include(table!.sql, "'DIVERTED'")
      const indexes = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ls_token_outcomes' AND sql IS NOT NULL ORDER BY name`
      assert.deepStrictEqual(indexes.map((i) => i.name), ["ls_token_outcomes_run", "ls_token_outcomes_token"])
      yield* runOf()
      const refused = yield* Effect.flip(sql`UPDATE ls_token_outcomes SET outcome = 'LOST'`)
      assert.match(String((refused.cause as Error).message), /CHECK constraint failed/)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.effect("keeps the outcomes of a Landscape migrated up to 0003, with the one-terminal-outcome rule", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "rl-0004-"))
      const file = join(dir, "audit.db")
      try {
        // A Landscape of the previous version, holding a run with outcomes.
        const older = Object.fromEntries(Object.entries(migrations).filter(([name]) => Number(name.slice(0, 4)) < 4))
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`PRAGMA foreign_keys = ON`
          yield* SqliteMigrator.run({ loader: SqliteMigrator.fromRecord(older) }).pipe(Effect.provide(NodeContext.layer))
          yield* sql`INSERT INTO runs (run_id, status, started_at, config_hash, settings_json, canonical_version) VALUES ('run_old', 'completed', '2026-01-01T00:00:00.000Z', 'h', '{}', 'v')`
          yield* sql`INSERT INTO nodes (run_id, node_id, plugin_name, node_type, name, config_hash, config_json, sequence)
                     VALUES ('run_old', 'src', 'csv', 'source', 'source', 'h', '{}', 0)`
          yield* sql`INSERT INTO rows (row_id, run_id, source_node_id, row_index, source_data_hash, source_data_json, created_at)
                     VALUES ('row_1', 'run_old', 'src', 0, 'h', '{}', '2026-01-01T00:00:00.000Z')`
          yield* sql`INSERT INTO tokens (token_id, run_id, row_id, created_at) VALUES ('tok_1', 'run_old', 'row_1', '2026-01-01T00:00:00.000Z')`
          yield* sql`INSERT INTO token_outcomes (outcome_id, run_id, token_id, outcome, is_terminal, sink_name, recorded_at)
                     VALUES ('out_1', 'run_old', 'tok_1', 'COMPLETED', 1, 'out', '2026-01-01T00:00:00.000Z')`
        }).pipe(Effect.provide(SqliteClient.layer({ filename: file })), Effect.scoped)

        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const [latest] = yield* sql<{ id: number }>`SELECT MAX(migration_id) AS id FROM effect_sql_migrations`
          assert.strictEqual(latest!.id, LATEST_MIGRATION)
          const kept = yield* sql<{ outcome_id: string; outcome: string; sink_name: string }>`SELECT outcome_id, outcome, sink_name FROM token_outcomes`
          assert.deepStrictEqual(kept.map((o) => ({ ...o })), [{ outcome_id: "out_1", outcome: "COMPLETED", sink_name: "out" }])
          const second = yield* Effect.exit(sql`INSERT INTO token_outcomes (outcome_id, run_id, token_id, outcome, is_terminal, recorded_at)
                                                VALUES ('out_2', 'run_old', 'tok_1', 'DIVERTED', 1, '2026-01-01T00:00:01.000Z')`)
          assert.isTrue(Exit.isFailure(second), "a second terminal outcome for one token")
          const fk = yield* sql.unsafe<Record<string, unknown>>(`PRAGMA foreign_key_check`)
          assert.deepStrictEqual(fk, [])
        }).pipe(Effect.provide(SqliteLandscape(file).pipe(Layer.orDie)), Effect.scoped)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})
