/**
 * Shared pieces of the benchmarks: temp dirs, timing and formatting, a peak-memory
 * sampler, child-process workers that report one JSON line, a plain better-sqlite3
 * bulk inserter (the "raw" baselines), and a summary of `--cpu-prof` output.
 *
 * Benchmarks print figures; they never assert timings.
 */
import Database from "better-sqlite3"
import { Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { LandscapeSql } from "../src/landscape/sqlite.js"

// ---------------------------------------------------------------------------
// Files

export const makeTempDir = (prefix: string): string => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), `runledger-bench-${prefix}-`))

export const removeDir = (dir: string): void => NodeFs.rmSync(dir, { recursive: true, force: true })

/** Size of a SQLite database including its WAL, in bytes. */
export const dbSize = (file: string): number => {
  let total = 0
  for (const f of [file, `${file}-wal`]) {
    try {
      total += NodeFs.statSync(f).size
    } catch {
      // absent
    }
  }
  return total
}

/** Number of line ends in a file (streamed: works on large files). */
export const countLines = (file: string): number => {
  const fd = NodeFs.openSync(file, "r")
  const buf = Buffer.alloc(1 << 20)
  let n = 0
  try {
    for (;;) {
      const read = NodeFs.readSync(fd, buf, 0, buf.length, null)
      if (read === 0) break
      for (let i = 0; i < read; i++) if (buf[i] === 10) n++
    }
  } finally {
    NodeFs.closeSync(fd)
  }
  return n
}

// ---------------------------------------------------------------------------
// Formatting and statistics

export const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US")
export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`)
export const fmtMb = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(0)} MB`
export const fmtPct = (ratio: number): string => `${(ratio * 100).toFixed(0)}%`

/** Best (lowest) of the samples and the spread between best and worst, relative to the best. */
export const bestOf = (samples: ReadonlyArray<number>): { readonly best: number; readonly spread: number } => {
  const best = Math.min(...samples)
  const worst = Math.max(...samples)
  return { best, spread: best > 0 ? (worst - best) / best : 0 }
}

export const gc = (): void => {
  const g = (globalThis as { gc?: () => void }).gc
  if (g !== undefined) g()
}

/** A small deterministic PRNG (mulberry32), so generated inputs are the same every run. */
export const prng = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---------------------------------------------------------------------------
// Memory

/**
 * Samples the resident set size on an interval; `stop()` returns the sampled peak and
 * the kernel's high-water mark (`maxRSS`, which also sees spikes between samples).
 * Note that maxRSS is per process: it includes whatever ran before in the process.
 */
export const startRssSampler = (intervalMs = 20) => {
  let peakRss = process.memoryUsage.rss()
  let peakHeap = process.memoryUsage().heapUsed
  const timer = setInterval(() => {
    const rss = process.memoryUsage.rss()
    if (rss > peakRss) peakRss = rss
    const heap = process.memoryUsage().heapUsed
    if (heap > peakHeap) peakHeap = heap
  }, intervalMs)
  timer.unref()
  return {
    stop: () => {
      clearInterval(timer)
      return {
        sampledPeakRss: Math.max(peakRss, process.memoryUsage.rss()),
        maxRss: process.resourceUsage().maxRSS * 1024,
        peakHeapUsed: peakHeap
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Workers

/** The compiled entry point of the benchmarks (this file's sibling `main.js`). */
export const benchMain = (): string => fileURLToPath(new URL("./main.js", import.meta.url))

/** The built CLI, dist/bin.js; fails with what to do when it has not been built. */
export const cliBin = (): string => {
  const bin = fileURLToPath(new URL("../../dist/bin.js", import.meta.url))
  if (!NodeFs.existsSync(bin)) throw new Error("dist/bin.js is missing: build the CLI first (npm run build)")
  return bin
}

const RESULT_PREFIX = "BENCH_RESULT "

/** Called by a worker: prints its result where the parent looks for it. */
export const reportResult = (value: unknown): void => {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(value)}\n`)
}

/**
 * Runs `node [nodeArgs] main.js <args>` and returns the value the worker reported.
 * The worker's stderr passes through; its other stdout lines are echoed.
 */
export const runWorker = <A>(args: ReadonlyArray<string>, nodeArgs: ReadonlyArray<string> = []): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, benchMain(), ...args], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      out += chunk
    })
    child.on("error", reject)
    child.on("close", (code, signal) => {
      let result: A | undefined
      for (const line of out.split("\n")) {
        if (line.startsWith(RESULT_PREFIX)) result = JSON.parse(line.slice(RESULT_PREFIX.length)) as A
        else if (line.trim() !== "") console.log(`    [worker] ${line}`)
      }
      if (code === 0 && result !== undefined) resolve(result)
      else reject(new Error(`worker ${args.join(" ")} exited with ${signal ?? code}${result === undefined ? " and no result" : ""}`))
    })
  })

// ---------------------------------------------------------------------------
// Landscape files for the raw baselines

/** Creates (or upgrades) a Landscape file with the project's own migrations, then closes it. */
export const migrateLandscape = (file: string): Promise<void> =>
  Effect.runPromise(Effect.scoped(Effect.asVoid(Layer.build(LandscapeSql(file)))))

/** Opens a migrated Landscape with plain better-sqlite3, with the pragmas the engine uses. */
export const openRaw = (file: string): Database.Database => {
  const db = new Database(file)
  db.pragma("journal_mode = WAL")
  db.pragma(`foreign_keys = ${process.env.BENCH_FK ?? "ON"}`)
  db.pragma("busy_timeout = 5000")
  db.pragma("synchronous = NORMAL")
  return db
}

/** SQLite's limit is 32,766 parameters per statement. */
const MAX_PARAMS = 32_000

/**
 * The hand-written bulk path: per table a flat parameter array, written by flush() in
 * one transaction with cached multi-row prepared INSERTs, tables in the given order.
 */
export class RawInserter {
  private readonly params = new Map<string, Array<unknown>>()
  private readonly columns = new Map<string, number>()
  private readonly statements = new Map<string, Database.Statement>()
  private readonly tables: ReadonlyArray<readonly [string, ReadonlyArray<string>]>
  private readonly flushAll: () => void
  records = 0

  constructor(
    private readonly db: Database.Database,
    tables: ReadonlyArray<readonly [string, ReadonlyArray<string>]>,
    private readonly rowsPerStatement = 500
  ) {
    this.tables = tables
    for (const [table, cols] of tables) {
      this.params.set(table, [])
      this.columns.set(table, cols.length)
    }
    this.flushAll = db.transaction(() => {
      for (const [table, cols] of this.tables) this.writeTable(table, cols)
    })
  }

  /** The parameter array of `table`: push one record's values in column order, then call `added()`. */
  target(table: string): Array<unknown> {
    return this.params.get(table)!
  }

  added(n = 1): void {
    this.records += n
  }

  flush(): void {
    if (this.records === 0) return
    this.flushAll()
    this.records = 0
  }

  private statement(table: string, cols: ReadonlyArray<string>, rows: number): Database.Statement {
    const key = `${table}:${rows}`
    let stmt = this.statements.get(key)
    if (stmt === undefined) {
      const one = `(${cols.map(() => "?").join(",")})`
      stmt = this.db.prepare(`INSERT INTO ${table} (${cols.join(",")}) VALUES ${Array(rows).fill(one).join(",")}`)
      this.statements.set(key, stmt)
    }
    return stmt
  }

  private writeTable(table: string, cols: ReadonlyArray<string>): void {
    const params = this.params.get(table)!
    if (params.length === 0) return
    const width = cols.length
    const perStatement = Math.max(1, Math.min(this.rowsPerStatement, Math.floor(MAX_PARAMS / width)))
    const rows = params.length / width
    for (let start = 0; start < rows; start += perStatement) {
      const n = Math.min(perStatement, rows - start)
      this.statement(table, cols, n).run(params.slice(start * width, (start + n) * width))
    }
    params.length = 0
  }
}

// ---------------------------------------------------------------------------
// CPU profiles

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** A location without machine paths: `src/…`, `node_modules/pkg/…`, `node:…`. */
const shortUrl = (url: string): string => {
  if (url === "") return ""
  const nm = url.lastIndexOf("node_modules/")
  if (nm >= 0) return url.slice(nm)
  const build = url.indexOf(".bench-build/")
  if (build >= 0) return url.slice(build + ".bench-build/".length)
  if (url.startsWith("node:")) return url
  return NodePath.basename(url)
}

/** The package or source area of a location, for the per-area summary. */
const areaOf = (url: string): string => {
  const short = shortUrl(url)
  if (short === "") return "(native / VM)"
  if (short.startsWith("node_modules/")) {
    const parts = short.split("/")
    return parts[1]!.startsWith("@") ? `${parts[1]}/${parts[2]}` : parts[1]!
  }
  if (short.startsWith("node:")) return "node core"
  if (short.startsWith("src/")) return short.split("/").slice(0, 3).join("/")
  return short
}

export interface ProfileSummary {
  readonly totalMs: number
  readonly self: ReadonlyArray<{ readonly name: string; readonly ms: number; readonly pct: number }>
  readonly inclusive: ReadonlyArray<{ readonly name: string; readonly ms: number; readonly pct: number }>
  /** Inclusive time of the project's own functions (src/): where the engine spends it. */
  readonly project: ReadonlyArray<{ readonly name: string; readonly ms: number; readonly pct: number }>
  readonly areas: ReadonlyArray<{ readonly name: string; readonly ms: number; readonly pct: number }>
}

/** Self time per function, inclusive time per function (recursion counted once) and self time per area. */
export const summarizeCpuProfile = (file: string, top = 25): ProfileSummary => {
  const profile = JSON.parse(NodeFs.readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const n of profile.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  const label = (n: ProfileNode): string => {
    const f = n.callFrame
    const name = f.functionName === "" ? "(anonymous)" : f.functionName
    const where = shortUrl(f.url)
    return where === "" ? name : `${name}  ${where}:${f.lineNumber + 1}`
  }
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const areas = new Map<string, number>()
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000
    const node = byId.get(profile.samples[i]!)
    if (node === undefined) continue
    total += dt
    const name = label(node)
    self.set(name, (self.get(name) ?? 0) + dt)
    const area = node.callFrame.functionName === "(garbage collector)" ? "(garbage collector)" : areaOf(node.callFrame.url)
    areas.set(area, (areas.get(area) ?? 0) + dt)
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!
      const l = label(n)
      if (seen.has(l)) continue
      seen.add(l)
      inclusive.set(l, (inclusive.get(l) ?? 0) + dt)
    }
  }
  const ranked = (m: Map<string, number>, n: number) =>
    Array.from(m, ([name, ms]) => ({ name, ms, pct: total > 0 ? ms / total : 0 })).sort((a, b) => b.ms - a.ms).slice(0, n)
  const skip = /^\((root|program|idle)\)/
  return {
    totalMs: total,
    self: ranked(self, top),
    inclusive: ranked(new Map(Array.from(inclusive).filter(([k]) => !skip.test(k) && !/ node_modules\/effect\//.test(k))), top),
    project: ranked(new Map(Array.from(inclusive).filter(([k]) => / src\//.test(k))), top),
    areas: ranked(areas, 15)
  }
}

export const printProfileSummary = (summary: ProfileSummary): void => {
  const line = (r: { name: string; ms: number; pct: number }) =>
    `    ${r.ms.toFixed(0).padStart(7)} ms ${(r.pct * 100).toFixed(1).padStart(5)}%  ${r.name}`
  console.log(`  profile: ${summary.totalMs.toFixed(0)} ms sampled`)
  console.log("  self time by area:")
  for (const r of summary.areas) console.log(line(r))
  console.log("  top functions by self time:")
  for (const r of summary.self) console.log(line(r))
  console.log("  top functions by inclusive time (effect's runtime frames left out):")
  for (const r of summary.inclusive) console.log(line(r))
  console.log("  project functions (src/) by inclusive time:")
  for (const r of summary.project) console.log(line(r))
}
