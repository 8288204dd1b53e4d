/**
 * Canonical JSON (RFC 8785) and the stable hash the audit trail stores for every
 * payload. The text is written with an explicit stack, so a value nested thousands of
 * levels deep hashes like any other (no call-stack overflow); the output is the same
 * as the `canonicalize` package gives for the plain JSON form of the value.
 *
 * Only plain JSON is written, so that nothing can hash "by accident": NaN, ±Infinity,
 * functions, symbols, `undefined` inside arrays, cycles and objects of unsupported
 * classes are refused with a `CanonicalError` naming the path
 * (`$.a[3].b`). Defined encodings beyond JSON:
 * - `bigint` → its decimal digits as a JSON string (`10n` → `"10"`);
 * - `Date` → its ISO-8601 UTC string (`2026-01-02T03:04:05.678Z`); an invalid Date is refused;
 * - `undefined` as an object property → the property is omitted (as JSON does).
 */
import * as NodeCrypto from "node:crypto"
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

/** A string holding an unpaired UTF-16 surrogate (a paired one is one code point under `u`). */
const LONE_SURROGATE = /\p{Cs}/u

/** An array or object being written: its members are visited one at a time. */
interface Frame {
  readonly value: object
  /** The sorted keys of an object; undefined for an array. */
  readonly keys: ReadonlyArray<string> | undefined
  /** The next member to visit. */
  next: number
  /** Whether a member has been written (an object skips `undefined` properties). */
  wrote: boolean
}

/** The path of the member being visited: each frame's current member, from the root. */
const pathOf = (stack: ReadonlyArray<Frame>): string => {
  let path = "$"
  for (const frame of stack) {
    const at = frame.next - 1
    path = frame.keys === undefined ? `${path}[${at}]` : childPath(path, frame.keys[at]!)
  }
  return path
}

const quote = (text: string, stack: ReadonlyArray<Frame>, what: string): string => {
  if (LONE_SURROGATE.test(text)) {
    const path = pathOf(stack)
    throw new CanonicalError({ path, reason: "LoneSurrogate", message: `cannot hash ${what} holding a lone UTF-16 surrogate at ${path}` })
  }
  return JSON.stringify(text)
}

const fail = (stack: ReadonlyArray<Frame>, reason: CanonicalError["reason"], what: string): never => {
  const path = pathOf(stack)
  throw new CanonicalError({ path, reason, message: `cannot hash ${what} at ${path}` })
}

/**
 * Writes the canonical text of `root` with an explicit stack, so that nesting depth is
 * limited by memory, not by the JavaScript call stack. `open` holds the containers
 * on the current path (a repeat is a cycle; a value shared between siblings is not).
 */
const write = (root: unknown): string => {
  const stack: Array<Frame> = []
  const open = new Set<object>()
  let out = ""
  let value: unknown = root
  for (;;) {
    // Write `value`: a scalar in full, a container's opening bracket.
    switch (typeof value) {
      case "string":
        out += quote(value, stack, "a string")
        break
      case "boolean":
        out += value ? "true" : "false"
        break
      case "number":
        if (!Number.isFinite(value)) fail(stack, "NonFiniteNumber", String(value))
        // ECMAScript's Number-to-String is RFC 8785's number form (-0 gives "0").
        out += String(value)
        break
      case "bigint":
        out += `"${value.toString(10)}"`
        break
      case "undefined":
        fail(stack, "Undefined", "undefined")
        break
      case "function":
        fail(stack, "Function", "a function")
        break
      case "symbol":
        fail(stack, "Symbol", "a symbol")
        break
      case "object": {
        if (value === null) {
          out += "null"
          break
        }
        if (value instanceof Date) {
          if (Number.isNaN(value.getTime())) fail(stack, "InvalidDate", "an invalid Date")
          out += `"${value.toISOString()}"`
          break
        }
        if (open.has(value)) fail(stack, "Cycle", "a cyclic reference")
        if (Array.isArray(value)) {
          out += "["
          stack.push({ value, keys: undefined, next: 0, wrote: false })
        } else {
          const proto: unknown = Object.getPrototypeOf(value)
          if (proto !== Object.prototype && proto !== null) {
            const name = ((proto as { constructor?: { name?: unknown } } | null)?.constructor?.name as string | undefined) ?? "unknown"
            fail(stack, "UnsupportedType", `a value of class ${name}`)
          }
          out += "{"
          // Default sort order is by UTF-16 code units, as RFC 8785 asks.
          stack.push({ value, keys: Object.keys(value).sort(), next: 0, wrote: false })
        }
        open.add(value)
        break
      }
    }
    // Find the next member to write, closing every container that is done.
    let found = false
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!
      if (frame.keys === undefined) {
        const array = frame.value as ReadonlyArray<unknown>
        if (frame.next < array.length) {
          if (frame.next > 0) out += ","
          value = array[frame.next++]
          found = true
          break
        }
        out += "]"
      } else {
        const record = frame.value as Record<string, unknown>
        while (frame.next < frame.keys.length) {
          const key = frame.keys[frame.next++]!
          const member = record[key]
          if (member === undefined) continue
          out += `${frame.wrote ? "," : ""}${quote(key, stack, "a key")}:`
          frame.wrote = true
          value = member
          found = true
          break
        }
        if (found) break
        out += "}"
      }
      open.delete(frame.value)
      stack.pop()
    }
    if (!found) return out
  }
}

// ---------------------------------------------------------------------------
// The fast path: a flat record (a source row, most transform outputs) whose values are
// all scalars. Rows of one schema share their keys, so the sorted key order and the
// quoted `"key":` prefixes are worked out once per set of keys and reused; a value the
// fast path does not handle (a container, a bigint, a Date, a bad number or string)
// sends the whole record to the general writer above, which also names what is wrong.

/** Whether `text` has no lone surrogate: `String.prototype.isWellFormed` where the runtime has it. */
const wellFormed: (text: string) => boolean = typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === "function"
  ? (text) => (text as unknown as { isWellFormed(): boolean }).isWellFormed()
  : (text) => !LONE_SURROGATE.test(text)

interface Shape {
  /** The record's own keys, in the order `Object.keys` gave them (to check a cache hit). */
  readonly keys: ReadonlyArray<string>
  /** The keys in RFC 8785 order. */
  readonly sorted: ReadonlyArray<string>
  /** `"key":` for each sorted key, already quoted. */
  readonly prefixes: ReadonlyArray<string>
}

const MAX_SHAPES = 256
const shapes = new Map<string, Shape>()

const sameKeys = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const shapeOf = (keys: Array<string>): Shape | undefined => {
  const id = keys.join("\u0000")
  const known = shapes.get(id)
  if (known !== undefined && sameKeys(known.keys, keys)) return known
  for (const key of keys) if (!wellFormed(key)) return undefined
  const sorted = [...keys].sort()
  const shape: Shape = { keys, sorted, prefixes: sorted.map((k) => `${JSON.stringify(k)}:`) }
  if (shapes.size >= MAX_SHAPES) shapes.clear()
  shapes.set(id, shape)
  return shape
}

/** The canonical text of a flat plain object of scalars, or undefined for the general writer. */
const writeFlat = (record: Record<string, unknown>): string | undefined => {
  const keys = Object.keys(record)
  if (keys.length === 0 || keys.length > 64) return undefined
  const shape = shapeOf(keys)
  if (shape === undefined) return undefined
  let out = "{"
  let wrote = false
  for (let i = 0; i < shape.sorted.length; i++) {
    const value = record[shape.sorted[i]!]
    let text: string
    switch (typeof value) {
      case "string":
        if (!wellFormed(value)) return undefined
        text = JSON.stringify(value)
        break
      case "number":
        if (!Number.isFinite(value)) return undefined
        text = String(value)
        break
      case "boolean":
        text = value ? "true" : "false"
        break
      case "undefined":
        continue
      case "object":
        if (value !== null) return undefined
        text = "null"
        break
      default:
        return undefined
    }
    out += wrote ? `,${shape.prefixes[i]}${text}` : `${shape.prefixes[i]}${text}`
    wrote = true
  }
  return `${out}}`
}

const writeAny = (value: unknown): string => {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const proto: unknown = Object.getPrototypeOf(value)
    if (proto === Object.prototype || proto === null) {
      const flat = writeFlat(value as Record<string, unknown>)
      if (flat !== undefined) return flat
    }
  }
  return write(value)
}

/** Canonical JSON text of `value`, or throws `CanonicalError`. */
export const canonicalJsonUnsafe = (value: unknown): string => writeAny(value)

/** The general writer alone, without the flat-record fast path (to test one against the other). */
export const canonicalJsonGeneralUnsafe = (value: unknown): string => write(value)

/** Canonical JSON text of `value` (RFC 8785). */
export const canonicalJson = (value: unknown): Either.Either<string, CanonicalError> => {
  try {
    return Either.right(writeAny(value))
  } catch (e) {
    if (e instanceof CanonicalError) return Either.left(e)
    throw e
  }
}

/** Node's one-shot `crypto.hash` (20.12 and later) skips the Hash object; older versions stream. */
const oneShot = (NodeCrypto as { hash?: (algorithm: string, data: string | Uint8Array, encoding: "hex") => string }).hash

export const sha256Hex: (text: string | Uint8Array) => string = oneShot !== undefined
  ? (text) => oneShot("sha256", text, "hex")
  : (text) => NodeCrypto.createHash("sha256").update(text).digest("hex")

/** SHA-256 hex of the canonical JSON of `value`, or throws `CanonicalError`. */
export const stableHashUnsafe = (value: unknown): string => sha256Hex(canonicalJsonUnsafe(value))

/** SHA-256 hex of the canonical JSON of `value` (`sha256-rfc8785-v1`). */
export const stableHash = (value: unknown): Either.Either<string, CanonicalError> =>
  Either.map(canonicalJson(value), sha256Hex)
