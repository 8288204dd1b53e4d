import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Chunk, Effect, Either, Stream } from "effect"
import type { PluginConfigError, PluginRunError, SourceInstance, SourceItem, SourcePlugin } from "../../../../src/pipeline/plugins/protocol.js"

export const makeTempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "runledger-sources-"))
  return {
    dir,
    file: (name: string, content: string | Buffer): string => {
      const path = join(dir, name)
      writeFileSync(path, content)
      return path
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true })
  }
}

export const create = (plugin: SourcePlugin, options: unknown): SourceInstance =>
  Effect.runSync(plugin.create(options, { nodeName: "source" }))

export const createError = (plugin: SourcePlugin, options: unknown): PluginConfigError => {
  const r = Effect.runSync(Effect.either(plugin.create(options, { nodeName: "source" })))
  if (Either.isRight(r)) throw new Error("expected a config error")
  return r.left
}

export const readAll = (source: SourceInstance): Promise<Array<SourceItem>> =>
  Effect.runPromise(Stream.runCollect(source.read)).then((c) => [...Chunk.toReadonlyArray(c)])

export const readError = async (source: SourceInstance): Promise<PluginRunError> => {
  const r = await Effect.runPromise(Effect.either(Stream.runCollect(source.read)))
  if (Either.isRight(r)) throw new Error(`expected a run error, got ${r.right.length} items`)
  return r.left
}

export const valid = (items: ReadonlyArray<SourceItem>) =>
  items.flatMap((i) => (i._tag === "Valid" ? [i.row] : []))

export const invalid = (items: ReadonlyArray<SourceItem>) =>
  items.flatMap((i) => (i._tag === "Invalid" ? [i] : []))
