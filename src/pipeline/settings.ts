/**
 * Pipeline settings: YAML, `${VAR}` / `${VAR:-default}` expansion, ELSPETH's key
 * lower-casing, and a strict Schema of the top-level keys. Every error names the file,
 * the key path and the offending value (exit code 2 at the CLI).
 */
import { Data, Effect, Schema } from "effect"
import { readFileSync } from "node:fs"
import { parseDocument } from "yaml"
import { checkLandscapeSettings, landscapeWarnings, LandscapeSettings, PayloadStoreSettings } from "./landscape-settings.js"
import { resolveTelemetry, TelemetrySettings, telemetryWarnings } from "../services/telemetry-settings.js"
import { decodeOptions, didYouMean, PositiveInt, showValue } from "./plugins/options.js"

export class SettingsError extends Data.TaggedError("SettingsError")<{
  readonly file: string
  /** Key path, e.g. `gates[0].routes.true`; empty for the whole file. */
  readonly key: string
  readonly message: string
}> {
  /** `settings.yaml: gates[0].routes.true: no sink named 'hi_values'; …` */
  get text(): string {
    return this.key === "" ? `${this.file}: ${this.message}` : `${this.file}: ${this.key}: ${this.message}`
  }
}

const PluginOptions = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * Two forms are read (docs/pipelines.md): the explicit wiring of ELSPETH's current
 * format — every node names its `input` connection and where its output goes
 * (`on_success`) — and the older positional form, where list order wires the chain and
 * `default_sink` receives what reaches the end. `source.on_success` selects the
 * explicit form; wiring.ts checks that a file does not mix them.
 */
const SourceEntry = Schema.Struct({
  plugin: Schema.String,
  on_success: Schema.optional(Schema.String),
  options: Schema.optional(PluginOptions)
})

const TransformEntry = Schema.Struct({
  plugin: Schema.String,
  name: Schema.optional(Schema.String),
  input: Schema.optional(Schema.String),
  on_success: Schema.optional(Schema.String),
  on_error: Schema.optional(Schema.String),
  options: Schema.optional(PluginOptions)
})

const GateEntry = Schema.Struct({
  name: Schema.String,
  input: Schema.optional(Schema.String),
  condition: Schema.String,
  routes: Schema.Record({ key: Schema.String, value: Schema.String }),
  fork_to: Schema.optional(Schema.Array(Schema.String))
})

const PositiveNumber = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n > 0) || `expected a number > 0, got ${showValue(n)}`),
  Schema.annotations({ title: "a number > 0" })
)
const NonNegativeNumber = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n >= 0) || `expected a number ≥ 0, got ${showValue(n)}`),
  Schema.annotations({ title: "a number ≥ 0" })
)

const TriggerEntry = Schema.Struct({
  count: Schema.optional(PositiveInt),
  timeout_seconds: Schema.optional(PositiveNumber),
  condition: Schema.optional(Schema.String)
})

const AggregationEntry = Schema.Struct({
  name: Schema.String,
  plugin: Schema.String,
  input: Schema.optional(Schema.String),
  on_success: Schema.optional(Schema.String),
  on_error: Schema.optional(Schema.String),
  trigger: TriggerEntry,
  output_mode: Schema.optional(Schema.Literal("transform", "passthrough")),
  expected_output_count: Schema.optional(PositiveInt),
  options: Schema.optional(PluginOptions)
})

const CoalesceEntry = Schema.Struct({
  name: Schema.String,
  /** A list of branch names, or `{branch: input connection}` when a branch has transforms. */
  branches: Schema.Union(Schema.Array(Schema.String), Schema.Record({ key: Schema.String, value: Schema.String })),
  on_success: Schema.optional(Schema.String),
  policy: Schema.optional(Schema.Literal("require_all", "quorum", "best_effort", "first")),
  merge: Schema.optional(Schema.Literal("union", "nested", "select")),
  timeout_seconds: Schema.optional(PositiveNumber),
  quorum_count: Schema.optional(PositiveInt),
  select_branch: Schema.optional(Schema.String)
})

const SinkEntry = Schema.Struct({
  plugin: Schema.String,
  on_write_failure: Schema.optional(Schema.String),
  options: Schema.optional(PluginOptions)
})

const CheckpointSettings = Schema.Struct({
  enabled: Schema.optional(Schema.Boolean),
  frequency: Schema.optional(Schema.Literal("every_row", "every_n", "aggregation_only")),
  checkpoint_interval: Schema.optional(PositiveInt),
  aggregation_boundaries: Schema.optional(Schema.Boolean),
  /** The older spelling of `checkpoint_interval` (implies `frequency: every_n`). */
  every_n_rows: Schema.optional(PositiveInt)
})

const RetrySettings = Schema.Struct({
  max_attempts: Schema.optional(PositiveInt),
  initial_delay_seconds: Schema.optional(NonNegativeNumber),
  max_delay_seconds: Schema.optional(NonNegativeNumber),
  exponential_base: Schema.optional(Schema.Number.pipe(Schema.filter((n) => n >= 1 || `expected a number ≥ 1, got ${n}`)))
})

const ConcurrencySettings = Schema.Struct({
  max_workers: Schema.optional(PositiveInt)
})

const ServiceRateLimit = Schema.Struct({
  requests_per_minute: Schema.optional(PositiveInt),
  requests_per_second: Schema.optional(PositiveNumber)
})

/** ELSPETH's `rate_limit:` (per-service buckets shared by every plugin of that service). */
const RateLimitSettings = Schema.Struct({
  enabled: Schema.optional(Schema.Boolean),
  default_requests_per_minute: Schema.optional(PositiveInt),
  default_requests_per_second: Schema.optional(PositiveNumber),
  /** Cross-process state: not supported (an error naming the key). */
  persistence_path: Schema.optional(Schema.String),
  services: Schema.optional(Schema.Record({ key: Schema.String, value: ServiceRateLimit }))
})

export const PipelineSettingsSchema = Schema.Struct({
  source: SourceEntry,
  transforms: Schema.optional(Schema.Array(TransformEntry)),
  gates: Schema.optional(Schema.Array(GateEntry)),
  aggregations: Schema.optional(Schema.Array(AggregationEntry)),
  coalesce: Schema.optional(Schema.Array(CoalesceEntry)),
  sinks: Schema.Record({ key: Schema.String, value: SinkEntry }),
  default_sink: Schema.optional(Schema.String),
  landscape: Schema.optional(LandscapeSettings),
  payload_store: Schema.optional(PayloadStoreSettings),
  checkpoint: Schema.optional(CheckpointSettings),
  retry: Schema.optional(RetrySettings),
  concurrency: Schema.optional(ConcurrencySettings),
  rate_limit: Schema.optional(RateLimitSettings),
  /** `live` (default), `replay` (answers from `replay_from`'s recorded calls, no network), `verify`. */
  run_mode: Schema.optional(Schema.Literal("live", "replay", "verify")),
  replay_from: Schema.optional(Schema.String.pipe(Schema.filter((s) => s.trim() !== "" || "expected a run id"))),
  telemetry: Schema.optional(TelemetrySettings)
})

export type PipelineSettings = typeof PipelineSettingsSchema.Type
export type GateSettings = typeof GateEntry.Type
export type AggregationSettings = typeof AggregationEntry.Type
export type CoalesceSettings = typeof CoalesceEntry.Type
export type SinkSettings = typeof SinkEntry.Type
export type TransformSettings = typeof TransformEntry.Type
export type RetrySettings = typeof RetrySettings.Type
export type RateLimitSettings = typeof RateLimitSettings.Type

export interface LoadedSettings {
  readonly file: string
  readonly settings: PipelineSettings
  readonly warnings: ReadonlyArray<string>
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

type Mutable = Record<string, unknown>

/**
 * Expands `${VAR}` / `${VAR:-default}` in every string, lower-cases mapping keys
 * outside `options:` blocks, and checks sink name case, all with key paths.
 */
const prepare = (
  file: string,
  value: unknown,
  path: string,
  env: Readonly<Record<string, string | undefined>>,
  insideOptions: boolean
): unknown => {
  if (typeof value === "string") {
    return value.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
      const v = env[name]
      if (v !== undefined && v !== "") return v
      if (fallback !== undefined) return fallback
      if (v !== undefined) return v
      throw new SettingsError({
        file,
        key: path,
        message: `environment variable ${name} is not set and has no default (write \${${name}:-default})`
      })
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => prepare(file, v, `${path}[${i}]`, env, insideOptions))
  if (value !== null && typeof value === "object") {
    const out: Mutable = {}
    for (const [rawKey, v] of Object.entries(value)) {
      let key = rawKey
      if (!insideOptions) {
        if (path === "sinks" && rawKey !== rawKey.toLowerCase() && rawKey !== rawKey.toUpperCase()) {
          throw new SettingsError({
            file,
            key: `sinks.${rawKey}`,
            message: `sink names must be lower case ('${rawKey.toLowerCase()}')`
          })
        }
        key = rawKey.toLowerCase()
        if (Object.hasOwn(out, key)) {
          throw new SettingsError({ file, key: path === "" ? key : `${path}.${key}`, message: `key given twice (keys are not case-sensitive)` })
        }
      }
      const childPath = path === "" ? key : `${path}.${key}`
      Object.defineProperty(out, key, {
        value: prepare(file, v, childPath, env, insideOptions || key === "options"),
        enumerable: true,
        writable: true,
        configurable: true
      })
    }
    return out
  }
  return value
}

/** Parses settings text (YAML; JSON is YAML too). `file` names the source in errors. */
export const parseSettings = (
  file: string,
  text: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<LoadedSettings, SettingsError> =>
  Effect.suspend(() => {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!
      const pos = e.linePos?.[0]
      const where = pos === undefined ? "" : ` (line ${pos.line}, column ${pos.col})`
      return Effect.fail(new SettingsError({ file, key: "", message: `not valid YAML${where}: ${e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}` }))
    }
    const data: unknown = doc.toJS({ maxAliasCount: 100 })
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      return Effect.fail(new SettingsError({ file, key: "", message: `expected a mapping of settings, got ${showValue(data)}` }))
    }
    let prepared: Mutable
    try {
      prepared = prepare(file, data, "", env, false) as Mutable
    } catch (e) {
      if (e instanceof SettingsError) return Effect.fail(e)
      throw e
    }
    return decodeOptions("settings", PipelineSettingsSchema, prepared).pipe(
      Effect.mapError((e) => {
        const unknownTop = /^unknown option '([^']+)'/.exec(e.message)
        if (unknownTop !== null && e.key === unknownTop[1]) {
          const known = Object.keys(PipelineSettingsSchema.fields)
          const hint = didYouMean(unknownTop[1]!, known)
          return new SettingsError({
            file,
            key: e.key,
            message: `unknown setting${hint === undefined ? "" : `; did you mean '${hint}'?`} (known: ${known.join(", ")})`
          })
        }
        return new SettingsError({ file, key: e.key, message: e.message.replace(/\boption\b/g, "key") })
      }),
      // An ELSPETH key runledger does not implement is an error, never a silent downgrade.
      Effect.flatMap((settings) => {
        if (settings.source.on_success === undefined && settings.default_sink === undefined) {
          return Effect.fail(
            new SettingsError({
              file,
              key: "default_sink",
              message:
                "missing: name where rows go — source.on_success with input/on_success on every node (the explicit form), or default_sink (the positional form)"
            })
          )
        }
        const mode = settings.run_mode ?? "live"
        if (mode !== "live" && settings.replay_from === undefined) {
          return Effect.fail(new SettingsError({ file, key: "replay_from", message: `required with run_mode: ${mode} (the run whose recorded calls answer or are compared)` }))
        }
        if (mode === "live" && settings.replay_from !== undefined) {
          return Effect.fail(new SettingsError({ file, key: "replay_from", message: "is only read with run_mode: replay or verify; set run_mode or remove replay_from" }))
        }
        if (settings.rate_limit?.persistence_path !== undefined) {
          return Effect.fail(
            new SettingsError({
              file,
              key: "rate_limit.persistence_path",
              message: "is not supported: rate limits are shared by the plugins of one run, not across processes; remove the key"
            })
          )
        }
        const telemetry = resolveTelemetry(settings.telemetry, env)
        const problem = checkLandscapeSettings(settings) ?? ("problem" in telemetry ? telemetry.problem : undefined)
        return problem === undefined
          ? Effect.succeed({ file, settings, warnings: [...landscapeWarnings(settings), ...telemetryWarnings(settings.telemetry)] })
          : Effect.fail(new SettingsError({ file, ...problem }))
      })
    )
  })

/** Reads and parses a settings file. */
export const loadPipelineSettings = (
  path: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<LoadedSettings, SettingsError> =>
  Effect.suspend(() => {
    let text: string
    try {
      text = readFileSync(path, "utf8")
    } catch (e) {
      const code = (e as { code?: string }).code
      return Effect.fail(
        new SettingsError({
          file: path,
          key: "",
          message: code === "ENOENT" ? "settings file not found" : `cannot read the settings file (${code ?? String(e)})`
        })
      )
    }
    return parseSettings(path, text, env)
  })
