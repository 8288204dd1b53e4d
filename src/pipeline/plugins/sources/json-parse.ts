/**
 * JSON input for the `json` source, read without loss and without recursion:
 *
 * - `parseJsonText` parses one value with an explicit stack (no call-stack overflow
 *   however deep the input) and a nesting limit. Integer literals beyond ±(2^53−1)
 *   become `bigint`s (exact) and are listed with their paths, so the caller decides
 *   whether the row may keep them; a number that is not finite as a float (`1e400`)
 *   and an integer of more than `maxIntegerDigits` digits are failures, never ±Infinity
 *   or a rounded value.
 * - `scanList` walks the bytes of a JSON list and yields each element's byte range
 *   without parsing it, so one bad element does not stop the rest, and a list that
 *   is cut off (a truncated file) yields the elements before the cut and then where
 *   the broken rest starts.
 *
 * Both follow RFC 8259: no NaN/Infinity, no comments, no trailing commas, strings
 * with escaped control characters only.
 */
import { putField } from "../protocol.js"

export interface JsonLimits {
  /** Levels of nested arrays and objects allowed (the root container is level 1). */
  readonly maxDepth: number
  /** Digits allowed in an integer literal. */
  readonly maxIntegerDigits: number
}

/** An integer literal read as a bigint, and where it sits (`[]` for the root). */
export interface LargeInteger {
  readonly path: ReadonlyArray<string | number>
  readonly text: string
}

export type JsonFailureKind = "syntax" | "depth" | "number"

export type JsonParsed =
  | { readonly ok: true; readonly value: unknown; readonly largeIntegers: ReadonlyArray<LargeInteger> }
  | { readonly ok: false; readonly kind: JsonFailureKind; readonly message: string }

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** `$`, `$.a`, `$.a[2]`, `$["odd key"]`. */
export const showPath = (path: ReadonlyArray<string | number>): string => {
  let out = "$"
  for (const p of path) out += typeof p === "number" ? `[${p}]` : IDENT.test(p) ? `.${p}` : `[${JSON.stringify(p)}]`
  return out
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y

const describeChar = (text: string, at: number): string =>
  at >= text.length ? "end of input" : `${JSON.stringify(String.fromCodePoint(text.codePointAt(at)!))} at position ${at}`

const shorten = (text: string): string => (text.length <= 40 ? text : `${text.slice(0, 20)}…${text.slice(-10)} (${text.length} characters)`)

class Failure {
  constructor(readonly kind: JsonFailureKind, readonly message: string) {}
}

const NO_LARGE_INTEGERS: ReadonlyArray<LargeInteger> = []

/**
 * Whether the platform's `JSON.parse` gives exactly what `parseJsonIteratively` would:
 * nesting within the limit, no exponent, no integer part of more than 15 digits (so
 * every number is finite and every integer safe). Strings are skipped, escapes and all.
 */
const isPlainInput = (text: string, maxDepth: number): boolean => {
  let depth = 0
  let run = 0
  let fraction = false
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0x30 && c <= 0x39) {
      if (!fraction && ++run > 15) return false
      continue
    }
    if ((c === 0x65 || c === 0x45) && run + (fraction ? 1 : 0) > 0) return false
    run = 0
    fraction = c === 0x2e
    if (c === 0x22) {
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i)
        if (d === 0x5c) i++
        else if (d === 0x22) break
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return false
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return true
}

/**
 * Parses `text` as one JSON value (see the module comment): with the platform's
 * parser when the input holds nothing it could get wrong, else iteratively.
 */
export const parseJsonText = (text: string, limits: JsonLimits): JsonParsed => {
  if (isPlainInput(text, limits.maxDepth)) {
    try {
      return { ok: true, value: JSON.parse(text) as unknown, largeIntegers: NO_LARGE_INTEGERS }
    } catch {
      // Not JSON: the iterative parser describes the problem.
    }
  }
  return parseJsonIteratively(text, limits)
}

/** Parses `text` as one JSON value with an explicit stack (see the module comment). */
export const parseJsonIteratively = (text: string, limits: JsonLimits): JsonParsed => {
  try {
    return parse(text, limits)
  } catch (e) {
    if (e instanceof Failure) return { ok: false, kind: e.kind, message: e.message }
    throw e
  }
}

const parse = (text: string, limits: JsonLimits): JsonParsed => {
  const n = text.length
  let i = 0
  /** Open containers, outermost first. */
  const stack: Array<Array<unknown> | Record<string, unknown>> = []
  /** For each open object, the key its next member goes to (unused for arrays). */
  const keys: Array<string> = []
  const largeIntegers: Array<LargeInteger> = []

  const syntax = (what: string): never => {
    throw new Failure("syntax", `${what}, found ${describeChar(text, i)}`)
  }
  const skipWs = () => {
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++
      else break
    }
  }
  const readString = (): string => {
    // text[i] is the opening quote.
    const start = i
    let j = i + 1
    let escaped = false
    for (;;) {
      if (j >= n) {
        i = n
        return syntax(`unterminated string starting at position ${start}`)
      }
      const c = text.charCodeAt(j)
      if (c === 0x22) break
      if (c === 0x5c) {
        escaped = true
        j += 2
        continue
      }
      if (c < 0x20) {
        i = j
        return syntax("unescaped control character in a string")
      }
      j++
    }
    i = j + 1
    if (!escaped) return text.slice(start + 1, j)
    try {
      // The escapes are checked and decoded by the platform; the slice holds one string.
      return JSON.parse(text.slice(start, j + 1)) as string
    } catch {
      i = start
      return syntax("invalid escape in the string")
    }
  }
  const readKey = (): string => {
    skipWs()
    if (text.charCodeAt(i) !== 0x22) return syntax("expected a property name in double quotes")
    const key = readString()
    skipWs()
    if (text.charCodeAt(i) !== 0x3a) return syntax("expected ':' after a property name")
    i++
    return key
  }
  const pathHere = (): Array<string | number> => {
    const path: Array<string | number> = []
    let k = 0
    for (const container of stack) path.push(Array.isArray(container) ? container.length : keys[k++]!)
    return path
  }
  const readNumber = (): number | bigint => {
    NUMBER.lastIndex = i
    const m = NUMBER.exec(text)
    if (m === null) return syntax("expected a value")
    const literal = m[0]
    i += literal.length
    if (m[1] === undefined && m[2] === undefined) {
      const digits = literal.charCodeAt(0) === 0x2d ? literal.length - 1 : literal.length
      if (digits <= 15) return Number(literal)
      if (digits > limits.maxIntegerDigits) {
        throw new Failure("number", `integer ${shorten(literal)} at ${showPath(pathHere())} has more than ${limits.maxIntegerDigits} digits`)
      }
      const value = Number(literal)
      if (Number.isSafeInteger(value)) return value
      largeIntegers.push({ path: pathHere(), text: literal })
      return BigInt(literal)
    }
    const value = Number(literal)
    if (!Number.isFinite(value)) {
      throw new Failure("number", `number ${shorten(literal)} at ${showPath(pathHere())} is out of range (not a finite float)`)
    }
    return value
  }
  const literal = (word: string, value: unknown): unknown => {
    if (!text.startsWith(word, i)) return syntax("expected a value")
    i += word.length
    return value
  }

  for (;;) {
    // A value starts here.
    skipWs()
    let value: unknown
    const c = text.charCodeAt(i)
    if (c === 0x5b || c === 0x7b) {
      if (stack.length >= limits.maxDepth) {
        throw new Failure("depth", `nested deeper than ${limits.maxDepth} levels (at position ${i})`)
      }
      i++
      skipWs()
      if (c === 0x5b) {
        if (text.charCodeAt(i) === 0x5d) {
          i++
          value = []
        } else {
          stack.push([])
          continue
        }
      } else if (text.charCodeAt(i) === 0x7d) {
        i++
        value = {}
      } else {
        const key = readKey()
        stack.push({})
        keys.push(key)
        continue
      }
    } else if (c === 0x22) value = readString()
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) value = readNumber()
    else if (c === 0x74) value = literal("true", true)
    else if (c === 0x66) value = literal("false", false)
    else if (c === 0x6e) value = literal("null", null)
    else return syntax("expected a value")

    // The value is complete: put it in its container and close every finished container.
    for (;;) {
      const top = stack[stack.length - 1]
      if (top === undefined) {
        skipWs()
        if (i < n) return syntax("unexpected text after the value")
        return { ok: true, value, largeIntegers }
      }
      const isArray = Array.isArray(top)
      if (isArray) top.push(value)
      else putField(top, keys[keys.length - 1]!, value)
      skipWs()
      const d = text.charCodeAt(i)
      if (d === 0x2c) {
        i++
        if (!isArray) keys[keys.length - 1] = readKey()
        break
      }
      if (d !== (isArray ? 0x5d : 0x7d)) return syntax(isArray ? "expected ',' or ']'" : "expected ',' or '}'")
      i++
      value = top
      stack.pop()
      if (!isArray) keys.pop()
    }
  }
}

// ---------------------------------------------------------------------------
// Scanning a list's bytes

const isWs = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09

/** Offset of the first non-whitespace byte at or after `pos`. */
export const skipWsBytes = (buf: Uint8Array, pos: number): number => {
  while (pos < buf.length && isWs(buf[pos]!)) pos++
  return pos
}

/** Where a value ends, or where and why the bytes stop being JSON structure. */
export type Extent =
  | { readonly ok: true; readonly end: number }
  | { readonly ok: false; readonly at: number; readonly message: string }

const DELIMITS = new Uint8Array(256)
for (const ch of ",]}[{\":") DELIMITS[ch.charCodeAt(0)] = 1
for (const ch of " \n\r\t") DELIMITS[ch.charCodeAt(0)] = 1

/**
 * The end of the value starting at `pos` (not whitespace), found by matching brackets
 * and skipping strings, without checking the value's syntax (the parser does that).
 * A closing bracket that does not match, or the end of the input inside the value,
 * is a broken structure.
 */
export const valueExtent = (buf: Uint8Array, pos: number): Extent => {
  const n = buf.length
  const first = buf[pos]
  if (first === undefined) return { ok: false, at: pos, message: "the input ends where a value should start" }
  if (first === 0x5d || first === 0x7d) {
    return { ok: false, at: pos, message: `unexpected '${String.fromCharCode(first)}' where a value should start` }
  }
  if (first !== 0x5b && first !== 0x7b && first !== 0x22) {
    // A number, a literal or stray text: up to the next structural byte.
    let j = pos + 1
    while (j < n && DELIMITS[buf[j]!] === 0) j++
    return { ok: true, end: j }
  }
  const closers: Array<number> = []
  let j = pos
  while (j < n) {
    const b = buf[j]!
    if (b === 0x22) {
      j++
      while (j < n && buf[j] !== 0x22) j += buf[j] === 0x5c ? 2 : 1
      if (j >= n) return { ok: false, at: pos, message: "the input ends inside a string" }
      if (closers.length === 0) return { ok: true, end: j + 1 }
    } else if (b === 0x5b) closers.push(0x5d)
    else if (b === 0x7b) closers.push(0x7d)
    else if (b === 0x5d || b === 0x7d) {
      const expected = closers.pop()
      if (expected !== b) {
        return { ok: false, at: j, message: `'${String.fromCharCode(b)}' at byte ${j} does not match the open bracket` }
      }
      if (closers.length === 0) return { ok: true, end: j + 1 }
    }
    j++
  }
  const inner = closers[closers.length - 1] === 0x5d ? "an array" : "an object"
  return { ok: false, at: pos, message: `the input ends inside ${inner} (${closers.length} bracket(s) left open)` }
}

/** A piece of a list: an element's bytes, or the broken rest of the input. */
export type ListPiece =
  | { readonly _tag: "Element"; readonly index: number; readonly start: number; readonly end: number }
  | { readonly _tag: "Broken"; readonly index: number; readonly start: number; readonly message: string }

/**
 * The elements of the list whose `[` is at `open`, in order. An element is the text
 * between separators at the list's own level: text that is not one value (`1 2`, an
 * empty slot in `[1,,2]`) is still one element, for the parser to reject. The list
 * breaks where its brackets stop matching or the input ends before its `]`; then the
 * last piece is `Broken`, starting after the last separator (an element that is not
 * followed by `,` or `]` may be cut short, so it belongs to the broken rest). The
 * generator returns the offset after the `]`, or undefined when broken.
 */
export function* scanList(buf: Uint8Array, open: number): Generator<ListPiece, number | undefined> {
  let pos = skipWsBytes(buf, open + 1)
  if (buf[pos] === 0x5d) return pos + 1
  for (let index = 0;; index++) {
    const start = pos
    let end = pos
    for (;;) {
      if (pos >= buf.length) {
        yield { _tag: "Broken", index, start, message: "the input ends before the list is closed with ']'" }
        return undefined
      }
      const b = buf[pos]!
      if (b === 0x2c || b === 0x5d) break
      const extent = valueExtent(buf, pos)
      if (!extent.ok) {
        yield { _tag: "Broken", index, start, message: extent.message }
        return undefined
      }
      end = extent.end
      pos = skipWsBytes(buf, end)
    }
    yield { _tag: "Element", index, start, end }
    if (buf[pos] === 0x5d) return pos + 1
    pos = skipWsBytes(buf, pos + 1)
  }
}

/** Counts physical lines (`\n`, `\r\n` or a lone `\r` end one) up to increasing offsets. */
export class LineCounter {
  private offset = 0
  private line = 1
  constructor(private readonly buf: Uint8Array) {}
  /** The 1-based line holding byte `offset` (offsets must not decrease between calls). */
  at(offset: number): number {
    const buf = this.buf
    for (let j = this.offset; j < offset && j < buf.length; j++) {
      const b = buf[j]
      if (b === 0x0a) this.line++
      else if (b === 0x0d && buf[j + 1] !== 0x0a) this.line++
    }
    this.offset = Math.max(this.offset, offset)
    return this.line
  }
}
