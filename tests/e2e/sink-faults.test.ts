/**
 * The built CLI when a sink's disk fills up: the run fails (exit 1) naming the sink,
 * the path and the cause; the file holds no torn record and exactly the rows the
 * trail records as written there. Faults are injected with RUNLEDGER_TEST_FAULT, and
 * once for real on a tiny tmpfs (where mounting is permitted).
 */
import { afterAll, describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { parse } from "csv-parse/sync"
import { runCli } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const dir = tempDir("rl-sink-faults-")

const ROWS = 30_000
const rowOf = (i: number) => ({ id: i, name: `name ${i}`, amount: (i * 37) % 1000, flag: i % 3 === 0 })
const INPUT = join(dir, "in.csv")
writeFileSync(
  INPUT,
  "id,name,amount,flag\n" + Array.from({ length: ROWS }, (_, i) => {
    const r = rowOf(i)
    return `${r.id},${r.name},${r.amount},${r.flag}\n`
  }).join("")
)

// A real full disk: a 256 KiB tmpfs, when this process may mount one.
const FULL = join(dir, "full")
mkdirSync(FULL)
const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", FULL], { encoding: "utf8" })
const mountProblem = mounted.error?.message ?? (mounted.status === 0 ? undefined : (mounted.stderr.trim() || `mount exited ${mounted.status}`))
if (mountProblem !== undefined) console.warn(`sink-faults: the real full-disk test is skipped: cannot mount a tmpfs (${mountProblem})`)

afterAll(() => {
  if (mountProblem === undefined) spawnSync("umount", [FULL])
  rmSync(dir, { recursive: true, force: true })
})

let n = 0
const settings = (out: string, high: string) => {
  const file = join(dir, `s${++n}.yaml`)
  writeFileSync(
    file,
    `
source:
  plugin: csv
  options:
    path: ${INPUT}
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int", "flag: bool"]}
    on_validation_failure: discard
gates:
  - {name: big, condition: "row['amount'] > 900", routes: {"true": high, "false": continue}}
sinks:
  out: ${out}
  high: ${high}
default_sink: out
checkpoint: {every_n_rows: 1000}
`
  )
  return file
}
const csvAt = (path: string) => `{plugin: csv, options: {path: ${JSON.stringify(path)}, schema: {mode: observed}}}`
const jsonAt = (path: string) => `{plugin: json, options: {path: ${JSON.stringify(path)}, schema: {mode: observed}}}`

interface Trail {
  readonly runId: string
  readonly status: string
  readonly errorMessage: string | null
  /** Source row indexes whose token the trail records as written to `sink`, in order. */
  readonly written: (sink: string) => ReadonlyArray<number>
  readonly failed: ReadonlyArray<{ readonly context: string | null; readonly error: string | null }>
  readonly artifact: (sink: string) => { readonly content_hash: string; readonly size_bytes: number } | undefined
}

const trailOf = (db: string): Trail => {
  const conn = new Database(db, { readonly: true })
  try {
    const run = conn.prepare("SELECT run_id, status, error_message FROM runs").get() as { run_id: string; status: string; error_message: string | null }
    const written = new Map<string, Array<number>>()
    for (const r of conn.prepare(`
      SELECT o.sink_name AS sink, r.row_index AS i FROM token_outcomes o
      JOIN tokens t ON t.token_id = o.token_id JOIN rows r ON r.row_id = t.row_id
      WHERE o.outcome IN ('COMPLETED', 'ROUTED') ORDER BY r.row_index`).all() as Array<{ sink: string; i: number }>) {
      written.set(r.sink, [...(written.get(r.sink) ?? []), r.i])
    }
    const failed = conn.prepare(`
      SELECT o.context_json AS context, s.error_json AS error FROM token_outcomes o
      LEFT JOIN node_states s ON s.token_id = o.token_id AND s.status = 'failed'
      WHERE o.outcome = 'FAILED'`).all() as Array<{ context: string | null; error: string | null }>
    const artifacts = conn.prepare("SELECT sink_name, content_hash, size_bytes FROM artifacts").all() as Array<
      { sink_name: string; content_hash: string; size_bytes: number }
    >
    return {
      runId: run.run_id,
      status: run.status,
      errorMessage: run.error_message,
      written: (sink) => written.get(sink) ?? [],
      failed,
      artifact: (sink) => artifacts.find((a) => a.sink_name === sink)
    }
  } finally {
    conn.close()
  }
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")

/** The CSV file holds the header and exactly `indexes`' rows, every line whole. */
const expectCsvHolds = (path: string, indexes: ReadonlyArray<number>) => {
  const text = readFileSync(path, "utf8")
  expect(text.endsWith("\r\n")).toBe(true)
  const records = parse(text, { relax_column_count: false }) as Array<Array<string>>
  expect(records[0]).toEqual(["id", "name", "amount", "flag"])
  const expected = indexes.map((i) => {
    const r = rowOf(i)
    return [String(r.id), r.name, String(r.amount), r.flag ? "True" : "False"]
  })
  expect(records.length - 1).toBe(expected.length)
  expect(records.slice(1)).toEqual(expected)
}

const expectDiskFullFailure = (r: { status: number | null; stderr: string }, trail: Trail, path: string) => {
  expect(r.status, r.stderr).toBe(1)
  expect(r.stderr).toContain(`run ${trail.runId} failed`)
  expect(r.stderr).toContain(`sink 'out' (csv, ${path})`)
  expect(r.stderr).toContain("no space left on device (ENOSPC)")
  expect(trail.status).toBe("failed")
  expect(trail.errorMessage).toContain(`sink 'out' (csv, ${path}): cannot write to ${path}: no space left on device (ENOSPC)`)
  // the rows of the failed write: FAILED, with the OS error in their sink state
  expect(trail.failed.length).toBeGreaterThan(0)
  const ofSink = trail.failed.filter((f) => f.context?.includes("sink_write_failed"))
  expect(ofSink.length).toBeGreaterThan(0)
  for (const f of ofSink) {
    expect(JSON.parse(f.context!)).toMatchObject({ sink: "out", reason: "sink_write_failed" })
    expect(f.error).toContain("no space left on device (ENOSPC)")
  }
}

describe("a sink's disk fills up", () => {
  it("injected ENOSPC on a CSV sink: exit 1, no torn line, the file holds exactly the rows recorded as written", async () => {
    const out = join(dir, "inj", "out.csv")
    const high = join(dir, "inj", "high.csv")
    const db = join(dir, "inj.db")
    const r = runCli(["run", "-s", settings(csvAt(out), csvAt(high)), "--db", db], {
      env: { RUNLEDGER_TEST_FAULT: "sink:out:enospc:after_bytes=200000" }
    })
    const trail = trailOf(db)
    expectDiskFullFailure(r, trail, out)
    const written = trail.written("out")
    expect(written.length).toBeGreaterThan(0)
    expectCsvHolds(out, written)
    expect(readFileSync(out).length).toBeLessThanOrEqual(200_000)
    // the other sink kept its rows, and its file equals its trail too
    expect(trail.written("high").length).toBeGreaterThan(0)
    expectCsvHolds(high, trail.written("high"))
    // the recorded artifacts describe the files as they are
    expect(trail.artifact("out")).toMatchObject({ content_hash: sha256(out), size_bytes: readFileSync(out).length })
    expect(trail.artifact("high")).toMatchObject({ content_hash: sha256(high), size_bytes: readFileSync(high).length })
    await checkInvariantsIn(db, trail.runId)
  })

  it("injected ENOSPC on a JSON array sink: the array closes after exactly the rows recorded as written", async () => {
    const out = join(dir, "json", "out.json")
    const db = join(dir, "json.db")
    const r = runCli(["run", "-s", settings(jsonAt(out), csvAt(join(dir, "json", "high.csv"))), "--db", db], {
      env: { RUNLEDGER_TEST_FAULT: "sink:out:enospc:after_bytes=400000" }
    })
    const trail = trailOf(db)
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toContain(`sink 'out' (json, ${out}): cannot write to ${out}: no space left on device (ENOSPC)`)
    const written = trail.written("out")
    expect(written.length).toBeGreaterThan(0)
    expect(JSON.parse(readFileSync(out, "utf8"))).toEqual(written.map(rowOf))
    expect(trail.artifact("out")?.content_hash).toBe(sha256(out))
    await checkInvariantsIn(db, trail.runId)
  })

  it("an injected fsync failure (EIO) on the routed sink: its rows recorded written are exactly its file's", async () => {
    const out = join(dir, "eio", "out.csv")
    const high = join(dir, "eio", "high.csv")
    const db = join(dir, "eio.db")
    const r = runCli(["run", "-s", settings(csvAt(out), csvAt(high)), "--db", db], {
      env: { RUNLEDGER_TEST_FAULT: "sink:high:eio:fsync_after_bytes=20000" }
    })
    const trail = trailOf(db)
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toContain(`sink 'high' (csv, ${high}): cannot sync ${high} to disk: input/output error (EIO)`)
    expectCsvHolds(high, trail.written("high"))
    expect(readFileSync(high).length).toBeLessThanOrEqual(20_000)
    expectCsvHolds(out, trail.written("out"))
    await checkInvariantsIn(db, trail.runId)
  })

  it.skipIf(mountProblem !== undefined)("a real full disk (256 KiB tmpfs) under a CSV sink", async () => {
    const out = join(FULL, "out.csv")
    const db = join(dir, "tmpfs.db")
    const r = runCli(["run", "-s", settings(csvAt(out), csvAt(join(dir, "tmpfs-high.csv"))), "--db", db])
    const trail = trailOf(db)
    expectDiskFullFailure(r, trail, out)
    const written = trail.written("out")
    expect(written.length).toBeGreaterThan(0)
    expect(written.length).toBeLessThan(ROWS)
    expectCsvHolds(out, written)
    expect(trail.artifact("out")).toMatchObject({ content_hash: sha256(out), size_bytes: readFileSync(out).length })
    await checkInvariantsIn(db, trail.runId)
  })
})
