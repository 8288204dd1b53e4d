/**
 * The backtracking check's worker (regex-safety.ts): verdicts come from a real recheck
 * in a real worker thread, which stops by itself once idle and is started again for
 * the next pattern. (The verdicts on specific patterns, through keyword_filter's
 * options, are in keyword-explode.test.ts.)
 */
import { describe, expect, it } from "vitest"
import { checkRegexSafety, regexCheckerRunning, stopRegexChecker } from "../../../../src/pipeline/plugins/transforms/regex-safety.js"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Each test checks patterns no other test checks: answers are cached per process. */
let n = 0
const fresh = (body: string) => `${body}${"q".repeat(++n)}`

describe("the regex checker worker", () => {
  it("answers in the caller's thread, then stops once idle", async () => {
    expect(checkRegexSafety(fresh("(a+)+$"), "")).toMatchObject({ safe: false, problem: expect.stringMatching(/exponential/) })
    expect(regexCheckerRunning()).toBe(true)
    expect(checkRegexSafety(fresh("^[a-z]+"), "")).toEqual({ safe: true })
    let waited = 0
    while (regexCheckerRunning() && waited < 5_000) {
      await sleep(50)
      waited += 50
    }
    expect(regexCheckerRunning()).toBe(false)
  }, 20_000)

  it("starts again for a pattern after it stopped, with the same verdicts", () => {
    stopRegexChecker()
    expect(regexCheckerRunning()).toBe(false)
    expect(checkRegexSafety(fresh(".*a.*b.*c"), "")).toMatchObject({ safe: false, problem: expect.stringMatching(/polynomial \(degree [3-9]\)/) })
    expect(regexCheckerRunning()).toBe(true)
    expect(checkRegexSafety(fresh("\\w+@"), "i")).toEqual({ safe: true })
    stopRegexChecker()
  }, 20_000)

  it("caches each pattern's answer: a repeated check starts no worker", () => {
    const pattern = fresh("(x*)*y")
    const first = checkRegexSafety(pattern, "")
    stopRegexChecker()
    expect(checkRegexSafety(pattern, "")).toBe(first)
    expect(regexCheckerRunning()).toBe(false)
  }, 20_000)
})
