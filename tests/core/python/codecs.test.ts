import { readFileSync } from "node:fs"
import { join } from "node:path"
import { assert, it as effectIt } from "@effect/vitest"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { decodeChecked, decodeLossy, resolveEncoding } from "../../../src/core/python/codecs.js"
import { csvSource } from "../../../src/pipeline/plugins/sources/csv.js"
import { jsonSource } from "../../../src/pipeline/plugins/sources/json.js"
import { create, invalid, makeTempDir, readAll, readError, valid } from "../../pipeline/plugins/sources/support.js"
import { query, runSettings, tempDir, TestLandscape, writeFile } from "../../support/pipeline.js"

/** Python's `bytes([b]).decode("cp1252")` for 0x80–0x9F; undefined where Python raises UnicodeDecodeError. */
const PYTHON_CP1252_80_9F: ReadonlyArray<number | undefined> = [
  0x20ac, undefined, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, undefined,
  0x017d, undefined, undefined, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161,
  0x203a, 0x0153, undefined, 0x017e, 0x0178
]
const UNDEFINED_BYTES = [0x81, 0x8d, 0x8f, 0x90, 0x9d]

const tmp = makeTempDir()
afterAll(() => tmp.cleanup())

const observed = { mode: "observed" }
const csv = (path: string) =>
  create(csvSource, { path, schema: observed, on_validation_failure: "quarantine", encoding: "cp1252" })
const json = (path: string) =>
  create(jsonSource, { path, schema: observed, on_validation_failure: "quarantine", encoding: "windows-1252" })

const bytes = (...parts: ReadonlyArray<string | ReadonlyArray<number>>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))))

describe("the cp1252 codec", () => {
  it("passes an undefined byte on as a byte that is not valid UTF-8", () => {
    const transcode = resolveEncoding("cp1252")!.makeTranscoder()
    for (const b of UNDEFINED_BYTES) {
      const out = transcode(bytes("a", [b, 0x80], "z"))
      expect(decodeChecked(out)).toBeUndefined()
      expect(decodeLossy(out)).toBe("a\ufffd€z")
    }
    expect(decodeChecked(transcode(bytes("a", [0x80, 0x9f], "z")))).toBe("a€Ÿz")
  })
})

describe("cp1252 through the file sources", () => {
  it("decodes every defined byte as Python does", async () => {
    const defined = Array.from({ length: 0x80 }, (_, i) => 0x80 + i).filter((b) => !UNDEFINED_BYTES.includes(b))
    const path = tmp.file("defined.csv", bytes("c\n", ...defined.map((b) => [b, 0x0a])))
    const expected = defined.map((b) => ({ c: String.fromCodePoint(b < 0xa0 ? PYTHON_CP1252_80_9F[b - 0x80]! : b) }))
    expect(valid(await readAll(csv(path)))).toEqual(expected)
  })

  it("makes a CSV row holding an undefined byte invalid, naming its line, and reads on", async () => {
    const path = tmp.file("undefined.csv", bytes("id,name\n1,ok\n", ...UNDEFINED_BYTES.flatMap((b, i) => [`${i + 2},a`, [b], "b\n"]), "7,caf", [0xe9, 0x80], "\n"))
    const items = await readAll(csv(path))
    expect(items.map((i) => i._tag)).toEqual(["Valid", "Invalid", "Invalid", "Invalid", "Invalid", "Invalid", "Valid"])
    invalid(items).forEach((item, i) => {
      expect(item.error).toBe(`line ${i + 3}: not valid cp1252 text`)
      expect(item.raw).toEqual({ __raw_line__: `${i + 2},a\ufffdb`, __line_number__: i + 3, __row_number__: i + 2 })
    })
    expect(valid(items)).toEqual([{ id: "1", name: "ok" }, { id: "7", name: "café€" }])
  })

  it("finds an undefined byte that starts a later read chunk", async () => {
    // The header is 2 bytes and the file is read 64 KiB at a time: the byte at offset 65536 starts the second chunk.
    const path = tmp.file("chunked.csv", bytes("c\n", "a".repeat(65_533), [0x80, 0x8f, 0x80], "\nok\n"))
    const items = await readAll(csv(path))
    expect(items.map((i) => i._tag)).toEqual(["Invalid", "Valid"])
    expect((invalid(items)[0]!.raw as { __raw_line__: string }).__raw_line__).toBe(`${"a".repeat(65_533)}€\ufffd€`)
  })

  it("stops the run when the CSV header holds an undefined byte", async () => {
    const error = await readError(csv(tmp.file("header.csv", bytes("id,n", [0x90], "me\n1,a\n"))))
    expect(error.message).toMatch(/the header \(line 1\) is not valid cp1252 text/)
  })

  it("makes a JSONL line holding an undefined byte invalid, naming its line", async () => {
    const items = await readAll(json(tmp.file("lines.jsonl", bytes("{\"a\": \"", [0x80], "\"}\n{\"a\": \"", [0x9d], "\"}\n{\"a\": 1}\n"))))
    expect(valid(items)).toEqual([{ a: "€" }, { a: 1 }])
    expect(invalid(items).map((i) => [i.error, i.raw])).toEqual([
      ["line 2: not valid cp1252 text", { __raw_line__: "{\"a\": \"\ufffd\"}", __line_number__: 2 }]
    ])
  })

  it("makes the JSON array element holding an undefined byte invalid, and reads the next one", async () => {
    const path = tmp.file("array.json", bytes("[{\"a\": \"", [0x8d], "\"}, {\"a\": \"ok\"}]"))
    const items = await readAll(json(path))
    expect(items).toEqual([
      {
        _tag: "Invalid",
        raw: { __element_index__: 0, __line_number__: 1, __raw_text__: "{\"a\": \"\ufffd\"}" },
        error: "element 0 (line 1): not valid cp1252 text"
      },
      { _tag: "Valid", row: { a: "ok" } }
    ])
  })
})

describe("cp1252 in a pipeline", () => {
  effectIt.scoped("quarantines the row with the undefined byte and records why", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.csv", bytes("id,name\n1,caf", [0xe9], "\n2,x", [0x81], "y\n3,z\n"))
      const result = Either.getOrThrow(yield* runSettings(`
source:
  plugin: csv
  options:
    path: ${input}
    encoding: cp1252
    schema: {mode: fixed, fields: ["id: int", "name: str"]}
    on_validation_failure: quarantine
sinks:
  out:
    plugin: json
    options: {path: ${join(dir, "out.jsonl")}, schema: {mode: observed}}
  quarantine:
    plugin: json
    options: {path: ${join(dir, "quarantine.jsonl")}, schema: {mode: observed}}
default_sink: out
`))
      assert.deepInclude(result, { status: "completed", rows_processed: 3, rows_succeeded: 2, rows_quarantined: 1 })
      const errors = yield* query<{ error: string; destination: string }>(`SELECT error, destination FROM validation_errors`)
      assert.deepStrictEqual(errors.map((e) => [e.destination, e.error.includes("line 3: not valid cp1252 text")]), [["quarantine", true]])
      const lines = (name: string) => readFileSync(join(dir, name), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      assert.deepStrictEqual(lines("out.jsonl"), [{ id: 1, name: "café" }, { id: 3, name: "z" }])
      assert.deepStrictEqual(lines("quarantine.jsonl"), [{ __raw_line__: "2,x\ufffdy", __line_number__: 3, __row_number__: 2 }])
    }).pipe(Effect.provide(TestLandscape)))
})
