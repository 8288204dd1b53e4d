/**
 * The `json` source: a JSON array file (read whole, then element by element) or a
 * JSON Lines file (streamed line by line).
 *
 * Input is parsed losslessly and without recursion (json-parse.ts):
 * - every list element and every line is its own row: one that does not parse, is
 *   nested deeper than `INPUT_LIMITS.maxJsonDepth`, holds a number that is not a finite
 *   float (`1e400`) or an integer of more than `INPUT_LIMITS.maxIntegerDigits` digits,
 *   or is not valid text in the file's encoding, is quarantined with its raw text and
 *   the reason, and reading goes on;
 * - an integer beyond ±(2^53−1) is kept exactly, as a bigint, in a field the schema
 *   declares (`int` keeps it; `float` takes the nearest float; `str`/`bool` reject it);
 *   anywhere else (an observed schema, an `any` or undeclared field, inside a nested
 *   value) no JS number can hold it, so the row is quarantined with the reason;
 * - a list that is cut off (a truncated file) or whose brackets stop matching yields
 *   the elements before that point, then one quarantined item holding the rest of the
 *   file as raw text.
 * Raw text in quarantined items is cut at `INPUT_LIMITS.rawTextBytes`. A leading byte
 * order mark is removed for `utf-8` too (with a warning; Python's `json` would refuse
 * the file or its first line).
 *
 * JSON numbers become JS numbers: `3.0` and `3` are the same value. The bare
 * constants NaN/Infinity are not JSON and do not parse.
 */
import { readFile } from "node:fs/promises"
import { Effect, Schema } from "effect"
import { decodeOptions } from "../options.js"
import type { Row, SchemaConfig, SourceInstance, SourceItem, SourcePlugin, SourcePosition } from "../protocol.js"
import { coerceSourceRow, parseSchemaConfig } from "../schema.js"
import type { TextEncoding } from "./common.js"
import {
  bomWarning,
  dataChunks,
  decodeChecked,
  decodeLossy,
  EncodingOption,
  fileError,
  offsetMapFor,
  pyStrip,
  resolveEncoding,
  SourceCommonFields,
  splitLines,
  startsWithUtf8Bom,
  streamBatches
} from "./common.js"
import type { JsonLimits, JsonParsed, LargeInteger } from "./json-parse.js"
import { LineCounter, parseJsonText, scanList, showPath, skipWsBytes, valueExtent } from "./json-parse.js"
import type { RawText } from "./raw-text.js"
import { INPUT_LIMITS, rawPayload, rawTextOf, rawTextOfBytes } from "./raw-text.js"

const PLUGIN = "json"

const JsonOptions = Schema.Struct({
  ...SourceCommonFields,
  format: Schema.optional(Schema.Literal("json", "jsonl")),
  data_key: Schema.optional(Schema.String),
  encoding: Schema.optionalWith(EncodingOption, { default: () => "utf-8" })
})
type JsonOptions = typeof JsonOptions.Type

const LIMITS: JsonLimits = { maxDepth: INPUT_LIMITS.maxJsonDepth, maxIntegerDigits: INPUT_LIMITS.maxIntegerDigits }

/**
 * Why the large integers of a parsed value cannot stay in the row, or undefined when
 * each sits in a top-level field the schema declares with a concrete type (coercion
 * then keeps it exact for `int`, rounds it for `float` and rejects it otherwise).
 */
const largeIntegerProblem = (
  schema: SchemaConfig,
  value: unknown,
  found: ReadonlyArray<LargeInteger>
): { readonly field: string; readonly message: string } | undefined => {
  const isRecord = typeof value === "object" && value !== null && !Array.isArray(value)
  for (const { path, text } of found) {
    const declared = path.length === 1 && isRecord && schema.mode !== "observed"
      ? schema.fields.find((f) => f.name === path[0])
      : undefined
    if (declared !== undefined && declared.type !== "any") continue
    return {
      field: typeof path[0] === "string" ? path[0] : "",
      message: `integer ${text.length > 40 ? `${text.slice(0, 40)}…` : text} at ${showPath(path)} is beyond ±(2^53−1), ` +
        "so no JS number holds it exactly; declare the field as int to keep it exact"
    }
  }
  return undefined
}

/**
 * Turns one parse result into an item. `rawOf` gives the quarantine payload for input
 * that could not become a value (its raw text and position); `position`, where known,
 * is where the item's line ends in the file.
 */
const toItem = (
  schema: SchemaConfig,
  parsed: JsonParsed,
  where: string,
  rawOf: () => Row,
  position?: SourcePosition
): SourceItem => {
  const at = position === undefined ? undefined : { position }
  if (!parsed.ok) {
    const label = parsed.kind === "syntax" ? "invalid JSON" : parsed.kind === "depth" ? "too deeply nested" : "unusable number"
    return { _tag: "Invalid", raw: rawOf(), error: `${where}: ${label}: ${parsed.message}`, ...at }
  }
  const value = parsed.value
  if (parsed.largeIntegers.length > 0) {
    const problem = largeIntegerProblem(schema, value, parsed.largeIntegers)
    if (problem !== undefined) {
      return { _tag: "Invalid", raw: rawOf(), error: `${where}: ${problem.message}`, fieldErrors: [problem], ...at }
    }
  }
  const r = coerceSourceRow(schema, value)
  if (!r.ok) return { _tag: "Invalid", raw: value, error: r.error, fieldErrors: r.fieldErrors, ...at }
  return position === undefined ? { _tag: "Valid", row: r.row } : { _tag: "Valid", row: r.row, position }
}

const BATCH = 256

const describeJson = (value: unknown): string =>
  Array.isArray(value) ? "a list" : value === null ? "null" : typeof value === "object" ? "an object" : typeof value

/** Reads a JSON array file (or the list under `data_key`) element by element. */
async function* readArrayFile(
  options: JsonOptions,
  schema: SchemaConfig,
  encoding: TextEncoding,
  onBom: (() => void) | undefined
): AsyncGenerator<ReadonlyArray<SourceItem>> {
  const path = options.path
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (error) {
    throw fileError(PLUGIN, path, error)
  }
  if (encoding.stripBom && startsWithUtf8Bom(bytes)) {
    onBom?.()
    bytes = bytes.subarray(3)
  }
  const utf8 = encoding.makeTranscoder()(bytes)
  const lines = new LineCounter(utf8)
  const rawFrom = (start: number): RawText => rawTextOfBytes(utf8.subarray(start))

  /** One invalid item for a problem with the file as a whole (nothing else is read). */
  const whole = (kind: "parse_error" | "structure_error", message: string): ReadonlyArray<SourceItem> => [{
    _tag: "Invalid",
    raw: kind === "parse_error"
      ? rawPayload({ file_path: path, parse_error: message }, "__raw_text__", rawFrom(0))
      : { file_path: path, structure_error: message },
    error: message
  }]
  /** The file is not a usable list: a parse error when it is not JSON, else a structure error. */
  const notAList = (describe: (value: unknown) => string): ReadonlyArray<SourceItem> => {
    const text = encoding.needsCheck ? decodeChecked(utf8) : utf8.toString("utf8")
    if (text === undefined) return whole("parse_error", `the file is not valid ${encoding.name} text`)
    const parsed = parseJsonText(text, { maxDepth: Number.MAX_SAFE_INTEGER, maxIntegerDigits: LIMITS.maxIntegerDigits })
    if (!parsed.ok) return whole("parse_error", `invalid JSON: ${parsed.message}`)
    return whole("structure_error", describe(parsed.value))
  }

  let open = skipWsBytes(utf8, 0)
  /** The end of the root object around a data_key list. */
  let rootEnd: number | undefined
  if (options.data_key === undefined) {
    if (utf8[open] !== 0x5b) {
      yield notAList((v) => `expected a JSON list at the root, got ${describeJson(v)}`)
      return
    }
  } else {
    const key = options.data_key
    if (utf8[open] !== 0x7b) {
      yield notAList((v) => `data_key '${key}' needs a JSON object at the root, got ${describeJson(v)}`)
      return
    }
    const found = findMember(utf8, open, key, encoding)
    switch (found._tag) {
      case "Broken":
        yield whole("parse_error", `invalid JSON: ${found.message}`)
        return
      case "Missing":
        yield whole("structure_error", `data_key '${key}' not found in the root object`)
        return
      case "Found":
        break
    }
    if (utf8[found.start] !== 0x5b) {
      yield notAList((root) =>
        `expected a JSON list at data_key '${key}', got ${describeJson((root as Record<string, unknown>)[key])}`
      )
      return
    }
    open = found.start
    rootEnd = found.rootEnd
  }

  let batch: Array<SourceItem> = []
  const scan = scanList(utf8, open)
  let next = scan.next()
  for (; !next.done; next = scan.next()) {
    const piece = next.value
    const line = lines.at(piece.start)
    if (piece._tag === "Broken") {
      const message = `element ${piece.index} (line ${line}) onwards: ${piece.message}`
      batch.push({
        _tag: "Invalid",
        raw: rawPayload({ file_path: path, parse_error: message }, "__raw_text__", rawFrom(piece.start), { __line_number__: line }),
        error: message
      })
      break
    }
    const slice = utf8.subarray(piece.start, piece.end)
    const rawOf = (): Row =>
      rawPayload({}, "__raw_text__", rawTextOfBytes(slice), { __element_index__: piece.index, __line_number__: line })
    const where = `element ${piece.index} (line ${line})`
    const text = encoding.needsCheck ? decodeChecked(slice) : slice.toString("utf8")
    if (text === undefined) {
      batch.push({ _tag: "Invalid", raw: rawOf(), error: `${where}: not valid ${encoding.name} text` })
    } else if (slice.length === 0) {
      batch.push({ _tag: "Invalid", raw: rawOf(), error: `${where}: invalid JSON: an empty element (a doubled or trailing comma)` })
    } else {
      batch.push(toItem(schema, parseJsonText(text, LIMITS), where, rawOf))
    }
    if (batch.length >= BATCH) {
      yield batch
      batch = []
    }
  }
  const end = next.done === true ? next.value : undefined
  if (end !== undefined) {
    // After the list (and the rest of the root object, for data_key) only whitespace may follow.
    const tail = skipWsBytes(utf8, rootEnd ?? end)
    if (tail < utf8.length) {
      const line = lines.at(tail)
      const message = `unexpected text after the JSON value (line ${line})`
      batch.push({
        _tag: "Invalid",
        raw: rawPayload({ file_path: path, parse_error: message }, "__raw_text__", rawFrom(tail), { __line_number__: line }),
        error: message
      })
    }
  }
  if (batch.length > 0) yield batch
}

type Member =
  /** `rootEnd`: the offset after the root object's `}`; undefined when the list is cut off. */
  | { readonly _tag: "Found"; readonly start: number; readonly rootEnd: number | undefined }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Broken"; readonly message: string }

/**
 * Finds the value of `key` in the root object at `open` (the last one when the key
 * repeats, as JSON.parse does). The other members must be valid JSON; a list under
 * `key` that is cut off is left for `scanList` to report element by element.
 */
const findMember = (utf8: Buffer, open: number, key: string, encoding: TextEncoding): Member => {
  let pos = skipWsBytes(utf8, open + 1)
  let found: number | undefined
  if (utf8[pos] === 0x7d) return { _tag: "Missing" }
  for (;;) {
    if (utf8[pos] !== 0x22) return { _tag: "Broken", message: `expected a property name at byte ${pos} of the root object` }
    const nameEnd = valueExtent(utf8, pos)
    if (!nameEnd.ok) return { _tag: "Broken", message: nameEnd.message }
    const nameText = encoding.needsCheck ? decodeChecked(utf8.subarray(pos, nameEnd.end)) : utf8.subarray(pos, nameEnd.end).toString("utf8")
    const name = nameText === undefined ? undefined : parseJsonText(nameText, LIMITS)
    if (name === undefined || !name.ok) return { _tag: "Broken", message: `invalid property name at byte ${pos} of the root object` }
    pos = skipWsBytes(utf8, nameEnd.end)
    if (utf8[pos] !== 0x3a) return { _tag: "Broken", message: `expected ':' at byte ${pos} of the root object` }
    const start = skipWsBytes(utf8, pos + 1)
    const isKey = name.value === key
    const extent = valueExtent(utf8, start)
    if (!extent.ok) return isKey && utf8[start] === 0x5b ? { _tag: "Found", start, rootEnd: undefined } : { _tag: "Broken", message: extent.message }
    if (isKey) {
      found = start
    } else {
      const slice = utf8.subarray(start, extent.end)
      const text = encoding.needsCheck ? decodeChecked(slice) : slice.toString("utf8")
      if (text === undefined) return { _tag: "Broken", message: `the value of ${JSON.stringify(name.value)} is not valid ${encoding.name} text` }
      const parsed = parseJsonText(text, LIMITS)
      if (!parsed.ok) return { _tag: "Broken", message: `in the value of ${JSON.stringify(name.value)}: ${parsed.message}` }
    }
    pos = skipWsBytes(utf8, extent.end)
    if (utf8[pos] === 0x2c) {
      pos = skipWsBytes(utf8, pos + 1)
      continue
    }
    if (utf8[pos] === 0x7d) return found === undefined ? { _tag: "Missing" } : { _tag: "Found", start: found, rootEnd: pos + 1 }
    return { _tag: "Broken", message: `expected ',' or '}' at byte ${pos} of the root object` }
  }
}
/**
 * Reads a JSON Lines file line by line (streamed), from the top or from where an
 * earlier read left off. What each read of the file brings is yielded at once.
 */
async function* readLinesFile(
  options: JsonOptions,
  schema: SchemaConfig,
  encoding: TextEncoding,
  from: SourcePosition | undefined,
  onBom: (() => void) | undefined
): AsyncGenerator<ReadonlyArray<SourceItem>> {
  const data = dataChunks(PLUGIN, options.path, {
    stripBom: encoding.stripBom,
    skipRows: 0,
    from: from?.bytes,
    ...(onBom === undefined ? {} : { onBom })
  })
  const offsets = offsetMapFor(encoding)
  async function* utf8(): AsyncGenerator<Buffer> {
    const transcode = encoding.makeTranscoder()
    for await (const chunk of data.chunks) {
      const out = transcode(chunk)
      offsets.note(out)
      yield out
    }
  }
  for await (const lines of splitLines(utf8(), { offset: 0, line: from?.line ?? 0 })) {
    const out: Array<SourceItem> = []
    for (const { bytes, end, lineNumber } of lines) {
      const checked = encoding.needsCheck ? decodeChecked(bytes) : bytes.toString("utf8")
      const text = pyStrip(checked ?? decodeLossy(bytes))
      if (text === "") continue
      const position: SourcePosition = { bytes: data.origin() + offsets.inputOffset(end), line: lineNumber }
      if (checked === undefined) {
        out.push({
          _tag: "Invalid",
          raw: rawPayload({}, "__raw_line__", rawTextOf(text), { __line_number__: lineNumber }),
          error: `line ${lineNumber}: not valid ${encoding.name} text`,
          position
        })
        continue
      }
      const rawOf = (): Row => rawPayload({}, "__raw_line__", rawTextOf(text), { __line_number__: lineNumber })
      out.push(toItem(schema, parseJsonText(text, LIMITS), `line ${lineNumber}`, rawOf, position))
    }
    if (out.length > 0) yield out
  }
}

const defaultFormat = (path: string): "json" | "jsonl" => (path.endsWith(".jsonl") ? "jsonl" : "json")

export const jsonSource: SourcePlugin = {
  kind: "source",
  name: PLUGIN,
  description: "Reads rows from a JSON array file or a JSON Lines file (streamed).",
  create: (rawOptions) =>
    Effect.gen(function*() {
      const options = yield* decodeOptions(PLUGIN, JsonOptions, rawOptions)
      const schema = yield* parseSchemaConfig(PLUGIN, options.schema)
      const encoding = resolveEncoding(options.encoding)!
      const format = options.format ?? defaultFormat(options.path)
      const onBom = bomWarning(PLUGIN, options.path, encoding)
      if (format === "json") {
        const instance: SourceInstance = {
          plugin: PLUGIN,
          onValidationFailure: options.on_validation_failure,
          schema,
          read: streamBatches(PLUGIN, () => readArrayFile(options, schema, encoding, onBom))
        }
        return instance
      }
      const read = streamBatches(PLUGIN, () => readLinesFile(options, schema, encoding, undefined, onBom))
      const instance: SourceInstance = {
        plugin: PLUGIN,
        onValidationFailure: options.on_validation_failure,
        schema,
        read,
        readFrom: (at) =>
          at.items === 0 ? read : streamBatches(PLUGIN, () => readLinesFile(options, schema, encoding, at.position, onBom))
      }
      return instance
    })
}
