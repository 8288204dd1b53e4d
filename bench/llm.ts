/**
 * `npm run bench -- llm`: external calls against the fake LLM server with a fixed
 * latency (default 50 ms), at pool sizes 1, 8 and 32, next to the ideal
 * pool_size / latency. The server runs in a child process so that its work does not
 * share the measured event loop.
 *
 * Options: --latency-ms=N (default 50), --rounds=N (calls per pool slot, default 40).
 *
 * Each measurement is a function taking the server's base URL and returning one
 * `Measurement`, so further ones (through a pipeline, with the audit trail) can be
 * added to MEASUREMENTS without touching the rest.
 */
import { Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SqliteLandscape } from "../src/landscape/sqlite.js"
import { buildPipeline } from "../src/pipeline/build.js"
import { runPipeline } from "../src/pipeline/orchestrator/run.js"
import { makeExternalClient } from "../src/pipeline/plugins/external/client.js"
import { parseSettings } from "../src/pipeline/settings.js"
import { TelemetryNoop } from "../src/services/telemetry.js"

export interface Measurement {
  readonly name: string
  readonly poolSize: number
  readonly calls: number
  readonly seconds: number
}

export interface BenchServer {
  readonly baseUrl: string
  readonly stop: () => Promise<void>
}

export interface BenchConfig {
  readonly latencyMs: number
  readonly rounds: number
}

/** The fake LLM server in a child node process (compiled module next to this one). */
export const startBenchServer = (latencyMs: number): Promise<BenchServer> =>
  new Promise((resolve, reject) => {
    const moduleUrl = new URL("../src/dev/fake-llm.js", import.meta.url).href
    const script = `const { startFakeLlm } = await import(${JSON.stringify(moduleUrl)});
const s = await startFakeLlm({ latencyMs: ${Number(latencyMs)} });
process.stdout.write(s.baseUrl + "\\n");
process.on("SIGTERM", () => s.close().then(() => process.exit(0)));`
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.on("error", reject)
    child.on("exit", (code) => reject(new Error(`fake server exited (${code}) before listening`)))
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d
      if (!out.includes("\n")) return
      child.removeAllListeners("exit")
      resolve({
        baseUrl: out.trim(),
        stop: () =>
          new Promise<void>((done) => {
            child.once("exit", () => done())
            child.kill("SIGTERM")
          })
      })
    })
  })

const chatBody = (i: number) => ({
  model: "fake-gpt",
  messages: [
    { role: "system", content: "Classify the sentiment of the text. Reply in JSON." },
    { role: "user", content: `Row ${i}: the delivery was great but the box was broken` }
  ]
})

/** Calls through the client alone: `poolSize × rounds` calls, `poolSize` at a time. */
export const measureClient = (baseUrl: string, poolSize: number, config: BenchConfig): Promise<Measurement> =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const client = yield* makeExternalClient({
        service: "bench",
        timeoutMs: 30_000,
        retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2_000, jitter: true },
        poolSize,
        adaptive: true
      })
      const request = (i: number) => ({
        method: "POST" as const,
        url: `${baseUrl}/chat/completions`,
        headers: { authorization: "Bearer bench" },
        body: chatBody(i)
      })
      // Warm-up: open the pool's connections.
      yield* Effect.forEach(Array.from({ length: poolSize }, (_, i) => i), (i) => client.call(request(-1 - i)), { concurrency: poolSize })
      const calls = poolSize * config.rounds
      const started = performance.now()
      const results = yield* Effect.forEach(Array.from({ length: calls }, (_, i) => i), (i) => client.call(request(i)), {
        concurrency: poolSize
      })
      const seconds = (performance.now() - started) / 1000
      const failed = results.filter((r) => r.final.errorClass !== null).length
      if (failed > 0) return yield* Effect.dieMessage(`${failed} of ${calls} calls failed`)
      return { name: "client", poolSize, calls, seconds }
    }))
  )

/**
 * The same calls through a whole pipeline: a CSV of `poolSize × rounds` rows → an
 * `llm` transform (pool_size) → a JSON Lines sink, with the audit trail in a file
 * Landscape (every call recorded, both bodies in the payload store, checkpoints on).
 */
export const measurePipeline = async (baseUrl: string, poolSize: number, config: BenchConfig): Promise<Measurement> => {
  const dir = mkdtempSync(join(tmpdir(), "rl-bench-llm-"))
  try {
    const rows = poolSize * config.rounds
    writeFileSync(join(dir, "in.csv"), `id,text\n${Array.from({ length: rows }, (_, i) => `${i},the delivery was great but the box was broken ${i}`).join("\n")}\n`)
    const yaml = `
source:
  plugin: csv
  options: {path: ${join(dir, "in.csv")}, schema: {mode: fixed, fields: ["id: int", "text: str"]}, on_validation_failure: discard}
transforms:
  - plugin: llm
    options:
      provider: openai_compatible
      base_url: ${baseUrl}
      api_key: bench
      model: fake-gpt
      system_prompt: Classify the sentiment of the text. Reply in JSON.
      template: "Row {{ row.id }}: {{ row.text }}"
      response_format: json
      response_field: analysis
      pool_size: ${poolSize}
      timeout_seconds: 30
      schema: {mode: observed}
sinks:
  out: {plugin: json, options: {path: ${join(dir, "out.jsonl")}, format: jsonl, schema: {mode: observed}}}
default_sink: out
payload_store: {base_path: ${join(dir, "payloads")}}
`
    const started = performance.now()
    const result = await Effect.runPromise(
      parseSettings("bench.yaml", yaml, {}).pipe(
        Effect.flatMap((loaded) => buildPipeline(loaded)),
        Effect.flatMap((plan) => runPipeline(plan)),
        Effect.provide(Layer.merge(SqliteLandscape(join(dir, "audit.db")), TelemetryNoop)),
        Effect.scoped
      )
    )
    const seconds = (performance.now() - started) / 1000
    if (result.rows_succeeded !== rows) throw new Error(`${rows - result.rows_succeeded} of ${rows} rows did not succeed`)
    return { name: "pipeline", poolSize, calls: rows, seconds }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

type MeasureFn = (baseUrl: string, poolSize: number, config: BenchConfig) => Promise<Measurement>

/** What the bench measures, in order; each at every pool size. */
export const MEASUREMENTS: Array<MeasureFn> = [measureClient, measurePipeline]

export const POOL_SIZES: ReadonlyArray<number> = [1, 8, 32]

const option = (args: ReadonlyArray<string>, name: string, fallback: number): number => {
  const raw = args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  const n = raw === undefined ? fallback : Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}=${raw}: expected a positive number`)
  return n
}

export const runLlmBench = async (args: ReadonlyArray<string>): Promise<void> => {
  const config: BenchConfig = { latencyMs: option(args, "latency-ms", 50), rounds: option(args, "rounds", 40) }
  const server = await startBenchServer(config.latencyMs)
  try {
    console.log(`llm bench: fake server latency ${config.latencyMs} ms, ${config.rounds} calls per pool slot; ideal = pool_size / latency`)
    console.log(`${"measure".padEnd(10)} ${"pool".padStart(4)} ${"calls".padStart(6)} ${"seconds".padStart(8)} ${"calls/s".padStart(8)} ${"ideal".padStart(7)} ${"ratio".padStart(6)}`)
    const seconds = new Map<string, number>()
    for (const measure of MEASUREMENTS) {
      for (const pool of POOL_SIZES) {
        const m = await measure(server.baseUrl, pool, config)
        seconds.set(`${m.name}|${pool}`, m.seconds)
        const perSecond = m.calls / m.seconds
        const ideal = pool / (config.latencyMs / 1000)
        console.log(
          `${m.name.padEnd(10)} ${String(pool).padStart(4)} ${String(m.calls).padStart(6)} ${m.seconds.toFixed(2).padStart(8)} ` +
            `${perSecond.toFixed(1).padStart(8)} ${ideal.toFixed(0).padStart(7)} ${(perSecond / ideal).toFixed(2).padStart(6)}`
        )
      }
    }
    // The pipeline's extra time over the bare client, per call: recording, payloads, sink, checkpoints.
    for (const pool of POOL_SIZES) {
      const client = seconds.get(`client|${pool}`)
      const pipeline = seconds.get(`pipeline|${pool}`)
      if (client === undefined || pipeline === undefined) continue
      const calls = pool * config.rounds
      console.log(`audit overhead at pool ${pool}: ${(((pipeline - client) / calls) * 1000).toFixed(2)} ms per call (wall time, pipeline − client)`)
    }
  } finally {
    await server.stop()
  }
}
