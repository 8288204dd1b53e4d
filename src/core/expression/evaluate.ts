/**
 * The evaluator: walks the syntax tree against one row, left to right as CPython does.
 * Every evaluation has its own `EvalContext` (step budget), made here per call.
 */
import { isPlainObject } from "../python/repr.js"
import { arith } from "./arithmetic.js"
import type { Node } from "./ast.js"
import { callBuiltin } from "./builtins.js"
import { compare, hashKey } from "./compare.js"
import { EvalContext } from "./context.js"
import { fromJs } from "./convert.js"
import { EvalFail, ExpressionEvalError, fail } from "./errors.js"
import { repr } from "./text.js"
import type { PyDict, PySet, PyValue } from "./values.js"
import { asNumber, bool, FALSE, float, int, isTruthy, NONE, str, TRUE } from "./values.js"

/** The row of one evaluation, converted lazily, and the evaluation's context. */
class Scope {
  readonly ctx = new EvalContext()
  private converted: PyValue | undefined
  constructor(private readonly input: unknown) {}

  get row(): PyValue {
    if (this.converted === undefined) this.converted = fromJs(this.input, 0)
    return this.converted
  }

  isPlainObject(): boolean {
    const input = this.input
    return input !== null && typeof input === "object" && !Array.isArray(input) && isPlainObject(input)
  }

  /**
   * One field of the row, converting only that value (a gate usually reads one or two
   * fields of a wide row). Undefined when the whole row must be converted instead: not
   * a plain object, a non-string key, or a key that is absent (for the exact error).
   */
  field(key: PyValue): PyValue | undefined {
    const input = this.input
    if (this.converted !== undefined || key.type !== "str" || !this.isPlainObject()) return undefined
    if (!Object.hasOwn(input as object, key.value)) return undefined
    return fromJs((input as Record<string, unknown>)[key.value], 1)
  }
}

const makeSet = (items: ReadonlyArray<PyValue>, ctx: EvalContext): PySet => {
  const map = new Map<string, PyValue>()
  for (const item of items) {
    const key = hashKey(item, ctx)
    if (!map.has(key)) map.set(key, item)
  }
  return { type: "set", items: map }
}

const codePoints = (s: string): Array<string> => Array.from(s)

const listKeys = (d: PyDict): string => {
  if (d.entries.size === 0) return "it is empty"
  const shown = [...d.entries.values()].slice(0, 20).map(([k]) => (k.type === "str" ? k.value : repr(k)))
  return `keys: ${shown.join(", ")}${d.entries.size > 20 ? `, … (${d.entries.size} keys)` : ""}`
}

const subscript = (target: PyValue, index: PyValue, isRow: boolean, ctx: EvalContext): PyValue => {
  switch (target.type) {
    case "dict": {
      const entry = target.entries.get(hashKey(index, ctx))
      if (entry === undefined) {
        return fail(`KeyError: ${repr(index)} is not in ${isRow ? "the row" : "the dict"} (${listKeys(target)})`)
      }
      return entry[1]
    }
    case "list":
    case "tuple":
    case "str": {
      const n = asNumber(index)
      if (n === undefined || n.type !== "int") {
        return fail(`TypeError: ${target.type} indices must be integers, not ${index.type}`)
      }
      const seq: ReadonlyArray<PyValue | string> = target.type === "str" ? codePoints(target.value) : target.items
      const i = n.value < 0n ? n.value + BigInt(seq.length) : n.value
      if (i < 0n || i >= BigInt(seq.length)) {
        return fail(`IndexError: ${target.type} index ${n.value} out of range (length ${seq.length})`)
      }
      const item = seq[Number(i)]!
      return typeof item === "string" ? str(item) : item
    }
    default:
      return fail(
        `TypeError: '${target.type}' object is not subscriptable${target.type === "NoneType" ? " (the value is None)" : ""}`
      )
  }
}

const evaluate = (n: Node, scope: Scope): PyValue => {
  switch (n.k) {
    case "const":
      return n.value
    case "row":
      return scope.row
    case "seq": {
      const items = n.items.map((item) => evaluate(item, scope))
      return n.type === "set" ? makeSet(items, scope.ctx) : { type: n.type, items }
    }
    case "dict": {
      // Like CPython: every key and value is evaluated (k1, v1, k2, v2, ...) before any is hashed.
      const pairs = n.keys.map((keyNode, i) => [evaluate(keyNode, scope), evaluate(n.values[i]!, scope)] as const)
      const entries = new Map<string, readonly [PyValue, PyValue]>()
      for (const [key, value] of pairs) {
        const h = hashKey(key, scope.ctx)
        const existing = entries.get(h)
        entries.set(h, [existing === undefined ? key : existing[0], value])
      }
      return { type: "dict", entries }
    }
    case "subscript": {
      if (n.target.k === "row") {
        const index = evaluate(n.index, scope)
        return scope.field(index) ?? subscript(scope.row, index, true, scope.ctx)
      }
      const target = evaluate(n.target, scope)
      const index = evaluate(n.index, scope)
      return subscript(target, index, false, scope.ctx)
    }
    case "get": {
      if (scope.isPlainObject()) {
        // Arguments are evaluated before the call, as in Python, even when the key exists.
        const key = evaluate(n.key, scope)
        const fallback = n.fallback === undefined ? NONE : evaluate(n.fallback, scope)
        const direct = scope.field(key)
        if (direct !== undefined) return direct
        const entry = (scope.row as PyDict).entries.get(hashKey(key, scope.ctx))
        return entry === undefined ? fallback : entry[1]
      }
      const row = scope.row
      if (row.type !== "dict") return fail(`AttributeError: row.get() needs the row to be a dict, not ${row.type}`)
      const key = evaluate(n.key, scope)
      const fallback = n.fallback === undefined ? NONE : evaluate(n.fallback, scope)
      const entry = row.entries.get(hashKey(key, scope.ctx))
      return entry === undefined ? fallback : entry[1]
    }
    case "call":
      return callBuiltin(n.fn, evaluate(n.arg, scope))
    case "unary": {
      const v = evaluate(n.operand, scope)
      const num = asNumber(v)
      if (num === undefined) return fail(`TypeError: bad operand type for unary ${n.op}: '${v.type}'`)
      if (n.op === "+") return num
      return num.type === "int" ? int(-num.value) : float(-num.value)
    }
    case "not":
      return bool(!isTruthy(evaluate(n.operand, scope)))
    case "arith": {
      let acc = evaluate(n.first, scope)
      for (const [op, operand] of n.rest) acc = arith(op, acc, evaluate(operand, scope), scope.ctx)
      return acc
    }
    case "boolop": {
      let v: PyValue = NONE
      for (const operand of n.operands) {
        v = evaluate(operand, scope)
        if (isTruthy(v) === (n.op === "or")) return v
      }
      return v
    }
    case "compare": {
      let left = evaluate(n.first, scope)
      for (const [op, operand] of n.rest) {
        const right = evaluate(operand, scope)
        if (!compare(op, left, right, scope.ctx)) return FALSE
        left = right
      }
      return TRUE
    }
    case "if":
      return isTruthy(evaluate(n.test, scope)) ? evaluate(n.body, scope) : evaluate(n.orelse, scope)
  }
}

/**
 * Evaluates `ast` (parsed from `source`) with `row` bound to the given data.
 * Throws ExpressionEvalError only.
 */
export const evaluateTree = (source: string, ast: Node, row: unknown): PyValue => {
  try {
    return evaluate(ast, new Scope(row))
  } catch (e) {
    if (e instanceof ExpressionEvalError) throw e
    const message = e instanceof EvalFail
      ? e.message
      : `evaluation failed: ${e instanceof Error ? e.message : String(e)}`
    throw new ExpressionEvalError({ expression: source, message })
  }
}
