/**
 * Runs whose process died. A run left `running` by a process that is gone (kill -9,
 * a power cut, the OOM killer) is recorded `interrupted` with reason `process_crash`
 * the first time any command opens the Landscape — in the database, not only in what
 * `runs` shows — and the attempt that was running is closed the same way. Loop runs
 * too: the run, and its issues and stages still `running`; its counts are taken from
 * its issues. Whether the owner is gone is decided by `ownerIsGone`: only on the host
 * that owns the run, never for the process doing the reaping.
 *
 * A dead loop run's commands may have outlived it (when its watchdog could not kill
 * them): each process group still recorded `running` in loop_processes gets SIGTERM,
 * then SIGKILL after the run's `kill_grace` — only its processes that carry the
 * command's RUNLEDGER_COMMAND_ID, so a group number the system has since reused is
 * never touched (Linux only: elsewhere the environment of a process cannot be read and
 * nothing is killed). Each such command gets its command_results row, attached to the
 * stage that was running.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, DateTime, Effect } from "effect"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import { COMMAND_ID_ENV, markedGroupMembers, terminateGroups } from "../core/process-groups.js"
import { ownerIsGone } from "./owners.js"
import { fileTail } from "../core/file-tail.js"

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
  const loops = yield* sql<{ run_id: string; owner_pid: number; owner_host: string; config_json: string }>`
    SELECT run_id, owner_pid, owner_host, config_json FROM loop_runs WHERE status = 'running'`
  const goneLoops = loops.filter((r) => ownerIsGone(r.owner_pid, r.owner_host))
  for (const r of goneLoops) {
    // Outside the transaction: waiting out a grace period must not hold the write lock.
    const survivors = yield* killSurvivors(r.run_id, graceOf(r.config_json))
    const now = yield* Effect.map(Clock.currentTimeMillis, (ms) => DateTime.formatIso(DateTime.unsafeMake(ms)))
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`UPDATE loop_runs SET status = 'interrupted', reason = ${PROCESS_CRASH}
                 WHERE run_id = ${r.run_id} AND status = 'running' AND owner_pid = ${r.owner_pid}`
      yield* closeProcesses(r.run_id, survivors, now)
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

interface ProcessRow {
  readonly process_id: string
  readonly issue_id: string | null
  readonly stage: string
  readonly ref: string
  readonly command: string
  readonly log_file: string | null
  readonly pgid: number
  readonly started_at: string
}

/** The run's `kill_grace` from its recorded config (5 s when it cannot be read). */
const graceOf = (configJson: string): number => {
  try {
    const grace = (JSON.parse(configJson) as { killGraceMs?: unknown }).killGraceMs
    return typeof grace === "number" && Number.isFinite(grace) && grace >= 0 ? grace : 5000
  } catch {
    return 5000
  }
}

/** Kills what is left of the run's recorded groups; returns how many processes each command still had. */
const killSurvivors = (runId: string, graceMs: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ process_id: string; pgid: number }>`
      SELECT process_id, pgid FROM loop_processes WHERE run_id = ${runId} AND status = 'running'`
    const alive = new Map<string, number>()
    const groups: Array<number> = []
    for (const row of rows) {
      const members = markedGroupMembers(row.pgid, COMMAND_ID_ENV, row.process_id)
      alive.set(row.process_id, members.length)
      if (members.length > 0) groups.push(row.pgid)
    }
    if (groups.length > 0) yield* Effect.promise(() => terminateGroups(groups, graceMs))
    return alive
  })

const TAIL_BYTES = 8192

/** The last bytes of a command's log file ("" when there is none). */
const logTail = (file: string | null): string => fileTail(file, TAIL_BYTES)

/** When the command last showed a sign of life: its log file's last write, else its start. */
const lastSignOfLife = (row: ProcessRow): string => {
  if (row.log_file !== null) {
    try {
      const mtime = NodeFs.statSync(row.log_file).mtimeMs
      if (mtime > Date.parse(row.started_at)) return new Date(mtime).toISOString()
    } catch {
      // no log file
    }
  }
  return row.started_at
}

/**
 * Inside the reaping transaction: every command still `running` gets its command row
 * (the stage that was running, no exit code, the tail of its log and what the reaper
 * found) and its process row is closed `reaped`.
 */
const closeProcesses = (runId: string, survivors: ReadonlyMap<string, number>, now: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<ProcessRow>`
      SELECT process_id, issue_id, stage, ref, command, log_file, pgid, started_at
      FROM loop_processes WHERE run_id = ${runId} AND status = 'running' ORDER BY started_at, rowid`
    for (const row of rows) {
      const killed = survivors.get(row.process_id) ?? 0
      const stage = yield* sql<{ stage_id: string }>`
        SELECT stage_id FROM stage_results
        WHERE run_id = ${runId} AND issue_id IS ${row.issue_id} AND status = 'running'
        ORDER BY started_at DESC, rowid DESC LIMIT 1`
      const finishedAt = killed > 0 ? now : lastSignOfLife(row)
      const note = killed > 0
        ? `[${PROCESS_CRASH}: runledger died while this command ran; ${killed} process(es) of its group (${row.pgid}) were still alive and were killed]`
        : `[${PROCESS_CRASH}: runledger died while this command ran; no process of its group (${row.pgid}) was left]`
      const tail = logTail(row.log_file)
      yield* sql`INSERT INTO command_results ${
        sql.insert({
          command_id: NodeCrypto.randomUUID(),
          stage_id: stage[0]?.stage_id ?? null,
          run_id: runId,
          issue_id: row.issue_id,
          stage: row.stage,
          ref: row.ref,
          command: row.command,
          passed: 0,
          exit_code: null,
          timed_out: 0,
          duration_ms: Math.max(0, Date.parse(finishedAt) - Date.parse(row.started_at)),
          output_tail: tail === "" || tail.endsWith("\n") ? `${tail}${note}` : `${tail}\n${note}`,
          log_file: row.log_file,
          started_at: row.started_at,
          finished_at: finishedAt
        })
      }`
      yield* sql`UPDATE loop_processes SET status = 'reaped', ended_at = ${now}, survivors = ${killed}
                 WHERE process_id = ${row.process_id} AND status = 'running'`
    }
  })
