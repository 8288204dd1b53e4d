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
 * One concept per module: `lexer`, `parser` (over `cursor`), `static-checks`,
 * `values` with `compare`, `arithmetic`, `builtins` and `text` (Python semantics),
 * `convert` (row data), `evaluate`. The user reference is docs/expression.md.
 */
import { Either } from "effect"
import type { Node } from "./ast.js"
import { ExpressionEvalError, ExpressionParseError, ParseFail } from "./errors.js"
import { evaluateTree } from "./evaluate.js"
import { cpLen } from "./lexer.js"
import { EXPRESSION_LIMITS } from "./limits.js"
import { Parser } from "./parser.js"
import { isStaticallyBoolean } from "./static-checks.js"
import type { PyValue } from "./values.js"

export { toJs } from "./convert.js"
export { ExpressionEvalError, ExpressionParseError } from "./errors.js"
export { EXPRESSION_LIMITS } from "./limits.js"
export { routeLabel } from "./text.js"
export {
  isTruthy,
  py,
  type PyBool,
  type PyDict,
  type PyFloat,
  type PyInt,
  type PyList,
  type PyNone,
  type PySet,
  type PyStr,
  type PyTuple,
  type PyValue,
  RowFloat
} from "./values.js"

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
  evaluate: (row: unknown): PyValue => evaluateTree(source, ast, row)
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
