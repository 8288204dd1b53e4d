/**
 * The recursive-descent parser: Python's grammar for expressions, restricted to the
 * subset, with a message naming the column for every construct it refuses.
 */
import type { ArithOp, Builtin, CmpOp, Node } from "./ast.js"
import { BUILTINS } from "./ast.js"
import { TokenCursor } from "./cursor.js"
import { ParseFail } from "./errors.js"
import type { Token } from "./lexer.js"
import { isNoneLiteral, isRowDerived } from "./static-checks.js"
import type { PyStr } from "./values.js"
import { FALSE, NONE, TRUE } from "./values.js"

/** Python normalises identifiers with NFKC (`ｒｏｗ` is `row`). */
const nfkc = (name: string): string => (/^[\x00-\x7f]*$/.test(name) ? name : name.normalize("NFKC"))
/** Names users write for the constants, with the spelling they meant. */
const NAME_HINTS: Readonly<Record<string, string>> = {
  true: "True",
  false: "False",
  none: "None",
  null: "None",
  nil: "None"
}

/** Parses one source text; `parseTop` returns its tree or throws ParseFail. */
export class Parser extends TokenCursor {
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
