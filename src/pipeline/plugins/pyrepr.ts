/**
 * Python-compatible text of row values.
 *
 * Sink outputs must match what a Python implementation writes byte for byte: `repr`
 * of floats (shortest round-trip digits, `.0` on integral values, exponent form
 * outside [1e-4, 1e16)), `repr` of lists and dicts in CSV cells, and `json.dumps`
 * with its default separators and `ensure_ascii` escaping.
 *
 * Rows hold plain JS numbers, so int and float cannot be told apart by value: an
 * integral number prints as an int unless the caller says the field is a float
 * (sinks know the declared type from their schema).
 */

/** The declared type of a value, where known (a schema field type). */
export type PyTypeHint = "str" | "int" | "float" | "bool" | "any"

// ---------------------------------------------------------------------------
// Numbers

/**
 * Shortest digits and decimal exponent of a finite, non-zero, positive number:
 * `x = 0.d1 d2 … × 10^(exp + 1)`, i.e. `exp` is the exponent of the first digit.
 */
const decompose = (x: number): { readonly digits: string; readonly exp: number } => {
  // Number#toString already yields the shortest round-trip digits; only the layout differs.
  const text = String(x)
  const ePos = text.indexOf("e")
  const mantissa = ePos === -1 ? text : text.slice(0, ePos)
  const extra = ePos === -1 ? 0 : Number(text.slice(ePos + 1))
  const dot = mantissa.indexOf(".")
  const intLen = dot === -1 ? mantissa.length : dot
  const all = dot === -1 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1)
  let lead = 0
  while (lead < all.length - 1 && all[lead] === "0") lead++
  let end = all.length
  while (end > lead + 1 && all[end - 1] === "0") end--
  return { digits: all.slice(lead, end), exp: intLen - 1 - lead + extra }
}

/** Python's `repr(float)`: `1.0`, `255.8`, `1e-05`, `1e+16`, `1.5e+20`, `nan`, `-inf`. */
export const pyFloatRepr = (n: number): string => {
  if (Number.isNaN(n)) return "nan"
  if (n === Infinity) return "inf"
  if (n === -Infinity) return "-inf"
  if (n === 0) return Object.is(n, -0) ? "-0.0" : "0.0"
  const sign = n < 0 ? "-" : ""
  const { digits, exp } = decompose(Math.abs(n))
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`
    const intPart = digits.length > exp + 1 ? digits.slice(0, exp + 1) : digits.padEnd(exp + 1, "0")
    const frac = digits.length > exp + 1 ? digits.slice(exp + 1) : "0"
    return `${sign}${intPart}.${frac}`
  }
  const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits
  const absExp = Math.abs(exp)
  return `${sign}${mant}e${exp < 0 ? "-" : "+"}${absExp < 10 ? "0" : ""}${absExp}`
}

/** Python's `repr(int)` of an integral JS number (exact, no exponent form). */
const intRepr = (n: number): string => Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString()

/**
 * The Python text of a number: a float `repr` when the field is declared float or the
 * value is not integral (or is -0, which no Python int can be), else an int.
 */
export const pyNumberRepr = (n: number, hint?: PyTypeHint): string =>
  hint === "float" || !Number.isInteger(n) || Object.is(n, -0) ? pyFloatRepr(n) : intRepr(n)

// ---------------------------------------------------------------------------
// repr

// Python's str.isprintable() is false for these general categories (space excepted).
const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u

const hex = (n: number, width: number): string => n.toString(16).padStart(width, "0")

/** Python's `repr(str)`: single quotes unless the text has `'` and no `"`. */
export const pyStrRepr = (s: string): string => {
  const quote = s.includes("'") && !s.includes("\"") ? "\"" : "'"
  let out = quote
  for (const ch of s) {
    if (ch === quote || ch === "\\") out += "\\" + ch
    else if (ch === "\n") out += "\\n"
    else if (ch === "\r") out += "\\r"
    else if (ch === "\t") out += "\\t"
    else if (ch !== " " && NON_PRINTABLE.test(ch)) {
      const cp = ch.codePointAt(0)!
      out += cp < 0x100 ? `\\x${hex(cp, 2)}` : cp < 0x10000 ? `\\u${hex(cp, 4)}` : `\\U${hex(cp, 8)}`
    } else out += ch
  }
  return out + quote
}

const isPlainObject = (value: object): boolean => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * Python's `repr` of a JSON-like value: `None`, `True`, `'text'`, `2`, `2.5`,
 * `['a', 1, None]`, `{'sku': 'A1', 'qty': 2}`. `hint` is the declared type of the
 * value itself (nested numbers print as ints when integral).
 */
export const pyRepr = (value: unknown, hint?: PyTypeHint): string => {
  if (value === null || value === undefined) return "None"
  switch (typeof value) {
    case "boolean":
      return value ? "True" : "False"
    case "number":
      return pyNumberRepr(value, hint)
    case "bigint":
      return value.toString()
    case "string":
      return pyStrRepr(value)
    case "object": {
      if (Array.isArray(value)) return `[${value.map((v) => pyRepr(v)).join(", ")}]`
      if (isPlainObject(value)) {
        const parts = Object.entries(value).map(([k, v]) => `${pyStrRepr(k)}: ${pyRepr(v)}`)
        return `{${parts.join(", ")}}`
      }
      return pyStrRepr(String(value))
    }
    default:
      return pyStrRepr(String(value))
  }
}

// ---------------------------------------------------------------------------
// json.dumps

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
  "\"" + s.replace(JSON_ESCAPE, (ch) => SHORT_ESCAPES[ch] ?? `\\u${hex(ch.charCodeAt(0), 4)}`) + "\""

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
