/**
 * The `csv` source: streams a delimited text file row by row.
 *
 * Header names are normalised to identifiers by default (`"  Amount (USD) "` →
 * `amount_usd`, see normalize.ts), as ELSPETH always does; `normalize_fields: false`
 * keeps them verbatim and `columns` names the columns of a headerless file.
 *
 * Bytes flow file → (BOM removal) → `skip_rows` → transcoding to UTF-8 → csv-parse,
 * which works on bytes and hands back each field's bytes. For `utf-8` files every
 * field is then checked: a record holding an invalid byte sequence becomes an invalid
 * row naming its line (a header with one stops the run), so one bad byte never ends
 * the read nor silently alters data.
 *
 * Line numbers are physical lines of the file counting from 1 (skipped and blank
 * lines included, `\r\n` one line also inside quotes) and name the line on which a
 * record ends. Row numbers count data records from 1 (the header excluded, blank
 * lines not counted).
 *
 * Records are yielded as soon as their delimiter has been read (see `exactLookahead`),
 * whatever follows. Each item carries its position: the offset in the file's bytes
 * after its record (offsets in the transcoded bytes are mapped back) and the line it
 * ends on. `readFrom` starts a fresh parser there — a record boundary, where csv-parse
 * and the single-byte transcoders hold no state — taking the header from the top of
 * the file, and numbers lines and rows on from the position.
 */
import type { TransformCallback } from "node:stream"
import { Readable, pipeline } from "node:stream"
import { Parser } from "csv-parse"
import type { Options as CsvParseOptions } from "csv-parse"
import { Effect, Schema } from "effect"
import { decodeOptions, Identifier, NonNegativeInt, PYTHON_KEYWORDS, showValue } from "../options.js"
import type { Row, SourceInstance, SourceItem, SourcePlugin, SourcePosition, SourceRestart } from "../protocol.js"
import { PluginConfigError, PluginRunError, putField } from "../protocol.js"
import { coerceSourceRow, parseSchemaConfig } from "../schema.js"
import {
  bomWarning,
  dataChunks,
  decodeChecked,
  decodeLossy,
  EncodingOption,
  offsetMapFor,
  resolveEncoding,
  SourceCommonFields,
  streamBatches
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
  normalize_fields: Schema.optional(Schema.Boolean),
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

/**
 * Whether header names are normalised: by default when the file has a header (as
 * ELSPETH always does), never for `columns`; `normalize_fields: false` keeps them as
 * they are.
 */
const normalizes = (options: CsvOptions): boolean => options.normalize_fields ?? options.columns === undefined

const KEEP_HINT = "(normalize_fields: false keeps the headers as they are)"

/** Applies normalisation and mapping to the raw header names; throws PluginRunError. */
const buildHeaders = (path: string, raw: ReadonlyArray<string>, options: CsvOptions, normalize: boolean): Headers => {
  const column = new Map<string, number>()
  raw.forEach((h, i) => {
    const first = column.get(h)
    if (first !== undefined) throw runError(path, `duplicate field name '${h}' in the header (columns ${first + 1} and ${i + 1})`)
    column.set(h, i)
  })
  let names = [...raw]
  if (normalize) {
    names = raw.map((h) => {
      const r = normalizeHeader(h)
      if (!r.ok) throw runError(path, `header normalisation: ${r.message} ${KEEP_HINT}`)
      return r.name
    })
    const seen = new Map<string, string>()
    raw.forEach((h, i) => {
      const other = seen.get(names[i]!)
      if (other !== undefined) {
        throw runError(path, `header normalisation: headers '${other}' and '${h}' both normalise to '${names[i]}' ${KEEP_HINT}`)
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
  /** Where reading goes on after the record that failed. */
  readonly end: SourcePosition
}

/** A record's fields as text: valid in the file's encoding, or not (then decoded lossily). */
type DecodedFields = { readonly ok: true; readonly values: Array<string> } | { readonly ok: false; readonly lossy: Array<string> }

interface ParsedRecord {
  /**
   * The fields, decoded as the parser hands the record over: the parser's field
   * buffers then die young instead of waiting, thousands at a time, in the batch.
   */
  readonly fields: DecodedFields
  /** The line the record ends on. */
  readonly line: number
  /** Just after the record's delimiter, in the file's bytes. */
  readonly end: SourcePosition
  /** Parse errors csv-parse reported before this record, in order. */
  readonly errorsBefore: ReadonlyArray<ParseErrorInfo>
}

const NO_ERRORS: ParsedRecord["errorsBefore"] = []

/**
 * Records per batch handed on: the rows of a batch are built together and wait for the
 * engine together, so a batch is kept small enough to be processed before its objects
 * age into the old generation.
 */
const READ_BATCH = 512

/** The parts of csv-parse's parser state that `exactLookahead` reads (csv-parse 6). */
interface CsvParseCore {
  parse: (next: Buffer | undefined, end: boolean, push: unknown, close: unknown) => unknown
  __needMoreData: (at: number, length: number, end: boolean) => boolean
  readonly state: { readonly quoting: boolean; readonly escaping: boolean; readonly previousBuf: Buffer | undefined }
  readonly options: { readonly delimiter: ReadonlyArray<Buffer>; readonly quote: Buffer | null }
}

const isCsvParseCore = (api: unknown): api is CsvParseCore => {
  const a = api as Partial<CsvParseCore> | undefined
  return typeof a?.parse === "function" && typeof a.__needMoreData === "function" &&
    typeof a.state === "object" && Array.isArray(a.options?.delimiter)
}

/**
 * Makes `parser` stop for more input only where the next bytes can change what the byte
 * at hand means, so a record is emitted as soon as its delimiter has arrived.
 *
 * csv-parse waits until the longest token (here `\r\n`, and a closing quote with
 * what follows it) fits after every byte, so it holds the last record of the input it
 * has until two more bytes come: right for a file, but a pipe that stops after `…\n`
 * would keep that row until the next write. With the options used here a byte needs a
 * look further only when it is a `\r` outside quotes (`\r\n`?), the first byte of a
 * multi-byte delimiter, or a quote inside a quoted field (`""`, or the closing quote
 * and the delimiter after it). Anything else is decided by the byte itself, so the
 * records and line counts are the same however the input is cut into chunks — but for
 * one count: csv-parse counts a line break that ends a parse call at once, and one
 * that ends the whole input not at all, so the line of a quote left open at the end
 * would depend on where a chunk ended. A line break inside quotes therefore also waits
 * for one byte after it.
 *
 * It reads csv-parse's internal state; a csv-parse without it keeps its own rule.
 */
export const exactLookahead = <P extends Parser>(parser: P): P => {
  const api: unknown = (parser as unknown as { api?: unknown }).api
  if (!isCsvParseCore(api)) return parser
  const delimiter = api.options.delimiter.length === 1 ? api.options.delimiter[0]! : undefined
  const quote = api.options.quote
  // Other shapes (several delimiters, a multi-byte quote) keep csv-parse's rule.
  if (delimiter === undefined || quote === null || quote.length !== 1) return parser
  const quoteByte = quote[0]!
  const delimiterFirst = delimiter[0]!
  const delimiterRest = delimiter.length - 1
  const closingNeeds = Math.max(1, delimiter.length)
  const parse = api.parse
  /** The buffer of the parse call in progress: the bytes held back, then the chunk. */
  let held: Buffer | undefined
  let next: Buffer | undefined
  api.parse = function(this: CsvParseCore, chunk, end, push, close) {
    held = this.state.previousBuf
    next = chunk
    try {
      return parse.call(this, chunk, end, push, close)
    } finally {
      held = undefined
      next = undefined
    }
  }
  api.__needMoreData = function(this: CsvParseCore, at, length, end) {
    if (end) return false
    const left = length - at - 1
    if (left >= closingNeeds) return false
    if (this.state.escaping) return false
    const byte = held === undefined ? next?.[at] : at < held.length ? held[at] : next?.[at - held.length]
    if (byte === undefined) return true
    if (this.state.quoting) {
      // A line break inside quotes waits for a byte after it, so that one ending the
      // input is counted where csv-parse counts it, at the end (see above).
      return byte === quoteByte ? left < closingNeeds : (byte === 0x0a || byte === 0x0d) && left < 1
    }
    if (byte === 0x0d) return left < 1
    if (byte === delimiterFirst) return left < delimiterRest
    return false
  }
  return parser
}

/**
 * Counts physical line breaks (`\n`, `\r\n`, a lone `\r`) in a byte stream, up to
 * offsets that only grow. Chunks are added as they come and let go once counted.
 *
 * csv-parse's own line count takes a `\r\n` inside a quoted field for two lines, so
 * the sources count lines here instead.
 */
class LineBreaks {
  private readonly chunks: Array<Buffer> = []
  /** Offset of the first byte of `chunks[0]`. */
  private base = 0
  /** Offset up to which breaks are counted. */
  private at = 0
  private count = 0
  /** The byte before `at` is a `\r` (counted): a `\n` right after it is the same break. */
  private afterCr = false
  /** The byte before `at` is a line break. */
  endsWithBreak = false
  /** Next `\n` and `\r` in `chunks[0]` at or after `at` (chunk length when none). */
  private nextLf = -1
  private nextCr = -1

  add(chunk: Buffer): void {
    if (chunk.length > 0) this.chunks.push(chunk)
  }

  /** Line breaks in [0, to); an offset below the ones counted already counts as those. */
  countTo(to: number): number {
    while (this.at < to && this.chunks.length > 0) {
      const chunk = this.chunks[0]!
      const hi = Math.min(chunk.length, to - this.base)
      let i = this.at - this.base
      if (this.afterCr) {
        this.afterCr = false
        if (chunk[i] === 0x0a) i++
      }
      while (i < hi) {
        if (this.nextLf < i) this.nextLf = indexIn(chunk, 0x0a, i)
        if (this.nextCr < i) this.nextCr = indexIn(chunk, 0x0d, i)
        const next = Math.min(this.nextLf, this.nextCr)
        if (next >= hi) {
          this.endsWithBreak = false
          i = hi
          break
        }
        this.count++
        this.endsWithBreak = true
        i = next + 1
        if (chunk[next] === 0x0d) {
          if (i < hi) {
            if (chunk[i] === 0x0a) i++
          } else {
            this.afterCr = true
          }
        }
      }
      this.at = this.base + i
      if (i === chunk.length) {
        this.chunks.shift()
        this.base += chunk.length
        this.nextLf = -1
        this.nextCr = -1
      }
    }
    return this.count
  }
}

/** Index of `byte` in `chunk` from `from` on, or the chunk's length. */
const indexIn = (chunk: Buffer, byte: number, from: number): number => {
  const i = chunk.indexOf(byte, from)
  return i < 0 ? chunk.length : i
}

/**
 * csv-parse's stream, with each record tagged as it is pushed: the line it ends on
 * (physical lines, counted here), the offset after it (the parser's running
 * `info.bytes`) and the parse errors reported since the previous record, so all come
 * out in file order. Per-record `info`/`on_record` would give csv-parse's own counts
 * but build a large context object per record. With `encoding: null` records are
 * arrays of Buffers.
 *
 * It also keeps the input bytes since the end of the last record (up to the raw text
 * limit), so that a record that fails to parse can be quarantined with its raw text;
 * csv-parse's own `raw` option would copy every byte of every record for that.
 */
class LineTrackingParser extends Parser {
  /** Input chunks overlapping [recordEnd, recordEnd + limit), with their offsets. */
  private retained: Array<{ readonly start: number; readonly bytes: Buffer }> = []
  /** Bytes of input received so far. */
  received = 0
  /** Offset after the last record pushed (its record delimiter included). */
  private recordEnd = 0
  /** Line on which the last record pushed ends (0 before any). */
  private recordLine = 0
  private readonly keep = INPUT_LIMITS.rawTextBytes + 4
  private readonly breaks = new LineBreaks()

  constructor(
    options: CsvParseOptions,
    private readonly tag: (fields: Array<Buffer>, line: number, bytes: number) => ParsedRecord
  ) {
    // The larger readable buffer lets one read take many records.
    super({ ...options, readableHighWaterMark: 1024 } as CsvParseOptions)
  }
  /**
   * The line on which input ending at `offset` ends: the line breaks before `offset`,
   * plus the unterminated line it ends in, if any.
   */
  lineAt(offset: number): number {
    const count = this.breaks.countTo(offset)
    return offset > 0 && !this.breaks.endsWithBreak ? count + 1 : count
  }
  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) return super.push(null, encoding)
    const end = this.info.bytes
    this.recordEnd = end
    this.recordLine = this.lineAt(end)
    return super.push(this.tag(chunk as Array<Buffer>, this.recordLine, end), encoding)
  }
  override _transform(chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback): void {
    this.retained.push({ start: this.received, bytes: chunk })
    this.breaks.add(chunk)
    this.received += chunk.length
    super._transform(chunk, encoding, callback)
    // Drop what lies before the current record or beyond what its raw text keeps.
    const from = this.recordEnd
    this.retained = this.retained.filter((c) => c.start + c.bytes.length > from && c.start < from + this.keep)
    // The parser holds back at most a few bytes, so every record still to come ends
    // beyond this: count up to it, letting go of the chunks before.
    this.breaks.countTo(this.received - 8)
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
 * csv-parse's options for `delimiter`: bytes in, field bytes out; every record
 * delimiter, lenient about quotes and column counts, blank lines skipped, a record
 * that fails to parse skipped (and reported through `on_skip`).
 */
export const csvParseOptions = (delimiter: string): CsvParseOptions => ({
  encoding: null,
  delimiter,
  quote: "\"",
  escape: "\"",
  record_delimiter: ["\r\n", "\n", "\r"],
  relax_column_count: true,
  relax_quotes: true,
  skip_empty_lines: true,
  skip_records_with_error: true,
  trim: false,
  bom: false
})

/**
 * Feeds the file into csv-parse and yields records (and the parse errors reported
 * before each) in order, in batches of what the parser has ready (at most
 * `READ_BATCH`): a batch is yielded as soon as the parser has taken all the input
 * there is, never held for more.
 *
 * From the start of the file, the data begins after the BOM (`utf-8-sig`, and `utf-8`
 * with a warning through `onBom`) and the `skip_rows` lines; with `from`, at that
 * position (a record boundary, where a fresh parser and transcoder start in the state a
 * continuing read is in).
 */
async function* parseRecords(
  path: string,
  options: CsvOptions,
  encoding: TextEncoding,
  from: SourcePosition | undefined,
  onBom: (() => void) | undefined
): AsyncGenerator<ReadonlyArray<ParsedRecord>> {
  const pendingErrors: Array<ParseErrorInfo> = []
  /** Lines before the data the parser sees (its first line is line 1). */
  const lineOffset = from?.line ?? options.skip_rows
  const data = dataChunks(PLUGIN, path, {
    stripBom: encoding.stripBom,
    skipRows: options.skip_rows,
    from: from?.bytes,
    ...(onBom === undefined ? {} : { onBom })
  })
  const offsets = offsetMapFor(encoding)
  /** The file position of an offset in the (UTF-8) bytes the parser was given, on `line` of them. */
  const positionAt = (parsed: number, line: number): SourcePosition => ({
    bytes: data.origin() + offsets.inputOffset(parsed),
    line: line + lineOffset
  })
  const parserOptions: CsvParseOptions = {
    ...csvParseOptions(options.delimiter),
    on_skip: (err) => {
      const message = err?.message ?? "unknown error"
      // A quote left open runs to the end of the input: the rest of the file is that record.
      if (err?.code === "CSV_QUOTE_NOT_CLOSED") {
        const end = positionAt(parser.received, parser.lineAt(parser.received))
        const pending = parser.pendingRecord()
        pendingErrors.push({
          line: end.line,
          message,
          raw: { text: pending.text, startLine: pending.startLine + lineOffset },
          end
        })
      } else {
        const end = positionAt(parser.info.bytes, parser.lineAt(parser.info.bytes))
        pendingErrors.push({ line: end.line, message, end })
      }
      return undefined
    }
  }
  const parser = exactLookahead(new LineTrackingParser(parserOptions, (fields, line, bytes) => {
    const end = positionAt(bytes, line)
    return {
      fields: decodeFields(fields, encoding),
      line: end.line,
      end,
      errorsBefore: pendingErrors.length === 0 ? NO_ERRORS : pendingErrors.splice(0)
    }
  }))
  async function* transcoded(): AsyncGenerator<Buffer> {
    const transcode = encoding.makeTranscoder()
    for await (const chunk of data.chunks) {
      const out = transcode(chunk)
      offsets.note(out)
      yield out
    }
  }
  let failure: unknown
  pipeline(Readable.from(transcoded(), { objectMode: false }), parser, (error) => {
    if (error) failure = error
  })
  try {
    for (;;) {
      const batch: Array<ParsedRecord> = []
      while (batch.length < READ_BATCH) {
        const r = parser.read() as ParsedRecord | null
        if (r === null) break
        batch.push(r)
      }
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
    if (pendingErrors.length > 0) {
      yield [{ fields: { ok: true, values: [] }, line: -1, end: pendingErrors.at(-1)!.end, errorsBefore: pendingErrors.splice(0) }]
    }
  } finally {
    parser.destroy()
  }
}

const decodeFields = (fields: ReadonlyArray<Buffer>, encoding: TextEncoding): DecodedFields => {
  if (!encoding.needsCheck) return { ok: true, values: fields.map((f) => f.toString("utf8")) }
  const values: Array<string> = []
  for (const f of fields) {
    const s = decodeChecked(f)
    if (s === undefined) return { ok: false, lossy: fields.map(decodeLossy) }
    values.push(s)
  }
  return { ok: true, values }
}

/** Where a read starts: from the top, or after `items` items at `position`. */
type Start = SourceRestart | undefined

const makeInstance = (options: CsvOptions, schema: SourceInstance["schema"], encoding: TextEncoding): SourceInstance => {
  let headers: Headers | undefined
  const path = options.path
  const normalize = normalizes(options)
  const onBom = bomWarning(PLUGIN, path, encoding)
  const headerOf = (record: ParsedRecord): Headers => {
    const decoded = record.fields
    if (!decoded.ok) throw runError(path, `the header (line ${record.line}) is not valid ${encoding.name} text`)
    return buildHeaders(path, decoded.values, options, normalize)
  }
  /** The header at the top of the file, or undefined when the file has no record. */
  const readHeader = async (): Promise<Headers | undefined> => {
    for await (const records of parseRecords(path, options, encoding, undefined, onBom)) {
      const first = records.find((r) => r.line >= 0)
      if (first !== undefined) return headerOf(first)
    }
    return undefined
  }
  async function* items(start: Start): AsyncGenerator<ReadonlyArray<SourceItem>> {
    headers = undefined
    let current: Headers | undefined = options.columns !== undefined
      ? buildHeaders(path, options.columns, options, normalize)
      : undefined
    if (start !== undefined && current === undefined) {
      current = await readHeader()
      // No header: the items read before were all parse errors, which end the file.
      if (current === undefined) return
    }
    headers = current
    // Every item counts as a row, so the row number is the number of items so far.
    let rowNumber = start?.items ?? 0
    const invalid = (raw: Row, error: string, position: SourcePosition): SourceItem => ({
      _tag: "Invalid",
      raw,
      error,
      position
    })
    for await (const records of parseRecords(path, options, encoding, start?.position, onBom)) {
      const batch: Array<SourceItem> = []
      for (const record of records) {
        for (const e of record.errorsBefore) {
          rowNumber++
          if (e.raw === undefined) {
            batch.push(invalid(
              { __raw_line__: UNPARSEABLE_LINE, __line_number__: e.line, __row_number__: rowNumber },
              `CSV parse error at line ${e.line}: ${e.message}`,
              e.end
            ))
          } else {
            batch.push(invalid(
              rawPayload({}, "__raw_line__", e.raw.text, { __line_number__: e.line, __row_number__: rowNumber }),
              `CSV parse error at line ${e.line}: a quoted field in the record starting at line ${e.raw.startLine} is never closed ` +
                `(the file ends inside it); the rest of the file is kept as that record's raw text`,
              e.end
            ))
          }
        }
        if (record.line < 0) continue
        if (current === undefined) {
          current = headerOf(record)
          headers = current
          continue
        }
        rowNumber++
        const decoded = record.fields
        const values = decoded.ok ? decoded.values : decoded.lossy
        const names = current.names
        if (values.length !== names.length) {
          batch.push(invalid(
            { __raw_line__: values.join(options.delimiter), __line_number__: record.line, __row_number__: rowNumber },
            `line ${record.line}: expected ${names.length} values (one per column), got ${values.length}`,
            record.end
          ))
        } else if (!decoded.ok) {
          batch.push(invalid(
            { __raw_line__: values.join(options.delimiter), __line_number__: record.line, __row_number__: rowNumber },
            `line ${record.line}: not valid ${encoding.name} text`,
            record.end
          ))
        } else {
          const raw: Record<string, unknown> = {}
          for (let i = 0; i < names.length; i++) putField(raw, names[i]!, values[i])
          const r = coerceSourceRow(schema, raw)
          batch.push(
            r.ok
              ? { _tag: "Valid", row: r.row, position: record.end }
              : { _tag: "Invalid", raw, error: r.error, fieldErrors: r.fieldErrors, position: record.end }
          )
        }
      }
      // What the parser had ready goes on now: the next records may be slow to come.
      if (batch.length > 0) yield batch
    }
  }
  const read = streamBatches(PLUGIN, () => items(undefined))
  return {
    plugin: PLUGIN,
    onValidationFailure: options.on_validation_failure,
    schema,
    read,
    readFrom: (at) => (at.items === 0 ? read : streamBatches(PLUGIN, () => items(at))),
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
      if (options.columns !== undefined && options.normalize_fields === true) {
        return yield* configError("normalize_fields", true, "normalize_fields cannot be combined with columns (a file with columns has no header to normalise)")
      }
      if (options.field_mapping !== undefined && options.columns === undefined && options.normalize_fields === false) {
        return yield* configError("field_mapping", options.field_mapping, "field_mapping renames normalised headers, so it cannot be combined with normalize_fields: false")
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
