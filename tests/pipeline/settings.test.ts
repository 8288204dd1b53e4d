import { describe, expect, it } from "vitest"
import { Effect, Either } from "effect"
import { join } from "node:path"
import { loadPipelineSettings, parseSettings } from "../../src/pipeline/settings.js"
import { COMPAT, compatSkipNotice, HAS_COMPAT } from "../support/compat.js"
import { PIPELINE_FIXTURES } from "../support/fixtures.js"

const load = (text: string, env: Record<string, string> = {}) => Effect.runSync(Effect.either(parseSettings("s.yaml", text, env)))
const errorText = (text: string, env: Record<string, string> = {}) => {
  const r = load(text, env)
  if (Either.isRight(r)) throw new Error("expected an error")
  return r.left.text
}
const BASE = "source: {plugin: csv}\nsinks: {out: {plugin: csv}}\ndefault_sink: out\n"

compatSkipNotice("loading the settings of the ELSPETH compat examples (tests/pipeline/settings.test.ts)")

describe.skipIf(!HAS_COMPAT)("pipeline settings: the ELSPETH compat examples", () => {
  it.each(["threshold_gate", "boolean_routing", "json_explode", "audit_export", "landscape_journal", "schema_contracts_demo", "batch_aggregation", "deaggregation"])(
    "loads the compat example %s",
    (name) => {
      const r = Effect.runSync(Effect.either(loadPipelineSettings(join(COMPAT, "examples", name, "settings.yaml"))))
      if (Either.isLeft(r)) throw new Error(r.left.text)
      expect(r.right.settings.default_sink! in r.right.settings.sinks).toBe(true)
    }
  )
})

describe("pipeline settings", () => {
  it.each(["orders", "baskets", "ledger"])("loads the pipeline fixture %s", (name) => {
    const r = Effect.runSync(Effect.either(loadPipelineSettings(join(PIPELINE_FIXTURES, name, "settings.yaml"))))
    if (Either.isLeft(r)) throw new Error(r.left.text)
    expect(r.right.settings.default_sink! in r.right.settings.sinks).toBe(true)
    expect(r.right.warnings).toEqual([])
  })

  it("refuses an ELSPETH setting it does not implement instead of ignoring it", () => {
    expect(errorText(BASE + "landscape: {backend: postgresql}\n")).toContain("s.yaml: landscape.backend: 'postgresql' is not supported")
  })

  it("rejects unknown top-level keys with a hint", () => {
    expect(errorText(BASE + "gatez: []\n")).toBe(
      "s.yaml: gatez: unknown setting; did you mean 'gates'? (known: source, transforms, gates, aggregations, coalesce, sinks, default_sink, landscape, payload_store, checkpoint, retry, concurrency, rate_limit, run_mode, replay_from, telemetry)"
    )
  })

  it("rejects unknown entry keys naming the path", () => {
    expect(errorText("source: {plugin: csv}\nsinks: {out: {plugin: csv, optoins: {}}}\ndefault_sink: out\n")).toMatch(
      /^s\.yaml: sinks\.out\.optoins: .*did you mean 'options'/
    )
  })

  it("lower-cases keys outside options and refuses mixed-case sink names", () => {
    const r = load("SOURCE: {plugin: csv, options: {KeepMe: 1}}\nsinks: {OUT: {plugin: csv}}\ndefault_sink: out\n")
    expect(Either.isRight(r)).toBe(true)
    if (Either.isRight(r)) {
      expect(Object.keys(r.right.settings.sinks)).toEqual(["out"])
      expect(r.right.settings.source.options).toEqual({ KeepMe: 1 })
    }
    expect(errorText("source: {plugin: csv}\nsinks: {Out: {plugin: csv}}\ndefault_sink: out\n")).toBe(
      "s.yaml: sinks.Out: sink names must be lower case ('out')"
    )
  })

  it("lower-cases gate route labels", () => {
    const r = load(BASE + "gates: [{name: g, condition: \"row['x']\", routes: {HIGH: out, low: continue}}]\n")
    if (Either.isLeft(r)) throw new Error(r.left.text)
    expect(Object.keys(r.right.settings.gates![0]!.routes)).toEqual(["high", "low"])
  })

  it("expands ${VAR} and ${VAR:-default}; an unset variable without default names the key", () => {
    const r = load("source: {plugin: csv, options: {path: '${DIR}/in.csv', other: '${MISSING:-fallback}'}}\nsinks: {out: {plugin: csv}}\ndefault_sink: out\n", { DIR: "data" })
    if (Either.isLeft(r)) throw new Error(r.left.text)
    expect(r.right.settings.source.options).toEqual({ path: "data/in.csv", other: "fallback" })
    expect(errorText("source: {plugin: csv, options: {path: '${NOPE}'}}\nsinks: {out: {plugin: csv}}\ndefault_sink: out\n")).toBe(
      "s.yaml: source.options.path: environment variable NOPE is not set and has no default (write ${NOPE:-default})"
    )
  })

  it("names the value of a bad trigger", () => {
    expect(errorText(BASE + "aggregations: [{name: a, plugin: batch_stats, trigger: {count: 0}}]\n")).toMatch(
      /^s\.yaml: aggregations\[0\]\.trigger\.count: .*0/
    )
  })

  it("reports YAML syntax errors with line and column", () => {
    expect(errorText("source: [\n")).toMatch(/^s\.yaml: not valid YAML \(line \d+, column \d+\)/)
  })

  it("requires source, sinks and default_sink", () => {
    expect(errorText("sinks: {out: {plugin: csv}}\ndefault_sink: out\n")).toMatch(/^s\.yaml: source: /)
    expect(errorText("source: {plugin: csv}\nsinks: {out: {plugin: csv}}\n")).toMatch(/^s\.yaml: default_sink: /)
  })

  it("refuses a file that is not a mapping, and a missing file", () => {
    expect(errorText("- a\n- b\n")).toBe("s.yaml: expected a mapping of settings, got a list")
    const r = Effect.runSync(Effect.either(loadPipelineSettings("/nonexistent/settings.yaml")))
    expect(Either.isLeft(r) && r.left.text).toBe("/nonexistent/settings.yaml: settings file not found")
  })
})
