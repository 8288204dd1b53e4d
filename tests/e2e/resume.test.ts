/**
 * Crash-consistent runs through the built CLI: a pipeline with a gate, an aggregation,
 * a fork/coalesce and csv, json, jsonl and database sinks is killed with SIGKILL at
 * many points (after N rows, between a sink's write and its fsync, between the fsync
 * of every sink and the Landscape transaction, right after a checkpoint, and during a
 * resume), resumed — sometimes crashing again — and must end byte-identical to an
 * uninterrupted run, with the same RunResult and the same Landscape counts. A few of
 * the kill points run again on the same pipeline in the explicit form (a transform on a
 * fork branch, a gate tree).
 */
import { spawn, spawnSync } from "node:child_process"
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, runCliIn } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const root = tempDir("rl-resume-")
afterAll(() => rmSync(root, { recursive: true, force: true }))

const ROWS = 3_000

const input = (): string => {
  const lines = ["id,name,amount"]
  for (let i = 0; i < ROWS; i++) lines.push(`${i},n${i},${i % 97 === 0 ? "bad" : (i * 37) % 1000}`)
  return lines.join("\n") + "\n"
}

const positional = (aggregationBoundaries: boolean) => `
source:
  plugin: csv
  options:
    path: in.csv
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int"]}
    on_validation_failure: bad
aggregations:
  - name: stats
    plugin: batch_stats
    trigger: {count: 5}
    options: {schema: {mode: observed}, value_field: amount}
gates:
  - name: split
    condition: "row['count'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: [a, b]
  - name: big
    condition: "row['sum'] > 2600"
    routes: {"true": high, "false": continue}
  - name: mid
    condition: "row['sum'] > 2200"
    routes: {"true": out, "false": continue}
coalesce:
  - name: join
    branches: [a, b]
    merge: union
sinks:
  out: {plugin: csv, options: {path: out/out.csv, schema: {mode: observed}}}
  high: {plugin: json, options: {path: out/high.json, schema: {mode: observed}}}
  bad: {plugin: json, options: {path: out/bad.jsonl, format: jsonl, schema: {mode: observed}}}
  db: {plugin: database, options: {url: "sqlite:///out/sink.db", table: results, schema: {mode: observed}}}
default_sink: db
checkpoint: {frequency: every_n, checkpoint_interval: 40, aggregation_boundaries: ${aggregationBoundaries}}
landscape: {url: sqlite:///runs/audit.db}
`

/** The same shape in the explicit form, with a transform on one fork branch and a gate tree. */
const explicit = (aggregationBoundaries: boolean) => `
source:
  plugin: csv
  on_success: raw
  options:
    path: in.csv
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int"]}
    on_validation_failure: bad
aggregations:
  - name: stats
    plugin: batch_stats
    input: raw
    on_success: totals
    trigger: {count: 5}
    options: {schema: {mode: observed}, value_field: amount}
gates:
  - name: split
    input: totals
    condition: "row['count'] >= 0"
    routes: {"true": fork, "false": bad}
    fork_to: [a, b]
  - name: big
    input: join
    condition: "row['sum'] > 2600"
    routes: {"true": high, "false": medium}
  - name: mid
    input: medium
    condition: "row['sum'] > 2200"
    routes: {"true": out, "false": db}
transforms:
  - name: rename
    plugin: field_mapper
    input: a
    on_success: a_done
    on_error: bad
    options: {schema: {mode: observed}, mapping: {count: n}}
coalesce:
  - name: join
    branches: {a: a_done, b: b}
    merge: union
sinks:
  out: {plugin: csv, on_write_failure: discard, options: {path: out/out.csv, schema: {mode: observed}}}
  high: {plugin: json, on_write_failure: discard, options: {path: out/high.json, schema: {mode: observed}}}
  bad: {plugin: json, on_write_failure: discard, options: {path: out/bad.jsonl, format: jsonl, schema: {mode: observed}}}
  db: {plugin: database, on_write_failure: discard, options: {url: "sqlite:///out/sink.db", table: results, schema: {mode: observed}}}
checkpoint: {frequency: every_n, checkpoint_interval: 40, aggregation_boundaries: ${aggregationBoundaries}}
landscape: {url: sqlite:///runs/audit.db}
`

type Form = "positional" | "explicit"
const settings = (form: Form, aggregationBoundaries: boolean) => (form === "explicit" ? explicit : positional)(aggregationBoundaries)

const cli = runCliIn

const FILES = ["out/out.csv", "out/high.json", "out/bad.jsonl"] as const

interface Snapshot {
  readonly files: Record<string, string>
  readonly table: ReadonlyArray<unknown>
  readonly result: Record<string, unknown>
  readonly outcomes: Record<string, number>
  readonly rows: number
}

const snapshot = (dir: string, result: Record<string, unknown>): Snapshot => {
  const files: Record<string, string> = {}
  for (const f of FILES) files[f] = readFileSync(join(dir, f), "latin1")
  const sink = new Database(join(dir, "out/sink.db"), { readonly: true })
  const table = sink.prepare("SELECT * FROM results ORDER BY rowid").all()
  sink.close()
  const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
  const outcomes = Object.fromEntries(
    (audit.prepare("SELECT outcome, COUNT(*) AS n FROM token_outcomes WHERE is_terminal = 1 GROUP BY outcome ORDER BY outcome").all() as Array<{ outcome: string; n: number }>)
      .map((r) => [r.outcome, r.n])
  )
  const rows = (audit.prepare("SELECT COUNT(*) AS n FROM rows").get() as { n: number }).n
  audit.close()
  const { run_id: _id, ...rest } = result
  return { files, table, result: rest, outcomes, rows }
}

const freshDir = (name: string, aggregationBoundaries: boolean, form: Form = "positional"): string => {
  const dir = join(root, name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, "in.csv"), input())
  writeFileSync(join(dir, "s.yaml"), settings(form, aggregationBoundaries))
  return dir
}

const runStatus = (dir: string): { run_id: string; status: string; status_reason: string | null } => {
  const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
  const row = audit.prepare("SELECT run_id, status, status_reason FROM runs").get() as { run_id: string; status: string; status_reason: string | null }
  audit.close()
  return row
}

/** Waits until the run in `dir` has recorded `rows` source rows (its Landscape may not exist yet). */
const waitForRows = async (dir: string, rows: number, timeoutMs: number, why: () => string) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (existsSync(join(dir, "runs/audit.db"))) {
      try {
        // Closed on every path: a connection left open while the Landscape is later
        // opened and closed in this process by the engine's own SQLite build (the
        // invariant checks) would keep a stale view of the WAL index and misread the file.
        const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
        try {
          const n = (audit.prepare("SELECT COUNT(*) AS n FROM rows").get() as { n: number }).n
          if (n >= rows) return
        } finally {
          audit.close()
        }
      } catch {
        // the schema may not be there yet
      }
    }
    if (Date.now() > deadline) throw new Error(why())
    await new Promise((r) => setTimeout(r, 20))
  }
}

const references = new Map<string, Snapshot>()

beforeAll(async () => {
  for (const [form, boundaries] of [["positional", false], ["positional", true], ["explicit", false]] as const) {
    const dir = freshDir(`reference-${form}-${boundaries}`, boundaries, form)
    const r = await cli(dir, ["run", "-s", "s.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    references.set(`${form}-${boundaries}`, snapshot(dir, JSON.parse(r.stdout) as Record<string, unknown>))
  }
}, 120_000)

/** Crashes the run at `crash`, then resumes, crashing the resumes at `again` in turn, until one completes. */
const crashAndResume = async (name: string, boundaries: boolean, crash: string, again: ReadonlyArray<string> = [], form: Form = "positional") => {
  const dir = freshDir(name, boundaries, form)
  const first = await cli(dir, ["run", "-s", "s.yaml", "--json"], crash)
  expect(first.signal, `the run was to be killed at ${crash}: ${first.stderr}`).toBe("SIGKILL")
  const { run_id } = runStatus(dir)
  let attempts = 1
  for (const point of again) {
    const r = await cli(dir, ["resume", run_id, "-s", "s.yaml", "--json"], point)
    expect(r.signal, `the resume was to be killed at ${point}: ${r.stderr}`).toBe("SIGKILL")
    attempts++
  }
  // The crashed run is recorded as such by the next command; its trail holds exactly its last checkpoint.
  const dry = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--dry-run", "--json"])
  expect(dry.status, dry.stderr).toBe(0)
  const preview = JSON.parse(dry.stdout) as { status: string; status_reason: string; rows_done: number; rows_left: number; next_attempt: number }
  expect(preview).toMatchObject({ status: "interrupted", status_reason: "process_crash", next_attempt: attempts + 1 })
  expect(preview.rows_done + preview.rows_left).toBe(ROWS)
  await checkInvariantsIn(join(dir, "runs/audit.db"), run_id)

  const done = await cli(dir, ["resume", run_id, "-s", "s.yaml", "--json"])
  expect(done.status, done.stderr).toBe(0)
  const result = JSON.parse(done.stdout) as Record<string, unknown>
  expect(result.run_id).toBe(run_id)
  const got = snapshot(dir, result)
  const want = references.get(`${form}-${boundaries}`)!
  for (const f of FILES) expect(got.files[f], `${f} after a crash at ${crash}`).toBe(want.files[f])
  expect(got.table).toEqual(want.table)
  expect(got.result).toEqual(want.result)
  expect(got.outcomes).toEqual(want.outcomes)
  expect(got.rows).toBe(ROWS)
  await checkInvariantsIn(join(dir, "runs/audit.db"), run_id)
  const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
  const history = audit.prepare("SELECT attempt, kind, status, reason FROM run_attempts ORDER BY attempt").all()
  audit.close()
  expect(history).toEqual([
    { attempt: 1, kind: "started", status: "interrupted", reason: "process_crash" },
    ...again.map((_, i) => ({ attempt: i + 2, kind: "resumed", status: "interrupted", reason: "process_crash" })),
    { attempt: attempts + 1, kind: "resumed", status: "completed", reason: null }
  ])
  rmSync(dir, { recursive: true, force: true })
}

// [name, aggregation_boundaries, crash point, crash points of the resumes]
const POINTS: ReadonlyArray<readonly [string, boolean, string, ReadonlyArray<string>]> = [
  ["after the first row", false, "row:1", []],
  ["after 37 rows (an open batch)", false, "row:37", []],
  ["after 41 rows", false, "row:41", []],
  ["after 1,203 rows", false, "row:1203", []],
  ["after 2,999 rows", false, "row:2999", []],
  ["at the end of the source", false, "row:3000", []],
  ["between the first write and its fsync", false, "sink_write:1", []],
  ["between a later write and its fsync", false, "sink_write:17", []],
  ["between the fsync of the sinks and the first checkpoint with rows", false, "sink_flushed:2", []],
  ["between the fsync of the sinks and checkpoint 12", false, "sink_flushed:12", []],
  ["right after the first checkpoint", false, "checkpoint:1", []],
  ["right after checkpoint 9", false, "checkpoint:9", []],
  ["before the last checkpoint", false, "sink_flushed:17", []],
  ["after 500 rows, and the resume once its sinks were cut back", false, "row:500", ["resume_cut:1"]],
  ["after 500 rows, and the resume after 700 more", false, "row:500", ["row:700"]],
  ["twice in resumes, between fsync and checkpoint", false, "row:900", ["sink_flushed:3", "sink_write:2"]],
  ["aggregation boundaries: after 333 rows", true, "row:333", []],
  ["aggregation boundaries: between fsync and checkpoint 100", true, "sink_flushed:100", []],
  ["aggregation boundaries: mid-write", true, "sink_write:250", []],
  ["aggregation boundaries: after checkpoint 400, then in the resume", true, "checkpoint:400", ["row:100"]],
  ["aggregation boundaries: at the last row", true, "row:2999", []]
]

describe("kill -9 and resume", () => {
  for (const [name, boundaries, crash, again] of POINTS) {
    it(`${name} (${crash}${again.length > 0 ? ` then ${again.join(", ")}` : ""}): sinks byte-identical, counts equal`, async () => {
      await crashAndResume(name.replace(/[^a-z0-9]+/gi, "-"), boundaries, crash, again)
    }, 120_000)
  }
})

// The explicit form: the fork's branch `a` runs a transform before the coalesce; the merge goes through a gate tree.
const EXPLICIT_POINTS: ReadonlyArray<readonly [string, string, ReadonlyArray<string>]> = [
  ["after 37 rows (an open batch)", "row:37", []],
  ["between a later write and its fsync", "sink_write:17", []],
  ["between the fsync of the sinks and checkpoint 12", "sink_flushed:12", []],
  ["after 500 rows, and the resume once its sinks were cut back", "row:500", ["resume_cut:1"]]
]

describe("kill -9 and resume, explicit wiring", () => {
  it("the explicit reference run routes rows through the branch transform and every sink", () => {
    const want = references.get("explicit-false")!
    expect(want.result.rows_forked).toBeGreaterThan(0)
    expect(want.result.rows_coalesced).toBe(2 * (want.result.rows_forked as number))
    for (const f of FILES) expect(want.files[f]!.length, f).toBeGreaterThan(0)
    expect(want.table.length).toBeGreaterThan(0)
    expect(want.files["out/high.json"]).toMatch(/"n": 5/)
  })
  for (const [name, crash, again] of EXPLICIT_POINTS) {
    it(`${name} (${crash}${again.length > 0 ? ` then ${again.join(", ")}` : ""}): sinks byte-identical, counts equal`, async () => {
      await crashAndResume(`explicit-${name.replace(/[^a-z0-9]+/gi, "-")}`, false, crash, again, "explicit")
    }, 120_000)
  }
})

describe("Ctrl-C and resume", () => {
  it("Ctrl-C while a pipe source waits: a checkpoint covers the rows read, exit 130; a pipe cannot be resumed (said, exit 2)", async () => {
    const dir = freshDir("sigint", false)
    // A slow source keeps the run alive long enough: a FIFO fed in two parts.
    const lines = input().split("\n")
    const fifo = join(dir, "in.csv")
    rmSync(fifo)
    spawnSync("mkfifo", [fifo])
    const child = spawn(process.execPath, [BIN, "run", "-s", "s.yaml", "--quiet"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += String(d)))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    const writer = (await import("node:fs")).createWriteStream(fifo)
    writer.write(lines.slice(0, 1201).join("\n") + "\n")
    // Wait until a checkpoint covers some rows, then press Ctrl-C while the source waits.
    await waitForRows(dir, 1000, 20_000, () => `no checkpoint in time: ${stderr}`)
    child.kill("SIGINT")
    // A read of a pipe blocks until its writer writes or closes: close it (see docs/resume.md).
    writer.end()
    expect(await exited, stderr).toBe(130)
    const status = runStatus(dir)
    expect(status.status).toBe("interrupted")
    // The source is not a regular file: the run cannot be checked, so resume refuses it.
    const refused = await cli(dir, ["resume", "latest", "-s", "s.yaml"])
    expect(refused.status).toBe(2)
    expect(refused.stderr).toContain("is not a regular file")
    await checkInvariantsIn(join(dir, "runs/audit.db"), status.run_id)
  }, 60_000)

  it("a run stopped by SIGINT mid-file resumes to the uninterrupted outputs", async () => {
    const dir = freshDir("sigint-file", false)
    // Many rows so that Ctrl-C arrives mid-run.
    const big = ["id,name,amount"]
    for (let i = 0; i < 60_000; i++) big.push(`${i},n${i},${i % 97 === 0 ? "bad" : (i * 37) % 1000}`)
    writeFileSync(join(dir, "in.csv"), big.join("\n") + "\n")
    const reference = join(root, "sigint-reference")
    mkdirSync(reference, { recursive: true })
    cpSync(join(dir, "in.csv"), join(reference, "in.csv"))
    cpSync(join(dir, "s.yaml"), join(reference, "s.yaml"))
    const ref = await cli(reference, ["run", "-s", "s.yaml", "--json"])
    expect(ref.status, ref.stderr).toBe(0)
    const want = snapshot(reference, JSON.parse(ref.stdout) as Record<string, unknown>)

    const child = spawn(process.execPath, [BIN, "run", "-s", "s.yaml", "--quiet"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += String(d)))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    await waitForRows(dir, 2_000, 30_000, () => `no rows in time: ${stderr}`)
    child.kill("SIGINT")
    const code = await exited
    const status = runStatus(dir)
    if (code === 0) {
      // The run finished before the signal landed: nothing to resume, and that is said.
      expect(status.status).toBe("completed")
      return
    }
    expect(code, stderr).toBe(130)
    expect(status.status).toBe("interrupted")
    await checkInvariantsIn(join(dir, "runs/audit.db"), status.run_id)
    const done = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--json"])
    expect(done.status, done.stderr).toBe(0)
    const got = snapshot(dir, JSON.parse(done.stdout) as Record<string, unknown>)
    for (const f of FILES) expect(got.files[f], f).toBe(want.files[f])
    expect(got.table).toEqual(want.table)
    expect(got.result).toEqual(want.result)
    expect(got.outcomes).toEqual(want.outcomes)
  }, 120_000)
})

describe("resume refuses, exit 2, changing nothing", () => {
  const crashed = async (name: string) => {
    const dir = freshDir(name, false)
    const r = await cli(dir, ["run", "-s", "s.yaml"], "row:1000")
    expect(r.signal).toBe("SIGKILL")
    return dir
  }
  const sizes = (dir: string) => FILES.map((f) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f)).length : -1))

  it("a completed run", async () => {
    const dir = freshDir("refuse-completed", false)
    expect((await cli(dir, ["run", "-s", "s.yaml", "--quiet"])).status).toBe(0)
    const r = await cli(dir, ["resume", "latest", "-s", "s.yaml"])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/cannot resume: run run_\w+ completed; there is nothing to resume/)
  })

  it("changed settings (a node's configuration) — and names the node", async () => {
    const dir = await crashed("refuse-settings")
    const before = sizes(dir)
    writeFileSync(join(dir, "s.yaml"), readFileSync(join(dir, "s.yaml"), "utf8").replace("row['sum'] > 2600", "row['sum'] > 2700"))
    const r = await cli(dir, ["resume", "latest", "-s", "s.yaml"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("gate 'big' has a different configuration")
    expect(sizes(dir)).toEqual(before)
    expect(runStatus(dir).status).toBe("interrupted")
  })

  it("a changed source file", async () => {
    const dir = await crashed("refuse-source")
    writeFileSync(join(dir, "in.csv"), input() + "3000,extra,1\n")
    const r = await cli(dir, ["resume", "latest", "-s", "s.yaml"])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/the source file .*in\.csv changed since run/)
  })

  it("a run still owned by a live process", async () => {
    const dir = freshDir("refuse-live", false)
    const lines = input().split("\n")
    const fifo = join(dir, "in.csv")
    rmSync(fifo)
    spawnSync("mkfifo", [fifo])
    const child = spawn(process.execPath, [BIN, "run", "-s", "s.yaml", "--quiet"], { cwd: dir, stdio: "ignore" })
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()))
    const writer = (await import("node:fs")).createWriteStream(fifo)
    writer.write(lines.slice(0, 100).join("\n") + "\n")
    const deadline = Date.now() + 20_000
    while (!existsSync(join(dir, "runs/audit.db")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    await new Promise((r) => setTimeout(r, 500))
    const r = await cli(dir, ["resume", "latest", "-s", "s.yaml"])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/is still running in process \d+/)
    writer.end()
    await exited
  }, 60_000)

  it("--dry-run changes nothing", async () => {
    const dir = await crashed("dry-run")
    const before = sizes(dir)
    const r = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--dry-run"])
    expect(r.status, r.stderr).toBe(0)
    // The human preview is the command's result: stdout.
    expect(r.stdout).toMatch(/can be resumed as attempt 2/)
    expect(r.stdout).toMatch(/rows done, \d+ rows left/)
    expect(sizes(dir)).toEqual(before)
    const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
    expect((audit.prepare("SELECT COUNT(*) AS n FROM run_attempts").get() as { n: number }).n).toBe(1)
    audit.close()
  })
})
