/**
 * Committed state, cutting back, and I/O faults of the file sinks (csv, json, jsonl):
 * a failed write or fsync leaves exactly the last durable state, and a fresh instance
 * cut back to a committed state continues to the same bytes as an uninterrupted run.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Row, SinkCommitted, SinkInstance, SinkPlugin } from "../../../../src/pipeline/plugins/protocol.js"
import { PluginRunError, SinkIoError, sinkIoErrorOf } from "../../../../src/pipeline/plugins/protocol.js"
import { csvSink } from "../../../../src/pipeline/plugins/sinks/csv.js"
import { FAULT_ENV, faultsFor } from "../../../../src/pipeline/plugins/sinks/io.js"
import { jsonSink } from "../../../../src/pipeline/plugins/sinks/json.js"
import { ctx, readText, runSink, sha256File, tempDir } from "./support.js"

const observed = { mode: "observed" }
const batch = (from: number, n: number): ReadonlyArray<Row> =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, name: `name ${from + i}`, ok: (from + i) % 2 === 0 }))
const batches = [batch(0, 3), batch(3, 4), batch(7, 5)]

/** Runs `effect` with RUNLEDGER_TEST_FAULT set, restoring the environment after. */
const withFault = <A, E>(spec: string, effect: () => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const before = process.env[FAULT_ENV]
      process.env[FAULT_ENV] = spec
      return before
    }),
    effect,
    (before) =>
      Effect.sync(() => {
        if (before === undefined) delete process.env[FAULT_ENV]
        else process.env[FAULT_ENV] = before
      })
  )

const writeAndFlush = (sink: SinkInstance, rows: ReadonlyArray<Row>) => Effect.zipRight(sink.write(rows), sink.flush)

const committedOf = (sink: SinkInstance): Effect.Effect<SinkCommitted> => sink.committed!

interface Variant {
  readonly name: string
  readonly plugin: SinkPlugin
  readonly file: string
  readonly options: Record<string, unknown>
}

const variants: ReadonlyArray<Variant> = [
  { name: "csv", plugin: csvSink, file: "out.csv", options: { schema: observed } },
  { name: "csv utf-8-sig", plugin: csvSink, file: "out.csv", options: { schema: observed, encoding: "utf-8-sig" } },
  { name: "json array", plugin: jsonSink, file: "out.json", options: { schema: observed } },
  { name: "json array, indented", plugin: jsonSink, file: "out.json", options: { schema: observed, indent: 2 } },
  { name: "jsonl", plugin: jsonSink, file: "out.jsonl", options: { schema: observed } }
]

describe("file sinks: committed state", () => {
  for (const v of variants) {
    it.effect(`${v.name}: committed() follows each flush; the array's closing is never part of it`, () =>
      Effect.gen(function*() {
        const path = join(tempDir(), v.file)
        const sink = yield* v.plugin.create({ ...v.options, path }, ctx())
        yield* sink.onStart
        expect(yield* committedOf(sink)).toEqual({ rows: 0, bytes: 0 })
        yield* sink.write(batches[0]!)
        // written but not yet flushed: not committed
        expect(yield* committedOf(sink)).toEqual({ rows: 0, bytes: 0 })
        yield* sink.flush
        const first = yield* committedOf(sink)
        expect(first).toEqual({ rows: 3, bytes: readFileSync(path).length })
        yield* writeAndFlush(sink, batches[1]!)
        expect(yield* committedOf(sink)).toEqual({ rows: 7, bytes: readFileSync(path).length })
        yield* sink.onComplete
        yield* sink.close
        const finished = readFileSync(path)
        const last = yield* committedOf(sink)
        expect(last.rows).toBe(7)
        if (v.file.endsWith(".json")) expect(finished.length).toBeGreaterThan(last.bytes)
        else expect(finished.length).toBe(last.bytes)
        // every committed state is a prefix of the finished file
        expect(finished.subarray(0, first.bytes).equals(readFileSync(path).subarray(0, first.bytes))).toBe(true)
      }))

    it.effect(`${v.name}: a fresh instance cut back to a committed state ends byte-identical to an uninterrupted run`, () =>
      Effect.gen(function*() {
        const dir = tempDir()
        const whole = join(dir, `whole-${v.file}`)
        const { artifact: wholeArtifact } = yield* runSink(v.plugin, { ...v.options, path: whole }, batches)

        const path = join(dir, v.file)
        const first = yield* v.plugin.create({ ...v.options, path }, ctx())
        yield* first.onStart
        yield* writeAndFlush(first, batches[0]!)
        yield* writeAndFlush(first, batches[1]!)
        const checkpoint = yield* committedOf(first)
        // rows written after the checkpoint, then the run ends (the array closed, too)
        yield* writeAndFlush(first, batches[2]!)
        yield* first.onComplete
        yield* first.close

        const second = yield* v.plugin.create({ ...v.options, path }, ctx())
        yield* second.onStart
        yield* second.truncateTo!(checkpoint)
        expect(readFileSync(path).length).toBe(checkpoint.bytes)
        expect(yield* committedOf(second)).toEqual(checkpoint)
        yield* writeAndFlush(second, batches[2]!)
        yield* second.onComplete
        yield* second.close
        const artifact = yield* second.artifact
        expect(readText(path)).toBe(readText(whole))
        expect(artifact?.contentHash).toBe(wholeArtifact?.contentHash)
        expect(artifact?.sizeBytes).toBe(wholeArtifact?.sizeBytes)
      }))

    it.effect(`${v.name}: an injected ENOSPC mid-batch cuts the file back to the last flush`, () =>
      Effect.gen(function*() {
        const dir = tempDir()
        const path = join(dir, v.file)
        // the committed length after two batches, from a run without faults
        const probe = yield* v.plugin.create({ ...v.options, path: join(dir, `probe-${v.file}`) }, ctx())
        yield* probe.onStart
        yield* writeAndFlush(probe, batches[0]!)
        yield* writeAndFlush(probe, batches[1]!)
        const durable = yield* committedOf(probe)
        yield* probe.close
        const full = durable.bytes + 10 // the third batch tears after ten bytes
        yield* withFault(`sink:other:eio:after_bytes=0,sink:out:enospc:after_bytes=${full}`, () =>
          Effect.gen(function*() {
            const sink = yield* v.plugin.create({ ...v.options, path }, ctx())
            yield* sink.onStart
            yield* writeAndFlush(sink, batches[0]!)
            yield* writeAndFlush(sink, batches[1]!)
            const before = readFileSync(path)
            const error = yield* Effect.flip(sink.write(batches[2]!))
            expect(error).toBeInstanceOf(PluginRunError)
            expect(error.message).toContain(`sink 'out' (${v.plugin.name}, ${path})`)
            expect(error.message).toContain("no space left on device (ENOSPC)")
            expect(error.message).toContain(`cut back to its last durable length (${durable.bytes} bytes)`)
            const io = sinkIoErrorOf(error)
            expect(io).toBeInstanceOf(SinkIoError)
            expect(io).toMatchObject({ reason: "NoSpace", code: "ENOSPC", sink: "out", plugin: v.plugin.name, path, operation: "write" })
            expect(readFileSync(path).equals(before)).toBe(true)
            expect(yield* committedOf(sink)).toEqual(durable)
            yield* sink.onComplete
            yield* sink.close
            const artifact = yield* sink.artifact
            expect(artifact?.contentHash).toBe(sha256File(path))
          })
        )
        // a JSON array is closed after the committed rows; every file holds exactly them
        const text = readText(path)
        const expected = [...batches[0]!, ...batches[1]!]
        if (v.file.endsWith(".jsonl")) expect(text.trimEnd().split("\n").map((l) => JSON.parse(l))).toEqual(expected)
        else if (v.file.endsWith(".json")) expect(JSON.parse(text)).toEqual(expected)
        else {
          const lines = text.replace(/^\uFEFF/, "").split("\r\n")
          expect(lines.pop()).toBe("")
          expect(lines).toEqual(["id,name,ok", ...expected.map((r) => `${r.id},${r.name},${r.ok ? "True" : "False"}`)])
        }
      }))

    it.effect(`${v.name}: a failed fsync cuts the file back and names the cause`, () =>
      Effect.gen(function*() {
        const path = join(tempDir(), v.file)
        const sink = yield* withFault("sink:out:eio:fsync_after_bytes=100", () => v.plugin.create({ ...v.options, path }, ctx()))
        yield* sink.onStart
        yield* writeAndFlush(sink, batches[0]!.slice(0, 1))
        const durable = yield* committedOf(sink)
        expect(durable.bytes).toBeLessThanOrEqual(100)
        yield* sink.write([...batches[1]!, ...batches[2]!])
        expect(readFileSync(path).length).toBeGreaterThan(100)
        const error = yield* Effect.flip(sink.flush)
        expect(error.message).toContain(`cannot sync ${path} to disk: input/output error (EIO)`)
        expect(sinkIoErrorOf(error)).toMatchObject({ reason: "Io", code: "EIO", operation: "sync" })
        expect(readFileSync(path).length).toBe(durable.bytes)
        expect(yield* committedOf(sink)).toEqual(durable)
        yield* sink.close
      }))
  }

  it.effect("csv: a row that cannot be encoded mid-batch leaves no byte of its batch", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const sink = yield* csvSink.create({ path, schema: observed, encoding: "latin-1" }, ctx())
      yield* sink.onStart
      yield* writeAndFlush(sink, [{ a: "first" }])
      const before = readFileSync(path)
      // rows are rendered and appended in slices: the first slices reach the file before the bad row
      const many = Array.from({ length: 2_000 }, (_, i) => ({ a: `row ${i}` }))
      const error = yield* Effect.flip(sink.write([...many, { a: "snowman \u2603" }]))
      expect(error.message).toContain("cannot encode output as latin-1")
      expect(readFileSync(path).equals(before)).toBe(true)
      yield* writeAndFlush(sink, [{ a: "after" }])
      yield* sink.onComplete
      yield* sink.close
      expect(readText(path)).toBe("a\r\nfirst\r\nafter\r\n")
      expect((yield* sink.artifact)?.contentHash).toBe(sha256File(path))
    }))

  it.effect("csv: an unflushed earlier write survives a later batch's validation failure", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      const sink = yield* csvSink.create({ path, schema: { mode: "fixed", fields: ["a: int"] }, validate_input: true }, ctx())
      yield* sink.onStart
      yield* sink.write([{ a: 1 }])
      yield* Effect.flip(sink.write([{ a: 2 }, { a: "x" }]))
      yield* sink.flush
      yield* sink.onComplete
      yield* sink.close
      expect(readText(path)).toBe("a\r\n1\r\n")
    }))

  it.effect("csv append: the committed state starts at the existing file; a cut never goes below it", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      writeFileSync(path, "id,name,ok\r\n100,old,True\r\n")
      const existing = readFileSync(path).length
      const options = { path, schema: observed, mode: "append" }
      const sink = yield* csvSink.create(options, ctx())
      yield* sink.onStart
      expect(yield* committedOf(sink)).toEqual({ rows: 0, bytes: existing })
      yield* writeAndFlush(sink, batches[0]!)
      const checkpoint = yield* committedOf(sink)
      yield* writeAndFlush(sink, batches[1]!)
      yield* sink.onComplete
      yield* sink.close

      const resumed = yield* csvSink.create(options, ctx())
      yield* resumed.onStart
      yield* resumed.truncateTo!(checkpoint)
      yield* writeAndFlush(resumed, batches[1]!)
      yield* resumed.onComplete
      yield* resumed.close
      const lines = readText(path).split("\r\n")
      expect(lines[0]).toBe("id,name,ok")
      expect(lines[1]).toBe("100,old,True")
      expect(lines.filter((l) => l === "id,name,ok")).toHaveLength(1)
      expect(lines).toHaveLength(2 + 7 + 1)
      expect((yield* resumed.artifact)?.contentHash).toBe(sha256File(path))
    }))

  it.effect("csv append: a full disk on the first write keeps the rows that were already in the file", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.csv")
      writeFileSync(path, "id,name,ok\r\n100,old,True\r\n")
      const before = readFileSync(path)
      const sink = yield* withFault(`sink:out:enospc:after_bytes=${before.length + 5}`, () =>
        csvSink.create({ path, schema: observed, mode: "append" }, ctx()))
      yield* sink.onStart
      const error = yield* Effect.flip(sink.write(batches[0]!))
      expect(error.message).toContain(`cut back to its last durable length (${before.length} bytes)`)
      expect(readFileSync(path).equals(before)).toBe(true)
      yield* sink.close
      expect((yield* sink.artifact)?.contentHash).toBe(sha256File(path))
    }))

  it.effect("truncateTo refuses a state the file does not hold, and a missing file with committed bytes", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const path = join(dir, "out.csv")
      const sink = yield* csvSink.create({ path, schema: observed }, ctx())
      yield* sink.onStart
      const missing = yield* Effect.flip(sink.truncateTo!({ rows: 2, bytes: 30 }))
      expect(missing.message).toContain(`cannot cut ${path} back to 30 bytes`)
      expect(missing.message).toContain("does not exist")
      yield* writeAndFlush(sink, batches[0]!)
      const size = readFileSync(path).length
      const error = yield* Effect.flip(sink.truncateTo!({ rows: 9, bytes: size + 1 }))
      expect(error.message).toContain(`holds ${size} bytes, fewer than the ${size + 1} committed`)
      expect(readFileSync(path).length).toBe(size)
      // a state with no rows and no bytes over a missing file leaves it missing
      const other = join(dir, "never.csv")
      const fresh = yield* csvSink.create({ path: other, schema: observed }, ctx())
      yield* fresh.truncateTo!({ rows: 0, bytes: 0 })
      yield* fresh.close
      expect((yield* fresh.artifact)).toBeUndefined()
      yield* sink.close
    }))

  it("reads RUNLEDGER_TEST_FAULT strictly, per sink name", () => {
    expect(faultsFor("csv", "out", {})).toEqual({ faults: [] })
    expect(faultsFor("csv", "out", { [FAULT_ENV]: "sink:out:enospc:after_bytes=5, sink:high:eio:fsync_after_bytes=0" }))
      .toEqual({ faults: [{ code: "ENOSPC", on: "write", afterBytes: 5 }] })
    expect(faultsFor("csv", "high", { [FAULT_ENV]: "sink:out:enospc:after_bytes=5,sink:high:eio:fsync_after_bytes=0" }))
      .toEqual({ faults: [{ code: "EIO", on: "fsync", afterBytes: 0 }] })
    for (const bad of ["sink:out:enospc", "sink:out:nope:after_bytes=1", "out:enospc:after_bytes=1", "sink:out:enoent:after_bytes=1"]) {
      const parsed = faultsFor("csv", "out", { [FAULT_ENV]: bad })
      expect("error" in parsed && parsed.error.message).toContain(`${FAULT_ENV} (test only): cannot read '${bad}'`)
    }
  })
})
