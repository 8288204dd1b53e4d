/**
 * Reading a loop run back through the built CLI (`loop status`, `loop logs`), human
 * results on stdout (`runs > file` keeps them), and the checks `loop` makes before it
 * starts: a repository that is not a git repository, uncommitted changes, a
 * `depends_on` naming an unknown issue — each exit 2 with the path or id named.
 */
import { execFileSync } from "node:child_process"
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { fixture, git, makeRepo, tempDir } from "../loop/helpers.js"
import { BIN, runCliIn } from "../support/cli.js"

interface StatusJson {
  readonly run_id: string
  readonly status: string
  readonly counts: { readonly total: number; readonly success: number }
  readonly issues: ReadonlyArray<{
    readonly issue_id: string
    readonly status: string
    readonly gate_attempts: number
    readonly duration_ms: number | null
    readonly stages: ReadonlyArray<{ stage: string; attempt: number; status: string; duration_ms: number | null }>
  }>
  readonly run_stages: ReadonlyArray<{ stage: string; status: string }>
}

const issues = [
  { id: "A-1", title: "first" },
  { id: "A-2", title: "second", depends_on: ["A-1"] }
]

/** A folder with a loop config, an issues file and a fresh repository beside it. */
const setup = (extra: Record<string, unknown> = {}) => {
  const dir = tempDir("rl-loop-inspect-")
  const repo = makeRepo()
  writeFileSync(join(dir, "issues.yaml"), YAML.stringify(issues))
  writeFileSync(join(dir, "loop.yaml"), YAML.stringify({
    repo,
    issues: "issues.yaml",
    workdir: "work",
    kill_grace: "300ms",
    implementer: { command: fixture("implementer-commit.sh") },
    commands: { test: "echo testing-output; true", lint: { command: "echo lint-output >&2; exit 3", allow_fail: true } },
    gate: { commands: ["test", { ref: "lint" }] },
    validation_triggers: {
      session_end: { commands: [{ ref: "test" }] },
      run_end: { commands: [{ command: "echo run-end-output" }] }
    },
    ...extra
  }))
  return { dir, repo, db: join(dir, "audit.db"), config: join(dir, "loop.yaml") }
}

describe("runledger loop status / logs", () => {
  let s: ReturnType<typeof setup>
  let runId = ""

  beforeAll(async () => {
    s = setup()
    const r = await runCliIn(s.dir, ["loop", "-c", s.config, "--db", s.db, "--json"])
    expect(r.status, r.stderr).toBe(0)
    runId = (JSON.parse(r.stdout) as { run_id: string }).run_id
  }, 60_000)

  it("status: the run, each issue with its stages, attempts and durations, and the run_end — on stdout", async () => {
    const r = await runCliIn(s.dir, ["loop", "status", "--db", s.db])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toBe("")
    expect(r.stdout).toContain(`loop ${runId}: completed — 2/2 succeeded`)
    expect(r.stdout).toMatch(/^ISSUE +STATUS +GATE +REVIEW +DURATION +TITLE$/m)
    expect(r.stdout).toMatch(/^A-1 +success +1 +0 +\d+\.\d+s +first$/m)
    expect(r.stdout).toMatch(/^A-2 +success +1 +0 +\d+\.\d+s +second$/m)
    expect(r.stdout).toMatch(/^ {4}gate +1 +pass +\d+\.\d+s$/m)
    expect(r.stdout).toMatch(/^ {4}session_end +1 +pass +\d+\.\d+s$/m)
    expect(r.stdout).toMatch(/^run_end: pass$/m)
    expect(r.stdout).toMatch(/^ {4}run_end +1 +pass +\d+\.\d+s$/m)

    const j = await runCliIn(s.dir, ["loop", "status", "--db", s.db, "--run", runId, "--json"])
    expect(j.status, j.stderr).toBe(0)
    const doc = JSON.parse(j.stdout) as StatusJson
    expect(doc.run_id).toBe(runId)
    expect(doc.counts).toMatchObject({ total: 2, success: 2 })
    expect(doc.issues.map((i) => [i.issue_id, i.status, i.gate_attempts])).toEqual([["A-1", "success", 1], ["A-2", "success", 1]])
    for (const issue of doc.issues) {
      expect(issue.stages.map((st) => st.stage)).toEqual(["implementer", "gate", "session_end", "integration"])
      for (const st of issue.stages) expect(st.duration_ms).toBeGreaterThanOrEqual(0)
    }
    expect(doc.run_stages).toEqual([expect.objectContaining({ stage: "run_end", status: "pass" })])
  })

  it("logs: every command's output from its log file, headed by stage, attempt, ref and exit; --stage keeps one", async () => {
    const all = await runCliIn(s.dir, ["loop", "logs", "A-1", "--db", s.db])
    expect(all.status, all.stderr).toBe(0)
    expect(all.stdout).toMatch(/^== implementer #1 implementer: exit 0, /m)
    expect(all.stdout).toContain("committed")
    expect(all.stdout).toMatch(/^== gate #1 test: exit 0, [\d.]+s\n\$ echo testing-output; true\n\(log .*gate-test\.log\)\ntesting-output$/m)
    expect(all.stdout).toMatch(/^== gate #1 lint: exit 3 \(failed\), /m)
    expect(all.stdout).toContain("lint-output")
    expect(all.stdout).toMatch(/^== session_end #1 test: exit 0/m)

    const gate = await runCliIn(s.dir, ["loop", "logs", "A-1", "--stage", "gate", "--db", s.db, "--run", "latest"])
    expect(gate.status, gate.stderr).toBe(0)
    expect(gate.stdout).not.toContain("== implementer")
    expect(gate.stdout.match(/^== /gm)).toHaveLength(2)

    const runEnd = await runCliIn(s.dir, ["loop", "logs", "run_end", "--db", s.db])
    expect(runEnd.status, runEnd.stderr).toBe(0)
    expect(runEnd.stdout).toMatch(/^== run_end #1 run_end-1: exit 0/m)
    expect(runEnd.stdout).toContain("run-end-output")
  })

  it("logs falls back to the output tail recorded in the Landscape when the log file is gone, and says so", async () => {
    const j = await runCliIn(s.dir, ["loop", "logs", "A-2", "--stage", "gate", "--db", s.db, "--json"])
    const logs = JSON.parse(j.stdout) as Array<{ ref: string; log_file: string }>
    const testLog = logs.find((l) => l.ref === "test")!.log_file
    expect(existsSync(testLog)).toBe(true)
    rmSync(testLog)
    const r = await runCliIn(s.dir, ["loop", "logs", "A-2", "--stage", "gate", "--db", s.db])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain(`(log ${testLog} is gone; the output tail recorded in the Landscape follows)\ntesting-output`)
  })

  it("exit 2 for a missing Landscape (not created), an unknown run, issue or stage", async () => {
    const missing = join(s.dir, "nope.db")
    for (const args of [["loop", "status", "--db", missing], ["loop", "logs", "A-1", "--db", missing]]) {
      const r = await runCliIn(s.dir, args)
      expect(r.status).toBe(2)
      expect(r.stderr).toContain(`runledger: no Landscape at ${missing}`)
      expect(existsSync(missing)).toBe(false)
    }
    const run = await runCliIn(s.dir, ["loop", "status", "--db", s.db, "--run", "loop-nope"])
    expect(run.status).toBe(2)
    expect(run.stderr).toContain(`no loop run loop-nope in ${s.db}; loop runs (newest first): ${runId}`)
    const issue = await runCliIn(s.dir, ["loop", "logs", "Z-9", "--db", s.db])
    expect(issue.status).toBe(2)
    expect(issue.stderr).toContain(`run ${runId} has no issue Z-9; its issues: A-1, A-2`)
    const stage = await runCliIn(s.dir, ["loop", "logs", "A-1", "--stage", "review", "--db", s.db])
    expect(stage.status).toBe(2)
    expect(stage.stderr).toContain("stages with commands: implementer, gate, session_end")
  })

  it("`runs > file` keeps the table: human results go to stdout", async () => {
    const out = join(s.dir, "runs.txt")
    execFileSync("sh", ["-c", `"${process.execPath}" "${BIN}" runs --db "${s.db}" > "${out}"`], { cwd: s.dir, stdio: ["ignore", "ignore", "pipe"] })
    const text = readFileSync(out, "utf8")
    expect(text).toMatch(/^RUN +KIND +STATUS/)
    expect(text).toContain(runId)
  })
})

describe("runledger loop: checks before a run starts", () => {
  it("uncommitted changes to tracked files are refused (exit 2, the paths named); --allow-dirty runs with a warning", async () => {
    const s = setup()
    appendFileSync(join(s.repo, "README.md"), "an edit\n")
    writeFileSync(join(s.repo, "staged.txt"), "new\n")
    git(s.repo, "add", "staged.txt")
    writeFileSync(join(s.repo, "untracked.txt"), "does not count\n")
    const refused = await runCliIn(s.dir, ["loop", "-c", s.config, "--db", s.db])
    expect(refused.status).toBe(2)
    expect(refused.stderr).toContain(
      `runledger: repo ${s.repo} has uncommitted changes (README.md, staged.txt); issue worktrees start from the ` +
        "committed HEAD and would not see them: commit or stash them, or pass --allow-dirty to run anyway"
    )
    expect(existsSync(s.db)).toBe(false)
    expect(existsSync(join(s.dir, "work"))).toBe(false)

    const allowed = await runCliIn(s.dir, ["loop", "-c", s.config, "--db", s.db, "--allow-dirty"])
    expect(allowed.status, allowed.stderr).toBe(0)
    expect(allowed.stderr).toContain(`warning: repo ${s.repo} has uncommitted changes (README.md, staged.txt)`)
    expect(allowed.stdout).toMatch(/completed — 2\/2 succeeded/)
  }, 60_000)

  it("a repo that is not a git repository: exit 2 naming the path", async () => {
    const s = setup()
    const plain = join(s.dir, "plain")
    mkdirSync(plain)
    const r = await runCliIn(s.dir, ["loop", "-c", s.config, "--repo", plain, "--db", s.db])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(`runledger: repo ${plain} is not a git repository`)
    const gone = await runCliIn(s.dir, ["loop", "-c", s.config, "--repo", join(s.dir, "missing"), "--db", s.db])
    expect(gone.status).toBe(2)
    expect(gone.stderr).toContain(`runledger: repo ${join(s.dir, "missing")} does not exist`)
  })

  it("a depends_on naming an unknown issue: exit 2 naming the file, the issue, the id and the known ids", async () => {
    const s = setup()
    const file = join(s.dir, "issues.yaml")
    writeFileSync(file, YAML.stringify([{ id: "A-1", title: "first" }, { id: "A-2", title: "second", depends_on: ["A-3"] }]))
    const r = await runCliIn(s.dir, ["loop", "-c", s.config, "--db", s.db])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(
      `runledger: ${file}: [1].depends_on[0] = A-3: issue "A-2" depends on unknown issue "A-3"; known ids: A-1, A-2`
    )
  })

  it("an invalid config: exit 2 with file, key, value and the allowed values, no Schema internals", async () => {
    const s = setup({ validation_triggers: { run_end: { fire_on: "all" } } })
    const r = await runCliIn(s.dir, ["loop", "-c", s.config, "--db", s.db])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(`runledger: ${s.config}: validation_triggers.run_end.fire_on = all: expected one of success, failure, both`)
    expect(r.stderr).not.toMatch(/Expected|<->|readonly/)
  })

  it("`loop` without -c and outside a subcommand: exit 2 pointing at -c and the subcommands", async () => {
    const dir = tempDir("rl-loop-noc-")
    const r = await runCliIn(dir, ["loop"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("loop needs --config (-c) FILE")
  })
})
