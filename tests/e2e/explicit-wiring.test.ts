/**
 * The explicit form end to end (tests/fixtures/pipelines/branches): a fork whose two
 * branches run different transforms before a dict-form coalesce, then a gate tree.
 * The outputs, the audit trail as `explain` tells it, and the DAG `validate --graph`
 * prints must all follow the wiring.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { runCli } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { pipelineFixtures } from "../support/fixtures.js"

let dir = ""
let result: Record<string, unknown> = {}
beforeAll(() => {
  dir = pipelineFixtures()
  const r = runCli(["run", "-s", "branches/settings.yaml", "--json"], { cwd: dir })
  expect(r.status, r.stderr).toBe(0)
  result = JSON.parse(r.stdout) as Record<string, unknown>
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const lines = (file: string) => readFileSync(join(dir, file), "utf8").trim().split("\n").map((l) => JSON.parse(l) as unknown)

describe("explicit wiring, end to end", () => {
  it("runs each branch's own transform before the merge, and routes the merge down the gate tree", async () => {
    expect(result).toMatchObject({ status: "completed", rows_processed: 4, rows_forked: 3, rows_coalesced: 6, rows_quarantined: 1, rows_routed: 3 })
    expect(result.routed_destinations).toEqual({ output: 2, invalid: 1 })
    // short: name truncated to 10 characters; priced: price renamed to cost.
    expect(lines("branches/output/merged.jsonl")).toEqual([
      { short: { id: 1, name: "Widget wit", price: 2500 }, priced: { id: 1, name: "Widget with a very long product name", cost: 2500 } },
      { short: { id: 2, name: "Bolt", price: 150 }, priced: { id: 2, name: "Bolt", cost: 150 } }
    ])
    // Row 3 fails the source schema (quarantined); row 4 costs 50: expensive → cheap → cheapest → invalid.
    expect(lines("branches/output/invalid.jsonl")).toEqual([
      { id: "3", name: "Gear", price: "abc" },
      { short: { id: 4, name: "Nut", price: 50 }, priced: { id: 4, name: "Nut", cost: 50 } }
    ])
    await checkInvariantsIn(join(dir, "branches/runs/audit.db"), result.run_id as string)
  })

  it("explain shows each branch transform on its branch and the gates the merged row passed", () => {
    const r = runCli(["explain", "--db", "branches/runs/audit.db", "--run", "latest", "--row", "3"], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
    const text = r.stdout + r.stderr
    expect(text).toMatch(/gate 'split': True → 'true' → fork branch short → transform shorten/)
    expect(text).toMatch(/gate 'split': True → 'true' → fork branch priced → transform reprice/)
    expect(text).toMatch(/transform 'shorten' \(truncate\)\s+completed/)
    expect(text).toMatch(/transform 'reprice' \(field_mapper\)\s+completed/)
    expect(text).toMatch(/gate 'expensive': .* → 'false' → gate cheapest/)
    expect(text).toMatch(/gate 'cheapest': .* → 'false' → sink invalid/)
    expect(text).toMatch(/outcome ROUTED → sink invalid/)
  })

  it("validate --graph prints the fork's branches through their transforms and the gate tree", () => {
    const r = runCli(["validate", "-s", "branches/settings.yaml", "--graph"], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/fork:short \[copy\] → transform shorten \(truncate\)\n.*continue \[move\] → coalesce merged/)
    expect(r.stdout).toMatch(/fork:priced \[copy\] → transform reprice \(field_mapper\)/)
    expect(r.stdout).toMatch(/false \[move\] → gate cheapest\n.*true \[move\] → sink output/)
    const m = runCli(["validate", "-s", "branches/settings.yaml", "--graph", "mermaid"], { cwd: dir })
    expect(m.status, m.stderr).toBe(0)
    expect(m.stdout).toMatch(/^flowchart/m)
    expect(m.stdout).toMatch(/gate_split ==>\|"fork:short \(copy\)"\| transform_shorten/)
  })

  it("migrate-settings leaves an explicit file as it is", () => {
    const r = runCli(["migrate-settings", "branches/settings.yaml"], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toBe(readFileSync(join(dir, "branches/settings.yaml"), "utf8"))
  })
})
