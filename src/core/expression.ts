/**
 * The gate expression language: a hand-written parser and evaluator for the
 * Python-expression subset that ELSPETH accepts in gate conditions and
 * aggregation trigger conditions (PLUGINS.md 6.1–6.3, 5.1), plus the calls
 * `len`, `str`, `int`, `float`, `bool` and `abs`.
 *
 * No `eval`, no `new Function`, no property access on JS objects except
 * own-property reads while converting the row (`Object.keys` and property
 * descriptors, so getters are not run): every key, `__proto__` and
 * `constructor` included, is plain data held in a Map.
 *
 * The user reference is docs/expression.md.
 */
import { Data, Either } from "effect"

// ---------------------------------------------------------------------------
// Errors

/** The expression was refused before any row was seen. `column` is 1-based, in code points. */
export class ExpressionParseError extends Data.TaggedError("ExpressionParseError")<{
  readonly expression: string
  readonly column: number
  readonly message: string
}> {}

/** Evaluating the expression against one row failed (Python would have raised). */
export class ExpressionEvalError extends Data.TaggedError("ExpressionEvalError")<{
  readonly expression: string
  readonly message: string
}> {}

// ---------------------------------------------------------------------------
// Values

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

const NONE: PyNone = { type: "NoneType" }
const TRUE: PyBool = { type: "bool", value: true }
const FALSE: PyBool = { type: "bool", value: false }

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

/** Resource limits; exceeding one is a parse or evaluation error. */
export const EXPRESSION_LIMITS = {
  /** Characters (UTF-16 units) in an expression. */
  maxSourceLength: 10_000,
  /** Nesting levels: brackets, calls, subscripts, unary operators, `not`, conditional expressions. */
  maxNesting: 200,
  /** Digits of an int converted from/to text (Python's default `sys.get_int_max_str_digits()`). */
  maxIntDigits: 4300,
  /** Nesting depth of row data. */
  maxRowDepth: 1000,
  /** Characters of a string built by an expression (repetition, concatenation, str()). */
  maxStringLength: 10_000_000,
  /** Items of a list/tuple built by repetition or concatenation. */
  maxCollectionLength: 1_000_000,
  /** Elementary steps (element comparisons, items copied, ...) per evaluation. */
  maxSteps: 10_000_000
} as const

// ---------------------------------------------------------------------------
// Syntax tree

type CmpOp = "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in" | "is" | "is not"
type ArithOp = "+" | "-" | "*" | "/" | "//" | "%"
type Builtin = "len" | "str" | "int" | "float" | "bool" | "abs"
const BUILTINS: ReadonlySet<string> = new Set<Builtin>(["len", "str", "int", "float", "bool", "abs"])

type Node =
  | { readonly k: "const"; readonly value: PyValue; readonly noneLiteral: boolean }
  | { readonly k: "row" }
  | { readonly k: "seq"; readonly type: "list" | "tuple" | "set"; readonly items: ReadonlyArray<Node> }
  | { readonly k: "dict"; readonly keys: ReadonlyArray<Node>; readonly values: ReadonlyArray<Node> }
  | { readonly k: "subscript"; readonly target: Node; readonly index: Node }
  | { readonly k: "get"; readonly key: Node; readonly fallback: Node | undefined }
  | { readonly k: "call"; readonly fn: Builtin; readonly arg: Node }
  | { readonly k: "unary"; readonly op: "-" | "+"; readonly operand: Node }
  | { readonly k: "not"; readonly operand: Node }
  | { readonly k: "arith"; readonly first: Node; readonly rest: ReadonlyArray<readonly [ArithOp, Node]> }
  | { readonly k: "boolop"; readonly op: "and" | "or"; readonly operands: ReadonlyArray<Node> }
  | { readonly k: "compare"; readonly first: Node; readonly rest: ReadonlyArray<readonly [CmpOp, Node]> }
  | { readonly k: "if"; readonly test: Node; readonly body: Node; readonly orelse: Node }

// ---------------------------------------------------------------------------
// Lexer

/** A parse failure at UTF-16 offset `pos`; the message is `${head} at column N${tail}`. */
class ParseFail {
  constructor(
    readonly pos: number,
    readonly head: string,
    readonly tail: string = ""
  ) {}
}

type TokKind = "name" | "kw" | "num" | "str" | "op" | "newline" | "eof" | "error"
interface Token {
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
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u
const DIGITS = /\d(?:_?\d)*/y
const HEX = /0[xX](?:_?[0-9a-fA-F])+/y
const OCT = /0[oO](?:_?[0-7])+/y
const BIN = /0[bB](?:_?[01])+/y

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "9"
const isIdStart = (cp: number): boolean =>
  cp < 128 ? (cp >= 97 && cp <= 122) || (cp >= 65 && cp <= 90) || cp === 95 : ID_START.test(String.fromCodePoint(cp))
const isIdContinue = (cp: number): boolean =>
  cp < 128 ? isIdStart(cp) || (cp >= 48 && cp <= 57) : ID_CONTINUE.test(String.fromCodePoint(cp))
const isPrintable = (cp: number): boolean =>
  cp === 32 || (!(cp >= 0xd800 && cp <= 0xdfff) && !NOT_PRINTABLE.test(String.fromCodePoint(cp)))
const hex = (cp: number, width: number): string => cp.toString(16).padStart(width, "0")
const uPlus = (cp: number): string => `U+${hex(cp, 4).toUpperCase()}`
const cpLen = (cp: number): number => (cp > 0xffff ? 2 : 1)

const matchAt = (re: RegExp, s: string, at: number): string | undefined => {
  re.lastIndex = at
  const m = re.exec(s)
  return m === null ? undefined : m[0]
}

class Lexer {
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

// ---------------------------------------------------------------------------
// Parser

const describeToken = (t: Token): string => {
  switch (t.kind) {
    case "eof":
      return "the end of the expression"
    case "newline":
      return "a line break"
    case "str":
      return "a string literal"
    case "num":
      return `the number ${t.text}`
    case "kw":
      return `keyword '${t.text}'`
    default:
      return `'${t.text}'`
  }
}

/** Messages for tokens that are never valid where the parser finds them: [head, tail]. */
const SPECIAL_HINTS: Readonly<Record<string, readonly [string, string]>> = {
  "*": ["starred expressions (*x) are not allowed", ""],
  "&": ["bitwise operator '&' is not allowed", "; use 'and' for a logical and"],
  "|": ["bitwise operator '|' is not allowed", "; use 'or' for a logical or"],
  "^": ["bitwise operator '^' is not allowed", ""],
  "<<": ["bitwise operator '<<' is not allowed", ""],
  ">>": ["bitwise operator '>>' is not allowed", ""],
  "~": ["bitwise operator '~' is not allowed", "; use 'not' for a logical not"],
  "@": ["operator '@' (matrix multiplication) is not allowed", ""],
  ":=": ["assignment expressions (:=) are not allowed", ""],
  "=": ["'=' (assignment) is not allowed", "; use '==' to compare"],
  "...": ["Ellipsis (...) is not allowed", ""],
  "!": ["'!' is not an operator", "; use 'not' or '!='"],
  ";": ["';' is not allowed", "; write a single expression"],
  "->": ["'->' is not allowed", ""],
  "for": ["comprehensions and generator expressions are not allowed", ""],
  "async": ["comprehensions and generator expressions are not allowed", ""],
  "lambda": ["lambda expressions are not allowed", ""],
  "await": ["'await' is not allowed", ""],
  "yield": ["'yield' is not allowed", ""]
}

const nfkc = (name: string): string => (/^[\x00-\x7f]*$/.test(name) ? name : name.normalize("NFKC"))
const isNoneLiteral = (n: Node): boolean => n.k === "const" && n.noneLiteral
const isRowDerived = (n: Node): boolean => n.k === "row" || n.k === "subscript" || n.k === "get"
const NAME_HINTS: Readonly<Record<string, string>> = {
  true: "True",
  false: "False",
  none: "None",
  null: "None",
  nil: "None"
}

class Parser {
  private readonly lexer: Lexer
  private readonly buf: Array<Token> = []
  private depth = 0

  constructor(source: string) {
    this.lexer = new Lexer(source)
  }

  private peek(n: number): Token {
    while (this.buf.length <= n) this.buf.push(this.lexer.next())
    return this.buf[n]!
  }

  /** The current token; a lexical error is raised when it becomes current. */
  private cur(): Token {
    const t = this.peek(0)
    if (t.kind === "error") throw t.fail!
    return t
  }

  private advance(): Token {
    const t = this.cur()
    this.buf.shift()
    return t
  }

  private isOp(t: Token, text: string): boolean {
    return t.kind === "op" && t.text === text
  }

  private isKw(t: Token, text: string): boolean {
    return t.kind === "kw" && t.text === text
  }

  private enter(t: Token): void {
    if (++this.depth > EXPRESSION_LIMITS.maxNesting) {
      throw new ParseFail(t.pos, `expression is nested too deeply (more than ${EXPRESSION_LIMITS.maxNesting} levels)`)
    }
  }

  private leave(): void {
    this.depth--
  }

  /** Raise for an unexpected token; `expected` describes what would have been valid. */
  private unexpected(t: Token, expected: string, operand: boolean, tail = ""): never {
    if (t.kind === "error") throw t.fail!
    if (t.kind === "op" || t.kind === "kw") {
      if (t.text === "**") {
        throw new ParseFail(t.pos, operand ? "dict unpacking (**) is not allowed" : "operator '**' (power) is not allowed")
      }
      if ((t.text !== "*" || operand) && Object.hasOwn(SPECIAL_HINTS, t.text)) {
        const [head, hintTail] = SPECIAL_HINTS[t.text]!
        throw new ParseFail(t.pos, head, hintTail)
      }
      if (t.kind === "op" && t.text.length >= 2 && t.text.endsWith("=") && !["==", "!=", "<=", ">="].includes(t.text)) {
        throw new ParseFail(t.pos, `assignment ('${t.text}') is not allowed`)
      }
    }
    if (t.kind === "newline") {
      throw new ParseFail(t.pos, "unexpected line break", "; wrap a multi-line expression in parentheses")
    }
    throw new ParseFail(t.pos, `expected ${expected} but found ${describeToken(t)}`, tail)
  }

  private expectOp(text: string): Token {
    const t = this.cur()
    if (!this.isOp(t, text)) this.unexpected(t, `'${text}'`, false)
    return this.advance()
  }

  parseTop(): Node {
    const first = this.cur()
    if (first.kind === "eof" || first.kind === "newline") throw new ParseFail(first.pos, "the expression is empty")
    const node = this.parseExprList("top")
    while (this.cur().kind === "newline") this.advance()
    const t = this.cur()
    if (t.kind !== "eof") this.unexpected(t, "the end of the expression", false)
    return node
  }

  private canStartOperand(t: Token): boolean {
    switch (t.kind) {
      case "num":
      case "str":
      case "name":
      case "error":
        return true
      case "kw":
        return ["None", "True", "False", "not", "lambda", "await", "yield"].includes(t.text)
      case "op":
        return ["(", "[", "{", "-", "+", "~", "*", "**", "..."].includes(t.text)
      default:
        return false
    }
  }

  /** `a, b, ...` (a tuple when there is a comma) at the top level and inside subscripts. */
  private parseExprList(where: "top" | "subscript"): Node {
    const first = this.parseItem(where)
    if (!this.isOp(this.cur(), ",")) return first
    const items = [first]
    while (this.isOp(this.cur(), ",")) {
      this.advance()
      if (!this.canStartOperand(this.cur())) break
      items.push(this.parseItem(where))
    }
    return { k: "seq", type: "tuple", items }
  }

  /** One element of a display, an argument list or an expression list: no starred items. */
  private parseItem(where: "top" | "subscript" | "display"): Node {
    const t = this.cur()
    if (this.isOp(t, "*")) throw new ParseFail(t.pos, "starred expressions (*x) are not allowed")
    if (this.isOp(t, "**")) throw new ParseFail(t.pos, "dict unpacking (**) is not allowed")
    if (where === "subscript" && this.isOp(t, ":")) throw this.sliceError(t)
    const node = this.parseExpr()
    if (where === "subscript" && this.isOp(this.cur(), ":")) throw this.sliceError(this.cur())
    return node
  }

  private sliceError(t: Token): ParseFail {
    return new ParseFail(t.pos, "slices are not allowed", "; index with a single key or position, e.g. row['x'][0]")
  }

  private parseExpr(): Node {
    const t = this.cur()
    this.enter(t)
    if (this.isKw(t, "lambda") || this.isKw(t, "yield") || this.isKw(t, "await")) this.unexpected(t, "a value", true)
    let node = this.parseOr()
    const c = this.cur()
    if (this.isKw(c, "if")) {
      this.advance()
      const test = this.parseOr()
      const e = this.cur()
      if (!this.isKw(e, "else")) this.unexpected(e, "'else'", false, "; a conditional expression is written 'a if condition else b'")
      this.advance()
      const orelse = this.parseExpr()
      node = { k: "if", test, body: node, orelse }
    }
    this.leave()
    return node
  }

  private parseOr(): Node {
    const operands = [this.parseAnd()]
    while (this.isKw(this.cur(), "or")) {
      this.advance()
      operands.push(this.parseAnd())
    }
    return operands.length === 1 ? operands[0]! : { k: "boolop", op: "or", operands }
  }

  private parseAnd(): Node {
    const operands = [this.parseNot()]
    while (this.isKw(this.cur(), "and")) {
      this.advance()
      operands.push(this.parseNot())
    }
    return operands.length === 1 ? operands[0]! : { k: "boolop", op: "and", operands }
  }

  private parseNot(): Node {
    const t = this.cur()
    if (!this.isKw(t, "not")) return this.parseComparison()
    this.advance()
    this.enter(t)
    const operand = this.parseNot()
    this.leave()
    return { k: "not", operand }
  }

  private parseComparison(): Node {
    const first = this.parseSum()
    const rest: Array<readonly [CmpOp, Node]> = []
    let previous = first
    for (;;) {
      const t = this.cur()
      let op: CmpOp
      if (t.kind === "op" && ["==", "!=", "<", "<=", ">", ">="].includes(t.text)) {
        op = t.text as CmpOp
        this.advance()
      } else if (this.isKw(t, "in")) {
        op = "in"
        this.advance()
      } else if (this.isKw(t, "not") && this.isKw(this.peek(1), "in")) {
        op = "not in"
        this.advance()
        this.advance()
      } else if (this.isKw(t, "is")) {
        this.advance()
        if (this.isKw(this.cur(), "not")) {
          this.advance()
          op = "is not"
        } else {
          op = "is"
        }
      } else {
        break
      }
      const right = this.parseSum()
      if ((op === "is" || op === "is not") && !isNoneLiteral(previous) && !isNoneLiteral(right)) {
        throw new ParseFail(
          t.pos,
          `'${op}' is only allowed with None (x is None, x is not None)`,
          op === "is" ? "; use '==' to compare values" : "; use '!=' to compare values"
        )
      }
      rest.push([op, right])
      previous = right
    }
    return rest.length === 0 ? first : { k: "compare", first, rest }
  }

  private parseSum(): Node {
    const first = this.parseTerm()
    const rest: Array<readonly [ArithOp, Node]> = []
    for (;;) {
      const t = this.cur()
      if (!(this.isOp(t, "+") || this.isOp(t, "-"))) break
      this.advance()
      rest.push([t.text as ArithOp, this.parseTerm()])
    }
    return rest.length === 0 ? first : { k: "arith", first, rest }
  }

  private parseTerm(): Node {
    const first = this.parseFactor()
    const rest: Array<readonly [ArithOp, Node]> = []
    for (;;) {
      const t = this.cur()
      if (!(t.kind === "op" && ["*", "/", "//", "%"].includes(t.text))) break
      this.advance()
      rest.push([t.text as ArithOp, this.parseFactor()])
    }
    return rest.length === 0 ? first : { k: "arith", first, rest }
  }

  private parseFactor(): Node {
    const t = this.cur()
    if (this.isOp(t, "-") || this.isOp(t, "+")) {
      this.advance()
      this.enter(t)
      const operand = this.parseFactor()
      this.leave()
      return { k: "unary", op: t.text as "-" | "+", operand }
    }
    return this.parsePrimary()
  }

  private parsePrimary(): Node {
    let node: Node
    const t = this.cur()
    if (t.kind === "name") {
      const name = nfkc(t.text)
      this.advance()
      if (name === "row") {
        node = { k: "row" }
      } else if (BUILTINS.has(name)) {
        if (!this.isOp(this.cur(), "(")) {
          throw new ParseFail(t.pos, `'${name}' can only be called`, `, e.g. ${name}(row['x'])`)
        }
        const args = this.parseCallArgs()
        if (args.length !== 1) {
          throw new ParseFail(t.pos, `${name}() takes exactly one argument (${args.length} given)`)
        }
        node = { k: "call", fn: name as Builtin, arg: args[0]! }
      } else {
        const hint = Object.hasOwn(NAME_HINTS, name.toLowerCase())
          ? ` (did you mean ${NAME_HINTS[name.toLowerCase()]}?)`
          : name.startsWith("__")
            ? ""
            : ` (write row['${name}'] to read a field)`
        throw new ParseFail(t.pos, `unknown name '${name}'`, `; only row, True, False, None are allowed${hint}`)
      }
    } else {
      node = this.parseAtom()
    }
    // Each subscript or row.get() nests the tree one level deeper.
    let chain = 0
    for (;;) {
      const c = this.cur()
      if (this.isOp(c, ".")) {
        const attr = this.peek(1)
        const attrName = attr.kind === "name" || attr.kind === "kw" ? nfkc(attr.text) : undefined
        if (node.k === "row" && attrName === "get" && attr.kind === "name") {
          if (!this.isOp(this.peek(2), "(")) {
            throw new ParseFail(attr.pos, "row.get must be called", ", e.g. row.get('x') or row.get('x', default)")
          }
          this.enter(c)
          chain++
          this.advance()
          this.advance()
          const args = this.parseCallArgs()
          if (args.length < 1 || args.length > 2) {
            throw new ParseFail(attr.pos, `row.get() takes 1 or 2 arguments (${args.length} given)`)
          }
          node = { k: "get", key: args[0]!, fallback: args[1] }
          continue
        }
        if (attrName === undefined) {
          throw new ParseFail(c.pos, "attribute access is not allowed", "; the only method is row.get(key) / row.get(key, default)")
        }
        throw new ParseFail(
          attr.pos,
          `attribute '.${attrName}' is not allowed`,
          "; the only method is row.get(key) / row.get(key, default)"
        )
      } else if (this.isOp(c, "[")) {
        if (!isRowDerived(node)) {
          throw new ParseFail(
            c.pos,
            "subscripts are only allowed on row values",
            " (row[k], row[k][j], row.get(k)[j])"
          )
        }
        this.enter(c)
        chain++
        this.advance()
        const index = this.parseExprList("subscript")
        this.expectOp("]")
        node = { k: "subscript", target: node, index }
      } else if (this.isOp(c, "(")) {
        throw new ParseFail(
          c.pos,
          "this call is not allowed",
          "; only row.get(...), len, str, int, float, bool and abs can be called"
        )
      } else {
        for (let i = 0; i < chain; i++) this.leave()
        return node
      }
    }
  }

  /** At '(': positional arguments up to ')'. */
  private parseCallArgs(): Array<Node> {
    const open = this.advance()
    this.enter(open)
    const args: Array<Node> = []
    while (!this.isOp(this.cur(), ")")) {
      const t = this.cur()
      if (this.isOp(t, "*")) throw new ParseFail(t.pos, "starred arguments (*args) are not allowed")
      if (this.isOp(t, "**")) throw new ParseFail(t.pos, "keyword unpacking (**kwargs) is not allowed")
      if (t.kind === "name" && this.isOp(this.peek(1), "=")) {
        throw new ParseFail(t.pos, "keyword arguments are not allowed", "; pass arguments by position")
      }
      args.push(this.parseExpr())
      const c = this.cur()
      if (this.isOp(c, ",")) this.advance()
      else if (!this.isOp(c, ")")) this.unexpected(c, "',' or ')'", false)
    }
    this.advance()
    this.leave()
    return args
  }

  private parseAtom(): Node {
    const t = this.cur()
    if (t.kind === "num") {
      this.advance()
      return { k: "const", value: t.value!, noneLiteral: false }
    }
    if (t.kind === "str") {
      this.advance()
      let text = (t.value as PyStr).value
      while (this.cur().kind === "str") text += (this.advance().value as PyStr).value
      return { k: "const", value: { type: "str", value: text }, noneLiteral: false }
    }
    if (this.isKw(t, "True") || this.isKw(t, "False") || this.isKw(t, "None")) {
      this.advance()
      const value = t.text === "True" ? TRUE : t.text === "False" ? FALSE : NONE
      return { k: "const", value, noneLiteral: t.text === "None" }
    }
    if (this.isOp(t, "(")) return this.parseDisplay("(", ")")
    if (this.isOp(t, "[")) return this.parseDisplay("[", "]")
    if (this.isOp(t, "{")) return this.parseBraces()
    return this.unexpected(t, "a value", true)
  }

  /** Parenthesised expression, tuple or list. */
  private parseDisplay(open: "(" | "[", close: ")" | "]"): Node {
    this.advance()
    const items: Array<Node> = []
    let sawComma = false
    while (!this.isOp(this.cur(), close)) {
      items.push(this.parseItem("display"))
      const c = this.cur()
      if (this.isOp(c, ",")) {
        this.advance()
        sawComma = true
      } else if (!this.isOp(c, close)) {
        this.unexpected(c, `',' or '${close}'`, false)
      }
    }
    this.advance()
    if (open === "[") return { k: "seq", type: "list", items }
    if (items.length === 1 && !sawComma) return items[0]!
    return { k: "seq", type: "tuple", items }
  }

  /** `{}` (dict), `{k: v, ...}` or `{a, b, ...}` (set). */
  private parseBraces(): Node {
    this.advance()
    if (this.isOp(this.cur(), "}")) {
      this.advance()
      return { k: "dict", keys: [], values: [] }
    }
    const first = this.parseItem("display")
    if (this.isOp(this.cur(), ":")) {
      const keys = [first]
      const values: Array<Node> = []
      this.advance()
      values.push(this.parseExpr())
      for (;;) {
        const c = this.cur()
        if (this.isOp(c, "}")) break
        if (!this.isOp(c, ",")) this.unexpected(c, "',' or '}'", false)
        this.advance()
        if (this.isOp(this.cur(), "}")) break
        keys.push(this.parseItem("display"))
        this.expectOp(":")
        values.push(this.parseExpr())
      }
      this.advance()
      return { k: "dict", keys, values }
    }
    const items = [first]
    for (;;) {
      const c = this.cur()
      if (this.isOp(c, "}")) break
      if (!this.isOp(c, ",")) this.unexpected(c, "',' or '}'", false)
      this.advance()
      if (this.isOp(this.cur(), "}")) break
      items.push(this.parseItem("display"))
    }
    this.advance()
    return { k: "seq", type: "set", items }
  }
}

const isStaticallyBoolean = (n: Node): boolean => {
  switch (n.k) {
    case "compare":
    case "not":
      return true
    case "const":
      return n.value.type === "bool"
    case "boolop":
      return n.operands.every(isStaticallyBoolean)
    case "if":
      return isStaticallyBoolean(n.body) && isStaticallyBoolean(n.orelse)
    case "call":
      return n.fn === "bool"
    default:
      return false
  }
}

// ---------------------------------------------------------------------------
// Python semantics

/** An evaluation failure; the message is shown to the user as is. */
class EvalFail {
  constructor(readonly message: string) {}
}
const fail = (message: string): never => {
  throw new EvalFail(message)
}

let stepsLeft = Number.POSITIVE_INFINITY
const tick = (n: number): void => {
  stepsLeft -= n
  if (stepsLeft < 0) fail(`the expression is too expensive to evaluate (more than ${EXPRESSION_LIMITS.maxSteps} steps)`)
}

const str = (value: string): PyStr => ({ type: "str", value })
const int = (value: bigint): PyInt => ({ type: "int", value })
const float = (value: number): PyFloat => ({ type: "float", value })
const bool = (value: boolean): PyBool => (value ? TRUE : FALSE)

/** bool counts as int in arithmetic and comparisons. */
const asNumber = (v: PyValue): PyInt | PyFloat | undefined =>
  v.type === "int" || v.type === "float" ? v : v.type === "bool" ? int(v.value ? 1n : 0n) : undefined

const toFloat = (v: PyInt | PyFloat): number => {
  if (v.type === "float") return v.value
  const x = Number(v.value)
  if (!Number.isFinite(x)) fail("OverflowError: int too large to convert to float")
  return x
}

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

let nanCounter = 0
/** Equal values (in Python's sense) have equal keys; unhashable values raise. */
const hashKey = (v: PyValue): string => {
  switch (v.type) {
    case "NoneType":
      return "N"
    case "bool":
      return v.value ? "i:1" : "i:0"
    case "int":
      return `i:${v.value}`
    case "float":
      if (Number.isNaN(v.value)) return `nan:${nanCounter++}`
      return Number.isInteger(v.value) ? `i:${BigInt(v.value)}` : `f:${v.value}`
    case "str":
      return `s:${v.value}`
    case "tuple":
      return `t:${JSON.stringify(v.items.map(hashKey))}`
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

const pyEq = (a: PyValue, b: PyValue): boolean => {
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
      tick(a.items.length)
      return a.items.every((x, i) => pyEq(x, bi[i]!))
    }
    case "set": {
      const bs = (b as PySet).items
      tick(a.items.size)
      return a.items.size === bs.size && [...a.items.keys()].every((k) => bs.has(k))
    }
    case "dict": {
      const be = (b as PyDict).entries
      if (a.entries.size !== be.size) return false
      tick(a.entries.size)
      for (const [k, [, v]] of a.entries) {
        const other = be.get(k)
        if (other === undefined || !pyEq(v, other[1])) return false
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

const pyOrder = (op: OrderOp, a: PyValue, b: PyValue): boolean => {
  const na = asNumber(a)
  const nb = asNumber(b)
  if (na !== undefined && nb !== undefined) return applyOrder(op, numCmp(na, nb))
  if (a.type === "str" && b.type === "str") return applyOrder(op, strCmp(a.value, b.value))
  if ((a.type === "list" && b.type === "list") || (a.type === "tuple" && b.type === "tuple")) {
    const ai = a.items
    const bi = (b as PyList | PyTuple).items
    const n = Math.min(ai.length, bi.length)
    for (let i = 0; i < n; i++) {
      tick(1)
      if (!pyEq(ai[i]!, bi[i]!)) return pyOrder(op, ai[i]!, bi[i]!)
    }
    return applyOrder(op, ai.length - bi.length)
  }
  if (a.type === "set" && b.type === "set") {
    tick(a.items.size + b.items.size)
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

const contains = (container: PyValue, x: PyValue): boolean => {
  switch (container.type) {
    case "str":
      if (x.type !== "str") fail(`TypeError: 'in <string>' requires a string as left operand, not ${x.type}`)
      return container.value.includes((x as PyStr).value)
    case "list":
    case "tuple":
      tick(container.items.length)
      return container.items.some((item) => pyEq(x, item))
    case "set":
      return container.items.has(hashKey(x))
    case "dict":
      return container.entries.has(hashKey(x))
    default:
      return fail(`TypeError: argument of type '${container.type}' is not iterable (used with 'in')`)
  }
}

const compare = (op: CmpOp, a: PyValue, b: PyValue): boolean => {
  switch (op) {
    case "==":
      return pyEq(a, b)
    case "!=":
      return !pyEq(a, b)
    case "in":
      return contains(b, a)
    case "not in":
      return !contains(b, a)
    case "is":
      return a.type === "NoneType" && b.type === "NoneType"
    case "is not":
      return !(a.type === "NoneType" && b.type === "NoneType")
    default:
      return pyOrder(op, a, b)
  }
}

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

const repeat = (seq: PyStr | PyList | PyTuple, times: PyValue): PyValue => {
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
  tick(Number(size))
  const items: Array<PyValue> = []
  for (let i = 0n; i < count && seq.items.length > 0; i++) {
    for (const item of seq.items) items.push(item)
  }
  return seq.type === "list" ? { type: "list", items } : { type: "tuple", items }
}

const concat = (a: PyStr | PyList | PyTuple, b: PyStr | PyList | PyTuple): PyValue => {
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
  tick(size)
  const items = [...a.items, ...bi]
  return a.type === "list" ? { type: "list", items } : { type: "tuple", items }
}

const arith = (op: ArithOp, a: PyValue, b: PyValue): PyValue => {
  const na = asNumber(a)
  const nb = asNumber(b)
  if (na !== undefined && nb !== undefined) return numArith(op, na, nb)
  if (op === "+" && a.type === b.type && (a.type === "str" || a.type === "list" || a.type === "tuple")) {
    return concat(a, b as PyStr | PyList | PyTuple)
  }
  if (op === "+" && (a.type === "str" || a.type === "list" || a.type === "tuple")) {
    return fail(`TypeError: can only concatenate ${a.type} (not "${b.type}") to ${a.type}`)
  }
  if (op === "*") {
    if (a.type === "str" || a.type === "list" || a.type === "tuple") return repeat(a, b)
    if (b.type === "str" || b.type === "list" || b.type === "tuple") return repeat(b, a)
  }
  if (op === "-" && a.type === "set" && b.type === "set") {
    tick(a.items.size)
    return { type: "set", items: new Map([...a.items].filter(([k]) => !b.items.has(k))) }
  }
  if (op === "%" && a.type === "str") {
    return fail("TypeError: printf-style string formatting ('...' % value) is not supported; use + and str()")
  }
  return fail(`TypeError: unsupported operand type(s) for ${op}: '${a.type}' and '${b.type}'`)
}

const codePoints = (s: string): Array<string> => Array.from(s)

const listKeys = (d: PyDict): string => {
  if (d.entries.size === 0) return "it is empty"
  const shown = [...d.entries.values()].slice(0, 20).map(([k]) => (k.type === "str" ? k.value : repr(k)))
  return `keys: ${shown.join(", ")}${d.entries.size > 20 ? `, … (${d.entries.size} keys)` : ""}`
}

const subscript = (target: PyValue, index: PyValue, isRow: boolean): PyValue => {
  switch (target.type) {
    case "dict": {
      const entry = target.entries.get(hashKey(index))
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

// --- text conversion ---------------------------------------------------------

/** Python repr() of a float: shortest round-trip digits, exponent outside [1e-4, 1e16). */
const floatRepr = (x: number): string => {
  if (Number.isNaN(x)) return "nan"
  if (x === Number.POSITIVE_INFINITY) return "inf"
  if (x === Number.NEGATIVE_INFINITY) return "-inf"
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0"
  const sign = x < 0 ? "-" : ""
  const [mantissa, expText] = Math.abs(x).toExponential().split("e") as [string, string]
  const digits = mantissa.replace(".", "")
  const e = Number(expText)
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`
  const intPart = digits.slice(0, e + 1).padEnd(e + 1, "0")
  const frac = digits.slice(e + 1)
  return `${sign}${intPart}.${frac === "" ? "0" : frac}`
}

const strRepr = (s: string): string => {
  const quote = s.includes("'") && !s.includes("\"") ? "\"" : "'"
  let out = quote
  for (const ch of s) {
    const cp = ch.codePointAt(0)!
    if (ch === quote || ch === "\\") out += `\\${ch}`
    else if (ch === "\t") out += "\\t"
    else if (ch === "\n") out += "\\n"
    else if (ch === "\r") out += "\\r"
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${hex(cp, 2)}`
    else if (cp < 0x7f || isPrintable(cp)) out += ch
    else if (cp <= 0xff) out += `\\x${hex(cp, 2)}`
    else if (cp <= 0xffff) out += `\\u${hex(cp, 4)}`
    else out += `\\U${hex(cp, 8)}`
  }
  return out + quote
}

interface TextOptions {
  readonly limit: number
  /** Enforce Python's limit on digits of int → str conversion. */
  readonly strict: boolean
}
const UNLIMITED: TextOptions = { limit: Number.POSITIVE_INFINITY, strict: false }

class TextOut {
  private length = 0
  readonly parts: Array<string> = []
  constructor(private readonly limit: number) {}
  push(s: string): void {
    this.length += s.length
    if (this.length > this.limit) fail(`MemoryError: the text would be longer than ${this.limit} characters`)
    this.parts.push(s)
  }
}

const intText = (n: bigint, options: TextOptions): string => {
  const text = n.toString()
  if (options.strict && text.length - (n < 0n ? 1 : 0) > EXPRESSION_LIMITS.maxIntDigits) {
    fail(`ValueError: Exceeds the limit (${EXPRESSION_LIMITS.maxIntDigits} digits) for integer string conversion`)
  }
  return text
}

const writeRepr = (v: PyValue, out: TextOut, options: TextOptions): void => {
  switch (v.type) {
    case "NoneType":
      return out.push("None")
    case "bool":
      return out.push(v.value ? "True" : "False")
    case "int":
      return out.push(intText(v.value, options))
    case "float":
      return out.push(floatRepr(v.value))
    case "str":
      return out.push(strRepr(v.value))
    case "list":
    case "tuple": {
      out.push(v.type === "list" ? "[" : "(")
      v.items.forEach((item, i) => {
        if (i > 0) out.push(", ")
        writeRepr(item, out, options)
      })
      if (v.type === "tuple" && v.items.length === 1) out.push(",")
      return out.push(v.type === "list" ? "]" : ")")
    }
    case "set": {
      if (v.items.size === 0) return out.push("set()")
      out.push("{")
      let first = true
      for (const item of v.items.values()) {
        if (!first) out.push(", ")
        first = false
        writeRepr(item, out, options)
      }
      return out.push("}")
    }
    case "dict": {
      out.push("{")
      let first = true
      for (const [k, value] of v.entries.values()) {
        if (!first) out.push(", ")
        first = false
        writeRepr(k, out, options)
        out.push(": ")
        writeRepr(value, out, options)
      }
      return out.push("}")
    }
  }
}

const repr = (v: PyValue, options: TextOptions = UNLIMITED): string => {
  const out = new TextOut(options.limit)
  writeRepr(v, out, options)
  return out.parts.join("")
}

/** Python str(): like repr() except that a string is itself. */
const pyStr = (v: PyValue, options: TextOptions = UNLIMITED): string => (v.type === "str" ? v.value : repr(v, options))

/**
 * The route label of a result (PLUGINS.md 6.1): True/False → "true"/"false",
 * a string → itself, anything else → its Python str() (`1` → "1", None → "None", 2.0 → "2.0").
 */
export const routeLabel = (value: PyValue): string => (value.type === "bool" ? (value.value ? "true" : "false") : pyStr(value))

// --- builtins -----------------------------------------------------------------

const PY_SPACE = "[\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
const STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, "g")
const ND = /\p{Nd}/gu

/** Map every Unicode decimal digit to its ASCII digit, as int()/float() accept them. */
const asciiDigits = (s: string): string =>
  s.replace(ND, (d) => {
    let cp = d.codePointAt(0)!
    if (cp < 128) return d
    // Decimal digits come in contiguous runs of ten, 0 first.
    let offset = 0
    while (offset < 100 && /\p{Nd}/u.test(String.fromCodePoint(cp - 1))) {
      cp--
      offset++
    }
    return String(offset % 10)
  })

const parseIntText = (s: string): bigint => {
  const t = asciiDigits(s.replace(STRIP, ""))
  if (!/^[+-]?\d(?:_?\d)*$/.test(t)) return fail(`ValueError: invalid literal for int() with base 10: ${repr(str(s))}`)
  const digits = t.replace(/^[+-]/, "").replace(/_/g, "")
  if (digits.length > EXPRESSION_LIMITS.maxIntDigits) {
    fail(`ValueError: Exceeds the limit (${EXPRESSION_LIMITS.maxIntDigits} digits) for integer string conversion`)
  }
  return BigInt(t.replace(/_/g, ""))
}

const parseFloatText = (s: string): number => {
  const t = asciiDigits(s.replace(STRIP, ""))
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(t)
  if (special !== null) {
    if (special[2]!.toLowerCase() === "nan") return Number.NaN
    return special[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY
  }
  if (!/^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/.test(t)) {
    return fail(`ValueError: could not convert string to float: ${repr(str(s))}`)
  }
  return Number(t.replace(/_/g, ""))
}

const callBuiltin = (fn: Builtin, v: PyValue): PyValue => {
  switch (fn) {
    case "len":
      switch (v.type) {
        case "str": {
          let n = 0
          for (const _ of v.value) n++
          return int(BigInt(n))
        }
        case "list":
        case "tuple":
          return int(BigInt(v.items.length))
        case "set":
          return int(BigInt(v.items.size))
        case "dict":
          return int(BigInt(v.entries.size))
        default:
          return fail(`TypeError: object of type '${v.type}' has no len()`)
      }
    case "str":
      return str(pyStr(v, { limit: EXPRESSION_LIMITS.maxStringLength, strict: true }))
    case "int":
      switch (v.type) {
        case "bool":
          return int(v.value ? 1n : 0n)
        case "int":
          return v
        case "float":
          if (Number.isNaN(v.value)) return fail("ValueError: cannot convert float NaN to integer")
          if (!Number.isFinite(v.value)) return fail("OverflowError: cannot convert float infinity to integer")
          return int(BigInt(Math.trunc(v.value)))
        case "str":
          return int(parseIntText(v.value))
        default:
          return fail(`TypeError: int() argument must be a string or a real number, not '${v.type}'`)
      }
    case "float":
      switch (v.type) {
        case "bool":
          return float(v.value ? 1 : 0)
        case "int":
        case "float":
          return float(toFloat(v))
        case "str":
          return float(parseFloatText(v.value))
        default:
          return fail(`TypeError: float() argument must be a string or a real number, not '${v.type}'`)
      }
    case "bool":
      return bool(isTruthy(v))
    case "abs": {
      const n = asNumber(v)
      if (n === undefined) return fail(`TypeError: bad operand type for abs(): '${v.type}'`)
      return n.type === "int" ? int(n.value < 0n ? -n.value : n.value) : float(Math.abs(n.value))
    }
  }
}

// --- JS <-> Python --------------------------------------------------------------

const makeSet = (items: ReadonlyArray<PyValue>): PySet => {
  const map = new Map<string, PyValue>()
  for (const item of items) {
    const key = hashKey(item)
    if (!map.has(key)) map.set(key, item)
  }
  return { type: "set", items: map }
}

const describeJs = (v: object): string => Object.prototype.toString.call(v).slice(8, -1)

/**
 * Row data → PyValue. null/undefined → None; an integral number → int, any
 * other number → float; `RowFloat` → float; bigint → int; arrays → list;
 * plain objects → dict of their own enumerable string keys.
 */
const fromJs = (v: unknown, depth: number): PyValue => {
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

// ---------------------------------------------------------------------------
// Evaluator

class Scope {
  private converted: PyValue | undefined
  constructor(private readonly input: unknown) {}
  get row(): PyValue {
    if (this.converted === undefined) this.converted = fromJs(this.input, 0)
    return this.converted
  }
  /**
   * One field of the row, converting only that value (a gate usually reads one or two
   * fields of a wide row). Undefined when the whole row must be converted instead: not
   * a plain object, a non-string key, or a key that is absent (for the exact error).
   */
  isPlainObject(): boolean {
    const input = this.input
    if (input === null || typeof input !== "object" || Array.isArray(input)) return false
    const proto = Object.getPrototypeOf(input)
    return proto === Object.prototype || proto === null
  }

  field(key: PyValue): PyValue | undefined {
    const input = this.input
    if (this.converted !== undefined || key.type !== "str" || !this.isPlainObject()) return undefined
    if (!Object.hasOwn(input as object, key.value)) return undefined
    return fromJs((input as Record<string, unknown>)[key.value], 1)
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
      return n.type === "set" ? makeSet(items) : { type: n.type, items }
    }
    case "dict": {
      // Like CPython: every key and value is evaluated (k1, v1, k2, v2, ...) before any is hashed.
      const pairs = n.keys.map((keyNode, i) => [evaluate(keyNode, scope), evaluate(n.values[i]!, scope)] as const)
      const entries = new Map<string, readonly [PyValue, PyValue]>()
      for (const [key, value] of pairs) {
        const h = hashKey(key)
        const existing = entries.get(h)
        entries.set(h, [existing === undefined ? key : existing[0], value])
      }
      return { type: "dict", entries }
    }
    case "subscript": {
      if (n.target.k === "row") {
        const index = evaluate(n.index, scope)
        return scope.field(index) ?? subscript(scope.row, index, true)
      }
      const target = evaluate(n.target, scope)
      const index = evaluate(n.index, scope)
      return subscript(target, index, false)
    }
    case "get": {
      if (scope.isPlainObject()) {
        // Arguments are evaluated before the call, as in Python, even when the key exists.
        const key = evaluate(n.key, scope)
        const fallback = n.fallback === undefined ? NONE : evaluate(n.fallback, scope)
        const direct = scope.field(key)
        if (direct !== undefined) return direct
        const entry = (scope.row as PyDict).entries.get(hashKey(key))
        return entry === undefined ? fallback : entry[1]
      }
      const row = scope.row
      if (row.type !== "dict") return fail(`AttributeError: row.get() needs the row to be a dict, not ${row.type}`)
      const key = evaluate(n.key, scope)
      const fallback = n.fallback === undefined ? NONE : evaluate(n.fallback, scope)
      const entry = row.entries.get(hashKey(key))
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
      for (const [op, operand] of n.rest) acc = arith(op, acc, evaluate(operand, scope))
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
        if (!compare(op, left, right)) return FALSE
        left = right
      }
      return TRUE
    }
    case "if":
      return isTruthy(evaluate(n.test, scope)) ? evaluate(n.body, scope) : evaluate(n.orelse, scope)
  }
}

// ---------------------------------------------------------------------------
// API

export interface CompiledExpression {
  readonly source: string
  /** PLUGINS.md 6.3, plus: a call to bool(...) is statically boolean. */
  readonly isStaticallyBoolean: boolean
  /** Evaluate with `row` bound to the given JSON-like data. Throws ExpressionEvalError only. */
  evaluate(row: unknown): PyValue
}

const columnOf = (source: string, pos: number): number => {
  let column = 1
  for (let i = 0; i < pos && i < source.length; column++) i += cpLen(source.codePointAt(i)!)
  return column
}

const parseError = (source: string, pos: number, head: string, tail = ""): ExpressionParseError => {
  const column = columnOf(source, pos)
  return new ExpressionParseError({ expression: source, column, message: `${head} at column ${column}${tail}` })
}

const compiled = (source: string, ast: Node): CompiledExpression => ({
  source,
  isStaticallyBoolean: isStaticallyBoolean(ast),
  evaluate(row: unknown): PyValue {
    const previous = stepsLeft
    stepsLeft = EXPRESSION_LIMITS.maxSteps
    try {
      return evaluate(ast, new Scope(row))
    } catch (e) {
      if (e instanceof ExpressionEvalError) throw e
      const message = e instanceof EvalFail
        ? e.message
        : `evaluation failed: ${e instanceof Error ? e.message : String(e)}`
      throw new ExpressionEvalError({ expression: source, message })
    } finally {
      stepsLeft = previous
    }
  }
})

/** Parse and check an expression; every refused construct is a Left naming its column. */
export const parseExpression = (source: string): Either.Either<CompiledExpression, ExpressionParseError> => {
  if (typeof source !== "string") {
    return Either.left(new ExpressionParseError({ expression: String(source), column: 1, message: "the expression must be a string" }))
  }
  if (source.length > EXPRESSION_LIMITS.maxSourceLength) {
    return Either.left(
      parseError(source, EXPRESSION_LIMITS.maxSourceLength, `the expression is too long (${source.length} characters, limit ${EXPRESSION_LIMITS.maxSourceLength})`)
    )
  }
  const nul = source.indexOf("\0")
  if (nul >= 0) return Either.left(parseError(source, nul, "the expression contains a NUL character"))
  try {
    return Either.right(compiled(source, new Parser(source).parseTop()))
  } catch (e) {
    if (e instanceof ParseFail) return Either.left(parseError(source, e.pos, e.head, e.tail))
    return Either.left(
      parseError(source, 0, `the expression could not be parsed (${e instanceof Error ? e.message : String(e)})`)
    )
  }
}

/** Evaluate a compiled expression against one row. */
export const evaluateExpression = (expr: CompiledExpression, row: unknown): Either.Either<PyValue, ExpressionEvalError> => {
  try {
    return Either.right(expr.evaluate(row))
  } catch (e) {
    if (e instanceof ExpressionEvalError) return Either.left(e)
    return Either.left(
      new ExpressionEvalError({ expression: expr.source, message: `evaluation failed: ${e instanceof Error ? e.message : String(e)}` })
    )
  }
}
