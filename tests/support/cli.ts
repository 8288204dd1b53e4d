import { spawnSync } from "node:child_process"
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
