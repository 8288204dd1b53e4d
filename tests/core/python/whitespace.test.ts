import { describe, expect, it } from "vitest"
import { ASCII_WHITESPACE, PY_WHITESPACE, pyStrip, stripNumberSpace, WHITE_SPACE } from "../../../src/core/python/whitespace.js"

/** Every code point for which Python 3's `str.isspace()` is true. */
const PYTHON_ISSPACE = [
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
  0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000
]

const members = (set: string): Array<number> => {
  const re = new RegExp(`^[${set}]$`, "u")
  const out: Array<number> = []
  for (let cp = 0; cp <= 0x10ffff; cp++) if (re.test(String.fromCodePoint(cp))) out.push(cp)
  return out
}

describe("Python whitespace", () => {
  it("PY_WHITESPACE is exactly str.isspace()", () => {
    expect(members(PY_WHITESPACE)).toEqual(PYTHON_ISSPACE)
  })

  it("WHITE_SPACE is the Unicode White_Space property: isspace without U+001C–U+001F", () => {
    const whiteSpace = members("\\p{White_Space}")
    expect(members(WHITE_SPACE)).toEqual(whiteSpace)
    expect(whiteSpace).toEqual(PYTHON_ISSPACE.filter((cp) => cp < 0x1c || cp > 0x1f))
  })

  it("ASCII_WHITESPACE is re's \\s under (?a)", () => {
    expect(members(ASCII_WHITESPACE)).toEqual([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20])
  })

  it("pyStrip is str.strip(): the separators U+001C–U+001F are stripped too", () => {
    expect(pyStrip("\x1c\u3000 a b\t\x85\n")).toBe("a b")
    expect(pyStrip("\u200ba\u200b")).toBe("\u200ba\u200b")
    expect(pyStrip("")).toBe("")
  })

  it("stripNumberSpace is what int()/float() strip: not the separators", () => {
    expect(stripNumberSpace("\u3000 5\xa0\n")).toBe("5")
    expect(stripNumberSpace("\x1c5\x1f")).toBe("\x1c5\x1f")
  })
})
