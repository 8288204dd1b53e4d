/**
 * The parser's view of the token stream: lookahead, the nesting limit, and the
 * messages for a token that is not valid where it is found.
 */
import { ParseFail } from "./errors.js"
import type { Token } from "./lexer.js"
import { Lexer } from "./lexer.js"
import { EXPRESSION_LIMITS } from "./limits.js"

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

export class TokenCursor {
  private readonly lexer: Lexer
  private readonly buf: Array<Token> = []
  private depth = 0

  constructor(source: string) {
    this.lexer = new Lexer(source)
  }

  protected peek(n: number): Token {
    while (this.buf.length <= n) this.buf.push(this.lexer.next())
    return this.buf[n]!
  }

  /** The current token; a lexical error is raised when it becomes current. */
  protected cur(): Token {
    const t = this.peek(0)
    if (t.kind === "error") throw t.fail!
    return t
  }

  protected advance(): Token {
    const t = this.cur()
    this.buf.shift()
    return t
  }

  protected isOp(t: Token, text: string): boolean {
    return t.kind === "op" && t.text === text
  }

  protected isKw(t: Token, text: string): boolean {
    return t.kind === "kw" && t.text === text
  }

  protected enter(t: Token): void {
    if (++this.depth > EXPRESSION_LIMITS.maxNesting) {
      throw new ParseFail(t.pos, `expression is nested too deeply (more than ${EXPRESSION_LIMITS.maxNesting} levels)`)
    }
  }

  protected leave(): void {
    this.depth--
  }

  /** Raise for an unexpected token; `expected` describes what would have been valid. */
  protected unexpected(t: Token, expected: string, operand: boolean, tail = ""): never {
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

  protected expectOp(text: string): Token {
    const t = this.cur()
    if (!this.isOp(t, text)) this.unexpected(t, `'${text}'`, false)
    return this.advance()
  }
}
