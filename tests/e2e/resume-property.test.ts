/**
 * Crash and resume over random pipelines, through the built CLI.
 *
 * Each case generates a pipeline (a random chain of row transforms, 0–2 aggregations
 * with count or batch-count triggers, route gates, an optional fork with a coalesce),
 * 2–4 file sinks in random formats (csv, json, jsonl), a quarantine sink for invalid
 * rows, a random checkpoint cadence, and a random CSV input of a few hundred rows with
 * invalid ones among them. It runs the pipeline once uninterrupted, then again with
 * `RUNLEDGER_TEST_CRASH=<point>:<n>`, resumes the killed run (sometimes killing the
 * resume too and resuming once more), and requires every sink file to be byte-identical
 * and the RunResult (run_id aside) equal to the uninterrupted run's, with the Landscape
 * invariants holding at the end. A crash point past the end of the run lets it complete:
 * then that run alone must equal the uninterrupted one.
 *
 * No timeouts that could fire: wall-clock flushes are not reproducible. The one
 * `timeout_seconds` used (best_effort coalesce needs one) is an hour.
 *
 * Reproduce a failure with RUNLEDGER_PROPERTY_SEED=<seed> (and RUNLEDGER_PROPERTY_PATH=<path>)
 * as printed by fast-check; RUNLEDGER_PROPERTY_RUNS sets the number of cases.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import fc from "fast-check"
import { afterAll, describe, expect, it } from "vitest"
import { type CliRun as Cli, runCliIn } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const root = tempDir("rl-resume-prop-")
afterAll(() => rmSync(root, { recursive: true, force: true }))

// ---------------------------------------------------------------------------
// Random input

interface Input {
  readonly rows: number
  /** Per mille of rows whose amount is not an integer. */
  readonly invalid: number
  /** Per mille of rows with too few fields (a different quarantine payload). */
  readonly ragged: number
  /** Per mille of rows whose name needs quoting (comma, quote, line break) or is not ASCII. */
  readonly fancy: number
  readonly seed: number
}

const arbInput: fc.Arbitrary<Input> = fc.record({
  rows: fc.integer({ min: 150, max: 320 }),
  invalid: fc.integer({ min: 0, max: 120 }),
  ragged: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 })),
  fancy: fc.integer({ min: 0, max: 200 }),
  seed: fc.integer({ min: 1, max: 0x7fffffff })
})

/** A small deterministic generator (a 31-bit LCG), so that the input shrinks with its parameters. */
const lcg = (seed: number) => {
  let s = seed
  return (n: number): number => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff
    return s % n
  }
}

const csvField = (s: string): string => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, "\"\"")}"` : s)

const inputCsv = (input: Input): string => {
  const next = lcg(input.seed)
  const lines = ["id,name,amount,cat"]
  for (let i = 0; i < input.rows; i++) {
    const fancy = next(1000) < input.fancy
    const name = fancy ? [`a, ${i}`, `q"${i}"`, `line\nbreak ${i}`, `é€${i}`, `  ${i} `][next(5)]! : `n${i}`
    // One category for every row: batch_stats' group_by fails a run whose batch mixes
    // values (as ELSPETH does), and any rows may share a batch here.
    const cat = "x"
    if (next(1000) < input.ragged) {
      lines.push(`${i},${csvField(name)}`)
      continue
    }
    const amount = next(1000) < input.invalid ? ["bad", "", "1.5"][next(3)]! : String(next(1000))
    lines.push(`${i},${csvField(name)},${amount},${cat}`)
  }
  return lines.join("\n") + "\n"
}

// ---------------------------------------------------------------------------
// Random pipelines

type Transform =
  | { readonly kind: "passthrough" }
  | { readonly kind: "field_mapper" }
  | { readonly kind: "truncate"; readonly max: number; readonly suffix: string }
  | { readonly kind: "keyword_filter"; readonly pattern: string; readonly toSink: boolean }

interface Aggregation {
  readonly plugin: "batch_stats" | "batch_replicate"
  readonly mode: "transform" | "passthrough"
  /** `count: n`, or `condition: row['batch_count'] >= n`. */
  readonly trigger: { readonly kind: "count" | "condition"; readonly n: number }
  readonly copies: number
  readonly groupBy: boolean
}

interface Route {
  readonly modulo: number
  readonly below: number
}

interface Fork {
  readonly policy: "require_all" | "quorum" | "best_effort" | "first"
  readonly quorum: number
  readonly merge: "union" | "nested" | "select"
  readonly select: "a" | "b"
  /**
   * Branch `b` comes from a second gate, for rows whose value is even only, so the
   * other groups stay pending until the end of the source (across checkpoints).
   */
  readonly split: boolean
  /** Not split: a third branch that completes to the sink `high`. */
  readonly third: boolean
}

type Format = "csv" | "json" | "jsonl"

interface Pipeline {
  readonly transforms: ReadonlyArray<Transform>
  readonly aggregations: ReadonlyArray<Aggregation>
  readonly routes: ReadonlyArray<Route>
  readonly fork: Fork | undefined
  readonly formats: Readonly<Record<"out" | "bad" | "high" | "flt" | "s1" | "s2", Format>>
  readonly indent: boolean
  readonly delimiter: "," | ";"
  readonly frequency: "every_n" | "every_row" | "aggregation_only"
  readonly interval: number
  readonly boundaries: boolean
}

const arbTransform: fc.Arbitrary<Transform> = fc.oneof(
  fc.constant({ kind: "passthrough" as const }),
  fc.constant({ kind: "field_mapper" as const }),
  fc.record({ kind: fc.constant("truncate" as const), max: fc.integer({ min: 2, max: 6 }), suffix: fc.constantFrom("", "~") }),
  fc.record({ kind: fc.constant("keyword_filter" as const), pattern: fc.constantFrom("[37]$", "^n1", "(?i)LINE"), toSink: fc.boolean() })
)

const arbAggregation: fc.Arbitrary<Aggregation> = fc.oneof(
  fc.record({
    plugin: fc.constant("batch_stats" as const),
    mode: fc.constant("transform" as const),
    trigger: fc.record({ kind: fc.constantFrom("count" as const, "condition" as const), n: fc.integer({ min: 1, max: 9 }) }),
    copies: fc.constant(1),
    groupBy: fc.boolean()
  }),
  fc.record({
    plugin: fc.constant("batch_replicate" as const),
    mode: fc.constantFrom("transform" as const, "passthrough" as const),
    trigger: fc.record({ kind: fc.constantFrom("count" as const, "condition" as const), n: fc.integer({ min: 1, max: 9 }) }),
    copies: fc.integer({ min: 1, max: 3 }),
    groupBy: fc.constant(false)
  })
)

const arbFork: fc.Arbitrary<Fork> = fc.record({
  policy: fc.constantFrom("require_all" as const, "quorum" as const, "best_effort" as const, "first" as const),
  quorum: fc.integer({ min: 1, max: 2 }),
  merge: fc.constantFrom("union" as const, "nested" as const, "select" as const),
  select: fc.constantFrom("a" as const, "b" as const),
  split: fc.boolean(),
  third: fc.boolean()
})

const arbFormat: fc.Arbitrary<Format> = fc.constantFrom("csv" as const, "json" as const, "jsonl" as const)

const arbPipeline: fc.Arbitrary<Pipeline> = fc.record({
  transforms: fc.array(arbTransform, { maxLength: 3 }),
  aggregations: fc.array(arbAggregation, { maxLength: 2 }),
  routes: fc.array(fc.record({ modulo: fc.integer({ min: 2, max: 11 }), below: fc.integer({ min: 1, max: 3 }) }), { maxLength: 2 }),
  fork: fc.option(arbFork, { nil: undefined, freq: 2 }),
  formats: fc.record({ out: arbFormat, bad: arbFormat, high: arbFormat, flt: arbFormat, s1: arbFormat, s2: arbFormat }),
  indent: fc.boolean(),
  delimiter: fc.constantFrom("," as const, ";" as const),
  frequency: fc.constantFrom("every_n" as const, "every_n" as const, "every_n" as const, "every_n" as const, "every_row" as const, "aggregation_only" as const),
  interval: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 9, max: 120 })),
  boundaries: fc.boolean()
})

/** The sinks a pipeline writes, each with the format it may use (csv only where every row has the same fields). */
const sinksOf = (p: Pipeline, input: Input): Record<string, Format> => {
  const f = p.fork
  const split = f?.split === true
  const sinks: Record<string, Format> = {}
  // Rows that reach `out` have one shape, except when best_effort merges a lone branch
  // `a` ({a}) beside groups where both arrived ({a, b}).
  const mixedOut = f !== undefined && split && f.merge === "nested" && f.policy === "best_effort"
  sinks.out = mixedOut && p.formats.out === "csv" ? "jsonl" : p.formats.out
  // Ragged rows are quarantined with a different payload from rows of the wrong type.
  sinks.bad = input.ragged > 0 && p.formats.bad === "csv" ? "json" : p.formats.bad
  if (!split && (p.routes.length > 0 || f?.third === true)) sinks.high = p.formats.high
  if (!split && p.transforms.some((t) => t.kind === "keyword_filter" && t.toSink)) sinks.flt = p.formats.flt
  if (split) {
    sinks.s1 = p.formats.s1
    sinks.s2 = p.formats.s2
  }
  return sinks
}

const ext = (f: Format) => (f === "csv" ? "csv" : f === "json" ? "json" : "jsonl")

const yamlOf = (p: Pipeline, input: Input): string => {
  const sinks = sinksOf(p, input)
  const split = p.fork?.split === true
  const lines: Array<string> = [
    "source:",
    "  plugin: csv",
    "  options:",
    "    path: in.csv",
    "    schema: {mode: fixed, fields: [\"id: int\", \"name: str\", \"amount: int\", \"cat: str\"]}",
    "    on_validation_failure: bad"
  ]
  let cat = "cat"
  if (p.transforms.length > 0) {
    lines.push("transforms:")
    p.transforms.forEach((t, i) => {
      lines.push(`  - name: t${i}`, `    plugin: ${t.kind}`)
      switch (t.kind) {
        case "passthrough":
          lines.push("    options: {schema: {mode: observed}}")
          break
        case "field_mapper":
          // Renames the category (once); keeps every other field.
          lines.push(`    options: {schema: {mode: observed}, mapping: {${cat}: ${cat}_${i}}}`)
          cat = `${cat}_${i}`
          break
        case "truncate":
          lines.push(`    options: {schema: {mode: observed}, fields: {name: ${t.max}}, suffix: "${t.suffix}"}`)
          break
        case "keyword_filter": {
          const onError = t.toSink && !split ? "flt" : "discard"
          lines.push(`    options: {schema: {mode: observed}, fields: [name], blocked_patterns: ["${t.pattern}"], on_error: ${onError}}`)
          break
        }
      }
    })
  }
  // The numeric field gates and batch_stats read: the amount, then a batch's sum.
  let value = "amount"
  if (p.aggregations.length > 0) {
    lines.push("aggregations:")
    p.aggregations.forEach((a, i) => {
      const trigger = a.trigger.kind === "count" ? `count: ${a.trigger.n}` : `condition: "row['batch_count'] >= ${a.trigger.n}"`
      lines.push(`  - name: agg${i}`, `    plugin: ${a.plugin}`, `    trigger: {${trigger}}`, `    output_mode: ${a.mode}`)
      if (a.plugin === "batch_stats") {
        const group = a.groupBy && value === "amount" ? `, group_by: ${cat}` : ""
        lines.push(`    options: {schema: {mode: observed}, value_field: ${value}${group}}`)
        value = "sum"
      } else {
        const copies = a.mode === "passthrough" ? 1 : a.copies
        lines.push(`    options: {schema: {mode: observed}, copies_field: no_such_field, default_copies: ${copies}}`)
      }
    })
  }
  const gates: Array<string> = []
  if (!split) {
    p.routes.forEach((r, i) => {
      gates.push(
        `  - name: route${i}`,
        `    condition: "row['${value}'] % ${r.modulo} < ${r.below}"`,
        `    routes: {"true": high, "false": continue}`
      )
    })
  }
  const f = p.fork
  if (f !== undefined) {
    if (f.split) {
      gates.push(
        "  - name: split",
        `    condition: "row['${value}'] >= 0"`,
        `    routes: {"true": fork, "false": continue}`,
        "    fork_to: [a, s1]",
        "  - name: split2",
        `    condition: "row['${value}'] % 2 == 0"`,
        `    routes: {"true": fork, "false": continue}`,
        "    fork_to: [b, s2]"
      )
    } else {
      gates.push(
        "  - name: split",
        `    condition: "row['${value}'] >= 0"`,
        `    routes: {"true": fork, "false": continue}`,
        `    fork_to: ${f.third ? "[a, b, high]" : "[a, b]"}`
      )
    }
  }
  if (gates.length > 0) lines.push("gates:", ...gates)
  if (f !== undefined) {
    lines.push("coalesce:", "  - name: join", "    branches: [a, b]", `    policy: ${f.policy}`, `    merge: ${f.merge}`)
    if (f.policy === "quorum") lines.push(`    quorum_count: ${f.quorum}`)
    if (f.policy === "best_effort") lines.push("    timeout_seconds: 3600")
    if (f.merge === "select") lines.push(`    select_branch: ${f.select}`)
  }
  lines.push("sinks:")
  for (const [name, format] of Object.entries(sinks)) {
    const path = `out/${name}.${ext(format)}`
    const options = format === "csv"
      ? `path: ${path}, delimiter: "${p.delimiter}"`
      : format === "json"
      ? `path: ${path}, format: json${p.indent ? ", indent: 2" : ""}`
      : `path: ${path}, format: jsonl`
    lines.push(`  ${name}: {plugin: ${format === "csv" ? "csv" : "json"}, options: {${options}, schema: {mode: observed}}}`)
  }
  lines.push("default_sink: out")
  const interval = p.frequency === "every_row" ? "" : `, checkpoint_interval: ${p.interval}`
  lines.push(`checkpoint: {frequency: ${p.frequency}${interval}, aggregation_boundaries: ${p.boundaries}}`)
  lines.push("landscape: {url: sqlite:///runs/audit.db}")
  return lines.join("\n") + "\n"
}

// ---------------------------------------------------------------------------
// Crash points

type Kind = "row" | "sink_write" | "sink_flushed" | "checkpoint" | "resume_cut"

interface Crash {
  readonly kind: Kind
  /** Where in the run, in per cent of the passes the uninterrupted run made (over 100: past the end). */
  readonly at: number
}

const arbCrash: fc.Arbitrary<Crash> = fc.record({
  kind: fc.constantFrom("row" as const, "sink_write" as const, "sink_flushed" as const, "checkpoint" as const),
  at: fc.integer({ min: 0, max: 115 })
})

const arbAgain: fc.Arbitrary<Crash | undefined> = fc.option(
  fc.record({
    kind: fc.constantFrom("row" as const, "sink_write" as const, "sink_flushed" as const, "checkpoint" as const, "resume_cut" as const),
    at: fc.integer({ min: 0, max: 80 })
  }),
  { nil: undefined, freq: 2 }
)

/** How often the uninterrupted run passed each point (as its checkpoints tell). */
interface Passes {
  readonly row: number
  readonly checkpoint: number
  readonly sinkWrite: number
}

const crashEnv = (c: Crash, passes: Passes): string => {
  const total = c.kind === "row"
    ? passes.row
    : c.kind === "sink_write"
    ? passes.sinkWrite
    : c.kind === "resume_cut"
    ? 1
    : passes.checkpoint
  return `${c.kind}:${Math.max(1, Math.round((c.at / 100) * total))}`
}

// ---------------------------------------------------------------------------
// Running and comparing

const cli = runCliIn

const outputs = (dir: string): Record<string, Buffer> => {
  const out = join(dir, "out")
  if (!existsSync(out)) return {}
  return Object.fromEntries(readdirSync(out).sort().map((f) => [f, readFileSync(join(out, f))]))
}

const withoutId = (stdout: string): Record<string, unknown> => {
  const { run_id: _id, ...rest } = JSON.parse(stdout) as Record<string, unknown>
  return rest
}

/** Where two files first differ, with some text around it. */
const firstDifference = (got: Buffer, want: Buffer): string => {
  let i = 0
  while (i < got.length && i < want.length && got[i] === want[i]) i++
  const around = (b: Buffer) => JSON.stringify(b.subarray(Math.max(0, i - 60), i + 60).toString("utf8"))
  return `${got.length} bytes, want ${want.length}; first difference at byte ${i}:\n  got  ${around(got)}\n  want ${around(want)}`
}

const expectSameOutputs = (dir: string, want: Record<string, Buffer>, context: string) => {
  const got = outputs(dir)
  expect(Object.keys(got), `sink files ${context}`).toEqual(Object.keys(want))
  for (const [file, bytes] of Object.entries(want)) {
    const mine = got[file]!
    if (!mine.equals(bytes)) expect.fail(`out/${file} ${context}: ${firstDifference(mine, bytes)}`)
  }
}

const runId = (dir: string): string => {
  const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
  const row = audit.prepare("SELECT run_id FROM runs").get() as { run_id: string }
  audit.close()
  return row.run_id
}

/** Terminal outcomes by kind, the source rows recorded, and the run's attempts. */
const trailOf = (dir: string) => {
  const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
  const outcomes = audit.prepare(
    "SELECT outcome, sink_name, COUNT(*) AS n FROM token_outcomes WHERE is_terminal = 1 GROUP BY outcome, sink_name ORDER BY outcome, sink_name"
  ).all()
  const { rows } = audit.prepare("SELECT COUNT(*) AS rows FROM rows").get() as { rows: number }
  const attempts = audit.prepare("SELECT kind, status, reason FROM run_attempts ORDER BY attempt").all()
  audit.close()
  return { outcomes, rows, attempts }
}

const checkpointsOf = (dir: string, id: string): number => {
  const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
  const { n } = audit.prepare("SELECT COUNT(*) AS n FROM checkpoints WHERE run_id = ?").get(id) as { n: number }
  audit.close()
  return n
}

const passesOf = (dir: string, rows: number): Passes => {
  const audit = new Database(join(dir, "runs/audit.db"), { readonly: true })
  const states = (audit.prepare("SELECT sink_state_json FROM checkpoints ORDER BY sequence_number").all() as Array<{ sink_state_json: string | null }>)
    .map((c) => JSON.parse(c.sink_state_json ?? "{}") as Record<string, { rows: number }>)
  audit.close()
  // A sink writes (and passes sink_write) at a durability point where it has rows queued.
  let writes = 0
  states.forEach((state, i) => {
    for (const [sink, { rows }] of Object.entries(state)) if (rows > (states[i - 1]?.[sink]?.rows ?? 0)) writes++
  })
  return { row: rows, checkpoint: states.length, sinkWrite: Math.max(1, writes) }
}

let cases = 0

const freshDir = (name: string, csv: string, yaml: string): string => {
  const dir = join(root, name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, "in.csv"), csv)
  writeFileSync(join(dir, "s.yaml"), yaml)
  return dir
}

const check = async (pipeline: Pipeline, input: Input, crash: Crash, again: Crash | undefined) => {
  const n = cases++
  const csv = inputCsv(input)
  const yaml = yamlOf(pipeline, input)

  const reference = freshDir(`${n}-reference`, csv, yaml)
  const ref = await cli(reference, ["run", "-s", "s.yaml", "--json"])
  expect(ref.status, `the uninterrupted run failed:\n${yaml}\n${ref.stderr}`).toBe(0)
  const want = outputs(reference)
  const wantResult = withoutId(ref.stdout)
  const passes = passesOf(reference, input.rows)
  const wantTrail = trailOf(reference)

  const dir = freshDir(`${n}-crash`, csv, yaml)
  const point = crashEnv(crash, passes)
  const steps = [`run killed at ${point}`]
  const context = () => `after ${steps.join(", then ")}, with\n${yaml}`
  const first = await cli(dir, ["run", "-s", "s.yaml", "--json"], point)
  if (first.signal !== "SIGKILL") {
    // The point was past the end: the run simply completed.
    steps[0] = `run armed at ${point} (not reached)`
    expect(first.status, `${context()}\n${first.stderr}`).toBe(0)
    expect(withoutId(first.stdout), context()).toEqual(wantResult)
    expectSameOutputs(dir, want, context())
    expect(trailOf(dir).outcomes, context()).toEqual(wantTrail.outcomes)
    await checkInvariantsIn(join(dir, "runs/audit.db"), runId(dir))
    rmSync(reference, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
    return
  }
  const id = runId(dir)
  if (checkpointsOf(dir, id) === 0) {
    // Killed before checkpoint 0 (between the fsync of the empty sinks and its
    // transaction): there is nothing to resume from, and resume says so, changing nothing.
    const before = outputs(dir)
    const r = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--json"])
    expect(r.status, `${context()}\n${r.stderr}`).toBe(2)
    expect(r.stderr, context()).toMatch(/has no checkpoint .*start a new run instead/)
    expect(outputs(dir), context()).toEqual(before)
    rmSync(reference, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
    return
  }

  let done: Cli | undefined
  let resumeKilled = false
  if (again !== undefined) {
    const second = crashEnv(again, { row: Math.max(1, passes.row - 1), checkpoint: passes.checkpoint, sinkWrite: passes.sinkWrite })
    const r = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--json"], second)
    if (r.signal === "SIGKILL") {
      steps.push(`resume killed at ${second}`)
      resumeKilled = true
    } else {
      steps.push(`resume armed at ${second} (not reached)`)
      expect(r.status, `${context()}\n${r.stderr}`).toBe(0)
      done = r
    }
  }
  if (done === undefined) {
    steps.push("resume")
    done = await cli(dir, ["resume", "latest", "-s", "s.yaml", "--json"])
    expect(done.status, `${context()}\n${done.stderr}`).toBe(0)
  }
  const result = JSON.parse(done.stdout) as Record<string, unknown>
  expect(result.run_id, context()).toBe(id)
  expect(withoutId(done.stdout), `RunResult ${context()}`).toEqual(wantResult)
  expectSameOutputs(dir, want, context())
  const got = trailOf(dir)
  expect(got.outcomes, `outcomes ${context()}`).toEqual(wantTrail.outcomes)
  expect(got.rows, `source rows ${context()}`).toBe(input.rows)
  const crashed = { kind: "resumed", status: "interrupted", reason: "process_crash" }
  expect(got.attempts, `attempts ${context()}`).toEqual([
    { ...crashed, kind: "started" },
    ...(resumeKilled ? [crashed] : []),
    { kind: "resumed", status: "completed", reason: null }
  ])
  await checkInvariantsIn(join(dir, "runs/audit.db"), id)
  rmSync(reference, { recursive: true, force: true })
  rmSync(dir, { recursive: true, force: true })
}

const envInt = (name: string): number | undefined => {
  const v = process.env[name]
  return v === undefined || v === "" ? undefined : Number(v)
}

const seed = envInt("RUNLEDGER_PROPERTY_SEED")
const path = process.env.RUNLEDGER_PROPERTY_PATH

describe("kill -9 and resume over random pipelines", () => {
  it("every sink file and the RunResult equal an uninterrupted run's", async () => {
    await fc.assert(
      fc.asyncProperty(arbPipeline, arbInput, arbCrash, arbAgain, check),
      {
        numRuns: envInt("RUNLEDGER_PROPERTY_RUNS") ?? 8,
        ...(seed === undefined ? {} : { seed }),
        ...(path === undefined || path === "" ? {} : { path }),
        // A failure shrinks by running the CLI again and again: bound it.
        interruptAfterTimeLimit: 240_000,
        markInterruptAsFailure: false
      }
    )
  }, 300_000)
})
