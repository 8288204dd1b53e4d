import { spawnSync } from "node:child_process"
import { cpSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export const REPO = resolve(__dirname, "../..")
export const BIN = join(REPO, "dist/bin.js")
export const COMPAT = resolve(REPO, "../shared/compat/elspeth")

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

/** A writable copy of the ELSPETH compat folder (examples run with it as working directory). */
export const compatCopy = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "rl-compat-"))
  cpSync(COMPAT, dir, { recursive: true })
  return dir
}
