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
    expect(t.process({ n: 1, l: ["bad"], o: { bad: "bad" }, s: "fine" })._tag).toBe("Success")
    expect(filter({ fields: ["missing"], blocked_patterns: ["1"] }).process({ n: 1 })._tag).toBe("Success")
  })
  it("fails closed on a named field that is not a string: an error result, never a pass", () => {
    const t = filter({ fields: ["missing", "n"], blocked_patterns: ["1"] })
    const cases: ReadonlyArray<readonly [unknown, string]> = [[1, "int"], [1.5, "float"], [true, "bool"], [null, "NoneType"], [["1"], "list"], [{ a: "1" }, "dict"]]
    for (const [value, type] of cases) {
      expect(t.process({ n: value })).toEqual({
        _tag: "Error",
        reason: { reason: "non_string_field", field: "n", actual_type: type },
        retryable: false
      })
    }
    // A single field name counts as named too.
    expect(filter({ fields: "n", blocked_patterns: ["x"] }).process({ n: 5 })).toMatchObject({ reason: { reason: "non_string_field" } })
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
  it("refuses an empty pattern and one longer than 1000 characters, naming the key", () => {
    const empty = configError(keywordFilterTransform, { schema: observed, fields: "a", blocked_patterns: ["ok", ""] })
    expect(empty.key).toBe("blocked_patterns[1]")
    expect(empty.message).toMatch(/empty pattern matches every row/)
    const long = "x".repeat(1001)
    const tooLong = configError(keywordFilterTransform, { schema: observed, fields: "a", blocked_patterns: [long] })
    expect(tooLong.key).toBe("blocked_patterns[0]")
    expect(tooLong.message).toMatch(/1001 characters long; at most 1000/)
    expect(filter({ fields: "a", blocked_patterns: ["x".repeat(1000)] }).process({ a: "y" })._tag).toBe("Success")
  })
  it("refuses patterns prone to catastrophic backtracking, as compiled, naming the key and the pattern", () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ["(a+)+$", /exponential/],
      ["(\\w+\\s?)*$", /exponential/],
      ["(?i)(x*)*y", /exponential/],
      [".*a.*b.*c", /polynomial \(degree [3-9]\)/]
    ]
    for (const [pattern, how] of cases) {
      const e = configError(keywordFilterTransform, { schema: observed, fields: "a", blocked_patterns: ["fine", pattern] })
      expect(e.key, pattern).toBe("blocked_patterns[1]")
      expect(e.value).toBe(pattern)
      expect(e.message).toContain(`pattern '${pattern}' is refused`)
      expect(e.message, pattern).toMatch(how)
    }
  })
  it("accepts linear and quadratic patterns (the cost of any unanchored search)", () => {
    for (const pattern of ["(?i)\\bpassword\\b", "\\d{3}-\\d{2}-\\d{4}", "\\w+@\\w+\\.com", "foo.*bar$", "(?x) secret \\s* = "]) {
      expect(filter({ fields: "a", blocked_patterns: [pattern] }).process({ a: "nothing" })._tag, pattern).toBe("Success")
    }
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
  it("an empty list is an error result for on_error (nothing to explode), not a child of nulls", () => {
    const error = { _tag: "Error", reason: { reason: "invalid_input", field: "items", error: "empty array" }, retryable: false }
    expect(explode().process({ id: 1, items: [] })).toEqual(error)
    expect(explode({ include_index: false, on_error: "quarantine" }).process({ id: 1, items: [] })).toEqual(error)
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
  it("takes on_error (for empty lists), has an observed output schema", () => {
    const t = explode()
    expect(t.onError).toBeUndefined()
    expect(explode({ on_error: "quarantine" }).onError).toBe("quarantine")
    expect(t.outputSchema.mode).toBe("observed")
    expect(configError(jsonExplodeTransform, { schema: observed }).key).toBe("array_field")
    expect(configError(jsonExplodeTransform, { schema: observed, array_field: "" }).key).toBe("array_field")
    const same = configError(jsonExplodeTransform, { schema: observed, array_field: "items", output_field: "items" })
    expect(same.key).toBe("output_field")
    expect(same.message).toBe("output_field and array_field must differ, both are 'items'")
    expect(configError(jsonExplodeTransform, { schema: observed, array_field: "a", required_input_fields: ["a"] }).key).toBe("required_input_fields")
  })
})
