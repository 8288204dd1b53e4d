/**
 * Sinks in divert mode (`write(rows, {divert: true})`, a sink with `on_write_failure`):
 * a row the sink cannot write is left out and reported with its reason, the other rows
 * of the batch are written, and the committed state counts only those. A failure of
 * the output itself (a full disk) still fails the whole write.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect } from "effect"
import { pyJsonDumps } from "../../../../src/core/python/json.js"
import type { Row, SinkInstance, SinkPlugin, SinkWriteResult } from "../../../../src/pipeline/plugins/protocol.js"
import { csvSink } from "../../../../src/pipeline/plugins/sinks/csv.js"
import { databaseSink } from "../../../../src/pipeline/plugins/sinks/database.js"
import { FAULT_ENV } from "../../../../src/pipeline/plugins/sinks/io.js"
import { jsonSink } from "../../../../src/pipeline/plugins/sinks/json.js"
import { createHash } from "node:crypto"
import { ctx, readText, sha256File, tempDir } from "./support.js"

const fixed = { mode: "fixed", fields: ["id: int", "name: str"] }

/** Opens a sink, runs `body` with it, then completes and closes it. */
const withSink = <A>(plugin: SinkPlugin, options: unknown, body: (sink: SinkInstance) => Effect.Effect<A, unknown>) =>
  Effect.gen(function*() {
    const sink = yield* plugin.create(options, ctx("out"))
    yield* sink.onStart
    const a = yield* body(sink)
    yield* sink.onComplete
    yield* sink.close
    return { a, sink }
  })

const divert = (sink: SinkInstance, rows: ReadonlyArray<Row>) =>
  Effect.map(Effect.zipLeft(sink.write(rows, { divert: true }), sink.flush), (r) => (r ?? { diverted: [] }) as SinkWriteResult)

describe("csv sink, divert mode", () => {
  it.effect("leaves out rows with keys that are not columns and writes the rest", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const { a: results, sink } = yield* withSink(csvSink, { path, schema: fixed }, (sink) =>
        Effect.gen(function*() {
          const first = yield* divert(sink, [{ id: 1, name: "a" }, { id: 2, name: "b", extra: "x" }, { id: 3, name: "c" }])
          const second = yield* divert(sink, [{ id: 4, name: "d", more: 1, extra: 2 }])
          const third = yield* divert(sink, [{ id: 5, name: "e" }])
          return [first, second, third]
        }))
      expect(results[0]!.diverted).toEqual([{ index: 1, reason: "dict contains fields not in fieldnames: 'extra'" }])
      expect(results[1]!.diverted).toEqual([{ index: 0, reason: "dict contains fields not in fieldnames: 'more', 'extra'" }])
      expect(results[2]!.diverted).toEqual([])
      expect(readText(path)).toBe("id,name\r\n1,a\r\n3,c\r\n5,e\r\n")
      expect((yield* sink.committed!).rows).toBe(3)
      expect((yield* sink.artifact)?.contentHash).toBe(sha256File(path))
    }))

  it.effect("with validate_input, leaves out rows that fail the schema; the layout comes from the first row written", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const schema = { mode: "flexible", fields: ["id: int"] }
      const { a: result } = yield* withSink(csvSink, { path, schema, validate_input: true }, (sink) =>
        divert(sink, [{ id: "one", first: 1 }, { id: 2, second: "s" }, { id: 3 }]))
      expect(result.diverted).toHaveLength(1)
      expect(result.diverted[0]!.index).toBe(0)
      expect(result.diverted[0]!.reason).toMatch(/^failed schema validation \(id: expected int/)
      expect(readText(path)).toBe("id,second\r\n2,s\r\n3,\r\n")
    }))

  it.effect("leaves out a row holding text the encoding cannot hold", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const { a: result } = yield* withSink(csvSink, { path, schema: { mode: "observed" }, encoding: "ascii" }, (sink) =>
        divert(sink, [{ id: 1, name: "plain" }, { id: 2, name: "caf\u00e9" }, { id: 3, name: "also plain" }]))
      expect(result.diverted).toEqual([{ index: 1, reason: "'ascii' codec cannot encode character U+00E9 in field 'name'" }])
      expect(readText(path)).toBe("id,name\r\n1,plain\r\n3,also plain\r\n")
    }))

  it.effect("a batch with every row left out creates no file", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const { a: result, sink } = yield* withSink(csvSink, { path, schema: fixed }, (sink) => divert(sink, [{ id: 1, name: "a", x: 1 }]))
      expect(result.diverted.map((d) => d.index)).toEqual([0])
      expect(existsSync(path)).toBe(false)
      expect(yield* sink.artifact).toBeUndefined()
    }))

  it.effect("without divert the same row fails the whole write, as before", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const sink = yield* csvSink.create({ path, schema: fixed }, ctx("out"))
      yield* sink.onStart
      const error = yield* Effect.flip(sink.write([{ id: 1, name: "a" }, { id: 2, name: "b", extra: "x" }]))
      expect(error.message).toContain("input row 1: dict contains fields not in fieldnames: 'extra'")
      yield* sink.close
      expect(existsSync(path) ? readText(path) : "").toBe("")
    }))

  it.effect("a full disk still fails the write in divert mode, and the file is cut back", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const before = process.env[FAULT_ENV]
      process.env[FAULT_ENV] = "sink:out:enospc:after_bytes=30"
      const sink = yield* Effect.ensuring(csvSink.create({ path, schema: fixed }, ctx("out")), Effect.sync(() => {
        if (before === undefined) delete process.env[FAULT_ENV]
        else process.env[FAULT_ENV] = before
      }))
      yield* sink.onStart
      yield* divert(sink, [{ id: 1, name: "a" }])
      const durable = readFileSync(path)
      const rows = Array.from({ length: 20 }, (_, i) => ({ id: i, name: `n${i}` }))
      const error = yield* Effect.flip(divert(sink, [...rows, { id: 99, name: "z", extra: 1 }]))
      expect(error.message).toContain("no space left on device (ENOSPC)")
      expect(readFileSync(path).equals(durable)).toBe(true)
      yield* sink.close
    }))
})

describe("json sink, divert mode", () => {
  it.effect("leaves out rows that fail the schema or cannot be encoded; the array stays one document", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      const { a: results } = yield* withSink(jsonSink, { path, schema: fixed, validate_input: true }, (sink) =>
        Effect.gen(function*() {
          const first = yield* divert(sink, [{ id: 1, name: "a", extra: true }, { id: 2, name: "b" }])
          // a value no JSON text can hold (a row a custom transform might build)
          const second = yield* divert(sink, [{ id: 3, name: (() => "x") as unknown as string }, { id: 4, name: "d" }])
          return [first, second]
        }))
      expect(results[0]!.diverted.map((d) => d.index)).toEqual([0])
      expect(results[0]!.diverted[0]!.reason).toMatch(/^failed schema validation \(extra: unexpected field/)
      expect(results[1]!.diverted.map((d) => d.index)).toEqual([0])
      expect(results[1]!.diverted[0]!.reason).toMatch(/^(failed schema validation|cannot be encoded as JSON)/)
      expect(JSON.parse(readText(path))).toEqual([{ id: 2, name: "b" }, { id: 4, name: "d" }])
    }))

  it.effect("a JSONL sink counts only the rows it wrote in its committed state", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.jsonl")
      const { a: result, sink } = yield* withSink(jsonSink, { path, schema: { mode: "observed" } }, (sink) =>
        divert(sink, [{ a: 1 }, { a: (() => 1) as unknown as number }, { a: 3 }]))
      expect(result.diverted).toEqual([{ index: 1, reason: "cannot be encoded as JSON: Object of type function is not JSON serializable" }])
      expect(readText(path)).toBe("{\"a\": 1}\n{\"a\": 3}\n")
      expect(yield* sink.committed!).toEqual({ rows: 2, bytes: readFileSync(path).length })
    }))
})

describe("database sink, divert mode", () => {
  const hashOf = (rows: ReadonlyArray<Row>) => {
    const h = createHash("sha256")
    for (const r of rows) h.update(pyJsonDumps(r) + "\n")
    return h.digest("hex")
  }

  it.effect("leaves out rows with values or keys the table cannot hold, and rows a constraint refuses", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "sink.db")
      const db = new Database(file)
      db.exec("CREATE TABLE results (id INTEGER UNIQUE, name VARCHAR NOT NULL)")
      db.exec("INSERT INTO results VALUES (7, 'already there')")
      db.close()
      const rows: ReadonlyArray<Row> = [
        { id: 1, name: "a" },
        { id: 7, name: "duplicate id" },
        { id: 2, name: ["a", "list"] },
        { id: 3, name: null },
        { id: 4, name: "d", extra: 1 },
        { id: 5, name: "e" }
      ]
      const { a: result, sink } = yield* withSink(databaseSink, { url: `sqlite:///${file}`, table: "results", schema: { mode: "observed" } }, (sink) =>
        divert(sink, rows))
      expect(result.diverted.map((d) => d.index)).toEqual([1, 2, 3, 4])
      expect(result.diverted[0]!.reason).toBe("the table refused it: UNIQUE constraint failed: results.id (SQLITE_CONSTRAINT_UNIQUE)")
      expect(result.diverted[1]!.reason).toBe("field 'name': a list cannot be stored in a database column (only scalar values)")
      expect(result.diverted[2]!.reason).toBe("the table refused it: NOT NULL constraint failed: results.name (SQLITE_CONSTRAINT_NOTNULL)")
      expect(result.diverted[3]!.reason).toBe("has field(s) 'extra' that are not columns of table 'results'")
      const check = new Database(file, { readonly: true })
      expect(check.prepare("SELECT id, name FROM results ORDER BY rowid").all()).toEqual([
        { id: 7, name: "already there" },
        { id: 1, name: "a" },
        { id: 5, name: "e" }
      ])
      check.close()
      expect(yield* sink.committed!).toMatchObject({ rows: 2, tableRows: 3 })
      expect((yield* sink.artifact)?.contentHash).toBe(hashOf([{ id: 1, name: "a" }, { id: 5, name: "e" }]))
    }))

  it.effect("without divert a constraint fails the whole write and inserts nothing", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "sink.db")
      const db = new Database(file)
      db.exec("CREATE TABLE results (id INTEGER UNIQUE, name VARCHAR)")
      db.exec("INSERT INTO results VALUES (7, 'already there')")
      db.close()
      const sink = yield* databaseSink.create({ url: `sqlite:///${file}`, table: "results", schema: { mode: "observed" } }, ctx("out"))
      yield* sink.onStart
      const error = yield* Effect.flip(sink.write([{ id: 1, name: "a" }, { id: 7, name: "b" }]))
      expect(error.message).toContain("cannot insert 2 row(s) into table 'results'")
      expect(error.message).toContain("UNIQUE constraint failed")
      yield* sink.close
      const check = new Database(file, { readonly: true })
      expect(check.prepare("SELECT COUNT(*) AS n FROM results").get()).toEqual({ n: 1 })
      check.close()
    }))
})
