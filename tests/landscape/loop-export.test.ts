/**
 * The export of a loop run assembled from a real (in-memory) Landscape written through
 * the LoopRecorder: order, generic columns and tables, command log hashes, kinds.
 */
import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Chunk, Effect, Stream } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { RunId } from "../../src/core/ids.js"
import { singular } from "../../src/landscape/loop-export.js"
import { ExportStore } from "../../src/services/export-store.js"
import { LoopRecorder } from "../../src/services/loop-recorder.js"
import type { LoopCommandOutcome } from "../../src/services/loop-records.js"
import { Recorder } from "../../src/services/recorder.js"
import { MemoryLandscape } from "../support/landscape.js"

const RUN = "run_loop_export_1"

const outcome = (ref: string, at: string, logFile: string | null, exitCode = 0): LoopCommandOutcome => ({
  ref,
  command: `run ${ref}`,
  passed: exitCode === 0,
  exit_code: exitCode,
  timed_out: false,
  duration_ms: 12,
  output_tail: `${ref} output`,
  log_file: logFile,
  started_at: at,
  finished_at: at
})

/** A finished loop run of two issues: A with two stages, B with a loose command, and a run_end. */
const recordRun = (runDir: string) =>
  Effect.gen(function*() {
    const loop = yield* LoopRecorder
    yield* loop.beginRun({
      runId: RUN,
      startedAt: "2026-01-01T00:00:00.000Z",
      configFile: "/c/loop.yaml",
      configJson: JSON.stringify({ max_agents: 1 }),
      repo: "/repo",
      runDir,
      maxAgents: 1,
      issues: [{ id: "B-2", title: "second", priority: null }, { id: "A-1", title: "first", priority: 1 }]
    })
    yield* loop.startIssue(RUN, "B-2", { branch: "b", worktree: "/w/b", baseSha: "base", startedAt: "2026-01-01T00:00:01.000Z" })
    yield* loop.startIssue(RUN, "A-1", { branch: "a", worktree: "/w/a", baseSha: "base", startedAt: "2026-01-01T00:00:02.000Z" })
    const impl = yield* loop.startStage({ runId: RUN, issueId: "A-1", stage: "implementer", attempt: 1, startedAt: "2026-01-01T00:00:03.000Z" })
    yield* loop.recordCommand({ stageId: impl, runId: RUN, issueId: "A-1", stage: "implementer", result: outcome("implementer", "2026-01-01T00:00:03.100Z", "logs/001-implementer.log") })
    yield* loop.finishStage(impl, { status: "pass", reason: null, completedAt: "2026-01-01T00:00:04.000Z", result: { ok: true } })
    const gate = yield* loop.startStage({ runId: RUN, issueId: "A-1", stage: "gate", attempt: 1, startedAt: "2026-01-01T00:00:05.000Z" })
    yield* loop.recordCommand({ stageId: gate, runId: RUN, issueId: "A-1", stage: "gate", result: outcome("test", "2026-01-01T00:00:05.100Z", NodePath.join(runDir, "gone.log"), 3) })
    yield* loop.finishStage(gate, { status: "fail", reason: "gate_failed", completedAt: "2026-01-01T00:00:06.000Z", result: null })
    yield* loop.recordCommand({ stageId: null, runId: RUN, issueId: "B-2", stage: "finalize", result: outcome("finalize", "2026-01-01T00:00:07.000Z", null) })
    yield* loop.finishIssue(RUN, "A-1", { status: "failed", reason: "gate_failed", headSha: "h", gateAttempts: 1, reviewRounds: 0, result: { id: "A-1" }, completedAt: "2026-01-01T00:00:08.000Z" })
    yield* loop.finishIssue(RUN, "B-2", { status: "success", reason: null, headSha: "h2", gateAttempts: 1, reviewRounds: 0, result: { id: "B-2" }, completedAt: "2026-01-01T00:00:08.000Z" })
    const runEnd = yield* loop.startStage({ runId: RUN, issueId: null, stage: "run_end", attempt: 1, startedAt: "2026-01-01T00:00:09.000Z" })
    yield* loop.recordCommand({ stageId: runEnd, runId: RUN, issueId: null, stage: "run_end", result: outcome("test", "2026-01-01T00:00:09.100Z", null) })
    yield* loop.finishStage(runEnd, { status: "pass", reason: null, completedAt: "2026-01-01T00:00:10.000Z", result: null })
    yield* loop.finishRun(RUN, {
      status: "completed",
      reason: null,
      completedAt: "2026-01-01T00:00:11.000Z",
      counts: { total: 2, success: 1, failed: 1, interrupted: 0, skipped: 0 },
      runEnd: { status: "pass", reason: null }
    })
    return { impl, gate, runEnd }
  })

const collect = (runId: string, includeLogs = false) =>
  Effect.flatMap(ExportStore, (store) =>
    Effect.map(Stream.runCollect(store.records(runId as RunId, { includeLogs })), Chunk.toReadonlyArray))

const tempRunDir = () => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "runledger-loop-export-"))
  NodeFs.mkdirSync(NodePath.join(dir, "logs"))
  NodeFs.writeFileSync(NodePath.join(dir, "logs", "001-implementer.log"), "line one\nline two\n")
  return dir
}

describe("loop run export", () => {
  it.scoped("streams the run, issue by issue with their stages and commands, then the run's own stages", () =>
    Effect.gen(function*() {
      const runDir = tempRunDir()
      const { gate, impl, runEnd } = yield* recordRun(runDir)
      const records = yield* collect(RUN)
      assert.deepStrictEqual(records.map((r) => r.seq), records.map((_, i) => i))
      assert.deepStrictEqual(
        records.map((r) => [r.record_type, r.issue_id ?? null, r.stage ?? null]),
        [
          ["loop_run", null, null],
          ["loop_issue", "B-2", null],
          ["command_result", "B-2", "finalize"],
          ["loop_issue", "A-1", null],
          ["stage_result", "A-1", "implementer"],
          ["command_result", "A-1", "implementer"],
          ["stage_result", "A-1", "gate"],
          ["command_result", "A-1", "gate"],
          ["stage_result", null, "run_end"],
          ["command_result", null, "run_end"]
        ]
      )
      const run = records[0]!
      assert.strictEqual(run.run_id, RUN)
      assert.deepStrictEqual(run.config_json, { max_agents: 1 })
      assert.strictEqual(run.run_end_status, "pass")
      assert.deepStrictEqual(records.filter((r) => r.record_type === "stage_result").map((r) => r.stage_id), [impl, gate, runEnd])
      const [implCmd, gateCmd] = records.filter((r) => r.record_type === "command_result" && r.issue_id === "A-1")
      assert.strictEqual(implCmd!.stage_id, impl)
      assert.strictEqual(gateCmd!.exit_code, 3)
      assert.strictEqual(gateCmd!.passed, 0)
      assert.strictEqual(gateCmd!.duration_ms, 12)
      assert.strictEqual(gateCmd!.output_tail, "test output")
      // The log file that is there is hashed (relative paths resolve against the run folder); a gone one is null.
      const text = NodeFs.readFileSync(NodePath.join(runDir, "logs", "001-implementer.log"))
      assert.strictEqual(implCmd!.log_file_sha256, createHash("sha256").update(text).digest("hex"))
      assert.strictEqual(implCmd!.log_file_bytes, text.length)
      assert.isNull(gateCmd!.log_file_sha256)
      assert.isNull(gateCmd!.log_file_bytes)
      assert.isFalse("log_file_text" in implCmd!)
      // Logs are inlined only when asked.
      const withLogs = yield* collect(RUN, true)
      const inlined = withLogs.filter((r) => r.record_type === "command_result")
      assert.strictEqual(inlined.find((r) => r.stage_id === impl)!.log_file_text, "line one\nline two\n")
      assert.isNull(inlined.find((r) => r.stage_id === gate)!.log_file_text)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("exports columns and tables added later without a change: whole rows, and every table of the run's loop data", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const store = yield* ExportStore
      yield* sql.unsafe(`ALTER TABLE command_results ADD COLUMN pgid INTEGER`)
      yield* sql.unsafe(`CREATE TABLE loop_leases (run_id TEXT NOT NULL REFERENCES loop_runs(run_id), pgid INTEGER NOT NULL, state TEXT)`)
      yield* sql.unsafe(`CREATE TABLE stage_notes (stage_id TEXT NOT NULL REFERENCES stage_results(stage_id), note_json TEXT)`)
      yield* sql.unsafe(`CREATE TABLE unrelated (k TEXT)`)
      const { impl } = yield* recordRun(tempRunDir())
      yield* sql.unsafe(`UPDATE command_results SET pgid = 4242 WHERE stage_id = ?`, [impl])
      yield* sql.unsafe(`INSERT INTO loop_leases VALUES (?, 100, 'reaped'), (?, 101, 'reaped')`, [RUN, RUN])
      yield* sql.unsafe(`INSERT INTO stage_notes VALUES (?, '{"n":1}')`, [impl])
      yield* sql.unsafe(`INSERT INTO unrelated VALUES ('x')`)
      // Another run's rows stay out.
      yield* (yield* LoopRecorder).beginRun({
        runId: "run_other",
        startedAt: "2026-02-01T00:00:00.000Z",
        configFile: "c",
        configJson: "{}",
        repo: "r",
        runDir: "d",
        maxAgents: 1,
        issues: []
      })
      yield* sql.unsafe(`INSERT INTO loop_leases VALUES ('run_other', 999, 'live')`)

      const records = yield* collect(RUN)
      assert.strictEqual(records.find((r) => r.stage_id === impl && r.record_type === "command_result")!.pgid, 4242)
      const tail = records.slice(-3)
      assert.deepStrictEqual(tail.map((r) => [r.record_type, r.pgid ?? r.note_json]), [
        ["loop_lease", 100],
        ["loop_lease", 101],
        ["stage_note", { n: 1 }]
      ])
      const columns = yield* store.columns("loop")
      assert.deepStrictEqual([...columns.keys()], ["loop_run", "loop_issue", "stage_result", "command_result", "loop_lease", "loop_process", "stage_note"])
      assert.includeMembers([...columns.get("command_result")!], ["exit_code", "log_file", "pgid", "log_file_sha256", "log_file_bytes"])
      assert.includeMembers([...columns.get("loop_run")!], ["export_status", "exported_at"])
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("finds loop runs by id and as latest, and records their export status like a pipeline run's", () =>
    Effect.gen(function*() {
      const store = yield* ExportStore
      const rec = yield* Recorder
      const sql = yield* SqlClient.SqlClient
      const pipeline = yield* rec.beginRun({ settings: {} })
      yield* recordRun(tempRunDir())
      assert.deepStrictEqual(yield* store.findRun(RUN), { runId: RUN as RunId, kind: "loop", status: "completed" })
      assert.deepStrictEqual(yield* store.findRun(pipeline), { runId: pipeline, kind: "pipeline", status: "running" })
      // The pipeline run started in 1970 (the test clock), the loop run in 2026.
      assert.strictEqual((yield* store.findRun("latest")).runId, RUN)
      yield* store.setExportStatus(RUN as RunId, { export_status: "pending", export_error: null, export_format: "json", export_sink: "cli" })
      yield* store.setExportStatus(RUN as RunId, { export_status: "completed", exported_at: "2026-01-02T00:00:00.000Z" })
      const [row] = yield* sql<Record<string, unknown>>`SELECT export_status, export_error, export_format, export_sink, exported_at
        FROM loop_runs WHERE run_id = ${RUN}`
      assert.deepStrictEqual(row, {
        export_status: "completed",
        export_error: null,
        export_format: "json",
        export_sink: "cli",
        exported_at: "2026-01-02T00:00:00.000Z"
      })
      const records = yield* collect(RUN)
      assert.strictEqual(records[0]!.export_status, "completed")
    }).pipe(Effect.provide(MemoryLandscape())))

  it("names further tables' record types in the singular", () => {
    assert.strictEqual(singular("loop_processes"), "loop_process")
    assert.strictEqual(singular("stage_results"), "stage_result")
    assert.strictEqual(singular("process_groups"), "process_group")
    assert.strictEqual(singular("loop_status"), "loop_status")
    assert.strictEqual(singular("loop_entries"), "loop_entry")
    assert.strictEqual(singular("integration"), "integration")
  })
})
