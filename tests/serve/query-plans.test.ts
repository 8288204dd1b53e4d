/**
 * The explorer's row pages use indexes, at the size of a 1M-row run: a real demo run's
 * Landscape is copied, ANALYZEd, and its statistics scaled to a million rows (so that
 * SQLite plans as it would for such a run), then EXPLAIN QUERY PLAN of every kind of row
 * page must search indexes only — never scan a table. Asserting the plan keeps the
 * check cheap; timings belong to benchmarks.
 */
import { assert, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect } from "effect"
import { copyFileSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll } from "vitest"
import { LandscapeReadOnly } from "../../src/landscape/read-only.js"
import { OUTCOME_COUNTS_SQL, outcomeCounts, queryPlan, type RowPageQuery, rowPageStatement, rowsPage } from "../../src/landscape/explorer-queries.js"
import { demoWorkspace } from "../support/explorer.js"

const MILLION = 1_000_000

/** Scales every index statistic to `rows` rows: averages above 1 grow with the table, unique keys stay 1. */
const scaleStatistics = (file: string, rows: number) => {
  const db = new Database(file)
  db.exec("ANALYZE")
  const stats = db.prepare("SELECT tbl, idx, stat FROM sqlite_stat1").all() as Array<{ tbl: string; idx: string | null; stat: string }>
  const update = db.prepare("UPDATE sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx IS ?")
  for (const s of stats) {
    const [n, ...avgs] = s.stat.split(" ").map(Number)
    const factor = rows / Math.max(1, n!)
    update.run([rows, ...avgs.map((a) => (a > 1 ? Math.round(a * factor) : a))].join(" "), s.tbl, s.idx)
  }
  db.close()
}

describe("row pages at 1M-row scale", () => {
  let url = ""
  let runId = ""

  beforeAll(async () => {
    const ws = await demoWorkspace()
    const file = join(mkdtempSync(join(tmpdir(), "rl-plans-")), "scaled.db")
    copyFileSync(ws.dbPath, file)
    scaleStatistics(file, MILLION)
    url = file
    runId = ws.runId
  }, 60_000)

  const variants: ReadonlyArray<readonly [string, Omit<RowPageQuery, "from" | "limit">, boolean]> = [
    ["all rows", {}, false],
    ["a rare outcome (found from the outcome index)", { outcome: "QUARANTINED" }, true],
    ["a common outcome (rows walked in order)", { outcome: "ROUTED" }, false],
    ["a sink", { sink: "large" }, false],
    ["an outcome and a sink", { outcome: "ROUTED", sink: "large" }, true],
    ["a field value", { field: { name: "customer", value: "Eve" } }, false]
  ]

  for (const [name, filter, selective] of variants) {
    it.effect(`${name}: searches indexes, scans no table`, () =>
      Effect.gen(function*() {
        const statement = rowPageStatement(runId, { ...filter, from: 500_000, limit: 51 }, selective)
        const plan = yield* queryPlan(statement.text, statement.params)
        assert.isAbove(plan.length, 0)
        if (process.env.SHOW_PLANS) console.log(name, plan)
        for (const line of plan) assert.notMatch(line, /^SCAN /, `${name}: ${plan.join(" | ")}`)
        assert.isTrue(plan.some((l) => /^SEARCH r USING ((COVERING )?INDEX sqlite_autoindex_ls_rows_[12]|INTEGER PRIMARY KEY)/.test(l)), plan.join(" | "))
        if (filter.outcome !== undefined || filter.sink !== undefined) {
          assert.isTrue(plan.some((l) => /SEARCH o USING (COVERING )?INDEX ls_token_outcomes_(run|token)/.test(l)), plan.join(" | "))
        }
      }).pipe(Effect.provide(LandscapeReadOnly(url))))
  }

  it.effect("the run's outcome counts come from the (run, outcome) index alone", () =>
    Effect.gen(function*() {
      const plan = yield* queryPlan(OUTCOME_COUNTS_SQL, [runId])
      // The run's key from its id, then the (run, outcome) index alone.
      assert.deepStrictEqual(
        plan.filter((l) => !/^SEARCH ls_token_outcomes USING COVERING INDEX ls_token_outcomes_run|^SCALAR SUBQUERY|^SEARCH runs USING INDEX sqlite_autoindex_runs_1/.test(l)),
        []
      )
      const counts = yield* outcomeCounts(runId)
      assert.deepStrictEqual(counts, { QUARANTINED: 1, ROUTED: 9 })
    }).pipe(Effect.provide(LandscapeReadOnly(url))))

  it.effect("the pages still hold the right rows with the scaled statistics", () =>
    Effect.gen(function*() {
      const rare = yield* rowsPage(runId, { outcome: "QUARANTINED", from: 0, limit: 5 })
      assert.deepStrictEqual(rare.rows.map((r) => r.row_index), [3])
      const common = yield* rowsPage(runId, { outcome: "ROUTED", from: 0, limit: 3 })
      assert.deepStrictEqual(common.rows.map((r) => r.row_index), [0, 1, 2])
      assert.strictEqual(common.next, 4)
    }).pipe(Effect.provide(LandscapeReadOnly(url))))
})
