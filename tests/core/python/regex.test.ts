import { describe, expect, it } from "vitest"
import { compilePyRegex } from "../../../src/core/python/regex.js"

const search = (pattern: string, text: string): string | null => {
  const r = compilePyRegex(pattern)
  if (!r.ok) throw new Error(`${pattern}: ${r.message}`)
  return r.regex.exec(text)?.[0] ?? null
}

describe("compilePyRegex: translations", () => {
  const cases: Array<[string, string, string | null]> = [
    ["secret", "top secret!", "secret"],
    ["(?i)secret", "TOP SECRET", "SECRET"],
    ["(?i)straße", "STRASSE straße", "straße"],
    ["\\bpass\\w*", "a password!", "password"],
    ["\\bcat\\b", "concatenate", null],
    ["\\bé", "x été", "é"],
    ["\\w+", "café au lait", "café"],
    ["\\W+", "café au", " "],
    ["\\d+", "n° ٣٤", "٣٤"],
    ["(?a)\\d+", "٣٤ 12", "12"],
    ["(?a)\\w+", "éa", "a"],
    ["\\s+", "a\u00a0\u2003b", "\u00a0\u2003"],
    ["\\S+", "  ab ", "ab"],
    ["\\d{3}-\\d{2}-\\d{4}", "SSN 123-45-6789", "123-45-6789"],
    ["(?P<w>ab)(?P=w)", "xxabab", "abab"],
    ["(a)\\1", "aa", "aa"],
    ["(a)\\1+", "aaaa", "aaaa"],
    ["\\Aabc", "abc", "abc"],
    ["\\Aabc", "xabc", null],
    ["abc\\Z", "abc\n", null],
    ["abc$", "abc\n", "abc"],
    ["abc$", "abc\nx", null],
    ["^b", "a\nb", null],
    ["(?m)^b", "a\nb", "b"],
    ["(?m)a$", "a\nb", "a"],
    ["a.c", "a\nc", null],
    ["a.c", "a\rc", "a\rc"],
    ["(?s)a.c", "a\nc", "a\nc"],
    ["(?x) a b  # comment\n c", "abc", "abc"],
    ["(?x)a[ ]b", "a b", "a b"],
    ["(?x)a\\ b", "a b", "a b"],
    ["(?im)^X", "a\nx", "x"],
    ["[]a]+", "]a]", "]a]"],
    ["[^]a]+", "]bc", "bc"],
    ["[\\W\\d]", "a!", "!"],
    ["[^\\W]+", "!é1_", "é1_"],
    ["[^\\s]+", " ab ", "ab"],
    ["[a-c]+", "xbcay", "bca"],
    ["[-a]+", "-a-", "-a-"],
    ["[a-]+", "-a-", "-a-"],
    ["x{,2}y", "xxxy", "xxy"],
    ["a{b", "a{b", "a{b"],
    ["a}", "a}", "a}"],
    ["a{2}", "aaa", "aa"],
    ["a{2,}?", "aaaa", "aa"],
    ["\\-\\,\\:\\#\\ ", "-,:# ", "-,:# "],
    ["\\x41\\101\\0\\u00e9\\U0001F600", "AA\u0000é😀", "AA\u0000é😀"],
    ["\\a\\t", "\u0007\t", "\u0007\t"],
    ["(?#note)ab", "ab", "ab"],
    ["(?:ab)+", "ababx", "abab"],
    ["(?<=@)\\w+", "me@host", "host"],
    ["(?<!x)y", "xyay", "y"],
    ["a(?=b)", "acab", "a"],
    ["😀.", "😀😀", "😀😀"],
    ["/path/", "a/path/b", "/path/"]
  ]
  for (const [pattern, text, expected] of cases) {
    it(`${JSON.stringify(pattern)} on ${JSON.stringify(text)}`, () => {
      expect(search(pattern, text)).toBe(expected)
    })
  }
  it("always uses the u flag (code point indices)", () => {
    const r = compilePyRegex("x")
    expect(r.ok && r.regex.flags).toContain("u")
  })
})

describe("compilePyRegex: refusals", () => {
  const bad: Array<[string, RegExp]> = [
    ["(unclosed", /missing \)/],
    ["a)", /unbalanced/],
    ["*a", /nothing to repeat/],
    ["a**", /multiple repeat/],
    ["[abc", /unterminated character set/],
    ["\\q", /bad escape \\q/],
    ["\\N{DASH}", /\\N/],
    ["(?i:a)", /scoped flags/],
    ["a(?i)b", /very start/],
    ["a++", /possessive/],
    ["(?>a)", /atomic/],
    ["(?(1)a|b)", /conditional/],
    ["(?L)a", /locale/],
    ["(?P<n>a)(?P=m)", /./],
    ["[z-a]", /./],
    ["\\", /lone backslash/],
    ["^*", /nothing to repeat/],
    ["(a)\\10", /./]
  ]
  for (const [pattern, message] of bad) {
    it(`refuses ${JSON.stringify(pattern)}`, () => {
      const r = compilePyRegex(pattern)
      expect(r.ok).toBe(false)
      if (!r.ok) expect(r.message).toMatch(message)
    })
  }
})
