/**
 * Options and helpers shared by the row and batch transforms.
 */
import { Effect, Schema } from "effect"
import { decodeOptions, Destination, Identifier } from "../options.js"
import type { PluginConfigError, Row, SchemaConfig } from "../protocol.js"
import { PluginRunError, putField } from "../protocol.js"
import { parseSchemaConfig, validateStrict } from "../schema.js"

/** `schema`, `on_error`, `required_input_fields`: shared by every transform but json_explode. */
export const TransformCommonFields = {
  schema: Schema.Unknown,
  on_error: Schema.optional(Destination),
  required_input_fields: Schema.optional(Schema.Array(Identifier))
}

export interface CommonTransformOptions {
  readonly schema: unknown
  readonly on_error?: string | undefined
  readonly required_input_fields?: ReadonlyArray<string> | undefined
}

export interface DecodedTransform<A> {
  readonly options: A
  /** The configured schema as given. */
  readonly schema: SchemaConfig
  /**
   * The schema the start-up check sees for this node's input: the configured one,
   * with `requiredFields` replaced by `required_input_fields` when that option is set
   * (the option takes precedence over the schema's own `required_fields`).
   */
  readonly inputSchema: SchemaConfig
}

/** Decodes options strictly and parses the `schema` option. */
export const decodeTransform = <A extends CommonTransformOptions, I>(
  plugin: string,
  schema: Schema.Schema<A, I>,
  raw: unknown
): Effect.Effect<DecodedTransform<A>, PluginConfigError> =>
  Effect.gen(function*() {
    const options = yield* decodeOptions(plugin, schema, raw)
    const parsed = yield* parseSchemaConfig(plugin, options.schema)
    const required = options.required_input_fields
    const inputSchema = required !== undefined && required.length > 0
      ? { ...parsed, requiredFields: [...new Set(required)] }
      : parsed
    return { options, schema: parsed, inputSchema }
  })

/** Throws (a run failure) when `validate_input` is on and the row breaks the schema. */
export const makeInputValidator = (
  plugin: string,
  enabled: boolean,
  schema: SchemaConfig
): ((row: Row) => void) => {
  if (!enabled || schema.mode === "observed") return () => undefined
  return (row) => {
    const problem = validateStrict(schema, row)
    if (problem !== undefined) {
      throw new PluginRunError({ plugin, message: `input row does not match the schema (validate_input): ${problem}` })
    }
  }
}

export const hasOwn = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key)

/** A shallow copy of a row that keeps every own key (including `__proto__`). */
export const copyRow = (row: Row): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(row)) putField(out, k, row[k])
  return out
}

/** A value for an error message about a batch row: `'text'`, `null`, `a list`, `an object`, `3`. */
export const describeValue = (v: unknown): string =>
  v === null ? "null" : typeof v === "string" ? `'${v}'` : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : String(v)

/**
 * Python's type name of a row value, for error details: `str`, `int`, `float`,
 * `bool`, `NoneType`, `list`, `dict`. A JS number is an `int` when integral.
 */
export const pyTypeName = (v: unknown): string => {
  if (v === null || v === undefined) return "NoneType"
  if (typeof v === "string") return "str"
  if (typeof v === "boolean") return "bool"
  if (typeof v === "bigint") return "int"
  if (typeof v === "number") return Number.isInteger(v) && !Object.is(v, -0) ? "int" : "float"
  if (Array.isArray(v)) return "list"
  return "dict"
}

/** Python's `==` on JSON-like values: numbers by value, lists in order, mappings regardless of key order. */
export const pyEquals = (a: unknown, b: unknown): boolean => {
  if (typeof a === "bigint" || typeof b === "bigint") {
    return (typeof a === "bigint" || typeof a === "number") && (typeof b === "bigint" || typeof b === "number") &&
      a == b // loose: a bigint equals a number of the same value
  }
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => pyEquals(x, b[i]))
  }
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  return ka.length === kb.length &&
    ka.every((k) => hasOwn(b, k) && pyEquals((a as Row)[k], (b as Row)[k]))
}
