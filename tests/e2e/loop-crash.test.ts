/**
 * kill -9 of `runledger loop` through the built CLI leaves no process behind: the
 * watchdog it started kills every command's process group (TERM-ignoring grandchildren
 * included) within 2 s, whatever stage was running; and when the watchdog was killed
 * too, the next command that opens the Landscape kills the survivors. Either way that
 * command closes the trail: stages `interrupted, process_crash`, a command row for each
 * command that was running, no process row left `running`.
 *
 * Every process the loop starts inherits LOOP_CRASH_MARK=<unique> from the test; a
 * survivor is a live process carrying it (the watchdog carries it too, so it must be
 * gone as well).
 */
import { afterEach, describe, expect, it } from "vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import * as YAML from "yaml"
import { fixture, makeRepo, tempDir } from "../loop/helpers.js"
import { BIN, runCli } from "../support/cli.js"

const MARK_ENV = "LOOP_CRASH_MARK"
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Proc {
  readonly pid: number
  readonly pgrp: number
  readonly args: string
}

const statOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return { state: rest[0]!, pgrp: Number(rest[2]) }
}

/** Live processes whose environment carries the mark, or whose argv matches `argv`. */
const scan = (match: (environ: string, args: Array<string>) => boolean): Array<Proc> => {
  const found: Array<Proc> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    try {
      const { pgrp, state } = statOf(pid)
      if (state === "Z") continue
      const environ = readFileSync(`/proc/${pid}/environ`, "latin1")
      const args = readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").filter((a) => a !== "")
      if (match(environ, args)) found.push({ pid, pgrp, args: args.join(" ") })
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found
}

const survivors = (mark: string) => scan((environ) => environ.split("\0").includes(`${MARK_ENV}=${mark}`))

/** The watchdog of runledger process `owner`. */
const watchdogOf = (owner: number) =>
  scan((_, args) => args.some((a) => a.endsWith("watchdog-process.js")) && args.includes(String(owner)))

const waitFor = async <A>(what: string, probe: () => A | undefined, ms: number, context: () => string = () => ""): Promise<A> => {
  const until = Date.now() + ms
  for (;;) {
    const value = probe()
    if (value !== undefined) return value
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${context()}`)
    await sleep(20)
  }
}

/** The mark's processes all gone within `ms`. */
const expectNoSurvivors = async (mark: string, ms: number) => {
  const until = Date.now() + ms
  let left = survivors(mark)
  while (left.length > 0 && Date.now() < until) {
    await sleep(20)
    left = survivors(mark)
  }
  expect(left, "processes still alive").toEqual([])
}

/** Reads the file read-only: no runledger command, so nothing is reaped. */
const readDb = <A>(db: string, read: (conn: Database.Database) => A): A | undefined => {
  try {
    const conn = new Database(db, { readonly: true, fileMustExist: true })
    try {
      return read(conn)
    } finally {
      conn.close()
    }
  } catch {
    return undefined
  }
}

const started: Array<ChildProcess> = []
const marks: Array<string> = []

afterEach(() => {
  // Whatever a failed test left behind.
  for (const mark of marks.splice(0)) for (const p of survivors(mark)) {
    try {
      process.kill(p.pid, "SIGKILL")
    } catch {
      // gone
    }
  }
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

/**
 * A command that ignores SIGTERM, with two grandchildren in its group that ignore it
 * too; it touches `$UP_DIR/<ISSUE_ID>.<tag>` once they run.
 */
const stubborn = (tag: string) =>
  `trap '' TERM; sleep 60 & sh -c 'trap "" TERM; sleep 60 & wait' & sleep 0.1; touch "$UP_DIR/$ISSUE_ID.${tag}"; wait`

interface Loop {
  readonly dir: string
  readonly db: string
  readonly up: string
  readonly mark: string
  readonly child: ChildProcess
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly stderr: () => string
  readonly stdout: () => string
}

const startLoop = (
  config: Record<string, unknown>,
  issues: ReadonlyArray<Record<string, unknown>>,
  options: { readonly detached?: boolean } = {}
): Loop => {
  const dir = tempDir("rl-loop-crash-")
  const up = join(dir, "up")
  mkdirSync(up)
  const mark = `m${process.pid}-${Math.random().toString(36).slice(2)}`
  marks.push(mark)
  writeFileSync(join(dir, "issues.yaml"), YAML.stringify(issues))
  writeFileSync(join(dir, "loop.yaml"), YAML.stringify({
    repo: makeRepo(),
    issues: "issues.yaml",
    workdir: join(dir, "work"),
    kill_grace: "300ms",
    validation_triggers: { run_end: { fire_on: "both", commands: [], code_review: { enabled: false } } },
    ...config
  }))
  const db = join(dir, "audit.db")
  const child = spawn(process.execPath, [BIN, "loop", "-c", join(dir, "loop.yaml"), "--db", db, "--json"], {
    env: { ...process.env, [MARK_ENV]: mark, UP_DIR: up },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false
  })
  started.push(child)
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (d) => (stdout += String(d)))
  child.stderr!.on("data", (d) => (stderr += String(d)))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal }))
  )
  return { dir, db, up, mark, child, exited, stderr: () => stderr, stdout: () => stdout }
}

/** Waits until each `<issue>.<tag>` command runs and its process group is recorded. */
const waitRunning = async (loop: Loop, commands: ReadonlyArray<string>) => {
  for (const name of commands) {
    await waitFor(`${name} to run`, () => (existsSync(join(loop.up, name)) ? true : undefined), 30_000, loop.stderr)
  }
  await waitFor("the process groups to be recorded", () => {
    const n = readDb(loop.db, (c) => (c.prepare(`SELECT COUNT(*) AS n FROM loop_processes WHERE status = 'running'`).get() as { n: number }).n)
    return n !== undefined && n >= commands.length ? n : undefined
  }, 10_000, loop.stderr)
  // The groups hold their grandchildren by now: the command touched the file after starting them.
  expect(survivors(loop.mark).length).toBeGreaterThanOrEqual(3 * commands.length)
}

const kill9 = async (loop: Loop) => {
  loop.child.kill("SIGKILL")
  expect(await loop.exited).toEqual({ code: null, signal: "SIGKILL" })
}

interface StageRow {
  readonly issue_id: string | null
  readonly stage: string
  readonly status: string
  readonly reason: string | null
  readonly stage_id: string
}
interface CommandRow {
  readonly stage_id: string | null
  readonly issue_id: string | null
  readonly stage: string
  readonly ref: string
  readonly passed: number
  readonly exit_code: number | null
  readonly output_tail: string
  readonly log_file: string | null
}

const trail = (db: string) =>
  readDb(db, (c) => ({
    run: c.prepare(`SELECT run_id, status, reason, total_count, interrupted_count FROM loop_runs`).all() as Array<{
      run_id: string
      status: string
      reason: string | null
      total_count: number
      interrupted_count: number
    }>,
    stages: c.prepare(`SELECT stage_id, issue_id, stage, status, reason FROM stage_results ORDER BY rowid`).all() as Array<StageRow>,
    commands: c.prepare(`SELECT stage_id, issue_id, stage, ref, passed, exit_code, output_tail, log_file FROM command_results ORDER BY rowid`)
      .all() as Array<CommandRow>,
    processes: c.prepare(`SELECT issue_id, stage, ref, status, survivors FROM loop_processes ORDER BY rowid`).all() as Array<{
      issue_id: string | null
      stage: string
      ref: string
      status: string
      survivors: number | null
    }>
  }))!

/** `runledger runs` opens the file: the crashed run is recorded, its trail closed. */
const runsAfterCrash = (db: string) => {
  const r = runCli(["runs", "--db", db, "--json"])
  expect(r.status, r.stderr).toBe(0)
  const runs = JSON.parse(r.stdout) as Array<{ kind: string; status: string; reason: string | null }>
  expect(runs).toEqual([expect.objectContaining({ kind: "loop", status: "interrupted", reason: "process_crash" })])
  const t = trail(db)
  expect(t.run[0]).toMatchObject({ status: "interrupted", reason: "process_crash" })
  expect(t.stages.filter((s) => s.status === "running")).toEqual([])
  expect(t.processes.filter((p) => p.status === "running")).toEqual([])
  return t
}

/** The command that was running when runledger died: its stage is closed, it has a command row. */
const expectCrashed = (t: ReturnType<typeof trail>, issueId: string | null, stage: string, ref: string) => {
  const row = t.stages.filter((s) => s.issue_id === issueId && s.stage === stage).at(-1)
  expect(row).toMatchObject({ status: "interrupted", reason: "process_crash" })
  const command = t.commands.find((c) => c.issue_id === issueId && c.ref === ref && c.exit_code === null)
  expect(command, JSON.stringify(t.commands)).toMatchObject({ stage_id: row!.stage_id, stage, passed: 0, exit_code: null })
  expect(command!.output_tail).toContain("process_crash: runledger died while this command ran")
  expect(t.processes.find((p) => p.issue_id === issueId && p.ref === ref && p.status === "reaped")).toBeDefined()
  return command!
}

const noRunEnd = { run_end: { fire_on: "both", commands: [], code_review: { enabled: false } } }

describe.skipIf(process.platform !== "linux")("kill -9 of runledger loop: its watchdog kills every command", () => {
  it("during the implementer: 0 survivors within 2 s; the next command closes the stage", async () => {
    const loop = startLoop({ max_agents: 1, implementer: { command: stubborn("implementer"), timeout: "5m" } }, [
      { id: "K-1", title: "killed" },
      { id: "K-2", title: "never starts" }
    ])
    await waitRunning(loop, ["K-1.implementer"])
    const watchdog = watchdogOf(loop.child.pid!)
    expect(watchdog).toHaveLength(1)
    // Its own session: not in runledger's process group.
    expect(watchdog[0]!.pgrp).not.toBe(statOf(loop.child.pid!).pgrp)
    await kill9(loop)
    await expectNoSurvivors(loop.mark, 2000)

    const t = runsAfterCrash(loop.db)
    expectCrashed(t, "K-1", "implementer", "implementer")
    expect(t.run[0]).toMatchObject({ total_count: 2, interrupted_count: 1 })
  }, 60_000)

  it("during a gate command", async () => {
    const loop = startLoop({
      implementer: { command: fixture("implementer-commit.sh"), timeout: "1m" },
      commands: { slow_check: stubborn("gate") },
      gate: { commands: ["slow_check"] }
    }, [{ id: "G-1", title: "gated" }])
    await waitRunning(loop, ["G-1.gate"])
    await kill9(loop)
    await expectNoSurvivors(loop.mark, 2000)

    const t = runsAfterCrash(loop.db)
    expect(t.stages.find((s) => s.stage === "implementer")).toMatchObject({ status: "pass" })
    expectCrashed(t, "G-1", "gate", "slow_check")
  }, 60_000)

  it("during session_end, after a Ctrl-C to runledger's process group", async () => {
    const loop = startLoop({
      implementer: { command: fixture("implementer-commit.sh"), timeout: "1m" },
      commands: { slow_validation: stubborn("session_end") },
      validation_triggers: { ...noRunEnd, session_end: { commands: [{ ref: "slow_validation" }] } }
    }, [{ id: "S-1", title: "validated" }], { detached: true })
    await waitRunning(loop, ["S-1.session_end"])
    const watchdog = watchdogOf(loop.child.pid!)
    expect(watchdog).toHaveLength(1)
    // Ctrl-C at a terminal signals the foreground process group: runledger drains (the
    // command goes on), and the watchdog, in a session of its own, is not touched.
    process.kill(-loop.child.pid!, "SIGINT")
    await waitFor("the drain message", () => (loop.stderr().includes("interrupt: draining") ? true : undefined), 10_000, loop.stderr)
    await sleep(200)
    expect(watchdogOf(loop.child.pid!).map((p) => p.pid)).toEqual([watchdog[0]!.pid])
    expect(survivors(loop.mark).length).toBeGreaterThanOrEqual(4)

    await kill9(loop)
    await expectNoSurvivors(loop.mark, 2000)
    const t = runsAfterCrash(loop.db)
    expectCrashed(t, "S-1", "session_end", "slow_validation")
  }, 60_000)

  it("during the fixer of a remediating session_end", async () => {
    const loop = startLoop({
      implementer: { command: fixture("implementer-commit.sh"), timeout: "1m" },
      commands: { failing: "exit 1" },
      fixer: { command: stubborn("fixer"), timeout: "5m" },
      validation_triggers: {
        ...noRunEnd,
        session_end: { failure_mode: "remediate", max_retries: 1, commands: [{ ref: "failing" }] }
      }
    }, [{ id: "F-1", title: "remediated" }])
    await waitRunning(loop, ["F-1.fixer"])
    await kill9(loop)
    await expectNoSurvivors(loop.mark, 2000)

    const t = runsAfterCrash(loop.db)
    const fixer = expectCrashed(t, "F-1", "session_end", "fixer")
    expect(fixer.log_file).toMatch(/\/logs\/\d{3}-session_end-fixer\.log$/)
    // The validation before it ended normally and keeps its own row.
    expect(t.commands.find((c) => c.ref === "failing")).toMatchObject({ passed: 0, exit_code: 1 })
  }, 60_000)

  it("during run_end (the run's own stage)", async () => {
    const loop = startLoop({
      implementer: { command: fixture("implementer-commit.sh"), timeout: "1m" },
      commands: { slow_suite: stubborn("run_end") },
      validation_triggers: { run_end: { fire_on: "both", commands: [{ ref: "slow_suite" }] } }
    }, [{ id: "R-1", title: "done before run_end" }])
    // run_end's ISSUE_ID is empty.
    await waitRunning(loop, [".run_end"])
    await kill9(loop)
    await expectNoSurvivors(loop.mark, 2000)

    const t = runsAfterCrash(loop.db)
    expectCrashed(t, null, "run_end", "slow_suite")
    expect(t.run[0]).toMatchObject({ total_count: 1, interrupted_count: 0 })
  }, 60_000)

  it("with max_agents 2: both issues' commands", async () => {
    const loop = startLoop({ max_agents: 2, implementer: { command: stubborn("implementer"), timeout: "5m" } }, [
      { id: "P-1", title: "one" },
      { id: "P-2", title: "two" }
    ])
    await waitRunning(loop, ["P-1.implementer", "P-2.implementer"])
    await kill9(loop)
    await expectNoSurvivors(loop.mark, 2000)

    const t = runsAfterCrash(loop.db)
    expectCrashed(t, "P-1", "implementer", "implementer")
    expectCrashed(t, "P-2", "implementer", "implementer")
    expect(t.run[0]).toMatchObject({ total_count: 2, interrupted_count: 2 })
  }, 60_000)
})

describe.skipIf(process.platform !== "linux")("kill -9 of runledger loop and of its watchdog", () => {
  it("leaves survivors until the next command opens the Landscape, which kills them and closes the trail", async () => {
    const loop = startLoop({ implementer: { command: stubborn("implementer"), timeout: "5m" } }, [{ id: "W-1", title: "orphaned" }])
    await waitRunning(loop, ["W-1.implementer"])
    const [watchdog] = watchdogOf(loop.child.pid!)
    expect(watchdog).toBeDefined()
    process.kill(watchdog!.pid, "SIGKILL")
    await waitFor("the watchdog to die", () => (watchdogOf(loop.child.pid!).length === 0 ? true : undefined), 2000)
    await kill9(loop)

    // Nothing is left to kill them: they live on, orphaned.
    await sleep(700)
    const orphans = survivors(loop.mark)
    expect(orphans.length).toBeGreaterThanOrEqual(3)
    expect(trail(loop.db).processes).toEqual([expect.objectContaining({ status: "running" })])

    const t = runsAfterCrash(loop.db)
    await expectNoSurvivors(loop.mark, 2000)
    const command = expectCrashed(t, "W-1", "implementer", "implementer")
    expect(command.output_tail).toMatch(/\d+ process\(es\) of its group \(\d+\) were still alive and were killed/)
    expect(t.processes[0]!.survivors).toBe(orphans.length)

    // Once: a second command finds nothing more to do.
    const again = runCli(["runs", "--db", loop.db, "--json"])
    expect(again.status, again.stderr).toBe(0)
    expect(trail(loop.db)).toEqual(t)
  }, 60_000)
})

describe.skipIf(process.platform !== "linux")("the watchdog in a run that ends normally", () => {
  it("exits with runledger; every process row is ended", async () => {
    const loop = startLoop({ implementer: { command: fixture("implementer-commit.sh"), timeout: "1m" } }, [{ id: "N-1", title: "fine" }])
    const watchdog = await waitFor("the watchdog", () => watchdogOf(loop.child.pid!)[0], 10_000, loop.stderr)
    const end = await loop.exited
    expect(end, loop.stderr()).toEqual({ code: 0, signal: null })
    await waitFor("the watchdog to exit", () => (existsSync(`/proc/${watchdog.pid}`) ? undefined : true), 2000)
    expect(loop.stderr()).not.toContain("warning: the process watchdog")
    const t = trail(loop.db)
    expect(t.processes).toEqual([expect.objectContaining({ ref: "implementer", stage: "implementer", status: "ended", survivors: null })])
    await expectNoSurvivors(loop.mark, 2000)
  }, 60_000)
})

describe.skipIf(process.platform !== "linux")("a recorded group number that now belongs to another process", () => {
  it("is not killed by the reaper: the process does not carry the command's marker", async () => {
    const dir = tempDir("rl-loop-reuse-")
    const db = join(dir, "audit.db")
    // A Landscape to fabricate the dead run in: made by a one-row pipeline run (`runs` never creates one).
    writeFileSync(join(dir, "in.csv"), "id\n1\n")
    writeFileSync(join(dir, "make.yaml"), "source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}, on_validation_failure: discard}}\n" +
      "sinks: {out: {plugin: csv, options: {path: out.csv, schema: {mode: observed}}}}\ndefault_sink: out\n")
    const made = runCli(["run", "-s", "make.yaml", "--db", db, "--quiet"], { cwd: dir })
    expect(made.status, made.stderr).toBe(0)
    // A stranger in a process group of its own, and a dead run that recorded that group.
    const stranger = spawn("sleep", ["60"], { detached: true, stdio: "ignore" })
    started.push(stranger)
    await waitFor("the stranger", () => (existsSync(`/proc/${stranger.pid}`) ? true : undefined), 2000)
    const dead = spawn("true")
    await new Promise((r) => dead.on("exit", r))
    const conn = new Database(db)
    try {
      conn.prepare(`INSERT INTO loop_runs (run_id, status, started_at, config_file, config_json, repo, run_dir, max_agents,
                      owner_pid, owner_host) VALUES ('loop-fab', 'running', '2020-01-01T00:00:00.000Z', 'x', '{"killGraceMs":100}',
                      '.', '.', 1, ?, ?)`).run(dead.pid, (await import("node:os")).hostname())
      conn.prepare(`INSERT INTO loop_processes (process_id, run_id, issue_id, stage, ref, command, pgid, status, started_at)
                    VALUES ('p-fab', 'loop-fab', NULL, 'run_end', 'check', 'make check', ?, 'running', '2020-01-01T00:00:01.000Z')`)
        .run(stranger.pid)
    } finally {
      conn.close()
    }
    const r = runCli(["runs", "--db", db, "--json"])
    expect(r.status, r.stderr).toBe(0)
    await sleep(300)
    expect(stranger.exitCode).toBeNull()
    expect(statOf(stranger.pid!).state).not.toBe("Z")
    const t = trail(db)
    expect(t.processes).toEqual([expect.objectContaining({ status: "reaped", survivors: 0 })])
    expect(t.commands).toEqual([
      expect.objectContaining({ stage_id: null, ref: "check", exit_code: null, output_tail: expect.stringContaining("no process of its group") })
    ])
  }, 30_000)
})
