/**
 * Live beads (`issues: {source: beads}`) through a stand-in `bd` (tests/fixtures/loop/
 * fake-bd.mjs, its state in a JSON file): ready work is claimed before it starts,
 * closed after integration or released when it fails; the ready set is polled again
 * as issues finish, so an issue unblocked by the run's own work is picked up; epics
 * are never worked, and are closed (after their trigger) when their children are.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeRunAbort } from "../../src/loop/abort.js"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { workable } from "../../src/loop/beads.js"
import { FIXTURES, fixture, git, tempDir } from "./helpers.js"
import { runScenario, scenario } from "./harness.js"

const FAKE_BD = NodePath.join(FIXTURES, "fake-bd.mjs")

interface TrackerIssue {
  readonly id: string
  readonly title: string
  readonly status?: string
  readonly priority?: number
  readonly issue_type?: string
  readonly depends_on?: ReadonlyArray<string>
  readonly parent?: string
}

/** A tracker state file; returns the `issues.command` that reaches it (and its call log). */
const tracker = (issues: ReadonlyArray<TrackerIssue>, env: Record<string, string> = {}) => {
  const dir = tempDir("rl-bd-")
  const state = NodePath.join(dir, "beads.json")
  NodeFs.writeFileSync(state, JSON.stringify({ issues: issues.map((i) => ({ status: "open", ...i })) }))
  const vars = Object.entries({ BD_STATE: state, ...env }).map(([k, v]) => `${k}=${v}`)
  return {
    command: ["env", ...vars, process.execPath, FAKE_BD].join(" "),
    dir,
    read: () => JSON.parse(NodeFs.readFileSync(state, "utf8")).issues as Array<TrackerIssue & { close_reason?: string }>,
    calls: () => NodeFs.readFileSync(`${state}.calls`, "utf8").split("\n").filter((l) => l !== "")
  }
}

const statusOf = (issues: ReadonlyArray<TrackerIssue>, id: string) => issues.find((i) => i.id === id)?.status

interface StageRow {
  readonly issue_id: string
  readonly stage: string
  readonly status: string
  readonly reason: string | null
  readonly result_json: string
}

const inspect = (sql: import("@effect/sql").SqlClient.SqlClient) =>
  Effect.all({
    run: sql<{ total_count: number; success_count: number }>`SELECT total_count, success_count FROM loop_runs`,
    issues: sql<{ issue_id: string; status: string }>`SELECT issue_id, status FROM loop_issues ORDER BY rowid`,
    stages: sql<StageRow>`SELECT issue_id, stage, status, reason, result_json FROM stage_results ORDER BY rowid`,
    epicCommands: sql<{ issue_id: string; ref: string; passed: number }>`
      SELECT issue_id, ref, passed FROM command_results WHERE stage = 'epic_completion'`
  })

describe("live beads", () => {
  it("orders the ready set by priority, leaving out epics, claimed and already taken issues", () => {
    const base = { title: "t", body: "", dependsOn: [] as Array<string>, status: "open", issueType: "task" }
    const ready = [
      { ...base, id: "low", priority: 3 },
      { ...base, id: "epic", priority: 0, issueType: "epic" },
      { ...base, id: "mine", priority: 0, status: "in_progress" },
      { ...base, id: "none", priority: null },
      { ...base, id: "high", priority: 1 },
      { ...base, id: "done", priority: 0 }
    ]
    assert.deepStrictEqual(workable(ready, new Set(["done"])).map((i) => i.id), ["high", "low", "none"])
  })

  it.live("claims before starting, closes after integration, picks up what the run unblocked, completes the epic", () =>
    Effect.gen(function*() {
      const bd = tracker([
        { id: "E", title: "the epic", issue_type: "epic", priority: 0 },
        { id: "A", title: "first", priority: 2, parent: "E" },
        { id: "B", title: "needs A", priority: 1, parent: "E", depends_on: ["A"] },
        { id: "C", title: "urgent", priority: 0 },
        { id: "D", title: "someone else's", priority: 0, status: "in_progress" }
      ])
      const seen = NodePath.join(bd.dir, "epic-seen.txt")
      const s = scenario({
        issues: { source: "beads", command: bd.command },
        max_agents: 1,
        implementer: { command: fixture("implementer-commit.sh") },
        commands: { epic_check: `test -f work-A.txt && test -f work-B.txt && echo "$EPIC_ID" >> ${seen}` },
        validation_triggers: { epic_completion: { commands: [{ ref: "epic_check" }] } }
      }, [])
      const { inspected, result } = yield* runScenario(s, { inspect })
      // C first (priority 0), then A; B only became ready when A was closed.
      assert.deepStrictEqual(result.issues.map((i) => [i.issue_id, i.status]), [["C", "success"], ["A", "success"], [
        "B",
        "success"
      ]])
      const after = bd.read()
      for (const id of ["A", "B", "C", "E"]) assert.strictEqual(statusOf(after, id), "closed", id)
      assert.strictEqual(statusOf(after, "D"), "in_progress")
      assert.include(after.find((i) => i.id === "A")!.close_reason!, result.run_id)
      // Each claim comes before its close, and B's claim after A's close.
      const calls = bd.calls()
      const at = (line: string) => calls.indexOf(line)
      for (const id of ["A", "B", "C"]) {
        assert.isAbove(at(`update ${id} --status in_progress`), -1, id)
        assert.isBelow(at(`update ${id} --status in_progress`), calls.findIndex((c) => c.startsWith(`close ${id} `)), id)
      }
      assert.isAbove(at("update B --status in_progress"), calls.findIndex((c) => c.startsWith("close A ")))
      assert.isFalse(calls.some((c) => c.startsWith("update E ") || c.startsWith("update D ")))
      // The epic: never an issue of the run; its trigger ran once on the integrated work, then it was closed.
      assert.deepStrictEqual(result.epics.map((e) => [e.epic_id, e.status]), [["E", "closed"]])
      assert.strictEqual(NodeFs.readFileSync(seen, "utf8"), "E\n")
      const { epicCommands, issues, run, stages } = inspected!
      assert.deepStrictEqual(issues.map((i) => [i.issue_id, i.status]), [["C", "success"], ["A", "success"], ["B", "success"]])
      assert.deepStrictEqual(run[0], { total_count: 3, success_count: 3 })
      assert.deepStrictEqual(epicCommands, [{ issue_id: "E", ref: "epic_check", passed: 1 }])
      const stagesOf = (id: string) => stages.filter((r) => r.issue_id === id).map((r) => `${r.stage}:${r.status}`)
      assert.deepStrictEqual(stagesOf("E"), ["epic_completion:pass", "close:pass"])
      assert.strictEqual(stagesOf("A")[0], "claim:pass")
      assert.strictEqual(stagesOf("A").at(-1), "close:pass")
      const claim = JSON.parse(stages.find((r) => r.issue_id === "A" && r.stage === "claim")!.result_json)
      assert.strictEqual(claim.exit_code, 0)
      assert.match(claim.command, / update A --status in_progress$/)
      // The work of all three is on the integration branch.
      const files = git(s.repo, "ls-tree", "-r", "--name-only", result.integration.branch!).split("\n")
      assert.includeMembers(files, ["work-A.txt", "work-B.txt", "work-C.txt"])
    }))

  it.live("releases a failed issue, skips one whose claim fails, and stops at --max-issues", () =>
    Effect.gen(function*() {
      const bd = tracker([
        { id: "F", title: "fails", priority: 0 },
        { id: "G", title: "claimed elsewhere", priority: 1 },
        { id: "H", title: "works", priority: 2 },
        { id: "I", title: "beyond the cap", priority: 3 }
      ], { BD_FAIL_CLAIM: "G" })
      const s = scenario({
        issues: { source: "beads", command: bd.command },
        max_agents: 1,
        implementer: { command: fixture("implementer-commit.sh") },
        finalize: { command: `test "$ISSUE_ID" != F` }
      }, [])
      const { inspected, result } = yield* runScenario(s, { inspect, run: { maxIssues: 2 } })
      assert.deepStrictEqual(result.issues.map((i) => [i.issue_id, i.status, i.reason]), [["F", "failed", "finalize_failed"], [
        "H",
        "success",
        null
      ]])
      assert.strictEqual(result.counts.total, 2)
      const after = bd.read()
      assert.deepStrictEqual(after.map((i) => [i.id, i.status]), [["F", "open"], ["G", "open"], ["H", "closed"], ["I", "open"]])
      // F was released after failing, and never claimed a second time though it was ready again.
      const calls = bd.calls()
      assert.strictEqual(calls.filter((c) => c === "update F --status in_progress").length, 1)
      assert.include(calls, "update F --status open")
      assert.isFalse(calls.some((c) => c.startsWith("update I ")))
      const { issues, stages } = inspected!
      assert.deepStrictEqual(issues.map((i) => i.issue_id), ["F", "H"])
      const g = stages.filter((r) => r.issue_id === "G")
      assert.deepStrictEqual(g.map((r) => [r.stage, r.status]), [["claim", "fail"]])
      assert.include(g[0]!.reason!, "already claimed")
      assert.deepStrictEqual(stages.filter((r) => r.issue_id === "F" && r.stage === "release").map((r) => r.status), ["pass"])
      assert.deepStrictEqual(s.lines.filter((l) => l.includes("claim failed")).length, 1)
    }))

  it.live("a hard kill interrupts the running issue, releases it to the tracker and claims nothing more", () =>
    Effect.gen(function*() {
      const bd = tracker([{ id: "Y", title: "hangs", priority: 0 }, { id: "Z", title: "later", priority: 1 }])
      const s = scenario({
        issues: { source: "beads", command: bd.command },
        max_agents: 1,
        implementer: { command: fixture("implementer-hang-once.sh", bd.dir, "Y", "60") }
      }, [])
      const abort = yield* makeRunAbort
      const hung = NodePath.join(bd.dir, "hung")
      yield* Effect.fork(Effect.gen(function*() {
        while (!NodeFs.existsSync(hung) || NodeFs.readFileSync(hung, "utf8").trim() === "") yield* Effect.sleep("50 millis")
        yield* abort.requestHardKill
      }))
      const { inspected, result } = yield* runScenario(s, { abort, inspect })
      assert.deepStrictEqual(result.issues.map((i) => [i.issue_id, i.status, i.reason]), [["Y", "interrupted", "killed"]])
      assert.strictEqual(result.status, "interrupted")
      assert.deepStrictEqual(bd.read().map((i) => [i.id, i.status]), [["Y", "open"], ["Z", "open"]])
      assert.include(bd.calls(), "update Y --status open")
      assert.isFalse(bd.calls().some((c) => c.startsWith("update Z ")))
      assert.isTrue(inspected!.stages.every((r) => r.status !== "running"), JSON.stringify(inspected!.stages))
      assert.deepStrictEqual(inspected!.issues, [{ issue_id: "Y", status: "interrupted" }])
    }))

  it.live("a tracker that does not answer fails the run before anything is recorded (issues.command named)", () =>
    Effect.gen(function*() {
      const s = scenario({
        issues: { source: "beads", command: `${process.execPath} -e process.exit(3)` },
        implementer: { command: fixture("implementer-commit.sh") }
      }, [])
      const error = yield* Effect.flip(runScenario(s))
      assert.strictEqual((error as { _tag: string })._tag, "LoopConfigError")
      assert.strictEqual((error as { key: string }).key, "issues.command")
      assert.include((error as { message: string }).message, "exit 3")
    }))

  it.live("an issues file with --max-issues works the first N in scheduling order, dependencies first", () =>
    Effect.gen(function*() {
      const s = scenario({ implementer: { command: fixture("implementer-commit.sh") } }, [
        { id: "A", title: "a", priority: 1 },
        { id: "B", title: "b needs C", priority: 0, depends_on: ["C"] },
        { id: "C", title: "c", priority: 5 }
      ])
      const { result } = yield* runScenario(s, { run: { maxIssues: 2 } })
      assert.strictEqual(result.counts.total, 2)
      // B is the most urgent, but C must come first; A is left for a later run.
      assert.sameMembers(result.issues.map((i) => i.issue_id), ["C", "B"])
      assert.isTrue(result.issues.every((i) => i.status === "success"))
    }))
})
