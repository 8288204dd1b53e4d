/**
 * Row data ↔ expression values. Reading a row uses own-property descriptors only, so
 * no getter runs and every key, `__proto__` included, is plain data.
 */
import { fail } from "./errors.js"
import { EXPRESSION_LIMITS } from "./limits.js"
import { repr } from "./text.js"
import type { PyValue } from "./values.js"
import { bool, float, int, NONE, RowFloat, str } from "./values.js"

const describeJs = (v: object): string => Object.prototype.toString.call(v).slice(8, -1)

/**
 * Row data → PyValue. null/undefined → None; an integral number → int, any
 * other number → float; `RowFloat` → float; bigint → int; arrays → list;
 * plain objects → dict of their own enumerable string keys.
 */
export const fromJs = (v: unknown, depth: number): PyValue => {
  if (depth > EXPRESSION_LIMITS.maxRowDepth) {
    return fail(`the row is nested too deeply (more than ${EXPRESSION_LIMITS.maxRowDepth} levels)`)
  }
  switch (typeof v) {
    case "undefined":
      return NONE
    case "boolean":
      return bool(v)
    case "number":
      return Number.isInteger(v) ? int(BigInt(v)) : float(v)
    case "bigint":
      return int(v)
    case "string":
      return str(v)
    case "object": {
      if (v === null) return NONE
      if (v instanceof RowFloat) return float(v.value)
      if (Array.isArray(v)) {
        const items: Array<PyValue> = []
        for (let i = 0; i < v.length; i++) items.push(fromJs(v[i], depth + 1))
        return { type: "list", items }
      }
      const proto = Object.getPrototypeOf(v)
      if (proto !== Object.prototype && proto !== null) {
        return fail(`the row contains a value of unsupported type ${describeJs(v)}`)
      }
      const entries = new Map<string, readonly [PyValue, PyValue]>()
      for (const key of Object.keys(v)) {
        const value = Object.getOwnPropertyDescriptor(v, key)?.value
        entries.set(`s:${key}`, [str(key), fromJs(value, depth + 1)])
      }
      return { type: "dict", entries }
    }
    default:
      return fail(`the row contains a value of unsupported type ${typeof v}`)
  }
}

const jsonKey = (k: PyValue): string => {
  switch (k.type) {
    case "str":
      return k.value
    case "bool":
      return k.value ? "true" : "false"
    case "NoneType":
      return "null"
    default:
      return repr(k)
  }
}

/**
 * PyValue → plain JSON-like JS: None → null, int/float → number (an int beyond
 * 2^53 loses precision), list/tuple/set → array, dict → object (non-string
 * keys become their JSON/str text; `__proto__` is kept as an own key).
 */
export const toJs = (value: PyValue): unknown => {
  switch (value.type) {
    case "NoneType":
      return null
    case "bool":
    case "float":
    case "str":
      return value.value
    case "int":
      return Number(value.value)
    case "list":
    case "tuple":
      return value.items.map(toJs)
    case "set":
      return [...value.items.values()].map(toJs)
    case "dict": {
      const out: Record<string, unknown> = {}
      for (const [k, v] of value.entries.values()) {
        Object.defineProperty(out, jsonKey(k), { value: toJs(v), enumerable: true, writable: true, configurable: true })
      }
      return out
    }
  }
}
