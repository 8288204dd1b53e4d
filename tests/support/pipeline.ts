/** Helpers to run pipelines in-process against an in-memory Landscape. */
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SqliteLandscape } from "../../src/landscape/sqlite.js"
import { buildPipeline } from "../../src/pipeline/build.js"
import { runPipeline } from "../../src/pipeline/orchestrator/run.js"
import type { AnyPlugin } from "../../src/pipeline/plugins/protocol.js"
import { makeRegistry } from "../../src/pipeline/plugins/registry.js"
import { parseSettings } from "../../src/pipeline/settings.js"
import { TelemetryNoop } from "../../src/services/telemetry.js"

export const tempDir = (prefix = "rl-test-"): string => mkdtempSync(join(tmpdir(), prefix))

export const writeFile = (dir: string, name: string, content: string | Buffer): string => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

/** Settings text → plan (settings errors fail the effect). */
export const planOf = (yaml: string, plugins: ReadonlyArray<AnyPlugin> = []) =>
  parseSettings("settings.yaml", yaml, {}).pipe(Effect.flatMap((loaded) => buildPipeline(loaded, makeRegistry(plugins))))

export const TestLandscape = Layer.merge(SqliteLandscape(":memory:").pipe(Layer.orDie), TelemetryNoop)

/** Runs settings text; returns the run's outcome (Either) and keeps the Landscape in scope. */
export const runSettings = (yaml: string, plugins: ReadonlyArray<AnyPlugin> = []) =>
  Effect.gen(function*() {
    const plan = yield* planOf(yaml, plugins)
    return yield* Effect.either(runPipeline(plan, { durabilityRows: 3 }))
  })

/** SQL helper over the provided Landscape. */
export const query = <A extends object>(text: string, params: ReadonlyArray<unknown> = []) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(text, params))
