/**
 * The csv sink's own line writer against csv-stringify with the options the sink used
 * before it had one (minimal quoting, CRLF, a lone empty field quoted): byte-identical
 * text over arbitrary fields and delimiters, and the Python dialect on named cases.
 */
import { stringify } from "csv-stringify/sync"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { csvField, csvLines as linesOf } from "../../../../src/pipeline/plugins/sinks/csv-text.js"

/** The lines of `records` (all of one width), cell by cell as the sink asks for them. */
const csvLines = (records: ReadonlyArray<ReadonlyArray<string>>, delimiter: string): string =>
  linesOf(records.length, records[0]?.length ?? 0, (i, j) => records[i]![j]!, delimiter)

const reference = (records: ReadonlyArray<ReadonlyArray<string>>, delimiter: string): string =>
  records
    .map((cells) =>
      stringify([cells as Array<string>], {
        delimiter,
        record_delimiter: "\r\n",
        quote_record_delimiter: true,
        eof: true,
        quoted_empty: cells.length === 1
      })
    )
    .join("")

/** Text rich in what quoting is about: quotes, delimiters, CR, LF, spaces, empties. */
const cell = fc.oneof(
  fc.string({ unit: fc.constantFrom("a", "\"", ",", ";", "|", "\t", "\r", "\n", " ", "é", "'", "="), maxLength: 6 }),
  fc.string({ maxLength: 8 }),
  fc.constant("")
)
const delimiter = fc.constantFrom(",", ";", "\t", "|", "||", ";;", "ab", "\u00a7")

describe("csv sink lines", () => {
  it("are the text csv-stringify writes with the sink's options, for any cells and delimiter", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }).chain((width) => fc.array(fc.array(cell, { minLength: width, maxLength: width }), { minLength: 1, maxLength: 5 })), delimiter, (records, d) => {
        expect(csvLines(records, d)).toBe(reference(records, d))
      }),
      { numRuns: 3_000 }
    )
  })

  it("quote only what needs it, the Python way", () => {
    expect(csvLines([["a", "b c", ""]], ",")).toBe("a,b c,\r\n")
    expect(csvLines([[""]], ",")).toBe("\"\"\r\n")
    expect(csvField("x,y", ",", false)).toBe("\"x,y\"")
    expect(csvField("say \"hi\"", ",", false)).toBe("\"say \"\"hi\"\"\"")
    expect(csvField("two\nlines", ",", false)).toBe("\"two\nlines\"")
    expect(csvField("cr\r", ",", false)).toBe("\"cr\r\"")
    expect(csvField("x,y", ";", false)).toBe("x,y")
    // a value ending in the start of a two-character delimiter is quoted, so a reader cannot misplace the split
    expect(csvField("a|", "||", false)).toBe("\"a|\"")
    expect(csvField("a|b", "||", false)).toBe("a|b")
  })
})
