/**
 * `runledger explain` through the built CLI, on the Landscapes of the compat examples.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { compatCopy, runCli } from "../support/cli.js"

const work = compatCopy()
afterAll(() => rmSync(work, { recursive: true, force: true }))

const dbOf = (example: string) => join(work, "examples", example, "runs", "audit.db")

const runExample = (example: string): string => {
  const r = runCli(["run", "-s", `examples/${example}/settings.yaml`, "--json", "--quiet"], { cwd: work })
  expect(r.status, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as { run_id: string }).run_id
}

describe("runledger explain", () => {
  let thresholdRun = ""
  let explodeRun = ""
  beforeAll(() => {
    thresholdRun = runExample("threshold_gate")
    explodeRun = runExample("json_explode")
  })

  it("--json: row 1 (Bob, 1500) was routed to high_values by the gate", () => {
    const r = runCli(["explain", "--db", dbOf("threshold_gate"), "--run", thresholdRun, "--row", "1", "--json"], { cwd: work })
    expect(r.status, r.stderr).toBe(0)
    const l = JSON.parse(r.stdout)
    expect(l.run).toMatchObject({ run_id: thresholdRun, status: "completed" })
    expect(l.row).toMatchObject({ row_index: 1, data: { id: 2, name: "Bob", amount: 1500, category: "wholesale" } })
    expect(l.steps.map((s: { node: { name: string } }) => s.node.name)).toEqual(["amount_threshold", "high_values"])
    expect(l.steps[0].routing[0]).toMatchObject({
      edge_label: "true",
      destination: "high_values",
      destination_type: "sink",
      mode: "move",
      reason: { condition: "row['amount'] > 1000", result: "true", destination: "high_values" }
    })
    expect(l.outcome).toMatchObject({ outcome: "ROUTED", sink_name: "high_values", is_terminal: true })
    expect(l.sink.name).toBe("high_values")
    expect(l.sink.artifacts[0].path_or_uri).toMatch(/high_values\.csv$/)
  })

  it("without --json: a narrative on stderr, nothing on stdout", () => {
    const r = runCli(["explain", "--db", dbOf("threshold_gate"), "--run", "latest", "--row", "1"], { cwd: work })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain(`run ${thresholdRun} (completed)`)
    expect(r.stderr).toContain("source row 1")
    expect(r.stderr).toContain(`"name":"Bob"`)
    expect(r.stderr).toContain("gate 'amount_threshold': row['amount'] > 1000 → 'true' → sink high_values")
    expect(r.stderr).toMatch(/step 1 +gate 'amount_threshold'.*completed +in [0-9a-f]{12} → out [0-9a-f]{12}/)
    expect(r.stderr).toContain("outcome ROUTED → sink high_values")
  })

  it("exit 2 for an unknown row (naming the valid range) and for a missing Landscape", () => {
    const db = dbOf("threshold_gate")
    const noRow = runCli(["explain", "--db", db, "--run", thresholdRun, "--row", "8"], { cwd: work })
    expect(noRow.status).toBe(2)
    expect(noRow.stderr).toContain("0…7")
    const noDb = runCli(["explain", "--db", join(work, "missing.db"), "--run", "latest", "--row", "0"], { cwd: work })
    expect(noDb.status).toBe(2)
    expect(noDb.stderr).toContain("no Landscape at")
  })

  it("an exploded row is ambiguous (exit 2, candidates listed) until a token is picked", () => {
    const db = dbOf("json_explode")
    const r = runCli(["explain", "--db", db, "--run", explodeRun, "--row", "0", "--json"], { cwd: work })
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("2 tokens of row 0")
    const listed = JSON.parse(r.stdout) as { error: string; candidates: ReadonlyArray<{ token_id: string; sink_name: string }> }
    expect(listed.error).toBe("AmbiguousLineage")
    expect(listed.candidates).toHaveLength(2)
    for (const c of listed.candidates) {
      expect(r.stderr).toContain(c.token_id)
      expect(c.sink_name).toBe("output")
    }

    const pick = listed.candidates[1]!.token_id
    const picked = runCli(["explain", "--db", db, "--run", explodeRun, "--token", pick], { cwd: work })
    expect(picked.status, picked.stderr).toBe(0)
    expect(picked.stderr).toMatch(/\n  tok_\w+  EXPANDED\n/)
    expect(picked.stderr).toMatch(new RegExp(`(├─|└─) ${pick}  COMPLETED → sink output .*← explained`))
    expect(picked.stderr).toContain("transform 'json_explode_0' (json_explode)  completed")
  })
})
