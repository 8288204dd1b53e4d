/**
 * Python's text codecs for reading files: `utf-8`, `utf-8-sig`, `latin-1`, `cp1252`.
 *
 * Every decoder turns its input into UTF-8 bytes before parsing, so a parser can split
 * on ASCII bytes. Bytes Python would refuse to decode reach the parser as bytes that
 * are not valid UTF-8: `utf-8` input is passed on unchanged, and a byte `cp1252` leaves
 * undefined is passed on as itself (a lone continuation byte). Such encodings are
 * checked value by value afterwards (`needsCheck`), so a byte that cannot be decoded
 * affects only the row (or line) that holds it, as a `UnicodeDecodeError` would.
 */
import { Buffer, isUtf8 } from "node:buffer"

export interface TextEncoding {
  /** The canonical name. */
  readonly name: "utf-8" | "utf-8-sig" | "latin-1" | "cp1252"
  /** True when the bytes reaching the parser may be invalid UTF-8 and must be checked. */
  readonly needsCheck: boolean
  /** A leading UTF-8 byte order mark is removed (never part of the data). */
  readonly stripBom: boolean
  /**
   * The encoding does not announce a byte order mark (`utf-8`): Python would decode
   * one as the character U+FEFF at the start of the data. The sources remove it all
   * the same, and warn that `utf-8-sig` says so.
   */
  readonly unexpectedBom: boolean
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

/**
 * The bytes cp1252 leaves undefined, as the WHATWG windows-1252 decoder returns them
 * (the C1 control of the same number). No defined byte decodes to one of these.
 */
const CP1252_UNDEFINED = /[\x81\x8d\x8f\x90\x9d]/g

const cp1252Transcoder = (): (chunk: Buffer) => Buffer => {
  const decoder = new TextDecoder("windows-1252")
  return (chunk) => {
    const text = decoder.decode(chunk, { stream: true })
    const parts: Array<Buffer> = []
    let last = 0
    for (const m of text.matchAll(CP1252_UNDEFINED)) {
      parts.push(Buffer.from(text.slice(last, m.index), "utf8"), Buffer.of(m[0].charCodeAt(0)))
      last = m.index + 1
    }
    if (last === 0) return Buffer.from(text, "utf8")
    parts.push(Buffer.from(text.slice(last), "utf8"))
    return Buffer.concat(parts)
  }
}

export const resolveEncoding = (label: string): TextEncoding | undefined => {
  const name = ENCODING_ALIASES[label.trim().toLowerCase()]
  switch (name) {
    case undefined:
      return undefined
    case "utf-8":
    case "utf-8-sig":
      return { name, needsCheck: true, stripBom: true, unexpectedBom: name === "utf-8", makeTranscoder: () => (chunk) => chunk }
    case "latin-1":
      return {
        name,
        needsCheck: false,
        stripBom: false,
        unexpectedBom: false,
        makeTranscoder: () => (chunk) => Buffer.from(chunk.toString("latin1"), "utf8")
      }
    case "cp1252":
      return { name, needsCheck: true, stripBom: false, unexpectedBom: false, makeTranscoder: cp1252Transcoder }
  }
}

/** Decodes bytes that reached the parser; `undefined` when they are not valid UTF-8. */
export const decodeChecked = (bytes: Buffer): string | undefined => (isUtf8(bytes) ? bytes.toString("utf8") : undefined)

/** Decodes with U+FFFD for bad sequences (for quoting a bad line in an error payload). */
export const decodeLossy = (bytes: Buffer): string => bytes.toString("utf8")
