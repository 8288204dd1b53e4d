import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer, Option } from "effect"
import { execFileSync } from "node:child_process"
import * as NodeOs from "node:os"
import { LoopRecorderSql } from "../../src/landscape/loop-recorder.js"
import { LandscapeSql } from "../../src/landscape/sqlite.js"
import { makeRunAbort } from "../../src/loop/abort.js"
import { parseLoopConfig } from "../../src/loop/config.js"
import { parseBeads, parseIssueFile, orderIssues } from "../../src/loop/issues.js"
import type { StageContext } from "../../src/loop/results.js"
import { fireOnMet, runRunEnd } from "../../src/loop/run-end.js"
import { NoFixer } from "../../src/services/fixer.js"
import { listLoopRuns, listLoopStages, LoopRecorder } from "../../src/services/loop-recorder.js"
import { tempDir } from "./helpers.js"

const runEndConfig = (fireOn: string, extra: Record<string, unknown> = {}) => {
  const config = Either.getOrThrow(parseLoopConfig({
    implementer: { command: "true" },
    commands: { ok: "true", bad: "false" },
    reviewer: { command: `echo '{"verdict":"approve","findings":[]}'` },
    validation_triggers: { run_end: { fire_on: fireOn, commands: [{ ref: "ok" }], ...extra } }
  }, "/x/loop.yaml", "/x"))
  return config
}

const ctxOf = (lines: Array<string>) =>
  Effect.map(makeRunAbort, (abort): StageContext => {
    let i = 0
    return {
      runId: "r",
      issueId: null,
      cwd: tempDir(),
      env: {},
      logDir: tempDir(),
      graceMs: 200,
      abort,
      emit: (line) => Effect.sync(() => lines.push(line)),
      onCommand: () => Effect.void,
      nextLogIndex: () => ++i
    }
  })

describe("run_end", () => {
  // The spec's truth table, plus the (0, 0) row.
  const table: Array<[number, number, Record<string, boolean>]> = [
    [0, 3, { success: false, failure: true, both: true }],
    [3, 0, { success: true, failure: false, both: true }],
    [2, 1, { success: true, failure: true, both: true }],
    [0, 0, { success: false, failure: false, both: false }]
  ]

  it("fire_on is any-match (pure truth table)", () => {
    for (const [s, f, expected] of table) {
      for (const fireOn of ["success", "failure", "both"] as const) {
        assert.strictEqual(fireOnMet(fireOn, s, f), expected[fireOn], `fire_on=${fireOn} success=${s} failure=${f}`)
      }
    }
  })

  it.live("the full fire_on truth table through runRunEnd, with real commands and event lines", () =>
    Effect.gen(function*() {
      for (const [s, f, expected] of table) {
        for (const fireOn of ["success", "failure", "both"] as const) {
          const lines: Array<string> = []
          const ctx = yield* ctxOf(lines)
          const config = runEndConfig(fireOn)
          const result = yield* runRunEnd({
            ctx,
            config: config.runEnd,
            successCount: s,
            failureCount: f,
            totalCount: s + f,
            aborted: Option.none(),
            codeReview: Effect.die("no review"),
            fixerCommand: ""
          })
          if (expected[fireOn]) {
            assert.strictEqual(result.status, "pass")
            assert.deepStrictEqual(lines, [
              `[trigger] run_end started: success_count=${s}, total_count=${s + f}`,
              "[trigger] run_end completed: result=pass"
            ])
          } else {
            assert.deepStrictEqual([result.status, result.reason], ["skipped", "fire_on_not_met"])
            assert.deepStrictEqual(lines, ["[trigger] run_end skipped: reason=fire_on_not_met"])
          }
        }
      }
    }).pipe(Effect.provide(Layer.merge(NodeContext.layer, NoFixer))))

  it.live("failure_mode gates the code review; review-only run_end runs the reviewer alone", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const review = Effect.succeed({
        status: "approved" as const,
        verdict: "approve",
        findings: [],
        blocking: [],
        error: null,
        command: null
      })
      let reviews = 0
      const counted = Effect.zipLeft(review, Effect.sync(() => reviews++))
      const run = (extra: Record<string, unknown>) =>
        Effect.gen(function*() {
          const config = runEndConfig("both", { code_review: { enabled: true }, ...extra })
          return yield* runRunEnd({
            ctx: yield* ctxOf(lines),
            config: config.runEnd,
            successCount: 1,
            failureCount: 0,
            totalCount: 1,
            aborted: Option.none(),
            codeReview: counted,
            fixerCommand: ""
          })
        })
      const aborting = yield* run({ failure_mode: "abort", commands: [{ ref: "bad" }] })
      assert.deepStrictEqual([aborting.status, aborting.reason, reviews], ["fail", "commands_failed", 0])
      const continuing = yield* run({ failure_mode: "continue", commands: [{ ref: "bad" }] })
      assert.deepStrictEqual([continuing.status, continuing.reason, reviews], ["fail", "commands_failed", 1])
      const reviewOnly = yield* run({ commands: [] })
      assert.deepStrictEqual([reviewOnly.status, reviewOnly.commands.length, reviews], ["pass", 0, 2])
      const skipped = yield* runRunEnd({
        ctx: yield* ctxOf(lines),
        config: runEndConfig("both").runEnd,
        successCount: 1,
        failureCount: 0,
        totalCount: 1,
        aborted: Option.some("run_aborted"),
        codeReview: counted,
        fixerCommand: ""
      })
      assert.deepStrictEqual([skipped.status, skipped.reason], ["skipped", "run_aborted"])
    }).pipe(Effect.provide(Layer.merge(NodeContext.layer, NoFixer))))
})

describe("recording", () => {
  it.effect("a run whose owning process died reads interrupted, reason=process_crash, stages too", () =>
    Effect.gen(function*() {
      const recorder = yield* LoopRecorder
      const sql = yield* SqlClient.SqlClient
      yield* recorder.beginRun({
        runId: "crashed",
        startedAt: "2026-01-01T00:00:00.000Z",
        configFile: "loop.yaml",
        configJson: "{}",
        repo: "/r",
        runDir: "/d",
        maxAgents: 1,
        issues: [{ id: "I-1", title: "t", priority: null }]
      })
      yield* recorder.startStage({ runId: "crashed", issueId: "I-1", stage: "implementer", attempt: 1, startedAt: "2026-01-01T00:00:01.000Z" })
      // A pid that certainly no longer exists: a child that already exited.
      const deadPid = Number(execFileSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).trim())
      yield* sql`UPDATE loop_runs SET owner_pid = ${deadPid} WHERE run_id = 'crashed'`
      const runs = yield* listLoopRuns()
      assert.deepStrictEqual(runs, [{
        run_id: "crashed",
        kind: "loop",
        status: "interrupted",
        reason: "process_crash",
        started_at: "2026-01-01T00:00:00.000Z",
        completed_at: null,
        counts: { total: 1, success: 0, failed: 0, interrupted: 0, skipped: 0 }
      }])
      const stages = yield* listLoopStages("crashed")
      assert.deepStrictEqual(stages.map((st) => [st.stage, st.status, st.reason]), [["implementer", "interrupted", "process_crash"]])
      // The same trail owned by a live process (this one) is still running.
      yield* sql`UPDATE loop_runs SET owner_pid = ${process.pid}, owner_host = ${NodeOs.hostname()} WHERE run_id = 'crashed'`
      assert.strictEqual((yield* listLoopRuns())[0]!.status, "running")
    }).pipe(Effect.provide(LoopRecorderSql.pipe(Layer.provideMerge(LandscapeSql(":memory:")), Layer.orDie))))
})

describe("issue sources", () => {
  it("reads YAML issues and orders them by dependencies, then priority", () => {
    const issues = Either.getOrThrow(parseIssueFile(
      "- {id: a, title: A, priority: 2, depends_on: [c]}\n- {id: b, title: B, priority: 1}\n- {id: c, title: C, priority: 3}\n",
      "issues.yaml"
    ))
    assert.deepStrictEqual(Either.getOrThrow(orderIssues(issues, "issues.yaml")).map((i) => i.id), ["b", "c", "a"])
    const cyclic = Either.getOrThrow(parseIssueFile("- {id: a, title: A, depends_on: [b]}\n- {id: b, title: B, depends_on: [a]}\n", "f"))
    assert.isTrue(Either.isLeft(orderIssues(cyclic, "f")))
    assert.isTrue(Either.isLeft(parseIssueFile("- {id: a, title: A, colour: red}\n", "f")))
  })

  it("reads beads: open issues whose blocking dependencies are closed", () => {
    const lines = [
      { id: "bd-1", title: "closed dep", status: "closed" },
      { id: "bd-2", title: "ready", status: "open", priority: 1, dependencies: [{ issue_id: "bd-2", depends_on_id: "bd-1", type: "blocks" }] },
      { id: "bd-3", title: "blocked", status: "open", dependencies: [{ issue_id: "bd-3", depends_on_id: "bd-4", type: "blocks" }] },
      { id: "bd-4", title: "in progress", status: "in_progress" },
      { id: "bd-5", title: "related only", status: "open", description: "body", dependencies: [{ depends_on_id: "bd-4", type: "related" }] }
    ].map((l) => JSON.stringify(l)).join("\n")
    const issues = Either.getOrThrow(parseBeads(lines, ".beads/issues.jsonl"))
    assert.deepStrictEqual(issues.map((i) => i.id), ["bd-2", "bd-5"])
    assert.strictEqual(issues[1]!.body, "body")
  })
})
