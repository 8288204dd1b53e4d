/**
 * Canonical JSON (RFC 8785, via the `canonicalize` package) and the stable hash the
 * audit trail stores for every payload.
 *
 * Values are first normalised to plain JSON so that nothing can hash "by accident":
 * NaN, ±Infinity, functions, symbols, `undefined` inside arrays, cycles and objects
 * of unsupported classes are refused with a `CanonicalError` naming the path
 * (`$.a[3].b`). Defined encodings beyond JSON:
 * - `bigint` → its decimal digits as a JSON string (`10n` → `"10"`);
 * - `Date` → its ISO-8601 UTC string (`2026-01-02T03:04:05.678Z`); an invalid Date is refused;
 * - `undefined` as an object property → the property is omitted (as JSON does).
 */
import canonicalize from "canonicalize"
import { createHash } from "node:crypto"
import { Data, Either } from "effect"

/** Version tag stored with every run: which canonical form and hash its hashes use. */
export const CANONICAL_VERSION = "sha256-rfc8785-v1"

export class CanonicalError extends Data.TaggedError("CanonicalError")<{
  /** JSONPath-like location of the offending value, `$` for the root. */
  readonly path: string
  readonly reason:
    | "NonFiniteNumber"
    | "Undefined"
    | "Function"
    | "Symbol"
    | "Cycle"
    | "UnsupportedType"
    | "InvalidDate"
    | "LoneSurrogate"
  readonly message: string
}> {}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/

const childPath = (path: string, key: string): string =>
  IDENT.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`

const fail = (path: string, reason: CanonicalError["reason"], what: string): never => {
  throw new CanonicalError({ path, reason, message: `cannot hash ${what} at ${path}` })
}

const normalize = (value: unknown, path: string, seen: Set<object>): unknown => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value
    case "number":
      if (!Number.isFinite(value)) fail(path, "NonFiniteNumber", String(value))
      return value
    case "bigint":
      return value.toString(10)
    case "undefined":
      return fail(path, "Undefined", "undefined")
    case "function":
      return fail(path, "Function", "a function")
    case "symbol":
      return fail(path, "Symbol", "a symbol")
    case "object":
      break
  }
  if (value === null) return null
  const obj = value as object
  if (obj instanceof Date) {
    const time = obj.getTime()
    if (Number.isNaN(time)) fail(path, "InvalidDate", "an invalid Date")
    return obj.toISOString()
  }
  if (seen.has(obj)) fail(path, "Cycle", "a cyclic reference")
  seen.add(obj)
  let out: unknown
  if (Array.isArray(obj)) {
    const arr: Array<unknown> = new Array(obj.length)
    for (let i = 0; i < obj.length; i++) arr[i] = normalize(obj[i], `${path}[${i}]`, seen)
    out = arr
  } else {
    const proto = Object.getPrototypeOf(obj)
    if (proto !== Object.prototype && proto !== null) {
      const name = (proto?.constructor?.name as string | undefined) ?? "unknown"
      fail(path, "UnsupportedType", `a value of class ${name}`)
    }
    const rec: Record<string, unknown> = {}
    for (const key of Object.keys(obj)) {
      const v = (obj as Record<string, unknown>)[key]
      if (v === undefined) continue
      Object.defineProperty(rec, key, {
        value: normalize(v, childPath(path, key), seen),
        enumerable: true,
        writable: true,
        configurable: true
      })
    }
    out = rec
  }
  seen.delete(obj)
  return out
}

/** Fast path: true when the value is plain JSON that needs no normalisation. */
const isPlain = (value: unknown, depth: number): boolean => {
  if (depth > 64) return false
  switch (typeof value) {
    case "string":
    case "boolean":
      return true
    case "number":
      return Number.isFinite(value)
    case "object": {
      if (value === null) return true
      if (Array.isArray(value)) {
        for (const v of value) if (!isPlain(v, depth + 1)) return false
        return true
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) return false
      for (const key in value) {
        if (!isPlain((value as Record<string, unknown>)[key], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** Canonical JSON text of `value`, or throws `CanonicalError`. */
export const canonicalJsonUnsafe = (value: unknown): string => {
  const normalized = isPlain(value, 0) ? value : normalize(value, "$", new Set())
  let text: string | undefined
  try {
    text = canonicalize(normalized)
  } catch (e) {
    // RFC 8785 has no encoding for a string with an unpaired UTF-16 surrogate.
    if (e instanceof Error && /surrogate/i.test(e.message)) {
      throw new CanonicalError({ path: "$", reason: "LoneSurrogate", message: "cannot hash a string holding a lone UTF-16 surrogate" })
    }
    throw e
  }
  if (text === undefined) return fail("$", "Undefined", "undefined")
  return text
}

/** Canonical JSON text of `value` (RFC 8785). */
export const canonicalJson = (value: unknown): Either.Either<string, CanonicalError> => {
  try {
    return Either.right(canonicalJsonUnsafe(value))
  } catch (e) {
    if (e instanceof CanonicalError) return Either.left(e)
    if (e instanceof RangeError) {
      return Either.left(new CanonicalError({ path: "$", reason: "UnsupportedType", message: `value too deeply nested to hash` }))
    }
    throw e
  }
}

export const sha256Hex = (text: string | Uint8Array): string => createHash("sha256").update(text).digest("hex")

/** SHA-256 hex of the canonical JSON of `value`, or throws `CanonicalError`. */
export const stableHashUnsafe = (value: unknown): string => sha256Hex(canonicalJsonUnsafe(value))

/** SHA-256 hex of the canonical JSON of `value` (`sha256-rfc8785-v1`). */
export const stableHash = (value: unknown): Either.Either<string, CanonicalError> =>
  Either.map(canonicalJson(value), sha256Hex)
