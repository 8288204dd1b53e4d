/**
 * Wiring of both settings forms (src/pipeline/wiring.ts): the chain order and every
 * destination, and each wiring mistake of the explicit form with the message it gives.
 */
import { describe, expect, it } from "vitest"
import { Effect, Either } from "effect"
import { parseSettings, SettingsError } from "../../src/pipeline/settings.js"
import { type Wiring, wire } from "../../src/pipeline/wiring.js"

const SINKS = `
sinks:
  out: {plugin: json, options: {path: o.jsonl, format: jsonl, schema: {mode: observed}}}
  bad: {plugin: json, options: {path: b.jsonl, format: jsonl, schema: {mode: observed}}}
`
const SOURCE = (onSuccess: string) => `
source:
  plugin: csv
  on_success: ${onSuccess}
  options: {path: in.csv, schema: {mode: observed}, on_validation_failure: discard}
`
const T = (name: string, input: string, onSuccess: string) =>
  `  - {name: ${name}, plugin: passthrough, input: ${input}, on_success: ${onSuccess}, on_error: discard, options: {schema: {mode: observed}}}\n`

const wiringOf = (yaml: string): Wiring => {
  const loaded = Effect.runSync(parseSettings("s.yaml", yaml, {}))
  return wire("s.yaml", loaded.settings)
}
const errorOf = (yaml: string): string => {
  const r = Effect.runSync(Effect.either(parseSettings("s.yaml", yaml, {})))
  if (Either.isLeft(r)) return r.left.text
  try {
    wire("s.yaml", r.right.settings)
  } catch (e) {
    if (e instanceof SettingsError) return e.text
    throw e
  }
  throw new Error("expected a wiring error")
}

describe("explicit wiring", () => {
  it("orders a gate tree after what feeds it, whatever the list order, and resolves every route", () => {
    const w = wiringOf(`${SOURCE("raw")}
gates:
  - {name: second, input: big, condition: "row['a'] > 10", routes: {"true": out, "false": bad}}
  - {name: first, input: clean, condition: "row['a'] > 1", routes: {"true": big, "false": out}}
transforms:
${T("tidy", "raw", "clean")}${SINKS}`)
    expect(w.explicit).toBe(true)
    expect(w.chain).toEqual([{ kind: "transform", index: 0 }, { kind: "gate", index: 1 }, { kind: "gate", index: 0 }])
    expect(w.source).toEqual({ _tag: "Node", node: { kind: "transform", index: 0 } })
    expect(w.transforms[0]).toEqual({ _tag: "Node", node: { kind: "gate", index: 1 } })
    expect(w.gates[1]!.routes.get("true")).toEqual({ _tag: "Node", node: { kind: "gate", index: 0 } })
    expect(w.gates[1]!.routes.get("false")).toEqual({ _tag: "Sink", name: "out" })
    expect(w.connections.map((c) => [c.name, c.producer, c.consumer])).toEqual([
      ["raw", "source.on_success", "transforms[0].input"],
      ["clean", "transforms[0].on_success", "gates[1].input"],
      ["big", "gates[1].routes.true", "gates[0].input"]
    ])
  })

  it("sends fork branches through their transforms to a dict-form coalesce, and the merge on", () => {
    const w = wiringOf(`${SOURCE("raw")}
gates:
  - {name: split, input: raw, condition: "True", routes: {"true": fork, "false": bad}, fork_to: [a, b, c]}
transforms:
${T("ta", "a", "a_done")}${T("tb", "b", "b_done")}${T("after", "merged", "out")}
coalesce:
  - {name: merged, branches: {a: a_done, b: b_done, c: c}, merge: nested}
${SINKS}`)
    const g = w.gates[0]!
    expect(g.branches).toEqual([
      { branch: "a", dest: { _tag: "Node", node: { kind: "transform", index: 0 } } },
      { branch: "b", dest: { _tag: "Node", node: { kind: "transform", index: 1 } } },
      { branch: "c", dest: { _tag: "Node", node: { kind: "coalesce", index: 0 }, branch: "c" } }
    ])
    expect(w.transforms[0]).toEqual({ _tag: "Node", node: { kind: "coalesce", index: 0 }, branch: "a" })
    expect(w.coalesces[0]!.dest).toEqual({ _tag: "Node", node: { kind: "transform", index: 2 } })
    expect(w.chain.map((n) => `${n.kind}${n.index}`)).toEqual(["gate0", "transform0", "transform1", "transform2"])
  })

  it("sends a fork branch named like a sink straight to that sink", () => {
    const w = wiringOf(`${SOURCE("raw")}
gates:
  - {name: split, input: raw, condition: "True", routes: {"true": fork, "false": bad}, fork_to: [out, bad]}
${SINKS}`)
    expect(w.gates[0]!.branches.map((b) => b.dest)).toEqual([{ _tag: "Sink", name: "out" }, { _tag: "Sink", name: "bad" }])
  })

  it.each([
    [
      "an input nothing produces",
      `${SOURCE("raw")}transforms:\n${T("t", "raws", "out")}`,
      "s.yaml: transforms[0].input: no producer for connection 'raws' (read by transform 't'). Did you mean 'raw'? Available connections: raw"
    ],
    [
      "two consumers of one connection",
      `${SOURCE("raw")}transforms:\n${T("t1", "raw", "out")}${T("t2", "raw", "bad")}`,
      "s.yaml: transforms[1].input: duplicate consumers for connection 'raw': transform 't1' (transforms[0].input) and transform 't2' (transforms[1].input); use a gate to send rows two ways"
    ],
    [
      "two producers of one connection",
      `${SOURCE("raw")}transforms:\n${T("t1", "raw", "mid")}${T("t2", "mid", "mid")}`,
      "s.yaml: transforms[1].on_success: duplicate producer for connection 'mid': transform 't1' (transforms[0].on_success) and transform 't2' (transforms[1].on_success)"
    ],
    [
      "a cycle through connections",
      `${SOURCE("raw")}transforms:\n${T("t0", "raw", "out")}${T("t1", "x", "y")}${T("t2", "y", "x")}`,
      "s.yaml: transforms[1]: the pipeline has a cycle through its connections: transform 't1' → transform 't2' → transform 't1'"
    ],
    [
      "a gate routing to an unknown connection",
      `${SOURCE("raw")}gates:\n  - {name: g, input: raw, condition: "row['a'] > 1", routes: {"true": out, "false": nowhere}}\n`,
      "s.yaml: gates[0].routes.false: gate route target 'nowhere' is neither a sink nor a known connection name."
    ],
    [
      "an output nobody reads",
      `${SOURCE("raw")}transforms:\n${T("t", "raw", "outt")}`,
      "s.yaml: transforms[0].on_success: transform 't' on_success 'outt' is neither a sink nor a known connection (a dangling output). Did you mean 'out'?"
    ],
    [
      "a connection named like a sink",
      `${SOURCE("raw")}transforms:\n${T("t", "out", "bad")}`,
      "s.yaml: transforms[0].input: connection names overlap with sink names: ['out'] (read by transform 't'); connection names and sink names must be disjoint"
    ],
    [
      "a fork branch with no destination",
      `${SOURCE("raw")}gates:\n  - {name: g, input: raw, condition: "True", routes: {"true": fork, "false": out}, fork_to: [left, out]}\n`,
      "s.yaml: gates[0].fork_to[0]: gate 'g' has fork branch 'left' with no destination: list it in a coalesce's branches, name a sink after it, or read it with a node's input."
    ],
    [
      "a coalesce branch no gate forks",
      `${SOURCE("raw")}gates:\n  - {name: g, input: raw, condition: "True", routes: {"true": fork, "false": out}, fork_to: [a, b]}\ncoalesce:\n  - {name: m, branches: [a, z], on_success: out}\n`,
      "s.yaml: coalesce[0].branches: coalesce 'm' declares branch 'z', but no gate forks to it (fork_to); branches forked by gates: a, b"
    ],
    [
      "default_sink in the explicit form",
      `${SOURCE("out")}default_sink: out\n`,
      "s.yaml: default_sink: there is no default sink in the explicit form"
    ],
    [
      "a continue route in the explicit form",
      `${SOURCE("raw")}gates:\n  - {name: g, input: raw, condition: "row['a'] > 1", routes: {"true": out, "false": continue}}\n`,
      "s.yaml: gates[0].routes.false: route destination 'continue' has been removed in the explicit form; use a connection name or a sink name"
    ],
    [
      "a transform without a name",
      `${SOURCE("raw")}transforms:\n  - {plugin: passthrough, input: raw, on_success: out, options: {schema: {mode: observed}}}\n`,
      "s.yaml: transforms[0].name: missing: every transform has a unique name in the explicit form"
    ],
    [
      "two nodes with one name",
      `${SOURCE("raw")}transforms:\n${T("same", "raw", "x")}gates:\n  - {name: same, input: x, condition: "row['a'] > 1", routes: {"true": out, "false": bad}}\n`,
      "s.yaml: gates[0].name: node name 'same' is already used by transforms[0]"
    ],
    [
      "on_error inside options in the explicit form",
      `${SOURCE("raw")}transforms:\n  - {name: t, plugin: passthrough, input: raw, on_success: out, options: {schema: {mode: observed}, on_error: bad}}\n`,
      "s.yaml: transforms[0].options.on_error: in the explicit form on_error sits beside plugin (transforms[0].on_error), not in options"
    ],
    [
      "input on a node of the positional form",
      `source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}}}\ntransforms:\n  - {plugin: passthrough, input: raw, options: {schema: {mode: observed}}}\ndefault_sink: out\n`,
      "s.yaml: transforms[0].input: explicit wiring needs source.on_success too"
    ]
  ])("refuses %s, naming both ends", (_what, yaml, message) => {
    expect(errorOf(yaml.includes("sinks:") ? yaml : `${yaml}${SINKS}`)).toContain(message)
  })
})

describe("positional wiring", () => {
  it("wires list order: transforms, aggregations, gates; continue to the next; the end to default_sink", () => {
    const w = wiringOf(`
source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}}}
transforms:
  - {plugin: passthrough, options: {schema: {mode: observed}}}
gates:
  - {name: g, condition: "row['a'] > 1", routes: {"true": continue, "false": bad}}
${SINKS}default_sink: out
`)
    expect(w.explicit).toBe(false)
    expect(w.chain).toEqual([{ kind: "transform", index: 0 }, { kind: "gate", index: 0 }])
    expect(w.transforms[0]).toEqual({ _tag: "Node", node: { kind: "gate", index: 0 } })
    expect(w.gates[0]!.routes.get("true")).toEqual({ _tag: "End" })
    expect(w.gates[0]!.routes.get("false")).toEqual({ _tag: "Sink", name: "bad" })
  })

  it("asks for default_sink or source.on_success when neither is given", () => {
    expect(errorOf(`source: {plugin: csv, options: {path: in.csv}}\n${SINKS}`)).toMatch(
      /^s\.yaml: default_sink: missing: name where rows go — source\.on_success with input\/on_success on every node \(the explicit form\), or default_sink/
    )
  })
})
