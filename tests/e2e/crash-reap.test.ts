/**
 * kill -9 through the built CLI: the dead process leaves its run `running` in the
 * Landscape (it could not say otherwise); the next command that opens the file records
 * it `interrupted, reason=process_crash` in the database itself — the pipeline run and
 * the loop run with its running issue and stage — once, and leaves runs whose owner is
 * alive, or on another host, as they are.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { closeSync, createWriteStream, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import Database from "better-sqlite3"
import * as YAML from "yaml"
import { makeRepo } from "../loop/helpers.js"
import { BIN, runCli } from "../support/cli.js"
import { tempDir } from "../support/pipeline.js"

const dir = tempDir("rl-crash-reap-")
const HOST = hostname()

/** Processes this file started; whatever is still alive is killed after each test. */
const started: Array<ChildProcess> = []
/** Process groups left behind by a killed loop (their leader's pid). */
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
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls the file read-only (no runledger command, so nothing is reaped) until `check` holds. */
const waitForDb = async <A>(
  db: string,
  what: string,
  read: (conn: Database.Database) => A | undefined,
  context: () => string = () => "",
  tries = 600
): Promise<A> => {
  for (let i = 0; i < tries; i++) {
    try {
      const conn = new Database(db, { readonly: true, fileMustExist: true })
      try {
        const value = read(conn)
        if (value !== undefined) return value
      } finally {
        conn.close()
      }
    } catch {
      // not created or not migrated yet
    }
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}\n${context()}`)
}

const readDb = <A>(db: string, read: (conn: Database.Database) => A): A => {
  const conn = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return read(conn)
  } finally {
    conn.close()
  }
}

interface RunsEntry {
  readonly run_id: string
  readonly kind: string
  readonly status: string
  readonly reason: string | null
}

const runsJson = (db: string): Array<RunsEntry> => {
  const r = runCli(["runs", "--db", db, "--json"])
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as Array<RunsEntry>
}

const pipelineRow = (db: string, runId: string) =>
  readDb(db, (c) =>
    c.prepare(`SELECT run_id, status, status_reason, completed_at, owner_pid, owner_host FROM runs WHERE run_id = ?`).get(runId) as {
      run_id: string
      status: string
      status_reason: string | null
      completed_at: string | null
      owner_pid: number | null
      owner_host: string | null
    }
  )

const spawnCli = (args: ReadonlyArray<string>) => {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  started.push(child)
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (d) => (stdout += String(d)))
  child.stderr!.on("data", (d) => (stderr += String(d)))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal }))
  )
  return { child, exited, stdout: () => stdout, stderr: () => stderr }
}

const settings = (tag: string, input: string) => {
  const path = join(dir, `${tag}.yaml`)
  writeFileSync(path, `
source:
  plugin: csv
  options:
    path: ${input}
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int"]}
    on_validation_failure: discard
sinks:
  out: {plugin: csv, options: {path: ${join(dir, tag, "out.csv")}, schema: {mode: observed}}}
default_sink: out
`)
  return path
}

const ROWS = 200_000
let bigCsv = ""

beforeAll(async () => {
  bigCsv = join(dir, "big.csv")
  const out = createWriteStream(bigCsv)
  out.write("id,name,amount\n")
  for (let i = 0; i < ROWS; i++) out.write(`${i},name${i},${(i * 37) % 5000}\n`)
  await new Promise<void>((resolve) => out.end(resolve))
})

/** A pid whose process has exited and been waited for. */
const deadPid = (): number => {
  const pid = spawnSync("true").pid
  expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }))
  return pid
}

const insertRun = (db: string, runId: string, pid: number, host: string) => {
  const conn = new Database(db)
  try {
    conn.pragma("busy_timeout = 5000")
    conn.prepare(`INSERT INTO runs (run_id, status, started_at, config_hash, settings_json, canonical_version, owner_pid, owner_host)
                  VALUES (?, 'running', '2020-01-01T00:00:00.000Z', 'h', '{}', 'v1', ?, ?)`).run(runId, pid, host)
  } finally {
    conn.close()
  }
}

describe("a pipeline run killed with SIGKILL", () => {
  it("stays running in the file until the next command records it interrupted, process_crash, once", async () => {
    const db = join(dir, "kill.db")
    const run = spawnCli(["run", "-s", settings("kill", bigCsv), "--db", db, "--quiet"])
    const runId = await waitForDb(db, "recorded rows", (c) => {
      const n = (c.prepare("SELECT COUNT(*) AS n FROM rows").get() as { n: number }).n
      return n > 0 ? (c.prepare("SELECT run_id FROM runs").get() as { run_id: string }).run_id : undefined
    }, run.stderr)
    run.child.kill("SIGKILL")
    expect(await run.exited).toEqual({ code: null, signal: "SIGKILL" })

    // The dead process could not say anything: the file still reads running.
    expect(pipelineRow(db, runId)).toMatchObject({ status: "running", status_reason: null, owner_pid: run.child.pid, owner_host: HOST })

    const runs = runsJson(db)
    expect(runs).toEqual([expect.objectContaining({ run_id: runId, kind: "pipeline", status: "interrupted", reason: "process_crash" })])
    // Recorded in the database, not only shown.
    const reaped = pipelineRow(db, runId)
    expect(reaped).toMatchObject({ status: "interrupted", status_reason: "process_crash", owner_pid: run.child.pid })

    // A second command finds nothing to do: the row and the listing stay as they are.
    expect(runsJson(db)).toEqual(runs)
    expect(pipelineRow(db, runId)).toEqual(reaped)
    const explain = runCli(["explain", "--db", db, "--run", runId, "--row", "0", "--json"])
    expect(pipelineRow(db, runId)).toEqual(reaped)
    expect(explain.status, explain.stderr).toBe(0)
  }, 120_000)
})

describe("runs that are not crashes", () => {
  it("a run in progress in another process, a live owner and another host's run stay running", async () => {
    const db = join(dir, "live.db")
    // The source reads a FIFO the test holds open, so the run stays in progress as long as needed.
    const fifo = join(dir, "live.csv")
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0)
    // Read-write on Linux: opening does not wait for the reader, and the reader never sees EOF early.
    const fd = openSync(fifo, "r+")
    let fifoOpen = true
    const closeFifo = () => {
      if (fifoOpen) closeSync(fd)
      fifoOpen = false
    }
    try {
      writeSync(fd, "id,name,amount\n1,a,10\n2,b,3000\n")
      const live = spawnCli(["run", "-s", settings("live", fifo), "--db", db, "--quiet"])
      const liveRunId = await waitForDb(db, "the live run's row", (c) =>
        (c.prepare("SELECT run_id FROM runs WHERE owner_pid = ?").get(live.child.pid) as { run_id: string } | undefined)?.run_id,
        live.stderr)

      // Fabricated rows beside it: one owned by a live process of this host, one by a
      // process of another host (whose pid here means nothing), one by a dead process.
      const sleeper = spawn("sleep", ["60"], { stdio: "ignore" })
      started.push(sleeper)
      const gone = deadPid()
      insertRun(db, "run_fab_live_owner", sleeper.pid!, HOST)
      insertRun(db, "run_fab_other_host", gone, "elsewhere.invalid")
      insertRun(db, "run_fab_gone", gone, HOST)

      const runs = runsJson(db)
      const byId = new Map(runs.map((r) => [r.run_id, r]))
      expect(byId.get(liveRunId)).toMatchObject({ status: "running", reason: null })
      expect(byId.get("run_fab_live_owner")).toMatchObject({ status: "running", reason: null })
      expect(byId.get("run_fab_other_host")).toMatchObject({ status: "running", reason: null })
      // In the same command, the dead owner's run was recorded as a crash.
      expect(byId.get("run_fab_gone")).toMatchObject({ status: "interrupted", reason: "process_crash" })

      expect(pipelineRow(db, liveRunId)).toMatchObject({ status: "running", status_reason: null })
      expect(pipelineRow(db, "run_fab_live_owner")).toMatchObject({ status: "running", status_reason: null })
      expect(pipelineRow(db, "run_fab_other_host")).toMatchObject({ status: "running", status_reason: null })
      expect(pipelineRow(db, "run_fab_gone")).toMatchObject({ status: "interrupted", status_reason: "process_crash" })

      // The live run finishes on its own, untouched by the command that ran beside it.
      closeFifo()
      const end = await live.exited
      expect(end, live.stderr()).toEqual({ code: 0, signal: null })
      expect(pipelineRow(db, liveRunId)).toMatchObject({ status: "completed", status_reason: null })
      expect(readFileSync(join(dir, "live", "out.csv"), "utf8").trim().split(/\r?\n/)).toHaveLength(3)
      // Its owner is gone now, but it had ended: a later command leaves it completed.
      runsJson(db)
      expect(pipelineRow(db, liveRunId)).toMatchObject({ status: "completed", status_reason: null })
    } finally {
      closeFifo()
    }
  }, 120_000)
})

/** Field 5 of /proc/<pid>/stat: the process group. */
const processGroupOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2])
}

describe("a loop run killed with SIGKILL while a stage runs", () => {
  it("is recorded interrupted, process_crash by the next command: the run, its running issue and stage", async () => {
    const repo = makeRepo()
    const loopDir = join(dir, "loop")
    mkdirSync(loopDir)
    const pidFile = join(loopDir, "implementer.pid")
    const implementer = join(loopDir, "implementer.sh")
    // Records its pid, then works far longer than the test lasts.
    writeFileSync(implementer, `echo $$ > ${JSON.stringify(pidFile)}\nexec sleep 120\n`)
    writeFileSync(join(loopDir, "issues.yaml"), YAML.stringify([{ id: "C-1", title: "slow" }, { id: "C-2", title: "waits its turn" }]))
    writeFileSync(join(loopDir, "loop.yaml"), YAML.stringify({
      repo,
      issues: "issues.yaml",
      workdir: join(loopDir, "work"),
      max_agents: 1,
      implementer: { command: `bash ${JSON.stringify(implementer)}`, timeout: "5m" },
      validation_triggers: { run_end: { fire_on: "both", commands: [], code_review: { enabled: false } } }
    }))
    const db = join(loopDir, "audit.db")
    const loop = spawnCli(["loop", "-c", join(loopDir, "loop.yaml"), "--db", db, "--json"])

    const stage = await waitForDb(db, "the implementer stage to be running", (c) =>
      c.prepare(`SELECT stage_id, run_id, issue_id FROM stage_results WHERE stage = 'implementer' AND status = 'running'`).get() as
        | { stage_id: string; run_id: string; issue_id: string }
        | undefined,
      loop.stderr)
    const implementerPid = await waitForDb(db, "the implementer's pid", () => {
      try {
        const pid = Number(readFileSync(pidFile, "utf8").trim())
        return pid > 0 ? pid : undefined
      } catch {
        return undefined
      }
    }, loop.stderr, 300)
    // The command runs in its own process group (its watchdog kills it once runledger dies; see loop-crash.test.ts).
    orphanGroups.push(processGroupOf(implementerPid))

    loop.child.kill("SIGKILL")
    expect(await loop.exited).toEqual({ code: null, signal: "SIGKILL" })

    const runId = stage.run_id
    const loopRow = () =>
      readDb(db, (c) =>
        c.prepare(`SELECT status, reason, owner_pid, owner_host, interrupted_count FROM loop_runs WHERE run_id = ?`).get(runId)
      )
    const issues = () =>
      readDb(db, (c) => c.prepare(`SELECT issue_id, status, reason FROM loop_issues WHERE run_id = ? ORDER BY issue_id`).all(runId))
    const stages = () =>
      readDb(db, (c) => c.prepare(`SELECT stage_id, stage, status, reason FROM stage_results WHERE run_id = ? ORDER BY rowid`).all(runId))

    // Before any command: the trail reads as the dead process left it.
    expect(loopRow()).toMatchObject({ status: "running", reason: null, owner_pid: loop.child.pid, owner_host: HOST })
    expect(issues()).toEqual([
      { issue_id: "C-1", status: "running", reason: null },
      { issue_id: "C-2", status: "pending", reason: null }
    ])
    const stagesBefore = stages() as Array<{ stage_id: string; stage: string; status: string; reason: string | null }>
    expect(stagesBefore.filter((s) => s.status === "running").map((s) => s.stage_id)).toContain(stage.stage_id)

    const runs = runsJson(db)
    expect(runs).toEqual([expect.objectContaining({ run_id: runId, kind: "loop", status: "interrupted", reason: "process_crash" })])

    // Recorded in the database: the run, the issue that was running, every stage that was running.
    expect(loopRow()).toMatchObject({ status: "interrupted", reason: "process_crash", interrupted_count: 1 })
    expect(issues()).toEqual([
      { issue_id: "C-1", status: "interrupted", reason: "process_crash" },
      { issue_id: "C-2", status: "pending", reason: null }
    ])
    const stagesAfter = stages() as typeof stagesBefore
    expect(stagesAfter).toHaveLength(stagesBefore.length)
    for (const [i, before] of stagesBefore.entries()) {
      expect(stagesAfter[i]).toEqual(
        before.status === "running" ? { ...before, status: "interrupted", reason: "process_crash" } : before
      )
    }
    expect(stagesAfter.find((s) => s.stage_id === stage.stage_id)).toMatchObject({ stage: "implementer", status: "interrupted", reason: "process_crash" })

    // Once: a second command changes nothing.
    const snapshot = { run: loopRow(), issues: issues(), stages: stages() }
    expect(runsJson(db)).toEqual(runs)
    expect({ run: loopRow(), issues: issues(), stages: stages() }).toEqual(snapshot)
  }, 120_000)
})
