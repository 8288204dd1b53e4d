/**
 * `runledger explain` through the built CLI, on the Landscapes of the pipeline fixtures
 * (tests/fixtures/pipelines).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { runCli } from "../support/cli.js"
import { pipelineFixtures } from "../support/fixtures.js"

const work = pipelineFixtures()
afterAll(() => rmSync(work, { recursive: true, force: true }))

const dbOf = (fixture: string) => join(work, fixture, "runs", "audit.db")

const runFixture = (fixture: string): string => {
  const r = runCli(["run", "-s", `${fixture}/settings.yaml`, "--json", "--quiet"], { cwd: work })
  expect(r.status, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as { run_id: string }).run_id
}

describe("runledger explain", () => {
  let ordersRun = ""
  let basketsRun = ""
  beforeAll(() => {
    ordersRun = runFixture("orders")
    basketsRun = runFixture("baskets")
  })

  it("--json: row 1 (Grace, 740) was routed to the large sink by the gate", () => {
    const r = runCli(["explain", "--db", dbOf("orders"), "--run", ordersRun, "--row", "1", "--json"], { cwd: work })
    expect(r.status, r.stderr).toBe(0)
    const l = JSON.parse(r.stdout)
    expect(l.run).toMatchObject({ run_id: ordersRun, status: "completed" })
    expect(l.row).toMatchObject({ row_index: 1, data: { id: 2, customer: "Grace", total: 740, channel: "store" } })
    expect(l.steps.map((s: { node: { name: string } }) => s.node.name)).toEqual(["big_orders", "large"])
    expect(l.steps[0].routing[0]).toMatchObject({
      edge_label: "true",
      destination: "large",
      destination_type: "sink",
      mode: "move",
      reason: { condition: "row['total'] >= 500", result: "true", destination: "large" }
    })
    expect(l.outcome).toMatchObject({ outcome: "ROUTED", sink_name: "large", is_terminal: true })
    expect(l.sink.name).toBe("large")
    expect(l.sink.artifacts[0].path_or_uri).toMatch(/large\.csv$/)
  })

  it("without --json: the narrative on stdout, nothing on stderr", () => {
    const r = runCli(["explain", "--db", dbOf("orders"), "--run", "latest", "--row", "1"], { cwd: work })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toBe("")
    expect(r.stdout).toContain(`run ${ordersRun} (completed)`)
    expect(r.stdout).toContain("source row 1")
    expect(r.stdout).toContain(`"customer":"Grace"`)
    expect(r.stdout).toContain("gate 'big_orders': row['total'] >= 500 → 'true' → sink large")
    expect(r.stdout).toMatch(/step 1 +gate 'big_orders'.*completed +in [0-9a-f]{12} → out [0-9a-f]{12}/)
    expect(r.stdout).toContain("outcome ROUTED → sink large")
  })

  it("exit 2 for an unknown row (naming the valid range) and for a missing Landscape", () => {
    const db = dbOf("orders")
    const noRow = runCli(["explain", "--db", db, "--run", ordersRun, "--row", "8"], { cwd: work })
    expect(noRow.status).toBe(2)
    expect(noRow.stderr).toContain("0…7")
    const noDb = runCli(["explain", "--db", join(work, "missing.db"), "--run", "latest", "--row", "0"], { cwd: work })
    expect(noDb.status).toBe(2)
    expect(noDb.stderr).toContain("no Landscape at")
  })

  it("an exploded row is ambiguous (exit 2, candidates listed) until a token is picked", () => {
    const db = dbOf("baskets")
    const r = runCli(["explain", "--db", db, "--run", basketsRun, "--row", "0", "--json"], { cwd: work })
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
    const picked = runCli(["explain", "--db", db, "--run", basketsRun, "--token", pick], { cwd: work })
    expect(picked.status, picked.stderr).toBe(0)
    expect(picked.stdout).toMatch(/\n  tok_\w+  EXPANDED\n/)
    expect(picked.stdout).toMatch(new RegExp(`(├─|└─) ${pick}  COMPLETED → sink output .*← explained`))
    expect(picked.stdout).toContain("transform 'json_explode_0' (json_explode)  completed")
  })
})
