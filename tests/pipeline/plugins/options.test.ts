import { Effect, Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { decodeOptions, didYouMean, editDistance, Identifier, isIdentifier, PositiveInt } from "../../../src/pipeline/plugins/options.js"
import { PluginConfigError } from "../../../src/pipeline/plugins/protocol.js"

const Opts = Schema.Struct({
  path: Schema.String,
  delimiter: Schema.optionalWith(Schema.String, { default: () => "," }),
  encoding: Schema.optionalWith(Schema.String, { default: () => "utf-8" }),
  fields: Schema.optional(Schema.Record({ key: Schema.String, value: PositiveInt })),
  columns: Schema.optional(Schema.Array(Identifier)),
  format: Schema.optional(Schema.Literal("json", "jsonl")),
  nested: Schema.optional(Schema.Struct({ inner: Schema.Array(Schema.Struct({ x: Schema.Number })) }))
})

const decodeErr = (options: unknown): PluginConfigError => {
  const r = Effect.runSync(Effect.either(decodeOptions("csv", Opts, options)))
  if (Either.isRight(r)) throw new Error("expected a failure")
  return r.left
}

describe("didYouMean", () => {
  it("suggests the closest known word", () => {
    expect(didYouMean("delimeter", ["delimiter", "encoding", "path"])).toBe("delimiter")
    expect(didYouMean("Path", ["delimiter", "path"])).toBe("path")
    expect(didYouMean("encodng", ["delimiter", "encoding"])).toBe("encoding")
  })
  it("suggests a longer option the word is a prefix of", () => {
    expect(didYouMean("validate", ["schema", "validate_input"])).toBe("validate_input")
    expect(didYouMean("val", ["validate_input"])).toBeUndefined()
  })
  it("stays silent for unrelated words", () => {
    expect(didYouMean("zzz", ["delimiter", "encoding"])).toBeUndefined()
    expect(didYouMean("x", [])).toBeUndefined()
  })
  it("computes Levenshtein distance", () => {
    expect(editDistance("kitten", "sitting")).toBe(3)
    expect(editDistance("", "abc")).toBe(3)
    expect(editDistance("abc", "abc")).toBe(0)
  })
})

describe("decodeOptions", () => {
  it("decodes valid options and applies defaults", () => {
    const r = Effect.runSync(decodeOptions("csv", Opts, { path: "a.csv" }))
    expect(r).toEqual({ path: "a.csv", delimiter: ",", encoding: "utf-8" })
  })
  it("treats absent options as an empty mapping", () => {
    const e = decodeErr(undefined)
    expect(e.key).toBe("path")
    expect(e.message).toBe("missing required option 'path'")
  })
  it("refuses an unknown option with a suggestion and the known list", () => {
    const e = decodeErr({ path: "a", delimeter: ";" })
    expect(e._tag).toBe("PluginConfigError")
    expect(e.plugin).toBe("csv")
    expect(e.key).toBe("delimeter")
    expect(e.value).toBe(";")
    expect(e.message).toMatch(/^unknown option 'delimeter'; did you mean 'delimiter'\? \(known: path, delimiter, encoding/)
  })
  it("refuses an unknown option without a suggestion when none is close", () => {
    const e = decodeErr({ path: "a", wibble: 1 })
    expect(e.message).toMatch(/^unknown option 'wibble' \(known: /)
  })
  it("names the nested key of a bad record value", () => {
    const e = decodeErr({ path: "a", fields: { amount: 0 } })
    expect(e.key).toBe("fields.amount")
    expect(e.value).toBe(0)
    expect(e.message).toContain("whole number ≥ 1")
  })
  it("names list indexes with brackets", () => {
    const e = decodeErr({ path: "a", columns: ["ok", "1bad"] })
    expect(e.key).toBe("columns[1]")
    expect(e.value).toBe("1bad")
    expect(e.message).toContain("identifier")
  })
  it("names deep paths", () => {
    const e = decodeErr({ path: "a", nested: { inner: [{ x: 1 }, { x: "no" }] } })
    expect(e.key).toBe("nested.inner[1].x")
    expect(e.message).toBe("expected a number, got 'no'")
  })
  it("reports unknown keys inside nested structs", () => {
    const e = decodeErr({ path: "a", nested: { inner: [], innr: 1 } })
    expect(e.key).toBe("nested.innr")
    expect(e.message).toContain("did you mean 'inner'")
  })
  it("describes literal choices", () => {
    const e = decodeErr({ path: "a", format: "xml" })
    expect(e.key).toBe("format")
    expect(e.message).toBe("expected one of 'json', 'jsonl', got 'xml'")
  })
  it("describes wrong types", () => {
    const e = decodeErr({ path: 3 })
    expect(e.message).toBe("expected a string, got 3")
  })
  it("refuses non-mapping options", () => {
    const e = decodeErr(["a"])
    expect(e.key).toBe("")
    expect(e.message).toContain("mapping")
  })
})

describe("isIdentifier", () => {
  it("accepts Python identifiers including Unicode letters", () => {
    for (const s of ["a", "_x", "amount_usd", "café", "名前", "x1"]) expect(isIdentifier(s)).toBe(true)
  })
  it("rejects non-identifiers", () => {
    for (const s of ["", "1a", "a-b", "a.b", "½x", "a b"]) expect(isIdentifier(s)).toBe(false)
  })
})
