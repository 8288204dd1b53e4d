/**
 * How far the CLI lets V8's heap grow between two full collections.
 *
 * A run's live heap is small and steady (tens of MB: loaded code, the rows in flight,
 * the records not yet flushed), but it allocates gigabytes of short-lived garbage. On a
 * machine whose default heap limit is 2 GB or more, V8 lets the old generation grow to
 * up to four times what its last full collection kept before it collects again, so a
 * run's resident memory settles far above what it uses. The CLI sets V8's heap growing
 * factor to 2 (`--heap-growing-percent=100`, about what V8 picks by itself when the heap
 * limit is under 2 GB): the same runs, the same heap limit (nothing that needs the room
 * runs out of memory sooner), a lower and flat peak. docs/benchmarks.md has the figures.
 *
 * `RUNLEDGER_HEAP_GROWING_PERCENT` chooses another percentage; `0` leaves V8's own
 * choice. A `--heap-growing-percent` given to node itself is left as it is.
 *
 * Only the CLI does this, and only for its long commands (run, resume, loop, export,
 * verify, serve, mcp), once their work is about to start (`useRunHeap`): a V8 flag
 * changed at run time makes Node's code cache and a worker thread's start-up snapshot
 * unusable for what loads afterwards, which cost `validate` about 70 ms (the regex
 * check's worker starts while the plan is built). `import "runledger"` never changes
 * the flags of a process it does not own.
 */
import { Effect } from "effect"
import * as v8 from "node:v8"

export const HEAP_GROWING_ENV = "RUNLEDGER_HEAP_GROWING_PERCENT"

/** V8's heap growing factor is 1 + percent / 100. */
export const DEFAULT_HEAP_GROWING_PERCENT = 100

export interface HeapPolicy {
  /** The percentage to set, or undefined to leave V8's flags alone. */
  readonly percent: number | undefined
  /** Why the environment's value was not used, for stderr. */
  readonly warning?: string
}

/** The policy for a process with this environment and these node flags. */
export const heapPolicy = (env: NodeJS.ProcessEnv, execArgv: ReadonlyArray<string>): HeapPolicy => {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a))) return { percent: undefined }
  const text = env[HEAP_GROWING_ENV]
  if (text === undefined || text.trim() === "") return { percent: DEFAULT_HEAP_GROWING_PERCENT }
  const n = Number(text.trim())
  if (!Number.isInteger(n) || n < 0 || n > 1000) {
    return {
      percent: DEFAULT_HEAP_GROWING_PERCENT,
      warning: `${HEAP_GROWING_ENV}=${JSON.stringify(text)} is not a whole number from 0 to 1000; ` +
        `using ${DEFAULT_HEAP_GROWING_PERCENT}`
    }
  }
  return { percent: n === 0 ? undefined : n }
}

/**
 * Applies the policy to this process (V8 reads the flag at each full collection, so it
 * takes effect from the next one). Returns the warning, if any, for the caller to print.
 */
export const applyHeapPolicy = (
  env: NodeJS.ProcessEnv = process.env,
  execArgv: ReadonlyArray<string> = process.execArgv
): string | undefined => {
  const policy = heapPolicy(env, execArgv)
  if (policy.percent !== undefined) v8.setFlagsFromString(`--heap-growing-percent=${policy.percent}`)
  return policy.warning
}

let applied = false

/**
 * Applies the policy once per process, printing the warning (if any) on stderr: the
 * first step of each long command, after its settings are loaded and its plan is built.
 */
export const useRunHeap: Effect.Effect<void> = Effect.sync(() => {
  if (applied) return
  applied = true
  const warning = applyHeapPolicy()
  if (warning !== undefined) process.stderr.write(`warning: ${warning}\n`)
})
