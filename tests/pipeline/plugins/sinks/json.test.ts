import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { defaultJsonFormat, jsonSink } from "../../../../src/pipeline/plugins/sinks/json.js"
import { ctx, fileSize, readText, runSink, sha256File, tempDir } from "./support.js"

const observed = { mode: "observed" }
const schema = { mode: "fixed", fields: ["id: int", "name: str", "price: float", "tags: any", "meta: any"] }
const rows = [
  { id: 1, name: "Zoë 😀", price: 2500, tags: ["a", null], meta: { k: 1.5 } },
  { id: 2, name: "x\ty", price: 0.1, tags: [], meta: {} }
]

// What Python's json.dumps writes for these rows (price declared float).
const single = "[{\"id\": 1, \"name\": \"Zo\\u00eb \\ud83d\\ude00\", \"price\": 2500.0, \"tags\": [\"a\", null], " +
  "\"meta\": {\"k\": 1.5}}, {\"id\": 2, \"name\": \"x\\ty\", \"price\": 0.1, \"tags\": [], \"meta\": {}}]"
const pretty = "[\n  {\n    \"id\": 1,\n    \"name\": \"Zo\\u00eb \\ud83d\\ude00\",\n    \"price\": 2500.0,\n" +
  "    \"tags\": [\n      \"a\",\n      null\n    ],\n    \"meta\": {\n      \"k\": 1.5\n    }\n  },\n" +
  "  {\n    \"id\": 2,\n    \"name\": \"x\\ty\",\n    \"price\": 0.1,\n    \"tags\": [],\n    \"meta\": {}\n  }\n]"
const lines = "{\"id\": 1, \"name\": \"Zo\\u00eb \\ud83d\\ude00\", \"price\": 2500.0, \"tags\": [\"a\", null], " +
  "\"meta\": {\"k\": 1.5}}\n{\"id\": 2, \"name\": \"x\\ty\", \"price\": 0.1, \"tags\": [], \"meta\": {}}\n"

describe("json sink", () => {
  it.effect("writes one single-line array with no trailing newline", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      yield* runSink(jsonSink, { path, schema }, [rows])
      expect(readText(path)).toBe(single)
    }))

  it.effect("streams the array across writes to the same bytes", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      yield* runSink(jsonSink, { path, schema }, [[rows[0]!], [], [rows[1]!]])
      expect(readText(path)).toBe(single)
    }))

  it.effect("pretty-prints with indent, across writes too", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      yield* runSink(jsonSink, { path: join(dir, "a.json"), schema, indent: 2 }, [rows])
      yield* runSink(jsonSink, { path: join(dir, "b.json"), schema, indent: 2 }, [[rows[0]!], [rows[1]!]])
      expect(readText(join(dir, "a.json"))).toBe(pretty)
      expect(readText(join(dir, "b.json"))).toBe(pretty)
    }))

  it.effect("indent 0 puts every item on its own line without indentation", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      yield* runSink(jsonSink, { path, schema: observed, indent: 0 }, [[{ a: { b: [] }, c: {} }]])
      expect(readText(path)).toBe("[\n{\n\"a\": {\n\"b\": []\n},\n\"c\": {}\n}\n]")
    }))

  it.effect("writes JSON Lines for a .jsonl path, one line per row", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.jsonl")
      yield* runSink(jsonSink, { path, schema, indent: 4 }, [[rows[0]!], [rows[1]!]])
      expect(readText(path)).toBe(lines)
    }))

  it("chooses the format by extension", () => {
    expect(defaultJsonFormat("a/b.jsonl")).toBe("jsonl")
    expect(defaultJsonFormat("a/b.JSONL")).toBe("jsonl")
    expect(defaultJsonFormat("a/b.json")).toBe("json")
    expect(defaultJsonFormat("a/b.txt")).toBe("json")
  })

  it.effect("format overrides the extension", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      yield* runSink(jsonSink, { path: join(dir, "a.json"), schema, format: "jsonl" }, [rows])
      yield* runSink(jsonSink, { path: join(dir, "b.jsonl"), schema, format: "json" }, [rows])
      expect(readText(join(dir, "a.json"))).toBe(lines)
      expect(readText(join(dir, "b.jsonl"))).toBe(single)
    }))

  it.effect("writes rows exactly as they are under an observed schema (ints stay ints)", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.jsonl")
      yield* runSink(jsonSink, { path, schema: observed }, [[{ b: 2500, a: 1e-5, c: true, d: null, e: 1e16 }]])
      expect(readText(path)).toBe("{\"b\": 2500, \"a\": 1e-05, \"c\": true, \"d\": null, \"e\": 10000000000000000}\n")
    }))

  it.effect("does not add, drop or reorder keys for a fixed schema", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.jsonl")
      const fixed = { mode: "fixed", fields: ["a: int", "b: float"] }
      yield* runSink(jsonSink, { path, schema: fixed }, [[{ b: 1, extra: "x" }]])
      expect(readText(path)).toBe("{\"b\": 1.0, \"extra\": \"x\"}\n")
    }))

  it.effect("display_headers renames keys (declared floats follow their renamed key)", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.jsonl")
      const options = { path, schema, display_headers: { price: "Price", id: "ID" }, headers: "original" }
      yield* runSink(jsonSink, options, [[rows[1]!, { ...rows[1]!, price: 3 }]])
      expect(readText(path)).toBe(
        "{\"ID\": 2, \"name\": \"x\\ty\", \"Price\": 0.1, \"tags\": [], \"meta\": {}}\n" +
          "{\"ID\": 2, \"name\": \"x\\ty\", \"Price\": 3.0, \"tags\": [], \"meta\": {}}\n"
      )
    }))

  it.effect("restore_source_headers renames keys to the source's headers", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      const headers = new Map([["id", "Customer Id"]])
      yield* runSink(jsonSink, { path, schema: observed, restore_source_headers: true }, [[{ id: 1, x: 2 }]], ctx("o", headers))
      expect(readText(path)).toBe("[{\"Customer Id\": 1, \"x\": 2}]")
    }))

  it.effect("mode append appends JSON Lines but rewrites an array file", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const jl = join(dir, "a.jsonl")
      writeFileSync(jl, "{\"old\": 1}\n")
      const { artifact } = yield* runSink(jsonSink, { path: jl, schema: observed, mode: "append" }, [[{ n: 1 }]])
      expect(readText(jl)).toBe("{\"old\": 1}\n{\"n\": 1}\n")
      expect(artifact).toEqual({ pathOrUri: jl, contentHash: sha256File(jl), sizeBytes: fileSize(jl) })
      const arr = join(dir, "a.json")
      writeFileSync(arr, "[{\"old\": 1}]")
      yield* runSink(jsonSink, { path: arr, schema: observed, mode: "append" }, [[{ n: 1 }]])
      expect(readText(arr)).toBe("[{\"n\": 1}]")
    }))

  it.effect("creates no file when it receives no rows", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      for (const name of ["a.json", "a.jsonl"]) {
        const { artifact } = yield* runSink(jsonSink, { path: join(dir, "sub", name), schema: observed }, [[]])
        expect(existsSync(join(dir, "sub", name))).toBe(false)
        expect(artifact).toBeUndefined()
      }
    }))

  it.effect("many small writes produce the same file as one big write", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const many = Array.from({ length: 1200 }, (_, i) => ({ i, v: i / 3, s: `é${i}` }))
      const s = { mode: "fixed", fields: ["i: int", "v: float", "s: str"] }
      for (const [ext, indent] of [["json", undefined], ["json", 2], ["jsonl", undefined]] as const) {
        const base = { schema: s, ...(indent === undefined ? {} : { indent }) }
        yield* runSink(jsonSink, { ...base, path: join(dir, `one.${ext}`) }, [many])
        const batches = Array.from({ length: 400 }, (_, k) => many.slice(k * 3, k * 3 + 3))
        yield* runSink(jsonSink, { ...base, path: join(dir, `many.${ext}`) }, batches)
        const one = readFileSync(join(dir, `one.${ext}`))
        expect(readFileSync(join(dir, `many.${ext}`)).equals(one)).toBe(true)
        if (ext === "json") expect(JSON.parse(one.toString())).toEqual(many)
      }
    }))

  it.effect("reports path, SHA-256 and size of the finished file", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      const { artifact } = yield* runSink(jsonSink, { path, schema, indent: 2 }, [[rows[0]!], [rows[1]!]])
      expect(artifact).toEqual({ pathOrUri: path, contentHash: sha256File(path), sizeBytes: fileSize(path) })
    }))

  it.effect("fails every use after close", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      const { sink } = yield* runSink(jsonSink, { path, schema: observed }, [[{ a: 1 }]])
      for (const use of [sink.write([{ a: 2 }]), sink.flush, sink.onStart, sink.onComplete]) {
        const error = yield* Effect.flip(use)
        expect(error).toMatchObject({ _tag: "PluginRunError", plugin: "json" })
        expect(error.message).toContain("sink used after close")
      }
      expect(readText(path)).toBe("[{\"a\": 1}]")
    }))

  it.effect("validate_input fails on a bad row and writes nothing of its batch", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "out.json")
      const options = { path, schema: { mode: "fixed", fields: ["a: int"] }, validate_input: true }
      const sink = yield* jsonSink.create(options, ctx("checked"))
      yield* sink.write([{ a: 1 }])
      const error = yield* Effect.flip(sink.write([{ a: 2 }, { a: 3, b: 4 }]))
      expect(error.message).toContain("sink 'checked' (json, ")
      expect(error.message).toContain("input row 2 failed schema validation (b: unexpected field")
      yield* sink.onComplete
      yield* sink.close
      expect(readText(path)).toBe("[{\"a\": 1}]")
    }))

  it.effect("refuses a negative indent and an unknown format", () =>
    Effect.gen(function*() {
      const indent = yield* Effect.flip(jsonSink.create({ path: "a.json", schema: observed, indent: -1 }, ctx()))
      expect(indent).toMatchObject({ _tag: "PluginConfigError", key: "indent" })
      const format = yield* Effect.flip(jsonSink.create({ path: "a.json", schema: observed, format: "yaml" }, ctx()))
      expect(format).toMatchObject({ _tag: "PluginConfigError", key: "format" })
    }))
})
