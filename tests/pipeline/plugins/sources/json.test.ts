import { afterAll, describe, expect, it } from "vitest"
import { jsonSource } from "../../../../src/pipeline/plugins/sources/json.js"
import { nullSource } from "../../../../src/pipeline/plugins/sources/null.js"
import { create, createError, invalid, makeTempDir, readAll, readError, valid, withStderr } from "./support.js"

const tmp = makeTempDir()
afterAll(() => tmp.cleanup())

const observed = { mode: "observed" }
const json = (path: string, extra: Record<string, unknown> = {}) =>
  create(jsonSource, { path, schema: observed, on_validation_failure: "bad", ...extra })

describe("json source: array format", () => {
  it("reads and validates each element", async () => {
    const path = tmp.file("orders.json", JSON.stringify([
      { order_id: 1, items: [{ sku: "A" }] },
      { order_id: "2", items: [] },
      { order_id: "x", items: [] },
      5
    ]))
    const items = await readAll(json(path, { schema: { mode: "fixed", fields: ["order_id: int", "items: any"] } }))
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Valid", "Invalid", "Invalid"])
    expect(valid(items)).toEqual([{ order_id: 1, items: [{ sku: "A" }] }, { order_id: 2, items: [] }])
    expect(invalid(items)[0]).toMatchObject({ raw: { order_id: "x", items: [] }, error: "order_id: expected int, got 'x'" })
    expect(invalid(items)[1]!.raw).toBe(5)
  })

  it("takes the list from data_key", async () => {
    const path = tmp.file("wrapped.json", JSON.stringify({ meta: 1, data: [{ a: 1 }, { a: 2 }] }))
    expect(valid(await readAll(json(path, { data_key: "data" })))).toEqual([{ a: 1 }, { a: 2 }])
  })

  it("turns whole-file problems into one invalid item", async () => {
    const cases: Array<[string, string, Record<string, unknown>, string]> = [
      ["empty.json", "", {}, "parse_error"],
      ["scalar.json", "tru", {}, "parse_error"],
      ["badmeta.json", "{\"meta\": [1,, 2], \"data\": [{\"a\": 1}]}", { data_key: "data" }, "parse_error"],
      ["object.json", "{\"a\": 1}", {}, "structure_error"],
      ["nokey.json", "{\"a\": 1}", { data_key: "data" }, "structure_error"],
      ["notlist.json", "{\"data\": {\"a\": 1}}", { data_key: "data" }, "structure_error"],
      ["rootlist.json", "[1]", { data_key: "data" }, "structure_error"]
    ]
    for (const [name, content, extra, kind] of cases) {
      const path = tmp.file(name, content)
      const items = await readAll(json(path, extra))
      expect(items, name).toHaveLength(1)
      const item = items[0]!
      expect(item._tag).toBe("Invalid")
      if (item._tag === "Invalid") {
        expect(Object.keys(item.raw as object)).toEqual(kind === "parse_error" ? ["file_path", kind, "__raw_text__"] : ["file_path", kind])
        expect((item.raw as Record<string, unknown>)["file_path"]).toBe(path)
        expect(item.error.length).toBeGreaterThan(0)
      }
    }
  })

  it("an empty list yields no rows", async () => {
    expect(await readAll(json(tmp.file("none.json", "[]")))).toEqual([])
  })

  it("keeps a __proto__ key as data", async () => {
    const items = await readAll(json(tmp.file("proto.json", "[{\"__proto__\": {\"x\": 1}, \"a\": 2}]")))
    const row = valid(items)[0]!
    expect(Object.keys(row)).toEqual(["__proto__", "a"])
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype)
  })

  it("makes an element that is not valid UTF-8 invalid and reads on", async () => {
    const path = tmp.file("bad.json", Buffer.concat([Buffer.from("[{\"a\": \""), Buffer.from([0xff]), Buffer.from("\"},\n {\"a\": 2}]")]))
    const items = await readAll(json(path))
    expect(items).toHaveLength(2)
    expect(items[0]).toMatchObject({ _tag: "Invalid", raw: { __raw_text__: "{\"a\": \"\ufffd\"}", __element_index__: 0, __line_number__: 1 } })
    expect(invalid(items)[0]!.error).toBe("element 0 (line 1): not valid utf-8 text")
    expect(items[1]).toEqual({ _tag: "Valid", row: { a: 2 } })
  })

  it("treats a non-list file that is not valid UTF-8 as a parse error", async () => {
    const path = tmp.file("bad-object.json", Buffer.concat([Buffer.from("{\"a\": \""), Buffer.from([0xff]), Buffer.from("\"}")]))
    const items = await readAll(json(path))
    expect(items).toHaveLength(1)
    expect(items[0]).toMatchObject({ _tag: "Invalid", raw: { file_path: path, parse_error: "the file is not valid utf-8 text" } })
  })

  it("fails with a PluginRunError naming a missing file", async () => {
    const path = `${tmp.dir}/missing.json`
    const e = await readError(json(path))
    expect(e._tag).toBe("PluginRunError")
    expect(e.message).toContain(path)
  })
})

describe("json source: jsonl format", () => {
  it("reads one value per line, skipping blank lines, numbering physical lines", async () => {
    const path = tmp.file("data.jsonl", "{\"id\": 1}\n\n   \n{\"id\": 2\n  {\"id\": NaN}  \r\n[1,2]\n{\"id\": 3}")
    const items = await readAll(json(path))
    expect(items).toEqual([
      { _tag: "Valid", row: { id: 1 } },
      expect.objectContaining({ _tag: "Invalid", raw: { __raw_line__: "{\"id\": 2", __line_number__: 4 } }),
      expect.objectContaining({ _tag: "Invalid", raw: { __raw_line__: "{\"id\": NaN}", __line_number__: 5 } }),
      expect.objectContaining({ _tag: "Invalid", raw: [1, 2] }),
      { _tag: "Valid", row: { id: 3 } }
    ])
    expect(invalid(items)[0]!.error).toMatch(/^line 4: invalid JSON/)
  })

  it("picks jsonl from the .jsonl extension and honours an explicit format", async () => {
    const path = tmp.file("auto.jsonl", "{\"a\": 1}\n{\"a\": 2}\n")
    expect(valid(await readAll(json(path)))).toHaveLength(2)
    const txt = tmp.file("lines.txt", "{\"a\": 1}\n{\"a\": 2}\n")
    expect(await readAll(json(txt))).toHaveLength(1)
    expect(valid(await readAll(json(txt, { format: "jsonl" })))).toHaveLength(2)
  })

  it("validates each line against the schema", async () => {
    const path = tmp.file("typed.jsonl", "{\"id\": \"7\", \"message\": \"hi\"}\n{\"id\": 1}\n")
    const items = await readAll(json(path, { schema: { mode: "fixed", fields: ["id: int", "message: str"] } }))
    expect(items[0]).toEqual({ _tag: "Valid", row: { id: 7, message: "hi" } })
    expect(items[1]).toMatchObject({ _tag: "Invalid", raw: { id: 1 }, fieldErrors: [{ field: "message" }] })
  })

  it("makes a line with invalid UTF-8 invalid and reads on", async () => {
    const path = tmp.file("bad.jsonl", Buffer.concat([Buffer.from("{\"a\": 1}\n{\"a\": \""), Buffer.from([0xc3, 0x28]), Buffer.from("\"}\n{\"a\": 3}\n")]))
    const items = await readAll(json(path))
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Valid"])
    expect(items[1]).toMatchObject({ raw: { __line_number__: 2 } })
    expect(invalid(items)[0]!.error).toMatch(/line 2: not valid utf-8/)
  })

  it("a BOM is stripped: silently with utf-8-sig, with a warning with utf-8 (lines and arrays alike)", async () => {
    const lines = tmp.file("bom.jsonl", "\ufeff{\"a\": 1}\n{\"a\": 2}\n")
    const r = await withStderr(() => readAll(json(lines)))
    expect(valid(r.result)).toEqual([{ a: 1 }, { a: 2 }])
    expect(r.warnings).toEqual([
      `warning: json source: '${lines}' starts with a UTF-8 byte order mark (BOM) although its encoding is 'utf-8'; ` +
      "the BOM was removed and is not part of the data. Set encoding: utf-8-sig to declare it.\n"
    ])
    const array = tmp.file("bom.json", "\ufeff[{\"a\": 1}]")
    const a = await withStderr(() => readAll(json(array)))
    expect(valid(a.result)).toEqual([{ a: 1 }])
    expect(a.warnings).toHaveLength(1)
    const sig = await withStderr(() => readAll(json(lines, { encoding: "utf-8-sig" })))
    expect(valid(sig.result)).toEqual([{ a: 1 }, { a: 2 }])
    expect(sig.warnings).toEqual([])
  })

  it("an empty file yields no rows", async () => {
    expect(await readAll(json(tmp.file("empty.jsonl", "")))).toEqual([])
  })

  it("handles lines spanning read chunks", async () => {
    const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ i, pad: "x".repeat(i % 97) }))
    const path = tmp.file("many.jsonl", lines.join("\r\n"))
    const rows = valid(await readAll(json(path)))
    expect(rows).toHaveLength(3000)
    expect(rows.map((r) => r["i"])).toEqual(lines.map((_, i) => i))
  })

  it("fails with a PluginRunError naming a missing file", async () => {
    const path = `${tmp.dir}/missing.jsonl`
    expect((await readError(json(path))).message).toContain(path)
  })
})

describe("json source: options", () => {
  const base = { path: "x.json", schema: observed, on_validation_failure: "discard" }
  it("checks format and unknown options", () => {
    expect(createError(jsonSource, { ...base, format: "xml" }).key).toBe("format")
    const e = createError(jsonSource, { ...base, dataKey: "x" })
    expect(e.key).toBe("dataKey")
    expect(e.message).toMatch(/did you mean 'data_key'/)
  })
})

describe("null source", () => {
  it("yields no rows and defaults to discard", async () => {
    const source = create(nullSource, {})
    expect(source.onValidationFailure).toBe("discard")
    expect(source.schema.mode).toBe("observed")
    expect(await readAll(source)).toEqual([])
  })
  it("accepts a schema and a destination", () => {
    const source = create(nullSource, { schema: { mode: "fixed", fields: ["a: int"] }, on_validation_failure: "bad" })
    expect(source.schema.fields).toHaveLength(1)
    expect(source.onValidationFailure).toBe("bad")
  })
  it("refuses unknown options", () => {
    expect(createError(nullSource, { path: "x" }).key).toBe("path")
  })
})
