/**
 * `npm run bench -- checkpoint [--rows=N] [--trials=N]`: what checkpoints cost and what
 * a resume saves, through the built CLI (`node dist/bin.js`), whole-process wall time.
 *
 * 1. Overhead: the pipeline of the `pipeline` bench (csv → gate → two csv sinks, full
 *    audit) with checkpoints off, every 1,000 rows and at the default (every 2,000
 *    rows), the three run in turn `--trials` times each (default 2); medians.
 * 2. Resume: the same run with default checkpoints is killed with SIGKILL after 90% of
 *    the source rows (`RUNLEDGER_TEST_CRASH=row:N`), then `resume latest --dry-run` and
 *    `resume latest` are timed. The resumed sinks are compared byte for byte with those
 *    of an uninterrupted run of the same settings.
 *
 * Every run has a directory of its own and the same settings text (relative paths),
 * so the settings hash is the same everywhere. Default 1M rows.
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { benchPipelineYaml, generateCsv } from "./pipeline.js"
import { cliBin, fmtInt, fmtMb, fmtMs, makeTempDir, removeDir } from "./support.js"

/** The built CLI, relative to this file's compiled copy in `.bench-build/bench/`. */

const SINK_FILES = ["out/normal.csv", "out/high_values.csv"] as const

interface Variant {
  readonly name: string
  /** The `checkpoint:` line of the settings, or none for the default. */
  readonly checkpoint: string | undefined
}

const VARIANTS: ReadonlyArray<Variant> = [
  { name: "checkpoints off", checkpoint: "checkpoint: {enabled: false}" },
  { name: "every_n 1,000", checkpoint: "checkpoint: {frequency: every_n, checkpoint_interval: 1000}" },
  { name: "default (every_n 2,000)", checkpoint: undefined }
]

const settingsYaml = (csv: string, checkpoint: string | undefined): string =>
  benchPipelineYaml(csv, { normal: SINK_FILES[0], high: SINK_FILES[1] }, [
    "landscape: {url: sqlite:///runs/audit.db}",
    ...(checkpoint === undefined ? [] : [checkpoint])
  ])

interface CliRun {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly ms: number
}

/** `node dist/bin.js <args>` in `cwd`; wall time from spawn to exit. */
const cli = (cwd: string, args: ReadonlyArray<string>, crash = ""): Promise<CliRun> =>
  new Promise<CliRun>((resolve, reject) => {
    const started = performance.now()
    const child = spawn(process.execPath, [cliBin(), ...args], {
      cwd,
      env: { ...process.env, RUNLEDGER_TEST_CRASH: crash },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8")
    child.stderr.setEncoding("utf8")
    child.stdout.on("data", (c: string) => {
      stdout += c
    })
    child.stderr.on("data", (c: string) => {
      // keep the tail only: progress lines of a long run add up
      stderr = (stderr + c).slice(-20_000)
    })
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - started }))
  })

const failure = (what: string, r: CliRun): Error =>
  new Error(`${what} exited with ${r.signal ?? r.code}:\n${r.stderr.slice(-2_000)}`)

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

const spreadOf = (xs: ReadonlyArray<number>): number => {
  const lo = Math.min(...xs)
  return lo > 0 ? (Math.max(...xs) - lo) / lo : 0
}

const sha256 = (file: string): string => createHash("sha256").update(NodeFs.readFileSync(file)).digest("hex")

const sinkHashes = (dir: string): ReadonlyArray<string> => SINK_FILES.map((f) => sha256(NodePath.join(dir, f)))

const newRunDir = (root: string, name: string, text: string): string => {
  const dir = NodePath.join(root, name)
  NodeFs.mkdirSync(dir, { recursive: true })
  NodeFs.writeFileSync(NodePath.join(dir, "s.yaml"), text)
  return dir
}

const pad = (cells: ReadonlyArray<string>, widths: ReadonlyArray<number>): string =>
  "  " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")

const printTable = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): void => {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  console.log(pad(head, widths))
  console.log(pad(widths.map((w) => "-".repeat(w)), widths))
  for (const r of rows) console.log(pad(r, widths))
}

const positive = (args: ReadonlyArray<string>, name: string, fallback: number): number => {
  const arg = args.find((a) => a.startsWith(`--${name}=`))
  if (arg === undefined) return fallback
  const n = Number(arg.slice(name.length + 3))
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive whole number, got ${arg}`)
  return n
}

export const runCheckpointBench = async (args: ReadonlyArray<string> = []): Promise<void> => {
  const rows = positive(args, "rows", 1_000_000)
  const trials = positive(args, "trials", 2)
  cliBin() // fails at once, saying what to do, when the CLI is not built
  const crashAt = Math.max(1, Math.floor(rows * 0.9))
  const root = makeTempDir("checkpoint")
  try {
    const csv = NodePath.join(root, "input.csv")
    const t0 = performance.now()
    generateCsv(csv, rows)
    console.log(`input: ${fmtInt(rows)} rows, ${fmtMb(NodeFs.statSync(csv).size)} generated in ${fmtMs(performance.now() - t0)}`)
    console.log("every figure is the wall time of a whole `node dist/bin.js …` process (start-up, Landscape, run, exit)\n")

    // 1. Overhead: variants in turn, `trials` rounds.
    const times = new Map<string, Array<number>>(VARIANTS.map((v) => [v.name, []]))
    let reference: ReadonlyArray<string> | undefined
    for (let t = 0; t < trials; t++) {
      for (const v of VARIANTS) {
        const dir = newRunDir(root, `run-${t}-${VARIANTS.indexOf(v)}`, settingsYaml(csv, v.checkpoint))
        const r = await cli(dir, ["run", "-s", "s.yaml", "--json"])
        if (r.code !== 0) throw failure(`run (${v.name})`, r)
        const result = JSON.parse(r.stdout) as { rows_processed: number }
        if (result.rows_processed !== rows) console.log(`  WARNING ${v.name}: ${result.rows_processed} rows processed, expected ${rows}`)
        times.get(v.name)!.push(r.ms)
        console.log(`  round ${t + 1}/${trials}  ${v.name.padEnd(24)} ${fmtMs(r.ms).padStart(8)}`)
        // The default variant is the uninterrupted run the resumed one must equal.
        if (v.checkpoint === undefined) reference = sinkHashes(dir)
        removeDir(dir)
      }
    }
    const off = median(times.get(VARIANTS[0]!.name)!)
    console.log(`\ncheckpoint overhead, ${fmtInt(rows)} rows, median of ${trials} runs each (variants run in turn):`)
    printTable(
      ["variant", "median wall", "rows/s", "vs off (time)", "runs", "spread"],
      VARIANTS.map((v) => {
        const xs = times.get(v.name)!
        const m = median(xs)
        return [
          v.name,
          fmtMs(m),
          fmtInt(rows / (m / 1000)),
          `${(m / off).toFixed(2)}×`,
          xs.map(fmtMs).join(", "),
          `${(spreadOf(xs) * 100).toFixed(0)}%`
        ]
      })
    )

    // 2. Crash at 90%, then resume.
    console.log(`\nresume: default checkpoints, killed (SIGKILL) after ${fmtInt(crashAt)} source rows, then resumed`)
    const dir = newRunDir(root, "crashed", settingsYaml(csv, undefined))
    const crashed = await cli(dir, ["run", "-s", "s.yaml", "--json"], `row:${crashAt}`)
    if (crashed.signal !== "SIGKILL") throw failure("the run to be killed", crashed)
    const dry = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--dry-run", "--json"])
    if (dry.code !== 0) throw failure("resume --dry-run", dry)
    const preview = JSON.parse(dry.stdout) as { rows_done: number; rows_left: number; checkpoint: { sequence: number } }
    const resumed = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--json"])
    if (resumed.code !== 0) throw failure("resume", resumed)
    const result = JSON.parse(resumed.stdout) as { rows_processed: number; status: string }
    const got = sinkHashes(dir)
    const identical = reference !== undefined && got.every((h, i) => h === reference![i])
    const full = median(times.get(VARIANTS[2]!.name)!)
    printTable(
      ["step", "wall", "rows", "vs full run"],
      [
        [`uninterrupted run (median of ${trials})`, fmtMs(full), fmtInt(rows), "1.00×"],
        [`run killed at row ${fmtInt(crashAt)}`, fmtMs(crashed.ms), fmtInt(crashAt), `${(crashed.ms / full).toFixed(2)}×`],
        ["resume latest --dry-run", fmtMs(dry.ms), "-", `${(dry.ms / full).toFixed(2)}×`],
        ["resume latest", fmtMs(resumed.ms), fmtInt(preview.rows_left), `${(resumed.ms / full).toFixed(2)}×`]
      ]
    )
    console.log(
      `  checkpoint ${preview.checkpoint.sequence} covered ${fmtInt(preview.rows_done)} rows; ` +
        `${fmtInt(preview.rows_left)} rows redone (${fmtInt(crashAt - preview.rows_done)} of them past the checkpoint, lost in the crash)`
    )
    console.log(`  resumed run: ${result.status}, ${fmtInt(result.rows_processed)} rows in all (one run of each step)`)
    console.log(`  identical: ${identical ? "yes" : "no"} (${SINK_FILES.join(", ")} byte for byte against the uninterrupted run)`)
    if (result.rows_processed !== rows) console.log(`  WARNING: the resumed run reports ${result.rows_processed} rows, expected ${rows}`)
  } finally {
    removeDir(root)
  }
}
