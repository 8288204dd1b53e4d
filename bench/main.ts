/**
 * Benchmark entry point: `npm run bench -- <name>`.
 *
 * Each bench lives in its own module, imported on demand: a bench whose module is
 * missing or broken is reported by name and does not stop the others (`all`).
 */
interface BenchEntry {
  readonly module: string
  readonly exportName: string
  readonly description: string
}

const BENCHES: Readonly<Record<string, BenchEntry>> = {
  recorder: {
    module: "./recorder.js",
    exportName: "runRecorderBench",
    description: "buffered SqlRecorder vs raw better-sqlite3, 100k rows of audit records"
  },
  pipeline: {
    module: "./pipeline.js",
    exportName: "runPipelineBench",
    description: "csv → gate → two csv sinks at 100k and 1M rows vs a hand-written baseline (add --profile for a CPU profile)"
  },
  aggregation: {
    module: "./aggregation.js",
    exportName: "runAggregationBench",
    description: "csv → aggregation (count 100, batch_stats) at 1M rows (--rows=N) next to the plain pipeline"
  },
  export: {
    module: "./export.js",
    exportName: "runExportBench",
    description: "audit export throughput"
  },
  checkpoint: {
    module: "./checkpoint.js",
    exportName: "runCheckpointBench",
    description: "checkpoint overhead (off / every 1,000 / default) and resume after a kill at 90%, built CLI, 1M rows (--rows=N, --trials=N)"
  },
  loop: {
    module: "./loop.js",
    exportName: "runLoopBench",
    description: "issue loop overhead per issue and timeout-to-gone"
  },
  startup: {
    module: "./startup.js",
    exportName: "runStartupBench",
    description: "CLI start-up: --version and validate, bundled and unbundled, next to bare node (--trials=N)"
  },
  llm: {
    module: "./llm.js",
    exportName: "runLlmBench",
    description: "external calls against the fake LLM server (50 ms latency) at pool sizes 1, 8, 32 vs pool_size / latency (--latency-ms=N, --rounds=N)"
  }
}

/** Internal entry points used by benches that run workloads in child processes. */
const WORKERS: Readonly<Record<string, BenchEntry>> = {
  "pipeline-worker": { module: "./pipeline.js", exportName: "runPipelineWorker", description: "" },
  "aggregation-worker": { module: "./aggregation.js", exportName: "runAggregationWorker", description: "" }
}

const usage = (): string =>
  [
    "usage: npm run bench -- <name> [options]",
    "",
    ...Object.entries(BENCHES).map(([name, b]) => `  ${name.padEnd(12)} ${b.description}`),
    `  ${"all".padEnd(12)} every bench above, in turn`,
    "",
    "Benches print figures; they never assert timings. Keep the machine otherwise idle."
  ].join("\n")

type BenchFn = (args: ReadonlyArray<string>) => Promise<void>

/** Loads a bench's entry function, or explains why it cannot. */
const load = async (name: string, entry: BenchEntry): Promise<BenchFn | string> => {
  let mod: Record<string, unknown>
  try {
    // A computed specifier: benches still being written do not break the build.
    const specifier: string = entry.module
    mod = (await import(specifier)) as Record<string, unknown>
  } catch (e) {
    const code = (e as { code?: string }).code
    if (code === "ERR_MODULE_NOT_FOUND" && String((e as Error).message).includes(entry.module.slice(2))) {
      return `bench '${name}' is not available yet (bench/${entry.module.slice(2).replace(/\.js$/, ".ts")} does not exist)`
    }
    return `bench '${name}' could not be loaded: ${e instanceof Error ? e.stack ?? e.message : String(e)}`
  }
  const fn = mod[entry.exportName]
  if (typeof fn !== "function") return `bench '${name}': ${entry.module} does not export ${entry.exportName}()`
  return fn as BenchFn
}

const runOne = async (name: string, entry: BenchEntry, args: ReadonlyArray<string>): Promise<boolean> => {
  const fn = await load(name, entry)
  if (typeof fn === "string") {
    console.error(fn)
    return false
  }
  try {
    await fn(args)
    return true
  } catch (e) {
    console.error(`bench '${name}' failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`)
    return false
  }
}

const main = async (): Promise<number> => {
  const [name, ...args] = process.argv.slice(2)
  if (name === undefined || name === "--help" || name === "-h") {
    console.log(usage())
    return name === undefined ? 2 : 0
  }
  const worker = WORKERS[name]
  if (worker !== undefined) return (await runOne(name, worker, args)) ? 0 : 1
  if (name === "all") {
    const failed: Array<string> = []
    for (const [n, entry] of Object.entries(BENCHES)) {
      console.log(`\n=== ${n} ===`)
      if (!(await runOne(n, entry, args))) failed.push(n)
    }
    if (failed.length > 0) console.error(`\nnot run or failed: ${failed.join(", ")}`)
    return failed.length === 0 ? 0 : 1
  }
  const entry = BENCHES[name]
  if (entry === undefined) {
    console.error(`unknown bench '${name}'\n\n${usage()}`)
    return 2
  }
  return (await runOne(name, entry, args)) ? 0 : 1
}

process.exitCode = await main()
