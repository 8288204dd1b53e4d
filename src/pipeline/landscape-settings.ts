/**
 * The `landscape:` and `payload_store:` sections of the pipeline settings: their
 * schemas, the checks between their keys, and what they ask of the Landscape when it
 * is opened (`landscapeRequest`), as plain data for the CLI to wire.
 *
 * Every ELSPETH key of these sections is either implemented or an error naming it;
 * the purely informational ones are listed in `INFORMATIONAL_KEYS`.
 */
import { Schema } from "effect"
import { DEFAULT_PAYLOAD_BASE_PATH } from "../services/call-store.js"
import { PositiveInt, showValue } from "./plugins/options.js"

const NonEmptyString = Schema.String.pipe(
  Schema.filter((s) => s.trim() !== "" || "expected a non-empty string"),
  Schema.annotations({ title: "a non-empty string" })
)

/** ELSPETH writes `null` for "not set" in these optional paths. */
const OptionalPath = Schema.optional(Schema.NullOr(NonEmptyString))

const EnvName = Schema.String.pipe(
  Schema.filter((s) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) || `expected an environment variable name, got ${showValue(s)}`),
  Schema.annotations({ title: "an environment variable name" })
)

export const ExportSettings = Schema.Struct({
  enabled: Schema.optional(Schema.Boolean),
  sink: Schema.optional(Schema.String),
  format: Schema.optional(Schema.Literal("json", "csv")),
  sign: Schema.optional(Schema.Boolean)
})

export const LandscapeSettings = Schema.Struct({
  /** Only `true` is accepted: runledger always records. */
  enabled: Schema.optional(Schema.Boolean),
  /** `sqlite` (default) or `sqlcipher`; checked in `checkLandscapeSettings`. */
  backend: Schema.optional(Schema.String),
  url: Schema.optional(Schema.String),
  /** The variable holding the SQLCipher passphrase (default RUNLEDGER_AUDIT_KEY, then ELSPETH_AUDIT_KEY). */
  encryption_key_env: Schema.optional(EnvName),
  export: Schema.optional(ExportSettings),
  dump_to_jsonl: Schema.optional(Schema.Boolean),
  dump_to_jsonl_path: OptionalPath,
  dump_to_jsonl_fail_on_error: Schema.optional(Schema.Boolean),
  dump_to_jsonl_include_payloads: Schema.optional(Schema.Boolean),
  dump_to_jsonl_payload_base_path: OptionalPath
})

export const PayloadStoreSettings = Schema.Struct({
  /** Only `filesystem`. */
  backend: Schema.optional(Schema.String),
  base_path: Schema.optional(NonEmptyString),
  /** Informational: how long payloads are meant to be kept (`runledger purge --retention-days N` applies it). */
  retention_days: Schema.optional(PositiveInt)
})

export type LandscapeSettings = typeof LandscapeSettings.Type
export type PayloadStoreSettings = typeof PayloadStoreSettings.Type

/** The sections this module owns, as they appear in the decoded settings. */
export interface LandscapeSections {
  readonly landscape?: LandscapeSettings | undefined
  readonly payload_store?: PayloadStoreSettings | undefined
}

/**
 * Keys accepted that change nothing in a run, with why. Every other key of these
 * sections is implemented.
 */
export const INFORMATIONAL_KEYS: ReadonlyArray<readonly [key: string, why: string]> = [
  ["landscape.enabled", "only `true` is accepted (runledger always records); `false` is an error"],
  ["payload_store.retention_days", "not applied by a run: `runledger purge --retention-days N` deletes expired payloads"]
]

/** ELSPETH's default folder of the payload store, used when `payload_store` gives no `base_path`. */
export { DEFAULT_PAYLOAD_BASE_PATH }

const JOURNAL_OPTIONS = [
  "dump_to_jsonl_path",
  "dump_to_jsonl_fail_on_error",
  "dump_to_jsonl_include_payloads",
  "dump_to_jsonl_payload_base_path"
] as const

export interface LandscapeSettingsProblem {
  readonly key: string
  readonly message: string
}

const given = (value: unknown) => value !== undefined && value !== null

/** The first contradiction or unsupported value of the two sections, naming its key. */
export const checkLandscapeSettings = (settings: LandscapeSections): LandscapeSettingsProblem | undefined => {
  const l = settings.landscape
  const store = settings.payload_store
  if (l?.enabled === false) {
    return {
      key: "landscape.enabled",
      message: "runledger always records the Landscape (the audit trail is the point); remove the key or set it to true"
    }
  }
  const backend = l?.backend ?? "sqlite"
  if (backend === "postgresql") {
    return {
      key: "landscape.backend",
      message: "'postgresql' is not supported: the Landscape is a SQLite file; use backend: sqlite, or sqlcipher for an encrypted file"
    }
  }
  if (backend !== "sqlite" && backend !== "sqlcipher") {
    return { key: "landscape.backend", message: `expected 'sqlite' or 'sqlcipher', got ${showValue(backend)}` }
  }
  if (backend !== "sqlcipher" && l?.encryption_key_env !== undefined) {
    return {
      key: "landscape.encryption_key_env",
      message: `names the passphrase of an encrypted Landscape, but landscape.backend is ${l.backend === undefined ? "not set (sqlite)" : "sqlite"}: ` +
        "the Landscape would be written in plaintext; set backend: sqlcipher, or remove encryption_key_env"
    }
  }
  if (backend === "sqlcipher" && (l?.url?.trim() === ":memory:" || l?.url?.trim() === "sqlite:///:memory:")) {
    return { key: "landscape.url", message: "backend: sqlcipher encrypts a file; :memory: has none" }
  }
  if (store !== undefined && (store.backend ?? "filesystem") !== "filesystem") {
    return {
      key: "payload_store.backend",
      message: `${showValue(store.backend)} is not supported: the payload store is a folder (backend: filesystem)`
    }
  }
  if (l?.dump_to_jsonl === true && l.dump_to_jsonl_include_payloads === true && !given(l.dump_to_jsonl_payload_base_path) && store === undefined) {
    return {
      key: "landscape.dump_to_jsonl_include_payloads",
      message: "inlines payloads from a payload store, and none is configured; add payload_store (or dump_to_jsonl_payload_base_path)"
    }
  }
  return undefined
}

/** What is accepted but worth saying: plaintext copies of an encrypted Landscape, journal keys without a journal. */
export const landscapeWarnings = (settings: LandscapeSections): Array<string> => {
  const l = settings.landscape
  const warnings: Array<string> = []
  if (l?.dump_to_jsonl !== true) {
    const orphans = JOURNAL_OPTIONS.filter((k) => l !== undefined && given(l[k]))
    if (orphans.length > 0) {
      warnings.push(`landscape.${orphans.join(", landscape.")} set, but landscape.dump_to_jsonl is not true: no journal is written`)
    }
  }
  if (l?.backend === "sqlcipher") {
    if (l.dump_to_jsonl === true) {
      warnings.push("landscape.dump_to_jsonl: the journal is plaintext, although the Landscape is encrypted (backend: sqlcipher)")
    }
    if (settings.payload_store !== undefined) {
      warnings.push("payload_store: payload files are plaintext, although the Landscape is encrypted (backend: sqlcipher)")
    }
  }
  return warnings
}

/** What the settings ask of the Landscape when it is opened; paths as written (relative to the working directory). */
export interface LandscapeRequest {
  readonly encrypted: boolean
  /** The variable named by `encryption_key_env`; undefined: runledger's defaults. */
  readonly keyEnv: string | undefined
  readonly journal:
    | {
      /** undefined: next to the Landscape file, `<name>.journal.jsonl`. */
      readonly path: string | undefined
      readonly failOnError: boolean
      /** Where to read payloads to inline; undefined: none are inlined. */
      readonly payloadBasePath: string | undefined
    }
    | undefined
  readonly payloadStore: { readonly basePath: string } | undefined
}

export const landscapeRequest = (settings: LandscapeSections): LandscapeRequest => {
  const l = settings.landscape
  const store = settings.payload_store
  const storePath = store === undefined ? undefined : (store.base_path ?? DEFAULT_PAYLOAD_BASE_PATH)
  return {
    encrypted: l?.backend === "sqlcipher",
    keyEnv: l?.encryption_key_env,
    journal: l?.dump_to_jsonl === true
      ? {
        path: l.dump_to_jsonl_path ?? undefined,
        failOnError: l.dump_to_jsonl_fail_on_error === true,
        payloadBasePath: l.dump_to_jsonl_include_payloads === true ? (l.dump_to_jsonl_payload_base_path ?? storePath) : undefined
      }
      : undefined,
    payloadStore: storePath === undefined ? undefined : { basePath: storePath }
  }
}
