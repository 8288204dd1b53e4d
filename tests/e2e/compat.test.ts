/**
 * The ELSPETH compat examples, run through the built CLI from a copy of the compat
 * folder as working directory; outputs compared with what PLUGINS.md implies.
 *
 * The corpus is external (see tests/support/compat.ts): without it these tests are
 * skipped, and the reason is printed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readdirSync, readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { REPO, runCli } from "../support/cli.js"
import { compatCopy, compatSkipNotice, HAS_COMPAT } from "../support/compat.js"
import { rowsOf } from "../support/compare.js"
import { checkInvariantsIn } from "../support/db.js"

const EXPECTED = join(REPO, "tests/fixtures/compat")

const cases: ReadonlyArray<readonly [string, Record<string, number>]> = [
  ["threshold_gate", { rows_processed: 8, rows_succeeded: 4, rows_routed: 4 }],
  ["boolean_routing", { rows_processed: 10, rows_succeeded: 5, rows_routed: 5 }],
  ["json_explode", { rows_processed: 3, rows_succeeded: 6, rows_expanded: 3 }],
  ["audit_export", { rows_processed: 8, rows_succeeded: 6, rows_routed: 2 }],
  ["landscape_journal", { rows_processed: 2, rows_succeeded: 2 }],
  ["schema_contracts_demo", { rows_processed: 5, rows_succeeded: 3, rows_routed: 2 }],
  ["batch_aggregation", { rows_processed: 15, rows_succeeded: 3 }],
  ["deaggregation", { rows_processed: 6, rows_succeeded: 11, rows_expanded: 6 }]
]

compatSkipNotice("the ELSPETH compat examples run through the CLI (tests/e2e/compat.test.ts)")

describe.skipIf(!HAS_COMPAT)("ELSPETH compat examples", () => {
  let work = ""
  beforeAll(() => {
    work = compatCopy()
  })
  afterAll(() => {
    if (work !== "") rmSync(work, { recursive: true, force: true })
  })

  it.each(cases)("%s runs and writes the outputs PLUGINS.md implies", async (name, counts) => {
    const r = runCli(["run", "-s", `examples/${name}/settings.yaml`, "--json"], { cwd: work })
    expect(r.stderr).not.toMatch(/internal error/)
    expect(r.status, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout) as Record<string, unknown>
    expect(result.status).toBe("completed")
    for (const [k, v] of Object.entries(counts)) expect(result[k], k).toBe(v)
    expect(result.rows_failed).toBe(0)

    for (const file of readdirSync(join(EXPECTED, name))) {
      const expected = readFileSync(join(EXPECTED, name, file), "utf8")
      const actual = readFileSync(join(work, "examples", name, "output", file), "utf8")
      expect(rowsOf(file, actual), file).toEqual(rowsOf(file, expected))
    }
    const db = join(work, "examples", name, "runs", "audit.db")
    await checkInvariantsIn(db, result.run_id as string)
  })
})
