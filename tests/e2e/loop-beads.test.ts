/**
 * `runledger loop` with live beads through the built CLI, the tracker being a stand-in
 * `bd` on PATH (tests/fixtures/loop/fake-bd.mjs, its state in a JSON file): a capped
 * run, a second run that takes the rest and completes the epic, and a kill -9 in the
 * middle of an issue followed by `--resume`, which works the claimed issue again and
 * goes on polling.
 */
import { afterEach, describe, expect, it } from "vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import Database from "better-sqlite3"
import * as YAML from "yaml"
import { FIXTURES, fixture, makeRepo, tempDir } from "../loop/helpers.js"
import { BIN, runCli } from "../support/cli.js"

const started: Array<ChildProcess> = []
const groups: Array<number> = []
afterEach(() => {
  for (const pgid of groups.splice(0)) {
    try {
      process.kill(-pgid, "SIGKILL")
    } catch {
      // gone
    }
  }
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Tracked {
  readonly id: string
  readonly status: string
  readonly close_reason?: string
}

/** A repo, a tracker state, a `bd` on PATH and a loop config using `issues: {source: beads}`. */
const setup = (issues: ReadonlyArray<Record<string, unknown>>, implementer: string, extra: Record<string, unknown> = {}) => {
  const dir = tempDir("rl-loop-beads-")
  const repo = makeRepo()
  const state = join(dir, "beads.json")
  writeFileSync(state, JSON.stringify({ issues: issues.map((i) => ({ status: "open", ...i })) }))
  const bin = join(dir, "bin")
  mkdirSync(bin)
  writeFileSync(join(bin, "bd"), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(resolve(FIXTURES, "fake-bd.mjs"))} "$@"\n`)
  chmodSync(join(bin, "bd"), 0o755)
  const config = join(dir, "loop.yaml")
  writeFileSync(config, YAML.stringify({
    repo,
    issues: { source: "beads" },
    workdir: join(dir, "work"),
    kill_grace: "300ms",
    implementer: { command: implementer, timeout: "2m" },
    ...extra
  }))
  const env = { PATH: `${bin}:${process.env.PATH}`, BD_STATE: state }
  return {
    dir,
    repo,
    config,
    db: join(dir, "audit.db"),
    env,
    tracker: () => (JSON.parse(readFileSync(state, "utf8")) as { issues: Array<Tracked> }).issues,
    status: (id: string) => (JSON.parse(readFileSync(state, "utf8")) as { issues: Array<Tracked> }).issues.find((i) => i.id === id)?.status
  }
}

interface LoopJson {
  run_id: string
  status: string
  attempt: number
  counts: { total: number; success: number }
  issues: Array<{ issue_id: string; status: string }>
  epics: Array<{ epic_id: string; status: string; commands: Array<{ ref: string; passed: boolean }> }>
}

describe("runledger loop with live beads", () => {
  it("--max-issues caps a run; the next run takes the rest and completes the epic; status shows the tracker stages", () => {
    const s = setup([
      { id: "ep", title: "epic", issue_type: "epic" },
      { id: "a", title: "a", priority: 0, parent: "ep" },
      { id: "b", title: "b", priority: 1, parent: "ep" },
      { id: "c", title: "c needs a", priority: 2, parent: "ep", depends_on: ["a"] }
    ], fixture("implementer-commit.sh"), {
      max_agents: 2,
      commands: { has_c: "test -f work-c.txt && echo \"$EPIC_ID\" > epic-seen.txt" },
      validation_triggers: { epic_completion: { commands: [{ ref: "has_c" }] } }
    })
    const first = runCli(["loop", "-c", s.config, "--db", s.db, "--json", "--max-issues", "2"], { env: s.env })
    expect(first.status, first.stderr).toBe(0)
    const one = JSON.parse(first.stdout) as LoopJson
    expect(one.issues.map((i) => [i.issue_id, i.status])).toEqual([["a", "success"], ["b", "success"]])
    expect(one.epics).toEqual([])
    expect([s.status("a"), s.status("b"), s.status("c"), s.status("ep")]).toEqual(["closed", "closed", "open", "open"])

    const second = runCli(["loop", "-c", s.config, "--db", s.db, "--json"], { env: s.env })
    expect(second.status, second.stderr).toBe(0)
    const two = JSON.parse(second.stdout) as LoopJson
    expect(two.issues.map((i) => [i.issue_id, i.status])).toEqual([["c", "success"]])
    // c's close completed the epic: its trigger ran on this run's integrated work, then the epic was closed.
    expect(two.epics.map((e) => [e.epic_id, e.status])).toEqual([["ep", "closed"]])
    expect(two.epics[0]!.commands).toEqual([expect.objectContaining({ ref: "has_c", passed: true })])
    expect(s.status("ep")).toBe("closed")
    // The epic was never claimed.
    expect(readFileSync(`${join(s.dir, "beads.json")}.calls`, "utf8")).not.toMatch(/^update ep /m)

    const status = runCli(["loop", "status", "--db", s.db, "--run", one.run_id], { env: s.env })
    expect(status.status, status.stderr).toBe(0)
    expect(status.stdout).toMatch(/claim/)
    expect(status.stdout).toMatch(/close/)
    const epicStatus = runCli(["loop", "status", "--db", s.db, "--run", two.run_id, "--json"], { env: s.env })
    const doc = JSON.parse(epicStatus.stdout) as { other_stages: Array<{ id: string; stages: Array<{ stage: string; status: string }> }> }
    expect(doc.other_stages.map((o) => [o.id, o.stages.map((x) => `${x.stage}:${x.status}`)])).toEqual([
      ["ep", ["epic_completion:pass", "close:pass"]]
    ])
    expect(runCli(["loop", "status", "--db", s.db, "--run", two.run_id]).stdout).toContain("ep: epic")
    const epicLogs = runCli(["loop", "logs", "ep", "--db", s.db, "--run", two.run_id])
    expect(epicLogs.status, epicLogs.stderr).toBe(0)
    expect(epicLogs.stdout).toContain("== epic_completion #1 has_c: exit 0")
  }, 90_000)

  it("kill -9 while an issue runs, then --resume: the claimed issue is worked again, then the rest, then closed", async () => {
    const s = setup([
      { id: "x", title: "x", priority: 0 },
      { id: "y", title: "y hangs once", priority: 1 },
      { id: "z", title: "z needs y", priority: 2, depends_on: ["y"] }
    ], "", {})
    // The implementer: y hangs on its first run (pid in $dir/hung).
    const doc = YAML.parse(readFileSync(s.config, "utf8")) as Record<string, unknown>
    doc["implementer"] = { command: fixture("implementer-hang-once.sh", s.dir, "y", "60"), timeout: "2m" }
    writeFileSync(s.config, YAML.stringify(doc))
    const child = spawn(process.execPath, [BIN, "loop", "-c", s.config, "--db", s.db], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...s.env }
    })
    started.push(child)
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += String(d)))
    const exited = new Promise((r) => child.on("exit", r))
    const hung = join(s.dir, "hung")
    for (let i = 0; i < 300 && !(existsSync(hung) && readFileSync(hung, "utf8").trim() !== ""); i++) await sleep(100)
    expect(existsSync(hung), stderr).toBe(true)
    const pid = Number(readFileSync(hung, "utf8").trim())
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    groups.push(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]))
    expect(s.status("x")).toBe("closed")
    expect(s.status("y")).toBe("in_progress")
    child.kill("SIGKILL")
    await exited

    const conn = new Database(s.db, { readonly: true })
    const runId = (conn.prepare("SELECT run_id FROM loop_runs").get() as { run_id: string }).run_id
    conn.close()
    const resumed = runCli(["loop", "-c", s.config, "--db", s.db, "--resume", runId, "--json"], { env: s.env })
    expect(resumed.status, resumed.stderr).toBe(0)
    const r = JSON.parse(resumed.stdout) as LoopJson
    expect(r.run_id).toBe(runId)
    expect(r.attempt).toBe(2)
    // x kept its record; y was worked again (claimed again), then z, unblocked by y's close, was picked up.
    expect(r.issues.map((i) => [i.issue_id, i.status])).toEqual([["x", "success"], ["y", "success"], ["z", "success"]])
    expect(r.counts).toEqual(expect.objectContaining({ total: 3, success: 3 }))
    expect(s.tracker().map((i) => [i.id, i.status])).toEqual([["x", "closed"], ["y", "closed"], ["z", "closed"]])
    const runs = readFileSync(join(s.dir, "runs.log"), "utf8").split("\n").filter((l) => l !== "").map((l) => l.split(" ")[0])
    expect(runs).toEqual(["x", "y", "y", "z"])
  }, 90_000)
})
