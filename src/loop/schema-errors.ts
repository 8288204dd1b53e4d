/**
 * Turns a Schema decode failure into what a person editing the file needs: the path of
 * the key (`validation_triggers.session_end.commands[0].ref`), the offending value and
 * what is allowed there ("expected one of success, failure, both"). Schema's own
 * messages show its type algebra (`Expected { readonly ref: NonEmptyString }`), which
 * names no key and no allowed value; nothing here ever prints them.
 */
import { type ParseResult, SchemaAST } from "effect"

/** Annotation key: what a schema accepts, as a noun phrase ("a positive integer"). */
export const ExpectedId: unique symbol = Symbol.for("runledger/config/expected")

/** Annotations that name what a schema accepts in error messages. */
export const expects = (noun: string) => ({ [ExpectedId]: noun })

export interface DecodeProblem {
  /** Path segments from the document root: keys and list indices. */
  readonly path: ReadonlyArray<PropertyKey>
  /** The value found there (undefined when the key is missing). */
  readonly value: unknown
  readonly message: string
}

/** `a.b[0].c`; `prefix` heads the path (`issues[2].title`), `(root)` for the document itself. */
export const renderPath = (path: ReadonlyArray<PropertyKey>, prefix = ""): string => {
  let out = prefix
  for (const segment of path) {
    out += typeof segment === "number" ? `[${segment}]` : out === "" ? String(segment) : `.${String(segment)}`
  }
  return out === "" ? "(root)" : out
}

const own = (ast: SchemaAST.AST): string | undefined => {
  const noun = ast.annotations[ExpectedId]
  return typeof noun === "string" ? noun : undefined
}

const literalText = (literal: SchemaAST.LiteralValue): string =>
  typeof literal === "string" ? literal : String(literal)

/** An optional key's schema is `X | undefined`; `undefined` is never what the user meant to write. */
const defined = (types: ReadonlyArray<SchemaAST.AST>) => types.filter((t) => t._tag !== "UndefinedKeyword")

/** What `ast` accepts, as a noun phrase. */
export const describeExpected = (ast: SchemaAST.AST): string => {
  const noun = own(ast)
  if (noun !== undefined) return noun
  switch (ast._tag) {
    case "Literal":
      return literalText(ast.literal)
    case "Union": {
      const types = defined(ast.types)
      if (types.length === 1) return describeExpected(types[0]!)
      if (types.every(SchemaAST.isLiteral)) {
        return `one of ${types.map((t) => literalText((t as SchemaAST.Literal).literal)).join(", ")}`
      }
      return [...new Set(defined(ast.types).map(describeExpected))].join(" or ")
    }
    case "StringKeyword":
      return "a string"
    case "NumberKeyword":
      return "a number"
    case "BooleanKeyword":
      return "true or false"
    case "TypeLiteral":
      return ast.indexSignatures.length > 0 && ast.propertySignatures.length === 0 ? "a mapping of names" : "a mapping"
    case "TupleType":
      return "a list"
    case "Refinement": {
      const id = SchemaAST.getIdentifierAnnotation(ast)
      if (id._tag === "Some" && id.value === "NonEmptyString") return "a non-empty string"
      if (id._tag === "Some" && id.value === "Int") return "an integer"
      return describeExpected(ast.from)
    }
    case "Transformation":
      // The user writes the encoded side.
      return describeExpected(ast.from)
    default:
      return "a valid value"
  }
}

const structOf = (ast: SchemaAST.AST): SchemaAST.TypeLiteral | undefined =>
  ast._tag === "TypeLiteral"
    ? ast
    : ast._tag === "Transformation"
    ? structOf(ast.from)
    : ast._tag === "Refinement"
    ? structOf(ast.from)
    : undefined

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v)

/**
 * The first problem of a decode failure (decode with `errors: "first"`), with its path.
 */
export const firstProblem = (issue: ParseResult.ParseIssue): DecodeProblem => {
  const path: Array<PropertyKey> = []
  let struct: SchemaAST.TypeLiteral | undefined
  let current: ParseResult.ParseIssue = issue
  const done = (message: string, value: unknown = current.actual): DecodeProblem => ({ path, value, message })
  for (;;) {
    switch (current._tag) {
      case "Pointer": {
        const segments = Array.isArray(current.path) ? current.path : [current.path]
        path.push(...(segments as Array<PropertyKey>))
        current = current.issue
        continue
      }
      case "Missing":
        return done("is required", undefined)
      case "Unexpected": {
        const allowed = struct?.propertySignatures.map((p) => String(p.name)) ?? []
        return done(allowed.length === 0 ? "unknown key" : `unknown key; allowed keys: ${allowed.join(", ")}`)
      }
      case "Forbidden":
        return done("is not allowed here")
      case "Type": {
        // A message of our own (a bad duration) beats the structural one.
        if (current.message !== undefined && own(current.ast) === undefined && current.ast._tag !== "Refinement") {
          return done(current.message)
        }
        return done(`expected ${describeExpected(current.ast)}`)
      }
      case "Refinement": {
        const noun = own(current.ast)
        if (noun !== undefined) return done(`expected ${noun}`)
        if (current.kind === "Predicate") {
          const id = SchemaAST.getIdentifierAnnotation(current.ast)
          if (id._tag === "Some" && id.value === "NonEmptyString") return done("must not be empty")
          return done(`expected ${describeExpected(current.ast)}`)
        }
        current = current.issue
        continue
      }
      case "Transformation": {
        const noun = own(current.ast)
        if (noun !== undefined && current.kind === "Encoded") return done(`expected ${noun}`)
        current = current.issue
        continue
      }
      case "Composite": {
        const ast = current.ast
        if (ast._tag === "Union") {
          const actual = current.actual
          const issues = Array.isArray(current.issues) ? current.issues : [current.issues]
          const members = defined(ast.types)
          // `X | undefined` (an optional key): the problem is X's.
          if (members.length === 1) {
            const inner = issues.find((i) => !("ast" in i) || i.ast._tag !== "UndefinedKeyword")
            if (inner !== undefined) {
              current = inner
              continue
            }
            return done(`expected ${describeExpected(members[0]!)}`)
          }
          // A mapping given where a union admits one mapping form: report inside that form.
          if (isPlainObject(actual)) {
            const structs = members.filter((t) => structOf(t) !== undefined)
            const inner = issues.find((i) => "ast" in i && structOf(i.ast) !== undefined)
            if (structs.length === 1 && inner !== undefined) {
              current = inner
              continue
            }
          }
          return done(`expected ${describeExpected(ast)}`)
        }
        const s = structOf(ast)
        if (s !== undefined) struct = s
        const issues = Array.isArray(current.issues) ? current.issues : [current.issues]
        if (issues.length === 0) return done(`expected ${describeExpected(ast)}`)
        // A list or mapping where another shape was expected fails as one issue.
        current = issues[0]!
        continue
      }
    }
  }
}
