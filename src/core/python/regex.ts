/**
 * Python `re` patterns → JavaScript `RegExp` (always with the `u` flag, so indices
 * and `.` work on code points).
 *
 * Translated so matching behaves like Python's `re.search` on `str`:
 * - leading global inline flags `(?aimsux)` (`a`: ASCII-only classes, `i`, `m`, `s`,
 *   `x`: verbose — whitespace and `#` comments outside classes ignored, `u`: default);
 * - `\A`, `\Z`; `^`, `$` and `.` with Python's newline rules (`$` also matches
 *   before a final `\n`; only `\n` is a line break);
 * - Unicode `\w \W \d \D \s \S \b \B` as Python defines them (JS ones are ASCII);
 * - named groups `(?P<name>…)`, `(?P=name)`, comments `(?#…)`;
 * - Python escapes (`\a`, octal, `\U0001F600`, escaped punctuation), `{,n}`, a `{`
 *   that is not a quantifier, a leading `]` in a class.
 * Not translatable (rejected with a message): scoped flags `(?i:…)`, flags after the
 * start, conditionals `(?(1)…)`, atomic groups, possessive quantifiers, `\N{…}`,
 * the `L` flag.
 */
import { ASCII_WHITESPACE, PY_WHITESPACE } from "./whitespace.js"

export type PyRegexResult =
  | { readonly ok: true; readonly regex: RegExp; readonly source: string; readonly flags: string }
  | { readonly ok: false; readonly message: string }

const WORD_U = "\\p{L}\\p{N}_"
const WORD_A = "A-Za-z0-9_"
const SPACE_U = PY_WHITESPACE
const SPACE_A = ASCII_WHITESPACE

class Untranslatable extends Error {}

const SYNTAX_CHARS = new Set(Array.from("^$\\.*+?()[]{}|/"))

/** A literal code point, safe both inside and outside a class under the `u` flag. */
const literal = (cp: number, inClass = false): string => {
  const ch = String.fromCodePoint(cp)
  if (SYNTAX_CHARS.has(ch) || (inClass && ch === "-")) return `\\${ch}`
  if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, "0")}`
  return ch
}

interface Flags {
  ascii: boolean
  ignoreCase: boolean
  multiline: boolean
  dotAll: boolean
  verbose: boolean
}

const parseLeadingFlags = (pattern: string): { flags: Flags; rest: number } => {
  const flags: Flags = { ascii: false, ignoreCase: false, multiline: false, dotAll: false, verbose: false }
  let i = 0
  for (;;) {
    const m = /^\(\?([a-zA-Z]+)\)/.exec(pattern.slice(i))
    if (m === null) break
    for (const f of m[1]!) {
      switch (f) {
        case "a":
          flags.ascii = true
          break
        case "i":
          flags.ignoreCase = true
          break
        case "m":
          flags.multiline = true
          break
        case "s":
          flags.dotAll = true
          break
        case "x":
          flags.verbose = true
          break
        case "u":
          break
        case "L":
          throw new Untranslatable("the L (locale) flag is not supported for text patterns")
        default:
          throw new Untranslatable(`unknown flag '${f}'`)
      }
    }
    i += m[0].length
  }
  return { flags, rest: i }
}

/** Translates a Python pattern; throws Untranslatable / SyntaxError-like messages. */
const translate = (pattern: string): { source: string; flags: string } => {
  const { flags, rest } = parseLeadingFlags(pattern)
  const cps = Array.from(pattern.slice(rest)).map((c) => c.codePointAt(0)!)
  const word = flags.ascii ? WORD_A : WORD_U
  const space = flags.ascii ? SPACE_A : SPACE_U
  const digit = flags.ascii ? "0-9" : "\\p{Nd}"
  const W = `[${word}]`
  const notW = `[^${word}]`
  const wordBoundary = `(?:(?<=${W})(?!${W})|(?<!${W})(?=${W}))`
  const notWordBoundary = `(?:(?<=${W})(?=${W})|(?<!${W})(?!${W}))`
  let i = 0
  let out = ""
  const peek = (k = 0): number | undefined => cps[i + k]
  const ch = (k = 0): string => {
    const c = cps[i + k]
    return c === undefined ? "" : String.fromCodePoint(c)
  }
  const fail = (msg: string): never => {
    throw new Untranslatable(msg)
  }

  /** Reads an escape after `\`; returns the class-item or atom text. */
  const escape = (inClass: boolean): { text: string; negated?: string } => {
    const c = ch()
    if (c === "") fail("pattern ends with a lone backslash")
    i++
    switch (c) {
      case "d":
        return { text: inClass ? digit : `[${digit}]` }
      case "D":
        if (!flags.ascii) return { text: "\\P{Nd}" }
        return inClass ? { text: "", negated: "0-9" } : { text: "[^0-9]" }
      case "w":
        return { text: inClass ? word : W }
      case "W":
        return inClass ? { text: "", negated: word } : { text: notW }
      case "s":
        return { text: inClass ? space : `[${space}]` }
      case "S":
        return inClass ? { text: "", negated: space } : { text: `[^${space}]` }
      case "b":
        return { text: inClass ? "\\x08" : wordBoundary }
      case "B":
        if (inClass) fail("bad escape \\B in a character class")
        return { text: notWordBoundary }
      case "A":
        if (inClass) fail("bad escape \\A in a character class")
        return { text: "(?<![\\s\\S])" }
      case "Z":
        if (inClass) fail("bad escape \\Z in a character class")
        return { text: "(?![\\s\\S])" }
      case "a":
        return { text: "\\x07" }
      case "f":
        return { text: "\\f" }
      case "n":
        return { text: "\\n" }
      case "r":
        return { text: "\\r" }
      case "t":
        return { text: "\\t" }
      case "v":
        return { text: "\\v" }
      case "x": {
        const hex = String.fromCodePoint(...cps.slice(i, i + 2))
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) fail("incomplete escape \\x")
        i += 2
        return { text: literal(parseInt(hex, 16), inClass) }
      }
      case "u":
      case "U": {
        const n = c === "u" ? 4 : 8
        const hex = String.fromCodePoint(...cps.slice(i, i + n))
        if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) fail(`incomplete escape \\${c}`)
        i += n
        const cp = parseInt(hex, 16)
        if (cp > 0x10ffff) fail(`bad escape \\${c}${hex}`)
        return { text: literal(cp, inClass) }
      }
      case "N":
        return fail("named character escapes \\N{...} are not supported")
      default:
        break
    }
    if (c >= "0" && c <= "9") {
      // Python: \0, \0oo or three octal digits are octal escapes; otherwise a backreference.
      let digits = c
      while (digits.length < 3 && /[0-9]/.test(ch())) digits += ch(), i++
      const isOctal = c === "0" || (digits.length === 3 && /^[0-7]{3}$/.test(digits))
      if (isOctal) {
        const oct = c === "0" ? digits.match(/^[0-7]+/)![0] : digits
        i -= digits.length - oct.length
        return { text: literal(parseInt(oct, 8), inClass) }
      }
      if (inClass) fail(`bad escape \\${digits} in a character class`)
      // Backreference: Python takes at most two digits.
      if (digits.length === 3) {
        i--
        digits = digits.slice(0, 2)
      }
      return { text: `(?:\\${digits})` }
    }
    if (/[A-Za-z]/.test(c)) fail(`bad escape \\${c}`)
    return { text: literal(c.codePointAt(0)!, inClass) }
  }

  const readClass = (): string => {
    // i points just after '['
    let negate = false
    if (ch() === "^") {
      negate = true
      i++
    }
    let items = ""
    const negatedParts: Array<string> = []
    let first = true
    for (;;) {
      const c = peek()
      if (c === undefined) fail("unterminated character set")
      const s = ch()
      if (s === "]" && !first) {
        i++
        break
      }
      first = false
      if (s === "\\") {
        i++
        const e = escape(true)
        if (e.negated !== undefined) negatedParts.push(e.negated)
        else items += e.text
        continue
      }
      if (s === "-") {
        // A dash at either end is literal; in the middle it is a range (kept as is).
        const prevIsStart = items === "" && negatedParts.length === 0
        const nextIsEnd = ch(1) === "]"
        items += prevIsStart || nextIsEnd ? "\\-" : "-"
        i++
        continue
      }
      if (s === "[" || s === "]" || s === "/" || s === "^") {
        items += `\\${s}`
        i++
        continue
      }
      items += literal(c!, true)
      i++
    }
    if (negatedParts.length === 0) {
      if (items === "") return negate ? "[\\s\\S]" : "[]"
      return `[${negate ? "^" : ""}${items}]`
    }
    const alternatives = [...(items === "" ? [] : [`[${items}]`]), ...negatedParts.map((p) => `[^${p}]`)]
    const union = `(?:${alternatives.join("|")})`
    return negate ? `(?:(?!${union})[\\s\\S])` : union
  }

  /** After an atom: copy a quantifier if present (translating Python forms). */
  const quantifier = (): void => {
    const c = ch()
    let q = ""
    if (c === "*" || c === "+" || c === "?") {
      q = c
      i++
    } else if (c === "{") {
      const m = /^\{(\d*)(,?)(\d*)\}/.exec(String.fromCodePoint(...cps.slice(i, i + 40)))
      if (m === null || (m[1] === "" && m[2] === "" )) return
      if (m[1] === "" && m[3] === "" ) return
      q = `{${m[1] === "" ? "0" : m[1]}${m[2]}${m[3]}}`
      i += Array.from(m[0]).length
    } else {
      return
    }
    if (ch() === "?") {
      q += "?"
      i++
    } else if (ch() === "+") {
      fail("possessive quantifiers are not supported")
    }
    out += q
    const next = ch()
    if (next === "*" || next === "+" || next === "?") fail("multiple repeat")
  }

  const skipVerbose = (): void => {
    if (!flags.verbose) return
    for (;;) {
      const s = ch()
      if (s === " " || s === "\t" || s === "\n" || s === "\r" || s === "\v" || s === "\f") {
        i++
      } else if (s === "#") {
        while (i < cps.length && ch() !== "\n") i++
      } else {
        return
      }
    }
  }

  let depth = 0
  let atomStart = true
  for (;;) {
    skipVerbose()
    if (i >= cps.length) break
    const s = ch()
    let atom: string | undefined
    let quantifiable = true
    switch (s) {
      case "\\": {
        i++
        const e = escape(false)
        atom = e.text
        quantifiable = !["A", "Z", "b", "B"].includes(String.fromCodePoint(cps[i - 1]!))
        break
      }
      case "[":
        i++
        atom = readClass()
        break
      case "(": {
        i++
        if (ch() === "?") {
          const rest = String.fromCodePoint(...cps.slice(i + 1, i + 64))
          if (rest.startsWith("P<")) {
            const m = /^P<([^>]+)>/.exec(rest)
            if (m === null) fail("unterminated group name")
            out += `(?<${m![1]}>`
            i += 1 + Array.from(m![0]).length
          } else if (rest.startsWith("P=")) {
            const m = /^P=([^)]+)\)/.exec(rest)
            if (m === null) fail("unterminated group name")
            i += 1 + Array.from(m![0]).length
            out += `\\k<${m![1]}>`
            quantifier()
            atomStart = false
            continue
          } else if (rest.startsWith("#")) {
            while (i < cps.length && ch() !== ")") i++
            if (i >= cps.length) fail("missing ), unterminated comment")
            i++
            continue
          } else if (rest.startsWith(":") || rest.startsWith("=") || rest.startsWith("!")) {
            out += `(?${rest[0]}`
            i += 2
          } else if (rest.startsWith("<=") || rest.startsWith("<!")) {
            out += `(?${rest.slice(0, 2)}`
            i += 3
          } else if (rest.startsWith(">")) {
            fail("atomic groups (?>...) are not supported")
          } else if (rest.startsWith("(")) {
            fail("conditional groups (?(...)...) are not supported")
          } else if (/^[-a-zA-Z]+[:)]/.test(rest)) {
            fail("inline flags are only supported at the very start of the pattern, and scoped flags (?i:...) not at all")
          } else {
            fail(`unknown extension ?${rest.slice(0, 1)}`)
          }
        } else {
          out += "("
        }
        depth++
        atomStart = true
        continue
      }
      case ")":
        if (depth === 0) fail("unbalanced parenthesis")
        depth--
        out += ")"
        i++
        quantifier()
        atomStart = false
        continue
      case "|":
        out += "|"
        i++
        atomStart = true
        continue
      case ".":
        i++
        atom = flags.dotAll ? "[\\s\\S]" : "[^\\n]"
        break
      case "^":
        i++
        atom = flags.multiline ? "(?:(?<![\\s\\S])|(?<=\\n))" : "(?<![\\s\\S])"
        quantifiable = false
        break
      case "$":
        i++
        atom = flags.multiline ? "(?=\\n|(?![\\s\\S]))" : "(?=\\n?(?![\\s\\S]))"
        quantifiable = false
        break
      case "*":
      case "+":
      case "?":
        fail(atomStart ? "nothing to repeat" : "multiple repeat")
        break
      case "{": {
        const m = /^\{(\d*),?(\d*)\}/.exec(String.fromCodePoint(...cps.slice(i, i + 40)))
        if (m !== null && (m[1] !== "" || m[2] !== "") && atomStart) fail("nothing to repeat")
        i++
        atom = "\\{"
        break
      }
      case "}":
        i++
        atom = "\\}"
        break
      default:
        atom = literal(cps[i]!)
        i++
    }
    out += atom
    atomStart = false
    skipVerbose()
    if (quantifiable) quantifier()
    else if (/^[*+?]$/.test(ch()) || (ch() === "{" && /^\{\d+,?\d*\}|^\{,\d+\}/.test(String.fromCodePoint(...cps.slice(i, i + 40))))) {
      fail("nothing to repeat")
    }
  }
  if (depth !== 0) fail("missing ), unterminated subpattern")
  return { source: out, flags: flags.ignoreCase ? "iu" : "u" }
}

/** Compiles a Python `re` pattern for `search`-style use. */
export const compilePyRegex = (pattern: string): PyRegexResult => {
  try {
    const { flags, source } = translate(pattern)
    return { ok: true, regex: new RegExp(source, flags), source, flags }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    return { ok: false, message }
  }
}
