/**
 * Wiring mistakes in ELSPETH's current settings form (`source.on_success`, `input`,
 * `on_success`, gate routes naming connections or sinks): each is refused before any row
 * is read, with exit code 2 and one `runledger: FILE: KEY: MESSAGE` line naming both
 * ends of the broken connection. The messages follow ELSPETH's own (its DAG builder's
 * GraphValidationError texts); the key is the settings path of the mistake.
 *
 * Each case is one edit of a base pipeline that is itself valid (checked first), so the
 * error is the edit's and nothing else's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parse, stringify } from "yaml"
import { type CliResult, runCli } from "../support/cli.js"

type Settings = Record<string, any>

const csvSink = (file: string) => ({
  plugin: "csv",
  on_write_failure: "discard",
  options: { path: `out/${file}`, schema: { mode: "observed" } }
})

const INPUT_SCHEMA = { mode: "fixed", fields: ["id: int", "amount: int"] }

/** source ─(validated)─> enrich ─(enriched)─> [value_check] ─┬─ high / └─ low */
const LINEAR: Settings = {
  source: {
    plugin: "csv",
    on_success: "validated",
    options: { path: "in.csv", schema: INPUT_SCHEMA, on_validation_failure: "discard" }
  },
  transforms: [
    { name: "enrich", plugin: "passthrough", input: "validated", on_success: "enriched", on_error: "discard", options: { schema: { mode: "observed" } } }
  ],
  gates: [
    { name: "value_check", input: "enriched", condition: "row['amount'] >= 5000", routes: { true: "high", false: "low" } }
  ],
  sinks: { high: csvSink("high.csv"), low: csvSink("low.csv") },
  landscape: { url: "sqlite:///runs/audit.db" }
}

/** source ─(raw)─> [fork_gate] ─┬─ path_a ─┬─ [merged] ─> [route_output] ─> output */
const FORK: Settings = {
  source: {
    plugin: "csv",
    on_success: "raw",
    options: { path: "in.csv", schema: INPUT_SCHEMA, on_validation_failure: "discard" }
  },
  gates: [
    { name: "fork_gate", input: "raw", condition: "True", routes: { true: "fork", false: "output" }, fork_to: ["path_a", "path_b"] },
    { name: "route_output", input: "merged", condition: "True", routes: { true: "output", false: "output" } }
  ],
  coalesce: [{ name: "merged", branches: ["path_a", "path_b"], policy: "require_all", merge: "nested" }],
  sinks: {
    output: { plugin: "json", on_write_failure: "discard", options: { path: "out/merged.jsonl", format: "jsonl", schema: { mode: "observed" } } }
  },
  landscape: { url: "sqlite:///runs/audit.db" }
}

const passthrough = (name: string, input: string, onSuccess: string) => ({
  name,
  plugin: "passthrough",
  input,
  on_success: onSuccess,
  on_error: "discard",
  options: { schema: { mode: "observed" } }
})

interface Mistake {
  readonly base: Settings
  readonly edit: (s: Settings) => void
  /**
   * The settings key the error line names (after `FILE: `); absent where ELSPETH names
   * no single place (a cycle): then any key, or none, may come first.
   */
  readonly key?: RegExp
  /** What the message must say, and the names it must mention (both ends). */
  readonly message: RegExp
  readonly names: ReadonlyArray<string>
}

const mistakes: ReadonlyArray<readonly [string, Mistake]> = [
  [
    "dangling input: an input no node produces",
    {
      base: LINEAR,
      edit: (s) => {
        s.transforms[0].input = "validatd"
      },
      key: /transforms\[0\]\.input/,
      // ELSPETH: "No producer for connection 'validatd'. Did you mean: validated?"
      message: /no producer for connection 'validatd'/i,
      names: ["validated"]
    }
  ],
  [
    "two consumers of one connection",
    {
      base: LINEAR,
      edit: (s) => {
        s.transforms.push(passthrough("second", "validated", "low"))
      },
      key: /transforms\[1\]\.input/,
      // ELSPETH: "Duplicate consumers for 1 connection(s): 'validated': transform 'enrich' (…) and transform 'second' (…). Use a gate for fan-out."
      message: /duplicate consumers? for .*'validated'/i,
      names: ["enrich", "second"]
    }
  ],
  [
    "a cycle through connections",
    {
      base: LINEAR,
      edit: (s) => {
        s.transforms.push(passthrough("loop_a", "ping", "pong"), passthrough("loop_b", "pong", "ping"))
      },
      // ELSPETH: "Pipeline contains a cycle: transform_loop_a_… -> transform_loop_b_…"
      message: /cycle/i,
      names: ["loop_a", "loop_b"]
    }
  ],
  [
    "a sink never reached",
    {
      base: LINEAR,
      edit: (s) => {
        s.sinks.archive = csvSink("archive.csv")
      },
      key: /sinks\.archive/,
      // ELSPETH: "1 unreachable node(s) detected: sink_archive_… (sink). All nodes must be reachable from the source node …"
      message: /reach/i,
      names: []
    }
  ],
  [
    "a gate routing to an unknown connection",
    {
      base: LINEAR,
      edit: (s) => {
        s.gates[0].routes.true = "hi_value"
      },
      key: /gates\[0\]\.routes\.true/,
      // ELSPETH: "Gate route target 'hi_value' is neither a sink nor a known connection name."
      message: /'hi_value' is neither a sink nor a known connection/i,
      names: []
    }
  ],
  [
    "a produced connection nobody consumes (a transform's on_success)",
    {
      base: LINEAR,
      edit: (s) => {
        // The gate's false route feeds a new transform whose output leads nowhere.
        s.gates[0].routes.false = "to_tag"
        s.transforms.push(passthrough("tag", "to_tag", "tagged"))
      },
      key: /transforms\[1\]\.on_success/,
      // ELSPETH: "Transform 'tag' on_success 'tagged' is neither a sink nor a known connection."
      message: /'tagged'.*(neither a sink nor a known connection|no consumer)|dangling output connections? with no consumer.*'tagged'/i,
      names: []
    }
  ],
  [
    "a produced connection nobody consumes (a coalesce's output)",
    {
      base: FORK,
      edit: (s) => {
        // Nothing reads the merged rows any more (the fork gate's false route still reaches the sink).
        s.gates.pop()
      },
      key: /coalesce\[0\](\.name|\.on_success)?/,
      // ELSPETH: "Dangling output connections with no consumer: ['merged']. Every produced connection must be consumed or routed to a sink."
      message: /dangling output connections? with no consumer.*'merged'|'merged'.*no consumer/i,
      names: []
    }
  ],
  [
    "a connection name equal to a sink name",
    {
      base: FORK,
      edit: (s) => {
        // The coalesce's output connection (its name) is also a sink's name.
        s.coalesce[0].name = "output"
        s.gates[1].input = "output"
      },
      key: /coalesce\[0\](\.name)?|gates\[1\]\.input/,
      // ELSPETH: "Connection names overlap with sink names: ['output']. Connection names and sink names must be disjoint."
      message: /(overlap|collides) with sink names?.*'output'/i,
      names: []
    }
  ],
  [
    "a fork branch with no destination",
    {
      base: FORK,
      edit: (s) => {
        s.gates[0].fork_to = ["path_a", "path_b", "path_c"]
      },
      key: /gates\[0\]\.fork_to\[2\]/,
      // ELSPETH: "Gate 'fork_gate' has fork branch 'path_c' with no destination."
      message: /fork branch 'path_c' with no destination|branch 'path_c' is neither coalesced nor the name of a sink/i,
      names: []
    }
  ]
]

let dir = ""
const cli = (...args: Array<string>): CliResult => runCli(args, { cwd: dir })
const write = (file: string, settings: Settings): string => {
  writeFileSync(join(dir, file), stringify(settings))
  return file
}

beforeAll(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), "rl-wiring-")))
  writeFileSync(join(dir, "in.csv"), "id,amount\n1,7000\n2,300\n")
})
afterAll(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true })
})

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

describe("wiring mistakes in the explicit settings form", () => {
  it.each([["linear", LINEAR], ["fork", FORK]] as const)("the %s base pipeline is valid and runs", (name, base) => {
    const file = write(`base-${name}.yaml`, base)
    const v = cli("validate", "-s", file)
    expect(v.status, v.stderr).toBe(0)
    expect(v.stdout).toContain(`${file}: valid`)
    const r = cli("run", "-s", file, "--json", "--db", `sqlite:///runs/base-${name}.db`)
    expect(r.status, r.stderr).toBe(0)
    expect((JSON.parse(r.stdout) as { status: string }).status).toBe("completed")
  })

  it.each(mistakes.map(([title, m], i) => [title, m, i] as const))("%s: exit 2, the key and both ends named, nothing run", (_title, m, i) => {
    const settings = structuredClone(m.base)
    m.edit(settings)
    const file = write(`wiring-${i}.yaml`, settings)
    rmSync(join(dir, "out"), { recursive: true, force: true })
    rmSync(join(dir, "runs"), { recursive: true, force: true })
    for (const command of ["validate", "run"]) {
      const r = cli(command, "-s", file)
      expect(r.status, `${command}: ${r.stderr}`).toBe(2)
      expect(r.stdout, command).toBe("")
      // `runledger: FILE: KEY: MESSAGE` (the message may go on over more lines).
      const prefix = `^runledger: ${escape(file)}: ${m.key === undefined ? "" : `(${m.key.source}): `}`
      const found = new RegExp(prefix, "m").exec(r.stderr)
      expect(found, `${command}: no line '${prefix}…' in: ${r.stderr}`).not.toBeNull()
      const error = r.stderr.slice(found!.index + found![0].length)
      expect(error, command).toMatch(m.message)
      for (const n of m.names) expect(error, `${command}: names '${n}'`).toContain(n)
    }
    expect(existsSync(join(dir, "out")), "no sink was opened").toBe(false)
    expect(existsSync(join(dir, "runs")), "no Landscape was created").toBe(false)
  })

  // The settings are written from objects: the gate labels must stay the strings "true" / "false".
  it("route labels stay strings in the written settings", () => {
    const text = stringify(LINEAR)
    expect(text).toMatch(/"true": high/)
    expect((parse(text) as Settings).gates[0].routes).toEqual({ true: "high", false: "low" })
  })
})
