import { createWriteStream } from "node:fs"
import { once } from "node:events"
import { Effect, Stream } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { csvSource, UNPARSEABLE_LINE } from "../../../../src/pipeline/plugins/sources/csv.js"
import { INPUT_LIMITS } from "../../../../src/pipeline/plugins/sources/raw-text.js"
import { normalizeHeader } from "../../../../src/pipeline/plugins/sources/normalize.js"
import { create, createError, invalid, makeTempDir, readAll, readError, valid, withStderr } from "./support.js"

const tmp = makeTempDir()
afterAll(() => tmp.cleanup())

const observed = { mode: "observed" }
const csv = (path: string, extra: Record<string, unknown> = {}) =>
  create(csvSource, { path, schema: observed, on_validation_failure: "quarantine", ...extra })

describe("csv source: reading", () => {
  it("reads rows as strings with an observed schema", async () => {
    const items = await readAll(csv(tmp.file("basic.csv", "id,name\n1,Ann\n2,Bob\n")))
    expect(items).toEqual([
      { _tag: "Valid", row: { id: "1", name: "Ann" } },
      { _tag: "Valid", row: { id: "2", name: "Bob" } }
    ])
  })

  it("coerces with a fixed schema and reorders to the schema", async () => {
    const path = tmp.file("fixed.csv", "name,id,score\nAnn, 7 ,1.5\n")
    const items = await readAll(csv(path, { schema: { mode: "fixed", fields: ["id: int", "score: float", "name: str"] } }))
    expect(items).toHaveLength(1)
    const row = valid(items)[0]!
    expect(Object.entries(row)).toEqual([["id", 7], ["score", 1.5], ["name", "Ann"]])
  })

  it("quarantines rows failing coercion with the raw strings", async () => {
    const path = tmp.file("coerce.csv", "id,amount\n1,abc\n2,\n3,4\n")
    const items = await readAll(csv(path, { schema: { mode: "fixed", fields: ["id: int", "amount: int?"] } }))
    expect(items).toHaveLength(3)
    expect(items[0]).toMatchObject({ _tag: "Invalid", raw: { id: "1", amount: "abc" }, error: "amount: expected int, got 'abc'" })
    expect(items[1]).toMatchObject({ _tag: "Invalid", raw: { id: "2", amount: "" } })
    expect(items[2]).toEqual({ _tag: "Valid", row: { id: 3, amount: 4 } })
  })

  it("makes ragged rows invalid with raw line, physical line and row number", async () => {
    const path = tmp.file("ragged.csv", "a,b,c\n1,2,3\n\n4,5\n6,7,8,9\n10,11,12\n")
    const items = await readAll(csv(path))
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Invalid", "Valid"])
    expect(invalid(items).map((i) => i.raw)).toEqual([
      { __raw_line__: "4,5", __line_number__: 4, __row_number__: 2 },
      { __raw_line__: "6,7,8,9", __line_number__: 5, __row_number__: 3 }
    ])
    expect(invalid(items)[0]!.error).toMatch(/expected 3 values/)
  })

  it("skips blank lines, keeps quoted newlines, delimiters and quotes, handles CRLF and CR", async () => {
    const path = tmp.file("quoted.csv", "a,b\r\n\r\n\"x,y\",\"line1\nline2\"\r\n\"say \"\"hi\"\"\", z \r\n")
    expect(valid(await readAll(csv(path)))).toEqual([
      { a: "x,y", b: "line1\nline2" },
      { a: "say \"hi\"", b: " z " }
    ])
    const cr = tmp.file("cr.csv", "a,b\r1,2\r3,4\r")
    expect(valid(await readAll(csv(cr)))).toEqual([{ a: "1", b: "2" }, { a: "3", b: "4" }])
  })

  it("line numbers name the line a multi-line record ends on", async () => {
    const path = tmp.file("multiline-ragged.csv", "a,b\n\"x\ny\"\n1,2\n")
    const items = await readAll(csv(path))
    expect(items[0]).toMatchObject({ _tag: "Invalid", raw: { __raw_line__: "x\ny", __line_number__: 3, __row_number__: 1 } })
  })

  it("a CRLF or CR inside a quoted field is one physical line", async () => {
    const path = tmp.file("multiline-crlf.csv", "a,b\r\n\"x\r\ny\r\nz\"\r\n\"p\rq\"\r\n1\r\n2,\"open\r\n")
    const items = await readAll(csv(path))
    expect(invalid(items).map((i) => (i.raw as Record<string, unknown>)["__line_number__"])).toEqual([4, 6, 7, 8])
    expect(invalid(items)[3]!.error).toContain("starting at line 8 is never closed")
  })

  it("is lenient about stray quotes inside unquoted fields", async () => {
    const path = tmp.file("stray.csv", "a,b\n5\" tall,x\n")
    expect(valid(await readAll(csv(path)))).toEqual([{ a: "5\" tall", b: "x" }])
  })

  it("makes a record that cannot be parsed invalid and keeps earlier rows", async () => {
    const path = tmp.file("unclosed.csv", "a,b\n1,2\n3,\"open\n4,5\n")
    const items = await readAll(csv(path))
    expect(items[0]).toEqual({ _tag: "Valid", row: { a: "1", b: "2" } })
    expect(items).toHaveLength(2)
    expect(items[1]).toEqual({
      _tag: "Invalid",
      raw: { __raw_line__: "3,\"open\n4,5\n", __line_number__: 4, __row_number__: 2 },
      error: "CSV parse error at line 4: a quoted field in the record starting at line 3 is never closed (the file ends inside it); " +
        "the rest of the file is kept as that record's raw text"
    })
    expect(JSON.stringify(items)).not.toContain(UNPARSEABLE_LINE)
  })

  it("keeps the raw text of an unclosed quote after blank lines, skip_rows and across read chunks, up to the limit", async () => {
    const tail = "9,\"" + "x,y\n".repeat(40_000)
    const path = tmp.file("unclosed-long.csv", "junk\na,b\n" + "1,2\n".repeat(30_000) + "\n\r\n" + tail)
    const items = await readAll(csv(path, { skip_rows: 1 }))
    expect(items).toHaveLength(30_001)
    const last = items[30_000]!
    if (last._tag !== "Invalid") throw new Error("expected the unclosed record to be invalid")
    const raw = last.raw as Record<string, unknown>
    expect(raw["__raw_line__"]).toBe(tail.slice(0, INPUT_LIMITS.rawTextBytes))
    expect(raw["__raw_truncated__"]).toBe(true)
    expect(raw["__raw_bytes__"]).toBe(tail.length)
    expect(raw["__row_number__"]).toBe(30_001)
    expect(last.error).toContain(`the record starting at line ${1 + 1 + 30_000 + 2 + 1} is never closed`)
  })

  it("supports other delimiters", async () => {
    expect(valid(await readAll(csv(tmp.file("semi.csv", "a;b\n1;2,5\n"), { delimiter: ";" })))).toEqual([{ a: "1", b: "2,5" }])
    expect(valid(await readAll(csv(tmp.file("tab.tsv", "a\tb\n1\t2\n"), { delimiter: "\t" })))).toEqual([{ a: "1", b: "2" }])
    const ragged = await readAll(csv(tmp.file("semi-ragged.csv", "a;b\n1;2;3\n"), { delimiter: ";" }))
    expect(ragged[0]).toMatchObject({ raw: { __raw_line__: "1;2;3" } })
  })

  it("skip_rows discards raw lines before parsing, counted in line numbers", async () => {
    const path = tmp.file("skip.csv", "title line, with \"quote\nanother\r\nid,name\n1,a\n2\n")
    const items = await readAll(csv(path, { skip_rows: 2 }))
    expect(items[0]).toEqual({ _tag: "Valid", row: { id: "1", name: "a" } })
    expect(items[1]).toMatchObject({ raw: { __raw_line__: "2", __line_number__: 5, __row_number__: 2 } })
  })

  it("yields nothing for an empty file, a header-only file, or a fully skipped file", async () => {
    expect(await readAll(csv(tmp.file("empty.csv", "")))).toEqual([])
    expect(await readAll(csv(tmp.file("header.csv", "a,b\n")))).toEqual([])
    expect(await readAll(csv(tmp.file("skipped.csv", "x\ny\n"), { skip_rows: 5 }))).toEqual([])
    expect(await readAll(csv(tmp.file("blank.csv", "\n\n\n")))).toEqual([])
  })

  it("strips a BOM with utf-8-sig silently and with utf-8 with one warning per source, in every header mode", async () => {
    const path = tmp.file("bom.csv", "\ufeffid,name\n1,a\n")
    const fixed = { mode: "fixed", fields: ["id: int", "name: str"] }
    const { result, warnings } = await withStderr(async () => {
      const utf8 = csv(path, { schema: fixed })
      const first = await readAll(utf8)
      const again = await readAll(utf8)
      return { first, again }
    })
    expect(result.first).toEqual([{ _tag: "Valid", row: { id: 1, name: "a" } }])
    expect(result.again).toEqual(result.first)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toBe(
      `warning: csv source: '${path}' starts with a UTF-8 byte order mark (BOM) although its encoding is 'utf-8'; ` +
        "the BOM was removed and is not part of the data. Set encoding: utf-8-sig to declare it.\n"
    )
    // Verbatim headers and headerless files are clean too (the BOM is never the data's first character).
    const verbatim = await withStderr(() => readAll(csv(path, { normalize_fields: false })))
    expect(valid(verbatim.result)).toEqual([{ id: "1", name: "a" }])
    expect(verbatim.warnings).toHaveLength(1)
    const headerless = tmp.file("bom-cols.csv", "\ufeff7,x\n")
    expect(valid((await withStderr(() => readAll(csv(headerless, { columns: ["n", "s"], schema: { mode: "fixed", fields: ["n: int", "s: str"] } })))).result))
      .toEqual([{ n: 7, s: "x" }])
    const sig = await withStderr(() => readAll(csv(path, { encoding: "utf-8-sig", normalize_fields: false })))
    expect(valid(sig.result)).toEqual([{ id: "1", name: "a" }])
    expect(sig.warnings).toEqual([])
    const noBom = tmp.file("nobom.csv", "id\n1\n")
    const plain = await withStderr(() => readAll(csv(noBom)))
    expect(valid(plain.result)).toEqual([{ id: "1" }])
    expect(plain.warnings).toEqual([])
    expect(valid(await readAll(csv(noBom, { encoding: "utf-8-sig" })))).toEqual([{ id: "1" }])
  })

  it("leaves BOM bytes alone in latin-1 (there they are text)", async () => {
    const path = tmp.file("bom-latin1.csv", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("id\n1\n")]))
    const r = await withStderr(() => readAll(csv(path, { encoding: "latin-1", normalize_fields: false })))
    expect(Object.keys(valid(r.result)[0]!)).toEqual(["\u00ef\u00bb\u00bfid"])
    expect(r.warnings).toEqual([])
  })

  it("decodes latin-1", async () => {
    const path = tmp.file("latin1.csv", Buffer.from([0x6e, 0x0a, 0x63, 0x61, 0x66, 0xe9, 0x0a]))
    expect(valid(await readAll(csv(path, { encoding: "latin-1" })))).toEqual([{ n: "café" }])
    expect(valid(await readAll(csv(path, { encoding: "latin1" })))).toEqual([{ n: "café" }])
  })

  it("decodes cp1252", async () => {
    const path = tmp.file("cp1252.csv", Buffer.from([0x6e, 0x0a, 0x80, 0x0a]))
    expect(valid(await readAll(csv(path, { encoding: "cp1252" })))).toEqual([{ n: "€" }])
  })

  it("makes a row with invalid UTF-8 invalid, naming its line, and reads on", async () => {
    const bytes = Buffer.concat([Buffer.from("id,name\n1,ok\n2,"), Buffer.from([0xff, 0xfe]), Buffer.from("\n3,fine\n")])
    const items = await readAll(csv(tmp.file("badutf8.csv", bytes)))
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Valid"])
    expect(items[1]).toMatchObject({ raw: { __line_number__: 3, __row_number__: 2 } })
    expect((items[1] as { error: string }).error).toMatch(/line 3: not valid utf-8/)
    expect((items[1] as { raw: { __raw_line__: string } }).raw.__raw_line__).toMatch(/^2,\ufffd/)
  })

  it("keeps a valid U+FFFD character as data", async () => {
    expect(valid(await readAll(csv(tmp.file("fffd.csv", "a\n\ufffd\n"))))).toEqual([{ a: "\ufffd" }])
  })

  it("fails the run when the header is not valid UTF-8", async () => {
    const path = tmp.file("badheader.csv", Buffer.concat([Buffer.from("i"), Buffer.from([0xc3]), Buffer.from("d\n1\n")]))
    const e = await readError(csv(path))
    expect(e._tag).toBe("PluginRunError")
    expect(e.message).toMatch(/header \(line 1\) is not valid utf-8/)
  })

  it("fails with a PluginRunError naming the path when the file is missing", async () => {
    const path = `${tmp.dir}/does-not-exist.csv`
    const e = await readError(csv(path))
    expect(e._tag).toBe("PluginRunError")
    expect(e.plugin).toBe("csv")
    expect(e.message).toContain(path)
    expect(e.message).toContain("file not found")
  })

  it("fails with a PluginRunError for a directory", async () => {
    const e = await readError(csv(tmp.dir))
    expect(e.message).toContain("is a directory")
  })

  it("can be read more than once and stopped early", async () => {
    const source = csv(tmp.file("twice.csv", "a\n1\n2\n3\n"))
    expect(await readAll(source)).toHaveLength(3)
    expect(await readAll(source)).toHaveLength(3)
    const two = await Effect.runPromise(Stream.runCollect(Stream.take(source.read, 2)))
    expect(two.length).toBe(2)
  })
})

describe("csv source: headers", () => {
  it("normalises headers per the spec examples", () => {
    const cases: Array<[string, string]> = [
      ["  Amount (USD)  ", "amount_usd"],
      ["Customer ID!!", "customer_id"],
      ["class", "class_"],
      ["Class", "class_"],
      ["1st Place", "_1st_place"],
      ["__a__b__", "a_b"],
      ["Café Straße", "café_straße"],
      ["e\u0301t\u00e9", "été"],
      ["True", "true"],
      ["match", "match"]
    ]
    for (const [input, output] of cases) expect(normalizeHeader(input)).toEqual({ ok: true, name: output })
    expect(normalizeHeader("!!!").ok).toBe(false)
    expect(normalizeHeader("½x").ok).toBe(false)
  })

  it("normalises headers by default (as ELSPETH does) and records the original headers", async () => {
    const path = tmp.file("norm.csv", "  Amount (USD)  ,Customer ID!!\n1,2\n")
    const fixed = { mode: "fixed", fields: ["amount_usd: int", "customer_id: str"] }
    for (const extra of [{}, { normalize_fields: true }]) {
      const source = csv(path, { schema: fixed, ...extra })
      expect(valid(await readAll(source))).toEqual([{ amount_usd: 1, customer_id: "2" }])
      expect([...source.sourceHeaders!()!.entries()]).toEqual([
        ["amount_usd", "  Amount (USD)  "],
        ["customer_id", "Customer ID!!"]
      ])
    }
  })

  it("normalize_fields: false keeps headers verbatim", async () => {
    const source = csv(tmp.file("verbatim.csv", "Customer ID,class\n1,2\n"), { normalize_fields: false })
    expect(valid(await readAll(source))).toEqual([{ "Customer ID": "1", class: "2" }])
  })

  it("fails when normalisation gives an unusable or duplicate name, pointing at normalize_fields: false", async () => {
    const half = await readError(csv(tmp.file("half.csv", "½x,b\n1,2\n")))
    expect(half.message).toMatch(/not an identifier/)
    expect(half.message).toContain("(normalize_fields: false keeps the headers as they are)")
    expect((await readError(csv(tmp.file("empty-name.csv", "a,???\n1,2\n")))).message).toMatch(/empty name/)
    expect((await readError(csv(tmp.file("dupnorm.csv", "A b,a-b\n1,2\n"), { normalize_fields: true }))).message).toMatch(/both normalise to 'a_b'/)
    expect(valid(await readAll(csv(tmp.file("half-verbatim.csv", "½x,b\n1,2\n"), { normalize_fields: false })))).toEqual([{ "½x": "1", b: "2" }])
  })

  it("applies field_mapping after normalisation", async () => {
    const source = csv(tmp.file("map.csv", "Customer ID,Amount\n1,2\n"), {
      normalize_fields: true,
      field_mapping: { customer_id: "cid" }
    })
    const rows = valid(await readAll(source))
    expect(Object.entries(rows[0]!)).toEqual([["cid", "1"], ["amount", "2"]])
    expect(source.sourceHeaders!()!.get("cid")).toBe("Customer ID")
  })

  it("fails on unknown mapping keys and duplicate names after mapping", async () => {
    const a = await readError(csv(tmp.file("map2.csv", "a,b\n1,2\n"), { normalize_fields: true, field_mapping: { c: "x" } }))
    expect(a.message).toMatch(/field_mapping: 'c' is not a field/)
    const b = await readError(csv(tmp.file("map3.csv", "a,b\n1,2\n"), { normalize_fields: true, field_mapping: { a: "b" } }))
    expect(b.message).toMatch(/duplicate field name 'b'/)
  })

  it("fails on duplicate headers, naming both columns", async () => {
    for (const normalize_fields of [true, false]) {
      expect((await readError(csv(tmp.file("dup.csv", "a,b,a\n1,2,3\n"), { normalize_fields }))).message)
        .toMatch(/duplicate field name 'a' in the header \(columns 1 and 3\)/)
    }
  })

  it("uses columns for a headerless file", async () => {
    const source = csv(tmp.file("cols.csv", "1,2\n3,4\n"), { columns: ["x", "y"], field_mapping: { y: "z" } })
    expect(valid(await readAll(source))).toEqual([{ x: "1", z: "2" }, { x: "3", z: "4" }])
    expect([...source.sourceHeaders!()!.entries()]).toEqual([["x", "x"], ["z", "y"]])
  })
})

describe("csv source: options", () => {
  const base = { path: "x.csv", schema: observed, on_validation_failure: "discard" }
  it("refuses unknown options with a suggestion", () => {
    const e = createError(csvSource, { ...base, delimeter: ";" })
    expect(e.key).toBe("delimeter")
    expect(e.message).toMatch(/did you mean 'delimiter'/)
  })
  it("requires path, schema and on_validation_failure", () => {
    expect(createError(csvSource, { schema: observed, on_validation_failure: "discard" }).key).toBe("path")
    expect(createError(csvSource, { path: "x", on_validation_failure: "discard" }).key).toBe("schema")
    expect(createError(csvSource, { path: "x", schema: observed }).key).toBe("on_validation_failure")
  })
  it("reports schema errors under schema.*", () => {
    expect(createError(csvSource, { ...base, schema: { mode: "fixed", fields: ["a: int", "b-c: str"] } }).key).toBe("schema.fields[1]")
  })
  it("checks delimiter, encoding and skip_rows", () => {
    expect(createError(csvSource, { ...base, delimiter: ";;" }).message).toMatch(/single character/)
    expect(createError(csvSource, { ...base, encoding: "utf-16" }).message).toMatch(/unsupported encoding 'utf-16'/)
    expect(createError(csvSource, { ...base, skip_rows: -1 }).key).toBe("skip_rows")
    expect(createError(csvSource, { ...base, skip_rows: 1.5 }).key).toBe("skip_rows")
  })
  it("refuses columns with normalize_fields: true, and field_mapping with normalize_fields: false", () => {
    expect(createError(csvSource, { ...base, columns: ["a"], normalize_fields: true }).message).toMatch(/cannot be combined/)
    const e = createError(csvSource, { ...base, field_mapping: { a: "b" }, normalize_fields: false })
    expect(e.key).toBe("field_mapping")
    expect(e.message).toMatch(/cannot be combined with normalize_fields: false/)
    expect(create(csvSource, { ...base, field_mapping: { a: "b" } }).plugin).toBe("csv")
    expect(create(csvSource, { ...base, columns: ["a"], normalize_fields: false }).plugin).toBe("csv")
  })
  it("refuses keywords and non-identifiers in columns and mapping values", () => {
    expect(createError(csvSource, { ...base, columns: ["a", "class"] }).key).toBe("columns[1]")
    expect(createError(csvSource, { ...base, columns: ["a", "b c"] }).key).toBe("columns[1]")
    expect(createError(csvSource, { ...base, columns: ["a", "a"] }).message).toMatch(/duplicate column/)
    expect(createError(csvSource, { ...base, normalize_fields: true, field_mapping: { a: "for" } }).key).toBe("field_mapping.a")
  })
})

describe("csv source: streaming", () => {
  it("streams a 200k-line file", async () => {
    const path = `${tmp.dir}/big.csv`
    const out = createWriteStream(path)
    out.write("id,name,amount\n")
    const lines = 200_000
    const block: Array<string> = []
    for (let i = 1; i <= lines; i++) {
      block.push(`${i},name ${i},${i % 1000}.5\n`)
      if (block.length === 10_000) {
        if (!out.write(block.join(""))) await once(out, "drain")
        block.length = 0
      }
    }
    out.end()
    await once(out, "finish")
    const source = csv(path, { schema: { mode: "fixed", fields: ["id: int", "name: str", "amount: float"] } })
    const [count, sumIds] = await Effect.runPromise(
      Stream.runFold(source.read, [0, 0] as [number, number], ([n, s], item) =>
        item._tag === "Valid" ? [n + 1, s + (item.row["id"] as number)] : [n, s])
    )
    expect(count).toBe(lines)
    expect(sumIds).toBe((lines * (lines + 1)) / 2)
  })
})
