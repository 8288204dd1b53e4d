/**
 * Rows are read as they arrive: the CSV parser emits a record as soon as its delimiter
 * has come (without changing what it parses, however the input is cut), and the file
 * sources hand on what a read brought while the next read waits — here on a named pipe.
 */
import { spawnSync } from "node:child_process"
import { closeSync, constants, openSync, writeSync } from "node:fs"
import { join } from "node:path"
import { Parser } from "csv-parse"
import { Chunk, Effect, Fiber, Stream } from "effect"
import fc from "fast-check"
import { afterAll, describe, expect, it } from "vitest"
import type { SourceInstance, SourceItem } from "../../../../src/pipeline/plugins/protocol.js"
import { csvParseOptions, csvSource, exactLookahead } from "../../../../src/pipeline/plugins/sources/csv.js"
import { jsonSource } from "../../../../src/pipeline/plugins/sources/json.js"
import { create, makeTempDir, withoutPosition } from "./support.js"

const tmp = makeTempDir()
afterAll(() => tmp.cleanup())

interface Parsed {
  readonly records: Array<{ readonly fields: Array<string>; readonly lines: number; readonly bytes: number }>
  readonly skipped: Array<{ readonly code: string | undefined; readonly lines: number | undefined }>
}

const newParser = (delimiter: string, exact: boolean) => {
  const out: Parsed = { records: [], skipped: [] }
  const parser = new Parser({
    ...csvParseOptions(delimiter),
    info: true,
    on_skip: (err) => {
      out.skipped.push({ code: err?.code, lines: err?.lines as number | undefined })
      return undefined
    }
  })
  parser.on("data", (r: { record: Array<Buffer>; info: { lines: number; bytes: number } }) => {
    out.records.push({ fields: r.record.map((f) => f.toString("latin1")), lines: r.info.lines, bytes: r.info.bytes })
  })
  return { parser: exact ? exactLookahead(parser) : parser, out }
}

const finish = (parser: Parser): Promise<void> =>
  new Promise((resolve, reject) => {
    parser.on("end", resolve)
    parser.on("error", reject)
    parser.end()
  })

describe("csv parser: exact lookahead", () => {
  it("emits a record as soon as its delimiter has come", async () => {
    const { parser, out } = newParser(",", true)
    parser.write(Buffer.from("a,b\n1,2\n"))
    await new Promise((r) => setImmediate(r))
    expect(out.records.map((r) => r.fields)).toEqual([["a", "b"], ["1", "2"]])
    parser.write(Buffer.from("3,\"x\"\n"))
    await new Promise((r) => setImmediate(r))
    expect(out.records).toHaveLength(3)
    // A \r may be the start of \r\n: that record waits for the next byte.
    parser.write(Buffer.from("4,5\r"))
    await new Promise((r) => setImmediate(r))
    expect(out.records).toHaveLength(3)
    parser.write(Buffer.from("\n"))
    await new Promise((r) => setImmediate(r))
    expect(out.records.map((r) => [r.fields, r.bytes])).toEqual([
      [["a", "b"], 4],
      [["1", "2"], 8],
      [["3", "x"], 14],
      [["4", "5"], 19]
    ])
    await finish(parser)
  })

  const pieces = fc.constantFrom("x", "1", " ", "\"", "\"\"", ",", ";", "\u00a7", "\n", "\r", "\r\n", "\u00e9")
  it("property: cut anywhere, the input parses as csv-parse parses it whole", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(pieces, { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom(",", ";", "\u00a7"),
        async (parts, cuts, delimiter) => {
          const input = Buffer.from(parts.join(""), "utf8")
          const whole = newParser(delimiter, false)
          whole.parser.write(input)
          await finish(whole.parser)
          const chunked = newParser(delimiter, true)
          const at = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b)
          let from = 0
          for (const cut of [...at, input.length]) {
            if (cut > from) chunked.parser.write(input.subarray(from, cut))
            from = cut
          }
          await finish(chunked.parser)
          expect(chunked.out).toEqual(whole.out)
        }
      ),
      { numRuns: 400 }
    )
  })
})

// ---------------------------------------------------------------------------
// Named pipes

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const fifo = (name: string): string | undefined => {
  const path = join(tmp.dir, name)
  const r = spawnSync("mkfifo", [path])
  if (r.error !== undefined || r.status !== 0) {
    console.warn(`arrival: mkfifo unavailable (${r.error?.message ?? r.stderr.toString()}); pipe tests not run`)
    return undefined
  }
  return path
}

/** Opens the write end once the reader has opened the pipe (ENXIO until then). */
const openWriter = async (path: string): Promise<number> => {
  for (let i = 0; i < 200; i++) {
    try {
      return openSync(path, constants.O_WRONLY | constants.O_NONBLOCK)
    } catch (error) {
      if ((error as { code?: string }).code !== "ENXIO") throw error
    }
    await sleep(25)
  }
  throw new Error("the source never opened the pipe")
}

/**
 * Reads `source` in a fiber while the test writes `first` to the pipe, waits until
 * `expected` items have come (the writer still open), then writes `rest` and closes.
 */
const readWhileWriting = async (source: SourceInstance, path: string, first: string, expected: number, rest: string) => {
  const seen: Array<SourceItem> = []
  const fiber = Effect.runFork(
    Stream.runForEachChunk(source.read, (chunk) => Effect.sync(() => seen.push(...Chunk.toReadonlyArray(chunk))))
  )
  const fd = await openWriter(path)
  try {
    writeSync(fd, first)
    for (let i = 0; i < 200 && seen.length < expected; i++) await sleep(25)
    const beforeClose = seen.length
    writeSync(fd, rest)
    closeSync(fd)
    await Effect.runPromise(Fiber.join(fiber))
    return { beforeClose, items: seen.map(withoutPosition) }
  } catch (error) {
    closeSync(fd)
    await Effect.runPromise(Fiber.interrupt(fiber))
    throw error
  }
}

describe("file sources on a pipe", () => {
  it("csv: rows already written are read before the writer writes more", async () => {
    const path = fifo("rows.csv")
    if (path === undefined) return
    const source = create(csvSource, { path, schema: { mode: "observed" }, on_validation_failure: "q" })
    const r = await readWhileWriting(source, path, "id,name\r\n1,a\r\n2,\"b\nc\"\n3,d\n", 3, "4,e\n")
    expect(r.beforeClose).toBe(3)
    expect(r.items).toEqual([
      { _tag: "Valid", row: { id: "1", name: "a" } },
      { _tag: "Valid", row: { id: "2", name: "b\nc" } },
      { _tag: "Valid", row: { id: "3", name: "d" } },
      { _tag: "Valid", row: { id: "4", name: "e" } }
    ])
  })

  it("jsonl: lines already written are read before the writer writes more", async () => {
    const path = fifo("rows.jsonl")
    if (path === undefined) return
    const source = create(jsonSource, { path, format: "jsonl", schema: { mode: "observed" }, on_validation_failure: "q" })
    const r = await readWhileWriting(source, path, "{\"id\": 1}\r\n{\"id\": 2}\n", 2, "{\"id\": 3}")
    expect(r.beforeClose).toBe(2)
    expect(r.items).toEqual([1, 2, 3].map((id) => ({ _tag: "Valid", row: { id } })))
  })
})
