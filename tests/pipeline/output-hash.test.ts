/**
 * A transform's output hash may be taken from its input when the output is a copy with
 * the same flat values (TrailBuffer.hashOutput). Whatever the transform did, the hash
 * recorded must be the SHA-256 of the output's canonical JSON: a property over rows and
 * the changes a transform can make, and the cases the shortcut must refuse.
 */
import { Clock } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { canonicalJsonUnsafe, sha256Hex } from "../../src/core/canonical.js"
import type { RunId } from "../../src/core/ids.js"
import { sameFlatValues, TrailBuffer } from "../../src/pipeline/orchestrator/trail-buffer.js"
import type { Row } from "../../src/pipeline/plugins/protocol.js"

const full = (row: unknown): string => sha256Hex(canonicalJsonUnsafe(row))
const trail = () => new TrailBuffer("run_test" as RunId, Clock.make())

const key = fc.oneof(fc.constantFrom("id", "name", "amount", "__proto__", "constructor", "", "é"), fc.string({ maxLength: 6 }))
const flat = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, true, false, null)
)
const value = fc.oneof({ weight: 4, arbitrary: flat }, { weight: 1, arbitrary: fc.array(flat, { maxLength: 3 }) }, {
  weight: 1,
  arbitrary: fc.dictionary(fc.string({ maxLength: 3 }), flat, { maxKeys: 2 })
})
const rowOf = (entries: ReadonlyArray<readonly [string, unknown]>): Row => Object.fromEntries(entries) as Row

/** What a transform may do to produce its output from `input`. */
const change = fc.oneof(
  fc.constant((r: Row): unknown => ({ ...r })),
  fc.constant((r: Row): unknown => Object.fromEntries(Object.keys(r).reverse().map((k) => [k, r[k]]))),
  fc.tuple(key, flat).map(([k, v]) => (r: Row): unknown => rowOf([...Object.entries(r), [k, v]])),
  fc.constant((r: Row): unknown => rowOf(Object.entries(r).slice(1))),
  fc.constant((r: Row): unknown => rowOf(Object.entries(r).map(([k, v]) => [k, typeof v === "number" ? v + 1 : v]))),
  fc.constant((r: Row): unknown => rowOf(Object.entries(r).map(([k, v]) => [k, typeof v === "string" ? `${v}!` : v]))),
  fc.constant((r: Row): unknown => rowOf(Object.entries(r).map(([k, v]) => [k, v === 0 ? "0" : v]))),
  fc.constant((r: Row): unknown => [r]),
  fc.constant((r: Row): unknown => ({ ...r, extra: undefined }))
)

describe("the hash of a transform's output", () => {
  it("is always the hash of the output's canonical JSON, whatever the transform did", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key, value), { maxLength: 6 }), change, (entries, make) => {
        const input = rowOf(entries)
        const output = make(input)
        const t = trail()
        const inputHash = t.hashRow(input)
        expect(t.hashOutput(input, inputHash, output)).toBe(full(output))
        // and what it cached for the output row is that same hash
        expect(t.hashRow(output)).toBe(full(output))
      }),
      { numRuns: 2_000 }
    )
  })

  it("reuses the input's hash for a copy with the same flat values, in any key order", () => {
    const input: Row = { id: 1, name: "Ann", amount: -0, ok: true, none: null }
    const t = trail()
    const inputHash = t.hashRow(input)
    expect(sameFlatValues(input, { none: null, ok: true, amount: 0, name: "Ann", id: 1 })).toBe(true)
    expect(t.hashOutput(input, inputHash, { ...input })).toBe(inputHash)
  })

  it("hashes in full a row holding a nested value, even one changed in place before the copy", () => {
    const input: Row = { id: 1, tags: ["a"] }
    const t = trail()
    const inputHash = t.hashRow(input)
    ;(input["tags"] as Array<string>).push("b")
    const output = { ...input }
    expect(sameFlatValues(input, output)).toBe(false)
    expect(t.hashOutput(input, inputHash, output)).toBe(full({ id: 1, tags: ["a", "b"] }))
    expect(t.hashOutput(input, inputHash, output)).not.toBe(inputHash)
  })

  it("refuses a copy that gained or lost a key, or holds undefined, a bigint or a non-finite number", () => {
    const input: Row = { id: 1, name: "Ann" }
    expect(sameFlatValues(input, { id: 1 })).toBe(false)
    expect(sameFlatValues(input, { id: 1, name: "Ann", x: 2 })).toBe(false)
    expect(sameFlatValues({ a: undefined }, { a: undefined })).toBe(false)
    expect(sameFlatValues({ a: 1n }, { a: 1n })).toBe(false)
    expect(sameFlatValues({ a: Infinity }, { a: Infinity })).toBe(false)
    const inherited = Object.create({ id: 1 }) as Row
    expect(sameFlatValues({ id: 1 }, inherited)).toBe(false)
  })
})
