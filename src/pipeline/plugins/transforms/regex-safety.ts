/**
 * Whether a compiled pattern can take super-linear time (ReDoS), decided by recheck
 * on the JavaScript source and flags that will actually run.
 *
 * Refused: exponential backtracking (`(a+)+$`) and polynomial of degree 3 or more
 * (`.*a.*b.*c` against a long line) — on one crafted field either can stall a run
 * for hours. Accepted: quadratic, which nearly every unanchored search with a repeated
 * class has (`\w+@`, `a+b`: each start position may scan to the end); Python's
 * `re.search` costs the same. A pattern recheck cannot decide (its time limit ran out,
 * a construct it does not analyse) is refused too: this check fails closed.
 *
 * Each pattern is checked once per process (the answer is cached). The first check
 * starts recheck's checker in a worker thread — recheck's own synchronous path, called
 * directly so that the 3 MB checker script is loaded by the worker only, not also by
 * this thread (about 50 ms less for every `runledger validate`); when that path is not
 * there (another recheck layout), recheck's `checkSync` is used.
 */
import { createRequire } from "node:module"

type Recheck = typeof import("recheck")

type CheckSync = Recheck["checkSync"]

/** The checker, made on first use: loading it would slow every start of the CLI. */
let checker: CheckSync | undefined
const loadChecker = (): CheckSync => {
  if (checker !== undefined) return checker
  const require = createRequire(import.meta.url)
  try {
    // What recheck's checkSync does (its default sync backend), minus loading recheck here.
    const worker = require.resolve("recheck/lib/synckit-worker.js")
    const synckit = require("synckit") as { createSyncFn: (path: string) => CheckSync }
    checker = synckit.createSyncFn(worker)
  } catch {
    checker = (require("recheck") as Recheck).checkSync
  }
  return checker
}

export type RegexSafety = { readonly safe: true } | { readonly safe: false; readonly problem: string }

/** The longest polynomial degree accepted (2: quadratic). */
export const MAX_ACCEPTED_DEGREE = 2

/** recheck's time limit for one pattern, in milliseconds. */
const CHECK_TIMEOUT_MS = 10_000

const cache = new Map<string, RegexSafety>()

const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n)}…` : s)

const judge = (source: string, flags: string): RegexSafety => {
  let d: ReturnType<Recheck["checkSync"]>
  try {
    d = loadChecker()(source, flags, { timeout: CHECK_TIMEOUT_MS })
  } catch (error) {
    return { safe: false, problem: `the backtracking check could not run (${error instanceof Error ? error.message : String(error)})` }
  }
  switch (d.status) {
    case "safe":
      return { safe: true }
    case "vulnerable": {
      const c = d.complexity
      if (c.type === "polynomial" && c.degree <= MAX_ACCEPTED_DEGREE) return { safe: true }
      const how = c.type === "exponential" ? "exponential" : `polynomial (degree ${c.degree})`
      return {
        safe: false,
        problem: `matching can take ${how} time on some inputs (catastrophic backtracking; e.g. ${clip(d.attack.pattern, 80)}); ` +
          `rewrite it without nested or overlapping repetition`
      }
    }
    case "unknown": {
      const e = d.error
      const why = e.kind === "timeout"
        ? `the check did not finish within ${CHECK_TIMEOUT_MS / 1000}s`
        : e.kind === "unsupported" || e.kind === "invalid" || e.kind === "unexpected"
        ? `${e.kind}: ${e.message}`
        : e.kind
      return { safe: false, problem: `it could not be shown free of catastrophic backtracking (${why}); simplify it` }
    }
  }
}

/** Checks the compiled `source` with `flags` (cached per pair). */
export const checkRegexSafety = (source: string, flags: string): RegexSafety => {
  const key = `${flags}/${source}`
  let r = cache.get(key)
  if (r === undefined) {
    r = judge(source, flags)
    cache.set(key, r)
  }
  return r
}
