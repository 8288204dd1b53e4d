/**
 * The builtin calls `len`, `str`, `int`, `float`, `bool` and `abs`, with Python's
 * text-to-number rules (surrounding whitespace, `_` between digits, any Unicode
 * decimal digit).
 */
import { stripNumberSpace } from "../python/whitespace.js"
import type { Builtin } from "./ast.js"
import { fail } from "./errors.js"
import { EXPRESSION_LIMITS } from "./limits.js"
import { pyStr, repr } from "./text.js"
import type { PyValue } from "./values.js"
import { asNumber, bool, float, int, isTruthy, str, toFloat } from "./values.js"

const ND = /\p{Nd}/gu

/** Map every Unicode decimal digit to its ASCII digit, as int()/float() accept them. */
const asciiDigits = (s: string): string =>
  s.replace(ND, (d) => {
    let cp = d.codePointAt(0)!
    if (cp < 128) return d
    // Decimal digits come in contiguous runs of ten, 0 first.
    let offset = 0
    while (offset < 100 && /\p{Nd}/u.test(String.fromCodePoint(cp - 1))) {
      cp--
      offset++
    }
    return String(offset % 10)
  })

const parseIntText = (s: string): bigint => {
  const t = asciiDigits(stripNumberSpace(s))
  if (!/^[+-]?\d(?:_?\d)*$/.test(t)) return fail(`ValueError: invalid literal for int() with base 10: ${repr(str(s))}`)
  const digits = t.replace(/^[+-]/, "").replace(/_/g, "")
  if (digits.length > EXPRESSION_LIMITS.maxIntDigits) {
    fail(`ValueError: Exceeds the limit (${EXPRESSION_LIMITS.maxIntDigits} digits) for integer string conversion`)
  }
  return BigInt(t.replace(/_/g, ""))
}

const parseFloatText = (s: string): number => {
  const t = asciiDigits(stripNumberSpace(s))
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(t)
  if (special !== null) {
    if (special[2]!.toLowerCase() === "nan") return Number.NaN
    return special[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY
  }
  if (!/^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/.test(t)) {
    return fail(`ValueError: could not convert string to float: ${repr(str(s))}`)
  }
  return Number(t.replace(/_/g, ""))
}

export const callBuiltin = (fn: Builtin, v: PyValue): PyValue => {
  switch (fn) {
    case "len":
      switch (v.type) {
        case "str": {
          let n = 0
          for (const _ of v.value) n++
          return int(BigInt(n))
        }
        case "list":
        case "tuple":
          return int(BigInt(v.items.length))
        case "set":
          return int(BigInt(v.items.size))
        case "dict":
          return int(BigInt(v.entries.size))
        default:
          return fail(`TypeError: object of type '${v.type}' has no len()`)
      }
    case "str":
      return str(pyStr(v, { limit: EXPRESSION_LIMITS.maxStringLength, strict: true }))
    case "int":
      switch (v.type) {
        case "bool":
          return int(v.value ? 1n : 0n)
        case "int":
          return v
        case "float":
          if (Number.isNaN(v.value)) return fail("ValueError: cannot convert float NaN to integer")
          if (!Number.isFinite(v.value)) return fail("OverflowError: cannot convert float infinity to integer")
          return int(BigInt(Math.trunc(v.value)))
        case "str":
          return int(parseIntText(v.value))
        default:
          return fail(`TypeError: int() argument must be a string or a real number, not '${v.type}'`)
      }
    case "float":
      switch (v.type) {
        case "bool":
          return float(v.value ? 1 : 0)
        case "int":
        case "float":
          return float(toFloat(v))
        case "str":
          return float(parseFloatText(v.value))
        default:
          return fail(`TypeError: float() argument must be a string or a real number, not '${v.type}'`)
      }
    case "bool":
      return bool(isTruthy(v))
    case "abs": {
      const n = asNumber(v)
      if (n === undefined) return fail(`TypeError: bad operand type for abs(): '${v.type}'`)
      return n.type === "int" ? int(n.value < 0n ? -n.value : n.value) : float(Math.abs(n.value))
    }
  }
}
