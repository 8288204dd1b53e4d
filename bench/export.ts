/**
 * Export benchmark: records/s of JSON (plain and signed), CSV export and verification
 * of a run with 100k rows, and the resident memory each phase adds — next to the same
 * figures for a 10k-row run, to show that memory stays flat as the run grows.
 */
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { SqliteLandscape } from "../src/landscape/sqlite.js"
import { verifyExport } from "../src/landscape/verify.js"
import { buildPipeline } from "../src/pipeline/build.js"
import { exportRun } from "../src/pipeline/orchestrator/export.js"
import { runPipeline } from "../src/pipeline/orchestrator/run.js"
import { parseSettings } from "../src/pipeline/settings.js"
import { TelemetryNoop } from "../src/services/telemetry.js"

const KEY = "bench-signing-key"

const settings = (dir: string, input: string) => `
source:
  plugin: csv
  options:
    path: ${input}
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int", "category: str"]}
    on_validation_failure: discard
gates:
  - name: category_router
    condition: "row['category'] == 'corporate'"
    routes: {"true": corporate, "false": continue}
sinks:
  retail: {plugin: csv, options: {path: ${NodePath.join(dir, "retail.csv")}, schema: {mode: observed}}}
  corporate: {plugin: csv, options: {path: ${NodePath.join(dir, "corporate.csv")}, schema: {mode: observed}}}
default_sink: retail
`

/** Samples RSS while `f` runs; returns its result, wall time and the peak RSS above the start. */
const measured = async <A>(f: () => Promise<A>) => {
  ;(globalThis as { gc?: () => void }).gc?.()
  const start = process.memoryUsage().rss
  let peak = start
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 20)
  const t0 = performance.now()
  const value = await f()
  const ms = performance.now() - t0
  clearInterval(timer)
  peak = Math.max(peak, process.memoryUsage().rss)
  return { value, ms, addedMb: (peak - start) / 2 ** 20, peakMb: peak / 2 ** 20 }
}

const benchRun = async (rows: number) => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "export-bench-"))
  const input = NodePath.join(dir, "input.csv")
  const lines = ["id,name,amount,category"]
  for (let i = 0; i < rows; i++) lines.push(`${i},name ${i},${(i * 37) % 5000},${i % 4 === 0 ? "corporate" : "retail"}`)
  NodeFs.writeFileSync(input, lines.join("\n") + "\n")
  const layer = Layer.merge(SqliteLandscape(NodePath.join(dir, "bench.db")).pipe(Layer.orDie), TelemetryNoop)
  const run = <A, E>(effect: Effect.Effect<A, E, Layer.Layer.Success<typeof layer>>) =>
    Effect.runPromise(Effect.scoped(effect.pipe(Effect.provide(layer))) as Effect.Effect<A, E>)

  const loaded = await Effect.runPromise(Effect.orDie(parseSettings("bench.yaml", settings(dir, input), {})))
  const plan = await Effect.runPromise(Effect.orDie(buildPipeline(loaded)))
  const t0 = performance.now()
  await run(runPipeline(plan))
  const runMs = performance.now() - t0

  const phases: Array<{ name: string; records: number; ms: number; addedMb: number; bytes?: number }> = []
  const exportPhase = async (name: string, format: "json" | "csv", out: string, sign: boolean) => {
    const m = await measured(() => run(exportRun({ run: "latest", format, out: NodePath.join(dir, out), sign, signingKey: KEY })))
    let bytes = 0
    for (const f of m.value.files) bytes += f.sizeBytes
    phases.push({ name, records: m.value.record_count, ms: m.ms, addedMb: m.addedMb, bytes })
  }
  await exportPhase("json", "json", "trail.json", false)
  await exportPhase("json signed", "json", "signed.json", true)
  await exportPhase("csv", "csv", "csv", false)
  const v = await measured(() => Effect.runPromise(verifyExport(NodePath.join(dir, "signed.json"), { signingKey: KEY })))
  phases.push({ name: "verify", records: v.value.record_count, ms: v.ms, addedMb: v.addedMb })
  NodeFs.rmSync(dir, { recursive: true, force: true })
  return { runMs, phases }
}

export const runExportBench = async (): Promise<void> => {
  console.log("export bench: a gate pipeline (csv source → gate → 2 csv sinks), then its trail exported")
  for (const rows of [10_000, 100_000]) {
    const { phases, runMs } = await benchRun(rows)
    console.log(`  ${rows} rows (pipeline run ${(runMs / 1000).toFixed(1)} s):`)
    for (const p of phases) {
      console.log(
        `    ${p.name.padEnd(12)} ${String(p.records).padStart(8)} records  ${(p.ms / 1000).toFixed(2).padStart(6)} s  ` +
          `${Math.round(p.records / (p.ms / 1000)).toString().padStart(7)} records/s` +
          (p.bytes === undefined ? "" : `  ${(p.bytes / 2 ** 20).toFixed(1).padStart(6)} MiB out`) +
          `  RSS +${p.addedMb.toFixed(0)} MiB`
      )
    }
  }
  console.log(`  peak RSS of the process: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`)
}
