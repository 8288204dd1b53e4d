/**
 * The lifecycle plan's edge semantics through the built CLI (`runledger loop ... --json`)
 * with real processes, real signals and the Landscape file read back afterwards.
 * One `describe` per edge case of docs/loop.md "Edge cases".
 */
import Database from "better-sqlite3"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { FIXTURES, fixture, isAlive, makeRepo, readPids, tempDir } from "../loop/helpers.js"
import { BIN } from "../support/cli.js"

const approve = NodePath.join(FIXTURES, "review-approve.json")
const block = NodePath.join(FIXTURES, "review-block.json")
const commit = { command: fixture("implementer-commit.sh"), timeout: "1m" }

interface JsonIssue {
  issue_id: string
  status: string
  reason: string | null
  session_end: { status: string; reason: string | null; commands: Array<{ ref: string; passed: boolean }> } | null
  review: { status: string } | null
}
interface JsonResult {
  status: string
  reason: string | null
  counts: Record<string, number>
  issues: Array<JsonIssue>
  run_end: { status: string; reason: string | null }
}

interface Loop {
  readonly dir: string
  readonly db: string
  readonly exited: Promise<number | null>
  readonly out: () => string
  readonly err: () => string
  readonly signal: (s: NodeJS.Signals) => void
  /** The issue's folder of the (only) run. */
  readonly issueDir: (id: string) => string
  readonly runDir: () => string
}

/** Starts the built CLI on a config (written with `repo`, `issues`, `kill_grace: 300ms` unless given). */
const startLoop = (
  doc: Record<string, unknown>,
  issues: ReadonlyArray<Record<string, unknown>>,
  options: { readonly json?: boolean } = {}
): Loop => {
  const dir = tempDir("rl-loop-edge-")
  NodeFs.writeFileSync(NodePath.join(dir, "issues.yaml"), YAML.stringify(issues))
  NodeFs.writeFileSync(
    NodePath.join(dir, "loop.yaml"),
    YAML.stringify({ repo: makeRepo(), issues: "issues.yaml", kill_grace: "300ms", ...doc })
  )
  const db = NodePath.join(dir, "audit.db")
  const args = [BIN, "loop", "-c", NodePath.join(dir, "loop.yaml"), "--db", `sqlite:///${db}`]
  if (options.json !== false) args.push("--json")
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d) => (stdout += String(d)))
  child.stderr.on("data", (d) => (stderr += String(d)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const runDir = () => {
    const runs = NodePath.join(dir, ".runledger", "runs")
    const ids = NodeFs.existsSync(runs) ? NodeFs.readdirSync(runs) : []
    return ids.length === 0 ? NodePath.join(runs, "none") : NodePath.join(runs, ids[0]!)
  }
  return {
    dir,
    db,
    exited,
    out: () => stdout,
    err: () => stderr,
    signal: (s) => child.kill(s),
    issueDir: (id) => NodePath.join(runDir(), "issues", id),
    runDir
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const waitFor = async (what: string, ready: () => boolean, loop: Loop) => {
  for (let i = 0; i < 300 && !ready(); i++) await sleep(50)
  expect(ready(), `${what}\n${loop.err()}`).toBe(true)
}

const query = <T>(db: string, text: string, ...params: Array<unknown>): Array<T> => {
  const conn = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return conn.prepare(text).all(...params) as Array<T>
  } finally {
    conn.close()
  }
}

const read = (file: string) => (NodeFs.existsSync(file) ? NodeFs.readFileSync(file, "utf8") : "")

describe("SIGINT while session_end runs", () => {
  it("the running command finishes, the next never starts, the review still runs, then the issue ends interrupted", async () => {
    const dir = tempDir("rl-loop-edge-log-")
    const log = NodePath.join(dir, "reviews.log")
    const loop = startLoop({
      max_agents: 1,
      implementer: commit,
      commands: {
        slow: `sleep 1; touch "$ISSUE_DIR/slow-finished"`,
        next: `touch "$ISSUE_DIR/next-ran"`
      },
      validation_triggers: {
        session_end: { commands: [{ ref: "slow" }, { ref: "next" }] },
        run_end: { fire_on: "both", commands: [] }
      },
      reviewer: { command: fixture("reviewer-env.sh", log, approve) }
    }, [{ id: "E-1", title: "drained in session_end", priority: 0 }, { id: "E-2", title: "pending", priority: 1 }])
    await waitFor("session_end started", () => loop.err().includes("[trigger] session_end started: issue_id=E-1"), loop)
    loop.signal("SIGINT")
    expect(await loop.exited, loop.err()).toBe(130)
    const result = JSON.parse(loop.out()) as JsonResult
    const e1 = result.issues.find((i) => i.issue_id === "E-1")!
    expect([e1.status, e1.reason]).toEqual(["interrupted", "sigint"])
    expect(e1.session_end?.status).toBe("interrupted")
    expect(e1.session_end?.reason).toBe("sigint")
    expect(e1.session_end?.commands.map((c) => [c.ref, c.passed])).toEqual([["slow", true]])
    expect(NodeFs.existsSync(NodePath.join(loop.issueDir("E-1"), "slow-finished"))).toBe(true)
    expect(NodeFs.existsSync(NodePath.join(loop.issueDir("E-1"), "next-ran"))).toBe(false)
    // The review ran with the interrupted session_end as evidence and is on the record.
    expect(e1.review?.status).toBe("approved")
    expect(read(log)).toBe("stage=review attempt=1 max=2 session_end=interrupted\n")
    expect(query<{ status: string }>(loop.db, "SELECT status FROM stage_results WHERE issue_id = 'E-1' AND stage = 'review'"))
      .toEqual([{ status: "approved" }])
    expect(result.issues.find((i) => i.issue_id === "E-2")?.status).toBe("skipped")
    expect([result.status, result.reason]).toEqual(["interrupted", "sigint"])
    expect(result.run_end).toEqual({ status: "skipped", reason: "sigint" })
  }, 60_000)
})

describe("session_end timeout under failure_mode abort", () => {
  it("aborts the run like a failure: the issue fails session_end_timeout, the next is skipped, exit 1", async () => {
    const loop = startLoop({
      max_agents: 1,
      implementer: commit,
      commands: { hang: "sleep 30" },
      validation_triggers: {
        session_end: { failure_mode: "abort", timeout: "500ms", commands: [{ ref: "hang" }] },
        run_end: { fire_on: "both", commands: [] }
      }
    }, [{ id: "T-1", title: "times out", priority: 0 }, { id: "T-2", title: "never starts", priority: 1 }])
    expect(await loop.exited, loop.err()).toBe(1)
    const result = JSON.parse(loop.out()) as JsonResult
    const byId = Object.fromEntries(result.issues.map((i) => [i.issue_id, i]))
    expect([byId["T-1"]!.status, byId["T-1"]!.reason]).toEqual(["failed", "session_end_timeout"])
    expect(byId["T-1"]!.session_end?.status).toBe("timeout")
    expect([byId["T-2"]!.status, byId["T-2"]!.reason]).toEqual(["skipped", "run_aborted"])
    expect([result.status, result.reason]).toEqual(["failed", "run_aborted"])
    expect(result.run_end).toEqual({ status: "skipped", reason: "run_aborted" })
    expect(query(loop.db, "SELECT status, reason FROM loop_runs")).toEqual([{ status: "failed", reason: "run_aborted" }])
  }, 60_000)
})

describe("R12: run_end remediate exhausted", () => {
  it("still runs the run-end code review; run_end fails max_retries_exhausted with the review recorded", async () => {
    const dir = tempDir("rl-loop-edge-log-")
    const log = NodePath.join(dir, "reviews.log")
    const loop = startLoop({
      implementer: commit,
      commands: { check: "echo still-broken; exit 1" },
      validation_triggers: {
        run_end: {
          fire_on: "both",
          failure_mode: "remediate",
          max_retries: 1,
          commands: [{ ref: "check" }],
          code_review: { enabled: true }
        }
      },
      fixer: { command: fixture("fixer-log-only.sh") },
      reviewer: { command: fixture("reviewer-env.sh", log, approve) }
    }, [{ id: "R-1", title: "fine issue, broken run" }])
    expect(await loop.exited, loop.err()).toBe(1)
    const result = JSON.parse(loop.out()) as JsonResult
    expect(result.run_end).toEqual({ status: "fail", reason: "max_retries_exhausted" })
    expect([result.status, result.reason]).toEqual(["failed", "run_end_failed"])
    // The issue's own review, then the run-end review despite the failed commands.
    expect(read(log).trim().split("\n").at(-1)).toBe("stage=run_end attempt=1 max=1 session_end=-")
    expect(query<{ ref: string }>(loop.db, "SELECT ref FROM command_results WHERE stage = 'run_end' ORDER BY rowid").map((r) => r.ref))
      .toEqual(["check", "fixer", "check", "reviewer"])
    const [stage] = query<{ status: string; result_json: string }>(
      loop.db,
      "SELECT status, result_json FROM stage_results WHERE stage = 'run_end'"
    )
    expect(stage?.status).toBe("fail")
    expect((JSON.parse(stage!.result_json) as { code_review_result: { status: string } }).code_review_result.status)
      .toBe("approved")
  }, 60_000)
})

describe("the fixer under a second Ctrl-C", () => {
  it("the fixer's process group is killed at once, not after kill_grace", async () => {
    const loop = startLoop({
      kill_grace: "60s",
      implementer: commit,
      commands: { check: "false" },
      validation_triggers: { session_end: { failure_mode: "remediate", max_retries: 1, commands: [{ ref: "check" }] } },
      fixer: { command: fixture("stubborn-group.sh", "$ISSUE_DIR/fixer-pids"), timeout: "10m" }
    }, [{ id: "F-1", title: "stubborn fixer" }])
    const pidfile = () => NodePath.join(loop.issueDir("F-1"), "fixer-pids")
    await waitFor("the fixer runs", () => readPids(pidfile()).length === 2, loop)
    const pids = readPids(pidfile())
    loop.signal("SIGINT")
    await sleep(300)
    // The first Ctrl-C drains: the fixer keeps running.
    for (const pid of pids) expect(isAlive(pid), `pid ${pid} died on the first Ctrl-C`).toBe(true)
    const secondAt = Date.now()
    loop.signal("SIGINT")
    expect(await loop.exited, loop.err()).toBe(130)
    // kill_grace is 60 s: an exit well before it means the grace was not waited out.
    expect(Date.now() - secondAt).toBeLessThan(20_000)
    for (const pid of pids) expect(isAlive(pid), `pid ${pid} survived the second Ctrl-C`).toBe(false)
    const fixerRows = query<{ exit_code: number | null; output_tail: string; log_file: string | null }>(
      loop.db,
      "SELECT exit_code, output_tail, log_file FROM command_results WHERE ref = 'fixer'"
    )
    expect(fixerRows).toHaveLength(1)
    expect(fixerRows[0]!.exit_code).toBeNull()
    expect(fixerRows[0]!.output_tail).toContain("[killed: killed]")
    expect(read(fixerRows[0]!.log_file ?? "")).toContain("started")
  }, 60_000)
})

describe("the trail after a second Ctrl-C and after a timeout kill", () => {
  const killRun = async (json: boolean) => {
    const loop = startLoop({
      max_agents: 1,
      kill_grace: "60s",
      implementer: {
        command: `if [ "$ISSUE_ID" = K-1 ]; then ${fixture("stubborn-group.sh", "$ISSUE_DIR/pids")}; else ${
          fixture("implementer-commit.sh")
        }; fi`,
        timeout: "10m"
      }
    }, [
      { id: "K-0", title: "done before", priority: 0 },
      { id: "K-1", title: "killed", priority: 1 },
      { id: "K-2", title: "never starts", priority: 2 }
    ], { json })
    await waitFor("K-1's implementer runs", () => readPids(NodePath.join(loop.issueDir("K-1"), "pids")).length === 2, loop)
    loop.signal("SIGINT")
    await sleep(200)
    loop.signal("SIGINT")
    expect(await loop.exited, loop.err()).toBe(130)
    return loop
  }

  const dbCounts = (db: string) => {
    const rows = query<{ status: string; n: number }>(db, "SELECT status, COUNT(*) AS n FROM loop_issues GROUP BY status")
    const get = (s: string) => rows.find((r) => r.status === s)?.n ?? 0
    return {
      total: rows.reduce((a, r) => a + r.n, 0),
      success: get("success"),
      failed: get("failed"),
      interrupted: get("interrupted"),
      skipped: get("skipped")
    }
  }

  it("no stage is left running, the killed command has its row, --json counts equal the DB's", async () => {
    const loop = await killRun(true)
    const result = JSON.parse(loop.out()) as JsonResult
    expect(result.issues.map((i) => [i.issue_id, i.status, i.reason])).toEqual([
      ["K-0", "success", null],
      ["K-1", "interrupted", "killed"],
      ["K-2", "skipped", "killed"]
    ])
    expect(query(loop.db, "SELECT issue_id, status, reason FROM loop_issues ORDER BY issue_id")).toEqual([
      { issue_id: "K-0", status: "success", reason: null },
      { issue_id: "K-1", status: "interrupted", reason: "killed" },
      { issue_id: "K-2", status: "skipped", reason: "killed" }
    ])
    expect(dbCounts(loop.db)).toEqual(result.counts)
    const [run] = query<Record<string, number>>(
      loop.db,
      "SELECT total_count AS total, success_count AS success, failed_count AS failed, interrupted_count AS interrupted, skipped_count AS skipped FROM loop_runs"
    )
    expect(run).toEqual(result.counts)
    expect(query(loop.db, "SELECT stage, issue_id FROM stage_results WHERE status = 'running'")).toEqual([])
    expect(query(loop.db, "SELECT status, reason FROM stage_results WHERE issue_id = 'K-1'")).toEqual([
      { status: "interrupted", reason: "killed" }
    ])
    const killed = query<{ exit_code: number | null; passed: number; output_tail: string; stage_id: string | null }>(
      loop.db,
      "SELECT exit_code, passed, output_tail, stage_id FROM command_results WHERE issue_id = 'K-1'"
    )
    expect(killed).toHaveLength(1)
    expect(killed[0]!.exit_code).toBeNull()
    expect(killed[0]!.passed).toBe(0)
    expect(killed[0]!.output_tail).toContain("started")
    expect(killed[0]!.output_tail).toContain("[killed: killed]")
    expect(killed[0]!.stage_id).not.toBeNull()
  }, 60_000)

  it("the human summary tells the same story as the DB", async () => {
    const loop = await killRun(false)
    const text = loop.out() + loop.err()
    for (const row of query<{ issue_id: string; status: string }>(loop.db, "SELECT issue_id, status FROM loop_issues")) {
      expect(text).toMatch(new RegExp(`^${row.issue_id}\\s+${row.status}\\s`, "m"))
    }
    const counts = dbCounts(loop.db)
    expect(text).toContain(`${counts.success}/${counts.total} succeeded`)
    expect(query(loop.db, "SELECT stage FROM stage_results WHERE status = 'running'")).toEqual([])
  }, 60_000)

  it("Ctrl-C twice during run_end: its command is killed at once and recorded, its stage closed, exit 130", async () => {
    const loop = startLoop({
      kill_grace: "60s",
      implementer: commit,
      commands: { stubborn: fixture("stubborn-group.sh", "$ISSUE_DIR/pids") },
      validation_triggers: { run_end: { commands: [{ ref: "stubborn" }] } }
    }, [{ id: "Z-1", title: "then a stubborn run_end" }])
    const pidfile = () => NodePath.join(loop.runDir(), "run_end", "pids")
    await waitFor("run_end's command runs", () => readPids(pidfile()).length === 2, loop)
    const pids = readPids(pidfile())
    loop.signal("SIGINT")
    await sleep(200)
    loop.signal("SIGINT")
    expect(await loop.exited, loop.err()).toBe(130)
    for (const pid of pids) expect(isAlive(pid), `pid ${pid} survived the second Ctrl-C`).toBe(false)
    const result = JSON.parse(loop.out()) as JsonResult
    expect(result.issues.map((i) => i.status)).toEqual(["success"])
    expect([result.status, result.reason]).toEqual(["interrupted", "killed"])
    expect(result.run_end.status).toBe("skipped")
    expect(query(loop.db, "SELECT stage FROM stage_results WHERE status = 'running'")).toEqual([])
    const rows = query<{ exit_code: number | null; output_tail: string }>(
      loop.db,
      "SELECT exit_code, output_tail FROM command_results WHERE stage = 'run_end'"
    )
    expect(rows).toHaveLength(1)
    expect(rows[0]!.exit_code).toBeNull()
    expect(rows[0]!.output_tail).toContain("[killed: killed]")
    expect(dbCounts(loop.db)).toEqual(result.counts)
  }, 60_000)

  it("a command killed by the session_end timeout has its row, timed_out", async () => {
    const loop = startLoop({
      implementer: commit,
      commands: { hang: `echo hanging; sleep 30` },
      validation_triggers: { session_end: { timeout: "500ms", commands: [{ ref: "hang" }] } }
    }, [{ id: "W-1", title: "slow checks" }])
    expect(await loop.exited, loop.err()).toBe(0)
    const rows = query<{ exit_code: number | null; timed_out: number; output_tail: string; log_file: string | null }>(
      loop.db,
      "SELECT exit_code, timed_out, output_tail, log_file FROM command_results WHERE ref = 'hang'"
    )
    expect(rows).toHaveLength(1)
    expect(rows[0]!.exit_code).toBeNull()
    expect(rows[0]!.timed_out).toBe(1)
    expect(rows[0]!.output_tail).toContain("hanging")
    expect(rows[0]!.output_tail).toContain("[killed: session_end_timeout]")
    expect(read(rows[0]!.log_file ?? "")).toContain("hanging")
    expect(query(loop.db, "SELECT status, reason FROM stage_results WHERE stage = 'session_end'")).toEqual([
      { status: "timeout", reason: "session_end_timeout" }
    ])
  }, 60_000)
})

describe("what reviewers are handed", () => {
  it("$SESSION_END_RESULT_FILE holds the current round's result; $STAGE and $ATTEMPT in every reviewer call", async () => {
    const dir = tempDir("rl-loop-edge-log-")
    const log = NodePath.join(dir, "reviews.log")
    const loop = startLoop({
      implementer: commit,
      // Fails in round 1, passes in round 2 (once the review has blocked).
      commands: { check: `test -f ${JSON.stringify(`${log}.blocked`)}` },
      validation_triggers: {
        session_end: { commands: [{ ref: "check" }], code_review: { enabled: true } },
        run_end: { commands: [], code_review: { enabled: true } }
      },
      reviewer: { command: fixture("reviewer-env.sh", log, approve, block), max_retries: 1 }
    }, [{ id: "V-1", title: "two rounds" }])
    expect(await loop.exited, loop.err()).toBe(0)
    expect(read(log).trim().split("\n")).toEqual([
      "stage=session_end attempt=1 max=2 session_end=fail",
      "stage=review attempt=1 max=2 session_end=fail",
      "stage=session_end attempt=2 max=2 session_end=pass",
      "stage=review attempt=2 max=2 session_end=pass",
      "stage=run_end attempt=1 max=1 session_end=-"
    ])
    const result = JSON.parse(loop.out()) as JsonResult
    expect(result.issues[0]?.status).toBe("success")
    expect(result.issues[0]?.session_end?.status).toBe("pass")
  }, 60_000)
})

describe("a fixer that exits non-zero", () => {
  it("is recorded with its exit code and its log file", async () => {
    const loop = startLoop({
      implementer: commit,
      commands: { check: "false" },
      validation_triggers: { session_end: { failure_mode: "remediate", max_retries: 1, commands: [{ ref: "check" }] } },
      fixer: { command: "echo fixing-output; exit 3" }
    }, [{ id: "X-1", title: "failing fixer" }])
    expect(await loop.exited, loop.err()).toBe(0)
    const rows = query<{ exit_code: number | null; passed: number; log_file: string | null; stage: string }>(
      loop.db,
      "SELECT exit_code, passed, log_file, stage FROM command_results WHERE ref = 'fixer'"
    )
    expect(rows).toHaveLength(1)
    expect(rows[0]!).toMatchObject({ exit_code: 3, passed: 0, stage: "session_end" })
    expect(rows[0]!.log_file).not.toBeNull()
    expect(read(rows[0]!.log_file!)).toContain("fixing-output")
    expect(loop.err()).toContain("[fixer] failed: issue_id=X-1, exit_code=3")
    const result = JSON.parse(loop.out()) as JsonResult
    expect(result.issues[0]?.session_end).toMatchObject({ status: "fail", reason: "max_retries_exhausted" })
  }, 60_000)
})
