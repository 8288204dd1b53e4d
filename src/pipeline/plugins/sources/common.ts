/**
 * Pieces shared by the file sources: text encodings, opening files, splitting lines
 * on raw bytes, and turning an async generator of item batches into a `Stream`.
 */
import type { FileHandle } from "node:fs/promises"
import { open } from "node:fs/promises"
import { Schema, Stream } from "effect"
import { resolveEncoding, SUPPORTED_ENCODINGS } from "../../../core/python/codecs.js"
import { Destination } from "../options.js"
import type { SourceItem } from "../protocol.js"
import { PluginRunError } from "../protocol.js"

// Python's codecs and whitespace live in core; the sources take them from here.
export {
  decodeChecked,
  decodeLossy,
  resolveEncoding,
  SUPPORTED_ENCODINGS,
  type TextEncoding
} from "../../../core/python/codecs.js"
export { pyStrip } from "../../../core/python/whitespace.js"

// ---------------------------------------------------------------------------
// Encodings

export const EncodingOption = Schema.String.pipe(
  Schema.filter((s) =>
    resolveEncoding(s) !== undefined || `unsupported encoding '${s}'; supported: ${SUPPORTED_ENCODINGS}`
  ),
  Schema.annotations({ title: `an encoding (${SUPPORTED_ENCODINGS})` })
)

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
