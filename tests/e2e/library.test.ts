import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { main } from "../../examples/library/compose.js"
import { pipelineFixtures } from "../support/fixtures.js"

describe("examples/library", () => {
  it("composes runledger inside another Effect program", async () => {
    const dir = pipelineFixtures()
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      const out = await Effect.runPromise(main(join("orders", "settings.yaml")))
      expect(out.result.status).toBe("completed")
      expect(out.result.rows_routed).toBe(4)
      expect(out.trail).toEqual({ rows: 8, outcomes: { COMPLETED: 4, ROUTED: 4 } })
    } finally {
      process.chdir(cwd)
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
