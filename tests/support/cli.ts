import { spawn, spawnSync } from "node:child_process"
import { join, resolve } from "node:path"

export const REPO = resolve(__dirname, "../..")
export const BIN = join(REPO, "dist/bin.js")

export interface CliResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the built CLI (`npm test` builds it first). */
export const runCli = (args: ReadonlyArray<string>, options: { cwd?: string; env?: Record<string, string | undefined> } = {}): CliResult => {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? REPO,
    env: { ...process.env, ...options.env },
    encoding: "utf8",
    timeout: 60_000
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** The external compat corpus is located in one place: ./compat.ts. */
export { COMPAT, compatCopy, HAS_COMPAT } from "./compat.js"

export interface CliRun extends CliResult {
  readonly signal: NodeJS.Signals | null
}

/**
 * Runs the built CLI in `cwd` without blocking the test worker (for tests that run it
 * many times or for seconds). `crash` sets RUNLEDGER_TEST_CRASH (see crash-points.ts).
 */
export const runCliIn = (cwd: string, args: ReadonlyArray<string>, crash?: string, timeoutMs = 60_000): Promise<CliRun> =>
  new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env: { ...process.env, RUNLEDGER_TEST_CRASH: crash ?? "" },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutMs
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", reject)
    child.on("close", (status, signal) => resolvePromise({ status, signal, stdout, stderr }))
  })
