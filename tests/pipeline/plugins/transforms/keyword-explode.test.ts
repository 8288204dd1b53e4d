import { describe, expect, it } from "vitest"
import { jsonExplodeTransform } from "../../../../src/pipeline/plugins/transforms/json_explode.js"
import { keywordFilterTransform, matchContext } from "../../../../src/pipeline/plugins/transforms/keyword_filter.js"
import { configError, observed, rowTransform, runError } from "./support.js"

describe("keyword_filter", () => {
  const filter = (options: Record<string, unknown>) =>
    rowTransform(keywordFilterTransform, { schema: observed, on_error: "blocked", ...options })
  it("passes rows without a hit unchanged", () => {
    expect(filter({ fields: "text", blocked_patterns: ["secret"] }).process({ text: "fine", n: 1 })).toEqual({
      _tag: "Success",
      row: { text: "fine", n: 1 }
    })
  })
  it("reports the first hit with field, pattern and context", () => {
    const r = filter({ fields: ["a", "b"], blocked_patterns: ["(?i)password", "\\d{3}-\\d{2}-\\d{4}"] }).process({
      a: "nothing",
      b: "my SSN is 123-45-6789 and PASSWORD"
    })
    expect(r).toEqual({
      _tag: "Error",
      reason: {
        reason: "blocked_content",
        field: "b",
        matched_pattern: "(?i)password",
        match_context: "my SSN is 123-45-6789 and PASSWORD"
      },
      retryable: false
    })
  })
  it("fields in order win over patterns in order", () => {
    const r = filter({ fields: ["a", "b"], blocked_patterns: ["x", "y"] }).process({ b: "x", a: "y" })
    expect(r).toMatchObject({ reason: { field: "a", matched_pattern: "y" } })
  })
  it("'all' scans every string field in row order, skipping non-strings and missing fields", () => {
    const t = filter({ fields: "all", blocked_patterns: ["bad"] })
    expect(t.process({ n: 1, z: "bad one", a: "bad two" })).toMatchObject({ reason: { field: "z" } })
    expect(filter({ fields: ["missing", "n"], blocked_patterns: ["1"] }).process({ n: 1 })._tag).toBe("Success")
  })
  it("cuts context at 40 code points either side with ...", () => {
    const text = `${"a".repeat(50)}SECRET${"b".repeat(45)}`
    expect(matchContext(text, 50, 56)).toBe(`...${"a".repeat(40)}SECRET${"b".repeat(40)}...`)
    expect(matchContext("xx SECRET yy", 3, 9)).toBe("xx SECRET yy")
    const exact = `${"a".repeat(40)}S${"b".repeat(40)}`
    expect(matchContext(exact, 40, 41)).toBe(exact)
    const emoji = `${"😀".repeat(41)}S`
    const r = filter({ fields: "t", blocked_patterns: ["S"] }).process({ t: emoji })
    expect(r).toMatchObject({ reason: { match_context: `...${"😀".repeat(40)}S` } })
  })
  it("refuses invalid or untranslatable patterns naming them", () => {
    const e = configError(keywordFilterTransform, { schema: observed, fields: "a", blocked_patterns: ["ok", "(unclosed"] })
    expect(e.key).toBe("blocked_patterns[1]")
    expect(e.message).toContain("'(unclosed'")
    expect(configError(keywordFilterTransform, { schema: observed, fields: "a", blocked_patterns: ["(?i:x)"] }).key).toBe("blocked_patterns[0]")
  })
  it("requires fields and a non-empty pattern list", () => {
    expect(configError(keywordFilterTransform, { schema: observed, blocked_patterns: ["x"] }).key).toBe("fields")
    expect(configError(keywordFilterTransform, { schema: observed, fields: "a", blocked_patterns: [] }).key).toBe("blocked_patterns")
    expect(configError(keywordFilterTransform, { schema: observed, fields: "a" }).key).toBe("blocked_patterns")
    expect(configError(keywordFilterTransform, { schema: observed, fields: 3, blocked_patterns: ["x"] }).message).toMatch(/field name/)
  })
})

describe("json_explode", () => {
  const explode = (options: Record<string, unknown> = {}) =>
    rowTransform(jsonExplodeTransform, { schema: observed, array_field: "items", ...options })
  it("emits one child per element with item and item_index", () => {
    const r = explode().process({ id: 1, items: [{ sku: "A" }, { sku: "B" }], tail: true })
    expect(r._tag).toBe("Expand")
    if (r._tag === "Expand") {
      expect(r.rows).toEqual([
        { id: 1, tail: true, item: { sku: "A" }, item_index: 0 },
        { id: 1, tail: true, item: { sku: "B" }, item_index: 1 }
      ])
      expect(Object.keys(r.rows[0]!)).toEqual(["id", "tail", "item", "item_index"])
    }
  })
  it("an empty list gives one child with nulls", () => {
    expect(explode().process({ id: 1, items: [] })).toEqual({ _tag: "Expand", rows: [{ id: 1, item: null, item_index: null }] })
    expect(explode({ include_index: false }).process({ id: 1, items: [] })).toEqual({ _tag: "Expand", rows: [{ id: 1, item: null }] })
  })
  it("overwrites an existing key in place and honours output_field", () => {
    const r = explode({ output_field: "id" }).process({ id: 1, x: 2, item_index: "old", items: ["a"] })
    expect(r._tag === "Expand" && r.rows.map((row) => Object.entries(row))).toEqual([[["id", "a"], ["x", 2], ["item_index", 0]]])
  })
  it("crashes on a missing or non-list field", () => {
    expect(runError(() => explode().process({ id: 1 })).message).toMatch(/'items' is missing/)
    expect(runError(() => explode().process({ items: "abc" })).message).toMatch(/must be a list, got string/)
    expect(runError(() => explode().process({ items: { a: 1 } })).message).toMatch(/got an object/)
  })
  it("has no on_error, an observed output schema", () => {
    const t = explode()
    expect(t.onError).toBeUndefined()
    expect(t.outputSchema.mode).toBe("observed")
    expect(configError(jsonExplodeTransform, { schema: observed, array_field: "items", on_error: "x" }).key).toBe("on_error")
    expect(configError(jsonExplodeTransform, { schema: observed }).key).toBe("array_field")
    expect(configError(jsonExplodeTransform, { schema: observed, array_field: "a", required_input_fields: ["a"] }).key).toBe("required_input_fields")
  })
})
