/**
 * Pieces shared by the file sources: text encodings, opening files, splitting lines
 * on raw bytes, and turning an async generator of item batches into a `Stream`.
 */
import { isUtf8 } from "node:buffer"
import type { FileHandle } from "node:fs/promises"
import { open } from "node:fs/promises"
import { Schema, Stream } from "effect"
import { Destination } from "../options.js"
import type { SourceItem } from "../protocol.js"
import { PluginRunError } from "../protocol.js"

// ---------------------------------------------------------------------------
// Encodings

/**
 * How a file's bytes become text. Every decoder turns the input into UTF-8 bytes
 * before parsing, so a parser can split on ASCII bytes; `utf-8` input is passed on
 * unchanged and each value is checked afterwards, so a bad byte sequence affects only
 * the row (or line) that holds it.
 */
export interface TextEncoding {
  /** The canonical name. */
  readonly name: "utf-8" | "utf-8-sig" | "latin-1" | "cp1252"
  /** True when the bytes reaching the parser may be invalid UTF-8 and must be checked. */
  readonly needsCheck: boolean
  readonly stripBom: boolean
  /** A fresh, stateful converter from input chunks to UTF-8 bytes. */
  readonly makeTranscoder: () => (chunk: Buffer) => Buffer
}

const ENCODING_ALIASES: Record<string, TextEncoding["name"]> = {
  "utf-8": "utf-8",
  "utf8": "utf-8",
  "utf_8": "utf-8",
  "utf-8-sig": "utf-8-sig",
  "utf_8_sig": "utf-8-sig",
  "utf8-sig": "utf-8-sig",
  "latin-1": "latin-1",
  "latin1": "latin-1",
  "latin_1": "latin-1",
  "iso-8859-1": "latin-1",
  "iso8859-1": "latin-1",
  "iso-8859-1:1987": "latin-1",
  "cp1252": "cp1252",
  "windows-1252": "cp1252"
}

export const SUPPORTED_ENCODINGS = "utf-8, utf-8-sig, latin-1 (latin1, iso-8859-1), cp1252 (windows-1252)"

export const resolveEncoding = (label: string): TextEncoding | undefined => {
  const name = ENCODING_ALIASES[label.trim().toLowerCase()]
  switch (name) {
    case undefined:
      return undefined
    case "utf-8":
    case "utf-8-sig":
      return { name, needsCheck: true, stripBom: name === "utf-8-sig", makeTranscoder: () => (chunk) => chunk }
    case "latin-1":
      return {
        name,
        needsCheck: false,
        stripBom: false,
        makeTranscoder: () => (chunk) => Buffer.from(chunk.toString("latin1"), "utf8")
      }
    case "cp1252":
      return {
        name,
        needsCheck: false,
        stripBom: false,
        makeTranscoder: () => {
          const decoder = new TextDecoder("windows-1252")
          return (chunk) => Buffer.from(decoder.decode(chunk, { stream: true }), "utf8")
        }
      }
  }
}

export const EncodingOption = Schema.String.pipe(
  Schema.filter((s) =>
    resolveEncoding(s) !== undefined || `unsupported encoding '${s}'; supported: ${SUPPORTED_ENCODINGS}`
  ),
  Schema.annotations({ title: `an encoding (${SUPPORTED_ENCODINGS})` })
)

/** Decodes bytes that reached the parser; `undefined` when they are not valid UTF-8. */
export const decodeChecked = (bytes: Buffer): string | undefined => (isUtf8(bytes) ? bytes.toString("utf8") : undefined)

/** Decodes with U+FFFD for bad sequences (for quoting a bad line in an error payload). */
export const decodeLossy = (bytes: Buffer): string => bytes.toString("utf8")

// ---------------------------------------------------------------------------
// Options shared by sources

export const SourceCommonFields = {
  path: Schema.String.pipe(
    Schema.filter((s) => s.length > 0 || "expected a file path, got an empty string"),
    Schema.annotations({ title: "a file path" })
  ),
  schema: Schema.Unknown,
  on_validation_failure: Destination
}

// ---------------------------------------------------------------------------
// Files

const describeFsError = (error: unknown): string => {
  const code = (error as { code?: unknown } | null)?.code
  switch (code) {
    case "ENOENT":
      return "file not found"
    case "EACCES":
    case "EPERM":
      return "permission denied"
    case "EISDIR":
      return "is a directory"
    default:
      return error instanceof Error ? error.message : String(error)
  }
}

/** A PluginRunError for an I/O failure on `path`. */
export const fileError = (plugin: string, path: string, error: unknown): PluginRunError =>
  error instanceof PluginRunError
    ? error
    : new PluginRunError({ plugin, message: `cannot read '${path}': ${describeFsError(error)}`, cause: error })

/** Opens `path` (relative to the working directory) for reading, refusing directories. */
export const openForReading = async (plugin: string, path: string): Promise<FileHandle> => {
  let handle: FileHandle
  try {
    handle = await open(path, "r")
  } catch (error) {
    throw fileError(plugin, path, error)
  }
  try {
    const stat = await handle.stat()
    if (stat.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" })
  } catch (error) {
    await handle.close().catch(() => undefined)
    throw fileError(plugin, path, error)
  }
  return handle
}

/**
 * Reads `path` chunk by chunk. The file is closed when the consumer stops early or
 * reading ends.
 */
export async function* readChunks(plugin: string, path: string): AsyncGenerator<Buffer> {
  const handle = await openForReading(plugin, path)
  try {
    const stream = handle.createReadStream({ highWaterMark: 64 * 1024, autoClose: false })
    try {
      for await (const chunk of stream) yield chunk as Buffer
    } catch (error) {
      throw fileError(plugin, path, error)
    } finally {
      stream.destroy()
    }
  } finally {
    await handle.close().catch(() => undefined)
  }
}

/** Removes a leading UTF-8 byte order mark from a chunk sequence. */
export async function* stripUtf8Bom(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let head = Buffer.alloc(0)
  let decided = false
  for await (const chunk of chunks) {
    if (decided) {
      yield chunk
      continue
    }
    head = Buffer.concat([head, chunk])
    if (head.length < 3) continue
    decided = true
    yield head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? head.subarray(3) : head
  }
  if (!decided && head.length > 0) {
    const isBomPrefix = head.every((b, i) => b === [0xef, 0xbb, 0xbf][i])
    if (!isBomPrefix) yield head
  }
}

export interface RawLine {
  /** The line's bytes without its terminator. */
  readonly bytes: Buffer
  /** 1-based physical line number. */
  readonly lineNumber: number
}

/**
 * Splits bytes into physical lines. `\n`, `\r\n` and a lone `\r` all end a line (as
 * text files are read in universal-newline mode). A final line without terminator is
 * a line; an empty file has none.
 */
export async function* splitLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<Array<RawLine>> {
  let rest: Buffer = Buffer.alloc(0)
  let lineNumber = 0
  let pendingCr = false
  for await (const input of chunks) {
    let chunk = input
    if (pendingCr && chunk.length > 0) {
      pendingCr = false
      if (chunk[0] === 0x0a) chunk = chunk.subarray(1)
    }
    const out: Array<RawLine> = []
    let start = 0
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]
      if (b !== 0x0a && b !== 0x0d) continue
      const piece = chunk.subarray(start, i)
      const bytes = rest.length > 0 ? Buffer.concat([rest, piece]) : Buffer.from(piece)
      rest = Buffer.alloc(0)
      out.push({ bytes, lineNumber: ++lineNumber })
      if (b === 0x0d) {
        if (i + 1 < chunk.length) {
          if (chunk[i + 1] === 0x0a) i++
        } else {
          pendingCr = true
        }
      }
      start = i + 1
    }
    if (start < chunk.length) rest = rest.length > 0 ? Buffer.concat([rest, chunk.subarray(start)]) : Buffer.from(chunk.subarray(start))
    if (out.length > 0) yield out
  }
  if (rest.length > 0) yield [{ bytes: rest, lineNumber: ++lineNumber }]
}

/**
 * Drops the first `count` physical lines of a byte stream (before any parsing),
 * passing the remaining bytes through untouched.
 */
export async function* skipLines(chunks: AsyncIterable<Buffer>, count: number): AsyncGenerator<Buffer> {
  let remaining = count
  let pendingCr = false
  for await (const input of chunks) {
    let chunk = input
    if (pendingCr && chunk.length > 0) {
      pendingCr = false
      if (chunk[0] === 0x0a) chunk = chunk.subarray(1)
    }
    if (remaining === 0) {
      if (chunk.length > 0) yield chunk
      continue
    }
    let i = 0
    while (remaining > 0 && i < chunk.length) {
      const b = chunk[i]
      i++
      if (b === 0x0a) remaining--
      else if (b === 0x0d) {
        remaining--
        if (i < chunk.length) {
          if (chunk[i] === 0x0a) i++
        } else {
          pendingCr = true
        }
      }
    }
    if (remaining === 0 && i < chunk.length) yield chunk.subarray(i)
  }
}

// ---------------------------------------------------------------------------
// Streams

/**
 * A stream over batches produced by `make` (called afresh for every run of the
 * stream). Errors become PluginRunErrors naming the plugin.
 */
export const streamBatches = (
  plugin: string,
  make: () => AsyncIterator<ReadonlyArray<SourceItem>>
): Stream.Stream<SourceItem, PluginRunError> =>
  Stream.fromAsyncIterable(
    { [Symbol.asyncIterator]: make },
    (error) =>
      error instanceof PluginRunError
        ? error
        : new PluginRunError({
          plugin,
          message: `reading failed: ${error instanceof Error ? error.message : String(error)}`,
          cause: error
        })
  ).pipe(Stream.mapConcat((batch) => batch))

/** Python's `str.strip()` whitespace. */
const PY_WS = "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
const PY_STRIP_RE = new RegExp(`^${PY_WS}+|${PY_WS}+$`, "g")
export const pyStrip = (s: string): string => s.replace(PY_STRIP_RE, "")
