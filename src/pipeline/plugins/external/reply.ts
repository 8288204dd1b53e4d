/**
 * Reading structured replies: JSON out of a model's text (tolerating a ```json fence),
 * checked against a JSON Schema with ajv.
 */
import { Ajv, type ValidateFunction } from "ajv"

const ajv = new Ajv({ allErrors: true, strict: false })

/** Compiles a JSON Schema; a string is the reason it is not one. */
export const compileJsonSchema = (schema: unknown): ValidateFunction | string => {
  try {
    return ajv.compile(schema as object)
  } catch (e) {
    return e instanceof Error ? e.message : String(e)
  }
}

/** Every problem of `validate`'s last run, in one line. */
export const schemaErrors = (validate: ValidateFunction): string => ajv.errorsText(validate.errors, { dataVar: "reply" })

const FENCE = /^\s*```(?:json)?\s*\n([\s\S]*?)\n?```\s*$/

/** `text` parsed as JSON (a fenced block's content when fenced), or why not. */
export const parseJsonReply = (text: string): { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string } => {
  const fenced = FENCE.exec(text)
  const body = fenced === null ? text : fenced[1]!
  try {
    return { ok: true, value: JSON.parse(body) }
  } catch (e) {
    return { ok: false, message: e instanceof Error ? e.message : String(e) }
  }
}

/** `a.b[0].c` → the value at that path in `value`, own properties only; undefined when absent. */
export const valueAtPath = (value: unknown, path: string): unknown => {
  let current = value
  for (const part of path.match(/[^.[\]]+/g) ?? []) {
    if (current === null || typeof current !== "object") return undefined
    if (!Object.prototype.hasOwnProperty.call(current, part)) return undefined
    current = (current as Record<string, unknown>)[part]
  }
  return current
}
