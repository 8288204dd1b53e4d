import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodePath from "node:path"
import { FIXTURES, fixture, git } from "./helpers.js"
import { issueFile, readIf, runScenario, scenario } from "./harness.js"

const fixtureJson = (name: string) => NodePath.join(FIXTURES, name)

describe("loop scenarios", () => {
  it.live("happy path: implementer → gate → session_end → review → finalize, then run_end", () =>
    Effect.gen(function*() {
      const s = scenario({
        max_agents: 2,
        implementer: { command: fixture("implementer-commit.sh") },
        commands: { test: "test -f work-$ISSUE_ID.txt", lint: "true" },
        gate: { commands: ["test"] },
        validation_triggers: {
          session_end: { commands: [{ ref: "test" }, { ref: "lint" }], code_review: { enabled: true } },
          run_end: { fire_on: "success", commands: [{ ref: "lint" }] }
        },
        reviewer: { command: fixture("reviewer-canned.sh", fixtureJson("review-approve.json")) },
        finalize: { command: "echo closed $ISSUE_ID" }
      }, [{ id: "A-1", title: "first" }, { id: "A-2", title: "second", priority: 0 }])
      const baseSha = git(s.repo, "rev-parse", "HEAD")
      const { inspected, result } = yield* runScenario(s, {
        inspect: (sql) =>
          Effect.all({
            runs: sql<{ status: string; success_count: number }>`SELECT status, success_count FROM loop_runs`,
            stages: sql<{ issue_id: string | null; stage: string; status: string }>`SELECT issue_id, stage, status FROM stage_results ORDER BY rowid`,
            commands: sql<{ n: number }>`SELECT COUNT(*) AS n FROM command_results`
          })
      })
      assert.strictEqual(result.status, "completed")
      assert.deepStrictEqual(result.issues.map((i) => [i.issue_id, i.status]), [["A-2", "success"], ["A-1", "success"]])
      for (const issue of result.issues) {
        assert.strictEqual(issue.base_sha, baseSha)
        assert.strictEqual(issue.session_end?.status, "pass")
        assert.deepStrictEqual(issue.session_end?.commands.map((c) => c.ref), ["test", "lint"])
        assert.strictEqual(issue.session_end?.code_review_result?.status, "approved")
        assert.strictEqual(issue.review?.status, "approved")
        assert.strictEqual(issue.gate_attempts, 1)
        // The branch carries the implementer's commit on top of base_sha.
        assert.strictEqual(git(s.repo, "rev-list", "--count", `${baseSha}..${issue.branch!}`), "1")
        const reviews = readIf(issueFile(s, result.run_dir, issue.issue_id, "reviews.log"))
        assert.include(reviews, `range=${baseSha}..`)
        assert.include(reviews, `session_end="status":"pass"`)
      }
      assert.strictEqual(result.run_end.status, "pass")
      assert.deepStrictEqual(inspected!.runs, [{ status: "completed", success_count: 2 }])
      assert.isTrue(inspected!.stages.every((st) => st.status !== "running"))
      assert.includeMembers(inspected!.stages.map((st) => st.stage), ["implementer", "gate", "session_end", "review", "finalize", "run_end"])
      assert.isAtLeast(inspected!.commands[0]!.n, 2 * 6 + 1)
      // R1 ordering per issue: gate passed, then session_end, then review.
      for (const id of ["A-1", "A-2"]) {
        const started = s.lines.indexOf(`[trigger] session_end started: issue_id=${id}`)
        const completed = s.lines.indexOf(`[trigger] session_end completed: issue_id=${id}, result=pass`)
        assert.isAbove(started, -1)
        assert.isAbove(completed, started)
      }
      assert.include(s.lines, "[trigger] run_end started: success_count=2, total_count=2")
      assert.include(s.lines, "[trigger] run_end completed: result=pass")
    }))

  it.live("gate failure (no change): no progress fails fast, session_end skipped with gate_failed, run_end not met", () =>
    Effect.gen(function*() {
      const s = scenario({
        implementer: { command: fixture("implementer-noop.sh") },
        commands: { test: "true" },
        gate: { commands: ["test"], max_retries: 3 },
        validation_triggers: { session_end: { commands: [{ ref: "test" }] }, run_end: { commands: [{ ref: "test" }] } }
      }, [{ id: "N-1", title: "nothing" }])
      const { inspected, result } = yield* runScenario(s, {
        inspect: (sql) => sql<{ status: string; reason: string }>`SELECT status, reason FROM stage_results WHERE stage = 'session_end'`
      })
      const issue = result.issues[0]!
      assert.strictEqual(issue.status, "failed")
      assert.strictEqual(issue.reason, "gate_no_progress")
      assert.strictEqual(issue.gate_attempts, 2)
      assert.deepStrictEqual(issue.session_end, {
        status: "skipped",
        started_at: null,
        finished_at: null,
        commands: [],
        code_review_result: null,
        reason: "gate_failed",
        validations: 0
      })
      assert.deepStrictEqual(inspected, [{ status: "skipped", reason: "gate_failed" }])
      assert.include(s.lines, "[trigger] session_end skipped: issue_id=N-1, reason=gate_failed")
      assert.notInclude(s.lines.join("\n"), "session_end started")
      assert.deepStrictEqual([result.run_end.status, result.run_end.reason], ["skipped", "fire_on_not_met"])
      assert.include(s.lines, "[trigger] run_end skipped: reason=fire_on_not_met")
      assert.strictEqual(result.status, "failed")
      // The retry got the gate's feedback.
      assert.include(readIf(issueFile(s, result.run_dir, "N-1", "feedback.md")), "No commit past base_sha")
    }))

  it.live("a resolution in RESULT_FILE passes without a commit and skips session_end and review", () =>
    Effect.gen(function*() {
      const s = scenario({
        implementer: { command: fixture("implementer-resolution.sh") },
        commands: { test: "true" },
        validation_triggers: { session_end: { commands: [{ ref: "test" }] } },
        reviewer: { command: "exit 9" }
      }, [{ id: "R-1", title: "already done" }])
      const { result } = yield* runScenario(s)
      assert.strictEqual(result.issues[0]!.status, "success")
      assert.strictEqual(result.issues[0]!.reason, "resolution:already_complete")
      assert.isNull(result.issues[0]!.review)
      assert.notInclude(s.lines.join("\n"), "session_end started")
    }))
})
