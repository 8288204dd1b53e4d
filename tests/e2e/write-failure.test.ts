/**
 * `on_write_failure` through the built CLI: a row a sink cannot write (a fixed-schema
 * sink given a row with an extra field, a row failing `validate_input`, a row a table
 * constraint refuses) is diverted to the failsink — enriched with why, from where and
 * when — or discarded; the run goes on and exits 0, every diverted row ends DIVERTED
 * with its states and routing in the Landscape, `explain` tells its story, export and
 * verify carry it. Without `on_write_failure` the same row fails the run, as before.
 * I/O failures stay run failures. Each configuration rule is an exit-2 error naming
 * `sinks.NAME.on_write_failure`. A run with diversions killed at any point resumes to
 * the same outputs and counts as an uninterrupted run.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runCli, runCliIn } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const root = tempDir("rl-write-failure-")
afterAll(() => rmSync(root, { recursive: true, force: true }))

const ROWS = 400
interface InRow {
  readonly id: number
  readonly name: string
  readonly amount: number
  readonly note?: string
}
/** Every 7th row (from row 3) carries a `note` no sink below declares. */
const inRow = (i: number): InRow => ({ id: i, name: `n${i}`, amount: (i * 37) % 1000, ...(i % 7 === 3 ? { note: `x${i}` } : {}) })
const INPUT = Array.from({ length: ROWS }, (_, i) => inRow(i))
const hasNote = (r: InRow) => r.note !== undefined
const isBig = (r: InRow) => r.amount > 900
const FIELDS = `["id: int", "name: str", "amount: int"]`
const SOURCE = `source:
  plugin: json
  options: {path: in.jsonl, schema: {mode: observed}, on_validation_failure: discard}`

/** A folder holding the input and `settings.yaml`. */
const workDir = (name: string, settings: string): string => {
  const dir = join(root, name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, "in.jsonl"), INPUT.map((r) => JSON.stringify(r)).join("\n") + "\n")
  writeFileSync(join(dir, "settings.yaml"), settings)
  return dir
}

/** The failsink pipeline: a gate sends big amounts to a json sink; both primaries divert to `failed`. */
const FAILSINK = (checkpoint = "") => `${SOURCE}
gates:
  - {name: big, condition: "row['amount'] > 900", routes: {"true": high, "false": continue}}
sinks:
  out:
    plugin: csv
    options: {path: out/out.csv, schema: {mode: fixed, fields: ${FIELDS}}}
    on_write_failure: failed
  high:
    plugin: json
    options: {path: out/high.json, schema: {mode: fixed, fields: ${FIELDS}}, validate_input: true}
    on_write_failure: failed
  failed:
    plugin: json
    options: {path: out/failed.jsonl, schema: {mode: observed}}
    on_write_failure: discard
default_sink: out
landscape: {url: sqlite:///runs/audit.db}
${checkpoint}`

const DISCARD = (onWriteFailure: string) => `${SOURCE}
sinks:
  out:
    plugin: csv
    options: {path: out/out.csv, schema: {mode: fixed, fields: ${FIELDS}}}
${onWriteFailure}
default_sink: out
landscape: {url: sqlite:///runs/audit.db}
`

const csvOf = (rows: ReadonlyArray<InRow>) => "id,name,amount\r\n" + rows.map((r) => `${r.id},${r.name},${r.amount}\r\n`).join("")
const jsonOf = (rows: ReadonlyArray<InRow>) =>
  rows.length === 0 ? "" : "[" + rows.map((r) => `{"id": ${r.id}, "name": "${r.name}", "amount": ${r.amount}}`).join(", ") + "]"
const readJsonl = (path: string) => readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

const CSV_REASON = "dict contains fields not in fieldnames: 'note'"
const JSON_REASON = "failed schema validation (note: unexpected field (the schema is fixed))"

const audit = (dir: string) => new Database(join(dir, "runs/audit.db"), { readonly: true })
const runIdOf = (dir: string) => {
  const db = audit(dir)
  try {
    return (db.prepare("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").get() as { run_id: string }).run_id
  } finally {
    db.close()
  }
}

describe("on_write_failure: a failsink", () => {
  let dir: string
  let result: Record<string, unknown>
  beforeAll(() => {
    dir = workDir("failsink", FAILSINK())
    const r = runCli(["run", "-s", "settings.yaml", "--json"], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
    result = JSON.parse(r.stdout) as Record<string, unknown>
  })

  it("writes the rows that fit, diverts the others to the failsink with reason, origin and time, and exits 0", () => {
    expect(readFileSync(join(dir, "out/out.csv"), "utf8")).toBe(csvOf(INPUT.filter((r) => !hasNote(r) && !isBig(r))))
    expect(readFileSync(join(dir, "out/high.json"), "utf8")).toBe(jsonOf(INPUT.filter((r) => !hasNote(r) && isBig(r))))
    const failed = readJsonl(join(dir, "out/failed.jsonl"))
    // one file fed by two sinks, in the order the rows reached them
    expect(failed.map((r) => r.id)).toEqual(INPUT.filter(hasNote).map((r) => r.id))
    for (const f of failed) {
      const row = INPUT[f.id as number]!
      const from = isBig(row) ? "high" : "out"
      const { __diversion_timestamp: at, ...rest } = f
      expect(rest).toEqual({ ...row, __diversion_reason: from === "out" ? CSV_REASON : JSON_REASON, __diverted_from: from })
      expect(at).toMatch(ISO_MS)
    }
    expect(result).toMatchObject({
      status: "completed",
      rows_processed: ROWS,
      rows_succeeded: INPUT.filter((r) => !hasNote(r) && !isBig(r)).length,
      rows_routed: INPUT.filter((r) => !hasNote(r) && isBig(r)).length,
      rows_diverted: INPUT.filter(hasNote).length,
      rows_failed: 0
    })
  })

  it("records each diverted row: FAILED state at the sink, routing along on_write_failure, COMPLETED state at the failsink, DIVERTED", async () => {
    const runId = runIdOf(dir)
    await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
    const db = audit(dir)
    try {
      const outcomes = db.prepare(`SELECT r.row_index AS i, o.outcome, o.sink_name, o.context_json FROM token_outcomes o
        JOIN tokens t ON t.token_id = o.token_id JOIN rows r ON r.row_id = t.row_id
        WHERE o.outcome = 'DIVERTED' ORDER BY r.row_index`).all() as Array<{ i: number; outcome: string; sink_name: string; context_json: string }>
      expect(outcomes.map((o) => o.i)).toEqual(INPUT.filter(hasNote).map((r) => r.id))
      for (const o of outcomes) {
        expect(o.sink_name).toBe("failed")
        const from = isBig(INPUT[o.i]!) ? "high" : "out"
        expect(JSON.parse(o.context_json)).toEqual({
          reason: "write_failure",
          sink: from,
          destination: "failed",
          error: from === "out" ? CSV_REASON : JSON_REASON
        })
      }
      const states = db.prepare(`SELECT n.name, s.status, s.error_json FROM node_states s
        JOIN nodes n ON n.run_id = s.run_id AND n.node_id = s.node_id
        JOIN tokens t ON t.token_id = s.token_id JOIN rows r ON r.row_id = t.row_id
        WHERE r.row_index = 3 AND n.node_type = 'sink' ORDER BY s.started_at, s.status DESC`).all() as Array<{ name: string; status: string; error_json: string | null }>
      expect(states.map((s) => [s.name, s.status])).toEqual([["out", "failed"], ["failed", "completed"]])
      expect(JSON.parse(states[0]!.error_json!)).toEqual({ message: CSV_REASON, diverted_to: "failed" })
      const edges = db.prepare(`SELECT f.name AS from_name, t.name AS to_name, e.mode FROM edges e
        JOIN nodes f ON f.run_id = e.run_id AND f.node_id = e.from_node_id JOIN nodes t ON t.run_id = e.run_id AND t.node_id = e.to_node_id
        WHERE e.label = 'on_write_failure' ORDER BY f.name`).all()
      expect(edges).toEqual([{ from_name: "high", to_name: "failed", mode: "divert" }, { from_name: "out", to_name: "failed", mode: "divert" }])
      const routed = db.prepare(`SELECT COUNT(*) AS n FROM routing_events ev JOIN edges e ON e.edge_id = ev.edge_id
        WHERE e.label = 'on_write_failure' AND ev.mode = 'divert'`).get() as { n: number }
      expect(routed.n).toBe(INPUT.filter(hasNote).length)
    } finally {
      db.close()
    }
  })

  it("explain tells a diverted row's story, as text and JSON", () => {
    const text = runCli(["explain", "--db", "runs/audit.db", "--run", "latest", "--row", "3"], { cwd: dir })
    expect(text.status, text.stderr).toBe(0)
    // the narrative goes to stdout (docs/explain.md)
    expect(text.stdout).toContain("sink 'out' (csv)  failed")
    expect(text.stdout).toContain(`error: ${CSV_REASON}`)
    expect(text.stdout).toContain("sink 'out' could not write the row → on_write_failure → sink failed (divert)")
    expect(text.stdout).toContain("sink 'failed' (json)  completed")
    expect(text.stdout).toContain("outcome DIVERTED → sink failed")
    expect(text.stdout).toContain("diverted from sink out to its failsink failed")
    expect(text.stdout).toContain("wrote out/failed.jsonl")

    const json = runCli(["explain", "--db", "runs/audit.db", "--run", "latest", "--row", "3", "--json"], { cwd: dir })
    expect(json.status, json.stderr).toBe(0)
    const lineage = JSON.parse(json.stdout) as {
      outcome: { outcome: string; sink_name: string }
      steps: Array<{ node: { name: string }; status: string; routing: Array<{ edge_label: string; destination: string; mode: string }> }>
      sink: { name: string }
    }
    expect(lineage.outcome).toMatchObject({ outcome: "DIVERTED", sink_name: "failed" })
    expect(lineage.steps.map((s) => [s.node.name, s.status])).toEqual([["big", "completed"], ["out", "failed"], ["failed", "completed"]])
    expect(lineage.steps[1]!.routing).toMatchObject([{ edge_label: "on_write_failure", destination: "failed", mode: "divert" }])
    expect(lineage.sink.name).toBe("failed")
  })

  it("a signed export carries the DIVERTED outcomes and verifies", () => {
    const env = { RUNLEDGER_SIGNING_KEY: "write-failure-key", ELSPETH_SIGNING_KEY: "" }
    const e = runCli(["export", "--db", "runs/audit.db", "--run", "latest", "--format", "json", "--out", "trail.jsonl", "--sign"], { cwd: dir, env })
    expect(e.status, e.stderr).toBe(0)
    const records = readJsonl(join(dir, "trail.jsonl"))
    const diverted = records.filter((r) => r.record_type === "token_outcome" && r.outcome === "DIVERTED")
    expect(diverted).toHaveLength(INPUT.filter(hasNote).length)
    expect(runCli(["verify", "trail.jsonl"], { cwd: dir, env }).status).toBe(0)
  })

  it("a failsink that cannot write (a full disk) fails the run; the diverted rows end FAILED, nothing is lost", async () => {
    const d = workDir("failsink-full", FAILSINK())
    const r = runCli(["run", "-s", "settings.yaml"], { cwd: d, env: { RUNLEDGER_TEST_FAULT: "sink:failed:enospc:after_bytes=0" } })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain("no space left on device (ENOSPC)")
    expect(r.stderr).toContain("diverted to failsink 'failed'")
    const runId = runIdOf(d)
    await checkInvariantsIn(join(d, "runs/audit.db"), runId)
    const db = audit(d)
    try {
      const byOutcome = db.prepare("SELECT outcome, COUNT(*) AS n FROM token_outcomes WHERE is_terminal = 1 GROUP BY outcome").all() as Array<{ outcome: string; n: number }>
      expect(byOutcome.find((o) => o.outcome === "DIVERTED")).toBeUndefined()
      const failed = db.prepare("SELECT context_json FROM token_outcomes WHERE outcome = 'FAILED'").all() as Array<{ context_json: string }>
      expect(failed.length).toBeGreaterThan(0)
      expect(failed.some((f) => JSON.parse(f.context_json).reason === "failsink_write_failed")).toBe(true)
      const total = byOutcome.reduce((n, o) => n + o.n, 0)
      expect(total).toBe((db.prepare("SELECT COUNT(*) AS n FROM tokens").get() as { n: number }).n)
    } finally {
      db.close()
    }
  })

  it("a primary sink's own I/O failure is not diverted: the run fails as before", async () => {
    const d = workDir("primary-full", FAILSINK())
    const r = runCli(["run", "-s", "settings.yaml"], { cwd: d, env: { RUNLEDGER_TEST_FAULT: "sink:out:enospc:after_bytes=200" } })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain("sink 'out' (csv, out/out.csv): cannot write to out/out.csv: no space left on device (ENOSPC)")
    await checkInvariantsIn(join(d, "runs/audit.db"), runIdOf(d))
  })
})

describe("on_write_failure: discard", () => {
  it("drops the rows the sink cannot write, with their DIVERTED outcome, and exits 0", async () => {
    const dir = workDir("discard", DISCARD("    on_write_failure: discard"))
    const r = runCli(["run", "-s", "settings.yaml", "--json"], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
    expect(readFileSync(join(dir, "out/out.csv"), "utf8")).toBe(csvOf(INPUT.filter((x) => !hasNote(x))))
    expect(JSON.parse(r.stdout)).toMatchObject({ status: "completed", rows_diverted: INPUT.filter(hasNote).length, rows_succeeded: INPUT.filter((x) => !hasNote(x)).length })
    const runId = runIdOf(dir)
    await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
    const db = audit(dir)
    try {
      const rows = db.prepare("SELECT sink_name, context_json FROM token_outcomes WHERE outcome = 'DIVERTED'").all() as Array<{ sink_name: string | null; context_json: string }>
      expect(rows).toHaveLength(INPUT.filter(hasNote).length)
      for (const o of rows) {
        expect(o.sink_name).toBeNull()
        expect(JSON.parse(o.context_json)).toEqual({ reason: "write_failure", sink: "out", destination: "discard", error: CSV_REASON })
      }
      expect((db.prepare("SELECT COUNT(*) AS n FROM routing_events").get() as { n: number }).n).toBe(0)
    } finally {
      db.close()
    }
    const text = runCli(["explain", "--db", "runs/audit.db", "--run", "latest", "--row", "10"], { cwd: dir })
    expect(text.status, text.stderr).toBe(0)
    expect(text.stdout).toContain("sink 'out' (csv)  failed")
    expect(text.stdout).toContain(`error: ${CSV_REASON}`)
    expect(text.stdout).toMatch(/outcome DIVERTED\n/)
    expect(text.stdout).toContain("diverted from sink out and discarded (on_write_failure: discard)")
  })

  it("without on_write_failure (the older settings form) the same row fails the run, as before", async () => {
    const dir = workDir("no-write-failure", DISCARD(""))
    const r = runCli(["run", "-s", "settings.yaml"], { cwd: dir })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`sink 'out' (csv, out/out.csv): input row 3: ${CSV_REASON}; row: {'id': 3, 'name': 'n3', 'amount': 111, 'note': 'x3'}`)
    const runId = runIdOf(dir)
    await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
    const db = audit(dir)
    try {
      expect((db.prepare("SELECT status FROM runs").get() as { status: string }).status).toBe("failed")
      expect((db.prepare("SELECT COUNT(*) AS n FROM token_outcomes WHERE outcome = 'DIVERTED'").get() as { n: number }).n).toBe(0)
    } finally {
      db.close()
    }
  })
})

describe("on_write_failure: a database sink", () => {
  it("diverts the rows a table constraint refuses", async () => {
    const dir = workDir("database", `${SOURCE}
sinks:
  db:
    plugin: database
    options: {url: "sqlite:///out/sink.db", table: results, schema: {mode: flexible, fields: ${FIELDS.replace("]", `, "note: str?"]`)}}}
    on_write_failure: refused
  refused:
    plugin: csv
    options: {path: out/refused.csv, schema: {mode: observed}}
    on_write_failure: discard
default_sink: db
landscape: {url: sqlite:///runs/audit.db}
`)
    // Rows with a note are exactly those the table already holds, by id.
    mkdirSync(join(dir, "out"))
    const sink = new Database(join(dir, "out/sink.db"))
    sink.exec("CREATE TABLE results (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, amount INTEGER, note VARCHAR)")
    for (const r of INPUT.filter(hasNote)) sink.prepare("INSERT INTO results (id, name) VALUES (?, 'earlier')").run(r.id)
    sink.close()
    const r = runCli(["run", "-s", "settings.yaml", "--json"], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ rows_diverted: INPUT.filter(hasNote).length, rows_succeeded: INPUT.filter((x) => !hasNote(x)).length })
    const check = new Database(join(dir, "out/sink.db"), { readonly: true })
    expect((check.prepare("SELECT COUNT(*) AS n FROM results WHERE name = 'earlier'").get() as { n: number }).n).toBe(INPUT.filter(hasNote).length)
    expect((check.prepare("SELECT COUNT(*) AS n FROM results").get() as { n: number }).n).toBe(ROWS)
    check.close()
    const refused = readFileSync(join(dir, "out/refused.csv"), "utf8").trim().split("\r\n")
    expect(refused[0]).toBe("id,name,amount,note,__diversion_reason,__diverted_from,__diversion_timestamp")
    expect(refused).toHaveLength(1 + INPUT.filter(hasNote).length)
    expect(refused[1]).toContain("3,n3,111,x3,the table refused it: UNIQUE constraint failed: results.id (SQLITE_CONSTRAINT_PRIMARYKEY),db,")
    await checkInvariantsIn(join(dir, "runs/audit.db"), runIdOf(dir))
  })
})

describe("on_write_failure: configuration errors (exit 2, before any row)", () => {
  const sinksWith = (out: string, failed: string, extra = "") => `${SOURCE}
sinks:
  out:
    plugin: csv
    options: {path: out/out.csv, schema: {mode: observed}}
${out}
  failed:
    plugin: json
    options: {path: out/failed.jsonl, schema: {mode: observed}}
${failed}
${extra}
default_sink: out
`
  const DB = `  db:
    plugin: database
    options: {url: "sqlite:///out/sink.db", table: t, schema: {mode: observed}}
    on_write_failure: discard`
  const OTHER = `  other:
    plugin: csv
    options: {path: out/other.csv, schema: {mode: observed}}
    on_write_failure: discard`
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    [
      "the target must exist",
      sinksWith("    on_write_failure: nowhere", "    on_write_failure: discard"),
      "Sink 'out' on_write_failure references unknown sink 'nowhere'. Available sinks: ['failed', 'out']."
    ],
    [
      "a sink cannot be its own failsink",
      sinksWith("    on_write_failure: out", "    on_write_failure: discard"),
      "Sink 'out' on_write_failure references itself. A sink cannot be its own failsink."
    ],
    [
      "the target must be a csv, json or xml sink",
      sinksWith("    on_write_failure: db", "    on_write_failure: discard", DB),
      "Sink 'out' on_write_failure references 'db' (plugin='database'), but failsinks must use csv, json, or xml plugins."
    ],
    [
      "the target must discard its own failures (no chains)",
      sinksWith("    on_write_failure: failed", "    on_write_failure: other", OTHER),
      "Sink 'out' on_write_failure references 'failed', but 'failed' has on_write_failure='other'. Failsink targets must have on_write_failure='discard' (no chains)."
    ],
    [
      "the target must say on_write_failure: discard",
      sinksWith("    on_write_failure: failed", ""),
      "Sink 'out' on_write_failure references 'failed', but 'failed' has no on_write_failure. Failsink targets must have on_write_failure='discard' (no chains)."
    ],
    [
      "an empty value is no sink name",
      sinksWith("    on_write_failure: \"\"", "    on_write_failure: discard"),
      "on_write_failure must be a sink name or 'discard'"
    ]
  ]
  for (const [name, settings, message] of cases) {
    it(name, () => {
      const dir = workDir(`config-${name.replace(/\W+/g, "-")}`, settings)
      for (const command of ["validate", "run"]) {
        const r = runCli([command, "-s", "settings.yaml"], { cwd: dir })
        expect(r.status, `${command}: ${r.stderr}`).toBe(2)
        expect(r.stderr).toContain(`settings.yaml: sinks.out.on_write_failure: ${message}`)
      }
    })
  }

  it("a valid failsink passes validate", () => {
    const dir = workDir("config-valid", FAILSINK())
    const r = runCli(["validate", "-s", "settings.yaml"], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
  })
})

describe("on_write_failure: crash and resume", () => {
  const CHECKPOINT = "checkpoint: {frequency: every_n, checkpoint_interval: 20}"
  const OUTPUTS = ["out/out.csv", "out/high.json"] as const

  interface Snapshot {
    readonly files: Record<string, string>
    /** The failsink's rows without their diversion time (which a later attempt sets anew). */
    readonly failed: ReadonlyArray<Record<string, unknown>>
    readonly result: Record<string, unknown>
    readonly outcomes: Record<string, number>
  }
  const snapshot = (dir: string, result: Record<string, unknown>): Snapshot => {
    const files: Record<string, string> = {}
    for (const f of OUTPUTS) files[f] = readFileSync(join(dir, f), "latin1")
    const failed = readJsonl(join(dir, "out/failed.jsonl")).map(({ __diversion_timestamp: _at, ...rest }) => rest)
    const db = audit(dir)
    const outcomes = Object.fromEntries(
      (db.prepare("SELECT outcome, COUNT(*) AS n FROM token_outcomes WHERE is_terminal = 1 GROUP BY outcome").all() as Array<{ outcome: string; n: number }>)
        .map((o) => [o.outcome, o.n])
    )
    db.close()
    const { run_id: _id, ...rest } = result
    return { files, failed, result: rest, outcomes }
  }

  let reference: Snapshot
  beforeAll(async () => {
    const dir = workDir("resume-reference", FAILSINK(CHECKPOINT))
    const r = await runCliIn(dir, ["run", "-s", "settings.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    reference = snapshot(dir, JSON.parse(r.stdout) as Record<string, unknown>)
    expect(reference.outcomes.DIVERTED).toBe(INPUT.filter(hasNote).length)
  }, 60_000)

  // Each durability point writes out, high and then failed: sink_write:3 is the failsink's first write.
  const POINTS: ReadonlyArray<readonly [string, string]> = [
    ["after 45 rows", "row:45"],
    ["between the failsink's first write and its fsync", "sink_write:3"],
    ["between a primary's write and its fsync, with diversions queued for the failsink", "sink_write:10"],
    ["between a later failsink write and its fsync", "sink_write:12"],
    ["between the fsync of the sinks and the checkpoint", "sink_flushed:5"],
    ["right after a checkpoint", "checkpoint:7"]
  ]
  for (const [name, crash] of POINTS) {
    it(`killed ${name}, resumed: the same outputs, failsink rows and counts`, async () => {
      const dir = workDir(`resume-${crash.replace(":", "-")}`, FAILSINK(CHECKPOINT))
      const first = await runCliIn(dir, ["run", "-s", "settings.yaml", "--json"], crash)
      expect(first.signal, `the run was to be killed at ${crash}: ${first.stderr}`).toBe("SIGKILL")
      const runId = runIdOf(dir)
      const done = await runCliIn(dir, ["resume", runId, "-s", "settings.yaml", "--json"])
      expect(done.status, done.stderr).toBe(0)
      const got = snapshot(dir, JSON.parse(done.stdout) as Record<string, unknown>)
      for (const f of OUTPUTS) expect(got.files[f], `${f} after a crash at ${crash}`).toBe(reference.files[f])
      expect(got.failed).toEqual(reference.failed)
      expect(got.result).toEqual(reference.result)
      expect(got.outcomes).toEqual(reference.outcomes)
      await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
      rmSync(dir, { recursive: true, force: true })
    }, 60_000)
  }
})
