/**
 * `landscape.dump_to_jsonl` and `payload_store` through the built CLI: the compat
 * examples that use them (landscape_journal in both corpora, retention_purge) run
 * unchanged and leave the journal / the payload files; the journal is appended at each
 * commit (a run killed mid-way leaves the lines of what it committed), defaults to a
 * path derived from the Landscape URL, and fails the run or warns once when it cannot
 * be written, as `dump_to_jsonl_fail_on_error` says.
 */
import Database from "better-sqlite3"
import { spawn, spawnSync } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { type CliResult, runCli } from "../support/cli.js"
import { COMPAT_ROOT, compatCopy, compatSkipNotice, HAS_COMPAT } from "../support/compat.js"
import { tempDir } from "../support/pipeline.js"

interface Line {
  readonly committed_at: string
  readonly table: string
  readonly op: string
  readonly record: Record<string, unknown>
  readonly payload?: string | null
}

/** Every line of the journal, each parsed on its own (a torn line fails here). */
const journal = (path: string): Array<Line> => {
  const text = readFileSync(path, "utf8")
  expect(text.endsWith("\n"), "the journal ends with a complete line").toBe(true)
  return text.split("\n").slice(0, -1).map((l) => JSON.parse(l) as Line)
}

const ofRun = (lines: ReadonlyArray<Line>, runId: string, table: string) =>
  lines.filter((l) => l.table === table && l.op === "insert" && l.record.run_id === runId)

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const ROWS = 30
const project = (landscape: string, extra = ""): string => {
  const dir = tempDir("rl-e2e-journal-")
  dirs.push(dir)
  const lines = ["id,name"]
  for (let i = 0; i < ROWS; i++) lines.push(`${i},name ${i}`)
  writeFileSync(join(dir, "in.csv"), lines.join("\n") + "\n")
  writeFileSync(
    join(dir, "s.yaml"),
    `source:
  plugin: csv
  options:
    path: in.csv
    on_validation_failure: discard
    schema: { mode: fixed, fields: ["id: int", "name: str"] }
sinks:
  out:
    plugin: csv
    options: { path: out.csv, schema: { mode: observed } }
default_sink: out
checkpoint: { frequency: every_row }
landscape:
${landscape.split("\n").map((l) => `  ${l}`).join("\n")}
${extra}`
  )
  return dir
}
const cli = (dir: string, args: ReadonlyArray<string>, env: Record<string, string> = {}): CliResult =>
  runCli(args, { cwd: dir, env: { RUNLEDGER_TEST_CRASH: "", ...env } })

compatSkipNotice("the compat examples landscape_journal and retention_purge (tests/e2e/journal.test.ts)")

describe.skipIf(!HAS_COMPAT)("compat examples with a journal or a payload store", () => {
  let work = ""
  beforeAll(() => {
    work = compatCopy()
    dirs.push(work)
  })

  it("landscape_journal (February-2026 corpus): the journal holds the run's rows and outcomes", () => {
    const r = cli(work, ["run", "-s", "examples/landscape_journal/settings.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).not.toMatch(/warning/)
    const { run_id } = JSON.parse(r.stdout) as { run_id: string }
    const lines = journal(join(work, "examples/landscape_journal/runs/audit.journal.jsonl"))
    expect(ofRun(lines, run_id, "runs")).toHaveLength(1)
    expect(ofRun(lines, run_id, "rows")).toHaveLength(2)
    expect(ofRun(lines, run_id, "token_outcomes").map((l) => l.record.outcome)).toEqual(["COMPLETED", "COMPLETED"])
    const end = lines.filter((l) => l.table === "runs" && l.op === "update" && l.record.run_id === run_id).at(-1)
    expect(end?.record.status).toBe("completed")
    // The journal says what the Landscape says.
    const db = new Database(join(work, "examples/landscape_journal/runs/audit.db"), { readonly: true })
    const rows = db.prepare("SELECT * FROM rows WHERE run_id = ? ORDER BY row_index").all(run_id)
    db.close()
    expect(ofRun(lines, run_id, "rows").map((l) => l.record)).toEqual(rows)
  })
})

/** The current ELSPETH corpus, copied; undefined (with the reason printed) when it is not beside the checkout. */
const headCopy = (example: string): string | undefined => {
  const head = join(COMPAT_ROOT, "elspeth-head")
  if (!existsSync(join(head, "examples", example))) {
    console.warn(`skipped: ${example} of the current ELSPETH corpus — not found at ${head}`)
    return undefined
  }
  const dir = tempDir("rl-e2e-head-")
  dirs.push(dir)
  cpSync(head, dir, { recursive: true })
  return dir
}

describe("compat examples of the current ELSPETH corpus", () => {
  it("landscape_journal: the journal holds the run's rows and outcomes", (ctx) => {
    const dir = headCopy("landscape_journal")
    if (dir === undefined) return ctx.skip()
    const r = cli(dir, ["run", "-s", "examples/landscape_journal/settings.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    const { run_id } = JSON.parse(r.stdout) as { run_id: string }
    const lines = journal(join(dir, "examples/landscape_journal/runs/audit.journal.jsonl"))
    expect(ofRun(lines, run_id, "rows")).toHaveLength(2)
    expect(ofRun(lines, run_id, "token_outcomes")).toHaveLength(2)
  })

  it("retention_purge: every source row is in the payload store, named by its hash", (ctx) => {
    const dir = headCopy("retention_purge")
    if (dir === undefined) return ctx.skip()
    const r = cli(dir, ["run", "-s", "examples/retention_purge/settings.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    const { run_id } = JSON.parse(r.stdout) as { run_id: string }
    const db = new Database(join(dir, "examples/retention_purge/runs/audit.db"), { readonly: true })
    const rows = db.prepare("SELECT source_data_hash, source_data_json FROM rows WHERE run_id = ?").all(run_id) as Array<
      { source_data_hash: string; source_data_json: string }
    >
    db.close()
    expect(rows.length).toBeGreaterThan(0)
    for (const row of rows) {
      const file = join(dir, "examples/retention_purge/payloads", row.source_data_hash.slice(0, 2), row.source_data_hash)
      expect(readFileSync(file, "utf8")).toBe(row.source_data_json)
    }
  })
})

describe("the journal through the CLI", () => {
  it("is derived from the Landscape URL when no path is given, and appended at each commit", () => {
    const dir = project("url: sqlite:///runs/audit.db\ndump_to_jsonl: true")
    const path = join(dir, "runs/audit.journal.jsonl")
    // Killed after its third checkpoint: the journal has what was committed until then.
    const killed = cli(dir, ["run", "-s", "s.yaml"], { RUNLEDGER_TEST_CRASH: "checkpoint:3" })
    expect(killed.status, killed.stderr).toBe(null)
    const early = journal(path)
    const runId = early[0]!.record.run_id as string
    expect(early[0]).toMatchObject({ table: "runs", op: "insert" })
    expect(ofRun(early, runId, "checkpoints")).toHaveLength(3)
    const rowsThen = ofRun(early, runId, "rows").length
    expect(rowsThen).toBeGreaterThan(0)
    expect(rowsThen).toBeLessThan(ROWS)

    // The resume appends to the same journal; in the end every row is there once.
    const resumed = cli(dir, ["resume", "latest", "-s", "s.yaml"])
    expect(resumed.status, resumed.stderr).toBe(0)
    const lines = journal(path)
    expect(lines.slice(0, early.length)).toEqual(early)
    const rows = ofRun(lines, runId, "rows").map((l) => l.record.row_index)
    expect(rows.sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: ROWS }, (_, i) => i))
    // The reaping of the killed run, by the resume, is journalled too.
    expect(lines.some((l) => l.table === "runs" && l.op === "update" && l.record.status_reason === "process_crash")).toBe(true)
    expect(lines.filter((l) => l.table === "runs" && l.op === "update").at(-1)?.record.status).toBe("completed")
  })

  it("dump_to_jsonl_fail_on_error: true fails the run when the journal cannot be written", () => {
    const dir = project("url: sqlite:///runs/audit.db\ndump_to_jsonl: true\ndump_to_jsonl_path: /dev/full\ndump_to_jsonl_fail_on_error: true")
    const r = cli(dir, ["run", "-s", "s.yaml", "--json"])
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toContain("/dev/full")
    expect(r.stderr).not.toMatch(/internal error/)
    const runs = cli(dir, ["runs", "--db", "runs/audit.db", "--json"])
    const [run] = JSON.parse(runs.stdout) as Array<{ status: string; reason: string | null }>
    expect(run?.status).toBe("failed")
    expect(run?.reason).toContain("journal")
  })

  it("dump_to_jsonl_fail_on_error: true, a journal that breaks mid-run: the run stops, recorded as a Landscape write failure", () => {
    const dir = project("url: sqlite:///runs/audit.db\ndump_to_jsonl: true\ndump_to_jsonl_path: j.fifo\ndump_to_jsonl_fail_on_error: true")
    writeFileSync(join(dir, "in.csv"), ["id,name", ...Array.from({ length: 400 }, (_, i) => `${i},name ${i}`)].join("\n") + "\n")
    expect(spawnSync("mkfifo", [join(dir, "j.fifo")]).status).toBe(0)
    // A reader that takes the first 20 kB and goes away: later writes fail with EPIPE.
    const reader = spawn("head", ["-c", "20000", join(dir, "j.fifo")], { stdio: ["ignore", "ignore", "ignore"] })
    try {
      const r = cli(dir, ["run", "-s", "s.yaml"])
      expect(r.status, r.stderr).toBe(1)
      expect(r.stderr).toContain(join(dir, "j.fifo"))
      expect(r.stderr).toContain("dump_to_jsonl_fail_on_error is true")
      const [run] = JSON.parse(cli(dir, ["runs", "--db", "runs/audit.db", "--json"]).stdout) as Array<{ status: string; reason: string | null; counts: { rows: number } }>
      expect(run).toMatchObject({ status: "interrupted", reason: "landscape_write_failed" })
      expect(run!.counts.rows).toBeGreaterThan(0)
      expect(run!.counts.rows).toBeLessThan(400)
    } finally {
      reader.kill()
    }
  })

  it("dump_to_jsonl_fail_on_error: false warns once and the run completes", () => {
    const dir = project("url: sqlite:///runs/audit.db\ndump_to_jsonl: true\ndump_to_jsonl_path: /dev/full")
    const r = cli(dir, ["run", "-s", "s.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ status: "completed", rows_processed: ROWS })
    const warnings = r.stderr.split("\n").filter((l) => l.includes("/dev/full"))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/^warning: the Landscape journal \/dev\/full could not be written/)
  })

  it("dump_to_jsonl_include_payloads inlines each row's payload from the payload store", () => {
    const dir = project(
      "url: sqlite:///runs/audit.db\ndump_to_jsonl: true\ndump_to_jsonl_include_payloads: true",
      "payload_store:\n  backend: filesystem\n  base_path: payloads\n  retention_days: 7\n"
    )
    const r = cli(dir, ["run", "-s", "s.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    const { run_id } = JSON.parse(r.stdout) as { run_id: string }
    const rows = ofRun(journal(join(dir, "runs/audit.journal.jsonl")), run_id, "rows")
    expect(rows).toHaveLength(ROWS)
    for (const l of rows) expect(l.payload).toBe(l.record.source_data_json)
    const stored = readdirSync(join(dir, "payloads")).flatMap((d) => readdirSync(join(dir, "payloads", d)))
    expect(stored.sort()).toEqual(rows.map((l) => l.record.source_data_hash).sort())
  })
})
