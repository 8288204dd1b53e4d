/**
 * Strict decoding of a plugin's `options` block, shared by every plugin.
 *
 * Options are decoded with an effect `Schema` that refuses unknown keys. The first
 * problem found becomes a `PluginConfigError` whose `key` is the path below `options`
 * (`fields.amount`, `schema.fields[2]`) and whose message says what to change.
 */
import { Effect, Either, ParseResult, Schema, SchemaAST as AST } from "effect"
import { PluginConfigError } from "./protocol.js"

// ---------------------------------------------------------------------------
// Suggestions

/** Levenshtein edit distance (insert, delete, substitute; each costs 1). */
export const editDistance = (a: string, b: string): number => {
  const s = Array.from(a)
  const t = Array.from(b)
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j)
  for (let i = 1; i <= s.length; i++) {
    const cur = [i]
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost)
    }
    prev = cur
  }
  return prev[t.length]!
}

/**
 * The candidate closest to `word`, if it is close enough to be a plausible typo:
 * at most a third of the word's length in edits (at least 1, at most 3). Case
 * differences alone always qualify; ties go to the earlier candidate. Failing that, a
 * candidate that extends the word or is a prefix of it (4+ characters) is suggested.
 */
export const didYouMean = (word: string, candidates: Iterable<string>): string | undefined => {
  const lower = word.toLowerCase()
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    if (candidate === word) continue
    const d = candidate.toLowerCase() === lower ? 0 : editDistance(lower, candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  const limit = Math.min(3, Math.max(1, Math.floor(Array.from(word).length / 3)))
  if (best !== undefined && bestDistance <= limit) return best
  // A truncated or extended name (`validate` for `validate_input`) is also a likely slip.
  if (lower.length < 4) return undefined
  for (const candidate of candidates) {
    const c = candidate.toLowerCase()
    if (c !== lower && (c.startsWith(lower) || lower.startsWith(c)) && c.length >= 4) return candidate
  }
  return undefined
}

// ---------------------------------------------------------------------------
// Rendering values and paths for messages

/** A short, Python-flavoured rendering of a value for error messages. */
export const showValue = (value: unknown): string => {
  if (value === undefined) return "nothing"
  if (value === null) return "null"
  if (typeof value === "string") {
    const s = value.length > 60 ? `${value.slice(0, 57)}...` : value
    return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`
  }
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value)
  if (Array.isArray(value)) return "a list"
  if (typeof value === "object") return "a mapping"
  return typeof value
}

/** Appends a path segment: `a` + `b` → `a.b`; `a` + 2 → `a[2]`. */
export const joinKey = (base: string, segment: PropertyKey): string => {
  if (typeof segment === "number") return `${base}[${segment}]`
  const s = String(segment)
  return base === "" ? s : `${base}.${s}`
}

/** Human name of what a schema AST expects, e.g. `a string`, `one of 'json', 'jsonl'`. */
const describeAst = (ast: AST.AST): string => {
  switch (ast._tag) {
    case "StringKeyword":
      return "a string"
    case "NumberKeyword":
      return "a number"
    case "BooleanKeyword":
      return "true or false"
    case "Literal":
      return ast.literal === null ? "null" : typeof ast.literal === "string" ? `'${ast.literal}'` : String(ast.literal)
    case "UndefinedKeyword":
      return "nothing"
    default:
      break
  }
  const title = AST.getTitleAnnotation(ast)
  if (title._tag === "Some") return title.value
  const description = AST.getDescriptionAnnotation(ast)
  if (description._tag === "Some") return description.value
  switch (ast._tag) {
    case "TupleType":
      return "a list"
    case "TypeLiteral":
      return "a mapping"
    case "Union": {
      const members = ast.types.filter((t) => t._tag !== "UndefinedKeyword")
      if (members.length > 0 && members.every((t) => t._tag === "Literal")) {
        return members.length === 1 ? describeAst(members[0]!) : `one of ${members.map(describeAst).join(", ")}`
      }
      const parts = members.map(describeAst)
      return parts.length <= 1 ? (parts[0] ?? "nothing") : `${parts.slice(0, -1).join(", ")} or ${parts[parts.length - 1]}`
    }
    case "Refinement":
      return describeAst(ast.from)
    case "Transformation":
      return describeAst(ast.from)
    case "Suspend":
      return describeAst(ast.f())
    default:
      return String(ast)
  }
}

/** Property names an object schema knows (through refinements and transformations). */
const knownKeys = (ast: AST.AST): Array<string> => {
  switch (ast._tag) {
    case "TypeLiteral":
      return ast.propertySignatures.map((p) => String(p.name))
    case "Refinement":
      return knownKeys(ast.from)
    case "Transformation":
      return knownKeys(ast.from)
    case "Suspend":
      return knownKeys(ast.f())
    case "Union":
      return [...new Set(ast.types.flatMap(knownKeys))]
    default:
      return []
  }
}

// ---------------------------------------------------------------------------
// ParseIssue → PluginConfigError

interface Located {
  readonly key: string
  readonly value: unknown
  readonly message: string
}

const customMessage = (issue: ParseResult.ParseIssue): string | undefined => {
  if (issue._tag === "Pointer" || issue._tag === "Unexpected" || issue._tag === "Missing") return undefined
  const ann = AST.getMessageAnnotation(issue.ast)
  if (ann._tag === "None") return undefined
  const formatted = ParseResult.TreeFormatter.formatIssueSync(issue)
  return formatted
}

/** Does an issue carry a Pointer somewhere (i.e. point inside the value)? */
const depth = (issue: ParseResult.ParseIssue): number => {
  switch (issue._tag) {
    case "Pointer":
      return 1 + depth(issue.issue)
    case "Composite": {
      const issues: ReadonlyArray<ParseResult.ParseIssue> = Array.isArray(issue.issues)
        ? issue.issues
        : [issue.issues as ParseResult.ParseIssue]
      return Math.max(0, ...issues.map(depth))
    }
    case "Refinement":
    case "Transformation":
      return depth(issue.issue)
    default:
      return 0
  }
}

/** A refinement failure whose underlying type did match (so the value is "nearly" right). */
const baseMatched = (issue: ParseResult.ParseIssue): boolean =>
  issue._tag === "Refinement" && (issue.kind === "Predicate" || baseMatched(issue.issue))

const locate = (issue: ParseResult.ParseIssue, key: string, parent: AST.AST | undefined): Located => {
  const custom = customMessage(issue)
  if (custom !== undefined) return { key, value: issue.actual, message: custom }
  switch (issue._tag) {
    case "Pointer": {
      const segments: ReadonlyArray<PropertyKey> = Array.isArray(issue.path) ? issue.path : [issue.path as PropertyKey]
      const sub = segments.reduce<string>((k, s) => joinKey(k, s), key)
      const inner = issue.issue
      if (inner._tag === "Unexpected") {
        const name = String(segments[segments.length - 1])
        const known = parent === undefined ? [] : knownKeys(parent)
        if (known.length > 0 || typeof segments[segments.length - 1] === "string") {
          const suggestion = didYouMean(name, known)
          const hint = suggestion === undefined ? "" : `; did you mean '${suggestion}'?`
          const list = known.length === 0 ? "" : ` (known: ${known.join(", ")})`
          return { key: sub, value: inner.actual, message: `unknown option '${name}'${hint}${list}` }
        }
        return { key: sub, value: inner.actual, message: `unexpected item ${showValue(inner.actual)}` }
      }
      if (inner._tag === "Missing") {
        const name = String(segments[segments.length - 1])
        return { key: sub, value: undefined, message: `missing required option '${name}'` }
      }
      return locate(inner, sub, undefined)
    }
    case "Composite": {
      const issues: ReadonlyArray<ParseResult.ParseIssue> = Array.isArray(issue.issues)
        ? issue.issues
        : [issue.issues as ParseResult.ParseIssue]
      if (issue.ast._tag === "Union") {
        // `optional` adds an `undefined` member whose complaint is noise.
        const members = issues.filter((i) => !(i._tag === "Type" && i.ast._tag === "UndefinedKeyword"))
        if (members.length === 1) return locate(members[0]!, key, parent)
        // Otherwise the complaint that got furthest into the value is the most useful;
        // then one whose base type matched (a failed refinement); else say what was expected.
        const best = members.reduce<ParseResult.ParseIssue | undefined>(
          (acc, i) => (acc === undefined || depth(i) > depth(acc) ? i : acc),
          undefined
        )
        if (best !== undefined && depth(best) > 0) return locate(best, key, issue.ast)
        const refined = members.find(baseMatched)
        if (refined !== undefined) return locate(refined, key, issue.ast)
        return {
          key,
          value: issue.actual,
          message: `expected ${describeAst(issue.ast)}, got ${showValue(issue.actual)}`
        }
      }
      const first = issues[0]
      if (first === undefined) {
        return { key, value: issue.actual, message: `invalid value ${showValue(issue.actual)}` }
      }
      return locate(first, key, issue.ast)
    }
    case "Refinement":
      if (issue.kind === "From") return locate(issue.issue, key, issue.ast)
      if (issue.issue._tag === "Type" && issue.issue.message !== undefined) {
        return { key, value: issue.actual, message: issue.issue.message }
      }
      return {
        key,
        value: issue.actual,
        message: `expected ${describeRefinement(issue.ast)}, got ${showValue(issue.actual)}`
      }
    case "Transformation":
      return locate(issue.issue, key, issue.ast._tag === "Transformation" ? issue.ast.from : parent)
    case "Type":
      return {
        key,
        value: issue.actual,
        message: issue.message ?? `expected ${describeAst(issue.ast)}, got ${showValue(issue.actual)}`
      }
    case "Missing":
      return { key, value: undefined, message: issue.message ?? "a value is required here" }
    case "Unexpected":
      return { key, value: issue.actual, message: issue.message ?? `unexpected value ${showValue(issue.actual)}` }
    case "Forbidden":
      return { key, value: issue.actual, message: issue.message ?? "value cannot be checked here" }
  }
}

const describeRefinement = (ast: AST.Refinement): string => {
  const title = AST.getTitleAnnotation(ast)
  if (title._tag === "Some") return title.value
  const description = AST.getDescriptionAnnotation(ast)
  if (description._tag === "Some") return description.value
  return describeAst(ast.from)
}

/** Converts a schema ParseIssue into a `PluginConfigError` for `plugin`. */
export const issueToConfigError = (plugin: string, issue: ParseResult.ParseIssue, baseKey = ""): PluginConfigError => {
  const { key, message, value } = locate(issue, baseKey, undefined)
  return new PluginConfigError({ plugin, key, value, message })
}

/**
 * Decodes `options` strictly with `schema`. Unknown keys are refused with a
 * suggestion; the first problem becomes a `PluginConfigError`. Absent options
 * (`undefined`/`null`) are decoded as an empty mapping, so required options are
 * reported by name.
 */
export const decodeOptions = <A, I>(
  plugin: string,
  schema: Schema.Schema<A, I>,
  options: unknown
): Effect.Effect<A, PluginConfigError> =>
  Effect.suspend(() => {
    const input = options === undefined || options === null ? {} : options
    if (typeof input !== "object" || Array.isArray(input)) {
      return Effect.fail(
        new PluginConfigError({
          plugin,
          key: "",
          value: input,
          message: `options must be a mapping of option names to values, got ${showValue(input)}`
        })
      )
    }
    const result = ParseResult.decodeUnknownEither(schema, { onExcessProperty: "error", errors: "first" })(input)
    return Either.isRight(result)
      ? Effect.succeed(result.right)
      : Effect.fail(issueToConfigError(plugin, result.left))
  })

// ---------------------------------------------------------------------------
// Option building blocks shared by plugins

/** A Python-style identifier: letters (Unicode), digits, `_`, not starting with a digit. */
export const IDENTIFIER_RE = /^[\p{L}\p{Nl}_][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}]*$/u

export const isIdentifier = (s: string): boolean => IDENTIFIER_RE.test(s)

/** Python keywords (hard keywords; `match`/`case`/`type`/`_` are soft and allowed). */
export const PYTHON_KEYWORDS: ReadonlySet<string> = new Set([
  "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
  "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in",
  "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield"
])

export const Identifier = Schema.String.pipe(
  Schema.filter((s) => isIdentifier(s) || `expected an identifier (letters, digits, _; not starting with a digit), got ${showValue(s)}`),
  Schema.annotations({ title: "an identifier" })
)

/** A non-negative integer. */
export const NonNegativeInt = Schema.Number.pipe(
  Schema.filter((n) => (Number.isInteger(n) && n >= 0) || `expected a whole number ≥ 0, got ${showValue(n)}`),
  Schema.annotations({ title: "a whole number ≥ 0" })
)

/** An integer ≥ 1. */
export const PositiveInt = Schema.Number.pipe(
  Schema.filter((n) => (Number.isInteger(n) && n >= 1) || `expected a whole number ≥ 1, got ${showValue(n)}`),
  Schema.annotations({ title: "a whole number ≥ 1" })
)

/** `on_error` / `on_validation_failure`: `discard` or a sink name (checked later by the engine). */
export const Destination = Schema.String.pipe(
  Schema.filter((s) => s.length > 0 || "expected 'discard' or a sink name, got an empty string"),
  Schema.annotations({ title: "'discard' or a sink name" })
)
