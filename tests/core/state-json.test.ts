import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { decodeState, encodeState, parseStateJson, StateJsonError, stateJson } from "../../src/core/state-json.js"

describe("state JSON", () => {
  it("keeps bigint, Date, -0, undefined and $-keys through a round trip", () => {
    const value = {
      big: 9007199254740993n,
      when: new Date("2026-01-02T03:04:05.678Z"),
      zero: -0,
      gap: [1, undefined, 3],
      odd: { $bigint: "not a tag", plain: 1 },
      nested: [{ a: [10n, "x", null, true] }]
    }
    const back = parseStateJson(stateJson(value)) as typeof value
    expect(back.big).toBe(9007199254740993n)
    expect(back.when).toBeInstanceOf(Date)
    expect(back.when.toISOString()).toBe("2026-01-02T03:04:05.678Z")
    expect(Object.is(back.zero, -0)).toBe(true)
    expect(back.gap).toEqual([1, undefined, 3])
    expect(back.odd).toEqual({ $bigint: "not a tag", plain: 1 })
    expect(back.nested[0]!.a[0]).toBe(10n)
  })

  it("refuses what JSON cannot hold, naming the path", () => {
    expect(() => encodeState({ a: [1, Number.NaN] })).toThrow(StateJsonError)
    expect(() => encodeState({ a: [1, Number.NaN] })).toThrow("$.a[1]")
    expect(() => encodeState({ m: new Map() })).toThrow("$.m: an instance of Map")
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => encodeState(cyclic)).toThrow("a cycle")
    expect(() => decodeState({ $bigint: "1.5" })).toThrow("malformed $bigint")
    expect(() => decodeState({ x: { $what: 1 } })).toThrow("$.x.$what: an unknown tag")
  })

  it("does not let a __proto__ key reach the prototype", () => {
    const back = parseStateJson(`{"__proto__": {"polluted": true}}`) as Record<string, unknown>
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.keys(back)).toEqual(["__proto__"])
  })

  it("round-trips arbitrary JSON-like values (property)", () => {
    const leaf = fc.oneof(
      fc.string(),
      fc.boolean(),
      fc.constant(null),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.bigInt(),
      fc.date({ noInvalidDate: true })
    )
    const tree = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: "small" }, leaf, fc.array(tie("node")), fc.dictionary(fc.string(), tie("node")))
    })).node
    fc.assert(fc.property(tree, (v) => {
      expect(parseStateJson(stateJson(v))).toEqual(v)
    }))
  })
})

describe("state JSON and own __proto__ keys", () => {
  it("keeps an own __proto__ field nested in a value (found by the property test)", () => {
    const value = JSON.parse(`[{"": {"__proto__": {}}}]`) as unknown
    expect(parseStateJson(stateJson(value))).toEqual(value)
    expect(Object.keys((parseStateJson(stateJson(value)) as Array<Record<string, Record<string, unknown>>>)[0]![""]!)).toEqual(["__proto__"])
  })
})
