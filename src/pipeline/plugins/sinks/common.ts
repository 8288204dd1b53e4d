/**
 * Pieces shared by the built-in sinks: option building blocks, error wording, the
 * lifecycle guard, column and header resolution, input validation.
 */
import { Effect, Schema } from "effect"
import { pyRepr } from "../../../core/python/repr.js"
import { decodeOptions, showValue } from "../options.js"
import type { FieldType, PluginContext, Row, RowDiversion, SchemaConfig, SinkWriteResult } from "../protocol.js"
import { PluginConfigError, PluginRunError } from "../protocol.js"
import { parseSchemaConfig, validateStrict } from "../schema.js"
import { faultsFor, type SinkLabel } from "./io.js"

// ---------------------------------------------------------------------------
// Options

export const NonEmptyString = Schema.String.pipe(
  Schema.filter((s) => s.length > 0 || "expected a non-empty string"),
  Schema.annotations({ title: "a non-empty string" })
)

/** `{field: "Header"}` */
export const StringMapping = Schema.Record({ key: Schema.String, value: Schema.String }).pipe(
  Schema.annotations({ title: "a mapping of field names to header names" })
)

/** Options every file sink (csv, json) accepts. */
export const fileSinkOptionFields = {
  path: NonEmptyString,
  schema: Schema.Unknown,
  encoding: Schema.optionalWith(Schema.String, { default: () => "utf-8" }),
  validate_input: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  mode: Schema.optionalWith(Schema.Literal("write", "append"), { default: () => "write" as const }),
  headers: Schema.optional(Schema.NullOr(Schema.Union(Schema.Literal("normalized", "original"), StringMapping))),
  display_headers: Schema.optional(Schema.NullOr(StringMapping)),
  restore_source_headers: Schema.optionalWith(Schema.Boolean, { default: () => false })
}

/** `display_headers` and `restore_source_headers: true` cannot both be set. */
export const checkHeaderExclusion = (
  plugin: string,
  displayHeaders: Readonly<Record<string, string>> | null | undefined,
  restoreSourceHeaders: boolean
): Effect.Effect<void, PluginConfigError> =>
  displayHeaders !== undefined && displayHeaders !== null && restoreSourceHeaders
    ? Effect.fail(
      new PluginConfigError({
        plugin,
        key: "display_headers",
        value: displayHeaders,
        message: "display_headers and restore_source_headers: true are mutually exclusive; use one of them"
      })
    )
    : Effect.void

// ---------------------------------------------------------------------------
// Text encodings

export interface TextEncoding {
  /** The canonical name, for messages. */
  readonly name: string
  /** Written once at the start of a new (empty) file. */
  readonly bom: Uint8Array | undefined
  /** Encodes text; throws an Error naming the first character it cannot encode. */
  readonly encode: (text: string) => Buffer
  /** Why `text` cannot be encoded (the first character it cannot hold), or undefined when it can. */
  readonly problem: (text: string) => string | undefined
  /** Node's decoder name for reading an existing file back. */
  readonly decoder: "utf8" | "latin1"
}

const rangeProblem = (name: string, max: number) => (text: string): string | undefined => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c > max) {
      const cp = text.codePointAt(i)!
      return `'${name}' codec cannot encode character U+${cp.toString(16).toUpperCase().padStart(4, "0")}`
    }
  }
  return undefined
}

const checkRange = (name: string, max: number) => {
  const problem = rangeProblem(name, max)
  return (text: string): void => {
    const found = problem(text)
    if (found !== undefined) throw new Error(found)
  }
}

const UTF8: TextEncoding = {
  name: "utf-8",
  bom: undefined,
  encode: (text) => Buffer.from(text, "utf8"),
  problem: () => undefined,
  decoder: "utf8"
}

/**
 * The encodings a file sink can write. Python spells them many ways; the usual
 * aliases are accepted. Anything else is refused rather than written wrongly.
 */
export const resolveEncoding = (plugin: string, name: string): Effect.Effect<TextEncoding, PluginConfigError> => {
  const norm = name.trim().toLowerCase().replace(/_/g, "-")
  switch (norm) {
    case "utf-8":
    case "utf8":
      return Effect.succeed(UTF8)
    case "utf-8-sig":
    case "utf8-sig":
      return Effect.succeed({ ...UTF8, name: "utf-8-sig", bom: Uint8Array.from([0xef, 0xbb, 0xbf]) })
    case "latin-1":
    case "latin1":
    case "iso-8859-1":
    case "iso8859-1": {
      const check = checkRange("latin-1", 0xff)
      return Effect.succeed({
        name: "latin-1",
        bom: undefined,
        encode: (text) => (check(text), Buffer.from(text, "latin1")),
        problem: rangeProblem("latin-1", 0xff),
        decoder: "latin1"
      })
    }
    case "ascii":
    case "us-ascii": {
      const check = checkRange("ascii", 0x7f)
      return Effect.succeed({
        name: "ascii",
        bom: undefined,
        encode: (text) => (check(text), Buffer.from(text, "latin1")),
        problem: rangeProblem("ascii", 0x7f),
        decoder: "latin1"
      })
    }
    default:
      return Effect.fail(
        new PluginConfigError({
          plugin,
          key: "encoding",
          value: name,
          message: `unsupported encoding ${showValue(name)}; supported: utf-8, utf-8-sig, latin-1, ascii`
        })
      )
  }
}

// ---------------------------------------------------------------------------
// Errors

export type { SinkLabel } from "./io.js"

export const describeCause = (cause: unknown): string => {
  if (cause instanceof PluginRunError) return cause.message
  if (cause instanceof Error) {
    const inner = (cause as { cause?: unknown }).cause
    return inner instanceof Error && !cause.message.includes(inner.message)
      ? `${cause.message}: ${inner.message}`
      : cause.message
  }
  return String(cause)
}

export const runError = (label: SinkLabel, message: string, cause?: unknown): PluginRunError =>
  new PluginRunError({
    plugin: label.plugin,
    message: `sink '${label.nodeName}' (${label.plugin}, ${label.target}): ${message}${
      cause === undefined ? "" : `: ${describeCause(cause)}`
    }`,
    ...(cause === undefined ? {} : { cause })
  })

/** `error` with a second failure added to its message; its cause is kept. */
export const withNote = (error: PluginRunError, note: PluginRunError): PluginRunError =>
  new PluginRunError({
    plugin: error.plugin,
    message: `${error.message}; then ${note.message}`,
    ...(error.cause === undefined ? {} : { cause: error.cause })
  })

/** A short rendering of a row for error messages. */
export const showRow = (row: Row): string => {
  let text: string
  try {
    text = pyRepr(row)
  } catch {
    text = "<unprintable row>"
  }
  return text.length > 200 ? `${text.slice(0, 197)}...` : text
}

// ---------------------------------------------------------------------------
// Lifecycle

export type Phase = "open" | "completed" | "closed"

/**
 * Serialises a sink's operations and refuses them once the sink is closed (or, for
 * writes, completed). The engine must never use a sink after close; this makes such
 * a use a loud failure instead of silently writing to a released handle.
 */
export interface Lifecycle {
  readonly phase: () => Phase
  readonly setPhase: (phase: Phase) => void
  /** Runs `effect` exclusively, failing first if the sink is closed. */
  readonly guard: <A, E>(
    operation: string,
    effect: Effect.Effect<A, E>
  ) => Effect.Effect<A, E | PluginRunError>
  /** Runs `effect` exclusively, with no phase check (close, artifact). */
  readonly exclusive: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
}

export const makeLifecycle = (label: SinkLabel): Effect.Effect<Lifecycle> =>
  Effect.map(Effect.makeSemaphore(1), (semaphore) => {
    let phase: Phase = "open"
    const exclusive = <A, E>(effect: Effect.Effect<A, E>) => semaphore.withPermits(1)(effect)
    return {
      phase: () => phase,
      setPhase: (p) => {
        phase = p
      },
      exclusive,
      guard: <A, E>(operation: string, effect: Effect.Effect<A, E>) =>
        exclusive(
          Effect.suspend((): Effect.Effect<A, E | PluginRunError> =>
            phase === "closed" ? Effect.fail(runError(label, `sink used after close (${operation})`)) : effect
          )
        )
    }
  })

/** The error for a write after onComplete. */
export const writeAfterComplete = (label: SinkLabel): PluginRunError =>
  runError(label, "write after on_complete: the sink is already finished")

// ---------------------------------------------------------------------------
// Columns and headers

export const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k)

/**
 * Columns fixed at the first write: fixed → declared fields; flexible → declared
 * fields, then the first row's other keys in its order; observed → the first row's keys.
 */
export const columnsFor = (schema: SchemaConfig, firstRow: Row): ReadonlyArray<string> => {
  if (schema.mode === "observed") return Object.keys(firstRow)
  const declared = schema.fields.map((f) => f.name)
  if (schema.mode === "fixed") return declared
  const set = new Set(declared)
  return [...declared, ...Object.keys(firstRow).filter((k) => !set.has(k))]
}

/** Declared type of every field of an explicit schema. */
export const declaredTypes = (schema: SchemaConfig): ReadonlyMap<string, FieldType> =>
  new Map(schema.mode === "observed" ? [] : schema.fields.map((f) => [f.name, f.type] as const))

/** Keys of `row` that are not columns, or an empty list. */
export const extraKeys = (row: Row, columns: ReadonlySet<string>): ReadonlyArray<string> =>
  Object.keys(row).filter((k) => !columns.has(k))

/**
 * The header renaming in force: a mapping from field name to display name, or
 * undefined for none. `restore_source_headers` asks the pipeline's source, which
 * only a CSV source can answer.
 */
export const resolveRenames = (
  label: SinkLabel,
  ctx: PluginContext,
  displayHeaders: Readonly<Record<string, string>> | null | undefined,
  restoreSourceHeaders: boolean
): Effect.Effect<ReadonlyMap<string, string> | undefined, PluginRunError> =>
  Effect.suspend(() => {
    if (restoreSourceHeaders) {
      const headers = ctx.sourceHeaders?.()
      return headers === undefined
        ? Effect.fail(
          runError(label, "restore_source_headers: true needs a source that records its original headers (a csv source)")
        )
        : Effect.succeed(headers)
    }
    if (displayHeaders !== undefined && displayHeaders !== null) {
      return Effect.succeed(new Map(Object.entries(displayHeaders)))
    }
    return Effect.succeed(undefined)
  })

/** Renames the keys of a row; a renamed key that collides keeps the first position and the last value. */
export const renameKeys = (row: Row, renames: ReadonlyMap<string, string>): Row => {
  const out = new Map<string, unknown>()
  for (const key of Object.keys(row)) out.set(renames.get(key) ?? key, row[key])
  return Object.fromEntries(out)
}

// ---------------------------------------------------------------------------
// Input validation

/**
 * `validate_input: true` with an explicit schema: every row of the batch is checked
 * strictly before any of it is written. `offset` is the index of the batch's first
 * row among all rows this sink received.
 */
export const validateBatch = (
  label: SinkLabel,
  schema: SchemaConfig,
  enabled: boolean,
  rows: ReadonlyArray<Row>,
  offset: number
): Effect.Effect<void, PluginRunError> =>
  Effect.suspend(() => {
    if (!enabled || schema.mode === "observed") return Effect.void
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!
      const problem = validateStrict(schema, row)
      if (problem !== undefined) {
        return Effect.fail(
          runError(label, `input row ${offset + i} failed schema validation (${problem}); row: ${showRow(row)}`)
        )
      }
    }
    return Effect.void
  })

/** Why `row` fails the strict check of `validate_input: true`, or undefined when it passes (or the check is off). */
export const schemaProblem = (schema: SchemaConfig, enabled: boolean, row: Row): string | undefined => {
  if (!enabled || schema.mode === "observed") return undefined
  const problem = validateStrict(schema, row)
  return problem === undefined ? undefined : `failed schema validation (${problem})`
}

// ---------------------------------------------------------------------------
// Rows left out of a write (`on_write_failure`)

/**
 * The rows of one batch a sink still means to write, as it checks them one rule after
 * the other in divert mode: a row a rule rejects is left out with its reason, and the
 * next rule sees only the rows kept.
 */
export class RowSift {
  /** Indexes (into the batch) of the rows kept so far, in order. */
  kept: Array<number>
  private readonly left: Array<RowDiversion> = []

  constructor(readonly rows: ReadonlyArray<Row>) {
    this.kept = rows.map((_, i) => i)
  }

  /** Leaves out every kept row `check` finds a problem with. */
  sift(check: (row: Row, index: number) => string | undefined): void {
    const next: Array<number> = []
    for (const i of this.kept) {
      const problem = check(this.rows[i]!, i)
      if (problem === undefined) next.push(i)
      else this.left.push({ index: i, reason: problem })
    }
    this.kept = next
  }

  /** Leaves out one row (a rule that can only tell while writing). */
  leaveOut(index: number, reason: string): void {
    this.kept = this.kept.filter((i) => i !== index)
    this.left.push({ index, reason })
  }

  keptRows(): Array<Row> {
    return this.kept.map((i) => this.rows[i]!)
  }

  /** The rows left out, in batch order. */
  result(): SinkWriteResult {
    return { diverted: [...this.left].sort((a, b) => a.index - b.index) }
  }
}

/** Options every file sink shares, as decoded. */
interface FileSinkDecoded {
  readonly path: string
  readonly schema: unknown
  readonly encoding: string
  readonly display_headers?: Readonly<Record<string, string>> | null | undefined
  readonly restore_source_headers: boolean
}

/**
 * The start of every file sink's `create`: strict options, the schema, the encoding,
 * the header-option check and the label its errors carry.
 */
export const setUpFileSink = <A extends FileSinkDecoded, I>(
  plugin: string,
  optionsSchema: Schema.Schema<A, I>,
  options: unknown,
  ctx: PluginContext
) =>
  Effect.gen(function*() {
    const decoded = yield* decodeOptions(plugin, optionsSchema, options)
    const schema = yield* parseSchemaConfig(plugin, decoded.schema)
    const encoding = yield* resolveEncoding(plugin, decoded.encoding)
    yield* checkHeaderExclusion(plugin, decoded.display_headers, decoded.restore_source_headers)
    const injected = faultsFor(plugin, ctx.nodeName)
    if ("error" in injected) return yield* Effect.fail(injected.error)
    const label: SinkLabel = { plugin, nodeName: ctx.nodeName, target: decoded.path }
    return { decoded, schema, encoding, label, faults: injected.faults }
  })
