/**
 * Header normalisation of the CSV source (on unless `normalize_fields: false`), the
 * algorithm of ELSPETH's `normalize_field_name`.
 */
import { isIdentifier, PYTHON_KEYWORDS } from "../options.js"
import { pyStrip } from "./common.js"

/** Anything but a Unicode letter, a Unicode number or `_`. */
const NON_WORD_RUN = /[^\p{L}\p{N}_]+/gu
const STARTS_WITH_DIGIT = /^\p{Nd}/u

/**
 * Maps one header to a field name: NFC → trim → lower-case → runs of non-word
 * characters become `_` → repeated `_` collapse → leading/trailing `_` removed →
 * `_` prefixed before a leading digit → `_` appended to a Python keyword.
 * Returns the name, or an error message when no usable identifier results.
 */
export const normalizeHeader = (header: string): { ok: true; name: string } | { ok: false; message: string } => {
  let s = pyStrip(header.normalize("NFC")).toLowerCase()
  s = s.replace(NON_WORD_RUN, "_").replace(/_+/g, "_").replace(/^_+|_+$/g, "")
  if (STARTS_WITH_DIGIT.test(s)) s = `_${s}`
  if (PYTHON_KEYWORDS.has(s)) s = `${s}_`
  if (s === "") return { ok: false, message: `header '${header}' normalises to an empty name` }
  if (!isIdentifier(s)) return { ok: false, message: `header '${header}' normalises to '${s}', which is not an identifier` }
  return { ok: true, name: s }
}
