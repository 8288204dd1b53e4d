/**
 * Source positions and `readFrom`: every item of a CSV or JSON Lines read carries the
 * file offset after its record and the lines consumed up to there, and a read started
 * at the position of item k-1 yields exactly the items a whole read yields from k on.
 *
 * `readFrom({items: 0, …})` is the whole read; a restart is meant for k ≥ 1.
 */
import { statSync } from "node:fs"
import fc from "fast-check"
import { afterAll, describe, expect, it } from "vitest"
import type { SourceInstance, SourceItem, SourcePosition } from "../../../../src/pipeline/plugins/protocol.js"
import { csvSource } from "../../../../src/pipeline/plugins/sources/csv.js"
import { jsonSource } from "../../../../src/pipeline/plugins/sources/json.js"
import { create, makeTempDir, readItems, readItemsFrom } from "./support.js"

const tmp = makeTempDir()
afterAll(() => tmp.cleanup())

let fileCount = 0
const nextName = (ext: string) => `case-${fileCount++}.${ext}`

const positionOf = (item: SourceItem): SourcePosition => {
  if (item.position === undefined) throw new Error(`item without a position: ${JSON.stringify(item)}`)
  return item.position
}

/**
 * Checks `readFrom` against `read` for every k, and that positions only grow and stay
 * inside the file. Returns the whole read's items.
 */
const checkRestarts = async (source: SourceInstance, path: string): Promise<ReadonlyArray<SourceItem>> => {
  const items = await readItems(source)
  const size = statSync(path).size
  let last: SourcePosition = { bytes: 0, line: 0 }
  for (const item of items) {
    const p = positionOf(item)
    expect(p.bytes).toBeGreaterThanOrEqual(last.bytes)
    expect(p.line).toBeGreaterThanOrEqual(last.line)
    expect(p.bytes).toBeLessThanOrEqual(size)
    last = p
  }
  expect(await readItemsFrom(source, { items: 0, position: { bytes: 0, line: 0 } })).toStrictEqual(items)
  for (let k = 1; k <= items.length; k++) {
    const rest = await readItemsFrom(source, { items: k, position: positionOf(items[k - 1]!) })
    expect(rest).toStrictEqual(items.slice(k))
  }
  return items
}

// ---------------------------------------------------------------------------
// File text in each encoding

type Encoding = "utf-8" | "utf-8-sig" | "latin-1" | "cp1252"
const ENCODINGS: ReadonlyArray<Encoding> = ["utf-8", "utf-8-sig", "latin-1", "cp1252"]
const singleByte = (e: Encoding) => e === "latin-1" || e === "cp1252"

/** Text pieces and their bytes: a UTF-8 form and a single-byte form. */
const PIECES = {
  x: ["x", "x"],
  n: ["42", "42"],
  sp: [" ", " "],
  e: ["\u00e9", "\xe9"], // é: two bytes in UTF-8, one in latin-1/cp1252
  euro: ["\u20ac", "\x80"], // €: three bytes in UTF-8; cp1252 0x80
  wide: ["\u{1f600}", "\xff"], // four bytes in UTF-8
  bad: ["\xff", "\x81"] // invalid UTF-8; undefined in cp1252 (latin-1 decodes anything)
} as const
type Piece = keyof typeof PIECES
const TEXT_PIECES = Object.keys(PIECES) as ReadonlyArray<Piece>

const pieceBytes = (piece: Piece, encoding: Encoding): Buffer => {
  const [utf8, single] = PIECES[piece]
  if (piece === "bad") return Buffer.from([singleByte(encoding) ? 0x81 : 0xff])
  return singleByte(encoding) ? Buffer.from(single, "latin1") : Buffer.from(utf8, "utf8")
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf])

// ---------------------------------------------------------------------------
// CSV

/** A CSV file as symbols: text pieces, the delimiter, quotes and line breaks. */
type CsvSym = Piece | "D" | "Q" | "\n" | "\r" | "\r\n" | "a" | "b" | "c"

const DELIMITERS = [",", ";", "\u00a7"] as const // § is two bytes in UTF-8
type Delimiter = (typeof DELIMITERS)[number]

const renderCsv = (syms: ReadonlyArray<CsvSym>, encoding: Encoding, delimiter: Delimiter): Buffer =>
  Buffer.concat(syms.map((s) => {
    switch (s) {
      case "D":
        return singleByte(encoding) ? Buffer.from(delimiter, "latin1") : Buffer.from(delimiter, "utf8")
      case "Q":
        return Buffer.from("\"")
      case "\n":
      case "\r":
      case "\r\n":
      case "a":
      case "b":
      case "c":
        return Buffer.from(s)
      default:
        return pieceBytes(s, encoding)
    }
  }))

const lineBreak = fc.constantFrom<CsvSym>("\n", "\r\n", "\r")
const textPiece = fc.constantFrom(...TEXT_PIECES)
const plainField = fc.tuple(fc.array(textPiece, { maxLength: 3 }), fc.boolean(), textPiece).map(
  ([pieces, strayQuote, last]): Array<CsvSym> => (strayQuote ? [...pieces, last, "Q", last] : pieces)
)
const quotedField = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: textPiece.map((p): Array<CsvSym> => [p]) },
    { weight: 1, arbitrary: fc.constant<Array<CsvSym>>(["D"]) },
    { weight: 1, arbitrary: lineBreak.map((b): Array<CsvSym> => [b]) },
    { weight: 1, arbitrary: fc.constant<Array<CsvSym>>(["Q", "Q"]) }
  ),
  { maxLength: 4 }
).map((inner): Array<CsvSym> => ["Q", ...inner.flat(), "Q"])
const field = fc.oneof({ weight: 3, arbitrary: plainField }, { weight: 2, arbitrary: quotedField })
const record = fc.tuple(fc.array(field, { minLength: 1, maxLength: 4 }), lineBreak).map(([fields, end]) => {
  const out: Array<CsvSym> = []
  fields.forEach((f, i) => {
    if (i > 0) out.push("D")
    out.push(...f)
  })
  out.push(end)
  return out
})
const blankLines = fc.array(lineBreak, { maxLength: 2 })
/** What ends the file: nothing more, a record without a line break, or a quote left open. */
const csvTail = fc.oneof(
  fc.constant<Array<CsvSym>>([]),
  fc.array(field, { minLength: 1, maxLength: 2 }).map((fs) => fs.flatMap((f, i) => (i > 0 ? ["D" as const, ...f] : f))),
  fc.tuple(fc.array(textPiece, { maxLength: 2 }), lineBreak, fc.array(textPiece, { maxLength: 2 })).map(
    ([a, brk, b]): Array<CsvSym> => ["x", "D", "Q", ...a, brk, ...b, brk]
  )
)
/**
 * Lines `skip_rows` drops: quotes allowed, no line breaks inside, never empty (an empty
 * line after one ending in `\r` would join it as `\r\n`).
 */
const junkLine = fc.tuple(
  fc.array(fc.oneof(textPiece, fc.constant<CsvSym>("Q"), fc.constant<CsvSym>("D")), { minLength: 1, maxLength: 3 }),
  lineBreak
)
  .map(([pieces, end]): Array<CsvSym> => [...pieces, end])

const csvCase = fc.record({
  encoding: fc.constantFrom(...ENCODINGS),
  bomInUtf8: fc.boolean(),
  delimiter: fc.constantFrom(...DELIMITERS),
  skipped: fc.array(junkLine, { maxLength: 2 }),
  withColumns: fc.boolean(),
  headerBreak: lineBreak,
  body: fc.array(fc.tuple(blankLines, record), { maxLength: 8 }),
  tail: csvTail,
  schema: fc.constantFrom("observed", "flexible"),
  /** A long first line to skip, so that the first 64 KiB read ends somewhere in the data. */
  pad: fc.option(fc.integer({ min: 65_500, max: 65_560 }), { freq: 3 })
})
type CsvCase = typeof csvCase extends fc.Arbitrary<infer A> ? A : never

const writeCsvCase = (c: CsvCase) => {
  const syms: Array<CsvSym> = [...c.skipped.flat()]
  if (!c.withColumns) syms.push("a", "D", "b", "D", "c", c.headerBreak)
  for (const [blank, rec] of c.body) syms.push(...blank, ...rec)
  syms.push(...c.tail)
  const padding = c.pad === null ? [] : [Buffer.from(`${"p".repeat(c.pad)}\n`)]
  let bytes = Buffer.concat([...padding, renderCsv(syms, c.encoding, c.delimiter)])
  // utf-8-sig always gets its BOM; utf-8 sometimes (removed all the same, with a warning).
  if (c.encoding === "utf-8-sig" || (c.encoding === "utf-8" && c.bomInUtf8 && c.skipped.length === 0 && c.pad === null)) {
    bytes = Buffer.concat([BOM, bytes])
  }
  const path = tmp.file(nextName("csv"), bytes)
  const source = create(csvSource, {
    path,
    encoding: c.encoding,
    delimiter: c.delimiter,
    skip_rows: c.skipped.length + padding.length,
    ...(c.withColumns ? { columns: ["a", "b", "c"] } : {}),
    schema: c.schema === "observed" ? { mode: "observed" } : { mode: "flexible", fields: ["a: int"] },
    on_validation_failure: "quarantine"
  })
  return { path, source }
}

describe("csv source: positions", () => {
  it("records the byte offset after each record and the lines consumed (CRLF, quoted newlines, UTF-8, blank lines)", async () => {
    const text = "id,name\r\n1,\u00e9\r\n\r\n2,\"x\ny\"\n3\n4,\"open\n5"
    const path = tmp.file("positions.csv", text)
    const items = await readItems(create(csvSource, { path, schema: { mode: "observed" }, on_validation_failure: "q" }))
    const offsetAfter = (s: string) => Buffer.byteLength(text.slice(0, text.indexOf(s) + s.length))
    expect(items.map((i) => i.position)).toEqual([
      { bytes: offsetAfter("1,\u00e9\r\n"), line: 2 },
      { bytes: offsetAfter("\"x\ny\"\n"), line: 5 },
      { bytes: offsetAfter("3\n"), line: 6 },
      { bytes: Buffer.byteLength(text), line: 8 }
    ])
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Valid", "Invalid", "Invalid"])
  })

  it("counts offsets in the file's bytes for latin-1 and cp1252, and after skip_rows and a BOM", async () => {
    const latin = tmp.file("positions-latin1.csv", Buffer.from("skip\xe9\nn\n\xe9\xe9\n\xe9\n", "latin1"))
    const items = await readItems(create(csvSource, {
      path: latin,
      encoding: "latin-1",
      skip_rows: 1,
      schema: { mode: "observed" },
      on_validation_failure: "q"
    }))
    expect(items.map((i) => i.position)).toEqual([{ bytes: 11, line: 3 }, { bytes: 13, line: 4 }])
    const cp = tmp.file("positions-cp1252.csv", Buffer.from([0x6e, 0x0a, 0x80, 0x81, 0x0a, 0x80, 0x0a]))
    const cpItems = await readItems(create(csvSource, { path: cp, encoding: "cp1252", schema: { mode: "observed" }, on_validation_failure: "q" }))
    expect(cpItems.map((i) => [i._tag, i.position])).toEqual([["Invalid", { bytes: 5, line: 2 }], ["Valid", { bytes: 7, line: 3 }]])
    const sig = tmp.file("positions-sig.csv", Buffer.concat([BOM, Buffer.from("a\n1\n")]))
    const sigItems = await readItems(create(csvSource, { path: sig, encoding: "utf-8-sig", schema: { mode: "observed" }, on_validation_failure: "q" }))
    expect(sigItems.map((i) => i.position)).toEqual([{ bytes: 7, line: 2 }])
  })

  it("readFrom continues a read: row and line numbers, payloads and errors as in the whole read", async () => {
    const path = tmp.file("restart.csv", "junk\nid,amount\n1,5\n2,x\n3,4,9\n\n4,\"a\nb\"\n5,\"open\n6,7\n")
    const source = create(csvSource, {
      path,
      skip_rows: 1,
      schema: { mode: "fixed", fields: ["id: int", "amount: int"] },
      on_validation_failure: "q"
    })
    const items = await checkRestarts(source, path)
    expect(items).toHaveLength(5)
    const rest = await readItemsFrom(source, { items: 2, position: positionOf(items[1]!) })
    expect(rest[0]).toMatchObject({ raw: { __raw_line__: "3,4,9", __line_number__: 5, __row_number__: 3 } })
    expect(rest[2]).toMatchObject({ raw: { __line_number__: 10, __row_number__: 5 } })
    expect(source.sourceHeaders?.()).toEqual(new Map([["id", "id"], ["amount", "amount"]]))
  })

  it("readFrom with columns reads no header", async () => {
    const path = tmp.file("restart-columns.csv", "1,2\n3,4\n5,6\n")
    const items = await checkRestarts(
      create(csvSource, { path, columns: ["a", "b"], schema: { mode: "observed" }, on_validation_failure: "q" }),
      path
    )
    expect(items).toHaveLength(3)
  })

  it("positions do not depend on where the 64 KiB read chunks end (CRLF across a boundary, latin-1 growing in UTF-8)", async () => {
    const CHUNK = 64 * 1024
    for (const [encoding, fill] of [["utf-8", "\u00e9"], ["latin-1", "\u00e9"], ["cp1252", "\u20ac"]] as const) {
      const encode = (text: string) =>
        encoding === "utf-8" ? Buffer.from(text, "utf8") : Buffer.from(text.replace(/\u20ac/g, "\x80"), "latin1")
      // Each row holds a quoted CRLF and ends with one; a pad row before them moves the
      // rows so that the first read chunk ends between the \r and \n of each CRLF in turn.
      const row = `${fill.repeat(3)},1,"q\r\nr"\r\n`
      const rowBytes = encode(row).length
      const fileFor = (pad: number) => encode(`a,b,c\r\n${"y".repeat(pad)},,\r\n${row.repeat(Math.ceil(70_000 / row.length))}`)
      const pads: Array<number> = []
      for (let pad = 1; pad <= rowBytes; pad++) {
        const bytes = fileFor(pad)
        if (bytes[CHUNK - 1] === 0x0d && bytes[CHUNK] === 0x0a) pads.push(pad)
      }
      expect(pads).toHaveLength(2)
      for (const pad of [...pads, pads[0]! + 1]) {
        const path = tmp.file(nextName("csv"), fileFor(pad))
        const source = create(csvSource, { path, encoding, schema: { mode: "observed" }, on_validation_failure: "q" })
        const items = await readItems(source)
        expect(items.length).toBeGreaterThan(1000)
        const first = positionOf(items[0]!)
        expect(first).toEqual({ bytes: 7 + pad + 4, line: 2 })
        for (let k = 1; k < items.length; k++) {
          expect(positionOf(items[k]!)).toEqual({ bytes: first.bytes + k * rowBytes, line: 2 + 2 * k })
        }
        for (const k of [1, 2, 500, 1000, items.length - 1, items.length]) {
          const rest = await readItemsFrom(source, { items: k, position: positionOf(items[k - 1]!) })
          expect(rest).toStrictEqual(items.slice(k))
        }
      }
    }
  })

  it("property: readFrom(k) yields the whole read's items from k on, for every k", async () => {
    await fc.assert(
      fc.asyncProperty(csvCase, async (c) => {
        const { path, source } = writeCsvCase(c)
        await checkRestarts(source, path)
      }),
      { numRuns: 150 }
    )
  }, 60_000)
})

// ---------------------------------------------------------------------------
// JSON Lines

type JsonSym = Piece | "\n" | "\r" | "\r\n" | { readonly json: string }

const jsonLine = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.integer(), fc.array(textPiece, { maxLength: 3 })).map(([n, s]): Array<JsonSym> => [
    { json: `{"n": ${n}, "s": "` },
    ...s,
    { json: "\"}" }
  ]) },
  { weight: 1, arbitrary: fc.constantFrom<Array<JsonSym>>([{ json: "[1, 2]" }], [{ json: "7" }], [{ json: "{\"big\": 9007199254740993}" }]) },
  { weight: 1, arbitrary: fc.constantFrom<Array<JsonSym>>([{ json: "{\"n\": " }], [{ json: "not json" }], ["bad"], [{ json: "  \t" }], []) }
)
const jsonlCase = fc.record({
  encoding: fc.constantFrom(...ENCODINGS),
  lines: fc.array(fc.tuple(jsonLine, fc.constantFrom<JsonSym>("\n", "\r\n", "\r")), { maxLength: 10 }),
  finalBreak: fc.boolean(),
  /** A long blank first line, so that the first 64 KiB read ends somewhere in the data. */
  pad: fc.option(fc.integer({ min: 65_500, max: 65_560 }), { freq: 3 })
})

describe("json source: positions", () => {
  it("records the byte offset after each line and its line number; blank lines carry none", async () => {
    const text = "{\"a\": \"\u00e9\"}\r\n\r\n  \nnope\r{\"a\": 2}"
    const path = tmp.file("positions.jsonl", text)
    const items = await readItems(create(jsonSource, { path, schema: { mode: "observed" }, on_validation_failure: "q" }))
    expect(items.map((i) => [i._tag, i.position])).toEqual([
      ["Valid", { bytes: Buffer.byteLength("{\"a\": \"\u00e9\"}\r\n"), line: 1 }],
      ["Invalid", { bytes: Buffer.byteLength(text) - 8, line: 4 }],
      ["Valid", { bytes: Buffer.byteLength(text), line: 5 }]
    ])
  })

  it("a JSON array file has no positions and cannot restart", async () => {
    const source = create(jsonSource, { path: tmp.file("array.json", "[{\"a\": 1}]"), schema: { mode: "observed" }, on_validation_failure: "q" })
    expect(source.readFrom).toBeUndefined()
    expect((await readItems(source))[0]!.position).toBeUndefined()
  })

  it("a CRLF across the 64 KiB read boundary ends one line, and positions stay exact", async () => {
    const first = `{"pad": "${"p".repeat(65_535 - 11)}"}`
    expect(first.length).toBe(65_535)
    const text = `${first}\r\n{"a": 1}\r\n{"a": 2}\n`
    const path = tmp.file("crlf-boundary.jsonl", text)
    const source = create(jsonSource, { path, schema: { mode: "observed" }, on_validation_failure: "q" })
    const items = await checkRestarts(source, path)
    expect(items.map((i) => i.position)).toEqual([
      { bytes: 65_537, line: 1 },
      { bytes: 65_547, line: 2 },
      { bytes: 65_556, line: 3 }
    ])
  })

  it("property: readFrom(k) yields the whole read's items from k on, for every k", async () => {
    await fc.assert(
      fc.asyncProperty(jsonlCase, async (c) => {
        const syms: Array<JsonSym> = c.lines.flatMap(([line, end], i) =>
          i === c.lines.length - 1 && !c.finalBreak ? line : [...line, end]
        )
        const parts = syms.map((s) =>
          typeof s === "object" ? Buffer.from(s.json, "latin1") : s === "\n" || s === "\r" || s === "\r\n" ? Buffer.from(s) : pieceBytes(s, c.encoding)
        )
        if (c.pad !== null) parts.unshift(Buffer.from(`${" ".repeat(c.pad)}\r\n`))
        const bytes = Buffer.concat(c.encoding === "utf-8-sig" ? [BOM, ...parts] : parts)
        const path = tmp.file(nextName("jsonl"), bytes)
        const source = create(jsonSource, { path, encoding: c.encoding, schema: { mode: "observed" }, on_validation_failure: "q" })
        await checkRestarts(source, path)
      }),
      { numRuns: 150 }
    )
  }, 60_000)
})
