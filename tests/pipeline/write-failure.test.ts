/**
 * `on_write_failure` in the engine, in process, with durability points every 3 rows:
 * a failsink that also receives rows of its own writes them and the diverted rows in
 * the order they reached their sinks, whatever the commit boundaries; a failsink
 * discards its own rows it cannot write; a failsink that cannot write a diverted row
 * fails the run with that row FAILED.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { assertLandscapeInvariants } from "../support/invariants.js"
import { query, runSettings, tempDir, TestLandscape, writeFile } from "../support/pipeline.js"

/**
 * 30 rows: every 4th has a field the out sink has no column for, every 5th an id that
 * is not an int (quarantined to the failsink), and some of those a field of their own.
 */
const ROWS = Array.from({ length: 30 }, (_, i) => ({
  id: i % 5 === 2 ? `bad${i}` : i,
  name: `n${i}`,
  ...(i % 4 === 1 ? { note: `x${i}` } : {}),
  ...(i % 5 === 2 && i % 4 === 3 ? { why: "odd" } : {})
}))
const isBad = (i: number) => i % 5 === 2
const hasNote = (i: number) => i % 4 === 1
const hasWhy = (i: number) => isBad(i) && i % 4 === 3

const settings = (dir: string, input: string, failed: string) => `
source:
  plugin: json
  options:
    path: ${input}
    schema: {mode: flexible, fields: ["id: int", "name: str"]}
    on_validation_failure: failed
sinks:
  out:
    plugin: csv
    options: {path: ${join(dir, "out.csv")}, schema: {mode: fixed, fields: ["id: int", "name: str"]}}
    on_write_failure: failed
  failed:
${failed}
default_sink: out
`

describe("on_write_failure in the engine", () => {
  it.scopedLive("a failsink writes its own rows and the diverted rows in the order they reached their sinks", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.jsonl", ROWS.map((r) => JSON.stringify(r)).join("\n") + "\n")
      const r = yield* runSettings(settings(dir, input, `    plugin: json
    options: {path: ${join(dir, "failed.jsonl")}, schema: {mode: observed}}
    on_write_failure: discard`))
      const result = Either.getOrThrow(r)
      yield* assertLandscapeInvariants(result.run_id)
      const diverted = ROWS.filter((_, i) => !isBad(i) && hasNote(i)).length
      const quarantined = ROWS.filter((_, i) => isBad(i)).length
      assert.deepInclude(result, { status: "completed", rows_diverted: diverted, rows_quarantined: quarantined })
      const failed = readFileSync(join(dir, "failed.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      const expected = ROWS.flatMap((row, i) => (isBad(i) || hasNote(i) ? [row.name] : []))
      assert.deepStrictEqual(failed.map((f) => f.name), expected)
      for (const f of failed) {
        const i = Number(String(f.name).slice(1))
        if (isBad(i)) assert.isUndefined(f.__diverted_from)
        else assert.strictEqual(f.__diverted_from, "out")
      }
      assert.strictEqual(
        readFileSync(join(dir, "out.csv"), "utf8"),
        "id,name\r\n" + ROWS.flatMap((row, i) => (isBad(i) || hasNote(i) ? [] : [`${row.id},${row.name}\r\n`])).join("")
      )
    }).pipe(Effect.provide(TestLandscape)))

  it.scopedLive("a failsink discards its own rows it cannot write (its on_write_failure: discard)", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.jsonl", ROWS.map((r) => JSON.stringify(r)).join("\n") + "\n")
      // The csv failsink's columns come from its first row, a diverted one (row 1): its
      // own quarantined rows lack the diversion fields, which is fine, but a `why` is
      // no column of it.
      const r = yield* runSettings(settings(dir, input, `    plugin: csv
    options: {path: ${join(dir, "failed.csv")}, schema: {mode: observed}}
    on_write_failure: discard`))
      const result = Either.getOrThrow(r)
      yield* assertLandscapeInvariants(result.run_id)
      const outcomes = yield* query<{ outcome: string; sink_name: string | null; n: number }>(
        `SELECT outcome, sink_name, COUNT(*) AS n FROM token_outcomes WHERE is_terminal = 1 GROUP BY outcome, sink_name ORDER BY outcome, sink_name`
      )
      const withWhy = ROWS.filter((_, i) => hasWhy(i)).length
      assert.isAbove(withWhy, 0)
      assert.deepStrictEqual(outcomes.filter((o) => o.outcome !== "COMPLETED").map((o) => ({ ...o })), [
        { outcome: "DIVERTED", sink_name: null, n: withWhy },
        { outcome: "DIVERTED", sink_name: "failed", n: ROWS.filter((_, i) => !isBad(i) && hasNote(i)).length },
        { outcome: "QUARANTINED", sink_name: "failed", n: ROWS.filter((_, i) => isBad(i) && !hasWhy(i)).length }
      ])
      const discarded = yield* query<{ context_json: string }>(`SELECT context_json FROM token_outcomes WHERE outcome = 'DIVERTED' AND sink_name IS NULL`)
      assert.deepStrictEqual(JSON.parse(discarded[0]!.context_json), {
        reason: "write_failure",
        sink: "failed",
        destination: "discard",
        error: "dict contains fields not in fieldnames: 'why'"
      })
    }).pipe(Effect.provide(TestLandscape)))

  it.scopedLive("a failsink that cannot write a diverted row fails the run; the row ends FAILED", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const input = writeFile(dir, "in.jsonl", ROWS.map((r) => JSON.stringify(r)).join("\n") + "\n")
      const r = yield* runSettings(settings(dir, input, `    plugin: csv
    options: {path: ${join(dir, "failed.csv")}, schema: {mode: fixed, fields: ["id: any", "name: str", "note: str?"]}}
    on_write_failure: discard`))
      assert.isTrue(Either.isLeft(r))
      const error = Either.getLeft(r).pipe((o) => (o._tag === "Some" ? o.value : undefined))!
      assert.include(error.message, "failsink 'failed' (csv) could not write")
      assert.include(error.message, "dict contains fields not in fieldnames: '__diversion_reason', '__diverted_from', '__diversion_timestamp'")
      const runId = error._tag === "PipelineRunError" ? error.runId : undefined
      assert.isDefined(runId)
      yield* assertLandscapeInvariants(runId!)
      const failed = yield* query<{ context_json: string }>(`SELECT context_json FROM token_outcomes WHERE outcome = 'FAILED'`)
      assert.isAbove(failed.length, 0)
      assert.deepStrictEqual(JSON.parse(failed[0]!.context_json), { sink: "out", reason: "failsink_write_failed", failsink: "failed" })
      const diverted = yield* query<{ n: number }>(`SELECT COUNT(*) AS n FROM token_outcomes WHERE outcome = 'DIVERTED'`)
      assert.strictEqual(diverted[0]!.n, 0)
    }).pipe(Effect.provide(TestLandscape)))
})
