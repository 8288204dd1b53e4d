/**
 * Python's hashing, equality, ordering and membership on expression values: exact
 * across int and float, strings by code point, sets by their hash keys.
 */
import type { CmpOp } from "./ast.js"
import type { EvalContext } from "./context.js"
import { fail } from "./errors.js"
import type { PyDict, PyFloat, PyInt, PyList, PySet, PyStr, PyTuple, PyValue } from "./values.js"
import { asNumber } from "./values.js"

/** Equal values (in Python's sense) have equal keys; unhashable values raise. */
export const hashKey = (v: PyValue, ctx: EvalContext): string => {
  switch (v.type) {
    case "NoneType":
      return "N"
    case "bool":
      return v.value ? "i:1" : "i:0"
    case "int":
      return `i:${v.value}`
    case "float":
      if (Number.isNaN(v.value)) return ctx.nanKey()
      return Number.isInteger(v.value) ? `i:${BigInt(v.value)}` : `f:${v.value}`
    case "str":
      return `s:${v.value}`
    case "tuple":
      return `t:${JSON.stringify(v.items.map((item) => hashKey(item, ctx)))}`
    default:
      return fail(`TypeError: unhashable type: '${v.type}'`)
  }
}

const intFloatCmp = (i: bigint, f: number): number => {
  if (Number.isNaN(f)) return Number.NaN
  if (f === Number.POSITIVE_INFINITY) return -1
  if (f === Number.NEGATIVE_INFINITY) return 1
  const fl = Math.floor(f)
  const bf = BigInt(fl)
  if (i < bf) return -1
  if (i > bf) return 1
  return f > fl ? -1 : 0
}

/** -1, 0, 1, or NaN when unordered (a NaN operand). Exact across int and float. */
const numCmp = (a: PyInt | PyFloat, b: PyInt | PyFloat): number => {
  if (a.type === "int" && b.type === "int") return a.value < b.value ? -1 : a.value > b.value ? 1 : 0
  if (a.type === "float" && b.type === "float") {
    return a.value < b.value ? -1 : a.value > b.value ? 1 : a.value === b.value ? 0 : Number.NaN
  }
  if (a.type === "int") return intFloatCmp(a.value, (b as PyFloat).value)
  return -intFloatCmp((b as PyInt).value, a.value)
}

/** Compare by code point (Python), not by UTF-16 unit. */
const strCmp = (a: string, b: string): number => {
  if (a === b) return 0
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a.charCodeAt(i) !== b.charCodeAt(i)) return a.codePointAt(i)! < b.codePointAt(i)! ? -1 : 1
  }
  return a.length < b.length ? -1 : 1
}

export const pyEq = (a: PyValue, b: PyValue, ctx: EvalContext): boolean => {
  const na = asNumber(a)
  const nb = asNumber(b)
  if (na !== undefined && nb !== undefined) return numCmp(na, nb) === 0
  if (a.type !== b.type) return false
  switch (a.type) {
    case "NoneType":
      return true
    case "str":
      return a.value === (b as PyStr).value
    case "list":
    case "tuple": {
      const bi = (b as PyList | PyTuple).items
      if (a.items.length !== bi.length) return false
      ctx.tick(a.items.length)
      return a.items.every((x, i) => pyEq(x, bi[i]!, ctx))
    }
    case "set": {
      const bs = (b as PySet).items
      ctx.tick(a.items.size)
      return a.items.size === bs.size && [...a.items.keys()].every((k) => bs.has(k))
    }
    case "dict": {
      const be = (b as PyDict).entries
      if (a.entries.size !== be.size) return false
      ctx.tick(a.entries.size)
      for (const [k, [, v]] of a.entries) {
        const other = be.get(k)
        if (other === undefined || !pyEq(v, other[1], ctx)) return false
      }
      return true
    }
    default:
      return false
  }
}

type OrderOp = "<" | "<=" | ">" | ">="
const applyOrder = (op: OrderOp, c: number): boolean =>
  op === "<" ? c < 0 : op === "<=" ? c <= 0 : op === ">" ? c > 0 : c >= 0

const pyOrder = (op: OrderOp, a: PyValue, b: PyValue, ctx: EvalContext): boolean => {
  const na = asNumber(a)
  const nb = asNumber(b)
  if (na !== undefined && nb !== undefined) return applyOrder(op, numCmp(na, nb))
  if (a.type === "str" && b.type === "str") return applyOrder(op, strCmp(a.value, b.value))
  if ((a.type === "list" && b.type === "list") || (a.type === "tuple" && b.type === "tuple")) {
    const ai = a.items
    const bi = (b as PyList | PyTuple).items
    const n = Math.min(ai.length, bi.length)
    for (let i = 0; i < n; i++) {
      ctx.tick(1)
      if (!pyEq(ai[i]!, bi[i]!, ctx)) return pyOrder(op, ai[i]!, bi[i]!, ctx)
    }
    return applyOrder(op, ai.length - bi.length)
  }
  if (a.type === "set" && b.type === "set") {
    ctx.tick(a.items.size + b.items.size)
    const subset = (x: PySet, y: PySet) => [...x.items.keys()].every((k) => y.items.has(k))
    switch (op) {
      case "<=":
        return subset(a, b)
      case "<":
        return a.items.size < b.items.size && subset(a, b)
      case ">=":
        return subset(b, a)
      case ">":
        return b.items.size < a.items.size && subset(b, a)
    }
  }
  return fail(`TypeError: cannot compare ${a.type} with ${b.type} using '${op}'`)
}

const contains = (container: PyValue, x: PyValue, ctx: EvalContext): boolean => {
  switch (container.type) {
    case "str":
      if (x.type !== "str") fail(`TypeError: 'in <string>' requires a string as left operand, not ${x.type}`)
      return container.value.includes((x as PyStr).value)
    case "list":
    case "tuple":
      ctx.tick(container.items.length)
      return container.items.some((item) => pyEq(x, item, ctx))
    case "set":
      return container.items.has(hashKey(x, ctx))
    case "dict":
      return container.entries.has(hashKey(x, ctx))
    default:
      return fail(`TypeError: argument of type '${container.type}' is not iterable (used with 'in')`)
  }
}

/** One comparison of a chain: `a op b`. */
export const compare = (op: CmpOp, a: PyValue, b: PyValue, ctx: EvalContext): boolean => {
  switch (op) {
    case "==":
      return pyEq(a, b, ctx)
    case "!=":
      return !pyEq(a, b, ctx)
    case "in":
      return contains(b, a, ctx)
    case "not in":
      return !contains(b, a, ctx)
    case "is":
      return a.type === "NoneType" && b.type === "NoneType"
    case "is not":
      return !(a.type === "NoneType" && b.type === "NoneType")
    default:
      return pyOrder(op, a, b, ctx)
  }
}
