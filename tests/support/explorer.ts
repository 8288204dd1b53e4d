/**
 * Fixtures of the explorer and MCP tests: the demo pipeline run for real by the built
 * CLI in a folder of its own (optionally with extra input rows), and `runledger serve`
 * started as a process on a free loopback port, its URL read from its stdout.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { appendFileSync, cpSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN, REPO, runCliIn } from "./cli.js"

export interface DemoWorkspace {
  /** The folder the demo ran in (its settings use paths relative to it). */
  readonly dir: string
  /** `--db` as the demo's settings name it, relative to `dir`. */
  readonly db: string
  readonly dbPath: string
  readonly runId: string
}

/** Copies examples/demo into a fresh folder, appends `extraCsvLines` to its input and runs it. */
export const demoWorkspace = async (extraCsvLines: ReadonlyArray<string> = []): Promise<DemoWorkspace> => {
  const dir = mkdtempSync(join(tmpdir(), "rl-explorer-"))
  cpSync(join(REPO, "examples/demo/settings.yaml"), join(dir, "examples/demo/settings.yaml"))
  cpSync(join(REPO, "examples/demo/input.csv"), join(dir, "examples/demo/input.csv"))
  if (extraCsvLines.length > 0) appendFileSync(join(dir, "examples/demo/input.csv"), extraCsvLines.join("\n") + "\n")
  const r = await runCliIn(dir, ["run", "-s", "examples/demo/settings.yaml", "--json"], undefined, 60_000)
  if (r.status !== 0) throw new Error(`the demo run failed (${r.status}): ${r.stderr}`)
  const runId = (JSON.parse(r.stdout) as { run_id: string }).run_id
  const db = "examples/demo/runs/demo.db"
  return { dir, db, dbPath: join(dir, db), runId }
}

export interface Explorer {
  /** `http://127.0.0.1:PORT/` as printed on stdout. */
  readonly url: string
  readonly child: ChildProcess
  readonly stderr: () => string
  readonly stop: () => Promise<void>
}

/** Starts `runledger serve ARGS --port 0` in `cwd` and waits for the URL line on stdout. */
export const startExplorer = (cwd: string, args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}): Promise<Explorer> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "serve", ...args, "--port", "0"], {
      cwd,
      env: { ...process.env, RUNLEDGER_SIGNING_KEY: "", ELSPETH_SIGNING_KEY: "", RUNLEDGER_SERVE_TOKEN: "", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`serve printed no URL within 20 s; stderr: ${stderr}`))
    }, 20_000)
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d
      const m = /^runledger explorer: (http:\/\/\S+)$/m.exec(stdout)
      if (m !== null) {
        clearTimeout(timer)
        resolve({
          url: m[1]!,
          child,
          stderr: () => stderr,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done()
              child.once("close", () => done())
              child.kill("SIGINT")
            })
        })
      }
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      reject(new Error(`serve exited ${code} before printing its URL; stderr: ${stderr}`))
    })
  })
