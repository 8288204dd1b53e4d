/**
 * The run's integration branch, through real git repositories: finished issues are
 * merged into it (merge or rebase), a conflict fails the issue with its paths, later
 * issues start from its head, run_end runs in its worktree and reviews base..head.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { FIXTURES, fixture, git, tempDir } from "./helpers.js"
import { issueFile, readIf, runScenario, scenario } from "./harness.js"

const approve = NodePath.join(FIXTURES, "review-approve.json")

/** An implementer writing `file` (with `content`); concurrent issues wait for each other at `barrier`. */
const edit = (file: string, content: string, barrier?: string, count = 2) =>
  barrier === undefined
    ? fixture("implementer-edit.sh", file, content)
    : fixture("implementer-edit.sh", file, content, barrier, String(count))

const filesOn = (repo: string, ref: string) => git(repo, "ls-tree", "-r", "--name-only", ref).split("\n").filter((l) => l !== "")
const merges = (repo: string, range: string) => git(repo, "rev-list", "--merges", range).split("\n").filter((l) => l !== "")

interface StageRow {
  readonly issue_id: string | null
  readonly status: string
  readonly reason: string | null
  readonly result_json: string
}

const inspectIntegration = (sql: import("@effect/sql").SqlClient.SqlClient) =>
  Effect.all({
    run: sql<{ integration_branch: string | null; integration_head: string | null; integration_strategy: string; base_sha: string }>`
      SELECT integration_branch, integration_head, integration_strategy, base_sha FROM loop_runs`,
    issues: sql<{ issue_id: string; status: string; reason: string | null; integration_sha: string | null }>`
      SELECT issue_id, status, reason, integration_sha FROM loop_issues ORDER BY issue_id`,
    stages: sql<StageRow>`SELECT issue_id, status, reason, result_json FROM stage_results WHERE stage = 'integration' ORDER BY rowid`
  })

describe("loop integration branch", () => {
  it.live("two issues editing different files: both merged, run_end sees both and reviews base..integration head", () =>
    Effect.gen(function*() {
      const barrier = tempDir("rl-barrier-")
      const s = scenario({
        max_agents: 2,
        implementer: { command: edit("work-$ISSUE_ID.txt", "by $ISSUE_ID", barrier) },
        commands: {
          both: "test -f work-A.txt && test -f work-B.txt && { echo \"branch=$RUNLEDGER_BRANCH\"; pwd; } > \"$ISSUE_DIR/seen.txt\""
        },
        reviewer: { command: fixture("reviewer-canned.sh", approve) },
        validation_triggers: { run_end: { commands: [{ ref: "both" }], code_review: { enabled: true } } }
      }, [{ id: "A", title: "a" }, { id: "B", title: "b" }])
      const base = git(s.repo, "rev-parse", "HEAD")
      const { inspected, result } = yield* runScenario(s, { inspect: inspectIntegration })
      const branch = `runledger/${result.run_id}/integration`
      assert.deepStrictEqual(result.issues.map((i) => [i.issue_id, i.status]), [["A", "success"], ["B", "success"]])
      assert.deepStrictEqual(result.integration.branch, branch)
      assert.strictEqual(result.integration.strategy, "merge")
      const head = git(s.repo, "rev-parse", branch)
      assert.strictEqual(result.integration.head, head)
      assert.includeMembers(filesOn(s.repo, branch), ["README.md", "work-A.txt", "work-B.txt"])
      // Both started from the base, so the second merge is a merge commit.
      assert.lengthOf(merges(s.repo, `${base}..${branch}`), 1)
      assert.deepStrictEqual(result.issues.map((i) => i.base_sha), [base, base])
      // run_end ran in the integration branch's worktree, with its branch, and reviewed base..head.
      assert.strictEqual(result.run_end.status, "pass", JSON.stringify(result.run_end))
      const seen = readIf(NodePath.join(result.run_dir, "run_end", "seen.txt"))
      assert.include(seen, `branch=${branch}`)
      assert.include(seen, `${result.run_id}.integration`)
      assert.include(readIf(NodePath.join(result.run_dir, "run_end", "reviews.log")), `head=${head} range=${base}..${head} diff=yes`)
      // Every command knew the repository and both branches.
      const seenA = readIf(issueFile(s, result.run_dir, "A", "seen.txt"))
      assert.include(seenA, `branch=runledger/${result.run_id}/A`)
      assert.include(seenA, `integration=${branch}`)
      assert.include(seenA, `repo=${s.repo}`)
      // The user's checkout is untouched.
      assert.strictEqual(git(s.repo, "rev-parse", "HEAD"), base)
      assert.strictEqual(git(s.repo, "status", "--porcelain"), "")
      // The record: the run's branch and head, each issue's merge, one passing stage each.
      const db = inspected!
      assert.deepStrictEqual({ ...db.run[0]! }, {
        integration_branch: branch,
        integration_head: head,
        integration_strategy: "merge",
        base_sha: base
      })
      assert.isTrue(db.issues.every((i) => i.integration_sha !== null))
      assert.strictEqual(db.issues.map((i) => i.integration_sha).filter((sha) => sha === head).length, 1)
      assert.deepStrictEqual(db.stages.map((st) => [st.issue_id, st.status]).sort(), [["A", "pass"], ["B", "pass"]])
      const modes = db.stages.map((st) => (JSON.parse(st.result_json) as { mode: string }).mode).sort()
      assert.deepStrictEqual(modes, ["fast_forward", "merge_commit"])
      for (const id of ["A", "B"]) assert.isTrue(s.lines.some((l) => l.startsWith(`[integration] merged: issue_id=${id}, sha=`)))
      // The integration worktree is gone with the run; its branch stays.
      assert.notInclude(git(s.repo, "worktree", "list"), ".integration")
    }))

  it.live("a dependent issue starts from the integration head and sees its dependency's file", () =>
    Effect.gen(function*() {
      const s = scenario({
        max_agents: 2,
        implementer: { command: edit("work-$ISSUE_ID.txt", "by $ISSUE_ID") }
      }, [{ id: "A", title: "a" }, { id: "B", title: "b", depends_on: ["A"] }])
      const base = git(s.repo, "rev-parse", "HEAD")
      const { result } = yield* runScenario(s)
      const [a, b] = result.issues
      assert.strictEqual(a!.status, "success")
      assert.strictEqual(b!.status, "success")
      assert.strictEqual(a!.base_sha, base)
      assert.strictEqual(b!.base_sha, a!.integration?.sha)
      assert.include(readIf(issueFile(s, result.run_dir, "B", "seen.txt")).split("\n"), "work-A.txt")
      // B built on A: two fast-forwards, no merge commit.
      assert.deepStrictEqual([a!.integration?.mode, b!.integration?.mode], ["fast_forward", "fast_forward"])
      assert.lengthOf(merges(s.repo, `${base}..${result.integration.branch!}`), 0)
    }))

  it.live("conflicting edits: the second issue fails integration_conflict with the path; the branch stays clean", () =>
    Effect.gen(function*() {
      const barrier = tempDir("rl-barrier-")
      const s = scenario({
        max_agents: 2,
        keep_worktrees: true,
        implementer: { command: edit("shared.txt", "from $ISSUE_ID", barrier) }
      }, [{ id: "A", title: "a" }, { id: "B", title: "b" }])
      const { inspected, result } = yield* runScenario(s, { inspect: inspectIntegration })
      const winner = result.issues.find((i) => i.status === "success")!
      const loser = result.issues.find((i) => i.status === "failed")!
      assert.isDefined(winner)
      assert.isDefined(loser)
      assert.strictEqual(loser.reason, "integration_conflict")
      assert.strictEqual(loser.integration?.status, "conflict")
      assert.deepStrictEqual(loser.integration?.conflicts, ["shared.txt"])
      assert.isNull(loser.integration?.sha)
      assert.include(s.lines, `[integration] conflict: issue_id=${loser.issue_id}, paths=shared.txt`)
      // The integration branch holds the winner's work only, and its worktree is not mid-merge.
      const branch = result.integration.branch!
      assert.strictEqual(git(s.repo, "show", `${branch}:shared.txt`), `from ${winner.issue_id}`)
      assert.strictEqual(git(s.repo, "rev-parse", branch), winner.integration?.sha)
      const worktree = NodePath.join(s.config.workdir, "worktrees", `${result.run_id}.integration`)
      assert.strictEqual(git(worktree, "status", "--porcelain"), "")
      assert.isFalse(NodeFs.existsSync(NodePath.join(git(worktree, "rev-parse", "--absolute-git-dir"), "MERGE_HEAD")))
      // Recorded: the issue's reason, and a failed integration stage listing the path.
      const db = inspected!
      assert.deepStrictEqual(
        db.issues.find((i) => i.issue_id === loser.issue_id),
        { issue_id: loser.issue_id, status: "failed", reason: "integration_conflict", integration_sha: null }
      )
      const stage = db.stages.find((st) => st.issue_id === loser.issue_id)!
      assert.strictEqual(stage.status, "fail")
      assert.strictEqual(stage.reason, "integration_conflict")
      assert.deepStrictEqual((JSON.parse(stage.result_json) as { conflicts: Array<string> }).conflicts, ["shared.txt"])
      assert.strictEqual(result.counts.failed, 1)
    }))

  it.live("strategy none: no integration branch; issues and run_end work on the repository as before", () =>
    Effect.gen(function*() {
      const s = scenario({
        integration: { strategy: "none" },
        implementer: { command: edit("work-$ISSUE_ID.txt", "by $ISSUE_ID") },
        commands: { where: "{ echo \"branch=$RUNLEDGER_BRANCH integration=$RUNLEDGER_INTEGRATION_BRANCH\"; pwd -P; } > \"$ISSUE_DIR/seen.txt\"" },
        validation_triggers: { run_end: { commands: [{ ref: "where" }] } }
      }, [{ id: "A", title: "a" }, { id: "B", title: "b" }])
      const base = git(s.repo, "rev-parse", "HEAD")
      const { inspected, result } = yield* runScenario(s, { inspect: inspectIntegration })
      assert.deepStrictEqual(result.issues.map((i) => i.status), ["success", "success"])
      assert.deepStrictEqual(result.integration, { strategy: "none", branch: null, base_sha: base, head: base })
      assert.strictEqual(git(s.repo, "branch", "--list", "runledger/*/integration"), "")
      // Without integration both issues start from the repository's HEAD, one after the other.
      assert.deepStrictEqual(result.issues.map((i) => i.base_sha), [base, base])
      assert.isTrue(result.issues.every((i) => i.integration === undefined || i.integration === null))
      const seen = readIf(NodePath.join(result.run_dir, "run_end", "seen.txt"))
      assert.include(seen, "branch=main integration=\n")
      assert.include(seen, NodeFs.realpathSync(s.repo))
      assert.deepStrictEqual(inspected!.stages, [])
      assert.strictEqual(inspected!.run[0]!.integration_branch, null)
    }))

  it.live("strategy rebase: the second issue is rebased onto the integration head; history stays linear", () =>
    Effect.gen(function*() {
      const barrier = tempDir("rl-barrier-")
      const s = scenario({
        max_agents: 2,
        integration: { strategy: "rebase", branch: "loop/{run_id}" },
        implementer: { command: edit("work-$ISSUE_ID.txt", "by $ISSUE_ID", barrier) }
      }, [{ id: "A", title: "a" }, { id: "B", title: "b" }])
      const base = git(s.repo, "rev-parse", "HEAD")
      const { result } = yield* runScenario(s)
      const branch = `loop/${result.run_id}`
      assert.strictEqual(result.integration.branch, branch)
      assert.deepStrictEqual(result.issues.map((i) => i.status), ["success", "success"])
      assert.includeMembers(filesOn(s.repo, branch), ["work-A.txt", "work-B.txt"])
      assert.lengthOf(merges(s.repo, `${base}..${branch}`), 0)
      assert.strictEqual(git(s.repo, "rev-list", "--count", `${base}..${branch}`), "2")
      assert.deepStrictEqual(result.issues.map((i) => i.integration?.mode), ["fast_forward", "fast_forward"])
      // The rebased issue's branch now ends at the integration head.
      const last = result.issues.find((i) => i.integration?.sha === git(s.repo, "rev-parse", branch))!
      assert.strictEqual(git(s.repo, "rev-parse", last.branch!), result.integration.head)
      assert.strictEqual(last.head_sha, result.integration.head)
    }))

  it.live("strategy rebase with conflicting edits: integration_conflict, the issue branch is left as it was", () =>
    Effect.gen(function*() {
      const barrier = tempDir("rl-barrier-")
      const s = scenario({
        max_agents: 2,
        integration: { strategy: "rebase" },
        implementer: { command: edit("shared.txt", "from $ISSUE_ID", barrier) }
      }, [{ id: "A", title: "a" }, { id: "B", title: "b" }])
      const { result } = yield* runScenario(s)
      const loser = result.issues.find((i) => i.status === "failed")!
      assert.strictEqual(loser.reason, "integration_conflict")
      assert.deepStrictEqual(loser.integration?.conflicts, ["shared.txt"])
      assert.strictEqual(git(s.repo, "show", `${loser.branch!}:shared.txt`), `from ${loser.issue_id}`)
      assert.strictEqual(git(s.repo, "rev-parse", loser.branch!), loser.head_sha)
    }))

  it.live("a configured integration branch that exists already is refused before the run starts", () =>
    Effect.gen(function*() {
      const s = scenario({
        integration: { branch: "loop-integration" },
        implementer: { command: edit("work-$ISSUE_ID.txt", "by $ISSUE_ID") }
      }, [{ id: "A", title: "a" }])
      git(s.repo, "branch", "loop-integration")
      const error = yield* Effect.flip(runScenario(s))
      assert.strictEqual(error._tag, "LoopConfigError")
      assert.include(error.message, "the branch exists already")
      assert.strictEqual(git(s.repo, "worktree", "list").split("\n").length, 1)
    }))

  it.live("two issue ids that read the same as branch names get branches of their own", () =>
    Effect.gen(function*() {
      const s = scenario({ implementer: { command: `echo "$ISSUE_ID" > "w$$.txt" && git add . && git commit -qm "$ISSUE_ID"` } }, [
        { id: "a/b", title: "slash" },
        { id: "a-b", title: "dash" }
      ])
      const { result } = yield* runScenario(s)
      assert.deepStrictEqual(result.issues.map((i) => i.status), ["success", "success"])
      const [first, second] = result.issues
      assert.strictEqual(first!.branch, `runledger/${result.run_id}/a-b`)
      assert.strictEqual(second!.branch, `runledger/${result.run_id}/a-b-r2`)
      assert.notStrictEqual(git(s.repo, "rev-parse", first!.branch!), git(s.repo, "rev-parse", second!.branch!))
    }))
})
