/**
 * Python's whitespace, as regular-expression class bodies (use them as `[${...}]`)
 * and the strip helpers built on them.
 *
 * Python has two sets that differ only in U+001C–U+001F (the information separators):
 * - `str.isspace()` counts them; it is the set of `str.strip()`, `str.split()` and
 *   `re`'s `\s` on text;
 * - `int()` and `float()` map non-ASCII isspace characters to spaces but keep ASCII
 *   as is, then strip only ASCII whitespace, so U+001C–U+001F are not stripped
 *   (`int('\x1c5')` is a ValueError). The result is the Unicode White_Space property,
 *   which is also what pydantic's lax number parsing trims.
 */

/** ASCII whitespace: `\t \n \v \f \r` and space (`re`'s `\s` under the `(?a)` flag). */
export const ASCII_WHITESPACE = "\\t\\n\\v\\f\\r "

const NON_ASCII_WHITESPACE = "\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"

/** The Unicode White_Space property: what `int()`/`float()` strip around a number. */
export const WHITE_SPACE = `${ASCII_WHITESPACE}${NON_ASCII_WHITESPACE}`

/** Python's `str.isspace()` set (also `re`'s `\s` on text). */
export const PY_WHITESPACE = `${ASCII_WHITESPACE}\\x1c-\\x1f${NON_ASCII_WHITESPACE}`

const edges = (set: string): RegExp => new RegExp(`^[${set}]+|[${set}]+$`, "g")
const PY_STRIP = edges(PY_WHITESPACE)
const NUMBER_STRIP = edges(WHITE_SPACE)

/** Python's `str.strip()` with no argument. */
export const pyStrip = (s: string): string => s.replace(PY_STRIP, "")

/** Strips White_Space from both ends, as `int()`/`float()` do before parsing a number. */
export const stripNumberSpace = (s: string): string => s.replace(NUMBER_STRIP, "")
