/**
 * Hostile input through the built CLI: every bad row is quarantined with its reason
 * and raw text, every other row completes, the run completes, and the audit trail
 * holds exact values and passes the Landscape invariants.
 */
import { afterAll, describe, expect, it } from "vitest"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { runCli } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const dir = tempDir("rl-input-safety-")
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Outcome {
  readonly result: Record<string, unknown>
  readonly db: string
  /** The rows the default sink wrote (JSON Lines). */
  readonly output: ReadonlyArray<string>
  /** The quarantined payloads the quarantine sink wrote, parsed. */
  readonly quarantined: ReadonlyArray<Record<string, unknown>>
  /** validation_errors of the run: error text and recorded payload. */
  readonly errors: ReadonlyArray<{ error: string; row_json: string }>
  /** rows.source_data_json of the run, in source order. */
  readonly trail: ReadonlyArray<string>
  /** Terminal outcomes by kind. */
  readonly outcomes: Record<string, number>
}

const linesOf = (path: string): Array<string> =>
  existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l !== "") : []

/**
 * Runs `source → [top-level steps] → output` with invalid rows to `quarantine` (both
 * JSONL sinks) through the CLI. `options` are more source options (YAML lines).
 */
const run = async (
  name: string,
  input: string | Buffer,
  inputName: string,
  source: string,
  options: string,
  more: { readonly steps?: string; readonly sinks?: string } = {}
): Promise<Outcome> => {
  const inputPath = join(dir, name, inputName)
  const out = join(dir, name, "out.jsonl")
  const quarantine = join(dir, name, "quarantine.jsonl")
  const db = join(dir, name, "audit.db")
  rmSync(join(dir, name), { recursive: true, force: true })
  const settings = join(dir, `${name}.yaml`)
  writeFileSync(settings, `
source:
  plugin: ${source}
  options:
    path: ${inputPath}
    on_validation_failure: quarantine
${options}
${more.steps ?? ""}
sinks:
  output: {plugin: json, options: {path: ${out}, format: jsonl, schema: {mode: observed}}}
  quarantine: {plugin: json, options: {path: ${quarantine}, format: jsonl, schema: {mode: observed}}}
${more.sinks ?? ""}
default_sink: output
`)
  mkdirSync(join(dir, name), { recursive: true })
  writeFileSync(inputPath, input)
  const r = runCli(["run", "-s", settings, "--db", db, "--json"])
  expect(r.stderr).not.toMatch(/internal error|Maximum call stack/)
  expect(r.status, r.stderr).toBe(0)
  const result = JSON.parse(r.stdout) as Record<string, unknown>
  const runId = result.run_id as string
  await checkInvariantsIn(db, runId)
  const conn = new Database(db, { readonly: true })
  try {
    const errors = conn.prepare("SELECT error, row_json FROM validation_errors WHERE run_id = ? ORDER BY created_at, error_id").all(runId) as Array<{ error: string; row_json: string }>
    const trail = (conn.prepare("SELECT source_data_json FROM rows WHERE run_id = ? ORDER BY row_index").all(runId) as Array<{ source_data_json: string }>)
      .map((r) => r.source_data_json)
    const outcomes: Record<string, number> = {}
    for (const o of conn.prepare("SELECT outcome, COUNT(*) AS n FROM token_outcomes WHERE run_id = ? AND is_terminal = 1 GROUP BY outcome").all(runId) as Array<{ outcome: string; n: number }>) {
      outcomes[o.outcome] = o.n
    }
    return {
      result,
      db,
      output: linesOf(out),
      quarantined: linesOf(quarantine).map((l) => JSON.parse(l) as Record<string, unknown>),
      errors,
      trail,
      outcomes
    }
  } finally {
    conn.close()
  }
}

const expectCounts = (o: Outcome, succeeded: number, quarantined: number) => {
  expect(o.result.status).toBe("completed")
  expect(o.result.rows_processed).toBe(succeeded + quarantined)
  expect(o.result.rows_succeeded).toBe(succeeded)
  expect(o.result.rows_quarantined).toBe(quarantined)
  expect(o.result.rows_failed).toBe(0)
  expect(o.outcomes).toEqual({ ...(succeeded > 0 ? { COMPLETED: succeeded } : {}), ...(quarantined > 0 ? { QUARANTINED: quarantined } : {}) })
  expect(o.errors).toHaveLength(quarantined)
  expect(o.trail).toHaveLength(succeeded + quarantined)
}

const observedJson = (format: "json" | "jsonl") => `    format: ${format}\n    schema: {mode: observed}`
const deep = (depth: number) => `{"deep": ${"[".repeat(depth - 1)}1${"]".repeat(depth - 1)}}`

describe("input safety through the CLI", () => {
  it("JSONL nested 5,000 levels: that line is quarantined with its raw text, the run goes on", async () => {
    const bad = deep(5000)
    const o = await run("deep-jsonl", `{"id": 1}\n${bad}\n{"id": 3}\n`, "in.jsonl", "json", observedJson("jsonl"))
    expectCounts(o, 2, 1)
    expect(o.output).toEqual([`{"id": 1}`, `{"id": 3}`])
    expect(o.quarantined).toEqual([{ __raw_line__: bad, __line_number__: 2 }])
    expect(o.errors[0]!.error).toMatch(/^line 2: too deeply nested: nested deeper than 1000 levels/)
    expect(JSON.parse(o.errors[0]!.row_json)).toEqual({ __raw_line__: bad, __line_number__: 2 })
  })

  it("a JSON array with an element nested 5,000 levels: that element is quarantined, the others complete", async () => {
    const bad = deep(5000)
    const o = await run("deep-array", `[{"id": 1},\n${bad},\n{"id": 3}]`, "in.json", "json", observedJson("json"))
    expectCounts(o, 2, 1)
    expect(o.output).toEqual([`{"id": 1}`, `{"id": 3}`])
    expect(o.quarantined).toEqual([{ __raw_text__: bad, __element_index__: 1, __line_number__: 2 }])
  })

  it("a row at the depth limit goes through a gate and into JSON and CSV sinks", async () => {
    const row = deep(1000)
    const o = await run("deep-limit", `${row}\n{"deep": 2}\n`, "in.jsonl", "json", observedJson("jsonl"), {
      steps: `gates:
  - name: has_list
    condition: "row['deep'] != 2"
    routes: {"true": lists, "false": continue}`,
      sinks: `  lists: {plugin: csv, options: {path: ${join(dir, "deep-limit", "lists.csv")}, schema: {mode: observed}}}`
    })
    expect(o.result.status).toBe("completed")
    expect(o.result.rows_routed).toBe(1)
    expect(o.output).toEqual([`{"deep": 2}`])
    const csv = readFileSync(join(dir, "deep-limit", "lists.csv"), "utf8")
    expect(csv).toContain("[".repeat(999) + "1" + "]".repeat(999))
    expect(o.trail[0]).toBe(JSON.stringify(JSON.parse(row)))
  })

  it("1e400 quarantines its row with the raw text; the rest of the file is read", async () => {
    const o = await run("inf", `{"x": 1}\n{"x": 1e400}\n{"x": 3}\n`, "in.jsonl", "json", observedJson("jsonl"))
    expectCounts(o, 2, 1)
    expect(o.output).toEqual([`{"x": 1}`, `{"x": 3}`])
    expect(o.quarantined).toEqual([{ __raw_line__: `{"x": 1e400}`, __line_number__: 2 }])
    expect(o.errors[0]!.error).toBe("line 2: unusable number: number 1e400 at $.x is out of range (not a finite float)")
  })

  it("2^53+1 under `int` stays exact: in the sink, in the trail and in a gate", async () => {
    const o = await run("exact", `{"id": 9007199254740993}\n{"id": 9007199254740992}\n{"id": 5}\n`, "in.jsonl", "json", `    format: jsonl
    schema: {mode: fixed, fields: ["id: int"]}`, {
      steps: `gates:
  - name: above
    condition: "row['id'] > 9007199254740992"
    routes: {"true": high, "false": continue}`,
      sinks: `  high: {plugin: json, options: {path: ${join(dir, "exact", "high.jsonl")}, format: jsonl, schema: {mode: observed}}}`
    })
    expect(o.result.status).toBe("completed")
    expect(o.result.rows_processed).toBe(3)
    expect(o.result.rows_routed).toBe(1)
    expect(o.output).toEqual([`{"id": 9007199254740992}`, `{"id": 5}`])
    const high = linesOf(join(dir, "exact", "high.jsonl"))
    expect(high).toEqual([`{"id": 9007199254740993}`])
    // The trail's canonical form writes a bigint as its decimal digits.
    expect(o.trail).toEqual([`{"id":"9007199254740993"}`, `{"id":"9007199254740992"}`, `{"id":5}`])
    expect(o.errors).toHaveLength(0)
  }, 60_000)

  it("2^53+1 with no schema or an `any` field is quarantined with the reason, never rounded", async () => {
    for (const [name, schema] of [["big-observed", "{mode: observed}"], ["big-any", `{mode: fixed, fields: ["id: any"]}`]] as const) {
      const o = await run(name, `{"id": 9007199254740993}\n{"id": 7}\n`, "in.jsonl", "json", `    format: jsonl\n    schema: ${schema}`)
      expectCounts(o, 1, 1)
      expect(o.output).toEqual([`{"id": 7}`])
      expect(o.quarantined).toEqual([{ __raw_line__: `{"id": 9007199254740993}`, __line_number__: 1 }])
      expect(o.errors[0]!.error).toContain("integer 9007199254740993 at $.id is beyond ±(2^53−1)")
      expect(o.trail[0]).toContain("9007199254740993")
      expect(o.trail.join("\n")).not.toContain("9007199254740992")
    }
  }, 60_000)

  it("an unterminated CSV quote is quarantined with the raw text, after the rows before it", async () => {
    const o = await run("csv-quote", `id,name\n1,a\n2,b\n3,"never closed\n4,d\n`, "in.csv", "csv", `    schema: {mode: observed}`)
    expectCounts(o, 2, 1)
    expect(o.output).toEqual([`{"id": "1", "name": "a"}`, `{"id": "2", "name": "b"}`])
    expect(o.quarantined).toEqual([{ __raw_line__: `3,"never closed\n4,d\n`, __line_number__: 5, __row_number__: 3 }])
    expect(o.errors[0]!.error).toContain("the record starting at line 4 is never closed")
  })

  it("a truncated JSON array: the complete elements go through, the cut-off rest is quarantined as raw text", async () => {
    const o = await run("truncated", `[\n  {"id": 1},\n  {"id": 2},\n  {"id": 3, "na`, "in.json", "json", observedJson("json"))
    expectCounts(o, 2, 1)
    expect(o.output).toEqual([`{"id": 1}`, `{"id": 2}`])
    expect(o.quarantined).toEqual([{
      file_path: join(dir, "truncated", "in.json"),
      parse_error: "element 2 (line 4) onwards: the input ends inside a string",
      __raw_text__: `{"id": 3, "na`,
      __line_number__: 4
    }])
  })
})
