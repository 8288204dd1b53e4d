/**
 * The explicit form end to end (tests/fixtures/pipelines/branches): a fork whose two
 * branches run different transforms before a dict-form coalesce, then a gate tree.
 * The outputs, the audit trail as `explain` tells it, and the DAG `validate --graph`
 * prints must all follow the wiring.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readFileSync, rmSync, writeFileSync } from "node:fs"
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

describe("an aggregation's on_error (explicit form)", () => {
  const write = (onError: string, refusedSink = true) => {
    const d = pipelineFixtures()
    const text = `
source:
  plugin: csv
  on_success: raw
  options:
    path: in.csv
    schema: {mode: fixed, fields: ["id: int", "copies: int"]}
    on_validation_failure: discard
aggregations:
  - name: replicate
    plugin: batch_replicate
    input: raw
    on_success: out
    on_error: ${onError}
    trigger: {count: 3}
    options: {schema: {mode: observed}, copies_field: copies}
sinks:
  out: {plugin: json, on_write_failure: discard, options: {path: out.jsonl, format: jsonl, schema: {mode: observed}}}
${refusedSink ? "  refused: {plugin: json, on_write_failure: discard, options: {path: refused.jsonl, format: jsonl, schema: {mode: observed}}}\n" : ""}landscape: {url: "sqlite:///audit.db"}
`
    writeFileSync(join(d, "in.csv"), "id,copies\n1,2\n2,0\n3,1\n")
    writeFileSync(join(d, "s.yaml"), text)
    return d
  }

  it("sends a row the batch plugin refuses to its on_error sink, ROUTED, while the batch goes on", async () => {
    const d = write("refused")
    try {
      const r = runCli(["run", "-s", "s.yaml", "--json"], { cwd: d })
      expect(r.status, r.stderr).toBe(0)
      const res = JSON.parse(r.stdout) as Record<string, unknown>
      expect(res).toMatchObject({ rows_processed: 3, rows_succeeded: 3, rows_routed: 1, rows_quarantined: 0 })
      expect(res.routed_destinations).toEqual({ refused: 1 })
      expect(readFileSync(join(d, "refused.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as unknown)).toEqual([{ id: 2, copies: 0 }])
      expect(readFileSync(join(d, "out.jsonl"), "utf8").trim().split("\n")).toHaveLength(3)
      await checkInvariantsIn(join(d, "audit.db"), res.run_id as string)
      const x = runCli(["explain", "--db", "audit.db", "--run", "latest", "--row", "1"], { cwd: d })
      expect(x.stdout + x.stderr).toMatch(/aggregation 'replicate' error → on_error → sink refused \(divert\)/)
    } finally {
      rmSync(d, { recursive: true, force: true })
    }
  })

  it("with on_error: discard the refused row ends QUARANTINED and is written nowhere", async () => {
    const d = write("discard", false)
    try {
      const r = runCli(["run", "-s", "s.yaml", "--json"], { cwd: d })
      expect(r.status, r.stderr).toBe(0)
      const res = JSON.parse(r.stdout) as Record<string, unknown>
      expect(res).toMatchObject({ rows_processed: 3, rows_succeeded: 3, rows_routed: 0, rows_quarantined: 1 })
      expect(readFileSync(join(d, "out.jsonl"), "utf8")).not.toMatch(/"id": 2/)
      await checkInvariantsIn(join(d, "audit.db"), res.run_id as string)
    } finally {
      rmSync(d, { recursive: true, force: true })
    }
  })
})
