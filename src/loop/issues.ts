import { Data, Effect, Either, Schema } from "effect"
import * as NodeFs from "node:fs"
import * as YAML from "yaml"
import { expects, firstProblem, renderPath } from "./schema-errors.js"

/** The issues file cannot be read or is malformed (a usage error: exit 2). */
export class IssueSourceError extends Data.TaggedError("IssueSourceError")<{
  readonly file: string
  readonly key: string
  /** The offending value, when there is one to show. */
  readonly value?: string
  readonly message: string
}> {}

/** `FILE: KEY = VALUE: MESSAGE`, the CLI's line for an issues-file problem. */
export const formatIssueSourceError = (e: IssueSourceError): string =>
  `${e.file}: ${e.key}${e.value === undefined ? "" : ` = ${e.value}`}: ${e.message}`

const showValue = (value: unknown): string | undefined => {
  if (value === undefined) return undefined
  if (typeof value === "string") return value.trim() === "" ? JSON.stringify(value) : value
  try {
    return JSON.stringify(value)
  } catch {
    return String(value)
  }
}

/** How many known ids an unknown-dependency message lists before it says "and N more". */
const KNOWN_IDS_SHOWN = 20

export interface Issue {
  readonly id: string
  readonly title: string
  readonly body: string
  /** Lower runs first (beads: 0 is the most urgent); null sorts last. */
  readonly priority: number | null
  readonly dependsOn: ReadonlyArray<string>
}

const Id = Schema.Union(Schema.NonEmptyString, Schema.Int).pipe(
  Schema.transform(Schema.String, { strict: true, decode: (v) => String(v), encode: (s) => s })
).annotations(expects("an issue id (a non-empty string or an integer)"))

const FileIssue = Schema.Struct({
  id: Id,
  title: Schema.String,
  body: Schema.optionalWith(Schema.String, { default: () => "" }),
  priority: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null }),
  depends_on: Schema.optionalWith(Schema.Array(Id), { default: () => [] })
})
const decodeFileIssues = Schema.decodeUnknownEither(Schema.Array(FileIssue), { onExcessProperty: "error" })

/** Issues from a YAML or JSON list of `{id, title, body, priority, depends_on}`. */
export const parseIssueFile = (text: string, file: string): Either.Either<Array<Issue>, IssueSourceError> => {
  let raw: unknown
  try {
    raw = YAML.parse(text)
  } catch (e) {
    return Either.left(new IssueSourceError({ file, key: "(file)", message: `not valid YAML/JSON: ${String(e)}` }))
  }
  const wrapped = raw !== null && typeof raw === "object" && !Array.isArray(raw) && "issues" in raw
  if (wrapped) raw = (raw as { issues: unknown }).issues
  // Paths read `issues[2].title` under an `issues:` key, `[2].title` for a bare list.
  const prefix = wrapped ? "issues" : ""
  const decoded = decodeFileIssues(raw ?? [])
  if (Either.isLeft(decoded)) {
    const problem = firstProblem(decoded.left.issue)
    const value = showValue(problem.value)
    const key = problem.path.length === 0
      ? (wrapped ? "issues" : "(root)")
      : renderPath(problem.path, prefix)
    const message = problem.path.length === 0 && problem.message === "expected a list"
      ? "expected a list of issues {id, title, body, priority, depends_on} (or a mapping with an `issues:` list)"
      : problem.message
    return Either.left(
      new IssueSourceError(value === undefined ? { file, key, message } : { file, key, value, message })
    )
  }
  const issues = decoded.right.map((i): Issue => ({
    id: i.id,
    title: i.title,
    body: i.body,
    priority: i.priority,
    dependsOn: i.depends_on
  }))
  const seen = new Map<string, number>()
  for (const [index, issue] of issues.entries()) {
    const first = seen.get(issue.id)
    if (first !== undefined) {
      return Either.left(
        new IssueSourceError({
          file,
          key: renderPath([index, "id"], prefix),
          value: issue.id,
          message: `duplicate issue id "${issue.id}" (also ${renderPath([first], prefix)})`
        })
      )
    }
    seen.set(issue.id, index)
  }
  const known = [...seen.keys()]
  const knownText = known.length <= KNOWN_IDS_SHOWN
    ? known.join(", ")
    : `${known.slice(0, KNOWN_IDS_SHOWN).join(", ")} and ${known.length - KNOWN_IDS_SHOWN} more`
  for (const [index, issue] of issues.entries()) {
    for (const [d, dep] of issue.dependsOn.entries()) {
      if (seen.has(dep)) continue
      return Either.left(
        new IssueSourceError({
          file,
          key: renderPath([index, "depends_on", d], prefix),
          value: dep,
          message: `issue "${issue.id}" depends on unknown issue "${dep}"; known ids: ${knownText}`
        })
      )
    }
  }
  return Either.right(issues)
}

interface BeadsRecord {
  readonly id?: unknown
  readonly title?: unknown
  readonly description?: unknown
  readonly status?: unknown
  readonly priority?: unknown
  readonly dependencies?: unknown
}

/**
 * Issues from a beads `issues.jsonl`: the open issues whose blocking dependencies are
 * all closed. Later lines for the same id replace earlier ones.
 */
export const parseBeads = (text: string, file: string): Either.Either<Array<Issue>, IssueSourceError> => {
  const records = new Map<string, BeadsRecord>()
  const lines = text.split("\n")
  for (const [n, line] of lines.entries()) {
    if (line.trim() === "") continue
    let record: BeadsRecord
    try {
      record = JSON.parse(line) as BeadsRecord
    } catch (e) {
      return Either.left(new IssueSourceError({ file, key: `line ${n + 1}`, message: `not JSON: ${String(e)}` }))
    }
    if (typeof record.id !== "string" || record.id === "") {
      return Either.left(new IssueSourceError({ file, key: `line ${n + 1}`, message: "missing string id" }))
    }
    records.set(record.id, record)
  }
  const closed = (id: string) => {
    const r = records.get(id)
    return r === undefined || r.status === "closed" || r.status === "tombstone"
  }
  const blockers = (r: BeadsRecord): Array<string> =>
    Array.isArray(r.dependencies)
      ? r.dependencies.flatMap((d: unknown) => {
        if (typeof d === "string") return [d]
        if (d !== null && typeof d === "object") {
          const dep = d as { depends_on_id?: unknown; type?: unknown }
          if (typeof dep.depends_on_id === "string" && (dep.type === undefined || dep.type === "blocks")) {
            return [dep.depends_on_id]
          }
        }
        return []
      })
      : []
  const out: Array<Issue> = []
  for (const [id, r] of records) {
    if (r.status !== "open") continue
    if (!blockers(r).every(closed)) continue
    out.push({
      id,
      title: typeof r.title === "string" ? r.title : id,
      body: typeof r.description === "string" ? r.description : "",
      priority: typeof r.priority === "number" ? r.priority : null,
      dependsOn: []
    })
  }
  return Either.right(out)
}

/**
 * Run order: dependencies first, then priority, then file order. Dependencies on ids
 * not in the list count as satisfied; a cycle is an error.
 */
export const orderIssues = (issues: ReadonlyArray<Issue>, file: string): Either.Either<Array<Issue>, IssueSourceError> => {
  const byId = new Map(issues.map((i) => [i.id, i]))
  const rank = (i: Issue) => i.priority ?? Number.POSITIVE_INFINITY
  const sorted = [...issues].map((issue, index) => ({ issue, index })).sort((a, b) =>
    rank(a.issue) - rank(b.issue) || a.index - b.index
  ).map((x) => x.issue)
  const out: Array<Issue> = []
  const state = new Map<string, "visiting" | "done">()
  const visit = (issue: Issue, path: Array<string>): IssueSourceError | undefined => {
    const s = state.get(issue.id)
    if (s === "done") return undefined
    if (s === "visiting") {
      return new IssueSourceError({ file, key: issue.id, message: `dependency cycle: ${[...path, issue.id].join(" -> ")}` })
    }
    state.set(issue.id, "visiting")
    for (const dep of issue.dependsOn) {
      const d = byId.get(dep)
      if (d === undefined) continue
      const err = visit(d, [...path, issue.id])
      if (err !== undefined) return err
    }
    state.set(issue.id, "done")
    out.push(issue)
    return undefined
  }
  for (const issue of sorted) {
    const err = visit(issue, [])
    if (err !== undefined) return Either.left(err)
  }
  return Either.right(out)
}

export const loadIssues = (source: { readonly kind: "file" | "beads"; readonly path: string }) =>
  Effect.gen(function*() {
    const text = yield* Effect.try({
      try: () => NodeFs.readFileSync(source.path, "utf8"),
      catch: (e) => new IssueSourceError({ file: source.path, key: "(file)", message: `cannot read: ${String(e)}` })
    })
    const issues = yield* (source.kind === "beads" ? parseBeads(text, source.path) : parseIssueFile(text, source.path))
    return yield* orderIssues(issues, source.path)
  })
