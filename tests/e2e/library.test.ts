import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { join } from "node:path"
import { main } from "../../examples/library/compose.js"
import { compatCopy } from "../support/cli.js"

describe("examples/library", () => {
  it("composes runledger inside another Effect program", async () => {
    const dir = compatCopy()
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      const out = await Effect.runPromise(main(join("examples", "threshold_gate", "settings.yaml")))
      expect(out.result.status).toBe("completed")
      expect(out.result.rows_routed).toBe(4)
      expect(out.trail).toEqual({ rows: 8, outcomes: { COMPLETED: 4, ROUTED: 4 } })
    } finally {
      process.chdir(cwd)
    }
  })
})
