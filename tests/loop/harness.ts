import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Effect, Either, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as YAML from "yaml"
import { LoopRecorderSql } from "../../src/landscape/loop-recorder.js"
import { LandscapeSql } from "../../src/landscape/sqlite.js"
import { RunAbort, type RunAbortService } from "../../src/loop/abort.js"
import { type LoopConfig, parseLoopConfig } from "../../src/loop/config.js"
import { runLoop, type RunLoopOptions } from "../../src/loop/coordinator.js"
import { CommandFixer } from "../../src/loop/fixer.js"
import { Telemetry } from "../../src/services/telemetry.js"
import { makeRepo, tempDir } from "./helpers.js"

export interface Scenario {
  readonly dir: string
  readonly repo: string
  readonly config: LoopConfig
  readonly lines: Array<string>
}

/** Writes a config (YAML) and an issues file into a temp dir next to a fresh repo. */
export const scenario = (
  raw: Record<string, unknown>,
  issues: ReadonlyArray<Record<string, unknown>>
): Scenario => {
  const dir = tempDir("runledger-scn-")
  const repo = makeRepo()
  NodeFs.writeFileSync(NodePath.join(dir, "issues.yaml"), YAML.stringify(issues))
  const doc = { repo, issues: "issues.yaml", workdir: NodePath.join(dir, "work"), kill_grace: "300ms", ...raw }
  const file = NodePath.join(dir, "loop.yaml")
  NodeFs.writeFileSync(file, YAML.stringify(doc))
  const config = Either.getOrThrow(parseLoopConfig(doc, file, dir))
  return { dir, repo, config, lines: [] }
}

const telemetry = (lines: Array<string>) =>
  Layer.succeed(Telemetry, {
    emit: (event) =>
      Effect.sync(() => {
        if (event._tag === "TriggerEvent") lines.push(event.line)
      })
  })

/** The production wiring: CommandFixer from the config, a real in-memory Landscape (its SqlClient kept for `inspect`). */
export const layers = (s: Scenario) =>
  Layer.mergeAll(
    CommandFixer(s.config).pipe(Layer.provide(NodeContext.layer)),
    telemetry(s.lines),
    LoopRecorderSql.pipe(Layer.provideMerge(LandscapeSql(":memory:")), Layer.orDie),
    NodeContext.layer
  )

/** Runs the loop and hands the same database to `inspect` afterwards. */
export const runScenario = <A>(
  s: Scenario,
  options: {
    readonly abort?: RunAbortService
    readonly inspect?: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>
    readonly run?: RunLoopOptions
  } = {}
) =>
  Effect.gen(function*() {
    const program = runLoop(s.config, options.run)
    const result = yield* (options.abort === undefined ? program : Effect.provideService(program, RunAbort, options.abort))
    const sql = yield* SqlClient.SqlClient
    const inspected = options.inspect === undefined ? undefined : yield* Effect.orDie(options.inspect(sql))
    return { result, inspected }
  }).pipe(Effect.provide(layers(s)))

export const issueFile = (s: Scenario, runDir: string, issueId: string, name: string) =>
  NodePath.join(runDir, "issues", issueId, name)

export const readIf = (file: string) => (NodeFs.existsSync(file) ? NodeFs.readFileSync(file, "utf8") : "")
