/**
 * The `csv` source: streams a delimited text file row by row.
 *
 * Bytes flow file → (BOM removal) → `skip_rows` → transcoding to UTF-8 → csv-parse,
 * which works on bytes and hands back each field's bytes. For `utf-8` files every
 * field is then checked: a record holding an invalid byte sequence becomes an invalid
 * row naming its line (a header with one stops the run), so one bad byte never ends
 * the read nor silently alters data.
 *
 * Line numbers are physical lines of the file counting from 1 (skipped and blank
 * lines included) and name the line on which a record ends. Row numbers count data
 * records from 1 (the header excluded, blank lines not counted).
 */
import type { TransformCallback } from "node:stream"
import { Readable, pipeline } from "node:stream"
import { Parser } from "csv-parse"
import type { Options as CsvParseOptions } from "csv-parse"
import { Effect, Schema } from "effect"
import { decodeOptions, Identifier, NonNegativeInt, PYTHON_KEYWORDS, showValue } from "../options.js"
import type { Row, SourceInstance, SourceItem, SourcePlugin } from "../protocol.js"
import { PluginConfigError, PluginRunError, putField } from "../protocol.js"
import { coerceSourceRow, parseSchemaConfig } from "../schema.js"
import {
  decodeChecked,
  decodeLossy,
  EncodingOption,
  readChunks,
  resolveEncoding,
  skipLines,
  SourceCommonFields,
  streamBatches,
  stripUtf8Bom
} from "./common.js"
import type { TextEncoding } from "./common.js"
import { normalizeHeader } from "./normalize.js"
import type { RawText } from "./raw-text.js"
import { INPUT_LIMITS, rawPayload, rawTextOfBytes } from "./raw-text.js"

const PLUGIN = "csv"

/**
 * Marks a record that csv-parse could not parse and whose raw text is not known. A
 * quoted field that is never closed (the one parse error the options here leave)
 * keeps its raw text instead.
 */
export const UNPARSEABLE_LINE = "(unparseable due to csv.Error)"

const NotKeyword = Identifier.pipe(
  Schema.filter((s) => !PYTHON_KEYWORDS.has(s) || `'${s}' is a Python keyword and cannot be a field name`)
)

const CsvOptions = Schema.Struct({
  ...SourceCommonFields,
  delimiter: Schema.optionalWith(
    Schema.String.pipe(
      Schema.filter((s) => Array.from(s).length === 1 || `expected a single character, got ${showValue(s)}`),
      Schema.filter((s) => s !== "\"" && s !== "\n" && s !== "\r" || `${showValue(s)} cannot be the delimiter`)
    ),
    { default: () => "," }
  ),
  encoding: Schema.optionalWith(EncodingOption, { default: () => "utf-8" }),
  skip_rows: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  columns: Schema.optional(Schema.Array(NotKeyword)),
  normalize_fields: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  field_mapping: Schema.optional(Schema.Record({ key: Schema.String, value: NotKeyword }))
})
type CsvOptions = typeof CsvOptions.Type

const configError = (key: string, value: unknown, message: string) =>
  new PluginConfigError({ plugin: PLUGIN, key, value, message })

const runError = (path: string, message: string) =>
  new PluginRunError({ plugin: PLUGIN, message: `${path}: ${message}` })

interface Headers {
  /** Final field names, in column order. */
  readonly names: ReadonlyArray<string>
  /** Original header by final name. */
  readonly original: ReadonlyMap<string, string>
}

/** Applies normalisation and mapping to the raw header names; throws PluginRunError. */
const buildHeaders = (path: string, raw: ReadonlyArray<string>, options: CsvOptions): Headers => {
  let names = [...raw]
  if (options.normalize_fields) {
    names = raw.map((h) => {
      const r = normalizeHeader(h)
      if (!r.ok) throw runError(path, `normalize_fields: ${r.message}`)
      return r.name
    })
    const seen = new Map<string, string>()
    raw.forEach((h, i) => {
      const other = seen.get(names[i]!)
      if (other !== undefined) {
        throw runError(path, `normalize_fields: headers '${other}' and '${h}' both normalise to '${names[i]}'`)
      }
      seen.set(names[i]!, h)
    })
  }
  const mapping = options.field_mapping
  if (mapping !== undefined) {
    for (const key of Object.keys(mapping)) {
      if (!names.includes(key)) {
        throw runError(path, `field_mapping: '${key}' is not a field of the file (fields: ${names.join(", ")})`)
      }
    }
    names = names.map((n) => (Object.prototype.hasOwnProperty.call(mapping, n) ? mapping[n]! : n))
  }
  const seen = new Set<string>()
  for (const n of names) {
    if (seen.has(n)) {
      throw runError(path, `duplicate field name '${n}' in the header${mapping !== undefined ? " after field_mapping" : ""}`)
    }
    seen.add(n)
  }
  return { names, original: new Map(names.map((n, i) => [n, raw[i]!])) }
}

interface ParseErrorInfo {
  /** The line csv-parse was on (the record's last line). */
  readonly line: number
  readonly message: string
  /** The record's raw text and first line, where known. */
  readonly raw?: { readonly text: RawText; readonly startLine: number }
}

interface ParsedRecord {
  readonly fields: ReadonlyArray<Buffer>
  readonly line: number
  /** Parse errors csv-parse reported before this record, in order. */
  readonly errorsBefore: ReadonlyArray<ParseErrorInfo>
}

const NO_ERRORS: ParsedRecord["errorsBefore"] = []

/**
 * csv-parse's stream, with each record tagged as it is pushed: its line count (the
 * parser's running `info.lines`, the line the record ends on) and the parse errors
 * reported since the previous record, so both come out in file order. Per-record
 * `info`/`on_record` would do the same but build a large context object per record.
 * With `encoding: null` records are arrays of Buffers.
 *
 * It also keeps the input bytes since the end of the last record (up to the raw text
 * limit), so that a record that fails to parse can be quarantined with its raw text;
 * csv-parse's own `raw` option would copy every byte of every record for that.
 */
class LineTrackingParser extends Parser {
  /** Input chunks overlapping [recordEnd, recordEnd + limit), with their offsets. */
  private retained: Array<{ readonly start: number; readonly bytes: Buffer }> = []
  /** Bytes of input received so far. */
  private received = 0
  /** Offset after the last record pushed (its record delimiter included). */
  private recordEnd = 0
  /** Line on which the last record pushed ends (0 before any). */
  private recordLine = 0
  private readonly keep = INPUT_LIMITS.rawTextBytes + 4

  constructor(
    options: CsvParseOptions,
    private readonly tag: (fields: Array<Buffer>, lines: number) => ParsedRecord
  ) {
    // The larger readable buffer lets one read take many records.
    super({ ...options, readableHighWaterMark: 1024 } as CsvParseOptions)
  }
  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) return super.push(null, encoding)
    this.recordEnd = this.info.bytes
    this.recordLine = this.info.lines
    return super.push(this.tag(chunk as Array<Buffer>, this.info.lines), encoding)
  }
  override _transform(chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback): void {
    this.retained.push({ start: this.received, bytes: chunk })
    this.received += chunk.length
    super._transform(chunk, encoding, callback)
    // Drop what lies before the current record or beyond what its raw text keeps.
    const from = this.recordEnd
    this.retained = this.retained.filter((c) => c.start + c.bytes.length > from && c.start < from + this.keep)
  }
  /**
   * The raw text of the record after the last one pushed, up to the input read so
   * far, and the line it starts on (blank lines before it are skipped, as the parser
   * skips them).
   */
  pendingRecord(): { readonly text: RawText; readonly startLine: number } {
    let from = this.recordEnd
    let line = this.recordLine + 1
    const parts: Array<Buffer> = []
    for (const c of this.retained) {
      const lo = Math.max(from - c.start, 0)
      if (lo < c.bytes.length) parts.push(c.bytes.subarray(lo))
    }
    let bytes = Buffer.concat(parts)
    let skip = 0
    while (skip < bytes.length && (bytes[skip] === 0x0a || bytes[skip] === 0x0d)) {
      if (bytes[skip] === 0x0a || bytes[skip + 1] !== 0x0a) line++
      skip++
    }
    bytes = bytes.subarray(skip)
    from += skip
    // The chunks kept cover at least the first `keep` bytes of the record.
    const cut = rawTextOfBytes(bytes)
    const total = this.received - from
    return {
      text: { text: cut.text, bytes: total, truncated: cut.truncated || total > bytes.length },
      startLine: line
    }
  }
}

/** Resolves once `parser` may have records to read, has ended, or has failed. */
const whenReadable = (parser: Readable): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    const done = () => {
      parser.off("readable", done)
      parser.off("end", done)
      parser.off("close", done)
      parser.off("error", fail)
      resolve()
    }
    const fail = (error: unknown) => {
      done()
      reject(error)
    }
    parser.on("readable", done)
    parser.on("end", done)
    parser.on("close", done)
    parser.on("error", fail)
  })

/**
 * Feeds the file into csv-parse and yields records (and the parse errors reported
 * before each) in order, in batches of whatever the parser has ready.
 */
async function* parseRecords(
  path: string,
  options: CsvOptions,
  encoding: TextEncoding
): AsyncGenerator<ReadonlyArray<ParsedRecord>> {
  const pendingErrors: Array<ParseErrorInfo> = []
  const parserOptions: CsvParseOptions = {
    encoding: null,
    delimiter: options.delimiter,
    quote: "\"",
    escape: "\"",
    record_delimiter: ["\r\n", "\n", "\r"],
    relax_column_count: true,
    relax_quotes: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    trim: false,
    bom: false,
    on_skip: (err) => {
      const line = Number(err?.lines ?? 0) + options.skip_rows
      const message = err?.message ?? "unknown error"
      // A quote left open runs to the end of the input: the rest of the file is that record.
      if (err?.code === "CSV_QUOTE_NOT_CLOSED") {
        const pending = parser.pendingRecord()
        pendingErrors.push({ line, message, raw: { text: pending.text, startLine: pending.startLine + options.skip_rows } })
      } else {
        pendingErrors.push({ line, message })
      }
      return undefined
    }
  }
  const parser = new LineTrackingParser(parserOptions, (fields, lines) => ({
    fields,
    line: lines + options.skip_rows,
    errorsBefore: pendingErrors.length === 0 ? NO_ERRORS : pendingErrors.splice(0)
  }))
  async function* bytes(): AsyncGenerator<Buffer> {
    const transcode = encoding.makeTranscoder()
    const raw = readChunks(PLUGIN, path)
    const unbommed = encoding.stripBom ? stripUtf8Bom(raw) : raw
    for await (const chunk of skipLines(unbommed, options.skip_rows)) yield transcode(chunk)
  }
  let failure: unknown
  pipeline(Readable.from(bytes(), { objectMode: false }), parser, (error) => {
    if (error) failure = error
  })
  try {
    for (;;) {
      const batch: Array<ParsedRecord> = []
      for (let r = parser.read() as ParsedRecord | null; r !== null; r = parser.read() as ParsedRecord | null) batch.push(r)
      if (batch.length > 0) {
        yield batch
        continue
      }
      const error = failure ?? parser.errored
      if (error) throw error
      if (parser.readableEnded || parser.destroyed) break
      await whenReadable(parser)
    }
    const error = failure ?? parser.errored
    if (error) throw error
    if (pendingErrors.length > 0) yield [{ fields: [], line: -1, errorsBefore: pendingErrors.splice(0) }]
  } finally {
    parser.destroy()
  }
}

const decodeFields = (
  fields: ReadonlyArray<Buffer>,
  encoding: TextEncoding
): { ok: true; values: Array<string> } | { ok: false; lossy: Array<string> } => {
  if (!encoding.needsCheck) return { ok: true, values: fields.map((f) => f.toString("utf8")) }
  const values: Array<string> = []
  for (const f of fields) {
    const s = decodeChecked(f)
    if (s === undefined) return { ok: false, lossy: fields.map(decodeLossy) }
    values.push(s)
  }
  return { ok: true, values }
}

const BATCH = 256

const makeInstance = (options: CsvOptions, schema: SourceInstance["schema"], encoding: TextEncoding): SourceInstance => {
  let headers: Headers | undefined
  const path = options.path
  async function* items(): AsyncGenerator<ReadonlyArray<SourceItem>> {
    headers = undefined
    let current: Headers | undefined = options.columns !== undefined
      ? buildHeaders(path, options.columns, options)
      : undefined
    headers = current
    let rowNumber = 0
    let batch: Array<SourceItem> = []
    const invalid = (raw: Row, error: string): SourceItem => ({ _tag: "Invalid", raw, error })
    for await (const records of parseRecords(path, options, encoding)) {
      for (const record of records) {
        for (const e of record.errorsBefore) {
          rowNumber++
          if (e.raw === undefined) {
            batch.push(invalid(
              { __raw_line__: UNPARSEABLE_LINE, __line_number__: e.line, __row_number__: rowNumber },
              `CSV parse error at line ${e.line}: ${e.message}`
            ))
          } else {
            batch.push(invalid(
              rawPayload({}, "__raw_line__", e.raw.text, { __line_number__: e.line, __row_number__: rowNumber }),
              `CSV parse error at line ${e.line}: a quoted field in the record starting at line ${e.raw.startLine} is never closed ` +
                `(the file ends inside it); the rest of the file is kept as that record's raw text`
            ))
          }
        }
        if (record.line < 0) continue
        if (current === undefined) {
          const decoded = decodeFields(record.fields, encoding)
          if (!decoded.ok) throw runError(path, `the header (line ${record.line}) is not valid ${encoding.name} text`)
          current = buildHeaders(path, decoded.values, options)
          headers = current
          continue
        }
        rowNumber++
        const decoded = decodeFields(record.fields, encoding)
        const values = decoded.ok ? decoded.values : decoded.lossy
        const names = current.names
        if (values.length !== names.length) {
          batch.push(invalid(
            { __raw_line__: values.join(options.delimiter), __line_number__: record.line, __row_number__: rowNumber },
            `line ${record.line}: expected ${names.length} values (one per column), got ${values.length}`
          ))
        } else if (!decoded.ok) {
          batch.push(invalid(
            { __raw_line__: values.join(options.delimiter), __line_number__: record.line, __row_number__: rowNumber },
            `line ${record.line}: not valid ${encoding.name} text`
          ))
        } else {
          const raw: Record<string, unknown> = {}
          for (let i = 0; i < names.length; i++) putField(raw, names[i]!, values[i])
          const r = coerceSourceRow(schema, raw)
          batch.push(r.ok ? { _tag: "Valid", row: r.row } : { _tag: "Invalid", raw, error: r.error, fieldErrors: r.fieldErrors })
        }
      }
      if (batch.length >= BATCH) {
        yield batch
        batch = []
      }
    }
    if (batch.length > 0) yield batch
  }
  return {
    plugin: PLUGIN,
    onValidationFailure: options.on_validation_failure,
    schema,
    read: streamBatches(PLUGIN, () => items()),
    sourceHeaders: () => headers?.original
  }
}

export const csvSource: SourcePlugin = {
  kind: "source",
  name: PLUGIN,
  description: "Reads rows from a delimited text (CSV) file, streaming.",
  create: (rawOptions) =>
    Effect.gen(function*() {
      const options = yield* decodeOptions(PLUGIN, CsvOptions, rawOptions)
      const schema = yield* parseSchemaConfig(PLUGIN, options.schema)
      if (options.columns !== undefined && options.normalize_fields) {
        return yield* configError("normalize_fields", true, "normalize_fields cannot be combined with columns (a file with columns has no header to normalise)")
      }
      if (options.field_mapping !== undefined && options.columns === undefined && !options.normalize_fields) {
        return yield* configError("field_mapping", options.field_mapping, "field_mapping requires normalize_fields: true or columns")
      }
      if (options.columns !== undefined) {
        if (options.columns.length === 0) return yield* configError("columns", options.columns, "columns must name at least one column")
        const seen = new Set<string>()
        for (const [i, c] of options.columns.entries()) {
          if (seen.has(c)) return yield* configError(`columns[${i}]`, c, `duplicate column '${c}'`)
          seen.add(c)
        }
      }
      const encoding = resolveEncoding(options.encoding)
      if (encoding === undefined) return yield* configError("encoding", options.encoding, "unsupported encoding")
      return makeInstance(options, schema, encoding)
    })
}
