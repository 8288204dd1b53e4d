import { assert, describe, it } from "@effect/vitest"
import { NodeFileSystem } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Fixer, NoFixer } from "../../src/services/fixer.js"
import { Telemetry, TelemetryEvent, TelemetryJsonl, TelemetryNoop, TelemetryTee } from "../../src/services/telemetry.js"
import { tempDir } from "../support/pipeline.js"

describe("Telemetry", () => {
  it.effect("the JSONL layer writes one decodable event per line, all of them by the end of its scope", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "events.jsonl")
      yield* Effect.scoped(Effect.gen(function*() {
        const t = yield* Telemetry
        for (let i = 0; i < 50; i++) yield* t.emit({ _tag: "Progress", runId: "run_x", rows: i, elapsedMs: i * 10 })
        yield* t.emit({ _tag: "TriggerEvent", runId: "run_x", line: "[trigger] run_end skipped: reason=fire_on_not_met", at: "2026-01-01T00:00:00.000Z" })
      }).pipe(Effect.provide(TelemetryJsonl(path).pipe(Layer.provide(NodeFileSystem.layer)))))
      const lines = readFileSync(path, "utf8").trim().split("\n")
      assert.strictEqual(lines.length, 51)
      const decoded = lines.map((l) => Schema.decodeUnknownSync(TelemetryEvent)(JSON.parse(l)))
      assert.deepStrictEqual(decoded[49], { _tag: "Progress", runId: "run_x", rows: 49, elapsedMs: 490 })
      assert.strictEqual(decoded[50]!._tag, "TriggerEvent")
    }))

  it.effect("a tee sends every event to each layer", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const a = join(dir, "a.jsonl")
      const b = join(dir, "b.jsonl")
      const fs = NodeFileSystem.layer
      yield* Effect.scoped(Effect.gen(function*() {
        const t = yield* Telemetry
        yield* t.emit({ _tag: "Warning", message: "careful" })
      }).pipe(Effect.provide(TelemetryTee(TelemetryJsonl(a).pipe(Layer.provide(fs)), TelemetryJsonl(b).pipe(Layer.provide(fs)), TelemetryNoop))))
      assert.include(readFileSync(a, "utf8"), "careful")
      assert.include(readFileSync(b, "utf8"), "careful")
    }))
})

describe("Fixer", () => {
  it.effect("NoFixer is not available and refuses with a typed error", () =>
    Effect.gen(function*() {
      const fixer = yield* Fixer
      assert.isFalse(fixer.available)
      const e = yield* Effect.flip(fixer.runFixer({ issueId: "I-1", trigger: "session_end", failureOutput: "x", attempt: 1 }))
      assert.strictEqual(e.reason, "NotConfigured")
      assert.include(e.message, "I-1")
    }).pipe(Effect.provide(NoFixer)))
})
