/**
 * `runledger loop` through the built CLI under Ctrl-C: the running command finishes,
 * the issue ends interrupted, run_end is skipped and the process exits 130.
 */
import { describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as YAML from "yaml"
import { fixture, makeRepo, tempDir } from "../loop/helpers.js"
import { BIN } from "../support/cli.js"

describe("runledger loop under SIGINT", () => {
  it("drains on the first Ctrl-C: the command finishes, the issue is interrupted, exit 130", async () => {
    const repo = makeRepo()
    const dir = tempDir("rl-loop-sig-")
    writeFileSync(join(dir, "issues.yaml"), YAML.stringify([{ id: "S-1", title: "slow" }, { id: "S-2", title: "never starts" }]))
    writeFileSync(join(dir, "loop.yaml"), YAML.stringify({
      repo,
      issues: "issues.yaml",
      max_agents: 1,
      implementer: { command: fixture("implementer-sleep.sh", "2"), timeout: "1m" },
      validation_triggers: { run_end: { fire_on: "both", commands: [] , code_review: { enabled: false } } }
    }))
    const child = spawn(process.execPath, [BIN, "loop", "-c", join(dir, "loop.yaml"), "--db", join(dir, "audit.db"), "--json"], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += String(d)))
    child.stderr.on("data", (d) => (stderr += String(d)))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    // Wait until the implementer of S-1 is running, then press Ctrl-C once.
    for (let i = 0; i < 300 && !stderr.includes("[issue] started: issue_id=S-1"); i++) await new Promise((r) => setTimeout(r, 100))
    expect(stderr).toContain("[issue] started: issue_id=S-1")
    child.kill("SIGINT")
    const code = await exited
    expect(code, stderr).toBe(130)
    const result = JSON.parse(stdout) as {
      status: string
      issues: Array<{ issue_id: string; status: string }>
      run_end: { status: string; reason: string }
    }
    expect(result.status).toBe("interrupted")
    expect(result.issues.find((i) => i.issue_id === "S-1")?.status).toBe("interrupted")
    expect(result.issues.some((i) => i.issue_id === "S-2" && i.status !== "skipped" && i.status !== "interrupted")).toBe(false)
    expect(result.run_end.status).toBe("skipped")
    expect(stderr).not.toMatch(/internal error/)
    expect(existsSync(join(dir, "audit.db"))).toBe(true)
  }, 60_000)
})
