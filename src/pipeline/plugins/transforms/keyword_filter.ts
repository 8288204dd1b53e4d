/**
 * The `keyword_filter` transform: blocks rows whose scanned string fields match one
 * of the blocked patterns (Python `re` syntax, unanchored search).
 *
 * The first hit (fields in order, then patterns in order) gives an error result
 * with up to 40 code points of context either side of the match, `...` marking a
 * cut end.
 *
 * It fails closed, as ELSPETH does: a field named in `fields` that holds anything but a
 * string cannot be scanned, so the row is an error result (`non_string_field`), never
 * passed; with `fields: all` only string fields are scanned. Patterns are refused at
 * load time when empty (it would block every row), longer than 1,000 characters, or
 * prone to catastrophic backtracking (see regex-safety.ts).
 */
import { Effect, Schema } from "effect"
import { compilePyRegex } from "../../../core/python/regex.js"
import type { RowTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, TransformResult } from "../protocol.js"
import { decodeTransform, hasOwn, pyTypeName, TransformCommonFields } from "./common.js"
import { checkRegexSafety } from "./regex-safety.js"

const PLUGIN = "keyword_filter"

const CONTEXT = 40

/** ELSPETH's limit on a pattern's length, in characters. */
export const MAX_PATTERN_LENGTH = 1000

const KeywordFilterOptions = Schema.Struct({
  ...TransformCommonFields,
  fields: Schema.Union(
    Schema.String,
    Schema.Array(Schema.String).pipe(
      Schema.filter((a) => a.length > 0 || "expected at least one field name"),
      Schema.annotations({ title: "a list of field names" })
    )
  ).annotations({ title: "a field name, a list of field names, or 'all'" }),
  blocked_patterns: Schema.Array(Schema.String).pipe(
    Schema.filter((a) => a.length > 0 || "expected at least one pattern"),
    Schema.annotations({ title: "a list of regular expressions" })
  )
})

/** `text` around the match [start, end) (UTF-16 indices), 40 code points either side. */
export const matchContext = (text: string, start: number, end: number): string => {
  const before = Array.from(text.slice(0, start))
  const after = Array.from(text.slice(end))
  const head = before.length > CONTEXT ? `...${before.slice(-CONTEXT).join("")}` : before.join("")
  const tail = after.length > CONTEXT ? `${after.slice(0, CONTEXT).join("")}...` : after.join("")
  return head + text.slice(start, end) + tail
}

export const keywordFilterTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Routes rows whose text fields match a blocked pattern.",
  batchAware: false,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options, schema } = yield* decodeTransform(PLUGIN, KeywordFilterOptions, raw)
      const patterns: Array<{ pattern: string; regex: RegExp }> = []
      for (const [i, pattern] of options.blocked_patterns.entries()) {
        const refuse = (message: string) =>
          new PluginConfigError({ plugin: PLUGIN, key: `blocked_patterns[${i}]`, value: pattern, message })
        if (pattern === "") return yield* refuse("an empty pattern matches every row, so every row would be blocked")
        const length = Array.from(pattern).length
        if (length > MAX_PATTERN_LENGTH) {
          return yield* refuse(`pattern '${pattern.slice(0, 50)}…' is ${length} characters long; at most ${MAX_PATTERN_LENGTH} are allowed`)
        }
        const compiled = compilePyRegex(pattern)
        if (!compiled.ok) return yield* refuse(`invalid or unsupported regular expression '${pattern}': ${compiled.message}`)
        const safety = checkRegexSafety(compiled.source, compiled.flags)
        if (!safety.safe) return yield* refuse(`pattern '${pattern}' is refused: ${safety.problem}`)
        patterns.push({ pattern, regex: compiled.regex })
      }
      const scanAll = options.fields === "all"
      const named: ReadonlyArray<string> = typeof options.fields === "string" ? [options.fields] : options.fields
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: schema,
        process: (row) => {
          const fields = scanAll ? Object.keys(row) : named
          for (const field of fields) {
            if (!hasOwn(row, field)) continue
            const value = row[field]
            if (typeof value !== "string") {
              if (scanAll) continue
              return TransformResult.error({ reason: "non_string_field", field, actual_type: pyTypeName(value) })
            }
            for (const { pattern, regex } of patterns) {
              const m = regex.exec(value)
              if (m === null) continue
              return TransformResult.error({
                reason: "blocked_content",
                field,
                matched_pattern: pattern,
                match_context: matchContext(value, m.index, m.index + m[0].length)
              })
            }
          }
          return TransformResult.success({ ...row })
        }
      }
      return instance
    })
}
