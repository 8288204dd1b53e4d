/**
 * The limits on what a source reads into one row, and the raw text a quarantined row
 * keeps when its input could not become a row (a broken JSON value, a CSV quote that
 * never closes, a truncated array).
 */

export const INPUT_LIMITS = {
  /**
   * Levels of nested arrays and objects in one JSON row (the row itself is level 1;
   * the array of a JSON array file, and the root object around a `data_key` list, do
   * not count). Deeper input is quarantined, as recursive code further on could not
   * handle it.
   */
  maxJsonDepth: 1000,
  /**
   * Digits of one JSON integer literal (Python's limit for int/str conversion).
   * Longer ones are quarantined.
   */
  maxIntegerDigits: 4300,
  /**
   * Bytes of raw input text (as UTF-8) kept in a quarantined row; longer text is cut
   * at a character boundary and the row says so (`__raw_truncated__`, `__raw_bytes__`).
   */
  rawTextBytes: 65_536
} as const

/** Raw input kept for a quarantined row. */
export interface RawText {
  readonly text: string
  /** Bytes of the whole raw input (UTF-8). */
  readonly bytes: number
  readonly truncated: boolean
}

/** The first `limit` bytes of UTF-8 `bytes` as text (U+FFFD for bad sequences), cut at a character boundary. */
export const rawTextOfBytes = (bytes: Uint8Array, limit: number = INPUT_LIMITS.rawTextBytes): RawText => {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buffer.length <= limit) return { text: buffer.toString("utf8"), bytes: buffer.length, truncated: false }
  let end = limit
  // Back up to the first byte of a character (continuation bytes are 10xxxxxx), at most 3 bytes.
  for (let i = 0; i < 3 && end > 0 && (buffer[end]! & 0xc0) === 0x80; i++) end--
  return { text: buffer.subarray(0, end).toString("utf8"), bytes: buffer.length, truncated: true }
}

/** Like `rawTextOfBytes`, for text already decoded. */
export const rawTextOf = (text: string, limit: number = INPUT_LIMITS.rawTextBytes): RawText => {
  // A UTF-16 code unit is at most 3 UTF-8 bytes: short text needs no measuring.
  if (text.length * 3 <= limit) return { text, bytes: Buffer.byteLength(text, "utf8"), truncated: false }
  const bytes = Buffer.byteLength(text, "utf8")
  if (bytes <= limit) return { text, bytes, truncated: false }
  return rawTextOfBytes(Buffer.from(text, "utf8"), limit)
}

/**
 * A quarantine payload: `head` first, then `key: text`, then `tail`, and finally
 * `__raw_truncated__: true` and `__raw_bytes__` (the whole input's length) when the
 * text was cut.
 */
export const rawPayload = (
  head: Record<string, unknown>,
  key: string,
  raw: RawText,
  tail: Record<string, unknown> = {}
): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...head, [key]: raw.text, ...tail }
  if (raw.truncated) {
    out["__raw_truncated__"] = true
    out["__raw_bytes__"] = raw.bytes
  }
  return out
}
