import { Effect, Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { SchemaConfig } from "../../../src/pipeline/plugins/protocol.js"
import {
  checkCompatibility,
  coerceSourceRow,
  coerceValue,
  parseSchemaConfig,
  validateStrict
} from "../../../src/pipeline/plugins/schema.js"

const parse = (value: unknown) => Effect.runSync(Effect.either(parseSchemaConfig("csv", value)))
const ok = (value: unknown): SchemaConfig => {
  const r = parse(value)
  if (Either.isLeft(r)) throw new Error(r.left.message)
  return r.right
}
const err = (value: unknown) => {
  const r = parse(value)
  if (Either.isRight(r)) throw new Error("expected a config error")
  return r.left
}

describe("parseSchemaConfig", () => {
  it("parses observed", () => {
    expect(ok({ mode: "observed" })).toEqual({
      mode: "observed",
      fields: [],
      guaranteedFields: [],
      requiredFields: [],
      auditFields: []
    })
  })
  it("parses string, optional and mapping field specs", () => {
    const s = ok({ mode: "fixed", fields: ["id: int", "name: str?", { score: "float" }, "  flag :bool ? ", "x: any"] })
    expect(s.fields).toEqual([
      { name: "id", type: "int", optional: false },
      { name: "name", type: "str", optional: true },
      { name: "score", type: "float", optional: false },
      { name: "flag", type: "bool", optional: true },
      { name: "x", type: "any", optional: false }
    ])
  })
  it("allows Unicode letters in names", () => {
    expect(ok({ mode: "flexible", fields: ["café: str", "名前: int"] }).fields.map((f) => f.name)).toEqual(["café", "名前"])
  })
  it("parses guaranteed/required/audit fields", () => {
    const s = ok({
      mode: "flexible",
      fields: ["a: int", "b: str?"],
      guaranteed_fields: ["a"],
      required_fields: ["b"],
      audit_fields: ["a", "b"]
    })
    expect(s.guaranteedFields).toEqual(["a"])
    expect(s.requiredFields).toEqual(["b"])
    expect(s.auditFields).toEqual(["a", "b"])
    expect(ok({ mode: "observed", guaranteed_fields: ["anything"] }).guaranteedFields).toEqual(["anything"])
  })

  const cases: Array<[string, unknown, string, RegExp]> = [
    ["missing schema", undefined, "schema", /missing required option 'schema'/],
    ["non-mapping", "observed", "schema", /expected a mapping/],
    ["unknown key", { mode: "observed", feilds: [] }, "schema.feilds", /unknown schema key 'feilds'; did you mean 'fields'/],
    ["missing mode", { fields: ["a: int"] }, "schema.mode", /missing required key 'mode'/],
    ["bad mode", { mode: "strict" }, "schema.mode", /expected one of observed, fixed, flexible, got 'strict'/],
    ["observed with fields", { mode: "observed", fields: ["a: int"] }, "schema.fields", /observed schema takes no fields/],
    ["fixed without fields", { mode: "fixed" }, "schema.fields", /needs a non-empty 'fields'/],
    ["fixed with empty fields", { mode: "fixed", fields: [] }, "schema.fields", /at least one field/],
    ["fields not a list", { mode: "fixed", fields: "a: int" }, "schema.fields", /expected a list/],
    ["spec without colon", { mode: "fixed", fields: ["a: int", "b"] }, "schema.fields[1]", /"name: type"/],
    ["bad type", { mode: "fixed", fields: ["a: int", "b: int", "c: integer"] }, "schema.fields[2]", /unknown type 'integer'/],
    ["hyphen name", { mode: "fixed", fields: ["first-name: str"] }, "schema.fields[0]", /not an identifier/],
    ["dotted name", { mode: "fixed", fields: ["a.b: str"] }, "schema.fields[0]", /not an identifier/],
    ["digit start", { mode: "fixed", fields: ["1a: str"] }, "schema.fields[0]", /not an identifier/],
    ["duplicate", { mode: "fixed", fields: ["a: int", { a: "str" }] }, "schema.fields[1]", /duplicate field 'a'/],
    ["two-key mapping", { mode: "fixed", fields: [{ a: "int", b: "str" }] }, "schema.fields[0]", /one-key mapping/],
    ["non-string type", { mode: "fixed", fields: [{ a: 3 }] }, "schema.fields[0]", /field 'a': expected a type/],
    ["undeclared guaranteed", { mode: "fixed", fields: ["amount: int"], guaranteed_fields: ["amout"] }, "schema.guaranteed_fields[0]", /not a declared field; did you mean 'amount'/],
    ["non-identifier required", { mode: "observed", required_fields: ["a-b"] }, "schema.required_fields[0]", /identifier/],
    ["audit not a list", { mode: "observed", audit_fields: "a" }, "schema.audit_fields", /expected a list/]
  ]
  for (const [name, input, key, message] of cases) {
    it(`rejects ${name}`, () => {
      const e = err(input)
      expect(e._tag).toBe("PluginConfigError")
      expect(e.plugin).toBe("csv")
      expect(e.key).toBe(key)
      expect(e.message).toMatch(message)
    })
  }
})

// ---------------------------------------------------------------------------
// Coercion table (2.1), row by row

const accepts: Array<[string, unknown, unknown]> = [
  // str
  ["str", "abc", "abc"],
  ["str", "  padded  ", "  padded  "],
  ["str", "", ""],
  // int
  ["int", 5, 5],
  ["int", true, 1],
  ["int", false, 0],
  ["int", 3.0, 3],
  ["int", "42", 42],
  ["int", " +7 ", 7],
  ["int", "-7", -7],
  ["int", "1_000", 1000],
  ["int", "00042", 42],
  ["int", "42.00", 42],
  ["int", "\t12\n", 12],
  // beyond ±(2^53−1): exact, as a bigint
  ["int", "99999999999999999999", 99999999999999999999n],
  ["int", " +9007199254740993 ", 9007199254740993n],
  ["int", "-9_007_199_254_740_993.00", -9007199254740993n],
  ["int", "9".repeat(4300), BigInt("9".repeat(4300))],
  ["int", 9007199254740993n, 9007199254740993n],
  ["int", 12n, 12],
  // float
  ["float", 1.5, 1.5],
  ["float", 2, 2],
  ["float", true, 1],
  ["float", false, 0],
  ["float", "1.5", 1.5],
  ["float", ".5", 0.5],
  ["float", "5.", 5],
  ["float", "1e3", 1000],
  ["float", "1E-2", 0.01],
  ["float", "1_000.5", 1000.5],
  ["float", " -2.5 ", -2.5],
  ["float", "+3", 3],
  ["float", "9007199254740993", 9007199254740992],
  ["float", 9007199254740993n, 9007199254740992],
  // bool
  ["bool", true, true],
  ["bool", false, false],
  ["bool", 1, true],
  ["bool", 0, false],
  ["bool", 1.0, true],
  ["bool", "1", true],
  ["bool", "on", true],
  ["bool", "t", true],
  ["bool", "True", true],
  ["bool", "YES", true],
  ["bool", "y", true],
  ["bool", "0", false],
  ["bool", "off", false],
  ["bool", "F", false],
  ["bool", "false", false],
  ["bool", "N", false],
  ["bool", "no", false],
  // any
  ["any", "x", "x"],
  ["any", [1, 2], [1, 2]],
  ["any", { a: 1 }, { a: 1 }],
  ["any", 1.5, 1.5]
]

const rejects: Array<[string, unknown]> = [
  ["str", 1],
  ["str", 1.5],
  ["str", true],
  ["str", ["a"]],
  ["str", { a: 1 }],
  ["int", ""],
  ["int", "42."],
  ["int", "42.5"],
  ["int", "4e2"],
  ["int", "0x10"],
  ["int", "1 000"],
  ["int", "1__000"],
  ["int", "_1"],
  ["int", "1_"],
  ["int", "0-2"],
  ["int", "١٢"],
  ["int", "１２"],
  ["int", 3.5],
  ["int", Infinity],
  ["int", NaN],
  ["int", "9".repeat(4301)],
  ["int", [1]],
  ["float", ""],
  ["float", "1,5"],
  ["float", "0x1p3"],
  ["float", "nan"],
  ["float", "NaN"],
  ["float", "inf"],
  ["float", "-inf"],
  ["float", "Infinity"],
  ["float", "infinity"],
  ["float", "1e500"],
  ["float", "."],
  ["float", "e3"],
  ["float", NaN],
  ["float", Infinity],
  ["float", { a: 1 }],
  ["float", BigInt("9".repeat(400))],
  ["str", 9007199254740993n],
  ["bool", 9007199254740993n],
  ["bool", "2"],
  ["bool", ""],
  ["bool", " true"],
  ["bool", "true "],
  ["bool", "1.0"],
  ["bool", 2],
  ["bool", 0.5],
  ["bool", -1],
  ["bool", []]
]

/** A test title for a value (bigints as `12n`, long strings shortened). */
const title = (v: unknown): string => {
  if (typeof v === "bigint") return `${String(v).length > 30 ? `${String(v).slice(0, 20)}… (${String(v).length} digits)` : String(v)}n`
  if (typeof v === "number") return String(v)
  const text = JSON.stringify(v)
  return text.length > 40 ? `${text.slice(0, 20)}… (${text.length} characters)` : text
}

describe("lax coercion table", () => {
  for (const [type, input, output] of accepts) {
    it(`${type} accepts ${title(input)}`, () => {
      const schema = ok({ mode: "fixed", fields: [`v: ${type}`] })
      const r = coerceSourceRow(schema, { v: input })
      expect(r).toEqual({ ok: true, row: { v: output } })
    })
  }
  for (const [type, input] of rejects) {
    it(`${type} rejects ${title(input)}`, () => {
      const schema = ok({ mode: "fixed", fields: [`v: ${type}`] })
      const r = coerceSourceRow(schema, { v: input })
      expect(r.ok).toBe(false)
      if (!r.ok) {
        expect(r.fieldErrors).toHaveLength(1)
        expect(r.fieldErrors[0]!.field).toBe("v")
        expect(r.error).toMatch(new RegExp(`^v: expected ${type}, got `))
      }
    })
  }
  it("null is rejected for every required non-any type", () => {
    for (const type of ["str", "int", "float", "bool"]) {
      const r = coerceSourceRow(ok({ mode: "fixed", fields: [`v: ${type}`] }), { v: null })
      expect(r.ok).toBe(false)
    }
  })
  it("null stays null for optional fields and for any", () => {
    for (const spec of ["v: str?", "v: int?", "v: float?", "v: bool?", "v: any"]) {
      expect(coerceSourceRow(ok({ mode: "fixed", fields: [spec] }), { v: null })).toEqual({ ok: true, row: { v: null } })
    }
  })
  it("an empty CSV cell is invalid for optional numeric and bool fields", () => {
    for (const spec of ["v: int?", "v: float?", "v: bool?"]) {
      expect(coerceSourceRow(ok({ mode: "fixed", fields: [spec] }), { v: "" }).ok).toBe(false)
    }
    expect(coerceSourceRow(ok({ mode: "fixed", fields: ["v: str?"] }), { v: "" })).toEqual({ ok: true, row: { v: "" } })
  })
  it("error text quotes strings like the reference", () => {
    const r = coerceSourceRow(ok({ mode: "fixed", fields: ["amount: int"] }), { amount: "abc" })
    expect(r).toMatchObject({ ok: false, error: "amount: expected int, got 'abc'" })
  })
  it("coerceValue keeps -0 out of ints", () => {
    expect(coerceValue("int", "-0")).toEqual({ ok: true, value: 0 })
    expect(Object.is((coerceValue("int", "-0") as { value: number }).value, 0)).toBe(true)
  })
})

describe("coerceSourceRow: modes, key order, missing fields", () => {
  const fixed = ok({ mode: "fixed", fields: ["id: int", "name: str", "note: str?"] })
  const flexible = ok({ mode: "flexible", fields: ["id: int", "name: str"] })
  it("fixed reorders to declaration order and adds missing optionals as null", () => {
    const r = coerceSourceRow(fixed, { name: "a", id: "1" })
    expect(r.ok).toBe(true)
    if (r.ok) {
      expect(Object.keys(r.row)).toEqual(["id", "name", "note"])
      expect(r.row).toEqual({ id: 1, name: "a", note: null })
    }
  })
  it("fixed rejects an undeclared key", () => {
    const r = coerceSourceRow(fixed, { id: 1, name: "a", extra: 1 })
    expect(r).toMatchObject({ ok: false, fieldErrors: [{ field: "extra" }] })
  })
  it("a required field that is missing is invalid, also for any", () => {
    expect(coerceSourceRow(fixed, { id: 1 })).toMatchObject({ ok: false, fieldErrors: [{ field: "name" }] })
    expect(coerceSourceRow(ok({ mode: "fixed", fields: ["x: any"] }), {}).ok).toBe(false)
  })
  it("flexible keeps undeclared keys after declared ones, in input order", () => {
    const r = coerceSourceRow(flexible, { z: 1, name: "n", a: 2, id: "3" })
    expect(r.ok).toBe(true)
    if (r.ok) expect(Object.entries(r.row)).toEqual([["id", 3], ["name", "n"], ["z", 1], ["a", 2]])
  })
  it("observed keeps the row as is", () => {
    const r = coerceSourceRow(ok({ mode: "observed" }), { b: "1", a: "x" })
    expect(r.ok && Object.entries(r.row)).toEqual([["b", "1"], ["a", "x"]])
  })
  it("reports every field error", () => {
    const r = coerceSourceRow(fixed, { id: "x", name: 3 })
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.fieldErrors.map((e) => e.field)).toEqual(["id", "name"])
      expect(r.error).toBe("id: expected int, got 'x'; name: expected str, got int 3")
    }
  })
  it("a non-object payload is invalid", () => {
    for (const raw of [1, "x", null, [1]]) expect(coerceSourceRow(flexible, raw).ok).toBe(false)
    expect(coerceSourceRow(ok({ mode: "observed" }), [1]).ok).toBe(false)
  })
  it("keeps a __proto__ key as an own property", () => {
    const raw = JSON.parse('{"__proto__": 5, "id": 1, "name": "a"}') as unknown
    const r = coerceSourceRow(flexible, raw)
    expect(r.ok).toBe(true)
    if (r.ok) {
      expect(Object.keys(r.row)).toEqual(["id", "name", "__proto__"])
      expect(Object.getPrototypeOf(r.row)).toBe(Object.prototype)
    }
  })
  it("property: observed output equals the input object", () => {
    fc.assert(fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (d) => {
      const r = coerceSourceRow(ok({ mode: "observed" }), d)
      return r.ok && JSON.stringify(Object.entries(r.row)) === JSON.stringify(Object.entries(d))
    }))
  })
  it("property: int strings of safe integers round-trip", () => {
    fc.assert(fc.property(fc.integer({ min: -1e15, max: 1e15 }), (n) => {
      const c = coerceValue("int", ` ${n} `)
      return c.ok && c.value === (n === 0 ? 0 : n)
    }))
  })
})

describe("validateStrict", () => {
  const fixed = ok({ mode: "fixed", fields: ["id: int", "score: float", "name: str?", "flag: bool"] })
  it("accepts well-typed rows; float accepts an int", () => {
    expect(validateStrict(fixed, { id: 1, score: 2, name: null, flag: true })).toBeUndefined()
    expect(validateStrict(fixed, { id: 1, score: 2.5, flag: false })).toBeUndefined()
  })
  it("does not coerce", () => {
    expect(validateStrict(fixed, { id: "1", score: 2, flag: true })).toMatch(/^id: expected int, got '1'/)
    expect(validateStrict(fixed, { id: 1, score: "2", flag: true })).toMatch(/score/)
    expect(validateStrict(fixed, { id: 1, score: 2, flag: 1 })).toMatch(/flag/)
    expect(validateStrict(fixed, { id: 1.5, score: 2, flag: true })).toMatch(/id/)
    expect(validateStrict(fixed, { id: true, score: 2, flag: true })).toMatch(/id/)
  })
  it("fixed rejects extras, flexible allows them", () => {
    expect(validateStrict(fixed, { id: 1, score: 2, flag: true, x: 1 })).toMatch(/x: unexpected field/)
    const flex = ok({ mode: "flexible", fields: ["id: int"] })
    expect(validateStrict(flex, { id: 1, x: 1 })).toBeUndefined()
  })
  it("missing required and null required fail", () => {
    expect(validateStrict(fixed, { score: 2, flag: true })).toMatch(/id: field required/)
    expect(validateStrict(fixed, { id: null, score: 2, flag: true })).toMatch(/id: expected int, got null/)
  })
  it("observed accepts anything", () => {
    expect(validateStrict(ok({ mode: "observed" }), { a: 1 })).toBeUndefined()
  })
})

describe("checkCompatibility", () => {
  const s = (fields: Array<string>, mode = "fixed", extra: object = {}) => ok({ mode, fields, ...extra })
  const observed = ok({ mode: "observed" })
  it("observed on either side skips the type check", () => {
    expect(checkCompatibility(observed, s(["a: int"]))).toBeUndefined()
    expect(checkCompatibility(s(["a: int"]), observed)).toBeUndefined()
  })
  it("identical schemas are compatible", () => {
    expect(checkCompatibility(s(["a: int", "b: str"]), s(["a: int", "b: str"]))).toBeUndefined()
  })
  it("a required consumer field must be declared", () => {
    expect(checkCompatibility(s(["a: int"], "flexible"), s(["a: int", "b: str"], "flexible"))).toMatch(/not declared by the producer: b/)
    expect(checkCompatibility(s(["a: int"], "flexible"), s(["a: int", "b: str?"], "flexible"))).toBeUndefined()
  })
  it("int does not satisfy float; any accepts anything; optional consumer accepts its base type", () => {
    expect(checkCompatibility(s(["a: int"]), s(["a: float"]))).toMatch(/type mismatch: a \(producer int, consumer float\)/)
    expect(checkCompatibility(s(["a: int"]), s(["a: any"]))).toBeUndefined()
    expect(checkCompatibility(s(["a: int"]), s(["a: int?"]))).toBeUndefined()
    expect(checkCompatibility(s(["a: int?"]), s(["a: int"]))).toMatch(/type mismatch/)
  })
  it("a fixed consumer must not see undeclared producer fields", () => {
    expect(checkCompatibility(s(["a: int", "b: str"]), s(["a: int"]))).toMatch(/does not accept producer field\(s\): b/)
    expect(checkCompatibility(s(["a: int", "b: str"]), s(["a: int"], "flexible"))).toBeUndefined()
  })
  it("required input fields must be guaranteed", () => {
    const producer = s(["a: int", "b: str?"], "flexible", { guaranteed_fields: ["b"] })
    expect(checkCompatibility(producer, observed, ["a", "b"])).toBeUndefined()
    expect(checkCompatibility(s(["a: int", "b: str?"], "flexible"), observed, ["b"])).toMatch(/not guaranteed by the producer: b/)
    expect(checkCompatibility(observed, ok({ mode: "observed", required_fields: ["x"] }))).toMatch(/not guaranteed.*x/)
    expect(checkCompatibility(ok({ mode: "observed", guaranteed_fields: ["x"] }), ok({ mode: "observed", required_fields: ["x"] }))).toBeUndefined()
  })
})
