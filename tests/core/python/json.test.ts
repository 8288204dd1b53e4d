import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { PyJsonEncodeError, pyJsonDumps, pyJsonString } from "../../../src/core/python/json.js"

describe("pyJsonDumps", () => {
  it("uses Python's default separators and ensure_ascii escapes", () => {
    const value = { e: "é\u{1F600}\u0001\x7f/\\\"\t", k: [1.5, -0, 1e-7, 1e22] }
    expect(pyJsonDumps(value)).toBe(
      "{\"e\": \"\\u00e9\\ud83d\\ude00\\u0001\\u007f/\\\\\\\"\\t\", \"k\": [1.5, -0.0, 1e-07, 10000000000000000000000]}"
    )
  })

  it("escapes lone surrogates and control characters", () => {
    expect(pyJsonString("\ud800x\b\f\n\r\u001f")).toBe("\"\\ud800x\\b\\f\\n\\r\\u001f\"")
  })

  it("prints declared float fields as floats, at the top level and in a top-level array", () => {
    expect(pyJsonDumps({ a: 1, b: 2, n: { a: 3 } }, { floatFields: ["a"] })).toBe("{\"a\": 1.0, \"b\": 2, \"n\": {\"a\": 3}}")
    expect(pyJsonDumps([{ a: 1 }, { a: 2.5 }], { floatFields: new Set(["a"]) })).toBe("[{\"a\": 1.0}, {\"a\": 2.5}]")
  })

  it("pretty-prints with indent like Python", () => {
    expect(pyJsonDumps({ a: [1, { b: [] }], c: {} }, { indent: 2 })).toBe(
      "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": {}\n}"
    )
    expect(pyJsonDumps({ a: 1 }, { indent: 2, level: 1 })).toBe("{\n    \"a\": 1\n  }")
    expect(pyJsonDumps([], { indent: 2 })).toBe("[]")
  })

  it("writes NaN and infinities as Python does", () => {
    expect(pyJsonDumps([NaN, Infinity, -Infinity])).toBe("[NaN, Infinity, -Infinity]")
  })

  it("refuses values JSON cannot hold", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic["self"] = cyclic
    expect(() => pyJsonDumps(cyclic)).toThrow(PyJsonEncodeError)
    expect(() => pyJsonDumps({ d: new Date(0) })).toThrow("not JSON serializable")
    expect(() => pyJsonDumps({ f: () => 1 })).toThrow(PyJsonEncodeError)
  })

  it("output parses back to the same value, on one line or indented", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }), (value, indent) => {
        const text = pyJsonDumps(value, { indent })
        expect(JSON.parse(text)).toEqual(value)
        expect(/[^\x20-\x7e\n]/.test(text)).toBe(false)
        if (indent === undefined) expect(text.includes("\n")).toBe(false)
      }),
      { numRuns: 500 }
    )
  })

  it("agrees with JSON.stringify once spacing is removed, for integral numbers", () => {
    const value = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: "small" },
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.string(),
        fc.array(tie("v"), { maxLength: 4 }),
        fc.dictionary(fc.string(), tie("v"), { maxKeys: 4 })
      )
    })).v
    fc.assert(
      fc.property(value, (v) => {
        expect(JSON.parse(pyJsonDumps(v))).toEqual(JSON.parse(JSON.stringify(v)))
      }),
      { numRuns: 300 }
    )
  })
})
