/**
 * Python's `repr()` text: of floats, ints, strings, and of JSON-like JS values.
 *
 * Outputs must match what Python writes byte for byte: floats with the shortest
 * round-trip digits, `.0` on integral values and exponent form outside [1e-4, 1e16);
 * strings quoted and escaped as `repr(str)` does.
 *
 * JSON-like rows hold plain JS numbers, so int and float cannot be told apart by value:
 * an integral number prints as an int unless the caller says the value is a float
 * (sinks know the declared type from their schema).
 */

/** The declared type of a value, where known (a schema field type). */
export type PyTypeHint = "str" | "int" | "float" | "bool" | "any"

// ---------------------------------------------------------------------------
// Numbers

/** Python's `repr(float)`: `1.0`, `255.8`, `1e-05`, `1e+16`, `1.5e+20`, `nan`, `-inf`. */
export const pyFloatRepr = (x: number): string => {
  if (Number.isNaN(x)) return "nan"
  if (x === Number.POSITIVE_INFINITY) return "inf"
  if (x === Number.NEGATIVE_INFINITY) return "-inf"
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0"
  const sign = x < 0 ? "-" : ""
  // toExponential() without an argument gives the shortest round-trip digits; only the layout differs.
  const [mantissa, expText] = Math.abs(x).toExponential().split("e") as [string, string]
  const digits = mantissa.replace(".", "")
  const e = Number(expText)
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`
  const intPart = digits.slice(0, e + 1).padEnd(e + 1, "0")
  const frac = digits.slice(e + 1)
  return `${sign}${intPart}.${frac === "" ? "0" : frac}`
}

/** Python's `repr(int)` of an integral JS number (exact, no exponent form). */
const intRepr = (n: number): string => (Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString())

/**
 * The Python text of a number: a float `repr` when the field is declared float or the
 * value is not integral (or is -0, which no Python int can be), else an int.
 */
export const pyNumberRepr = (n: number, hint?: PyTypeHint): string =>
  hint === "float" || !Number.isInteger(n) || Object.is(n, -0) ? pyFloatRepr(n) : intRepr(n)

// ---------------------------------------------------------------------------
// Strings

// str.isprintable() is false for these general categories (and for lone surrogates), space excepted.
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u

/** Python's `str.isprintable()` for one code point. */
export const isPrintable = (cp: number): boolean =>
  (cp >= 0x20 && cp < 0x7f) ||
  (!(cp >= 0xd800 && cp <= 0xdfff) && !NOT_PRINTABLE.test(String.fromCodePoint(cp)))

const hex = (cp: number, width: number): string => cp.toString(16).padStart(width, "0")

/** Python's `repr(str)`: single quotes unless the text has `'` and no `"`. */
export const pyStrRepr = (s: string): string => {
  const quote = s.includes("'") && !s.includes("\"") ? "\"" : "'"
  let out = quote
  for (const ch of s) {
    if (ch === quote || ch === "\\") out += `\\${ch}`
    else if (ch === "\n") out += "\\n"
    else if (ch === "\r") out += "\\r"
    else if (ch === "\t") out += "\\t"
    else {
      const cp = ch.codePointAt(0)!
      out += isPrintable(cp) ? ch : cp < 0x100 ? `\\x${hex(cp, 2)}` : cp < 0x10000 ? `\\u${hex(cp, 4)}` : `\\U${hex(cp, 8)}`
    }
  }
  return out + quote
}

// ---------------------------------------------------------------------------
// JSON-like values

/** An object literal or `Object.create(null)`: the objects that stand for a Python dict. */
export const isPlainObject = (value: object): boolean => {
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
