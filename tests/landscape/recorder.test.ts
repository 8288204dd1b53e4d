import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either, Exit, Layer, TestClock } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { NodeId, RowId, RunId, StateId, TokenId } from "../../src/core/ids.js"
import { resolveSqliteUrl, SqliteLandscape } from "../../src/landscape/sqlite.js"
import { Recorder } from "../../src/services/recorder.js"
import type { AuditRecord, OutcomeRecord } from "../../src/services/records.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import { MemoryLandscape } from "../support/landscape.js"
import * as Trail from "../support/trail.js"

const SRC = "source_csv_1" as NodeId
const SINK = "sink_out_1" as NodeId

/** A run with a source and a sink node, ready for rows. */
const setup = Effect.gen(function*() {
  const rec = yield* Recorder
  const runId = yield* rec.beginRun({ settings: { source: { plugin: "csv" } } })
  yield* Trail.registerNode({ runId, nodeId: SRC, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
  yield* Trail.registerNode({ runId, nodeId: SINK, pluginName: "csv", nodeType: "sink", name: "out", config: { path: "x" }, sequence: 1 })
  const edgeId = yield* Trail.registerEdge({ runId, fromNodeId: SRC, toNodeId: SINK, label: "continue", mode: "move" })
  return { rec, runId, edgeId }
})

const errorOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (failure === undefined) throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return failure
}

describe("SqlRecorder", () => {
  it.scoped("records a row's whole life and keeps the invariants", () =>
    Effect.gen(function*() {
      const { rec, runId, edgeId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: { id: 1, name: "a" } })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      const stateId = yield* Trail.beginNodeState({ runId, tokenId, nodeId: SINK, stepIndex: 1, input: { id: 1 } })
      yield* Trail.completeNodeState({ stateId, status: "completed", output: { id: 1 }, durationMs: 0.5 })
      yield* Trail.recordRoutingEvent({ stateId, edgeId, mode: "move", reason: { condition: true } })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "COMPLETED", sinkName: "out" })
      yield* rec.recordArtifact({ runId, sinkNodeId: SINK, sinkName: "out", artifactType: "file", pathOrUri: "x", contentHash: "h", sizeBytes: 3 })
      yield* rec.completeRun(runId, { status: "completed", result: { rows_processed: 1, rows_succeeded: 1 } })
      yield* assertLandscapeInvariants(runId)
      const sql = yield* SqlClient.SqlClient
      const [state] = yield* sql<{ status: string; output_hash: string; duration_ms: number }>`SELECT * FROM node_states`
      assert.strictEqual(state!.status, "completed")
      assert.strictEqual(state!.duration_ms, 0.5)
      assert.match(state!.output_hash, /^[0-9a-f]{64}$/)
      const view = yield* rec.getRun(runId)
      assert.strictEqual(view.status, "completed")
      assert.strictEqual(view.counts.rows, 1)
      assert.deepStrictEqual(view.counts.outcomes, { COMPLETED: 1 })
      assert.deepStrictEqual(view.result, { rows_processed: 1, rows_succeeded: 1 })
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("timestamps come from effect's Clock, as ISO-8601 with milliseconds", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(2026, 10, 21, 23, 40, 5, 123))
      const { rec, runId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      yield* rec.flush
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ created_at: string }>`SELECT created_at FROM rows WHERE row_id = ${rowId}`
      assert.strictEqual(row!.created_at, "2026-11-21T23:40:05.123Z")
      const view = yield* rec.getRun(runId)
      assert.strictEqual(view.started_at, "2026-11-21T23:40:05.123Z")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("buffers writes until a flush and writes them in chunks", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      const sql = yield* SqlClient.SqlClient
      for (let i = 0; i < 4000; i++) {
        const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: i, data: { i } })
        yield* Trail.createToken({ runId, rowId })
      }
      const [before] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM rows`
      assert.strictEqual(before!.n, 0)
      yield* rec.flush
      const [after] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM rows`
      assert.strictEqual(after!.n, 4000)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("flushes by itself when the buffer is full", () =>
    Effect.gen(function*() {
      const { runId } = yield* setup
      const sql = yield* SqlClient.SqlClient
      for (let i = 0; i < 150; i++) yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: i, data: { i } })
      // The 3 setup records and 97 rows fill the buffer of 100; the other 53 rows wait.
      const [n] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM rows`
      assert.strictEqual(n!.n, 97)
    }).pipe(Effect.provide(SqliteLandscape(":memory:", { maxBufferedRecords: 100 }).pipe(Layer.orDie))))

  it.scoped("updates a node state completed after it was flushed open", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      const stateId = yield* Trail.beginNodeState({ runId, tokenId, nodeId: SINK, stepIndex: 1, input: {} })
      yield* rec.flush
      yield* Trail.completeNodeState({ stateId, status: "failed", error: { message: "boom" }, durationMs: 2 })
      yield* rec.flush
      const sql = yield* SqlClient.SqlClient
      const [state] = yield* sql<{ status: string; error_json: string }>`SELECT status, error_json FROM node_states`
      assert.strictEqual(state!.status, "failed")
      assert.strictEqual(state!.error_json, `{"message":"boom"}`)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("closes open node states as failed when a run fails", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      yield* Trail.beginNodeState({ runId, tokenId, nodeId: SINK, stepIndex: 1, input: {} })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "FAILED", error: { message: "boom" } })
      yield* rec.completeRun(runId, { status: "failed", errorMessage: "boom" })
      yield* assertLandscapeInvariants(runId)
      const view = yield* rec.getRun(runId)
      assert.strictEqual(view.status, "failed")
      assert.strictEqual(view.error_message, "boom")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("refuses a second terminal outcome in the same buffer with a typed error", () =>
    Effect.gen(function*() {
      const { runId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "BUFFERED" })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "COMPLETED", sinkName: "out" })
      const exit = yield* Effect.exit(Trail.recordOutcome({ runId, tokenId, outcome: "ROUTED", sinkName: "out" }))
      const e = errorOf(exit)
      assert.strictEqual(e.reason, "DuplicateTerminalOutcome")
      assert.include(e.message, tokenId)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("refuses a terminal outcome that duplicates one already in the database, keeping the rest", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "COMPLETED", sinkName: "out" })
      yield* rec.flush
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "FAILED" })
      const row2 = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 1, data: {} })
      const exit = yield* Effect.exit(rec.flush)
      const e = errorOf(exit)
      assert.strictEqual(e.reason, "DuplicateTerminalOutcome")
      assert.include(e.message, tokenId)
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ row_id: string }>`SELECT row_id FROM rows WHERE row_id = ${row2}`
      assert.strictEqual(rows.length, 1)
      const outcomes = yield* sql<{ outcome: string }>`SELECT outcome FROM token_outcomes WHERE token_id = ${tokenId}`
      assert.deepStrictEqual(outcomes.map((o) => o.outcome), ["COMPLETED"])
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("refuses records for a run that does not exist or has ended", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      const missing = errorOf(yield* Effect.exit(Trail.createRow({ runId: "run_nope" as RunId, sourceNodeId: SRC, rowIndex: 0, data: {} })))
      assert.strictEqual(missing.reason, "MissingRun")
      assert.include(missing.message, "run_nope")
      yield* rec.completeRun(runId, { status: "completed" })
      const closed = errorOf(yield* Effect.exit(Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })))
      assert.strictEqual(closed.reason, "RunNotRunning")
      const getMissing = errorOf(yield* Effect.exit(rec.getRun("run_missing" as RunId)))
      assert.strictEqual(getMissing.reason, "MissingRun")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("rejects bad input with typed errors, never a crash", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      const stateId = yield* Trail.beginNodeState({ runId, tokenId, nodeId: SINK, stepIndex: 1, input: {} })
      yield* Trail.completeNodeState({ stateId, status: "completed", durationMs: 1 })
      const at = yield* rec.now
      const outcome = (value: string): OutcomeRecord => ({
        _tag: "Outcome", outcome_id: "out_x", run_id: runId, token_id: tokenId, outcome: value as never, is_terminal: 1,
        sink_name: null, batch_id: null, fork_group_id: null, join_group_id: null, expand_group_id: null,
        error_hash: null, context_json: null, recorded_at: at
      })
      const cases: ReadonlyArray<readonly [string, Effect.Effect<unknown, { reason: string; message: string }>]> = [
        ["unknown outcome", rec.append([outcome("DONE")])],
        ["unknown record type", rec.append([{ _tag: "Gossip", run_id: runId } as unknown as AuditRecord])],
        ["empty run id in a record", rec.append([{ ...outcome("FAILED"), run_id: "" }])],
        ["completing a completed state", rec.append([{
          _tag: "NodeStateCompletion", state_id: stateId, status: "failed", output_hash: null, duration_ms: 1, error_json: null, completed_at: at
        }])],
        ["bad artifact size", rec.recordArtifact({ runId, sinkNodeId: SINK, sinkName: "out", artifactType: "file", pathOrUri: "x", contentHash: "h", sizeBytes: -3 })],
        ["running as an end status", rec.completeRun(runId, { status: "running" as never })],
        ["function in settings", rec.beginRun({ settings: { f: () => 1 } })],
        ["empty run id", rec.beginRun({ runId: "" as RunId, settings: {} })]
      ]
      for (const [name, effect] of cases) {
        const e = errorOf(yield* Effect.exit(effect))
        assert.strictEqual(e.reason, "InvalidInput", name)
        assert.isAbove(e.message.length, 10, name)
      }
      // None of them reached the trail.
      yield* rec.flush
      const sql = yield* SqlClient.SqlClient
      const [counts] = yield* sql<{ outcomes: number; artifacts: number; checkpoints: number; runs: number }>`
        SELECT (SELECT COUNT(*) FROM token_outcomes) AS outcomes, (SELECT COUNT(*) FROM artifacts) AS artifacts,
               (SELECT COUNT(*) FROM checkpoints) AS checkpoints, (SELECT COUNT(*) FROM runs) AS runs`
      assert.deepStrictEqual({ ...counts! }, { outcomes: 0, artifacts: 0, checkpoints: 0, runs: 1 })
      const [state] = yield* sql<{ status: string }>`SELECT status FROM node_states WHERE state_id = ${stateId}`
      assert.strictEqual(state!.status, "completed")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("a completion of an unknown node state is a typed error at flush", () =>
    Effect.gen(function*() {
      const { rec } = yield* setup
      yield* Trail.completeNodeState({ stateId: "st_unknown" as StateId, status: "completed", durationMs: 1 })
      const e = errorOf(yield* Effect.exit(rec.flush))
      assert.strictEqual(e.reason, "InvalidInput")
      assert.include(e.message, "st_unknown")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("compact keys: references across flushes and after a failed flush are found in the database", () =>
    Effect.gen(function*() {
      const { edgeId, rec, runId } = yield* setup
      const sql = yield* SqlClient.SqlClient
      // Flush 1: a row and its token.
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: { a: 1 } })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      yield* rec.flush
      // Flush 2: a second token of that row (the row is no longer in memory), a state and its route.
      const child = yield* Trail.createToken({ runId, rowId })
      const stateId = yield* Trail.beginNodeState({ runId, tokenId: child, nodeId: SINK, stepIndex: 1, input: { a: 1 } })
      yield* Trail.completeNodeState({ stateId, status: "completed", durationMs: 1 })
      yield* rec.flush
      // Flush 3 fails (a token of a row that does not exist) and drops what was cached.
      yield* Trail.createToken({ runId, rowId: "row_missing" as RowId })
      const failed = errorOf(yield* Effect.exit(rec.flush))
      assert.strictEqual(failed.reason, "ConstraintViolation")
      assert.include(failed.message, "row_missing")
      // Flush 4: references to records of earlier flushes only (the state of flush 2, the first token).
      yield* Trail.recordRoutingEvent({ stateId, edgeId, mode: "move", reason: { why: "test" } })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "COMPLETED", sinkName: "out" })
      yield* Trail.recordOutcome({ runId, tokenId: child, outcome: "COMPLETED", sinkName: "out" })
      yield* rec.flush
      const tokens = yield* sql<{ token_id: string; row_id: string }>`SELECT token_id, row_id FROM tokens ORDER BY token_id`
      assert.deepStrictEqual(tokens.map((t) => ({ ...t })), [{ token_id: tokenId, row_id: rowId }, { token_id: child, row_id: rowId }])
      const [event] = yield* sql<{ state_id: string; edge_id: string; reason_json: string }>`SELECT state_id, edge_id, reason_json FROM routing_events`
      assert.deepStrictEqual({ ...event! }, { state_id: stateId, edge_id: edgeId, reason_json: "{\"why\":\"test\"}" })
      const [state] = yield* sql<{ token_id: string; node_id: string; run_id: string }>`SELECT token_id, node_id, run_id FROM node_states`
      assert.deepStrictEqual({ ...state! }, { token_id: child, node_id: SINK, run_id: runId })
      const outcomes = yield* sql<{ token_id: string }>`SELECT token_id FROM token_outcomes WHERE is_terminal = 1 ORDER BY token_id`
      assert.deepStrictEqual(outcomes.map((o) => o.token_id), [tokenId, child])
      // Keys are distinct and in the order the records were made.
      const keys = yield* sql<{ token_key: number }>`SELECT token_key FROM ls_tokens ORDER BY token_id`
      assert.isBelow(keys[0]!.token_key, keys[1]!.token_key)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("compact keys: a reference to nothing is a ConstraintViolation naming the record and the id", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      yield* rec.flush
      const cases: ReadonlyArray<readonly [string, Effect.Effect<unknown, unknown, Recorder>, RegExp]> = [
        ["state of an unknown token", Trail.beginNodeState({ runId, tokenId: "tok_nope" as TokenId, nodeId: SINK, stepIndex: 1, input: {} }), /node state st_\w+ names token tok_nope/],
        ["state at an unknown node", Effect.flatMap(Trail.createToken({ runId, rowId }), (tokenId) =>
          Trail.beginNodeState({ runId, tokenId, nodeId: "sink_nowhere" as NodeId, stepIndex: 1, input: {} })), /names node sink_nowhere/],
        ["route of an unknown state", Trail.recordRoutingEvent({ stateId: "st_nope" as StateId, edgeId: "edg_x" as never, mode: "move" }), /routing event evt_\w+ names node state st_nope/],
        ["outcome of an unknown token", Trail.recordOutcome({ runId, tokenId: "tok_gone" as TokenId, outcome: "FAILED" }), /outcome out_\w+ names token tok_gone/]
      ]
      for (const [name, effect, pattern] of cases) {
        yield* effect
        const e = errorOf(yield* Effect.exit(rec.flush))
        assert.strictEqual(e.reason, "ConstraintViolation", name)
        assert.match(e.message, pattern, name)
      }
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("a foreign key violation is a typed ConstraintViolation", () =>
    Effect.gen(function*() {
      const { rec, runId } = yield* setup
      yield* Trail.createToken({ runId, rowId: "row_missing" as never })
      const e = errorOf(yield* Effect.exit(rec.flush))
      assert.strictEqual(e.reason, "ConstraintViolation")
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("resolves latest and lists runs with counts", () =>
    Effect.gen(function*() {
      const rec = yield* Recorder
      const empty = yield* rec.listRuns
      assert.strictEqual(empty.length, 0)
      const none = errorOf(yield* Effect.exit(rec.resolveRunId("latest")))
      assert.strictEqual(none.reason, "MissingRun")
      const first = yield* rec.beginRun({ settings: { n: 1 } })
      yield* TestClock.adjust("1 second")
      const second = yield* rec.beginRun({ settings: { n: 2 } })
      assert.strictEqual(yield* rec.resolveRunId("latest"), second)
      assert.strictEqual(yield* rec.resolveRunId(first), first)
      const runs = yield* rec.listRuns
      assert.deepStrictEqual(runs.map((r) => r.run_id), [first, second])
    }).pipe(Effect.provide(MemoryLandscape())))
})

describe("SqliteLandscape", () => {
  it.effect("resolves URLs", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* resolveSqliteUrl("sqlite:///runs/a.db", "/base"), "/base/runs/a.db")
      assert.strictEqual(yield* resolveSqliteUrl("sqlite:////abs/a.db", "/base"), "/abs/a.db")
      assert.strictEqual(yield* resolveSqliteUrl("x/y.db", "/base"), "/base/x/y.db")
      assert.strictEqual(yield* resolveSqliteUrl(":memory:", "/base"), ":memory:")
      const bad = yield* Effect.either(resolveSqliteUrl("postgres://h/db"))
      assert.isTrue(Either.isLeft(bad))
      if (Either.isLeft(bad)) assert.include(bad.left.message, "postgres")
      assert.isTrue(Either.isLeft(yield* Effect.either(resolveSqliteUrl(""))))
    }))

  it.effect("creates parent folders, and reopening a file keeps its runs", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "rl-landscape-"))
      try {
        const runId = yield* Effect.scoped(Effect.gen(function*() {
          const rec = yield* Recorder
          return yield* rec.beginRun({ settings: {} })
        }).pipe(Effect.provide(SqliteLandscape(`sqlite:///${join(dir, "deep/er/audit.db")}`))))
        const again = yield* Effect.scoped(Effect.gen(function*() {
          const rec = yield* Recorder
          return yield* rec.listRuns
        }).pipe(Effect.provide(SqliteLandscape(join(dir, "deep/er/audit.db")))))
        assert.deepStrictEqual(again.map((r) => r.run_id), [runId])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("refuses a file that is not a Landscape, and a newer schema", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "rl-landscape-"))
      try {
        const junk = join(dir, "junk.db")
        writeFileSync(junk, "this is not sqlite at all, just text ".repeat(200))
        const e1 = yield* Effect.flip(Effect.scoped(Layer.build(SqliteLandscape(junk))))
        assert.strictEqual((e1 as { reason?: string }).reason, "NotALandscape")
        assert.include(e1.message, "junk.db")

        const other = join(dir, "other.db")
        yield* Effect.scoped(Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`CREATE TABLE customers (id INTEGER)`
        }).pipe(Effect.provide((yield* Effect.promise(() => import("@effect/sql-sqlite-node"))).SqliteClient.layer({ filename: other }))))
        const e2 = yield* Effect.flip(Effect.scoped(Layer.build(SqliteLandscape(other))))
        assert.strictEqual((e2 as { reason?: string }).reason, "NotALandscape")
        assert.include(e2.message, "customers")

        const newer = join(dir, "newer.db")
        yield* Effect.scoped(Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`INSERT INTO effect_sql_migrations (migration_id, name) VALUES (99, 'future')`
        }).pipe(Effect.provide(SqliteLandscape(newer))))
        const e3 = yield* Effect.flip(Effect.scoped(Layer.build(SqliteLandscape(newer))))
        assert.strictEqual((e3 as { reason?: string }).reason, "NewerSchema")
        assert.include(e3.message, "99")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})

describe("token_outcomes schema", () => {
  /** A flushed run with one token, and a raw INSERT into token_outcomes for a token. */
  const outcomesTable = Effect.gen(function*() {
    const { rec, runId } = yield* setup
    const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
    const tokenId = yield* Trail.createToken({ runId, rowId })
    const otherToken = yield* Trail.createToken({ runId, rowId })
    yield* rec.flush
    const sql = yield* SqlClient.SqlClient
    const insert = (token: string, id: string, outcome: string, terminal: number) =>
      sql`INSERT INTO token_outcomes (outcome_id, run_id, token_id, outcome, is_terminal, recorded_at)
          VALUES (${id}, ${runId}, ${token}, ${outcome}, ${terminal}, '2026-01-01T00:00:00.000Z')`
    /** The database's own message for an INSERT it refuses. */
    const refusal = (token: string, id: string, outcome: string, terminal: number) =>
      Effect.map(Effect.flip(insert(token, id, outcome, terminal)), (e) => String((e.cause as Error).message))
    const outcomesOf = (token: string) =>
      Effect.map(
        sql<{ outcome_id: string }>`SELECT outcome_id FROM token_outcomes WHERE token_id = ${token} ORDER BY outcome_id`,
        (rows) => rows.map((r) => r.outcome_id)
      )
    return { tokenId, otherToken, insert, refusal, outcomesOf }
  })

  it.scoped("enforces at most one terminal outcome per token in the schema itself", () =>
    Effect.gen(function*() {
      const { insert, outcomesOf, refusal, tokenId } = yield* outcomesTable
      yield* insert(tokenId, "o1", "BUFFERED", 0)
      yield* insert(tokenId, "o2", "COMPLETED", 1)
      // Non-terminal outcomes are not limited.
      yield* insert(tokenId, "o3", "BUFFERED", 0)
      // A consistent row (FAILED is terminal) that only the unique index on (token, terminal) refuses.
      assert.match(yield* refusal(tokenId, "o4", "FAILED", 1), /UNIQUE constraint failed: index 'ls_token_outcomes_token'/)
      assert.deepStrictEqual(yield* outcomesOf(tokenId), ["o1", "o2", "o3"])
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("ties is_terminal to the outcome with a CHECK", () =>
    Effect.gen(function*() {
      const { insert, otherToken, outcomesOf, refusal } = yield* outcomesTable
      // The token has no terminal outcome yet, so the unique index cannot be what refuses these.
      assert.match(yield* refusal(otherToken, "c1", "BUFFERED", 1), /CHECK constraint failed: is_terminal/)
      assert.match(yield* refusal(otherToken, "c2", "COMPLETED", 0), /CHECK constraint failed: is_terminal/)
      assert.deepStrictEqual(yield* outcomesOf(otherToken), [])
      // The same token still takes consistent rows, a terminal one included.
      yield* insert(otherToken, "c3", "BUFFERED", 0)
      yield* insert(otherToken, "c4", "COMPLETED", 1)
      assert.deepStrictEqual(yield* outcomesOf(otherToken), ["c3", "c4"])
    }).pipe(Effect.provide(MemoryLandscape())))
})
