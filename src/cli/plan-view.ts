/**
 * What `run --dry-run` prints: the plan a run would carry out — the DAG, the source,
 * the sinks and the files they would write, the Landscape, the checkpoint policy and
 * the audit export — found without opening, creating or changing anything (only
 * existence checks on the paths).
 */
import { resolveTelemetry } from "../services/telemetry-settings.js"
import { Effect } from "effect"
import { existsSync, statSync } from "node:fs"
import { resolveSqliteUrl } from "../landscape/sqlite.js"
import type { PipelinePlan } from "../pipeline/build.js"
import type { Graph } from "../pipeline/graph.js"
import { csvExportDir } from "../pipeline/orchestrator/export-file.js"
import { table } from "./common.js"
import { graphText } from "./graph-view.js"

export interface PlannedFile {
  readonly path: string
  /** Bytes in the file now, or null when there is none yet. */
  readonly existing_bytes: number | null
}

export interface PlannedSink {
  readonly name: string
  readonly plugin: string
  /** The file the sink writes (as configured), or null for none (an in-memory database). */
  readonly path: string | null
  /** The part of the file it writes alone, e.g. `table results` of a database. */
  readonly part: string | null
  readonly existing_bytes: number | null
  readonly default: boolean
  /** The sink receives the run's audit export after the run, not rows. */
  readonly export: boolean
}

export interface PlanDescription {
  readonly dry_run: true
  readonly valid: true
  readonly settings: string
  readonly source: { readonly plugin: string; readonly path: string | null }
  readonly graph: {
    readonly nodes: ReadonlyArray<{ readonly node_id: string; readonly node_type: string; readonly plugin: string; readonly name: string }>
    readonly edges: ReadonlyArray<{ readonly from: string; readonly to: string; readonly label: string; readonly mode: string }>
  }
  readonly sinks: ReadonlyArray<PlannedSink>
  readonly landscape: { readonly url: string; readonly path: string; readonly existing_bytes: number | null }
  readonly checkpoint: {
    readonly enabled: boolean
    readonly frequency: string
    readonly interval: number
    readonly aggregation_boundaries: boolean
  }
  readonly export: { readonly sink: string; readonly format: string; readonly sign: boolean } | null
  /** The telemetry events file the run would append to, when one is set. */
  readonly telemetry_jsonl: string | null
  /** The OTLP/HTTP endpoint spans and metrics would be sent to, when one is set. */
  readonly telemetry_otlp: string | null
  readonly warnings: ReadonlyArray<string>
}

const sizeOf = (path: string): number | null => {
  if (path === ":memory:" || !existsSync(path)) return null
  try {
    return statSync(path).size
  } catch {
    return null
  }
}

const optionText = (options: unknown, key: string): string | undefined => {
  const value = options !== null && typeof options === "object" ? (options as Record<string, unknown>)[key] : undefined
  return typeof value === "string" && value !== "" ? value : undefined
}

/**
 * The plan of `plan` run against the Landscape at `url`. A Landscape URL the run could
 * not open fails as the run would (exit 2).
 */
export const describePlan = (plan: PipelinePlan, url: string) =>
  Effect.gen(function*() {
    const landscapePath = yield* resolveSqliteUrl(url)
    const exportSettings = plan.settings.landscape?.export
    const exportSink = exportSettings?.enabled === true ? exportSettings.sink : undefined
    const sinks: Array<PlannedSink> = []
    for (const step of plan.sinks.values()) {
      // A fresh instance is unopened: it names its file without touching it.
      const instance = yield* Effect.option(step.create())
      const output = instance._tag === "Some" ? instance.value.outputFile : undefined
      const configured = output?.path ?? optionText(step.options, "path") ?? null
      // A CSV export writes a folder named like the sink's path, one file per record type.
      const csvExport = step.name === exportSink && exportSettings?.format === "csv" && configured !== null
      const path = csvExport ? csvExportDir(configured) : configured
      sinks.push({
        name: step.name,
        plugin: step.plugin.name,
        path,
        part: csvExport ? "a folder of CSV files" : output?.part ?? null,
        existing_bytes: path === null ? null : sizeOf(path),
        default: step.name === plan.defaultSink,
        export: step.name === exportSink
      })
    }
    const resolved = resolveTelemetry(plan.settings.telemetry)
    const telemetry = "request" in resolved ? resolved.request : undefined
    const description: PlanDescription = {
      dry_run: true,
      valid: true,
      settings: plan.file,
      source: { plugin: plan.source.plugin, path: optionText(plan.settings.source.options, "path") ?? null },
      graph: {
        nodes: plan.graph.nodes.map((n) => ({ node_id: n.nodeId, node_type: n.nodeType, plugin: n.plugin, name: n.name })),
        edges: plan.graph.edges.map((e) => ({ from: e.from, to: e.to, label: e.label, mode: e.mode }))
      },
      sinks,
      landscape: { url, path: landscapePath, existing_bytes: sizeOf(landscapePath) },
      checkpoint: {
        enabled: plan.checkpoint.enabled,
        frequency: plan.checkpoint.frequency,
        interval: plan.checkpoint.interval,
        aggregation_boundaries: plan.checkpoint.aggregationBoundaries
      },
      export: exportSink === undefined
        ? null
        : { sink: exportSink, format: exportSettings?.format ?? "json", sign: exportSettings?.sign === true },
      telemetry_jsonl: telemetry?.jsonl[0] ?? null,
      telemetry_otlp: telemetry?.otlp?.endpoint ?? null,
      warnings: plan.warnings
    }
    return description
  })

const fileState = (bytes: number | null): string => (bytes === null ? "new" : `exists, ${bytes} bytes`)

const checkpointText = (c: PlanDescription["checkpoint"]): string => {
  if (!c.enabled) return "disabled (the run cannot be resumed)"
  const cadence = c.frequency === "every_row"
    ? "after every row (every_row)"
    : c.frequency === "aggregation_only"
    ? "after each aggregation flush (aggregation_only)"
    : `every ${c.interval} rows (every_n)`
  return c.frequency !== "aggregation_only" && c.aggregation_boundaries ? `${cadence}, and after each aggregation flush` : cadence
}

/** The description as text: what `run --dry-run` prints on stderr. */
export const planText = (d: PlanDescription, graph: Pick<Graph, "nodes" | "edges">): string => {
  const lines = [
    `dry run: ${d.settings} is valid; no row was read, nothing was written or created`,
    "",
    `source      ${d.source.plugin}${d.source.path === null ? "" : ` reading ${d.source.path}`}`,
    `landscape   ${d.landscape.url} → ${d.landscape.path} (${fileState(d.landscape.existing_bytes)})`,
    `checkpoint  ${checkpointText(d.checkpoint)}`,
    `export      ${
      d.export === null ? "none" : `the audit trail to sink ${d.export.sink} as ${d.export.format}${d.export.sign ? ", signed" : ""}`
    }`
  ]
  if (d.telemetry_jsonl !== null) lines.push(`telemetry   events appended to ${d.telemetry_jsonl}`)
  if (d.telemetry_otlp !== null) lines.push(`telemetry   spans and metrics to ${d.telemetry_otlp} (OTLP/HTTP)`)
  lines.push(
    "",
    "graph",
    graphText(graph),
    "",
    "sinks",
    table(
      ["SINK", "PLUGIN", "FILE", "NOW", "ROLE"],
      d.sinks.map((s) => [
        s.name,
        s.plugin,
        s.path === null ? "-" : s.part === null ? s.path : `${s.path} (${s.part})`,
        s.path === null ? "-" : fileState(s.existing_bytes),
        [s.default ? "default sink" : "", s.export ? "audit export" : ""].filter((r) => r !== "").join(", ")
      ])
    )
  )
  return lines.join("\n")
}
