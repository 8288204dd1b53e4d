/**
 * Settings → an executable plan: plugin instances, compiled gate conditions, the
 * graph, and every start-up check (routes, schemas, shape) done before a row is read.
 */
import { type CheckpointPolicy, checkpointPolicyOf } from "./checkpoint-policy.js"
import { Effect, Either } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { type CompiledExpression, parseExpression } from "../core/expression/index.js"
import type { NodeId } from "../core/ids.js"
import { RECORD_TYPES } from "../services/export-store.js"
import { type Graph, GraphBuilder, findCycle, unreachableSinks } from "./graph.js"
import { csvExportDir } from "./orchestrator/export-file.js"
import {
  validateRouteDestinations,
  validateSourceQuarantineDestination,
  validateTransformErrorSinks,
  validateWriteFailure
} from "./orchestrator/validation.js"
import { didYouMean } from "./plugins/options.js"
import type {
  BatchTransformInstance,
  PluginConfigError,
  PluginContext,
  RowTransformInstance,
  SinkInstance,
  SinkPlugin,
  SourceInstance
} from "./plugins/protocol.js"
import { builtinRegistry, type PluginRegistry } from "./plugins/registry.js"
import { sqliteFilename } from "./plugins/sinks/database.js"
import { findPathConflict, type PathClaim } from "./path-safety.js"
import { checkCompatibility } from "./plugins/schema.js"
import {
  type AggregationSettings,
  type CoalesceSettings,
  type GateSettings,
  type LoadedSettings,
  type PipelineSettings,
  SettingsError
} from "./settings.js"

export interface SourceStep {
  readonly nodeId: NodeId
  readonly name: string
  readonly plugin: string
  readonly instance: SourceInstance
}

export interface TransformStep {
  readonly kind: "transform"
  readonly nodeId: NodeId
  readonly name: string
  readonly plugin: string
  readonly step: number
  readonly instance: RowTransformInstance
}

export interface AggregationStep {
  readonly kind: "aggregation"
  readonly nodeId: NodeId
  readonly name: string
  readonly plugin: string
  readonly step: number
  readonly index: number
  readonly instance: BatchTransformInstance
  readonly settings: AggregationSettings
  readonly condition: CompiledExpression | undefined
}

export interface GateStep {
  readonly kind: "gate"
  readonly nodeId: NodeId
  readonly name: string
  readonly step: number
  readonly index: number
  readonly settings: GateSettings
  readonly condition: CompiledExpression
}

export interface CoalesceStep {
  readonly kind: "coalesce"
  readonly nodeId: NodeId
  readonly name: string
  readonly index: number
  readonly settings: CoalesceSettings
  /** The coalesce point sits right after this step index (the last gate forking into it). */
  readonly afterStep: number
  /**
   * The step of the first gate forking into it: siblings are the descendants of the
   * token forked there (its id is the group key).
   */
  readonly keyStep: number
}

export interface SinkStep {
  readonly nodeId: NodeId
  readonly name: string
  readonly plugin: SinkPlugin
  readonly options: unknown
  /**
   * `on_write_failure`: `discard` or the name of the failsink that receives the rows
   * this sink cannot write; undefined (the older settings form) fails the run on such a row.
   */
  readonly onWriteFailure: string | undefined
  /** A fresh, unopened instance each call: pipeline and export never share one. */
  readonly create: () => Effect.Effect<SinkInstance, PluginConfigError>
}

export type ChainStep = TransformStep | AggregationStep | GateStep

export interface PipelinePlan {
  readonly file: string
  readonly settings: PipelineSettings
  readonly warnings: ReadonlyArray<string>
  readonly source: SourceStep
  /** transforms, then aggregations, then gates: the linear chain, step = index + 1. */
  readonly chain: ReadonlyArray<ChainStep>
  readonly coalesces: ReadonlyArray<CoalesceStep>
  readonly sinks: ReadonlyMap<string, SinkStep>
  readonly defaultSink: string
  readonly graph: Graph
  /** The `checkpoint:` settings, resolved. */
  readonly checkpoint: CheckpointPolicy
}

const fromPluginError = (file: string, base: string) => (e: PluginConfigError): SettingsError =>
  new SettingsError({ file, key: e.key === "" ? base : `${base}.${e.key}`, message: e.message })

const compile = (file: string, key: string, source: string): Either.Either<CompiledExpression, SettingsError> =>
  Either.mapLeft(parseExpression(source), (e) =>
    new SettingsError({ file, key, message: `${e.message} (column ${e.column} of ${JSON.stringify(source)})` }))

export interface BuildOptions {
  /**
   * The Landscape the run will write, for the check that no sink writes it: its URL
   * and where that came from (`landscape.url`, `--db`). Defaults to `landscape.url`
   * of the settings when set (with no Landscape known, that check is skipped).
   */
  readonly landscape?: { readonly url: string; readonly key: string }
}

/** The file a Landscape URL names, or undefined for an in-memory or unreadable one (the run reports those). */
const landscapeFile = (url: string): string | undefined => {
  const target = sqliteFilename(url.trim())
  return "error" in target || target.filename === ":memory:" || target.filename === "" ? undefined : target.filename
}

/**
 * Builds the plan. `registry` defaults to the built-in plugins; a library user passes
 * one made with `makeRegistry(extraPlugins)`.
 */
export const buildPipeline = (
  loaded: LoadedSettings,
  registry: PluginRegistry = builtinRegistry,
  options: BuildOptions = {}
): Effect.Effect<PipelinePlan, SettingsError> =>
  Effect.gen(function*() {
    const { file, settings } = loaded
    const fail = (key: string, message: string) => Effect.fail(new SettingsError({ file, key, message }))
    const checkpoint = yield* checkpointPolicyOf(file, settings)
    const sinkNames = new Set(Object.keys(settings.sinks))
    if (sinkNames.size === 0) return yield* fail("sinks", "at least one sink is required")
    if (!sinkNames.has(settings.default_sink)) {
      const hint = didYouMean(settings.default_sink, sinkNames)
      return yield* fail(
        "default_sink",
        `no sink named '${settings.default_sink}'${hint === undefined ? "" : ` (did you mean '${hint}'?)`}; available sinks: [${Array.from(sinkNames).sort().join(", ")}]`
      )
    }

    // Source
    const sourcePlugin = registry.sources.get(settings.source.plugin)
    if (sourcePlugin === undefined) {
      return yield* fail(
        "source.plugin",
        `unknown source plugin '${settings.source.plugin}'; available: ${Array.from(registry.sources.keys()).join(", ")}`
      )
    }
    const sourceInstance = yield* sourcePlugin.create(settings.source.options, { nodeName: "source" }).pipe(
      Effect.mapError(fromPluginError(file, "source.options"))
    )
    const sourcePath = settings.source.options?.path
    if (typeof sourcePath === "string" && !existsSync(sourcePath)) {
      return yield* fail(
        "source.options.path",
        `input file '${sourcePath}' not found (paths resolve against the working directory, ${process.cwd()})`
      )
    }
    const sourceHeaders = sourceInstance.sourceHeaders
    const ctx = (nodeName: string): PluginContext =>
      sourceHeaders === undefined ? { nodeName } : { nodeName, sourceHeaders }

    const graph = new GraphBuilder()
    const sourceNodeId = graph.node("source", sourcePlugin.name, "source", settings.source)

    // Transforms
    const chain: Array<ChainStep> = []
    const transformRoutes: Array<{ name: string; onError: string | undefined; key: string }> = []
    for (const [i, entry] of (settings.transforms ?? []).entries()) {
      const key = `transforms[${i}]`
      const plugin = registry.transforms.get(entry.plugin)
      if (plugin === undefined) {
        return yield* fail(`${key}.plugin`, `unknown transform plugin '${entry.plugin}'; available: ${Array.from(registry.transforms.keys()).join(", ")}`)
      }
      if (plugin.batchAware) {
        return yield* fail(`${key}.plugin`, `'${entry.plugin}' is batch-aware: use it under aggregations:, not transforms:`)
      }
      const name = entry.name ?? `${entry.plugin}_${i}`
      const instance = yield* plugin.create(entry.options, ctx(name)).pipe(Effect.mapError(fromPluginError(file, `${key}.options`)))
      if (instance._tag !== "RowTransform") return yield* fail(`${key}.plugin`, `'${entry.plugin}' is not a row transform`)
      const nodeId = graph.node("transform", plugin.name, name, entry)
      chain.push({ kind: "transform", nodeId, name, plugin: plugin.name, step: chain.length + 1, instance })
      transformRoutes.push({ name, onError: instance.onError, key: `${key}.options.on_error` })
    }

    // Aggregations
    const aggregationNames = new Set<string>()
    for (const [i, entry] of (settings.aggregations ?? []).entries()) {
      const key = `aggregations[${i}]`
      if (aggregationNames.has(entry.name)) return yield* fail(`${key}.name`, `duplicate aggregation name '${entry.name}'`)
      aggregationNames.add(entry.name)
      const plugin = registry.transforms.get(entry.plugin)
      if (plugin === undefined || !plugin.batchAware) {
        return yield* fail(
          `${key}.plugin`,
          plugin === undefined
            ? `unknown batch plugin '${entry.plugin}'`
            : `'${entry.plugin}' is not batch-aware; aggregations need a batch plugin (${
              Array.from(registry.transforms.values()).filter((p) => p.batchAware).map((p) => p.name).join(", ")
            })`
        )
      }
      const t = entry.trigger
      if (t.count === undefined && t.timeout_seconds === undefined && t.condition === undefined) {
        return yield* fail(`${key}.trigger`, "a trigger needs at least one of count, timeout_seconds, condition")
      }
      let condition: CompiledExpression | undefined
      if (t.condition !== undefined) {
        condition = yield* compile(file, `${key}.trigger.condition`, t.condition)
        if (!condition.isStaticallyBoolean) {
          return yield* fail(`${key}.trigger.condition`, `the condition must be a comparison or another boolean expression, got ${JSON.stringify(t.condition)}`)
        }
      }
      const instance = yield* plugin.create(entry.options, ctx(entry.name)).pipe(Effect.mapError(fromPluginError(file, `${key}.options`)))
      if (instance._tag !== "BatchTransform") return yield* fail(`${key}.plugin`, `'${entry.plugin}' is not a batch transform`)
      const nodeId = graph.node("aggregation", plugin.name, entry.name, entry)
      chain.push({
        kind: "aggregation",
        nodeId,
        name: entry.name,
        plugin: plugin.name,
        step: chain.length + 1,
        index: i,
        instance,
        settings: entry,
        condition
      })
    }

    // Gates
    const gateNames = new Set<string>()
    const gates: Array<GateStep> = []
    for (const [i, entry] of (settings.gates ?? []).entries()) {
      const key = `gates[${i}]`
      if (gateNames.has(entry.name)) return yield* fail(`${key}.name`, `duplicate gate name '${entry.name}'`)
      gateNames.add(entry.name)
      const condition = yield* compile(file, `${key}.condition`, entry.condition)
      const labels = Object.keys(entry.routes)
      if (labels.length === 0) return yield* fail(`${key}.routes`, "a gate needs at least one route")
      if (labels.includes("continue")) return yield* fail(`${key}.routes.continue`, "'continue' is reserved and cannot be a route label")
      if (condition.isStaticallyBoolean && (labels.length !== 2 || !labels.includes("true") || !labels.includes("false"))) {
        return yield* fail(
          `${key}.routes`,
          `the condition is boolean, so the routes must be exactly "true" and "false" (quote them in YAML); got [${labels.join(", ")}]`
        )
      }
      const forks = labels.filter((l) => entry.routes[l] === "fork")
      if (forks.length > 0 && (entry.fork_to === undefined || entry.fork_to.length === 0)) {
        return yield* fail(`${key}.fork_to`, `route '${forks[0]}' forks, so fork_to must list the branches`)
      }
      if (forks.length === 0 && entry.fork_to !== undefined) {
        return yield* fail(`${key}.fork_to`, "fork_to is only allowed when a route's destination is fork")
      }
      const nodeId = graph.node("gate", "gate", entry.name, entry)
      const gate: GateStep = { kind: "gate", nodeId, name: entry.name, step: chain.length + 1, index: i, settings: entry, condition }
      gates.push(gate)
      chain.push(gate)
    }

    // Coalesce
    const coalesces: Array<CoalesceStep> = []
    const coalesceByBranch = new Map<string, string>()
    const forkBranches = new Map<string, number>()
    for (const g of gates) {
      const seen = new Set<string>()
      for (const [j, b] of (g.settings.fork_to ?? []).entries()) {
        if (b === "continue") return yield* fail(`gates[${g.index}].fork_to[${j}]`, "'continue' is reserved and cannot be a branch")
        if (seen.has(b)) return yield* fail(`gates[${g.index}].fork_to[${j}]`, `duplicate branch '${b}'`)
        seen.add(b)
        forkBranches.set(b, g.step)
      }
    }
    for (const [i, entry] of (settings.coalesce ?? []).entries()) {
      const key = `coalesce[${i}]`
      if (entry.branches.length < 2) return yield* fail(`${key}.branches`, "a coalesce needs at least 2 branches")
      const policy = entry.policy ?? "require_all"
      if (policy === "best_effort" && entry.timeout_seconds === undefined) {
        return yield* fail(`${key}.timeout_seconds`, "policy best_effort needs timeout_seconds")
      }
      if (policy === "quorum") {
        if (entry.quorum_count === undefined) return yield* fail(`${key}.quorum_count`, "policy quorum needs quorum_count")
        if (entry.quorum_count > entry.branches.length) {
          return yield* fail(`${key}.quorum_count`, `quorum_count ${entry.quorum_count} exceeds the ${entry.branches.length} branches`)
        }
      }
      if ((entry.merge ?? "union") === "select") {
        if (entry.select_branch === undefined) return yield* fail(`${key}.select_branch`, "merge select needs select_branch")
        if (!entry.branches.includes(entry.select_branch)) {
          return yield* fail(`${key}.select_branch`, `'${entry.select_branch}' is not one of the branches [${entry.branches.join(", ")}]`)
        }
      }
      let afterStep = 0
      let keyStep = Number.POSITIVE_INFINITY
      for (const [j, b] of entry.branches.entries()) {
        if (coalesceByBranch.has(b)) return yield* fail(`${key}.branches[${j}]`, `branch '${b}' is already coalesced by '${coalesceByBranch.get(b)}'`)
        const step = forkBranches.get(b)
        if (step === undefined) return yield* fail(`${key}.branches[${j}]`, `no gate forks to branch '${b}'`)
        coalesceByBranch.set(b, entry.name)
        afterStep = Math.max(afterStep, step)
        keyStep = Math.min(keyStep, step)
      }
      const nodeId = graph.node("coalesce", "coalesce", entry.name, entry)
      coalesces.push({ kind: "coalesce", nodeId, name: entry.name, index: i, settings: entry, afterStep, keyStep })
    }
    for (const g of gates) {
      for (const [j, b] of (g.settings.fork_to ?? []).entries()) {
        if (!coalesceByBranch.has(b) && !sinkNames.has(b)) {
          return yield* fail(`gates[${g.index}].fork_to[${j}]`, `branch '${b}' is neither coalesced nor the name of a sink`)
        }
      }
    }

    // Sinks: each created once now to check its options; runs create fresh instances.
    const sinks = new Map<string, SinkStep>()
    const sinkFiles: Array<PathClaim> = []
    for (const [name, entry] of Object.entries(settings.sinks)) {
      const plugin = registry.sinks.get(entry.plugin)
      if (plugin === undefined) {
        return yield* fail(`sinks.${name}.plugin`, `unknown sink plugin '${entry.plugin}'; available: ${Array.from(registry.sinks.keys()).join(", ")}`)
      }
      const create = () => plugin.create(entry.options, ctx(name))
      const checked = yield* create().pipe(Effect.mapError(fromPluginError(file, `sinks.${name}.options`)))
      sinks.set(name, {
        nodeId: graph.node("sink", plugin.name, name, entry),
        name,
        plugin,
        options: entry.options,
        onWriteFailure: entry.on_write_failure,
        create
      })
      const configuredPath = entry.options?.path
      const output = checked.outputFile ??
        (typeof configuredPath === "string" && configuredPath !== "" ? { key: "path", path: configuredPath } : undefined)
      if (output !== undefined) {
        sinkFiles.push({
          key: `sinks.${name}.options.${output.key}`,
          path: output.path,
          role: "sink",
          sink: name,
          ...("part" in output && output.part !== undefined ? { part: output.part } : {})
        })
      }
    }
    const writeFailureError = validateWriteFailure(
      Array.from(sinks.values(), (s) => ({ name: s.name, plugin: s.plugin.name, onWriteFailure: s.onWriteFailure }))
    )
    if (writeFailureError !== undefined) return yield* fail(writeFailureError.key, writeFailureError.message)
    // A sink diverts the rows it cannot write to its failsink along this edge.
    for (const s of sinks.values()) {
      if (s.onWriteFailure !== undefined && s.onWriteFailure !== "discard") {
        graph.edge(s.nodeId, sinks.get(s.onWriteFailure)!.nodeId, "on_write_failure", "divert")
      }
    }

    // Route validation before any row is read.
    const routeError = validateRouteDestinations(gates.map((g) => ({ name: g.name, routes: g.settings.routes })), sinkNames) ??
      validateTransformErrorSinks(transformRoutes, sinkNames) ??
      validateSourceQuarantineDestination({ name: sourcePlugin.name, onValidationFailure: sourceInstance.onValidationFailure }, sinkNames)
    if (routeError !== undefined) return yield* fail(routeError.key, routeError.message)

    const exportSettings = settings.landscape?.export
    if (exportSettings?.enabled === true) {
      if (exportSettings.sink === undefined) return yield* fail("landscape.export.sink", "export is enabled but names no sink")
      if (!sinkNames.has(exportSettings.sink)) {
        return yield* fail("landscape.export.sink", `no sink named '${exportSettings.sink}'; available sinks: [${Array.from(sinkNames).sort().join(", ")}]`)
      }
    }

    // No sink or export may write the input, the Landscape, or another writer's file.
    const claims: Array<PathClaim> = []
    if (typeof sourcePath === "string") claims.push({ key: "source.options.path", path: sourcePath, role: "source" })
    const landscape = options.landscape ??
      (settings.landscape?.url === undefined ? undefined : { url: settings.landscape.url, key: "landscape.url" })
    const landscapePath = landscape === undefined ? undefined : landscapeFile(landscape.url)
    if (landscape !== undefined && landscapePath !== undefined) claims.push({ key: landscape.key, path: landscapePath, role: "landscape" })
    claims.push(...sinkFiles)
    if (exportSettings?.enabled === true && exportSettings.format === "csv") {
      // A CSV export writes one file per record type into a folder named like the sink path.
      const exportPath = settings.sinks[exportSettings.sink!]?.options?.path
      if (typeof exportPath === "string" && exportPath !== "") {
        const dir = csvExportDir(exportPath)
        for (const type of [...RECORD_TYPES, "manifest"]) {
          claims.push({ key: "landscape.export", path: join(dir, `${type}.csv`), role: "export", sink: exportSettings.sink! })
        }
      }
    }
    const conflict = findPathConflict(claims)
    if (conflict !== undefined) return yield* fail(conflict.claim.key, conflict.message)

    // Schema contracts between consecutive data nodes (gates are transparent).
    let producer = { key: "source", schema: sourceInstance.schema }
    for (const step of chain) {
      if (step.kind === "gate") continue
      const consumerKey = step.kind === "transform" ? `transforms[${step.step - 1}]` : `aggregations[${step.index}]`
      const problem = checkCompatibility(producer.schema, step.instance.inputSchema)
      if (problem !== undefined) return yield* fail(`${consumerKey}.options.schema`, `does not fit the output of ${producer.key}: ${problem}`)
      producer = { key: consumerKey, schema: step.instance.outputSchema }
    }
    const defaultSinkInstance = yield* sinks.get(settings.default_sink)!.create().pipe(
      Effect.mapError(fromPluginError(file, `sinks.${settings.default_sink}.options`))
    )
    const sinkProblem = checkCompatibility(producer.schema, defaultSinkInstance.inputSchema)
    if (sinkProblem !== undefined) {
      return yield* fail(`sinks.${settings.default_sink}.options.schema`, `does not fit the output of ${producer.key}: ${sinkProblem}`)
    }

    // Edges: the linear chain, gate routes, error and quarantine diversions, forks.
    const sinkId = (name: string) => sinks.get(name)!.nodeId
    const nextAfter = (index: number): NodeId => chain[index + 1]?.nodeId ?? sinkId(settings.default_sink)
    graph.edge(sourceNodeId, chain[0]?.nodeId ?? sinkId(settings.default_sink), "continue", "move")
    if (sourceInstance.onValidationFailure !== "discard") {
      graph.edge(sourceNodeId, sinkId(sourceInstance.onValidationFailure), "on_validation_failure", "divert")
    }
    for (const [i, step] of chain.entries()) {
      if (step.kind === "gate") {
        for (const [label, destination] of Object.entries(step.settings.routes)) {
          if (destination === "continue") graph.edge(step.nodeId, nextAfter(i), label, "move")
          else if (destination === "fork") {
            for (const branch of step.settings.fork_to ?? []) {
              const coalesce = coalesces.find((c) => c.settings.branches.includes(branch))
              graph.edge(step.nodeId, coalesce?.nodeId ?? nextAfter(i), `fork:${branch}`, "copy")
            }
          } else graph.edge(step.nodeId, sinkId(destination), label, "move")
        }
      } else {
        graph.edge(step.nodeId, nextAfter(i), "continue", "move")
        const onError = step.instance.onError
        if (onError !== undefined && onError !== "discard") graph.edge(step.nodeId, sinkId(onError), "on_error", "divert")
      }
    }
    for (const c of coalesces) {
      const after = chain.findIndex((s) => s.step === c.afterStep)
      graph.edge(c.nodeId, nextAfter(after), "continue", "move")
    }
    for (const g of gates) {
      for (const branch of g.settings.fork_to ?? []) {
        if (!coalesceByBranch.has(branch)) {
          // A fork child completes to the sink named like its branch.
          const last = chain[chain.length - 1]!
          graph.edge(last.nodeId, sinkId(branch), `branch:${branch}`, "move")
        }
      }
    }
    const built = graph.build()
    const cycle = findCycle(built)
    if (cycle !== undefined) return yield* fail("", `the pipeline has a cycle: ${cycle.join(" → ")}`)
    const exportSink = exportSettings?.enabled === true ? exportSettings.sink : undefined
    const unreachable = unreachableSinks(built, sourceNodeId)
    for (const n of unreachable) {
      if (n.name === exportSink) continue
      return yield* fail(
        `sinks.${n.name}`,
        `no route, on_error, on_validation_failure, fork branch or default_sink reaches this sink; remove it or route rows to it`
      )
    }
    // A JSON export writes through the export sink: into that sink's own file, if it has one.
    const exportFile = exportSink === undefined ? undefined : sinkFiles.find((c) => c.sink === exportSink)
    if (exportFile !== undefined && (exportSettings?.format ?? "json") === "json" && !unreachable.some((n) => n.name === exportSink)) {
      return yield* fail(
        "landscape.export.sink",
        `sink '${exportSink}' also receives the pipeline's rows, and the export would write its audit records into the same file (${exportFile.key} '${exportFile.path}'); give the export a sink of its own`
      )
    }

    return {
      file,
      settings,
      warnings: loaded.warnings,
      source: { nodeId: sourceNodeId, name: "source", plugin: sourcePlugin.name, instance: sourceInstance },
      chain,
      coalesces,
      sinks,
      defaultSink: settings.default_sink,
      graph: built,
      checkpoint
    } satisfies PipelinePlan
  })
