/** Helpers for sink tests: temp folders and a driver for the sink lifecycle. */
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach } from "vitest"
import type { ArtifactInfo, PluginContext, Row, SinkInstance, SinkPlugin } from "../../../../src/pipeline/plugins/protocol.js"

const dirs: Array<string> = []

/** A fresh temporary folder, removed after the test. */
export const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "runledger-sink-"))
  dirs.push(dir)
  return dir
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

export const ctx = (nodeName = "out", sourceHeaders?: ReadonlyMap<string, string>): PluginContext =>
  sourceHeaders === undefined ? { nodeName } : { nodeName, sourceHeaders: () => sourceHeaders }

/**
 * Runs a sink the way the engine does: create, onStart, one write per batch,
 * flush, onComplete, close; returns the instance and its artifact.
 */
export const runSink = (
  plugin: SinkPlugin,
  options: unknown,
  batches: ReadonlyArray<ReadonlyArray<Row>>,
  context: PluginContext = ctx()
): Effect.Effect<{ readonly sink: SinkInstance; readonly artifact: ArtifactInfo | undefined }, unknown> =>
  Effect.gen(function*() {
    const sink = yield* plugin.create(options, context)
    yield* sink.onStart
    for (const batch of batches) yield* sink.write(batch)
    yield* sink.flush
    yield* sink.onComplete
    yield* sink.close
    const artifact = yield* sink.artifact
    return { sink, artifact }
  })

export const readText = (path: string): string => readFileSync(path, "utf8")

export const sha256File = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex")

export const fileSize = (path: string): number => readFileSync(path).length
