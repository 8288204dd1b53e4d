/**
 * The `telemetry:` section (pipeline settings and loop configs): its schema, the checks
 * between its keys, and what it asks for (`telemetryRequest`) as plain data for the CLI
 * to wire. Follows ELSPETH's section — `enabled`, `granularity`, `backpressure_mode`,
 * `fail_on_total_exporter_failure`, `exporters: [{name, options}]` — and keeps
 * runledger's older `jsonl_path` key.
 *
 * Exporters: `otlp` (OTLP over HTTP: spans and metrics), `console` (one event per line
 * on stderr or stdout, JSON or text) and `jsonl` (events appended to a file, the same
 * as `jsonl_path`). ELSPETH's `azure_monitor` and `datadog` are errors naming them.
 */
import { Schema } from "effect"
import type { Granularity } from "./telemetry.js"

/** A value as an error message shows it (as the settings' other messages do): strings quoted, containers named. */
const showValue = (value: unknown): string => {
  if (value === undefined) return "nothing"
  if (value === null) return "null"
  if (typeof value === "string") return `'${value.length > 60 ? `${value.slice(0, 57)}...` : value}'`
  if (Array.isArray(value)) return "a list"
  if (typeof value === "object") return "a mapping"
  return String(value)
}

const isPositiveInt = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n > 0

export const TelemetryExporterSettings = Schema.Struct({
  name: Schema.String,
  options: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})

export const TelemetrySettings = Schema.Struct({
  enabled: Schema.optional(Schema.Boolean),
  /** runledger's own key: the events, one JSON object per line, appended to this file. */
  jsonl_path: Schema.optional(Schema.String),
  granularity: Schema.optional(Schema.Literal("lifecycle", "rows", "full")),
  backpressure_mode: Schema.optional(Schema.String),
  fail_on_total_exporter_failure: Schema.optional(Schema.Boolean),
  exporters: Schema.optional(Schema.Array(TelemetryExporterSettings))
})

export type TelemetrySettings = typeof TelemetrySettings.Type

export interface TelemetryProblem {
  readonly key: string
  readonly message: string
}

export interface OtlpRequest {
  /** Base URL; spans go to `<endpoint>/v1/traces`, metrics to `<endpoint>/v1/metrics`. */
  readonly endpoint: string
  readonly headers: Readonly<Record<string, string>>
  readonly batchSize: number | undefined
}

/** What the section asks for; `undefined` exporters mean none. */
export interface TelemetryRequest {
  readonly granularity: Granularity
  readonly jsonl: ReadonlyArray<string>
  readonly console: ReadonlyArray<{ readonly format: "json" | "pretty"; readonly output: "stdout" | "stderr" }>
  readonly otlp: OtlpRequest | undefined
}

type Env = Readonly<Record<string, string | undefined>>

const EXPORTER_KEYS: Readonly<Record<string, ReadonlyArray<string>>> = {
  otlp: ["endpoint", "headers", "batch_size"],
  console: ["format", "output"],
  jsonl: ["path"]
}

/** `http://host:4318` (OTEL_EXPORTER_OTLP_ENDPOINT's form): the signal paths are appended. */
const baseEndpoint = (url: string) => url.replace(/\/+$/, "").replace(/\/v1\/(traces|metrics)$/, "")

const isUrl = (s: string) => {
  try {
    const u = new URL(s)
    return u.protocol === "http:" || u.protocol === "https:"
  } catch {
    return false
  }
}

/** A section that asks for telemetry but names nowhere to send it. */
export const telemetryWarnings = (settings: TelemetrySettings | undefined, section = "telemetry"): ReadonlyArray<string> =>
  settings?.enabled === true && settings.jsonl_path === undefined && (settings.exporters ?? []).length === 0
    ? [`${section}.enabled is true but no exporter (exporters) and no jsonl_path is given: no telemetry is sent`]
    : []

/**
 * Checks the section and resolves it: the error names the key and the value, or the
 * request. `env` supplies OTEL_EXPORTER_OTLP_ENDPOINT when an otlp exporter has no
 * `options.endpoint`. `section` is the key prefix (`telemetry`).
 */
export const resolveTelemetry = (
  settings: TelemetrySettings | undefined,
  env: Env = process.env,
  section = "telemetry"
): { readonly problem: TelemetryProblem } | { readonly request: TelemetryRequest | undefined } => {
  if (settings === undefined) return { request: undefined }
  const fail = (key: string, message: string) => ({ problem: { key: `${section}.${key}`, message } })
  if (settings.backpressure_mode !== undefined && settings.backpressure_mode !== "block" && settings.backpressure_mode !== "drop") {
    return fail(
      "backpressure_mode",
      settings.backpressure_mode === "slow"
        ? "'slow' is not implemented (by ELSPETH either); use block or drop"
        : `expected 'block' or 'drop', got ${showValue(settings.backpressure_mode)}`
    )
  }
  if (settings.fail_on_total_exporter_failure === true) {
    return fail(
      "fail_on_total_exporter_failure",
      "true is not supported: runledger's telemetry never fails a run (the Landscape is the record); set false or remove the key"
    )
  }
  const jsonl: Array<string> = []
  const consoles: Array<{ format: "json" | "pretty"; output: "stdout" | "stderr" }> = []
  let otlp: OtlpRequest | undefined
  if (settings.jsonl_path !== undefined) {
    if (settings.jsonl_path.trim() === "") return fail("jsonl_path", "expected a file path, got an empty string")
    jsonl.push(settings.jsonl_path)
  }
  for (const [i, exporter] of (settings.exporters ?? []).entries()) {
    const at = `exporters[${i}]`
    const known = EXPORTER_KEYS[exporter.name]
    if (known === undefined) {
      return fail(
        `${at}.name`,
        exporter.name === "azure_monitor" || exporter.name === "datadog"
          ? `'${exporter.name}' is not supported by runledger; use otlp (an OpenTelemetry collector forwards to ${exporter.name === "datadog" ? "Datadog" : "Azure Monitor"}), console or jsonl`
          : `unknown exporter ${showValue(exporter.name)}; expected otlp, console or jsonl`
      )
    }
    const options = exporter.options ?? {}
    for (const key of Object.keys(options)) {
      if (!known.includes(key)) return fail(`${at}.options.${key}`, `unknown option of the ${exporter.name} exporter (known: ${known.join(", ")})`)
    }
    if (exporter.name === "jsonl") {
      const path = options["path"]
      if (typeof path !== "string" || path.trim() === "") return fail(`${at}.options.path`, `expected a file path, got ${showValue(path)}`)
      jsonl.push(path)
    } else if (exporter.name === "console") {
      const format = options["format"] ?? "json"
      const output = options["output"] ?? "stderr"
      if (format !== "json" && format !== "pretty") return fail(`${at}.options.format`, `expected 'json' or 'pretty', got ${showValue(format)}`)
      if (output !== "stdout" && output !== "stderr") return fail(`${at}.options.output`, `expected 'stdout' or 'stderr', got ${showValue(output)}`)
      consoles.push({ format, output })
    } else {
      if (otlp !== undefined) return fail(at, "a second otlp exporter; give one (a collector fans out)")
      const given = options["endpoint"]
      if (given !== undefined && (typeof given !== "string" || !isUrl(given))) {
        return fail(`${at}.options.endpoint`, `expected an http(s) URL such as http://127.0.0.1:4318, got ${showValue(given)}`)
      }
      const fromEnv = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
      const endpoint = typeof given === "string" ? given : fromEnv
      if (endpoint === undefined || endpoint.trim() === "") {
        return fail(`${at}.options.endpoint`, "missing: give the collector's OTLP/HTTP URL here or in OTEL_EXPORTER_OTLP_ENDPOINT")
      }
      if (!isUrl(endpoint)) {
        return fail(`${at}.options.endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT is not an http(s) URL: ${showValue(endpoint)}`)
      }
      const headers = options["headers"] ?? {}
      if (typeof headers !== "object" || headers === null || Array.isArray(headers) || Object.values(headers).some((v) => typeof v !== "string")) {
        return fail(`${at}.options.headers`, `expected a map of header names to strings, got ${showValue(headers)}`)
      }
      const batch = options["batch_size"]
      if (batch !== undefined && !isPositiveInt(batch)) return fail(`${at}.options.batch_size`, `expected a positive integer, got ${showValue(batch)}`)
      otlp = { endpoint: baseEndpoint(endpoint), headers: headers as Record<string, string>, batchSize: batch }
    }
  }
  // `enabled: false` turns everything off; without `enabled`, a jsonl_path or exporters list is the ask.
  if (settings.enabled === false) return { request: undefined }
  if (jsonl.length === 0 && consoles.length === 0 && otlp === undefined) return { request: undefined }
  return { request: { granularity: settings.granularity ?? "lifecycle", jsonl, console: consoles, otlp } }
}
