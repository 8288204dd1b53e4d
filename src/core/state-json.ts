/**
 * A JSON encoding of in-memory row values that keeps their JS types, for state that is
 * written to the Landscape and read back (checkpoints). Canonical JSON is for hashing
 * and turns a bigint or a Date into a string for good; this encoding tags them so that
 * a restored row is the same value the crashed process held:
 *
 * - `bigint` → `{"$bigint": "<decimal digits>"}`
 * - `Date` → `{"$date": "<ISO-8601>"}`
 * - `-0` → `{"$number": "-0"}` (JSON has no negative zero)
 * - an object with a key starting with `$` → `{"$object": {...}}` so it cannot be
 *   mistaken for a tag
 *
 * Anything else that JSON cannot hold (NaN, ±Infinity, functions, symbols, class
 * instances, cycles) is refused with the path of the value.
 */

export class StateJsonError extends Error {
  constructor(readonly path: string, what: string) {
    super(`${path}: ${what}`)
  }
}

const isPlainObject = (v: object): boolean => {
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

const encodeAt = (value: unknown, path: string, seen: Set<object>): unknown => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value
    case "number":
      if (!Number.isFinite(value)) throw new StateJsonError(path, `a non-finite number (${value})`)
      return Object.is(value, -0) ? { $number: "-0" } : value
    case "bigint":
      return { $bigint: value.toString() }
    case "undefined":
      return { $undefined: true }
    case "object": {
      if (value === null) return null
      if (value instanceof Date) {
        if (Number.isNaN(value.getTime())) throw new StateJsonError(path, "an invalid Date")
        return { $date: value.toISOString() }
      }
      if (seen.has(value)) throw new StateJsonError(path, "a cycle")
      seen.add(value)
      try {
        if (Array.isArray(value)) return value.map((v, i) => encodeAt(v, `${path}[${i}]`, seen))
        if (!isPlainObject(value)) throw new StateJsonError(path, `an instance of ${value.constructor?.name ?? "a class"}`)
        const out: Record<string, unknown> = {}
        let tagged = false
        for (const [k, v] of Object.entries(value)) {
          if (k.startsWith("$")) tagged = true
          // defineProperty: an own "__proto__" key stays a field, not a prototype.
          Object.defineProperty(out, k, { value: encodeAt(v, `${path}.${k}`, seen), enumerable: true, writable: true, configurable: true })
        }
        return tagged ? { $object: out } : out
      } finally {
        seen.delete(value)
      }
    }
    default:
      throw new StateJsonError(path, `a ${typeof value}`)
  }
}

/** The JSON-ready form of `value` (see the module comment). */
export const encodeState = (value: unknown): unknown => encodeAt(value, "$", new Set())

/** `JSON.stringify` of `encodeState(value)`. */
export const stateJson = (value: unknown): string => JSON.stringify(encodeState(value))

const decodeAt = (value: unknown, path: string): unknown => {
  if (value === null || typeof value !== "object") return value
  if (Array.isArray(value)) return value.map((v, i) => decodeAt(v, `${path}[${i}]`))
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj)
  if (keys.length === 1) {
    const k = keys[0]!
    const v = obj[k]
    switch (k) {
      case "$bigint":
        if (typeof v !== "string" || !/^-?\d+$/.test(v)) throw new StateJsonError(path, `a malformed $bigint (${JSON.stringify(v)})`)
        return BigInt(v)
      case "$date": {
        const d = typeof v === "string" ? new Date(v) : undefined
        if (d === undefined || Number.isNaN(d.getTime())) throw new StateJsonError(path, `a malformed $date (${JSON.stringify(v)})`)
        return d
      }
      case "$number":
        if (v !== "-0") throw new StateJsonError(path, `a malformed $number (${JSON.stringify(v)})`)
        return -0
      case "$undefined":
        return undefined
      case "$object": {
        if (v === null || typeof v !== "object" || Array.isArray(v)) throw new StateJsonError(path, "a malformed $object")
        return decodeObject(v as Record<string, unknown>, path)
      }
    }
  }
  for (const k of keys) if (k.startsWith("$")) throw new StateJsonError(`${path}.${k}`, "an unknown tag")
  return decodeObject(obj, path)
}

const decodeObject = (obj: Record<string, unknown>, path: string): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(obj)) {
    // defineProperty: a key such as "__proto__" stays a plain own field.
    Object.defineProperty(out, k, { value: decodeAt(v, `${path}.${k}`), enumerable: true, writable: true, configurable: true })
  }
  return out
}

/** The inverse of `encodeState`. */
export const decodeState = (value: unknown): unknown => decodeAt(value, "$")

/** Parses text written by `stateJson`. */
export const parseStateJson = (text: string): unknown => decodeState(JSON.parse(text))
