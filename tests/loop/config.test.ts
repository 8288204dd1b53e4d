import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import {
  formatLoopConfigError,
  GLOBAL_VALIDATION_MIGRATION_ERROR,
  loadLoopConfig,
  parseDuration,
  parseLoopConfig
} from "../../src/loop/config.js"
import { tempDir } from "./helpers.js"

const base = { implementer: { command: "echo hi" }, commands: { test: "true", lint: { command: "true", timeout: "5m" } } }
const parse = (raw: unknown) => parseLoopConfig(raw, "/cfg/loop.yaml", "/cfg")
const error = (raw: unknown) => {
  const result = parse(raw)
  assert.isTrue(Either.isLeft(result), "expected a config error")
  return (result as Either.Left<any, any>).left
}

describe("loop config", () => {
  it("makes defaults explicit and resolves refs and paths", () => {
    const config = Either.getOrThrow(parse({
      ...base,
      issues: "issues.yaml",
      gate: { commands: ["test"] },
      validation_triggers: { session_end: { commands: [{ ref: "lint" }] }, run_end: { commands: [] } }
    }))
    assert.strictEqual(config.repo, "/cfg")
    assert.deepStrictEqual(config.issues, { kind: "file", path: "/cfg/issues.yaml" })
    assert.strictEqual(config.maxAgents, 1)
    assert.strictEqual(config.gate.maxRetries, 2)
    assert.isTrue(config.gate.requireCommit)
    assert.strictEqual(config.sessionEnd?.failureMode, "continue")
    assert.strictEqual(config.sessionEnd?.commands[0]?.timeoutMs, 300_000)
    assert.strictEqual(config.runEnd?.fireOn, "success")
    assert.strictEqual(config.runEnd?.failureMode, "continue")
    assert.strictEqual(config.gate.commands[0]?.command, "true")
  })

  it("parses durations", () => {
    assert.strictEqual(parseDuration("500ms"), 500)
    assert.strictEqual(parseDuration("2s"), 2000)
    assert.strictEqual(parseDuration("10m"), 600_000)
    assert.strictEqual(parseDuration("1h"), 3_600_000)
    assert.strictEqual(parseDuration(3), 3000)
    assert.isUndefined(parseDuration("ten minutes"))
    assert.isUndefined(parseDuration(-1))
  })

  it("rejects global_validation_commands with the exact migration error", () => {
    const e = error({ ...base, global_validation_commands: ["test"] })
    assert.strictEqual(e.key, "global_validation_commands")
    assert.strictEqual(e.message, GLOBAL_VALIDATION_MIGRATION_ERROR)
    assert.strictEqual(
      e.message,
      "global_validation_commands is deprecated. Migrate to validation_triggers.run_end:\n\nvalidation_triggers:\n  run_end:\n    failure_mode: continue\n    commands:\n      - ref: test\n      - ref: lint\n"
    )
  })

  it("names file, key and value for undefined refs, unknown keys and bad durations", () => {
    const undefinedRef = error({ ...base, validation_triggers: { session_end: { commands: [{ ref: "typo" }] } } })
    assert.strictEqual(undefinedRef.key, "validation_triggers.session_end.commands[0].ref")
    assert.strictEqual(undefinedRef.value, "typo")
    assert.include(formatLoopConfigError(undefinedRef), "/cfg/loop.yaml")

    const gateRef = error({ ...base, gate: { commands: ["nope"] } })
    assert.strictEqual(gateRef.key, "gate.commands[0]")

    const unknown = error({ ...base, gate: { commands: [], max_retry: 3 } })
    assert.strictEqual(unknown.key, "gate.max_retry")
    assert.strictEqual(unknown.value, "3")
    assert.strictEqual(unknown.message, "unknown key; allowed keys: commands, max_retries, require_commit")

    const duration = error({ ...base, implementer: { command: "x", timeout: "soon" } })
    assert.strictEqual(duration.key, "implementer.timeout")
    assert.strictEqual(duration.value, "soon")
    assert.include(duration.message, "expected a duration")

    const missing = error({ commands: {} })
    assert.strictEqual(missing.key, "implementer")
  })

  it("rejects remediate without max_retries or without a fixer, and code review without a reviewer", () => {
    const noRetries = error({
      ...base,
      fixer: { command: "fix" },
      validation_triggers: { session_end: { failure_mode: "remediate", commands: [{ ref: "test" }] } }
    })
    assert.strictEqual(noRetries.key, "validation_triggers.session_end.max_retries")
    const noFixer = error({
      ...base,
      validation_triggers: { run_end: { failure_mode: "remediate", max_retries: 1, commands: [{ ref: "test" }] } }
    })
    assert.strictEqual(noFixer.key, "validation_triggers.run_end.failure_mode")
    assert.strictEqual(noFixer.value, "remediate")
    const noReviewer = error({ ...base, validation_triggers: { run_end: { code_review: { enabled: true } } } })
    assert.strictEqual(noReviewer.key, "validation_triggers.run_end.code_review.enabled")
    const bad = error({ ...base, validation_triggers: { run_end: { fire_on: "always" } } })
    assert.strictEqual(bad.key, "validation_triggers.run_end.fire_on")
  })

  it("allows a review-only run_end", () => {
    const config = Either.getOrThrow(parse({
      ...base,
      reviewer: { command: "review" },
      validation_triggers: { run_end: { commands: [], code_review: { enabled: true } } }
    }))
    assert.isTrue(config.runEnd?.codeReview)
    assert.strictEqual(config.reviewer?.findingThreshold, 1)
  })

  it.effect("loads YAML from a file", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const file = NodePath.join(dir, "loop.yaml")
      NodeFs.writeFileSync(file, "implementer: { command: 'true' }\nmax_agents: 3\nbeads: .beads/issues.jsonl\n")
      const config = yield* loadLoopConfig(file)
      assert.strictEqual(config.maxAgents, 3)
      assert.deepStrictEqual(config.issues, { kind: "beads", path: NodePath.join(dir, ".beads/issues.jsonl") })
      NodeFs.writeFileSync(file, "implementer: { command: 'true' }\nmax_agents: 0\n")
      const e = yield* Effect.flip(loadLoopConfig(file))
      assert.strictEqual(e.key, "max_agents")
      assert.strictEqual(e.file, file)
      const missing = NodePath.join(dir, "missing.yaml")
      const unreadable = yield* Effect.flip(loadLoopConfig(missing))
      assert.deepStrictEqual([unreadable.file, unreadable.key], [missing, "(file)"])
      assert.include(unreadable.message, "ENOENT: no such file or directory")
    }).pipe(Effect.provide(NodeContext.layer)))
})
