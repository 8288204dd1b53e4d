/**
 * The json source on hostile input, through real files: deep nesting, numbers no float
 * holds, integers beyond 2^53, truncated and broken lists, oversized raw text.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { parseJsonIteratively, parseJsonText, scanList } from "../../../../src/pipeline/plugins/sources/json-parse.js"
import { jsonSource } from "../../../../src/pipeline/plugins/sources/json.js"
import { INPUT_LIMITS } from "../../../../src/pipeline/plugins/sources/raw-text.js"
import type { SourceItem } from "../../../../src/pipeline/plugins/protocol.js"
import { create, invalid, makeTempDir, readAll, valid } from "./support.js"

const tmp = makeTempDir()
afterAll(() => tmp.cleanup())

const observed = { mode: "observed" }
const source = (path: string, extra: Record<string, unknown> = {}) =>
  create(jsonSource, { path, schema: observed, on_validation_failure: "bad", ...extra })
const read = (name: string, content: string | Buffer, extra: Record<string, unknown> = {}) =>
  readAll(source(tmp.file(name, content), extra))

const nested = (depth: number, leaf = "1") => "[".repeat(depth) + leaf + "]".repeat(depth)
const deepRow = (depth: number) => `{"deep": ${nested(depth - 1)}}`
const rawOf = (item: SourceItem | undefined): Record<string, unknown> => {
  if (item?._tag !== "Invalid") throw new Error(`expected an invalid item, got ${JSON.stringify(item)}`)
  return item.raw as Record<string, unknown>
}
const errorOf = (item: SourceItem | undefined): string => {
  if (item?._tag !== "Invalid") throw new Error("expected an invalid item")
  return item.error
}

const LIMIT = INPUT_LIMITS.maxJsonDepth

describe("nesting depth", () => {
  it("JSONL: a line nested 5,000 levels deep is quarantined with its raw text; the lines around it are read", async () => {
    const line = deepRow(5000)
    const items = await read("deep.jsonl", `{"id": 1}\n${line}\n{"id": 3}\n`)
    expect(items).toHaveLength(3)
    expect(items[0]).toEqual({ _tag: "Valid", row: { id: 1 } })
    expect(rawOf(items[1])).toEqual({ __raw_line__: line, __line_number__: 2 })
    expect(errorOf(items[1])).toMatch(new RegExp(`^line 2: too deeply nested: nested deeper than ${LIMIT} levels`))
    expect(items[2]).toEqual({ _tag: "Valid", row: { id: 3 } })
  })

  it("JSON array: an element nested 5,000 levels deep is quarantined; the other elements are rows", async () => {
    const element = deepRow(5000)
    const items = await read("deep.json", `[{"id": 1},\n ${element},\n {"id": 3}]`)
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Valid"])
    expect(rawOf(items[1])).toEqual({ __raw_text__: element, __element_index__: 1, __line_number__: 2 })
    expect(errorOf(items[1])).toMatch(/^element 1 \(line 2\): too deeply nested/)
    expect(valid(items)).toEqual([{ id: 1 }, { id: 3 }])
  })

  it("the limit is exact: the row itself is level 1, a list file's own brackets do not count", async () => {
    const atLimit = await read("limit.json", `[${deepRow(LIMIT)}, ${deepRow(LIMIT + 1)}]`)
    expect(atLimit.map((i) => i._tag)).toEqual(["Valid", "Invalid"])
    const lines = await read("limit.jsonl", `${deepRow(LIMIT)}\n${deepRow(LIMIT + 1)}\n`)
    expect(lines.map((i) => i._tag)).toEqual(["Valid", "Invalid"])
    let v: unknown = valid(lines)[0]!["deep"]
    let depth = 1
    while (Array.isArray(v)) {
      v = v[0]
      depth++
    }
    expect(depth).toBe(LIMIT)
  })

  it("a whole file nested 100,000 levels deep is reported, not a stack overflow", async () => {
    const items = await read("very-deep.json", nested(100_000))
    expect(items).toHaveLength(1)
    expect(errorOf(items[0])).toMatch(/too deeply nested/)
  })
})

describe("numbers", () => {
  it("1e400 quarantines that line or element with its raw text, and reading goes on", async () => {
    const lines = await read("big.jsonl", `{"x": 1e400}\n{"x": -1e400}\n{"x": 1e-400}\n{"x": 2.5}\n`)
    expect(lines.map((i) => i._tag)).toEqual(["Invalid", "Invalid", "Valid", "Valid"])
    expect(rawOf(lines[0])).toEqual({ __raw_line__: `{"x": 1e400}`, __line_number__: 1 })
    expect(errorOf(lines[0])).toBe("line 1: unusable number: number 1e400 at $.x is out of range (not a finite float)")
    expect(valid(lines)).toEqual([{ x: 0 }, { x: 2.5 }])

    const elements = await read("big.json", `[{"x": 1}, {"x": [1, 1E+400]}, {"x": 3}]`)
    expect(elements.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Valid"])
    expect(rawOf(elements[1])).toEqual({ __raw_text__: `{"x": [1, 1E+400]}`, __element_index__: 1, __line_number__: 1 })
    expect(errorOf(elements[1])).toContain("at $.x[1] is out of range")
  })

  it("2^53+1 under an int field stays exact as a bigint", async () => {
    const schema = { mode: "fixed", fields: ["id: int", "n: int"] }
    const items = await read("exact.jsonl", `{"id": 9007199254740993, "n": -9007199254740993}\n{"id": 9007199254740991, "n": 1}\n`, { schema })
    expect(items).toEqual([
      { _tag: "Valid", row: { id: 9007199254740993n, n: -9007199254740993n } },
      { _tag: "Valid", row: { id: 9007199254740991, n: 1 } }
    ])
    const array = await read("exact.json", `[{"id": 123456789012345678901234567890, "n": 0}]`, { schema })
    expect(valid(array)).toEqual([{ id: 123456789012345678901234567890n, n: 0 }])
  })

  it("2^53+1 with an observed schema, an any field or an undeclared field is quarantined with the reason", async () => {
    const text = `{"id": 9007199254740993}\n{"id": 1}\n`
    for (const schema of [observed, { mode: "fixed", fields: ["id: any"] }, { mode: "flexible", fields: ["other: int?"] }]) {
      const items = await read("observed.jsonl", text, { schema })
      expect(items.map((i) => i._tag)).toEqual(["Invalid", "Valid"])
      expect(rawOf(items[0])).toEqual({ __raw_line__: `{"id": 9007199254740993}`, __line_number__: 1 })
      expect(errorOf(items[0])).toBe(
        "line 1: integer 9007199254740993 at $.id is beyond ±(2^53−1), so no JS number holds it exactly; declare the field as int to keep it exact"
      )
      expect((items[0] as { fieldErrors?: unknown }).fieldErrors).toEqual([{ field: "id", message: expect.stringContaining("9007199254740993") }])
    }
  })

  it("a large integer nested inside a field is quarantined even when the field is typed", async () => {
    const items = await read("nested-big.json", `[{"ids": [1, 9007199254740993]}]`, { schema: { mode: "fixed", fields: ["ids: any"] } })
    expect(errorOf(items[0])).toContain("integer 9007199254740993 at $.ids[1]")
  })

  it("a float field takes the nearest float; a str field rejects the integer", async () => {
    const float = await read("float.jsonl", `{"x": 9007199254740993}\n`, { schema: { mode: "fixed", fields: ["x: float"] } })
    expect(valid(float)).toEqual([{ x: 9007199254740992 }])
    const str = await read("str.jsonl", `{"x": 9007199254740993}\n`, { schema: { mode: "fixed", fields: ["x: str"] } })
    expect(errorOf(str[0])).toBe("x: expected str, got int 9007199254740993")
    expect(rawOf(str[0])).toEqual({ x: 9007199254740993n })
  })

  it("an integer of more than 4,300 digits is quarantined", async () => {
    const digits = "7".repeat(INPUT_LIMITS.maxIntegerDigits + 1)
    const items = await read("digits.jsonl", `{"x": ${digits}}\n{"x": ${"7".repeat(INPUT_LIMITS.maxIntegerDigits)}}\n`, {
      schema: { mode: "fixed", fields: ["x: int"] }
    })
    expect(items.map((i) => i._tag)).toEqual(["Invalid", "Valid"])
    expect(errorOf(items[0])).toContain(`more than ${INPUT_LIMITS.maxIntegerDigits} digits`)
    expect(valid(items)[0]!["x"]).toBe(BigInt("7".repeat(INPUT_LIMITS.maxIntegerDigits)))
  })
})

describe("truncated and broken lists", () => {
  it("a truncated array: the rows before the cut go through, the incomplete rest is quarantined as raw text", async () => {
    const path = tmp.file("truncated.json", `[{"id": 1},\n {"id": 2},\n {"id": 3, "name": "thr`)
    const items = await readAll(source(path))
    expect(items).toHaveLength(3)
    expect(valid(items)).toEqual([{ id: 1 }, { id: 2 }])
    expect(rawOf(items[2])).toEqual({
      file_path: path,
      parse_error: "element 2 (line 3) onwards: the input ends inside a string",
      __raw_text__: `{"id": 3, "name": "thr`,
      __line_number__: 3
    })
  })

  it("an array cut right after a comma or before its ']' quarantines the (possibly cut) tail", async () => {
    const afterComma = await read("cut-comma.json", `[{"id": 1},`)
    expect(valid(afterComma)).toEqual([{ id: 1 }])
    expect(rawOf(afterComma[1])).toMatchObject({ __raw_text__: "", parse_error: expect.stringContaining("ends before the list is closed") })
    const noBracket = await read("cut-bracket.json", `[{"id": 1}, {"id": 2}  `)
    expect(valid(noBracket)).toEqual([{ id: 1 }])
    expect(rawOf(noBracket[1])).toMatchObject({ __raw_text__: `{"id": 2}  ` })
    const inObject = await read("cut-object.json", `[{"id": 1}, {"id": [2, 3`)
    expect(rawOf(inObject[1])).toMatchObject({ __raw_text__: `{"id": [2, 3`, parse_error: expect.stringContaining("ends inside an array") })
  })

  it("brackets that stop matching end the list there; the rest is kept as raw text", async () => {
    const items = await read("mismatch.json", `[{"id": 1}, {"id": [2}, {"id": 3}]`)
    expect(valid(items)).toEqual([{ id: 1 }])
    expect(items).toHaveLength(2)
    expect(rawOf(items[1])).toMatchObject({ __raw_text__: `{"id": [2}, {"id": 3}]`, parse_error: expect.stringContaining("does not match") })
  })

  it("a bad element in the middle is quarantined and the rest of the list is read", async () => {
    const items = await read("middle.json", `[{"a": 1}, {"a": tru}, {"a": 3} {"a": 4}, , {"a": 5},]`)
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Invalid", "Invalid", "Valid", "Invalid"])
    expect(rawOf(items[1])).toEqual({ __raw_text__: `{"a": tru}`, __element_index__: 1, __line_number__: 1 })
    expect(errorOf(items[1])).toMatch(/^element 1 \(line 1\): invalid JSON: expected a value/)
    expect(rawOf(items[2])).toMatchObject({ __raw_text__: `{"a": 3} {"a": 4}` })
    expect(errorOf(items[2])).toContain("unexpected text after the value")
    expect(errorOf(items[3])).toContain("an empty element")
    expect(rawOf(items[5])).toMatchObject({ __raw_text__: "", __element_index__: 5 })
    expect(valid(items)).toEqual([{ a: 1 }, { a: 5 }])
  })

  it("text after the closing bracket is quarantined after the rows", async () => {
    const items = await read("trailing.json", `[{"a": 1}]\n  garbage`)
    expect(valid(items)).toEqual([{ a: 1 }])
    expect(rawOf(items[1])).toMatchObject({ __raw_text__: "garbage", __line_number__: 2 })
  })

  it("data_key: a truncated list under the key yields its rows, then the raw rest", async () => {
    const items = await read("wrapped-cut.json", `{"meta": {"v": 1}, "data": [{"a": 1}, {"a": 2}, {"a"`, { data_key: "data" })
    expect(valid(items)).toEqual([{ a: 1 }, { a: 2 }])
    expect(rawOf(items[2])).toMatchObject({ __raw_text__: `{"a"` })
  })

  it("data_key: members after the list are allowed, and a repeated key takes the last list (as JSON.parse)", async () => {
    const items = await read("wrapped.json", `{"data": [{"a": 0}], "meta": [1], "data": [{"a": 1}, 5e400, {"a": 2}], "z": null}`, { data_key: "data" })
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Valid"])
    expect(valid(items)).toEqual([{ a: 1 }, { a: 2 }])
  })
})

describe("raw text size", () => {
  it("keeps at most rawTextBytes of raw text, cut at a character boundary, and says how long the input was", async () => {
    const line = `{"x": "${"é".repeat(40_000)}"` // 80,007 bytes, never closed
    const items = await read("long.jsonl", `${line}\n{"x": 1}\n`)
    const raw = rawOf(items[0])
    const kept = raw["__raw_line__"] as string
    expect(raw["__raw_truncated__"]).toBe(true)
    expect(raw["__raw_bytes__"]).toBe(Buffer.byteLength(line))
    expect(Buffer.byteLength(kept)).toBeLessThanOrEqual(INPUT_LIMITS.rawTextBytes)
    expect(Buffer.byteLength(kept)).toBeGreaterThan(INPUT_LIMITS.rawTextBytes - 4)
    expect(line.startsWith(kept)).toBe(true)
    expect(kept).not.toContain("\ufffd")
    expect(items[1]).toEqual({ _tag: "Valid", row: { x: 1 } })
  })

  it("a truncated list keeps the first rawTextBytes of its rest", async () => {
    const rest = `{"x": "${"a".repeat(200_000)}`
    const items = await read("long-cut.json", `[{"x": 1}, ${rest}`)
    const raw = rawOf(items[1])
    expect((raw["__raw_text__"] as string).length).toBe(INPUT_LIMITS.rawTextBytes)
    expect(raw["__raw_bytes__"]).toBe(rest.length)
  })
})

/** The parsed value with every bigint as the nearest JS number (what JSON.parse gives). */
const asNumbers = (v: unknown): unknown => {
  if (typeof v === "bigint") return Number(v)
  if (Array.isArray(v)) return v.map(asNumbers)
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, asNumbers(x)]))
  return v
}
const LIMITS = { maxDepth: LIMIT, maxIntegerDigits: INPUT_LIMITS.maxIntegerDigits }

describe.each([
  ["parseJsonText", parseJsonText],
  ["parseJsonIteratively", parseJsonIteratively]
])("%s", (_name, parse) => {
  it("agrees with JSON.parse on valid JSON (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 2 }), (value, indent) => {
        const text = JSON.stringify(value, null, indent)
        const r = parse(text, LIMITS)
        expect(r.ok).toBe(true)
        if (r.ok) expect(asNumbers(r.value)).toStrictEqual(JSON.parse(text))
      }),
      { numRuns: 400 }
    )
  })

  it("never rounds an integer nor returns a non-finite number (property)", () => {
    const literal = fc.oneof(
      fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
      fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: -500, max: 500 })).map(([m, e]) => `${m}e${e}`),
      fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d))
    )
    fc.assert(
      fc.property(fc.array(literal, { maxLength: 5 }), (literals) => {
        const text = `[${literals.join(", ")}]`
        const r = parse(text, LIMITS)
        if (!r.ok) {
          // Only a float literal beyond the float range may fail, and one must.
          expect(r.kind).toBe("number")
          expect(literals.some((lit) => !Number.isFinite(Number(lit)))).toBe(true)
          return
        }
        literals.forEach((lit, i) => {
          const got = (r.value as Array<unknown>)[i]
          if (/^-?[0-9]+$/.test(lit)) expect(BigInt(got as number | bigint)).toBe(BigInt(lit))
          else expect(got).toBe(Number(lit))
        })
      }),
      { numRuns: 500 }
    )
  })

  it("accepts and rejects what JSON.parse does, for finite input (property)", () => {
    const piece = fc.constantFrom("{", "}", "[", "]", ",", ":", " ", "\"a\"", "\"\\u00e9\"", "\"\\x\"", "1", "-", "0", "1.5", "e5", "true", "nul", "null", "\"", "\\", "\n")
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
        const text = pieces.join("")
        let expected: boolean
        try {
          JSON.parse(text)
          expected = true
        } catch {
          expected = false
        }
        expect(parse(text, LIMITS).ok, text).toBe(expected)
      }),
      { numRuns: 2000 }
    )
  })

  it("lists the large integers with their paths", () => {
    const r = parse(`{"a": [1, {"b": 9007199254740992}], "c": -12345678901234567890}`, LIMITS)
    expect(r).toEqual({
      ok: true,
      value: { a: [1, { b: 9007199254740992n }], c: -12345678901234567890n },
      largeIntegers: [{ path: ["a", 1, "b"], text: "9007199254740992" }, { path: ["c"], text: "-12345678901234567890" }]
    })
  })

  it("keeps __proto__ as an own key", () => {
    const r = parse(`{"__proto__": {"x": 1}}`, LIMITS)
    if (!r.ok) throw new Error(r.message)
    expect(Object.keys(r.value as object)).toEqual(["__proto__"])
    expect(Object.getPrototypeOf(r.value)).toBe(Object.prototype)
  })
})

describe("scanList", () => {
  it("finds element ranges without parsing them", () => {
    const buf = Buffer.from(`[ 1 , "a,]" ,{"x": [1, "]"]} ]  `)
    const it = scanList(buf, 0)
    const pieces: Array<string> = []
    let r = it.next()
    for (; !r.done; r = it.next()) {
      if (r.value._tag === "Element") pieces.push(buf.subarray(r.value.start, r.value.end).toString())
    }
    expect(pieces).toEqual(["1", `"a,]"`, `{"x": [1, "]"]}`])
    expect(r.value).toBe(buf.indexOf("]  ") + 1)
  })

  it("quarantines each element of a list of invalid elements", async () => {
    const items = await read("all-bad.json", "[x, y]")
    expect(invalid(items).map((i) => (i.raw as Record<string, unknown>)["__raw_text__"])).toEqual(["x", "y"])
  })
})
