import * as Command from "@effect/cli/Command"
import { Effect } from "effect"
import { listLoopRuns } from "../services/loop-recorder.js"
import { RecorderError } from "../services/recorder.js"
import { ResumeStore, type RunAttemptView } from "../services/resume-store.js"
import { Recorder, type RunView } from "../services/recorder.js"
import { dbOption, dbUrl, jsonOption, printHuman, printJson, table } from "./common.js"
import { exitOnError } from "./exit.js"
import { landscapeRead } from "./layers.js"

export interface RunListEntry {
  readonly run_id: string
  readonly kind: "pipeline" | "loop"
  readonly status: string
  readonly reason: string | null
  readonly started_at: string
  readonly completed_at: string | null
  readonly counts: Readonly<Record<string, number>>
  /** Pipeline runs: the start and every resume, with pids, times and how each ended. */
  readonly attempts?: ReadonlyArray<RunAttemptView>
}

const pipelineEntry = (run: RunView): RunListEntry => ({
  run_id: run.run_id,
  kind: "pipeline",
  status: run.status,
  reason: run.status_reason ?? run.error_message,
  started_at: run.started_at,
  completed_at: run.completed_at,
  counts: { rows: run.counts.rows, ...run.counts.outcomes }
})

/**
 * Every run of the Landscape, pipelines and loops, oldest first. A run whose process
 * died was already recorded `interrupted, reason=process_crash` when the Landscape was
 * opened (landscape/reap.ts).
 */
export const listAllRuns = Effect.gen(function*() {
  const recorder = yield* Recorder
  const store = yield* ResumeStore
  const pipelines: Array<RunListEntry> = []
  for (const run of yield* recorder.listRuns) {
    pipelines.push({ ...pipelineEntry(run), attempts: yield* store.attempts(run.run_id) })
  }
  const loopRuns = yield* listLoopRuns().pipe(
    Effect.mapError((e) => new RecorderError({ reason: "Database", message: `listing loop runs: ${String((e as { message?: unknown }).message ?? e)}`, cause: e }))
  )
  const loops: Array<RunListEntry> = loopRuns.map((r) => ({ ...r, counts: { ...r.counts } }))
  return [...pipelines, ...loops].sort((a, b) => a.started_at.localeCompare(b.started_at))
})

/** `1` for a run that never stopped; `3 (interrupted, interrupted, completed)` for a resumed one. */
const attemptsText = (attempts: ReadonlyArray<RunAttemptView>): string =>
  attempts.length <= 1 ? String(attempts.length) : `${attempts.length} (${attempts.map((a) => a.status).join(", ")})`

/** A table cell: the first line of `reason`, at most 100 characters; in full with --verbose. */
export const oneLine = (reason: string | null, verbose = process.argv.includes("--verbose")): string => {
  if (reason === null) return ""
  if (verbose) return reason.replace(/\s*\n\s*/g, " | ")
  const first = reason.split("\n", 1)[0]!.trim()
  const cut = first.length > 100 ? `${first.slice(0, 99)}…` : first
  return cut !== reason.trim() && !cut.endsWith("…") ? `${cut} …` : cut
}

const summarize = (counts: Record<string, number>): string =>
  Object.entries(counts).map(([k, v]) => `${k.toLowerCase()}=${v}`).join(" ")

export const runsCommand = Command.make("runs", { db: dbOption, json: jsonOption }, ({ db, json }) =>
  Effect.gen(function*() {
    const runs = yield* listAllRuns
    if (json) return yield* printJson(runs)
    if (runs.length === 0) return yield* printHuman("no runs yet")
    yield* printHuman(table(
      ["RUN", "KIND", "STATUS", "STARTED", "ATTEMPTS", "COUNTS", "REASON"],
      runs.map((r) => [
        r.run_id,
        r.kind,
        r.status,
        r.started_at,
        r.attempts === undefined ? "-" : attemptsText(r.attempts),
        summarize(r.counts),
        oneLine(r.reason)
      ])
    ))
  }).pipe(Effect.provide(landscapeRead(dbUrl(db))), exitOnError)
).pipe(Command.withDescription(
  "List the runs recorded in a Landscape (pipelines and issue loops) with status, attempts, counts and the reason a run " +
    "stopped — one line per run, a long reason cut to its first line (in full with --verbose or in --json). " +
    "Exit 2 when the Landscape does not exist."
))
