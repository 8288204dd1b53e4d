import { describe, expect, it } from "vitest"
import { newId, newRowId, newTokenId, nodeIdFromConfig } from "../../src/core/ids.js"

describe("ids", () => {
  it("are prefixed by kind, unique, and sort by creation", () => {
    const ids = Array.from({ length: 20_000 }, () => newTokenId())
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
    expect(ids[0]).toMatch(/^tok_[0-9a-f]{32}$/)
    expect(newRowId()).toMatch(/^row_/)
    expect(newId("checkpoint")).toMatch(/^chk_/)
  })

  it("derives node ids from the configuration hash, stable and safe for any name", () => {
    const hash = "ab".repeat(32)
    expect(nodeIdFromConfig("gate", "amount threshold/β", hash)).toBe(nodeIdFromConfig("gate", "amount threshold/β", hash))
    expect(nodeIdFromConfig("gate", "amount threshold/β", hash)).toMatch(/^gate_amount_threshold___[0-9a-f]{12}$/)
    expect(nodeIdFromConfig("gate", "g", hash)).not.toBe(nodeIdFromConfig("gate", "g", "cd".repeat(32)))
    expect(nodeIdFromConfig("sink", "x".repeat(100), hash).length).toBeLessThan(70)
  })
})
