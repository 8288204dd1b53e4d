import { describe, expect, it } from "vitest"
import { rewriteHelp, stripAnsi } from "../../src/cli/help.js"
import { ansiAllowed } from "../../src/services/telemetry.js"

const RENDERED = [
  "\x1b[0;1mUSAGE\x1b[0m",
  "",
  "$ status [(-d, --db, --database URL)] [--json]",
  "",
  "\x1b[0;1mOPTIONS\x1b[0m",
  "",
  "\x1b[0;1m(-d, --db, --database URL)\x1b[0m",
  "",
  "  A user-defined piece of text.",
  "",
  "  Landscape URL",
  "",
  "\x1b[0;1m--json\x1b[0m",
  "",
  "  A true or false value.",
  "",
  "  Print JSON",
  ""
].join("\n")

describe("help in runledger's words", () => {
  it("names the program in the usage line, drops the generic type notes, adds the examples", () => {
    const text = rewriteHelp(RENDERED, "loop status", false)
    expect(text).not.toContain("\x1b")
    expect(text).toContain("$ runledger loop status [(-d, --db, --database URL)] [--json]\n")
    expect(text).not.toContain("A user-defined piece of text.")
    expect(text).not.toContain("A true or false value.")
    expect(text).toContain("(-d, --db, --database URL)\n\n  Landscape URL\n\n--json\n\n  Print JSON")
    expect(text).toMatch(/\nEXAMPLES\n\n {2}\$ runledger loop status --db runs\/loop\.db\n/)
  })

  it("keeps the escapes on a terminal that allows colour", () => {
    const text = rewriteHelp(RENDERED, "loop status", true)
    expect(text).toContain("\x1b[0;1mEXAMPLES\x1b[0m")
    expect(stripAnsi(text)).toBe(rewriteHelp(RENDERED, "loop status", false))
  })

  it("colour only on a terminal, never with NO_COLOR or TERM=dumb", () => {
    expect(ansiAllowed({ isTTY: true }, {})).toBe(true)
    expect(ansiAllowed({ isTTY: false }, {})).toBe(false)
    expect(ansiAllowed({}, {})).toBe(false)
    expect(ansiAllowed({ isTTY: true }, { NO_COLOR: "1" })).toBe(false)
    expect(ansiAllowed({ isTTY: true }, { NO_COLOR: "" })).toBe(true)
    expect(ansiAllowed({ isTTY: true }, { TERM: "dumb" })).toBe(false)
  })
})
