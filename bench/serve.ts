/**
 * `npm run bench -- serve`: how long the explorer's pages take on a large run. The
 * built CLI runs a pipeline over N generated rows (default 1M, --rows=N; every 1,000th
 * row fails validation and is quarantined, the rest are routed by a gate to two
 * sinks), then `runledger serve` serves that Landscape and each page is fetched over
 * loopback: the first view of the run page (which counts the tokens per node once),
 * later views, row pages deep into the run, outcome filters, a row's lineage.
 * Medians of --trials=N (default 5) per page; target: every page under 1 s.
 */
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { cliBin, fmtInt, fmtMs, makeTempDir, removeDir } from "./support.js"


const SETTINGS = `source:
  plugin: csv
  on_success: raw
  options:
    path: input.csv
    schema: {mode: fixed, fields: ["id: int", "customer: str", "amount: float"]}
    on_validation_failure: quarantine
gates:
  - name: amount_router
    input: raw
    condition: "row['amount'] >= 1000"
    routes: {"true": large, "false": output}
sinks:
  output: {plugin: csv, options: {path: out/output.csv, schema: {mode: observed}}}
  large: {plugin: csv, options: {path: out/large.csv, schema: {mode: observed}}}
  quarantine: {plugin: json, options: {path: out/quarantine.jsonl, schema: {mode: observed}}}
landscape: {url: sqlite:///runs/audit.db}
checkpoint: {enabled: false}
`

const writeInput = (file: string, rows: number) => {
  const fd = NodeFs.openSync(file, "w")
  NodeFs.writeSync(fd, "id,customer,amount\n")
  let chunk = ""
  for (let i = 0; i < rows; i++) {
    chunk += i % 1000 === 999 ? `${i},c${i % 977},not-a-number\n` : `${i},c${i % 977},${(i * 37) % 2000}.5\n`
    if (chunk.length > 1 << 20) {
      NodeFs.writeSync(fd, chunk)
      chunk = ""
    }
  }
  NodeFs.writeSync(fd, chunk)
  NodeFs.closeSync(fd)
}

const run = (cwd: string, args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [cliBin(), ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

const startServe = (cwd: string) =>
  new Promise<{ url: string; stop: () => void }>((resolve, reject) => {
    const child = spawn(process.execPath, [cliBin(), "serve", "--db", "runs/audit.db", "--port", "0"], { cwd, stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /runledger explorer: (\S+)/.exec(out)
      if (m !== null) resolve({ url: m[1]!, stop: () => child.kill("SIGINT") })
    })
    child.on("close", (code) => reject(new Error(`serve exited ${code}`)))
  })

const timeFetch = async (url: string): Promise<number> => {
  const started = performance.now()
  const r = await fetch(url)
  await r.arrayBuffer()
  if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status}`)
  return performance.now() - started
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

export const runServeBench = async (): Promise<void> => {
  const rows = Number(process.argv.find((a) => a.startsWith("--rows="))?.slice(7) ?? 1_000_000)
  const trials = Number(process.argv.find((a) => a.startsWith("--trials="))?.slice(9) ?? 5)
  cliBin() // fails at once, saying what to do, when the CLI is not built
  const dir = makeTempDir("serve")
  try {
    NodeFs.writeFileSync(NodePath.join(dir, "s.yaml"), SETTINGS)
    writeInput(NodePath.join(dir, "input.csv"), rows)
    const started = performance.now()
    const r = await run(dir, ["run", "-s", "s.yaml", "--json", "--quiet"])
    if (r.code !== 0) throw new Error(`the run failed: ${r.stderr}`)
    const runId = (JSON.parse(r.stdout) as { run_id: string }).run_id
    console.log(`serve bench: a run of ${fmtInt(rows)} rows recorded in ${fmtMs(performance.now() - started)}; pages fetched over loopback, medians of ${trials}`)
    const server = await startServe(dir)
    try {
      const u = (path: string) => new URL(path, server.url).href
      const first = await timeFetch(u(`/runs/${runId}`))
      console.log(`  ${"run page, first view (counts tokens per node once)".padEnd(58)} ${fmtMs(first).padStart(8)}`)
      const last = Math.max(0, rows - 10)
      const pages: ReadonlyArray<readonly [string, string]> = [
        ["runs list", "/runs"],
        ["run page, later views", `/runs/${runId}`],
        ["run page, rows from the middle", `/runs/${runId}?from=${Math.floor(rows / 2)}`],
        ["run page, rows near the end", `/runs/${runId}?from=${last}`],
        ["run page, QUARANTINED rows (rare outcome)", `/runs/${runId}?outcome=QUARANTINED&from=${Math.floor(rows / 2)}`],
        ["run page, ROUTED rows (common outcome)", `/runs/${runId}?outcome=ROUTED&from=${Math.floor(rows / 2)}`],
        ["rows API, sink large, 500 a page", `/api/runs/${runId}/rows?sink=large&limit=500&from=${Math.floor(rows / 3)}`],
        ["lineage of the last row", `/runs/${runId}/rows/${rows - 1}`],
        ["lineage of a quarantined row", `/runs/${runId}/rows/${Math.min(rows - 1, 999)}`],
        ["batches page", `/runs/${runId}/batches`]
      ]
      let worst = first
      for (const [name, path] of pages) {
        const samples: Array<number> = []
        for (let t = 0; t < trials; t++) samples.push(await timeFetch(u(path)))
        const m = median(samples)
        worst = Math.max(worst, m)
        console.log(`  ${name.padEnd(58)} ${fmtMs(m).padStart(8)}`)
      }
      console.log(`  slowest page ${fmtMs(worst)} (target < 1 s)`)
    } finally {
      server.stop()
    }
  } finally {
    removeDir(dir)
  }
}
