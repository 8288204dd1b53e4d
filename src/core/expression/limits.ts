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
