import { describe, expect, it } from "vitest"
import { batchReplicateTransform } from "../../../../src/pipeline/plugins/transforms/batch_replicate.js"
import { batchStatsTransform } from "../../../../src/pipeline/plugins/transforms/batch_stats.js"
import { batchTransform, configError, observed, runError } from "./support.js"

describe("batch_stats", () => {
  const stats = (options: Record<string, unknown> = {}) =>
    batchTransform(batchStatsTransform, { schema: observed, value_field: "amount", ...options })
  it("is batch-aware", () => {
    expect(batchStatsTransform.batchAware).toBe(true)
    expect(stats()._tag).toBe("BatchTransform")
  })
  it("computes count, sum, batch_size, mean, then the group value, in that order", () => {
    const r = stats({ group_by: "category" }).processBatch([
      { amount: 1, category: "a" },
      { amount: 2.5, category: "a" },
      { amount: 1.5, category: "a" }
    ])
    expect(r._tag).toBe("Success")
    if (r._tag === "Success") {
      expect(r.rows).toHaveLength(1)
      expect(Object.entries(r.rows[0]!)).toEqual([["count", 3], ["sum", 5], ["batch_size", 3], ["mean", 5 / 3], ["category", "a"]])
    }
  })
  it("omits mean without compute_mean", () => {
    const r = stats({ compute_mean: false }).processBatch([{ amount: 1 }, { amount: 2, g: "x" }])
    expect(r).toEqual({ _tag: "Success", rows: [{ count: 2, sum: 3, batch_size: 2 }] })
  })
  it("fails the run when a batch mixes group_by values, naming the field, both values and the row", () => {
    const t = stats({ group_by: "category" })
    const e = runError(() => t.processBatch([{ amount: 1, category: "a" }, { amount: 2, category: "a" }, { amount: 3, category: "b" }]))
    expect(e.message).toMatch(/group_by field 'category': row 0 has 'a', row 2 has 'b'/)
    // Python's ==: 1 and 1.0 are one value, '1' and 1 are not; mappings ignore key order.
    expect(t.processBatch([{ amount: 1, category: 1 }, { amount: 1, category: 1.0 }])._tag).toBe("Success")
    expect(runError(() => t.processBatch([{ amount: 1, category: 1 }, { amount: 1, category: "1" }])).message).toMatch(/row 1 has '1'/)
    const nested = t.processBatch([{ amount: 1, category: { x: 1, y: [2] } }, { amount: 1, category: { y: [2], x: 1 } }])
    expect(nested._tag).toBe("Success")
  })
  it("fails the run when a row lacks the group_by field, the first one too", () => {
    const t = stats({ group_by: "g" })
    expect(runError(() => t.processBatch([{ amount: 1 }, { amount: 2, g: "x" }])).message).toMatch(/row 0 .*group_by field 'g'/)
    expect(runError(() => t.processBatch([{ amount: 1, g: "x" }, { amount: 2 }])).message).toMatch(/row 1 .*group_by field 'g'/)
  })
  it("refuses a group_by that names a key of the summary row", () => {
    for (const key of ["count", "sum", "batch_size", "mean", "skipped_non_finite", "skipped_non_finite_indices"]) {
      const e = configError(batchStatsTransform, { schema: observed, value_field: "amount", group_by: key })
      expect(e.key, key).toBe("group_by")
      expect(e.message).toContain(`'${key}' collides`)
    }
    // Without compute_mean there is no mean key to collide with.
    const t = stats({ group_by: "mean", compute_mean: false })
    expect(t.processBatch([{ amount: 2, mean: "m" }])).toEqual({ _tag: "Success", rows: [{ count: 1, sum: 2, batch_size: 1, mean: "m" }] })
  })
  it("a sum beyond the float range is an error result for the batch", () => {
    expect(stats().processBatch([{ amount: Number.MAX_VALUE }, { amount: Number.MAX_VALUE }])).toEqual({
      _tag: "Error",
      reason: { reason: "float_overflow", batch_size: 2, valid_count: 2 }
    })
  })
  it("adds left to right as floats", () => {
    const r = stats().processBatch([{ amount: 0.1 }, { amount: 0.2 }, { amount: 0.3 }])
    expect(r._tag === "Success" && r.rows[0]!["sum"]).toBe(0.1 + 0.2 + 0.3)
  })
  it("crashes naming the row index and field for a bad value", () => {
    const t = stats()
    expect(runError(() => t.processBatch([{ amount: 1 }, { amount: "2" }])).message).toMatch(/row 1 .*'amount'.*'2'/)
    expect(runError(() => t.processBatch([{ amount: 1 }, { other: 1 }])).message).toMatch(/row 1 .*'amount'/)
    expect(runError(() => t.processBatch([{ amount: null }])).message).toMatch(/row 0/)
    // A boolean is not a number (ELSPETH refuses bool too).
    expect(runError(() => t.processBatch([{ amount: 1 }, { amount: true }])).message).toMatch(/row 1 .*'amount'.*true/)
  })
  it("requires value_field and takes the shared options", () => {
    expect(configError(batchStatsTransform, { schema: observed }).key).toBe("value_field")
    const t = stats({ on_error: "x", required_input_fields: ["amount"] })
    expect(t.onError).toBe("x")
    expect(t.inputSchema.requiredFields).toEqual(["amount"])
    expect(t.outputSchema.mode).toBe("observed")
  })
})

describe("batch_replicate", () => {
  const replicate = (options: Record<string, unknown> = {}) =>
    batchTransform(batchReplicateTransform, { schema: observed, ...options })
  it("emits copies with copy_index, in input order", () => {
    const r = replicate().processBatch([{ id: 1, copies: 2 }, { id: 2 }, { id: 3, copies: 1 }])
    expect(r).toEqual({
      _tag: "Success",
      rows: [
        { id: 1, copies: 2, copy_index: 0 },
        { id: 1, copies: 2, copy_index: 1 },
        { id: 2, copy_index: 0 },
        { id: 3, copies: 1, copy_index: 0 }
      ],
      origins: [0, 0, 1, 2]
    })
  })
  it("honours copies_field, default_copies and include_copy_index", () => {
    const r = replicate({ copies_field: "n", default_copies: 2, include_copy_index: false }).processBatch([{ id: 1 }, { id: 2, n: 1 }])
    expect(r).toEqual({ _tag: "Success", rows: [{ id: 1 }, { id: 1 }, { id: 2, n: 1 }], origins: [0, 0, 1] })
  })
  it("overwrites an existing copy_index in place", () => {
    const r = replicate().processBatch([{ copy_index: "x", id: 1 }])
    expect(r._tag === "Success" && Object.entries(r.rows[0]!)).toEqual([["copy_index", 0], ["id", 1]])
  })
  it("copies are independent objects", () => {
    const r = replicate().processBatch([{ id: 1, copies: 2 }])
    expect(r._tag === "Success" && r.rows[0] !== r.rows[1]).toBe(true)
  })
  it("crashes naming the row index for copies that are not whole numbers (booleans included)", () => {
    const t = replicate()
    for (const bad of ["2", 1.5, null, false, true, [1]]) {
      expect(runError(() => t.processBatch([{ copies: 1 }, { copies: bad }])).message).toMatch(/row 1 .*'copies' must be a whole number/)
    }
  })
  it("refuses a row whose copies are below 1 or above max_copies; the rest of the batch goes on", () => {
    const r = replicate({ max_copies: 3 }).processBatch([{ id: 1, copies: 0 }, { id: 2, copies: 2 }, { id: 3, copies: 4 }, { id: 4, copies: -1 }])
    expect(r).toEqual({
      _tag: "Success",
      rows: [{ id: 2, copies: 2, copy_index: 0 }, { id: 2, copies: 2, copy_index: 1 }],
      origins: [1, 1],
      rowErrors: [
        { index: 0, reason: { reason: "invalid_copies", field: "copies", value: 0, message: "'copies' must be between 1 and 3 (max_copies), got 0" } },
        { index: 2, reason: { reason: "invalid_copies", field: "copies", value: 4, message: "'copies' must be between 1 and 3 (max_copies), got 4" } },
        { index: 3, reason: { reason: "invalid_copies", field: "copies", value: -1, message: "'copies' must be between 1 and 3 (max_copies), got -1" } }
      ]
    })
    // Every row refused: no outputs, one refusal each (not a failed batch).
    const all = replicate().processBatch([{ copies: 0 }, { copies: 0 }])
    expect(all).toMatchObject({ _tag: "Success", rows: [], origins: [] })
    expect(all._tag === "Success" && all.rowErrors?.map((e) => e.index)).toEqual([0, 1])
  })
  it("max_copies defaults to 10000", () => {
    const t = replicate({ include_copy_index: false })
    const ok = t.processBatch([{ copies: 10_000 }])
    expect(ok._tag === "Success" && ok.rows.length).toBe(10_000)
    const over = t.processBatch([{ copies: 10_001 }])
    expect(over._tag === "Success" && over.rowErrors?.[0]?.reason["value"]).toBe(10_001)
  })
  it("refuses default_copies and max_copies outside 1..10000, and default_copies above max_copies", () => {
    expect(configError(batchReplicateTransform, { schema: observed, default_copies: 0 }).key).toBe("default_copies")
    expect(configError(batchReplicateTransform, { schema: observed, max_copies: 0 }).key).toBe("max_copies")
    expect(configError(batchReplicateTransform, { schema: observed, max_copies: 10_001 }).key).toBe("max_copies")
    const e = configError(batchReplicateTransform, { schema: observed, default_copies: 5, max_copies: 4 })
    expect(e.key).toBe("default_copies")
    expect(e.message).toBe("default_copies (5) exceeds max_copies (4)")
  })
})
