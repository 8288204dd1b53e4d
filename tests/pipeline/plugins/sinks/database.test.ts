import { createHash } from "node:crypto"
import { existsSync } from "node:fs"
import { join, relative } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect } from "effect"
import { databaseSink, sqliteFilename } from "../../../../src/pipeline/plugins/sinks/database.js"
import { ctx, runSink, tempDir } from "./support.js"

const query = (file: string, sql: string): Array<Record<string, unknown>> => {
  const db = new Database(file, { readonly: true })
  try {
    return db.prepare(sql).all() as Array<Record<string, unknown>>
  } finally {
    db.close()
  }
}

const columnTypes = (file: string, table: string) =>
  query(file, `PRAGMA table_info("${table}")`).map((c) => [c["name"], c["type"]])

const fixed = { mode: "fixed", fields: ["id: int", "name: str", "price: float", "ok: bool", "extra: any?"] }

describe("database sink", () => {
  it.effect("creates the table with typed columns at the first write and inserts the rows", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "sub", "out.db")
      const rows = [
        { id: 1, name: "a", price: 2500, ok: true, extra: "x" },
        { id: 2, name: "b", price: 2.5, ok: false, extra: null }
      ]
      yield* runSink(databaseSink, { url: file, table: "orders", schema: fixed }, [rows])
      expect(columnTypes(file, "orders")).toEqual([
        ["id", "INTEGER"],
        ["name", "VARCHAR"],
        ["price", "FLOAT"],
        ["ok", "BOOLEAN"],
        ["extra", "VARCHAR"]
      ])
      expect(query(file, "SELECT id, name, price, typeof(price) AS pt, ok FROM orders ORDER BY id")).toEqual([
        { id: 1, name: "a", price: 2500, pt: "real", ok: 1 },
        { id: 2, name: "b", price: 2.5, pt: "real", ok: 0 }
      ])
    }))

  it.effect("observed schema: the first row's keys, all VARCHAR, ints stored as int text", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      yield* runSink(databaseSink, { url: file, table: "t", schema: { mode: "observed" } }, [
        [{ a: 3, b: 2.5, c: "x", d: true }],
        [{ a: 4 }]
      ])
      expect(columnTypes(file, "t")).toEqual([["a", "VARCHAR"], ["b", "VARCHAR"], ["c", "VARCHAR"], ["d", "VARCHAR"]])
      expect(query(file, "SELECT * FROM t")).toEqual([
        { a: "3", b: "2.5", c: "x", d: "1" },
        { a: "4", b: null, c: null, d: null }
      ])
    }))

  it.effect("flexible schema: declared columns then the first row's others as VARCHAR", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const schema = { mode: "flexible", fields: ["n: int"] }
      yield* runSink(databaseSink, { url: file, table: "t", schema }, [[{ z: "q", n: 1 }]])
      expect(columnTypes(file, "t")).toEqual([["n", "INTEGER"], ["z", "VARCHAR"]])
    }))

  it.effect("reuses an existing table unchanged (if_exists append)", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const db = new Database(file)
      db.exec("CREATE TABLE t (n INTEGER, note TEXT DEFAULT 'kept'); INSERT INTO t (n) VALUES (0)")
      db.close()
      const schema = { mode: "fixed", fields: ["n: int"] }
      yield* runSink(databaseSink, { url: file, table: "t", schema }, [[{ n: 1 }], [{ n: 2 }]])
      expect(columnTypes(file, "t")).toEqual([["n", "INTEGER"], ["note", "TEXT"]])
      expect(query(file, "SELECT n, note FROM t ORDER BY n")).toEqual([
        { n: 0, note: "kept" },
        { n: 1, note: "kept" },
        { n: 2, note: "kept" }
      ])
    }))

  it.effect("if_exists replace drops the table once, at the first write", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const db = new Database(file)
      db.exec("CREATE TABLE t (old TEXT); INSERT INTO t VALUES ('x')")
      db.close()
      const schema = { mode: "fixed", fields: ["n: int"] }
      yield* runSink(databaseSink, { url: file, table: "t", schema, if_exists: "replace" }, [[{ n: 1 }], [{ n: 2 }]])
      expect(columnTypes(file, "t")).toEqual([["n", "INTEGER"]])
      expect(query(file, "SELECT n FROM t ORDER BY n")).toEqual([{ n: 1 }, { n: 2 }])
    }))

  it.effect("rejects list and mapping values and rolls the whole batch back", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const sink = yield* databaseSink.create({ url: file, table: "t", schema: { mode: "observed" } }, ctx("db"))
      yield* sink.write([{ a: 1, b: "x" }])
      const list = yield* Effect.flip(sink.write([{ a: 2, b: "ok" }, { a: 3, b: ["no"] }]))
      expect(list).toMatchObject({ _tag: "PluginRunError", plugin: "database" })
      expect(list.message).toContain("sink 'db' (database, ")
      expect(list.message).toContain(file)
      expect(list.message).toContain("input row 2, field 'b': a list cannot be stored")
      const mapping = yield* Effect.flip(sink.write([{ a: 4, b: { k: 1 } }]))
      expect(mapping.message).toContain("a mapping cannot be stored")
      yield* sink.close
      expect(query(file, "SELECT a, b FROM t")).toEqual([{ a: "1", b: "x" }])
    }))

  it.effect("fails on a key that is not a column", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const error = yield* Effect.flip(
        runSink(databaseSink, { url: file, table: "t", schema: { mode: "observed" } }, [[{ a: 1 }], [{ a: 2, b: 3 }]])
      )
      expect((error as Error).message).toContain("input row 1 has field(s) 'b' that are not columns of table 't'")
    }))

  it.effect("splits large batches into statements under SQLite's parameter limit, in one transaction", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const schema = { mode: "fixed", fields: ["a: int", "b: str", "c: float"] }
      const rows = Array.from({ length: 25_000 }, (_, i) => ({ a: i, b: `r${i}`, c: i / 2 }))
      yield* runSink(databaseSink, { url: file, table: "big", schema }, [rows])
      expect(query(file, "SELECT count(*) AS n, sum(a) AS s FROM big")).toEqual([{ n: 25_000, s: (24_999 * 25_000) / 2 }])
    }))

  it.effect("creates no database when it receives no rows", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "none.db")
      const { artifact } = yield* runSink(databaseSink, { url: file, table: "t", schema: { mode: "observed" } }, [[]])
      expect(existsSync(file)).toBe(false)
      expect(artifact).toBeUndefined()
    }))

  it.effect("artifact: the URL and the SHA-256 of the rows as JSON Lines", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const url = `sqlite:///${relative(process.cwd(), file)}`
      const schema = { mode: "fixed", fields: ["n: int", "x: float"] }
      const { artifact } = yield* runSink(databaseSink, { url, table: "t", schema }, [[{ n: 1, x: 2 }], [{ n: 2, x: 0.5 }]])
      const text = "{\"n\": 1, \"x\": 2.0}\n{\"n\": 2, \"x\": 0.5}\n"
      expect(artifact).toEqual({
        pathOrUri: url,
        contentHash: createHash("sha256").update(text).digest("hex"),
        sizeBytes: Buffer.byteLength(text)
      })
      expect(query(file, "SELECT n, x FROM t")).toEqual([{ n: 1, x: 2 }, { n: 2, x: 0.5 }])
    }))

  it.effect("a failed write leaves the artifact as it was", () =>
    Effect.gen(function*() {
      const sink = yield* databaseSink.create({ url: ":memory:", table: "t", schema: { mode: "observed" } }, ctx())
      yield* sink.write([{ a: 1 }])
      const before = yield* sink.artifact
      yield* Effect.flip(sink.write([{ a: [1] }]))
      expect(yield* sink.artifact).toEqual(before)
      yield* sink.close
    }))

  it.effect("validate_input rejects a bad row before touching the database", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const options = { url: file, table: "t", schema: { mode: "fixed", fields: ["n: int"] }, validate_input: true }
      const error = yield* Effect.flip(runSink(databaseSink, options, [[{ n: 1.5 }]]))
      expect((error as Error).message).toContain("input row 0 failed schema validation (n: expected int")
      expect(existsSync(file)).toBe(false)
    }))

  it.effect("fails every use after close", () =>
    Effect.gen(function*() {
      const { sink } = yield* runSink(databaseSink, { url: ":memory:", table: "t", schema: { mode: "observed" } }, [
        [{ a: 1 }]
      ])
      for (const use of [sink.write([{ a: 2 }]), sink.flush, sink.onStart, sink.onComplete]) {
        const error = yield* Effect.flip(use)
        expect(error.message).toContain("sink used after close")
      }
      yield* sink.close
    }))

  describe("url", () => {
    it("accepts sqlite URLs, plain paths and :memory:", () => {
      expect(sqliteFilename("sqlite:///out/x.db")).toEqual({ filename: "out/x.db" })
      expect(sqliteFilename("sqlite:////abs/x.db")).toEqual({ filename: "/abs/x.db" })
      expect(sqliteFilename("sqlite+pysqlite:///x.db")).toEqual({ filename: "x.db" })
      expect(sqliteFilename("out/x.db")).toEqual({ filename: "out/x.db" })
      expect(sqliteFilename(":memory:")).toEqual({ filename: ":memory:" })
      expect(sqliteFilename("sqlite://")).toEqual({ filename: ":memory:" })
      expect(sqliteFilename("sqlite:///:memory:")).toEqual({ filename: ":memory:" })
    })

    it.effect("refuses other schemes as a config error", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          databaseSink.create({ url: "postgresql://u:p@host/db", table: "t", schema: { mode: "observed" } }, ctx())
        )
        expect(error).toMatchObject({ _tag: "PluginConfigError", plugin: "database", key: "url" })
        expect(error.message).toContain("only sqlite URLs are supported")
      }))

    it.effect("refuses path and header options, which the database sink does not have", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          databaseSink.create({ url: ":memory:", table: "t", schema: { mode: "observed" }, path: "x" }, ctx())
        )
        expect(error).toMatchObject({ _tag: "PluginConfigError", key: "path" })
      }))
  })
})

describe("database sink: committed state", () => {
  const schema = { mode: "fixed", fields: ["id: int", "name: str"] }
  const rows = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ id: from + i, name: `n${from + i}` }))

  it.effect("counts the rows it committed and the rows the table holds, rows from before included", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      yield* runSink(databaseSink, { url: file, table: "t", schema }, [rows(0, 4)])
      const sink = yield* databaseSink.create({ url: file, table: "t", schema }, ctx())
      yield* sink.onStart
      expect(yield* sink.committed!).toEqual({ rows: 0, bytes: 0, tableRows: 4 }) // the table as it was: a resume from here removes rows added later
      yield* sink.write(rows(4, 3))
      yield* sink.flush
      const after = yield* sink.committed!
      expect(after.rows).toBe(3)
      expect(after.tableRows).toBe(7)
      yield* sink.onComplete
      yield* sink.close
      expect(after.bytes).toBe((yield* sink.artifact)?.sizeBytes)
    }))

  it.effect("with if_exists replace the table starts empty: tableRows equals rows", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      yield* runSink(databaseSink, { url: file, table: "t", schema }, [rows(0, 4)])
      const sink = yield* databaseSink.create({ url: file, table: "t", schema, if_exists: "replace" }, ctx())
      yield* sink.onStart
      yield* sink.write(rows(10, 2))
      expect(yield* sink.committed!).toMatchObject({ rows: 2, tableRows: 2 })
      yield* sink.close
    }))

  it.effect("a fresh instance deletes the rows past a committed state in one transaction, then continues", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      const options = { url: file, table: "t", schema, if_exists: "replace" }
      const first = yield* databaseSink.create(options, ctx())
      yield* first.onStart
      yield* first.write(rows(0, 3))
      yield* first.write(rows(3, 2))
      const checkpoint = yield* first.committed!
      yield* first.write(rows(5, 4))
      yield* first.close
      expect(query(file, "SELECT COUNT(*) AS n FROM t")).toEqual([{ n: 9 }])

      const resumed = yield* databaseSink.create(options, ctx())
      yield* resumed.onStart
      yield* resumed.truncateTo!(checkpoint)
      expect(query(file, "SELECT id FROM t ORDER BY rowid").map((r) => r["id"])).toEqual([0, 1, 2, 3, 4])
      expect(yield* resumed.committed!).toEqual(checkpoint)
      // replace does not drop the table of a continued run
      yield* resumed.write(rows(5, 4))
      yield* resumed.close
      expect(query(file, "SELECT id FROM t ORDER BY rowid").map((r) => r["id"])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
    }))

  it.effect("refuses to cut a table that holds fewer rows than committed", () =>
    Effect.gen(function*() {
      const file = join(tempDir(), "out.db")
      yield* runSink(databaseSink, { url: file, table: "t", schema }, [rows(0, 2)])
      const sink = yield* databaseSink.create({ url: file, table: "t", schema }, ctx())
      const error = yield* Effect.flip(sink.truncateTo!({ rows: 5, bytes: 100, tableRows: 5 }))
      expect(error.message).toContain("table 't' holds 2 row(s), fewer than the 5 committed")
      const other = yield* databaseSink.create({ url: file, table: "other", schema }, ctx())
      const missing = yield* Effect.flip(other.truncateTo!({ rows: 1, bytes: 10, tableRows: 1 }))
      expect(missing.message).toContain("table 'other' does not exist, but 1 row(s) of it were committed")
      yield* other.close
      expect(query(file, "SELECT COUNT(*) AS n FROM t")).toEqual([{ n: 2 }])
      yield* sink.close
    }))
})
