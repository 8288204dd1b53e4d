/**
 * `runledger loop --resume RUN_ID` through the built CLI: after a kill -9 (the run is
 * reaped as crashed) or a Ctrl-C, the finished issues keep their records, the
 * interrupted and never-started ones are worked again from a fresh worktree at the
 * integration head, run_end runs once, and the run ends with counts over all issues.
 */
import { afterEach, describe, expect, it } from "vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import * as YAML from "yaml"
import { fixture, git, makeRepo, tempDir } from "../loop/helpers.js"
import { BIN, runCli } from "../support/cli.js"

const started: Array<ChildProcess> = []
const orphanGroups: Array<number> = []

const killGroup = (pgid: number) => {
  try {
    process.kill(-pgid, "SIGKILL")
  } catch {
    // already gone
  }
}

afterEach(() => {
  for (const pgid of orphanGroups.splice(0)) killGroup(pgid)
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const processGroupOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2])
}

interface Setup {
  readonly dir: string
  readonly repo: string
  readonly config: string
  readonly db: string
}

/** Three issues A, B, C (in that order, one at a time); B hangs on its first run for `hang` seconds. */
const setup = (hang: number): Setup => {
  const repo = makeRepo()
  const dir = tempDir("rl-loop-resume-")
  writeFileSync(join(dir, "issues.yaml"), YAML.stringify([
    { id: "A", title: "a", priority: 1 },
    { id: "B", title: "b", priority: 2 },
    { id: "C", title: "c", priority: 3 }
  ]))
  const config = join(dir, "loop.yaml")
  writeFileSync(config, YAML.stringify({
    repo,
    issues: "issues.yaml",
    max_agents: 1,
    kill_grace: "300ms",
    implementer: { command: fixture("implementer-hang-once.sh", dir, "B", String(hang)), timeout: "2m" },
    commands: {
      all: `echo "$RUNLEDGER_BRANCH" >> ${JSON.stringify(join(dir, "run_end.log"))} && test -f work-A.txt && test -f work-B.txt && test -f work-C.txt`
    },
    validation_triggers: { run_end: { commands: [{ ref: "all" }] } }
  }))
  return { dir, repo, config, db: join(dir, "audit.db") }
}

/** Starts the loop; resolves once B's first implementer run is under way, with the run id. */
const startUntilHung = async (s: Setup) => {
  const child = spawn(process.execPath, [BIN, "loop", "-c", s.config, "--db", s.db, "--json"], { stdio: ["ignore", "pipe", "pipe"] })
  started.push(child)
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d) => (stdout += String(d)))
  child.stderr.on("data", (d) => (stderr += String(d)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const hung = join(s.dir, "hung")
  for (let i = 0; i < 300 && !(existsSync(hung) && readFileSync(hung, "utf8").trim() !== ""); i++) await sleep(100)
  expect(existsSync(hung), stderr).toBe(true)
  const pid = Number(readFileSync(hung, "utf8").trim())
  orphanGroups.push(processGroupOf(pid))
  const runs = readdirSync(join(s.dir, ".runledger", "runs"))
  expect(runs).toHaveLength(1)
  return { child, runId: runs[0]!, exited, output: () => ({ stdout, stderr }) }
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : [])

interface ResumeJson {
  run_id: string
  status: string
  attempt: number
  counts: { total: number; success: number; failed: number; interrupted: number; skipped: number }
  issues: Array<{ issue_id: string; status: string; branch: string; base_sha: string; integration: { sha: string } | null }>
  run_end: { status: string }
  integration: { branch: string; head: string; base_sha: string }
}

const readRun = (db: string, runId: string) => {
  const conn = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return {
      run: conn.prepare(`SELECT status, reason, attempts, success_count, total_count, integration_head FROM loop_runs WHERE run_id = ?`).get(runId) as {
        status: string
        reason: string | null
        attempts: number
        success_count: number
        total_count: number
        integration_head: string
      },
      runEnds: conn.prepare(`SELECT status, reason FROM stage_results WHERE run_id = ? AND stage = 'run_end' ORDER BY rowid`).all(runId),
      running: (conn.prepare(`SELECT COUNT(*) AS n FROM stage_results WHERE run_id = ? AND status = 'running'`).get(runId) as { n: number }).n
    }
  } finally {
    conn.close()
  }
}

/** What both scenarios check after the resume: every issue done, A not redone, B redone at the integration head. */
const checkResumed = (s: Setup, runId: string, resumed: ResumeJson) => {
  expect(resumed.run_id).toBe(runId)
  expect(resumed.status).toBe("completed")
  expect(resumed.attempt).toBe(2)
  expect(resumed.counts).toEqual({ total: 3, success: 3, failed: 0, interrupted: 0, skipped: 0 })
  expect(resumed.issues.map((i) => [i.issue_id, i.status])).toEqual([["A", "success"], ["B", "success"], ["C", "success"]])
  const [a, b] = resumed.issues
  // A kept its record (implemented once); B started over on a branch of its own, from A's merge.
  const runs = lines(join(s.dir, "runs.log")).map((l) => l.split(" ")[0])
  expect(runs).toEqual(["A", "B", "B", "C"])
  expect(b!.branch).toBe(`runledger/${runId}/B-r2`)
  expect(b!.base_sha).toBe(a!.integration!.sha)
  expect(git(s.repo, "rev-parse", "--verify", `runledger/${runId}/B`)).not.toBe("")
  const branch = `runledger/${runId}/integration`
  expect(resumed.integration.branch).toBe(branch)
  expect(git(s.repo, "ls-tree", "-r", "--name-only", branch).split("\n")).toEqual(
    expect.arrayContaining(["work-A.txt", "work-B.txt", "work-C.txt"])
  )
  // run_end ran once, at the end, in the integration branch.
  expect(resumed.run_end.status).toBe("pass")
  expect(lines(join(s.dir, "run_end.log"))).toEqual([branch])
  const db = readRun(s.db, runId)
  expect(db.run).toEqual({
    status: "completed",
    reason: null,
    attempts: 2,
    success_count: 3,
    total_count: 3,
    integration_head: resumed.integration.head
  })
  expect(db.running).toBe(0)
  // No worktree is left: not the crashed attempt's, not the resume's, not the integration one.
  expect(git(s.repo, "worktree", "list").split("\n")).toHaveLength(1)
  const events = readFileSync(join(s.dir, ".runledger", "runs", runId, "events.jsonl"), "utf8")
  expect(events).toContain(`[run] resumed: run_id=${runId}, attempt=2`)
  return db
}

describe("runledger loop --resume", () => {
  it("after kill -9 during an issue: the crashed run is resumed and finished; a completed run is refused", async () => {
    const s = setup(60)
    const first = await startUntilHung(s)
    first.child.kill("SIGKILL")
    await first.exited
    for (const pgid of orphanGroups.splice(0)) killGroup(pgid)

    const resume = runCli(["loop", "-c", s.config, "--db", s.db, "--resume", first.runId, "--json"])
    expect(resume.status, resume.stderr).toBe(0)
    const db = checkResumed(s, first.runId, JSON.parse(resume.stdout) as ResumeJson)
    expect(db.runEnds).toEqual([{ status: "pass", reason: null }])

    const again = runCli(["loop", "-c", s.config, "--db", s.db, "--resume", first.runId])
    expect(again.status).toBe(2)
    expect(again.stderr).toContain(`cannot resume: loop run ${first.runId} completed`)
    const unknown = runCli(["loop", "-c", s.config, "--db", s.db, "--resume", "loop-nope"])
    expect(unknown.status).toBe(2)
    expect(unknown.stderr).toContain("no loop run loop-nope")
  }, 90_000)

  it("after a Ctrl-C: the interrupted and the never-started issue run, run_end runs once", async () => {
    const s = setup(1)
    const first = await startUntilHung(s)
    first.child.kill("SIGINT")
    expect(await first.exited).toBe(130)
    const interrupted = JSON.parse(first.output().stdout) as ResumeJson
    expect(interrupted.issues.map((i) => [i.issue_id, i.status])).toEqual([["A", "success"], ["B", "interrupted"], ["C", "skipped"]])
    expect(lines(join(s.dir, "run_end.log"))).toEqual([])

    const resume = runCli(["loop", "-c", s.config, "--db", s.db, "--resume", first.runId, "--json"])
    expect(resume.status, resume.stderr).toBe(0)
    const db = checkResumed(s, first.runId, JSON.parse(resume.stdout) as ResumeJson)
    // The first attempt's run_end was skipped (sigint); the resume's ran.
    expect(db.runEnds).toEqual([{ status: "skipped", reason: "sigint" }, { status: "pass", reason: null }])
  }, 90_000)
})
