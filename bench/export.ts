/**
 * Export benchmark: records/s of JSON (plain and signed), CSV export and verification
 * of a run with 100k rows, and the peak resident memory of each phase, run in a child
 * process of its own — next to the same figures for a 10k-row run, to show whether
 * memory stays flat as the run grows.
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
import { fmtInt, fmtMb, reportResult, runWorker } from "./support.js"

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

type Phase = "json" | "json-signed" | "csv" | "verify"
const PHASES: ReadonlyArray<Phase> = ["json", "json-signed", "csv", "verify"]

interface PhaseResult {
  readonly phase: Phase
  readonly records: number
  readonly ms: number
  readonly bytes: number
  /** Peak RSS of the worker process, which ran this phase alone. */
  readonly maxRss: number
  /** RSS of the worker before the phase started (modules loaded, Landscape opened). */
  readonly startRss: number
}

const landscapeLayer = (db: string) => Layer.merge(SqliteLandscape(db).pipe(Layer.orDie), TelemetryNoop)

/** `export-worker <phase> <db> <dir>`: one export or verify phase in a process of its own. */
export const runExportWorker = async (args: ReadonlyArray<string>): Promise<void> => {
  const [phase, db, dir] = args as [Phase, string, string]
  const layer = landscapeLayer(db)
  const run = <A, E>(effect: Effect.Effect<A, E, Layer.Layer.Success<typeof layer>>) =>
    Effect.runPromise(Effect.scoped(effect.pipe(Effect.provide(layer))) as Effect.Effect<A, E>)
  const startRss = process.memoryUsage().rss
  const t0 = performance.now()
  let records = 0
  let bytes = 0
  if (phase === "verify") {
    const v = await Effect.runPromise(verifyExport(NodePath.join(dir, "signed.json"), { signingKey: KEY }))
    records = v.record_count
  } else {
    const out = phase === "json" ? "trail.json" : phase === "json-signed" ? "signed.json" : "csv"
    const r = await run(exportRun({ run: "latest", format: phase === "csv" ? "csv" : "json", out: NodePath.join(dir, out), sign: phase === "json-signed", signingKey: KEY }))
    records = r.record_count
    for (const f of r.files) bytes += f.sizeBytes
  }
  const ms = performance.now() - t0
  reportResult({ phase, records, ms, bytes, maxRss: process.resourceUsage().maxRSS * 1024, startRss } satisfies PhaseResult)
}

/** The old-space cap of the second pass: a process that finishes under it has flat live memory. */
const HEAP_CAP_MB = 64

const benchRun = async (rows: number) => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "export-bench-"))
  const input = NodePath.join(dir, "input.csv")
  const lines = ["id,name,amount,category"]
  for (let i = 0; i < rows; i++) lines.push(`${i},name ${i},${(i * 37) % 5000},${i % 4 === 0 ? "corporate" : "retail"}`)
  NodeFs.writeFileSync(input, lines.join("\n") + "\n")
  const db = NodePath.join(dir, "bench.db")
  const layer = landscapeLayer(db)
  const loaded = await Effect.runPromise(Effect.orDie(parseSettings("bench.yaml", settings(dir, input), {})))
  const plan = await Effect.runPromise(Effect.orDie(buildPipeline(loaded)))
  const t0 = performance.now()
  await Effect.runPromise(Effect.scoped(runPipeline(plan).pipe(Effect.provide(layer))))
  const runMs = performance.now() - t0
  const phases: Array<PhaseResult> = []
  const capped: Array<PhaseResult> = []
  // In order: verify reads the signed export the phase before it wrote.
  for (const phase of PHASES) phases.push(await runWorker<PhaseResult>(["export-worker", phase, db, dir]))
  for (const phase of PHASES) {
    capped.push(await runWorker<PhaseResult>(["export-worker", phase, db, dir], [`--max-old-space-size=${HEAP_CAP_MB}`]))
  }
  NodeFs.rmSync(dir, { recursive: true, force: true })
  return { runMs, phases, capped }
}

export const runExportBench = async (): Promise<void> => {
  console.log("export bench: a gate pipeline (csv source → gate → 2 csv sinks), then its trail exported;")
  console.log("each export and the verify run in a child process of their own, so each peak RSS is that phase's alone")
  const bySize = new Map<number, ReadonlyArray<PhaseResult>>()
  const cappedBySize = new Map<number, ReadonlyArray<PhaseResult>>()
  const sizes = [10_000, 100_000]
  for (const rows of sizes) {
    const { phases, runMs, capped } = await benchRun(rows)
    bySize.set(rows, phases)
    cappedBySize.set(rows, capped)
    console.log(`  ${fmtInt(rows)} rows (pipeline run ${(runMs / 1000).toFixed(1)} s):`)
    for (const p of phases) {
      console.log(
        `    ${p.phase.padEnd(12)} ${String(p.records).padStart(8)} records  ${(p.ms / 1000).toFixed(2).padStart(6)} s  ` +
          `${Math.round(p.records / (p.ms / 1000)).toString().padStart(7)} records/s` +
          (p.phase === "verify" ? "" : `  ${(p.bytes / 2 ** 20).toFixed(1).padStart(6)} MiB out`) +
          `  peak RSS ${fmtMb(p.maxRss)} (at start ${fmtMb(p.startRss)})`
      )
    }
  }
  const compare = (title: string, table: Map<number, ReadonlyArray<PhaseResult>>) => {
    console.log(title)
    for (const phase of PHASES) {
      const small = table.get(sizes[0]!)!.find((p) => p.phase === phase)!
      const large = table.get(sizes[1]!)!.find((p) => p.phase === phase)!
      console.log(
        `    ${phase.padEnd(12)} ${fmtMb(small.maxRss)} → ${fmtMb(large.maxRss)}  ${(large.maxRss / small.maxRss).toFixed(2)}×` +
          `  (${(small.ms / 1000).toFixed(2)} s → ${(large.ms / 1000).toFixed(2)} s)`
      )
    }
  }
  compare(`  peak RSS, ${fmtInt(sizes[0]!)} → ${fmtInt(sizes[1]!)} rows, node's default heap:`, bySize)
  compare(
    `  the same with the old space capped at ${HEAP_CAP_MB} MB (finishing under the cap means the live memory is flat; ` +
      `the default run's growth is garbage V8 leaves between full collections):`,
    cappedBySize
  )
}
