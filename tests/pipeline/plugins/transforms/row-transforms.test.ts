import { Effect, Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { fieldMapperTransform } from "../../../../src/pipeline/plugins/transforms/field_mapper.js"
import { passthroughTransform } from "../../../../src/pipeline/plugins/transforms/passthrough.js"
import { truncateText, truncateTransform } from "../../../../src/pipeline/plugins/transforms/truncate.js"
import { checkCompatibility } from "../../../../src/pipeline/plugins/schema.js"
import { configError, ctx, observed, rowTransform, runError } from "./support.js"

describe("passthrough", () => {
  it("outputs an unchanged copy and its configured schema", () => {
    const t = rowTransform(passthroughTransform, { schema: { mode: "flexible", fields: ["a: int"] } })
    const row = { a: 1, b: "x" }
    const r = t.process(row)
    expect(r).toEqual({ _tag: "Success", row })
    expect(r._tag === "Success" && r.row).not.toBe(row)
    expect(t.outputSchema.fields).toEqual([{ name: "a", type: "int", optional: false }])
    expect(t.onError).toBeUndefined()
  })
  it("validate_input crashes on a mismatching row (strict, no coercion)", () => {
    const t = rowTransform(passthroughTransform, { schema: { mode: "fixed", fields: ["a: int"] }, validate_input: true })
    expect(t.process({ a: 1 })._tag).toBe("Success")
    expect(runError(() => t.process({ a: "1" })).message).toMatch(/a: expected int/)
    expect(runError(() => t.process({ a: 1, b: 2 })).message).toMatch(/b: unexpected field/)
  })
  it("without validate_input the schema is not enforced", () => {
    const t = rowTransform(passthroughTransform, { schema: { mode: "fixed", fields: ["a: int"] } })
    expect(t.process({ a: "x" })._tag).toBe("Success")
  })
  it("takes on_error and required_input_fields (which feed the start-up check)", () => {
    const t = rowTransform(passthroughTransform, { schema: observed, on_error: "errors", required_input_fields: ["a", "b"] })
    expect(t.onError).toBe("errors")
    expect(t.inputSchema.requiredFields).toEqual(["a", "b"])
    const producer = { mode: "fixed" as const, fields: [{ name: "a", type: "int" as const, optional: false }], guaranteedFields: [], requiredFields: [], auditFields: [] }
    expect(checkCompatibility(producer, t.inputSchema)).toMatch(/not guaranteed by the producer: b/)
  })
  it("refuses unknown options and a missing schema", () => {
    expect(configError(passthroughTransform, { schema: observed, validate: true }).message).toMatch(/did you mean 'validate_input'/)
    expect(configError(passthroughTransform, {}).key).toBe("schema")
    expect(configError(passthroughTransform, { schema: observed, required_input_fields: ["a-b"] }).key).toBe("required_input_fields[0]")
  })
})

describe("field_mapper", () => {
  const mapper = (options: Record<string, unknown>) => rowTransform(fieldMapperTransform, { schema: observed, ...options })
  const out = (options: Record<string, unknown>, row: Record<string, unknown>) => {
    const r = mapper(options).process(row)
    if (r._tag !== "Success") throw new Error(JSON.stringify(r))
    return Object.entries(r.row)
  }
  it("renames fields, moving them to the end", () => {
    expect(out({ mapping: { a: "x" } }, { a: 1, b: 2 })).toEqual([["b", 2], ["x", 1]])
  })
  it("{a: a} moves a to the end", () => {
    expect(out({ mapping: { a: "a" } }, { a: 1, b: 2 })).toEqual([["b", 2], ["a", 1]])
  })
  it("an existing target keeps its position", () => {
    expect(out({ mapping: { c: "a" } }, { a: 1, b: 2, c: 3 })).toEqual([["a", 3], ["b", 2]])
  })
  it("reads nested sources by dot path and leaves the container", () => {
    expect(out({ mapping: { "meta.source": "src" } }, { meta: { source: "s", x: 1 }, b: 2 })).toEqual([
      ["meta", { source: "s", x: 1 }],
      ["b", 2],
      ["src", "s"]
    ])
  })
  it("targets are plain keys (dots not interpreted)", () => {
    expect(out({ mapping: { a: "x.y" } }, { a: 1 })).toEqual([["x.y", 1]])
  })
  it("select_only outputs only found targets in mapping order", () => {
    expect(out({ mapping: { b: "B", missing: "M", a: "A" }, select_only: true }, { a: 1, b: 2, c: 3 })).toEqual([["B", 2], ["A", 1]])
  })
  it("skips missing sources unless strict", () => {
    expect(out({ mapping: { zz: "y", "a.b": "c" } }, { a: 1 })).toEqual([["a", 1]])
    const r = mapper({ mapping: { zz: "y" }, strict: true, on_error: "errs" }).process({ a: 1 })
    expect(r).toMatchObject({ _tag: "Error", reason: { reason: "missing_field", field: "zz" }, retryable: false })
    expect(r._tag === "Error" && r.reason["message"]).toContain("zz")
  })
  it("refuses two sources mapped to one target, naming the key and both sources", () => {
    const e = configError(fieldMapperTransform, { schema: observed, mapping: { first: "name", other: "x", last: "name" } })
    expect(e.key).toBe("mapping.last")
    expect(e.value).toBe("name")
    expect(e.message).toBe("sources 'first' and 'last' both map to target 'name': the value of one would be lost; map each to its own target")
    // Dot paths count as sources like any other.
    expect(configError(fieldMapperTransform, { schema: observed, mapping: { "a.b": "x", c: "x" } }).message).toContain("'a.b' and 'c'")
  })
  it("property: a mapping is refused exactly when two of its sources share a target", () => {
    const key = fc.constantFrom("a", "b", "c", "d")
    fc.assert(fc.property(fc.dictionary(key, key), (mapping) => {
      const duplicate = new Set(Object.values(mapping)).size < Object.keys(mapping).length
      const r = Effect.runSync(Effect.either(fieldMapperTransform.create({ schema: observed, mapping }, ctx)))
      return Either.isLeft(r) === duplicate
    }))
  })
  it("has an observed output schema and supports validate_input", () => {
    const t = mapper({ schema: { mode: "fixed", fields: ["a: int"] }, validate_input: true, mapping: { a: "b" } })
    expect(t.outputSchema.mode).toBe("observed")
    expect(runError(() => t.process({ a: "1" })).plugin).toBe("field_mapper")
  })
  it("property: without select_only a key disappears only when it is a found plain source", () => {
    const key = fc.constantFrom("a", "b", "c", "d", "e")
    const mappingArb = fc.dictionary(key, key).filter((m) => new Set(Object.values(m)).size === Object.keys(m).length)
    fc.assert(fc.property(fc.dictionary(key, fc.integer()), mappingArb, (row, mapping) => {
      const r = mapper({ mapping }).process(row)
      if (r._tag !== "Success") return false
      const outKeys = new Set(Object.keys(r.row))
      const found = Object.entries(mapping).filter(([s]) => s in row)
      const sources = new Set(found.map(([s]) => s))
      const expected = new Set([...Object.keys(row), ...found.map(([, t]) => t)])
      return [...expected].every((k) => outKeys.has(k) || sources.has(k)) &&
        [...outKeys].every((k) => expected.has(k))
    }))
  })
})

describe("truncate", () => {
  const truncate = (options: Record<string, unknown>) => rowTransform(truncateTransform, { schema: observed, ...options })
  it("cuts long strings, with and without suffix, keeping field order", () => {
    const t = truncate({ fields: { a: 5, b: 6 }, suffix: "..." })
    expect(t.process({ a: "abcdefgh", b: "short", c: "untouched-long" })).toEqual({
      _tag: "Success",
      row: { a: "ab...", b: "short", c: "untouched-long" }
    })
    expect(truncate({ fields: { a: 3 } }).process({ a: "abcdef" })).toEqual({ _tag: "Success", row: { a: "abc" } })
  })
  it("counts code points, not UTF-16 units", () => {
    expect(truncate({ fields: { a: 3 } }).process({ a: "😀😀😀😀" })).toEqual({ _tag: "Success", row: { a: "😀😀😀" } })
    expect(truncate({ fields: { a: 3 } }).process({ a: "😀😀😀" })).toEqual({ _tag: "Success", row: { a: "😀😀😀" } })
  })
  it("a configured field holding a non-string is a type_mismatch error result, not passed on", () => {
    const t = truncate({ fields: { a: 3, b: 3 } })
    const cases: ReadonlyArray<readonly [unknown, string]> = [[12345, "int"], [1.5, "float"], [false, "bool"], [null, "NoneType"], [["long list"], "list"], [{ k: "v" }, "dict"]]
    for (const [value, actual] of cases) {
      expect(t.process({ a: "ok", b: value, c: "x" })).toEqual({
        _tag: "Error",
        reason: { reason: "type_mismatch", field: "b", expected: "str", actual },
        retryable: false
      })
    }
    // Fields not configured are never looked at.
    expect(t.process({ a: "abcdef", z: 1 })).toEqual({ _tag: "Success", row: { a: "abc", z: 1 } })
  })
  it("skips missing fields unless strict", () => {
    expect(truncate({ fields: { a: 1, b: 1 } }).process({ a: "12345", c: "x" })).toEqual({ _tag: "Success", row: { a: "1", c: "x" } })
    expect(truncate({ fields: { b: 1 }, strict: true }).process({ a: 1 })).toMatchObject({
      _tag: "Error",
      reason: { reason: "missing_field", field: "b" }
    })
  })
  it("refuses a suffix at least as long as a max", () => {
    const e = configError(truncateTransform, { schema: observed, fields: { a: 10, b: 3 }, suffix: "..." })
    expect(e.key).toBe("fields.b")
    expect(e.message).toBe(`max length 3 for 'b' leaves no room for the suffix "..." (3 code points): give a max length above 3 or a shorter suffix`)
    const zero = configError(truncateTransform, { schema: observed, fields: { a: 0 } })
    expect(zero.key).toBe("fields.a")
    // Without a suffix, a max of 0 is refused for what it is, not for a suffix there is none of.
    expect(zero.message).toBe("the max length of 'a' must be at least 1, got 0")
    expect(configError(truncateTransform, { schema: observed, fields: { a: "10" } }).key).toBe("fields.a")
  })
  it("outputs its configured schema", () => {
    expect(truncate({ schema: { mode: "flexible", fields: ["a: str"] } }).outputSchema.mode).toBe("flexible")
  })
  it("property: output length ≤ max and a cut value ends with the suffix", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme-composite" }), fc.integer({ min: 1, max: 20 }), fc.constantFrom("", "…", "..."), (s, max, suffix) => {
      fc.pre(Array.from(suffix).length < max)
      const r = truncateText(s, max, suffix)
      const len = Array.from(r).length
      return len <= max && (r === s ? Array.from(s).length <= max : r.endsWith(suffix) && len === max)
    }))
  })
})

describe("row copies", () => {
  // A field named like an object's internals is data: it is copied as an own field in
  // its place, never taken for the copy's prototype.
  const hostile = (): Record<string, unknown> => {
    const row: Record<string, unknown> = { id: 1 }
    Object.defineProperty(row, "__proto__", { value: { polluted: true }, enumerable: true, writable: true, configurable: true })
    row["constructor"] = "c"
    row["name"] = "Ann"
    return row
  }
  const check = (out: unknown) => {
    const row = out as Record<string, unknown>
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype)
    expect(Object.keys(row)).toEqual(["id", "__proto__", "constructor", "name"])
    expect(Object.getOwnPropertyDescriptor(row, "__proto__")?.value).toEqual({ polluted: true })
    expect((row as { polluted?: unknown }).polluted).toBeUndefined()
  }
  const success = (r: { _tag: string }) => {
    expect(r._tag).toBe("Success")
    return (r as unknown as { row: unknown }).row
  }
  it("passthrough, truncate and field_mapper keep a __proto__ field as an own field, in order", () => {
    check(success(rowTransform(passthroughTransform, { schema: observed }).process(hostile())))
    check(success(rowTransform(truncateTransform, { schema: observed, fields: { name: 10 } }).process(hostile())))
    check(success(rowTransform(fieldMapperTransform, { schema: observed, mapping: {} }).process(hostile())))
  })
})
