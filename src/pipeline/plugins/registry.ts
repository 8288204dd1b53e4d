/**
 * The plugin registry: built-in sources, transforms and sinks by name, plus any a
 * library user registers.
 */
import type { AnyPlugin, SinkPlugin, SourcePlugin, TransformPlugin } from "./protocol.js"
import { builtinSinks } from "./sinks/index.js"
import { csvSource } from "./sources/csv.js"
import { jsonSource } from "./sources/json.js"
import { nullSource } from "./sources/null.js"
import { batchReplicateTransform } from "./transforms/batch_replicate.js"
import { batchStatsTransform } from "./transforms/batch_stats.js"
import { fieldMapperTransform } from "./transforms/field_mapper.js"
import { httpTransform } from "./transforms/http.js"
import { jsonExplodeTransform } from "./transforms/json_explode.js"
import { keywordFilterTransform } from "./transforms/keyword_filter.js"
import { llmTransform } from "./transforms/llm.js"
import { passthroughTransform } from "./transforms/passthrough.js"
import { truncateTransform } from "./transforms/truncate.js"

export interface PluginRegistry {
  readonly sources: ReadonlyMap<string, SourcePlugin>
  readonly transforms: ReadonlyMap<string, TransformPlugin>
  readonly sinks: ReadonlyMap<string, SinkPlugin>
}

const byName = <P extends AnyPlugin>(plugins: ReadonlyArray<P>): ReadonlyMap<string, P> =>
  new Map(plugins.map((p) => [p.name, p]))

export const builtinPlugins: ReadonlyArray<AnyPlugin> = [
  csvSource,
  jsonSource,
  nullSource,
  passthroughTransform,
  fieldMapperTransform,
  truncateTransform,
  keywordFilterTransform,
  jsonExplodeTransform,
  batchStatsTransform,
  batchReplicateTransform,
  llmTransform,
  httpTransform,
  ...builtinSinks
]

/**
 * A registry of the built-ins plus `extra` plugins; an extra plugin with a built-in's
 * name and kind replaces it.
 */
export const makeRegistry = (extra: ReadonlyArray<AnyPlugin> = []): PluginRegistry => {
  const all = [...builtinPlugins, ...extra]
  return {
    sources: byName(all.filter((p): p is SourcePlugin => p.kind === "source")),
    transforms: byName(all.filter((p): p is TransformPlugin => p.kind === "transform")),
    sinks: byName(all.filter((p): p is SinkPlugin => p.kind === "sink"))
  }
}

export const builtinRegistry: PluginRegistry = makeRegistry()
