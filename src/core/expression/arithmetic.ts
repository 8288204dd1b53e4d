/**
 * Python's arithmetic on expression values: exact ints, correctly rounded int
 * division, floor division and modulo with Python's signs, sequence concatenation
 * and repetition (within the size limits), set difference.
 */
import type { ArithOp } from "./ast.js"
import type { EvalContext } from "./context.js"
import { fail } from "./errors.js"
import { EXPRESSION_LIMITS } from "./limits.js"
import type { PyFloat, PyInt, PyList, PyStr, PyTuple, PyValue } from "./values.js"
import { asNumber, float, int, str, toFloat } from "./values.js"

const ldexp = (x: number, e: number): number => {
  let r = x
  let k = e
  while (k > 1000) {
    r *= 2 ** 1000
    k -= 1000
  }
  while (k < -1000) {
    r *= 2 ** -1000
    k += 1000
  }
  return r * 2 ** k
}

const bitLength = (n: bigint): number => (n === 0n ? 0 : n.toString(2).length)

/** int / int → float (Python computes the correctly rounded quotient). */
const intTrueDiv = (a: bigint, b: bigint): number => {
  if (b === 0n) return fail("ZeroDivisionError: division by zero")
  const limit = 2n ** 53n
  const abs = (n: bigint) => (n < 0n ? -n : n)
  if (abs(a) <= limit && abs(b) <= limit) return Number(a) / Number(b)
  const negative = a < 0n !== b < 0n
  const x = abs(a)
  const y = abs(b)
  const shift = Math.max(0, 64 - (bitLength(x) - bitLength(y)))
  const q = (x << BigInt(shift)) / y
  const r = ldexp(Number(q), -shift)
  if (!Number.isFinite(r)) fail("OverflowError: integer division result too large for a float")
  return negative ? -r : r
}

const floorDiv = (a: bigint, b: bigint): bigint => {
  if (b === 0n) return fail("ZeroDivisionError: integer division or modulo by zero")
  const q = a / b
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q
}

const floorMod = (a: bigint, b: bigint): bigint => {
  if (b === 0n) return fail("ZeroDivisionError: integer division or modulo by zero")
  const r = a % b
  return r !== 0n && r < 0n !== b < 0n ? r + b : r
}

/** Python's float divmod (Objects/floatobject.c). */
const floatDivmod = (vx: number, wx: number): [number, number] => {
  if (wx === 0) return fail("ZeroDivisionError: float division by zero")
  let mod = vx % wx
  let div = (vx - mod) / wx
  if (mod !== 0) {
    if (wx < 0 !== mod < 0) {
      mod += wx
      div -= 1
    }
  } else {
    mod = wx < 0 ? -0 : 0
  }
  let floordiv: number
  if (div !== 0) {
    floordiv = Math.floor(div)
    if (div - floordiv > 0.5) floordiv += 1
  } else {
    floordiv = vx / wx < 0 || Object.is(vx / wx, -0) ? -0 : 0
  }
  return [floordiv, mod]
}

const numArith = (op: ArithOp, a: PyInt | PyFloat, b: PyInt | PyFloat): PyValue => {
  if (a.type === "int" && b.type === "int") {
    switch (op) {
      case "+":
        return int(a.value + b.value)
      case "-":
        return int(a.value - b.value)
      case "*":
        return int(a.value * b.value)
      case "/":
        return float(intTrueDiv(a.value, b.value))
      case "//":
        return int(floorDiv(a.value, b.value))
      case "%":
        return int(floorMod(a.value, b.value))
    }
  }
  const x = toFloat(a)
  const y = toFloat(b)
  switch (op) {
    case "+":
      return float(x + y)
    case "-":
      return float(x - y)
    case "*":
      return float(x * y)
    case "/":
      return y === 0 ? fail("ZeroDivisionError: float division by zero") : float(x / y)
    case "//":
      return float(floatDivmod(x, y)[0])
    case "%":
      return float(floatDivmod(x, y)[1])
  }
}

const repeat = (seq: PyStr | PyList | PyTuple, times: PyValue, ctx: EvalContext): PyValue => {
  const n = asNumber(times)
  if (n === undefined || n.type !== "int") return fail(`TypeError: can't multiply sequence by non-int of type '${times.type}'`)
  const count = n.value < 0n ? 0n : n.value
  if (seq.type === "str") {
    const size = BigInt(seq.value.length) * count
    if (size > BigInt(EXPRESSION_LIMITS.maxStringLength)) {
      fail(`MemoryError: the repeated string would have ${size} characters (limit ${EXPRESSION_LIMITS.maxStringLength})`)
    }
    return str(size === 0n ? "" : seq.value.repeat(Number(count)))
  }
  const size = BigInt(seq.items.length) * count
  if (size > BigInt(EXPRESSION_LIMITS.maxCollectionLength)) {
    fail(`MemoryError: the repeated ${seq.type} would have ${size} items (limit ${EXPRESSION_LIMITS.maxCollectionLength})`)
  }
  ctx.tick(Number(size))
  const items: Array<PyValue> = []
  for (let i = 0n; i < count && seq.items.length > 0; i++) {
    for (const item of seq.items) items.push(item)
  }
  return seq.type === "list" ? { type: "list", items } : { type: "tuple", items }
}

const concat = (a: PyStr | PyList | PyTuple, b: PyStr | PyList | PyTuple, ctx: EvalContext): PyValue => {
  if (a.type === "str") {
    const value = a.value + (b as PyStr).value
    if (value.length > EXPRESSION_LIMITS.maxStringLength) {
      fail(`MemoryError: the string would have ${value.length} characters (limit ${EXPRESSION_LIMITS.maxStringLength})`)
    }
    return str(value)
  }
  const bi = (b as PyList | PyTuple).items
  const size = a.items.length + bi.length
  if (size > EXPRESSION_LIMITS.maxCollectionLength) {
    fail(`MemoryError: the ${a.type} would have ${size} items (limit ${EXPRESSION_LIMITS.maxCollectionLength})`)
  }
  ctx.tick(size)
  const items = [...a.items, ...bi]
  return a.type === "list" ? { type: "list", items } : { type: "tuple", items }
}

/** `a op b` for the binary operators `+ - * / // %`. */
export const arith = (op: ArithOp, a: PyValue, b: PyValue, ctx: EvalContext): PyValue => {
  const na = asNumber(a)
  const nb = asNumber(b)
  if (na !== undefined && nb !== undefined) return numArith(op, na, nb)
  if (op === "+" && a.type === b.type && (a.type === "str" || a.type === "list" || a.type === "tuple")) {
    return concat(a, b as PyStr | PyList | PyTuple, ctx)
  }
  if (op === "+" && (a.type === "str" || a.type === "list" || a.type === "tuple")) {
    return fail(`TypeError: can only concatenate ${a.type} (not "${b.type}") to ${a.type}`)
  }
  if (op === "*") {
    if (a.type === "str" || a.type === "list" || a.type === "tuple") return repeat(a, b, ctx)
    if (b.type === "str" || b.type === "list" || b.type === "tuple") return repeat(b, a, ctx)
  }
  if (op === "-" && a.type === "set" && b.type === "set") {
    ctx.tick(a.items.size)
    return { type: "set", items: new Map([...a.items].filter(([k]) => !b.items.has(k))) }
  }
  if (op === "%" && a.type === "str") {
    return fail("TypeError: printf-style string formatting ('...' % value) is not supported; use + and str()")
  }
  return fail(`TypeError: unsupported operand type(s) for ${op}: '${a.type}' and '${b.type}'`)
}
