/**
 * Python's `repr()` and `str()` of expression values, within a length limit, and the
 * route label of a gate result.
 */
import { pyFloatRepr, pyStrRepr } from "../python/repr.js"
import { fail } from "./errors.js"
import { EXPRESSION_LIMITS } from "./limits.js"
import type { PyValue } from "./values.js"

export interface TextOptions {
  readonly limit: number
  /** Enforce Python's limit on digits of int → str conversion. */
  readonly strict: boolean
}
const UNLIMITED: TextOptions = { limit: Number.POSITIVE_INFINITY, strict: false }

class TextOut {
  private length = 0
  readonly parts: Array<string> = []
  constructor(private readonly limit: number) {}
  push(s: string): void {
    this.length += s.length
    if (this.length > this.limit) fail(`MemoryError: the text would be longer than ${this.limit} characters`)
    this.parts.push(s)
  }
}

const intText = (n: bigint, options: TextOptions): string => {
  const text = n.toString()
  if (options.strict && text.length - (n < 0n ? 1 : 0) > EXPRESSION_LIMITS.maxIntDigits) {
    fail(`ValueError: Exceeds the limit (${EXPRESSION_LIMITS.maxIntDigits} digits) for integer string conversion`)
  }
  return text
}

const writeRepr = (v: PyValue, out: TextOut, options: TextOptions): void => {
  switch (v.type) {
    case "NoneType":
      return out.push("None")
    case "bool":
      return out.push(v.value ? "True" : "False")
    case "int":
      return out.push(intText(v.value, options))
    case "float":
      return out.push(pyFloatRepr(v.value))
    case "str":
      return out.push(pyStrRepr(v.value))
    case "list":
    case "tuple": {
      out.push(v.type === "list" ? "[" : "(")
      v.items.forEach((item, i) => {
        if (i > 0) out.push(", ")
        writeRepr(item, out, options)
      })
      if (v.type === "tuple" && v.items.length === 1) out.push(",")
      return out.push(v.type === "list" ? "]" : ")")
    }
    case "set": {
      if (v.items.size === 0) return out.push("set()")
      out.push("{")
      let first = true
      for (const item of v.items.values()) {
        if (!first) out.push(", ")
        first = false
        writeRepr(item, out, options)
      }
      return out.push("}")
    }
    case "dict": {
      out.push("{")
      let first = true
      for (const [k, value] of v.entries.values()) {
        if (!first) out.push(", ")
        first = false
        writeRepr(k, out, options)
        out.push(": ")
        writeRepr(value, out, options)
      }
      return out.push("}")
    }
  }
}

/** Python repr(); a `limit` or `strict` option makes an over-long text an evaluation failure. */
export const repr = (v: PyValue, options: TextOptions = UNLIMITED): string => {
  const out = new TextOut(options.limit)
  writeRepr(v, out, options)
  return out.parts.join("")
}

/** Python str(): like repr() except that a string is itself. */
export const pyStr = (v: PyValue, options: TextOptions = UNLIMITED): string => (v.type === "str" ? v.value : repr(v, options))

/**
 * The route label of a result (PLUGINS.md 6.1): True/False → "true"/"false",
 * a string → itself, anything else → its Python str() (`1` → "1", None → "None", 2.0 → "2.0").
 */
export const routeLabel = (value: PyValue): string => (value.type === "bool" ? (value.value ? "true" : "false") : pyStr(value))
