/**
 * The change journal on real files: one self-contained JSON line per committed row
 * change (inserts, updates — also outside any transaction), nothing for a rolled-back
 * transaction and nothing before the outermost commit; the two failure policies
 * (`failOnError`: the commit fails, typed, and the journal stops; otherwise one
 * warning) with writes that really fail (/dev/full) and a file that cannot be opened;
 * the default path; inlined payloads.
 */
import { assert, describe, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Exit, Layer } from "effect"
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { NodeId } from "../../src/core/ids.js"
import { defaultJournalPath, type JournalOptions } from "../../src/landscape/journal.js"
import { filesystemPayloadStore } from "../../src/landscape/payload-store.js"
import { LandscapeOpenError, SqliteLandscape } from "../../src/landscape/sqlite.js"
import { Recorder } from "../../src/services/recorder.js"
import { tempDir } from "../support/pipeline.js"
import * as Trail from "../support/trail.js"

interface Line {
  readonly committed_at: string
  readonly table: string
  readonly op: "insert" | "update" | "delete"
  readonly record: Record<string, unknown>
  readonly payload?: string | null
  readonly payload_error?: string
}

const readLines = (path: string): Array<Line> =>
  existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line) : []

const journalOf = (path: string, extra: Partial<JournalOptions> = {}) => ({
  path,
  failOnError: false,
  warn: (m: string) => {
    throw new Error(`unexpected warning: ${m}`)
  },
  ...extra
})

const SRC = "src" as NodeId

/** A run with a node and `rows` rows, completed. */
const oneRun = (rows: number) =>
  Effect.gen(function*() {
    const rec = yield* Recorder
    const runId = yield* rec.beginRun({ settings: {} })
    yield* Trail.registerNode({ runId, nodeId: SRC, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
    for (let i = 0; i < rows; i++) {
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: i, data: { i, name: `row ${i}` } })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "COMPLETED", sinkName: "out" })
    }
    yield* rec.completeRun(runId, { status: "completed" })
    return runId
  })

describe("Landscape journal", () => {
  it.effect("one line per committed row change, each line the whole record as stored", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-journal-")
      try {
        const db = join(dir, "audit.db")
        const path = join(dir, "audit.journal.jsonl")
        const { runId, stored } = yield* Effect.scoped(Effect.gen(function*() {
          const runId = yield* oneRun(3)
          const sql = yield* SqlClient.SqlClient
          const stored = yield* sql<Record<string, unknown>>`SELECT * FROM rows ORDER BY row_index`
          return { runId, stored }
        }).pipe(Effect.provide(SqliteLandscape(db, { journal: journalOf(path) }))))
        const lines = readLines(path)
        const count = (table: string, op: string) => lines.filter((l) => l.table === table && l.op === op).length
        assert.strictEqual(count("runs", "insert"), 1)
        assert.strictEqual(count("run_attempts", "insert"), 1)
        assert.strictEqual(count("nodes", "insert"), 1)
        assert.strictEqual(count("rows", "insert"), 3)
        assert.strictEqual(count("tokens", "insert"), 3)
        assert.strictEqual(count("token_outcomes", "insert"), 3)
        assert.strictEqual(count("runs", "update"), 1)
        // The record is the row as the Landscape holds it, column for column.
        assert.deepStrictEqual(lines.filter((l) => l.table === "rows").map((l) => l.record), stored)
        const finished = lines.find((l) => l.table === "runs" && l.op === "update")!
        assert.strictEqual(finished.record.run_id, runId)
        assert.strictEqual(finished.record.status, "completed")
        for (const l of lines) assert.match(l.committed_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
        // The run's row comes first, its end last: the journal is in commit order.
        assert.strictEqual(lines[0]!.table, "runs")
        assert.strictEqual(lines[lines.length - 1]!.table, "run_attempts")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("a rolled-back transaction writes nothing; a transaction's lines come after its outermost commit", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-journal-")
      try {
        const path = join(dir, "j.jsonl")
        yield* Effect.scoped(Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const meta = (key: string) => sql`INSERT INTO landscape_meta (key, value) VALUES (${key}, 'v')`
          const failed = yield* Effect.exit(sql.withTransaction(Effect.zipRight(meta("rolled_back"), Effect.fail("boom"))))
          assert.isTrue(Exit.isFailure(failed))
          assert.deepStrictEqual(readLines(path), [])
          yield* sql.withTransaction(Effect.gen(function*() {
            yield* meta("outer")
            yield* sql.withTransaction(meta("inner"))
            assert.deepStrictEqual(readLines(path), [], "nothing is journalled before the outermost commit")
          }))
          assert.deepStrictEqual(readLines(path).map((l) => l.record.key), ["outer", "inner"])
          // A statement outside any transaction is its own commit.
          yield* sql`UPDATE landscape_meta SET value = 'w' WHERE key = 'outer'`
          yield* sql`DELETE FROM landscape_meta WHERE key = 'inner'`
          // A read writes nothing.
          yield* sql`SELECT * FROM landscape_meta`
        }).pipe(Effect.provide(SqliteLandscape(join(dir, "audit.db"), { journal: journalOf(path) }))))
        const lines = readLines(path)
        assert.deepStrictEqual(lines.map((l) => [l.op, l.record.key, l.record.value]), [
          ["insert", "outer", "v"],
          ["insert", "inner", "v"],
          ["update", "outer", "w"],
          ["delete", "inner", "v"]
        ])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("appends across openings of the same Landscape", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-journal-")
      try {
        const db = join(dir, "audit.db")
        const path = join(dir, "j.jsonl")
        const first = yield* Effect.scoped(oneRun(1).pipe(Effect.provide(SqliteLandscape(db, { journal: journalOf(path) }))))
        const after1 = readLines(path).length
        const second = yield* Effect.scoped(oneRun(1).pipe(Effect.provide(SqliteLandscape(db, { journal: journalOf(path) }))))
        const lines = readLines(path)
        assert.strictEqual(lines.length, after1 * 2)
        assert.deepStrictEqual(lines.filter((l) => l.table === "runs" && l.op === "insert").map((l) => l.record.run_id), [first, second])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("fail_on_error: a write that fails fails that commit (typed), the records stay in the Landscape, the journal stops", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-journal-")
      try {
        const db = join(dir, "audit.db")
        const outcome = yield* Effect.scoped(Effect.gen(function*() {
          const rec = yield* Recorder
          const begun = yield* Effect.exit(rec.beginRun({ settings: {} }))
          const sql = yield* SqlClient.SqlClient
          const runs = yield* sql<{ run_id: string }>`SELECT run_id FROM runs`
          // Later commits go through: the run can still record how it ended.
          yield* sql`INSERT INTO landscape_meta (key, value) VALUES ('after', 'x')`
          return { begun, runs }
        }).pipe(Effect.provide(SqliteLandscape(db, { journal: journalOf("/dev/full", { failOnError: true }) }))))
        assert.isTrue(Exit.isFailure(outcome.begun))
        if (Exit.isFailure(outcome.begun) && outcome.begun.cause._tag === "Fail") {
          const e = outcome.begun.cause.error
          assert.include(e.message, "/dev/full")
          assert.include(e.message, "dump_to_jsonl_fail_on_error")
        } else {
          assert.fail(`expected a typed failure, got ${String(outcome.begun)}`)
        }
        assert.strictEqual(outcome.runs.length, 1, "the commit itself went through")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("without fail_on_error: one warning for any number of failed writes, and the run goes on", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-journal-")
      try {
        const warnings: Array<string> = []
        const runId = yield* Effect.scoped(oneRun(5).pipe(
          Effect.provide(SqliteLandscape(join(dir, "audit.db"), { journal: journalOf("/dev/full", { warn: (m) => warnings.push(m) }) }))
        ))
        assert.match(runId, /^run_/)
        assert.strictEqual(warnings.length, 1)
        assert.include(warnings[0]!, "/dev/full")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("a journal that cannot be opened: an error with fail_on_error, else a warning and no journal", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-journal-")
      try {
        const notAFolder = join(dir, "file")
        writeFileSync(notAFolder, "x")
        const path = join(notAFolder, "j.jsonl")
        const exit = yield* Effect.exit(Effect.scoped(Layer.build(
          SqliteLandscape(join(dir, "a.db"), { journal: journalOf(path, { failOnError: true }) })
        )))
        if (Exit.isSuccess(exit) || exit.cause._tag !== "Fail") return assert.fail(`expected a typed failure, got ${String(exit)}`)
        assert.instanceOf(exit.cause.error, LandscapeOpenError)
        assert.include(exit.cause.error.message, path)
        const warnings: Array<string> = []
        yield* Effect.scoped(oneRun(1).pipe(
          Effect.provide(SqliteLandscape(join(dir, "b.db"), { journal: journalOf(path, { warn: (m) => warnings.push(m) }) }))
        ))
        assert.strictEqual(warnings.length, 1)
        assert.include(warnings[0]!, path)

        const db = join(dir, "c.db")
        const itself = yield* Effect.exit(Effect.scoped(Layer.build(SqliteLandscape(db, { journal: journalOf(db) }))))
        if (Exit.isSuccess(itself) || itself.cause._tag !== "Fail") return assert.fail("expected a typed failure")
        assert.include(itself.cause.error.message, "is the Landscape database itself")

        const memory = yield* Effect.exit(Effect.scoped(Layer.build(SqliteLandscape(":memory:", { journal: { failOnError: false, warn: () => {} } }))))
        if (Exit.isSuccess(memory) || memory.cause._tag !== "Fail") return assert.fail("expected a typed failure")
        assert.include(memory.cause.error.message, "dump_to_jsonl_path")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("the default path is the Landscape file's, with .journal.jsonl for its extension", () =>
    Effect.gen(function*() {
      assert.strictEqual(defaultJournalPath("/data/runs/audit.db"), "/data/runs/audit.journal.jsonl")
      assert.strictEqual(defaultJournalPath("/data/runs/audit"), "/data/runs/audit.journal.jsonl")
      assert.strictEqual(defaultJournalPath("/data/v1.2/audit.v2.sqlite"), "/data/v1.2/audit.v2.journal.jsonl")
      const dir = tempDir("rl-journal-")
      try {
        yield* Effect.scoped(oneRun(1).pipe(
          Effect.provide(SqliteLandscape(`sqlite:///${join(dir, "audit.db")}`, { journal: { failOnError: true, warn: () => {} } }))
        ))
        assert.isAbove(readLines(join(dir, "audit.journal.jsonl")).length, 0)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("inlines each source row's stored payload in its rows line", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-journal-")
      try {
        const store = filesystemPayloadStore(join(dir, "payloads"))
        const path = join(dir, "j.jsonl")
        yield* Effect.scoped(oneRun(2).pipe(
          Effect.provide(SqliteLandscape(join(dir, "audit.db"), { payloadStore: store, journal: journalOf(path, { payloads: store }) }))
        ))
        const rows = readLines(path).filter((l) => l.table === "rows")
        assert.strictEqual(rows.length, 2)
        for (const l of rows) {
          assert.strictEqual(l.payload, l.record.source_data_json)
          assert.isUndefined(l.payload_error)
        }
        assert.isUndefined(readLines(path).find((l) => l.table === "tokens")?.payload)

        // With no payload stored, the line says so instead.
        const empty = filesystemPayloadStore(join(dir, "empty"))
        const path2 = join(dir, "j2.jsonl")
        yield* Effect.scoped(oneRun(1).pipe(
          Effect.provide(SqliteLandscape(join(dir, "audit2.db"), { journal: journalOf(path2, { payloads: empty }) }))
        ))
        const [row] = readLines(path2).filter((l) => l.table === "rows")
        assert.isNull(row!.payload)
        assert.include(row!.payload_error!, "no payload")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})
