/**
 * `npm run bench -- aggregation [--rows=N]`: csv → aggregation (count trigger 100,
 * batch_stats) → csv sink with full audit, next to the plain pipeline (csv → gate →
 * two csv sinks) on the same input in the same run. Each workload runs in its own
 * child process so that peak RSS is its own. Default 1M rows.
 */
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { SqliteLandscape } from "../src/landscape/sqlite.js"
import { buildPipeline } from "../src/pipeline/build.js"
import { runPipeline } from "../src/pipeline/orchestrator/run.js"
import { parseSettings } from "../src/pipeline/settings.js"
import { TelemetryNoop } from "../src/services/telemetry.js"
import { generateCsv, type WorkerResult } from "./pipeline.js"
import {
  countLines,
  dbSize,
  fmtInt,
  fmtMb,
  fmtMs,
  makeTempDir,
  removeDir,
  reportResult,
  runWorker,
  startRssSampler
} from "./support.js"

const FIELDS = ["id: int", "name: str", "amount: int", "category: str"]

const settingsYaml = (csv: string, out: string): string => {
  const schema = JSON.stringify({ mode: "fixed", fields: FIELDS })
  return [
    "source:",
    "  plugin: csv",
    "  options:",
    `    path: ${JSON.stringify(csv)}`,
    `    schema: ${schema}`,
    "    on_validation_failure: discard",
    "aggregations:",
    "  - name: stats",
    "    plugin: batch_stats",
    "    trigger: {count: 100}",
    "    output_mode: transform",
    "    options: {schema: {mode: observed}, value_field: amount}",
    "sinks:",
    "  output:",
    "    plugin: csv",
    `    options: {path: ${JSON.stringify(NodePath.join(out, "stats.csv"))}, schema: {mode: observed}}`,
    "default_sink: output",
    ""
  ].join("\n")
}

/** Child-process entry: runs the aggregation pipeline once and reports a WorkerResult. */
export const runAggregationWorker = async (args: ReadonlyArray<string>): Promise<void> => {
  const [csv, out] = args
  if (csv === undefined || out === undefined) throw new Error("usage: aggregation-worker <csv> <out dir>")
  NodeFs.mkdirSync(out, { recursive: true })
  const db = NodePath.join(out, "landscape.db")
  const text = settingsYaml(csv, out)
  const sampler = startRssSampler()
  const started = performance.now()
  const cpu = process.cpuUsage()
  const result = await Effect.runPromise(
    parseSettings("aggregation.yaml", text, {}).pipe(
      Effect.flatMap((loaded) => buildPipeline(loaded)),
      Effect.flatMap((plan) => runPipeline(plan)),
      Effect.provide(Layer.merge(SqliteLandscape(db), TelemetryNoop))
    )
  )
  const elapsedMs = performance.now() - started
  const used = process.cpuUsage(cpu)
  const mem = sampler.stop()
  reportResult({
    workload: "engine",
    rows: result.rows_processed,
    succeeded: result.rows_succeeded,
    routed: result.rows_routed,
    elapsedMs,
    cpuMs: (used.user + used.system) / 1000,
    maxRss: mem.maxRss,
    sampledPeakRss: mem.sampledPeakRss,
    peakHeapUsed: mem.peakHeapUsed,
    dbBytes: dbSize(db)
  } satisfies WorkerResult)
}

export const runAggregationBench = async (args: ReadonlyArray<string> = []): Promise<void> => {
  const rowsArg = args.find((a) => a.startsWith("--rows="))
  const rows = rowsArg === undefined ? 1_000_000 : Number(rowsArg.slice("--rows=".length))
  if (!Number.isInteger(rows) || rows <= 0) throw new Error(`--rows must be a positive whole number, got ${rowsArg}`)
  const dir = makeTempDir("aggregation")
  try {
    const csv = NodePath.join(dir, "input.csv")
    generateCsv(csv, rows)
    console.log(`aggregation bench: ${fmtInt(rows)} rows, count trigger 100, batch_stats, full audit`)
    const line = (name: string, r: WorkerResult) =>
      console.log(
        `  ${name.padEnd(12)} ${fmtMs(r.elapsedMs).padStart(8)}  ${fmtInt(rows / (r.elapsedMs / 1000)).padStart(7)} rows/s` +
          `  CPU ${fmtMs(r.cpuMs)}  peak RSS ${fmtMb(r.maxRss)} (heap ${fmtMb(r.peakHeapUsed)})  db ${fmtMb(r.dbBytes)}`
      )
    const aggOut = NodePath.join(dir, "aggregation")
    const agg = await runWorker<WorkerResult>(["aggregation-worker", csv, aggOut])
    const batches = countLines(NodePath.join(aggOut, "stats.csv")) - 1
    if (batches !== Math.ceil(rows / 100)) console.log(`  WARNING: ${batches} batch rows written, expected ${Math.ceil(rows / 100)}`)
    removeDir(aggOut)
    const plainOut = NodePath.join(dir, "plain")
    const plain = await runWorker<WorkerResult>(["pipeline-worker", "engine", csv, plainOut])
    removeDir(plainOut)
    line("aggregation", agg)
    line("plain", plain)
    console.log(`  aggregation runs at ${(100 * plain.elapsedMs / agg.elapsedMs).toFixed(0)}% of the plain pipeline's rows/s (wall)`)
  } finally {
    removeDir(dir)
  }
}
