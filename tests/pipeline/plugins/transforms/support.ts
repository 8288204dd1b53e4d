import { Effect, Either } from "effect"
import type {
  BatchTransformInstance,
  PluginConfigError,
  PluginRunError,
  RowTransformInstance,
  TransformPlugin
} from "../../../../src/pipeline/plugins/protocol.js"

export const ctx = { nodeName: "t" }

export const rowTransform = (plugin: TransformPlugin, options: unknown): RowTransformInstance => {
  const t = Effect.runSync(plugin.create(options, ctx))
  if (t._tag !== "RowTransform") throw new Error("expected a row transform")
  return t
}

export const batchTransform = (plugin: TransformPlugin, options: unknown): BatchTransformInstance => {
  const t = Effect.runSync(plugin.create(options, ctx))
  if (t._tag !== "BatchTransform") throw new Error("expected a batch transform")
  return t
}

export const configError = (plugin: TransformPlugin, options: unknown): PluginConfigError => {
  const r = Effect.runSync(Effect.either(plugin.create(options, ctx)))
  if (Either.isRight(r)) throw new Error("expected a config error")
  return r.left
}

export const runError = (f: () => unknown): PluginRunError => {
  try {
    f()
  } catch (e) {
    if ((e as { _tag?: unknown })._tag === "PluginRunError") return e as PluginRunError
    throw e
  }
  throw new Error("expected a PluginRunError to be thrown")
}

export const observed = { mode: "observed" }
