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
      { amount: 2.5, category: "b" },
      { amount: true, category: "c" }
    ])
    expect(r._tag).toBe("Success")
    if (r._tag === "Success") {
      expect(r.rows).toHaveLength(1)
      expect(Object.entries(r.rows[0]!)).toEqual([["count", 3], ["sum", 4.5], ["batch_size", 3], ["mean", 1.5], ["category", "a"]])
    }
  })
  it("omits mean without compute_mean and group when absent from the first row", () => {
    const r = stats({ compute_mean: false, group_by: "g" }).processBatch([{ amount: 1 }, { amount: 2, g: "x" }])
    expect(r).toEqual({ _tag: "Success", rows: [{ count: 2, sum: 3, batch_size: 2 }] })
  })
  it("a group_by equal to an earlier key overwrites it in place", () => {
    const r = stats({ group_by: "count" }).processBatch([{ amount: 1, count: "first" }])
    expect(r._tag === "Success" && Object.entries(r.rows[0]!)).toEqual([["count", "first"], ["sum", 1], ["batch_size", 1], ["mean", 1]])
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
    const r = replicate().processBatch([{ id: 1, copies: 2 }, { id: 2 }, { id: 3, copies: true }])
    expect(r).toEqual({
      _tag: "Success",
      rows: [
        { id: 1, copies: 2, copy_index: 0 },
        { id: 1, copies: 2, copy_index: 1 },
        { id: 2, copy_index: 0 },
        { id: 3, copies: true, copy_index: 0 }
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
  it("crashes naming the row index for non-int or < 1 copies", () => {
    const t = replicate()
    for (const bad of ["2", 1.5, null, 0, -1, false]) {
      expect(runError(() => t.processBatch([{ copies: 1 }, { copies: bad }])).message).toMatch(/row 1 .*'copies'/)
    }
  })
  it("refuses default_copies < 1", () => {
    expect(configError(batchReplicateTransform, { schema: observed, default_copies: 0 }).key).toBe("default_copies")
  })
})
