/**
 * Python's `json.dumps`: its default separators (`, ` and `: `), `ensure_ascii`
 * escaping, and floats written with `repr`.
 */
import { isPlainObject, pyNumberRepr } from "./repr.js"

// json.dumps(ensure_ascii=True) escapes `\`, `"` and everything outside ' '..'~'.
const JSON_ESCAPE = /[\\"\u0000-\u001f\u007f-\uffff]/g
const SHORT_ESCAPES: Readonly<Record<string, string>> = {
  "\\": "\\\\",
  "\"": "\\\"",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t"
}

/** A JSON string literal as `json.dumps` writes it: ASCII only, `\uXXXX` (lowercase hex). */
export const pyJsonString = (s: string): string =>
  "\"" + s.replace(JSON_ESCAPE, (ch) => SHORT_ESCAPES[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`) + "\""

const jsonNumber = (n: number, asFloat: boolean): string => {
  if (Number.isNaN(n)) return "NaN"
  if (n === Infinity) return "Infinity"
  if (n === -Infinity) return "-Infinity"
  return pyNumberRepr(n, asFloat ? "float" : undefined)
}

export interface PyJsonDumpsOptions {
  /** Pretty-print with this many spaces per level (Python's `indent`); none = one line. */
  readonly indent?: number | undefined
  /**
   * Keys whose integral numbers print as floats (`2500.0`). They apply to the keys of
   * the top-level object, or of each object directly inside a top-level array.
   */
  readonly floatFields?: ReadonlySet<string> | ReadonlyArray<string> | undefined
  /**
   * Nesting level the value starts at, for callers that stream the items of an
   * enclosing indented array themselves (the item's inner lines are indented one
   * level deeper). Default 0.
   */
  readonly level?: number | undefined
}

/** Thrown for values `json.dumps` cannot encode (functions, symbols, class instances, cycles). */
export class PyJsonEncodeError extends Error {
  override readonly name = "PyJsonEncodeError"
}

/**
 * Python's `json.dumps(value)` (`, ` and `: ` separators, `ensure_ascii`), or with
 * `indent` its pretty form (`,` + newline between items). Floats via `repr`.
 */
export const pyJsonDumps = (value: unknown, options: PyJsonDumpsOptions = {}): string => {
  const indent = options.indent === undefined ? undefined : " ".repeat(Math.max(0, Math.trunc(options.indent)))
  const floatFields = options.floatFields === undefined
    ? undefined
    : options.floatFields instanceof Set
    ? options.floatFields as ReadonlySet<string>
    : new Set(options.floatFields as ReadonlyArray<string>)
  const itemSep = indent === undefined ? ", " : ","
  const stack = new Set<object>()

  const open = (level: number): string => indent === undefined ? "" : "\n" + indent.repeat(level)

  const encode = (v: unknown, level: number, asFloat: boolean, floatKeys: boolean): string => {
    if (v === null || v === undefined) return "null"
    switch (typeof v) {
      case "boolean":
        return v ? "true" : "false"
      case "number":
        return jsonNumber(v, asFloat)
      case "bigint":
        return v.toString()
      case "string":
        return pyJsonString(v)
      case "object": {
        if (stack.has(v)) throw new PyJsonEncodeError("Circular reference detected")
        const isArray = Array.isArray(v)
        if (!isArray && !isPlainObject(v)) {
          throw new PyJsonEncodeError(`Object of type ${v.constructor?.name ?? "object"} is not JSON serializable`)
        }
        stack.add(v)
        try {
          const inner = open(level + 1)
          const sep = itemSep + inner
          if (isArray) {
            if (v.length === 0) return "[]"
            const items = v.map((item) => encode(item, level + 1, false, false))
            return `[${inner}${items.join(sep)}${open(level)}]`
          }
          const entries = Object.entries(v)
          if (entries.length === 0) return "{}"
          const items = entries.map(([k, item]) =>
            `${pyJsonString(k)}: ${
              encode(item, level + 1, floatKeys && floatFields !== undefined && floatFields.has(k), false)
            }`
          )
          return `{${inner}${items.join(sep)}${open(level)}}`
        } finally {
          stack.delete(v)
        }
      }
      default:
        throw new PyJsonEncodeError(`Object of type ${typeof v} is not JSON serializable`)
    }
  }

  const level = options.level ?? 0
  if (Array.isArray(value)) {
    // float fields apply to the objects directly inside a top-level array
    if (value.length === 0) return "[]"
    if (stack.has(value)) throw new PyJsonEncodeError("Circular reference detected")
    stack.add(value)
    const inner = open(level + 1)
    const items = value.map((item) => encode(item, level + 1, false, true))
    return `[${inner}${items.join(itemSep + inner)}${open(level)}]`
  }
  return encode(value, level, false, true)
}
