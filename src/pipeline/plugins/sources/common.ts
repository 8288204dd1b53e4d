/**
 * Pieces shared by the file sources: text encodings, opening files, splitting lines
 * on raw bytes, and turning an async generator of item batches into a `Stream`.
 */
import type { FileHandle } from "node:fs/promises"
import { open } from "node:fs/promises"
import { Schema, Stream } from "effect"
import { resolveEncoding, SUPPORTED_ENCODINGS } from "../../../core/python/codecs.js"
import type { TextEncoding } from "../../../core/python/codecs.js"
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

/**
 * Warns once per source instance (`warn()`) that a file declared `utf-8` started with
 * a byte order mark, which was removed: Python's `utf-8` codec would have kept it as
 * the character U+FEFF in the first value (a header `\ufeffid`, a JSON line that does
 * not parse). The warning goes to stderr, beside the CLI's other warnings.
 */
export const bomWarning = (plugin: string, path: string, encoding: TextEncoding): (() => void) | undefined => {
  if (!encoding.unexpectedBom) return undefined
  let warned = false
  return () => {
    if (warned) return
    warned = true
    process.stderr.write(
      `warning: ${plugin} source: '${path}' starts with a UTF-8 byte order mark (BOM) although its encoding is ` +
        `'${encoding.name}'; the BOM was removed and is not part of the data. Set encoding: utf-8-sig to declare it.\n`
    )
  }
}

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
 * Reads `path` chunk by chunk, from byte `start` on. The file is closed when the
 * consumer stops early or reading ends. Each chunk is what one read returned, so on a
 * pipe that delivers slowly a chunk is whatever has arrived.
 */
export async function* readChunks(plugin: string, path: string, start = 0): AsyncGenerator<Buffer> {
  const handle = await openForReading(plugin, path)
  try {
    // A start position makes every read positional, which a pipe refuses: only when needed.
    const stream = handle.createReadStream({ highWaterMark: 64 * 1024, autoClose: false, ...(start > 0 ? { start } : {}) })
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

/**
 * The data bytes of a text file, either from the start — a UTF-8 byte order mark
 * removed when `stripBom`, the first `skipRows` physical lines dropped — or from byte
 * `from` on, where such a read left off (nothing is removed then). `origin()` is the
 * file offset of the first data byte, known once the first data chunk has come (before
 * that, and when there is none, the offset reading started at).
 */
export const dataChunks = (
  plugin: string,
  path: string,
  options: {
    readonly stripBom: boolean
    readonly skipRows: number
    readonly from: number | undefined
    /** Called when a byte order mark was removed. */
    readonly onBom?: () => void
  }
): { readonly chunks: AsyncGenerator<Buffer>; readonly origin: () => number } => {
  const start = options.from ?? 0
  let read = 0
  let origin: number | undefined
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of readChunks(plugin, path, start)) {
      read += chunk.length
      yield chunk
    }
  }
  async function* data(): AsyncGenerator<Buffer> {
    const raw = counted()
    const kept = options.from !== undefined
      ? raw
      : skipLines(options.stripBom ? stripUtf8Bom(raw, options.onBom) : raw, options.skipRows)
    for await (const chunk of kept) {
      // The stages before pass every byte they read on, the current chunk's included,
      // except the ones they drop: what was read before this chunk's bytes is the prefix.
      if (origin === undefined) origin = start + read - chunk.length
      yield chunk
    }
  }
  return { chunks: data(), origin: () => origin ?? start }
}

/**
 * Maps offsets in the UTF-8 bytes a transcoder produced back to offsets in the bytes
 * it was given. `note` each output chunk in order as it is produced; `inputOffset`
 * takes offsets at character boundaries, never smaller than the one before.
 */
export interface OffsetMap {
  readonly note: (output: Buffer) => void
  readonly inputOffset: (outputOffset: number) => number
}

/**
 * The offset map for `encoding`: the identity for UTF-8 (passed on unchanged); for the
 * single-byte encodings each input byte became one character of output — a UTF-8
 * sequence, or (cp1252's undefined bytes) the byte itself, a lone continuation byte
 * where a character starts — so input offsets count the characters of the output.
 */
export const offsetMapFor = (encoding: TextEncoding): OffsetMap => {
  if (encoding.name === "utf-8" || encoding.name === "utf-8-sig") return { note: () => undefined, inputOffset: (at) => at }
  const pending: Array<Buffer> = []
  let index = 0
  let output = 0
  let input = 0
  let continuation = 0
  return {
    note: (chunk) => {
      if (chunk.length > 0) pending.push(chunk)
    },
    inputOffset: (at) => {
      while (output < at) {
        const chunk = pending[0]
        if (chunk === undefined) throw new Error(`offset ${at} lies beyond the transcoded input (${output} bytes)`)
        const end = Math.min(chunk.length, index + (at - output))
        for (let i = index; i < end; i++) {
          const b = chunk[i]!
          // ASCII never falls inside a sequence (the output is UTF-8 but for lone bytes).
          if (b < 0x80) input++
          else if (continuation > 0) continuation--
          else {
            input++
            if (b >= 0xc0) continuation = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : 1
          }
        }
        output += end - index
        index = end
        if (index === chunk.length) {
          pending.shift()
          index = 0
        }
      }
      return input
    }
  }
}

/** Whether `bytes` start with a UTF-8 byte order mark. */
export const startsWithUtf8Bom = (bytes: Uint8Array): boolean => bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf

/** Removes a leading UTF-8 byte order mark from a chunk sequence; `onBom` hears of it. */
export async function* stripUtf8Bom(chunks: AsyncIterable<Buffer>, onBom?: () => void): AsyncGenerator<Buffer> {
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
    if (startsWithUtf8Bom(head)) {
      onBom?.()
      yield head.subarray(3)
    } else {
      yield head
    }
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
  /** Offset just after the line's terminator (`start.offset` plus the bytes before it). */
  readonly end: number
}

/**
 * Splits bytes into physical lines. `\n`, `\r\n` and a lone `\r` all end a line (as
 * text files are read in universal-newline mode). A final line without terminator is
 * a line; an empty file has none. Lines are yielded as each chunk comes, except that
 * a line whose `\r` ends a chunk waits for the next chunk, which may start with its `\n`.
 *
 * `start` continues a split that stopped after a line: the offset of the first byte
 * given and the number of lines before it.
 */
export async function* splitLines(
  chunks: AsyncIterable<Buffer>,
  start: { readonly offset: number; readonly line: number } = { offset: 0, line: 0 }
): AsyncGenerator<Array<RawLine>> {
  let rest: Buffer = Buffer.alloc(0)
  let lineNumber = start.line
  /** Offset of the current chunk's first byte. */
  let base = start.offset
  /** A line ended by a `\r` that ended the last chunk. */
  let held: RawLine | undefined
  for await (const chunk of chunks) {
    if (chunk.length === 0) continue
    const out: Array<RawLine> = []
    let from = 0
    if (held !== undefined) {
      if (chunk[0] === 0x0a) {
        held = { ...held, end: held.end + 1 }
        from = 1
      }
      out.push(held)
      held = undefined
    }
    for (let i = from; i < chunk.length; i++) {
      const b = chunk[i]
      if (b !== 0x0a && b !== 0x0d) continue
      const piece = chunk.subarray(from, i)
      const bytes = rest.length > 0 ? Buffer.concat([rest, piece]) : Buffer.from(piece)
      rest = Buffer.alloc(0)
      if (b === 0x0d && i + 1 === chunk.length) {
        held = { bytes, lineNumber: ++lineNumber, end: base + i + 1 }
      } else {
        if (b === 0x0d && chunk[i + 1] === 0x0a) i++
        out.push({ bytes, lineNumber: ++lineNumber, end: base + i + 1 })
      }
      from = i + 1
    }
    if (from < chunk.length) {
      rest = rest.length > 0 ? Buffer.concat([rest, chunk.subarray(from)]) : Buffer.from(chunk.subarray(from))
    }
    base += chunk.length
    if (out.length > 0) yield out
  }
  if (held !== undefined) yield [held]
  else if (rest.length > 0) yield [{ bytes: rest, lineNumber: ++lineNumber, end: base }]
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
