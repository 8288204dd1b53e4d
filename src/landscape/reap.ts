/**
 * Runs whose process died. A run left `running` by a process that is gone (kill -9,
 * a power cut, the OOM killer) is recorded `interrupted` with reason `process_crash`
 * the first time any command opens the Landscape — in the database, not only in what
 * `runs` shows — and the attempt that was running is closed the same way. Loop runs
 * too: the run, and its issues and stages still `running`; its counts are taken from
 * its issues. Whether the owner is gone is decided by `ownerIsGone`: only on the host
 * that owns the run, never for the process doing the reaping.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { ownerIsGone } from "./owners.js"

export const PROCESS_CRASH = "process_crash"

/** Marks every pipeline run whose owner is gone; returns their ids. */
export const reapCrashedRuns = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const running = yield* sql<{ run_id: string; owner_pid: number | null; owner_host: string | null }>`
    SELECT run_id, owner_pid, owner_host FROM runs WHERE status = 'running'`
  const gone = running.filter((r) => r.owner_pid !== null && r.owner_host !== null && ownerIsGone(r.owner_pid, r.owner_host))
  for (const r of gone) {
    yield* sql.withTransaction(Effect.gen(function*() {
      // The guard on status keeps a run that a live process took over in the meantime.
      // When it died is not known; its last sign of life is its last checkpoint (or its start).
      const lastSeen = yield* sql<{ at: string }>`
        SELECT COALESCE(
          (SELECT MAX(created_at) FROM checkpoints WHERE run_id = ${r.run_id}),
          (SELECT started_at FROM runs WHERE run_id = ${r.run_id})) AS at`
      const at = lastSeen[0]?.at ?? null
      yield* sql`UPDATE runs SET status = 'interrupted', status_reason = ${PROCESS_CRASH}, completed_at = ${at}
                 WHERE run_id = ${r.run_id} AND status = 'running' AND owner_pid = ${r.owner_pid}`
      yield* sql`UPDATE run_attempts SET status = 'interrupted', reason = ${PROCESS_CRASH}, ended_at = ${at}
                 WHERE run_id = ${r.run_id} AND status = 'running' AND owner_pid = ${r.owner_pid}`
    }))
  }
  // Loop runs: the run, its issues and its stages still `running` end the same way.
  const loops = yield* sql<{ run_id: string; owner_pid: number; owner_host: string }>`
    SELECT run_id, owner_pid, owner_host FROM loop_runs WHERE status = 'running'`
  const goneLoops = loops.filter((r) => ownerIsGone(r.owner_pid, r.owner_host))
  for (const r of goneLoops) {
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`UPDATE loop_runs SET status = 'interrupted', reason = ${PROCESS_CRASH}
                 WHERE run_id = ${r.run_id} AND status = 'running' AND owner_pid = ${r.owner_pid}`
      yield* sql`UPDATE loop_issues SET status = 'interrupted', reason = ${PROCESS_CRASH}
                 WHERE run_id = ${r.run_id} AND status = 'running'`
      yield* sql`UPDATE stage_results SET status = 'interrupted', reason = ${PROCESS_CRASH}
                 WHERE run_id = ${r.run_id} AND status = 'running'`
      // The run never wrote its counts; they now say what its issues say.
      yield* sql`UPDATE loop_runs SET
                   total_count = (SELECT COUNT(*) FROM loop_issues WHERE run_id = ${r.run_id}),
                   success_count = (SELECT COUNT(*) FROM loop_issues WHERE run_id = ${r.run_id} AND status = 'success'),
                   failed_count = (SELECT COUNT(*) FROM loop_issues WHERE run_id = ${r.run_id} AND status = 'failed'),
                   interrupted_count = (SELECT COUNT(*) FROM loop_issues WHERE run_id = ${r.run_id} AND status = 'interrupted'),
                   skipped_count = (SELECT COUNT(*) FROM loop_issues WHERE run_id = ${r.run_id} AND status = 'skipped')
                 WHERE run_id = ${r.run_id}`
    }))
  }
  return [...gone.map((r) => r.run_id), ...goneLoops.map((r) => r.run_id)]
})
