/**
 * The errors of the expression language: the two a caller sees, and the internal
 * failures the parser and evaluator throw until the API turns them into those.
 */
import { Data } from "effect"

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

/** A parse failure at UTF-16 offset `pos`; the message is `${head} at column N${tail}`. */
export class ParseFail {
  constructor(
    readonly pos: number,
    readonly head: string,
    readonly tail: string = ""
  ) {}
}

/** An evaluation failure; the message is shown to the user as is. */
export class EvalFail {
  constructor(readonly message: string) {}
}

export const fail = (message: string): never => {
  throw new EvalFail(message)
}
