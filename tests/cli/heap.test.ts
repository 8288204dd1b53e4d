/**
 * The CLI's heap growing factor (src/cli/heap.ts): how the environment and node's own
 * flags choose it, that it changes how far a real process's heap grows, and that the
 * CLI's long commands apply it while its short ones never do. (That the library never
 * reaches it is a rule of tests/architecture.test.ts.)
 */
import { describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DEFAULT_HEAP_GROWING_PERCENT, HEAP_GROWING_ENV, heapPolicy } from "../../src/cli/heap.js"
import { REPO, runCli } from "../support/cli.js"

describe("heapPolicy", () => {
  it("sets V8's growing factor to 2 by default", () => {
    expect(heapPolicy({}, [])).toEqual({ percent: DEFAULT_HEAP_GROWING_PERCENT })
    expect(DEFAULT_HEAP_GROWING_PERCENT).toBe(100)
    expect(heapPolicy({ [HEAP_GROWING_ENV]: "  " }, [])).toEqual({ percent: 100 })
  })

  it("takes another whole percentage from the environment, and 0 for V8's own choice", () => {
    expect(heapPolicy({ [HEAP_GROWING_ENV]: "50" }, [])).toEqual({ percent: 50 })
    expect(heapPolicy({ [HEAP_GROWING_ENV]: " 300 " }, [])).toEqual({ percent: 300 })
    expect(heapPolicy({ [HEAP_GROWING_ENV]: "0" }, [])).toEqual({ percent: undefined })
  })

  it("names the variable and the value it could not use, and keeps the default", () => {
    for (const bad of ["abc", "-5", "1.5", "1001", "50%"]) {
      const p = heapPolicy({ [HEAP_GROWING_ENV]: bad }, [])
      expect(p.percent).toBe(100)
      expect(p.warning).toContain(`${HEAP_GROWING_ENV}=${JSON.stringify(bad)}`)
    }
  })

  it("leaves a --heap-growing-percent given to node as it is", () => {
    expect(heapPolicy({}, ["--heap-growing-percent=30"])).toEqual({ percent: undefined })
    expect(heapPolicy({ [HEAP_GROWING_ENV]: "50" }, ["--heap_growing_percent", "30"])).toEqual({ percent: undefined })
    expect(heapPolicy({}, ["--max-old-space-size=4000"])).toEqual({ percent: 100 })
  })
})

/**
 * A process that keeps ~25 MB live and churns through short-lived records in batches
 * (as a run does between flushes), reporting the largest heap V8 reserved.
 */
const peakHeapMb = (apply: boolean): number => {
  const heap = join(REPO, "dist/cli/heap.js")
  const script = `
    if (${apply}) (await import(${JSON.stringify(heap)})).applyHeapPolicy({}, [])
    const live = []
    for (let i = 0; i < 120000; i++) live.push({ i, s: "x".repeat(100) + i })
    let peak = 0
    let held = []
    for (let round = 0; round < 120; round++) {
      for (let i = 0; i < 20000; i++) held.push({ round, i, text: "row " + round + " " + i + "y".repeat(60) })
      if (held.length >= 100000) held = []
      peak = Math.max(peak, process.memoryUsage().heapTotal)
    }
    console.log(JSON.stringify({ peak, live: live.length }))
  `
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 })
  expect(r.status, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as { peak: number }).peak / 2 ** 20
}

describe("the heap policy in a real process", () => {
  it("keeps the heap of a churning process well below V8's default growth", () => {
    const without = peakHeapMb(false)
    const withPolicy = peakHeapMb(true)
    // Measured on a 24 GiB machine: about 280 MB without, 190 MB with. V8's default
    // growth depends on the machine's memory; the policy's never exceeds it.
    console.log(`peak heap: ${without.toFixed(0)} MB without the policy, ${withPolicy.toFixed(0)} MB with it`)
    expect(withPolicy).toBeLessThanOrEqual(without * 1.05)
    if (without > 200) expect(withPolicy).toBeLessThan(without * 0.8)
  }, 60_000)

  it("is applied by the CLI's long commands once their plan is built, not by the short ones", () => {
    const dir = mkdtempSync(join(tmpdir(), "runledger-heap-"))
    try {
      writeFileSync(join(dir, "in.csv"), "id,name\n1,a\n2,b\n")
      writeFileSync(
        join(dir, "settings.yaml"),
        [
          "source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}, on_validation_failure: discard}}",
          "sinks:",
          "  output: {plugin: csv, options: {path: out.csv, schema: {mode: observed}}}",
          "default_sink: output",
          ""
        ].join("\n")
      )
      const env = { [HEAP_GROWING_ENV]: "lots" }
      const run = runCli(["run", "-s", "settings.yaml", "--db", "audit.db", "--json"], { cwd: dir, env })
      expect(run.status, run.stderr).toBe(0)
      expect((JSON.parse(run.stdout) as { rows_processed: number }).rows_processed).toBe(2)
      expect(run.stderr).toContain(`warning: ${HEAP_GROWING_ENV}="lots" is not a whole number from 0 to 1000; using 100`)
      // Once per process, whatever the command does after.
      expect(run.stderr.split(HEAP_GROWING_ENV).length - 1).toBe(1)
      for (const args of [["--version"], ["validate", "-s", "settings.yaml"]]) {
        const r = runCli(args, { cwd: dir, env })
        expect(r.status, r.stderr).toBe(0)
        expect(r.stderr).not.toContain(HEAP_GROWING_ENV)
      }
      const good = runCli(["run", "-s", "settings.yaml", "--db", "audit.db", "--json"], { cwd: dir, env: { [HEAP_GROWING_ENV]: "80" } })
      expect(good.status, good.stderr).toBe(0)
      expect(good.stderr).not.toContain(HEAP_GROWING_ENV)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
