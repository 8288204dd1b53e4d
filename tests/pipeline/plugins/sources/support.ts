import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Chunk, Effect, Either, Stream } from "effect"
import type {
  PluginConfigError,
  PluginRunError,
  SourceInstance,
  SourceItem,
  SourcePlugin,
  SourceRestart
} from "../../../../src/pipeline/plugins/protocol.js"

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

const collect = (stream: Stream.Stream<SourceItem, PluginRunError>): Promise<Array<SourceItem>> =>
  Effect.runPromise(Stream.runCollect(stream)).then((c) => [...Chunk.toReadonlyArray(c)])

/** Drops an item's `position` (tests of content compare items without it). */
export const withoutPosition = (item: SourceItem): SourceItem => {
  if (item.position === undefined) return item
  const { position: _, ...rest } = item
  return rest
}

/** The items `read` yields, without their positions (see `readItems` for those). */
export const readAll = (source: SourceInstance): Promise<Array<SourceItem>> =>
  collect(source.read).then((items) => items.map(withoutPosition))

/** The items `read` yields, positions included. */
export const readItems = (source: SourceInstance): Promise<Array<SourceItem>> => collect(source.read)

/** The items `readFrom(at)` yields, positions included. */
export const readItemsFrom = (source: SourceInstance, at: SourceRestart): Promise<Array<SourceItem>> => {
  if (source.readFrom === undefined) throw new Error(`source ${source.plugin} cannot restart`)
  return collect(source.readFrom(at))
}

export const readError = async (source: SourceInstance): Promise<PluginRunError> => {
  const r = await Effect.runPromise(Effect.either(Stream.runCollect(source.read)))
  if (Either.isRight(r)) throw new Error(`expected a run error, got ${r.right.length} items`)
  return r.left
}

export const valid = (items: ReadonlyArray<SourceItem>) =>
  items.flatMap((i) => (i._tag === "Valid" ? [i.row] : []))

export const invalid = (items: ReadonlyArray<SourceItem>) =>
  items.flatMap((i) => (i._tag === "Invalid" ? [i] : []))

/**
 * Runs `f`, capturing the `warning:` lines written to stderr meanwhile (others pass
 * through).
 */
export const withStderr = async <A>(f: () => Promise<A>): Promise<{ result: A; warnings: Array<string> }> => {
  const warnings: Array<string> = []
  const original = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: unknown, ...rest: Array<unknown>) => {
    if (typeof chunk === "string" && chunk.startsWith("warning: ")) {
      warnings.push(chunk)
      return true
    }
    return (original as (...args: Array<unknown>) => boolean)(chunk, ...rest)
  }) as typeof process.stderr.write
  try {
    return { result: await f(), warnings }
  } finally {
    process.stderr.write = original
  }
}
