import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Either } from "effect"
import canonicalize from "canonicalize"
import { CANONICAL_VERSION, canonicalJson, canonicalJsonGeneralUnsafe, canonicalJsonUnsafe, sha256Hex, stableHash } from "../../src/core/canonical.js"
import { createHash } from "node:crypto"

const ok = (v: unknown) => Either.getOrThrow(canonicalJson(v))
const errorOf = (v: unknown) => {
  const r = canonicalJson(v)
  if (Either.isRight(r)) throw new Error(`expected an error for ${String(v)}`)
  return r.left
}

describe("canonicalJson", () => {
  it("sorts keys and uses RFC 8785 number forms", () => {
    expect(ok({ b: 1, a: [true, null, "x"], c: { z: 1e21, y: 0.1 } })).toBe(
      `{"a":[true,null,"x"],"b":1,"c":{"y":0.1,"z":1e+21}}`
    )
    expect(ok(-0)).toBe("0")
    expect(ok("\u2028é")).toBe(`"\u2028é"`)
  })

  it("encodes bigint as a decimal string and Date as ISO-8601", () => {
    expect(ok({ n: 12345678901234567890n })).toBe(`{"n":"12345678901234567890"}`)
    expect(ok(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)))).toBe(`"2026-01-02T03:04:05.678Z"`)
  })

  it("omits undefined object properties as JSON does", () => {
    expect(ok({ a: undefined, b: 2 })).toBe(`{"b":2}`)
  })

  it.each([
    [{ a: [1, 2, 3, { b: Number.NaN }] }, "$.a[3].b", "NonFiniteNumber"],
    [{ x: Infinity }, "$.x", "NonFiniteNumber"],
    [[1, -Infinity], "$[1]", "NonFiniteNumber"],
    [[1, undefined], "$[1]", "Undefined"],
    [undefined, "$", "Undefined"],
    [{ f: () => 1 }, "$.f", "Function"],
    [{ s: Symbol("x") }, "$.s", "Symbol"],
    [{ "weird key": new Map() }, `$["weird key"]`, "UnsupportedType"],
    [{ d: new Date(Number.NaN) }, "$.d", "InvalidDate"]
  ])("rejects %o at %s", (value, path, reason) => {
    const e = errorOf(value)
    expect(e._tag).toBe("CanonicalError")
    expect(e.path).toBe(path)
    expect(e.reason).toBe(reason)
    expect(e.message).toContain(path)
  })

  it("rejects a string with a lone surrogate with a typed error", () => {
    const e = errorOf({ a: "ok", b: JSON.parse(`"\\ud800x"`) })
    expect(e.reason).toBe("LoneSurrogate")
  })

  it("rejects cycles with the path where the cycle closes", () => {
    const a: Record<string, unknown> = { x: { y: 1 } }
    ;(a.x as Record<string, unknown>).back = a
    const e = errorOf(a)
    expect(e.reason).toBe("Cycle")
    expect(e.path).toBe("$.x.back")
  })

  it("accepts a shared (non-cyclic) reference twice", () => {
    const shared = { k: 1 }
    expect(ok({ a: shared, b: shared })).toBe(`{"a":{"k":1},"b":{"k":1}}`)
  })

  it("treats __proto__ as a plain key", () => {
    const v = JSON.parse(`{"__proto__": {"polluted": true}, "a": 1}`)
    expect(ok(v)).toBe(`{"__proto__":{"polluted":true},"a":1}`)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

describe("stableHash", () => {
  it("is SHA-256 hex of the canonical form, tagged sha256-rfc8785-v1", () => {
    expect(CANONICAL_VERSION).toBe("sha256-rfc8785-v1")
    // sha256 of `{"a":1}`
    expect(Either.getOrThrow(stableHash({ a: 1 }))).toBe(
      "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    )
  })

  it("is deterministic and insensitive to key order (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const shuffled = JSON.parse(JSON.stringify(value, (_k, v) =>
          v !== null && typeof v === "object" && !Array.isArray(v)
            ? Object.fromEntries(Object.entries(v).reverse())
            : v))
        expect(stableHash(value)).toEqual(stableHash(shuffled))
        expect(stableHash(value)).toEqual(stableHash(value))
      }),
      { numRuns: 300 }
    )
  })

  it("round-trips through JSON (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = Either.getOrThrow(canonicalJson(value))
        expect(Either.getOrThrow(canonicalJson(JSON.parse(text)))).toBe(text)
      }),
      { numRuns: 300 }
    )
  })

  it("distinct values rarely collide on a generated corpus", () => {
    const corpus = fc.sample(fc.jsonValue(), 3000)
    const byText = new Map<string, string>()
    for (const v of corpus) byText.set(Either.getOrThrow(canonicalJson(v)), Either.getOrThrow(stableHash(v)))
    const hashes = new Set(byText.values())
    expect(hashes.size).toBe(byText.size)
  })

  it("returns a typed error, never throws, for hostile input (property)", () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withDate: true, withMap: true, withSet: true, withNullPrototype: true }), (v) => {
        const r = stableHash(v)
        if (Either.isLeft(r)) expect(r.left._tag).toBe("CanonicalError")
        else expect(r.right).toMatch(/^[0-9a-f]{64}$/)
      }),
      { numRuns: 300 }
    )
  })
})

describe("canonicalJson on deep and large values", () => {
  const nest = (depth: number, leaf: unknown, kind: "array" | "object"): unknown => {
    let v = leaf
    for (let i = 0; i < depth; i++) v = kind === "array" ? [v] : { k: v }
    return v
  }

  it("writes values nested far beyond the call-stack depth without overflowing", () => {
    const depth = 200_000
    const text = ok(nest(depth, 1, "array"))
    expect(text).toBe("[".repeat(depth) + "1" + "]".repeat(depth))
    const obj = ok(nest(50_000, null, "object"))
    expect(obj.startsWith(`{"k":{"k":`)).toBe(true)
    expect(Either.isRight(stableHash(nest(depth, { a: [1, 2] }, "object")))).toBe(true)
  })

  it("names the path of a bad value deep inside", () => {
    const e = errorOf(nest(3, [1, Number.NaN], "object"))
    expect(e.reason).toBe("NonFiniteNumber")
    expect(e.path).toBe("$.k.k.k[1]")
    const deep = errorOf(nest(5000, undefined, "array"))
    expect(deep.reason).toBe("Undefined")
    expect(deep.path).toBe("$" + "[0]".repeat(5000))
  })

  it("finds a cycle closing deep inside", () => {
    const root: Record<string, unknown> = {}
    let at = root
    for (let i = 0; i < 10_000; i++) {
      const next: Record<string, unknown> = {}
      at["n"] = next
      at = next
    }
    at["back"] = root
    const e = errorOf(root)
    expect(e.reason).toBe("Cycle")
    expect(e.path.endsWith(".n.back")).toBe(true)
  })

  it("names the key holding a lone surrogate", () => {
    const e = errorOf({ a: { [JSON.parse(`"\\udc00"`) as string]: 1 } })
    expect(e.reason).toBe("LoneSurrogate")
    expect(e.path.startsWith("$.a")).toBe(true)
  })

  it("writes what the canonicalize package writes for plain JSON (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue({ maxDepth: 6 }), (a, b) => {
        for (const v of [a, b, { a, b, "é": [a], "\u{1F600}": b, "": -0, z: 1e-7, y: 123456789012345680000 }]) {
          expect(ok(v)).toBe(canonicalize(v))
        }
      }),
      { numRuns: 500 }
    )
  })
})

describe("canonicalJson's flat-record fast path", () => {
  /** A flat record of scalars: what the fast path writes (keys of every kind, numbers of every form). */
  const scalar = fc.oneof(
    fc.string({ unit: "binary" }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined)
  )
  const flat = fc.dictionary(fc.string({ unit: "binary", maxLength: 8 }), scalar, { maxKeys: 12 })

  it("writes byte-identical text to the general writer and to the canonicalize package (property)", () => {
    fc.assert(
      fc.property(flat, (record) => {
        const fast = canonicalJsonUnsafe(record)
        expect(fast).toBe(canonicalJsonGeneralUnsafe(record))
        expect(fast).toBe(canonicalize(record))
      }),
      { numRuns: 2000 }
    )
  })

  it("gives the same text for records of one shape written one after another, in any key order (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer(), fc.string(), fc.boolean()), { minLength: 1, maxLength: 20 }), (rows) => {
        for (const [n, s, b] of rows) {
          const forward = { id: n, name: s, ok: b, amount: n / 7 }
          const backward = { amount: n / 7, ok: b, name: s, id: n }
          expect(canonicalJsonUnsafe(forward)).toBe(canonicalize(forward))
          expect(canonicalJsonUnsafe(backward)).toBe(canonicalJsonUnsafe(forward))
        }
      })
    )
  })

  it("hands what it cannot write to the general writer, which names the problem", () => {
    expect(canonicalJsonUnsafe({ a: 1, b: [2, { c: 3 }] })).toBe(`{"a":1,"b":[2,{"c":3}]}`)
    expect(canonicalJsonUnsafe({ n: 10n })).toBe(`{"n":"10"}`)
    expect(canonicalJsonUnsafe({ d: new Date(0) })).toBe(`{"d":"1970-01-01T00:00:00.000Z"}`)
    expect(() => canonicalJsonUnsafe({ x: Number.NaN })).toThrow(/\$\.x/)
    expect(() => canonicalJsonUnsafe({ s: "\uD800" })).toThrow(/lone UTF-16 surrogate at \$\.s/)
    expect(() => canonicalJsonUnsafe({ ["\uDC00"]: 1 })).toThrow(/lone UTF-16 surrogate/)
    expect(() => canonicalJsonUnsafe({ f: () => 1 })).toThrow(/function at \$\.f/)
  })

  it("is not fooled by two key sets that join to the same text", () => {
    const a = { ["a\u0000b"]: 1, c: 2 }
    const b = { a: 1, ["b\u0000c"]: 2 }
    expect(canonicalJsonUnsafe(a)).toBe(canonicalize(a))
    expect(canonicalJsonUnsafe(b)).toBe(canonicalize(b))
  })

  it("hashes with SHA-256 as the streaming Hash object does", () => {
    for (const text of ["", "abc", "é\u{1F600}", "x".repeat(100_000)]) {
      expect(sha256Hex(text)).toBe(createHash("sha256").update(text).digest("hex"))
    }
    expect(sha256Hex(new Uint8Array([1, 2, 3]))).toBe(createHash("sha256").update(new Uint8Array([1, 2, 3])).digest("hex"))
  })
})
