import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { LoopRecorderSql } from "../../src/landscape/loop-recorder.js"
import { LandscapeSql } from "../../src/landscape/sqlite.js"
import { loadLoopConfig } from "../../src/loop/config.js"
import { runLoop } from "../../src/loop/coordinator.js"
import { CommandFixer } from "../../src/loop/fixer.js"
import { TelemetryNoop } from "../../src/services/telemetry.js"
import { tempDir } from "./helpers.js"

const EXAMPLE = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../../examples/loop")

describe("examples/loop", () => {
  it.live("runs offline with its script actors: remediation adds CHANGES, both issues succeed", () =>
    Effect.gen(function*() {
      const dir = tempDir("runledger-example-")
      NodeFs.cpSync(EXAMPLE, dir, { recursive: true, filter: (src) => !/\/(sandbox|runs)(\/|$)/.test(src) })
      execFileSync("bash", [NodePath.join(dir, "setup.sh")], { stdio: "ignore" })
      process.env["LOOP_EXAMPLE_DIR"] = dir
      const config = yield* loadLoopConfig(NodePath.join(dir, "loop.yaml"))
      const result = yield* runLoop(config).pipe(
        Effect.provide(Layer.mergeAll(
          CommandFixer(config).pipe(Layer.provide(NodeContext.layer)),
          TelemetryNoop,
          LoopRecorderSql.pipe(Layer.provide(LandscapeSql(":memory:")), Layer.orDie)
        ))
      )
      assert.strictEqual(result.status, "completed")
      assert.deepStrictEqual(result.issues.map((i) => [i.issue_id, i.status]), [["EX-1", "success"], ["EX-2", "success"]])
      for (const issue of result.issues) {
        assert.strictEqual(issue.session_end?.status, "pass")
        assert.strictEqual(issue.session_end?.validations, 2)
        assert.strictEqual(issue.review?.status, "approved")
      }
      assert.strictEqual(result.run_end.status, "pass")
    }).pipe(Effect.provide(NodeContext.layer)))
})
