import { Command } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as YAML from "yaml"
import { loopCommand, loopJson } from "../../src/cli/loop.js"
import { CliExit } from "../../src/cli/exit.js"
import { CommandFixer, listLoopRuns, runLoop, SqliteLandscape, TelemetryNoop } from "../../src/index.js"
import { BIN } from "../support/cli.js"
import { fixture, isAlive, makeRepo, readPids, tempDir } from "./helpers.js"
import { scenario } from "./harness.js"

const cli = Command.run(loopCommand, { name: "runledger loop", version: "test" })
const run = (...args: Array<string>) =>
  cli(["node", "runledger", ...args]).pipe(Effect.provide(NodeContext.layer), Effect.either)

const writeConfig = (doc: Record<string, unknown>) => {
  const dir = tempDir("runledger-cli-")
  const file = NodePath.join(dir, "loop.yaml")
  NodeFs.writeFileSync(file, YAML.stringify(doc))
  NodeFs.writeFileSync(NodePath.join(dir, "issues.yaml"), YAML.stringify([{ id: "C-1", title: "one" }]))
  return { dir, file }
}

describe("runledger loop (CLI)", () => {
  it.live("an invalid config exits 2 naming file, key and value; the legacy key gives the migration error", () =>
    Effect.gen(function*() {
      const { dir, file } = writeConfig({ implementer: { command: "true", timeout: "forever" } })
      const bad = yield* run("-c", file, "--db", NodePath.join(dir, "db.sqlite"))
      assert.isTrue(Either.isLeft(bad))
      const e = (bad as Either.Left<CliExit, void>).left
      assert.instanceOf(e, CliExit)
      assert.strictEqual(e.code, 2)
      assert.include(e.message, file)
      assert.include(e.message, "implementer.timeout = forever")
      const legacy = writeConfig({ implementer: { command: "true" }, global_validation_commands: ["test"] })
      const l = yield* run("-c", legacy.file, "--db", NodePath.join(legacy.dir, "db.sqlite"))
      const le = (l as Either.Left<CliExit, void>).left
      assert.strictEqual(le.code, 2)
      assert.include(le.message, "global_validation_commands is deprecated. Migrate to validation_triggers.run_end:")
    }))

  it.live("runs a loop against a real Landscape file; no success exits 1, success exits 0", () =>
    Effect.gen(function*() {
      const repo = makeRepo()
      const failing = writeConfig({ implementer: { command: fixture("implementer-noop.sh") }, gate: { max_retries: 0 } })
      const db = NodePath.join(failing.dir, "runledger.db")
      const r1 = yield* run("-c", failing.file, "--issues", NodePath.join(failing.dir, "issues.yaml"), "--repo", repo, "--db", db)
      assert.strictEqual((r1 as Either.Left<CliExit, void>).left.code, 1)
      const ok = writeConfig({ implementer: { command: fixture("implementer-commit.sh") }, max_agents: 1 })
      const r2 = yield* run("-c", ok.file, "--issues", NodePath.join(ok.dir, "issues.yaml"), "--repo", repo, "--max-agents", "2", "--db", db)
      assert.isTrue(Either.isRight(r2), JSON.stringify(r2))
      assert.isTrue(NodeFs.statSync(db).size > 0)
    }))

  it("the --json document has the contract's shape", () => {
    const doc = loopJson({
      run_id: "r",
      status: "completed",
      reason: null,
      run_dir: "/d",
      counts: { total: 1, success: 1, failed: 0, interrupted: 0, skipped: 0 },
      issues: [{
        issue_id: "I",
        title: "t",
        status: "success",
        reason: null,
        branch: "b",
        base_sha: "abc",
        head_sha: "def",
        gate_attempts: 1,
        review_rounds: 0,
        session_end: {
          status: "pass",
          started_at: "s",
          finished_at: "f",
          reason: null,
          validations: 1,
          code_review_result: null,
          commands: [{
            ref: "test",
            command: "true",
            passed: true,
            exit_code: 0,
            timed_out: false,
            duration_ms: 5,
            output_tail: "",
            started_at: "s",
            finished_at: "f",
            log_file: null
          }]
        },
        review: null
      }],
      run_end: { status: "skipped", reason: "not_configured", started_at: null, finished_at: null, commands: [], code_review_result: null, validations: 0 },
      integration: { strategy: "merge", branch: "runledger/r/integration", base_sha: "abc", head: "def" },
      attempt: 1,
      epics: [{
        epic_id: "E",
        title: "epic",
        status: "validation_failed",
        reason: "command_failed:lint",
        commands: [{
          ref: "lint",
          command: "false",
          passed: false,
          exit_code: 1,
          timed_out: false,
          duration_ms: 3,
          output_tail: "",
          started_at: "s",
          finished_at: "f",
          log_file: "/d/epics/E/logs/001-epic_completion-lint.log"
        }]
      }]
    })
    assert.deepStrictEqual(doc.issues[0]!.session_end, {
      status: "pass",
      reason: null,
      commands: [{ ref: "test", passed: true, exit_code: 0, duration_ms: 5 }]
    })
    assert.deepStrictEqual(doc.run_end, { status: "skipped", reason: "not_configured" })
    assert.hasAllKeys(doc, ["run_id", "status", "reason", "counts", "issues", "run_end", "integration", "attempt", "epics"])
    assert.deepStrictEqual(doc.epics, [{
      epic_id: "E",
      status: "validation_failed",
      reason: "command_failed:lint",
      commands: [{ ref: "lint", passed: false, exit_code: 1, duration_ms: 3 }]
    }])
    assert.includeMembers(Object.keys(doc.issues[0]!), ["issue_id", "status", "base_sha", "gate_attempts", "session_end", "review", "reason"])
  })

  it.live("as a library: SqliteLandscape provides the loop's audit trail, listLoopRuns reads it back", () =>
    Effect.gen(function*() {
      const s = scenario({ implementer: { command: fixture("implementer-commit.sh") } }, [{ id: "L-1", title: "library" }])
      const { result, runs } = yield* Effect.gen(function*() {
        const result = yield* runLoop(s.config)
        return { result, runs: yield* listLoopRuns() }
      }).pipe(
        Effect.provide(Layer.mergeAll(CommandFixer(s.config), TelemetryNoop, SqliteLandscape(":memory:").pipe(Layer.orDie))),
        Effect.provide(NodeContext.layer)
      )
      assert.strictEqual(result.status, "completed")
      assert.deepStrictEqual(runs.map((r) => [r.run_id, r.status, r.counts.success]), [[result.run_id, "completed", 1]])
    }))

  it("the second Ctrl-C to the built CLI kills every process group now, without the grace period", async () => {
    const repo = makeRepo()
    const dir = tempDir("runledger-cli-kill-")
    NodeFs.writeFileSync(NodePath.join(dir, "issues.yaml"), YAML.stringify([{ id: "K-1", title: "stubborn" }]))
    NodeFs.writeFileSync(NodePath.join(dir, "loop.yaml"), YAML.stringify({
      repo,
      issues: "issues.yaml",
      kill_grace: "60s",
      implementer: { command: fixture("stubborn-group.sh", "$ISSUE_DIR/pids"), timeout: "10m" }
    }))
    const child = spawn(process.execPath, [BIN, "loop", "-c", NodePath.join(dir, "loop.yaml"), "--db", NodePath.join(dir, "audit.db"), "--json"], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += String(d)))
    child.stderr.on("data", (d) => (stderr += String(d)))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    const pidfile = () => {
      const runs = NodePath.join(dir, ".runledger", "runs")
      const ids = NodeFs.existsSync(runs) ? NodeFs.readdirSync(runs) : []
      return ids.length === 0 ? "" : NodePath.join(runs, ids[0]!, "issues", "K-1", "pids")
    }
    for (let i = 0; i < 300 && readPids(pidfile()).length < 2; i++) await new Promise((r) => setTimeout(r, 100))
    const pids = readPids(pidfile())
    assert.strictEqual(pids.length, 2, stderr)
    child.kill("SIGINT")
    await new Promise((r) => setTimeout(r, 300))
    // The first Ctrl-C only drains: the stubborn implementer is still running.
    for (const pid of pids) assert.isTrue(isAlive(pid), `pid ${pid} died on the first Ctrl-C`)
    const secondAt = Date.now()
    child.kill("SIGINT")
    const code = await exited
    assert.strictEqual(code, 130, stderr)
    assert.isBelow(Date.now() - secondAt, 20_000)
    for (const pid of pids) assert.isFalse(isAlive(pid), `pid ${pid} survived the second Ctrl-C`)
    const result = JSON.parse(stdout) as { status: string; issues: Array<{ issue_id: string; status: string; reason: string }> }
    assert.strictEqual(result.status, "interrupted")
    assert.deepStrictEqual(result.issues.map((i) => [i.issue_id, i.status, i.reason]), [["K-1", "interrupted", "killed"]])
    assert.include(stderr, "interrupt: draining")
  }, 60_000)
})
