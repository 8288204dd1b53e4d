import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { csvSink } from "../../../../src/pipeline/plugins/sinks/csv.js"
import { ctx, fileSize, readText, runSink, sha256File, tempDir } from "./support.js"

const observed = { mode: "observed" }

// Two rows exercising every cell rule; the expected text is what Python's csv module writes.
const richRows = [
  {
    id: 1,
    name: "Widget, large",
    price: 2500,
    note: "say \"hi\"",
    ok: true,
    tags: ["a", 1, null, true],
    meta: { sku: "A1", qty: 2 },
    tiny: 1e-5,
    big: 1e16,
    nl: "line1\nline2",
    none: null
  },
  {
    id: 2,
    name: "Ünïcode ✓",
    price: 255.8,
    note: "",
    ok: false,
    tags: [],
    meta: {},
    tiny: 0.0001,
    big: 1.5e20,
    nl: "cr\rhere",
    none: null
  }
]
const richSchema = {
  mode: "fixed",
  fields: [
    "id: int",
    "name: str",
    "price: float",
    "note: str",
    "ok: bool",
    "tags: any",
    "meta: any",
    "tiny: float",
    "big: float",
    "nl: str",
    "none: str?"
  ]
}
const richExpected = "id,name,price,note,ok,tags,meta,tiny,big,nl,none\r\n" +
  "1,\"Widget, large\",2500.0,\"say \"\"hi\"\"\",True,\"['a', 1, None, True]\",\"{'sku': 'A1', 'qty': 2}\",1e-05,1e+16,\"line1\nline2\",\r\n" +
  "2,Ünïcode ✓,255.8,,False,[],{},0.0001,1.5e+20,\"cr\rhere\",\r\n"

describe("csv sink", () => {
  it.effect("writes Python's csv dialect byte for byte", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      yield* runSink(csvSink, { path, schema: richSchema }, [richRows])
      expect(readText(path)).toBe(richExpected)
    }))

  it.effect("prints integral numbers as ints unless the field is declared float", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      yield* runSink(csvSink, { path, schema: observed }, [[{ a: 2500, b: 2.5, c: 1e16, d: -0 }]])
      expect(readText(path)).toBe("a,b,c,d\r\n2500,2.5,10000000000000000,-0.0\r\n")
    }))

  it.effect("writes a lone empty field as \"\"", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      yield* runSink(csvSink, { path, schema: { mode: "fixed", fields: ["x: str?"] } }, [[{ x: null }, { x: "a" }, {}]])
      expect(readText(path)).toBe("x\r\n\"\"\r\na\r\n\"\"\r\n")
    }))

  it.effect("honours the delimiter option", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      yield* runSink(csvSink, { path, schema: observed, delimiter: ";" }, [[{ a: "x;y", b: "p,q" }]])
      expect(readText(path)).toBe("a;b\r\n\"x;y\";p,q\r\n")
    }))

  it.effect("fixes the columns at the first write: flexible = declared then the first row's extras", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      yield* runSink(csvSink, { path, schema: { mode: "flexible", fields: ["id: int"] } }, [
        [{ extra: "e", id: 1 }],
        [{ id: 2 }]
      ])
      expect(readText(path)).toBe("id,extra\r\n1,e\r\n2,\r\n")
    }))

  it.effect("fails on a row key that is not a column, naming the sink, the path and the keys", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const error = yield* Effect.flip(
        runSink(csvSink, { path, schema: observed }, [[{ a: 1 }], [{ a: 2, b: 3, c: 4 }]], ctx("results"))
      )
      expect(error).toMatchObject({ _tag: "PluginRunError" })
      const message = (error as { message: string }).message
      expect(message).toContain("fields not in fieldnames: 'b', 'c'")
      expect(message).toContain("sink 'results'")
      expect(message).toContain(path)
      expect(message).toContain("input row 1")
    }))

  it.effect("creates no file when it receives no rows, but creates parent folders on start", () =>
    Effect.gen(function*() {
      const dir = join(tempDir(), "nested", "deeper")
      const path = join(dir, "out.csv")
      const { artifact } = yield* runSink(csvSink, { path, schema: observed }, [[], []])
      expect(existsSync(dir)).toBe(true)
      expect(existsSync(path)).toBe(false)
      expect(artifact).toBeUndefined()
    }))

  it.effect("leaves an old file untouched when it receives no rows", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      writeFileSync(path, "old\r\n")
      yield* runSink(csvSink, { path, schema: observed }, [])
      expect(readText(path)).toBe("old\r\n")
    }))

  it.effect("truncates an existing file at the first write in write mode", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      writeFileSync(path, "old,content\r\n1,2\r\n")
      yield* runSink(csvSink, { path, schema: observed }, [[{ a: 1 }]])
      expect(readText(path)).toBe("a\r\n1\r\n")
    }))

  it.effect("many small writes produce the same file as one big write", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const rows = Array.from({ length: 1500 }, (_, i) => ({ i, v: i / 7, s: i % 3 === 0 ? "a,b" : "c" }))
      const schema = { mode: "fixed", fields: ["i: int", "v: float", "s: str"] }
      yield* runSink(csvSink, { path: join(dir, "one.csv"), schema }, [rows])
      const batches = Array.from({ length: 300 }, (_, k) => rows.slice(k * 5, k * 5 + 5))
      yield* runSink(csvSink, { path: join(dir, "many.csv"), schema }, batches)
      const one = readFileSync(join(dir, "one.csv"))
      expect(readFileSync(join(dir, "many.csv")).equals(one)).toBe(true)
      expect(one.toString().split("\r\n")).toHaveLength(1502)
    }))

  it.effect("reports path, SHA-256 and size of the file as its artifact", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const { artifact } = yield* runSink(csvSink, { path, schema: richSchema }, [richRows.slice(0, 1), richRows.slice(1)])
      expect(artifact).toEqual({ pathOrUri: path, contentHash: sha256File(path), sizeBytes: fileSize(path) })
    }))

  it.effect("fails every use after close, and close is idempotent", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const { sink } = yield* runSink(csvSink, { path, schema: observed }, [[{ a: 1 }]])
      yield* sink.close
      for (const use of [sink.write([{ a: 2 }]), sink.flush, sink.onStart, sink.onComplete]) {
        const error = yield* Effect.flip(use)
        expect(error.message).toContain("sink used after close")
      }
      expect(readText(path)).toBe("a\r\n1\r\n")
    }))

  it.effect("refuses a write after on_complete", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const sink = yield* csvSink.create({ path, schema: observed }, ctx())
      yield* sink.write([{ a: 1 }])
      yield* sink.onComplete
      const error = yield* Effect.flip(sink.write([{ a: 2 }]))
      expect(error.message).toContain("after on_complete")
      yield* sink.close
    }))

  describe("validate_input", () => {
    it.effect("checks rows strictly and names the failing row; nothing of the batch is written", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        const options = { path, schema: { mode: "fixed", fields: ["n: int"] }, validate_input: true }
        const error = yield* Effect.flip(runSink(csvSink, options, [[{ n: 1 }, { n: "2" }]]))
        expect(error).toMatchObject({ _tag: "PluginRunError" })
        expect((error as Error).message).toMatch(/input row 1 failed schema validation \(n: expected int/)
        expect(existsSync(path)).toBe(false)
      }))

    it.effect("is off by default", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        yield* runSink(csvSink, { path, schema: { mode: "fixed", fields: ["n: int"] } }, [[{ n: "x" }]])
        expect(readText(path)).toBe("n\r\nx\r\n")
      }))
  })

  describe("header options", () => {
    const rows = [{ id: 1, amount: 2 }]
    const schema = { mode: "fixed", fields: ["id: int", "amount: int"] }

    it.effect("headers mapping renames header cells only", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        yield* runSink(csvSink, { path, schema, headers: { amount: "Amount (EUR)" } }, [rows])
        expect(readText(path)).toBe("id,Amount (EUR)\r\n1,2\r\n")
      }))

    it.effect("headers normalized and original keep field names", () =>
      Effect.gen(function*() {
        for (const headers of ["normalized", "original"]) {
          const path = join(tempDir(), "out.csv")
          yield* runSink(csvSink, { path, schema, headers, display_headers: { id: "ID" } }, [rows])
          expect(readText(path)).toBe("id,amount\r\n1,2\r\n")
        }
      }))

    it.effect("display_headers renames header cells", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        yield* runSink(csvSink, { path, schema, display_headers: { id: "ID" } }, [rows])
        expect(readText(path)).toBe("ID,amount\r\n1,2\r\n")
      }))

    it.effect("restore_source_headers writes the source's original names", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        const headers = new Map([["id", "Customer ID"], ["amount", "Amount"]])
        yield* runSink(csvSink, { path, schema, restore_source_headers: true }, [rows], ctx("out", headers))
        expect(readText(path)).toBe("Customer ID,Amount\r\n1,2\r\n")
      }))

    it.effect("restore_source_headers without a CSV source fails the write", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        const error = yield* Effect.flip(runSink(csvSink, { path, schema, restore_source_headers: true }, [rows]))
        expect(error).toMatchObject({ _tag: "PluginRunError" })
        expect((error as Error).message).toContain("restore_source_headers")
        expect(existsSync(path)).toBe(false)
      }))

    it.effect("display_headers and restore_source_headers are mutually exclusive", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          csvSink.create(
            { path: "x.csv", schema, display_headers: { id: "ID" }, restore_source_headers: true },
            ctx()
          )
        )
        expect(error).toMatchObject({ _tag: "PluginConfigError", key: "display_headers" })
      }))
  })

  describe("mode: append", () => {
    it.effect("reuses an existing header and appends rows without one", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        writeFileSync(path, "b,a\r\n1,2\r\n")
        const { artifact } = yield* runSink(csvSink, { path, schema: observed, mode: "append" }, [[{ a: 3, b: 4 }]])
        expect(readText(path)).toBe("b,a\r\n1,2\r\n4,3\r\n")
        expect(artifact).toEqual({ pathOrUri: path, contentHash: sha256File(path), sizeBytes: fileSize(path) })
      }))

    it.effect("maps a displayed header back to field names", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        writeFileSync(path, "ID,amount\r\n1,2\r\n")
        const options = {
          path,
          schema: { mode: "fixed", fields: ["id: int", "amount: int"] },
          mode: "append",
          display_headers: { id: "ID" }
        }
        yield* runSink(csvSink, options, [[{ id: 5, amount: 6 }]])
        expect(readText(path)).toBe("ID,amount\r\n1,2\r\n5,6\r\n")
      }))

    it.effect("writes a header when the file is missing or empty", () =>
      Effect.gen(function*() {
        const dir = tempDir()
        writeFileSync(join(dir, "empty.csv"), "")
        for (const name of ["missing.csv", "empty.csv"]) {
          const path = join(dir, name)
          yield* runSink(csvSink, { path, schema: observed, mode: "append" }, [[{ a: 1 }], [{ a: 2 }]])
          expect(readText(path)).toBe("a\r\n1\r\n2\r\n")
        }
      }))

    it.effect("fails when a fixed schema does not match the existing header", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        writeFileSync(path, "amount,id\r\n1,2\r\n")
        const options = { path, schema: { mode: "fixed", fields: ["id: int", "amount: int"] }, mode: "append" }
        const error = yield* Effect.flip(runSink(csvSink, options, [[{ id: 1, amount: 2 }]]))
        expect((error as Error).message).toContain("does not match the fixed schema fields")
        expect(readText(path)).toBe("amount,id\r\n1,2\r\n")
      }))

    it.effect("fails when a flexible schema's fields are missing from the existing header", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        writeFileSync(path, "x\r\n1\r\n")
        const options = { path, schema: { mode: "flexible", fields: ["id: int"] }, mode: "append" }
        const error = yield* Effect.flip(runSink(csvSink, options, [[{ id: 1 }]]))
        expect((error as Error).message).toContain("lacks schema field(s) 'id'")
      }))

    it.effect("accepts a flexible schema whose fields the header contains, using the header's order", () =>
      Effect.gen(function*() {
        const path = join(tempDir(), "out.csv")
        writeFileSync(path, "x,\"i,d\",id\r\n")
        const options = { path, schema: { mode: "flexible", fields: ["id: int"] }, mode: "append" }
        yield* runSink(csvSink, options, [[{ id: 1, x: "y" }]])
        expect(readText(path)).toBe("x,\"i,d\",id\r\ny,,1\r\n")
      }))
  })

  describe("options", () => {
    it.effect("refuses unknown options with a suggestion", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(csvSink.create({ path: "x.csv", schema: observed, delimeter: ";" }, ctx()))
        expect(error).toMatchObject({ _tag: "PluginConfigError", plugin: "csv", key: "delimeter" })
        expect(error.message).toContain("did you mean 'delimiter'")
      }))

    it.effect("requires path and schema", () =>
      Effect.gen(function*() {
        const noPath = yield* Effect.flip(csvSink.create({ schema: observed }, ctx()))
        expect(noPath).toMatchObject({ key: "path" })
        const noSchema = yield* Effect.flip(csvSink.create({ path: "x.csv" }, ctx()))
        expect(noSchema).toMatchObject({ key: "schema" })
      }))

    it.effect("refuses a multi-character delimiter and an unsupported encoding", () =>
      Effect.gen(function*() {
        const delim = yield* Effect.flip(csvSink.create({ path: "x.csv", schema: observed, delimiter: ";;" }, ctx()))
        expect(delim).toMatchObject({ key: "delimiter" })
        const enc = yield* Effect.flip(csvSink.create({ path: "x.csv", schema: observed, encoding: "klingon" }, ctx()))
        expect(enc).toMatchObject({ key: "encoding" })
      }))

    it.effect("writes a BOM with utf-8-sig and refuses unencodable text with ascii", () =>
      Effect.gen(function*() {
        const dir = tempDir()
        const bomPath = join(dir, "bom.csv")
        yield* runSink(csvSink, { path: bomPath, schema: observed, encoding: "utf-8-sig" }, [[{ a: "é" }]])
        expect(readFileSync(bomPath).toString("hex")).toBe("efbbbf" + Buffer.from("a\r\né\r\n").toString("hex"))
        const asciiPath = join(dir, "ascii.csv")
        const error = yield* Effect.flip(
          runSink(csvSink, { path: asciiPath, schema: observed, encoding: "ascii" }, [[{ a: "é" }]])
        )
        expect((error as Error).message).toContain("cannot encode output as ascii")
      }))

    it.effect("reports a file it cannot create as a run error naming the path", () =>
      Effect.gen(function*() {
        const dir = tempDir()
        const blocker = join(dir, "blocker")
        writeFileSync(blocker, "")
        const path = join(blocker, "out.csv")
        const sink = yield* csvSink.create({ path, schema: observed }, ctx("broken"))
        const error = yield* Effect.flip(sink.write([{ a: 1 }]))
        expect(error.message).toContain("sink 'broken' (csv, ")
        expect(error.message).toContain(path)
        yield* sink.close
      }))
  })
})
