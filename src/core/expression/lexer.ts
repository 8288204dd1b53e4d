/**
 * The tokenizer: Python's tokens for the expression subset (names, keywords, numbers,
 * strings with their escapes, operators, line continuations), with Python's messages
 * for the literals it refuses.
 */
import { isPrintable } from "../python/repr.js"
import { ParseFail } from "./errors.js"
import { EXPRESSION_LIMITS } from "./limits.js"
import type { PyValue } from "./values.js"

export type TokKind = "name" | "kw" | "num" | "str" | "op" | "newline" | "eof" | "error"
export interface Token {
  readonly kind: TokKind
  readonly text: string
  readonly pos: number
  readonly value?: PyValue
  readonly fail?: ParseFail
}

const KEYWORDS: ReadonlySet<string> = new Set([
  "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
  "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
  "not", "or", "pass", "raise", "return", "try", "while", "with", "yield"
])
/** Keywords Python still accepts directly after a number (`1if x else 2`). */
const NUMBER_FOLLOWERS: ReadonlySet<string> = new Set(["and", "else", "for", "if", "in", "is", "not", "or"])
const OPERATORS: ReadonlyArray<string> = [
  "**=", "//=", ">>=", "<<=", "...",
  "**", "//", "<<", ">>", "<=", ">=", "==", "!=", "->", ":=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=",
  "(", ")", "[", "]", "{", "}", ",", ":", ";", ".", "+", "-", "*", "/", "%", "@", "&", "|", "^", "~", "<", ">", "=",
  "!"
]
const STRING_PREFIX = /^(?:[rRuUbBfFtT]|[bBfFtT][rR]|[rR][bBfFtT])$/
const ID_START = /[\p{XID_Start}_]/u
const ID_CONTINUE = /\p{XID_Continue}/u
const DIGITS = /\d(?:_?\d)*/y
const HEX = /0[xX](?:_?[0-9a-fA-F])+/y
const OCT = /0[oO](?:_?[0-7])+/y
const BIN = /0[bB](?:_?[01])+/y

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "9"
const isIdStart = (cp: number): boolean =>
  cp < 128 ? (cp >= 97 && cp <= 122) || (cp >= 65 && cp <= 90) || cp === 95 : ID_START.test(String.fromCodePoint(cp))
const isIdContinue = (cp: number): boolean =>
  cp < 128 ? isIdStart(cp) || (cp >= 48 && cp <= 57) : ID_CONTINUE.test(String.fromCodePoint(cp))
const uPlus = (cp: number): string => `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`
/** UTF-16 units of a code point. */
export const cpLen = (cp: number): number => (cp > 0xffff ? 2 : 1)

const matchAt = (re: RegExp, s: string, at: number): string | undefined => {
  re.lastIndex = at
  const m = re.exec(s)
  return m === null ? undefined : m[0]
}

export class Lexer {
  private i = 0
  private depth = 0
  private contentSinceNewline = false
  private started = false
  private failed: Token | undefined

  constructor(private readonly src: string) {}

  next(): Token {
    if (this.failed !== undefined) return this.failed
    try {
      return this.scan()
    } catch (e) {
      if (e instanceof ParseFail) {
        this.failed = { kind: "error", text: e.head, pos: e.pos, fail: e }
        return this.failed
      }
      throw e
    }
  }

  private scan(): Token {
    const s = this.src
    for (;;) {
      const c = s[this.i]
      if (c === undefined) return { kind: "eof", text: "", pos: s.length }
      if (c === " " || c === "\t" || c === "\f") {
        this.i++
      } else if (c === "#") {
        while (this.i < s.length && s[this.i] !== "\n" && s[this.i] !== "\r") this.i++
      } else if (c === "\\") {
        const d = s[this.i + 1]
        if (d === "\n") this.i += 2
        else if (d === "\r") this.i += s[this.i + 2] === "\n" ? 3 : 2
        else throw new ParseFail(this.i, "unexpected character after line continuation character '\\'")
      } else if (c === "\n" || c === "\r") {
        const pos = this.i
        this.i += c === "\r" && s[this.i + 1] === "\n" ? 2 : 1
        if (this.depth === 0 && this.contentSinceNewline) {
          this.contentSinceNewline = false
          return { kind: "newline", text: "\n", pos }
        }
      } else {
        break
      }
    }
    if (!this.started) {
      // Like ast.parse(..., mode="eval"): the first line may not be indented.
      this.started = true
      let lineStart = this.i
      while (lineStart > 0 && s[lineStart - 1] !== "\n" && s[lineStart - 1] !== "\r") lineStart--
      if (/[ \t]/.test(s.slice(lineStart, this.i))) {
        throw new ParseFail(lineStart, "unexpected indent", "; remove the leading whitespace")
      }
    }
    const token = this.token()
    this.contentSinceNewline = true
    return token
  }

  private token(): Token {
    const s = this.src
    const start = this.i
    const c = s[start]!
    if (isDigit(c) || (c === "." && isDigit(s[start + 1]))) return this.number()
    if (c === "'" || c === "\"") return this.string(start, "")
    const cp = s.codePointAt(start)!
    if (isIdStart(cp)) {
      let j = start + cpLen(cp)
      while (j < s.length) {
        const d = s.codePointAt(j)!
        if (!isIdContinue(d)) break
        j += cpLen(d)
      }
      const text = s.slice(start, j)
      this.i = j
      const q = s[j]
      if ((q === "'" || q === "\"") && STRING_PREFIX.test(text)) {
        const p = text.toLowerCase()
        if (p.includes("b")) throw new ParseFail(start, "bytes literals (b'...') are not allowed", "; use a plain string")
        if (p.includes("f")) throw new ParseFail(start, "f-strings are not allowed")
        if (p.includes("t")) throw new ParseFail(start, "template strings (t'...') are not allowed")
        return this.string(start, p)
      }
      return { kind: KEYWORDS.has(text) ? "kw" : "name", text, pos: start }
    }
    for (const op of OPERATORS) {
      if (s.startsWith(op, start)) {
        this.i += op.length
        if (op === "(" || op === "[" || op === "{") this.depth++
        else if ((op === ")" || op === "]" || op === "}") && this.depth > 0) this.depth--
        return { kind: "op", text: op, pos: start }
      }
    }
    throw new ParseFail(
      start,
      isPrintable(cp)
        ? `invalid character '${String.fromCodePoint(cp)}' (${uPlus(cp)})`
        : `invalid non-printable character ${uPlus(cp)}`
    )
  }

  private number(): Token {
    const s = this.src
    const start = this.i
    let j = start
    let value: PyValue
    const prefixed = s[start] === "0" ? s[start + 1] : undefined
    if (prefixed !== undefined && "xXoObB".includes(prefixed)) {
      const re = prefixed === "x" || prefixed === "X" ? HEX : prefixed === "o" || prefixed === "O" ? OCT : BIN
      const m = matchAt(re, s, start)
      const kind = re === HEX ? "hexadecimal" : re === OCT ? "octal" : "binary"
      if (m === undefined) throw new ParseFail(start, `invalid ${kind} literal`)
      j = start + m.length
      if (isDigit(s[j]) || s[j] === "_") throw new ParseFail(start, `invalid ${kind} literal`)
      value = { type: "int", value: BigInt(m.replace(/_/g, "")) }
    } else {
      let isFloat = false
      const intPart = matchAt(DIGITS, s, j)
      if (intPart !== undefined) j += intPart.length
      if (s[j] === ".") {
        isFloat = true
        j++
        const frac = matchAt(DIGITS, s, j)
        if (frac !== undefined) j += frac.length
      }
      if (s[j] === "e" || s[j] === "E") {
        let k = j + 1
        if (s[k] === "+" || s[k] === "-") k++
        const exp = matchAt(DIGITS, s, k)
        if (exp !== undefined) {
          j = k + exp.length
          isFloat = true
        }
      }
      if (s[j] === "j" || s[j] === "J") throw new ParseFail(start, "complex (imaginary) number literals are not allowed")
      if (s[j] === "_") throw new ParseFail(start, "invalid decimal literal", " (an underscore must separate two digits)")
      const text = s.slice(start, j).replace(/_/g, "")
      if (isFloat) {
        value = { type: "float", value: Number(text) }
      } else {
        if (/^0+$/.test(text)) {
          value = { type: "int", value: 0n }
        } else if (text.startsWith("0")) {
          throw new ParseFail(start, "leading zeros in decimal integer literals are not permitted", " (use 0o for octal)")
        } else if (text.length > EXPRESSION_LIMITS.maxIntDigits) {
          throw new ParseFail(start, `integer literal has ${text.length} digits, more than ${EXPRESSION_LIMITS.maxIntDigits}`)
        } else {
          value = { type: "int", value: BigInt(text) }
        }
      }
    }
    const follow = s.codePointAt(j)
    if (follow !== undefined && isIdContinue(follow)) {
      let k = j
      while (k < s.length && isIdContinue(s.codePointAt(k)!)) k += cpLen(s.codePointAt(k)!)
      if (!NUMBER_FOLLOWERS.has(s.slice(j, k))) throw new ParseFail(start, "invalid decimal literal")
    }
    this.i = j
    return { kind: "num", text: s.slice(start, j), pos: start, value }
  }

  /** `this.i` is at the opening quote; `start` is where the literal (with its prefix) begins. */
  private string(start: number, prefix: string): Token {
    const s = this.src
    const raw = prefix.includes("r")
    const q = s[this.i]!
    const triple = s.startsWith(q + q + q, this.i)
    let i = this.i + (triple ? 3 : 1)
    let out = ""
    const unterminated = () =>
      new ParseFail(start, triple ? "unterminated triple-quoted string literal" : "unterminated string literal")
    for (;;) {
      const c = s[i]
      if (c === undefined) throw unterminated()
      if (triple ? s.startsWith(q + q + q, i) : c === q) {
        i += triple ? 3 : 1
        break
      }
      if (!triple && (c === "\n" || c === "\r")) throw unterminated()
      if (c !== "\\") {
        out += c
        i++
        continue
      }
      const d = s[i + 1]
      if (d === undefined) throw unterminated()
      if (raw) {
        // A raw string keeps the backslash; an escaped quote does not end it.
        const crlf = d === "\r" && s[i + 2] === "\n"
        out += crlf ? c + d + "\n" : c + d
        i += crlf ? 3 : 2
        continue
      }
      const at = i
      i += 2
      switch (d) {
        case "\n":
          break
        case "\r":
          if (s[i] === "\n") i++
          break
        case "\\":
        case "'":
        case "\"":
          out += d
          break
        case "a":
          out += "\x07"
          break
        case "b":
          out += "\b"
          break
        case "f":
          out += "\f"
          break
        case "n":
          out += "\n"
          break
        case "r":
          out += "\r"
          break
        case "t":
          out += "\t"
          break
        case "v":
          out += "\v"
          break
        case "x":
        case "u":
        case "U": {
          const width = d === "x" ? 2 : d === "u" ? 4 : 8
          const digits = s.slice(i, i + width)
          if (!new RegExp(`^[0-9a-fA-F]{${width}}$`).test(digits)) {
            throw new ParseFail(at, `truncated \\${d} escape`, ` (\\${d} needs exactly ${width} hex digits)`)
          }
          const cp = parseInt(digits, 16)
          if (cp > 0x10ffff) throw new ParseFail(at, `illegal Unicode character in \\U escape`)
          out += String.fromCodePoint(cp)
          i += width
          break
        }
        case "N":
          throw new ParseFail(at, "\\N{...} escapes are not supported", "; use \\u or \\U with the code point")
        default:
          if (d >= "0" && d <= "7") {
            let j = i - 1
            let digits = ""
            while (j < s.length && digits.length < 3 && s[j]! >= "0" && s[j]! <= "7") digits += s[j++]
            out += String.fromCodePoint(parseInt(digits, 8))
            i = j
          } else {
            // Unknown escapes are kept as written (Python warns but accepts them).
            out += "\\"
            i--
          }
      }
    }
    this.i = i
    return { kind: "str", text: s.slice(start, i), pos: start, value: { type: "str", value: out } }
  }
}
