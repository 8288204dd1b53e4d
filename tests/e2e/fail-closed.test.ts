/**
 * The core plugins fail closed, as ELSPETH does: each case below used to exit 0 with
 * silently wrong data. Small pipelines run through the built CLI; each test checks the
 * outputs, the exit code, the audit outcomes and the message.
 */
import { afterAll, describe, expect, it } from "vitest"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { type CliResult, runCli } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const root = tempDir("rl-fail-closed-")
afterAll(() => rmSync(root, { recursive: true, force: true }))

/** A JSON Lines sink named `name` writing `<name>.jsonl`. */
const sink = (name: string) => `  ${name}: {plugin: json, options: {path: ${name}.jsonl, format: jsonl, schema: {mode: observed}}}\n`

interface Outcome {
  readonly row_index: number
  readonly outcome: string
  readonly sink_name: string | null
  readonly context: Record<string, unknown> | null
}

interface Case {
  readonly cli: CliResult
  readonly dir: string
  /** The RunResult `--json` printed, if the run started. */
  readonly result: Record<string, unknown> | undefined
  /** The `runledger: ` lines on stderr. */
  readonly errors: ReadonlyArray<string>
  /** The `warning: ` lines on stderr. */
  readonly warnings: ReadonlyArray<string>
  /** The rows a JSON Lines sink wrote (none when it wrote no file). */
  readonly rows: (sinkName: string) => ReadonlyArray<Record<string, unknown>>
  /** Terminal outcomes of the run, by source row then token creation. */
  readonly outcomes: () => ReadonlyArray<Outcome>
  /** `error_details_json` of the run's transform errors, parsed, by source row. */
  readonly transformErrors: () => ReadonlyArray<Record<string, unknown>>
}

let cases = 0

/** Writes `files` and `settings.yaml` into a fresh folder and runs `command` there. */
const runCase = async (
  settings: string,
  files: Readonly<Record<string, string | Buffer>>,
  command: "run" | "validate" = "run"
): Promise<Case> => {
  const dir = join(root, `case-${cases++}`)
  mkdirSync(dir, { recursive: true })
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
  writeFileSync(join(dir, "settings.yaml"), settings)
  const db = join(dir, "audit.db")
  const args = command === "run" ? ["run", "-s", "settings.yaml", "--db", db, "--json"] : ["validate", "-s", "settings.yaml"]
  const cli = runCli(args, { cwd: dir })
  expect(cli.stderr).not.toMatch(/internal error/)
  const result = command === "run" && cli.stdout !== "" ? JSON.parse(cli.stdout) as Record<string, unknown> : undefined
  if (result !== undefined) await checkInvariantsIn(db, result.run_id as string)
  const query = <A>(sql: string): Array<A> => {
    const conn = new Database(db, { readonly: true })
    try {
      return conn.prepare(sql).all(result!.run_id) as Array<A>
    } finally {
      conn.close()
    }
  }
  const lines = cli.stderr.split("\n")
  return {
    cli,
    dir,
    result,
    errors: lines.filter((l) => l.startsWith("runledger: ")),
    warnings: lines.filter((l) => l.startsWith("warning: ")),
    rows: (name) => {
      const path = join(dir, `${name}.jsonl`)
      if (!existsSync(path)) return []
      return readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>)
    },
    outcomes: () =>
      query<{ row_index: number; outcome: string; sink_name: string | null; context_json: string | null }>(`
        SELECT r.row_index, o.outcome, o.sink_name, o.context_json FROM token_outcomes o
        JOIN tokens t ON t.token_id = o.token_id JOIN rows r ON r.row_id = t.row_id
        WHERE o.run_id = ? AND o.is_terminal = 1 ORDER BY r.row_index, t.created_at, t.token_id`)
        .map((o) => ({ ...o, context: o.context_json === null ? null : JSON.parse(o.context_json) as Record<string, unknown>, context_json: undefined }))
        .map(({ context, outcome, row_index, sink_name }) => ({ row_index, outcome, sink_name, context })),
    transformErrors: () =>
      query<{ error_details_json: string }>(`
        SELECT e.error_details_json FROM transform_errors e JOIN tokens t ON t.token_id = e.token_id
        JOIN rows r ON r.row_id = t.row_id WHERE e.run_id = ? ORDER BY r.row_index`)
        .map((e) => JSON.parse(e.error_details_json) as Record<string, unknown>)
  }
}

const csvSource = (path: string, options = "schema: {mode: observed}") =>
  `source: {plugin: csv, options: {path: ${path}, ${options}, on_validation_failure: bad}}\n`
const jsonlSource = (path: string) =>
  `source: {plugin: json, options: {path: ${path}, format: jsonl, schema: {mode: observed}, on_validation_failure: bad}}\n`

describe("fail closed through the CLI", () => {
  it("batch_stats with group_by: a batch holding two groups fails the run, never a summary under one group's label", async () => {
    const c = await runCase(
      csvSource("in.csv", "schema: {mode: fixed, fields: ['id: int', 'cat: str', 'amount: int']}") +
        "aggregations:\n" +
        "  - name: totals\n    plugin: batch_stats\n    trigger: {count: 2}\n" +
        "    options: {schema: {mode: observed}, value_field: amount, group_by: cat}\n" +
        "sinks:\n" + sink("out") + sink("bad") + "default_sink: out\n",
      { "in.csv": "id,cat,amount\n1,a,10\n2,a,20\n3,a,1\n4,b,2\n" }
    )
    expect(c.cli.status, c.cli.stderr).toBe(1)
    expect(c.result?.status).toBe("failed")
    expect(c.errors).toHaveLength(1)
    expect(c.errors[0]).toMatch(
      new RegExp(`^runledger: run ${c.result!.run_id as string} failed: .*aggregation 'totals' failed: .*` +
        "the batch mixes values of group_by field 'cat': row 0 has 'a', row 1 has 'b'")
    )
    // The first (one-group) batch's summary stays written; nothing summarises the mixed one, whose members failed.
    expect(c.rows("out")).toEqual([{ count: 2, sum: 30, batch_size: 2, mean: 15, cat: "a" }])
    expect(c.outcomes().map((o) => [o.row_index, o.outcome])).toEqual([
      [0, "CONSUMED_IN_BATCH"],
      [0, "COMPLETED"],
      [1, "CONSUMED_IN_BATCH"],
      [2, "FAILED"],
      [3, "FAILED"]
    ])
  })

  it("json_explode of an empty list: an error result routed to on_error (and without on_error, a failed run)", async () => {
    const input = "{\"id\": 1, \"items\": [\"a\", \"b\"]}\n{\"id\": 2, \"items\": []}\n{\"id\": 3, \"items\": [\"c\"]}\n"
    const explode = (onError: string) =>
      jsonlSource("in.jsonl") +
      `transforms:\n  - plugin: json_explode\n    options: {schema: {mode: observed}, array_field: items${onError}}\n` +
      "sinks:\n" + sink("out") + sink("bad") + (onError === "" ? "" : sink("empty")) + "default_sink: out\n"
    const c = await runCase(explode(", on_error: empty"), { "in.jsonl": input })
    expect(c.cli.status, c.cli.stderr).toBe(0)
    expect(c.result).toMatchObject({ status: "completed", rows_processed: 3, rows_succeeded: 3, rows_routed: 1, rows_expanded: 2 })
    expect(c.rows("out")).toEqual([
      { id: 1, item: "a", item_index: 0 },
      { id: 1, item: "b", item_index: 1 },
      { id: 3, item: "c", item_index: 0 }
    ])
    expect(c.rows("out").some((r) => r.item === null)).toBe(false)
    expect(c.rows("empty")).toEqual([{ id: 2, items: [] }])
    expect(c.outcomes().filter((o) => o.row_index === 1)).toEqual([
      { row_index: 1, outcome: "ROUTED", sink_name: "empty", context: { reason: "transform_error", node: "json_explode_0" } }
    ])
    expect(c.transformErrors()).toEqual([{ reason: "invalid_input", field: "items", error: "empty array", retryable: false, attempt: 1 }])

    const strict = await runCase(explode(""), { "in.jsonl": input })
    expect(strict.cli.status).toBe(1)
    expect(strict.result?.status).toBe("failed")
    expect(strict.errors[0]).toMatch(/returned an error for row 1 and has no on_error: .*"empty array"/)
  })

  it("field_mapper with two sources mapped to one target is a config error naming the key and both sources", async () => {
    const settings = csvSource("in.csv") +
      "transforms:\n  - plugin: field_mapper\n    options: {schema: {mode: observed}, mapping: {first: name, last: name}}\n" +
      "sinks:\n" + sink("out") + sink("bad") + "default_sink: out\n"
    for (const command of ["run", "validate"] as const) {
      const c = await runCase(settings, { "in.csv": "first,last\nAda,Lovelace\n" }, command)
      expect(c.cli.status, command).toBe(2)
      expect(c.errors).toEqual([
        "runledger: settings.yaml: transforms[0].options.mapping.last: sources 'first' and 'last' both map to target 'name': " +
        "the value of one would be lost; map each to its own target"
      ])
      expect(existsSync(join(c.dir, "out.jsonl"))).toBe(false)
    }
  })

  it("truncate of a non-string: a type_mismatch error for on_error, not passed through", async () => {
    const c = await runCase(
      jsonlSource("in.jsonl") +
        "transforms:\n  - plugin: truncate\n    options: {schema: {mode: observed}, fields: {title: 5}, on_error: mismatched}\n" +
        "sinks:\n" + sink("out") + sink("bad") + sink("mismatched") + "default_sink: out\n",
      { "in.jsonl": "{\"id\": 1, \"title\": \"a long title\"}\n{\"id\": 2, \"title\": 1234567}\n{\"id\": 3, \"title\": [\"x\"]}\n" }
    )
    expect(c.cli.status, c.cli.stderr).toBe(0)
    expect(c.result).toMatchObject({ status: "completed", rows_succeeded: 1, rows_routed: 2, routed_destinations: { mismatched: 2 } })
    expect(c.rows("out")).toEqual([{ id: 1, title: "a lon" }])
    expect(c.rows("mismatched")).toEqual([{ id: 2, title: 1234567 }, { id: 3, title: ["x"] }])
    expect(c.outcomes().map((o) => [o.outcome, o.sink_name])).toEqual([["COMPLETED", "out"], ["ROUTED", "mismatched"], ["ROUTED", "mismatched"]])
    expect(c.transformErrors()).toEqual([
      { reason: "type_mismatch", field: "title", expected: "str", actual: "int", retryable: false, attempt: 1 },
      { reason: "type_mismatch", field: "title", expected: "str", actual: "list", retryable: false, attempt: 1 }
    ])
  })

  it("keyword_filter on a named field that is not a string fails closed: non_string_field to on_error", async () => {
    const c = await runCase(
      jsonlSource("in.jsonl") +
        "transforms:\n  - plugin: keyword_filter\n" +
        "    options: {schema: {mode: observed}, fields: [note], blocked_patterns: [\"(?i)secret\"], on_error: flagged}\n" +
        "sinks:\n" + sink("out") + sink("bad") + sink("flagged") + "default_sink: out\n",
      { "in.jsonl": "{\"id\": 1, \"note\": \"fine\"}\n{\"id\": 2, \"note\": {\"text\": \"SECRET\"}}\n{\"id\": 3, \"note\": \"top Secret\"}\n{\"id\": 4}\n" }
    )
    expect(c.cli.status, c.cli.stderr).toBe(0)
    expect(c.result).toMatchObject({ status: "completed", rows_succeeded: 2, rows_routed: 2 })
    expect(c.rows("out")).toEqual([{ id: 1, note: "fine" }, { id: 4 }])
    expect(c.rows("flagged")).toEqual([{ id: 2, note: { text: "SECRET" } }, { id: 3, note: "top Secret" }])
    expect(c.outcomes().map((o) => o.outcome)).toEqual(["COMPLETED", "ROUTED", "ROUTED", "COMPLETED"])
    const [nonString, blocked] = c.transformErrors()
    expect(nonString).toEqual({ reason: "non_string_field", field: "note", actual_type: "dict", retryable: false, attempt: 1 })
    expect(blocked).toMatchObject({ reason: "blocked_content", field: "note", matched_pattern: "(?i)secret" })
  })

  it("keyword_filter refuses a catastrophic-backtracking pattern and an empty one at load time (exit 2)", async () => {
    const filter = (patterns: string) =>
      csvSource("in.csv") +
      `transforms:\n  - plugin: keyword_filter\n    options: {schema: {mode: observed}, fields: a, blocked_patterns: ${patterns}, on_error: discard}\n` +
      "sinks:\n" + sink("out") + sink("bad") + "default_sink: out\n"
    const redos = await runCase(filter("[\"(?i)\\\\bsecret\\\\b\", \"(a+)+$\"]"), { "in.csv": "a\naaaa\n" })
    expect(redos.cli.status).toBe(2)
    expect(redos.errors).toHaveLength(1)
    expect(redos.errors[0]).toMatch(
      /^runledger: settings\.yaml: transforms\[0\]\.options\.blocked_patterns\[1\]: pattern '\(a\+\)\+\$' is refused: matching can take exponential time/
    )
    expect(existsSync(join(redos.dir, "out.jsonl"))).toBe(false)
    const empty = await runCase(filter("[\"ok\", \"\"]"), { "in.csv": "a\naaaa\n" }, "validate")
    expect(empty.cli.status).toBe(2)
    expect(empty.errors).toEqual([
      "runledger: settings.yaml: transforms[0].options.blocked_patterns[1]: an empty pattern matches every row, so every row would be blocked"
    ])
  })

  it("batch_replicate with copies 0: that row is QUARANTINED with its reason, the batch goes on; max_copies bounds the rest", async () => {
    const c = await runCase(
      csvSource("in.csv", "schema: {mode: fixed, fields: ['id: int', 'copies: int']}") +
        "aggregations:\n" +
        "  - name: rep\n    plugin: batch_replicate\n    trigger: {count: 4}\n" +
        "    options: {schema: {mode: observed}, max_copies: 3}\n" +
        "sinks:\n" + sink("out") + sink("bad") + "default_sink: out\n",
      { "in.csv": "id,copies\n1,2\n2,0\n3,9\n4,1\n" }
    )
    expect(c.cli.status, c.cli.stderr).toBe(0)
    expect(c.result).toMatchObject({ status: "completed", rows_processed: 4, rows_succeeded: 3, rows_quarantined: 2, rows_expanded: 2, rows_failed: 0 })
    expect(c.rows("out")).toEqual([
      { id: 1, copies: 2, copy_index: 0 },
      { id: 1, copies: 2, copy_index: 1 },
      { id: 4, copies: 1, copy_index: 0 }
    ])
    const refused = c.outcomes().filter((o) => o.outcome === "QUARANTINED")
    expect(refused).toEqual([2, 9].map((value, i) => ({
      row_index: i + 1,
      outcome: "QUARANTINED",
      sink_name: null,
      context: {
        reason: "transform_error",
        node: "rep",
        destination: "discard",
        error: { reason: "invalid_copies", field: "copies", value: value === 2 ? 0 : 9, message: `'copies' must be between 1 and 3 (max_copies), got ${value === 2 ? 0 : 9}` }
      }
    })))
    expect(c.transformErrors().map((e) => [e.reason, e.value])).toEqual([["invalid_copies", 0], ["invalid_copies", 9]])
  })

  it("CSV headers with spaces and capitals are normalised by default, as ELSPETH's csv source does", async () => {
    const c = await runCase(
      csvSource("in.csv", "schema: {mode: fixed, fields: ['customer_id: str', 'amount_usd: int', 'class_: str']}") +
        "sinks:\n" + sink("out") + sink("bad") + "default_sink: out\n",
      { "in.csv": "Customer ID,  Amount (USD) ,Class\nc1,10,x\nc2,20,y\n" }
    )
    expect(c.cli.status, c.cli.stderr).toBe(0)
    expect(c.result).toMatchObject({ status: "completed", rows_succeeded: 2, rows_quarantined: 0 })
    expect(c.rows("out")).toEqual([{ customer_id: "c1", amount_usd: 10, class_: "x" }, { customer_id: "c2", amount_usd: 20, class_: "y" }])
    expect(c.rows("bad")).toEqual([])
    expect(c.outcomes().map((o) => o.outcome)).toEqual(["COMPLETED", "COMPLETED"])
  })

  it("a CSV and a JSON Lines file with a BOM under encoding utf-8 are decoded, with a warning naming utf-8-sig", async () => {
    const bom = "\ufeff"
    for (const headers of ["", ", normalize_fields: false"]) {
      const c = await runCase(
        csvSource("in.csv", `encoding: utf-8${headers}, schema: {mode: fixed, fields: ['id: int', 'name: str']}`) +
          "sinks:\n" + sink("out") + sink("bad") + "default_sink: out\n",
        { "in.csv": `${bom}id,name\n1,Ann\n2,Bob\n` }
      )
      expect(c.cli.status, c.cli.stderr).toBe(0)
      expect(c.result).toMatchObject({ status: "completed", rows_succeeded: 2, rows_quarantined: 0 })
      expect(c.rows("out")).toEqual([{ id: 1, name: "Ann" }, { id: 2, name: "Bob" }])
      expect(c.rows("bad")).toEqual([])
      expect(c.outcomes().map((o) => o.outcome)).toEqual(["COMPLETED", "COMPLETED"])
      expect(c.warnings).toEqual([
        "warning: csv source: 'in.csv' starts with a UTF-8 byte order mark (BOM) although its encoding is 'utf-8'; " +
        "the BOM was removed and is not part of the data. Set encoding: utf-8-sig to declare it."
      ])
    }
    const lines = await runCase(
      jsonlSource("in.jsonl") + "sinks:\n" + sink("out") + sink("bad") + "default_sink: out\n",
      { "in.jsonl": `${bom}{"id": 1}\n{"id": 2}\n` }
    )
    expect(lines.cli.status, lines.cli.stderr).toBe(0)
    expect(lines.rows("out")).toEqual([{ id: 1 }, { id: 2 }])
    expect(lines.result).toMatchObject({ rows_succeeded: 2, rows_quarantined: 0 })
    expect(lines.warnings).toHaveLength(1)
    expect(lines.warnings[0]).toContain("encoding: utf-8-sig")
  })
})
