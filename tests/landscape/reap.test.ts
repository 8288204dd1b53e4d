/**
 * `reapCrashedRuns` on a real SQLite file with fabricated rows: a run whose owning
 * process is gone (or a zombie) on this host is recorded interrupted/process_crash,
 * with its open attempt, issues and stages; a run owned by a live process, by the
 * process that opens the file, by another host, or already ended is left as it is;
 * and a second pass changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect } from "effect"
import Database from "better-sqlite3"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { ownerIsGone } from "../../src/landscape/owners.js"
import { PROCESS_CRASH, reapCrashedRuns } from "../../src/landscape/reap.js"
import { LandscapeSql } from "../../src/landscape/sqlite.js"
import { tempDir } from "../support/pipeline.js"

const HOST = hostname()
const OTHER_HOST = "elsewhere.invalid"
const dir = tempDir("rl-reap-")

const children: Array<ChildProcess> = []
let livePid = 0
let zombiePid = 0
let gonePid = 0

const procState = (pid: number): string | null => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] ?? null
  } catch {
    return null
  }
}

const until = async (what: string, check: () => boolean) => {
  for (let i = 0; i < 200; i++) {
    if (check()) return
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A pid that belonged to a process which has exited and been waited for. */
const deadPid = (): number => {
  const r = spawnSync("true")
  const pid = r.pid
  expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }))
  return pid
}

beforeAll(async () => {
  const live = spawn("sleep", ["60"], { stdio: "ignore" })
  children.push(live)
  livePid = live.pid!
  // `sleep 0` exits while its parent (exec'd into `sleep 60`) never waits for it: a zombie.
  const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 60"], { stdio: ["ignore", "pipe", "ignore"] })
  children.push(parent)
  let out = ""
  parent.stdout!.on("data", (d) => (out += String(d)))
  await until("the zombie's pid", () => out.includes("\n"))
  zombiePid = Number(out.trim())
  await until("the zombie", () => procState(zombiePid) === "Z")
  gonePid = deadPid()
})

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  rmSync(dir, { recursive: true, force: true })
})

/** A migrated, empty Landscape file (opening it reaps nothing: it holds no run). */
const freshLandscape = async (name: string): Promise<string> => {
  const file = join(dir, name)
  await Effect.runPromise(Effect.provide(Effect.void, LandscapeSql(file)))
  return file
}

/** Runs `reapCrashedRuns` alone over a plain SQLite client (no migration, no reap on open). */
const reap = (file: string) =>
  Effect.runPromise(Effect.provide(reapCrashedRuns, SqliteClient.layer({ filename: file })))

interface PipelineRun {
  readonly id: string
  readonly status: string
  readonly pid: number | null
  readonly host: string | null
  readonly error?: string
}

const insertRun = (db: Database.Database, r: PipelineRun) =>
  db.prepare(`INSERT INTO runs (run_id, status, started_at, config_hash, settings_json, canonical_version,
                                owner_pid, owner_host, error_message, completed_at)
              VALUES (?, ?, '2026-01-01T00:00:00.000Z', 'h', '{}', 'v1', ?, ?, ?, ?)`)
    .run(r.id, r.status, r.pid, r.host, r.error ?? null, r.status === "running" ? null : "2026-01-01T00:01:00.000Z")

const insertAttempt = (
  db: Database.Database,
  runId: string,
  attempt: number,
  a: { kind: string; status: string; reason: string | null; pid: number | null; host: string | null }
) =>
  db.prepare(`INSERT INTO run_attempts (run_id, attempt, kind, status, reason, started_at, ended_at, owner_pid, owner_host,
                                        from_checkpoint)
              VALUES (?, ?, ?, ?, ?, '2026-01-01T00:00:00.000Z', ?, ?, ?, ?)`)
    .run(runId, attempt, a.kind, a.status, a.reason, a.status === "running" ? null : "2026-01-01T00:00:30.000Z", a.pid, a.host,
      a.kind === "resumed" ? 3 : null)

const insertLoop = (
  db: Database.Database,
  runId: string,
  status: string,
  pid: number,
  host: string,
  issues: ReadonlyArray<readonly [string, string]>,
  stages: ReadonlyArray<readonly [string, string | null, string, string]>
) => {
  db.prepare(`INSERT INTO loop_runs (run_id, status, started_at, config_file, config_json, repo, run_dir, max_agents,
                                     owner_pid, owner_host, total_count, completed_at)
              VALUES (?, ?, '2026-01-01T00:00:00.000Z', 'loop.yaml', '{}', '/repo', '/runs', 1, ?, ?, ?, ?)`)
    .run(runId, status, pid, host, issues.length, status === "running" ? null : "2026-01-01T00:01:00.000Z")
  for (const [issue, issueStatus] of issues) {
    db.prepare(`INSERT INTO loop_issues (run_id, issue_id, title, status) VALUES (?, ?, ?, ?)`).run(runId, issue, `title ${issue}`, issueStatus)
  }
  for (const [stageId, issue, stage, stageStatus] of stages) {
    db.prepare(`INSERT INTO stage_results (stage_id, run_id, issue_id, stage, status, started_at) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(stageId, runId, issue, stage, stageStatus, "2026-01-01T00:00:10.000Z")
  }
}

const dump = (file: string) => {
  const db = new Database(file, { readonly: true })
  try {
    return {
      runs: db.prepare(`SELECT run_id, status, status_reason, error_message, completed_at, owner_pid, owner_host FROM runs
                        ORDER BY run_id`).all(),
      run_attempts: db.prepare(`SELECT * FROM run_attempts ORDER BY run_id, attempt`).all(),
      loop_runs: db.prepare(`SELECT run_id, status, reason, completed_at, total_count, success_count, failed_count,
                                    interrupted_count, skipped_count FROM loop_runs ORDER BY run_id`).all(),
      loop_issues: db.prepare(`SELECT run_id, issue_id, status, reason FROM loop_issues ORDER BY run_id, issue_id`).all(),
      stage_results: db.prepare(`SELECT stage_id, run_id, status, reason FROM stage_results ORDER BY stage_id`).all()
    }
  } finally {
    db.close()
  }
}

type Dump = ReturnType<typeof dump>
const runOf = (d: Dump, id: string) => (d.runs as Array<Record<string, unknown>>).find((r) => r.run_id === id)
const loopOf = (d: Dump, id: string) => (d.loop_runs as Array<Record<string, unknown>>).find((r) => r.run_id === id)
const rowsOf = (rows: Array<unknown>, runId: string) => (rows as Array<Record<string, unknown>>).filter((r) => r.run_id === runId)

describe("ownerIsGone", () => {
  it("tells an exited process or a zombie from a live one, and decides nothing for another host or the caller", () => {
    expect(ownerIsGone(gonePid, HOST)).toBe(true)
    expect(ownerIsGone(zombiePid, HOST)).toBe(true)
    expect(ownerIsGone(livePid, HOST)).toBe(false)
    expect(ownerIsGone(process.pid, HOST)).toBe(false)
    expect(ownerIsGone(gonePid, OTHER_HOST)).toBe(false)
  })
})

describe("reapCrashedRuns", () => {
  let file = ""
  let before: Dump
  let reaped: ReadonlyArray<string> = []
  let after: Dump

  beforeAll(async () => {
    file = await freshLandscape("fabricated.db")
    const db = new Database(file)
    try {
      insertRun(db, { id: "p-gone", status: "running", pid: gonePid, host: HOST })
      // Resumed once: the first attempt ended earlier (an interrupt), the second one died.
      insertAttempt(db, "p-gone", 1, { kind: "started", status: "interrupted", reason: "signal", pid: 1, host: HOST })
      insertAttempt(db, "p-gone", 2, { kind: "resumed", status: "running", reason: null, pid: gonePid, host: HOST })
      insertRun(db, { id: "p-zombie", status: "running", pid: zombiePid, host: HOST })
      insertRun(db, { id: "p-live", status: "running", pid: livePid, host: HOST })
      insertAttempt(db, "p-live", 1, { kind: "started", status: "running", reason: null, pid: livePid, host: HOST })
      insertRun(db, { id: "p-self", status: "running", pid: process.pid, host: HOST })
      insertRun(db, { id: "p-other-host", status: "running", pid: gonePid, host: OTHER_HOST })
      insertAttempt(db, "p-other-host", 1, { kind: "started", status: "running", reason: null, pid: gonePid, host: OTHER_HOST })
      insertRun(db, { id: "p-completed", status: "completed", pid: gonePid, host: HOST })
      insertRun(db, { id: "p-failed", status: "failed", pid: gonePid, host: HOST, error: "source failed" })
      insertRun(db, { id: "p-no-owner", status: "running", pid: null, host: null })

      insertLoop(db, "l-gone", "running", gonePid, HOST, [["I-1", "running"], ["I-2", "pending"], ["I-3", "success"], ["I-4", "failed"]], [
        ["s-gone-1", "I-3", "implementer", "pass"],
        ["s-gone-2", "I-1", "implementer", "pass"],
        ["s-gone-3", "I-1", "gate", "running"],
        ["s-gone-4", null, "run_end", "running"]
      ])
      insertLoop(db, "l-live", "running", livePid, HOST, [["I-1", "running"]], [["s-live-1", "I-1", "implementer", "running"]])
      insertLoop(db, "l-other-host", "running", gonePid, OTHER_HOST, [["I-1", "running"]], [
        ["s-other-1", "I-1", "implementer", "running"]
      ])
      // Ended runs are never touched, even with a stray open row.
      insertLoop(db, "l-completed", "completed", gonePid, HOST, [["I-1", "running"]], [["s-done-1", "I-1", "gate", "running"]])
    } finally {
      db.close()
    }
    before = dump(file)
    reaped = await reap(file)
    after = dump(file)
  })

  it("returns the runs it recorded as crashed, pipelines and loops, and no other", () => {
    expect([...reaped].sort()).toEqual(["l-gone", "p-gone", "p-zombie"])
  })

  it("records a pipeline run whose owner is gone (exited or a zombie) as interrupted, process_crash", () => {
    for (const id of ["p-gone", "p-zombie"]) {
      expect(runOf(before, id)).toMatchObject({ status: "running", status_reason: null })
      expect(runOf(after, id)).toMatchObject({ status: "interrupted", status_reason: PROCESS_CRASH, error_message: null })
    }
    expect(PROCESS_CRASH).toBe("process_crash")
  })

  it("closes the attempt that was running and leaves the attempts that had ended", () => {
    expect(rowsOf(after.run_attempts, "p-gone")).toEqual([
      expect.objectContaining({ attempt: 1, status: "interrupted", reason: "signal" }),
      expect.objectContaining({ attempt: 2, status: "interrupted", reason: PROCESS_CRASH, owner_pid: gonePid })
    ])
    expect(rowsOf(after.run_attempts, "p-gone")[0]).toEqual(rowsOf(before.run_attempts, "p-gone")[0])
  })

  it("leaves a run owned by a live process, by the opener, by another host, or with no owner running", () => {
    for (const id of ["p-live", "p-self", "p-other-host", "p-no-owner"]) {
      expect(runOf(after, id)).toEqual(runOf(before, id))
      expect(runOf(after, id)).toMatchObject({ status: "running", status_reason: null })
    }
    for (const id of ["p-live", "p-other-host"]) {
      expect(rowsOf(after.run_attempts, id)).toEqual(rowsOf(before.run_attempts, id))
      expect(rowsOf(after.run_attempts, id)[0]).toMatchObject({ status: "running", reason: null })
    }
  })

  it("leaves runs that had already ended as they were", () => {
    expect(runOf(after, "p-completed")).toEqual(runOf(before, "p-completed"))
    expect(runOf(after, "p-completed")).toMatchObject({ status: "completed", status_reason: null })
    expect(runOf(after, "p-failed")).toMatchObject({ status: "failed", status_reason: null, error_message: "source failed" })
    for (const table of ["loop_issues", "stage_results"] as const) {
      expect(rowsOf(after[table], "l-completed")).toEqual(rowsOf(before[table], "l-completed"))
    }
    expect(loopOf(after, "l-completed")).toEqual(loopOf(before, "l-completed"))
  })

  it("records a loop run whose owner is gone as interrupted, with its running issues and stages", () => {
    expect(loopOf(before, "l-gone")).toMatchObject({ status: "running", reason: null })
    expect(loopOf(after, "l-gone")).toMatchObject({
      status: "interrupted",
      reason: PROCESS_CRASH,
      // Its counts now say what its issues say.
      total_count: 4,
      success_count: 1,
      failed_count: 1,
      interrupted_count: 1,
      skipped_count: 0
    })
    expect(rowsOf(after.loop_issues, "l-gone")).toEqual([
      { run_id: "l-gone", issue_id: "I-1", status: "interrupted", reason: PROCESS_CRASH },
      { run_id: "l-gone", issue_id: "I-2", status: "pending", reason: null },
      { run_id: "l-gone", issue_id: "I-3", status: "success", reason: null },
      { run_id: "l-gone", issue_id: "I-4", status: "failed", reason: null }
    ])
    expect(rowsOf(after.stage_results, "l-gone")).toEqual([
      { stage_id: "s-gone-1", run_id: "l-gone", status: "pass", reason: null },
      { stage_id: "s-gone-2", run_id: "l-gone", status: "pass", reason: null },
      { stage_id: "s-gone-3", run_id: "l-gone", status: "interrupted", reason: PROCESS_CRASH },
      { stage_id: "s-gone-4", run_id: "l-gone", status: "interrupted", reason: PROCESS_CRASH }
    ])
  })

  it("leaves a loop run owned by a live process or by another host, its issues and stages too", () => {
    for (const id of ["l-live", "l-other-host"]) {
      expect(loopOf(after, id)).toEqual(loopOf(before, id))
      expect(loopOf(after, id)).toMatchObject({ status: "running", reason: null })
      expect(rowsOf(after.loop_issues, id)).toEqual(rowsOf(before.loop_issues, id))
      expect(rowsOf(after.stage_results, id)).toEqual(rowsOf(before.stage_results, id))
      expect(rowsOf(after.stage_results, id)[0]).toMatchObject({ status: "running" })
    }
  })

  it("is idempotent: a second pass reaps nothing and changes no row", async () => {
    const again = await reap(file)
    expect(again).toEqual([])
    expect(dump(file)).toEqual(after)
  })
})

describe("opening a Landscape", () => {
  it("reaps the runs of gone owners as part of the open, before any command reads", async () => {
    const file = await freshLandscape("on-open.db")
    const db = new Database(file)
    try {
      insertRun(db, { id: "p-gone", status: "running", pid: gonePid, host: HOST })
      insertRun(db, { id: "p-live", status: "running", pid: livePid, host: HOST })
      insertLoop(db, "l-gone", "running", gonePid, HOST, [["I-1", "running"]], [["s-1", "I-1", "implementer", "running"]])
    } finally {
      db.close()
    }
    await Effect.runPromise(Effect.provide(Effect.void, LandscapeSql(file)))
    const d = dump(file)
    expect(runOf(d, "p-gone")).toMatchObject({ status: "interrupted", status_reason: PROCESS_CRASH })
    expect(runOf(d, "p-live")).toMatchObject({ status: "running", status_reason: null })
    expect(loopOf(d, "l-gone")).toMatchObject({ status: "interrupted", reason: PROCESS_CRASH })
    expect(rowsOf(d.loop_issues, "l-gone")[0]).toMatchObject({ status: "interrupted", reason: PROCESS_CRASH })
    expect(rowsOf(d.stage_results, "l-gone")[0]).toMatchObject({ status: "interrupted", reason: PROCESS_CRASH })
  })
})
