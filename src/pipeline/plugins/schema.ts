/**
 * The `schema:` option of data plugins: parsing, lax source coercion, the strict
 * `validate_input` check, and the start-up compatibility check between nodes.
 *
 * Numbers: rows hold plain JS values, so an `int` and an integral `float` are both
 * JS numbers and cannot be told apart once coerced (`3.0` and `3` are the same value).
 * An `int` field holds an integer-valued number, or a `bigint` for an integer beyond
 * ±(2^53−1), which no JS number holds exactly; a `float` field holds any finite number.
 */
import { Effect } from "effect"
import { stripNumberSpace } from "../../core/python/whitespace.js"
import { didYouMean, isIdentifier, joinKey, showValue } from "./options.js"
import type { FieldSpec, FieldType, Row, SchemaConfig } from "./protocol.js"
import { PluginConfigError, putField } from "./protocol.js"

export const FIELD_TYPES: ReadonlyArray<FieldType> = ["str", "int", "float", "bool", "any"]

/** An observed schema: no declared fields, rows taken as they are. */
export const OBSERVED_SCHEMA: SchemaConfig = {
  mode: "observed",
  fields: [],
  guaranteedFields: [],
  requiredFields: [],
  auditFields: []
}

export const isExplicit = (schema: SchemaConfig): boolean => schema.mode !== "observed"

// ---------------------------------------------------------------------------
// Parsing

const SCHEMA_KEYS = ["mode", "fields", "guaranteed_fields", "required_fields", "audit_fields"] as const
const MODES = ["observed", "fixed", "flexible"] as const

const isMapping = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const parseType = (text: string): { type: FieldType; optional: boolean } | undefined => {
  let t = text.trim()
  let optional = false
  if (t.endsWith("?")) {
    optional = true
    t = t.slice(0, -1).trim()
  }
  return (FIELD_TYPES as ReadonlyArray<string>).includes(t) ? { type: t as FieldType, optional } : undefined
}

const typeHelp = `a type (${FIELD_TYPES.join(", ")}), optionally followed by '?'`

/**
 * Parses a schema option. Errors carry key paths starting with `schema`
 * (`schema.mode`, `schema.fields[2]`).
 */
export const parseSchemaConfig = (plugin: string, value: unknown): Effect.Effect<SchemaConfig, PluginConfigError> =>
  Effect.suspend(() => {
    const result = parseSchemaSync(plugin, value)
    return result instanceof PluginConfigError ? Effect.fail(result) : Effect.succeed(result)
  })

/** Synchronous form of `parseSchemaConfig`: the config or the error. */
export const parseSchemaSync = (plugin: string, value: unknown, base = "schema"): SchemaConfig | PluginConfigError => {
  const fail = (key: string, v: unknown, message: string) => new PluginConfigError({ plugin, key, value: v, message })
  if (value === undefined) {
    return fail(base, undefined, `missing required option '${base}' (e.g. {mode: observed})`)
  }
  if (!isMapping(value)) {
    return fail(base, value, `expected a mapping like {mode: observed} or {mode: fixed, fields: [...]}, got ${showValue(value)}`)
  }
  for (const key of Object.keys(value)) {
    if (!(SCHEMA_KEYS as ReadonlyArray<string>).includes(key)) {
      const suggestion = didYouMean(key, SCHEMA_KEYS)
      const hint = suggestion === undefined ? "" : `; did you mean '${suggestion}'?`
      return fail(joinKey(base, key), value[key], `unknown schema key '${key}'${hint} (known: ${SCHEMA_KEYS.join(", ")})`)
    }
  }
  const mode = value["mode"]
  if (mode === undefined) return fail(joinKey(base, "mode"), undefined, "missing required key 'mode' (observed, fixed or flexible)")
  if (typeof mode !== "string" || !(MODES as ReadonlyArray<string>).includes(mode)) {
    return fail(joinKey(base, "mode"), mode, `expected one of observed, fixed, flexible, got ${showValue(mode)}`)
  }
  const m = mode as SchemaConfig["mode"]
  const rawFields = value["fields"]
  const fieldsKey = joinKey(base, "fields")
  const fields: Array<FieldSpec> = []
  if (m === "observed") {
    if (rawFields !== undefined && rawFields !== null && !(Array.isArray(rawFields) && rawFields.length === 0)) {
      return fail(fieldsKey, rawFields, "an observed schema takes no fields; use mode fixed or flexible to declare fields")
    }
  } else {
    if (rawFields === undefined || rawFields === null) {
      return fail(fieldsKey, rawFields, `a ${m} schema needs a non-empty 'fields' list, e.g. ["id: int", "name: str?"]`)
    }
    if (!Array.isArray(rawFields)) return fail(fieldsKey, rawFields, `expected a list of field specs, got ${showValue(rawFields)}`)
    if (rawFields.length === 0) return fail(fieldsKey, rawFields, `a ${m} schema needs at least one field`)
    const seen = new Set<string>()
    for (let i = 0; i < rawFields.length; i++) {
      const spec: unknown = rawFields[i]
      const key = joinKey(fieldsKey, i)
      let name: string
      let typeText: unknown
      if (typeof spec === "string") {
        const colon = spec.indexOf(":")
        if (colon < 0) {
          return fail(key, spec, `expected a field spec "name: type" (type: ${FIELD_TYPES.join(", ")}; '?' for optional), got ${showValue(spec)}`)
        }
        name = spec.slice(0, colon).trim()
        typeText = spec.slice(colon + 1)
      } else if (isMapping(spec) && Object.keys(spec).length === 1) {
        name = Object.keys(spec)[0]!.trim()
        typeText = spec[Object.keys(spec)[0]!]
      } else {
        return fail(key, spec, `expected a field spec "name: type" or a one-key mapping {name: type}, got ${showValue(spec)}`)
      }
      if (!isIdentifier(name)) {
        return fail(key, spec, `field name ${showValue(name)} is not an identifier (letters, digits, _; not starting with a digit; no '-' or '.')`)
      }
      if (typeof typeText !== "string") return fail(key, spec, `field '${name}': expected ${typeHelp}, got ${showValue(typeText)}`)
      const parsed = parseType(typeText)
      if (parsed === undefined) {
        return fail(key, spec, `field '${name}': unknown type ${showValue(typeText.trim())}; expected ${typeHelp}`)
      }
      if (seen.has(name)) return fail(key, spec, `duplicate field '${name}'`)
      seen.add(name)
      fields.push({ name, type: parsed.type, optional: parsed.optional })
    }
  }
  const declared = new Set(fields.map((f) => f.name))
  const lists: Record<string, Array<string>> = {}
  for (const listKey of ["guaranteed_fields", "required_fields", "audit_fields"] as const) {
    const raw = value[listKey]
    const key = joinKey(base, listKey)
    const out: Array<string> = []
    if (raw !== undefined && raw !== null) {
      if (!Array.isArray(raw)) return fail(key, raw, `expected a list of field names, got ${showValue(raw)}`)
      for (let i = 0; i < raw.length; i++) {
        const item: unknown = raw[i]
        if (typeof item !== "string" || !isIdentifier(item)) {
          return fail(joinKey(key, i), item, `expected a field name (an identifier), got ${showValue(item)}`)
        }
        if (m !== "observed" && !declared.has(item)) {
          const suggestion = didYouMean(item, declared)
          const hint = suggestion === undefined ? "" : `; did you mean '${suggestion}'?`
          return fail(joinKey(key, i), item, `'${item}' is not a declared field${hint}`)
        }
        if (!out.includes(item)) out.push(item)
      }
    }
    lists[listKey] = out
  }
  return {
    mode: m,
    fields,
    guaranteedFields: lists["guaranteed_fields"]!,
    requiredFields: lists["required_fields"]!,
    auditFields: lists["audit_fields"]!
  }
}

// ---------------------------------------------------------------------------
// Lax coercion (sources)

const DIGITS = "[0-9](?:_?[0-9])*"
const INT_STRING_RE = new RegExp(`^[+-]?${DIGITS}(?:\\.0+)?$`)
const FLOAT_STRING_RE = new RegExp(`^[+-]?(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?$`)

const BOOL_TRUE: ReadonlySet<string> = new Set(["1", "on", "t", "true", "y", "yes"])
const BOOL_FALSE: ReadonlySet<string> = new Set(["0", "off", "f", "false", "n", "no"])

type Coerced = { ok: true; value: unknown } | { ok: false; message: string }

const typeName = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "list"
  if (typeof value === "number") return Number.isInteger(value) ? "int" : "float"
  if (typeof value === "bigint") return "int"
  if (typeof value === "boolean") return "bool"
  if (typeof value === "string") return "str"
  return typeof value === "object" ? "object" : typeof value
}

const expected = (type: FieldType, value: unknown, why?: string): Coerced => ({
  ok: false,
  message: `expected ${type}, got ${typeof value === "string" ? showValue(value) : value === null ? "null" : `${typeName(value)} ${showValue(value)}`}${why === undefined ? "" : ` (${why})`}`
})

/** Digits allowed in an integer string (Python's limit for int/str conversion). */
export const MAX_INT_DIGITS = 4300

/**
 * Lax coercion of one non-null value to `type` (section 2.1 of the compatibility
 * notes). An integer beyond ±(2^53−1) (a bigint, or a string of digits) stays exact as
 * a bigint for `int`, as a JS number would change it; `float` takes the nearest float.
 */
export const coerceValue = (type: FieldType, value: unknown): Coerced => {
  switch (type) {
    case "any":
      return { ok: true, value }
    case "str":
      return typeof value === "string" ? { ok: true, value } : expected(type, value)
    case "int": {
      if (typeof value === "boolean") return { ok: true, value: value ? 1 : 0 }
      if (typeof value === "number") {
        if (!Number.isFinite(value)) return expected(type, value)
        return Number.isInteger(value) ? { ok: true, value: value === 0 ? 0 : value } : expected(type, value, "has a fractional part")
      }
      if (typeof value === "bigint") return { ok: true, value: Number.isSafeInteger(Number(value)) ? Number(value) : value }
      if (typeof value === "string") {
        const t = stripNumberSpace(value)
        if (!INT_STRING_RE.test(t)) return expected(type, value)
        const digits = t.replace(/_/g, "").replace(/\.0+$/, "")
        const n = Number(digits)
        if (Number.isSafeInteger(n)) return { ok: true, value: n === 0 ? 0 : n }
        if (digits.replace(/^[+-]/, "").length > MAX_INT_DIGITS) {
          return expected(type, value, `more than ${MAX_INT_DIGITS} digits`)
        }
        return { ok: true, value: BigInt(digits) }
      }
      return expected(type, value)
    }
    case "float": {
      if (typeof value === "boolean") return { ok: true, value: value ? 1 : 0 }
      if (typeof value === "number") return Number.isFinite(value) ? { ok: true, value } : expected(type, value)
      if (typeof value === "bigint") {
        const n = Number(value)
        return Number.isFinite(n) ? { ok: true, value: n } : expected(type, value, "out of range")
      }
      if (typeof value === "string") {
        const t = stripNumberSpace(value)
        if (!FLOAT_STRING_RE.test(t)) return expected(type, value)
        const n = Number(t.replace(/_/g, ""))
        return Number.isFinite(n) ? { ok: true, value: n } : expected(type, value, "out of range")
      }
      return expected(type, value)
    }
    case "bool": {
      if (typeof value === "boolean") return { ok: true, value }
      if (typeof value === "number") {
        if (value === 1) return { ok: true, value: true }
        if (value === 0) return { ok: true, value: false }
        return expected(type, value)
      }
      if (typeof value === "string") {
        const l = value.toLowerCase()
        if (BOOL_TRUE.has(l)) return { ok: true, value: true }
        if (BOOL_FALSE.has(l)) return { ok: true, value: false }
        return expected(type, value)
      }
      return expected(type, value)
    }
  }
}

export interface FieldError {
  readonly field: string
  readonly message: string
}

export type CoerceResult =
  | { readonly ok: true; readonly row: Row }
  | { readonly ok: false; readonly error: string; readonly fieldErrors: Array<FieldError> }

const joinErrors = (errors: ReadonlyArray<FieldError>): string =>
  errors.map((e) => (e.field === "" ? e.message : `${e.field}: ${e.message}`)).join("; ")

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k)

/**
 * Validates and coerces a source row (lax, section 2.1). Key order of the result:
 * declared fields in declaration order, then (flexible) undeclared keys in input
 * order; observed keeps the input as is. A missing optional field is added as null.
 */
const declaredCache = new WeakMap<SchemaConfig, ReadonlySet<string>>()
/** The declared field names of a schema, computed once per schema (not once per row). */
const declaredNames = (schema: SchemaConfig): ReadonlySet<string> => {
  let names = declaredCache.get(schema)
  if (names === undefined) {
    names = new Set(schema.fields.map((f) => f.name))
    declaredCache.set(schema, names)
  }
  return names
}

export const coerceSourceRow = (schema: SchemaConfig, raw: unknown): CoerceResult => {
  if (!isMapping(raw)) {
    const error = `expected an object (mapping), got ${typeName(raw)}`
    return { ok: false, error, fieldErrors: [{ field: "", message: error }] }
  }
  if (schema.mode === "observed") {
    const copy: Record<string, unknown> = {}
    for (const k of Object.keys(raw)) putField(copy, k, raw[k])
    return { ok: true, row: copy }
  }
  const errors: Array<FieldError> = []
  const out: Record<string, unknown> = {}
  const declared = declaredNames(schema)
  for (const field of schema.fields) {
    if (!hasOwn(raw, field.name)) {
      if (field.optional) putField(out, field.name, null)
      else errors.push({ field: field.name, message: "field required (missing)" })
      continue
    }
    const value = raw[field.name]
    if (value === null || value === undefined) {
      if (field.optional || field.type === "any") putField(out, field.name, null)
      else errors.push({ field: field.name, message: `expected ${field.type}, got null` })
      continue
    }
    const c = coerceValue(field.type, value)
    if (c.ok) putField(out, field.name, c.value)
    else errors.push({ field: field.name, message: c.message })
  }
  for (const key of Object.keys(raw)) {
    if (declared.has(key)) continue
    if (schema.mode === "fixed") errors.push({ field: key, message: "unexpected field (the schema is fixed)" })
    else putField(out, key, raw[key])
  }
  if (errors.length > 0) return { ok: false, error: joinErrors(errors), fieldErrors: errors }
  return { ok: true, row: out }
}

// ---------------------------------------------------------------------------
// Strict validation (validate_input)

const strictTypeOk = (type: FieldType, value: unknown): boolean => {
  switch (type) {
    case "any":
      return true
    case "str":
      return typeof value === "string"
    case "int":
      return (typeof value === "number" && Number.isInteger(value)) || typeof value === "bigint"
    case "float":
      return (typeof value === "number" && Number.isFinite(value)) || typeof value === "bigint"
    case "bool":
      return typeof value === "boolean"
  }
}

/**
 * Strict check used by `validate_input`: no coercion, a `float` field accepts an
 * int, a fixed schema rejects undeclared keys. Returns the problem, or undefined.
 */
export const validateStrict = (schema: SchemaConfig, row: Row): string | undefined => {
  if (schema.mode === "observed") return undefined
  const errors: Array<FieldError> = []
  const declared = new Set<string>()
  for (const field of schema.fields) {
    declared.add(field.name)
    if (!hasOwn(row, field.name)) {
      if (!field.optional) errors.push({ field: field.name, message: "field required (missing)" })
      continue
    }
    const value = row[field.name]
    if (value === null || value === undefined) {
      if (!field.optional && field.type !== "any") errors.push({ field: field.name, message: `expected ${field.type}, got null` })
      continue
    }
    if (!strictTypeOk(field.type, value)) {
      errors.push({
        field: field.name,
        message: `expected ${field.type}, got ${typeof value === "string" ? showValue(value) : `${typeName(value)} ${showValue(value)}`}`
      })
    }
  }
  if (schema.mode === "fixed") {
    for (const key of Object.keys(row)) {
      if (!declared.has(key)) errors.push({ field: key, message: "unexpected field (the schema is fixed)" })
    }
  }
  return errors.length === 0 ? undefined : joinErrors(errors)
}

// ---------------------------------------------------------------------------
// Start-up checks between nodes

const showSpec = (f: FieldSpec): string => `${f.type}${f.optional ? "?" : ""}`

/** Fields a producer guarantees: its required declared fields plus `guaranteed_fields`. */
export const guaranteedFieldsOf = (schema: SchemaConfig): ReadonlyArray<string> => {
  const out = schema.fields.filter((f) => !f.optional).map((f) => f.name)
  for (const g of schema.guaranteedFields) if (!out.includes(g)) out.push(g)
  return out
}

/**
 * The start-up check between a producer's output schema and its consumer's schema.
 *
 * 1. Contract: the fields the consumer requires (`requiredInputFields`, the
 *    consumer's `required_input_fields` option when given, else its schema's
 *    `required_fields`) must be guaranteed by the producer.
 * 2. Types, only when both schemas are explicit: every required consumer field is
 *    declared by the producer; a field both declare has the identical type (consumer
 *    `any` accepts anything; an optional consumer field also accepts the required
 *    form of its type); a fixed consumer declares every producer field.
 *
 * Returns a description of every problem, or undefined when compatible.
 */
export const checkCompatibility = (
  producer: SchemaConfig,
  consumer: SchemaConfig,
  requiredInputFields?: ReadonlyArray<string>
): string | undefined => {
  const problems: Array<string> = []
  const required = requiredInputFields !== undefined && requiredInputFields.length > 0
    ? requiredInputFields
    : consumer.requiredFields
  if (required.length > 0) {
    const guaranteed = new Set(guaranteedFieldsOf(producer))
    const missing = required.filter((f) => !guaranteed.has(f))
    if (missing.length > 0) {
      problems.push(`required input field(s) not guaranteed by the producer: ${missing.join(", ")}`)
    }
  }
  if (isExplicit(producer) && isExplicit(consumer)) {
    const produced = new Map(producer.fields.map((f) => [f.name, f]))
    const missing: Array<string> = []
    const mismatched: Array<string> = []
    for (const c of consumer.fields) {
      const p = produced.get(c.name)
      if (p === undefined) {
        if (!c.optional) missing.push(c.name)
        continue
      }
      if (c.type === "any") continue
      if (p.type !== c.type || (p.optional && !c.optional)) {
        mismatched.push(`${c.name} (producer ${showSpec(p)}, consumer ${showSpec(c)})`)
      }
    }
    if (missing.length > 0) problems.push(`field(s) not declared by the producer: ${missing.join(", ")}`)
    if (mismatched.length > 0) problems.push(`type mismatch: ${mismatched.join(", ")}`)
    if (consumer.mode === "fixed") {
      const consumed = new Set(consumer.fields.map((f) => f.name))
      const extra = producer.fields.filter((f) => !consumed.has(f.name)).map((f) => f.name)
      if (extra.length > 0) problems.push(`fixed consumer does not accept producer field(s): ${extra.join(", ")}`)
    }
  }
  return problems.length === 0 ? undefined : problems.join("; ")
}
