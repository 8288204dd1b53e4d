/**
 * The csv sink's lines as text: Python's `csv` dialect with minimal quoting. A field is
 * quoted when it holds the quote, the delimiter or a line break (CR or LF), and quotes
 * inside it are doubled; a lone empty field on its line is written `""`; every line
 * ends in CRLF.
 *
 * csv-stringify writes the same text (the tests check the two agree on arbitrary
 * fields and delimiters), but builds several arrays and option objects per field,
 * which was a fifth of everything a pipeline run allocated; this writer builds
 * nothing but the text.
 */

const QUOTE = 34
const LF = 10
const CR = 13

/**
 * Whether `value` holds a multi-character delimiter, or ends in a first part of one (a
 * reader could take that part and the delimiter after it for the delimiter).
 */
const holdsLongDelimiter = (value: string, delimiter: string): boolean =>
  value.includes(delimiter) || (value + delimiter).indexOf(delimiter) < value.length

/** One field of a line. `lone`: the only field on its line. */
export const csvField = (value: string, delimiter: string, lone: boolean): string => {
  if (value === "") return lone ? "\"\"" : ""
  const d = delimiter.length === 1 ? delimiter.charCodeAt(0) : -1
  let quote = false
  let hasQuote = false
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === QUOTE) {
      hasQuote = true
      quote = true
      break
    }
    if (c === d || c === LF || c === CR) quote = true
  }
  if (!quote && d === -1 && delimiter.length > 1) quote = holdsLongDelimiter(value, delimiter)
  if (!quote) return value
  return hasQuote ? `"${value.replaceAll("\"", "\"\"")}"` : `"${value}"`
}

/**
 * `rows` lines of `width` fields each, each ended by CRLF; `cell(i, j)` is the text of
 * field `j` of line `i` (no array per line is built).
 */
export const csvLines = (rows: number, width: number, cell: (i: number, j: number) => string, delimiter: string): string => {
  const lone = width === 1
  let text = ""
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < width; j++) {
      if (j > 0) text += delimiter
      text += csvField(cell(i, j), delimiter, lone)
    }
    text += "\r\n"
  }
  return text
}
