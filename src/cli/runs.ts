import * as Command from "@effect/cli/Command"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { ownerIsGone } from "../landscape/owners.js"
import { listLoopRuns } from "../services/loop-recorder.js"
import { RecorderError } from "../services/recorder.js"
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
}

const pipelineEntry = (run: RunView, owners: ReadonlyMap<string, { pid: number | null; host: string | null }>): RunListEntry => {
  const owner = owners.get(run.run_id)
  // A run still marked running whose process is gone was killed: nothing will finish it.
  const crashed = run.status === "running" && owner !== undefined && owner.pid !== null && owner.host !== null &&
    ownerIsGone(owner.pid, owner.host)
  return {
  run_id: run.run_id,
  kind: "pipeline",
  status: crashed ? "interrupted" : run.status,
  reason: crashed ? "process_crash" : run.error_message,
  started_at: run.started_at,
  completed_at: run.completed_at,
  counts: { rows: run.counts.rows, ...run.counts.outcomes }
  }
}

/** Every run of the Landscape, pipelines and loops, oldest first. */
export const listAllRuns = Effect.gen(function*() {
  const recorder = yield* Recorder
  const sql = yield* SqlClient.SqlClient
  const ownerRows = yield* sql<{ run_id: string; owner_pid: number | null; owner_host: string | null }>`
    SELECT run_id, owner_pid, owner_host FROM runs WHERE status = 'running'`.pipe(
    Effect.mapError((e) => new RecorderError({ reason: "Database", message: `listing runs: ${e.message}`, cause: e }))
  )
  const owners = new Map(ownerRows.map((r) => [r.run_id, { pid: r.owner_pid, host: r.owner_host }]))
  const pipelines = (yield* recorder.listRuns).map((r) => pipelineEntry(r, owners))
  const loopRuns = yield* listLoopRuns().pipe(
    Effect.mapError((e) => new RecorderError({ reason: "Database", message: `listing loop runs: ${String((e as { message?: unknown }).message ?? e)}`, cause: e }))
  )
  const loops: Array<RunListEntry> = loopRuns.map((r) => ({ ...r, counts: { ...r.counts } }))
  return [...pipelines, ...loops].sort((a, b) => a.started_at.localeCompare(b.started_at))
})

const summarize = (counts: Record<string, number>): string =>
  Object.entries(counts).map(([k, v]) => `${k.toLowerCase()}=${v}`).join(" ")

export const runsCommand = Command.make("runs", { db: dbOption, json: jsonOption }, ({ db, json }) =>
  Effect.gen(function*() {
    const runs = yield* listAllRuns
    if (json) return yield* printJson(runs)
    if (runs.length === 0) return yield* printHuman("no runs yet")
    yield* printHuman(table(
      ["RUN", "KIND", "STATUS", "STARTED", "COUNTS", "REASON"],
      runs.map((r) => [r.run_id, r.kind, r.status, r.started_at, summarize(r.counts), r.reason ?? ""])
    ))
  }).pipe(Effect.provide(landscapeRead(dbUrl(db))), exitOnError)
).pipe(Command.withDescription("List the runs recorded in a Landscape (pipelines and issue loops) with status and counts."))
