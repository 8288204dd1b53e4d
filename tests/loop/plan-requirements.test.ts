/**
 * The lifecycle plan's R3 and R8, checked on a real run (two issues in real worktrees,
 * a real in-memory Landscape): one run-level stage, run_end, and no run-level gate.
 * (R1, R2, R4–R7 and R9–R12 have their tests beside the code they cover: scenarios,
 * config, run-end, stages, loop-edges.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as Runledger from "../../src/index.js"
import * as Loop from "../../src/loop/index.js"
import { fixture } from "./helpers.js"
import { runScenario, scenario } from "./harness.js"

const twoIssuesWithRunEnd = () =>
  scenario({
    max_agents: 2,
    implementer: { command: fixture("implementer-commit.sh") },
    commands: { test: "true", build: "echo built" },
    gate: { commands: ["test"] },
    validation_triggers: { run_end: { commands: ["test", "build"] } }
  }, [{ id: "A", title: "a" }, { id: "B", title: "b" }])

const runStages = (sql: import("@effect/sql").SqlClient.SqlClient) =>
  Effect.all({
    runLevel: sql<{ stage: string; status: string }>`SELECT stage, status FROM stage_results WHERE issue_id IS NULL`,
    runLevelCommands: sql<{ stage: string; ref: string }>`
      SELECT stage, ref FROM command_results WHERE issue_id IS NULL ORDER BY rowid`,
    gates: sql<{ issue_id: string | null }>`SELECT issue_id FROM stage_results WHERE stage = 'gate'`
  })

describe("lifecycle plan", () => {
  it.live("R3: the run has one run-level stage, run_end, which runs the run's validation commands once", () =>
    Effect.gen(function*() {
      const s = twoIssuesWithRunEnd()
      const { inspected, result } = yield* runScenario(s, { inspect: runStages })
      assert.strictEqual(result.counts.success, 2)
      assert.strictEqual(result.run_end.status, "pass")
      // One row, one run of each command, one start line: there is no separate global validation.
      assert.deepStrictEqual(inspected!.runLevel, [{ stage: "run_end", status: "pass" }])
      assert.deepStrictEqual(inspected!.runLevelCommands, [{ stage: "run_end", ref: "test" }, { stage: "run_end", ref: "build" }])
      assert.lengthOf(s.lines.filter((l) => l.startsWith("[trigger] run_end started")), 1)
      const runEndLogs = NodeFs.readdirSync(NodePath.join(result.run_dir, "run_end")).filter((f) => f.endsWith(".log"))
      assert.lengthOf(runEndLogs, 2)
    }))

  it.live("R8: no run-level gate — gates run per issue only, no `[run] GATE` line, no run_validation entry point", () =>
    Effect.gen(function*() {
      const s = twoIssuesWithRunEnd()
      const { inspected } = yield* runScenario(s, { inspect: runStages })
      assert.sameMembers(inspected!.gates.map((g) => g.issue_id), ["A", "B"])
      assert.isFalse(s.lines.some((l) => /\[run\]\s*GATE/i.test(l)), s.lines.join("\n"))
      const events = NodeFs.readFileSync(
        NodePath.join(s.config.workdir, "runs", NodeFs.readdirSync(NodePath.join(s.config.workdir, "runs"))[0]!, "events.jsonl"),
        "utf8"
      )
      assert.notMatch(events, /GATE|global_validation/)
      for (const exports of [Object.keys(Runledger), Object.keys(Loop)]) {
        assert.isFalse(exports.some((k) => /run_?validation|globalValidation/i.test(k)), exports.join(","))
      }
    }))
})
