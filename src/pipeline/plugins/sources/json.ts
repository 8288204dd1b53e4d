/**
 * The `json` source: a JSON array file (read whole) or a JSON Lines file (streamed
 * line by line).
 *
 * JSON numbers become JS numbers: `3.0` and `3` are the same value, and integers
 * beyond ±2^53−1 lose precision when parsed. The bare constants NaN/Infinity are not
 * JSON and fail to parse. In a `utf-8` JSONL file a line that is not valid UTF-8 is
 * an invalid line (quoted with U+FFFD for the bad bytes); in a `json` file it makes
 * the whole file one invalid item.
 */
import { readFile } from "node:fs/promises"
import { Effect, Schema } from "effect"
import { decodeOptions } from "../options.js"
import type { Row, SchemaConfig, SourceInstance, SourceItem, SourcePlugin } from "../protocol.js"
import { coerceSourceRow, parseSchemaConfig } from "../schema.js"
import type { TextEncoding } from "./common.js"
import {
  decodeChecked,
  decodeLossy,
  EncodingOption,
  fileError,
  pyStrip,
  readChunks,
  resolveEncoding,
  SourceCommonFields,
  splitLines,
  streamBatches,
  stripUtf8Bom
} from "./common.js"

const PLUGIN = "json"

const JsonOptions = Schema.Struct({
  ...SourceCommonFields,
  format: Schema.optional(Schema.Literal("json", "jsonl")),
  data_key: Schema.optional(Schema.String),
  encoding: Schema.optionalWith(EncodingOption, { default: () => "utf-8" })
})
type JsonOptions = typeof JsonOptions.Type

const validate = (schema: SchemaConfig, raw: unknown): SourceItem => {
  const r = coerceSourceRow(schema, raw)
  return r.ok ? { _tag: "Valid", row: r.row } : { _tag: "Invalid", raw, error: r.error, fieldErrors: r.fieldErrors }
}

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const BATCH = 256

async function* readArrayFile(
  options: JsonOptions,
  schema: SchemaConfig,
  encoding: TextEncoding
): AsyncGenerator<ReadonlyArray<SourceItem>> {
  const path = options.path
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (error) {
    throw fileError(PLUGIN, path, error)
  }
  if (encoding.stripBom && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3)
  const whole = (payload: Row, error: string): ReadonlyArray<SourceItem> => [{ _tag: "Invalid", raw: payload, error }]
  const utf8 = encoding.makeTranscoder()(bytes)
  const text = encoding.needsCheck ? decodeChecked(utf8) : utf8.toString("utf8")
  if (text === undefined) {
    const message = `the file is not valid ${encoding.name} text`
    yield whole({ file_path: path, parse_error: message }, message)
    return
  }
  let root: unknown
  try {
    root = JSON.parse(text)
  } catch (error) {
    const message = `invalid JSON: ${errorText(error)}`
    yield whole({ file_path: path, parse_error: message }, message)
    return
  }
  let list: unknown = root
  if (options.data_key !== undefined) {
    const key = options.data_key
    if (typeof root !== "object" || root === null || Array.isArray(root)) {
      const message = `data_key '${key}' needs a JSON object at the root, got ${Array.isArray(root) ? "a list" : root === null ? "null" : typeof root}`
      yield whole({ file_path: path, structure_error: message }, message)
      return
    }
    if (!Object.prototype.hasOwnProperty.call(root, key)) {
      const message = `data_key '${key}' not found in the root object`
      yield whole({ file_path: path, structure_error: message }, message)
      return
    }
    list = (root as Record<string, unknown>)[key]
  }
  if (!Array.isArray(list)) {
    const where = options.data_key === undefined ? "the root" : `data_key '${options.data_key}'`
    const message = `expected a JSON list at ${where}, got ${list === null ? "null" : typeof list === "object" ? "an object" : typeof list}`
    yield whole({ file_path: path, structure_error: message }, message)
    return
  }
  for (let i = 0; i < list.length; i += BATCH) {
    yield list.slice(i, i + BATCH).map((element: unknown) => validate(schema, element))
  }
}

async function* readLinesFile(
  options: JsonOptions,
  schema: SchemaConfig,
  encoding: TextEncoding
): AsyncGenerator<ReadonlyArray<SourceItem>> {
  const transcode = encoding.makeTranscoder()
  const raw = readChunks(PLUGIN, options.path)
  const unbommed = encoding.stripBom ? stripUtf8Bom(raw) : raw
  async function* utf8(): AsyncGenerator<Buffer> {
    for await (const chunk of unbommed) yield transcode(chunk)
  }
  for await (const lines of splitLines(utf8())) {
    const out: Array<SourceItem> = []
    for (const { bytes, lineNumber } of lines) {
      const checked = encoding.needsCheck ? decodeChecked(bytes) : bytes.toString("utf8")
      const text = pyStrip(checked ?? decodeLossy(bytes))
      if (text === "") continue
      const invalid = (error: string): SourceItem => ({
        _tag: "Invalid",
        raw: { __raw_line__: text, __line_number__: lineNumber },
        error
      })
      if (checked === undefined) {
        out.push(invalid(`line ${lineNumber}: not valid ${encoding.name} text`))
        continue
      }
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch (error) {
        out.push(invalid(`line ${lineNumber}: invalid JSON: ${errorText(error)}`))
        continue
      }
      out.push(validate(schema, value))
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
      const instance: SourceInstance = {
        plugin: PLUGIN,
        onValidationFailure: options.on_validation_failure,
        schema,
        read: streamBatches(
          PLUGIN,
          () => format === "json" ? readArrayFile(options, schema, encoding) : readLinesFile(options, schema, encoding)
        )
      }
      return instance
    })
}
