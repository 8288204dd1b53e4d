/**
 * The built CLI under signals: Ctrl-C mid-run exits 130 with the run recorded
 * `interrupted` and complete output files; kill -9 leaves a run that `runs` reports as
 * `interrupted, reason=process_crash`.
 */
import { afterAll, describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { createWriteStream, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { parse } from "csv-parse/sync"
import { BIN, runCli } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const dir = tempDir("rl-signals-")
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const ROWS = 200_000

const writeInput = async () => {
  const path = join(dir, "big.csv")
  const out = createWriteStream(path)
  out.write("id,name,amount\n")
  for (let i = 0; i < ROWS; i++) out.write(`${i},name${i},${(i * 37) % 5000}\n`)
  await new Promise<void>((resolve) => out.end(resolve))
  return path
}

const settings = (input: string, tag: string) => {
  const path = join(dir, `${tag}.yaml`)
  writeFileSync(path, `
source:
  plugin: csv
  options:
    path: ${input}
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int"]}
    on_validation_failure: discard
gates:
  - name: big
    condition: "row['amount'] > 2500"
    routes: {"true": high, "false": continue}
sinks:
  out: {plugin: csv, options: {path: ${join(dir, tag, "out.csv")}, schema: {mode: observed}}}
  high: {plugin: csv, options: {path: ${join(dir, tag, "high.csv")}, schema: {mode: observed}}}
default_sink: out
`)
  return path
}

/** Starts a run and resolves once it has written some output (progress is on the way). */
const startRun = (settingsPath: string, db: string) => {
  const child = spawn(process.execPath, [BIN, "run", "-s", settingsPath, "--db", db, "--quiet"], { stdio: ["ignore", "pipe", "pipe"] })
  let stderr = ""
  child.stderr.on("data", (d) => (stderr += String(d)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code, signal) => resolve(signal === "SIGKILL" ? -9 : code)))
  return { child, exited, stderr: () => stderr }
}

/** Polls the Landscape file until the run has recorded rows (read-only, no CLI start-up cost). */
const waitForRows = async (db: string) => {
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 100))
    try {
      const conn = new Database(db, { readonly: true, fileMustExist: true })
      try {
        const n = (conn.prepare("SELECT COUNT(*) AS n FROM rows").get() as { n: number }).n
        if (n > 0) return
      } finally {
        conn.close()
      }
    } catch {
      // not created yet
    }
  }
  throw new Error("the run never recorded a row")
}

describe("signals", () => {
  it("Ctrl-C exits 130; the run is interrupted and every output file is complete", async () => {
    const input = await writeInput()
    const db = join(dir, "int.db")
    const run = startRun(settings(input, "int"), db)
    await waitForRows(db)
    run.child.kill("SIGINT")
    const code = await run.exited
    expect(code, run.stderr()).toBe(130)
    const runs = JSON.parse(runCli(["runs", "--db", db, "--json"]).stdout) as Array<{ run_id: string; status: string; counts: Record<string, number> }>
    expect(runs[0]!.status).toBe("interrupted")
    expect(runs[0]!.counts.rows).toBeLessThan(ROWS)
    await checkInvariantsIn(db, runs[0]!.run_id)
    const out = parse(readFileSync(join(dir, "int", "out.csv"), "utf8"), { columns: true }) as Array<Record<string, string>>
    const high = parse(readFileSync(join(dir, "int", "high.csv"), "utf8"), { columns: true }) as Array<Record<string, string>>
    // Every row the trail calls written is in a file, whole.
    expect(out.length).toBe(runs[0]!.counts.COMPLETED ?? 0)
    expect(high.length).toBe(runs[0]!.counts.ROUTED ?? 0)
    expect(out.every((r) => r.amount !== undefined && Number(r.amount) <= 2500)).toBe(true)
  }, 120_000)

  it("kill -9 leaves a run that runs reports as interrupted, reason=process_crash", async () => {
    const input = join(dir, "big.csv")
    const db = join(dir, "kill.db")
    const run = startRun(settings(input, "kill"), db)
    await waitForRows(db)
    run.child.kill("SIGKILL")
    expect(await run.exited).toBe(-9)
    const runs = JSON.parse(runCli(["runs", "--db", db, "--json"]).stdout) as Array<{ status: string; reason: string }>
    expect(runs[0]).toMatchObject({ status: "interrupted", reason: "process_crash" })
  }, 120_000)
})
