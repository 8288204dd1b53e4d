import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { pyFloatRepr, pyNumberRepr, pyRepr, pyStrRepr } from "../../../src/core/python/repr.js"

describe("pyFloatRepr", () => {
  // [value, Python's repr(float(value))]
  const cases: ReadonlyArray<readonly [number, string]> = [
    [0, "0.0"],
    [-0, "-0.0"],
    [1, "1.0"],
    [1279, "1279.0"],
    [255.8, "255.8"],
    [2500, "2500.0"],
    [1e-5, "1e-05"],
    [1e16, "1e+16"],
    [1.5e20, "1.5e+20"],
    [0.0001, "0.0001"],
    [0.00012, "0.00012"],
    [1e-7, "1e-07"],
    [123456789012345678, "1.2345678901234568e+17"],
    [9999999999999998, "9999999999999998.0"],
    [0.1, "0.1"],
    [0.3 - 0.1, "0.19999999999999998"],
    [1e100, "1e+100"],
    [5e-324, "5e-324"],
    [1.7976931348623157e308, "1.7976931348623157e+308"],
    [123.456, "123.456"],
    [1e21, "1e+21"],
    [1e22, "1e+22"],
    [-2.5e-9, "-2.5e-09"],
    [1 / 3, "0.3333333333333333"],
    [2 ** 53, "9007199254740992.0"],
    [NaN, "nan"],
    [Infinity, "inf"],
    [-Infinity, "-inf"]
  ]
  it.each(cases)("repr(%s) = %s", (value, expected) => {
    expect(pyFloatRepr(value)).toBe(expected)
  })

  it("round-trips every finite double", () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
        expect(Object.is(Number(pyFloatRepr(x)), x)).toBe(true)
      }),
      { numRuns: 2000 }
    )
  })

  it("always has a '.' or an exponent, and an exponent has a sign and two digits", () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
        const text = pyFloatRepr(x)
        expect(text).toMatch(/^-?(\d+\.\d+|\d(\.\d+)?e[+-]\d{2,3})$/)
      }),
      { numRuns: 1000 }
    )
  })
})

describe("pyNumberRepr", () => {
  it("prints integral numbers as ints unless the hint is float", () => {
    expect(pyNumberRepr(2500)).toBe("2500")
    expect(pyNumberRepr(2500, "float")).toBe("2500.0")
    expect(pyNumberRepr(2500, "int")).toBe("2500")
    expect(pyNumberRepr(2.5, "int")).toBe("2.5")
    expect(pyNumberRepr(1e21)).toBe("1000000000000000000000")
    expect(pyNumberRepr(-0)).toBe("-0.0")
  })
})

describe("pyRepr", () => {
  it("quotes strings like Python", () => {
    expect(pyStrRepr("it's")).toBe("\"it's\"")
    expect(pyStrRepr("say \"hi\" it's")).toBe("'say \"hi\" it\\'s'")
    expect(pyStrRepr("say \"hi\"")).toBe("'say \"hi\"'")
    expect(pyStrRepr("")).toBe("''")
  })

  it("escapes non-printable characters like Python", () => {
    const s = "a\x00b\x7f\x80\xa0\xad\u2028\u200b\u{1F600}\u{E0001} \t\n\r\\"
    expect(pyStrRepr(s)).toBe("'a\\x00b\\x7f\\x80\\xa0\\xad\\u2028\\u200b\u{1F600}\\U000e0001 \\t\\n\\r\\\\'")
  })

  it("writes lists and mappings like Python", () => {
    expect(pyRepr({ sku: "A1", qty: 2 })).toBe("{'sku': 'A1', 'qty': 2}")
    expect(pyRepr(["a", 1, null, true])).toBe("['a', 1, None, True]")
    expect(pyRepr({ k: [1, 2.5, null, true, false, "x", { n: {} }, []] })).toBe(
      "{'k': [1, 2.5, None, True, False, 'x', {'n': {}}, []]}"
    )
    expect(pyRepr(undefined)).toBe("None")
    expect(pyRepr(3, "float")).toBe("3.0")
    expect(pyRepr(12n)).toBe("12")
  })
})
