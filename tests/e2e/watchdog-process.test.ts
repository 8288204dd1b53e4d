/**
 * The built watchdog script on its own, spoken to over its stdin as runledger does:
 * when the pipe closes it kills the groups of the commands not ended (TERM-ignoring
 * members by SIGKILL after the grace period) — one whose group was never written by
 * the marker in its environment — leaves ended commands alone, ignores terminal
 * signals, and exits.
 */
import { afterEach, describe, expect, it } from "vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { REPO } from "../support/cli.js"

const SCRIPT = join(REPO, "dist/loop/watchdog-process.js")
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

const started: Array<ChildProcess> = []
afterEach(() => {
  for (const c of started.splice(0)) {
    try {
      process.kill(-c.pid!, "SIGKILL")
    } catch {
      // gone
    }
  }
})

/** A group of its own whose leader and grandchild ignore SIGTERM, carrying RUNLEDGER_COMMAND_ID=id. */
const stubbornGroup = async (id: string) => {
  const child = spawn("sh", ["-c", `trap '' TERM; sleep 60 & echo $!; wait`], {
    detached: true,
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, RUNLEDGER_COMMAND_ID: id }
  })
  started.push(child)
  const grandchild = await new Promise<number>((resolve) => child.stdout!.once("data", (d) => resolve(Number(String(d).trim()))))
  return { pgid: child.pid!, pids: [child.pid!, grandchild] }
}

const exitOf = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.exitCode !== null || child.signalCode !== null
      ? resolve({ code: child.exitCode, signal: child.signalCode })
      : child.on("exit", (code, signal) => resolve({ code, signal }))
  )

describe.skipIf(process.platform !== "linux")("the watchdog process", () => {
  it("kills the groups of commands not ended when its pipe closes, and exits", async () => {
    expect(existsSync(SCRIPT)).toBe(true)
    const placed = await stubbornGroup("cmd-placed")
    const unplaced = await stubbornGroup("cmd-unplaced")
    const ended = await stubbornGroup("cmd-ended")
    const watchdog = spawn(process.execPath, [SCRIPT, String(process.pid), "200"], { detached: true, stdio: ["pipe", "ignore", "ignore"] })
    started.push(watchdog)
    watchdog.stdin!.write(`S cmd-placed\nG cmd-placed ${placed.pgid}\nS cmd-unplaced\n`)
    // One event may arrive in pieces.
    watchdog.stdin!.write(`S cmd-ended\nG cmd-ended ${ended.pgid}\nE cmd`)
    await sleep(50)
    watchdog.stdin!.write(`-ended\n`)
    await sleep(200)
    // Terminal signals do not stop it.
    watchdog.kill("SIGINT")
    watchdog.kill("SIGHUP")
    await sleep(200)
    expect(watchdog.exitCode).toBeNull()
    expect([...placed.pids, ...unplaced.pids].every(alive)).toBe(true)

    const t0 = Date.now()
    watchdog.stdin!.end()
    expect(await exitOf(watchdog)).toEqual({ code: 0, signal: null })
    expect(Date.now() - t0).toBeLessThan(2000)
    expect([...placed.pids, ...unplaced.pids].filter(alive)).toEqual([])
    // An ended command is not its business any more.
    expect(ended.pids.every(alive)).toBe(true)
  }, 20_000)

  it("exits at once when the pipe closes with nothing listed", async () => {
    const watchdog = spawn(process.execPath, [SCRIPT, String(process.pid), "5000"], { detached: true, stdio: ["pipe", "ignore", "ignore"] })
    started.push(watchdog)
    watchdog.stdin!.end()
    expect(await exitOf(watchdog)).toEqual({ code: 0, signal: null })
  }, 20_000)
})
