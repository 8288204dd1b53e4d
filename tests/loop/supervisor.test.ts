import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { groupMembers, supervise } from "../../src/loop/supervisor.js"
import { fixture, isAlive, readPids, tempDir } from "./helpers.js"

const waitForPids = (file: string, n: number) =>
  Effect.gen(function*() {
    while (readPids(file).length < n) yield* Effect.sleep("10 millis")
    return readPids(file)
  })

describe("supervisor", () => {
  it.live("drains stdout and large stderr concurrently, keeps a bounded tail, writes the log", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const logFile = NodePath.join(dir, "cmd.log")
      const result = yield* supervise({
        command: fixture("noisy.sh", "3", "2000000"),
        cwd: dir,
        graceMs: 500,
        logFile,
        tailBytes: 1024
      })
      assert.strictEqual(result.exitCode, 3)
      assert.isFalse(result.timedOut)
      assert.isAtMost(Buffer.byteLength(result.outputTail), 1024)
      assert.include(result.outputTail, "stderr-end")
      const log = NodeFs.readFileSync(logFile, "utf8")
      assert.include(log, "stdout-line")
      assert.isAtLeast(log.length, 2_000_000)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.live("passes env and cwd", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const result = yield* supervise({
        command: "printf '%s|%s' \"$ISSUE_ID\" \"$(pwd)\"",
        cwd: dir,
        env: { ISSUE_ID: "abc-1" },
        graceMs: 500
      })
      assert.strictEqual(result.exitCode, 0)
      assert.strictEqual(result.outputTail, `abc-1|${NodeFs.realpathSync(dir)}`)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.live("timeout kills the whole process group, grandchildren that ignore SIGTERM included", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const pidfile = NodePath.join(dir, "pids")
      const result = yield* supervise({
        command: fixture("stubborn-group.sh", pidfile),
        cwd: dir,
        timeoutMs: 400,
        graceMs: 200
      })
      assert.isTrue(result.timedOut)
      assert.isNull(result.exitCode)
      const pids = readPids(pidfile)
      assert.strictEqual(pids.length, 2)
      for (const pid of pids) assert.isFalse(isAlive(pid), `pid ${pid} survived`)
      assert.deepStrictEqual(groupMembers(result.pid), [])
    }).pipe(Effect.provide(NodeContext.layer)))

  it.live("interrupting the caller kills the whole process group", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const pidfile = NodePath.join(dir, "pids")
      const fiber = yield* Effect.fork(supervise({ command: fixture("stubborn-group.sh", pidfile), cwd: dir, graceMs: 200 }))
      const pids = yield* waitForPids(pidfile, 2)
      for (const pid of pids) assert.isTrue(isAlive(pid))
      yield* Fiber.interrupt(fiber)
      for (const pid of pids) assert.isFalse(isAlive(pid), `pid ${pid} survived interruption`)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.live("a hard kill request skips the grace period", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const pidfile = NodePath.join(dir, "pids")
      const startedAt = Date.now()
      const result = yield* supervise({
        command: fixture("stubborn-group.sh", pidfile),
        cwd: dir,
        timeoutMs: 300,
        graceMs: 60_000,
        hardKill: Effect.sync(() => Date.now() - startedAt > 50)
      })
      assert.isTrue(result.timedOut)
      const pids = readPids(pidfile)
      assert.strictEqual(pids.length, 2)
      for (const pid of pids) assert.isFalse(isAlive(pid), `pid ${pid} survived`)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.live("leftover background processes of a finished command are killed", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const pidfile = NodePath.join(dir, "pids")
      const result = yield* supervise({
        command: `sleep 30 >/dev/null 2>&1 & echo $! > ${JSON.stringify(pidfile)}; echo done`,
        cwd: dir,
        graceMs: 200
      })
      assert.strictEqual(result.exitCode, 0)
      assert.include(result.outputTail, "done")
      const pids = readPids(pidfile)
      assert.strictEqual(pids.length, 1)
      for (const pid of pids) assert.isFalse(isAlive(pid), `pid ${pid} survived`)
    }).pipe(Effect.provide(NodeContext.layer)))
})
