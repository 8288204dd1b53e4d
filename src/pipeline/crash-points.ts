/**
 * Test-only fault injection: `RUNLEDGER_TEST_CRASH=<point>:<n>` makes the process kill
 * itself with SIGKILL the n-th time it passes `<point>` — the way a power cut or the
 * OOM killer would end it, with no finalizer, no flush and no last write. The crash
 * and resume tests use it to stop a run at exact places; nothing else should set it.
 *
 * Points (see docs/resume.md):
 * - `row` — after a source row (and every token derived from it) was processed
 * - `sink_write` — after a sink wrote its queued rows, before its fsync
 * - `sink_flushed` — after every sink of a durability point is fsynced, before the
 *   Landscape transaction that records those rows and the checkpoint
 * - `checkpoint` — right after a checkpoint's transaction committed
 * - `resume_cut` — in `resume`, after the sinks were cut back, before any row is read
 */
export type CrashPoint = "row" | "sink_write" | "sink_flushed" | "checkpoint" | "resume_cut"

const parse = (text: string | undefined): { readonly point: string; readonly n: number } | undefined => {
  if (text === undefined || text === "") return undefined
  const m = /^([a-z_]+):(\d+)$/.exec(text.trim())
  return m === null ? undefined : { point: m[1]!, n: Number(m[2]) }
}

const armed = parse(process.env.RUNLEDGER_TEST_CRASH)
let passes = 0

/** Passes `point`; kills the process when it is the armed point's n-th pass. */
export const crashPoint = (point: CrashPoint): void => {
  if (armed === undefined || armed.point !== point) return
  passes++
  if (passes === armed.n) process.kill(process.pid, "SIGKILL")
}
