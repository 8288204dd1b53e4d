/**
 * Settings → an executable plan: plugin instances, compiled gate conditions, the
 * graph, and every start-up check (routes, schemas, shape) done before a row is read.
 */
import { type CheckpointPolicy, checkpointPolicyOf } from "./checkpoint-policy.js"
import { Effect, Either } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { type CompiledExpression, parseExpression } from "../core/expression/index.js"
import { defaultJournalPath } from "../core/journal-path.js"
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
  SchemaConfig,
  RowTransformInstance,
  SinkInstance,
  SinkPlugin,
  SourceInstance
} from "./plugins/protocol.js"
import { builtinRegistry, type PluginRegistry } from "./plugins/registry.js"
import { sqliteFilename } from "./plugins/sinks/database.js"
import { findPathConflict, type PathClaim } from "./path-safety.js"
import { checkCompatibility } from "./plugins/schema.js"
import { coalesceBranches, type Connection, type Dest, kindKey, type NodeRef, type RouteDest, type Wiring, wire } from "./wiring.js"
import {
  type AggregationSettings,
  type CoalesceSettings,
  type GateSettings,
  type LoadedSettings,
  type PipelineSettings,
  SettingsError
} from "./settings.js"

/**
 * Where a token goes after a node: a step of the chain, a coalesce (arriving on one of
 * its branches), a sink, or — in the positional form — the end of the chain (the sink
 * named like the token's branch, else `default_sink`).
 */
export type Target =
  | { readonly _tag: "Step"; readonly index: number }
  | { readonly _tag: "Coalesce"; readonly index: number; readonly branch: string }
  | { readonly _tag: "Sink"; readonly name: string }
  | { readonly _tag: "End" }

export type RouteTarget = Target | { readonly _tag: "Fork" }

export interface SourceStep {
  readonly nodeId: NodeId
  readonly name: string
  readonly plugin: string
  readonly instance: SourceInstance
  readonly onSuccess: Target
}

export interface TransformStep {
  readonly kind: "transform"
  readonly nodeId: NodeId
  readonly name: string
  readonly plugin: string
  readonly step: number
  /** Index in `transforms:` of the settings. */
  readonly index: number
  readonly instance: RowTransformInstance
  readonly onSuccess: Target
  /** `discard`, a sink name, or undefined (an error result then fails the run). */
  readonly onError: string | undefined
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
  readonly onSuccess: Target
  /** `discard` or a sink name for the rows of a batch the plugin rejects; undefined: they end FAILED. */
  readonly onError: string | undefined
}

export interface GateStep {
  readonly kind: "gate"
  readonly nodeId: NodeId
  readonly name: string
  readonly step: number
  readonly index: number
  readonly settings: GateSettings
  readonly condition: CompiledExpression
  /** Route label → where it sends the token. */
  readonly routes: ReadonlyMap<string, RouteTarget>
  /** Fork branches in order, each with where its copy goes. */
  readonly branches: ReadonlyArray<{ readonly branch: string; readonly target: Target }>
}

export interface CoalesceStep {
  readonly kind: "coalesce"
  readonly nodeId: NodeId
  readonly name: string
  readonly index: number
  readonly settings: CoalesceSettings
  /** Branch names, in the order the settings list them. */
  readonly branches: ReadonlyArray<string>
  /** The coalesce point sits right after this step (the last step feeding it); its node states carry it. */
  readonly afterStep: number
  /**
   * The step of the first gate forking into it: siblings are the descendants of the
   * token forked there (its id is the group key).
   */
  readonly keyStep: number
  readonly onSuccess: Target
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
  /**
   * Transforms, aggregations and gates in execution order, step = index + 1: list order
   * (transforms, then aggregations, then gates) in the positional form, an order that
   * follows the connections in the explicit form.
   */
  readonly chain: ReadonlyArray<ChainStep>
  readonly coalesces: ReadonlyArray<CoalesceStep>
  readonly sinks: ReadonlyMap<string, SinkStep>
  /** The positional form's `default_sink`; undefined in the explicit form. */
  readonly defaultSink: string | undefined
  /** Whether the settings use explicit wiring (`source.on_success`). */
  readonly explicit: boolean
  /** The named connections of the explicit form (empty in the positional form). */
  readonly connections: ReadonlyArray<Connection>
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
    const wiring = yield* wiringOf(file, settings)
    if (settings.default_sink !== undefined && !sinkNames.has(settings.default_sink)) {
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

    // Transforms (node ids in list order, whatever the wiring: ids stay stable).
    type Pending<T> = Omit<T, "step" | "onSuccess" | "routes" | "branches">
    const transformSteps: Array<Pending<TransformStep>> = []
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
      transformSteps.push({ kind: "transform", nodeId, name, plugin: plugin.name, index: i, instance, onError: entry.on_error ?? instance.onError })
    }

    // Aggregations
    const aggregationSteps: Array<Pending<AggregationStep>> = []
    for (const [i, entry] of (settings.aggregations ?? []).entries()) {
      const key = `aggregations[${i}]`
      if (aggregationSteps.some((a) => a.name === entry.name)) return yield* fail(`${key}.name`, `duplicate aggregation name '${entry.name}'`)
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
      aggregationSteps.push({
        kind: "aggregation",
        nodeId,
        name: entry.name,
        plugin: plugin.name,
        index: i,
        instance,
        settings: entry,
        condition,
        onError: entry.on_error
      })
    }

    // Gates
    const gateSteps: Array<Pending<GateStep>> = []
    for (const [i, entry] of (settings.gates ?? []).entries()) {
      const key = `gates[${i}]`
      if (gateSteps.some((g) => g.name === entry.name)) return yield* fail(`${key}.name`, `duplicate gate name '${entry.name}'`)
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
      for (const [j, b] of (entry.fork_to ?? []).entries()) {
        if (b === "continue") return yield* fail(`${key}.fork_to[${j}]`, "'continue' is reserved and cannot be a branch")
      }
      const nodeId = graph.node("gate", "gate", entry.name, entry)
      gateSteps.push({ kind: "gate", nodeId, name: entry.name, index: i, settings: entry, condition })
    }

    // Coalesce: the checks both forms share (the positional form's branch checks follow).
    const coalescePending: Array<{ nodeId: NodeId; index: number; settings: CoalesceSettings; branches: ReadonlyArray<string> }> = []
    for (const [i, entry] of (settings.coalesce ?? []).entries()) {
      const key = `coalesce[${i}]`
      const branches = coalesceBranches(entry).map(([b]) => b)
      if (Array.isArray(entry.branches)) {
        const dup = branches.find((b, j) => branches.indexOf(b) !== j)
        if (dup !== undefined) return yield* fail(`${key}.branches`, `branch '${dup}' is listed twice`)
      }
      if (branches.length < 2) return yield* fail(`${key}.branches`, "a coalesce needs at least 2 branches")
      const policy = entry.policy ?? "require_all"
      if (policy === "best_effort" && entry.timeout_seconds === undefined) {
        return yield* fail(`${key}.timeout_seconds`, "policy best_effort needs timeout_seconds")
      }
      if (policy === "quorum") {
        if (entry.quorum_count === undefined) return yield* fail(`${key}.quorum_count`, "policy quorum needs quorum_count")
        if (entry.quorum_count > branches.length) {
          return yield* fail(`${key}.quorum_count`, `quorum_count ${entry.quorum_count} exceeds the ${branches.length} branches`)
        }
      }
      if ((entry.merge ?? "union") === "select") {
        if (entry.select_branch === undefined) return yield* fail(`${key}.select_branch`, "merge select needs select_branch")
        if (!branches.includes(entry.select_branch)) {
          return yield* fail(`${key}.select_branch`, `'${entry.select_branch}' is not one of the branches [${branches.join(", ")}]`)
        }
      }
      coalescePending.push({ nodeId: graph.node("coalesce", "coalesce", entry.name, entry), index: i, settings: entry, branches })
    }
    if (!wiring.explicit) {
      const forkBranches = new Set<string>()
      for (const g of gateSteps) {
        const seen = new Set<string>()
        for (const [j, b] of (g.settings.fork_to ?? []).entries()) {
          if (seen.has(b)) return yield* fail(`gates[${g.index}].fork_to[${j}]`, `duplicate branch '${b}'`)
          seen.add(b)
          forkBranches.add(b)
        }
      }
      const coalesced = new Map<string, string>()
      for (const c of coalescePending) {
        for (const [j, b] of c.branches.entries()) {
          if (coalesced.has(b)) return yield* fail(`coalesce[${c.index}].branches[${j}]`, `branch '${b}' is already coalesced by '${coalesced.get(b)}'`)
          if (!forkBranches.has(b)) return yield* fail(`coalesce[${c.index}].branches[${j}]`, `no gate forks to branch '${b}'`)
          coalesced.set(b, c.settings.name)
        }
      }
      for (const g of gateSteps) {
        for (const [j, b] of (g.settings.fork_to ?? []).entries()) {
          if (!coalesced.has(b) && !sinkNames.has(b)) {
            return yield* fail(`gates[${g.index}].fork_to[${j}]`, `branch '${b}' is neither coalesced nor the name of a sink`)
          }
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
    const transformRoutes = transformSteps.map((t) => ({
      name: t.name,
      onError: t.onError,
      key: settings.transforms![t.index]!.on_error !== undefined ? `transforms[${t.index}].on_error` : `transforms[${t.index}].options.on_error`
    }))
    const aggregationRoutes = aggregationSteps.map((a) => ({ name: a.name, onError: a.onError, key: `aggregations[${a.index}].on_error` }))
    const routeError = (wiring.explicit ? undefined : validateRouteDestinations(gateSteps.map((g) => ({ name: g.name, routes: g.settings.routes })), sinkNames)) ??
      validateTransformErrorSinks([...transformRoutes, ...aggregationRoutes], sinkNames) ??
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
    if (settings.landscape?.dump_to_jsonl === true) {
      const journal = settings.landscape.dump_to_jsonl_path ?? (landscapePath === undefined ? undefined : defaultJournalPath(landscapePath))
      if (journal !== undefined) {
        claims.push({ key: settings.landscape.dump_to_jsonl_path === undefined ? "landscape.dump_to_jsonl" : "landscape.dump_to_jsonl_path", path: journal, role: "journal" })
      }
    }
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

    // The chain in execution order, and every destination as a target.
    const position = new Map<string, number>()
    wiring.chain.forEach((ref, i) => position.set(`${ref.kind}:${ref.index}`, i))
    const target = (d: Dest): Target => {
      switch (d._tag) {
        case "Sink":
          return d
        case "End":
          return d
        case "Node":
          return d.node.kind === "coalesce"
            ? { _tag: "Coalesce", index: d.node.index, branch: d.branch ?? "" }
            : { _tag: "Step", index: position.get(`${d.node.kind}:${d.node.index}`)! }
      }
    }
    const routeTarget = (d: RouteDest): RouteTarget => (d._tag === "Fork" ? d : target(d))
    const chain: Array<ChainStep> = wiring.chain.map((ref, i): ChainStep => {
      const step = i + 1
      switch (ref.kind) {
        case "transform":
          return { ...transformSteps[ref.index]!, step, onSuccess: target(wiring.transforms[ref.index]!) }
        case "aggregation":
          return { ...aggregationSteps[ref.index]!, step, onSuccess: target(wiring.aggregations[ref.index]!) }
        case "gate": {
          const g = wiring.gates[ref.index]!
          return {
            ...gateSteps[ref.index]!,
            step,
            routes: new Map(Array.from(g.routes, ([label, d]) => [label, routeTarget(d)] as const)),
            branches: g.branches.map((b) => ({ branch: b.branch, target: target(b.dest) }))
          }
        }
        case "coalesce":
          throw new Error("coalesces are not chain steps")
      }
    })
    const stepOf = (ref: NodeRef): number => position.get(`${ref.kind}:${ref.index}`)! + 1
    const coalesces: Array<CoalesceStep> = coalescePending.map((c) => {
      const w = wiring.coalesces[c.index]!
      const gateSteps = w.gates.map((g) => stepOf({ kind: "gate", index: g }))
      // The steps feeding it: its fork gates and, in the explicit form, the last node of each branch.
      const feeding = chain.filter((st) => {
        const targets: ReadonlyArray<RouteTarget> = st.kind === "gate" ? [...st.routes.values(), ...st.branches.map((b) => b.target)] : [st.onSuccess]
        return targets.some((t) => t._tag === "Coalesce" && t.index === c.index)
      }).map((st) => st.step)
      return {
        kind: "coalesce",
        nodeId: c.nodeId,
        name: c.settings.name,
        index: c.index,
        settings: c.settings,
        branches: c.branches,
        afterStep: Math.max(0, ...gateSteps, ...feeding),
        keyStep: gateSteps.length === 0 ? 0 : Math.min(...gateSteps),
        onSuccess: target(w.dest)
      }
    })
    const source: SourceStep = {
      nodeId: sourceNodeId,
      name: "source",
      plugin: sourcePlugin.name,
      instance: sourceInstance,
      onSuccess: target(wiring.source)
    }

    // Schema contracts along every edge that moves rows (gates and coalesces pass their input's schema on).
    yield* checkSchemas(file, settings, sourceInstance, chain, coalesces, sinks, source, wiring)

    // Graph edges.
    const sinkId = (name: string) => sinks.get(name)!.nodeId
    if (wiring.explicit) {
      const nodeIdOf = (t: Target): NodeId =>
        t._tag === "Step" ? chain[t.index]!.nodeId : t._tag === "Coalesce" ? coalesces[t.index]!.nodeId : t._tag === "Sink" ? sinkId(t.name) : sinkId(settings.default_sink!)
      graph.edge(sourceNodeId, nodeIdOf(source.onSuccess), "continue", "move")
      for (const st of chain) {
        if (st.kind === "gate") {
          for (const [label, t] of st.routes) if (t._tag !== "Fork") graph.edge(st.nodeId, nodeIdOf(t), label, "move")
          for (const b of st.branches) graph.edge(st.nodeId, nodeIdOf(b.target), `fork:${b.branch}`, "copy")
        } else {
          graph.edge(st.nodeId, nodeIdOf(st.onSuccess), "continue", "move")
        }
      }
      for (const c of coalesces) graph.edge(c.nodeId, nodeIdOf(c.onSuccess), "continue", "move")
    } else {
      // The positional form: the linear chain, gate routes, forks (edges as they always were).
      const nextAfter = (index: number): NodeId => chain[index + 1]?.nodeId ?? sinkId(settings.default_sink!)
      graph.edge(sourceNodeId, chain[0]?.nodeId ?? sinkId(settings.default_sink!), "continue", "move")
      for (const [i, step] of chain.entries()) {
        if (step.kind === "gate") {
          for (const [label, destination] of Object.entries(step.settings.routes)) {
            if (destination === "continue") graph.edge(step.nodeId, nextAfter(i), label, "move")
            else if (destination === "fork") {
              for (const b of step.branches) {
                graph.edge(step.nodeId, b.target._tag === "Coalesce" ? coalesces[b.target.index]!.nodeId : nextAfter(i), `fork:${b.branch}`, "copy")
              }
            } else graph.edge(step.nodeId, sinkId(destination), label, "move")
          }
        } else graph.edge(step.nodeId, nextAfter(i), "continue", "move")
      }
      for (const c of coalesces) {
        const after = chain.findIndex((s) => s.step === c.afterStep)
        graph.edge(c.nodeId, nextAfter(after), "continue", "move")
      }
      for (const g of chain) {
        if (g.kind !== "gate") continue
        for (const b of g.branches) {
          if (b.target._tag !== "Coalesce") {
            // A fork child completes to the sink named like its branch.
            graph.edge(chain[chain.length - 1]!.nodeId, sinkId(b.branch), `branch:${b.branch}`, "move")
          }
        }
      }
    }
    // Diversions: quarantine, transform and batch errors, write failures.
    if (sourceInstance.onValidationFailure !== "discard") {
      graph.edge(sourceNodeId, sinkId(sourceInstance.onValidationFailure), "on_validation_failure", "divert")
    }
    for (const st of chain) {
      if (st.kind === "gate") continue
      if (st.onError !== undefined && st.onError !== "discard") graph.edge(st.nodeId, sinkId(st.onError), "on_error", "divert")
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
        wiring.explicit
          ? `no on_success, route, on_error, on_validation_failure, on_write_failure or fork branch reaches this sink; remove it or send rows to it`
          : `no route, on_error, on_validation_failure, fork branch or default_sink reaches this sink; remove it or route rows to it`
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
      source,
      chain,
      coalesces,
      sinks,
      defaultSink: settings.default_sink,
      explicit: wiring.explicit,
      connections: wiring.connections,
      graph: built,
      checkpoint
    } satisfies PipelinePlan
  })

const wiringOf = (file: string, settings: PipelineSettings): Effect.Effect<Wiring, SettingsError> =>
  Effect.try({
    try: () => wire(file, settings),
    catch: (e) => {
      if (e instanceof SettingsError) return e
      throw e
    }
  })

/**
 * Schema contracts. The positional form checks consecutive data nodes and the
 * default sink, as it always has; the explicit form checks every edge that moves rows
 * into a transform, an aggregation or a sink (a gate or coalesce passes on the schema
 * of what feeds it).
 */
const checkSchemas = (
  file: string,
  settings: PipelineSettings,
  sourceInstance: SourceInstance,
  chain: ReadonlyArray<ChainStep>,
  coalesces: ReadonlyArray<CoalesceStep>,
  sinks: ReadonlyMap<string, SinkStep>,
  source: SourceStep,
  wiring: Wiring
): Effect.Effect<void, SettingsError> =>
  Effect.gen(function*() {
    const fail = (key: string, message: string) => Effect.fail(new SettingsError({ file, key, message }))
    const stepKey = (step: TransformStep | AggregationStep) => kindKey({ kind: step.kind, index: step.index })
    if (!wiring.explicit) {
      let producer = { key: "source", schema: sourceInstance.schema }
      for (const step of chain) {
        if (step.kind === "gate") continue
        const problem = checkCompatibility(producer.schema, step.instance.inputSchema)
        if (problem !== undefined) return yield* fail(`${stepKey(step)}.options.schema`, `does not fit the output of ${producer.key}: ${problem}`)
        producer = { key: stepKey(step), schema: step.instance.outputSchema }
      }
      const defaultSink = settings.default_sink!
      const instance = yield* sinks.get(defaultSink)!.create().pipe(Effect.mapError(fromPluginError(file, `sinks.${defaultSink}.options`)))
      const sinkProblem = checkCompatibility(producer.schema, instance.inputSchema)
      if (sinkProblem !== undefined) {
        return yield* fail(`sinks.${defaultSink}.options.schema`, `does not fit the output of ${producer.key}: ${sinkProblem}`)
      }
      return
    }
    // What each node emits: its own output schema, or (gates, coalesces) what feeds it.
    type Out = { readonly key: string; readonly schema: SchemaConfig } | undefined
    const emitted = new Map<string, Out>()
    const feeds = new Map<string, Array<Out>>()
    const targetKey = (t: Target): string | undefined =>
      t._tag === "Step" ? `step:${t.index}` : t._tag === "Coalesce" ? `coalesce:${t.index}` : t._tag === "Sink" ? `sink:${t.name}` : undefined
    const send = (from: Out, t: RouteTarget) => {
      if (t._tag === "Fork") return
      const k = targetKey(t)
      if (k === undefined) return
      feeds.set(k, [...(feeds.get(k) ?? []), from])
    }
    const sourceOut: Out = { key: "source", schema: sourceInstance.schema }
    send(sourceOut, source.onSuccess)
    // The chain is in execution order: everything feeding a step was sent before it.
    const sinkChecks: Array<{ sink: string; from: Out }> = []
    const visitCoalesces = (): void => {
      for (const c of coalesces) {
        const k = `coalesce:${c.index}`
        if (emitted.has(k)) continue
        const inputs = feeds.get(k) ?? []
        if (inputs.length < c.branches.length) continue
        // A merged row's shape depends on the merge; its schema is not checked downstream.
        emitted.set(k, undefined)
        send(undefined, c.onSuccess)
      }
    }
    for (const [i, step] of chain.entries()) {
      visitCoalesces()
      const inputs = feeds.get(`step:${i}`) ?? []
      if (step.kind === "gate") {
        for (const input of inputs) {
          for (const t of step.routes.values()) send(input, t)
          for (const b of step.branches) send(input, b.target)
        }
        continue
      }
      for (const input of inputs) {
        if (input === undefined) continue
        const problem = checkCompatibility(input.schema, step.instance.inputSchema)
        if (problem !== undefined) return yield* fail(`${stepKey(step)}.options.schema`, `does not fit the output of ${input.key}: ${problem}`)
      }
      send({ key: stepKey(step), schema: step.instance.outputSchema }, step.onSuccess)
    }
    visitCoalesces()
    for (const [name] of sinks) for (const from of feeds.get(`sink:${name}`) ?? []) sinkChecks.push({ sink: name, from })
    for (const { sink, from } of sinkChecks) {
      if (from === undefined) continue
      const instance = yield* sinks.get(sink)!.create().pipe(Effect.mapError(fromPluginError(file, `sinks.${sink}.options`)))
      const problem = checkCompatibility(from.schema, instance.inputSchema)
      if (problem !== undefined) return yield* fail(`sinks.${sink}.options.schema`, `does not fit the output of ${from.key}: ${problem}`)
    }
  })
