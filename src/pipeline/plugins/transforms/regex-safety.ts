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
 * Each pattern is checked once per process (the answer is cached). The checks run in a
 * worker thread of our own, called synchronously (the caller waits on a shared counter
 * the worker bumps), where recheck's `check` picks its checker: the native binary of
 * its platform package when installed, else its JavaScript one. The 3 MB checker
 * script is loaded by the worker only, not by this thread (about 50 ms less for every
 * `runledger validate`). The worker is stopped as soon as it has been idle for
 * `IDLE_MS`: a run's patterns are all checked while its plan is built, and a checker
 * kept for the rest of the run would hold some 40 MB of memory for nothing. A later
 * check starts a new one.
 */
import { createRequire } from "node:module"
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads"

type Recheck = typeof import("recheck")
type Diagnostics = ReturnType<Recheck["checkSync"]>

/** How long an idle checker is kept for the next pattern. */
const IDLE_MS = 250

/** The worker: one message per pattern, answered with recheck's diagnostics. */
const WORKER_SOURCE = `
const { workerData } = require("node:worker_threads")
const text = (error) => String((error && error.message) || error)
let recheck
let loadError
try {
  recheck = require(workerData.recheck)
} catch (error) {
  loadError = "recheck could not be loaded: " + text(error)
}
const done = new Int32Array(workerData.done)
workerData.port.on("message", async (m) => {
  let reply
  try {
    reply = loadError !== undefined
      ? { id: m.id, error: loadError }
      : { id: m.id, result: await recheck.check(m.source, m.flags, { timeout: m.timeout }) }
  } catch (error) {
    reply = { id: m.id, error: text(error) }
  }
  workerData.port.postMessage(reply)
  Atomics.add(done, 0, 1)
  Atomics.notify(done, 0)
})
`

interface Checker {
  readonly worker: Worker
  readonly port: MessagePort
  readonly done: Int32Array
  next: number
  idle: ReturnType<typeof setTimeout> | undefined
}

let checker: Checker | undefined

const startChecker = (): Checker => {
  const require = createRequire(import.meta.url)
  const { port1, port2 } = new MessageChannel()
  const done = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { recheck: require.resolve("recheck"), done: done.buffer, port: port2 },
    transferList: [port2],
    stdout: true,
    stderr: true
  })
  // Neither keeps the process alive; the worker's own failure is seen as a missing reply.
  worker.unref()
  port1.unref()
  worker.on("error", () => undefined)
  return { worker, port: port1, done, next: 0, idle: undefined }
}

/** Stops the checker (if one runs); the next check starts another. */
export const stopRegexChecker = (): void => {
  const c = checker
  if (c === undefined) return
  checker = undefined
  if (c.idle !== undefined) clearTimeout(c.idle)
  c.port.close()
  void c.worker.terminate()
}

/** Whether a checker worker is running (it stops by itself once idle). */
export const regexCheckerRunning = (): boolean => checker !== undefined

/** recheck's diagnostics of one pattern, computed in the worker; throws when it gives none. */
const runCheck = (source: string, flags: string, timeoutMs: number): Diagnostics => {
  const c = checker ??= startChecker()
  if (c.idle !== undefined) clearTimeout(c.idle)
  try {
    const id = c.next++
    c.port.postMessage({ id, source, flags, timeout: timeoutMs })
    // Loading the checker takes a moment the first time; beyond recheck's own limit, give up.
    for (;;) {
      const waited = Atomics.wait(c.done, 0, 0, timeoutMs + 30_000)
      Atomics.store(c.done, 0, 0)
      if (waited === "timed-out") {
        stopRegexChecker()
        throw new Error("the checker did not answer")
      }
      const m = receiveMessageOnPort(c.port)?.message as { id: number; result?: Diagnostics; error?: string } | undefined
      if (m === undefined) {
        stopRegexChecker()
        throw new Error("the checker stopped")
      }
      if (m.id !== id) continue
      if (m.error !== undefined) throw new Error(m.error)
      return m.result!
    }
  } finally {
    if (checker === c) {
      c.idle = setTimeout(stopRegexChecker, IDLE_MS)
      c.idle.unref()
    }
  }
}

export type RegexSafety = { readonly safe: true } | { readonly safe: false; readonly problem: string }

/** The longest polynomial degree accepted (2: quadratic). */
export const MAX_ACCEPTED_DEGREE = 2

/** recheck's time limit for one pattern, in milliseconds. */
const CHECK_TIMEOUT_MS = 10_000

const cache = new Map<string, RegexSafety>()

const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n)}…` : s)

const judge = (source: string, flags: string): RegexSafety => {
  let d: Diagnostics
  try {
    d = runCheck(source, flags, CHECK_TIMEOUT_MS)
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
