import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { makeRunAbort } from "../../src/loop/abort.js"
import { FIXTURES, fixture, isAlive, readPids } from "./helpers.js"
import { issueFile, readIf, runScenario, scenario } from "./harness.js"

const json = (name: string) => NodePath.join(FIXTURES, name)
const commit = { command: fixture("implementer-commit.sh") }

describe("session_end and review scenarios", () => {
  it.live("session_end timeout: commands=[], reason=session_end_timeout, whole group killed, review still runs", () =>
    Effect.gen(function*() {
      const s = scenario({
        implementer: commit,
        commands: { quick: "true", hang: fixture("stubborn-group.sh", "$ISSUE_DIR/pids") },
        validation_triggers: {
          session_end: { timeout: "700ms", commands: [{ ref: "quick" }, { ref: "hang" }] }
        },
        reviewer: { command: fixture("reviewer-canned.sh", json("review-approve.json")) }
      }, [{ id: "T-1", title: "slow checks" }])
      const { result } = yield* runScenario(s)
      const issue = result.issues[0]!
      assert.strictEqual(issue.session_end?.status, "timeout")
      assert.strictEqual(issue.session_end?.reason, "session_end_timeout")
      assert.deepStrictEqual(issue.session_end?.commands, [])
      const pids = readPids(issueFile(s, result.run_dir, "T-1", "pids"))
      assert.strictEqual(pids.length, 2)
      for (const pid of pids) assert.isFalse(isAlive(pid), `pid ${pid} survived the session_end timeout`)
      // session_end never fails the review by itself: the review saw it as evidence.
      assert.strictEqual(issue.review?.status, "approved")
      assert.include(readIf(issueFile(s, result.run_dir, "T-1", "reviews.log")), `"status":"timeout"`)
      assert.strictEqual(issue.status, "success")
      assert.include(s.lines, "[trigger] session_end completed: issue_id=T-1, result=timeout")
    }))

  it.live("remediation exhausted: 1 + max_retries validations, the fixer between them, fail max_retries_exhausted", () =>
    Effect.gen(function*() {
      const s = scenario({
        implementer: commit,
        commands: { check: "echo failing-check; exit 1" },
        validation_triggers: {
          session_end: { failure_mode: "remediate", max_retries: 2, commands: [{ ref: "check" }] }
        },
        fixer: { command: fixture("fixer-log-only.sh") }
      }, [{ id: "X-1", title: "never fixed" }])
      const { inspected, result } = yield* runScenario(s, {
        inspect: (sql) =>
          sql<{ ref: string }>`SELECT ref FROM command_results WHERE stage = 'session_end' ORDER BY rowid`
      })
      const se = result.issues[0]!.session_end!
      assert.strictEqual(se.status, "fail")
      assert.strictEqual(se.reason, "max_retries_exhausted")
      assert.strictEqual(se.validations, 3)
      const fixerLog = readIf(issueFile(s, result.run_dir, "X-1", "fixer.log")).trim().split("\n")
      assert.deepStrictEqual(fixerLog, [
        "trigger=session_end issue=X-1 attempt=1",
        "trigger=session_end issue=X-1 attempt=2"
      ])
      assert.deepStrictEqual(inspected!.map((r) => r.ref), ["check", "fixer", "check", "fixer", "check"])
      // No reviewer and continue-like outcome: the issue itself still succeeds (session_end is evidence).
      assert.strictEqual(result.issues[0]!.status, "success")
    }))

  it.live("production wiring calls the configured fixer, and a patch makes session_end pass", () =>
    Effect.gen(function*() {
      const s = scenario({
        implementer: commit,
        commands: { check: "test -f fixed.txt" },
        validation_triggers: {
          session_end: { failure_mode: "remediate", max_retries: 3, commands: [{ ref: "check" }] }
        },
        fixer: { command: fixture("fixer-patch.sh") }
      }, [{ id: "F-1", title: "fixable" }])
      const { result } = yield* runScenario(s)
      const se = result.issues[0]!.session_end!
      assert.strictEqual(se.status, "pass")
      assert.strictEqual(se.validations, 2)
      const log = readIf(issueFile(s, result.run_dir, "F-1", "fixer.log"))
      assert.match(log, /^trigger=session_end issue=F-1 attempt=1 failure_bytes=[1-9]/)
    }))

  it.live("a blocking review sends the implementer back with the findings; a parse error re-runs the reviewer once", () =>
    Effect.gen(function*() {
      const s = scenario({
        implementer: commit,
        reviewer: {
          command: fixture("reviewer-canned.sh", json("review-block.json"), json("review-approve.json")),
          max_retries: 1
        }
      }, [{ id: "B-1", title: "needs two rounds" }])
      const { result } = yield* runScenario(s)
      const issue = result.issues[0]!
      assert.strictEqual(issue.status, "success")
      assert.strictEqual(issue.review_rounds, 2)
      assert.strictEqual(issue.gate_attempts, 2)
      assert.include(readIf(issueFile(s, result.run_dir, "B-1", "feedback-seen-1.md")), "[P1] Missing test")

      const g = scenario({
        implementer: commit,
        reviewer: { command: fixture("reviewer-canned.sh", json("review-garbage.txt")) }
      }, [{ id: "G-1", title: "bad reviewer" }])
      const garbage = yield* runScenario(g)
      assert.strictEqual(garbage.result.issues[0]!.status, "failed")
      assert.strictEqual(garbage.result.issues[0]!.reason, "review_parse_error")
      assert.strictEqual(readIf(issueFile(g, garbage.result.run_dir, "G-1", "review-count")).trim(), "2")
    }))
})

describe("abort and SIGINT", () => {
  it.live("failure_mode abort with concurrent issues: in-flight finish their command, pending never start, run_end skipped", () =>
    Effect.gen(function*() {
      const s = scenario({
        max_agents: 2,
        implementer: { command: `if [ "$ISSUE_ID" = A ]; then ${fixture("implementer-commit.sh")}; else ${fixture("implementer-sleep.sh", "1.5")}; fi` },
        commands: { check: `test "$ISSUE_ID" != A` },
        validation_triggers: {
          session_end: { failure_mode: "abort", commands: [{ ref: "check" }] },
          run_end: { fire_on: "both", commands: [{ ref: "check" }] }
        }
      }, [{ id: "A", title: "fails", priority: 0 }, { id: "B", title: "slow", priority: 1 }, { id: "C", title: "pending" }, {
        id: "D",
        title: "pending"
      }])
      const { inspected, result } = yield* runScenario(s, {
        inspect: (sql) =>
          Effect.all({
            run: sql<{ status: string; reason: string }>`SELECT status, reason FROM loop_runs`,
            bCommands: sql<{ ref: string }>`SELECT ref FROM command_results WHERE issue_id = 'B'`
          })
      })
      const byId = Object.fromEntries(result.issues.map((i) => [i.issue_id, i]))
      assert.deepStrictEqual([byId.A!.status, byId.A!.reason], ["failed", "session_end_failed"])
      // B starts alongside A, so A's abort may land before B's first command: then B did
      // no work and is skipped like a pending issue. Otherwise its running implementer
      // was not killed: it finished its work, and B ended interrupted.
      const bFinished = NodeFs.existsSync(issueFile(s, result.run_dir, "B", "implementer-finished"))
      if (byId.B!.status === "skipped") {
        assert.deepStrictEqual([byId.B!.reason, byId.B!.gate_attempts, bFinished], ["run_aborted", 0, false])
        assert.deepStrictEqual(inspected!.bCommands, [])
      } else {
        assert.deepStrictEqual([byId.B!.status, byId.B!.reason, bFinished], ["interrupted", "run_aborted", true])
        assert.deepStrictEqual(inspected!.bCommands, [{ ref: "implementer" }])
      }
      assert.deepStrictEqual([byId.C!.status, byId.C!.reason], ["skipped", "run_aborted"])
      assert.deepStrictEqual([byId.D!.status, byId.D!.reason], ["skipped", "run_aborted"])
      assert.deepStrictEqual([result.run_end.status, result.run_end.reason], ["skipped", "run_aborted"])
      assert.include(s.lines, "[trigger] run_end skipped: reason=run_aborted")
      assert.deepStrictEqual(inspected!.run, [{ status: "failed", reason: "run_aborted" }])
    }))

  it.live("failure_mode abort while another issue's implementer runs: that command finishes, the issue ends interrupted", () =>
    Effect.gen(function*() {
      // A's check waits until B's implementer has started, so the abort lands mid-command.
      const s = scenario({
        max_agents: 2,
        implementer: {
          command: `if [ "$ISSUE_ID" = A ]; then ${fixture("implementer-commit.sh")}; else touch "$ISSUE_DIR/implementer-started"; ${
            fixture("implementer-sleep.sh", "0.5")
          }; fi`
        },
        commands: { check: `while [ ! -f "$ISSUE_DIR/../B/implementer-started" ]; do sleep 0.02; done; test "$ISSUE_ID" != A` },
        validation_triggers: { session_end: { failure_mode: "abort", commands: [{ ref: "check" }] } }
      }, [{ id: "A", title: "fails", priority: 0 }, { id: "B", title: "slow", priority: 1 }])
      const { result } = yield* runScenario(s)
      const byId = Object.fromEntries(result.issues.map((i) => [i.issue_id, i]))
      assert.deepStrictEqual([byId.A!.status, byId.A!.reason], ["failed", "session_end_failed"])
      assert.deepStrictEqual([byId.B!.status, byId.B!.reason], ["interrupted", "run_aborted"])
      assert.isTrue(NodeFs.existsSync(issueFile(s, result.run_dir, "B", "implementer-finished")))
      assert.strictEqual(byId.B!.session_end, null)
    }))

  it.live("R10: an issue in session_end when another issue aborts the run is still reviewed, then ends interrupted", () =>
    Effect.gen(function*() {
      // A's check fails once B's check is running, so the abort lands inside B's session_end.
      const s = scenario({
        max_agents: 2,
        implementer: commit,
        commands: {
          check:
            `if [ "$ISSUE_ID" = A ]; then while [ ! -f "$ISSUE_DIR/../B/se-started" ]; do sleep 0.02; done; exit 1; else touch "$ISSUE_DIR/se-started"; sleep 0.5; fi`,
          after: `touch "$ISSUE_DIR/after-ran"`
        },
        validation_triggers: { session_end: { failure_mode: "abort", commands: [{ ref: "check" }, { ref: "after" }] } },
        reviewer: { command: fixture("reviewer-canned.sh", json("review-approve.json")) }
      }, [{ id: "A", title: "fails", priority: 0 }, { id: "B", title: "in session_end", priority: 1 }])
      const { inspected, result } = yield* runScenario(s, {
        inspect: (sql) => sql<{ issue_id: string; status: string }>`SELECT issue_id, status FROM stage_results WHERE stage = 'review'`
      })
      const byId = Object.fromEntries(result.issues.map((i) => [i.issue_id, i]))
      assert.deepStrictEqual([byId.A!.status, byId.A!.reason, byId.A!.review], ["failed", "session_end_failed", null])
      assert.deepStrictEqual([byId.B!.session_end?.status, byId.B!.session_end?.reason], ["interrupted", "run_aborted"])
      assert.deepStrictEqual(byId.B!.session_end?.commands.map((c) => [c.ref, c.passed]), [["check", true]])
      assert.isFalse(NodeFs.existsSync(issueFile(s, result.run_dir, "B", "after-ran")))
      assert.strictEqual(byId.B!.review?.status, "approved")
      assert.include(readIf(issueFile(s, result.run_dir, "B", "reviews.log")), `"status":"interrupted"`)
      assert.deepStrictEqual([byId.B!.status, byId.B!.reason], ["interrupted", "run_aborted"])
      assert.deepStrictEqual(inspected, [{ issue_id: "B", status: "approved" }])
      assert.deepStrictEqual([result.status, result.reason], ["failed", "run_aborted"])
    }))

  it.live("a drain mid-command (the first Ctrl-C): the command finishes, the issue is interrupted, run_end skipped", () =>
    Effect.gen(function*() {
      const s = scenario({
        implementer: { command: fixture("implementer-sleep.sh", "1") },
        commands: { check: "true" },
        validation_triggers: { run_end: { fire_on: "both", commands: [{ ref: "check" }] } }
      }, [{ id: "S-1", title: "interrupted" }, { id: "S-2", title: "never starts" }])
      const abort = yield* makeRunAbort
      const fiber = yield* Effect.fork(runScenario(s, {
        abort,
        inspect: (sql) =>
          sql<{ stage: string; passed: number; exit_code: number }>`SELECT stage, passed, exit_code FROM command_results`
      }))
      yield* Effect.sleep("400 millis")
      // What the CLI's SIGINT owner does on the first Ctrl-C (cli/loop.ts; the real
      // signal through the built CLI is covered by tests/e2e/loop-signals.test.ts).
      yield* abort.request("sigint")
      const { inspected, result } = yield* Fiber.join(fiber)
      const issue = result.issues.find((i) => i.issue_id === "S-1")!
      assert.strictEqual(issue.status, "interrupted")
      assert.strictEqual(issue.reason, "sigint")
      assert.deepStrictEqual(inspected, [{ stage: "implementer", passed: 1, exit_code: 0 }])
      assert.strictEqual(result.issues.find((i) => i.issue_id === "S-2")!.status, "skipped")
      assert.strictEqual(result.status, "interrupted")
      assert.deepStrictEqual([result.run_end.status, result.run_end.reason], ["skipped", "sigint"])
    }))

  it.live("second SIGINT kills everything now: the process group dies without waiting for the grace period", () =>
    Effect.gen(function*() {
      const s = scenario({
        kill_grace: "60s",
        implementer: { command: fixture("stubborn-group.sh", "$ISSUE_DIR/pids") }
      }, [{ id: "K-1", title: "stubborn" }])
      const abort = yield* makeRunAbort
      const fiber = yield* Effect.fork(runScenario(s, {
        abort,
        inspect: (sql) => sql<{ status: string; reason: string }>`SELECT status, reason FROM loop_issues`
      }))
      const pidfile = () => {
        const root = NodePath.join(s.dir, "work", "runs")
        const runs = NodeFs.existsSync(root) ? NodeFs.readdirSync(root) : []
        return runs.length === 0 ? "" : NodePath.join(s.dir, "work", "runs", runs[0]!, "issues", "K-1", "pids")
      }
      while (readPids(pidfile()).length < 2) yield* Effect.sleep("20 millis")
      const pids = readPids(pidfile())
      yield* abort.request("sigint")
      yield* abort.requestHardKill
      const { inspected, result } = yield* Fiber.join(fiber)
      for (const pid of pids) assert.isFalse(isAlive(pid), `pid ${pid} survived`)
      assert.strictEqual(result.status, "interrupted")
      assert.deepStrictEqual(inspected, [{ status: "interrupted", reason: "killed" }])
    }))
})
