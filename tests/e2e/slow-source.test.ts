/**
 * The built CLI reading a source that delivers rows slowly (a named pipe): rows are
 * processed as they arrive, so an aggregation's timeout flushes the rows that came
 * before a pause while the source is still waiting for more.
 */
import { afterAll, describe, expect, it } from "vitest"
import { spawn, spawnSync } from "node:child_process"
import { closeSync, constants, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { BIN } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const dir = tempDir("rl-slow-source-")
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Makes a named pipe; the test is skipped (with the reason printed) where there is no mkfifo. */
const makeFifo = (path: string): boolean => {
  const r = spawnSync("mkfifo", [path])
  if (r.error !== undefined || r.status !== 0) {
    console.warn(`slow-source: mkfifo unavailable (${r.error?.message ?? r.stderr.toString()}); not run`)
    return false
  }
  return true
}

/**
 * Opens the write end of `fifo` once the run has opened its read end (a non-blocking
 * open fails with ENXIO until then), giving up when the run has exited or after `ms`.
 */
const openWriteEnd = async (fifo: string, exited: () => boolean, ms: number): Promise<number> => {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)
    } catch (error) {
      if ((error as { code?: string }).code !== "ENXIO") throw error
    }
    if (exited()) throw new Error("the run exited before it opened its source")
    if (Date.now() > deadline) throw new Error("the run never opened its source")
    await sleep(50)
  }
}

interface Scenario {
  readonly tag: string
  readonly source: string
  readonly header?: string
  readonly line: (id: number, amount: number) => string
}

/** Runs the CLI on a FIFO fed 3 rows, a 3 s pause, then 3 rows; returns the run's DB and output. */
const runSlow = async (scenario: Scenario) => {
  const fifo = join(dir, `${scenario.tag}.fifo`)
  if (!makeFifo(fifo)) return undefined
  const db = join(dir, `${scenario.tag}.db`)
  const out = join(dir, `${scenario.tag}-out.jsonl`)
  const settings = join(dir, `${scenario.tag}.yaml`)
  writeFileSync(settings, `
source:
  plugin: ${scenario.source}
  options:
    path: ${fifo}
    schema: {mode: fixed, fields: ["id: int", "amount: int"]}
    on_validation_failure: discard
${scenario.source === "json" ? "    format: jsonl\n" : ""}aggregations:
  - name: totals
    plugin: batch_stats
    trigger: {count: 100, timeout_seconds: 1}
    output_mode: transform
    options:
      schema: {mode: observed}
      value_field: amount
sinks:
  out: {plugin: json, options: {path: ${out}, format: jsonl, schema: {mode: observed}}}
default_sink: out
`)
  const child = spawn(process.execPath, [BIN, "run", "-s", settings, "--db", db, "--quiet"], {
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stderr = ""
  child.stderr.on("data", (d) => (stderr += String(d)))
  let done = false
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      done = true
      resolve(code)
    })
  )
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000)
  let fd: number | undefined
  try {
    fd = await openWriteEnd(fifo, () => done, 15_000)
    const first = [scenario.header, scenario.line(1, 1), scenario.line(2, 2), scenario.line(3, 3)]
    writeSync(fd, first.filter((l) => l !== undefined).map((l) => `${l}\n`).join(""))
    await sleep(3_000)
    writeSync(fd, [scenario.line(4, 10), scenario.line(5, 20), scenario.line(6, 30)].map((l) => `${l}\n`).join(""))
    closeSync(fd)
    fd = undefined
    const code = await exited
    expect(code, stderr).toBe(0)
  } finally {
    if (fd !== undefined) closeSync(fd)
    clearTimeout(killer)
    if (!done) child.kill("SIGKILL")
  }
  return { db, out }
}

/** The run's batches in order, with their members' count. */
const batchesOf = (db: string) => {
  const conn = new Database(db, { readonly: true, fileMustExist: true })
  try {
    const run = conn.prepare("SELECT run_id FROM runs").get() as { run_id: string }
    const batches = conn.prepare(
      `SELECT b.trigger_type AS trigger, b.status AS status,
              (SELECT COUNT(*) FROM batch_members m WHERE m.batch_id = b.batch_id) AS members
         FROM batches b WHERE b.run_id = ? ORDER BY b.created_at, b.rowid`
    ).all(run.run_id) as Array<{ trigger: string; status: string; members: number }>
    return { runId: run.run_id, batches }
  } finally {
    conn.close()
  }
}

const scenarios: ReadonlyArray<Scenario> = [
  { tag: "csv", source: "csv", header: "id,amount", line: (id, amount) => `${id},${amount}` },
  { tag: "jsonl", source: "json", line: (id, amount) => JSON.stringify({ id, amount }) }
]

describe("a source that delivers rows slowly", () => {
  for (const scenario of scenarios) {
    it(`${scenario.tag}: rows before a pause are flushed by the timeout while the source waits`, async () => {
      const result = await runSlow(scenario)
      if (result === undefined) return
      const { runId, batches } = batchesOf(result.db)
      expect(batches).toEqual([
        { trigger: "timeout", status: "completed", members: 3 },
        { trigger: "end_of_source", status: "completed", members: 3 }
      ])
      const lines = readFileSync(result.out, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(lines).toEqual([
        { count: 3, sum: 6, batch_size: 3, mean: 2 },
        { count: 3, sum: 60, batch_size: 3, mean: 20 }
      ])
      await checkInvariantsIn(result.db, runId)
    }, 40_000)
  }
})
