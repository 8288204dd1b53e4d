/**
 * The Python values an expression sees and computes, their constructors and their
 * truthiness.
 */
import { fail } from "./errors.js"

export interface PyNone {
  readonly type: "NoneType"
}
export interface PyBool {
  readonly type: "bool"
  readonly value: boolean
}
/** Python int: arbitrary precision. */
export interface PyInt {
  readonly type: "int"
  readonly value: bigint
}
export interface PyFloat {
  readonly type: "float"
  readonly value: number
}
export interface PyStr {
  readonly type: "str"
  readonly value: string
}
export interface PyList {
  readonly type: "list"
  readonly items: ReadonlyArray<PyValue>
}
export interface PyTuple {
  readonly type: "tuple"
  readonly items: ReadonlyArray<PyValue>
}
/** Items keyed by their hash key (see `hashKey`), in insertion order. */
export interface PySet {
  readonly type: "set"
  readonly items: ReadonlyMap<string, PyValue>
}
/** Entries keyed by the hash key of the Python key, in insertion order. */
export interface PyDict {
  readonly type: "dict"
  readonly entries: ReadonlyMap<string, readonly [PyValue, PyValue]>
}

/** A Python value as seen by an expression. `type` is the Python type name. */
export type PyValue = PyNone | PyBool | PyInt | PyFloat | PyStr | PyList | PyTuple | PySet | PyDict

/**
 * Marks a number in row data as a Python float even when it is integral:
 * by default an integral JS number in the row is an `int` (3 → `3`), so a
 * source that coerced a field to float can wrap it (`new RowFloat(3)` → `3.0`).
 */
export class RowFloat {
  constructor(readonly value: number) {}
}

export const NONE: PyNone = { type: "NoneType" }
export const TRUE: PyBool = { type: "bool", value: true }
export const FALSE: PyBool = { type: "bool", value: false }

/** Constructors for PyValues (for callers and tests). `py.int` needs an integral number or a bigint. */
export const py = {
  none: NONE,
  bool: (value: boolean): PyBool => (value ? TRUE : FALSE),
  int: (value: number | bigint): PyInt => ({ type: "int", value: typeof value === "bigint" ? value : BigInt(value) }),
  float: (value: number): PyFloat => ({ type: "float", value }),
  str: (value: string): PyStr => ({ type: "str", value }),
  list: (items: ReadonlyArray<PyValue>): PyList => ({ type: "list", items }),
  tuple: (items: ReadonlyArray<PyValue>): PyTuple => ({ type: "tuple", items })
} as const

// Internal constructors (an int from a bigint only).
export const str = (value: string): PyStr => ({ type: "str", value })
export const int = (value: bigint): PyInt => ({ type: "int", value })
export const float = (value: number): PyFloat => ({ type: "float", value })
export const bool = (value: boolean): PyBool => (value ? TRUE : FALSE)

/** bool counts as int in arithmetic and comparisons. */
export const asNumber = (v: PyValue): PyInt | PyFloat | undefined =>
  v.type === "int" || v.type === "float" ? v : v.type === "bool" ? int(v.value ? 1n : 0n) : undefined

export const toFloat = (v: PyInt | PyFloat): number => {
  if (v.type === "float") return v.value
  const x = Number(v.value)
  if (!Number.isFinite(x)) fail("OverflowError: int too large to convert to float")
  return x
}

/** Python truthiness, as `bool(v)`. */
export const isTruthy = (v: PyValue): boolean => {
  switch (v.type) {
    case "NoneType":
      return false
    case "bool":
      return v.value
    case "int":
      return v.value !== 0n
    case "float":
      return v.value !== 0
    case "str":
      return v.value.length > 0
    case "list":
    case "tuple":
      return v.items.length > 0
    case "set":
      return v.items.size > 0
    case "dict":
      return v.entries.size > 0
  }
}
